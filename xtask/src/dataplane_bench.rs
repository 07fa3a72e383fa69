//! The dataplane section of `cargo xtask bench`: real traffic between pods, for three
//! dataplanes built on the same namespaces, veths and addresses.
//!
//! One two-node lab (etcd, native routing, no BGP) gets a client pod `c` and a server pod
//! `s1` on node-0 and a server `s2` on node-1, all through `tortie-cni`. Then, in turn:
//!
//! - **tortie**: the agents program the eBPF dataplane; Kubernetes NetworkPolicies select the
//!   servers with N rules (10 / 1,000 / 10,000: ten rules per policy, each with its own peer
//!   and port, peers cycling through 100 pod labels and /24 ipBlocks, as in the policy
//!   section), plus one policy letting the client in on the measured ports.
//! - **floor**: the agents are stopped and cleaned up; the kernel routes: `ip_forward=1`, a
//!   /32 route per local pod over its `cali*` interface with proxy ARP (for the pods' gateway
//!   169.254.1.1), a /32 route per remote pod via the other node. No programs, no policy.
//! - **baseline**: the floor plus a Calico-style iptables policy: `FORWARD` accepts
//!   established and related flows (kernel conntrack), then jumps to a `cali-tw-<iface>`
//!   chain per server endpoint holding the same N rules (peer ipsets `cali-app-<k>` or
//!   `-s` CIDRs, one port each) in order, the client's rule last, then DROP. Loaded with
//!   `ipset restore` and `iptables-restore`.
//!
//! Measured from the client, each a median of several runs with the range: TCP single-stream
//! throughput (`iperf3 -t`), and request/response rate and latency over one TCP connection
//! (`tortie-probe rr`, one byte each way, like netperf's TCP_RR), to the same-node and the
//! cross-node server. Clients run on CPU 0 and servers on CPU 1 (`taskset`) in every
//! variant.
//!
//! The cross-node server is measured once more over VXLAN in every variant: tortie with the
//! pool's `vxlanMode: Always` (its own encapsulation on the uplink), the floor and the
//! baseline through a kernel `vxlan.calico` device (VNI 4096, port 4789, a /32 tunnel address
//! per node, static neighbour and FDB entries, pod routes via the peer's tunnel address), as
//! Calico's iptables dataplane sets it up. For those runs the client's and the server's
//! `eth0` MTU is 1450, room for the 50-byte VXLAN header on the 1500-byte fabric.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

// Rules per policy, peer labels and ports as in the policy section.
use crate::policy_bench::{APPS, FIRST_RULE_PORT, RULES_PER_POLICY};
use crate::profile::{self, Profile};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use tortie_lab::harness::KillOnDrop;
use tortie_lab::netns::nsenter_command;
use tortie_lab::{
    agent, Artifacts, DatastoreMode, Encap, Lab, LabGuard, LabSpec, Pod, PodRequest, Signal,
};

const NAMESPACE: &str = "bench";
/// Path names, also the report's.
const SAME_NODE: &str = "same-node";
const CROSS_NODE: &str = "cross-node";
const CROSS_NODE_VXLAN: &str = "cross-node VXLAN";
/// The kernel's VXLAN device in the floor and baseline, named as Calico names it.
const KERNEL_VXLAN_DEV: &str = "vxlan.calico";
/// Pod MTU while measuring over VXLAN (1500 less the 50-byte encapsulation).
const VXLAN_POD_MTU: u32 = 1450;
const IPERF_PORT: u16 = 5201;
const RR_PORT: u16 = 7000;

/// One measured cell: a metric of one variant, rule count and path.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// `floor`, `baseline` or `tortie`.
    pub variant: &'static str,
    /// Policy rules in force (0 for the floor).
    pub rules: usize,
    /// `same-node` or `cross-node`.
    pub path: &'static str,
    /// Median throughput, Gbit/s.
    pub gbps: f64,
    /// Lowest and highest run.
    pub gbps_range: (f64, f64),
    /// Median request/response rate, transactions/s.
    pub rr_rate: f64,
    /// Lowest and highest run.
    pub rr_range: (f64, f64),
    /// Median of the runs' median latency, µs.
    pub rr_p50_us: f64,
    /// Median of the runs' 99th-percentile latency, µs.
    pub rr_p99_us: f64,
    /// For tortie: each program's mean run time over the measurement, from the kernel's
    /// BPF statistics (ns per packet, packets), program name first.
    pub program_ns: Vec<(String, f64, u64)>,
}

/// Everything the section measured, and how.
#[derive(Clone, Debug, Serialize)]
pub struct DataplaneResults {
    /// Runs per cell.
    pub runs: usize,
    /// Seconds per run.
    pub seconds: f64,
    /// Rule counts measured for the policy variants.
    pub rule_counts: Vec<usize>,
    /// Every cell.
    pub measurements: Vec<Measurement>,
    /// CPU profiles of extra runs (tortie and the floor), when `perf` could take them.
    pub profiles: Vec<Profile>,
    /// Why there are no profiles.
    pub profile_skipped: Option<String>,
}

/// Runs the section on a fresh lab `bench-dp`.
pub fn run(artifacts: &Artifacts, quick: bool) -> Result<DataplaneResults> {
    let (runs, seconds) = if quick { (1, 1.0) } else { (3, 3.0) };
    let rule_counts = if quick {
        vec![10, 1_000]
    } else {
        vec![10, 1_000, 10_000]
    };
    let spec = LabSpec::new("bench-dp", 2, 0)
        .with_encap(Encap::None)
        .with_datastore(DatastoreMode::Etcd);
    let mut lab = LabGuard::up(&spec, artifacts).context("bringing up the dataplane lab")?;
    lab.apply_namespace(NAMESPACE, &Default::default())?;
    let add = |lab: &mut Lab, name: &str, node: &str, app: &str| {
        lab.add_pod_with(&PodRequest {
            node: node.into(),
            namespace: NAMESPACE.into(),
            name: name.into(),
            labels: [("app".to_string(), app.to_string())].into(),
            ports: Vec::new(),
        })
    };
    let client = add(&mut lab, "c", "node-0", "client")?;
    let same = add(&mut lab, "s1", "node-0", "server")?;
    let cross = add(&mut lab, "s2", "node-1", "server")?;
    let _servers = start_servers(&lab, &[&same, &cross])?;
    let native = [(SAME_NODE, &same), (CROSS_NODE, &cross)];
    let vxlan = [(CROSS_NODE_VXLAN, &cross)];
    let tunnel_ends = [&client, &cross];
    let mut measurements = Vec::new();
    let mut measure = |lab: &Lab,
                       variant: &'static str,
                       rules: usize,
                       targets: &[(&'static str, &Pod)]|
     -> Result<()> {
        for &(path, server) in targets {
            check_policy(lab, &client, server, variant != "floor")
                .with_context(|| format!("{variant} with {rules} rules, {path}"))?;
            eprintln!("==> dataplane: {variant}, {rules} rules, {path}");
            let before = program_stats();
            let mut cell = measure_path(lab, &client, server, runs, seconds, variant, rules, path)?;
            if variant == "tortie" {
                cell.program_ns = per_packet_since(&before, &program_stats());
            }
            measurements.push(cell);
        }
        Ok(())
    };

    // The kernel's per-program run time and count, for what each packet cost in real traffic.
    let profile_skipped = profile::unavailable();
    let mut profiles = Vec::new();
    let profile_seconds = seconds.max(2.0);
    let stats = BpfStats::enable()?;
    for &rules in &rule_counts {
        apply_tortie_policies(&lab, rules, &client)?;
        measure(&lab, "tortie", rules, &native)?;
        if rules == rule_counts[0] && profile_skipped.is_none() {
            let secs = format!("{profile_seconds}");
            let (rr_target, cross_ip) = (format!("{}:{RR_PORT}", same.ip), cross.ip.to_string());
            profiles.push(profile_client(
                &lab,
                &client,
                &format!("same-node request/response (tortie, {rules} rules)"),
                profile_seconds,
                &rr_client(&rr_target, &secs),
            )?);
            profiles.push(profile_client(
                &lab,
                &client,
                &format!("cross-node TCP throughput (tortie, {rules} rules)"),
                profile_seconds,
                &iperf_client(&cross_ip, &secs),
            )?);
        }
        over_vxlan(&lab, &tunnel_ends, set_pool_vxlan, || {
            measure(&lab, "tortie", rules, &vxlan)
        })?;
    }
    drop(stats);
    eprintln!("==> dataplane: stopping the agents; the kernel routes from here on");
    to_kernel_routing(&mut lab, artifacts)?;
    add_kernel_vxlan(&lab)?;
    measure(&lab, "floor", 0, &native)?;
    if profile_skipped.is_none() {
        let (secs, rr_target) = (
            format!("{profile_seconds}"),
            format!("{}:{RR_PORT}", same.ip),
        );
        profiles.push(profile_client(
            &lab,
            &client,
            "same-node request/response (floor)",
            profile_seconds,
            &rr_client(&rr_target, &secs),
        )?);
    }
    over_vxlan(&lab, &tunnel_ends, kernel_routes_over_vxlan, || {
        measure(&lab, "floor", 0, &vxlan)
    })?;
    for &rules in &rule_counts {
        load_iptables_policy(&lab, rules, &client, &[&same, &cross])?;
        measure(&lab, "baseline", rules, &native)?;
        over_vxlan(&lab, &tunnel_ends, kernel_routes_over_vxlan, || {
            measure(&lab, "baseline", rules, &vxlan)
        })?;
    }
    drop(lab);
    Ok(DataplaneResults {
        runs,
        seconds,
        rule_counts,
        measurements,
        profiles,
        profile_skipped,
    })
}

/// Where perf stores samples between recording and reading them.
fn perf_scratch() -> std::path::PathBuf {
    std::env::temp_dir().join("tortie-bench-perf.data")
}

/// A profile of one extra run of `command` in the client pod; `workload` names it.
fn profile_client(
    lab: &Lab,
    client: &Pod,
    workload: &str,
    seconds: f64,
    command: &[&str],
) -> Result<Profile> {
    eprintln!("==> dataplane: profiling {workload}");
    profile::record(workload, seconds, &perf_scratch(), || {
        lab.exec(&client.key(), command).map(drop)
    })
}

/// A single-stream iperf3 client to `ip` for `secs` seconds on CPU 0, its summary as JSON.
fn iperf_client<'a>(ip: &'a str, secs: &'a str) -> [&'a str; 11] {
    [
        "taskset", "-c", "0", "iperf3", "-c", ip, "-p", "5201", "-J", "-t", secs,
    ]
}

/// A request/response client to `target` for `secs` seconds on CPU 0.
fn rr_client<'a>(target: &'a str, secs: &'a str) -> [&'a str; 8] {
    [
        "taskset",
        "-c",
        "0",
        "tortie-probe",
        "rr",
        target,
        "--seconds",
        secs,
    ]
}

/// Proves the variant is what it claims: a port no rule allows (9, where nothing listens)
/// times out under a policy (dropped) and is refused without one (the server's RST).
fn check_policy(lab: &Lab, client: &Pod, server: &Pod, enforced: bool) -> Result<()> {
    let target = format!("TCP:{}:9", server.ip);
    let out = lab.exec(
        &client.key(),
        &["tortie-probe", "connect", "--timeout-ms", "700", &target],
    )?;
    let line = String::from_utf8_lossy(&out.stdout);
    let expected = if enforced { "timeout" } else { "refused" };
    if line.split_whitespace().nth(1) != Some(expected) {
        bail!(
            "a port no rule allows should give {expected}, got: {}",
            line.trim()
        );
    }
    Ok(())
}

/// iperf3 and rr servers in the server pods, on CPU 1.
fn start_servers(lab: &Lab, servers: &[&Pod]) -> Result<Vec<KillOnDrop>> {
    let mut running = Vec::new();
    for server in servers {
        let key = server.key();
        running.push(KillOnDrop::new(lab.spawn(
            &key,
            &["taskset", "-c", "1", "iperf3", "-s", "-p", "5201"],
        )?));
        running.push(KillOnDrop::new(lab.spawn(
            &key,
            &["taskset", "-c", "1", "tortie-probe", "rr-serve", "7000"],
        )?));
    }
    std::thread::sleep(Duration::from_millis(500));
    Ok(running)
}

#[allow(clippy::too_many_arguments)]
fn measure_path(
    lab: &Lab,
    client: &Pod,
    server: &Pod,
    runs: usize,
    seconds: f64,
    variant: &'static str,
    rules: usize,
    path: &'static str,
) -> Result<Measurement> {
    let ip = server.ip.to_string();
    let key = client.key();
    let secs = format!("{seconds}");
    let (mut gbps, mut rates, mut p50s, mut p99s) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let out = lab.exec(&key, &iperf_client(&ip, &secs))?;
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let bps = json["end"]["sum_received"]["bits_per_second"].as_f64();
        let Some(bps) = bps.filter(|_| out.status.success()) else {
            bail!(
                "{variant} ({rules} rules), {path}: iperf3 to {ip} failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                json["error"].as_str().unwrap_or("")
            );
        };
        gbps.push(bps / 1e9);
        let target = format!("{ip}:{RR_PORT}");
        let out = lab.exec(&key, &rr_client(&target, &secs))?;
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let (Some(rate), Some(p50), Some(p99)) = (
            json["rate"].as_f64(),
            json["p50_us"].as_f64(),
            json["p99_us"].as_f64(),
        ) else {
            bail!(
                "{variant} ({rules} rules), {path}: request/response to {target} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        rates.push(rate);
        p50s.push(p50);
        p99s.push(p99);
    }
    Ok(Measurement {
        variant,
        rules,
        path,
        gbps: median(&mut gbps.clone()),
        gbps_range: range(&gbps),
        rr_rate: median(&mut rates.clone()),
        rr_range: range(&rates),
        rr_p50_us: median(&mut p50s),
        rr_p99_us: median(&mut p99s),
        program_ns: Vec::new(),
    })
}

/// `kernel.bpf_stats_enabled` on for as long as it lives, then back as it was. It adds two
/// clock reads per program run, so it is on only while tortie is measured.
struct BpfStats {
    previous: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> Result<Self> {
        let previous =
            std::fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        std::fs::write(BPF_STATS, "1").with_context(|| format!("enabling {BPF_STATS}"))?;
        Ok(Self {
            previous: previous.trim().to_string(),
        })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.previous);
    }
}

/// Total run time (ns) and runs of every loaded `tortie_*` program, summed by name.
fn program_stats() -> std::collections::BTreeMap<String, (u64, u64)> {
    let mut totals = std::collections::BTreeMap::new();
    let Ok(out) = std::process::Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
    else {
        return totals;
    };
    let programs: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    for program in programs.as_array().into_iter().flatten() {
        let Some(name) = program["name"]
            .as_str()
            .filter(|n| n.starts_with("tortie_"))
        else {
            continue;
        };
        let entry = totals.entry(name.to_string()).or_insert((0, 0));
        entry.0 += program["run_time_ns"].as_u64().unwrap_or(0);
        entry.1 += program["run_cnt"].as_u64().unwrap_or(0);
    }
    totals
}

/// Mean ns per run of each program between two [`program_stats`].
fn per_packet_since(
    before: &std::collections::BTreeMap<String, (u64, u64)>,
    after: &std::collections::BTreeMap<String, (u64, u64)>,
) -> Vec<(String, f64, u64)> {
    after
        .iter()
        .filter_map(|(name, &(time, runs))| {
            let (time0, runs0) = before.get(name).copied().unwrap_or((0, 0));
            let runs = runs.checked_sub(runs0).filter(|runs| *runs > 0)?;
            Some((
                name.clone(),
                time.saturating_sub(time0) as f64 / runs as f64,
                runs,
            ))
        })
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}

/// The peer of rule `i`: a pod label or a /24 outside the cluster, as in the policy section.
enum Peer {
    App(usize),
    Block(usize),
}

fn peer_of(rule: usize) -> Peer {
    if rule % 3 == 2 {
        Peer::Block(rule)
    } else {
        Peer::App(rule % APPS)
    }
}

/// The addresses standing for the pods of one app label: five addresses, as an ipset in the
/// baseline and the /29 holding them in tortie's policies (no lab pods carry these labels,
/// and a selector matching no pod would cost tortie nothing).
fn app_cidr(app: usize) -> String {
    format!("10.201.{app}.0/29")
}

fn block_cidr(rule: usize) -> String {
    format!("172.{}.{}.0/24", 16 + (rule / 256) % 16, rule % 256)
}

/// NetworkPolicies with `rules` rules selecting the servers, plus the client's policy;
/// waits until both nodes have programmed them.
fn apply_tortie_policies(lab: &Lab, rules: usize, client: &Pod) -> Result<()> {
    let mut yaml = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: client-in\n  \
         namespace: {NAMESPACE}\nspec:\n  podSelector:\n    matchLabels: {{app: server}}\n  \
         policyTypes: [Ingress]\n  ingress:\n  - from:\n    - podSelector:\n        \
         matchLabels: {{app: client}}\n    ports:\n    - {{protocol: TCP, port: {IPERF_PORT}}}\n    \
         - {{protocol: TCP, port: {RR_PORT}}}\n"
    );
    for policy in 0..rules / RULES_PER_POLICY {
        yaml.push_str(&crate::scale_bench::ingress_policy_header(
            &format!("bench-{policy}"),
            NAMESPACE,
            "server",
        ));
        for i in 0..RULES_PER_POLICY {
            let rule = policy * RULES_PER_POLICY + i;
            let port = FIRST_RULE_PORT + (rule % 60_000) as u16;
            let from = match peer_of(rule) {
                Peer::App(app) => format!("ipBlock: {{cidr: {}}}", app_cidr(app)),
                Peer::Block(rule) => format!("ipBlock: {{cidr: {}}}", block_cidr(rule)),
            };
            let _ = write!(
                yaml,
                "  - from: [{{{from}}}]\n    ports: [{{protocol: TCP, port: {port}}}]\n"
            );
        }
    }
    let started = Instant::now();
    lab.apply_yaml(&format!("bench-policies-{rules}.yaml"), &yaml)?;
    // Programmed when each node's policy entry count has grown to one per rule at least and
    // holds still.
    let deadline = Duration::from_secs(180);
    for node in ["node-0", "node-1"] {
        let mut last = (0, 0usize);
        loop {
            let entries = policy_entries(lab, node);
            last = if entries == last.0 {
                (entries, last.1 + 1)
            } else {
                (entries, 0)
            };
            if entries >= rules && last.1 >= 3 {
                break;
            }
            if started.elapsed() > deadline {
                bail!(
                    "{node} programmed {entries} policy entries for {rules} rules in {} s",
                    deadline.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    eprintln!(
        "    {rules} rules applied and programmed in {:.1} s (client {})",
        started.elapsed().as_secs_f64(),
        client.ip
    );
    Ok(())
}

/// `tortie_map_entries{map="TORTIE_POLICY"}` of `node`'s agent (0 when it does not answer).
pub fn policy_entries(lab: &Lab, node: &str) -> usize {
    lab.agent_metric(node, "tortie_map_entries{map=\"TORTIE_POLICY\"}")
        .map_or(0, |value| value as usize)
}

/// Stops and cleans up every agent, then routes in the kernel as a plain router would.
fn to_kernel_routing(lab: &mut Lab, artifacts: &Artifacts) -> Result<()> {
    let nodes = lab.nodes().to_vec();
    for node in &nodes {
        lab.kill_agent(&node.name, Signal::SIGTERM)?;
        agent::cleanup(node, artifacts)?;
    }
    let pods = lab.pods().to_vec();
    for node in &nodes {
        let mut script = String::from("sysctl -qw net.ipv4.ip_forward=1\n");
        for pod in &pods {
            if pod.node == node.name {
                let _ = writeln!(
                    script,
                    "sysctl -qw net.ipv4.conf.{iface}.proxy_arp=1\nip route replace {ip}/32 dev {iface}",
                    iface = pod.host_iface,
                    ip = pod.ip
                );
            } else if let Some(other) = nodes.iter().find(|n| n.name == pod.node) {
                let _ = writeln!(script, "ip route replace {}/32 via {}", pod.ip, other.ip);
            }
        }
        run_script(lab, &node.name, &script)?;
    }
    Ok(())
}

/// Runs `body` with cross-node traffic in VXLAN: `switch(lab, true)` moves the variant's
/// routing into the tunnel and the pods at `tunnel_ends` get the tunnel's MTU; both are put
/// back afterwards, also when `body` fails.
fn over_vxlan(
    lab: &Lab,
    tunnel_ends: &[&Pod],
    switch: fn(&Lab, bool) -> Result<()>,
    body: impl FnOnce() -> Result<()>,
) -> Result<()> {
    switch(lab, true)?;
    set_pod_mtu(lab, tunnel_ends, VXLAN_POD_MTU)?;
    let measured = body();
    set_pod_mtu(lab, tunnel_ends, tortie_lab::spec::MTU)?;
    switch(lab, false)?;
    measured
}

fn set_pod_mtu(lab: &Lab, pods: &[&Pod], mtu: u32) -> Result<()> {
    use tortie_lab::spec::POD_IFACE;
    for pod in pods {
        let mtu = mtu.to_string();
        let out = lab.exec(&pod.key(), &["ip", "link", "set", POD_IFACE, "mtu", &mtu])?;
        if !out.status.success() {
            bail!(
                "setting {}'s MTU to {mtu}: {}",
                pod.key(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// tortie over VXLAN or natively: the lab pool's `vxlanMode`, then waits until both nodes'
/// route maps carry (or no longer carry) VXLAN routes.
fn set_pool_vxlan(lab: &Lab, on: bool) -> Result<()> {
    use tortie_lab::spec::{POD_POOL_CIDR, POD_POOL_NAME};
    let mode = if on { "Always" } else { "Never" };
    lab.apply_yaml(
        &format!("bench-pool-vxlan-{mode}.yaml"),
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {POD_POOL_NAME}\n\
             spec:\n  cidr: {POD_POOL_CIDR}\n  blockSize: 26\n  ipipMode: Never\n  \
             vxlanMode: {mode}\n  natOutgoing: true\n  nodeSelector: all()\n"
        ),
    )?;
    let started = Instant::now();
    for node in ["node-0", "node-1"] {
        while has_vxlan_routes(lab, node)? != on {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("{node} did not program vxlanMode {mode} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// Whether any route in `node`'s map is flagged `vxlan`.
fn has_vxlan_routes(lab: &Lab, node: &str) -> Result<bool> {
    let out = lab.exec(node, &["tortiectl", "bpf", "routes", "-o", "json"])?;
    let routes: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("reading {node}'s routes as JSON"))?;
    Ok(routes.as_array().into_iter().flatten().any(|route| {
        route["flags"]
            .as_array()
            .is_some_and(|flags| flags.iter().any(|flag| flag == "vxlan"))
    }))
}

/// The tunnel address of node `index` on `vxlan.calico` (outside the pool, as Calico's
/// would be inside it: only the nodes use it).
fn kernel_vtep_ip(index: usize) -> String {
    format!("10.66.255.{}", index + 1)
}

fn kernel_vtep_mac(index: usize) -> String {
    format!("66:c5:00:00:00:{:02x}", index + 1)
}

/// A `vxlan.calico` device on every node with static neighbour and FDB entries for every
/// other node, as Calico's VXLAN mode has; routes stay native until
/// [`kernel_routes_over_vxlan`].
fn add_kernel_vxlan(lab: &Lab) -> Result<()> {
    use tortie_lab::spec::{NODE_UPLINK, VXLAN_PORT, VXLAN_VNI};
    let nodes = lab.nodes().to_vec();
    for node in &nodes {
        let mut script = format!(
            "ip link add {KERNEL_VXLAN_DEV} type vxlan id {VXLAN_VNI} dstport {VXLAN_PORT} \
             local {ip} dev {NODE_UPLINK} nolearning\n\
             ip link set {KERNEL_VXLAN_DEV} address {mac} mtu {VXLAN_POD_MTU} up\n\
             ip addr add {vtep}/32 dev {KERNEL_VXLAN_DEV}\n",
            ip = node.ip,
            mac = kernel_vtep_mac(node.index),
            vtep = kernel_vtep_ip(node.index),
        );
        for other in nodes.iter().filter(|other| other.name != node.name) {
            let _ = writeln!(
                script,
                "ip neigh replace {vtep} lladdr {mac} dev {KERNEL_VXLAN_DEV} nud permanent\n\
                 bridge fdb append {mac} dev {KERNEL_VXLAN_DEV} dst {ip}",
                vtep = kernel_vtep_ip(other.index),
                mac = kernel_vtep_mac(other.index),
                ip = other.ip,
            );
        }
        run_script(lab, &node.name, &script)?;
    }
    Ok(())
}

/// Kernel routes to the other node's pods through `vxlan.calico` (`on`) or straight via the
/// node (`!on`).
fn kernel_routes_over_vxlan(lab: &Lab, on: bool) -> Result<()> {
    let nodes = lab.nodes();
    for node in nodes {
        let mut script = String::new();
        for pod in lab.pods().iter().filter(|pod| pod.node != node.name) {
            let Some(other) = nodes.iter().find(|n| n.name == pod.node) else {
                continue;
            };
            let via = if on {
                format!(
                    "via {} dev {KERNEL_VXLAN_DEV} onlink",
                    kernel_vtep_ip(other.index)
                )
            } else {
                format!("via {}", other.ip)
            };
            let _ = writeln!(script, "ip route replace {}/32 {via}", pod.ip);
        }
        run_script(lab, &node.name, &script)?;
    }
    Ok(())
}

/// Replaces every node's iptables and ipsets with the Calico-style policy of `rules` rules.
fn load_iptables_policy(lab: &Lab, rules: usize, client: &Pod, servers: &[&Pod]) -> Result<()> {
    let started = Instant::now();
    let mut sets = String::from("create cali-client hash:ip -exist\nflush cali-client\n");
    let _ = writeln!(sets, "add cali-client {}", client.ip);
    for app in 0..APPS {
        let _ = writeln!(
            sets,
            "create cali-app-{app} hash:ip -exist\nflush cali-app-{app}"
        );
        for member in 0..5 {
            let _ = writeln!(sets, "add cali-app-{app} 10.201.{app}.{}", member + 1);
        }
    }
    for node in lab.nodes() {
        let mut table = String::from("*filter\n:FORWARD ACCEPT [0:0]\n");
        let local: Vec<&&Pod> = servers.iter().filter(|s| s.node == node.name).collect();
        for server in &local {
            let _ = writeln!(table, ":cali-tw-{} - [0:0]", server.host_iface);
        }
        table.push_str("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
        table.push_str("-A FORWARD -m conntrack --ctstate INVALID -j DROP\n");
        for server in &local {
            let chain = format!("cali-tw-{}", server.host_iface);
            let _ = writeln!(table, "-A FORWARD -o {} -j {chain}", server.host_iface);
            for rule in 0..rules {
                let port = FIRST_RULE_PORT + (rule % 60_000) as u16;
                let peer = match peer_of(rule) {
                    Peer::App(app) => format!("-m set --match-set cali-app-{app} src"),
                    Peer::Block(rule) => format!("-s {}", block_cidr(rule)),
                };
                let _ = writeln!(table, "-A {chain} -p tcp --dport {port} {peer} -j ACCEPT");
            }
            let _ = writeln!(
                table,
                "-A {chain} -p tcp -m multiport --dports {IPERF_PORT},{RR_PORT} -m set \
                 --match-set cali-client src -j ACCEPT\n-A {chain} -j DROP"
            );
        }
        table.push_str("COMMIT\n");
        pipe(lab, &node.name, &["ipset", "restore"], &sets)?;
        pipe(lab, &node.name, &["iptables-restore"], &table)?;
    }
    eprintln!(
        "    {rules} iptables rules per server endpoint loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run_script(lab: &Lab, node: &str, script: &str) -> Result<()> {
    pipe(lab, node, &["sh", "-e"], script)
}

/// Runs `cmd` in `node` with `input` on stdin; fails with its stderr.
fn pipe(lab: &Lab, node: &str, cmd: &[&str], input: &str) -> Result<()> {
    let ns = lab.netns_of(node)?;
    let (program, args) = cmd.split_first().context("empty command")?;
    let mut child: Child = nsenter_command(&ns, *program, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} in {node}", cmd.join(" ")))?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{} in {node} failed: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The dataplane section of REPORT.md, with the goals.
pub fn render(results: &DataplaneResults) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Dataplane (pod → pod traffic)\n");
    let _ = writeln!(
        out,
        "Two nodes, the same pods and veths for every variant: **tortie** (eBPF, \
         Kubernetes NetworkPolicies), **floor** (kernel routing, no programs, no policy), \
         **baseline** (kernel routing plus a Calico-style iptables policy: conntrack accept, a \
         `cali-tw-<iface>` chain per server with the same rules in order, ipsets for pod \
         selectors, the client's rule last). Paths: same-node and cross-node with native \
         routing; *cross-node VXLAN* is the cross-node pair again in a tunnel, tortie's own \
         encapsulation (pool `vxlanMode: Always`) against a kernel `vxlan.calico` device (VNI \
         4096, static neighbour and FDB entries, pod routes via the peer's tunnel address) for \
         the floor and the baseline, with both pods' MTU at 1450. \
         Rules: ten per policy, each its own peer and port. \
         Throughput: `iperf3`, one TCP stream. Request/response: `tortie-probe rr`, one byte \
         each way on one TCP connection. Client pinned to CPU 0, servers to CPU 1. Each cell: \
         median of {} run(s) of {} s, with the range.\n",
        results.runs, results.seconds
    );
    let _ = writeln!(
        out,
        "| variant | rules | path | throughput Gbit/s | RR transactions/s | RR p50 µs | RR p99 µs |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for m in &results.measurements {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} ({:.2}–{:.2}) | {:.0} ({:.0}–{:.0}) | {:.1} | {:.1} |",
            m.variant,
            m.rules,
            m.path,
            m.gbps,
            m.gbps_range.0,
            m.gbps_range.1,
            m.rr_rate,
            m.rr_range.0,
            m.rr_range.1,
            m.rr_p50_us,
            m.rr_p99_us
        );
    }
    let find = |variant: &str, rules: usize, path: &str| {
        results
            .measurements
            .iter()
            .find(|m| m.variant == variant && m.rules == rules && m.path == path)
    };
    let goal = |name: &str, ratio: Option<f64>, limit: f64| match ratio {
        Some(ratio) if ratio >= limit => format!("- {name}: {ratio:.2}× (met; goal ≥ {limit}×)\n"),
        Some(ratio) => format!("- {name}: {ratio:.2}× (not met; goal ≥ {limit}×)\n"),
        None => format!("- {name}: not measured in this run\n"),
    };
    let _ = writeln!(
        out,
        "\nWhat each packet cost in the programs, in this traffic (the kernel's BPF statistics, \
         `kernel.bpf_stats_enabled`, on only while tortie ran): mean ns per run over each \
         measurement. Nearly every packet here belongs to an established flow, so \
         `tortie_from_wep` (the client's and servers' outgoing packets) is the established \
         fast path: conntrack hit, route, redirect.\n"
    );
    let _ = writeln!(out, "| rules | path | program | ns per packet | packets |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for m in results
        .measurements
        .iter()
        .filter(|m| m.variant == "tortie")
    {
        for (program, ns, runs) in &m.program_ns {
            let _ = writeln!(
                out,
                "| {} | {} | {program} | {ns:.0} | {runs} |",
                m.rules, m.path
            );
        }
    }
    out.push('\n');
    let fast_path = results
        .measurements
        .iter()
        .filter(|m| m.variant == "tortie" && m.path == SAME_NODE)
        .flat_map(|m| m.program_ns.iter())
        .filter(|(program, _, _)| program == "tortie_from_wep")
        .map(|(_, ns, _)| *ns)
        .fold(None, |best: Option<f64>, ns| {
            Some(best.map_or(ns, |b| b.min(ns)))
        });
    if let Some(ns) = fast_path {
        // The goal is judged on the program's own cost (Programs section); in traffic the
        // same path also pays cache misses and the statistics' own clock reads.
        let _ = writeln!(
            out,
            "- established fast path in traffic (tortie_from_wep, same node): {ns:.0} ns per \
             packet by the kernel's BPF statistics, which include cache misses on the maps and \
             two clock reads per run; the goal is judged on the program's own cost in the \
             Programs section"
        );
    }
    let first_rules = results.rule_counts.first().copied().unwrap_or(10);
    out.push_str(&goal(
        &format!("same-node request/response rate, tortie ({first_rules} rules) / floor"),
        find("tortie", first_rules, SAME_NODE)
            .zip(find("floor", 0, SAME_NODE))
            .map(|(t, f)| t.rr_rate / f.rr_rate),
        1.5,
    ));
    for path in [CROSS_NODE, CROSS_NODE_VXLAN] {
        out.push_str(&goal(
            &format!("{path} throughput, tortie (1,000 rules) / floor"),
            find("tortie", 1_000, path)
                .zip(find("floor", 0, path))
                .map(|(t, f)| t.gbps / f.gbps),
            0.95,
        ));
        out.push_str(&goal(
            &format!("{path} throughput, tortie / baseline, both at 1,000 rules"),
            find("tortie", 1_000, path)
                .zip(find("baseline", 1_000, path))
                .map(|(t, b)| t.gbps / b.gbps),
            1.2,
        ));
    }
    // What the throughput profile says about the throughput goals above.
    if let Some(profile) = results
        .profiles
        .iter()
        .find(|p| p.workload.starts_with("cross-node TCP throughput"))
    {
        let busy = profile.samples.saturating_sub(profile.idle).max(1) as f64;
        let _ = writeln!(
            out,
            "\nIn the cross-node throughput profile below, tortie's programs (with the helpers \
             and map lookups they call) took {:.1}% of the busy CPU time. Their own work can \
             explain about that share of a throughput gap to the floor; the rest comes from how \
             the packets travel (redirects past the host's forwarding path, which changes \
             batching) or from run-to-run variation (see the ranges and the busiest functions \
             in the profile).",
            100.0 * profile.in_programs as f64 / busy
        );
    }
    // What the profile says about the goals above, with this run's numbers.
    if let (Some(tortie), Some(floor)) = (
        find("tortie", first_rules, SAME_NODE),
        find("floor", 0, SAME_NODE),
    ) {
        let from_wep_ns = tortie
            .program_ns
            .iter()
            .find(|(program, _, _)| program == "tortie_from_wep")
            .map_or(0.0, |(_, ns, _)| *ns);
        let _ = writeln!(
            out,
            "\nWhere a round trip goes, from this run: a same-node transaction takes {:.1} µs at \
             the median with tortie and {:.1} µs on the kernel floor. tortie's programs account \
             for about {:.1} µs of it (two packets through `tortie_from_wep` at {:.0} ns each, \
             per the table above) and deliver into the peer pod directly (`redirect_peer`), \
             where the floor forwards through the host's stack; the rest is the two TCP stacks, \
             the veths and scheduling on a 2-CPU virtual machine, the same for every variant. \
             Runs vary by tens of percent here (the ranges above), so a ratio near a goal's \
             limit can fall on either side from one run to the next. The profiles below show \
             the same from the CPU's side.",
            tortie.rr_p50_us,
            floor.rr_p50_us,
            2.0 * from_wep_ns / 1e3,
            from_wep_ns,
        );
    }
    out.push_str(&profile::render(
        &results.profiles,
        results.profile_skipped.as_deref(),
    ));
    out
}

/// The chart lines: cross-node throughput and same-node request/response by rule count.
pub fn chart_series(
    results: &DataplaneResults,
) -> (Vec<crate::plots::Series>, Vec<crate::plots::Series>) {
    let max_rules = results.rule_counts.iter().copied().max().unwrap_or(10) as f64;
    let min_rules = results.rule_counts.iter().copied().min().unwrap_or(10) as f64;
    let line = |variant: &str, path: &str, metric: fn(&Measurement) -> (f64, f64, f64)| {
        let name = if path == CROSS_NODE_VXLAN {
            format!("{variant} (VXLAN)")
        } else {
            variant.to_string()
        };
        let points: Vec<(f64, f64, f64, f64)> = results
            .measurements
            .iter()
            .filter(|m| m.variant == variant && m.path == path)
            .flat_map(|m| {
                let (median, low, high) = metric(m);
                // The floor has no rules: drawn flat across the rule counts.
                if m.variant == "floor" {
                    vec![
                        (min_rules, median, low, high),
                        (max_rules, median, low, high),
                    ]
                } else {
                    vec![(m.rules as f64, median, low, high)]
                }
            })
            .collect();
        crate::plots::Series { name, points }
    };
    let gbps = |m: &Measurement| (m.gbps, m.gbps_range.0, m.gbps_range.1);
    let rr = |m: &Measurement| (m.rr_rate, m.rr_range.0, m.rr_range.1);
    let variants = ["tortie", "baseline", "floor"];
    (
        [CROSS_NODE, CROSS_NODE_VXLAN]
            .iter()
            .flat_map(|path| variants.iter().map(|v| line(v, path, gbps)))
            .collect(),
        variants.iter().map(|v| line(v, SAME_NODE, rr)).collect(),
    )
}

/// CSV rows.
pub fn csv(results: &DataplaneResults) -> String {
    let mut csv = String::from(
        "variant,rules,path,gbps,gbps_min,gbps_max,rr_rate,rr_min,rr_max,rr_p50_us,rr_p99_us\n",
    );
    for m in &results.measurements {
        let _ = writeln!(
            csv,
            "{},{},{},{:.3},{:.3},{:.3},{:.1},{:.1},{:.1},{:.1},{:.1}",
            m.variant,
            m.rules,
            m.path,
            m.gbps,
            m.gbps_range.0,
            m.gbps_range.1,
            m.rr_rate,
            m.rr_range.0,
            m.rr_range.1,
            m.rr_p50_us,
            m.rr_p99_us
        );
    }
    csv
}
