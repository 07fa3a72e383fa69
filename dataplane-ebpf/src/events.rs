//! Reporting drops to userspace through the `TORTIE_EVENTS` ring buffer (`tortiectl flows`).
//!
//! Only dropped packets are reported, so a healthy flow costs nothing here. A report is one
//! header read and one ring-buffer write; if the buffer is full (nobody reads), the write
//! fails at once and `events_lost` counts it.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use bpf_maps::{
    events::{event_kind, l3, FlowEvent},
    Counter,
};

use crate::{
    headers::{
        ether_type, read_ipv4, ETH_HLEN, ETH_P_ARP, ETH_P_IP, IPPROTO_ICMP, IPPROTO_SCTP,
        IPPROTO_TCP, IPPROTO_UDP, IP_OFFSET,
    },
    maps::{count, TORTIE_EVENTS, TORTIE_LASTRULE},
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
    let mut event = FlowEvent {
        // SAFETY: plain helper call.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        kind: event_kind::DROP,
        hook,
        reason: reason as u32,
        // SAFETY: the context pointer is valid for the whole program run.
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        len: ctx.len(),
        ..FlowEvent::default()
    };
    if matches!(
        reason,
        Counter::DropPolicyDenied | Counter::DropPolicyRevoked
    ) {
        // SAFETY: copied out at once.
        event.rule = TORTIE_LASTRULE.get(0).copied().unwrap_or(0);
    }
    event.l3 = match ether_type(ctx) {
        Some(ETH_P_IP) => l3::IPV4,
        Some(ETH_P_IPV6) => l3::IPV6,
        Some(ETH_P_ARP) => l3::ARP,
        _ => l3::OTHER,
    };
    if event.l3 != l3::IPV4 {
        // Nothing below applies to other frames.
    } else if let Some(ip) = read_ipv4(ctx) {
        event.src = ip.src;
        event.dst = ip.dst;
        event.protocol = ip.protocol;
        // Ports are only in first fragments (and unfragmented packets).
        if ip.frag_off & IP_OFFSET == 0 {
            let l4 = ETH_HLEN + ip.header_len() as usize;
            match ip.protocol {
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
    }
    if TORTIE_EVENTS.output(&event, 0).is_err() {
        count(Counter::EventsLost);
    }
}
