//! Bringing the pinned maps to the desired state: diff against what the kernel holds, then
//! write only the differences, so traffic using unchanged entries is never disturbed.

use std::{collections::BTreeMap, sync::Arc};

use anyhow::{Context, Result};
use aya::{
    maps::{Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray, PerCpuValues},
    Ebpf,
};
use bpf_maps::{
    events::{iface_stats_index, IfaceStats, RuleName},
    map_names,
    policy::{IpCacheValue, PolicyValue},
    Counter, IfaceKey, IfaceValue, NatKey, NatValue, NodeConfig, RouteAddr, RouteValue,
};
use ipnet::Ipv4Net;
use tortie_policy::OrderedPolicyKey;

use super::iface_slots;
use super::policy_maps::{cidr_key, prefix_of, IpCacheMaps, PolicyMaps};
use crate::calc::{policy::PolicyTables, DesiredState};

/// Counts of what one sync changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Entries inserted or overwritten.
    pub written: usize,
    /// Entries deleted.
    pub removed: usize,
}

/// Typed handles on the pinned maps.
pub struct DataplaneMaps {
    routes: LpmTrie<MapData, RouteAddr, RouteValue>,
    ifaces: HashMap<MapData, IfaceKey, IfaceValue>,
    counters: PerCpuArray<MapData, u64>,
    config: Array<MapData, NodeConfig>,
    nat: HashMap<MapData, NatKey, NatValue>,
    ipcache: IpCacheMaps,
    policy: PolicyMaps,
    rule_names: HashMap<MapData, u32, RuleName>,
    iface_stats: PerCpuArray<MapData, IfaceStats>,
    /// The policy tables last written in full; the same tables again need no map reads.
    applied_policy: Option<Arc<PolicyTables>>,
}

impl DataplaneMaps {
    /// Takes the maps out of a loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} is missing from the eBPF object"))
        };
        Ok(Self {
            routes: LpmTrie::try_from(take(map_names::ROUTES)?)?,
            ifaces: HashMap::try_from(take(map_names::IFACES)?)?,
            counters: PerCpuArray::try_from(take(map_names::COUNTERS)?)?,
            config: Array::try_from(take(map_names::CONFIG)?)?,
            nat: HashMap::try_from(take(map_names::NAT)?)?,
            ipcache: IpCacheMaps {
                addrs: HashMap::try_from(take(map_names::IPCACHE_ADDRS)?)?,
                cidrs: LpmTrie::try_from(take(map_names::IPCACHE)?)?,
            },
            policy: PolicyMaps {
                exact: HashMap::try_from(take(map_names::POLICY_EXACT)?)?,
                prefixes: LpmTrie::try_from(take(map_names::POLICY)?)?,
            },
            rule_names: HashMap::try_from(take(map_names::RULE_NAMES)?)?,
            iface_stats: PerCpuArray::try_from(take(map_names::IFACE_STATS)?)?,
            applied_policy: None,
        })
    }

    /// Opens already pinned maps (for tools reading a running dataplane).
    pub fn open_pinned(maps_dir: &std::path::Path) -> Result<Self> {
        let open = |name: &str| {
            let path = maps_dir.join(name);
            MapData::from_pin(&path)
                .with_context(|| format!("opening pinned map {}", path.display()))
                .map(aya::maps::Map::from_map_data)
        };
        Ok(Self {
            routes: LpmTrie::try_from(open(map_names::ROUTES)??)?,
            ifaces: HashMap::try_from(open(map_names::IFACES)??)?,
            counters: PerCpuArray::try_from(open(map_names::COUNTERS)??)?,
            config: Array::try_from(open(map_names::CONFIG)??)?,
            nat: HashMap::try_from(open(map_names::NAT)??)?,
            ipcache: IpCacheMaps {
                addrs: HashMap::try_from(open(map_names::IPCACHE_ADDRS)??)?,
                cidrs: LpmTrie::try_from(open(map_names::IPCACHE)??)?,
            },
            policy: PolicyMaps {
                exact: HashMap::try_from(open(map_names::POLICY_EXACT)??)?,
                prefixes: LpmTrie::try_from(open(map_names::POLICY)??)?,
            },
            rule_names: HashMap::try_from(open(map_names::RULE_NAMES)??)?,
            iface_stats: PerCpuArray::try_from(open(map_names::IFACE_STATS)??)?,
            applied_policy: None,
        })
    }

    /// Makes the route and interface maps equal to `desired`.
    pub fn apply(&mut self, desired: &DesiredState) -> Result<SyncStats> {
        let mut stats = SyncStats::default();

        let route_diff = diff(&self.routes()?, &desired.routes);
        // Insert before removing so a prefix moving between entries never falls through.
        for (prefix, value) in &route_diff.upserts {
            self.routes
                .insert(&cidr_key(prefix), value, 0)
                .with_context(|| format!("writing route {prefix}"))?;
        }
        for prefix in &route_diff.removals {
            ignore_missing(self.routes.remove(&cidr_key(prefix)))
                .with_context(|| format!("removing route {prefix}"))?;
        }
        stats.written += route_diff.upserts.len();
        stats.removed += route_diff.removals.len();

        // Identities and verdicts go in before interfaces are marked as policed, and stale
        // verdicts leave only after, so a policed endpoint never meets a half-written table.
        // Tables that are the very ones last written (a resync without a policy change) are
        // not read back from the kernel: at scale that is a million-entry walk per tick.
        let unchanged = self
            .applied_policy
            .as_ref()
            .is_some_and(|applied| Arc::ptr_eq(applied, &desired.policy));
        let tables = &desired.policy;
        let (ipcache_diff, policy_diff) = if unchanged {
            (Diff::default(), Diff::default())
        } else {
            (
                diff(&self.ipcache_entries()?, &tables.ipcache),
                diff(&self.policy_entries()?, &tables.entries),
            )
        };
        for (prefix, value) in &ipcache_diff.upserts {
            self.ipcache
                .insert(prefix, value)
                .with_context(|| format!("writing IP cache entry {prefix}"))?;
        }
        for ((prefix_len, key), value) in &policy_diff.upserts {
            self.policy
                .insert(*prefix_len, &key.0, value)
                .context("writing a policy entry")?;
        }
        let policy_changed = !(ipcache_diff.is_empty() && policy_diff.is_empty());
        // Names only describe rules: written with the verdicts, no epoch change of their own.
        if !unchanged {
            let names_diff = diff(&collect(self.rule_names.iter())?, &tables.rule_names);
            for (rule, name) in &names_diff.upserts {
                self.rule_names
                    .insert(rule, name, 0)
                    .with_context(|| format!("writing the name of rule {rule}"))?;
            }
            for rule in &names_diff.removals {
                ignore_missing(self.rule_names.remove(rule))
                    .with_context(|| format!("removing the name of rule {rule}"))?;
            }
        }

        let current_ifaces = collect(self.ifaces.iter())?;
        let slots = self.iface_stats.len() / 2;
        let slotted = iface_slots::assign(&current_ifaces, &desired.ifaces, slots);
        for slot in &slotted.fresh {
            self.zero_iface_stats(*slot)?;
        }
        let iface_diff = diff(&current_ifaces, &slotted.ifaces);
        for (ifindex, value) in &iface_diff.upserts {
            self.ifaces
                .insert(ifindex, value, 0)
                .with_context(|| format!("writing interface {ifindex}"))?;
        }
        for ifindex in &iface_diff.removals {
            ignore_missing(self.ifaces.remove(ifindex))
                .with_context(|| format!("removing interface {ifindex}"))?;
        }
        stats.written += iface_diff.upserts.len();
        stats.removed += iface_diff.removals.len();

        for (prefix_len, key) in &policy_diff.removals {
            ignore_missing(self.policy.remove(*prefix_len, &key.0))
                .context("removing a policy entry")?;
        }
        for prefix in &ipcache_diff.removals {
            ignore_missing(self.ipcache.remove(prefix))
                .with_context(|| format!("removing IP cache entry {prefix}"))?;
        }
        stats.written += ipcache_diff.upserts.len() + policy_diff.upserts.len();
        stats.removed += ipcache_diff.removals.len() + policy_diff.removals.len();

        // Without a node address the programs must not forward off-node: an all-zero entry
        // (no VALID flag) says so. The policy epoch lives on across agent restarts; it moves
        // on whenever a verdict may have changed, so tracked flows are judged again.
        let current = self.config.get(&0, 0)?;
        let mut config = desired.node_config.unwrap_or_default();
        config.policy_epoch = if policy_changed {
            current.policy_epoch.wrapping_add(1)
        } else {
            current.policy_epoch
        };
        if current != config {
            self.config
                .set(0, config, 0)
                .context("writing the node configuration")?;
            stats.written += 1;
        }
        self.applied_policy = Some(Arc::clone(&desired.policy));
        Ok(stats)
    }

    /// The node configuration the programs currently use.
    pub fn node_config(&self) -> Result<NodeConfig> {
        Ok(self.config.get(&0, 0)?)
    }

    /// Every natOutgoing entry.
    pub fn nat_entries(&self) -> Result<BTreeMap<NatKeyOrd, NatValue>> {
        collect(
            self.nat
                .iter()
                .map(|entry| entry.map(|(key, value)| (NatKeyOrd(key), value))),
        )
    }

    /// Every route currently in the map.
    pub fn routes(&self) -> Result<BTreeMap<Ipv4Net, RouteValue>> {
        collect(
            self.routes
                .iter()
                .map(|entry| entry.map(|(key, value)| (prefix_of(&key), value))),
        )
    }

    /// Every IP cache entry currently in the maps.
    pub fn ipcache_entries(&self) -> Result<BTreeMap<Ipv4Net, IpCacheValue>> {
        self.ipcache.entries()
    }

    /// Every policy entry currently in the maps.
    pub fn policy_entries(&self) -> Result<BTreeMap<(u32, OrderedPolicyKey), PolicyValue>> {
        self.policy.entries()
    }

    /// Clears both directions' counters of statistics slot `slot` on every CPU.
    fn zero_iface_stats(&mut self, slot: u32) -> Result<()> {
        let cpus =
            aya::util::nr_cpus().map_err(|(what, error)| anyhow::anyhow!("{what}: {error}"))?;
        for egress in [false, true] {
            let zeros = PerCpuValues::try_from(vec![IfaceStats::default(); cpus])?;
            self.iface_stats
                .set(iface_stats_index(slot, egress), zeros, 0)
                .with_context(|| format!("zeroing interface statistics slot {slot}"))?;
        }
        Ok(())
    }

    /// Every interface entry currently in the map.
    pub fn ifaces(&self) -> Result<BTreeMap<IfaceKey, IfaceValue>> {
        collect(self.ifaces.iter())
    }

    /// Each counter summed over CPUs.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>> {
        Counter::ALL
            .iter()
            .map(|counter| {
                let per_cpu = self.counters.get(&(*counter as u32), 0)?;
                Ok((*counter, per_cpu.iter().sum()))
            })
            .collect()
    }
}

/// A NAT key ordered by its bytes, for listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatKeyOrd(pub NatKey);

impl NatKeyOrd {
    fn tuple(&self) -> ([u8; 4], [u8; 4], u16, u16, u8) {
        let k = self.0;
        (k.src, k.dst, k.src_port, k.dst_port, k.protocol)
    }
}

impl PartialOrd for NatKeyOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NatKeyOrd {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.tuple().cmp(&other.tuple())
    }
}

fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        other => other,
    }
}

fn collect<K: Ord, V>(
    iter: impl Iterator<Item = Result<(K, V), MapError>>,
) -> Result<BTreeMap<K, V>> {
    iter.map(|entry| entry.map_err(anyhow::Error::from))
        .collect()
}

/// The writes that turn `current` into `desired`.
#[derive(Debug, PartialEq, Eq)]
struct Diff<K, V> {
    upserts: Vec<(K, V)>,
    removals: Vec<K>,
}

impl<K, V> Default for Diff<K, V> {
    fn default() -> Self {
        Diff {
            upserts: Vec::new(),
            removals: Vec::new(),
        }
    }
}

impl<K, V> Diff<K, V> {
    fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }
}

fn diff<K: Ord + Clone, V: PartialEq + Copy>(
    current: &BTreeMap<K, V>,
    desired: &BTreeMap<K, V>,
) -> Diff<K, V> {
    Diff {
        upserts: desired
            .iter()
            .filter(|(key, value)| current.get(key) != Some(value))
            .map(|(key, value)| (key.clone(), *value))
            .collect(),
        removals: current
            .keys()
            .filter(|key| !desired.contains_key(key))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_writes_only_changes() {
        let current = BTreeMap::from([(1u32, 10u64), (2, 20), (3, 30)]);
        let desired = BTreeMap::from([(1u32, 10u64), (2, 21), (4, 40)]);
        let d = diff(&current, &desired);
        assert_eq!(d.upserts, vec![(2, 21), (4, 40)]);
        assert_eq!(d.removals, vec![3]);
    }
}
