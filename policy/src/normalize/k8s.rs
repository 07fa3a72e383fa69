//! Kubernetes `NetworkPolicy` into the normal form, with the meaning the Kubernetes API
//! documents (and Calico's `knp.default.<name>` conversion implements):
//!
//! - a rule allows traffic from any of its peers on any of its ports; no peers = every
//!   address, no ports = every protocol and port;
//! - a peer's `podSelector` alone selects pods of the policy's namespace,
//!   `namespaceSelector` alone every pod of the matching namespaces (`{}`: all), both
//!   together the matching pods of the matching namespaces;
//! - `ipBlock` is every address of `cidr` outside `except`, pods included;
//! - ports default to TCP; a named port resolves against the destination pod.

use std::ops::Range;

use tortie_resources::{
    IntOrString, K8sNetworkPolicy, K8sNetworkPolicySpec, K8sPeer, K8sPolicyPort, K8sProtocol,
};

use super::calico::{any_net, net_expr, non_trivial, parse_net, scope_of};
use super::expr::{Atom, EndpointFilter, Expr, NsScope};
use super::traffic::{PortSpec, Traffic};
use super::{
    convert_directions, Action, AppliesTo, Converted, NormPolicy, NormRule, Origin,
    K8S_POLICY_ORDER,
};
use crate::model::{Direction, PolicyKind};

fn protocol_number(protocol: Option<K8sProtocol>) -> u8 {
    match protocol.unwrap_or_default() {
        K8sProtocol::Tcp => 6,
        K8sProtocol::Udp => 17,
        K8sProtocol::Sctp => 132,
    }
}

fn peer_expr(peer: &K8sPeer, namespace: &str, path: &str) -> Result<Expr<Atom>, String> {
    if let Some(block) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            return Err(format!(
                "{path}.ipBlock: cannot be combined with podSelector or namespaceSelector in \
                 one peer: write them as separate peers"
            ));
        }
        let Some(cidr) = parse_net(&block.cidr, &format!("{path}.ipBlock.cidr"), false)? else {
            return Ok(Expr::False);
        };
        let holes = any_net(&block.except, &format!("{path}.ipBlock.except"), false)?;
        return Ok(Expr::all(vec![net_expr(cidr), holes.negate()]));
    }
    let to_selector = |selector: &tortie_resources::LabelSelector, field: &str| {
        selector
            .to_selector()
            .map_err(|e| format!("{path}.{field}: {e}"))
    };
    let pods = peer
        .pod_selector
        .as_ref()
        .map(|s| to_selector(s, "podSelector"))
        .transpose()?;
    let namespaces = peer
        .namespace_selector
        .as_ref()
        .map(|s| to_selector(s, "namespaceSelector"))
        .transpose()?;
    let filter = match (pods, namespaces) {
        (None, None) => {
            return Err(format!(
                "{path}: must set podSelector, namespaceSelector or ipBlock"
            ))
        }
        (Some(pods), None) => EndpointFilter {
            scope: NsScope::Named(namespace.to_string()),
            accounts: None,
            selector: non_trivial(Some(pods)),
        },
        (pods, Some(namespaces)) => EndpointFilter {
            scope: scope_of(namespaces),
            accounts: None,
            selector: non_trivial(pods),
        },
    };
    Ok(Expr::Atom(Atom::endpoints(filter)))
}

fn port_traffic(port: &K8sPolicyPort, path: &str) -> Result<Traffic, String> {
    let protocol = protocol_number(port.protocol);
    let spec = match (&port.port, port.end_port) {
        (None, None) => return Ok(Traffic::protocol(protocol)),
        (None, Some(_)) | (Some(IntOrString::String(_)), Some(_)) => {
            return Err(format!(
                "{path}.endPort: needs a numeric port to start the range"
            ))
        }
        (Some(IntOrString::String(name)), None) if name.is_empty() => {
            return Err(format!("{path}.port: a port name cannot be empty"))
        }
        (Some(IntOrString::String(name)), None) => PortSpec::Named(name.clone()),
        (Some(IntOrString::Int(first)), end) => {
            let first_port = u16::try_from(*first)
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| {
                    format!("{path}.port: {first} is out of range: must be 1 to 65535")
                })?;
            let last_port = match end {
                None => first_port,
                Some(end) => u16::try_from(end)
                    .ok()
                    .filter(|e| *e >= first_port)
                    .ok_or_else(|| {
                        format!("{path}.endPort: {end} must be between port ({first}) and 65535")
                    })?,
            };
            PortSpec::Range(first_port, last_port)
        }
    };
    Ok(Traffic {
        protocol: Some(protocol),
        ports: vec![spec],
        ..Traffic::default()
    })
}

/// Converts one direction's rules, given as (peers, ports), into `rules`; the range they
/// occupy.
fn convert_rules<'a>(
    origin: &Origin<'_>,
    namespace: &str,
    direction: Direction,
    list: impl Iterator<Item = (&'a [K8sPeer], &'a [K8sPolicyPort])>,
    rules: &mut Vec<NormRule>,
) -> Result<Range<usize>, String> {
    let start = rules.len();
    let peers_field = match direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    for (index, (peers, ports)) in list.enumerate() {
        let path = format!("spec.{direction}[{index}]");
        let peer = if peers.is_empty() {
            Expr::True
        } else {
            Expr::any(
                peers
                    .iter()
                    .enumerate()
                    .map(|(i, peer)| {
                        peer_expr(peer, namespace, &format!("{path}.{peers_field}[{i}]"))
                    })
                    .collect::<Result<_, _>>()?,
            )
        };
        let traffic = if ports.is_empty() {
            vec![Traffic::any()]
        } else {
            ports
                .iter()
                .enumerate()
                .map(|(i, port)| port_traffic(port, &format!("{path}.ports[{i}]")))
                .collect::<Result<_, _>>()?
        };
        rules.push(NormRule {
            key: origin.rule_key(direction, index),
            action: Action::Allow,
            peer,
            local: Expr::True,
            traffic,
        });
    }
    Ok(start..rules.len())
}

pub(super) fn convert(policy: &K8sNetworkPolicy, rules: &mut Vec<NormRule>) -> Converted {
    let namespace = policy.metadata.namespace_or_default();
    let origin = Origin {
        kind: PolicyKind::K8sNetworkPolicy,
        namespace: Some(namespace),
        name: &policy.metadata.name,
    };
    origin.converted(convert_policy(&origin, namespace, &policy.spec, rules))
}

fn convert_policy(
    origin: &Origin<'_>,
    namespace: &str,
    spec: &K8sNetworkPolicySpec,
    rules: &mut Vec<NormRule>,
) -> Result<NormPolicy, String> {
    let selector = spec
        .pod_selector
        .to_selector()
        .map_err(|e| format!("spec.podSelector: {e}"))?;
    let types = spec.effective_policy_types();
    let ranges = convert_directions(&types, rules, |direction, rules| match direction {
        Direction::Ingress => {
            let list = spec.ingress.iter().map(|r| (&r.from[..], &r.ports[..]));
            convert_rules(origin, namespace, direction, list, rules)
        }
        Direction::Egress => {
            let list = spec.egress.iter().map(|r| (&r.to[..], &r.ports[..]));
            convert_rules(origin, namespace, direction, list, rules)
        }
    })?;
    Ok(NormPolicy {
        kind: origin.kind,
        namespace: Some(namespace.to_string()),
        name: origin.name.to_string(),
        order: K8S_POLICY_ORDER,
        sort_name: format!("{namespace}/knp.default.{}", origin.name),
        applies: AppliesTo {
            namespace: Some(namespace.to_string()),
            selector,
            namespace_selector: None,
            account_selector: None,
        },
        rules: ranges,
    })
}
