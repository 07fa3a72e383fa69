//! The two policy lookups' maps, each split in an exact hash and a prefix trie (see
//! [`bpf_maps::policy`]): callers write and read prefixes as one table, and each entry lands
//! in the map the programs look it up in.

use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::Result;
use aya::maps::{lpm_trie::Key, HashMap, LpmTrie, MapData, MapError};
use bpf_maps::{
    policy::{IpCacheValue, PolicyKey, PolicyValue, POLICY_PREFIX_FULL},
    RouteAddr,
};
use ipnet::Ipv4Net;
use tortie_policy::OrderedPolicyKey;

/// Prefix → identity: /32s in the address hash, shorter prefixes in the CIDR trie.
pub struct IpCacheMaps {
    /// [`bpf_maps::map_names::IPCACHE_ADDRS`].
    pub addrs: HashMap<MapData, RouteAddr, IpCacheValue>,
    /// [`bpf_maps::map_names::IPCACHE`].
    pub cidrs: LpmTrie<MapData, RouteAddr, IpCacheValue>,
}

impl IpCacheMaps {
    /// Writes one entry.
    pub fn insert(&mut self, prefix: &Ipv4Net, value: &IpCacheValue) -> Result<(), MapError> {
        if prefix.prefix_len() == 32 {
            self.addrs.insert(prefix.addr().octets(), value, 0)
        } else {
            self.cidrs.insert(&cidr_key(prefix), value, 0)
        }
    }

    /// Deletes one entry.
    pub fn remove(&mut self, prefix: &Ipv4Net) -> Result<(), MapError> {
        if prefix.prefix_len() == 32 {
            self.addrs.remove(&prefix.addr().octets())
        } else {
            self.cidrs.remove(&cidr_key(prefix))
        }
    }

    /// Every entry of both maps.
    pub fn entries(&self) -> Result<BTreeMap<Ipv4Net, IpCacheValue>> {
        let mut entries = BTreeMap::new();
        for entry in self.addrs.iter() {
            let (addr, value) = entry?;
            entries.insert(Ipv4Net::from(Ipv4Addr::from(addr)), value);
        }
        for entry in self.cidrs.iter() {
            let (key, value) = entry?;
            entries.insert(prefix_of(&key), value);
        }
        Ok(entries)
    }
}

/// (prefix length, key) → verdict: full-length keys in the exact hash, shorter prefixes in
/// the trie.
pub struct PolicyMaps {
    /// [`bpf_maps::map_names::POLICY_EXACT`].
    pub exact: HashMap<MapData, PolicyKey, PolicyValue>,
    /// [`bpf_maps::map_names::POLICY`].
    pub prefixes: LpmTrie<MapData, PolicyKey, PolicyValue>,
}

impl PolicyMaps {
    /// Writes one entry.
    pub fn insert(
        &mut self,
        prefix_len: u32,
        key: &PolicyKey,
        value: &PolicyValue,
    ) -> Result<(), MapError> {
        if prefix_len == POLICY_PREFIX_FULL {
            self.exact.insert(key, value, 0)
        } else {
            self.prefixes.insert(&Key::new(prefix_len, *key), value, 0)
        }
    }

    /// Deletes one entry.
    pub fn remove(&mut self, prefix_len: u32, key: &PolicyKey) -> Result<(), MapError> {
        if prefix_len == POLICY_PREFIX_FULL {
            self.exact.remove(key)
        } else {
            self.prefixes.remove(&Key::new(prefix_len, *key))
        }
    }

    /// Every entry of both maps.
    pub fn entries(&self) -> Result<BTreeMap<(u32, OrderedPolicyKey), PolicyValue>> {
        let mut entries = BTreeMap::new();
        for entry in self.exact.iter() {
            let (key, value) = entry?;
            entries.insert((POLICY_PREFIX_FULL, OrderedPolicyKey(key)), value);
        }
        for entry in self.prefixes.iter() {
            let (key, value) = entry?;
            entries.insert((key.prefix_len(), OrderedPolicyKey(key.data())), value);
        }
        Ok(entries)
    }
}

/// The LPM key of an IPv4 prefix (routes and IP cache CIDRs alike).
pub fn cidr_key(prefix: &Ipv4Net) -> Key<RouteAddr> {
    Key::new(u32::from(prefix.prefix_len()), prefix.network().octets())
}

/// The prefix an IPv4 LPM key stands for.
pub fn prefix_of(key: &Key<RouteAddr>) -> Ipv4Net {
    // An LPM key's length is at most 32 by construction of the map.
    Ipv4Net::new(Ipv4Addr::from(key.data()), key.prefix_len().min(32) as u8).unwrap_or_default()
}
