//! Flow events: what the programs report about single packets through the ring buffer
//! [`crate::map_names::EVENTS`], for `tortiectl flows`.
//!
//! Every drop is reported. A drop already costs the packet; one ring-buffer write more is
//! bounded (a reservation and a copy of [`FlowEvent`]). When nobody reads, the buffer fills,
//! further writes fail at once, and [`crate::Counter`] still counts every drop.
//!
//! Traces report every packet from or to chosen pod addresses, whatever became of it, while
//! `tortiectl flows --trace` runs: it writes the addresses to [`crate::map_names::TRACE`]
//! and a deadline to [`crate::map_names::TRACE_UNTIL`], and keeps pushing both forward. When
//! the deadline passes (nobody traces, or the tracer died) a packet pays one array read.

/// [`FlowEvent::kind`] values.
pub mod event_kind {
    /// A packet was dropped; [`super::FlowEvent::reason`] says why.
    pub const DROP: u8 = 1;
    /// A traced packet went on; [`super::FlowEvent::reason`] is what happened (the counter
    /// it was counted under: forwarded, passed to the host, ...).
    pub const TRACE: u8 = 2;
}

/// [`FlowEvent::l3`] values.
pub mod l3 {
    /// Not one of the below (or no Ethernet header).
    pub const OTHER: u8 = 0;
    /// IPv4: addresses and ports are filled in.
    pub const IPV4: u8 = 4;
    /// IPv6.
    pub const IPV6: u8 = 6;
    /// ARP.
    pub const ARP: u8 = 8;
}

/// Which program saw the packet ([`FlowEvent::hook`]).
pub mod hook {
    /// `tortie_from_wep`: leaving a pod.
    pub const FROM_WORKLOAD: u8 = 1;
    /// `tortie_to_wep`: entering a pod from the host stack.
    pub const TO_WORKLOAD: u8 = 2;
    /// `tortie_from_hep`: arriving from the fabric.
    pub const FROM_HOST_IFACE: u8 = 3;
    /// `tortie_to_hep`: the host's own traffic leaving.
    pub const TO_HOST_IFACE: u8 = 4;
}

/// One record of [`crate::map_names::EVENTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// `bpf_ktime_get_ns` when the packet was seen (monotonic clock).
    pub timestamp_ns: u64,
    /// [`event_kind`].
    pub kind: u8,
    /// [`hook`].
    pub hook: u8,
    /// IP protocol number (0 when the packet was not IPv4 or too short to tell).
    pub protocol: u8,
    /// The frame's EtherType class: [`l3::IPV4`], [`l3::IPV6`], [`l3::ARP`] or
    /// [`l3::OTHER`]. Addresses and ports are filled in for IPv4 only.
    pub l3: u8,
    /// The [`crate::Counter`] the packet was counted under: the drop reason.
    pub reason: u32,
    /// The interface the program ran on.
    pub ifindex: u32,
    /// For policy drops, the rule that decided ([`crate::map_names::RULE_NAMES`] names it);
    /// otherwise 0.
    pub rule: u32,
    /// Source address (network byte order).
    pub src: [u8; 4],
    /// Destination address (network byte order).
    pub dst: [u8; 4],
    /// Source port (host byte order; ICMP: 0).
    pub src_port: u16,
    /// Destination port (host byte order; ICMP: type << 8 | code).
    pub dst_port: u16,
    /// The packet's length on the wire.
    pub len: u32,
}

const _: () = assert!(core::mem::size_of::<FlowEvent>() == 40);

/// The statistics slot of the uplink (workloads get theirs from the agent, in
/// [`crate::IfaceValue::stats_slot`]).
pub const UPLINK_STATS_SLOT: u32 = 0;
/// An interface without a statistics slot: its packets are not counted per interface.
pub const NO_STATS_SLOT: u32 = u32::MAX;

/// Index in [`crate::map_names::IFACE_STATS`] of what the programs saw on the interface with
/// statistics slot `slot`: its ingress hook (packets arriving from the pod or the fabric), or
/// its egress hook.
#[inline(always)]
pub const fn iface_stats_index(slot: u32, egress: bool) -> u32 {
    slot.wrapping_mul(2).wrapping_add(egress as u32)
}

/// Value of [`crate::map_names::IFACE_STATS`] (per CPU): what the programs handled on one
/// interface in one direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceStats {
    /// Packets.
    pub packets: u64,
    /// Bytes (as on the wire when the program saw them).
    pub bytes: u64,
    /// Packets dropped.
    pub drops: u64,
}

/// Bytes of [`RuleName::text`].
pub const RULE_NAME_LEN: usize = 124;

/// Value of [`crate::map_names::RULE_NAMES`]: what a rule id stands for, as text
/// (`Deny NetworkPolicy shop/web spec.ingress[0]`), so that events and `bpftool` name rules.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleName {
    /// Bytes of UTF-8 used in `text`.
    pub len: u32,
    /// The text, zero-padded.
    pub text: [u8; RULE_NAME_LEN],
}

impl Default for RuleName {
    fn default() -> Self {
        Self {
            len: 0,
            text: [0; RULE_NAME_LEN],
        }
    }
}

impl RuleName {
    /// `text`, cut at a character boundary to fit.
    pub fn new(text: &str) -> Self {
        let mut end = text.len().min(RULE_NAME_LEN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut name = Self::default();
        name.text[..end].copy_from_slice(&text.as_bytes()[..end]);
        name.len = end as u32;
        name
    }

    /// The text (empty if it is not valid UTF-8).
    pub fn as_str(&self) -> &str {
        let len = (self.len as usize).min(RULE_NAME_LEN);
        core::str::from_utf8(&self.text[..len]).unwrap_or("")
    }
}
