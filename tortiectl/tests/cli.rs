//! `tortiectl` against a real etcd, run as a user runs it.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
    sync::Arc,
};

use tortie_datastore::{testing::EtcdServer, EtcdDatastore, EtcdOptions};
use tortie_ipam::{AssignRequest, Ipam, IpamConfig, PoolSpec};

const POOLS: &str = r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.65.0.0/16
  ipipMode: CrossSubnet
  natOutgoing: true
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: second
spec:
  cidr: 10.80.0.0/24
  blockSize: 28
"#;

struct Ctl {
    endpoints: String,
}

impl Ctl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tortiectl"))
            .args(args)
            .env("TORTIE_ETCD_ENDPOINTS", &self.endpoints)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tortiectl");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("tortiectl output")
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "tortiectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            !out.status.success(),
            "tortiectl {args:?} should have failed"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn start() -> Option<(EtcdServer, Ctl)> {
    let server = EtcdServer::start_local_or_skip("tortiectl")?;
    let endpoints = server.endpoints().join(",");
    Some((server, Ctl { endpoints }))
}

#[test]
fn apply_get_and_delete_pools_with_calicos_defaults() {
    let Some((_server, ctl)) = start() else {
        return;
    };
    assert!(ctl
        .ok(&["apply", "-f", "-"], Some(POOLS))
        .contains("Successfully applied 2"));
    let yaml = ctl.ok(
        &["get", "ippool", "default-ipv4-ippool", "-o", "yaml"],
        None,
    );
    for expected in [
        "blockSize: 26",
        "nodeSelector: all()",
        "ipipMode: CrossSubnet",
        "vxlanMode: Never",
        "natOutgoing: true",
        "resourceVersion:",
    ] {
        assert!(yaml.contains(expected), "missing {expected:?} in\n{yaml}");
    }
    let table = ctl.ok(&["get", "ippools"], None);
    assert!(
        table.contains("default-ipv4-ippool") && table.contains("10.80.0.0/24"),
        "{table}"
    );
    // Applying again is an update, not an error.
    ctl.ok(&["apply", "-f", "-"], Some(POOLS));
    let error = ctl.fails(&["create", "-f", "-"], Some(POOLS));
    assert!(error.contains("already exists"), "{error}");
    ctl.ok(&["delete", "ippool", "second"], None);
    let error = ctl.fails(&["get", "ippool", "second"], None);
    assert!(error.contains("does not exist"), "{error}");
}

#[test]
fn an_invalid_document_rejects_the_whole_file() {
    let Some((_server, ctl)) = start() else {
        return;
    };
    let mixed = format!(
        "{POOLS}---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: bad\nspec:\n  cidr: 10.90.0.1/16\n  blockSize: 33\n"
    );
    let error = ctl.fails(&["apply", "-f", "-"], Some(&mixed));
    assert!(error.contains("spec.blockSize"), "{error}");
    assert!(
        error.contains("spec.cidr"),
        "every problem reported: {error}"
    );
    let table = ctl.ok(&["get", "ippools"], None);
    assert!(
        !table.contains("default-ipv4-ippool"),
        "nothing may be written: {table}"
    );

    ctl.ok(&["apply", "-f", "-"], Some(POOLS));
    let overlapping = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: overlap\nspec:\n  cidr: 10.65.128.0/17\n";
    let error = ctl.fails(&["apply", "-f", "-"], Some(overlapping));
    assert!(
        error.contains("default-ipv4-ippool"),
        "names the pool it overlaps: {error}"
    );

    let unknown = "apiVersion: projectcalico.org/v3\nkind: IPPoool\nmetadata:\n  name: x\n";
    let error = ctl.fails(&["validate", "-f", "-"], Some(unknown));
    assert!(error.contains("IPPoool"), "{error}");
}

#[test]
fn ipam_check_finds_a_leak_and_release_clears_it() {
    let Some((server, ctl)) = start() else { return };
    ctl.ok(&["apply", "-f", "-"], Some(POOLS));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let leaked = runtime.block_on(async {
        let store = Arc::new(
            EtcdDatastore::connect(&server.endpoints(), EtcdOptions::default())
                .await
                .expect("connect"),
        );
        let pools = [PoolSpec {
            name: "default-ipv4-ippool".into(),
            cidr: "10.65.0.0/16".parse().expect("cidr"),
            block_size: 26,
        }];
        Ipam::new(store.as_ref())
            .auto_assign(&AssignRequest {
                handle: "k8s-pod-network.deadbeef",
                node: "node-0",
                attributes: Default::default(),
                pools: &pools,
                config: IpamConfig::default(),
            })
            .await
            .expect("allocate")
    });
    let shown = ctl.ok(&["ipam", "show"], None);
    assert!(
        shown.contains("10.65.0.0/26") && shown.contains("node-0"),
        "{shown}"
    );
    let out = ctl.run(&["ipam", "check"], None);
    assert!(!out.status.success(), "a leak must fail the check");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("leaked") && report.contains(&leaked.to_string()),
        "{report}"
    );
    ctl.ok(&["ipam", "release", "--ip", &leaked.to_string()], None);
    assert!(ctl
        .ok(&["ipam", "check"], None)
        .contains("no problems found"));
}

const POD_AND_ENDPOINT: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: x
  labels:
    pod: a
spec:
  nodeName: node-0
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node--0-k8s-a-eth0
  namespace: x
  labels:
    pod: a
    projectcalico.org/namespace: x
    projectcalico.org/orchestrator: k8s
spec:
  orchestrator: k8s
  node: node-0
  pod: a
  endpoint: eth0
  interfaceName: cali0123456789a
  ipNetworks: [10.65.0.5/32]
---
apiVersion: v1
kind: Namespace
metadata:
  name: x
  labels:
    ns: x
"#;

#[test]
fn label_changes_a_pod_and_its_endpoint_together() {
    let Some((_server, ctl)) = start() else {
        return;
    };
    ctl.ok(&["apply", "-f", "-"], Some(POD_AND_ENDPOINT));
    let out = ctl.ok(&["label", "pod", "a", "-n", "x", "tier=web"], None);
    assert!(out.contains("Pod x/a"), "{out}");
    assert!(out.contains("WorkloadEndpoint x/"), "{out}");
    let wep = ctl.ok(&["get", "wep", "-n", "x", "-o", "yaml"], None);
    assert!(wep.contains("tier: web"), "{wep}");
    assert!(
        wep.contains("projectcalico.org/namespace: x"),
        "Calico's own labels stay: {wep}"
    );

    let error = ctl.fails(&["label", "pod", "a", "-n", "x", "pod=b"], None);
    assert!(error.contains("--overwrite"), "{error}");
    ctl.ok(
        &["label", "pod", "a", "-n", "x", "pod=b", "--overwrite"],
        None,
    );
    ctl.ok(&["label", "pod", "a", "-n", "x", "tier-"], None);
    let wep = ctl.ok(&["get", "wep", "-n", "x", "-o", "yaml"], None);
    assert!(wep.contains("pod: b") && !wep.contains("tier"), "{wep}");

    let error = ctl.fails(&["label", "namespace", "x", "bad value=1"], None);
    assert!(
        error.contains("metadata.labels"),
        "names the field: {error}"
    );
    ctl.ok(&["label", "namespace", "x", "team=blue"], None);
    let ns = ctl.ok(&["get", "namespace", "x", "-o", "yaml"], None);
    assert!(ns.contains("team: blue") && ns.contains("ns: x"), "{ns}");

    let error = ctl.fails(&["label", "pod", "missing", "-n", "x", "a=b"], None);
    assert!(error.contains("does not exist"), "{error}");
}
