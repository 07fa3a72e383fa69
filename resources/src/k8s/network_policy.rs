//! Kubernetes `NetworkPolicy` (networking.k8s.io/v1) and its label selectors.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use ipnet::IpNet;

use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::rule::{self, PolicyType};
use crate::validate::{self, Errors};

/// A Kubernetes `NetworkPolicy` (networking.k8s.io/v1, namespaced).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct K8sNetworkPolicy {
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// The policy.
    pub spec: K8sNetworkPolicySpec,
}

resource_document!(
    K8sNetworkPolicy,
    K8sNetworkPolicySpec,
    Kind::K8sNetworkPolicy
);

/// The `spec` of a [`K8sNetworkPolicy`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sNetworkPolicySpec {
    /// The pods of the namespace the policy applies to; `{}` selects them all.
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Directions the policy applies to; inferred when empty (see
    /// [`K8sNetworkPolicySpec::effective_policy_types`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_types: Vec<PolicyType>,
    /// Allowed incoming traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<K8sIngressRule>,
    /// Allowed outgoing traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<K8sEgressRule>,
}

/// An ingress rule: traffic from any of `from` to any of `ports` is allowed (empty lists
/// match everything).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sIngressRule {
    /// Allowed sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<K8sPeer>,
    /// Allowed destination ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<K8sPolicyPort>,
}

/// An egress rule: traffic to any of `to` on any of `ports` is allowed (empty lists match
/// everything).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sEgressRule {
    /// Allowed destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<K8sPeer>,
    /// Allowed destination ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<K8sPolicyPort>,
}

/// The other end of an allowed connection: pods by selector, or an address block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sPeer {
    /// Pods matching this selector (in the policy's namespace unless `namespaceSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces matching this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// An address range; cannot be combined with the selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

/// An address range with holes (`ipBlock`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBlock {
    /// The range, e.g. `172.17.0.0/16`.
    #[serde(default)]
    pub cidr: String,
    /// Ranges inside `cidr` that are excluded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

/// A port (or range, with `endPort`) a rule allows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sPolicyPort {
    /// The protocol (default TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<K8sProtocol>,
    /// A port number or a named container port; every port when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// The last port of a range starting at `port` (a number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i32>,
}

/// A protocol of Kubernetes ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum K8sProtocol {
    /// TCP (the default).
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

/// A Kubernetes `IntOrString`: a port number or a port name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IntOrString {
    /// A number.
    Int(i32),
    /// A name.
    String(String),
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(n) => serializer.serialize_i32(*n),
            IntOrString::String(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntOrStringVisitor;
        impl Visitor<'_> for IntOrStringVisitor {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or name")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<IntOrString, E> {
                i32::try_from(n)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("{n} is out of range for a port")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<IntOrString, E> {
                i32::try_from(n)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("{n} is out of range for a port")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(s.to_string()))
            }
        }
        deserializer.deserialize_any(IntOrStringVisitor)
    }
}

/// A Kubernetes label selector: all of `matchLabels` and all of `matchExpressions` must
/// hold; an empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must have these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Further conditions on labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One condition of a [`LabelSelector`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// How the label is compared.
    pub operator: SelectorOperator,
    /// The values for `In` and `NotIn` (must be empty for the others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The operator of a [`LabelSelectorRequirement`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SelectorOperator {
    /// The label has one of the values.
    In,
    /// The label is missing or has none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is missing.
    DoesNotExist,
}

impl K8sNetworkPolicySpec {
    /// The directions in force: `policyTypes` when set, else as Kubernetes infers them —
    /// `Ingress` always, plus `Egress` when there are egress rules.
    pub fn effective_policy_types(&self) -> Vec<PolicyType> {
        if !self.policy_types.is_empty() {
            return self.policy_types.clone();
        }
        let mut types = vec![PolicyType::Ingress];
        if !self.egress.is_empty() {
            types.push(PolicyType::Egress);
        }
        types
    }

    /// Writes the defaults the Kubernetes API server would: inferred `policyTypes`, and
    /// protocol TCP on ports that name none.
    pub fn apply_defaults(&mut self) {
        self.policy_types = self.effective_policy_types();
        let ports = self
            .ingress
            .iter_mut()
            .flat_map(|r| r.ports.iter_mut())
            .chain(self.egress.iter_mut().flat_map(|r| r.ports.iter_mut()));
        for port in ports {
            port.protocol.get_or_insert(K8sProtocol::Tcp);
        }
    }
}

impl K8sNetworkPolicy {
    pub(crate) fn check(&self, errs: &mut Errors) {
        self.metadata
            .check(errs, Kind::K8sNetworkPolicy, validate::dns1123_subdomain);
        let spec = &self.spec;
        check_label_selector(errs, "spec.podSelector", &spec.pod_selector);
        rule::check_types(errs, "spec.policyTypes", &spec.policy_types);
        for (i, rule) in spec.ingress.iter().enumerate() {
            let path = format!("spec.ingress[{i}]");
            check_peers(errs, &format!("{path}.from"), &rule.from);
            check_ports(errs, &format!("{path}.ports"), &rule.ports);
        }
        for (i, rule) in spec.egress.iter().enumerate() {
            let path = format!("spec.egress[{i}]");
            check_peers(errs, &format!("{path}.to"), &rule.to);
            check_ports(errs, &format!("{path}.ports"), &rule.ports);
        }
    }
}

fn check_label_selector(errs: &mut Errors, path: &str, selector: &LabelSelector) {
    validate::check_labels(errs, &format!("{path}.matchLabels"), &selector.match_labels);
    for (i, req) in selector.match_expressions.iter().enumerate() {
        let path = format!("{path}.matchExpressions[{i}]");
        errs.check(format!("{path}.key"), validate::qualified_name(&req.key));
        match req.operator {
            SelectorOperator::In | SelectorOperator::NotIn if req.values.is_empty() => {
                errs.push(
                    format!("{path}.values"),
                    format!("must not be empty with operator {:?}", req.operator),
                );
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist if !req.values.is_empty() => {
                errs.push(
                    format!("{path}.values"),
                    format!("must be empty with operator {:?}", req.operator),
                );
            }
            _ => {}
        }
        for (j, value) in req.values.iter().enumerate() {
            errs.check(format!("{path}.values[{j}]"), validate::label_value(value));
        }
    }
}

fn check_peers(errs: &mut Errors, path: &str, peers: &[K8sPeer]) {
    for (i, peer) in peers.iter().enumerate() {
        let path = format!("{path}[{i}]");
        if let Some(selector) = &peer.pod_selector {
            check_label_selector(errs, &format!("{path}.podSelector"), selector);
        }
        if let Some(selector) = &peer.namespace_selector {
            check_label_selector(errs, &format!("{path}.namespaceSelector"), selector);
        }
        match &peer.ip_block {
            Some(block) => {
                if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
                    errs.push(
                        format!("{path}.ipBlock"),
                        "cannot be combined with podSelector or namespaceSelector in one peer: \
                         write them as separate peers",
                    );
                }
                check_ip_block(errs, &format!("{path}.ipBlock"), block);
            }
            None if peer.pod_selector.is_none() && peer.namespace_selector.is_none() => {
                errs.push(path, "must set podSelector, namespaceSelector or ipBlock");
            }
            None => {}
        }
    }
}

fn check_ip_block(errs: &mut Errors, path: &str, block: &IpBlock) {
    let cidr = validate::parse_cidr(&block.cidr);
    if cidr.is_none() {
        errs.push(
            format!("{path}.cidr"),
            format!("{:?} is not a valid CIDR such as 172.17.0.0/16", block.cidr),
        );
    }
    for (i, except) in block.except.iter().enumerate() {
        let except_path = format!("{path}.except[{i}]");
        match (validate::parse_cidr(except), cidr) {
            (None, _) => errs.push(
                except_path,
                format!("{except:?} is not a valid CIDR such as 172.17.1.0/24"),
            ),
            (Some(hole), Some(cidr)) => {
                let (hole, cidr): (IpNet, IpNet) = (hole.trunc(), cidr.trunc());
                if !cidr.contains(&hole) || hole.prefix_len() <= cidr.prefix_len() {
                    errs.push(
                        except_path,
                        format!("{hole} must be strictly inside the ipBlock's cidr {cidr}"),
                    );
                }
            }
            (Some(_), None) => {}
        }
    }
}

fn check_ports(errs: &mut Errors, path: &str, ports: &[K8sPolicyPort]) {
    for (i, port) in ports.iter().enumerate() {
        let path = format!("{path}[{i}]");
        match &port.port {
            Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => errs.push(
                format!("{path}.port"),
                format!("{n} is out of range: must be 1 to 65535"),
            ),
            Some(IntOrString::String(name)) => {
                errs.check(format!("{path}.port"), validate::port_name(name));
            }
            _ => {}
        }
        let Some(end) = port.end_port else { continue };
        match &port.port {
            Some(IntOrString::Int(start)) => {
                if end < *start || end > 65535 {
                    errs.push(
                        format!("{path}.endPort"),
                        format!("{end} must be between port ({start}) and 65535"),
                    );
                }
            }
            _ => errs.push(
                format!("{path}.endPort"),
                "needs a numeric port to start the range",
            ),
        }
    }
}
