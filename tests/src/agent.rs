//! Starting, signalling and finding the per-node `tortie-agent` processes.
//!
//! An agent runs inside its node namespace (`nsenter --net`, which execs, so the pid we get is
//! the agent's), in its own session so that a terminal's Ctrl-C or the end of `cargo xtask lab
//! up` does not stop it, with stdout and stderr appended to the node's log file. A pid is only
//! trusted while `/proc/<pid>/cmdline` still carries the node's `--pin-root`, so a recycled pid
//! is never signalled.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::artifacts::Artifacts;
use crate::netns::{self, command_line, nsenter_command};
use crate::spec::{Node, NODE_UPLINK};

/// How long an agent may take to create its ready file.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERMed agent may take to exit before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
/// Lines of the agent log shown in errors.
pub const LOG_TAIL_LINES: usize = 20;

const POLL: Duration = Duration::from_millis(50);

/// An agent process operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent is already running for that node.
    #[error("tortie-agent for {node} is already running (pid {pid}); kill it first")]
    AlreadyRunning {
        /// Node name.
        node: String,
        /// Its pid.
        pid: u32,
    },
    /// File system error around the agent (log, ready file).
    #[error("{what} {} for {node}: {source}", path.display())]
    Io {
        /// Node name.
        node: String,
        /// What we were doing.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// The process could not be started.
    #[error("could not start tortie-agent for {node} (`{command}`): {source}")]
    Spawn {
        /// Node name.
        node: String,
        /// The command line.
        command: String,
        /// Why.
        source: io::Error,
    },
    /// The agent exited before it became ready.
    #[error("tortie-agent for {node} exited ({status}) before creating its ready file; last lines of {}:\n{tail}", log.display())]
    ExitedEarly {
        /// Node name.
        node: String,
        /// How it exited.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The agent did not become ready in time (it has been killed).
    #[error("tortie-agent for {node} (pid {pid}) did not create {} within {timeout_s} s and was killed; last lines of {}:\n{tail}", ready.display(), log.display())]
    NotReady {
        /// Node name.
        node: String,
        /// Its pid.
        pid: u32,
        /// The ready file it should have created.
        ready: PathBuf,
        /// The timeout.
        timeout_s: u64,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// A signal could not be sent.
    #[error("sending {signal} to tortie-agent of {node} (pid {pid}) failed: {source}")]
    Signal {
        /// Node name.
        node: String,
        /// Its pid.
        pid: u32,
        /// The signal.
        signal: Signal,
        /// Why.
        source: nix::Error,
    },
    /// The agent survived SIGKILL (stuck in the kernel?).
    #[error("tortie-agent of {node} (pid {pid}) is still running after SIGKILL; check `cat /proc/{pid}/stack`")]
    Unkillable {
        /// Node name.
        node: String,
        /// Its pid.
        pid: u32,
    },
    /// `tortie-agent cleanup` could not run or failed.
    #[error("`{command}` for {node} failed: {detail}")]
    Cleanup {
        /// Node name.
        node: String,
        /// The command line.
        command: String,
        /// Exit status and output, or why it did not start.
        detail: String,
    },
}

/// Starts the agent of `node` and waits until it has created its ready file.
/// Returns its pid. A stale ready file is removed first; on failure no agent is left running.
pub fn start(
    node: &Node,
    artifacts: &Artifacts,
    ready_timeout: Duration,
) -> Result<u32, AgentError> {
    let io_err = |what, path: &Path| {
        let (node, path) = (node.name.clone(), path.to_path_buf());
        move |source| AgentError::Io {
            node,
            what,
            path,
            source,
        }
    };
    match std::fs::remove_file(&node.ready_file) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            return Err(io_err("removing stale ready file", &node.ready_file)(err))
        }
        _ => {}
    }
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log_file)
        .map_err(io_err("opening agent log", &node.log_file))?;
    let log_err = log
        .try_clone()
        .map_err(io_err("opening agent log", &node.log_file))?;

    let mut command = run_command(node, artifacts);
    let line = command_line(&command);
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    writeln!(
        log,
        "=== tortie-lab: starting at unix time {since_epoch}: {line}"
    )
    .map_err(io_err("writing agent log", &node.log_file))?;
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    // The log is a file, not a terminal: ask for plain text.
    if std::env::var_os("NO_COLOR").is_none() {
        command.env("NO_COLOR", "1");
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
    let mut child = command.spawn().map_err(|source| AgentError::Spawn {
        node: node.name.clone(),
        command: line,
        source,
    })?;
    let pid = child.id();

    let started = Instant::now();
    loop {
        if node.ready_file.exists() {
            return Ok(pid);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(AgentError::ExitedEarly {
                node: node.name.clone(),
                status: status.to_string(),
                log: node.log_file.clone(),
                tail: log_tail(&node.log_file, LOG_TAIL_LINES),
            });
        }
        if started.elapsed() >= ready_timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(AgentError::NotReady {
                node: node.name.clone(),
                pid,
                ready: node.ready_file.clone(),
                timeout_s: ready_timeout.as_secs(),
                log: node.log_file.clone(),
                tail: log_tail(&node.log_file, LOG_TAIL_LINES),
            });
        }
        sleep(POLL);
    }
}

/// The `tortie-agent run …` command for `node`, inside its namespace.
pub fn run_command(node: &Node, artifacts: &Artifacts) -> Command {
    let pin_root = node.pin_root.display().to_string();
    let bpf_object = artifacts.bpf_object.display().to_string();
    let endpoints = node.endpoints_file.display().to_string();
    let cluster = node.cluster_file.display().to_string();
    let ready = node.ready_file.display().to_string();
    let mut args = vec![
        "run",
        "--node-name",
        &node.name,
        "--pin-root",
        &pin_root,
        "--bpf-object",
        &bpf_object,
        "--uplink",
        NODE_UPLINK,
        "--ready-file",
        &ready,
        // Each node has its own loopback: the same address on every node.
        "--metrics-addr",
        crate::spec::AGENT_METRICS_ADDR,
    ];
    match &node.etcd_endpoints {
        Some(endpoints) => {
            args.extend(["--datastore-type", "etcdv3", "--etcd-endpoints", endpoints]);
        }
        None => args.extend(["--endpoints-file", &endpoints, "--cluster-file", &cluster]),
    }
    let bird_files = node.bird.as_ref().map(|bird| {
        (
            bird.config.display().to_string(),
            bird.socket.display().to_string(),
        )
    });
    if let Some((config, socket)) = &bird_files {
        args.extend(["--bird-config", config, "--bird-socket", socket]);
    }
    nsenter_command(
        &node.netns,
        artifacts.agent_bin.display().to_string().as_str(),
        &args,
    )
}

/// Runs `tortie-agent cleanup --pin-root <pin-root> --uplink eth0` in the node namespace.
pub fn cleanup(node: &Node, artifacts: &Artifacts) -> Result<(), AgentError> {
    let pin_root = node.pin_root.display().to_string();
    let mut command = nsenter_command(
        &node.netns,
        artifacts.agent_bin.display().to_string().as_str(),
        &["cleanup", "--pin-root", &pin_root, "--uplink", NODE_UPLINK],
    );
    netns::run_checked(format!("agent cleanup on {}", node.name), &mut command)
        .map(drop)
        .map_err(|err| AgentError::Cleanup {
            node: node.name.clone(),
            command: command_line(&command),
            detail: err.to_string(),
        })
}

/// A running (or once running) agent: its node, pin root and pid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentProcess {
    /// Node name, for messages.
    pub node: String,
    /// The agent's `--pin-root`; identifies the process together with the pid.
    pub pin_root: PathBuf,
    /// Its pid.
    pub pid: u32,
}

impl AgentProcess {
    /// The agent last started for `node`, if one was.
    pub fn of(node: &Node) -> Option<Self> {
        node.agent_pid.map(|pid| Self {
            node: node.name.clone(),
            pin_root: node.pin_root.clone(),
            pid,
        })
    }

    /// Whether the pid is alive (not a zombie) and still this node's agent.
    pub fn is_running(&self) -> bool {
        reap(self.pid);
        process_alive(self.pid) && pin_root_of(self.pid).as_deref() == Some(self.pin_root.as_path())
    }

    /// Sends `signal` if the process still is this agent. Returns whether a signal was sent.
    pub fn signal(&self, signal: Signal) -> Result<bool, AgentError> {
        if !self.is_running() {
            return Ok(false);
        }
        match kill(to_pid(self.pid), signal) {
            Ok(()) => Ok(true),
            Err(nix::Error::ESRCH) => Ok(false),
            Err(source) => Err(AgentError::Signal {
                node: self.node.clone(),
                pid: self.pid,
                signal,
                source,
            }),
        }
    }

    /// Waits up to `timeout` for the process to be gone; returns whether it is.
    pub fn wait_gone(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        loop {
            if !self.is_running() {
                return true;
            }
            if started.elapsed() >= timeout {
                return false;
            }
            sleep(POLL);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once the agent is gone.
    pub fn stop(&self, grace: Duration) -> Result<(), AgentError> {
        if !self.signal(Signal::SIGTERM)? || self.wait_gone(grace) {
            return Ok(());
        }
        self.signal(Signal::SIGKILL)?;
        if self.wait_gone(Duration::from_secs(5)) {
            Ok(())
        } else {
            Err(AgentError::Unkillable {
                node: self.node.clone(),
                pid: self.pid,
            })
        }
    }
}

/// Agent processes (`… run … --pin-root <lab_pin_dir>/<node>`) of one lab, found through
/// `/proc`; this finds agents of a lab whose state file was lost in a crash.
pub fn find_agents_below(lab_pin_dir: &Path) -> Vec<AgentProcess> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let args = cmdline(pid)?;
            if !args.iter().any(|arg| arg == "run") {
                return None;
            }
            let pin_root = pin_root_in(&args)?;
            if pin_root.parent() != Some(lab_pin_dir) {
                return None;
            }
            let node = pin_root.file_name()?.to_string_lossy().into_owned();
            Some(AgentProcess {
                node,
                pin_root,
                pid,
            })
        })
        .filter(|agent| process_alive(agent.pid))
        .collect()
}

/// The last `lines` lines of a log file (empty if unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn to_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// Collects the exit status if `pid` is our exited child; harmless otherwise.
pub(crate) fn reap(pid: u32) {
    let _ = waitpid(to_pid(pid), Some(WaitPidFlag::WNOHANG));
}

/// Alive and not a zombie, per `/proc/<pid>/stat`.
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the parenthesised command name, which may itself hold ')'.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

fn pin_root_of(pid: u32) -> Option<PathBuf> {
    pin_root_in(&cmdline(pid)?)
}

fn pin_root_in(args: &[String]) -> Option<PathBuf> {
    args.iter().enumerate().find_map(|(i, arg)| {
        if arg == "--pin-root" {
            args.get(i + 1).map(PathBuf::from)
        } else {
            arg.strip_prefix("--pin-root=").map(PathBuf::from)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_root_is_read_from_either_argument_form() {
        let args: Vec<String> = [
            "tortie-agent",
            "run",
            "--pin-root",
            "/sys/fs/bpf/tortie/a/node-0",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            pin_root_in(&args),
            Some(PathBuf::from("/sys/fs/bpf/tortie/a/node-0"))
        );
        let args = vec!["x".to_owned(), "--pin-root=/p".to_owned()];
        assert_eq!(pin_root_in(&args), Some(PathBuf::from("/p")));
        assert_eq!(pin_root_in(&["x".to_owned()]), None);
    }

    #[test]
    fn this_process_is_alive() {
        assert!(process_alive(std::process::id()));
    }
}
