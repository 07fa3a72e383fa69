//! Calico policy resources: `NetworkPolicy`, `GlobalNetworkPolicy` and `Profile`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::rule::{self, PolicyType, Rule};
use crate::validate::{self, Errors};
use crate::values::serialize_order;

/// The only policy tier: policies may name it but no other.
pub const DEFAULT_TIER: &str = "default";

/// A Calico `NetworkPolicy` (projectcalico.org/v3, namespaced): rules for the selected
/// endpoints of one namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkPolicy {
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// The policy.
    pub spec: NetworkPolicySpec,
}

resource_document!(NetworkPolicy, NetworkPolicySpec, Kind::NetworkPolicy);

/// The `spec` of a Calico [`NetworkPolicy`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    /// The tier; only `default` exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Lower orders apply first; policies without an order apply last.
    #[serde(
        default,
        serialize_with = "serialize_order",
        skip_serializing_if = "Option::is_none"
    )]
    pub order: Option<f64>,
    /// The endpoints the policy applies to (all in the namespace when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Applies to endpoints whose service account matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    /// Directions the policy applies to; inferred when empty (see
    /// [`NetworkPolicySpec::effective_types`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    /// Rules for incoming traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Rules for outgoing traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
}

impl NetworkPolicySpec {
    /// The directions in force: `types` when set, else as Calico infers them — `Ingress`
    /// when there are no egress rules, `Egress` when there are only egress rules, both when
    /// there are both.
    pub fn effective_types(&self) -> Vec<PolicyType> {
        rule::infer_types(
            &self.types,
            !self.ingress.is_empty(),
            !self.egress.is_empty(),
        )
    }

    /// Writes the inferred `types` when none are set, as Calico stores a policy.
    pub fn apply_defaults(&mut self) {
        self.types = self.effective_types();
    }
}

/// A `GlobalNetworkPolicy` (projectcalico.org/v3, cluster-scoped): rules for selected
/// endpoints in every namespace, and for hosts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GlobalNetworkPolicy {
    /// Name and labels.
    pub metadata: ObjectMeta,
    /// The policy.
    pub spec: GlobalNetworkPolicySpec,
}

resource_document!(
    GlobalNetworkPolicy,
    GlobalNetworkPolicySpec,
    Kind::GlobalNetworkPolicy
);

/// The `spec` of a [`GlobalNetworkPolicy`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicySpec {
    /// The tier; only `default` exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Lower orders apply first; policies without an order apply last.
    #[serde(
        default,
        serialize_with = "serialize_order",
        skip_serializing_if = "Option::is_none"
    )]
    pub order: Option<f64>,
    /// The endpoints the policy applies to (all when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Applies to endpoints in namespaces matching this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// Applies to endpoints whose service account matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    /// Directions the policy applies to; inferred when empty (see
    /// [`GlobalNetworkPolicySpec::effective_types`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    /// Rules for incoming traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Rules for outgoing traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Apply before connection tracking, to untracked traffic (host endpoints).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub do_not_track: bool,
    /// Apply before DNAT (host endpoints; ingress only).
    #[serde(
        default,
        rename = "preDNAT",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub pre_dnat: bool,
    /// Also apply to traffic forwarded through host endpoints.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apply_on_forward: bool,
}

impl GlobalNetworkPolicySpec {
    /// The directions in force; see [`NetworkPolicySpec::effective_types`].
    pub fn effective_types(&self) -> Vec<PolicyType> {
        rule::infer_types(
            &self.types,
            !self.ingress.is_empty(),
            !self.egress.is_empty(),
        )
    }

    /// Writes the inferred `types` when none are set, as Calico stores a policy.
    pub fn apply_defaults(&mut self) {
        self.types = self.effective_types();
    }
}

/// A `Profile` (projectcalico.org/v3, cluster-scoped): rules and labels that endpoints
/// listing it inherit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// Name and labels.
    pub metadata: ObjectMeta,
    /// The profile's rules and labels.
    pub spec: ProfileSpec,
}

resource_document!(Profile, ProfileSpec, Kind::Profile);

/// The `spec` of a [`Profile`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSpec {
    /// Rules for incoming traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Rules for outgoing traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Labels added to every endpoint that uses the profile.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels_to_apply: BTreeMap<String, String>,
}

fn is_label(s: &str) -> bool {
    crate::validate::dns1123_label(s).is_ok()
}

/// Calico's rule for NetworkPolicy names: a DNS label, or two joined by one `.` (a tier
/// prefix), or `knp.default.<name>` for policies converted from Kubernetes.
fn network_policy_name(name: &str) -> Result<(), String> {
    let simple = match name.split_once('.') {
        None => is_label(name),
        Some((tier, rest)) => is_label(tier) && is_label(rest),
    };
    let converted = name
        .strip_prefix("knp.default.")
        .is_some_and(|rest| validate::dns1123_subdomain(rest).is_ok());
    if (simple || converted) && name.len() <= 253 {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid policy name: use lower-case letters, digits and '-' \
             (with at most one '.'), starting and ending with a letter or digit"
        ))
    }
}

/// Calico's rule for GlobalNetworkPolicy names: a DNS label, optionally with one tier
/// prefix (`tier.name`).
fn global_network_policy_name(name: &str) -> Result<(), String> {
    let ok = match name.split_once('.') {
        None => is_label(name),
        Some((tier, rest)) => is_label(tier) && is_label(rest),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid policy name: use lower-case letters, digits and '-' \
             (with at most one '.'), starting and ending with a letter or digit"
        ))
    }
}

struct CommonPolicy<'a> {
    tier: Option<&'a str>,
    order: Option<f64>,
    selector: Option<&'a str>,
    service_account_selector: Option<&'a str>,
    types: &'a [PolicyType],
    ingress: &'a [Rule],
    egress: &'a [Rule],
}

fn check_common(errs: &mut Errors, policy: CommonPolicy<'_>) {
    if let Some(tier) = policy.tier {
        if tier != DEFAULT_TIER {
            errs.push(
                "spec.tier",
                format!("tier {tier:?} does not exist: only the default tier is supported"),
            );
        }
    }
    if let Some(order) = policy.order {
        if !order.is_finite() {
            errs.push("spec.order", "must be a finite number");
        }
    }
    for (path, selector) in [
        ("spec.selector", policy.selector),
        (
            "spec.serviceAccountSelector",
            policy.service_account_selector,
        ),
    ] {
        let parsed = validate::check_selector(errs, path, selector);
        validate::check_no_global(errs, path, parsed.as_ref());
    }
    rule::check_types(errs, "spec.types", policy.types);
    rule::check_rules(errs, "spec.ingress", policy.ingress);
    rule::check_rules(errs, "spec.egress", policy.egress);
}

impl NetworkPolicy {
    pub(crate) fn check(&self, errs: &mut Errors) {
        self.metadata
            .check(errs, Kind::NetworkPolicy, network_policy_name);
        let spec = &self.spec;
        check_common(
            errs,
            CommonPolicy {
                tier: spec.tier.as_deref(),
                order: spec.order,
                selector: spec.selector.as_deref(),
                service_account_selector: spec.service_account_selector.as_deref(),
                types: &spec.types,
                ingress: &spec.ingress,
                egress: &spec.egress,
            },
        );
    }
}

impl GlobalNetworkPolicy {
    pub(crate) fn check(&self, errs: &mut Errors) {
        self.metadata
            .check(errs, Kind::GlobalNetworkPolicy, global_network_policy_name);
        let spec = &self.spec;
        check_common(
            errs,
            CommonPolicy {
                tier: spec.tier.as_deref(),
                order: spec.order,
                selector: spec.selector.as_deref(),
                service_account_selector: spec.service_account_selector.as_deref(),
                types: &spec.types,
                ingress: &spec.ingress,
                egress: &spec.egress,
            },
        );
        let namespace_selector = validate::check_selector(
            errs,
            "spec.namespaceSelector",
            spec.namespace_selector.as_deref(),
        );
        validate::check_no_global(errs, "spec.namespaceSelector", namespace_selector.as_ref());
        if spec.do_not_track && spec.pre_dnat {
            errs.push("spec.preDNAT", "preDNAT and doNotTrack cannot both be true");
        }
        if spec.pre_dnat {
            if !spec.egress.is_empty() {
                errs.push("spec.egress", "a preDNAT policy cannot have egress rules");
            }
            if spec.types.contains(&PolicyType::Egress) {
                errs.push("spec.types", "a preDNAT policy cannot have the Egress type");
            }
        }
        if (spec.do_not_track || spec.pre_dnat) && !spec.apply_on_forward {
            errs.push(
                "spec.applyOnForward",
                "must be true when preDNAT or doNotTrack is true",
            );
        }
    }
}

impl Profile {
    pub(crate) fn check(&self, errs: &mut Errors) {
        self.metadata
            .check(errs, Kind::Profile, validate::dns1123_subdomain);
        rule::check_rules(errs, "spec.ingress", &self.spec.ingress);
        rule::check_rules(errs, "spec.egress", &self.spec.egress);
        validate::check_labels(errs, "spec.labelsToApply", &self.spec.labels_to_apply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names() {
        assert!(network_policy_name("allow-web").is_ok());
        assert!(network_policy_name("default.allow-web").is_ok());
        assert!(network_policy_name("knp.default.allow.web").is_ok());
        assert!(network_policy_name("a.b.c").is_err());
        assert!(network_policy_name("Allow").is_err());
        assert!(global_network_policy_name("default.deny-all").is_ok());
        assert!(global_network_policy_name("a.b.c").is_err());
    }

    #[test]
    fn types_are_inferred_as_calico_does() {
        let mut spec = NetworkPolicySpec::default();
        assert_eq!(spec.effective_types(), vec![PolicyType::Ingress]);
        spec.egress.push(Rule::new(crate::rule::RuleAction::Allow));
        assert_eq!(spec.effective_types(), vec![PolicyType::Egress]);
        spec.ingress.push(Rule::new(crate::rule::RuleAction::Allow));
        assert_eq!(
            spec.effective_types(),
            vec![PolicyType::Ingress, PolicyType::Egress]
        );
        spec.types = vec![PolicyType::Ingress];
        assert_eq!(spec.effective_types(), vec![PolicyType::Ingress]);
    }
}
