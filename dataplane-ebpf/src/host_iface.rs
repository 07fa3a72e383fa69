//! Traffic on the node's uplink: arriving from the fabric (ingress) and leaving the node
//! (egress).

use aya_ebpf::programs::TcContext;
use bpf_maps::{route_flags, Counter};

use crate::{
    flow::read_flow,
    forward::{deliver_to_local_workload, is_tunneled_workload, to_fabric},
    headers::{ether_type, read_ipv4, ETH_P_IP},
    maps::{node_config, route_lookup},
    nat, policy,
    tunnel::{self, Decap},
    verdict::Verdict,
};

/// Whether `addr` is another node of the cluster (a tunnel peer we accept).
#[inline(always)]
fn is_node(addr: [u8; 4]) -> bool {
    route_lookup(addr).is_some_and(|r| r.flags & route_flags::REMOTE_HOST != 0)
}

/// Ingress of the uplink: decapsulate tunnels from known nodes, deliver plain traffic for local
/// pods, undo natOutgoing on replies; everything else belongs to the host.
#[inline(always)]
pub fn from_host_iface(ctx: &TcContext) -> Verdict {
    let Some(config) = node_config() else {
        return Verdict::Pass(Counter::UplinkPassed);
    };
    if ether_type(ctx) != Some(ETH_P_IP) {
        return Verdict::Pass(Counter::UplinkPassed);
    }
    let Some(outer) = read_ipv4(ctx) else {
        return Verdict::Drop(Counter::DropMalformed);
    };
    if !outer.is_well_formed(ctx.len()) {
        return Verdict::Drop(Counter::DropMalformed);
    }
    let ip = match tunnel::decapsulate(ctx, &outer, &config, is_node) {
        Ok(Decap::NotTunnel) => outer,
        Ok(Decap::Done) => match read_ipv4(ctx) {
            Some(inner) if inner.is_well_formed(ctx.len()) => inner,
            _ => return Verdict::Drop(Counter::DropMalformed),
        },
        Err(reason) => return Verdict::Drop(reason),
    };
    if ip.dst == config.host_ipv4 {
        return nat::inbound(ctx, &ip).unwrap_or(Verdict::Pass(Counter::UplinkPassed));
    }
    match route_lookup(ip.dst) {
        Some(route) if route.flags & route_flags::LOCAL_WORKLOAD != 0 => {
            // The destination pod's ingress policy, also for traffic that came encapsulated.
            let admitted =
                read_flow(ctx, &ip).and_then(|flow| policy::admit(ctx, &flow, config.policy_epoch));
            match admitted {
                Ok(()) => deliver_to_local_workload(ctx, route.ifindex),
                Err(reason) => Verdict::Drop(reason),
            }
        }
        _ => Verdict::Pass(Counter::UplinkPassed),
    }
}

/// Egress of the uplink: the host's own packets to pods behind a tunnel are encapsulated here
/// (the kernel routed them to the next-hop node; the program wraps them). Everything else,
/// including what the programs already encapsulated, leaves as it is.
#[inline(always)]
pub fn to_host_iface(ctx: &TcContext) -> Verdict {
    let Some(config) = node_config() else {
        return Verdict::Pass(Counter::UplinkPassed);
    };
    if ether_type(ctx) != Some(ETH_P_IP) {
        return Verdict::Pass(Counter::UplinkPassed);
    }
    let Some(ip) = read_ipv4(ctx) else {
        return Verdict::Pass(Counter::UplinkPassed);
    };
    match route_lookup(ip.dst) {
        Some(route) if is_tunneled_workload(&route) => {
            match tunnel::encapsulate_for(ctx, &route, &config) {
                // The outer destination may sit behind a router: let the kernel pick the hop.
                Ok(()) => to_fabric(&config, Counter::ForwardedRemote),
                Err(reason) => Verdict::Drop(reason),
            }
        }
        _ => Verdict::Pass(Counter::UplinkPassed),
    }
}
