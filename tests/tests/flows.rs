//! "Why was this packet dropped?" answered by `tortiectl flows`: a ping that a Calico policy
//! denies shows up on the destination's node with the reason and the policy rule.
//!
//! Needs root and etcd; skipped without root (fails under CI).

use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use tortie_lab::harness;
use tortie_lab::spec::POD_NAMESPACE;
use tortie_lab::{Artifacts, DatastoreMode, Encap, Lab, LabGuard, LabSpec};

fn ok<T>(result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|err| panic!("{err:#}"))
}

/// `tortiectl flows -o json [extra…]` on `node`: one JSON object per reported drop.
fn flows(lab: &Lab, node: &str, extra: &[&str]) -> Vec<Value> {
    let mut cmd = vec!["tortiectl", "flows", "-o", "json"];
    cmd.extend_from_slice(extra);
    let out = ok(lab.exec(node, &cmd));
    assert!(
        out.status.success(),
        "tortiectl flows failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn ping(lab: &Lab, from: &str, to: &str) -> bool {
    lab.exec(from, &["ping", "-q", "-c", "1", "-W", "1", to])
        .is_ok_and(|out| out.status.success())
}

#[test]
fn a_policy_denied_ping_is_reported_with_its_rule() {
    if harness::skip_unless_root("a_policy_denied_ping_is_reported_with_its_rule") {
        return;
    }
    harness::sweep_stale_test_labs("flows");
    let artifacts = Artifacts::from_env_or_target().unwrap_or_else(|err| panic!("{err}"));
    let spec = LabSpec::new(harness::test_lab_name("flows"), 2, 1)
        .with_encap(Encap::Ipip)
        .with_datastore(DatastoreMode::Etcd);
    let lab = LabGuard::up(&spec, &artifacts).unwrap_or_else(|err| panic!("lab up: {err:#}"));
    let (client, server) = (lab.pods()[0].clone(), lab.pods()[1].clone());
    let server_ip = server.ip.to_string();
    assert!(
        ping(&lab, &client.name, &server_ip),
        "no connectivity before the policy"
    );
    // Whatever was dropped while the lab came up is read away first.
    flows(&lab, &server.node, &[]);

    let policy = format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: deny-ping\n  \
         namespace: {POD_NAMESPACE}\nspec:\n  selector: app == '{}'\n  types: [Ingress]\n  \
         ingress:\n  - action: Deny\n    protocol: ICMP\n  - action: Allow\n",
        server.name
    );
    ok(lab.apply_yaml("deny-ping.yaml", &policy));
    let started = Instant::now();
    while ping(&lab, &client.name, &server_ip) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the policy never took effect\n{}",
            harness::agent_logs(&lab)
        );
        sleep(Duration::from_millis(200));
    }

    let key = format!("{POD_NAMESPACE}/{}", server.name);
    let drops = flows(&lab, &server.node, &["--pod", &key]);
    let ours: Vec<&Value> = drops
        .iter()
        .filter(|row| {
            row["reason"] == "policy_denied"
                && row["protocol"] == "icmp"
                && row["src"] == client.ip.to_string().as_str()
        })
        .collect();
    assert!(!ours.is_empty(), "no policy drop of the ping in {drops:#?}");
    let row = ours[0];
    assert_eq!(row["verdict"], "drop");
    assert_eq!(row["hook"], "from-fabric", "{row}");
    assert!(
        row["dst"]
            .as_str()
            .is_some_and(|dst| dst.starts_with(&format!("{server_ip} type 8"))),
        "{row}"
    );
    let rule = row["rule"].as_str().unwrap_or_default();
    assert!(
        rule.contains(&format!(
            "Deny NetworkPolicy {POD_NAMESPACE}/deny-ping spec.ingress[0]"
        )),
        "rule {rule:?}"
    );
    // The events were consumed: a second read finds none of them.
    assert!(
        flows(&lab, &server.node, &["--pod", &key])
            .iter()
            .all(|r| r["time"] != row["time"]),
        "events are read once"
    );
}
