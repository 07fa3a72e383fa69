use std::collections::BTreeMap;

use bpf_maps::policy::{
    IDENTITY_REMOTE_HOST, IDENTITY_WORLD, POLICY_PREFIX_FULL, RULE_FIRST_ALLOCATED,
};

use super::*;
use crate::model::PolicyKind;
use crate::testutil::{inputs, local, pod, WEB_FROM_CLIENT_ON_80};

fn cluster() -> Vec<crate::Endpoint> {
    vec![
        local(pod("prod/web", "10.0.0.1", &[("app", "web")]), 7),
        pod("prod/client", "10.0.0.2", &[("app", "client")]),
        pod("prod/other", "10.0.0.3", &[("app", "other")]),
    ]
}

fn run(yaml: &str) -> CompiledPolicy {
    compile(
        &inputs(cluster(), yaml),
        &mut IdentityAllocator::new(),
        &mut RuleAllocator::new(),
    )
}

/// Entries of one endpoint, direction and identity, as (prefix, protocol, port, verdict,
/// rule).
fn entries_of(
    c: &CompiledPolicy,
    direction: Direction,
    identity: u32,
) -> Vec<(u32, u8, u16, u8, u32)> {
    c.entries
        .iter()
        .filter(|((_, k), _)| k.0.direction == direction.map_value() && k.identity() == identity)
        .map(|((len, k), v)| (*len, k.0.protocol, k.port(), v.verdict, v.rule))
        .collect()
}

const ALLOW: u8 = bpf_maps::policy::verdict::ALLOW;
const DENY: u8 = bpf_maps::policy::verdict::DENY;

#[test]
fn nothing_applies_nothing_is_policed() {
    let c = run("");
    assert_eq!(c.policed, BTreeMap::from([(7, (false, false))]));
    assert!(c.entries.is_empty());
    assert!(c.rules.is_empty());
    // Pods and nodes are still known to the IP cache.
    assert_eq!(c.ipcache.len(), 3 + 2);
    assert_eq!(c.ipcache[&"192.168.0.1/32".parse().unwrap()], IDENTITY_HOST);
    assert_eq!(
        c.ipcache[&"192.168.0.2/32".parse().unwrap()],
        IDENTITY_REMOTE_HOST
    );
}

#[test]
fn one_allowed_port_is_one_entry_for_the_one_class() {
    let c = run(WEB_FROM_CLIENT_ON_80);
    assert_eq!(c.policed[&7], (true, false));
    let client = c.ipcache[&"10.0.0.2/32".parse().unwrap()];
    assert!(client >= bpf_maps::policy::IDENTITY_FIRST_ALLOCATED);
    let rule = RULE_FIRST_ALLOCATED;
    assert_eq!(
        entries_of(&c, Direction::Ingress, client),
        vec![(POLICY_PREFIX_FULL, 6, 80, ALLOW, rule)]
    );
    // Every other peer is denied by the missing entry.
    assert_eq!(c.entries.len(), 1);
    assert_eq!(
        c.rules[&rule].key,
        RuleKey {
            kind: PolicyKind::K8sNetworkPolicy,
            namespace: Some("prod".into()),
            name: "web".into(),
            direction: Direction::Ingress,
            index: 0,
        }
    );
    assert_eq!(
        c.identities[&client],
        r#"endpoints namespace="prod" selector="app == \"client\"""#
    );
}

#[test]
fn rules_for_any_peer_cover_world_and_nodes() {
    let c = run("
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80}]}]
");
    let rule = RULE_FIRST_ALLOCATED;
    let expected = vec![(POLICY_PREFIX_FULL, 6, 80, ALLOW, rule)];
    assert_eq!(entries_of(&c, Direction::Ingress, IDENTITY_WORLD), expected);
    assert_eq!(
        entries_of(&c, Direction::Ingress, IDENTITY_REMOTE_HOST),
        expected
    );
    // The pods match no atom: they are the world too.
    assert_eq!(c.ipcache[&"10.0.0.2/32".parse().unwrap()], IDENTITY_WORLD);
    assert!(entries_of(&c, Direction::Ingress, IDENTITY_HOST).is_empty());
    assert_eq!(c.entries.len(), 2);
}

#[test]
fn an_exception_under_an_allow_is_two_entries() {
    let c = run("
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: ssh}
spec:
  egress:
  - {action: Deny, protocol: TCP, destination: {ports: [22]}}
  - {action: Allow}
");
    assert_eq!(c.policed[&7], (false, true));
    assert_eq!(
        entries_of(&c, Direction::Egress, IDENTITY_WORLD),
        vec![(72, 0, 0, ALLOW, 17), (96, 6, 22, DENY, 16)]
    );
    assert_eq!(c.rules[&16].action, Verdict::Deny);
}

#[test]
fn passed_traffic_gets_the_profile_verdict() {
    let c = run("
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pass}
spec:
  ingress:
  - {action: Pass, protocol: UDP}
");
    assert_eq!(
        entries_of(&c, Direction::Ingress, IDENTITY_WORLD),
        vec![(80, 17, 0, ALLOW, RULE_PROFILE_ALLOW)]
    );
    // Pass rules decide nothing themselves: no id.
    assert!(c.rules.is_empty());
}

#[test]
fn a_denying_profile_polices_without_policies() {
    let c = run("
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.prod}
spec:
  ingress: [{action: Allow, protocol: TCP}]
  egress: [{action: Allow}]
");
    // Ingress: only TCP allowed, so policed; egress: a rule allows everything, which is
    // still a rule with a counter, so policed too.
    assert_eq!(c.policed[&7], (true, true));
    assert_eq!(
        entries_of(&c, Direction::Ingress, IDENTITY_WORLD),
        vec![(80, 6, 0, ALLOW, 16)]
    );
    assert_eq!(
        entries_of(&c, Direction::Egress, IDENTITY_WORLD),
        vec![(72, 0, 0, ALLOW, 17)]
    );
}

#[test]
fn errors_skip_only_the_bad_policy() {
    let c = run("
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: bad, namespace: prod}
spec:
  ingress: [{action: Deny, protocol: TCP, source: {ports: [1]}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: good, namespace: prod}
spec:
  ingress: [{action: Allow}]
");
    assert_eq!(c.errors.len(), 1);
    assert!(c.errors[0].contains("prod/bad"));
    assert_eq!(c.rules.len(), 1);
    assert_eq!(c.rules[&16].key.name, "good");
}

#[test]
fn rule_ids_are_stable_and_bounded() {
    let yaml = "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: a}
spec:
  ingress: [{action: Allow, protocol: TCP}, {action: Deny}]
";
    let mut identities = IdentityAllocator::new();
    let mut rules = RuleAllocator::with_capacity(RULE_FIRST_ALLOCATED + 2);
    let first = compile(&inputs(cluster(), yaml), &mut identities, &mut rules);
    assert_eq!(
        first.rules.keys().copied().collect::<Vec<_>>(),
        vec![16, 17]
    );
    let more = format!(
        "{yaml}---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: b}}
spec:
  order: 1
  ingress: [{{action: Allow, protocol: UDP}}]
"
    );
    let second = compile(&inputs(cluster(), &more), &mut identities, &mut rules);
    assert_eq!(second.rules[&16].key.name, "a");
    assert_eq!(second.rules[&17].key.name, "a");
    assert!(
        second.errors[0].contains("no hit counter"),
        "{:?}",
        second.errors
    );
    // The rule without a counter still decides correctly.
    assert_eq!(
        entries_of(&second, Direction::Ingress, IDENTITY_WORLD),
        vec![
            (72, 0, 0, DENY, 17),
            (80, 6, 0, ALLOW, 16),
            (80, 17, 0, ALLOW, RULE_PROFILE_ALLOW)
        ]
    );
}

#[test]
fn ordered_keys_sort_by_their_bytes() {
    let a = OrderedPolicyKey::new(1, Direction::Egress, 5, 6, 80);
    let b = OrderedPolicyKey::new(2, Direction::Ingress, 1, 0, 0);
    let c = OrderedPolicyKey::new(1, Direction::Egress, 5, 6, 443);
    assert!(a < b && a < c && c < b);
    assert_eq!((a.endpoint(), a.identity(), a.port()), (1, 5, 80));
    assert_eq!(a.0.port, 80u16.to_be_bytes());
}
