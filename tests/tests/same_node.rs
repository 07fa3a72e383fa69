//! Pods on one node talk through the eBPF dataplane, and the lab cleans up after itself.
//!
//! Real kernel, real agent, real packets: each test brings up its own lab (namespaces
//! `tortie-t-<test>-<pid>-…`) with the agent and eBPF object from `Artifacts::from_env_or_target`.
//! Nodes run with `net.ipv4.ip_forward=0`, so any packet that crosses from one pod to another
//! was forwarded by the programs. Needs root; skipped otherwise (fails under CI).

use std::process::Output;
use std::thread::sleep;
use std::time::{Duration, Instant};

use tortie_lab::harness::{self, KillOnDrop};
use tortie_lab::traffic::{self, IPERF_PORT};
use tortie_lab::{cali_iface_name, spec, Artifacts, Lab, LabGuard, LabSpec, Signal};

fn artifacts() -> Artifacts {
    Artifacts::from_env_or_target().unwrap_or_else(|err| panic!("{err}"))
}

/// Brings up a fresh lab `t-<short>-<pid>`, after removing stale ones of this test.
fn lab_up(short: &str, nodes: usize, pods_per_node: usize) -> LabGuard {
    harness::sweep_stale_test_labs(short);
    let spec = LabSpec::new(harness::test_lab_name(short), nodes, pods_per_node);
    LabGuard::up(&spec, &artifacts()).unwrap_or_else(|err| panic!("lab up failed: {err:#}"))
}

/// Unwraps with the whole error chain in the panic message.
fn ok<T>(result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|err| panic!("{err:#}"))
}

fn exec(lab: &Lab, target: &str, cmd: &[&str]) -> Output {
    ok(lab.exec(target, cmd))
}

fn ping(lab: &Lab, from: &str, to: &str, count: u32) {
    ok(traffic::ping(lab, from, to, count, &[]));
}

fn pod_ip(lab: &Lab, pod: &str) -> String {
    lab.pod(pod)
        .unwrap_or_else(|| panic!("lab has no {pod}"))
        .ip
        .to_string()
}

fn node_ip(lab: &Lab, node: &str) -> String {
    lab.node(node)
        .unwrap_or_else(|| panic!("lab has no {node}"))
        .ip
        .to_string()
}

fn agent_log_tail(lab: &Lab, node: &str) -> String {
    lab.node(node)
        .map(|n| tortie_lab::agent::log_tail(&n.log_file, 30))
        .unwrap_or_default()
}

#[test]
fn pods_on_one_node_exchange_icmp_tcp_udp() {
    if harness::skip_unless_root("pods_on_one_node_exchange_icmp_tcp_udp") {
        return;
    }
    let lab = lab_up("icmp", 1, 2);
    let (a, b) = ("pod-0-0", "pod-0-1");
    let (ip_a, ip_b) = (pod_ip(&lab, a), pod_ip(&lab, b));

    // The kernel cannot be the one forwarding.
    let forward = exec(&lab, "node-0", &["cat", "/proc/sys/net/ipv4/ip_forward"]);
    ok(traffic::check_success(
        "reading ip_forward in node-0",
        &forward,
    ));
    assert_eq!(String::from_utf8_lossy(&forward.stdout).trim(), "0");

    // ICMP, both ways.
    ping(&lab, a, &ip_b, 3);
    ping(&lab, b, &ip_a, 3);

    // TCP: a short iperf3 stream from A to B; both ends exit 0.
    let bytes = ok(traffic::tcp_stream(&lab, a, b, &ip_b, 2, &[]));
    assert!(bytes > 0, "no TCP bytes arrived");

    // UDP: one datagram to an echo server in B comes back unchanged.
    ok(traffic::udp_echo(
        &lab,
        a,
        b,
        &ip_b,
        b"tortie udp round trip\n",
    ));

    // Host ↔ pod: the node reaches its pod and the pod reaches the node.
    ping(&lab, "node-0", &ip_a, 3);
    ping(&lab, a, &node_ip(&lab, "node-0"), 3);
}

#[test]
fn agent_sigkill_and_restart_keeps_tcp_stream() {
    if harness::skip_unless_root("agent_sigkill_and_restart_keeps_tcp_stream") {
        return;
    }
    let mut lab = lab_up("restart", 1, 2);
    let (a, b) = ("pod-0-0", "pod-0-1");
    let (ip_a, ip_b) = (pod_ip(&lab, a), pod_ip(&lab, b));

    let port = IPERF_PORT.to_string();
    let server = ok(traffic::iperf3_server(&lab, b));
    let client_started = Instant::now();
    let client = KillOnDrop::new(ok(lab.spawn(
        a,
        &[
            "iperf3", "-c", &ip_b, "-p", &port, "-t", "8", "-i", "1", "-J",
        ],
    )));

    sleep(Duration::from_secs(2));
    let old_pid = lab.node("node-0").and_then(|n| n.agent_pid);
    lab.kill_agent("node-0", Signal::SIGKILL)
        .unwrap_or_else(|err| panic!("{err:#}"));
    assert!(
        !lab.agent_running("node-0").unwrap_or(true),
        "agent survived SIGKILL"
    );
    lab.start_agent("node-0")
        .unwrap_or_else(|err| panic!("restarting the agent failed: {err:#}"));
    let restarted_after = client_started.elapsed().as_secs_f64();
    let new_pid = lab.node("node-0").and_then(|n| n.agent_pid);
    assert_ne!(old_pid, new_pid, "a new agent process should be running");
    assert!(lab.agent_running("node-0").unwrap_or(false));

    let out = client
        .wait_output(Duration::from_secs(40))
        .unwrap_or_else(|err| panic!("iperf3 client: {err:#}"));
    ok(traffic::check_success(
        "iperf3 client across the agent restart",
        &out,
    ));
    let report = ok(traffic::parse_iperf_json(&out));
    assert!(
        ok(traffic::received_bytes(&report)) > 0,
        "no TCP bytes arrived: {report}"
    );

    // The client's clock starts after it connected, so an interval whose start (client time)
    // is at or after `restarted_after` (measured from before the spawn) began after the restart.
    let after_restart = ok(traffic::intervals_from(&report, restarted_after));
    eprintln!("agent ready again {restarted_after:.2} s into the stream; later intervals (start s, bytes): {after_restart:?}");
    assert!(
        !after_restart.is_empty(),
        "no iperf3 interval began after the restart ({restarted_after:.1} s into the 8 s stream); the agent took too long to get ready. Agent log:\n{}",
        agent_log_tail(&lab, "node-0")
    );
    for (start, bytes) in &after_restart {
        assert!(
            *bytes > 0,
            "the interval starting at {start:.1} s, after the agent restart, carried no bytes: {report}\nagent log:\n{}",
            agent_log_tail(&lab, "node-0")
        );
    }
    drop(server);

    ping(&lab, a, &ip_b, 3);
    ping(&lab, b, &ip_a, 3);
}

#[test]
fn down_leaves_nothing() {
    if harness::skip_unless_root("down_leaves_nothing") {
        return;
    }
    // The guard only matters if an assertion fails before the explicit down below.
    let lab = lab_up("down", 1, 2);
    let name = lab.name().to_owned();
    let agent = lab.nodes()[0].clone();
    let pin_dir = spec::lab_pin_dir(&name);
    assert!(
        pin_dir.exists(),
        "the agent should have pinned below {}",
        pin_dir.display()
    );

    Lab::down(&name).unwrap_or_else(|err| panic!("lab down failed: {err:#}"));

    let prefix = spec::netns_prefix(&name);
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("running ip netns list");
    ok(traffic::check_success("ip netns list", &listed));
    let left: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(!pin_dir.exists(), "{} is still there", pin_dir.display());
    assert!(
        !spec::state_dir(&name).exists(),
        "state directory left behind"
    );
    let agent = tortie_lab::agent::AgentProcess::of(&agent).expect("agent pid was recorded");
    assert!(!agent.is_running(), "agent pid {} still runs", agent.pid);

    // A second down of the same lab is a no-op, not an error.
    Lab::down(&name).unwrap_or_else(|err| panic!("second lab down failed: {err:#}"));
}

#[test]
fn cali_name_matches_calico() {
    // printf 'default.pod-0-0' | sha1sum → 24b98c23e2285650ee6f9abe10b1c09f0f389709
    assert_eq!(cali_iface_name("default", "pod-0-0"), "cali24b98c23e22");
    // printf 'default.pod-0-1' | sha1sum → f7982a13476d470fec72bca1c873a798a2829037
    assert_eq!(cali_iface_name("default", "pod-0-1"), "calif7982a13476");
}
