//! Installing configurations: validation by `bird -p`, atomic replacement, and the reload
//! request, against a stand-in for BIRD's control socket.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use tortie_bgp::{render, ApplyError, ApplyOutcome, BgpPlan, BirdConfig};
use tortie_resources::{AsNumber, LogSeverity};

fn plan(router_id: &str) -> BgpPlan {
    BgpPlan {
        node_name: "node-a".into(),
        router_id: router_id.parse().unwrap(),
        local_as: AsNumber(64512),
        listen_port: 179,
        log_severity: LogSeverity::Info,
        route_reflector_cluster_id: None,
        sessions: vec![],
        exported_blocks: vec!["10.65.1.0/26".parse().unwrap()],
        local_blocks: vec!["10.65.1.0/26".parse().unwrap()],
        export_pools: vec!["10.65.0.0/16".parse().unwrap()],
        warnings: vec![],
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A stand-in for BIRD's control socket: greets, reads one command, answers `reply`, and
/// returns the command it got.
fn fake_bird(socket: &Path, reply: &'static str) -> JoinHandle<String> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(b"0001 BIRD 2.0.12 ready.\n").unwrap();
        let mut command = String::new();
        BufReader::new(stream.try_clone().unwrap())
            .read_line(&mut command)
            .unwrap();
        stream.write_all(reply.as_bytes()).unwrap();
        command
    })
}

fn setup() -> (tempfile::TempDir, BirdConfig) {
    let dir = tempfile::tempdir().unwrap();
    let config = BirdConfig::new(dir.path().join("bird.conf"), dir.path().join("bird.ctl"));
    (dir, config)
}

#[test]
fn writes_once_then_reports_unchanged() {
    if !common::bird_available("writes_once_then_reports_unchanged") {
        return;
    }
    let (dir, config) = setup();
    let text = render(&plan("10.99.0.11"));
    assert_eq!(
        config.apply(&text).unwrap(),
        ApplyOutcome::Written { reloaded: false }
    );
    assert_eq!(std::fs::read_to_string(&config.config_path).unwrap(), text);
    assert_eq!(config.apply(&text).unwrap(), ApplyOutcome::Unchanged);
    assert_eq!(files_in(dir.path()), ["bird.conf"]);
    // Passwords live in this file: only its owner reads it.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config.config_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");
}

#[test]
fn an_invalid_configuration_leaves_the_old_one_in_place() {
    if !common::bird_available("an_invalid_configuration_leaves_the_old_one_in_place") {
        return;
    }
    let (dir, config) = setup();
    let good = render(&plan("10.99.0.11"));
    config.apply(&good).unwrap();
    let bad = good.replace("protocol kernel {", "protocol kernel {\n  no such option;");
    let err = config.apply(&bad).unwrap_err();
    assert!(matches!(err, ApplyError::Invalid { .. }), "{err:?}");
    let text = err.to_string();
    let config_name = config.config_path.display().to_string();
    assert!(
        text.contains(&format!(
            "the new BIRD configuration for {config_name} is invalid"
        )) && text.contains(&format!("{config_name} (new version)"))
            && text.contains("syntax error"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&config.config_path).unwrap(), good);
    assert_eq!(
        files_in(dir.path()),
        ["bird.conf"],
        "the temporary file is removed"
    );
}

#[test]
fn a_missing_bird_binary_is_reported() {
    let (dir, mut config) = setup();
    config.bird_binary = PathBuf::from("/nonexistent/bird");
    let err = config.apply("router id 1.2.3.4;\n").unwrap_err();
    assert!(
        err.to_string().contains("cannot run /nonexistent/bird"),
        "{err}"
    );
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn a_running_bird_is_asked_to_load_the_file() {
    if !common::bird_available("a_running_bird_is_asked_to_load_the_file") {
        return;
    }
    let (_dir, config) = setup();
    let bird = fake_bird(
        &config.socket_path,
        "0002-Reading configuration from bird.conf\n0003 Reconfigured\n",
    );
    assert_eq!(
        config.apply(&render(&plan("10.99.0.11"))).unwrap(),
        ApplyOutcome::Written { reloaded: true }
    );
    assert_eq!(
        bird.join().unwrap(),
        format!("configure \"{}\"\n", config.config_path.display())
    );
}

#[test]
fn a_reload_error_names_the_file() {
    if !common::bird_available("a_reload_error_names_the_file") {
        return;
    }
    let (_dir, config) = setup();
    let _bird = fake_bird(
        &config.socket_path,
        "0002-Reading configuration from bird.conf\n8002 bird.conf:1:1 Out of memory\n",
    );
    let err = config.apply(&render(&plan("10.99.0.11"))).unwrap_err();
    assert!(matches!(err, ApplyError::Reload { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "BIRD did not load {}",
            config.config_path.display()
        )) && text.contains("8002"),
        "{text}"
    );
}

#[test]
fn a_stale_socket_means_bird_is_not_running() {
    if !common::bird_available("a_stale_socket_means_bird_is_not_running") {
        return;
    }
    let (_dir, config) = setup();
    // A socket file nobody listens on, as a killed BIRD leaves behind.
    drop(UnixListener::bind(&config.socket_path).unwrap());
    assert_eq!(
        config.apply(&render(&plan("10.99.0.11"))).unwrap(),
        ApplyOutcome::Written { reloaded: false }
    );
}
