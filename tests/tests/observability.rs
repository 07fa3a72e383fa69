//! Seeing inside a node: "why was this packet dropped?" answered by `tortiectl flows` (a ping
//! a Calico policy denies shows up on the destination's node with the reason and the rule),
//! and the agent's `/metrics` (valid Prometheus text), `/healthz` and `/readyz` (ready while
//! the dataplane matches the datastore, not once etcd is gone).
//!
//! Needs root and etcd; skipped without root (fails under CI).

use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use tortie_lab::harness::{self, KillOnDrop};
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

/// `curl` of `path` on the agent of `node`: (HTTP status, body).
fn agent_http(lab: &Lab, node: &str, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", tortie_lab::spec::AGENT_METRICS_ADDR);
    let out = ok(lab.exec(
        node,
        &["curl", "-s", "-m", "5", "-w", "\n%{http_code}", &url],
    ));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// The samples of a Prometheus text exposition; panics on a line that is neither a comment
/// nor `name{labels} value`, or on a sample whose metric has no TYPE.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut typed = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let name = words.next().expect("TYPE names a metric");
            let kind = words.next().expect("TYPE has a kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad TYPE line {line:?}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap_or(series);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels in {line:?}"
            );
        }
        assert!(typed.contains(name), "{name} has no TYPE line");
        samples.push((series.to_string(), value));
    }
    samples
}

#[test]
fn the_agent_reports_metrics_health_and_readiness() {
    if harness::skip_unless_root("the_agent_reports_metrics_health_and_readiness") {
        return;
    }
    harness::sweep_stale_test_labs("metrics");
    let artifacts = Artifacts::from_env_or_target().unwrap_or_else(|err| panic!("{err}"));
    let spec = LabSpec::new(harness::test_lab_name("metrics"), 2, 1)
        .with_encap(Encap::Vxlan)
        .with_datastore(DatastoreMode::Etcd);
    let lab = LabGuard::up(&spec, &artifacts).unwrap_or_else(|err| panic!("lab up: {err:#}"));
    let (client, server) = (lab.pods()[0].clone(), lab.pods()[1].clone());
    assert!(ping(&lab, &client.name, &server.ip.to_string()));

    assert_eq!(agent_http(&lab, &server.node, "/healthz").0, 200);
    assert_eq!(
        agent_http(&lab, &server.node, "/readyz"),
        (200, "ready\n".into())
    );
    let (status, body) = agent_http(&lab, &server.node, "/metrics");
    assert_eq!(status, 200);
    let samples = parse_prometheus(&body);
    let value = |series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
    };
    assert_eq!(value("tortie_ready"), 1.0);
    assert_eq!(value("tortie_datastore_connected"), 1.0);
    assert!(value("tortie_packets_total{counter=\"decapsulated\"}") >= 1.0);
    assert!(value("tortie_map_entries{map=\"TORTIE_ROUTES\"}") >= 3.0);
    // Per interface: the server's node saw the client's packets arrive on its uplink, and
    // the server's answers leave the server's cali interface.
    assert!(value("tortie_iface_packets_total{iface=\"eth0\",hook=\"from-fabric\"}") >= 1.0);
    let from_server = format!(
        "tortie_iface_packets_total{{iface=\"{}\",hook=\"from-pod\"}}",
        server.host_iface
    );
    assert!(value(&from_server) >= 1.0);
    assert!(value("tortie_iface_bytes_total{iface=\"eth0\",hook=\"from-fabric\"}") >= 64.0);
    assert_eq!(value("tortie_sync_errors_total"), 0.0);
    every_inspection_command_answers(&lab, &server.node);
    traced_pings_are_reported_with_their_outcome(&lab, &client, &server);

    // With etcd gone the node keeps forwarding but no longer knows it matches the datastore.
    ok(lab.stop_etcd());
    let started = Instant::now();
    loop {
        let (status, body) = agent_http(&lab, &server.node, "/readyz");
        if status == 503 {
            assert!(body.contains("datastore"), "{body}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/readyz stayed {status} with etcd down"
        );
        sleep(Duration::from_millis(250));
    }
    assert_eq!(agent_http(&lab, &server.node, "/healthz").0, 200);
    assert!(ping(&lab, &client.name, &server.ip.to_string()));
}

/// Every `tortiectl bpf` view answers on a live node, as a table and as JSON, and every
/// pinned map dumps with field names through `bpftool` (BTF).
fn every_inspection_command_answers(lab: &Lab, node: &str) {
    let views: [&[&str]; 10] = [
        &["routes"],
        &["endpoints"],
        &["ifstate"],
        &["ipcache"],
        &["policy", "dump"],
        &["conntrack", "dump"],
        &["conntrack", "stats"],
        &["counters"],
        &["counters", "--rules"],
        &["nat"],
    ];
    for view in views {
        for format in ["table", "json"] {
            let mut cmd = vec!["tortiectl", "bpf"];
            cmd.extend_from_slice(view);
            cmd.extend_from_slice(&["-o", format]);
            let out = ok(lab.exec(node, &cmd));
            assert!(
                out.status.success(),
                "`{}` failed: {}",
                cmd.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            if format == "json" {
                let parsed: Result<Value, _> = serde_json::from_slice(&out.stdout);
                assert!(parsed.is_ok(), "`{}` printed no JSON", cmd.join(" "));
            }
        }
    }
    let maps_dir = lab.node(node).expect("node").maps_dir();
    for name in bpf_maps::map_names::ALL {
        // A ring buffer has no entries to dump; `tortiectl flows` reads it.
        if name == bpf_maps::map_names::EVENTS {
            continue;
        }
        let path = maps_dir.join(name).display().to_string();
        let out = std::process::Command::new("bpftool")
            .args(["-j", "map", "dump", "pinned", &path])
            .output()
            .expect("bpftool");
        assert!(
            out.status.success(),
            "bpftool cannot dump {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entries: Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
        if let Some(first) = entries.as_array().and_then(|entries| entries.first()) {
            assert!(
                first.get("formatted").is_some(),
                "{name} dumps without field names: {first}"
            );
        }
    }
}

/// `tortiectl flows --trace --pod <server>` on the server's node reports the client's pings
/// that were delivered, not only drops; tracing ends with the command.
fn traced_pings_are_reported_with_their_outcome(
    lab: &Lab,
    client: &tortie_lab::Pod,
    server: &tortie_lab::Pod,
) {
    let key = format!("{}/{}", server.namespace, server.name);
    let tracer = KillOnDrop::new(ok(lab.spawn(
        &server.node,
        &[
            "tortiectl",
            "flows",
            "--trace",
            "--pod",
            &key,
            "-o",
            "json",
            "--timeout",
            "4",
        ],
    )));
    sleep(Duration::from_millis(800));
    for _ in 0..3 {
        assert!(ping(lab, &client.name, &server.ip.to_string()));
    }
    let out = ok(tracer.wait_output(Duration::from_secs(20)));
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let delivered = rows
        .iter()
        .filter(|row| {
            row["verdict"] == "pass"
                && row["reason"] == "forwarded_local"
                && row["src"] == client.ip.to_string().as_str()
                && row["protocol"] == "icmp"
        })
        .count();
    assert!(delivered >= 3, "{delivered} traced deliveries in {rows:#?}");
    // The tracer cleared its deadline on the way out: nothing is traced any more.
    let until = std::process::Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(
            lab.node(&server.node)
                .expect("node")
                .maps_dir()
                .join(bpf_maps::map_names::TRACE_UNTIL),
        )
        .output()
        .expect("bpftool");
    let dump: Value = serde_json::from_slice(&until.stdout).expect("bpftool JSON");
    assert_eq!(dump[0]["formatted"]["value"], 0, "tracing left on: {dump}");
}
