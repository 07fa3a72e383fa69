//! Types shared by tortie's eBPF programs and its userspace.
//!
//! Every key and value here is `#[repr(C)]`, `Copy`, has explicit padding and a compile-time
//! size assertion, because the kernel copies them byte for byte between the two sides. The
//! `user` feature adds [`aya::Pod`] and [`bytemuck`] impls and the helpers in `user` for the
//! agent and the CLI.
//!
//! Map layouts are versioned by [`MAP_LAYOUT_VERSION`]: pins live under
//! `<pin root>/maps/v<version>/`, so an agent with a new layout never reuses an old map.
#![no_std]

pub mod counters;
pub mod events;
pub mod pins;
pub mod policy;

pub use counters::{Counter, COUNTER_SLOTS};

/// Bumped whenever a key or value below changes size or meaning.
pub const MAP_LAYOUT_VERSION: u32 = 7;

/// Map names, as defined in the eBPF object and pinned on bpffs (at most 15 bytes: the kernel's
/// `BPF_OBJ_NAME_LEN` minus the NUL).
pub mod map_names {
    /// LPM trie: destination prefix → [`crate::RouteValue`].
    pub const ROUTES: &str = "TORTIE_ROUTES";
    /// Hash: host-side interface index → [`crate::IfaceValue`].
    pub const IFACES: &str = "TORTIE_IFACES";
    /// Per-CPU array indexed by [`crate::Counter`].
    pub const COUNTERS: &str = "TORTIE_COUNTERS";
    /// Single-entry array: this node's [`crate::NodeConfig`].
    pub const CONFIG: &str = "TORTIE_CONFIG";
    /// LRU hash: [`crate::NatKey`] → [`crate::NatValue`], both directions of natOutgoing flows.
    pub const NAT: &str = "TORTIE_NAT";
    /// LPM trie: address prefix shorter than /32 → [`crate::policy::IpCacheValue`] (the
    /// identity of a policy CIDR's addresses).
    pub const IPCACHE: &str = "TORTIE_IPCACHE";
    /// Hash: single address (pod, node) → [`crate::policy::IpCacheValue`]; looked up before
    /// [`IPCACHE`], whose /32s it holds instead.
    pub const IPCACHE_ADDRS: &str = "TORTIE_IPC_ADDR";
    /// LPM trie: [`crate::policy::PolicyKey`] prefix shorter than
    /// [`crate::policy::POLICY_PREFIX_FULL`] → [`crate::policy::PolicyValue`] (any protocol,
    /// any port, port ranges).
    pub const POLICY: &str = "TORTIE_POLICY";
    /// Hash: full [`crate::policy::PolicyKey`] → [`crate::policy::PolicyValue`]; looked up
    /// before [`POLICY`], whose full-length entries it holds instead.
    pub const POLICY_EXACT: &str = "TORTIE_POLEXACT";
    /// LRU hash: [`crate::policy::CtKey`] → [`crate::policy::CtValue`].
    pub const CONNTRACK: &str = "TORTIE_CT";
    /// LRU hash: [`crate::policy::FragmentKey`] → [`crate::policy::FragmentValue`].
    pub const FRAGMENTS: &str = "TORTIE_FRAGS";
    /// Per-CPU array: packets decided by each policy rule, indexed by
    /// [`crate::policy::PolicyValue::rule`].
    pub const RULE_HITS: &str = "TORTIE_RULEHITS";
    /// Ring buffer of [`crate::events::FlowEvent`]s (drops), read by `tortiectl flows`.
    pub const EVENTS: &str = "TORTIE_EVENTS";
    /// Hash: rule id → [`crate::events::RuleName`], what each policy rule id stands for.
    pub const RULE_NAMES: &str = "TORTIE_RULENAME";
    /// Per-CPU scratch: the rule of the last policy denial on this CPU, read when the drop
    /// is reported (the verdict carries only its reason).
    pub const LAST_RULE: &str = "TORTIE_LASTRULE";
    /// Hash: traced IPv4 address → deadline (`bpf_ktime_get_ns`) after which it is not.
    pub const TRACE: &str = "TORTIE_TRACE";
    /// Single-entry array: the deadline of any tracing (0 or past: nobody traces).
    pub const TRACE_UNTIL: &str = "TORTIE_TRACEON";
    /// Per-CPU array of [`crate::events::IfaceStats`]: packets, bytes and drops per interface
    /// and direction, at [`crate::events::iface_stats_index`] of the interface's statistics
    /// slot (which the agent hands out and zeroes before reuse).
    pub const IFACE_STATS: &str = "TORTIE_IFSTATS";
    /// Per-CPU scratch: [`crate::policy::CoarseClock`], a clock read at most once per jiffy
    /// for conntrack activity times.
    pub const CLOCK: &str = "TORTIE_CLOCK";
    /// Every map the agent pins, in creation order.
    pub const ALL: [&str; 19] = [
        ROUTES,
        IFACES,
        COUNTERS,
        CONFIG,
        NAT,
        IPCACHE,
        IPCACHE_ADDRS,
        POLICY,
        POLICY_EXACT,
        CONNTRACK,
        FRAGMENTS,
        RULE_HITS,
        EVENTS,
        RULE_NAMES,
        LAST_RULE,
        TRACE,
        TRACE_UNTIL,
        IFACE_STATS,
        CLOCK,
    ];
}

/// Program names in the eBPF object, one per attach point.
pub mod program_names {
    /// TC ingress of a host-side workload interface (`cali*`): traffic leaving a pod.
    pub const FROM_WORKLOAD: &str = "tortie_from_wep";
    /// TC egress of a host-side workload interface: traffic about to enter a pod.
    pub const TO_WORKLOAD: &str = "tortie_to_wep";
    /// TC ingress of the host uplink: traffic arriving from the fabric.
    pub const FROM_HOST_IFACE: &str = "tortie_from_hep";
    /// TC egress of the host uplink: traffic leaving the node.
    pub const TO_HOST_IFACE: &str = "tortie_to_hep";
    /// A program that only returns: the floor for benchmarks, never attached.
    pub const FLOOR: &str = "tortie_floor";
}

/// Capacity of each map; the agent may override these at load time.
pub mod capacity {
    /// Routes: local workloads, remote blocks, host addresses.
    pub const ROUTES: u32 = 1 << 18;
    /// Interfaces the programs are attached to.
    pub const IFACES: u32 = 1 << 14;
    /// Per-interface statistics: an ingress and an egress entry per interface.
    pub const IFACE_STATS: u32 = 2 * IFACES;
    /// natOutgoing flows (two entries each).
    pub const NAT: u32 = 1 << 16;
    /// Policy CIDRs (and their `except` holes).
    pub const IPCACHE: u32 = 1 << 18;
    /// Pod and node addresses.
    pub const IPCACHE_ADDRS: u32 = 1 << 18;
    /// Compiled policy entries for any protocol, any port or a port range block.
    pub const POLICY: u32 = 1 << 20;
    /// Compiled policy entries for one protocol and port (endpoint × direction × identity ×
    /// protocol × port).
    pub const POLICY_EXACT: u32 = 1 << 20;
    /// Tracked connections.
    pub const CONNTRACK: u32 = 1 << 19;
    /// Fragmented datagrams in flight.
    pub const FRAGMENTS: u32 = 1 << 13;
    /// Distinct policy rules.
    pub const RULE_HITS: u32 = 1 << 16;
    /// Bytes of the events ring buffer (a power of two, a multiple of the page size).
    pub const EVENTS_BYTES: u32 = 1 << 18;
    /// Addresses traced at once.
    pub const TRACE: u32 = 1 << 10;
}

/// Destination key of [`map_names::ROUTES`] (the data part of an LPM key): IPv4 address in
/// network byte order.
pub type RouteAddr = [u8; 4];

/// Bit flags of a [`RouteValue`], named after what Calico's BPF dataplane marks routes with.
pub mod route_flags {
    /// The prefix is a pod on this node; `ifindex` is its host-side interface.
    pub const LOCAL_WORKLOAD: u32 = 1 << 0;
    /// The prefix is a block of pods on another node; `next_hop` is that node's IP.
    pub const REMOTE_WORKLOAD: u32 = 1 << 1;
    /// The prefix is an address of this host.
    pub const LOCAL_HOST: u32 = 1 << 2;
    /// The prefix is an address of another node.
    pub const REMOTE_HOST: u32 = 1 << 3;
    /// The prefix lies inside an IP pool.
    pub const IN_POOL: u32 = 1 << 4;
    /// Traffic to this prefix is encapsulated in IPIP.
    pub const TUNNELED_IPIP: u32 = 1 << 5;
    /// Traffic to this prefix is encapsulated in VXLAN.
    pub const TUNNELED_VXLAN: u32 = 1 << 6;
    /// The next hop is on this node's own subnet (CrossSubnet decisions).
    pub const SAME_SUBNET: u32 = 1 << 7;
    /// Pods in this pool are masqueraded when they leave every pool.
    pub const NAT_OUTGOING: u32 = 1 << 8;
    /// The prefix was learned over BGP (a route BIRD installed in the kernel), not derived
    /// from the datastore.
    pub const LEARNED_BGP: u32 = 1 << 9;
    /// A destination outside the cluster that a BGP peer advertised: pods' packets leave
    /// through the uplink unencapsulated and the kernel's FIB picks the next hop, so the
    /// host's IP forwarding is not involved.
    pub const EXTERNAL: u32 = 1 << 10;
}

/// Value of [`map_names::ROUTES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteValue {
    /// [`route_flags`] bits.
    pub flags: u32,
    /// Next-hop node IPv4 (network byte order) for remote prefixes; 0 otherwise.
    pub next_hop: [u8; 4],
    /// Host-side interface of a local workload; 0 otherwise.
    pub ifindex: u32,
    /// Inner destination MAC for VXLAN to this prefix: the remote node's VTEP MAC. A tortie
    /// node ignores it; a kernel `vxlan` device on the far side needs its own MAC here.
    pub tunnel_mac: [u8; 6],
    /// Explicit padding.
    pub _pad: [u8; 2],
}

/// Bit flags of an [`IfaceValue`].
pub mod iface_flags {
    /// A workload (pod) interface: anti-spoofing and workload forwarding apply.
    pub const WORKLOAD: u32 = 1 << 0;
    /// The host's uplink to the fabric.
    pub const HOST_UPLINK: u32 = 1 << 1;
    /// The workload has an IPv4 address programmed (`ipv4` is valid).
    pub const HAS_IPV4: u32 = 1 << 2;
    /// Policies select this workload for ingress: new flows into it need an allow verdict.
    pub const POLICED_INGRESS: u32 = 1 << 3;
    /// Policies select this workload for egress: new flows out of it need an allow verdict.
    pub const POLICED_EGRESS: u32 = 1 << 4;
}

/// Value of [`map_names::IFACES`]: what the programs need to know about an interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceValue {
    /// [`iface_flags`] bits.
    pub flags: u32,
    /// Workload IPv4 (network byte order): the only source a pod may send from.
    pub ipv4: [u8; 4],
    /// MAC of the pod's `eth0`: destination MAC of frames delivered to it.
    pub workload_mac: [u8; 6],
    /// MAC of the host side of the veth: source MAC of delivered frames, ARP answers.
    pub host_mac: [u8; 6],
    /// Where the programs count this interface's packets (see
    /// [`crate::events::iface_stats_index`]); given out by the agent, stable while the
    /// interface is programmed.
    pub stats_slot: u32,
}

/// Key of [`map_names::IFACES`].
pub type IfaceKey = u32;

const _: () = assert!(core::mem::size_of::<RouteValue>() == 20);
const _: () = assert!(core::mem::size_of::<IfaceValue>() == 24);

/// Bit flags of [`NodeConfig`].
pub mod node_flags {
    /// The configuration has been written (programs forward nothing off-node until it is).
    pub const VALID: u32 = 1 << 0;
}

/// Value of [`map_names::CONFIG`] (index 0): what the programs know about their node.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// [`node_flags`] bits.
    pub flags: u32,
    /// This node's IPv4 (network byte order): outer source of tunnels, natOutgoing source.
    pub host_ipv4: [u8; 4],
    /// Interface index of the uplink.
    pub uplink_ifindex: u32,
    /// VXLAN network identifier (Calico's default 4096).
    pub vxlan_vni: u32,
    /// VXLAN UDP port (host byte order; Calico's default 4789).
    pub vxlan_port: u16,
    /// First source port for natOutgoing (host byte order).
    pub nat_port_min: u16,
    /// Last source port for natOutgoing (host byte order).
    pub nat_port_max: u16,
    /// Source MAC of the inner Ethernet header of VXLAN frames.
    pub vxlan_mac: [u8; 6],
    /// Bumped by the agent whenever compiled policy changes: a tracked flow allowed under an
    /// older epoch is judged again before its next packet passes.
    pub policy_epoch: u32,
}

const _: () = assert!(core::mem::size_of::<NodeConfig>() == 32);

/// Key of [`map_names::NAT`]: one direction of a flow, as seen on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatKey {
    /// Source IPv4 (network byte order).
    pub src: [u8; 4],
    /// Destination IPv4 (network byte order).
    pub dst: [u8; 4],
    /// Source port, or ICMP echo identifier (network byte order).
    pub src_port: u16,
    /// Destination port (network byte order; 0 for ICMP).
    pub dst_port: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<NatKey>() == 16);

/// Value of [`map_names::NAT`]: the address and port to write in place of the original ones.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatValue {
    /// Replacement address (network byte order): the node IP outbound, the pod IP inbound.
    pub addr: [u8; 4],
    /// Replacement port (network byte order).
    pub port: u16,
    /// [`nat_flags`] bits.
    pub flags: u16,
    /// When the entry last carried a packet (`bpf_ktime_get_ns`), for garbage collection.
    pub last_seen_ns: u64,
}

const _: () = assert!(core::mem::size_of::<NatValue>() == 16);

/// Bit flags of [`NatValue`].
pub mod nat_flags {
    /// The entry rewrites the source of pod → outside packets.
    pub const OUTBOUND: u16 = 1 << 0;
    /// The entry rewrites the destination of outside → pod replies.
    pub const INBOUND: u16 = 1 << 1;
}

/// The gateway address every pod routes through (`169.254.1.1`, as in Calico).
pub const WORKLOAD_GATEWAY: [u8; 4] = [169, 254, 1, 1];

#[cfg(feature = "user")]
extern crate std;

#[cfg(feature = "user")]
pub mod user;
