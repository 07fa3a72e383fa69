//! The eBPF programs run by the kernel on crafted packets (BPF_PROG_TEST_RUN), against private
//! maps filled through the agent's own calc → sync path. Needs root.

mod common;

use common::object;

use aya::maps::RingBuf;
use bpf_maps::{
    events::{event_kind, hook, l3, FlowEvent},
    map_names, program_names, Counter,
};
use tortie::{
    model::ClusterConfig,
    packets::{self, checksum, ethernet},
    sync::test_run::{fixture, fixture::*, ProgramRunner},
};

const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
const TC_ACT_REDIRECT: i32 = 7;

/// A runner programmed as node-0 of the fixture cluster.
fn runner_for(cluster: &ClusterConfig) -> Option<ProgramRunner> {
    let mut runner = ProgramRunner::load(&object()?).expect("load programs");
    let desired = fixture::desired(cluster).expect("fixture dataplane");
    runner.maps.apply(&desired).expect("program maps");
    Some(runner)
}

fn cluster(ipip_mode: &str, vxlan_mode: &str) -> ClusterConfig {
    fixture::cluster(ipip_mode, vxlan_mode).expect("fixture cluster")
}

fn runner_with_two_pods() -> Option<ProgramRunner> {
    runner_for(&cluster("Never", "Never"))
}

fn counter(runner: &ProgramRunner, which: Counter) -> u64 {
    runner
        .maps
        .counters()
        .expect("read counters")
        .into_iter()
        .find(|(c, _)| *c == which)
        .map_or(0, |(_, n)| n)
}

fn icmp_echo(src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
    icmp(8, src, dst, ttl)
}

fn icmp(icmp_type: u8, src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
    packets::icmp((HOST_MAC, POD_A_MAC), icmp_type, src, dst, ttl)
}

fn arp_request(sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut frame = ethernet([0xff; 6], POD_A_MAC, 0x0806);
    frame.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&POD_A_MAC);
    frame.extend_from_slice(&sender_ip);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target_ip);
    frame
}

#[test]
fn pod_to_local_pod_is_redirected_with_router_rewrites() {
    let Some(mut runner) = runner_with_two_pods() else {
        return;
    };
    let packet = icmp_echo(POD_A, POD_B, 64);
    let out = runner
        .run(program_names::FROM_WORKLOAD, &packet, 1)
        .unwrap();

    assert_eq!(out.action, TC_ACT_REDIRECT);
    assert_eq!(&out.packet[0..6], &POD_B_MAC, "destination MAC is pod B's");
    assert_eq!(&out.packet[6..12], &HOST_MAC, "source MAC is the host side");
    assert_eq!(out.packet[14 + 8], 63, "TTL decremented");
    assert_eq!(
        checksum(&out.packet[14..34]),
        0,
        "IPv4 header checksum still valid"
    );
    assert_eq!(&out.packet[34..], &packet[34..], "payload untouched");
    assert_eq!(counter(&runner, Counter::ForwardedLocal), 1);
}

#[test]
fn pod_to_host_goes_to_the_kernel_unchanged() {
    let Some(mut runner) = runner_with_two_pods() else {
        return;
    };
    let packet = icmp_echo(POD_A, NODE_IP, 64);
    let out = runner
        .run(program_names::FROM_WORKLOAD, &packet, 1)
        .unwrap();
    assert_eq!(out.action, TC_ACT_OK);
    assert_eq!(out.packet, packet);
    assert_eq!(counter(&runner, Counter::PassedToHost), 1);
}

#[test]
fn arp_for_the_gateway_is_answered_with_the_host_mac() {
    let Some(mut runner) = runner_with_two_pods() else {
        return;
    };
    let out = runner
        .run(
            program_names::FROM_WORKLOAD,
            &arp_request(POD_A, [169, 254, 1, 1]),
            1,
        )
        .unwrap();
    assert_eq!(
        out.action, TC_ACT_REDIRECT,
        "reply sent back out of the same interface"
    );
    let p = &out.packet;
    assert_eq!(&p[0..6], &POD_A_MAC);
    assert_eq!(&p[6..12], &HOST_MAC);
    assert_eq!(&p[20..22], &[0, 2], "ARP reply");
    assert_eq!(&p[22..28], &HOST_MAC, "sender MAC");
    assert_eq!(&p[28..32], &[169, 254, 1, 1], "sender IP is the gateway");
    assert_eq!(&p[32..38], &POD_A_MAC, "target MAC");
    assert_eq!(&p[38..42], &POD_A, "target IP");
    assert_eq!(counter(&runner, Counter::ArpReplied), 1);
}

#[test]
fn spoofed_source_is_dropped_and_counted() {
    let Some(mut runner) = runner_with_two_pods() else {
        return;
    };
    let out = runner
        .run(
            program_names::FROM_WORKLOAD,
            &icmp_echo([10, 65, 0, 99], POD_B, 64),
            1,
        )
        .unwrap();
    assert_eq!(out.action, TC_ACT_SHOT);
    assert_eq!(counter(&runner, Counter::DropSpoofedSource), 1);
    assert_eq!(counter(&runner, Counter::ForwardedLocal), 0);

    // The drop is reported in the events ring buffer, with what `tortiectl flows` shows.
    let map = runner.map_mut(map_names::EVENTS).unwrap();
    let mut ring = RingBuf::try_from(map).unwrap();
    let item = ring.next().expect("a drop event");
    assert_eq!(item.len(), std::mem::size_of::<FlowEvent>());
    // SAFETY: a FlowEvent's bytes, length checked above.
    let event: FlowEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
    assert_eq!(event.kind, event_kind::DROP);
    assert_eq!(event.l3, l3::IPV4);
    assert_eq!(event.hook, hook::FROM_WORKLOAD);
    assert_eq!(event.reason, Counter::DropSpoofedSource as u32);
    assert_eq!((event.src, event.dst), ([10, 65, 0, 99], POD_B));
    assert_eq!(
        (event.protocol, event.dst_port),
        (1, 8 << 8),
        "ICMP echo request"
    );
    drop(item);
    assert!(ring.next().is_none(), "one drop, one event");
}

#[test]
fn expiring_ttl_is_dropped_not_forwarded() {
    let Some(mut runner) = runner_with_two_pods() else {
        return;
    };
    let out = runner
        .run(program_names::FROM_WORKLOAD, &icmp_echo(POD_A, POD_B, 1), 1)
        .unwrap();
    assert_eq!(out.action, TC_ACT_SHOT);
    assert_eq!(counter(&runner, Counter::DropTtlExceeded), 1);
}

#[test]
fn malformed_packets_are_dropped_and_counted() {
    let Some(mut runner) = runner_with_two_pods() else {
        return;
    };
    let good = icmp_echo(POD_A, POD_B, 64);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // The kernel's test runner itself refuses IPv4 frames shorter than a bare IPv4 header, so
    // truncation is exercised through lengths and options that point past the frame.
    let mut options_past_end = good[..34].to_vec();
    options_past_end[14] = 0x4f;
    options_past_end[16..18].copy_from_slice(&20u16.to_be_bytes());
    cases.push(("IHL claims 60 bytes in a 20-byte packet", options_past_end));
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    cases.push(("IHL below 5", bad_ihl));
    let mut bad_version = good.clone();
    bad_version[14] = 0x65;
    cases.push(("version 6 in an IPv4 ethertype", bad_version));
    let mut long_total = good.clone();
    long_total[16..18].copy_from_slice(&1500u16.to_be_bytes());
    cases.push(("total length beyond the frame", long_total));
    let mut short_total = good.clone();
    short_total[16..18].copy_from_slice(&10u16.to_be_bytes());
    cases.push(("total length below the header", short_total));
    let mut arp_bad = arp_request(POD_A, [169, 254, 1, 1]);
    arp_bad[18] = 8;
    cases.push(("ARP with 8-byte hardware addresses", arp_bad));
    cases.push((
        "ARP cut short",
        arp_request(POD_A, [169, 254, 1, 1])[..30].to_vec(),
    ));

    for (what, packet) in &cases {
        let out = runner
            .run(program_names::FROM_WORKLOAD, packet, 1)
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_eq!(out.action, TC_ACT_SHOT, "{what} was not dropped");
    }
    assert_eq!(counter(&runner, Counter::DropMalformed), cases.len() as u64);
    assert_eq!(counter(&runner, Counter::ForwardedLocal), 0);
}

#[test]
fn traffic_from_an_unprogrammed_interface_is_dropped() {
    let Some(object) = object() else { return };
    let mut runner = ProgramRunner::load(&object).unwrap();
    let out = runner
        .run(
            program_names::FROM_WORKLOAD,
            &icmp_echo(POD_A, POD_B, 64),
            1,
        )
        .unwrap();
    assert_eq!(out.action, TC_ACT_SHOT);
    assert_eq!(counter(&runner, Counter::DropUnknownWorkload), 1);
}

#[test]
fn ipv6_from_pods_is_dropped_as_unsupported() {
    let Some(mut runner) = runner_with_two_pods() else {
        return;
    };
    let mut frame = ethernet(HOST_MAC, POD_A_MAC, 0x86dd);
    frame.extend_from_slice(&[0x60; 40]);
    let out = runner.run(program_names::FROM_WORKLOAD, &frame, 1).unwrap();
    assert_eq!(out.action, TC_ACT_SHOT);
    assert_eq!(counter(&runner, Counter::DropUnsupported), 1);
}

#[test]
fn native_mode_sends_remote_pods_out_of_the_uplink_unchanged_but_ttl() {
    let Some(mut runner) = runner_with_two_pods() else {
        return;
    };
    let packet = icmp_echo(POD_A, REMOTE_POD, 64);
    let out = runner
        .run(program_names::FROM_WORKLOAD, &packet, 1)
        .unwrap();
    assert_eq!(out.action, TC_ACT_REDIRECT);
    assert_eq!(out.packet.len(), packet.len(), "no encapsulation");
    assert_eq!(
        &out.packet[14 + 12..14 + 20],
        &[POD_A, REMOTE_POD].concat()[..]
    );
    assert_eq!(out.packet[14 + 8], 63);
    assert_eq!(checksum(&out.packet[14..34]), 0);
    assert_eq!(counter(&runner, Counter::ForwardedRemote), 1);
}

#[test]
fn ipip_mode_wraps_pod_traffic_in_an_outer_header_between_nodes() {
    let Some(mut runner) = runner_for(&cluster("Always", "Never")) else {
        return;
    };
    let packet = icmp_echo(POD_A, REMOTE_POD, 64);
    let out = runner
        .run(program_names::FROM_WORKLOAD, &packet, 1)
        .unwrap();
    assert_eq!(out.action, TC_ACT_REDIRECT);
    let p = &out.packet;
    assert_eq!(p.len(), packet.len() + 20);
    assert_eq!(&p[12..14], &[0x08, 0x00]);
    let outer = &p[14..34];
    assert_eq!(outer[0], 0x45);
    assert_eq!(outer[9], 4, "protocol IPIP");
    assert_eq!(&outer[12..16], &NODE_IP, "outer source is this node");
    assert_eq!(
        &outer[16..20],
        &REMOTE_NODE,
        "outer destination is the pod's node"
    );
    assert_eq!(
        u16::from_be_bytes([outer[2], outer[3]]) as usize,
        p.len() - 14
    );
    assert_eq!(checksum(outer), 0, "outer checksum valid");
    let inner = &p[34..54];
    assert_eq!(&inner[12..20], &[POD_A, REMOTE_POD].concat()[..]);
    assert_eq!(inner[8], 63, "inner TTL decremented once");
    assert_eq!(checksum(inner), 0);
    assert_eq!(counter(&runner, Counter::Encapsulated), 1);
}

#[test]
fn vxlan_mode_builds_udp_4789_with_vni_4096() {
    let Some(mut runner) = runner_for(&cluster("Never", "Always")) else {
        return;
    };
    let packet = icmp_echo(POD_A, REMOTE_POD, 64);
    let out = runner
        .run(program_names::FROM_WORKLOAD, &packet, 1)
        .unwrap();
    assert_eq!(out.action, TC_ACT_REDIRECT);
    let p = &out.packet;
    assert_eq!(p.len(), packet.len() + 50);
    let outer = &p[14..34];
    assert_eq!(outer[9], 17, "UDP");
    assert_eq!(&outer[16..20], &REMOTE_NODE);
    assert_eq!(checksum(outer), 0);
    let udp = &p[34..42];
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
    assert!(
        u16::from_be_bytes([udp[0], udp[1]]) >= 32768,
        "source port from the flow hash range"
    );
    assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, p.len() - 34);
    let vxlan = &p[42..50];
    assert_eq!(
        vxlan,
        &[0x08, 0, 0, 0, 0x00, 0x10, 0x00, 0],
        "I flag and VNI 4096"
    );
    let inner_eth = &p[50..64];
    assert_eq!(&inner_eth[0..6], &REMOTE_VTEP_MAC, "remote VTEP MAC");
    assert_eq!(&inner_eth[6..12], &UPLINK_MAC);
    assert_eq!(&p[64 + 12..64 + 20], &[POD_A, REMOTE_POD].concat()[..]);
}

fn wrap_ipip(outer_src: [u8; 4], inner: &[u8]) -> Vec<u8> {
    packets::ipip((UPLINK_MAC, PEER_MAC), outer_src, NODE_IP, inner)
}

#[test]
fn ipip_from_a_known_node_is_decapsulated_into_the_pod() {
    let Some(mut runner) = runner_for(&cluster("Always", "Never")) else {
        return;
    };
    let inner = icmp_echo(REMOTE_POD, POD_B, 63);
    let out = runner
        .run(
            program_names::FROM_HOST_IFACE,
            &wrap_ipip(REMOTE_NODE, &inner),
            1,
        )
        .unwrap();
    assert_eq!(out.action, TC_ACT_REDIRECT);
    assert_eq!(out.packet.len(), inner.len());
    assert_eq!(&out.packet[0..6], &POD_B_MAC);
    assert_eq!(
        &out.packet[14 + 12..14 + 20],
        &[REMOTE_POD, POD_B].concat()[..]
    );
    assert_eq!(out.packet[14 + 8], 62);
    assert_eq!(counter(&runner, Counter::Decapsulated), 1);
}

#[test]
fn ipip_from_an_unknown_source_is_dropped_and_counted() {
    let Some(mut runner) = runner_for(&cluster("Always", "Never")) else {
        return;
    };
    let inner = icmp_echo(REMOTE_POD, POD_B, 63);
    let out = runner
        .run(
            program_names::FROM_HOST_IFACE,
            &wrap_ipip([10, 99, 0, 66], &inner),
            1,
        )
        .unwrap();
    assert_eq!(out.action, TC_ACT_SHOT);
    assert_eq!(counter(&runner, Counter::DropUnknownTunnelSource), 1);
    assert_eq!(counter(&runner, Counter::ForwardedLocal), 0);
}

#[test]
fn vxlan_from_a_known_node_is_decapsulated_into_the_pod() {
    let Some(mut runner) = runner_for(&cluster("Never", "Always")) else {
        return;
    };
    let inner = icmp_echo(REMOTE_POD, POD_B, 63);
    let arriving = packets::vxlan(
        (UPLINK_MAC, PEER_MAC),
        REMOTE_NODE,
        NODE_IP,
        4789,
        4096,
        &inner,
    );
    let out = runner
        .run(program_names::FROM_HOST_IFACE, &arriving, 1)
        .unwrap();
    assert_eq!(out.action, TC_ACT_REDIRECT);
    assert_eq!(out.packet.len(), inner.len(), "50 bytes of VXLAN removed");
    assert_eq!(&out.packet[0..6], &POD_B_MAC);
    assert_eq!(
        &out.packet[14 + 12..14 + 20],
        &[REMOTE_POD, POD_B].concat()[..]
    );
    assert_eq!(counter(&runner, Counter::Decapsulated), 1);

    let wrong_vni = packets::vxlan(
        (UPLINK_MAC, PEER_MAC),
        REMOTE_NODE,
        NODE_IP,
        4789,
        7,
        &inner,
    );
    let out = runner
        .run(program_names::FROM_HOST_IFACE, &wrong_vni, 1)
        .unwrap();
    assert_eq!(out.action, TC_ACT_SHOT);
    assert_eq!(counter(&runner, Counter::DropWrongVni), 1);
}

#[test]
fn nat_outgoing_translates_the_request_and_restores_the_reply() {
    let Some(mut runner) = runner_with_two_pods() else {
        return;
    };
    let out = runner
        .run(
            program_names::FROM_WORKLOAD,
            &icmp_echo(POD_A, EXTERNAL, 64),
            1,
        )
        .unwrap();
    assert_eq!(out.action, TC_ACT_REDIRECT);
    let p = &out.packet;
    assert_eq!(&p[14 + 12..14 + 16], &NODE_IP, "source is the node");
    assert_eq!(&p[14 + 16..14 + 20], &EXTERNAL);
    assert_eq!(checksum(&p[14..34]), 0, "IPv4 checksum valid");
    assert_eq!(checksum(&p[34..]), 0, "ICMP checksum valid");
    let nat_id = u16::from_be_bytes([p[38], p[39]]);
    assert!(nat_id >= 61000, "identifier {nat_id} from the NAT range");
    assert_eq!(counter(&runner, Counter::NatOutgoing), 1);

    // The reply comes back to the node with the translated identifier.
    let mut reply = icmp(0, EXTERNAL, NODE_IP, 60);
    reply[38..40].copy_from_slice(&nat_id.to_be_bytes());
    reply[36..38].copy_from_slice(&[0, 0]);
    let check = checksum(&reply[34..]);
    reply[36..38].copy_from_slice(&check.to_be_bytes());
    let back = runner
        .run(program_names::FROM_HOST_IFACE, &reply, 1)
        .unwrap();
    assert_eq!(back.action, TC_ACT_REDIRECT, "delivered to the pod");
    let b = &back.packet;
    assert_eq!(&b[0..6], &POD_A_MAC);
    assert_eq!(&b[14 + 16..14 + 20], &POD_A, "destination restored");
    assert_eq!(&b[38..40], &[0x12, 0x34], "identifier restored");
    assert_eq!(checksum(&b[14..34]), 0);
    assert_eq!(checksum(&b[34..]), 0);
}

#[test]
fn traffic_to_the_node_itself_is_not_translated() {
    let Some(mut runner) = runner_with_two_pods() else {
        return;
    };
    let reply = icmp(0, EXTERNAL, NODE_IP, 60);
    let out = runner
        .run(program_names::FROM_HOST_IFACE, &reply, 1)
        .unwrap();
    assert_eq!(
        out.action, TC_ACT_OK,
        "no NAT entry: the host's own traffic"
    );
    assert_eq!(out.packet, reply);
}
