//! What a compilation produces ([`CompiledPolicy`]), the ordered policy key type, and the
//! rule id allocator the caller keeps across compilations.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use bpf_maps::policy::{PolicyKey, PolicyValue, RULE_FIRST_ALLOCATED};
use ipnet::Ipv4Net;

use crate::alloc::Allocator;
use crate::model::{Direction, RuleInfo, RuleKey};

/// Remembers the id of each policy rule across compilations, so a rule's hit counter
/// ([`bpf_maps::map_names::RULE_HITS`]) survives recompiles that do not touch it.
///
/// Ids of rules that disappear are freed after the compilation and handed out again only
/// when fresh ids run out; a caller that sees an id in [`CompiledPolicy::rules`] that was not
/// in the previous compilation's should zero that counter slot.
#[derive(Clone, Debug)]
pub struct RuleAllocator {
    pub(super) inner: Allocator<RuleKey>,
}

impl Default for RuleAllocator {
    fn default() -> Self {
        RuleAllocator::new()
    }
}

impl RuleAllocator {
    /// An allocator for the default hit-counter array size
    /// ([`bpf_maps::capacity::RULE_HITS`]).
    pub fn new() -> Self {
        RuleAllocator::with_capacity(bpf_maps::capacity::RULE_HITS)
    }

    /// An allocator for a hit-counter array of `slots` entries: ids stay below `slots`.
    pub fn with_capacity(slots: u32) -> Self {
        RuleAllocator {
            inner: Allocator::new(RULE_FIRST_ALLOCATED, slots.saturating_sub(1)),
        }
    }

    /// The id of a rule, if allocated.
    pub fn get(&self, key: &RuleKey) -> Option<u32> {
        self.inner.get(key)
    }

    /// The rule an id names.
    pub fn key(&self, id: u32) -> Option<&RuleKey> {
        self.inner.key(id)
    }
}

/// A [`PolicyKey`] ordered by its bytes (endpoint, direction, identity, protocol, port), so
/// entries can key a `BTreeMap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OrderedPolicyKey(pub PolicyKey);

impl OrderedPolicyKey {
    /// The key for these fields (stored big-endian).
    pub fn new(
        endpoint: u32,
        direction: Direction,
        identity: u32,
        protocol: u8,
        port: u16,
    ) -> Self {
        OrderedPolicyKey(PolicyKey {
            endpoint: endpoint.to_be_bytes(),
            direction: direction.map_value(),
            identity: identity.to_be_bytes(),
            protocol,
            port: port.to_be_bytes(),
        })
    }

    fn bytes(&self) -> ([u8; 4], u8, [u8; 4], u8, [u8; 2]) {
        let k = &self.0;
        (k.endpoint, k.direction, k.identity, k.protocol, k.port)
    }

    /// The endpoint (host-side interface index).
    pub fn endpoint(&self) -> u32 {
        u32::from_be_bytes(self.0.endpoint)
    }

    /// The peer identity.
    pub fn identity(&self) -> u32 {
        u32::from_be_bytes(self.0.identity)
    }

    /// The port (or ICMP `type << 8 | code`).
    pub fn port(&self) -> u16 {
        u16::from_be_bytes(self.0.port)
    }
}

impl PartialOrd for OrderedPolicyKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedPolicyKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes().cmp(&other.bytes())
    }
}

/// Everything the agent writes to the maps, and what it reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledPolicy {
    /// [`bpf_maps::map_names::IPCACHE`]: prefix → identity. Addresses under no prefix are
    /// [`bpf_maps::policy::IDENTITY_WORLD`].
    pub ipcache: BTreeMap<Ipv4Net, u32>,
    /// [`bpf_maps::map_names::POLICY`]: (prefix length, key) → value. Host bits beyond the
    /// prefix length are zero. A lookup that finds nothing means deny
    /// ([`bpf_maps::policy::RULE_DEFAULT_DENY`]), so such entries are left out.
    pub entries: BTreeMap<(u32, OrderedPolicyKey), PolicyValue>,
    /// Per local endpoint (interface index): whether policy applies to its (ingress,
    /// egress) — [`bpf_maps::iface_flags::POLICED_INGRESS`] and
    /// [`bpf_maps::iface_flags::POLICED_EGRESS`]. Unpoliced directions allow everything and
    /// have no entries.
    pub policed: BTreeMap<u32, (bool, bool)>,
    /// Rule id → where the rule is and what it does, for every allow or deny rule of a
    /// policy or profile that applies to a local endpoint.
    pub rules: BTreeMap<u32, RuleInfo>,
    /// Identity → its class's signature (the atoms its addresses satisfy, one per line), for
    /// dumps. The reserved identities are described in words.
    pub identities: BTreeMap<u32, String>,
    /// Things that compiled but deserve attention.
    pub warnings: Vec<String>,
    /// Policies (or profiles) that could not be compiled and were skipped whole, each with
    /// the field at fault.
    pub errors: Vec<String>,
}

/// Warns when the output outgrows the maps' default sizes (the agent may size them up with
/// `--max-policy-entries` and `--max-ipcache-addresses`).
pub(super) fn check_capacity(out: &mut CompiledPolicy) {
    use bpf_maps::{capacity, map_names, policy::POLICY_PREFIX_FULL};
    let exact = out
        .entries
        .keys()
        .filter(|(prefix_len, _)| *prefix_len == POLICY_PREFIX_FULL)
        .count();
    let addresses = out
        .ipcache
        .keys()
        .filter(|prefix| prefix.prefix_len() == 32)
        .count();
    for (what, count, capacity) in [
        (map_names::POLICY_EXACT, exact, capacity::POLICY_EXACT),
        (
            map_names::POLICY,
            out.entries.len() - exact,
            capacity::POLICY,
        ),
        (map_names::IPCACHE_ADDRS, addresses, capacity::IPCACHE_ADDRS),
        (
            map_names::IPCACHE,
            out.ipcache.len() - addresses,
            capacity::IPCACHE,
        ),
    ] {
        if count > capacity as usize {
            out.warnings.push(format!(
                "{count} {what} entries exceed that map's default capacity of {capacity}: \
                 start the agent with a larger capacity (--max-policy-entries, \
                 --max-ipcache-addresses), or select fewer peers per policy (each local \
                 endpoint gets entries per peer identity its policies distinguish)"
            ));
        }
    }
}
