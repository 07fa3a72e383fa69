//! Compile time at cluster scale: 1,000 pods and about 10,000 rules.
//!
//! Run with `cargo test --release -p tortie-policy --test scale -- --ignored --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use common::Rng;
use tortie_policy::{
    compile, Endpoint, IdentityAllocator, NamedPort, Namespace, PolicyInputs, RuleAllocator,
};
use tortie_resources::k8s::{
    IntOrString, IpBlock, K8sEgressRule, K8sIngressRule, K8sNetworkPolicy, K8sNetworkPolicySpec,
    K8sPeer, K8sPolicyPort, LabelSelector,
};
use tortie_resources::meta::ObjectMeta;
use tortie_resources::{
    GlobalNetworkPolicy, GlobalNetworkPolicySpec, NetworkPolicy, NetworkPolicySpec, Port, Protocol,
    Rule, RuleAction,
};

const NAMESPACES: usize = 20;
const APPS: usize = 50;

fn app(i: usize) -> String {
    format!("app-{i}")
}

fn match_app(i: usize) -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::from([("app".to_string(), app(i))]),
        ..LabelSelector::default()
    }
}

/// A cluster of `pods` pods of which `local` are on this node, with about 10,000 rules.
fn big_cluster(pods: usize, local: usize) -> PolicyInputs {
    let mut rng = Rng::new(42);
    let mut inputs = PolicyInputs::default();
    for n in 0..NAMESPACES {
        inputs.namespaces.push(Namespace {
            name: format!("ns-{n}"),
            labels: BTreeMap::from([("team".to_string(), format!("team-{}", n % 5))]),
        });
    }
    for i in 0..pods {
        let namespace = format!("ns-{}", i % NAMESPACES);
        inputs.endpoints.push(Endpoint {
            key: format!("{namespace}/pod-{i}"),
            labels: BTreeMap::from([
                ("app".to_string(), app(rng.below(APPS))),
                ("tier".to_string(), format!("tier-{}", rng.below(5))),
            ]),
            ipv4: Ipv4Addr::from(0x0a40_0000 + i as u32),
            ifindex: (i < local).then_some(100 + i as u32),
            service_account: Some("default".into()),
            named_ports: vec![NamedPort {
                name: "http".into(),
                protocol: 6,
                port: [80, 8080][i % 2],
            }],
            profiles: Endpoint::kubernetes_profiles(&namespace, Some("default")),
            namespace,
        });
    }
    inputs.local_host = vec![Ipv4Addr::new(192, 168, 0, 1)];
    inputs.remote_hosts = (2..50).map(|i| Ipv4Addr::new(192, 168, 0, i)).collect();

    // Kubernetes policies: 1,200 × 4 rules.
    for p in 0..1200 {
        let ports = vec![
            K8sPolicyPort {
                port: Some(IntOrString::Int(8000 + (p % 50) as i32)),
                ..K8sPolicyPort::default()
            },
            K8sPolicyPort {
                port: Some(IntOrString::String("http".into())),
                ..K8sPolicyPort::default()
            },
        ];
        let spec = K8sNetworkPolicySpec {
            pod_selector: match_app(rng.below(APPS)),
            ingress: (0..3)
                .map(|_| K8sIngressRule {
                    from: vec![
                        K8sPeer {
                            pod_selector: Some(match_app(rng.below(APPS))),
                            ..K8sPeer::default()
                        },
                        K8sPeer {
                            namespace_selector: Some(LabelSelector {
                                match_labels: BTreeMap::from([(
                                    "team".to_string(),
                                    format!("team-{}", rng.below(5)),
                                )]),
                                ..LabelSelector::default()
                            }),
                            pod_selector: Some(match_app(rng.below(APPS))),
                            ..K8sPeer::default()
                        },
                    ],
                    ports: ports.clone(),
                })
                .collect(),
            egress: vec![K8sEgressRule {
                to: vec![K8sPeer {
                    ip_block: Some(IpBlock {
                        cidr: format!("10.{}.0.0/16", 100 + rng.below(50)),
                        except: vec![format!("10.{}.1.0/24", 100 + rng.below(50))],
                    }),
                    ..K8sPeer::default()
                }],
                ports: ports.clone(),
            }],
            ..K8sNetworkPolicySpec::default()
        };
        inputs.k8s_network_policies.push(K8sNetworkPolicy {
            metadata: ObjectMeta::namespaced(format!("ns-{}", p % NAMESPACES), format!("knp-{p}")),
            spec,
        });
    }
    // Calico policies: 600 × 6 rules.
    for p in 0..600 {
        let rules: Vec<Rule> = (0..6)
            .map(|r| {
                let mut rule = Rule::new(if r % 3 == 0 {
                    RuleAction::Deny
                } else {
                    RuleAction::Allow
                });
                rule.protocol = Some(if r % 2 == 0 {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                });
                rule.source.selector = Some(format!("app == '{}'", app(rng.below(APPS))));
                if r == 5 {
                    rule.source.nets = vec![format!("172.{}.0.0/16", 16 + rng.below(16))];
                    rule.source.selector = None;
                }
                // Mostly well-known ports, sometimes a range, as real policies are.
                rule.destination.ports = vec![if rng.chance(25) {
                    let first = 1000 + rng.below(30_000) as u16;
                    Port::Range {
                        first,
                        last: first + rng.below(100) as u16,
                    }
                } else {
                    Port::Number(*rng.pick(&[80, 443, 5432, 6379, 8080, 9090, 9100, 3306]))
                }];
                rule
            })
            .collect();
        inputs.network_policies.push(NetworkPolicy {
            metadata: ObjectMeta::namespaced(format!("ns-{}", p % NAMESPACES), format!("np-{p}")),
            spec: NetworkPolicySpec {
                order: Some(f64::from(rng.below(2000) as u32)),
                selector: Some(format!("app == '{}'", app(rng.below(APPS)))),
                ingress: rules,
                ..NetworkPolicySpec::default()
            },
        });
    }
    // Global policies: 160 × 10 rules.
    for p in 0..160 {
        let rules: Vec<Rule> = (0..10)
            .map(|_| {
                let mut rule = Rule::new(RuleAction::Allow);
                rule.protocol = Some(Protocol::Tcp);
                rule.destination.selector = Some(format!("tier == 'tier-{}'", rng.below(5)));
                rule.destination.ports = vec![Port::Number(*rng.pick(&[53, 443, 8443, 9200]))];
                rule
            })
            .collect();
        inputs.global_network_policies.push(GlobalNetworkPolicy {
            metadata: ObjectMeta::named(format!("gnp-{p}")),
            spec: GlobalNetworkPolicySpec {
                order: Some(f64::from(p)),
                selector: Some(format!("app == '{}'", app(rng.below(APPS)))),
                egress: rules,
                ..GlobalNetworkPolicySpec::default()
            },
        });
    }
    inputs
}

fn run(pods: usize, local: usize) {
    let inputs = big_cluster(pods, local);
    let rule_count: usize = inputs
        .k8s_network_policies
        .iter()
        .map(|p| p.spec.ingress.len() + p.spec.egress.len())
        .chain(
            inputs
                .network_policies
                .iter()
                .map(|p| p.spec.ingress.len() + p.spec.egress.len()),
        )
        .chain(
            inputs
                .global_network_policies
                .iter()
                .map(|p| p.spec.ingress.len() + p.spec.egress.len()),
        )
        .sum();
    let mut identities = IdentityAllocator::new();
    let mut rules = RuleAllocator::new();
    let start = Instant::now();
    let compiled = compile(&inputs, &mut identities, &mut rules);
    let first = start.elapsed();
    let start = Instant::now();
    let again = compile(&inputs, &mut identities, &mut rules);
    let second = start.elapsed();
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    assert_eq!(compiled, again);
    println!(
        "{pods} pods ({local} local), {rule_count} rules: compiled in {first:?} (again: \
         {second:?}); {} policy entries, {} IP cache entries, {} identities, {} rule ids",
        compiled.entries.len(),
        compiled.ipcache.len(),
        compiled.identities.len(),
        compiled.rules.len()
    );
    if compiled.entries.len() > bpf_maps::capacity::POLICY as usize {
        println!(
            "(more entries than the default policy map holds: {:?})",
            compiled.warnings.last()
        );
    }
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn thousand_pods_ten_thousand_rules() {
    run(1000, 110);
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn thousand_pods_all_local() {
    run(1000, 1000);
}
