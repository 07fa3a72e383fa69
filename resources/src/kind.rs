//! The resource kinds: their document names, API versions, plurals, scope, the names
//! `tortiectl` accepts for them, and their datastore keys.

use std::fmt;
use std::str::FromStr;

/// `apiVersion` of the Calico resources.
pub const CALICO_API_VERSION: &str = "projectcalico.org/v3";
/// `apiVersion` of Kubernetes `NetworkPolicy`.
pub const K8S_NETWORKING_API_VERSION: &str = "networking.k8s.io/v1";
/// `apiVersion` of Kubernetes core objects (`Namespace`, `Pod`).
pub const K8S_CORE_API_VERSION: &str = "v1";

/// Root of every resource key in the datastore (Calico's etcd v3 layout).
pub const KEY_ROOT: &str = "/calico/resources/v3/";
const CALICO_KEY_GROUP: &str = "projectcalico.org";
const K8S_KEY_GROUP: &str = "k8s";

/// A kind of resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `IPPool` (projectcalico.org/v3, cluster-scoped).
    IpPool,
    /// `IPAMConfiguration` (projectcalico.org/v3, cluster-scoped, a single object `default`).
    IpamConfiguration,
    /// `Node` (projectcalico.org/v3, cluster-scoped).
    Node,
    /// `WorkloadEndpoint` (projectcalico.org/v3, namespaced).
    WorkloadEndpoint,
    /// `BGPPeer` (projectcalico.org/v3, cluster-scoped).
    BgpPeer,
    /// `BGPConfiguration` (projectcalico.org/v3, cluster-scoped).
    BgpConfiguration,
    /// Calico `NetworkPolicy` (projectcalico.org/v3, namespaced).
    NetworkPolicy,
    /// `GlobalNetworkPolicy` (projectcalico.org/v3, cluster-scoped).
    GlobalNetworkPolicy,
    /// `Profile` (projectcalico.org/v3, cluster-scoped).
    Profile,
    /// Kubernetes `NetworkPolicy` (networking.k8s.io/v1, namespaced).
    K8sNetworkPolicy,
    /// Kubernetes `Namespace` (v1, cluster-scoped).
    Namespace,
    /// Kubernetes `Pod` (v1, namespaced).
    Pod,
}

impl Kind {
    /// Every kind, Calico kinds first.
    pub const ALL: [Kind; 12] = [
        Kind::IpPool,
        Kind::IpamConfiguration,
        Kind::Node,
        Kind::WorkloadEndpoint,
        Kind::BgpPeer,
        Kind::BgpConfiguration,
        Kind::NetworkPolicy,
        Kind::GlobalNetworkPolicy,
        Kind::Profile,
        Kind::K8sNetworkPolicy,
        Kind::Namespace,
        Kind::Pod,
    ];

    /// The `kind:` written in documents (`IPPool`, `BGPPeer`, `NetworkPolicy`, ...). Calico
    /// and Kubernetes network policies share `NetworkPolicy`; their `apiVersion` tells them
    /// apart.
    pub fn name(self) -> &'static str {
        match self {
            Kind::IpPool => "IPPool",
            Kind::IpamConfiguration => "IPAMConfiguration",
            Kind::Node => "Node",
            Kind::WorkloadEndpoint => "WorkloadEndpoint",
            Kind::BgpPeer => "BGPPeer",
            Kind::BgpConfiguration => "BGPConfiguration",
            Kind::NetworkPolicy | Kind::K8sNetworkPolicy => "NetworkPolicy",
            Kind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            Kind::Profile => "Profile",
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
        }
    }

    /// The `apiVersion:` of documents of this kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::K8sNetworkPolicy => K8S_NETWORKING_API_VERSION,
            Kind::Namespace | Kind::Pod => K8S_CORE_API_VERSION,
            _ => CALICO_API_VERSION,
        }
    }

    /// Whether this is a `projectcalico.org/v3` kind.
    pub fn is_calico(self) -> bool {
        self.api_version() == CALICO_API_VERSION
    }

    /// The lower-case plural used in datastore keys (`ippools`, `networkpolicies`, ...).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::IpPool => "ippools",
            Kind::IpamConfiguration => "ipamconfigurations",
            Kind::Node => "nodes",
            Kind::WorkloadEndpoint => "workloadendpoints",
            Kind::BgpPeer => "bgppeers",
            Kind::BgpConfiguration => "bgpconfigurations",
            Kind::NetworkPolicy | Kind::K8sNetworkPolicy => "networkpolicies",
            Kind::GlobalNetworkPolicy => "globalnetworkpolicies",
            Kind::Profile => "profiles",
            Kind::Namespace => "namespaces",
            Kind::Pod => "pods",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(
            self,
            Kind::WorkloadEndpoint | Kind::NetworkPolicy | Kind::K8sNetworkPolicy | Kind::Pod
        )
    }

    /// The names [`Kind::from_str`] accepts for this kind (compared case-insensitively).
    ///
    /// These are calicoctl's spellings: singular, plural and short forms (`ippool`,
    /// `ippools`, `ipp`, `pool`, `wep`, `gnp`, `bgpconfig`, ...). Calico kinds also accept a
    /// `.projectcalico.org` suffix on the singular or plural (`ippools.projectcalico.org`).
    /// `networkpolicy`, `netpol`, `np` and `policy` mean the Calico `NetworkPolicy`, as in
    /// calicoctl; the Kubernetes one is `k8snetworkpolicy`, `knp` or
    /// `networkpolicies.networking.k8s.io`.
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Kind::IpPool => &["ippool", "ippools", "ipp", "ipps", "pool", "pools"],
            Kind::IpamConfiguration => &[
                "ipamconfiguration",
                "ipamconfigurations",
                "ipamconfig",
                "ipamconfigs",
            ],
            Kind::Node => &["node", "nodes", "no", "nos"],
            Kind::WorkloadEndpoint => &["workloadendpoint", "workloadendpoints", "wep", "weps"],
            Kind::BgpPeer => &["bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps"],
            Kind::BgpConfiguration => &[
                "bgpconfiguration",
                "bgpconfigurations",
                "bgpconfig",
                "bgpconfigs",
            ],
            Kind::NetworkPolicy => &[
                "networkpolicy",
                "networkpolicies",
                "netpol",
                "netpols",
                "np",
                "nps",
                "policy",
                "policies",
                "pol",
                "pols",
            ],
            Kind::GlobalNetworkPolicy => &[
                "globalnetworkpolicy",
                "globalnetworkpolicies",
                "gnp",
                "gnps",
            ],
            Kind::Profile => &["profile", "profiles", "pro", "pros"],
            Kind::K8sNetworkPolicy => &[
                "k8snetworkpolicy",
                "k8snetworkpolicies",
                "knp",
                "knps",
                "networkpolicy.networking.k8s.io",
                "networkpolicies.networking.k8s.io",
            ],
            Kind::Namespace => &["namespace", "namespaces", "ns"],
            Kind::Pod => &["pod", "pods", "po"],
        }
    }

    /// The kind a document declares with `apiVersion` and `kind` (both exact, as Calico
    /// requires).
    pub fn from_type(api_version: &str, kind: &str) -> Result<Kind, TypeError> {
        let candidates: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.name() == kind).collect();
        if candidates.is_empty() {
            let suggestion = Kind::ALL
                .into_iter()
                .find(|k| k.name().eq_ignore_ascii_case(kind))
                .map(|k| k.name());
            return Err(TypeError::UnknownKind {
                kind: kind.to_string(),
                suggestion,
            });
        }
        candidates
            .iter()
            .copied()
            .find(|k| k.api_version() == api_version)
            .ok_or_else(|| TypeError::WrongApiVersion {
                kind: kind.to_string(),
                api_version: api_version.to_string(),
                expected: candidates.iter().map(|k| k.api_version()).collect(),
            })
    }

    /// The datastore key of one object: `/calico/resources/v3/projectcalico.org/<plural>/<name>`
    /// for cluster-scoped kinds, `.../<plural>/<namespace>/<name>` for namespaced ones
    /// (`default` when `namespace` is `None`), and `/calico/resources/v3/k8s/<plural>/...`
    /// for the Kubernetes kinds. `namespace` is ignored for cluster-scoped kinds.
    pub fn key(self, namespace: Option<&str>, name: &str) -> String {
        if self.namespaced() {
            let namespace = namespace.unwrap_or(crate::meta::DEFAULT_NAMESPACE);
            format!("{}{namespace}/{name}", self.prefix(None))
        } else {
            format!("{}{name}", self.prefix(None))
        }
    }

    /// The key prefix to list objects of this kind, ending in `/`: every object, or for a
    /// namespaced kind with `Some(namespace)`, those of one namespace.
    pub fn prefix(self, namespace: Option<&str>) -> String {
        let group = if self.is_calico() {
            CALICO_KEY_GROUP
        } else {
            K8S_KEY_GROUP
        };
        match namespace {
            Some(namespace) if self.namespaced() => {
                format!("{KEY_ROOT}{group}/{}/{namespace}/", self.plural())
            }
            _ => format!("{KEY_ROOT}{group}/{}/", self.plural()),
        }
    }
}

impl fmt::Display for Kind {
    /// The document kind, except that the Kubernetes network policy shows as
    /// `Kubernetes NetworkPolicy` so messages can tell it from Calico's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::K8sNetworkPolicy => f.write_str("Kubernetes NetworkPolicy"),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for Kind {
    type Err = UnknownKind;

    /// Parses a resource type as typed on the command line; see [`Kind::aliases`].
    fn from_str(s: &str) -> Result<Kind, UnknownKind> {
        let wanted = s.trim().to_ascii_lowercase();
        for kind in Kind::ALL {
            let calico_qualified = |alias: &str| {
                kind.is_calico()
                    && wanted
                        .strip_suffix(".projectcalico.org")
                        .is_some_and(|base| base == alias)
            };
            if kind
                .aliases()
                .iter()
                .any(|alias| *alias == wanted || calico_qualified(alias))
            {
                return Ok(kind);
            }
        }
        Err(UnknownKind(s.to_string()))
    }
}

/// A resource type name that [`Kind::from_str`] does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown resource type {0:?}: use one of ippool, ipamconfig, node, workloadendpoint (wep), \
     bgppeer, bgpconfig, networkpolicy (np), globalnetworkpolicy (gnp), profile, \
     k8snetworkpolicy (knp), namespace, pod"
)]
pub struct UnknownKind(pub String);

/// A document whose `apiVersion` and `kind` do not name a supported kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// The document has no `kind`.
    #[error(
        "missing `kind`: every resource needs apiVersion and kind, e.g. \
         `apiVersion: projectcalico.org/v3` and `kind: IPPool`"
    )]
    MissingKind,
    /// The document has a `kind` but no `apiVersion`.
    #[error("missing `apiVersion` for kind {kind}: use {expected}")]
    MissingApiVersion {
        /// The declared kind.
        kind: String,
        /// The apiVersion(s) that kind exists in.
        expected: String,
    },
    /// The `kind` is not one this library handles.
    #[error(
        "unknown kind {kind:?}{}: supported kinds are IPPool, IPAMConfiguration, Node, \
         WorkloadEndpoint, BGPPeer, BGPConfiguration, NetworkPolicy, GlobalNetworkPolicy and \
         Profile (projectcalico.org/v3), NetworkPolicy (networking.k8s.io/v1), Namespace and \
         Pod (v1)",
        suggestion.map(|s| format!(" (did you mean {s}?)")).unwrap_or_default()
    )]
    UnknownKind {
        /// The declared kind.
        kind: String,
        /// A supported kind differing only in case.
        suggestion: Option<&'static str>,
    },
    /// The kind exists, but not in the declared `apiVersion`.
    #[error(
        "kind {kind} does not exist in apiVersion {api_version:?}: use {}",
        expected.join(" or ")
    )]
    WrongApiVersion {
        /// The declared kind.
        kind: String,
        /// The declared apiVersion.
        api_version: String,
        /// The apiVersion(s) the kind exists in.
        expected: Vec<&'static str>,
    },
}

/// A datastore key taken apart: which kind, namespace and name it stores.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceKey {
    /// The kind stored under the key.
    pub kind: Kind,
    /// The namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

impl ResourceKey {
    /// Parses a key in the layout [`Kind::key`] writes; `None` for any other key.
    pub fn parse(key: &str) -> Option<ResourceKey> {
        let rest = key.strip_prefix(KEY_ROOT)?;
        let (group, rest) = rest.split_once('/')?;
        let (plural, rest) = rest.split_once('/')?;
        let kind = Kind::ALL.into_iter().find(|k| {
            k.plural() == plural
                && (if k.is_calico() {
                    group == CALICO_KEY_GROUP
                } else {
                    group == K8S_KEY_GROUP
                })
        })?;
        let (namespace, name) = if kind.namespaced() {
            let (namespace, name) = rest.split_once('/')?;
            (Some(namespace.to_string()), name)
        } else {
            (None, rest)
        };
        if name.is_empty() || name.contains('/') || namespace.as_deref() == Some("") {
            return None;
        }
        Some(ResourceKey {
            kind,
            namespace,
            name: name.to_string(),
        })
    }
}

impl fmt::Display for ResourceKey {
    /// The key string, as [`Kind::key`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind.key(self.namespace.as_deref(), &self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_parse_case_insensitively() {
        for (text, kind) in [
            ("ippool", Kind::IpPool),
            ("IPPools", Kind::IpPool),
            ("pool", Kind::IpPool),
            ("ipp", Kind::IpPool),
            ("ippools.projectcalico.org", Kind::IpPool),
            ("wep", Kind::WorkloadEndpoint),
            ("WorkloadEndpoint", Kind::WorkloadEndpoint),
            ("gnp", Kind::GlobalNetworkPolicy),
            ("GlobalNetworkPolicies", Kind::GlobalNetworkPolicy),
            ("netpol", Kind::NetworkPolicy),
            ("networkpolicy", Kind::NetworkPolicy),
            ("NP", Kind::NetworkPolicy),
            ("policies", Kind::NetworkPolicy),
            ("knp", Kind::K8sNetworkPolicy),
            ("networkpolicies.networking.k8s.io", Kind::K8sNetworkPolicy),
            ("bgpconfig", Kind::BgpConfiguration),
            ("BGPPeer", Kind::BgpPeer),
            ("bp", Kind::BgpPeer),
            ("ipamconfig", Kind::IpamConfiguration),
            ("IPAMConfiguration", Kind::IpamConfiguration),
            ("nodes", Kind::Node),
            ("profile", Kind::Profile),
            ("ns", Kind::Namespace),
            ("po", Kind::Pod),
        ] {
            assert_eq!(text.parse::<Kind>(), Ok(kind), "{text}");
        }
        assert!("pods.projectcalico.org".parse::<Kind>().is_err());
        let err = "ippol".parse::<Kind>().unwrap_err();
        assert!(err.to_string().contains("\"ippol\""), "{err}");
    }

    #[test]
    fn every_alias_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for kind in Kind::ALL {
            for alias in kind.aliases() {
                assert!(seen.insert(*alias), "{alias} used twice");
                assert_eq!(alias.parse::<Kind>(), Ok(kind));
            }
            assert!(kind.name().parse::<Kind>().is_ok());
        }
    }

    #[test]
    fn keys() {
        assert_eq!(
            Kind::IpPool.key(None, "default-ipv4-ippool"),
            "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool"
        );
        assert_eq!(
            Kind::IpPool.key(Some("ignored"), "p"),
            "/calico/resources/v3/projectcalico.org/ippools/p"
        );
        assert_eq!(
            Kind::NetworkPolicy.key(Some("prod"), "allow-web"),
            "/calico/resources/v3/projectcalico.org/networkpolicies/prod/allow-web"
        );
        assert_eq!(
            Kind::WorkloadEndpoint.key(None, "n-k8s-p-eth0"),
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/n-k8s-p-eth0"
        );
        assert_eq!(
            Kind::K8sNetworkPolicy.key(Some("prod"), "deny"),
            "/calico/resources/v3/k8s/networkpolicies/prod/deny"
        );
        assert_eq!(
            Kind::Namespace.key(None, "prod"),
            "/calico/resources/v3/k8s/namespaces/prod"
        );
        assert_eq!(
            Kind::Pod.prefix(Some("prod")),
            "/calico/resources/v3/k8s/pods/prod/"
        );
        assert_eq!(Kind::Pod.prefix(None), "/calico/resources/v3/k8s/pods/");
        assert_eq!(
            Kind::GlobalNetworkPolicy.prefix(Some("prod")),
            "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/"
        );
        assert_eq!(
            Kind::IpamConfiguration.key(None, "default"),
            "/calico/resources/v3/projectcalico.org/ipamconfigurations/default"
        );
    }

    #[test]
    fn keys_parse_back() {
        for kind in Kind::ALL {
            let key = kind.key(Some("ns1"), "obj.1");
            let parsed = ResourceKey::parse(&key).unwrap();
            assert_eq!(parsed.kind, kind);
            assert_eq!(parsed.name, "obj.1");
            assert_eq!(
                parsed.namespace.as_deref(),
                kind.namespaced().then_some("ns1")
            );
            assert_eq!(parsed.to_string(), key);
        }
        assert_eq!(ResourceKey::parse("/calico/ipam/v2/host/x"), None);
        assert_eq!(
            ResourceKey::parse("/calico/resources/v3/projectcalico.org/ippools/a/b"),
            None
        );
        assert_eq!(
            ResourceKey::parse("/calico/resources/v3/projectcalico.org/networkpolicies/x"),
            None
        );
    }

    #[test]
    fn document_types() {
        assert_eq!(
            Kind::from_type("projectcalico.org/v3", "NetworkPolicy"),
            Ok(Kind::NetworkPolicy)
        );
        assert_eq!(
            Kind::from_type("networking.k8s.io/v1", "NetworkPolicy"),
            Ok(Kind::K8sNetworkPolicy)
        );
        let err = Kind::from_type("projectcalico.org/v1", "IPPool").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kind IPPool does not exist in apiVersion \"projectcalico.org/v1\": use \
             projectcalico.org/v3"
        );
        let err = Kind::from_type("v1", "NetworkPolicy").unwrap_err();
        assert!(err
            .to_string()
            .ends_with("use projectcalico.org/v3 or networking.k8s.io/v1"));
        let err = Kind::from_type("projectcalico.org/v3", "Ippool").unwrap_err();
        assert!(err.to_string().contains("did you mean IPPool?"), "{err}");
    }
}
