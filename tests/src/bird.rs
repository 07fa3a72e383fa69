//! BIRD on the lab's nodes: started in the node's namespace on the configuration its agent
//! rendered, stopped and restarted for tests, and asked for session status.
//!
//! BIRD runs in the foreground (`-f`) in its own session, so it outlives the command that
//! started it (like the agents) and teardown finds it among the namespace's processes.

use std::{
    fs::OpenOptions,
    io::Write as _,
    os::unix::process::CommandExt as _,
    process::Stdio,
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use nix::{sys::signal::Signal, unistd::Pid};
use tortie_bgp::BirdClient;

use crate::{
    agent::{log_tail, process_alive, reap},
    netns,
    spec::{BirdFiles, Node},
};

/// How long BIRD may take to open its control socket.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent may take to render BIRD's first configuration.
const CONFIG_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// The BIRD files of `node`, or an error saying the lab has no BGP.
pub fn files(node: &Node) -> Result<&BirdFiles> {
    node.bird.as_ref().with_context(|| {
        format!(
            "{} runs no BIRD: bring the lab up with --bgp (LabSpec::with_bgp)",
            node.name
        )
    })
}

/// How BIRD starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The node's first BIRD: nothing to recover.
    Fresh,
    /// After a crash or stop (`-R`): the kernel keeps BIRD's old routes until the sessions
    /// have come back and resent theirs (graceful restart recovery). Not for a first start:
    /// recovery waits for every session of the starting configuration, and one removed
    /// meanwhile holds the kernel's routes back for the whole wait (240 s).
    Recovering,
}

/// Starts BIRD on `node` once its agent has written the configuration and waits for its
/// control socket. Returns its pid.
pub fn start(node: &Node, how: Start) -> Result<u32> {
    let bird = files(node)?;
    let waited = Instant::now();
    while !bird.config.exists() {
        if waited.elapsed() > CONFIG_TIMEOUT {
            bail!(
                "the agent of {} wrote no BIRD configuration at {} within {} s; its log \
                 {} ends with:\n{}",
                node.name,
                bird.config.display(),
                CONFIG_TIMEOUT.as_secs(),
                node.log_file.display(),
                log_tail(&node.log_file, 20)
            );
        }
        sleep(POLL);
    }
    let _ = std::fs::remove_file(&bird.socket);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&bird.log)
        .with_context(|| format!("opening {}", bird.log.display()))?;
    let _ = writeln!(log, "=== tortie-lab: starting BIRD on {}", node.name);
    let log_err = log.try_clone()?;
    let (config, socket, pid_file) = (
        bird.config.display().to_string(),
        bird.socket.display().to_string(),
        bird.pid_file.display().to_string(),
    );
    let mut args = vec!["-f", "-c", &config, "-s", &socket, "-P", &pid_file];
    if how == Start::Recovering {
        args.push("-R");
    }
    let mut command = netns::nsenter_command(&node.netns, "bird", &args);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting BIRD on {} (is bird2 installed?)", node.name))?;
    let started = Instant::now();
    loop {
        if BirdClient::connect(&bird.socket).is_ok() {
            return Ok(child.id());
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "BIRD on {} exited at start ({status}); {} ends with:\n{}",
                node.name,
                bird.log.display(),
                log_tail(&bird.log, 20)
            );
        }
        if started.elapsed() > SOCKET_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "BIRD on {} opened no control socket at {} within {} s",
                node.name,
                bird.socket.display(),
                SOCKET_TIMEOUT.as_secs()
            );
        }
        sleep(POLL);
    }
}

/// BIRD's pid on `node`, from its pid file, if it is running.
pub fn pid(node: &Node) -> Result<Option<u32>> {
    let bird = files(node)?;
    let Ok(text) = std::fs::read_to_string(&bird.pid_file) else {
        return Ok(None);
    };
    let pid: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} holds no pid", bird.pid_file.display()))?;
    reap(pid);
    Ok(process_alive(pid).then_some(pid))
}

/// Sends `signal` to BIRD on `node` and waits until it is gone. SIGKILL is a crash: BIRD
/// leaves its kernel routes, and its peers keep its routes for the graceful restart time.
pub fn stop(node: &Node, signal: Signal) -> Result<()> {
    let Some(pid) = pid(node)? else {
        return Ok(());
    };
    let raw = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
    nix::sys::signal::kill(raw, signal)
        .with_context(|| format!("signalling BIRD ({pid}) on {}", node.name))?;
    let started = Instant::now();
    while {
        reap(pid);
        process_alive(pid)
    } {
        if started.elapsed() > SOCKET_TIMEOUT {
            bail!("BIRD ({pid}) on {} did not exit after {signal}", node.name);
        }
        sleep(POLL);
    }
    Ok(())
}
