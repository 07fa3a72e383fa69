//! Where a routed IPv4 packet goes next: into a local pod, toward another node (plain or
//! encapsulated), or to the host. Shared by every program that forwards.

use aya_ebpf::programs::TcContext;
use bpf_maps::{route_flags, Counter, NodeConfig, RouteValue};

use crate::{
    headers::{csum_replace16, eth_and, Ipv4Hdr},
    maps::iface_lookup,
    tunnel,
    verdict::Verdict,
};

/// Decrements the TTL as a router does, patching the checksum. `false` if the packet must
/// not be forwarded because its TTL would reach zero.
#[inline(always)]
pub fn decrement_ttl(ip: &mut Ipv4Hdr) -> bool {
    if ip.ttl <= 1 {
        return false;
    }
    let old_word = u16::from_be_bytes([ip.ttl, ip.protocol]);
    ip.ttl -= 1;
    let new_word = u16::from_be_bytes([ip.ttl, ip.protocol]);
    ip.check = csum_replace16(u16::from_be(ip.check), old_word, new_word).to_be();
    true
}

/// Decrements the TTL of the packet's (outermost) IPv4 header.
#[inline(always)]
fn forward_ttl(ctx: &TcContext) -> Result<(), Counter> {
    let (_, ip) = eth_and::<Ipv4Hdr>(ctx).ok_or(Counter::DropMalformed)?;
    // SAFETY: bounds-checked by eth_and.
    if decrement_ttl(unsafe { &mut *ip }) {
        Ok(())
    } else {
        Err(Counter::DropTtlExceeded)
    }
}

/// Rewrites the frame as a router would (MACs, TTL) and hands it straight to the destination
/// pod's `eth0`, skipping the host stack.
#[inline(always)]
pub fn deliver_to_local_workload(ctx: &TcContext, dst_ifindex: u32) -> Verdict {
    let Some(dst) = iface_lookup(dst_ifindex) else {
        // Route outlived its interface for a moment; let the kernel decide.
        return Verdict::Pass(Counter::PassedToHost);
    };
    let Some((eth, ip)) = eth_and::<Ipv4Hdr>(ctx) else {
        return Verdict::Drop(Counter::DropMalformed);
    };
    // SAFETY: both pointers come from one bounds check with no pull after it.
    let (eth, ip) = unsafe { (&mut *eth, &mut *ip) };
    if !decrement_ttl(ip) {
        return Verdict::Drop(Counter::DropTtlExceeded);
    }
    eth.src = dst.host_mac;
    eth.dst = dst.workload_mac;
    Verdict::RedirectPeer {
        ifindex: dst_ifindex,
        counter: Counter::ForwardedLocal,
    }
}

/// Sends a pod's packet to the node that hosts `route`'s block: encapsulated when the pool
/// (and the CrossSubnet decision already folded into the flags) says so, plain otherwise.
#[inline(always)]
pub fn to_remote_workload(ctx: &TcContext, route: &RouteValue, config: &NodeConfig) -> Verdict {
    if let Err(reason) = forward_ttl(ctx) {
        return Verdict::Drop(reason);
    }
    if let Err(reason) = tunnel::encapsulate_for(ctx, route, config) {
        return Verdict::Drop(reason);
    }
    to_fabric(config, Counter::ForwardedRemote)
}

/// Sends a pod's packet out of the uplink without encapsulation (to another node's address).
#[inline(always)]
pub fn to_remote_host(ctx: &TcContext, config: &NodeConfig) -> Verdict {
    match forward_ttl(ctx) {
        Ok(()) => to_fabric(config, Counter::ForwardedRemote),
        Err(reason) => Verdict::Drop(reason),
    }
}

/// Out of the uplink; the kernel's FIB and neighbour tables pick the next hop for the
/// (outer) destination, so routers between subnets work without any state of ours.
#[inline(always)]
pub fn to_fabric(config: &NodeConfig, counter: Counter) -> Verdict {
    Verdict::RedirectNeigh {
        ifindex: config.uplink_ifindex,
        counter,
    }
}

/// Whether `route` is a remote pod block whose traffic is encapsulated.
#[inline(always)]
pub fn is_tunneled_workload(route: &RouteValue) -> bool {
    route.flags & route_flags::REMOTE_WORKLOAD != 0
        && route.flags & (route_flags::TUNNELED_IPIP | route_flags::TUNNELED_VXLAN) != 0
}
