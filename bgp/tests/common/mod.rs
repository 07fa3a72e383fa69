//! Helpers for tests that run real BIRD daemons: skip checks, network namespaces and BIRD
//! processes that clean up after themselves, even when a test panics.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `bird` is installed; prints why the test is skipped when it is not.
pub fn bird_available(test: &str) -> bool {
    match Command::new("bird").arg("--version").output() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIP {test}: cannot run bird ({e}): install BIRD 2 (apt-get install bird2)");
            false
        }
    }
}

/// Whether the test can create namespaces and run BIRD; prints why not.
pub fn root_and_bird(test: &str) -> bool {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        });
    if uid.as_deref() != Some("0") {
        eprintln!("SKIP {test}: needs root (network namespaces and BIRD); run as root");
        return false;
    }
    bird_available(test)
}

/// Runs a command, panicking with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A network namespace, deleted (with every process in it) when dropped. Names start with
/// `tbgp-`; creating one first removes a leftover of the same name from a crashed run.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: &str) -> Netns {
        assert!(
            name.starts_with("tbgp-"),
            "test namespaces are named tbgp-*"
        );
        remove_netns(name);
        run("ip", &["netns", "add", name]);
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove_netns(&self.name);
    }
}

/// Kills what runs in a namespace of ours, then deletes it; nothing when it does not exist.
fn remove_netns(name: &str) {
    let exists = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name))
        })
        .unwrap_or(false);
    if !exists {
        return;
    }
    if let Ok(output) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).status();
}

/// A scratch directory with a fixed name under the temporary directory, removed when
/// dropped; creating it first removes a leftover from a crashed run.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn create(name: &str) -> TestDir {
        assert!(
            name.starts_with("tbgp-"),
            "test directories are named tbgp-*"
        );
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test directory");
        TestDir { path }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Joins two namespaces with a veth pair and addresses both ends.
pub fn veth(a: (&Netns, &str, &str), b: (&Netns, &str, &str)) {
    let ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)) = (a, b);
    // Created directly inside the namespaces: the root namespace is never touched.
    run(
        "ip",
        &[
            "link", "add", if_a, "netns", &ns_a.name, "type", "veth", "peer", "name", if_b,
            "netns", &ns_b.name,
        ],
    );
    for (ns, iface, addr) in [(ns_a, if_a, addr_a), (ns_b, if_b, addr_b)] {
        ns.ip(&["addr", "add", addr, "dev", iface]);
        ns.ip(&["link", "set", iface, "up"]);
    }
}

/// A BIRD daemon running in a namespace, killed when dropped.
pub struct Bird {
    child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Bird {
    /// Starts `bird -f` in `ns` with the configuration `config`; its control socket, pid
    /// file and log go next to the configuration.
    pub fn start(ns: &Netns, config: &Path) -> Bird {
        let dir = config.parent().expect("the config is in a directory");
        let socket = dir.join("bird.ctl");
        let log = dir.join("bird.log");
        let log_file = File::create(&log).expect("create the BIRD log");
        // `ip netns exec` execs BIRD in place, so the child is BIRD itself.
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "bird", "-f", "-c"])
            .arg(config)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.join("bird.pid"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log file"))
            .stderr(log_file)
            .spawn()
            .expect("start BIRD");
        let bird = Bird { child, socket, log };
        wait_until(Duration::from_secs(10), "BIRD's control socket", || {
            bird.socket.exists().then_some(())
        });
        bird
    }

    /// What BIRD logged so far, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 200 ms until it returns a value, or panics after `timeout` naming
/// `what`.
pub fn wait_until<T>(timeout: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    poll(timeout, check).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls `check` every 200 ms until it returns a value; `None` after `timeout`.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
