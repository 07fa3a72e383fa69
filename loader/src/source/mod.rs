//! Where the agent's inputs come from when they are not files: the datastore.
//!
//! A source runs as its own task and publishes complete inputs ([`Inputs`]) through a
//! `tokio::sync::watch` channel, so the agent always reads a consistent whole and learns of
//! a change the moment it is published. Its connection trouble never reaches the agent: the
//! last published inputs stay in force until the source has new ones.

pub mod datastore;

pub use datastore::{ConnectionState, DatastoreSource, DatastoreSourceConfig};

use crate::model::{BgpResources, ClusterConfig, LocalEndpoint, PolicyInputs};

/// One complete set of inputs for the calculation.
#[derive(Clone, Debug, PartialEq)]
pub struct Inputs {
    /// Pools and nodes.
    pub cluster: ClusterConfig,
    /// This node's endpoints.
    pub endpoints: Vec<LocalEndpoint>,
    /// Policies, profiles, namespaces and every endpoint of the cluster, for compilation.
    pub policy: PolicyInputs,
    /// What the BIRD configuration is rendered from.
    pub bgp: BgpResources,
}
