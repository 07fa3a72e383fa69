//! IP address management in the Calico model.
//!
//! IP pools are carved into blocks (`blockSize`, /26 by default) that become affine to the node
//! that first needs them; a node allocates from its own blocks, claims a new one when they are
//! full (up to `maxBlocksPerHost`), and borrows from other nodes' blocks only when
//! `strictAffinity` is off and nothing else is free. Every address belongs to a *handle* (the
//! CNI container), so everything a pod holds is released in one call.
//!
//! All state lives in the datastore in Calico's layout and every write is a compare-and-swap,
//! so any number of nodes can allocate at once without double allocation: a writer that loses
//! a race re-reads and retries.

pub mod block;
pub mod check;
pub mod keys;
mod ops;

pub use block::{AllocationAttribute, AllocationBlock};
pub use check::{check, CheckReport, Problem};
pub use ops::{AssignRequest, Ipam, StoredBlock};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use tortie_datastore::DatastoreError;

/// The CNI network name Calico (and tortie) installs by default.
pub const DEFAULT_NETWORK: &str = "k8s-pod-network";

/// The handle a CNI plugin allocates a container's addresses under: `<network>.<containerID>`,
/// as Calico names it, so the workload endpoint's container ID leads back to its addresses.
pub fn workload_handle(network: &str, container_id: &str) -> String {
    format!("{network}.{container_id}")
}

/// The parts of an IP pool IPAM needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// Pool name (for messages).
    pub name: String,
    /// The pool's CIDR.
    pub cidr: Ipv4Net,
    /// Prefix length of its blocks.
    pub block_size: u8,
}

/// Cluster-wide IPAM settings (Calico's `IPAMConfiguration`); the default borrows freely and
/// has no block limit, as in Calico.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpamConfig {
    /// Never borrow addresses from another node's block.
    pub strict_affinity: bool,
    /// Most blocks one node may claim (0: unlimited).
    pub max_blocks_per_host: u32,
}

/// A handle's record: how many addresses it holds in which block (Calico's `IPAMHandle`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleRecord {
    /// The handle.
    #[serde(rename = "handleID")]
    pub handle_id: String,
    /// Block CIDR (`a.b.c.d/len`) → addresses held there.
    pub block: std::collections::BTreeMap<String, u32>,
    /// Set while the handle is being deleted.
    #[serde(default)]
    pub deleted: bool,
}

/// Why an IPAM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// No pool had a free address for this node.
    #[error("no free address for node {node} in pool(s) {pools}: the pools are exhausted{hint}")]
    Exhausted {
        /// The node asking.
        node: String,
        /// The pools tried.
        pools: String,
        /// What the user can change.
        hint: String,
    },
    /// No pool is usable (none given, or all disabled / not selecting this node).
    #[error(
        "no IP pool is usable for node {node}; create one with `tortiectl apply -f pool.yaml`"
    )]
    NoPools {
        /// The node asking.
        node: String,
    },
    /// Too much contention: compare-and-swap kept losing.
    #[error("gave up after {attempts} attempts on {key}: too many concurrent writers")]
    Contention {
        /// The key fought over.
        key: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Stored data that does not parse.
    #[error("corrupt IPAM record at {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// The parse error.
        reason: String,
    },
    /// The address is not in any block.
    #[error("{ip} is not in any allocated block")]
    UnknownAddress {
        /// The address.
        ip: std::net::Ipv4Addr,
    },
    /// The datastore failed.
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
}
