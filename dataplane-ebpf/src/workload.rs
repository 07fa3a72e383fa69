//! Traffic leaving a pod: TC ingress of its host-side `cali*` interface.

use aya_ebpf::programs::TcContext;
use bpf_maps::{iface_flags, route_flags, Counter, IfaceValue};

use crate::{
    arp,
    headers::{csum_replace16, eth_and, linear, EthHdr, Ipv4Hdr, ETH_HLEN, ETH_P_ARP, ETH_P_IP},
    maps::{iface_lookup, route_lookup},
    verdict::Verdict,
};

/// Decides what happens to a frame the pod behind `ifindex` sent.
#[inline(always)]
pub fn from_workload(ctx: &TcContext, ifindex: u32) -> Verdict {
    // Until the agent has programmed an interface, nothing from it is trusted.
    let Some(iface) = iface_lookup(ifindex) else {
        return Verdict::Drop(Counter::DropUnknownWorkload);
    };
    if iface.flags & iface_flags::WORKLOAD == 0 {
        return Verdict::Drop(Counter::DropUnknownWorkload);
    }
    let Some(start) = linear(ctx, ETH_HLEN) else {
        return Verdict::Drop(Counter::DropMalformed);
    };
    // SAFETY: `linear` checked that the Ethernet header is in bounds.
    match u16::from_be(unsafe { (*(start as *const EthHdr)).ether_type }) {
        ETH_P_IP => ipv4_from_workload(ctx, &iface),
        ETH_P_ARP => arp::from_workload(ctx, ifindex, &iface),
        // IPv6 and anything else are not routed for pods yet; dropping keeps them from
        // reaching the host unchecked.
        _ => Verdict::Drop(Counter::DropUnsupported),
    }
}

#[inline(always)]
fn ipv4_from_workload(ctx: &TcContext, iface: &IfaceValue) -> Verdict {
    let Some((_, ip)) = eth_and::<Ipv4Hdr>(ctx) else {
        return Verdict::Drop(Counter::DropMalformed);
    };
    // SAFETY: bounds-checked by eth_and.
    let (version_ihl, tot_len, src, dst) = unsafe {
        (
            (*ip).version_ihl,
            u16::from_be((*ip).tot_len) as u32,
            (*ip).src,
            (*ip).dst,
        )
    };
    let header_len = ((version_ihl & 0x0f) as u32) * 4;
    if version_ihl >> 4 != 4
        || header_len < 20
        || tot_len < header_len
        || tot_len + ETH_HLEN as u32 > ctx.len()
    {
        return Verdict::Drop(Counter::DropMalformed);
    }
    if iface.flags & iface_flags::HAS_IPV4 == 0 || src != iface.ipv4 {
        return Verdict::Drop(Counter::DropSpoofedSource);
    }

    match route_lookup(dst) {
        Some(route) if route.flags & route_flags::LOCAL_WORKLOAD != 0 => {
            deliver_to_local_workload(ctx, route.ifindex)
        }
        // The host itself, and anything we do not route in eBPF, is the kernel's.
        _ => Verdict::Pass(Counter::PassedToHost),
    }
}

/// Rewrites the frame as a router would (MACs, TTL) and hands it straight to the destination
/// pod's `eth0`, skipping the host stack.
#[inline(always)]
fn deliver_to_local_workload(ctx: &TcContext, dst_ifindex: u32) -> Verdict {
    let Some(dst) = iface_lookup(dst_ifindex) else {
        // Route outlived its interface for a moment; let the kernel decide.
        return Verdict::Pass(Counter::PassedToHost);
    };
    let Some((eth, ip)) = eth_and::<Ipv4Hdr>(ctx) else {
        return Verdict::Drop(Counter::DropMalformed);
    };
    // SAFETY: both pointers come from one bounds check with no pull after it.
    let (eth, ip) = unsafe { (&mut *eth, &mut *ip) };
    if ip.ttl <= 1 {
        return Verdict::Drop(Counter::DropTtlExceeded);
    }
    let old_word = u16::from_be_bytes([ip.ttl, ip.protocol]);
    ip.ttl -= 1;
    let new_word = u16::from_be_bytes([ip.ttl, ip.protocol]);
    ip.check = csum_replace16(u16::from_be(ip.check), old_word, new_word).to_be();
    eth.src = dst.host_mac;
    eth.dst = dst.workload_mac;
    Verdict::RedirectPeer {
        ifindex: dst_ifindex,
        counter: Counter::ForwardedLocal,
    }
}
