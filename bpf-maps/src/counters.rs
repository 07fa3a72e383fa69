//! Packet counters, indexed by [`Counter`], in the per-CPU array `TORTIE_COUNTERS`.
//!
//! Drops carry their reason in the counter they increment, so "why was this dropped?" is one
//! map dump away.

/// Number of slots in the counters array (room for reasons added later without a new layout).
pub const COUNTER_SLOTS: u32 = 32;

/// What happened to a packet. Values are stable: they are array indices shared with userspace.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Delivered straight into a pod on this node.
    ForwardedLocal = 0,
    /// Handed to the host's network stack (to the host itself or to routes we do not own).
    PassedToHost = 1,
    /// An ARP request from a pod answered on the host side.
    ArpReplied = 2,
    /// Seen on the uplink and left to the host stack.
    UplinkPassed = 3,
    /// Entering a pod from the host stack.
    ToWorkload = 4,
    /// Sent toward another node (plain or encapsulated).
    ForwardedRemote = 5,
    /// Encapsulated in IPIP or VXLAN.
    Encapsulated = 6,
    /// Decapsulated from IPIP or VXLAN sent by a known node.
    Decapsulated = 7,
    /// Source-NATed to the node's address on the way out of the pools.
    NatOutgoing = 8,
    /// A new flow that policy allowed (and conntrack now tracks).
    PolicyAllowed = 9,
    /// A packet of a tracked flow: policy skipped.
    ConntrackHit = 10,
    /// An ICMP error about a tracked flow, let through as related.
    ConntrackRelated = 11,
    /// A tracked flow re-checked against changed policy and still allowed.
    ConntrackRechecked = 12,
    /// A drop that could not be reported in `TORTIE_EVENTS` (the ring buffer was full:
    /// nobody reads it, or not fast enough). The drop itself is counted under its reason.
    EventsLost = 13,
    /// Dropped: truncated or inconsistent headers.
    DropMalformed = 16,
    /// Dropped: the pod sent from an address that is not its own.
    DropSpoofedSource = 17,
    /// Dropped: traffic from a workload interface the agent has not programmed yet.
    DropUnknownWorkload = 18,
    /// Dropped: TTL would reach zero on forwarding.
    DropTtlExceeded = 19,
    /// Dropped: the kernel refused the redirect (destination interface gone).
    DropRedirectFailed = 20,
    /// Dropped: IP options or fragments on a path that does not accept them yet.
    DropUnsupported = 21,
    /// Dropped: a tunnel packet addressed to this node from an address that is not a node.
    DropUnknownTunnelSource = 22,
    /// Dropped: the kernel had no route or neighbour toward the destination.
    DropNoRoute = 23,
    /// Dropped: no free natOutgoing source port.
    DropNatPortsExhausted = 24,
    /// Dropped: the kernel could not grow, shrink or rewrite the packet.
    DropRewriteFailed = 25,
    /// Dropped: a VXLAN packet with another VNI.
    DropWrongVni = 26,
    /// Dropped: policy denies the flow (the rule is counted in `TORTIE_RULEHITS`).
    DropPolicyDenied = 27,
    /// Dropped: a tracked flow that changed policy no longer allows.
    DropPolicyRevoked = 28,
    /// Dropped: a non-first fragment of a datagram whose first fragment was not allowed (or
    /// not seen).
    DropFragmentUnknown = 29,
}

impl Counter {
    /// Every counter, in index order, for userspace listings.
    pub const ALL: [Counter; 28] = [
        Counter::ForwardedLocal,
        Counter::PassedToHost,
        Counter::ArpReplied,
        Counter::UplinkPassed,
        Counter::ToWorkload,
        Counter::ForwardedRemote,
        Counter::Encapsulated,
        Counter::Decapsulated,
        Counter::NatOutgoing,
        Counter::PolicyAllowed,
        Counter::ConntrackHit,
        Counter::ConntrackRelated,
        Counter::ConntrackRechecked,
        Counter::EventsLost,
        Counter::DropMalformed,
        Counter::DropSpoofedSource,
        Counter::DropUnknownWorkload,
        Counter::DropTtlExceeded,
        Counter::DropRedirectFailed,
        Counter::DropUnsupported,
        Counter::DropUnknownTunnelSource,
        Counter::DropNoRoute,
        Counter::DropNatPortsExhausted,
        Counter::DropRewriteFailed,
        Counter::DropWrongVni,
        Counter::DropPolicyDenied,
        Counter::DropPolicyRevoked,
        Counter::DropFragmentUnknown,
    ];

    /// Stable, human-readable name (used by the CLI, metrics and logs).
    pub const fn name(self) -> &'static str {
        match self {
            Counter::ForwardedLocal => "forwarded_local",
            Counter::PassedToHost => "passed_to_host",
            Counter::ArpReplied => "arp_replied",
            Counter::UplinkPassed => "uplink_passed",
            Counter::ToWorkload => "to_workload",
            Counter::ForwardedRemote => "forwarded_remote",
            Counter::Encapsulated => "encapsulated",
            Counter::Decapsulated => "decapsulated",
            Counter::NatOutgoing => "nat_outgoing",
            Counter::PolicyAllowed => "policy_allowed",
            Counter::ConntrackHit => "conntrack_hit",
            Counter::ConntrackRelated => "conntrack_related",
            Counter::ConntrackRechecked => "conntrack_rechecked",
            Counter::EventsLost => "events_lost",
            Counter::DropMalformed => "drop_malformed",
            Counter::DropSpoofedSource => "drop_spoofed_source",
            Counter::DropUnknownWorkload => "drop_unknown_workload",
            Counter::DropTtlExceeded => "drop_ttl_exceeded",
            Counter::DropRedirectFailed => "drop_redirect_failed",
            Counter::DropUnsupported => "drop_unsupported",
            Counter::DropUnknownTunnelSource => "drop_unknown_tunnel_source",
            Counter::DropNoRoute => "drop_no_route",
            Counter::DropRewriteFailed => "drop_rewrite_failed",
            Counter::DropNatPortsExhausted => "drop_nat_ports_exhausted",
            Counter::DropWrongVni => "drop_wrong_vni",
            Counter::DropPolicyDenied => "drop_policy_denied",
            Counter::DropPolicyRevoked => "drop_policy_revoked",
            Counter::DropFragmentUnknown => "drop_fragment_unknown",
        }
    }

    /// Whether this counter counts dropped packets.
    pub const fn is_drop(self) -> bool {
        (self as u32) >= 16
    }
}

const _: () = assert!((Counter::DropFragmentUnknown as u32) < COUNTER_SLOTS);
