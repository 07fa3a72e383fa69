//! Pods on one node talk through the eBPF dataplane, and the lab cleans up after itself.
//!
//! Real kernel, real agent, real packets: each test brings up its own lab (namespaces
//! `tortie-t-<test>-<pid>-…`) with the agent and eBPF object from `Artifacts::from_env_or_target`.
//! Nodes run with `net.ipv4.ip_forward=0`, so any packet that crosses from one pod to another
//! was forwarded by the programs. Needs root; skipped otherwise (fails under CI).

use std::io::Write;
use std::process::{Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use tortie_lab::harness::{self, KillOnDrop};
use tortie_lab::{cali_iface_name, spec, Artifacts, Lab, LabGuard, LabSpec, Signal};

const IPERF_PORT: &str = "5201";
const UDP_ECHO_PORT: &str = "5300";

fn artifacts() -> Artifacts {
    Artifacts::from_env_or_target().unwrap_or_else(|err| panic!("{err}"))
}

/// Brings up a fresh lab `t-<short>-<pid>`, after removing stale ones of this test.
fn lab_up(short: &str, nodes: usize, pods_per_node: usize) -> LabGuard {
    harness::sweep_stale_test_labs(short);
    let spec = LabSpec::new(harness::test_lab_name(short), nodes, pods_per_node);
    LabGuard::up(&spec, &artifacts()).unwrap_or_else(|err| panic!("lab up failed: {err:#}"))
}

fn exec(lab: &Lab, target: &str, cmd: &[&str]) -> Output {
    lab.exec(target, cmd)
        .unwrap_or_else(|err| panic!("{err:#}"))
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ping(lab: &Lab, from: &str, to: &str, count: &str) {
    let out = exec(
        lab,
        from,
        &["ping", "-c", count, "-i", "0.2", "-W", "2", to],
    );
    assert_success(&out, &format!("ping {from} → {to}"));
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

/// Starts `iperf3 -s -1` in `pod` and returns once it listens.
fn iperf_server(lab: &Lab, pod: &str) -> KillOnDrop {
    let server = lab
        .spawn(pod, &["iperf3", "-s", "-1", "-p", IPERF_PORT])
        .unwrap_or_else(|err| panic!("{err:#}"));
    let server = KillOnDrop::new(server);
    let filter = format!("sport = :{IPERF_PORT}");
    harness::wait_for_output(lab, pod, &["ss", "-Hltn", &filter], Duration::from_secs(10))
        .unwrap_or_else(|err| panic!("iperf3 server in {pod} did not start: {err:#}"));
    server
}

fn parse_iperf_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "iperf3 -J printed no JSON ({err}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn received_bytes(report: &Value) -> u64 {
    report["end"]["sum_received"]["bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("iperf3 JSON lacks end.sum_received.bytes: {report}"))
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
    assert_success(&forward, "reading ip_forward in node-0");
    assert_eq!(String::from_utf8_lossy(&forward.stdout).trim(), "0");

    // ICMP, both ways.
    ping(&lab, a, &ip_b, "3");
    ping(&lab, b, &ip_a, "3");

    // TCP: a short iperf3 stream from A to B.
    let server = iperf_server(&lab, b);
    let client = exec(
        &lab,
        a,
        &["iperf3", "-c", &ip_b, "-p", IPERF_PORT, "-t", "2", "-J"],
    );
    assert_success(&client, "iperf3 client A → B");
    let report = parse_iperf_json(&client);
    assert!(
        received_bytes(&report) > 0,
        "no TCP bytes arrived: {report}"
    );
    let server_out = server
        .wait_output(Duration::from_secs(10))
        .unwrap_or_else(|err| panic!("iperf3 server: {err:#}"));
    assert_success(&server_out, "iperf3 server in B");

    // UDP: one datagram to an echo server in B comes back unchanged.
    let listen = format!("UDP4-RECVFROM:{UDP_ECHO_PORT}");
    let echo = lab
        .spawn(b, &["socat", "-T", "10", &listen, "EXEC:cat"])
        .unwrap_or_else(|err| panic!("{err:#}"));
    let _echo = KillOnDrop::new(echo);
    let filter = format!("sport = :{UDP_ECHO_PORT}");
    harness::wait_for_output(&lab, b, &["ss", "-Hlun", &filter], Duration::from_secs(10))
        .unwrap_or_else(|err| panic!("UDP echo server in B did not start: {err:#}"));
    let payload = b"tortie udp round trip\n";
    let peer = format!("UDP4:{ip_b}:{UDP_ECHO_PORT}");
    let mut client = lab
        .command(a, &["socat", "-t", "3", "-T", "5", "-", &peer])
        .unwrap_or_else(|err| panic!("{err:#}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting socat in pod A");
    client
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(payload)
        .expect("writing the UDP payload to socat");
    let reply = KillOnDrop::new(client)
        .wait_output(Duration::from_secs(15))
        .unwrap_or_else(|err| panic!("UDP client: {err:#}"));
    assert_success(&reply, "socat UDP client A → B");
    assert_eq!(
        String::from_utf8_lossy(&reply.stdout),
        String::from_utf8_lossy(payload),
        "the UDP echo did not come back unchanged"
    );

    // Host ↔ pod: the node reaches its pod and the pod reaches the node.
    ping(&lab, "node-0", &ip_a, "3");
    ping(&lab, a, &node_ip(&lab, "node-0"), "3");
}

#[test]
fn agent_sigkill_and_restart_keeps_tcp_stream() {
    if harness::skip_unless_root("agent_sigkill_and_restart_keeps_tcp_stream") {
        return;
    }
    let mut lab = lab_up("restart", 1, 2);
    let (a, b) = ("pod-0-0", "pod-0-1");
    let (ip_a, ip_b) = (pod_ip(&lab, a), pod_ip(&lab, b));

    let server = iperf_server(&lab, b);
    let client_started = Instant::now();
    let client = lab
        .spawn(
            a,
            &[
                "iperf3", "-c", &ip_b, "-p", IPERF_PORT, "-t", "8", "-i", "1", "-J",
            ],
        )
        .unwrap_or_else(|err| panic!("{err:#}"));
    let client = KillOnDrop::new(client);

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
    assert_success(&out, "iperf3 client across the agent restart");
    let report = parse_iperf_json(&out);
    assert!(
        received_bytes(&report) > 0,
        "no TCP bytes arrived: {report}"
    );

    // The client's clock starts after it connected, so an interval whose start (client time)
    // is at or after `restarted_after` (measured from before the spawn) began after the restart.
    let intervals = report["intervals"]
        .as_array()
        .unwrap_or_else(|| panic!("iperf3 JSON lacks intervals: {report}"));
    let after_restart: Vec<(f64, u64)> = intervals
        .iter()
        .filter_map(|i| Some((i["sum"]["start"].as_f64()?, i["sum"]["bytes"].as_u64()?)))
        .filter(|&(start, _)| start >= restarted_after)
        .collect();
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

    ping(&lab, a, &ip_b, "3");
    ping(&lab, b, &ip_a, "3");
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
    assert_success(&listed, "ip netns list");
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
