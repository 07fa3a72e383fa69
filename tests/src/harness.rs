//! Helpers for tests that build labs.

use std::io::Read;
use std::process::{Child, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::lab::Lab;
use crate::spec;
use crate::state;

/// Whether the current user is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns `true` when the caller should skip because it is not root: prints
/// "skipping: needs root". Under CI (`$CI` set) it panics instead, because there a skipped
/// end-to-end test would hide a broken setup.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test} needs root (it creates network namespaces and loads eBPF programs), and CI must run it as root");
    }
    eprintln!("{test}: skipping: needs root");
    true
}

/// A lab name unique to this test process: `t-<short>-<pid>`.
pub fn test_lab_name(short: &str) -> String {
    format!("t-{short}-{}", std::process::id())
}

/// Removes labs `t-<short>-<pid>` left by test processes that no longer run (a run killed
/// before its guards could clean up). Failures are printed and otherwise ignored.
pub fn sweep_stale_test_labs(short: &str) {
    let prefix = format!("t-{short}-");
    let mut names: Vec<String> = state::list_labs();
    if let Ok(entries) = std::fs::read_dir(bpf_maps::pins::DEFAULT_ROOT) {
        names.extend(
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok()),
        );
    }
    if let Ok(namespaces) = crate::netns::list_netns() {
        let ns_prefix = format!("{}{prefix}", spec::NETNS_PREFIX);
        names.extend(namespaces.iter().filter_map(|ns| {
            let pid: String = ns
                .strip_prefix(&ns_prefix)?
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            Some(format!("{prefix}{pid}"))
        }));
    }
    names.sort();
    names.dedup();
    for name in names {
        let Some(pid) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            if let Err(err) = Lab::down(&name) {
                eprintln!("removing stale test lab {name} failed: {err:#}");
            }
        }
    }
}

/// A background process (an iperf3 server, a client under test) that is killed and reaped
/// when dropped, so a failing test leaves nothing running.
#[derive(Debug)]
pub struct KillOnDrop {
    child: Option<Child>,
}

impl KillOnDrop {
    /// Guards `child`.
    pub fn new(child: Child) -> Self {
        Self { child: Some(child) }
    }

    /// Its pid.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits up to `timeout` for the process to exit and returns its status and output
    /// (stdout/stderr are whatever was piped). On timeout the process is killed and the error
    /// shows what it printed.
    pub fn wait_output(mut self, timeout: Duration) -> Result<Output> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("process already waited for"))?;
        let stdout = child.stdout.take().map(spawn_reader);
        let stderr = child.stderr.take().map(spawn_reader);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().context("waiting for a child process")? {
                break Some(status);
            }
            if started.elapsed() >= timeout {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let collect = |reader: Option<JoinHandle<Vec<u8>>>| {
            reader
                .map(|r| r.join().unwrap_or_default())
                .unwrap_or_default()
        };
        let (stdout, stderr) = (collect(stdout), collect(stderr));
        match status {
            Some(status) => Ok(Output {
                status,
                stdout,
                stderr,
            }),
            None => bail!(
                "process did not exit within {} s and was killed; stdout: {}; stderr: {}",
                timeout.as_secs(),
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            ),
        }
    }
}

fn spawn_reader(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `cmd` in `target` until it exits 0 with non-empty output, for up to `timeout`;
/// e.g. `ss -Hltn sport = :5201` to wait for a server to listen.
pub fn wait_for_output(lab: &Lab, target: &str, cmd: &[&str], timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let out = lab.exec(target, cmd)?;
        if out.status.success() && !out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            bail!(
                "`{}` in {target} printed nothing within {} s (stderr: {})",
                cmd.join(" "),
                timeout.as_secs(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last lines of every agent's log of `lab`, one section per node, for failure messages.
pub fn agent_logs(lab: &Lab) -> String {
    lab.nodes()
        .iter()
        .map(|node| {
            format!(
                "--- {} ---\n{}",
                node.name,
                crate::agent::log_tail(&node.log_file, 15)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Panics, with the failed pairs and the agents' logs, unless every pod pair of `lab` pings.
pub fn assert_all_pods_talk(lab: &Lab) {
    let failed: Vec<_> = lab
        .connectivity_matrix()
        .into_iter()
        .filter(|(_, _, ok)| !ok)
        .collect();
    assert!(
        failed.is_empty(),
        "pings failed: {failed:?}\n{}",
        agent_logs(lab)
    );
}
