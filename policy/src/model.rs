//! What the compiler reads (endpoints, namespaces, policies, host addresses) and the small
//! shared vocabulary of its answers (directions, verdicts, rule keys).
//!
//! Everything here is plain data the caller fills from the datastore; nothing is validated
//! on construction. Problems are reported by [`crate::compile()`] as warnings or as errors that
//! skip the offending policy.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use bpf_maps::policy::direction;
use bpf_maps::policy::verdict;
use tortie_resources::{
    GlobalNetworkPolicy, K8sNetworkPolicy, NetworkPolicy, Profile, WorkloadEndpoint,
};

/// The label Kubernetes puts on every namespace with the namespace's own name.
pub const LABEL_K8S_NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";
/// Calico's label naming a namespace or a service account (inherited as `pcns.`/`pcsa.`).
pub const LABEL_CALICO_NAME: &str = "projectcalico.org/name";
/// Calico's label on a workload endpoint naming its namespace.
pub const LABEL_CALICO_NAMESPACE: &str = "projectcalico.org/namespace";
/// Calico's label on a workload endpoint naming its service account.
pub const LABEL_CALICO_SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";
/// Calico's label on a workload endpoint naming its orchestrator.
pub const LABEL_CALICO_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";

/// A port a pod declares under a name, for rules that match ports by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamedPort {
    /// The port's name (`http`).
    pub name: String,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub protocol: u8,
    /// The port number in the pod.
    pub port: u16,
}

/// A pod of the cluster. Every pod is listed, not only this node's: remote pods are the
/// peers rules select by label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `namespace/name`; unique.
    pub key: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's labels. Calico's own labels (`projectcalico.org/namespace`,
    /// `projectcalico.org/orchestrator`, `projectcalico.org/serviceaccount`) are added when
    /// absent, and labels of the endpoint's profiles (`labelsToApply`) are inherited.
    pub labels: BTreeMap<String, String>,
    /// The pod's IPv4 address.
    pub ipv4: Ipv4Addr,
    /// `Some(host-side interface index)` when the pod runs on this node; `None` for pods
    /// elsewhere.
    pub ifindex: Option<u32>,
    /// The pod's service account.
    pub service_account: Option<String>,
    /// The pod's named container ports.
    pub named_ports: Vec<NamedPort>,
    /// The Calico profiles the pod uses, in order (`kns.<namespace>`,
    /// `ksa.<namespace>.<account>`); see [`Endpoint::kubernetes_profiles`].
    pub profiles: Vec<String>,
}

impl Endpoint {
    /// The profiles Calico (and tortie-cni) give a Kubernetes pod: `kns.<namespace>`, then
    /// `ksa.<namespace>.<account>` when the pod has a service account.
    pub fn kubernetes_profiles(namespace: &str, service_account: Option<&str>) -> Vec<String> {
        let mut profiles = vec![format!("kns.{namespace}")];
        if let Some(account) = service_account {
            profiles.push(format!("ksa.{namespace}.{account}"));
        }
        profiles
    }

    /// The endpoint a Calico `WorkloadEndpoint` describes, with `ifindex` when it is local.
    /// Its key is `namespace/pod` (the namespace `default` when unset; the pod from
    /// `spec.pod`, else `spec.workload`, else the resource name); without `spec.profiles` it
    /// gets [`Endpoint::kubernetes_profiles`].
    ///
    /// Fails when the workload endpoint has no IPv4 address.
    pub fn from_workload_endpoint(
        wep: &WorkloadEndpoint,
        ifindex: Option<u32>,
    ) -> Result<Endpoint, String> {
        let namespace = wep.metadata.namespace_or_default().to_string();
        let pod = wep
            .spec
            .pod
            .clone()
            .or_else(|| wep.spec.workload.clone())
            .unwrap_or_else(|| wep.metadata.name.clone());
        let ipv4 = wep
            .spec
            .ip_nets()
            .into_iter()
            .find_map(|net| match net.addr() {
                IpAddr::V4(addr) => Some(addr),
                IpAddr::V6(_) => None,
            })
            .ok_or_else(|| {
                format!(
                    "workload endpoint {namespace}/{} has no IPv4 address in spec.ipNetworks",
                    wep.metadata.name
                )
            })?;
        let named_ports = wep
            .spec
            .ports
            .iter()
            .filter(|p| !p.name.is_empty())
            .map(|p| NamedPort {
                name: p.name.clone(),
                protocol: p.protocol.number(),
                port: p.port,
            })
            .collect();
        let profiles = if wep.spec.profiles.is_empty() {
            Endpoint::kubernetes_profiles(&namespace, wep.spec.service_account_name.as_deref())
        } else {
            wep.spec.profiles.clone()
        };
        Ok(Endpoint {
            key: format!("{namespace}/{pod}"),
            namespace,
            labels: wep.metadata.labels.clone(),
            ipv4,
            ifindex,
            service_account: wep.spec.service_account_name.clone(),
            named_ports,
            profiles,
        })
    }
}

/// A namespace and its labels (`kubernetes.io/metadata.name` and `projectcalico.org/name`
/// are added when absent). A namespace endpoints use but this list lacks has only those.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    /// The namespace's name.
    pub name: String,
    /// Its labels, which `namespaceSelector`s match.
    pub labels: BTreeMap<String, String>,
}

impl Namespace {
    /// The namespace a Kubernetes `Namespace` record describes.
    pub fn from_resource(ns: &tortie_resources::Namespace) -> Namespace {
        Namespace {
            name: ns.metadata.name.clone(),
            labels: ns.metadata.labels.clone(),
        }
    }
}

/// A service account's labels, which a rule's `serviceAccounts.selector` (and a policy's
/// `serviceAccountSelector`) match. Accounts not listed have only `projectcalico.org/name`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceAccount {
    /// The account's namespace.
    pub namespace: String,
    /// The account's name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// Everything a compilation reads. Build it fresh from the datastore for every run; keep the
/// allocators ([`crate::IdentityAllocator`], [`crate::RuleAllocator`]) across runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyInputs {
    /// Every pod of the cluster.
    pub endpoints: Vec<Endpoint>,
    /// Namespaces with their labels.
    pub namespaces: Vec<Namespace>,
    /// Service accounts with labels, when rules select accounts by label.
    pub service_accounts: Vec<ServiceAccount>,
    /// Calico `NetworkPolicy`s (namespaced).
    pub network_policies: Vec<NetworkPolicy>,
    /// Calico `GlobalNetworkPolicy`s.
    pub global_network_policies: Vec<GlobalNetworkPolicy>,
    /// Kubernetes `NetworkPolicy`s.
    pub k8s_network_policies: Vec<K8sNetworkPolicy>,
    /// Calico `Profile`s.
    pub profiles: Vec<Profile>,
    /// This node's own addresses (always allowed to and from local pods).
    pub local_host: Vec<Ipv4Addr>,
    /// The other nodes' addresses.
    pub remote_hosts: Vec<Ipv4Addr>,
}

/// Which way traffic flows, seen from the local pod a policy applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Into the pod; the peer is the source.
    Ingress,
    /// Out of the pod; the peer is the destination.
    Egress,
}

impl Direction {
    /// Both directions, ingress first.
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// The value of [`bpf_maps::policy::PolicyKey::direction`].
    pub fn map_value(self) -> u8 {
        match self {
            Direction::Ingress => direction::INGRESS,
            Direction::Egress => direction::EGRESS,
        }
    }

    /// The direction a [`bpf_maps::policy::PolicyKey::direction`] value names.
    pub fn from_map_value(value: u8) -> Option<Direction> {
        match value {
            direction::INGRESS => Some(Direction::Ingress),
            direction::EGRESS => Some(Direction::Egress),
            _ => None,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// What happens to a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// The flow passes (and is tracked).
    Allow,
    /// The packet is dropped.
    Deny,
}

impl Verdict {
    /// The value of [`bpf_maps::policy::PolicyValue::verdict`].
    pub fn map_value(self) -> u8 {
        match self {
            Verdict::Allow => verdict::ALLOW,
            Verdict::Deny => verdict::DENY,
        }
    }

    /// The verdict a [`bpf_maps::policy::PolicyValue::verdict`] value names.
    pub fn from_map_value(value: u8) -> Option<Verdict> {
        match value {
            verdict::ALLOW => Some(Verdict::Allow),
            verdict::DENY => Some(Verdict::Deny),
            _ => None,
        }
    }
}

/// The kind of resource a rule comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    /// Calico `NetworkPolicy` (namespaced).
    NetworkPolicy,
    /// Calico `GlobalNetworkPolicy`.
    GlobalNetworkPolicy,
    /// Kubernetes `NetworkPolicy`.
    K8sNetworkPolicy,
    /// Calico `Profile`.
    Profile,
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            PolicyKind::K8sNetworkPolicy => "NetworkPolicy (networking.k8s.io)",
            PolicyKind::Profile => "Profile",
        })
    }
}

/// Names one rule of one policy: the key rule ids are allocated by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    /// The resource kind.
    pub kind: PolicyKind,
    /// The namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// The resource name.
    pub name: String,
    /// `spec.ingress` or `spec.egress`.
    pub direction: Direction,
    /// Position in that list (0-based).
    pub index: u32,
}

impl fmt::Display for RuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.kind)?;
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        write!(f, "{} spec.{}[{}]", self.name, self.direction, self.index)
    }
}

/// A compiled rule, as `tortiectl bpf policy dump` shows it next to its hit count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// Where the rule is.
    pub key: RuleKey,
    /// What it does when it decides a flow.
    pub action: Verdict,
}

/// Why a flow got its verdict, as [`crate::evaluate()`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecidedBy {
    /// The peer is this node (always allowed; the program decides without lookups).
    LocalHost,
    /// No policy applies and a profile allows everything
    /// ([`bpf_maps::policy::RULE_PROFILE_ALLOW`]).
    ProfileAllow,
    /// Policies apply and none allowed it, or the profiles did not
    /// ([`bpf_maps::policy::RULE_DEFAULT_DENY`]).
    DefaultDeny,
    /// This rule.
    Rule(RuleKey),
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecidedBy::LocalHost => f.write_str("traffic with the local host"),
            DecidedBy::ProfileAllow => f.write_str("profile allows all"),
            DecidedBy::DefaultDeny => f.write_str("default deny"),
            DecidedBy::Rule(key) => write!(f, "{key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use tortie_resources::{
        ObjectMeta, Protocol, WorkloadEndpoint, WorkloadEndpointPort, WorkloadEndpointSpec,
    };

    use super::Endpoint;

    fn wep(edit: impl FnOnce(&mut WorkloadEndpoint)) -> WorkloadEndpoint {
        let mut wep = WorkloadEndpoint {
            metadata: ObjectMeta::named("node--0-k8s-web-eth0"),
            spec: WorkloadEndpointSpec {
                ip_networks: vec!["fd00::1/128".into(), "10.0.0.1/32".into()],
                ..WorkloadEndpointSpec::default()
            },
        };
        edit(&mut wep);
        wep
    }

    #[test]
    fn workload_endpoint_fallbacks() {
        let port = |name: &str| WorkloadEndpointPort {
            name: name.into(),
            protocol: Protocol::Tcp,
            port: 8080,
            host_port: None,
            host_ip: None,
        };
        let ep = Endpoint::from_workload_endpoint(
            &wep(|w| {
                w.spec.workload = Some("web".into());
                w.spec.service_account_name = Some("api".into());
                w.spec.ports = vec![port("http"), port("")];
            }),
            Some(4),
        )
        .unwrap();
        // No namespace is `default`; the workload names the pod when `pod` is unset.
        assert_eq!(ep.key, "default/web");
        assert_eq!(ep.ipv4, std::net::Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ep.ifindex, Some(4));
        assert_eq!(ep.profiles, ["kns.default", "ksa.default.api"]);
        assert_eq!(ep.named_ports.len(), 1, "unnamed ports are left out");

        let ep = Endpoint::from_workload_endpoint(
            &wep(|w| {
                w.metadata.namespace = Some("prod".into());
                w.spec.profiles = vec!["custom".into()];
            }),
            None,
        )
        .unwrap();
        assert_eq!(ep.key, "prod/node--0-k8s-web-eth0");
        assert_eq!(ep.profiles, ["custom"]);

        let v6_only = wep(|w| w.spec.ip_networks.truncate(1));
        assert!(Endpoint::from_workload_endpoint(&v6_only, None).is_err());
    }
}
