//! The maps, as BTF maps so `bpftool map dump` prints field names. Sizes here are defaults;
//! the agent sets the real capacities at load time.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use bpf_maps::{
    capacity,
    events::{FlowEvent, IfaceStats, RuleName},
    node_flags,
    policy::{
        CoarseClock, CtKey, CtValue, FragmentKey, FragmentValue, IpCacheValue, PolicyKey,
        PolicyValue,
    },
    Counter, IfaceKey, IfaceValue, NatKey, NatValue, NodeConfig, RouteAddr, RouteValue,
    COUNTER_SLOTS,
};

#[btf_map]
pub static TORTIE_ROUTES: LpmTrie<RouteAddr, RouteValue, { capacity::ROUTES as usize }> =
    LpmTrie::new();

#[btf_map]
pub static TORTIE_IFACES: HashMap<IfaceKey, IfaceValue, { capacity::IFACES as usize }> =
    HashMap::new();

#[btf_map]
pub static TORTIE_COUNTERS: PerCpuArray<u64, { COUNTER_SLOTS as usize }> = PerCpuArray::new();

#[btf_map]
pub static TORTIE_CONFIG: Array<NodeConfig, 1> = Array::new();

#[btf_map]
pub static TORTIE_NAT: LruHashMap<NatKey, NatValue, { capacity::NAT as usize }> = LruHashMap::new();

#[btf_map]
pub static TORTIE_IPCACHE: LpmTrie<RouteAddr, IpCacheValue, { capacity::IPCACHE as usize }> =
    LpmTrie::new();

#[btf_map]
pub static TORTIE_IPC_ADDR: HashMap<
    RouteAddr,
    IpCacheValue,
    { capacity::IPCACHE_ADDRS as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

#[btf_map]
pub static TORTIE_POLICY: LpmTrie<PolicyKey, PolicyValue, { capacity::POLICY as usize }> =
    LpmTrie::new();

// Not preallocated: like the LPM tries it pairs with, it costs memory per entry in use, not
// per entry it could hold.
#[btf_map]
pub static TORTIE_POLEXACT: HashMap<
    PolicyKey,
    PolicyValue,
    { capacity::POLICY_EXACT as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

#[btf_map]
pub static TORTIE_CT: LruHashMap<CtKey, CtValue, { capacity::CONNTRACK as usize }> =
    LruHashMap::new();

#[btf_map]
pub static TORTIE_FRAGS: LruHashMap<FragmentKey, FragmentValue, { capacity::FRAGMENTS as usize }> =
    LruHashMap::new();

#[btf_map]
pub static TORTIE_EVENTS: RingBuf<FlowEvent, { capacity::EVENTS_BYTES as usize }> = RingBuf::new();

/// Written by the agent, read by `tortiectl` and `bpftool`; never by the programs.
#[btf_map]
pub static TORTIE_RULENAME: HashMap<
    u32,
    RuleName,
    { capacity::RULE_HITS as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

#[btf_map]
pub static TORTIE_LASTRULE: PerCpuArray<u32, 1> = PerCpuArray::new();

#[btf_map]
pub static TORTIE_CLOCK: PerCpuArray<CoarseClock, 1> = PerCpuArray::new();

#[btf_map]
pub static TORTIE_TRACE: HashMap<RouteAddr, u64, { capacity::TRACE as usize }> = HashMap::new();

#[btf_map]
pub static TORTIE_TRACEON: Array<u64, 1> = Array::new();

#[btf_map]
pub static TORTIE_IFSTATS: PerCpuArray<IfaceStats, { capacity::IFACE_STATS as usize }> =
    PerCpuArray::new();

#[btf_map]
pub static TORTIE_RULEHITS: PerCpuArray<u64, { capacity::RULE_HITS as usize }> = PerCpuArray::new();

/// Adds one to the hit count of policy rule `rule` on this CPU.
#[inline(always)]
pub fn count_rule(rule: u32) {
    if let Some(slot) = TORTIE_RULEHITS.get_ptr_mut(rule) {
        // SAFETY: per-CPU slot, and TC programs do not preempt each other on one CPU.
        unsafe { *slot += 1 };
    }
}

/// This node's configuration, once the agent has written it.
#[inline(always)]
pub fn node_config() -> Option<NodeConfig> {
    let config = TORTIE_CONFIG.get(0).copied()?;
    (config.flags & node_flags::VALID != 0).then_some(config)
}

/// Longest-prefix match of an IPv4 destination.
#[inline(always)]
pub fn route_lookup(dst: RouteAddr) -> Option<RouteValue> {
    TORTIE_ROUTES.get(&Key::new(32, dst)).copied()
}

/// What the agent knows about an interface the programs run on.
#[inline(always)]
pub fn iface_lookup(ifindex: u32) -> Option<IfaceValue> {
    // SAFETY: the value is copied out at once, so a concurrent update or delete by the agent
    // cannot leave us holding a reference into a reused slot.
    unsafe { TORTIE_IFACES.get(ifindex).copied() }
}

/// Adds one to a counter on this CPU.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = TORTIE_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, and TC programs do not preempt each other on one CPU.
        unsafe { *slot += 1 };
    }
}
