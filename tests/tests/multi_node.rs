//! Pods on different nodes talk through the eBPF dataplane in every encapsulation mode, and the
//! wire shows the mode: plain IPv4, IP-in-IP or VXLAN.
//!
//! Real kernel, real agents, real packets: each test brings up its own lab (namespaces
//! `tortie-t-<test>-<pid>-…`) with the agent and eBPF object from `Artifacts::from_env_or_target`.
//! Nodes run with `net.ipv4.ip_forward=0`, so a packet that crosses from a pod to a pod on
//! another node was forwarded (and encapsulated or decapsulated) by the programs. Captures on
//! the fabric bridges and on the router's external link show what a packet looks like between
//! the hosts. Needs root and tcpdump, iperf3, socat, bpftool; skipped without root (fails under
//! CI).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use tortie_lab::capture::{Captured, Packet, PROTO_ICMP, PROTO_IPIP, PROTO_TCP};
use tortie_lab::harness::{self, KillOnDrop};
use tortie_lab::spec::{VXLAN_PORT, VXLAN_VNI};
use tortie_lab::traffic::{self, IPERF_PORT};
use tortie_lab::{Artifacts, Encap, Lab, LabGuard, LabSpec, Signal, Topology};

/// Every packet that could carry pod traffic between nodes, in any mode.
const WIRE_FILTER: &str = "icmp or ip proto 4 or udp port 4789";
/// Pings per wire-format check: the capture waits for the requests and the replies.
const PINGS: u32 = 3;
/// Upper bound for a capture; it normally ends as soon as it has seen its packets.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(10);
const UDP_PAYLOAD: &[u8] = b"tortie udp round trip across nodes\n";

fn artifacts() -> Artifacts {
    Artifacts::from_env_or_target().unwrap_or_else(|err| panic!("{err}"))
}

/// Unwraps with the whole error chain in the panic message.
fn ok<T>(result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|err| panic!("{err:#}"))
}

/// Brings up a fresh lab `t-<short>-<pid>` shaped by `shape`, after removing stale ones of
/// this test.
fn lab_up(short: &str, nodes: usize, shape: impl FnOnce(LabSpec) -> LabSpec) -> LabGuard {
    harness::sweep_stale_test_labs(short);
    let spec = shape(LabSpec::new(harness::test_lab_name(short), nodes, 1));
    LabGuard::up(&spec, &artifacts()).unwrap_or_else(|err| panic!("lab up failed: {err:#}"))
}

fn pod_ip(lab: &Lab, pod: &str) -> Ipv4Addr {
    lab.pod(pod)
        .unwrap_or_else(|| panic!("lab has no {pod}"))
        .ip
}

/// The node a pod runs on: (name, fabric address, bridge of its segment).
fn node_of(lab: &Lab, pod: &str) -> (String, Ipv4Addr, String) {
    let pod = lab.pod(pod).unwrap_or_else(|| panic!("lab has no {pod}"));
    let node = lab
        .node(&pod.node)
        .unwrap_or_else(|| panic!("lab has no {}", pod.node));
    (node.name.clone(), node.ip, node.bridge())
}

fn counters(lab: &Lab, node: &str) -> BTreeMap<String, u64> {
    ok(lab.counters(node))
}

/// The kernel of no node may be the one forwarding.
fn assert_kernel_does_not_forward(lab: &Lab) {
    for node in lab.nodes() {
        let out = ok(lab.exec(&node.name, &["cat", "/proc/sys/net/ipv4/ip_forward"]));
        ok(traffic::check_success(
            &format!("reading ip_forward in {}", node.name),
            &out,
        ));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "0",
            "{} forwards in the kernel; the test would not prove the eBPF path",
            node.name
        );
    }
}

fn in_pod_pool(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    (a, b) == (10, 65)
}

/// A packet whose outer header carries a pod address: pod traffic sent as is.
fn is_plain_pod_packet(packet: &Packet) -> bool {
    packet
        .outer()
        .is_some_and(|flow| in_pod_pool(flow.src) || in_pod_pool(flow.dst))
}

/// How pod traffic between two nodes must look on the fabric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    Plain,
    Ipip,
    Vxlan,
}

impl Wire {
    /// What a pool with `encap` sends between two nodes, given whether they share a subnet.
    fn expected(encap: Encap, cross_subnet: bool, same_subnet: bool) -> Wire {
        match encap {
            Encap::None => Wire::Plain,
            _ if cross_subnet && same_subnet => Wire::Plain,
            Encap::Ipip => Wire::Ipip,
            Encap::Vxlan => Wire::Vxlan,
        }
    }
}

/// One direction of a ping as it must appear on the wire: pod `src` → pod `dst`, between
/// nodes `src_node` → `dst_node`.
fn seen(
    captured: &Captured,
    wire: Wire,
    (src, dst): (Ipv4Addr, Ipv4Addr),
    (src_node, dst_node): (Ipv4Addr, Ipv4Addr),
) -> bool {
    let carries_pods = |p: &Packet| {
        p.inner()
            .is_some_and(|inner| inner.src == src && inner.dst == dst)
    };
    !captured
        .matching(|p| match wire {
            Wire::Plain => p.is(PROTO_ICMP, src, dst),
            Wire::Ipip => p.is(PROTO_IPIP, src_node, dst_node) && carries_pods(p),
            Wire::Vxlan => {
                p.outer().is_some_and(|outer| {
                    outer.src == src_node
                        && outer.dst == dst_node
                        && outer.dst_port == Some(VXLAN_PORT)
                }) && p.vni == Some(VXLAN_VNI)
                    && carries_pods(p)
            }
        })
        .is_empty()
}

/// Pings pod `a` → pod `b` while capturing on `a`'s segment, and checks that both directions
/// crossed the fabric as `wire` says and in no other form.
fn ping_and_check_wire(lab: &Lab, a: &str, b: &str, wire: Wire) {
    let (ip_a, ip_b) = (pod_ip(lab, a), pod_ip(lab, b));
    let (_, node_a, bridge) = node_of(lab, a);
    let (_, node_b, _) = node_of(lab, b);
    let packets = usize::try_from(2 * PINGS).unwrap_or(usize::MAX);
    let capture = ok(lab.capture(&bridge, WIRE_FILTER, packets, CAPTURE_TIMEOUT));
    let pinged = traffic::ping(lab, a, &ip_b.to_string(), PINGS, &[]);
    let captured = ok(capture.finish().map_err(Into::into));
    if let Err(err) = pinged {
        panic!(
            "{err:#}\ncaptured on {bridge}:\n{}\nagent logs:\n{}",
            captured.text(),
            harness::agent_logs(lab)
        );
    }
    let context = format!(
        "{a} → {b} ({wire:?} expected) on {bridge}:\n{}",
        captured.text()
    );
    assert!(
        seen(&captured, wire, (ip_a, ip_b), (node_a, node_b)),
        "no {wire:?} echo request {ip_a} → {ip_b} between {node_a} and {node_b} on the wire: {context}"
    );
    assert!(
        seen(&captured, wire, (ip_b, ip_a), (node_b, node_a)),
        "no {wire:?} echo reply {ip_b} → {ip_a} between {node_b} and {node_a} on the wire: {context}"
    );
    let strays = captured.matching(|p| match wire {
        Wire::Plain => p.is_ipip() || p.is_udp_port(VXLAN_PORT),
        Wire::Ipip => is_plain_pod_packet(p) || p.is_udp_port(VXLAN_PORT),
        Wire::Vxlan => is_plain_pod_packet(p) || p.is_ipip(),
    });
    assert!(
        strays.is_empty(),
        "packets in another form than {wire:?}: {strays:#?}\nwhole capture: {context}"
    );
}

/// ICMP (with the wire format), TCP and UDP from `a` to `b` on another node.
fn exchange_icmp_tcp_udp(lab: &Lab, a: &str, b: &str, wire: Wire) {
    ping_and_check_wire(lab, a, b, wire);
    let ip_b = pod_ip(lab, b).to_string();
    let bytes = traffic::tcp_stream(lab, a, b, &ip_b, 2, &[]).unwrap_or_else(|err| {
        panic!(
            "TCP {a} → {b}: {err:#}\nagent logs:\n{}",
            harness::agent_logs(lab)
        )
    });
    assert!(bytes > 0, "no TCP bytes arrived {a} → {b}");
    traffic::udp_echo(lab, a, b, &ip_b, UDP_PAYLOAD).unwrap_or_else(|err| {
        panic!(
            "UDP {a} → {b}: {err:#}\nagent logs:\n{}",
            harness::agent_logs(lab)
        )
    });
}

/// The mode tests: a flat lab of two nodes (one pair), or a routed one of three where
/// node-0 and node-2 share segment 0 and node-1 is on segment 1 (a cross-subnet pair and a
/// same-subnet pair). `CrossSubnet` goes with the routed layout.
fn cross_node_traffic(test: &str, short: &str, encap: Encap, topology: Topology) {
    if harness::skip_unless_root(test) {
        return;
    }
    let routed = topology == Topology::Routed;
    let nodes = if routed { 3 } else { 2 };
    let lab = lab_up(short, nodes, |spec| {
        spec.with_encap(encap)
            .with_cross_subnet(routed)
            .with_topology(topology)
    });
    assert_kernel_does_not_forward(&lab);
    let pairs: &[(&str, &str)] = if routed {
        &[("pod-0-0", "pod-1-0"), ("pod-0-0", "pod-2-0")]
    } else {
        &[("pod-0-0", "pod-1-0")]
    };
    for (a, b) in pairs {
        let (_, ip_a, _) = node_of(&lab, a);
        let (_, ip_b, _) = node_of(&lab, b);
        let same_subnet = ip_a.octets()[..3] == ip_b.octets()[..3];
        let wire = Wire::expected(encap, routed, same_subnet);
        exchange_icmp_tcp_udp(&lab, a, b, wire);
    }
}

#[test]
fn native_flat_pods_on_two_nodes_talk_plain() {
    cross_node_traffic(
        "native_flat_pods_on_two_nodes_talk_plain",
        "native",
        Encap::None,
        Topology::Flat,
    );
}

#[test]
fn ipip_flat_pods_on_two_nodes_talk_in_ipip() {
    cross_node_traffic(
        "ipip_flat_pods_on_two_nodes_talk_in_ipip",
        "ipip",
        Encap::Ipip,
        Topology::Flat,
    );
}

#[test]
fn vxlan_flat_pods_on_two_nodes_talk_in_vxlan() {
    cross_node_traffic(
        "vxlan_flat_pods_on_two_nodes_talk_in_vxlan",
        "vxlan",
        Encap::Vxlan,
        Topology::Flat,
    );
}

#[test]
fn ipip_cross_subnet_encapsulates_only_between_subnets() {
    cross_node_traffic(
        "ipip_cross_subnet_encapsulates_only_between_subnets",
        "ipipcs",
        Encap::Ipip,
        Topology::Routed,
    );
}

#[test]
fn vxlan_cross_subnet_encapsulates_only_between_subnets() {
    cross_node_traffic(
        "vxlan_cross_subnet_encapsulates_only_between_subnets",
        "vxlancs",
        Encap::Vxlan,
        Topology::Routed,
    );
}

#[test]
fn spoofed_source_is_dropped_and_counted() {
    if harness::skip_unless_root("spoofed_source_is_dropped_and_counted") {
        return;
    }
    let lab = lab_up("spoof", 2, |spec| spec);
    let (a, b) = ("pod-0-0", "pod-1-0");
    let (ip_a, ip_b) = (pod_ip(&lab, a).to_string(), pod_ip(&lab, b).to_string());
    let spoofed = "10.65.0.99";

    let added = ok(lab.exec(
        a,
        &["ip", "addr", "add", &format!("{spoofed}/32"), "dev", "eth0"],
    ));
    ok(traffic::check_success(
        "adding a second address in pod-0-0",
        &added,
    ));
    let before = counters(&lab, "node-0")
        .get("drop_spoofed_source")
        .copied()
        .unwrap_or(0);

    let out = ok(lab.exec(a, &["ping", "-I", spoofed, "-c", "2", "-W", "1", &ip_b]));
    assert!(
        !out.status.success(),
        "a ping from the spoofed source {spoofed} got replies:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let after = counters(&lab, "node-0")
        .get("drop_spoofed_source")
        .copied()
        .unwrap_or(0);
    assert!(
        after >= before + 2,
        "drop_spoofed_source on node-0 went from {before} to {after}; expected at least 2 more. Counters: {:?}",
        counters(&lab, "node-0")
    );

    // The pod's own address still works: the pings failed for their source, nothing else.
    ok(traffic::ping(&lab, a, &ip_b, 2, &["-I", &ip_a]));
}

#[test]
fn nat_outgoing_round_trip() {
    if harness::skip_unless_root("nat_outgoing_round_trip") {
        return;
    }
    let lab = lab_up("nat", 1, |spec| spec);
    let pod = "pod-0-0";
    let node_ip = lab.nodes()[0].ip;
    let ext_ip = lab.external().ip;
    let ext0 = lab.router().external_iface.clone();
    let only_node_and_ext = |captured: &Captured| {
        let leaked = captured.matching(|p| p.addresses().any(in_pod_pool));
        assert!(
            leaked.is_empty(),
            "pod addresses left the cluster on {ext0} (natOutgoing should have hidden them): {leaked:#?}"
        );
    };

    // ICMP: requests leave with the node's address, replies come back to it.
    let packets = usize::try_from(2 * PINGS).unwrap_or(usize::MAX);
    let capture = ok(lab.capture_in("router", &ext0, "icmp", packets, CAPTURE_TIMEOUT));
    let pinged = traffic::ping(&lab, pod, &ext_ip.to_string(), PINGS, &[]);
    let captured = ok(capture.finish().map_err(Into::into));
    if let Err(err) = pinged {
        panic!(
            "{err:#}\ncaptured on the router's {ext0}:\n{}\nagent log:\n{}",
            captured.text(),
            harness::agent_logs(&lab)
        );
    }
    assert!(
        !captured
            .matching(|p| p.is(PROTO_ICMP, node_ip, ext_ip))
            .is_empty(),
        "no echo request from the node address {node_ip} to {ext_ip} on {ext0}:\n{}",
        captured.text()
    );
    assert!(
        !captured
            .matching(|p| p.is(PROTO_ICMP, ext_ip, node_ip))
            .is_empty(),
        "no echo reply {ext_ip} → {node_ip} on {ext0}:\n{}",
        captured.text()
    );
    only_node_and_ext(&captured);

    // TCP: iperf3 opens two connections (control and data), so four SYN segments.
    let syns = "tcp[tcpflags] & tcp-syn != 0";
    let capture = ok(lab.capture_in("router", &ext0, syns, 4, CAPTURE_TIMEOUT));
    let bytes =
        traffic::tcp_stream(&lab, pod, "ext", &ext_ip.to_string(), 2, &[]).unwrap_or_else(|err| {
            panic!(
                "TCP {pod} → ext: {err:#}\nagent log:\n{}",
                harness::agent_logs(&lab)
            )
        });
    assert!(bytes > 0, "no TCP bytes arrived at the external host");
    let captured = ok(capture.finish().map_err(Into::into));
    assert!(
        !captured
            .matching(|p| p.is(PROTO_TCP, node_ip, ext_ip))
            .is_empty(),
        "no TCP SYN from the node address {node_ip} to {ext_ip} on {ext0}:\n{}",
        captured.text()
    );
    only_node_and_ext(&captured);
}

#[test]
fn host_reaches_remote_pod_and_back() {
    if harness::skip_unless_root("host_reaches_remote_pod_and_back") {
        return;
    }
    let lab = lab_up("hostpod", 2, |spec| spec.with_encap(Encap::Ipip));
    let remote = pod_ip(&lab, "pod-1-0").to_string();
    traffic::ping(&lab, "node-0", &remote, 2, &[]).unwrap_or_else(|err| {
        panic!(
            "node-0 cannot reach a pod on node-1: {err:#}\nagent logs:\n{}",
            harness::agent_logs(&lab)
        )
    });
}

#[test]
fn agent_restart_keeps_cross_node_stream() {
    if harness::skip_unless_root("agent_restart_keeps_cross_node_stream") {
        return;
    }
    let mut lab = lab_up("xrestart", 2, |spec| spec.with_encap(Encap::Vxlan));
    let (a, b) = ("pod-0-0", "pod-1-0");
    let ip_b = pod_ip(&lab, b).to_string();
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
    ok(lab.kill_agent("node-0", Signal::SIGKILL));
    assert!(
        !lab.agent_running("node-0").unwrap_or(true),
        "agent survived SIGKILL"
    );
    lab.start_agent("node-0")
        .unwrap_or_else(|err| panic!("restarting the agent failed: {err:#}"));
    let restarted_after = client_started.elapsed().as_secs_f64();
    assert_ne!(
        old_pid,
        lab.node("node-0").and_then(|n| n.agent_pid),
        "a new agent process should be running"
    );

    let out = ok(client.wait_output(Duration::from_secs(40)));
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
        "no iperf3 interval began after the restart ({restarted_after:.1} s into the 8 s stream); the agent took too long to get ready. Agent logs:\n{}",
        harness::agent_logs(&lab)
    );
    for (start, bytes) in &after_restart {
        assert!(
            *bytes > 0,
            "the interval starting at {start:.1} s, after the agent restart, carried no bytes: {report}\nagent logs:\n{}",
            harness::agent_logs(&lab)
        );
    }
    drop(server);
    ok(traffic::ping(&lab, a, &ip_b, 3, &[]));
}

/// Full-size TCP segments and a don't-fragment ping of exactly the pod MTU both cross: the pod
/// MTU leaves room for the encapsulation, so nothing is black-holed.
fn bulk_tcp_without_black_holing(test: &str, short: &str, encap: Encap) {
    if harness::skip_unless_root(test) {
        return;
    }
    let lab = lab_up(short, 2, |spec| spec.with_encap(encap));
    let (a, b) = ("pod-0-0", "pod-1-0");
    let ip_b = pod_ip(&lab, b).to_string();
    let mtu = lab.pod(a).map(|p| p.mtu).unwrap_or(0);
    assert_eq!(
        mtu,
        1500 - encap.overhead_bytes(),
        "the pod MTU should leave room for {encap}"
    );

    let bytes = traffic::tcp_stream(&lab, a, b, &ip_b, 2, &[]).unwrap_or_else(|err| {
        panic!(
            "bulk TCP {a} → {b}: {err:#}\nagent logs:\n{}",
            harness::agent_logs(&lab)
        )
    });
    assert!(bytes > 0, "no TCP bytes arrived {a} → {b}");

    // 20 bytes of IPv4 and 8 of ICMP header around the payload make a packet of the pod MTU.
    let size = (mtu - 28).to_string();
    traffic::ping(&lab, a, &ip_b, 2, &["-M", "do", "-s", &size]).unwrap_or_else(|err| {
        panic!(
            "a {mtu}-byte packet with DF did not cross {encap}: {err:#}\nagent logs:\n{}",
            harness::agent_logs(&lab)
        )
    });
}

#[test]
fn bulk_tcp_without_black_holing_ipip() {
    bulk_tcp_without_black_holing(
        "bulk_tcp_without_black_holing_ipip",
        "bulkipip",
        Encap::Ipip,
    );
}

#[test]
fn bulk_tcp_without_black_holing_vxlan() {
    bulk_tcp_without_black_holing(
        "bulk_tcp_without_black_holing_vxlan",
        "bulkvxlan",
        Encap::Vxlan,
    );
}
