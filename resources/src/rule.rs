//! Calico policy rules: [`Rule`], [`EntityRule`] and their checks, shared by
//! `NetworkPolicy`, `GlobalNetworkPolicy` and `Profile`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use ipnet::IpNet;

use crate::validate::{self, Errors};
use crate::values::{Port, Protocol};

/// The direction a policy applies to (`types`, and Kubernetes `policyTypes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    /// Traffic into the selected endpoints.
    Ingress,
    /// Traffic out of the selected endpoints.
    Egress,
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleAction {
    /// Accept the packet.
    Allow,
    /// Drop the packet.
    Deny,
    /// Log the packet and go on to the next rule.
    Log,
    /// Skip the rest of this tier's policies.
    Pass,
}

/// One rule of a policy or profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// What to do with matching traffic. Required.
    pub action: RuleAction,
    /// Match only this protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Match every protocol but this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    /// Match ICMP type and code (protocol ICMP or ICMPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpFields>,
    /// Match every ICMP type and code but this one (protocol ICMP or ICMPv6).
    #[serde(default, rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpFields>,
    /// Match only IPv4 (4) or IPv6 (6) traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<i32>,
    /// Conditions on the packet's source.
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub source: EntityRule,
    /// Conditions on the packet's destination.
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub destination: EntityRule,
    /// Annotations on the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

impl Rule {
    /// A rule with only an action: it matches all traffic.
    pub fn new(action: RuleAction) -> Self {
        Rule {
            action,
            protocol: None,
            not_protocol: None,
            icmp: None,
            not_icmp: None,
            ip_version: None,
            source: EntityRule::default(),
            destination: EntityRule::default(),
            metadata: None,
        }
    }
}

/// ICMP type and code (`icmp`, `notICMP`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpFields {
    /// The ICMP type, 0 to 254.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i32>,
    /// The ICMP code, 0 to 255; only with a type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

/// Annotations on a rule (`metadata:` of a rule).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMetadata {
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Conditions on one end of a packet (`source`, `destination`). All that are set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    /// The address is in one of these CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    /// The address is in none of these CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    /// The endpoint matches this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The endpoint does not match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<String>,
    /// The endpoint's namespace matches this selector (`global()`: non-namespaced entities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// The port is one of these (needs a protocol with ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// The port is none of these (needs a protocol with ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
    /// The endpoint runs as one of these service accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
}

impl EntityRule {
    /// Whether no condition is set (the rule matches any address here).
    pub fn is_empty(&self) -> bool {
        *self == EntityRule::default()
    }
}

/// Service accounts an [`EntityRule`] matches (`serviceAccounts`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountMatch {
    /// Service accounts by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Service accounts by label selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// The policy types Calico infers when `types` is empty: `Ingress` when there are no egress
/// rules (even with no rules at all), `Egress` when there are only egress rules, both when
/// there are both.
pub(crate) fn infer_types(
    types: &[PolicyType],
    has_ingress: bool,
    has_egress: bool,
) -> Vec<PolicyType> {
    if !types.is_empty() {
        return types.to_vec();
    }
    match (has_ingress, has_egress) {
        (_, false) => vec![PolicyType::Ingress],
        (false, true) => vec![PolicyType::Egress],
        (true, true) => vec![PolicyType::Ingress, PolicyType::Egress],
    }
}

/// Reports a type listed twice.
pub(crate) fn check_types(errs: &mut Errors, path: &str, types: &[PolicyType]) {
    for (i, t) in types.iter().enumerate() {
        if types[..i].contains(t) {
            errs.push(
                format!("{path}[{i}]"),
                format!("{t:?} is listed more than once"),
            );
        }
    }
}

/// Checks every rule of a list at `path` (`spec.ingress`).
pub(crate) fn check_rules(errs: &mut Errors, path: &str, rules: &[Rule]) {
    for (i, rule) in rules.iter().enumerate() {
        check_rule(errs, &format!("{path}[{i}]"), rule);
    }
}

const PORTS_NEED_PROTOCOL: &str =
    "rules that match ports must set protocol to TCP, UDP, SCTP or UDPLite";

fn check_rule(errs: &mut Errors, path: &str, rule: &Rule) {
    for (field, protocol) in [
        ("protocol", rule.protocol),
        ("notProtocol", rule.not_protocol),
    ] {
        if protocol == Some(Protocol::Number(0)) {
            errs.push(
                format!("{path}.{field}"),
                "0 is not a valid protocol number: use 1 to 255",
            );
        }
    }
    let ports_ok = rule.protocol.is_some_and(Protocol::supports_ports);
    for (end, entity) in [("source", &rule.source), ("destination", &rule.destination)] {
        if !ports_ok {
            for (field, ports) in [("ports", &entity.ports), ("notPorts", &entity.not_ports)] {
                if !ports.is_empty() {
                    errs.push(format!("{path}.{end}.{field}"), PORTS_NEED_PROTOCOL);
                }
            }
        }
        check_entity(errs, &format!("{path}.{end}"), entity);
    }
    check_icmp_version(errs, path, rule);
    check_nets(errs, path, rule);
}

fn check_icmp_version(errs: &mut Errors, path: &str, rule: &Rule) {
    let is_icmp_protocol = rule.protocol.is_some_and(|p| p.is_icmp() || p.is_icmpv6());
    for (field, icmp) in [("icmp", &rule.icmp), ("notICMP", &rule.not_icmp)] {
        let Some(icmp) = icmp else { continue };
        let icmp_path = format!("{path}.{field}");
        if !is_icmp_protocol {
            errs.push(
                &icmp_path,
                "rules that match ICMP fields must set protocol to ICMP or ICMPv6",
            );
        }
        if let Some(t) = icmp.icmp_type {
            if !(0..=254).contains(&t) {
                errs.push(
                    format!("{icmp_path}.type"),
                    format!("{t} is out of range: must be 0 to 254"),
                );
            }
        }
        if let Some(code) = icmp.code {
            if !(0..=255).contains(&code) {
                errs.push(
                    format!("{icmp_path}.code"),
                    format!("{code} is out of range: must be 0 to 255"),
                );
            }
            if icmp.icmp_type.is_none() {
                errs.push(
                    format!("{icmp_path}.code"),
                    "an ICMP code needs an ICMP type",
                );
            }
        }
    }
    if let Some(version) = rule.ip_version {
        if version != 4 && version != 6 {
            errs.push(
                format!("{path}.ipVersion"),
                format!("{version} is not an IP version: use 4 or 6"),
            );
        }
        for (field, protocol) in [
            ("protocol", rule.protocol),
            ("notProtocol", rule.not_protocol),
        ] {
            let Some(protocol) = protocol else { continue };
            if protocol.is_icmp() && version != 4 {
                errs.push(
                    format!("{path}.ipVersion"),
                    format!("must be 4 with {field} ICMP (use ICMPv6 for IPv6)"),
                );
            }
            if protocol.is_icmpv6() && version != 6 {
                errs.push(
                    format!("{path}.ipVersion"),
                    format!("must be 6 with {field} ICMPv6 (use ICMP for IPv4)"),
                );
            }
        }
    }
}

/// Checks the CIDRs of both ends: each must parse, match `ipVersion`, and one rule must not
/// mix IPv4 and IPv6.
fn check_nets(errs: &mut Errors, path: &str, rule: &Rule) {
    let (mut seen_v4, mut seen_v6) = (false, false);
    for (end, entity) in [("source", &rule.source), ("destination", &rule.destination)] {
        for (field, nets) in [("nets", &entity.nets), ("notNets", &entity.not_nets)] {
            let (mut v4, mut v6) = (false, false);
            for (i, net) in nets.iter().enumerate() {
                match validate::parse_cidr(net) {
                    None => errs.push(
                        format!("{path}.{end}.{field}[{i}]"),
                        format!("{net:?} is not a valid CIDR such as 10.0.0.0/8"),
                    ),
                    Some(IpNet::V4(_)) => v4 = true,
                    Some(IpNet::V6(_)) => v6 = true,
                }
            }
            let field_path = format!("{path}.{end}.{field}");
            if let Some(version) = rule.ip_version {
                if (v4 && version != 4) || (v6 && version != 6) {
                    errs.push(
                        &field_path,
                        format!("holds CIDRs of another IP version than ipVersion {version}"),
                    );
                }
            }
            if (v4 && (v6 || seen_v6)) || (v6 && seen_v4) {
                errs.push(
                    &field_path,
                    "the rule mixes IPv4 and IPv6 CIDRs: write one rule per IP version",
                );
            }
            seen_v4 |= v4;
            seen_v6 |= v6;
        }
    }
}

fn check_entity(errs: &mut Errors, path: &str, entity: &EntityRule) {
    let [selector, not_selector, namespace_selector] = [
        ("selector", &entity.selector),
        ("notSelector", &entity.not_selector),
        ("namespaceSelector", &entity.namespace_selector),
    ]
    .map(|(field, selector)| {
        validate::check_selector(errs, &format!("{path}.{field}"), selector.as_deref())
    });
    validate::check_no_global(errs, &format!("{path}.selector"), selector.as_ref());
    validate::check_no_global(errs, &format!("{path}.notSelector"), not_selector.as_ref());
    if let Some(ns) = &namespace_selector {
        if ns.uses_global() && !ns.is_global() {
            errs.push(
                format!("{path}.namespaceSelector"),
                "global() cannot be combined with other selectors",
            );
        }
    }
    for (field, ports) in [("ports", &entity.ports), ("notPorts", &entity.not_ports)] {
        for (i, port) in ports.iter().enumerate() {
            check_port(errs, &format!("{path}.{field}[{i}]"), port);
        }
    }
    if let Some(accounts) = &entity.service_accounts {
        for (i, name) in accounts.names.iter().enumerate() {
            errs.check(
                format!("{path}.serviceAccounts.names[{i}]"),
                validate::dns1123_subdomain(name),
            );
        }
        validate::check_selector(
            errs,
            &format!("{path}.serviceAccounts.selector"),
            accounts.selector.as_deref(),
        );
    }
}

fn check_port(errs: &mut Errors, path: &str, port: &Port) {
    match port {
        Port::Number(0) => errs.push(path, "0 is not a valid port: use 1 to 65535"),
        Port::Number(_) => {}
        Port::Range { first, last } => {
            if *first == 0 {
                errs.push(
                    path,
                    format!("range {port} starts at 0: ports are 1 to 65535"),
                );
            }
            if first > last {
                errs.push(
                    path,
                    format!("range {port} ends before it starts: write it as first:last"),
                );
            }
        }
        Port::Named(name) => errs.check(path, validate::port_name(name)),
    }
}
