//! The eBPF programs run by the kernel on crafted packets (BPF_PROG_TEST_RUN), against private
//! maps filled through the agent's own calc → sync path. Needs root.

use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf};

use bpf_maps::{program_names, Counter};
use tortie::{
    calc::{desired_state, HostInterface},
    model::{LocalEndpoint, MacAddr},
    sync::test_run::{ProgramRunner, TEST_RUN_IFINDEX},
};

const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
const TC_ACT_REDIRECT: i32 = 7;

const HOST_MAC: [u8; 6] = [0xee; 6];
const POD_A_MAC: [u8; 6] = [0x02, 0x54, 10, 65, 0, 10];
const POD_B_MAC: [u8; 6] = [0x02, 0x54, 10, 65, 0, 11];
const POD_A: [u8; 4] = [10, 65, 0, 10];
const POD_B: [u8; 4] = [10, 65, 0, 11];
const NODE_IP: [u8; 4] = [10, 99, 0, 11];
/// Host-side interface of pod B (it need not exist: redirects are only recorded in test runs).
const POD_B_IFINDEX: u32 = 77;

fn object() -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "BPF_PROG_TEST_RUN tests need root, and CI runs as root"
        );
        eprintln!("skipping: BPF_PROG_TEST_RUN needs root");
        return None;
    }
    let path = std::env::var_os("TORTIE_BPF_OBJECT").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/bpfel-unknown-none/release/dataplane-ebpf")
        },
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-ebpf` (or `cargo xtask test`)",
        path.display()
    );
    Some(path)
}

fn endpoint(name: &str, iface: &str, ip: [u8; 4], mac: [u8; 6]) -> LocalEndpoint {
    LocalEndpoint {
        name: name.into(),
        namespace: "default".into(),
        node: "node-0".into(),
        iface: iface.into(),
        ipv4: Ipv4Addr::from(ip),
        mac: MacAddr(mac),
        labels: BTreeMap::new(),
    }
}

/// A runner whose maps hold pod A on the test-run interface and pod B on another.
fn runner_with_two_pods() -> Option<ProgramRunner> {
    let mut runner = ProgramRunner::load(&object()?).expect("load programs");
    let interfaces = [
        HostInterface {
            name: "cali-a".into(),
            index: TEST_RUN_IFINDEX,
            mac: MacAddr(HOST_MAC),
        },
        HostInterface {
            name: "cali-b".into(),
            index: POD_B_IFINDEX,
            mac: MacAddr(HOST_MAC),
        },
    ];
    let desired = desired_state(
        &[
            endpoint("a", "cali-a", POD_A, POD_A_MAC),
            endpoint("b", "cali-b", POD_B, POD_B_MAC),
        ],
        &interfaces,
        None,
        &[Ipv4Addr::from(NODE_IP)],
    );
    runner.maps.apply(&desired).expect("program maps");
    Some(runner)
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

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ether_type: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(98);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame
}

/// An Ethernet + IPv4 + ICMP echo request from `src` to `dst`.
fn icmp_echo(src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
    let mut frame = ethernet(HOST_MAC, POD_A_MAC, 0x0800);
    let payload = [
        8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b't', b'o', b'r', b't', b'i', b'e', 0, 0,
    ];
    let total_len = (20 + payload.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total_len.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, ttl, 1, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let ip_check = checksum(&ip);
    ip[10..12].copy_from_slice(&ip_check.to_be_bytes());
    let mut icmp = payload.to_vec();
    let icmp_check = checksum(&icmp);
    icmp[2..4].copy_from_slice(&icmp_check.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&icmp);
    frame
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
