//! Network policy and connection tracking maps.
//!
//! Userspace compiles every policy that applies to a local endpoint into exact verdicts, so
//! the programs never walk rules: a new flow costs one lookup of the peer's *identity* and
//! one lookup of `(endpoint, direction, identity, protocol, port)`.
//!
//! Each of the two is split in an exact part and a prefix part, so that what is common stays
//! constant-time however many rules and CIDRs there are. The identity of a pod or node
//! address comes from [`crate::map_names::IPCACHE_ADDRS`] (a hash); only an address not found
//! there is looked up in [`crate::map_names::IPCACHE`], the LPM trie of policy CIDRs. A rule
//! naming one protocol and port has its verdict in [`crate::map_names::POLICY_EXACT`] (a
//! hash); only when that misses does the program consult [`crate::map_names::POLICY`], the
//! LPM trie whose prefix length expresses "any port", "any protocol" or a block of a port
//! range. Both splits keep longest-prefix semantics: the exact entry is the longest prefix
//! there can be. Established flows skip even that: one lookup in
//! [`crate::map_names::CONNTRACK`].

/// Identity of an address no IP cache entry covers (outside every pod and policy CIDR).
pub const IDENTITY_WORLD: u32 = 1;
/// Identity of this node's own addresses (traffic from the local host is always allowed,
/// as Kubernetes requires for probes).
pub const IDENTITY_HOST: u32 = 2;
/// Identity of the other nodes' addresses.
pub const IDENTITY_REMOTE_HOST: u32 = 3;
/// First identity handed out for label or CIDR classes.
pub const IDENTITY_FIRST_ALLOCATED: u32 = 256;

/// Value of [`crate::map_names::IPCACHE`] (key: an LPM prefix of IPv4 addresses).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpCacheValue {
    /// The identity every address under the prefix has for policy.
    pub identity: u32,
    /// Reserved.
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<IpCacheValue>() == 8);

/// Traffic direction as seen from the endpoint a policy applies to.
pub mod direction {
    /// Into the endpoint (its ingress policy; the peer is the source).
    pub const INGRESS: u8 = 0;
    /// Out of the endpoint (its egress policy; the peer is the destination).
    pub const EGRESS: u8 = 1;
}

/// Data part of a [`crate::map_names::POLICY`] LPM key. Every field is big-endian bytes, so
/// the LPM prefix runs endpoint → direction → identity → protocol → port:
/// [`POLICY_PREFIX_ANY_PROTOCOL`] bits match every protocol and port of a peer,
/// [`POLICY_PREFIX_ANY_PORT`] every port of one protocol, and
/// `POLICY_PREFIX_ANY_PORT + n` the ports sharing their top `n` bits (port ranges are split
/// into such blocks). For ICMP the "port" is `type << 8 | code`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyKey {
    /// Policy endpoint id (the host-side interface index), big-endian.
    pub endpoint: [u8; 4],
    /// [`direction`].
    pub direction: u8,
    /// Peer identity, big-endian.
    pub identity: [u8; 4],
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port (or ICMP type and code), big-endian.
    pub port: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<PolicyKey>() == 12);

/// Prefix length covering endpoint, direction and identity: any protocol, any port.
pub const POLICY_PREFIX_ANY_PROTOCOL: u32 = 72;
/// Prefix length covering up to the protocol: any port of that protocol.
pub const POLICY_PREFIX_ANY_PORT: u32 = 80;
/// Prefix length of a fully specified key.
pub const POLICY_PREFIX_FULL: u32 = 96;

/// Verdicts stored in [`PolicyValue::verdict`].
pub mod verdict {
    /// Let the flow through (and track it).
    pub const ALLOW: u8 = 1;
    /// Drop the packet.
    pub const DENY: u8 = 2;
}

/// Value of [`crate::map_names::POLICY`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyValue {
    /// [`verdict`].
    pub verdict: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
    /// The rule that decided, an index into [`crate::map_names::RULE_HITS`]; userspace maps it
    /// back to the policy and rule.
    pub rule: u32,
}

const _: () = assert!(core::mem::size_of::<PolicyValue>() == 8);

/// Rule index of a verdict no rule gave: the end-of-policies default deny.
pub const RULE_DEFAULT_DENY: u32 = 0;
/// Rule index of "no policy selects the endpoint": the profile allows.
pub const RULE_PROFILE_ALLOW: u32 = 1;
/// First rule index handed out for policy rules.
pub const RULE_FIRST_ALLOCATED: u32 = 16;

/// Key of [`crate::map_names::CONNTRACK`]: a flow in canonical order, the lower
/// `(address, port)` pair first, so both directions find the same entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// Lower address (network byte order).
    pub addr_a: [u8; 4],
    /// Higher address (network byte order).
    pub addr_b: [u8; 4],
    /// Port of `addr_a` (network byte order; ICMP echo id on both sides, 0 for others).
    pub port_a: u16,
    /// Port of `addr_b` (network byte order).
    pub port_b: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<CtKey>() == 16);

/// Bit flags of [`CtValue::flags`].
pub mod ct_flags {
    /// The flow was opened by side A (`addr_a`, `port_a`).
    pub const OPENED_BY_A: u32 = 1 << 0;
    /// A SYN from side A was seen.
    pub const SYN_A: u32 = 1 << 1;
    /// A SYN from side B was seen.
    pub const SYN_B: u32 = 1 << 2;
    /// A FIN from side A was seen.
    pub const FIN_A: u32 = 1 << 3;
    /// A FIN from side B was seen.
    pub const FIN_B: u32 = 1 << 4;
    /// A RST was seen: the flow is over.
    pub const RST: u32 = 1 << 5;
    /// Replies were seen: the flow is established.
    pub const ESTABLISHED: u32 = 1 << 6;
    /// The entry was re-created for a flow already under way (its first entry was evicted
    /// or the agent started after it began).
    pub const PICKED_UP: u32 = 1 << 7;
}

/// Value of [`crate::map_names::CONNTRACK`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    /// When the flow was first allowed (`bpf_ktime_get_ns`).
    pub created_ns: u64,
    /// When a packet last matched (`bpf_ktime_get_ns`), for expiry. The programs refresh it
    /// at most once per [`CT_REFRESH_NS`], so it may lag the last packet by that much.
    pub last_seen_ns: u64,
    /// [`ct_flags`] bits.
    pub flags: u32,
    /// The policy epoch the flow was allowed under; a flow from an older epoch is checked
    /// against the current policy before its next packet passes.
    pub epoch: u32,
}

const _: () = assert!(core::mem::size_of::<CtValue>() == 24);

/// Value of [`crate::map_names::CLOCK`] (per CPU): `bpf_ktime_get_ns` as last read, and
/// the jiffy it was read in. Packets of the same jiffy reuse the reading: the clock helper
/// costs more than the rest of a conntrack hit, and activity times need no finer grain.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoarseClock {
    /// `bpf_jiffies64` when [`Self::ns`] was read.
    pub jiffies: u64,
    /// `bpf_ktime_get_ns` then.
    pub ns: u64,
}

/// How stale [`CtValue::last_seen_ns`] may grow before a packet refreshes it. The two
/// directions of a flow usually run on different CPUs; a write on every packet would move
/// the entry's cache line between them each time, which costs more than the rest of the
/// established path. The shortest expiry timeout (5 s, ICMP) is far above this.
pub const CT_REFRESH_NS: u64 = 1_000_000_000;

/// Key of [`crate::map_names::FRAGMENTS`]: the IP datagram a non-first fragment belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    /// Source address (network byte order).
    pub src: [u8; 4],
    /// Destination address (network byte order).
    pub dst: [u8; 4],
    /// IP identification (network byte order).
    pub id: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// Explicit padding.
    pub _pad: u8,
}

const _: () = assert!(core::mem::size_of::<FragmentKey>() == 12);

/// Value of [`crate::map_names::FRAGMENTS`]: the ports from the datagram's first fragment.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentValue {
    /// Source port (network byte order).
    pub src_port: u16,
    /// Destination port (network byte order).
    pub dst_port: u16,
}

const _: () = assert!(core::mem::size_of::<FragmentValue>() == 4);
