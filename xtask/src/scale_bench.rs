//! Control plane at scale: how long the agent takes to program a node of a cluster with
//! 1,000 workload endpoints and 10,000 policy rules, and how much memory it holds then.
//!
//! A one-node lab fed from etcd with two local server pods. With the agent stopped, the
//! datastore gets 998 WorkloadEndpoints on other nodes (labels `app: app-<k>`, 100 apps) and
//! 1,000 Kubernetes NetworkPolicies of ten ingress rules each selecting the local servers
//! (peers: the apps' pods, namespaces, /24 ipBlocks; one port per rule). Then the agent is
//! started fresh (new process, maps as it left them): the time is from its start to its
//! ready file, which it writes once the first complete listing is in the maps — listing,
//! translating, compiling the rules and writing every entry. Its resident memory (`VmRSS`,
//! and the peak `VmHWM`) is read right after, and again after a few resyncs.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use tortie_lab::{Artifacts, DatastoreMode, Encap, LabGuard, LabSpec, PodRequest, Signal};

// Rules per policy and peer labels as in the policy section.
use crate::policy_bench::{APPS, RULES_PER_POLICY};

const NAMESPACE: &str = "scale";

/// What the run measured.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleResults {
    /// WorkloadEndpoints in the datastore.
    pub endpoints: usize,
    /// Policy rules in the datastore.
    pub rules: usize,
    /// Agent start → ready file, seconds.
    pub program_seconds: f64,
    /// Policy entries the agent wrote for the local endpoints.
    pub policy_entries: usize,
    /// Resident memory right after ready, MiB.
    pub rss_mib: f64,
    /// Resident memory after some resyncs, MiB.
    pub rss_settled_mib: f64,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: f64,
}

/// Runs the measurement with `endpoints` endpoints and `rules` rules on lab `bench-scale`.
pub fn run(artifacts: &Artifacts, endpoints: usize, rules: usize) -> Result<ScaleResults> {
    let spec = LabSpec::new("bench-scale", 1, 0)
        .with_encap(Encap::None)
        .with_datastore(DatastoreMode::Etcd);
    let mut lab = LabGuard::up(&spec, artifacts).context("bringing up the scale lab")?;
    lab.apply_namespace(NAMESPACE, &Default::default())?;
    for name in ["server-0", "server-1"] {
        lab.add_pod_with(&PodRequest {
            node: "node-0".into(),
            namespace: NAMESPACE.into(),
            name: name.into(),
            labels: [("app".to_string(), "server".to_string())].into(),
            ports: Vec::new(),
        })?;
    }
    lab.kill_agent("node-0", Signal::SIGTERM)?;

    let started = Instant::now();
    lab.apply_yaml(
        "scale-endpoints.yaml",
        &endpoints_yaml(endpoints.saturating_sub(2)),
    )?;
    lab.apply_yaml("scale-policies.yaml", &policies_yaml(rules))?;
    eprintln!(
        "    {endpoints} endpoints and {rules} rules written to etcd in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    lab.start_agent("node-0")?;
    let program_seconds = started.elapsed().as_secs_f64();
    let pid = lab
        .node("node-0")
        .and_then(|node| node.agent_pid)
        .context("the agent's pid is not recorded")?;
    let (rss_mib, _) = memory(pid)?;
    std::thread::sleep(Duration::from_secs(3));
    let (rss_settled_mib, peak_rss_mib) = memory(pid)?;
    let policy_entries = crate::dataplane_bench::policy_entries(&lab, "node-0");
    drop(lab);
    Ok(ScaleResults {
        endpoints,
        rules,
        program_seconds,
        policy_entries,
        rss_mib,
        rss_settled_mib,
        peak_rss_mib,
    })
}

/// (VmRSS, VmHWM) of `pid` in MiB.
fn memory(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading the agent's /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

fn endpoints_yaml(count: usize) -> String {
    let mut yaml = String::new();
    for i in 0..count {
        let node = format!("node-{}", 10 + i / 100);
        let pod = format!("p{i}");
        let name = format!("{}-k8s-{pod}-eth0", node.replace('-', "--"));
        let ip = format!("10.66.{}.{}", i / 200, 1 + i % 200);
        let _ = write!(
            yaml,
            "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  \
             name: {name}\n  namespace: {NAMESPACE}\n  labels: {{app: app-{app}}}\nspec:\n  \
             orchestrator: k8s\n  node: {node}\n  pod: {pod}\n  endpoint: eth0\n  \
             ipNetworks: [{ip}/32]\n  interfaceName: cali{i:011}\n  profiles: [kns.{NAMESPACE}]\n",
            app = i % APPS
        );
    }
    yaml
}

fn policies_yaml(rules: usize) -> String {
    let mut yaml = String::new();
    for policy in 0..rules.div_ceil(RULES_PER_POLICY) {
        yaml.push_str(&ingress_policy_header(
            &format!("scale-{policy}"),
            NAMESPACE,
            "server",
        ));
        for i in 0..RULES_PER_POLICY {
            let rule = policy * RULES_PER_POLICY + i;
            let from = match rule % 3 {
                0 => format!("podSelector: {{matchLabels: {{app: app-{}}}}}", rule % APPS),
                1 => format!(
                    "namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {NAMESPACE}}}}}, \
                     podSelector: {{matchLabels: {{app: app-{}}}}}",
                    (rule / 3) % APPS
                ),
                _ => format!(
                    "ipBlock: {{cidr: 172.{}.{}.0/24}}",
                    16 + (rule / 256) % 16,
                    rule % 256
                ),
            };
            let _ = write!(
                yaml,
                "  - from: [{{{from}}}]\n    ports: [{{protocol: TCP, port: {}}}]\n",
                1024 + rule % 60_000
            );
        }
    }
    yaml
}

/// The start of a Kubernetes NetworkPolicy document selecting pods labelled `app: <app>`
/// for ingress, up to its `ingress:` list (the benchmarks append their rules).
pub fn ingress_policy_header(name: &str, namespace: &str, app: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  \
         namespace: {namespace}\nspec:\n  podSelector:\n    matchLabels: {{app: {app}}}\n  \
         policyTypes: [Ingress]\n  ingress:\n"
    )
}

/// The scale section of REPORT.md, with the memory goal.
pub fn render(results: &ScaleResults) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Control plane (agent at scale)\n");
    let _ = writeln!(
        out,
        "{} WorkloadEndpoints ({} of them on other nodes, 100 app labels) and {} NetworkPolicy \
         rules (ten per policy, peers by pod selector, namespace + pod selector or /24 ipBlock, \
         a port each) selecting two local pods, written to etcd with the agent stopped; then a \
         fresh agent started. Time from its start to its ready file (listing, translation, \
         compilation, every map entry written): **{:.2} s**, {} policy entries. Resident \
         memory right after: {:.1} MiB; after a few resyncs {:.1} MiB; peak {:.1} MiB.\n",
        results.endpoints,
        results.endpoints.saturating_sub(2),
        results.rules,
        results.program_seconds,
        results.policy_entries,
        results.rss_mib,
        results.rss_settled_mib,
        results.peak_rss_mib
    );
    let rss = results.rss_settled_mib;
    let verdict = if rss <= 64.0 { "met" } else { "not met" };
    let _ = writeln!(
        out,
        "- agent RSS at {} endpoints / {} rules: {rss:.1} MiB once programmed ({verdict}; goal \
         ≤ 64 MiB, {:.2}×); the first compilation peaks at {:.1} MiB{}",
        results.endpoints,
        results.rules,
        rss / 64.0,
        results.peak_rss_mib,
        if results.peak_rss_mib > 64.0 {
            " (above the goal while it runs)"
        } else {
            ""
        }
    );
    out
}
