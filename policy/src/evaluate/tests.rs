//! Kubernetes and Calico semantics, one scenario each, through the reference evaluator.

use super::*;
use crate::model::{PolicyKind, RuleKey, ServiceAccount};
use crate::testutil::{inputs, ip, local, named, pod, WEB_FROM_CLIENT_ON_80};
use Direction::{Egress, Ingress};
use Verdict::{Allow, Deny};

const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;
const ICMP: u8 = 1;

fn rule(
    kind: PolicyKind,
    ns: Option<&str>,
    name: &str,
    direction: Direction,
    index: u32,
) -> DecidedBy {
    DecidedBy::Rule(RuleKey {
        kind,
        namespace: ns.map(str::to_string),
        name: name.to_string(),
        direction,
        index,
    })
}

fn knp(ns: &str, name: &str, direction: Direction, index: u32) -> DecidedBy {
    rule(
        PolicyKind::K8sNetworkPolicy,
        Some(ns),
        name,
        direction,
        index,
    )
}

fn np(ns: &str, name: &str, direction: Direction, index: u32) -> DecidedBy {
    rule(PolicyKind::NetworkPolicy, Some(ns), name, direction, index)
}

fn gnp(name: &str, direction: Direction, index: u32) -> DecidedBy {
    rule(
        PolicyKind::GlobalNetworkPolicy,
        None,
        name,
        direction,
        index,
    )
}

fn check(
    ev: &Evaluator,
    ep: &str,
    dir: Direction,
    peer: &str,
    protocol: u8,
    port: u16,
) -> (Verdict, DecidedBy) {
    ev.evaluate(ep, dir, ip(peer), protocol, port)
        .expect("endpoint exists")
}

const DENIED: (Verdict, DecidedBy) = (Deny, DecidedBy::DefaultDeny);
const PROFILE: (Verdict, DecidedBy) = (Allow, DecidedBy::ProfileAllow);

fn web_cluster() -> Vec<crate::Endpoint> {
    vec![
        local(pod("prod/web", "10.0.0.1", &[("app", "web")]), 11),
        pod("prod/client", "10.0.0.2", &[("app", "client")]),
        pod("dev/client", "10.0.1.2", &[("app", "client")]),
        pod("dev/other", "10.0.1.3", &[("app", "other")]),
    ]
}

#[test]
fn k8s_pod_selector_means_the_policy_namespace() {
    let ev = Evaluator::new(&inputs(web_cluster(), WEB_FROM_CLIENT_ON_80));
    let allowed = (Allow, knp("prod", "web", Ingress, 0));
    assert_eq!(
        check(&ev, "prod/web", Ingress, "10.0.0.2", TCP, 80),
        allowed
    );
    assert_eq!(check(&ev, "prod/web", Ingress, "10.0.0.2", TCP, 81), DENIED);
    // Ports default to TCP.
    assert_eq!(check(&ev, "prod/web", Ingress, "10.0.0.2", UDP, 80), DENIED);
    assert_eq!(check(&ev, "prod/web", Ingress, "10.0.1.2", TCP, 80), DENIED);
    assert_eq!(check(&ev, "prod/web", Ingress, "8.8.8.8", TCP, 80), DENIED);
    // Only Ingress is in force: egress falls to the kns profile, which is absent.
    assert_eq!(check(&ev, "prod/web", Egress, "8.8.8.8", TCP, 80), PROFILE);
    // The local host always gets through.
    assert_eq!(
        check(&ev, "prod/web", Ingress, "192.168.0.1", TCP, 9),
        (Allow, DecidedBy::LocalHost)
    );
    assert_eq!(
        ev.evaluate("prod/nope", Ingress, ip("10.0.0.2"), TCP, 80),
        Err(EvaluateError::UnknownEndpoint("prod/nope".into()))
    );
}

#[test]
fn k8s_namespace_selectors() {
    let yaml = "
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {team: x}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ns, namespace: prod}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: x}}}]
    ports: [{port: 1}]
  - from: [{namespaceSelector: {}}]
    ports: [{port: 2}]
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dev}}, podSelector: {matchLabels: {app: other}}}]
    ports: [{port: 3}]
";
    let ev = Evaluator::new(&inputs(web_cluster(), yaml));
    let allowed = |i| (Allow, knp("prod", "ns", Ingress, i));
    assert_eq!(
        check(&ev, "prod/web", Ingress, "10.0.1.2", TCP, 1),
        allowed(0)
    );
    assert_eq!(check(&ev, "prod/web", Ingress, "10.0.0.2", TCP, 1), DENIED);
    // `{}`: every pod of every namespace, but no other address.
    assert_eq!(
        check(&ev, "prod/web", Ingress, "10.0.0.2", TCP, 2),
        allowed(1)
    );
    assert_eq!(
        check(&ev, "prod/web", Ingress, "10.0.1.2", TCP, 2),
        allowed(1)
    );
    assert_eq!(check(&ev, "prod/web", Ingress, "10.9.9.9", TCP, 2), DENIED);
    // Both selectors: AND.
    assert_eq!(
        check(&ev, "prod/web", Ingress, "10.0.1.3", TCP, 3),
        allowed(2)
    );
    assert_eq!(check(&ev, "prod/web", Ingress, "10.0.1.2", TCP, 3), DENIED);
}

#[test]
fn k8s_ip_block_covers_pods_and_excepts() {
    let yaml = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: block, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24]}}]
";
    let ev = Evaluator::new(&inputs(web_cluster(), yaml));
    let allowed = (Allow, knp("prod", "block", Egress, 0));
    assert_eq!(check(&ev, "prod/web", Egress, "10.0.0.2", UDP, 53), allowed);
    assert_eq!(check(&ev, "prod/web", Egress, "10.0.7.7", ICMP, 0), allowed);
    assert_eq!(check(&ev, "prod/web", Egress, "10.0.1.2", TCP, 80), DENIED);
    assert_eq!(check(&ev, "prod/web", Egress, "10.1.0.0", TCP, 80), DENIED);
    // Only Egress is in force.
    assert_eq!(
        check(&ev, "prod/web", Ingress, "10.0.1.2", TCP, 80),
        PROFILE
    );
}

#[test]
fn k8s_named_ports_resolve_at_the_destination() {
    let pods = vec![
        named(
            local(pod("prod/web", "10.0.0.1", &[("app", "web")]), 11),
            "http",
            TCP,
            8080,
        ),
        named(
            pod("prod/a", "10.0.0.2", &[("app", "api")]),
            "http",
            TCP,
            80,
        ),
        named(
            pod("prod/b", "10.0.0.3", &[("app", "api")]),
            "http",
            TCP,
            9090,
        ),
        named(
            pod("prod/c", "10.0.0.4", &[("app", "api")]),
            "http",
            UDP,
            9191,
        ),
    ];
    let yaml = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: named, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: http}]
  egress:
  - to: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: http}]
";
    let ev = Evaluator::new(&inputs(pods, yaml));
    // Ingress: the local pod's port.
    assert_eq!(
        check(&ev, "prod/web", Ingress, "1.2.3.4", TCP, 8080),
        (Allow, knp("prod", "named", Ingress, 0))
    );
    assert_eq!(check(&ev, "prod/web", Ingress, "1.2.3.4", TCP, 80), DENIED);
    // Egress: each peer's own port for the name, of the rule's protocol.
    let allowed = (Allow, knp("prod", "named", Egress, 0));
    assert_eq!(check(&ev, "prod/web", Egress, "10.0.0.2", TCP, 80), allowed);
    assert_eq!(
        check(&ev, "prod/web", Egress, "10.0.0.2", TCP, 9090),
        DENIED
    );
    assert_eq!(
        check(&ev, "prod/web", Egress, "10.0.0.3", TCP, 9090),
        allowed
    );
    assert_eq!(
        check(&ev, "prod/web", Egress, "10.0.0.4", TCP, 9191),
        DENIED
    );
}

#[test]
fn k8s_ranges_protocols_and_empty_rules() {
    let yaml = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ranges, namespace: prod}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: 1000, endPort: 1010}, {protocol: SCTP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Egress]
";
    let ev = Evaluator::new(&inputs(web_cluster(), yaml));
    let allowed = (Allow, knp("prod", "ranges", Ingress, 0));
    for port in [1000, 1005, 1010] {
        assert_eq!(
            check(&ev, "prod/web", Ingress, "8.8.8.8", TCP, port),
            allowed
        );
    }
    assert_eq!(check(&ev, "prod/web", Ingress, "8.8.8.8", TCP, 999), DENIED);
    assert_eq!(
        check(&ev, "prod/web", Ingress, "8.8.8.8", TCP, 1011),
        DENIED
    );
    assert_eq!(
        check(&ev, "prod/web", Ingress, "8.8.8.8", UDP, 1005),
        DENIED
    );
    assert_eq!(check(&ev, "prod/web", Ingress, "8.8.8.8", SCTP, 4), allowed);
    // A policy with no egress rules denies all egress.
    assert_eq!(check(&ev, "prod/web", Egress, "10.0.0.2", TCP, 80), DENIED);
}

#[test]
fn calico_order_actions_and_pass() {
    let yaml = "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: first}
spec:
  order: 10
  ingress:
  - action: Log
  - action: Deny
    protocol: TCP
    destination: {ports: [22]}
  - action: Pass
    protocol: UDP
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: second, namespace: prod}
spec:
  order: 100
  ingress:
  - action: Allow
    protocol: TCP
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: last}
spec:
  ingress:
  - action: Deny
";
    let ev = Evaluator::new(&inputs(web_cluster(), yaml));
    assert_eq!(
        check(&ev, "prod/web", Ingress, "10.0.0.2", TCP, 22),
        (Deny, gnp("first", Ingress, 1))
    );
    assert_eq!(
        check(&ev, "prod/web", Ingress, "10.0.0.2", TCP, 80),
        (Allow, np("prod", "second", Ingress, 0))
    );
    // Pass skips every remaining policy: the profile decides.
    assert_eq!(
        check(&ev, "prod/web", Ingress, "10.0.0.2", UDP, 53),
        PROFILE
    );
    assert_eq!(
        check(&ev, "prod/web", Ingress, "10.0.0.2", ICMP, 0),
        (Deny, gnp("last", Ingress, 0))
    );
}

#[test]
fn calico_entity_scoping() {
    let yaml = "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: scoped, namespace: prod}
spec:
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [1]}
    source: {selector: app == 'client'}
  - action: Allow
    protocol: TCP
    destination: {ports: [2]}
    source: {selector: app == 'client', namespaceSelector: all()}
  - action: Allow
    protocol: TCP
    destination: {ports: [3]}
    source: {notSelector: app == 'client'}
  - action: Allow
    protocol: TCP
    destination: {ports: [4]}
    source: {namespaceSelector: global()}
  - action: Allow
    protocol: TCP
    destination: {ports: [5]}
    source: {nets: [10.0.0.0/8], notNets: [10.0.1.0/24]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: global}
spec:
  order: 2000
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [6]}
    source: {selector: app == 'client'}
  - action: Allow
    protocol: TCP
    destination: {ports: [7]}
    source: {notSelector: app == 'client'}
";
    let ev = Evaluator::new(&inputs(web_cluster(), yaml));
    let scoped = |i| (Allow, np("prod", "scoped", Ingress, i));
    let global = |i| (Allow, gnp("global", Ingress, i));
    let at = |peer, port| check(&ev, "prod/web", Ingress, peer, TCP, port);
    // A namespaced policy's selector stays in its namespace...
    assert_eq!(at("10.0.0.2", 1), scoped(0));
    assert_eq!(at("10.0.1.2", 1), DENIED);
    // ...unless namespaceSelector widens it.
    assert_eq!(at("10.0.1.2", 2), scoped(1));
    // notSelector alone in a namespaced policy: pods of the namespace not matching.
    assert_eq!(at("10.0.0.1", 3), scoped(2));
    assert_eq!(at("10.0.0.2", 3), DENIED);
    assert_eq!(at("10.0.1.3", 3), DENIED);
    assert_eq!(at("8.8.8.8", 3), DENIED);
    // global(): no pods at all.
    assert_eq!(at("10.0.0.2", 4), DENIED);
    // nets minus notNets, pods or not.
    assert_eq!(at("10.0.0.2", 5), scoped(4));
    assert_eq!(at("10.200.0.1", 5), scoped(4));
    assert_eq!(at("10.0.1.2", 5), DENIED);
    // A global policy's selector spans namespaces; its notSelector alone matches the world.
    assert_eq!(at("10.0.1.2", 6), global(0));
    assert_eq!(at("8.8.8.8", 6), DENIED);
    assert_eq!(at("8.8.8.8", 7), global(1));
    assert_eq!(at("10.0.1.3", 7), global(1));
    assert_eq!(at("10.0.1.2", 7), DENIED);
}

#[test]
fn calico_icmp_and_protocols() {
    let yaml = "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: icmp}
spec:
  egress:
  - action: Deny
    protocol: ICMP
    icmp: {type: 8, code: 1}
  - action: Allow
    protocol: ICMP
    icmp: {type: 8}
  - action: Allow
    notProtocol: TCP
    protocol: UDP
    destination: {notPorts: ['1:100']}
  - action: Allow
    protocol: 47
";
    let ev = Evaluator::new(&inputs(web_cluster(), yaml));
    let icmp = |i| gnp("icmp", Egress, i);
    let at = |protocol, port| check(&ev, "prod/web", Egress, "8.8.8.8", protocol, port);
    assert_eq!(at(ICMP, 8 << 8), (Allow, icmp(1)));
    assert_eq!(at(ICMP, (8 << 8) | 1), (Deny, icmp(0)));
    assert_eq!(at(ICMP, 0), DENIED);
    assert_eq!(at(UDP, 100), DENIED);
    assert_eq!(at(UDP, 101), (Allow, icmp(2)));
    assert_eq!(at(47, 0), (Allow, icmp(3)));
}

#[test]
fn profiles_decide_when_no_policy_applies() {
    let mut pods = web_cluster();
    pods.push(local(pod("dev/bare", "10.0.1.9", &[]), 12));
    pods.last_mut().unwrap().profiles.clear();
    pods.push(local(pod("dev/custom", "10.0.1.10", &[]), 13));
    pods.last_mut().unwrap().profiles = vec!["custom".into(), "kns.dev".into()];
    let yaml = "
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.prod}
spec:
  ingress:
  - action: Pass
    source: {selector: app == 'client'}
  - action: Allow
    protocol: TCP
";
    let ev = Evaluator::new(&inputs(pods, yaml));
    let profile_rule = |i| rule(PolicyKind::Profile, None, "kns.prod", Ingress, i);
    assert_eq!(
        check(&ev, "prod/web", Ingress, "8.8.8.8", TCP, 1),
        (Allow, profile_rule(1))
    );
    // Pass in the last profile, and no match: denied.
    assert_eq!(check(&ev, "prod/web", Ingress, "10.0.0.2", TCP, 1), DENIED);
    assert_eq!(check(&ev, "prod/web", Ingress, "8.8.8.8", UDP, 1), DENIED);
    // A present profile with no egress rules decides nothing: deny.
    assert_eq!(check(&ev, "prod/web", Egress, "8.8.8.8", UDP, 1), DENIED);
    // No profiles: Calico denies.
    assert_eq!(check(&ev, "dev/bare", Ingress, "8.8.8.8", TCP, 1), DENIED);
    // A missing profile that is not a namespace's or account's denies.
    assert_eq!(check(&ev, "dev/custom", Ingress, "8.8.8.8", TCP, 1), DENIED);
}

#[test]
fn service_accounts_and_local_conditions() {
    let mut pods = web_cluster();
    pods[1].service_account = Some("reader".into());
    pods[2].service_account = Some("reader".into());
    pods.push(local(pod("prod/db", "10.0.0.5", &[("app", "db")]), 12));
    let mut inputs = inputs(
        pods,
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: accounts}
spec:
  ingress:
  - action: Allow
    source: {serviceAccounts: {names: [reader], selector: role == 'ro'}}
  - action: Deny
    destination: {selector: app == 'db'}
  - action: Allow
    source: {serviceAccounts: {names: [reader]}}
",
    );
    inputs.service_accounts.push(ServiceAccount {
        namespace: "dev".into(),
        name: "reader".into(),
        labels: [("role".to_string(), "ro".to_string())].into(),
    });
    let ev = Evaluator::new(&inputs);
    let accounts = |i| gnp("accounts", Ingress, i);
    assert_eq!(
        check(&ev, "prod/web", Ingress, "10.0.1.2", TCP, 1),
        (Allow, accounts(0))
    );
    assert_eq!(
        check(&ev, "prod/web", Ingress, "10.0.0.2", TCP, 1),
        (Allow, accounts(2))
    );
    assert_eq!(check(&ev, "prod/web", Ingress, "10.0.1.3", TCP, 1), DENIED);
    // The destination selector of an ingress rule is about the local endpoint.
    assert_eq!(
        check(&ev, "prod/db", Ingress, "10.0.0.2", TCP, 1),
        (Deny, accounts(1))
    );
}
