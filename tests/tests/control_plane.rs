//! The lab run entirely from the datastore: etcd in the fabric, the pool and nodes applied
//! with `tortiectl`, pods created by calling `tortie-cni` as a runtime does, agents that watch
//! etcd and program the eBPF dataplane from IPAM blocks and workload endpoints.
//!
//! Needs root, etcd (Debian `etcd-server`), iproute2, util-linux; skipped without root
//! (fails under CI).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use tortie_lab::harness::{self, KillOnDrop};
use tortie_lab::{Artifacts, DatastoreMode, Encap, Lab, LabGuard, LabSpec};

fn ok<T>(result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|err| panic!("{err:#}"))
}

fn lab_up(short: &str, nodes: usize, pods_per_node: usize) -> LabGuard {
    harness::sweep_stale_test_labs(short);
    let artifacts = Artifacts::from_env_or_target().unwrap_or_else(|err| panic!("{err}"));
    let spec = LabSpec::new(harness::test_lab_name(short), nodes, pods_per_node)
        .with_encap(Encap::Ipip)
        .with_datastore(DatastoreMode::Etcd);
    LabGuard::up(&spec, &artifacts).unwrap_or_else(|err| panic!("lab up failed: {err:#}"))
}

/// `tortiectl args…` run through `lab exec` in `target`, which must put tortiectl on PATH and
/// point it at the lab's etcd. Returns stdout; panics with stderr on failure.
fn tortiectl(lab: &Lab, target: &str, args: &[&str]) -> String {
    let mut cmd = vec!["tortiectl"];
    cmd.extend_from_slice(args);
    let out = ok(lab.exec(target, &cmd));
    assert!(
        out.status.success(),
        "`tortiectl {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn workload_endpoint_ips(lab: &Lab) -> BTreeSet<String> {
    let json: Value = serde_json::from_str(&tortiectl(
        lab,
        "node-0",
        &["get", "workloadendpoints", "--all-namespaces", "-o", "json"],
    ))
    .unwrap_or_else(|err| panic!("tortiectl printed no JSON: {err}"));
    let items = match &json {
        Value::Array(items) => items.clone(),
        Value::Object(map) => map
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| vec![json.clone()]),
        _ => Vec::new(),
    };
    items
        .iter()
        .filter_map(|item| item["spec"]["ipNetworks"][0].as_str())
        .map(|net| net.trim_end_matches("/32").to_owned())
        .collect()
}

fn ping_ok(lab: &Lab, from: &str, to: Ipv4Addr) -> bool {
    let ip = to.to_string();
    lab.exec(from, &["ping", "-q", "-c", "1", "-W", "1", &ip])
        .is_ok_and(|out| out.status.success())
}

/// Pings until a reply comes (true) or `timeout` passes (false).
fn wait_reachable(lab: &Lab, from: &str, to: Ipv4Addr, timeout: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if ping_ok(lab, from, to) {
            return true;
        }
        // A ping that fails at once (no route yet) is not retried in a busy loop.
        sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn cni_pods_talk_across_nodes_and_keep_talking_while_etcd_is_down() {
    if harness::skip_unless_root("cni_pods_talk_across_nodes_and_keep_talking_while_etcd_is_down") {
        return;
    }
    let mut lab = lab_up("cp", 3, 1);

    // Addresses come from IPAM: inside the pool, one block per node.
    let pods = lab.pods().to_vec();
    let pool: ipnet::Ipv4Net = "10.65.0.0/16".parse().expect("pool");
    let mut blocks = BTreeSet::new();
    for pod in &pods {
        assert!(
            pool.contains(&pod.ip),
            "{} got {} outside the pool",
            pod.name,
            pod.ip
        );
        blocks.insert(u32::from(pod.ip) >> 6);
    }
    assert_eq!(
        blocks.len(),
        3,
        "each node allocates from its own /26: {pods:#?}"
    );

    // The endpoints the CNI plugin wrote are what tortiectl shows, through `lab exec`.
    let wep_ips = workload_endpoint_ips(&lab);
    let pod_ips: BTreeSet<String> = pods.iter().map(|p| p.ip.to_string()).collect();
    assert_eq!(wep_ips, pod_ips);

    harness::assert_all_pods_talk(&lab);

    // Traffic that runs while etcd goes away keeps running: 25 pings over 5 s, etcd killed
    // after the first second.
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);
    let b_ip = b.ip.to_string();
    let pinger = KillOnDrop::new(ok(lab.spawn(
        &a.name,
        &["ping", "-q", "-c", "25", "-i", "0.2", "-W", "1", &b_ip],
    )));
    sleep(Duration::from_secs(1));
    ok(lab.stop_etcd());
    let out = ok(pinger.wait_output(Duration::from_secs(30)));
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        summary.contains("25 received"),
        "pings during the etcd outage were lost: {summary}\n{}",
        harness::agent_logs(&lab)
    );
    // The agents noticed, stayed up, and the dataplane still forwards new flows.
    sleep(Duration::from_secs(2));
    for node in lab.nodes() {
        assert!(
            ok(lab.agent_running(&node.name)),
            "agent of {} died",
            node.name
        );
    }
    assert!(
        ping_ok(&lab, &a.name, c.ip),
        "new ping failed while etcd is down\n{}",
        harness::agent_logs(&lab)
    );

    // etcd comes back: a new pod gets an address and connectivity once the agents resync.
    ok(lab.start_etcd());
    let late = ok(lab.add_pod("node-1", "default", "late", &[("app", "late")]));
    assert!(
        wait_reachable(&lab, &a.name, late.ip, Duration::from_secs(20)),
        "{} cannot reach the pod created after etcd came back ({})\n{}",
        a.name,
        late.ip,
        harness::agent_logs(&lab)
    );
    assert!(
        ping_ok(&lab, "late", c.ip),
        "the new pod cannot reach {}",
        c.name
    );
    tortiectl(&lab, "node-2", &["ipam", "check"]);
}

#[test]
fn pod_churn_through_the_cni_leaves_ipam_and_the_dataplane_clean() {
    if harness::skip_unless_root("pod_churn_through_the_cni_leaves_ipam_and_the_dataplane_clean") {
        return;
    }
    let mut lab = lab_up("churn", 2, 0);
    let anchor = ok(lab.add_pod("node-0", "default", "anchor", &[("app", "anchor")]));
    let mut deleted: Vec<(String, Ipv4Addr, String)> = Vec::new();
    for round in 0..3 {
        let mut created = Vec::new();
        for i in 0..4 {
            let node = format!("node-{}", i % 2);
            let name = format!("churn-{round}-{i}");
            let pod = ok(lab.add_pod(&node, "churn", &name, &[("round", &round.to_string())]));
            created.push(pod);
        }
        for pod in &created {
            assert!(
                wait_reachable(&lab, "anchor", pod.ip, Duration::from_secs(10)),
                "round {round}: {} ({}) unreachable\n{}",
                pod.name,
                pod.ip,
                harness::agent_logs(&lab)
            );
        }
        // Keep one per round, delete the rest.
        for pod in created.iter().skip(1) {
            ok(lab.delete_pod(&format!("churn/{}", pod.name)));
            deleted.push((pod.node.clone(), pod.ip, pod.host_iface.clone()));
        }
    }

    let report = tortiectl(&lab, "node-0", &["ipam", "check"]);
    assert!(!report.is_empty(), "ipam check printed nothing");
    let live: BTreeSet<String> = lab.pods().iter().map(|p| p.ip.to_string()).collect();
    assert_eq!(
        workload_endpoint_ips(&lab),
        live,
        "endpoints differ from live pods"
    );
    assert!(live.contains(&anchor.ip.to_string()));

    // The agents removed what belonged to deleted pods whose addresses were not reused.
    let started = Instant::now();
    loop {
        let mut stale = Vec::new();
        for (node, ip, iface) in &deleted {
            if live.contains(&ip.to_string()) {
                continue;
            }
            let out = ok(lab.exec(node, &["ip", "-4", "route", "show", "proto", "81"]));
            let routes = String::from_utf8_lossy(&out.stdout).into_owned();
            if routes
                .lines()
                .any(|line| line.split_whitespace().next() == Some(ip.to_string().as_str()))
            {
                stale.push(format!("{node}: route to {ip}"));
            }
            let link = ok(lab.exec(node, &["ip", "link", "show", iface]));
            if link.status.success() {
                stale.push(format!("{node}: {iface} still exists"));
            }
        }
        if stale.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "left behind after CNI DEL: {stale:?}\n{}",
            harness::agent_logs(&lab)
        );
        sleep(Duration::from_millis(200));
    }
}

const DENY_ALL_INGRESS: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
  namespace: default
spec:
  podSelector: {}
  policyTypes:
  - Ingress
";

const ALLOW_0_0_TO_1_0: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-pod-0-0
  namespace: default
spec:
  podSelector:
    matchLabels:
      app: pod-1-0
  ingress:
  - from:
    - podSelector:
        matchLabels:
          app: pod-0-0
";

/// How long the agents get to enforce a policy change.
const POLICY_DEADLINE: Duration = Duration::from_secs(15);

/// Which ordered pod pairs answer a ping, as "a→b" strings.
fn reachable_pairs(lab: &Lab) -> BTreeSet<String> {
    lab.connectivity_matrix()
        .into_iter()
        .filter(|(_, _, ok)| *ok)
        .map(|(a, b, _)| format!("{a}→{b}"))
        .collect()
}

/// Polls [`reachable_pairs`] until it is `expected` or [`POLICY_DEADLINE`] passes; returns
/// the last pairs seen.
fn wait_for_pairs(lab: &Lab, expected: &BTreeSet<String>) -> BTreeSet<String> {
    let started = Instant::now();
    let mut seen = reachable_pairs(lab);
    while seen != *expected && started.elapsed() < POLICY_DEADLINE {
        sleep(Duration::from_millis(300));
        seen = reachable_pairs(lab);
    }
    seen
}

#[test]
fn policy_from_the_datastore_is_enforced_and_revokes_established_flows() {
    if harness::skip_unless_root(
        "policy_from_the_datastore_is_enforced_and_revokes_established_flows",
    ) {
        return;
    }
    let lab = lab_up("pol", 2, 2);
    let everyone = reachable_pairs(&lab);
    assert_eq!(
        everyone.len(),
        12,
        "without policy every pair talks: {everyone:?}"
    );

    ok(lab.apply_yaml("deny.yaml", DENY_ALL_INGRESS));
    ok(lab.apply_yaml("allow.yaml", ALLOW_0_0_TO_1_0));
    // The agents apply a change within moments; poll rather than guess.
    let expected = BTreeSet::from(["pod-0-0→pod-1-0".to_owned()]);
    let seen = wait_for_pairs(&lab, &expected);
    assert_eq!(
        seen,
        expected,
        "only the allowed pair talks\n{}",
        harness::agent_logs(&lab)
    );
    let denied = ok(lab.counters("node-1"))
        .get("drop_policy_denied")
        .copied()
        .unwrap_or(0);
    assert!(
        denied > 0,
        "denied packets are counted on the destination's node"
    );
    // The destination's compiled policy, found by pod name, shows the allowed peer and the
    // packets its rule let in; everything else is the default deny (no entry).
    let entries: Value = serde_json::from_str(&tortiectl(
        &lab,
        "node-1",
        &["bpf", "policy", "dump", "default/pod-1-0", "-o", "json"],
    ))
    .unwrap_or_else(|err| panic!("policy dump printed no JSON: {err}"));
    let allow_with_hits = entries.as_array().is_some_and(|rows| {
        rows.iter().any(|row| {
            row["direction"] == "ingress"
                && row["verdict"] == "allow"
                && row["rule_hits"].as_u64().is_some_and(|hits| hits > 0)
        })
    });
    assert!(allow_with_hits, "an ingress allow with hits: {entries:#}");
    let rules: Value = serde_json::from_str(&tortiectl(
        &lab,
        "node-1",
        &["bpf", "counters", "dump", "--rules", "-o", "json"],
    ))
    .unwrap_or_else(|err| panic!("counters --rules printed no JSON: {err}"));
    assert!(
        rules.as_array().is_some_and(|rows| rows
            .iter()
            .any(|row| row["name"] == "default-deny" && row["hits"].as_u64() > Some(0))),
        "default-deny hits per rule: {rules:#}"
    );

    // An established flow stops when the policy that allowed it goes away. The flow pings
    // every 0.2 s for a second before the delete and for POLICY_DEADLINE after it, so the
    // agents get the same time to revoke it as to enforce any other change.
    let target = lab
        .pod("pod-1-0")
        .map(|p| p.ip.to_string())
        .unwrap_or_default();
    let pings = 5 + POLICY_DEADLINE.as_millis() / 200;
    let count = pings.to_string();
    let pinger = KillOnDrop::new(ok(lab.spawn(
        "pod-0-0",
        &["ping", "-c", &count, "-i", "0.2", "-W", "1", &target],
    )));
    sleep(Duration::from_secs(1));
    ok(lab.delete_yaml("allow.yaml", ALLOW_0_0_TO_1_0));
    let out = ok(pinger.wait_output(POLICY_DEADLINE + Duration::from_secs(15)));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let received: u128 = text
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" received").map(str::trim))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no ping summary: {text}"));
    assert!(
        (1..pings).contains(&received),
        "the flow should pass before the delete and stop after it: {text}"
    );
    assert!(
        ok(lab.counters("node-1"))
            .get("drop_policy_revoked")
            .copied()
            .unwrap_or(0)
            > 0,
        "the revoked flow is counted"
    );

    ok(lab.delete_yaml("deny.yaml", DENY_ALL_INGRESS));
    assert_eq!(
        wait_for_pairs(&lab, &everyone),
        everyone,
        "every pair talks again once the policies are gone"
    );
}
