//! Traffic leaving a pod: TC ingress of its host-side `cali*` interface.

use aya_ebpf::programs::TcContext;
use bpf_maps::{iface_flags, route_flags, Counter, IfaceValue};

use crate::{
    arp,
    flow::read_flow,
    forward::{deliver_to_local_workload, to_remote_host, to_remote_workload},
    headers::{ether_type, read_ipv4, ETH_P_ARP, ETH_P_IP},
    maps::{node_config, route_lookup},
    nat, policy,
    verdict::Verdict,
};

/// Decides what happens to a frame the host stack sends into a pod (TC egress of its
/// `cali*` interface): the pod's ingress policy applies; pods on this node and tunnels reach
/// it through the other programs, which redirect past this hook.
#[inline(always)]
pub fn to_workload(ctx: &TcContext) -> Verdict {
    if ether_type(ctx) != Some(ETH_P_IP) {
        return Verdict::Pass(Counter::ToWorkload);
    }
    let Some(ip) = read_ipv4(ctx) else {
        return Verdict::Drop(Counter::DropMalformed);
    };
    if !ip.is_well_formed(ctx.len()) {
        return Verdict::Drop(Counter::DropMalformed);
    }
    let epoch = policy::epoch_of(node_config().as_ref());
    match read_flow(ctx, &ip).and_then(|flow| policy::admit(ctx, &flow, epoch)) {
        Ok(()) => Verdict::Pass(Counter::ToWorkload),
        Err(reason) => Verdict::Drop(reason),
    }
}

/// Decides what happens to a frame the pod behind `ifindex` (described by `iface`) sent.
#[inline(always)]
pub fn from_workload(ctx: &TcContext, ifindex: u32, iface: Option<&IfaceValue>) -> Verdict {
    // Until the agent has programmed an interface, nothing from it is trusted.
    let Some(iface) = iface else {
        return Verdict::Drop(Counter::DropUnknownWorkload);
    };
    if iface.flags & iface_flags::WORKLOAD == 0 {
        return Verdict::Drop(Counter::DropUnknownWorkload);
    }
    match ether_type(ctx) {
        Some(ETH_P_IP) => ipv4_from_workload(ctx, iface),
        Some(ETH_P_ARP) => arp::from_workload(ctx, ifindex, iface),
        None => Verdict::Drop(Counter::DropMalformed),
        // IPv6 and anything else are not routed for pods yet; dropping keeps them from
        // reaching the host unchecked.
        Some(_) => Verdict::Drop(Counter::DropUnsupported),
    }
}

#[inline(always)]
fn ipv4_from_workload(ctx: &TcContext, iface: &IfaceValue) -> Verdict {
    let Some(ip) = read_ipv4(ctx) else {
        return Verdict::Drop(Counter::DropMalformed);
    };
    if !ip.is_well_formed(ctx.len()) {
        return Verdict::Drop(Counter::DropMalformed);
    }
    if iface.flags & iface_flags::HAS_IPV4 == 0 || ip.src != iface.ipv4 {
        return Verdict::Drop(Counter::DropSpoofedSource);
    }
    // Read once: policy needs its epoch, off-node forwarding the rest.
    let config = node_config();
    // Policy (the pod's egress, and the ingress of a destination pod on this node) before
    // any forwarding decision, so no path can skip it.
    let epoch = policy::epoch_of(config.as_ref());
    let admitted = read_flow(ctx, &ip).and_then(|flow| policy::admit(ctx, &flow, epoch));
    if let Err(reason) = admitted {
        return Verdict::Drop(reason);
    }

    let route = route_lookup(ip.dst);
    if let Some(route) = route {
        if route.flags & route_flags::LOCAL_WORKLOAD != 0 {
            return deliver_to_local_workload(ctx, route.ifindex);
        }
        if route.flags & route_flags::LOCAL_HOST != 0 {
            return Verdict::Pass(Counter::PassedToHost);
        }
    }
    // Off-node destinations need the node's own address and uplink.
    let Some(config) = config else {
        return Verdict::Pass(Counter::PassedToHost);
    };
    match route {
        Some(route) if route.flags & route_flags::REMOTE_WORKLOAD != 0 => {
            to_remote_workload(ctx, &route, &config)
        }
        Some(route) if route.flags & route_flags::REMOTE_HOST != 0 => to_remote_host(ctx, &config),
        _ if nat::applies(ip.src, ip.dst) => match nat::outbound(ctx, &ip, &config) {
            Ok(()) => to_remote_host(ctx, &config),
            Err(reason) => Verdict::Drop(reason),
        },
        // A prefix a BGP peer advertised: forwarded here, so it works with the host's IP
        // forwarding off, as on a node that only routes for its pods.
        Some(route) if route.flags & route_flags::EXTERNAL != 0 => to_remote_host(ctx, &config),
        // Everything else is routed (or refused) by the host, as in Calico.
        _ => Verdict::Pass(Counter::PassedToHost),
    }
}
