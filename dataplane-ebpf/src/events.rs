//! Reporting to userspace through the `TORTIE_EVENTS` ring buffer (`tortiectl flows`).
//!
//! Dropped packets are always reported: a report is one header read and one ring-buffer
//! write, and if the buffer is full (nobody reads), the write fails at once and
//! `events_lost` counts it. Packets from or to traced addresses are reported whatever their
//! fate, while a tracer keeps `TORTIE_TRACEON` in the future; otherwise tracing costs one
//! array read per packet.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use bpf_maps::{
    events::{event_kind, l3, FlowEvent},
    Counter,
};

use crate::{
    headers::{
        ether_type, read_ipv4, ETH_HLEN, ETH_P_ARP, ETH_P_IP, IPPROTO_ICMP, IPPROTO_IPIP,
        IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IP_OFFSET,
    },
    maps::{count, node_config, TORTIE_EVENTS, TORTIE_LASTRULE, TORTIE_TRACE, TORTIE_TRACEON},
};

/// EtherType of IPv6 (the programs do not route it; its drops are still reported).
const ETH_P_IPV6: u16 = 0x86dd;

/// Remembers the rule that just denied a flow, for the drop report that follows.
#[inline(always)]
pub fn note_denying_rule(rule: u32) {
    if let Some(slot) = TORTIE_LASTRULE.get_ptr_mut(0) {
        // SAFETY: per-CPU slot; TC programs do not preempt each other on one CPU.
        unsafe { *slot = rule };
    }
}

/// Reports a packet dropped for `reason` by the program at `hook`.
#[inline(always)]
pub fn report_drop(ctx: &TcContext, hook: u8, reason: Counter) {
    let mut event = describe(ctx, hook, event_kind::DROP);
    event.reason = reason as u32;
    if matches!(
        reason,
        Counter::DropPolicyDenied | Counter::DropPolicyRevoked
    ) {
        event.rule = TORTIE_LASTRULE.get(0).copied().unwrap_or(0);
    }
    send(&event);
}

/// The packet as it arrives, when it is from or to a traced address and tracing is on; its
/// event is sent by [`finish_trace`] once the program has decided. Read before the program
/// rewrites the packet (encapsulation, NAT), so the trace shows the pod's own addresses.
#[inline(always)]
pub fn trace_start(ctx: &TcContext, hook: u8) -> Option<FlowEvent> {
    let until = TORTIE_TRACEON.get(0).copied().unwrap_or(0);
    if until == 0 {
        return None;
    }
    let mut event = describe(ctx, hook, event_kind::TRACE);
    if event.timestamp_ns > until || event.l3 != l3::IPV4 {
        return None;
    }
    // Between nodes the pod's packet travels inside a tunnel: trace what is inside.
    if let Some(inner) = tunnelled_offset(ctx, &event) {
        fill_ipv4(ctx, &mut event, inner);
    }
    let now = event.timestamp_ns;
    let traced = |addr: [u8; 4]| {
        // SAFETY: copied out at once.
        unsafe { TORTIE_TRACE.get(addr).copied() }.is_some_and(|deadline| deadline >= now)
    };
    (traced(event.src) || traced(event.dst)).then_some(event)
}

/// Sends a traced packet's event with what became of it (`outcome`: its counter).
#[inline(always)]
pub fn finish_trace(mut event: FlowEvent, outcome: Counter) {
    event.reason = outcome as u32;
    send(&event);
}

#[inline(always)]
fn send(event: &FlowEvent) {
    if TORTIE_EVENTS.output(event, 0).is_err() {
        count(Counter::EventsLost);
    }
}

/// An event of `kind` for the packet in `ctx`: time, hook, interface, length, and for IPv4
/// its addresses, protocol and ports.
#[inline(always)]
fn describe(ctx: &TcContext, hook: u8, kind: u8) -> FlowEvent {
    let mut event = FlowEvent {
        // SAFETY: plain helper call.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        kind,
        hook,
        // SAFETY: the context pointer is valid for the whole program run.
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        len: ctx.len(),
        ..FlowEvent::default()
    };
    event.l3 = match ether_type(ctx) {
        Some(ETH_P_IP) => l3::IPV4,
        Some(ETH_P_IPV6) => l3::IPV6,
        Some(ETH_P_ARP) => l3::ARP,
        _ => l3::OTHER,
    };
    if event.l3 == l3::IPV4 {
        // The outer header by direct packet access (no helper calls): drops under load stay
        // cheap. Ports need one load.
        if let Some(ip) = read_ipv4(ctx) {
            event.src = ip.src;
            event.dst = ip.dst;
            event.protocol = ip.protocol;
            if ip.frag_off & IP_OFFSET == 0 {
                fill_ports(ctx, &mut event, ETH_HLEN + ip.header_len() as usize);
            }
        }
    }
    event
}

/// Where the inner IPv4 header of an IPIP or VXLAN packet starts, if `event` is one.
#[inline(always)]
fn tunnelled_offset(ctx: &TcContext, event: &FlowEvent) -> Option<usize> {
    let outer_len = ((ctx.load::<u8>(ETH_HLEN).ok()? & 0x0f) as usize) * 4;
    let vxlan_port = node_config().map_or(4789, |config| config.vxlan_port);
    match event.protocol {
        IPPROTO_IPIP => Some(ETH_HLEN + outer_len),
        // UDP header, VXLAN header, inner Ethernet.
        IPPROTO_UDP if event.dst_port == vxlan_port => {
            Some(ETH_HLEN + outer_len + 8 + 8 + ETH_HLEN)
        }
        _ => None,
    }
}

/// Fills addresses, protocol and ports from the IPv4 header at `offset`.
#[inline(always)]
fn fill_ipv4(ctx: &TcContext, event: &mut FlowEvent, offset: usize) {
    let (Ok(version_ihl), Ok(protocol), Ok(frag_off), Ok(src), Ok(dst)) = (
        ctx.load::<u8>(offset),
        ctx.load::<u8>(offset + 9),
        ctx.load::<[u8; 2]>(offset + 6),
        ctx.load::<[u8; 4]>(offset + 12),
        ctx.load::<[u8; 4]>(offset + 16),
    ) else {
        return;
    };
    event.src = src;
    event.dst = dst;
    event.protocol = protocol;
    event.src_port = 0;
    event.dst_port = 0;
    // Ports are only in first fragments (and unfragmented packets).
    if u16::from_be_bytes(frag_off) & IP_OFFSET == 0 {
        fill_ports(ctx, event, offset + ((version_ihl & 0x0f) as usize) * 4);
    }
}

/// Ports (or ICMP type and code) of the transport header at `l4`.
#[inline(always)]
fn fill_ports(ctx: &TcContext, event: &mut FlowEvent, l4: usize) {
    match event.protocol {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => {
            if let Ok(ports) = ctx.load::<[u8; 4]>(l4) {
                event.src_port = u16::from_be_bytes([ports[0], ports[1]]);
                event.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
            }
        }
        IPPROTO_ICMP => {
            if let Ok(type_code) = ctx.load::<[u8; 2]>(l4) {
                event.dst_port = u16::from_be_bytes(type_code);
            }
        }
        _ => {}
    }
}
