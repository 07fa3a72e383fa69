//! Connection tracking: the first packet of a flow goes through policy, the rest (and the
//! replies) find the flow in `TORTIE_CT` and skip it.
//!
//! One entry per flow, keyed in canonical order (the lower address and port first) so both
//! directions hit the same entry. The programs only record what they see — who opened the
//! flow, SYN/FIN/RST per side, replies, last activity — and userspace expires entries by
//! state (short for half-open and closed TCP, longer for established). The map is an LRU:
//! when it is full the kernel evicts the least recently used flow, never a busy one; an
//! evicted flow that is still alive is picked up again through policy on its next packet.

use aya_ebpf::helpers::generated::{bpf_jiffies64, bpf_ktime_get_ns};
use bpf_maps::policy::{ct_flags, CtKey, CtValue, CT_REFRESH_NS};

use crate::{
    flow::{Flow, TCP_FIN, TCP_RST, TCP_SYN},
    headers::{ICMP_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_TCP},
    maps::{TORTIE_CLOCK, TORTIE_CT},
};

/// A flow's entry key and whether the packet's source is side A of it.
#[inline(always)]
pub fn key_of(flow: &Flow) -> (CtKey, bool) {
    let src_first = (u32::from_be_bytes(flow.src), u16::from_be(flow.src_port))
        <= (u32::from_be_bytes(flow.dst), u16::from_be(flow.dst_port));
    let key = if src_first {
        CtKey {
            addr_a: flow.src,
            addr_b: flow.dst,
            port_a: flow.src_port,
            port_b: flow.dst_port,
            protocol: flow.protocol,
            _pad: [0; 3],
        }
    } else {
        CtKey {
            addr_a: flow.dst,
            addr_b: flow.src,
            port_a: flow.dst_port,
            port_b: flow.src_port,
            protocol: flow.protocol,
            _pad: [0; 3],
        }
    };
    (key, src_first)
}

/// The entry of `key`, if the flow is tracked.
#[inline(always)]
pub fn lookup(key: &CtKey) -> Option<*mut CtValue> {
    TORTIE_CT.get_ptr_mut(key)
}

/// Records a packet of a tracked flow: activity, TCP state, replies. The entry is written
/// only when something changed (a new TCP flag, the first reply) or its activity time is
/// [`CT_REFRESH_NS`] old, so a busy flow's entry stays in both directions' CPU caches.
#[inline(always)]
pub fn touch(entry: &mut CtValue, flow: &Flow, src_is_a: bool) {
    let opened_by_a = entry.flags & ct_flags::OPENED_BY_A != 0;
    let mut flags = entry.flags;
    if opened_by_a != src_is_a {
        flags |= ct_flags::ESTABLISHED;
    }
    if flow.protocol == IPPROTO_TCP {
        flags |= tcp_bits(flow.tcp_flags, src_is_a);
    }
    if flags != entry.flags {
        entry.flags = flags;
    }
    let now = coarse_now();
    if now.wrapping_sub(entry.last_seen_ns) >= CT_REFRESH_NS {
        entry.last_seen_ns = now;
    }
}

/// Starts tracking a flow whose first packet policy has just allowed.
#[inline(always)]
pub fn create(key: &CtKey, flow: &Flow, src_is_a: bool, epoch: u32) {
    let now = coarse_now();
    let mut flags = if src_is_a { ct_flags::OPENED_BY_A } else { 0 };
    if flow.protocol == IPPROTO_TCP {
        flags |= tcp_bits(flow.tcp_flags, src_is_a);
        if flow.tcp_flags & TCP_SYN == 0 {
            // A mid-stream packet: the flow began before we tracked it.
            flags |= ct_flags::PICKED_UP | ct_flags::ESTABLISHED;
        }
    }
    let value = CtValue {
        created_ns: now,
        last_seen_ns: now,
        flags,
        epoch,
    };
    // LRU: never fails for lack of room, the least recently used flow makes way.
    let _ = TORTIE_CT.insert(key, value, 0);
}

/// Forgets a flow (policy no longer allows it).
#[inline(always)]
pub fn remove(key: &CtKey) {
    let _ = TORTIE_CT.remove(key);
}

/// The flow as its opener sent it: the direction policy judges.
#[inline(always)]
pub fn original_direction(key: &CtKey, entry: &CtValue) -> Flow {
    let a_opened = entry.flags & ct_flags::OPENED_BY_A != 0;
    let (src, dst, src_port, dst_port) = if a_opened {
        (key.addr_a, key.addr_b, key.port_a, key.port_b)
    } else {
        (key.addr_b, key.addr_a, key.port_b, key.port_a)
    };
    Flow {
        src,
        dst,
        src_port,
        dst_port,
        protocol: key.protocol,
        tcp_flags: 0,
        policy_port: if key.protocol == IPPROTO_ICMP {
            // ICMP flows in conntrack are echo flows.
            (ICMP_ECHO_REQUEST as u16) << 8
        } else {
            u16::from_be(dst_port)
        },
        icmp_type: 0,
        l4_offset: 0,
        first_fragment: false,
        ip_id: 0,
    }
}

#[inline(always)]
fn tcp_bits(tcp_flags: u8, src_is_a: bool) -> u32 {
    let mut bits = 0;
    if tcp_flags & TCP_SYN != 0 {
        bits |= if src_is_a {
            ct_flags::SYN_A
        } else {
            ct_flags::SYN_B
        };
    }
    if tcp_flags & TCP_FIN != 0 {
        bits |= if src_is_a {
            ct_flags::FIN_A
        } else {
            ct_flags::FIN_B
        };
    }
    if tcp_flags & TCP_RST != 0 {
        bits |= ct_flags::RST;
    }
    bits
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: plain helper call without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// [`now`] as read earlier in the same jiffy on this CPU (at most a few milliseconds old);
/// the jiffies counter is a plain memory read once the kernel inlines its helper.
#[inline(always)]
fn coarse_now() -> u64 {
    // SAFETY: plain helper call without arguments.
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(clock) = TORTIE_CLOCK.get_ptr_mut(0) else {
        return now();
    };
    // SAFETY: a per-CPU slot; TC programs do not preempt each other on one CPU.
    unsafe {
        if (*clock).jiffies != jiffies || (*clock).ns == 0 {
            (*clock).jiffies = jiffies;
            (*clock).ns = now();
        }
        (*clock).ns
    }
}
