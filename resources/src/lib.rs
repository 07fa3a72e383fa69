//! The resources a Calico user applies, as typed Rust values: Calico's
//! `projectcalico.org/v3` kinds (`IPPool`, `IPAMConfiguration`, `Node`, `WorkloadEndpoint`,
//! `BGPPeer`, `BGPConfiguration`, `NetworkPolicy`, `GlobalNetworkPolicy`, `Profile`) and the
//! Kubernetes objects the network needs (`NetworkPolicy`, `Namespace`, `Pod`).
//!
//! Field names and defaults are Calico's. The library is pure: it reads and writes text
//! and values, and never touches a file, the network or the datastore.
//!
//! - Read: [`parse_documents`] takes YAML (multi-document) or JSON, including `List`s;
//!   every type also (de)serializes on its own, as a complete document.
//! - Default: [`Resource::with_defaults`] fills what Calico fills, so stored objects and
//!   `tortiectl get` show the values in force; accessors such as
//!   [`IpPoolSpec::block_size`] give them without changing the object.
//! - Validate: [`validate()`], [`validate_all`] and [`validate_pool_against`] report every
//!   problem with its field path and reason (for selectors, a caret under the error).
//! - Select: [`Selector`] parses, prints and evaluates Calico's label selector language;
//!   [`LabelSelector::to_selector`] turns Kubernetes label selectors into it.
//! - Store: [`Resource::key`], [`Kind::key`] and [`Kind::prefix`] give the etcd v3 layout.
//! - Write: [`to_yaml`] and [`to_json`] print as calicoctl does.
//!
//! ```
//! use tortie_resources::{parse_documents, validate_all, Resource};
//!
//! let resources = parse_documents(
//!     "apiVersion: projectcalico.org/v3
//! kind: IPPool
//! metadata:
//!   name: default-ipv4-ippool
//! spec:
//!   cidr: 10.65.0.0/16
//!   ipipMode: CrossSubnet
//!   natOutgoing: true
//! ",
//! )
//! .unwrap();
//! validate_all(&resources).unwrap();
//! let pool = resources.into_iter().next().unwrap().with_defaults();
//! assert_eq!(
//!     pool.key(),
//!     "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool"
//! );
//! let Resource::IpPool(pool) = pool else { unreachable!() };
//! assert_eq!(pool.spec.block_size, Some(26));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[macro_use]
mod envelope;

pub mod bgp;
pub mod document;
pub mod ipam_config;
pub mod ippool;
pub mod k8s;
pub mod kind;
pub mod meta;
pub mod node;
pub mod policy;
pub mod resource;
pub mod rule;
pub mod selector;
pub mod validate;
pub mod values;
pub mod workload_endpoint;

pub use bgp::{
    BgpConfiguration, BgpConfigurationSpec, BgpPassword, BgpPeer, BgpPeerSpec, LogSeverity,
    SecretKeySelector, ServiceCidr, SourceAddress,
};
pub use document::{parse_documents, to_json, to_yaml, ParseError};
pub use ipam_config::{IpamConfiguration, IpamConfigurationSpec};
pub use ippool::{AllowedUse, EncapMode, IpPool, IpPoolSpec};
pub use k8s::{
    Container, ContainerPort, IntOrString, IpBlock, K8sEgressRule, K8sIngressRule,
    K8sNetworkPolicy, K8sNetworkPolicySpec, K8sPeer, K8sPolicyPort, K8sProtocol, LabelSelector,
    LabelSelectorRequirement, Namespace, Pod, PodIp, PodSpec, PodStatus, SelectorOperator,
};
pub use kind::{Kind, ResourceKey, TypeError, UnknownKind};
pub use meta::ObjectMeta;
pub use node::{Node, NodeAddress, NodeAddressType, NodeBgpSpec, NodeSpec, OrchRef};
pub use policy::{
    GlobalNetworkPolicy, GlobalNetworkPolicySpec, NetworkPolicy, NetworkPolicySpec, Profile,
    ProfileSpec,
};
pub use resource::{DecodeError, Resource};
pub use rule::{
    EntityRule, IcmpFields, PolicyType, Rule, RuleAction, RuleMetadata, ServiceAccountMatch,
};
pub use selector::{LabelSource, Selector, SelectorError};
pub use validate::{validate, validate_all, validate_pool_against, FieldError};
pub use values::{AsNumber, Port, Protocol};
pub use workload_endpoint::{
    parse_workload_endpoint_name, workload_endpoint_name, IpNat, WorkloadEndpoint,
    WorkloadEndpointNameParts, WorkloadEndpointPort, WorkloadEndpointSpec,
};

#[cfg(test)]
mod tests;
