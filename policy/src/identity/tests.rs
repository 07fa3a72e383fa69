use super::*;
use crate::normalize::{normalize, NsScope};
use crate::testutil::{inputs, ip, named, pod};
use crate::{compile, RuleAllocator};

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

fn table_of(nets: &[&str]) -> AtomTable {
    let mut table = AtomTable::default();
    for n in nets {
        table.intern(&Atom::Net(net(n)));
    }
    table
}

#[test]
fn nets_fully_covered_by_nested_nets_need_no_entry() {
    let table = table_of(&[
        "10.0.0.0/24",
        "10.0.0.0/25",
        "10.0.0.128/25",
        "10.0.1.0/24",
        "10.0.1.0/26",
        "10.0.0.0/16",
    ]);
    let own = nets_with_own_addresses(&table);
    let expected: Vec<Ipv4Net> = [
        "10.0.0.0/16",
        "10.0.0.0/25",
        "10.0.0.128/25",
        "10.0.1.0/24",
        "10.0.1.0/26",
    ]
    .iter()
    .map(|n| net(n))
    .collect();
    assert_eq!(own, expected);
}

#[test]
fn addresses_group_by_the_atoms_they_satisfy() {
    let pods = vec![
        pod("prod/a", "10.0.1.1", &[("app", "web")]),
        pod("prod/b", "10.0.1.2", &[("app", "web")]),
        pod("prod/c", "10.0.2.1", &[("app", "db")]),
        pod("dev/d", "172.16.0.1", &[("app", "web")]),
    ];
    let mut input = inputs(pods, "");
    input.remote_hosts = vec![ip("192.168.0.2"), ip("10.0.9.9"), ip("10.0.1.2")];
    let norm = normalize(&input);
    let mut table = table_of(&["10.0.0.0/16", "10.0.1.0/24"]);
    let web = table.intern(&Atom::endpoints(crate::normalize::EndpointFilter {
        scope: NsScope::Named("prod".into()),
        accounts: None,
        selector: Some(tortie_resources::Selector::parse("app == 'web'").unwrap()),
    })) as usize;
    let classes = build_classes(&norm, &table, &BTreeSet::new());
    let class_at = |n: &str| match classes.ipcache.get(&net(n)) {
        Some(Member::Class(c)) => *c,
        other => panic!("{n}: {other:?}"),
    };
    // Two web pods in the same CIDRs share a class; the db pod and the other namespace's
    // web pod do not.
    assert_eq!(class_at("10.0.1.1/32"), class_at("10.0.1.2/32"));
    assert_ne!(class_at("10.0.1.1/32"), class_at("10.0.2.1/32"));
    assert!(classes.list[class_at("10.0.1.1/32")].atoms.get(web));
    assert!(!classes.list[class_at("172.16.0.1/32")].atoms.get(web));
    // A pod matching nothing is the world, but still gets its /32.
    assert_eq!(class_at("172.16.0.1/32"), CLASS_WORLD);
    // CIDR regions: the /16 alone, the /24 inside it.
    let outer = &classes.list[class_at("10.0.0.0/16")];
    let inner = &classes.list[class_at("10.0.1.0/24")];
    assert_eq!(outer.atoms.ones().collect::<Vec<_>>(), vec![0]);
    assert_eq!(inner.atoms.ones().collect::<Vec<_>>(), vec![0, 1]);
    // Nodes: outside every CIDR the fixed class, inside one a class of their own; a node
    // address that is also a pod's is the pod's.
    assert_eq!(class_at("192.168.0.2/32"), CLASS_REMOTE_HOST);
    let node = &classes.list[class_at("10.0.9.9/32")];
    assert!(node.remote_host);
    assert_eq!(node.atoms, outer.atoms);
    assert_ne!(class_at("10.0.9.9/32"), class_at("10.0.0.0/16"));
    assert_eq!(class_at("10.0.1.2/32"), class_at("10.0.1.1/32"));
    assert_eq!(
        classes.ipcache.get(&net("192.168.0.1/32")),
        Some(&Member::LocalHost)
    );
    assert_eq!(
        node.signature(&table),
        "remote-host\nnet 10.0.0.0/16",
        "signatures are the sorted atom texts"
    );
    assert_eq!(classes.list[CLASS_WORLD].signature(&table), "");
}

#[test]
fn named_ports_split_classes_only_when_egress_rules_read_them() {
    let pods = vec![
        named(pod("prod/a", "10.0.0.1", &[]), "http", 6, 80),
        named(pod("prod/b", "10.0.0.2", &[]), "http", 6, 8080),
        named(pod("prod/c", "10.0.0.3", &[]), "metrics", 6, 9090),
    ];
    let norm = normalize(&inputs(pods, ""));
    let table = AtomTable::default();
    let classes = build_classes(&norm, &table, &BTreeSet::new());
    assert_eq!(
        classes.list.len(),
        2,
        "without references all are the world"
    );
    let refs = BTreeSet::from([("http", 6u8)]);
    let classes = build_classes(&norm, &table, &refs);
    let class_at = |n: &str| match classes.ipcache[&net(n)] {
        Member::Class(c) => c,
        Member::LocalHost => unreachable!(),
    };
    assert_ne!(class_at("10.0.0.1/32"), class_at("10.0.0.2/32"));
    assert_eq!(class_at("10.0.0.3/32"), CLASS_WORLD);
    assert_eq!(
        classes.list[class_at("10.0.0.2/32")].signature(&table),
        "port \"http\"/6=8080"
    );
}

#[test]
fn identities_survive_unrelated_changes() {
    let pods = vec![
        crate::testutil::local(pod("prod/web", "10.0.0.1", &[("app", "web")]), 5),
        pod("prod/client", "10.0.0.2", &[("app", "client")]),
        pod("prod/other", "10.0.0.3", &[("app", "other")]),
    ];
    let base = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]
";
    let more = format!(
        "{base}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: extra, namespace: prod}}
spec:
  podSelector: {{}}
  ingress: [{{from: [{{ipBlock: {{cidr: 172.16.0.0/12}}}}]}}]
"
    );
    let mut identities = IdentityAllocator::new();
    let mut rules = RuleAllocator::new();
    let first = compile(&inputs(pods.clone(), base), &mut identities, &mut rules);
    let second = compile(&inputs(pods.clone(), &more), &mut identities, &mut rules);
    let client = net("10.0.0.2/32");
    assert!(first.ipcache[&client] >= IDENTITY_FIRST_ALLOCATED);
    assert_eq!(first.ipcache[&client], second.ipcache[&client]);
    assert_eq!(
        second.ipcache[&net("172.16.0.0/12")],
        first.ipcache[&client] + 1
    );
    // Dropping the policies frees their classes...
    compile(&inputs(pods.clone(), ""), &mut identities, &mut rules);
    assert_eq!(identities.signature(first.ipcache[&client]), None);
    assert!(identities.is_empty());
    // ...whose numbers are not reused at once: a new class gets a fresh one.
    let other = base.replace("client", "other");
    let fourth = compile(&inputs(pods, &other), &mut identities, &mut rules);
    assert_eq!(
        fourth.ipcache[&net("10.0.0.3/32")],
        first.ipcache[&client] + 2
    );
}
