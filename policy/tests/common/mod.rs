//! Shared by the integration tests: a deterministic random generator, random clusters and
//! policies, and an in-memory model of the two LPM lookups the programs make.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use bpf_maps::policy::{
    PolicyKey, IDENTITY_HOST, IDENTITY_WORLD, RULE_DEFAULT_DENY, RULE_PROFILE_ALLOW,
};
use tortie_policy::{
    CompiledPolicy, DecidedBy, Direction, Endpoint, NamedPort, Namespace, OrderedPolicyKey,
    PolicyInputs, ServiceAccount, Verdict,
};
use tortie_resources::k8s::{
    IntOrString, IpBlock, K8sEgressRule, K8sIngressRule, K8sNetworkPolicy, K8sNetworkPolicySpec,
    K8sPeer, K8sPolicyPort, K8sProtocol, LabelSelector, LabelSelectorRequirement, SelectorOperator,
};
use tortie_resources::meta::ObjectMeta;
use tortie_resources::rule::{EntityRule, IcmpFields, ServiceAccountMatch};
use tortie_resources::{
    GlobalNetworkPolicy, GlobalNetworkPolicySpec, NetworkPolicy, NetworkPolicySpec, PolicyType,
    Port, Profile, ProfileSpec, Protocol, Rule, RuleAction,
};

/// xorshift64*: small, deterministic, good enough to pick test cases.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`%.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

pub const NAMESPACES: [&str; 3] = ["alpha", "beta", "gamma"];
pub const APPS: [&str; 3] = ["web", "db", "api"];
pub const LOCAL_HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 1);
pub const REMOTE_HOSTS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 0, 100, 2),
    Ipv4Addr::new(10, 0, 1, 200),
    Ipv4Addr::new(192, 168, 7, 7),
];
/// CIDRs rules draw from: nested, overlapping pods and nodes, the whole space.
pub const CIDRS: [&str; 11] = [
    "10.0.0.0/16",
    "10.0.0.0/22",
    "10.0.1.0/24",
    "10.0.1.128/25",
    "10.0.2.0/26",
    "10.0.0.0/30",
    "192.168.0.0/16",
    "10.0.1.200/32",
    "0.0.0.0/0",
    "172.16.0.0/12",
    "10.0.100.0/24",
];

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A random cluster: 3 namespaces × 3 pods, some local, with labels, accounts, named ports
/// and profiles.
pub fn random_cluster(rng: &mut Rng) -> PolicyInputs {
    let mut inputs = PolicyInputs::default();
    for ns in NAMESPACES {
        let mut l = BTreeMap::new();
        if rng.chance(60) {
            l.insert("team".to_string(), rng.pick(&["x", "y"]).to_string());
        }
        if rng.chance(50) {
            l.insert("env".to_string(), rng.pick(&["prod", "dev"]).to_string());
        }
        inputs.namespaces.push(Namespace {
            name: ns.to_string(),
            labels: l,
        });
        if rng.chance(50) {
            inputs.service_accounts.push(ServiceAccount {
                namespace: ns.to_string(),
                name: "sa1".into(),
                labels: labels(&[("role", "reader")]),
            });
        }
    }
    let mut ifindex = 10;
    let mut used_ips = Vec::new();
    for (n, ns) in NAMESPACES.iter().enumerate() {
        for i in 0..3 {
            let mut pod_labels = BTreeMap::new();
            if rng.chance(85) {
                pod_labels.insert("app".to_string(), rng.pick(&APPS).to_string());
            }
            if rng.chance(40) {
                pod_labels.insert("tier".to_string(), rng.pick(&["fe", "be"]).to_string());
            }
            // Mostly inside 10.0.0.0/22, sometimes on a node's address or duplicated.
            let ip = loop {
                let ip = if rng.chance(5) {
                    *rng.pick(&REMOTE_HOSTS)
                } else {
                    Ipv4Addr::from(0x0a00_0000 | rng.below(1024) as u32)
                };
                if !used_ips.contains(&ip) || rng.chance(3) {
                    break ip;
                }
            };
            used_ips.push(ip);
            let service_account = match rng.below(3) {
                0 => None,
                1 => Some("default".to_string()),
                _ => Some("sa1".to_string()),
            };
            let mut named_ports = Vec::new();
            if rng.chance(60) {
                named_ports.push(NamedPort {
                    name: "http".into(),
                    protocol: 6,
                    port: *rng.pick(&[80, 8080, 8443]),
                });
            }
            if rng.chance(40) {
                named_ports.push(NamedPort {
                    name: "dns".into(),
                    protocol: 17,
                    port: 53,
                });
            }
            if rng.chance(30) {
                named_ports.push(NamedPort {
                    name: "http".into(),
                    protocol: 17,
                    port: 5353,
                });
            }
            let profiles = if rng.chance(90) {
                Endpoint::kubernetes_profiles(ns, service_account.as_deref())
            } else if rng.chance(50) {
                vec!["custom".to_string(), format!("kns.{ns}")]
            } else {
                Vec::new()
            };
            let local = rng.chance(50) || (n == 0 && i == 0);
            inputs.endpoints.push(Endpoint {
                key: format!("{ns}/pod-{i}"),
                namespace: ns.to_string(),
                labels: pod_labels,
                ipv4: ip,
                ifindex: local.then(|| {
                    ifindex += 1;
                    ifindex
                }),
                service_account,
                named_ports,
                profiles,
            });
        }
    }
    inputs.local_host = vec![LOCAL_HOST];
    inputs.remote_hosts = REMOTE_HOSTS.to_vec();

    if rng.chance(40) {
        inputs.profiles.push(Profile {
            metadata: ObjectMeta::named(format!("kns.{}", rng.pick(&NAMESPACES))),
            spec: ProfileSpec {
                ingress: (0..rng.below(3)).map(|_| calico_rule(rng, false)).collect(),
                egress: (0..rng.below(3)).map(|_| calico_rule(rng, false)).collect(),
                labels_to_apply: labels(&[("inherited", "yes")]),
            },
        });
    }
    if rng.chance(30) {
        inputs.profiles.push(Profile {
            metadata: ObjectMeta::named("custom"),
            spec: ProfileSpec {
                ingress: vec![calico_rule(rng, false)],
                egress: Vec::new(),
                labels_to_apply: BTreeMap::new(),
            },
        });
    }
    let policies = 2 + rng.below(6);
    for p in 0..policies {
        match rng.below(3) {
            0 => inputs.k8s_network_policies.push(k8s_policy(rng, p)),
            1 => inputs.network_policies.push(calico_policy(rng, p)),
            _ => inputs.global_network_policies.push(global_policy(rng, p)),
        }
    }
    inputs
}

fn label_selector(rng: &mut Rng) -> LabelSelector {
    let mut selector = LabelSelector::default();
    match rng.below(5) {
        0 => {}
        1 | 2 => {
            selector
                .match_labels
                .insert("app".into(), rng.pick(&APPS).to_string());
        }
        3 => selector.match_expressions.push(LabelSelectorRequirement {
            key: "tier".into(),
            operator: *rng.pick(&[SelectorOperator::Exists, SelectorOperator::DoesNotExist]),
            values: Vec::new(),
        }),
        _ => selector.match_expressions.push(LabelSelectorRequirement {
            key: "app".into(),
            operator: *rng.pick(&[SelectorOperator::In, SelectorOperator::NotIn]),
            values: vec!["web".into(), "api".into()],
        }),
    }
    selector
}

fn namespace_label_selector(rng: &mut Rng) -> LabelSelector {
    let mut selector = LabelSelector::default();
    match rng.below(4) {
        0 => {}
        1 => {
            selector
                .match_labels
                .insert("team".into(), rng.pick(&["x", "y"]).to_string());
        }
        2 => {
            selector.match_labels.insert(
                "kubernetes.io/metadata.name".into(),
                rng.pick(&NAMESPACES).to_string(),
            );
        }
        _ => selector.match_expressions.push(LabelSelectorRequirement {
            key: "env".into(),
            operator: SelectorOperator::NotIn,
            values: vec!["prod".into()],
        }),
    }
    selector
}

fn k8s_peer(rng: &mut Rng) -> K8sPeer {
    match rng.below(4) {
        0 => K8sPeer {
            pod_selector: Some(label_selector(rng)),
            ..K8sPeer::default()
        },
        1 => K8sPeer {
            namespace_selector: Some(namespace_label_selector(rng)),
            ..K8sPeer::default()
        },
        2 => K8sPeer {
            pod_selector: Some(label_selector(rng)),
            namespace_selector: Some(namespace_label_selector(rng)),
            ..K8sPeer::default()
        },
        _ => {
            let (cidr, except): (&str, &[&str]) = *rng.pick(&[
                ("10.0.0.0/22", &["10.0.1.0/24"][..]),
                ("10.0.1.0/24", &["10.0.1.128/25", "10.0.1.0/30"][..]),
                ("0.0.0.0/0", &["10.0.0.0/16"][..]),
                ("192.168.0.0/16", &[][..]),
                ("10.0.2.0/26", &[][..]),
            ]);
            K8sPeer {
                ip_block: Some(IpBlock {
                    cidr: cidr.into(),
                    except: except.iter().map(|s| s.to_string()).collect(),
                }),
                ..K8sPeer::default()
            }
        }
    }
}

fn k8s_port(rng: &mut Rng) -> K8sPolicyPort {
    match rng.below(6) {
        0 => K8sPolicyPort {
            protocol: None,
            port: Some(IntOrString::Int(80)),
            end_port: None,
        },
        1 => K8sPolicyPort {
            protocol: Some(K8sProtocol::Udp),
            port: Some(IntOrString::Int(53)),
            end_port: None,
        },
        2 => K8sPolicyPort {
            protocol: Some(K8sProtocol::Tcp),
            port: Some(IntOrString::String("http".into())),
            end_port: None,
        },
        3 => K8sPolicyPort {
            protocol: Some(K8sProtocol::Tcp),
            port: Some(IntOrString::Int(1000)),
            end_port: Some(2000),
        },
        4 => K8sPolicyPort {
            protocol: Some(K8sProtocol::Sctp),
            port: None,
            end_port: None,
        },
        _ => K8sPolicyPort {
            protocol: Some(K8sProtocol::Udp),
            port: Some(IntOrString::String(rng.pick(&["dns", "http"]).to_string())),
            end_port: None,
        },
    }
}

fn k8s_policy(rng: &mut Rng, p: usize) -> K8sNetworkPolicy {
    let mut spec = K8sNetworkPolicySpec {
        pod_selector: label_selector(rng),
        ..K8sNetworkPolicySpec::default()
    };
    spec.policy_types = match rng.below(4) {
        0 => Vec::new(),
        1 => vec![PolicyType::Ingress],
        2 => vec![PolicyType::Egress],
        _ => vec![PolicyType::Ingress, PolicyType::Egress],
    };
    for _ in 0..rng.below(3) {
        spec.ingress.push(K8sIngressRule {
            from: (0..rng.below(3)).map(|_| k8s_peer(rng)).collect(),
            ports: (0..rng.below(3)).map(|_| k8s_port(rng)).collect(),
        });
    }
    for _ in 0..rng.below(3) {
        spec.egress.push(K8sEgressRule {
            to: (0..rng.below(3)).map(|_| k8s_peer(rng)).collect(),
            ports: (0..rng.below(3)).map(|_| k8s_port(rng)).collect(),
        });
    }
    K8sNetworkPolicy {
        metadata: ObjectMeta::namespaced(*rng.pick(&NAMESPACES), format!("k8s-{p}")),
        spec,
    }
}

fn calico_selector(rng: &mut Rng) -> String {
    rng.pick(&[
        "app == 'web'",
        "app == 'db'",
        "app in {'web', 'api'}",
        "has(tier)",
        "!has(app)",
        "tier == 'fe' || app == 'db'",
        "all()",
        "inherited == 'yes'",
        "projectcalico.org/namespace == 'beta'",
    ])
    .to_string()
}

fn entity(rng: &mut Rng, namespaced: bool, peer: bool) -> EntityRule {
    let mut e = EntityRule::default();
    if rng.chance(if peer { 30 } else { 10 }) {
        e.nets = (0..1 + rng.below(2))
            .map(|_| rng.pick(&CIDRS).to_string())
            .collect();
    }
    if rng.chance(if peer { 20 } else { 5 }) {
        e.not_nets = vec![rng.pick(&CIDRS).to_string()];
    }
    if rng.chance(if peer { 40 } else { 10 }) {
        e.selector = Some(calico_selector(rng));
    }
    if rng.chance(15) {
        e.not_selector = Some(calico_selector(rng));
    }
    if rng.chance(20) {
        e.namespace_selector = Some(
            rng.pick(&[
                "team == 'x'",
                "all()",
                "projectcalico.org/name == 'gamma'",
                if namespaced {
                    "global()"
                } else {
                    "env == 'dev'"
                },
            ])
            .to_string(),
        );
    }
    if rng.chance(10) {
        e.service_accounts = Some(ServiceAccountMatch {
            names: if rng.chance(60) {
                vec![rng.pick(&["sa1", "default"]).to_string()]
            } else {
                Vec::new()
            },
            selector: rng.chance(50).then(|| "role == 'reader'".to_string()),
        });
    }
    e
}

/// A random valid Calico rule (`namespaced`: in a NetworkPolicy).
pub fn calico_rule(rng: &mut Rng, namespaced: bool) -> Rule {
    let action = *rng.pick(&[
        RuleAction::Allow,
        RuleAction::Allow,
        RuleAction::Deny,
        RuleAction::Pass,
        RuleAction::Log,
    ]);
    let mut rule = Rule::new(action);
    match rng.below(7) {
        0 | 1 => {}
        2 => rule.protocol = Some(Protocol::Tcp),
        3 => rule.protocol = Some(Protocol::Udp),
        4 => rule.protocol = Some(Protocol::Icmp),
        5 => rule.protocol = Some(Protocol::Number(132)),
        _ => rule.not_protocol = Some(Protocol::Tcp),
    }
    if rng.chance(15) && rule.protocol.is_some() {
        rule.not_protocol = Some(*rng.pick(&[Protocol::Udp, Protocol::Tcp]));
    }
    rule.source = entity(rng, namespaced, true);
    rule.destination = entity(rng, namespaced, false);
    let ports = [
        Port::Number(80),
        Port::Number(53),
        Port::Range {
            first: 1000,
            last: 2000,
        },
        Port::Range {
            first: 1500,
            last: 1600,
        },
        Port::Named("http".into()),
        Port::Named("dns".into()),
    ];
    if matches!(rule.protocol, Some(Protocol::Tcp | Protocol::Udp)) {
        if rng.chance(60) {
            rule.destination.ports = (0..1 + rng.below(2))
                .map(|_| rng.pick(&ports).clone())
                .collect();
        }
        if rng.chance(20) {
            rule.destination.not_ports = vec![rng.pick(&ports).clone()];
        }
    }
    if rule.protocol == Some(Protocol::Icmp) {
        if rng.chance(50) {
            rule.icmp = Some(IcmpFields {
                icmp_type: Some(8),
                code: rng.chance(50).then_some(0),
            });
        }
        if rng.chance(30) {
            rule.not_icmp = Some(IcmpFields {
                icmp_type: Some(*rng.pick(&[8, 0])),
                code: rng.chance(50).then_some(1),
            });
        }
    }
    if rng.chance(3) {
        rule.ip_version = Some(6);
    }
    rule
}

fn order(rng: &mut Rng) -> Option<f64> {
    *rng.pick(&[
        None,
        Some(100.0),
        Some(500.0),
        Some(1000.0),
        Some(1000.5),
        Some(1000.0),
    ])
}

fn types(rng: &mut Rng) -> Vec<PolicyType> {
    match rng.below(4) {
        0 | 1 => Vec::new(),
        2 => vec![PolicyType::Ingress],
        _ => vec![PolicyType::Ingress, PolicyType::Egress],
    }
}

fn calico_policy(rng: &mut Rng, p: usize) -> NetworkPolicy {
    let mut spec = NetworkPolicySpec {
        order: order(rng),
        selector: rng.chance(60).then(|| calico_selector(rng)),
        types: types(rng),
        ..NetworkPolicySpec::default()
    };
    if rng.chance(10) {
        spec.service_account_selector = Some("role == 'reader'".into());
    }
    spec.ingress = (0..rng.below(4)).map(|_| calico_rule(rng, true)).collect();
    spec.egress = (0..rng.below(4)).map(|_| calico_rule(rng, true)).collect();
    NetworkPolicy {
        metadata: ObjectMeta::namespaced(*rng.pick(&NAMESPACES), format!("np-{p}")),
        spec,
    }
}

fn global_policy(rng: &mut Rng, p: usize) -> GlobalNetworkPolicy {
    let mut spec = GlobalNetworkPolicySpec {
        order: order(rng),
        selector: rng.chance(60).then(|| calico_selector(rng)),
        types: types(rng),
        ..GlobalNetworkPolicySpec::default()
    };
    if rng.chance(20) {
        spec.namespace_selector = Some("team == 'y'".into());
    }
    spec.ingress = (0..rng.below(4)).map(|_| calico_rule(rng, false)).collect();
    spec.egress = (0..rng.below(4)).map(|_| calico_rule(rng, false)).collect();
    GlobalNetworkPolicy {
        metadata: ObjectMeta::named(format!("gnp-{p}")),
        spec,
    }
}

/// The two lookups the programs make, over the compiled maps: the IP cache by longest
/// prefix, then the policy trie by longest prefix (written independently of the crate).
pub struct Programs<'a> {
    compiled: &'a CompiledPolicy,
    /// Per prefix length: network → identity.
    ipcache: Vec<(u8, HashMap<u32, u32>)>,
    /// (prefix length, key bytes with the bits beyond it cleared) → (verdict, rule).
    policy: HashMap<(u32, [u8; 12]), (u8, u32)>,
    /// The prefix lengths present, longest first (the others cannot match).
    policy_lens: Vec<u32>,
}

fn key_bytes(key: &PolicyKey) -> [u8; 12] {
    let mut bytes = [0u8; 12];
    bytes[0..4].copy_from_slice(&key.endpoint);
    bytes[4] = key.direction;
    bytes[5..9].copy_from_slice(&key.identity);
    bytes[9] = key.protocol;
    bytes[10..12].copy_from_slice(&key.port);
    bytes
}

/// Clears the bits beyond `prefix_len`.
fn masked(mut bytes: [u8; 12], prefix_len: u32) -> [u8; 12] {
    for (i, byte) in bytes.iter_mut().enumerate() {
        let first_bit = i as u32 * 8;
        if first_bit >= prefix_len {
            *byte = 0;
        } else if first_bit + 8 > prefix_len {
            *byte &= 0xffu8 << (first_bit + 8 - prefix_len);
        }
    }
    bytes
}

impl<'a> Programs<'a> {
    pub fn new(compiled: &'a CompiledPolicy) -> Programs<'a> {
        let mut by_len: BTreeMap<u8, HashMap<u32, u32>> = BTreeMap::new();
        for (net, identity) in &compiled.ipcache {
            by_len
                .entry(net.prefix_len())
                .or_default()
                .insert(u32::from(net.network()), *identity);
        }
        let mut policy = HashMap::new();
        for ((prefix_len, key), value) in &compiled.entries {
            let bytes = key_bytes(&key.0);
            assert_eq!(
                bytes,
                masked(bytes, *prefix_len),
                "entry /{prefix_len} {key:?} has bits set beyond its prefix"
            );
            policy.insert((*prefix_len, bytes), (value.verdict, value.rule));
        }
        let mut policy_lens: Vec<u32> = policy.keys().map(|(len, _)| *len).collect();
        policy_lens.sort_unstable_by(|a, b| b.cmp(a));
        policy_lens.dedup();
        Programs {
            compiled,
            ipcache: by_len.into_iter().rev().collect(),
            policy,
            policy_lens,
        }
    }

    /// The identity of an address: the longest prefix containing it, else the world.
    pub fn identity(&self, addr: Ipv4Addr) -> u32 {
        let addr = u32::from(addr);
        self.ipcache
            .iter()
            .find_map(|(len, nets)| {
                let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
                nets.get(&(addr & mask)).copied()
            })
            .unwrap_or(IDENTITY_WORLD)
    }

    /// What the programs would decide.
    pub fn verdict(
        &self,
        ifindex: u32,
        direction: Direction,
        peer: Ipv4Addr,
        protocol: u8,
        port: u16,
    ) -> (Verdict, DecidedBy) {
        let identity = self.identity(peer);
        if identity == IDENTITY_HOST {
            return (Verdict::Allow, DecidedBy::LocalHost);
        }
        let (ingress, egress) = self.compiled.policed[&ifindex];
        let policed = match direction {
            Direction::Ingress => ingress,
            Direction::Egress => egress,
        };
        if !policed {
            return (Verdict::Allow, DecidedBy::ProfileAllow);
        }
        let full =
            key_bytes(&OrderedPolicyKey::new(ifindex, direction, identity, protocol, port).0);
        for &prefix_len in &self.policy_lens {
            if let Some(&(verdict, rule)) = self.policy.get(&(prefix_len, masked(full, prefix_len)))
            {
                let verdict = Verdict::from_map_value(verdict).expect("valid verdict");
                let by = match rule {
                    RULE_DEFAULT_DENY => DecidedBy::DefaultDeny,
                    RULE_PROFILE_ALLOW => DecidedBy::ProfileAllow,
                    id => DecidedBy::Rule(
                        self.compiled
                            .rules
                            .get(&id)
                            .unwrap_or_else(|| panic!("rule id {id} not in compiled.rules"))
                            .key
                            .clone(),
                    ),
                };
                return (verdict, by);
            }
        }
        (Verdict::Deny, DecidedBy::DefaultDeny)
    }
}
