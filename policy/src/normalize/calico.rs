//! Calico `NetworkPolicy`, `GlobalNetworkPolicy` and `Profile` into the normal form.
//!
//! Entity rules follow libcalico-go's conversion (`GetEntityRuleSelector`): as soon as a
//! namespaced policy's entity uses any selector field, the endpoints it selects are limited
//! to the policy's namespace (or to `namespaceSelector`'s namespaces); `notSelector` alone
//! excludes endpoints from every namespace; `global()` selects no pods.

use std::net::IpAddr;
use std::ops::Range;

use ipnet::{IpNet, Ipv4Net};
use tortie_resources::rule::{EntityRule, IcmpFields};
use tortie_resources::{
    GlobalNetworkPolicy, NetworkPolicy, PolicyType, Profile, Rule, RuleAction, Selector,
};

use super::expr::{AccountMatch, Atom, EndpointFilter, Expr, NsScope};
use super::traffic::{has_ports, IcmpSpec, PortSpec, Traffic, PROTO_ICMP};
use super::{convert_directions, qualified, AppliesTo, Converted, NormPolicy, NormRule, Origin};
use crate::model::{Direction, PolicyKind};
use crate::normalize::Action;

/// The only tier.
const DEFAULT_TIER: &str = "default";

/// Parses an optional selector field; empty text counts as unset, as in Calico.
pub(super) fn parse_selector(
    text: Option<&str>,
    path: &str,
    allow_global: bool,
) -> Result<Option<Selector>, String> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    let selector = Selector::parse(text).map_err(|e| format!("{path}: {e}"))?;
    if selector.uses_global() && !(allow_global && selector.is_global()) {
        return Err(format!(
            "{path}: global() is only allowed on its own in a rule's namespaceSelector"
        ));
    }
    Ok(Some(selector))
}

/// Parses a CIDR with host bits cleared — or, when `bare_address_ok` (Calico's `nets`), a
/// bare address as a /32; `None` for IPv6, which never matches IPv4 traffic.
pub(super) fn parse_net(
    text: &str,
    path: &str,
    bare_address_ok: bool,
) -> Result<Option<Ipv4Net>, String> {
    let net = if text.contains('/') {
        text.parse::<IpNet>().ok()
    } else if bare_address_ok {
        text.parse::<IpAddr>().ok().map(IpNet::from)
    } else {
        None
    };
    match net {
        Some(IpNet::V4(net)) => Ok(Some(net.trunc())),
        Some(IpNet::V6(_)) => Ok(None),
        None => Err(format!(
            "{path}: {text:?} is not a valid CIDR such as 10.0.0.0/8"
        )),
    }
}

/// The condition "address is in `net`"; `0.0.0.0/0` is always true, so it never splits
/// identities.
pub(super) fn net_expr(net: Ipv4Net) -> Expr<Atom> {
    if net.prefix_len() == 0 {
        Expr::True
    } else {
        Expr::Atom(Atom::Net(net))
    }
}

/// "The address is in one of the CIDRs of the list at `path`"; IPv6 entries match nothing,
/// so a list of only those is false.
pub(super) fn any_net(
    texts: &[String],
    path: &str,
    bare_address_ok: bool,
) -> Result<Expr<Atom>, String> {
    let mut nets = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        if let Some(net) = parse_net(text, &format!("{path}[{i}]"), bare_address_ok)? {
            nets.push(net_expr(net));
        }
    }
    Ok(Expr::any(nets))
}

/// `NsScope::Selector(all())` is every namespace: one canonical form for one meaning.
pub(super) fn scope_of(selector: Selector) -> NsScope {
    if selector.is_all() {
        NsScope::Any
    } else {
        NsScope::Selector(selector)
    }
}

/// `all()` as an endpoint selector adds nothing once a scope is set.
pub(super) fn non_trivial(selector: Option<Selector>) -> Option<Selector> {
    selector.filter(|s| !s.is_all())
}

fn entity_expr(
    entity: &EntityRule,
    policy_namespace: Option<&str>,
    path: &str,
) -> Result<Expr<Atom>, String> {
    let mut parts = Vec::new();
    if !entity.nets.is_empty() {
        parts.push(any_net(&entity.nets, &format!("{path}.nets"), true)?);
    }
    if !entity.not_nets.is_empty() {
        parts.push(any_net(&entity.not_nets, &format!("{path}.notNets"), true)?.negate());
    }

    let selector = parse_selector(
        entity.selector.as_deref(),
        &format!("{path}.selector"),
        false,
    )?;
    let not_selector = parse_selector(
        entity.not_selector.as_deref(),
        &format!("{path}.notSelector"),
        false,
    )?;
    let namespace_selector = parse_selector(
        entity.namespace_selector.as_deref(),
        &format!("{path}.namespaceSelector"),
        true,
    )?;
    let accounts = match &entity.service_accounts {
        Some(sa) => {
            let mut names = sa.names.clone();
            names.sort();
            names.dedup();
            let selector = parse_selector(
                sa.selector.as_deref(),
                &format!("{path}.serviceAccounts.selector"),
                false,
            )?;
            (!names.is_empty() || selector.is_some()).then_some(AccountMatch { names, selector })
        }
        None => None,
    };

    // `None` = no namespace restriction; `Some(None)` = global(): no pods at all.
    let scope: Option<Option<NsScope>> = match (&namespace_selector, policy_namespace) {
        (Some(sel), _) if sel.is_global() => Some(None),
        (Some(sel), _) => Some(Some(scope_of(sel.clone()))),
        (None, Some(ns)) => Some(Some(NsScope::Named(ns.to_string()))),
        (None, None) => None,
    };
    let positive = selector.is_some() || accounts.is_some();
    let scoped =
        scope.is_some() && (positive || not_selector.is_some() || namespace_selector.is_some());
    if scoped {
        match scope {
            Some(Some(scope)) => parts.push(Expr::Atom(Atom::endpoints(EndpointFilter {
                scope,
                accounts,
                selector: non_trivial(selector),
            }))),
            _ => parts.push(Expr::False),
        }
    } else if positive {
        parts.push(Expr::Atom(Atom::endpoints(EndpointFilter {
            scope: NsScope::Any,
            accounts,
            selector,
        })));
    }
    if let Some(not_selector) = not_selector {
        parts.push(
            Expr::Atom(Atom::endpoints(EndpointFilter {
                scope: NsScope::Any,
                accounts: None,
                selector: Some(not_selector),
            }))
            .negate(),
        );
    }
    Ok(Expr::all(parts))
}

fn icmp_spec(fields: &IcmpFields, path: &str) -> Result<Option<IcmpSpec>, String> {
    let icmp_type = match fields.icmp_type {
        None => {
            if fields.code.is_some() {
                return Err(format!("{path}.code: an ICMP code needs an ICMP type"));
            }
            return Ok(None);
        }
        Some(t) => u8::try_from(t)
            .ok()
            .filter(|t| *t <= 254)
            .ok_or_else(|| format!("{path}.type: {t} is out of range: must be 0 to 254"))?,
    };
    let code = fields
        .code
        .map(|c| {
            u8::try_from(c)
                .map_err(|_| format!("{path}.code: {c} is out of range: must be 0 to 255"))
        })
        .transpose()?;
    Ok(Some(IcmpSpec { icmp_type, code }))
}

fn port_specs(ports: &[tortie_resources::Port], path: &str) -> Result<Vec<PortSpec>, String> {
    ports
        .iter()
        .enumerate()
        .map(|(i, port)| match port {
            tortie_resources::Port::Number(n) => Ok(PortSpec::Range(*n, *n)),
            tortie_resources::Port::Range { first, last } if first <= last => {
                Ok(PortSpec::Range(*first, *last))
            }
            tortie_resources::Port::Range { first, last } => Err(format!(
                "{path}[{i}]: range {first}:{last} ends before it starts: write it as first:last"
            )),
            tortie_resources::Port::Named(name) if name.is_empty() => {
                Err(format!("{path}[{i}]: a port name cannot be empty"))
            }
            tortie_resources::Port::Named(name) => Ok(PortSpec::Named(name.clone())),
        })
        .collect()
}

/// One Calico rule; `None` when it can never match IPv4 traffic (`ipVersion: 6`).
fn convert_rule(
    origin: &Origin<'_>,
    direction: Direction,
    index: usize,
    rule: &Rule,
) -> Result<Option<NormRule>, String> {
    let path = format!("spec.{direction}[{index}]");
    match rule.ip_version {
        None | Some(4) => {}
        Some(6) => return Ok(None),
        Some(v) => {
            return Err(format!(
                "{path}.ipVersion: {v} is not an IP version: use 4 or 6"
            ))
        }
    }
    if !rule.source.ports.is_empty() || !rule.source.not_ports.is_empty() {
        return Err(format!(
            "{path}.source.ports: source ports are not supported by this dataplane yet; match \
             destination ports, or remove the rule"
        ));
    }
    let protocol_number =
        |p: Option<tortie_resources::Protocol>, field: &str| match p.map(|p| p.number()) {
            Some(0) => Err(format!(
                "{path}.{field}: 0 is not a valid protocol: use 1 to 255"
            )),
            n => Ok(n),
        };
    let protocol = protocol_number(rule.protocol, "protocol")?;
    let not_protocol = protocol_number(rule.not_protocol, "notProtocol")?;

    let dst = &rule.destination;
    if (!dst.ports.is_empty() || !dst.not_ports.is_empty()) && !protocol.is_some_and(has_ports) {
        return Err(format!(
            "{path}.destination.ports: rules that match ports must set protocol to TCP, UDP, \
             SCTP or UDPLite"
        ));
    }
    let ports = port_specs(&dst.ports, &format!("{path}.destination.ports"))?;
    let not_ports = port_specs(&dst.not_ports, &format!("{path}.destination.notPorts"))?;
    let mut icmp = None;
    let mut not_icmp = None;
    for (field, fields, slot) in [
        ("icmp", &rule.icmp, &mut icmp),
        ("notICMP", &rule.not_icmp, &mut not_icmp),
    ] {
        let Some(fields) = fields else { continue };
        if !matches!(protocol, Some(PROTO_ICMP) | Some(58)) {
            return Err(format!(
                "{path}.{field}: rules that match ICMP fields must set protocol to ICMP or ICMPv6"
            ));
        }
        *slot = icmp_spec(fields, &format!("{path}.{field}"))?;
    }

    let (peer_end, local_end) = match direction {
        Direction::Ingress => ("source", "destination"),
        Direction::Egress => ("destination", "source"),
    };
    let (peer_entity, local_entity) = match direction {
        Direction::Ingress => (&rule.source, &rule.destination),
        Direction::Egress => (&rule.destination, &rule.source),
    };
    let peer = entity_expr(peer_entity, origin.namespace, &format!("{path}.{peer_end}"))?;
    let local = entity_expr(
        local_entity,
        origin.namespace,
        &format!("{path}.{local_end}"),
    )?;

    let action = match rule.action {
        RuleAction::Allow => Action::Allow,
        RuleAction::Deny => Action::Deny,
        RuleAction::Pass => Action::Pass,
        RuleAction::Log => Action::Log,
    };
    Ok(Some(NormRule {
        key: origin.rule_key(direction, index),
        action,
        peer,
        local,
        traffic: vec![Traffic {
            protocol,
            not_protocol,
            ports,
            not_ports,
            icmp,
            not_icmp,
        }],
    }))
}

/// Converts a rule list into `rules`; the range it occupies.
fn convert_rules(
    origin: &Origin<'_>,
    direction: Direction,
    list: &[Rule],
    rules: &mut Vec<NormRule>,
) -> Result<Range<usize>, String> {
    let start = rules.len();
    for (index, rule) in list.iter().enumerate() {
        if let Some(norm) = convert_rule(origin, direction, index, rule)? {
            rules.push(norm);
        }
    }
    Ok(start..rules.len())
}

/// Converts the lists of the directions in `types`, leaving `rules` untouched on error.
fn convert_both(
    origin: &Origin<'_>,
    types: &[PolicyType],
    ingress: &[Rule],
    egress: &[Rule],
    rules: &mut Vec<NormRule>,
) -> Result<[Option<Range<usize>>; 2], String> {
    convert_directions(types, rules, |direction, rules| {
        let list = match direction {
            Direction::Ingress => ingress,
            Direction::Egress => egress,
        };
        convert_rules(origin, direction, list, rules)
    })
}

fn check_tier(tier: Option<&str>) -> Result<(), String> {
    match tier {
        Some(tier) if tier != DEFAULT_TIER => Err(format!(
            "spec.tier: tier {tier:?} does not exist: only the default tier is supported"
        )),
        _ => Ok(()),
    }
}

fn calico_order(order: Option<f64>) -> Result<f64, String> {
    match order {
        None => Ok(f64::INFINITY),
        Some(o) if o.is_finite() => Ok(o),
        Some(_) => Err("spec.order: must be a finite number".into()),
    }
}

/// The fields `NetworkPolicy` and `GlobalNetworkPolicy` share (a `NetworkPolicy` has no
/// `namespaceSelector`).
struct PolicyFields<'a> {
    tier: Option<&'a str>,
    order: Option<f64>,
    selector: Option<&'a str>,
    namespace_selector: Option<&'a str>,
    service_account_selector: Option<&'a str>,
    types: Vec<PolicyType>,
    ingress: &'a [Rule],
    egress: &'a [Rule],
}

/// A Calico policy; it applies to the endpoints of its origin's namespace, if any.
fn convert_policy(
    origin: &Origin<'_>,
    fields: PolicyFields<'_>,
    rules: &mut Vec<NormRule>,
) -> Result<NormPolicy, String> {
    check_tier(fields.tier)?;
    let order = calico_order(fields.order)?;
    let selector = parse_selector(fields.selector, "spec.selector", false)?;
    let namespace_selector =
        parse_selector(fields.namespace_selector, "spec.namespaceSelector", false)?;
    let account_selector = parse_selector(
        fields.service_account_selector,
        "spec.serviceAccountSelector",
        false,
    )?;
    let ranges = convert_both(origin, &fields.types, fields.ingress, fields.egress, rules)?;
    let namespace = origin.namespace.map(str::to_string);
    Ok(NormPolicy {
        kind: origin.kind,
        namespace: namespace.clone(),
        name: origin.name.to_string(),
        order,
        sort_name: qualified(origin.namespace, origin.name),
        applies: AppliesTo {
            namespace,
            selector: selector.unwrap_or_default(),
            namespace_selector,
            account_selector,
        },
        rules: ranges,
    })
}

pub(super) fn convert_network_policy(
    policy: &NetworkPolicy,
    rules: &mut Vec<NormRule>,
) -> Converted {
    let origin = Origin {
        kind: PolicyKind::NetworkPolicy,
        namespace: Some(policy.metadata.namespace_or_default()),
        name: &policy.metadata.name,
    };
    let spec = &policy.spec;
    let fields = PolicyFields {
        tier: spec.tier.as_deref(),
        order: spec.order,
        selector: spec.selector.as_deref(),
        namespace_selector: None,
        service_account_selector: spec.service_account_selector.as_deref(),
        types: spec.effective_types(),
        ingress: &spec.ingress,
        egress: &spec.egress,
    };
    origin.converted(convert_policy(&origin, fields, rules))
}

pub(super) fn convert_global_network_policy(
    policy: &GlobalNetworkPolicy,
    rules: &mut Vec<NormRule>,
) -> Converted {
    let name = policy.metadata.name.as_str();
    let spec = &policy.spec;
    if spec.do_not_track || spec.pre_dnat {
        return Converted::Skip(format!(
            "GlobalNetworkPolicy {name}: doNotTrack and preDNAT policies apply to host \
             endpoints only, which this dataplane does not police; it has no effect on pods"
        ));
    }
    let origin = Origin {
        kind: PolicyKind::GlobalNetworkPolicy,
        namespace: None,
        name,
    };
    let fields = PolicyFields {
        tier: spec.tier.as_deref(),
        order: spec.order,
        selector: spec.selector.as_deref(),
        namespace_selector: spec.namespace_selector.as_deref(),
        service_account_selector: spec.service_account_selector.as_deref(),
        types: spec.effective_types(),
        ingress: &spec.ingress,
        egress: &spec.egress,
    };
    origin.converted(convert_policy(&origin, fields, rules))
}

/// A profile's rules (both directions); the problem when any rule is invalid.
pub(super) fn convert_profile(
    profile: &Profile,
    rules: &mut Vec<NormRule>,
) -> Result<[Range<usize>; 2], String> {
    let origin = Origin {
        kind: PolicyKind::Profile,
        namespace: None,
        name: &profile.metadata.name,
    };
    let both = [PolicyType::Ingress, PolicyType::Egress];
    // Both directions are asked for, so both ranges are there.
    let [ingress, egress] = convert_both(
        &origin,
        &both,
        &profile.spec.ingress,
        &profile.spec.egress,
        rules,
    )?;
    Ok([ingress.unwrap_or_default(), egress.unwrap_or_default()])
}
