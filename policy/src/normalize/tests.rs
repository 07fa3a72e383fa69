use super::expr::{EndpointFilter, NsScope};
use super::*;
use crate::testutil::{inputs, local, pod};

fn order_of(norm: &Normalized) -> Vec<String> {
    norm.policies
        .iter()
        .map(|p| qualified(p.namespace.as_deref(), &p.name))
        .collect()
}

#[test]
fn policies_sort_by_order_then_name_with_k8s_at_1000() {
    let norm = normalize(&inputs(
        vec![],
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: unordered}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: b}
spec: {order: 5}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: a, namespace: prod}
spec: {order: 5}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: zzz, namespace: prod}
spec: {order: 1000}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: x, namespace: prod}
spec: {podSelector: {}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: late, namespace: prod}
spec: {order: 1000.5}
",
    ));
    assert!(norm.errors.is_empty(), "{:?}", norm.errors);
    // `b` sorts before `prod/a` (Calico compares "b" with "prod/a"); the Kubernetes policy
    // is `prod/knp.default.x` at order 1000; unordered policies come last.
    assert_eq!(
        order_of(&norm),
        [
            "b",
            "prod/a",
            "prod/x",
            "prod/zzz",
            "prod/late",
            "unordered"
        ]
    );
}

#[test]
fn source_ports_reject_the_policy_with_its_name_and_rule() {
    let norm = normalize(&inputs(
        vec![],
        "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: bad, namespace: prod}
spec:
  ingress:
  - action: Allow
  - action: Allow
    protocol: TCP
    source: {ports: [1024]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: good, namespace: prod}
spec:
  ingress: [{action: Allow}]
",
    ));
    assert_eq!(order_of(&norm), ["prod/good"]);
    assert_eq!(norm.errors.len(), 1);
    let error = &norm.errors[0];
    assert!(
        error.starts_with("NetworkPolicy prod/bad: spec.ingress[1].source.ports:"),
        "{error}"
    );
    assert!(error.contains("source ports are not supported by this dataplane yet"));
    // The skipped policy left no rules behind.
    assert_eq!(norm.rules.len(), 1);
}

#[test]
fn invalid_policies_are_reported_and_skipped() {
    let norm = normalize(&inputs(
        vec![],
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: no-protocol}
spec:
  egress: [{action: Allow, destination: {ports: [80]}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: bad-selector}
spec:
  selector: app = 'x'
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: other-tier}
spec: {tier: security}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked}
spec: {doNotTrack: true, applyOnForward: true}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad-block, namespace: prod}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad-range, namespace: prod}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 90, endPort: 80}]}]
",
    ));
    assert!(norm.policies.is_empty());
    let joined = norm.errors.join("\n");
    for expected in [
        "GlobalNetworkPolicy no-protocol: spec.egress[0].destination.ports: rules that match ports must set protocol",
        "GlobalNetworkPolicy bad-selector: spec.selector: invalid selector",
        "GlobalNetworkPolicy other-tier: spec.tier: tier \"security\" does not exist",
        "NetworkPolicy (networking.k8s.io) prod/bad-block: spec.ingress[0].from[0].ipBlock.cidr:",
        "NetworkPolicy (networking.k8s.io) prod/bad-range: spec.ingress[0].ports[0].endPort:",
    ] {
        assert!(joined.contains(expected), "missing {expected:?} in\n{joined}");
    }
    assert!(norm.warnings.iter().any(|w| w.contains("untracked")));
}

#[test]
fn policy_types_follow_calico_and_kubernetes_defaults() {
    let norm = normalize(&inputs(
        vec![],
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: egress-only}
spec:
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: empty}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: k8s-egress, namespace: prod}
spec:
  podSelector: {}
  egress: [{}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: k8s-explicit, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Egress]
  ingress: [{}]
",
    ));
    let types = |name: &str| {
        let p = norm.policies.iter().find(|p| p.name == name).unwrap();
        (p.rules[0].is_some(), p.rules[1].is_some())
    };
    assert_eq!(types("egress-only"), (false, true));
    assert_eq!(types("empty"), (true, false));
    assert_eq!(types("k8s-egress"), (true, true));
    assert_eq!(types("k8s-explicit"), (false, true));
}

fn peer_of(yaml: &str) -> Expr<Atom> {
    let norm = normalize(&inputs(vec![], yaml));
    assert!(norm.errors.is_empty(), "{:?}", norm.errors);
    norm.rules[0].peer.clone()
}

fn endpoints(scope: NsScope, selector: Option<&str>) -> Expr<Atom> {
    Expr::Atom(Atom::endpoints(EndpointFilter {
        scope,
        accounts: None,
        selector: selector.map(|s| Selector::parse(s).unwrap()),
    }))
}

#[test]
fn peers_become_scoped_atoms() {
    let calico = peer_of(
        "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: prod}
spec:
  ingress: [{action: Allow, source: {selector: app == 'a'}}]
",
    );
    assert_eq!(
        calico,
        endpoints(NsScope::Named("prod".into()), Some("app == 'a'"))
    );

    let k8s_any_namespace = peer_of(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: prod}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {}}]}]
",
    );
    assert_eq!(k8s_any_namespace, endpoints(NsScope::Any, None));

    let whole_space = peer_of(
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  ingress: [{action: Allow, source: {nets: [0.0.0.0/0]}}]
",
    );
    assert_eq!(
        whole_space,
        Expr::True,
        "0.0.0.0/0 must not split identities"
    );

    let v6_only = peer_of(
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  ingress: [{action: Allow, source: {nets: ['fd00::/8']}, destination: {notNets: ['fd00::/8']}}]
",
    );
    assert_eq!(v6_only, Expr::False);

    let host_bits = peer_of(
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  ingress: [{action: Allow, source: {nets: [10.1.2.3/16]}}]
",
    );
    assert_eq!(
        host_bits,
        Expr::Atom(Atom::Net("10.1.0.0/16".parse().unwrap()))
    );
}

#[test]
fn ipv6_rules_are_dropped() {
    let norm = normalize(&inputs(
        vec![],
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  ingress: [{action: Deny, ipVersion: 6}, {action: Allow}]
",
    ));
    assert_eq!(norm.rules.len(), 1);
    assert_eq!(norm.rules[0].key.index, 1, "the rule keeps its index");
}

#[test]
fn labels_get_calico_defaults_and_profile_inheritance() {
    let mut web = local(pod("prod/web", "10.0.0.1", &[("app", "web")]), 3);
    web.service_account = Some("api".into());
    web.profiles = vec!["kns.prod".into(), "extra".into()];
    let norm = normalize(&inputs(
        vec![web],
        "
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {team: x}}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.prod}
spec:
  labelsToApply: {app: inherited, zone: a}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: extra}
spec:
  labelsToApply: {zone: b, rack: r1}
",
    ));
    let ep = norm.endpoint("prod/web").unwrap();
    let label = |k: &str| ep.labels.get(k).map(String::as_str);
    assert_eq!(label("app"), Some("web"), "own labels win");
    assert_eq!(label("zone"), Some("a"), "earlier profiles win");
    assert_eq!(label("rack"), Some("r1"));
    assert_eq!(label(crate::LABEL_CALICO_NAMESPACE), Some("prod"));
    assert_eq!(label(crate::LABEL_CALICO_SERVICE_ACCOUNT), Some("api"));
    assert_eq!(label(crate::LABEL_CALICO_ORCHESTRATOR), Some("k8s"));
    let ns = |k: &str| ep.namespace_labels.get(k).map(String::as_str);
    assert_eq!(ns("team"), Some("x"));
    assert_eq!(ns(crate::LABEL_K8S_NAMESPACE_NAME), Some("prod"));
    assert_eq!(ns(crate::LABEL_CALICO_NAME), Some("prod"));
    assert_eq!(
        ep.account_labels
            .get(crate::LABEL_CALICO_NAME)
            .map(String::as_str),
        Some("api")
    );
}

#[test]
fn profile_stages() {
    let mut web = pod("prod/web", "10.0.0.1", &[]);
    web.profiles = vec![
        "kns.prod".into(),
        "ksa.prod.default".into(),
        "custom".into(),
        "broken".into(),
        "present".into(),
    ];
    let norm = normalize(&inputs(
        vec![web],
        "
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: broken}
spec:
  ingress: [{action: Allow, source: {nets: [nonsense]}}]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: present}
spec:
  ingress: [{action: Allow}]
",
    ));
    let ep = norm.endpoint("prod/web").unwrap();
    let stages = norm.profile_stages(ep, Direction::Ingress);
    assert_eq!(stages[0], ProfileStage::AllowAll);
    assert_eq!(stages[1], ProfileStage::AllowAll);
    assert_eq!(stages[2], ProfileStage::DenyAll);
    assert_eq!(stages[3], ProfileStage::DenyAll);
    assert!(matches!(&stages[4], ProfileStage::Rules(r) if r.len() == 1));
    assert!(norm.errors[0].starts_with("Profile broken: spec.ingress[0].source.nets[0]:"));
}

#[test]
fn duplicates_and_shared_addresses_are_reported() {
    let norm = normalize(&inputs(
        vec![
            local(pod("prod/a", "10.0.0.1", &[]), 7),
            local(pod("prod/b", "10.0.0.1", &[]), 7),
            pod("prod/a", "10.0.0.9", &[]),
            pod("prod/host", "192.168.0.1", &[]),
        ],
        "",
    ));
    assert_eq!(norm.endpoints.len(), 3);
    assert_eq!(
        norm.endpoint_at("10.0.0.1".parse().unwrap()).unwrap().key,
        "prod/a"
    );
    assert!(norm.endpoint_at("192.168.0.1".parse().unwrap()).is_none());
    assert_eq!(norm.endpoint("prod/b").unwrap().ifindex, None);
    assert_eq!(norm.warnings.len(), 4, "{:#?}", norm.warnings);
}
