//! Userspace only (the `user` feature): [`aya::Pod`] and [`bytemuck`] impls for the map
//! types, and a bounded walk of a hash map, shared by the agent and the CLI.

use std::{borrow::Borrow, collections::HashMap as StdHashMap, hash::Hash};

use aya::{
    maps::{HashMap, MapData, MapError},
    Pod,
};

// SAFETY: all are repr(C), Copy, built only from integers and byte arrays, with the padding
// spelled out as fields, so every bit pattern is valid and none is uninitialised.
unsafe impl aya::Pod for super::RouteValue {}
unsafe impl aya::Pod for super::IfaceValue {}
unsafe impl aya::Pod for super::policy::CoarseClock {}
unsafe impl bytemuck::Zeroable for super::RouteValue {}
unsafe impl bytemuck::Pod for super::RouteValue {}
unsafe impl bytemuck::Zeroable for super::IfaceValue {}
unsafe impl bytemuck::Pod for super::IfaceValue {}
unsafe impl aya::Pod for super::NodeConfig {}
unsafe impl aya::Pod for super::NatKey {}
unsafe impl aya::Pod for super::NatValue {}
unsafe impl aya::Pod for super::policy::IpCacheValue {}
unsafe impl aya::Pod for super::policy::PolicyKey {}
unsafe impl aya::Pod for super::policy::PolicyValue {}
unsafe impl aya::Pod for super::policy::CtKey {}
unsafe impl aya::Pod for super::policy::CtValue {}
unsafe impl aya::Pod for super::policy::FragmentKey {}
unsafe impl aya::Pod for super::policy::FragmentValue {}
unsafe impl aya::Pod for super::events::FlowEvent {}
unsafe impl aya::Pod for super::events::RuleName {}
unsafe impl aya::Pod for super::events::IfaceStats {}

/// Every entry of `map` (a hash of `capacity` entries), deduplicated. The walk is bounded:
/// entries deleted or evicted under it (by the programs, the LRU or expiry) make the kernel
/// restart it from the first bucket, and a busy map must not keep a reader walking forever.
pub fn snapshot<T: Borrow<MapData>, K: Pod + Eq + Hash, V: Pod>(
    map: &HashMap<T, K, V>,
    capacity: u32,
) -> Result<StdHashMap<K, V>, MapError> {
    let budget = (capacity as usize).saturating_mul(2).max(64);
    map.iter().take(budget).collect()
}
