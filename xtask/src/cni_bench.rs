//! Control-plane benchmark: how long `tortie-cni` ADD takes, and how long after ADD returns
//! the new pod's first packet is forwarded.
//!
//! A one-node lab fed from etcd (the same as `cargo xtask lab up`) gets a target pod, then N
//! pods are added one after another exactly as a runtime adds them (a new network namespace,
//! then `nsenter` into the node, `CNI_*` environment, configuration on stdin). ADD latency is
//! the wall time of that call (process start included); the namespace, which the runtime
//! creates before calling the plugin, is not part of it.
//! "Ready" is the time from ADD returning until the new pod gets its first echo reply from the
//! target pod: `ping -c 1 -w 5 -i 0.002` keeps sending every 2 ms and exits at the first
//! reply, so the figure includes starting ping in the pod's namespace (a few ms) and is an
//! upper bound of the agent's own reaction. Every pod is deleted (CNI DEL) at the end. The
//! binaries are release builds, as shipped.

use std::fmt::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tortie_lab::netns::nsenter_command;
use tortie_lab::{control_plane, Artifacts, DatastoreMode, LabGuard, LabSpec, Pod};

/// Latency distribution of one operation, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// What was measured.
    pub operation: String,
    /// How many samples.
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Slowest sample.
    pub max_ms: f64,
}

impl Latency {
    /// The distribution of `samples` of `operation`.
    pub fn of(operation: &str, mut samples: Vec<Duration>) -> Latency {
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let rank = |q: f64| {
            let index = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            ms(samples[index - 1])
        };
        Latency {
            operation: operation.into(),
            samples: samples.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: samples.last().copied().map_or(0.0, ms),
        }
    }
}

/// Where etcd keeps its database in a run, and how the report names it.
const ETCD_STORAGES: [(bool, &str); 2] = [(false, "etcd on disk"), (true, "etcd in memory")];

/// Runs the benchmark with `pods` sequential ADDs on a fresh lab `bench-cni`, once with
/// etcd's database on this machine's disk and once in memory: every ADD writes to etcd
/// twice (IPAM, then the WorkloadEndpoint), and etcd syncs each write to its disk.
pub fn run(artifacts: &Artifacts, pods: usize) -> Result<Vec<Latency>> {
    let mut figures = Vec::new();
    for (in_memory, storage) in ETCD_STORAGES {
        eprintln!("    {pods} ADDs with {storage}");
        figures.extend(run_with(artifacts, pods, in_memory, storage)?);
    }
    Ok(figures)
}

fn run_with(
    artifacts: &Artifacts,
    pods: usize,
    etcd_in_memory: bool,
    storage: &str,
) -> Result<Vec<Latency>> {
    let spec = LabSpec::new("bench-cni", 1, 0)
        .with_datastore(DatastoreMode::Etcd)
        .with_etcd_in_memory(etcd_in_memory);
    let mut lab = LabGuard::up(&spec, artifacts).context("bringing up the benchmark lab")?;
    let target = lab.add_pod("node-0", "bench", "target", &[("app", "target")])?;
    let node = lab
        .node("node-0")
        .cloned()
        .context("the benchmark lab has no node-0")?;

    let mut add = Vec::with_capacity(pods);
    let mut ready = Vec::with_capacity(pods);
    let mut created = Vec::with_capacity(pods);
    for i in 0..pods {
        let mut pod = Pod::planned_for_cni(
            lab.name(),
            &node.name,
            "bench",
            &format!("p{i}"),
            &[("app", "bench")],
        );
        pod.mtu = spec.pod_mtu();
        let (attachment, took) = control_plane::add_pod_timed(lab.name(), artifacts, &node, &pod)
            .with_context(|| format!("ADD {i} of {pods}"))?;
        add.push(took);
        pod.ip = attachment.ip;
        created.push(pod.clone());

        let returned = Instant::now();
        let target_ip = target.ip.to_string();
        let status = nsenter_command(
            &pod.netns,
            "ping",
            &["-q", "-n", "-c", "1", "-w", "5", "-i", "0.002", &target_ip],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running ping in the new pod")?;
        if !status.success() {
            bail!(
                "pod {} ({}) got no reply from {} within 5 s of its ADD",
                pod.name,
                pod.ip,
                target.ip
            );
        }
        ready.push(returned.elapsed());
    }

    let mut del = Vec::with_capacity(pods);
    for pod in &created {
        let started = Instant::now();
        control_plane::delete_pod(lab.name(), artifacts, &node, pod)?;
        del.push(started.elapsed());
    }
    let check = lab.tortiectl(&["ipam", "check"])?;
    if !check.status.success() {
        bail!(
            "IPAM is not clean after the benchmark: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
    drop(lab);
    Ok(vec![
        Latency::of(&format!("CNI ADD, {storage}"), add),
        Latency::of(&format!("ADD returned → first reply, {storage}"), ready),
        Latency::of(&format!("CNI DEL, {storage}"), del),
    ])
}

/// The control-plane section of REPORT.md.
pub fn render(figures: &[Latency], pods: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Control plane (CNI)\n");
    let _ = writeln!(
        out,
        "{pods} pods added one after another to a one-node lab fed from etcd, each by calling \
         `tortie-cni` as a runtime does; then each deleted. ADD is the plugin call (process \
         start included, the pod's namespace created before it, as a runtime does). \
         \"ADD returned → first reply\" is the time until the new pod's first echo reply from \
         a pod on the same node (ping every 2 ms, process start included). Every ADD writes to \
         etcd twice (the IPAM block, then the WorkloadEndpoint) and etcd syncs each write to \
         its disk, so the whole run is made twice: with etcd's database on this machine's disk, \
         and in memory (tmpfs), which leaves out the disk's sync latency. Goals: ADD p99 ≤ 100 \
         ms, ready ≤ 50 ms.\n"
    );
    let _ = writeln!(
        out,
        "| operation | samples | p50 ms | p99 ms | max ms | goal |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for f in figures {
        let goal = match goal_of(&f.operation) {
            Some(limit) => verdict(f.p99_ms, limit, "p99"),
            None => "—".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {goal} |",
            f.operation, f.samples, f.p50_ms, f.p99_ms, f.max_ms
        );
    }
    out.push('\n');
    for f in figures {
        let Some(limit) = goal_of(&f.operation) else {
            continue;
        };
        let verdict = if f.p99_ms <= limit { "met" } else { "not met" };
        let _ = writeln!(
            out,
            "- {} p99: {:.1} ms ({verdict}; goal ≤ {limit:.0} ms, {:.2}×)",
            f.operation,
            f.p99_ms,
            f.p99_ms / limit
        );
    }
    out
}

/// The p99 goal (ms) of an operation, if it has one.
fn goal_of(operation: &str) -> Option<f64> {
    if operation.starts_with("CNI ADD") {
        Some(100.0)
    } else if operation.starts_with("ADD returned → first reply") {
        Some(50.0)
    } else {
        None
    }
}

/// CSV rows (operation, samples, p50, p99, max).
pub fn csv(figures: &[Latency]) -> String {
    let mut csv = String::from("operation,samples,p50_ms,p99_ms,max_ms\n");
    for f in figures {
        let _ = writeln!(
            csv,
            "\"{}\",{},{:.2},{:.2},{:.2}",
            f.operation, f.samples, f.p50_ms, f.p99_ms, f.max_ms
        );
    }
    csv
}

fn verdict(value: f64, limit: f64, what: &str) -> String {
    if value <= limit {
        format!("met ({what} {value:.1} ≤ {limit:.0})")
    } else {
        format!(
            "not met ({what} {value:.1} > {limit:.0}, {:.2}×)",
            value / limit
        )
    }
}
