//! `tortie-agent run --run-bird`: the agent keeps a BIRD running, restarts it with graceful
//! restart recovery when it dies, and takes it down with it.
//!
//! Runs a real BIRD (Debian `bird2`) inside a scratch network namespace entered by the test
//! thread (BIRD inherits it), never in the host's. Needs root; skipped without it or without
//! `bird` (fails under CI, where both are set up).

use std::{
    fs::File,
    os::fd::AsFd,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use nix::sched::{setns, CloneFlags};
use tortie::sync::bird::{BirdSettings, BirdSupervisor};

/// A network namespace for the test, deleted on drop (also when the test panics).
struct ScratchNetns(String);

impl ScratchNetns {
    fn create(name: &str) -> Self {
        // A crashed earlier run may have left it.
        let _ = Command::new("ip").args(["netns", "del", name]).status();
        let status = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .expect("ip netns add");
        assert!(status.success(), "cannot create namespace {name}");
        Self(name.to_string())
    }

    fn enter_on_this_thread(&self) {
        let file = File::open(format!("/run/netns/{}", self.0)).expect("open netns");
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn skip() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root");
    }
    if Command::new("bird").arg("--version").output().is_err() {
        return Some("needs bird (Debian bird2)");
    }
    None
}

/// BIRD's pid and whether it runs with `-R`, found by its control socket in its command line.
fn bird_process(socket: &Path) -> Option<(u32, bool)> {
    let socket = socket.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_ours = args.first().is_some_and(|a| a.ends_with("bird"))
                && args.iter().any(|a| a == &socket);
            let alive = std::fs::read_to_string(entry.path().join("stat"))
                .is_ok_and(|stat| !stat.contains(") Z "));
            (is_ours && alive).then(|| (pid, args.iter().any(|a| a == "-R")))
        })
}

async fn until<T>(what: &str, mut poll: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = poll() {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what}: timed out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_agent_keeps_bird_running_and_recovers_it_after_a_crash() {
    if let Some(reason) = skip() {
        eprintln!("skipping: {reason}");
        return;
    }
    let netns = ScratchNetns::create(&format!("tbird-sup-{}", std::process::id()));
    netns.enter_on_this_thread();
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = BirdSettings {
        config_path: dir.path().join("bird.conf"),
        socket_path: dir.path().join("bird.ctl"),
        bird_binary: PathBuf::from("bird"),
        secrets_dir: None,
        supervise: true,
    };
    let mut supervisor = BirdSupervisor::new(settings.clone(), false);

    // No configuration yet: nothing starts.
    supervisor.tend();
    assert!(bird_process(&settings.socket_path).is_none());

    std::fs::write(
        &settings.config_path,
        "router id 10.255.0.1;\nprotocol device { scan time 10; }\n",
    )
    .expect("config");
    supervisor.tend();
    let (first, recovering) = until("BIRD to start", || bird_process(&settings.socket_path)).await;
    assert!(
        !recovering,
        "a first start with no earlier routes does not recover"
    );

    // A crash: started again, now recovering.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill BIRD");
    let (second, recovering) = until("BIRD to come back", || {
        supervisor.tend();
        bird_process(&settings.socket_path).filter(|(pid, _)| *pid != first)
    })
    .await;
    assert!(recovering, "a restarted BIRD recovers (-R)");

    // BIRD goes with the agent.
    drop(supervisor);
    until("BIRD to stop with the agent", || {
        bird_process(&settings.socket_path)
            .filter(|(pid, _)| *pid == second)
            .is_none()
            .then_some(())
    })
    .await;
}
