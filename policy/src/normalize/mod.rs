//! Normalization: Calico `NetworkPolicy`/`GlobalNetworkPolicy`/`Profile` and Kubernetes
//! `NetworkPolicy` into one internal form — policies in evaluation order, each with the
//! endpoints it applies to and ordered rules of one shape:
//!
//! - an action (allow, deny, pass, log),
//! - a condition on the *peer* address ([`Expr`] over [`Atom`]s),
//! - a condition on the *local* endpoint (a Calico ingress rule's `destination`, an egress
//!   rule's `source`),
//! - protocol/port alternatives ([`Traffic`]).
//!
//! Everything Calico and Kubernetes leave implicit is made explicit here: a Calico
//! namespaced policy's selectors are scoped to its namespace, a Kubernetes peer's
//! `podSelector` alone means "in the policy's namespace", `ipBlock` is `nets` minus
//! `except`, ports default to TCP, Kubernetes policies sort as Calico order 1000 named
//! `knp.default.<name>`. A policy with any problem is rejected whole, with a message naming
//! it and the field.

mod calico;
mod expr;
mod k8s;
mod traffic;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::Arc;

use tortie_resources::{PolicyType, Selector};

use crate::model::{
    Direction, NamedPort, PolicyInputs, PolicyKind, RuleKey, Verdict, LABEL_CALICO_NAME,
    LABEL_CALICO_NAMESPACE, LABEL_CALICO_ORCHESTRATOR, LABEL_CALICO_SERVICE_ACCOUNT,
    LABEL_K8S_NAMESPACE_NAME,
};

pub(crate) use expr::{Atom, Expr};
#[cfg(test)]
pub(crate) use expr::{EndpointFilter, NsScope};
pub(crate) use traffic::{PortSpec, Traffic};

/// The order Calico gives policies converted from Kubernetes.
const K8S_POLICY_ORDER: f64 = 1000.0;

/// A pod with everything selectors read resolved: its effective labels, its namespace's and
/// its service account's labels.
#[derive(Clone, Debug)]
pub(crate) struct NormEndpoint {
    pub key: String,
    pub namespace: String,
    /// Own labels, plus Calico's and the profiles' where absent.
    pub labels: BTreeMap<String, String>,
    pub namespace_labels: Arc<BTreeMap<String, String>>,
    /// Empty (but for nothing) when the pod has no service account.
    pub account_labels: Arc<BTreeMap<String, String>>,
    pub ipv4: Ipv4Addr,
    pub ifindex: Option<u32>,
    /// Sorted, without duplicates.
    pub named_ports: Vec<NamedPort>,
    pub profiles: Vec<String>,
}

/// A rule's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    Allow,
    Deny,
    /// Skip the rest of the tier (here: every remaining policy) and go to the profiles; in a
    /// profile, skip to the next profile.
    Pass,
    /// Note and continue; the dataplane does not log, so this matches nothing.
    Log,
}

impl Action {
    /// What the rule decides when it matches: a verdict for allow and deny, nothing for pass
    /// and log.
    pub fn verdict(self) -> Option<Verdict> {
        match self {
            Action::Allow => Some(Verdict::Allow),
            Action::Deny => Some(Verdict::Deny),
            Action::Pass | Action::Log => None,
        }
    }
}

/// One rule in the normal form.
#[derive(Clone, Debug)]
pub(crate) struct NormRule {
    pub key: RuleKey,
    pub action: Action,
    /// Condition on the other end of the flow.
    pub peer: Expr<Atom>,
    /// Condition on the local endpoint the policy applies to.
    pub local: Expr<Atom>,
    /// Any of these; never empty.
    pub traffic: Vec<Traffic>,
}

impl NormRule {
    /// Whether the local endpoint `ep` satisfies the rule's condition on it.
    pub fn local_holds(&self, ep: &NormEndpoint) -> bool {
        self.local.eval(&mut |atom| atom.holds(ep.ipv4, Some(ep)))
    }

    /// Whether the rule's ports name ports of the *peer* (egress rules resolve named ports
    /// against the destination, which is the peer).
    pub fn peer_named_ports(&self) -> bool {
        self.key.direction == Direction::Egress
            && self.traffic.iter().any(Traffic::uses_named_ports)
    }

    /// Whether the rule's ports name ports of the local endpoint.
    pub fn local_named_ports(&self) -> bool {
        self.key.direction == Direction::Ingress
            && self.traffic.iter().any(Traffic::uses_named_ports)
    }

    /// Whether a packet of `protocol` to `port` matches, named ports resolving against
    /// `destination_ports`.
    pub fn traffic_matches(
        &self,
        protocol: u8,
        port: u16,
        destination_ports: &[NamedPort],
    ) -> bool {
        self.traffic
            .iter()
            .any(|t| t.matches(protocol, port, destination_ports))
    }
}

/// The endpoints a policy applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct AppliesTo {
    /// Only endpoints of this namespace (namespaced policies).
    pub namespace: Option<String>,
    pub selector: Selector,
    /// Only endpoints in namespaces whose labels match (GlobalNetworkPolicy).
    pub namespace_selector: Option<Selector>,
    /// Only endpoints whose service account's labels match.
    pub account_selector: Option<Selector>,
}

impl AppliesTo {
    pub fn matches(&self, ep: &NormEndpoint) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == ep.namespace)
            && self
                .namespace_selector
                .as_ref()
                .is_none_or(|sel| sel.matches(&*ep.namespace_labels))
            && self
                .account_selector
                .as_ref()
                .is_none_or(|sel| sel.matches(&*ep.account_labels))
            && self.selector.matches(&ep.labels)
    }
}

/// A policy in the normal form.
#[derive(Clone, Debug)]
pub(crate) struct NormPolicy {
    pub kind: PolicyKind,
    pub namespace: Option<String>,
    pub name: String,
    /// `order`, infinite when unset (after every numbered policy).
    order: f64,
    /// The name Calico breaks ties by: `<namespace>/<name>` for namespaced policies,
    /// `<namespace>/knp.default.<name>` for Kubernetes ones.
    sort_name: String,
    pub applies: AppliesTo,
    /// Per direction ([`dir_index`]): the policy's rules in [`Normalized::rules`], or `None`
    /// when the policy does not apply in that direction (its `types` lack it).
    pub rules: [Option<Range<usize>>; 2],
}

/// A profile in the normal form.
#[derive(Clone, Debug)]
pub(crate) enum NormProfile {
    /// Rules per direction ([`dir_index`]) in [`Normalized::rules`].
    Rules([Range<usize>; 2]),
    /// The profile had errors: it denies everything that reaches it (fail closed).
    Broken,
}

/// One step of an endpoint's profile chain in one direction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ProfileStage {
    /// A missing `kns.*`/`ksa.*` profile: allows everything ([`crate::DecidedBy::ProfileAllow`]).
    AllowAll,
    /// A broken or unknown profile: denies everything that reaches it.
    DenyAll,
    /// A profile's rules (in [`Normalized::rules`]); no match goes on to the next stage.
    Rules(Range<usize>),
}

/// Index of a direction in per-direction arrays.
pub(crate) fn dir_index(direction: Direction) -> usize {
    match direction {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

/// Everything the compiler and the reference evaluator read, normalized.
#[derive(Debug, Default)]
pub(crate) struct Normalized {
    /// Sorted by key, keys unique.
    pub endpoints: Vec<NormEndpoint>,
    /// The endpoint each pod address belongs to, for peers (the first by key when two claim
    /// one; local host addresses are not here: the host wins).
    pub by_ip: HashMap<Ipv4Addr, usize>,
    /// Every rule of every accepted policy and profile.
    pub rules: Vec<NormRule>,
    /// Accepted policies in evaluation order.
    pub policies: Vec<NormPolicy>,
    pub profiles: BTreeMap<String, NormProfile>,
    pub local_host: BTreeSet<Ipv4Addr>,
    pub remote_hosts: BTreeSet<Ipv4Addr>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl Normalized {
    /// The endpoint with this key.
    pub fn endpoint(&self, key: &str) -> Option<&NormEndpoint> {
        self.endpoints
            .binary_search_by(|ep| ep.key.as_str().cmp(key))
            .ok()
            .map(|i| &self.endpoints[i])
    }

    /// The endpoint owning a peer address.
    pub fn endpoint_at(&self, addr: Ipv4Addr) -> Option<&NormEndpoint> {
        self.by_ip.get(&addr).map(|&i| &self.endpoints[i])
    }

    /// The endpoint's profile chain in one direction.
    pub fn profile_stages(&self, ep: &NormEndpoint, direction: Direction) -> Vec<ProfileStage> {
        ep.profiles
            .iter()
            .map(|name| match self.profiles.get(name) {
                Some(NormProfile::Rules(ranges)) => {
                    ProfileStage::Rules(ranges[dir_index(direction)].clone())
                }
                Some(NormProfile::Broken) => ProfileStage::DenyAll,
                None if is_kubernetes_profile(name) => ProfileStage::AllowAll,
                None => ProfileStage::DenyAll,
            })
            .collect()
    }
}

/// Whether a profile name is one Calico writes for a namespace or service account, which
/// allows everything when the resource is absent.
fn is_kubernetes_profile(name: &str) -> bool {
    name.starts_with("kns.") || name.starts_with("ksa.")
}

/// Normalizes every input; problems go to `warnings` and `errors`.
pub(crate) fn normalize(inputs: &PolicyInputs) -> Normalized {
    let mut out = Normalized::default();

    // Profiles first: endpoints inherit their labels.
    let mut profile_labels: HashMap<&str, &BTreeMap<String, String>> = HashMap::new();
    let mut profiles: Vec<_> = inputs.profiles.iter().collect();
    profiles.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for profile in profiles {
        let name = profile.metadata.name.as_str();
        if profile_labels.contains_key(name) {
            out.warnings.push(format!(
                "Profile {name} is listed twice; the second copy is ignored"
            ));
            continue;
        }
        profile_labels.insert(name, &profile.spec.labels_to_apply);
        let converted = calico::convert_profile(profile, &mut out.rules);
        let norm = match converted {
            Ok(ranges) => NormProfile::Rules(ranges),
            Err(problem) => {
                out.errors.push(format!(
                    "Profile {name}: {problem}; endpoints using it are denied everything it \
                     would have decided until it is fixed"
                ));
                NormProfile::Broken
            }
        };
        out.profiles.insert(name.to_string(), norm);
    }

    normalize_endpoints(inputs, &profile_labels, &mut out);

    for policy in &inputs.network_policies {
        let converted = calico::convert_network_policy(policy, &mut out.rules);
        accept(&mut out, converted);
    }
    for policy in &inputs.global_network_policies {
        let converted = calico::convert_global_network_policy(policy, &mut out.rules);
        accept(&mut out, converted);
    }
    for policy in &inputs.k8s_network_policies {
        let converted = k8s::convert(policy, &mut out.rules);
        accept(&mut out, converted);
    }
    // Calico's order: ascending `order` (unset last), then name. The kind only breaks ties
    // Calico cannot have, so the result never depends on input order.
    out.policies.sort_by(|a, b| {
        a.order
            .total_cmp(&b.order)
            .then_with(|| a.sort_name.cmp(&b.sort_name))
            .then_with(|| a.kind.cmp(&b.kind))
    });
    let mut seen = BTreeSet::new();
    let mut unique = Vec::with_capacity(out.policies.len());
    for policy in std::mem::take(&mut out.policies) {
        if seen.insert((policy.kind, policy.namespace.clone(), policy.name.clone())) {
            unique.push(policy);
        } else {
            out.warnings.push(format!(
                "{} {} is listed twice; the second copy is ignored",
                policy.kind,
                qualified(policy.namespace.as_deref(), &policy.name)
            ));
        }
    }
    out.policies = unique;
    out
}

/// What converting one policy gives: the policy, a warning to skip it quietly, or an error.
pub(crate) enum Converted {
    Policy(Box<NormPolicy>),
    Skip(String),
    Error(String),
}

/// The policy or profile rules come from: names their keys and the policy's errors.
pub(crate) struct Origin<'a> {
    pub kind: PolicyKind,
    /// The namespace, for namespaced kinds.
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

impl Origin<'_> {
    /// The key of rule `index` of the `direction` list.
    fn rule_key(&self, direction: Direction, index: usize) -> RuleKey {
        RuleKey {
            kind: self.kind,
            namespace: self.namespace.map(str::to_string),
            name: self.name.to_string(),
            direction,
            index: u32::try_from(index).unwrap_or(u32::MAX),
        }
    }

    /// The outcome of converting the policy: it, or an error naming it and the problem.
    fn converted(&self, result: Result<NormPolicy, String>) -> Converted {
        match result {
            Ok(policy) => Converted::Policy(Box::new(policy)),
            Err(problem) => Converted::Error(format!(
                "{} {}: {problem}; the policy is skipped",
                self.kind,
                qualified(self.namespace, self.name)
            )),
        }
    }
}

/// Converts the rule list of every direction in `types`, ingress first: `convert` appends
/// one direction's rules to `rules`, giving the range they occupy. On error `rules` is left
/// as it was, so a rejected policy or profile leaves no rules behind.
fn convert_directions(
    types: &[PolicyType],
    rules: &mut Vec<NormRule>,
    mut convert: impl FnMut(Direction, &mut Vec<NormRule>) -> Result<Range<usize>, String>,
) -> Result<[Option<Range<usize>>; 2], String> {
    let mark = rules.len();
    let mut ranges = [None, None];
    for direction in Direction::BOTH {
        let wanted = match direction {
            Direction::Ingress => PolicyType::Ingress,
            Direction::Egress => PolicyType::Egress,
        };
        if !types.contains(&wanted) {
            continue;
        }
        match convert(direction, rules) {
            Ok(range) => ranges[dir_index(direction)] = Some(range),
            Err(problem) => {
                rules.truncate(mark);
                return Err(problem);
            }
        }
    }
    Ok(ranges)
}

fn accept(out: &mut Normalized, converted: Converted) {
    match converted {
        Converted::Policy(policy) => out.policies.push(*policy),
        Converted::Skip(warning) => out.warnings.push(warning),
        Converted::Error(error) => out.errors.push(error),
    }
}

/// `namespace/name`, or `name` for cluster-scoped resources.
pub(crate) fn qualified(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

fn namespace_labels(name: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    expr::with_defaults(
        labels,
        &[(LABEL_K8S_NAMESPACE_NAME, name), (LABEL_CALICO_NAME, name)],
    )
}

fn account_labels(name: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    expr::with_defaults(labels, &[(LABEL_CALICO_NAME, name)])
}

fn normalize_endpoints(
    inputs: &PolicyInputs,
    profile_labels: &HashMap<&str, &BTreeMap<String, String>>,
    out: &mut Normalized,
) {
    let mut namespaces: HashMap<&str, Arc<BTreeMap<String, String>>> = HashMap::new();
    for ns in &inputs.namespaces {
        namespaces
            .entry(ns.name.as_str())
            .or_insert_with(|| Arc::new(namespace_labels(&ns.name, &ns.labels)));
    }
    let mut accounts: HashMap<(&str, &str), Arc<BTreeMap<String, String>>> = HashMap::new();
    for sa in &inputs.service_accounts {
        accounts
            .entry((sa.namespace.as_str(), sa.name.as_str()))
            .or_insert_with(|| Arc::new(account_labels(&sa.name, &sa.labels)));
    }
    let no_labels = Arc::new(BTreeMap::new());

    let mut endpoints: Vec<_> = inputs.endpoints.iter().collect();
    endpoints.sort_by(|a, b| a.key.cmp(&b.key));
    let mut local_ifindexes = BTreeMap::new();
    for ep in endpoints {
        if out.endpoints.last().is_some_and(|last| last.key == ep.key) {
            out.warnings.push(format!(
                "endpoint {} is listed twice; the second copy is ignored",
                ep.key
            ));
            continue;
        }
        let mut ifindex = ep.ifindex;
        if let Some(index) = ifindex {
            if let Some(owner) = local_ifindexes.insert(index, ep.key.clone()) {
                out.warnings.push(format!(
                    "endpoints {owner} and {} both claim interface index {index}; {} gets no \
                     policy until that is resolved",
                    ep.key, ep.key
                ));
                local_ifindexes.insert(index, owner);
                ifindex = None;
            }
        }
        let namespace_labels = namespaces
            .entry(ep.namespace.as_str())
            .or_insert_with(|| Arc::new(namespace_labels(&ep.namespace, &BTreeMap::new())))
            .clone();
        let account_labels = match &ep.service_account {
            Some(sa) => accounts
                .entry((ep.namespace.as_str(), sa.as_str()))
                .or_insert_with(|| Arc::new(account_labels(sa, &BTreeMap::new())))
                .clone(),
            None => no_labels.clone(),
        };
        let mut defaults = vec![
            (LABEL_CALICO_NAMESPACE, ep.namespace.as_str()),
            (LABEL_CALICO_ORCHESTRATOR, "k8s"),
        ];
        if let Some(sa) = &ep.service_account {
            defaults.push((LABEL_CALICO_SERVICE_ACCOUNT, sa.as_str()));
        }
        let mut labels = expr::with_defaults(&ep.labels, &defaults);
        // Calico: an endpoint's own labels win over inherited ones, earlier profiles over
        // later ones.
        for profile in &ep.profiles {
            if let Some(inherited) = profile_labels.get(profile.as_str()) {
                for (key, value) in inherited.iter() {
                    labels.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
        }
        let mut named_ports = ep.named_ports.clone();
        named_ports.sort();
        named_ports.dedup();
        if ep.ifindex.is_some() && ep.profiles.is_empty() {
            out.warnings.push(format!(
                "endpoint {} has no profiles: as in Calico, a direction no policy applies to \
                 is denied (Kubernetes pods normally have kns.<namespace>)",
                ep.key
            ));
        }
        out.endpoints.push(NormEndpoint {
            key: ep.key.clone(),
            namespace: ep.namespace.clone(),
            labels,
            namespace_labels,
            account_labels,
            ipv4: ep.ipv4,
            ifindex,
            named_ports,
            profiles: ep.profiles.clone(),
        });
    }

    out.local_host = inputs.local_host.iter().copied().collect();
    out.remote_hosts = inputs
        .remote_hosts
        .iter()
        .copied()
        .filter(|addr| !out.local_host.contains(addr))
        .collect();
    for (i, ep) in out.endpoints.iter().enumerate() {
        if out.local_host.contains(&ep.ipv4) {
            out.warnings.push(format!(
                "endpoint {} has this node's address {}: as a peer that address is the host",
                ep.key, ep.ipv4
            ));
            continue;
        }
        if out.remote_hosts.contains(&ep.ipv4) {
            out.warnings.push(format!(
                "endpoint {} has node address {}: as a peer that address is the endpoint",
                ep.key, ep.ipv4
            ));
        }
        if let Some(&owner) = out.by_ip.get(&ep.ipv4) {
            out.warnings.push(format!(
                "endpoints {} and {} share address {}: as a peer it is {}",
                out.endpoints[owner].key, ep.key, ep.ipv4, out.endpoints[owner].key
            ));
            continue;
        }
        out.by_ip.insert(ep.ipv4, i);
    }
}

#[cfg(test)]
mod tests;
