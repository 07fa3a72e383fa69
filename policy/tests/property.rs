//! The main correctness guard: on random clusters and policies, the compiled maps, looked
//! up as the programs look them up, give exactly the verdict and deciding rule the
//! reference evaluator gives, for many random flows.

mod common;

use std::net::Ipv4Addr;

use common::{random_cluster, Programs, Rng, CIDRS, LOCAL_HOST, REMOTE_HOSTS};
use ipnet::Ipv4Net;
use tortie_policy::{compile, Direction, Evaluator, IdentityAllocator, RuleAllocator};

/// Clusters to try; `TORTIE_POLICY_CASES` raises it for a longer soak.
fn cases() -> u64 {
    std::env::var("TORTIE_POLICY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

/// Addresses worth probing: every pod and node, both sides of every CIDR boundary, random
/// ones near the pods and anywhere.
fn peers(rng: &mut Rng, pods: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = pods.to_vec();
    out.push(LOCAL_HOST);
    out.extend(REMOTE_HOSTS);
    for cidr in CIDRS {
        let net: Ipv4Net = cidr.parse().expect("test CIDR");
        let first = u32::from(net.network());
        let last = u32::from(net.broadcast());
        for addr in [first.wrapping_sub(1), first, last, last.wrapping_add(1)] {
            out.push(Ipv4Addr::from(addr));
        }
    }
    for _ in 0..6 {
        out.push(Ipv4Addr::from(0x0a00_0000 | rng.below(1024) as u32));
        out.push(Ipv4Addr::from(rng.next() as u32));
    }
    out
}

/// Ports worth probing for a protocol: both sides of every port and range the generator
/// writes (ICMP: type and code values), a few of them per probe.
fn ports(rng: &mut Rng, protocol: u8) -> Vec<u16> {
    let (candidates, count): (&[u16], usize) = match protocol {
        6 | 17 => (
            &[
                0, 1, 52, 53, 54, 79, 80, 81, 999, 1000, 1001, 1499, 1500, 1600, 1601, 1999, 2000,
                2001, 5353, 8080, 8443, 9000, 65535,
            ],
            6,
        ),
        1 => (&[8 << 8, (8 << 8) | 1, 0, 1, 0x00ff, 0x0900], 3),
        132 => (&[0, 80, 9000, 65535], 2),
        _ => (&[0], 1),
    };
    let mut out: Vec<u16> = (0..count).map(|_| *rng.pick(candidates)).collect();
    if rng.chance(20) {
        out.push(rng.next() as u16);
    }
    out
}

#[test]
fn compiled_maps_agree_with_the_reference_evaluator() {
    let mut probes = 0u64;
    let mut compiled_errors = 0usize;
    for case in 0..cases() {
        let mut rng = Rng::new(case + 1);
        let inputs = random_cluster(&mut rng);
        let mut identities = IdentityAllocator::new();
        let mut rules = RuleAllocator::new();
        let compiled = compile(&inputs, &mut identities, &mut rules);
        compiled_errors += compiled.errors.len();
        let evaluator = Evaluator::new(&inputs);
        let programs = Programs::new(&compiled);

        let pods: Vec<Ipv4Addr> = inputs.endpoints.iter().map(|e| e.ipv4).collect();
        let peers = peers(&mut rng, &pods);
        for ep in inputs.endpoints.iter() {
            let Some(ifindex) = ep.ifindex else { continue };
            for direction in Direction::BOTH {
                for &peer in &peers {
                    for protocol in [6u8, 17, 1, 132, 47] {
                        for port in ports(&mut rng, protocol) {
                            probes += 1;
                            let expected = evaluator
                                .evaluate(&ep.key, direction, peer, protocol, port)
                                .expect("endpoint exists");
                            let got = programs.verdict(ifindex, direction, peer, protocol, port);
                            assert_eq!(
                                got, expected,
                                "case {case}: {} {direction} peer {peer} protocol {protocol} \
                                 port {port}\ninputs: {inputs:#?}\ncompiled: {compiled:#?}",
                                ep.key
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(probes > 500_000, "only {probes} probes");
    // The generator writes valid policies only.
    assert_eq!(compiled_errors, 0);
}

#[test]
fn recompiling_is_deterministic_and_keeps_numbers() {
    for case in 0..40 {
        let mut rng = Rng::new(1000 + case);
        let inputs = random_cluster(&mut rng);
        let mut identities = IdentityAllocator::new();
        let mut rules = RuleAllocator::new();
        let first = compile(&inputs, &mut identities, &mut rules);
        let second = compile(&inputs, &mut identities, &mut rules);
        assert_eq!(first, second, "case {case}");

        // Fresh allocators on the same inputs number the same way.
        let fresh = compile(
            &inputs,
            &mut IdentityAllocator::new(),
            &mut RuleAllocator::new(),
        );
        assert_eq!(first, fresh, "case {case}");

        // Drop one policy: classes and rules that survive keep their numbers.
        let mut fewer = inputs.clone();
        if !fewer.k8s_network_policies.is_empty() {
            fewer.k8s_network_policies.remove(0);
        } else if !fewer.network_policies.is_empty() {
            fewer.network_policies.remove(0);
        } else {
            fewer.global_network_policies.clear();
        }
        let third = compile(&fewer, &mut identities, &mut rules);
        for (id, signature) in &third.identities {
            if let Some(before) = first.identities.iter().find(|(_, s)| *s == signature) {
                assert_eq!(before.0, id, "case {case}: class {signature:?} renumbered");
            }
        }
        for (id, info) in &third.rules {
            if let Some(before) = first.rules.iter().find(|(_, i)| i.key == info.key) {
                assert_eq!(before.0, id, "case {case}: rule {} renumbered", info.key);
            }
        }
    }
}
