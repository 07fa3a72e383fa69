//! Kubernetes objects the network needs without a Kubernetes API: `NetworkPolicy`
//! (networking.k8s.io/v1), and `Namespace` and `Pod` (v1) as label records for etcd mode.

mod core;
mod network_policy;

pub use self::core::{Container, ContainerPort, Namespace, Pod, PodIp, PodSpec, PodStatus};
pub use self::network_policy::{
    IntOrString, IpBlock, K8sEgressRule, K8sIngressRule, K8sNetworkPolicy, K8sNetworkPolicySpec,
    K8sPeer, K8sPolicyPort, K8sProtocol, LabelSelector, LabelSelectorRequirement, SelectorOperator,
};
