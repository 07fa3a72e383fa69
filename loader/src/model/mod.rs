//! Typed inputs of the agent, their validation, and their translation from the datastore's
//! resources.

pub mod bgp_resources;
pub mod cluster;
pub mod endpoint;
pub mod from_resources;
pub mod mac;
pub mod policy_inputs;

pub use bgp_resources::BgpResources;
pub use cluster::{parse_cluster, ClusterConfig, ClusterError, ClusterNode, EncapMode, IpPool};
pub use endpoint::{parse_endpoints, EndpointsError, LocalEndpoint};
pub use from_resources::{translate, ResourceCache, Translation};
pub use mac::MacAddr;
pub use tortie_policy::PolicyInputs;
