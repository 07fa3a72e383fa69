//! An allocation block as Calico stores it: a CIDR affine to a node, one slot per address.

use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Prefix of `affinity` values naming a node.
pub const HOST_AFFINITY_PREFIX: &str = "host:";

/// Who an address was given to: the handle (CNI container) and free-form attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationAttribute {
    /// Handle that owns the address (`k8s-pod-network.<containerID>` for pods).
    #[serde(rename = "handle_id", default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    /// Extra attributes (namespace, pod, node, timestamp).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secondary: BTreeMap<String, String>,
}

/// A block of addresses (Calico's `AllocationBlock`, stored at
/// `/calico/ipam/v2/assignment/ipv4/block/<a.b.c.d-len>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationBlock {
    /// The block's CIDR.
    pub cidr: Ipv4Net,
    /// `host:<node>` for the node the block is affine to; `None` once released.
    #[serde(default)]
    pub affinity: Option<String>,
    /// For each address (by ordinal), the index of its attribute, or `None` when free.
    pub allocations: Vec<Option<usize>>,
    /// Free ordinals, in the order they are handed out.
    pub unallocated: Vec<usize>,
    /// Attributes referenced from `allocations`.
    #[serde(default)]
    pub attributes: Vec<AllocationAttribute>,
    /// Set while the block is being deleted.
    #[serde(default)]
    pub deleted: bool,
    /// Bumped on every change (lets watchers order updates).
    #[serde(default)]
    pub sequence_number: u64,
}

impl AllocationBlock {
    /// An empty block affine to `node`.
    pub fn new(cidr: Ipv4Net, node: &str) -> Self {
        let size = 1usize << (32 - cidr.prefix_len());
        Self {
            cidr,
            affinity: Some(format!("{HOST_AFFINITY_PREFIX}{node}")),
            allocations: vec![None; size],
            unallocated: (0..size).collect(),
            attributes: Vec::new(),
            deleted: false,
            sequence_number: 0,
        }
    }

    /// The node the block is affine to.
    pub fn affine_node(&self) -> Option<&str> {
        self.affinity
            .as_deref()
            .and_then(|a| a.strip_prefix(HOST_AFFINITY_PREFIX))
    }

    /// Number of addresses in use.
    pub fn used(&self) -> usize {
        self.allocations.iter().filter(|a| a.is_some()).count()
    }

    /// Number of addresses in the block.
    pub fn size(&self) -> usize {
        self.allocations.len()
    }

    /// The address at `ordinal`.
    pub fn address(&self, ordinal: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()) + ordinal as u32)
    }

    /// The ordinal of `ip`, if it lies in the block.
    pub fn ordinal(&self, ip: Ipv4Addr) -> Option<usize> {
        self.cidr
            .contains(&ip)
            .then(|| (u32::from(ip) - u32::from(self.cidr.network())) as usize)
    }

    /// Allocates the next free address to `attribute`; `None` when the block is full.
    pub fn allocate(&mut self, attribute: AllocationAttribute) -> Option<Ipv4Addr> {
        let ordinal = loop {
            if self.unallocated.is_empty() {
                return None;
            }
            let candidate = self.unallocated.remove(0);
            // Skip stale entries rather than trusting a list someone else wrote.
            if self.allocations.get(candidate) == Some(&None) {
                break candidate;
            }
        };
        let index = self.attribute_index(attribute);
        self.allocations[ordinal] = Some(index);
        self.sequence_number += 1;
        Some(self.address(ordinal))
    }

    fn attribute_index(&mut self, attribute: AllocationAttribute) -> usize {
        if let Some(index) = self.attributes.iter().position(|a| *a == attribute) {
            return index;
        }
        self.attributes.push(attribute);
        self.attributes.len() - 1
    }

    /// The handle owning `ip`, if it is allocated.
    pub fn handle_of(&self, ip: Ipv4Addr) -> Option<&str> {
        let index = (*self.allocations.get(self.ordinal(ip)?)?)?;
        self.attributes.get(index)?.handle_id.as_deref()
    }

    /// Every allocated address with its attribute.
    pub fn allocated(&self) -> impl Iterator<Item = (Ipv4Addr, Option<&AllocationAttribute>)> + '_ {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(|(ordinal, slot)| {
                slot.map(|i| (self.address(ordinal), self.attributes.get(i)))
            })
    }

    /// Frees every address owned by `handle`; returns them.
    pub fn release_handle(&mut self, handle: &str) -> Vec<Ipv4Addr> {
        let owned: Vec<usize> = self
            .allocations
            .iter()
            .enumerate()
            .filter_map(|(ordinal, slot)| {
                let attribute = self.attributes.get((*slot)?)?;
                (attribute.handle_id.as_deref() == Some(handle)).then_some(ordinal)
            })
            .collect();
        for ordinal in &owned {
            self.free(*ordinal);
        }
        owned.iter().map(|o| self.address(*o)).collect()
    }

    /// Frees `ip`; returns its handle when it was allocated.
    pub fn release_ip(&mut self, ip: Ipv4Addr) -> Option<Option<String>> {
        let ordinal = self.ordinal(ip)?;
        let index = (*self.allocations.get(ordinal)?)?;
        let handle = self.attributes.get(index).and_then(|a| a.handle_id.clone());
        self.free(ordinal);
        Some(handle)
    }

    fn free(&mut self, ordinal: usize) {
        self.allocations[ordinal] = None;
        self.unallocated.push(ordinal);
        self.sequence_number += 1;
        self.compact_attributes();
    }

    /// Drops attributes nothing refers to any more, renumbering the references.
    fn compact_attributes(&mut self) {
        let mut used = vec![false; self.attributes.len()];
        for index in self.allocations.iter().flatten() {
            if let Some(flag) = used.get_mut(*index) {
                *flag = true;
            }
        }
        let mut remap = vec![None; self.attributes.len()];
        let mut kept = Vec::new();
        for (index, attribute) in self.attributes.drain(..).enumerate() {
            if used[index] {
                remap[index] = Some(kept.len());
                kept.push(attribute);
            }
        }
        self.attributes = kept;
        for slot in self.allocations.iter_mut() {
            *slot = slot.and_then(|i| remap.get(i).copied().flatten());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(handle: &str) -> AllocationAttribute {
        AllocationAttribute {
            handle_id: Some(handle.into()),
            secondary: BTreeMap::new(),
        }
    }

    #[test]
    fn allocates_in_order_and_releases_by_handle() {
        let mut block = AllocationBlock::new("10.65.0.0/30".parse().unwrap(), "node-0");
        assert_eq!(block.affine_node(), Some("node-0"));
        assert_eq!(block.allocate(attr("a")), Some(Ipv4Addr::new(10, 65, 0, 0)));
        assert_eq!(block.allocate(attr("b")), Some(Ipv4Addr::new(10, 65, 0, 1)));
        assert_eq!(block.allocate(attr("a")), Some(Ipv4Addr::new(10, 65, 0, 2)));
        assert_eq!(block.attributes.len(), 2, "same attribute shared");
        assert_eq!(block.handle_of(Ipv4Addr::new(10, 65, 0, 1)), Some("b"));
        assert_eq!(block.release_handle("a").len(), 2);
        assert_eq!(block.used(), 1);
        assert_eq!(
            block.handle_of(Ipv4Addr::new(10, 65, 0, 1)),
            Some("b"),
            "renumbered"
        );
        assert_eq!(block.allocate(attr("c")), Some(Ipv4Addr::new(10, 65, 0, 3)));
        assert_eq!(block.allocate(attr("d")), Some(Ipv4Addr::new(10, 65, 0, 0)));
        assert_eq!(block.allocate(attr("e")), Some(Ipv4Addr::new(10, 65, 0, 2)));
        assert_eq!(block.allocate(attr("f")), None, "full");
    }

    #[test]
    fn serializes_in_calicos_shape() {
        let mut block = AllocationBlock::new("10.65.0.0/31".parse().unwrap(), "node-0");
        block.allocate(attr("k8s-pod-network.abc"));
        let json = serde_json::to_value(&block).unwrap();
        assert_eq!(json["cidr"], "10.65.0.0/31");
        assert_eq!(json["affinity"], "host:node-0");
        assert_eq!(json["allocations"], serde_json::json!([0, null]));
        assert_eq!(json["unallocated"], serde_json::json!([1]));
        assert_eq!(json["attributes"][0]["handle_id"], "k8s-pod-network.abc");
        let back: AllocationBlock = serde_json::from_value(json).unwrap();
        assert_eq!(back, block);
    }
}
