//! Typed inputs of the agent.

pub mod cluster;
pub mod endpoint;
pub mod mac;

pub use cluster::{parse_cluster, ClusterConfig, ClusterError, ClusterNode, EncapMode, IpPool};
pub use endpoint::{parse_endpoints, EndpointsError, LocalEndpoint};
pub use mac::MacAddr;
