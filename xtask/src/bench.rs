//! `cargo xtask bench`: the dataplane measured on this machine.
//!
//! Programs section: each forwarding path run by the kernel with `BPF_PROG_TEST_RUN` on a
//! crafted packet, against maps filled through the agent's own calc/sync path plus filler
//! routes (10 / 1k / 100k). Every path also changes the packet (TTL, encapsulation), so each
//! sample is one run on a fresh copy (`repeat = 1`); the kernel's own timer around that run
//! includes a fixed overhead, which the empty program (`floor`) measures and the table shows.
//!
//! Policy and conntrack cases (new-flow verdicts by rule count, established flows by
//! conntrack table size) are in [`crate::policy_bench`].

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use bpf_maps::{program_names, route_flags, RouteValue};
use ipnet::Ipv4Net;
use nix::{
    sched::{sched_getaffinity, sched_setaffinity, CpuSet},
    unistd::Pid,
};
use serde::Serialize;
use tortie::{
    calc::DesiredState,
    packets,
    sync::test_run::{fixture, fixture::*, ProgramRunner},
};

use crate::{build, cni_bench};

/// The CPU every measurement runs on (the test run executes on the calling CPU).
const BENCH_CPU: usize = 1;

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Fewer samples (a smoke run for CI; numbers are indicative only).
    #[arg(long)]
    quick: bool,
    /// Where REPORT.md, results.json and results.csv go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Run only these sections (repeat or comma-separate; default: all). The report then
    /// holds only what ran.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Instead of the report: time the established and denied paths of the built eBPF object
    /// and of this one (an earlier build with the same map layout) in turns, and print both.
    #[arg(long, value_name = "OBJECT")]
    against: Option<PathBuf>,
}

/// A part of the report that can be run on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Forwarding paths by route count (BPF_PROG_TEST_RUN).
    Programs,
    /// New-flow verdicts by rule count, established flows by conntrack size.
    Policy,
    /// CNI ADD/DEL latency and time to the first forwarded packet.
    ControlPlane,
    /// Block propagation over the BGP mesh, learned routes programmed per second.
    Bgp,
    /// Pod traffic (iperf3, request/response) for tortie, the kernel floor and an iptables
    /// baseline.
    Dataplane,
}

impl BenchArgs {
    fn runs(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }
}

/// One forwarding path to measure.
struct Case {
    name: &'static str,
    program: &'static str,
    ipip: &'static str,
    vxlan: &'static str,
    packet: fn() -> Vec<u8>,
    /// TC action the path must return (checked once, so a broken path is not timed).
    expected_action: i32,
}

const TC_ACT_OK: i32 = 0;
const TC_ACT_REDIRECT: i32 = 7;
/// The empty program's row.
const FLOOR_CASE: &str = "floor (empty program)";

fn pod_to(dst: [u8; 4]) -> Vec<u8> {
    packets::icmp((HOST_MAC, POD_A_MAC), 8, POD_A, dst, 64)
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: FLOOR_CASE,
            program: program_names::FLOOR,
            ipip: "Never",
            vxlan: "Never",
            packet: || pod_to(POD_B),
            expected_action: TC_ACT_OK,
        },
        Case {
            name: "local pod → pod (redirect_peer)",
            program: program_names::FROM_WORKLOAD,
            ipip: "Never",
            vxlan: "Never",
            packet: || pod_to(POD_B),
            expected_action: TC_ACT_REDIRECT,
        },
        Case {
            name: "remote pod, native",
            program: program_names::FROM_WORKLOAD,
            ipip: "Never",
            vxlan: "Never",
            packet: || pod_to(REMOTE_POD),
            expected_action: TC_ACT_REDIRECT,
        },
        Case {
            name: "remote pod, IPIP encap",
            program: program_names::FROM_WORKLOAD,
            ipip: "Always",
            vxlan: "Never",
            packet: || pod_to(REMOTE_POD),
            expected_action: TC_ACT_REDIRECT,
        },
        Case {
            name: "remote pod, VXLAN encap",
            program: program_names::FROM_WORKLOAD,
            ipip: "Never",
            vxlan: "Always",
            packet: || pod_to(REMOTE_POD),
            expected_action: TC_ACT_REDIRECT,
        },
        Case {
            name: "IPIP decap → local pod",
            program: program_names::FROM_HOST_IFACE,
            ipip: "Always",
            vxlan: "Never",
            packet: || {
                let inner = packets::icmp((HOST_MAC, POD_A_MAC), 8, REMOTE_POD, POD_B, 63);
                packets::ipip((UPLINK_MAC, PEER_MAC), REMOTE_NODE, NODE_IP, &inner)
            },
            expected_action: TC_ACT_REDIRECT,
        },
        Case {
            name: "VXLAN decap → local pod",
            program: program_names::FROM_HOST_IFACE,
            ipip: "Never",
            vxlan: "Always",
            packet: || {
                let inner = packets::icmp((HOST_MAC, POD_A_MAC), 8, REMOTE_POD, POD_B, 63);
                packets::vxlan(
                    (UPLINK_MAC, PEER_MAC),
                    REMOTE_NODE,
                    NODE_IP,
                    4789,
                    4096,
                    &inner,
                )
            },
            expected_action: TC_ACT_REDIRECT,
        },
    ]
}

/// node-0 of the fixture cluster in the given modes, plus filler routes up to `routes`:
/// remote /32s outside the pool, so lookups traverse a trie of that size.
fn dataplane(ipip: &str, vxlan: &str, routes: usize) -> Result<DesiredState> {
    let mut desired = fixture::desired(&fixture::cluster(ipip, vxlan)?)?;
    let filler = routes.saturating_sub(desired.routes.len());
    for i in 0..filler as u32 {
        // 172.16.0.0/12 holds a million /32s: spread across it so the trie branches.
        let addr = Ipv4Addr::from(0xac10_0000u32 | (i.wrapping_mul(2_654_435_761) & 0x000f_ffff));
        desired.routes.insert(
            Ipv4Net::from(addr),
            RouteValue {
                flags: route_flags::REMOTE_WORKLOAD,
                next_hop: REMOTE_NODE,
                ..RouteValue::default()
            },
        );
    }
    Ok(desired)
}

/// Median and spread of per-run nanoseconds.
#[derive(Clone, Debug, Serialize)]
struct Figure {
    path: String,
    routes: usize,
    #[serde(flatten)]
    spread: Spread,
}

/// Median of batch medians and the range of batch medians, ns per run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Spread {
    /// Median of the batch medians.
    pub median_ns: f64,
    /// Lowest batch median.
    pub min_batch_ns: f64,
    /// Highest batch median.
    pub max_batch_ns: f64,
    /// Batches.
    pub batches: usize,
    /// Samples per batch.
    pub samples_per_batch: usize,
}

impl Spread {
    /// The spread of `batch_medians`, batches of `samples_per_batch` samples each.
    fn of_medians(mut batch_medians: Vec<f64>, samples_per_batch: usize) -> Spread {
        Spread {
            min_batch_ns: batch_medians.iter().copied().fold(f64::INFINITY, f64::min),
            max_batch_ns: batch_medians.iter().copied().fold(0.0, f64::max),
            batches: batch_medians.len(),
            median_ns: median(&mut batch_medians),
            samples_per_batch,
        }
    }

    /// Combines single-batch spreads (batches that needed set-up between them).
    pub fn of_batches(batches: &[Spread]) -> Spread {
        Spread::of_medians(
            batches.iter().map(|b| b.median_ns).collect(),
            batches.first().map_or(0, |b| b.samples_per_batch),
        )
    }

    /// A report cell: `median (lowest–highest batch median)`.
    pub fn cell(&self) -> String {
        format!(
            "{:.0} ({:.0}–{:.0})",
            self.median_ns, self.min_batch_ns, self.max_batch_ns
        )
    }
}

/// Times `batches` batches of `samples` calls of `one_run` (given the sample's index in its
/// batch; it returns the kernel's time for one program run).
pub(crate) fn batched(
    batches: usize,
    samples: usize,
    mut one_run: impl FnMut(usize) -> Result<Duration>,
) -> Result<Spread> {
    let mut batch_medians = Vec::with_capacity(batches);
    for _ in 0..batches {
        let mut samples_ns = Vec::with_capacity(samples);
        for sample in 0..samples {
            samples_ns.push(one_run(sample)?.as_nanos() as f64);
        }
        batch_medians.push(median(&mut samples_ns));
    }
    Ok(Spread::of_medians(batch_medians, samples))
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

fn measure(case: &Case, routes: usize, object: &Path, quick: bool) -> Result<Figure> {
    let mut runner = ProgramRunner::load(object)?;
    runner
        .maps
        .apply(&dataplane(case.ipip, case.vxlan, routes)?)
        .with_context(|| format!("programming {routes} routes"))?;
    let packet = (case.packet)();
    let first = runner.run(case.program, &packet, 1)?;
    if first.action != case.expected_action {
        bail!(
            "{}: the program returned {} instead of {}; not timing a broken path",
            case.name,
            first.action,
            case.expected_action
        );
    }
    let (batches, samples) = if quick { (3, 2_000) } else { (5, 20_000) };
    let spread = batched(batches, samples, |_| {
        Ok(runner.run(case.program, &packet, 1)?.per_run)
    })?;
    Ok(Figure {
        path: case.name.into(),
        routes,
        spread,
    })
}

/// Pins the benchmark to `cpu`; returns the CPUs it could run on before, for
/// [`restore_affinity`].
fn pin_to_cpu(cpu: usize) -> Result<CpuSet> {
    let before = sched_getaffinity(Pid::from_raw(0)).context("reading the CPU affinity")?;
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set)
        .with_context(|| format!("pinning the benchmark to CPU {cpu}"))?;
    Ok(before)
}

fn restore_affinity(before: &CpuSet) -> Result<()> {
    sched_setaffinity(Pid::from_raw(0), before).context("unpinning the benchmark")
}

/// Runs the benchmark and writes the report.
pub fn run(args: &BenchArgs) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("`cargo xtask bench` loads BPF programs and needs root");
    }
    let artifacts = build::all_release()?;
    let object = &artifacts.bpf_object;
    let affinity = pin_to_cpu(BENCH_CPU)?;
    if let Some(other) = &args.against {
        print!(
            "{}",
            crate::policy_bench::compare(object, other, args.quick)?
        );
        return restore_affinity(&affinity);
    }
    let route_counts = [10usize, 1_000, 100_000];
    let mut figures = Vec::new();
    for case in cases() {
        // The floor is every table's reference, so it is measured whatever else runs.
        if !args.runs(Section::Programs) && case.name != FLOOR_CASE {
            continue;
        }
        for routes in route_counts {
            eprintln!("==> {} with {routes} routes", case.name);
            figures.push(measure(&case, routes, object, args.quick)?);
        }
    }
    let policy = if args.runs(Section::Policy) {
        Some(crate::policy_bench::run(object, args.quick)?)
    } else {
        None
    };
    // The control plane runs as it would on a node: agent, etcd and CNI calls on every CPU.
    restore_affinity(&affinity)?;
    let cni_pods = if args.quick { 20 } else { 200 };
    let cni = if args.runs(Section::ControlPlane) {
        wait_for_quiet_cpus();
        eprintln!("==> control plane: {cni_pods} sequential CNI ADDs");
        Some(cni_bench::run(&artifacts, cni_pods)?)
    } else {
        None
    };
    let scale = if args.runs(Section::ControlPlane) {
        let (endpoints, rules) = if args.quick {
            (200, 1_000)
        } else {
            (1_000, 10_000)
        };
        wait_for_quiet_cpus();
        eprintln!("==> control plane: agent with {endpoints} endpoints and {rules} rules");
        Some(crate::scale_bench::run(&artifacts, endpoints, rules)?)
    } else {
        None
    };
    let bgp = if args.runs(Section::Bgp) {
        wait_for_quiet_cpus();
        eprintln!("==> control plane: BGP block propagation and learned routes");
        Some(crate::bgp_bench::run(&artifacts)?)
    } else {
        None
    };
    let dataplane = if args.runs(Section::Dataplane) {
        wait_for_quiet_cpus();
        eprintln!("==> dataplane: pod traffic for tortie, floor and baseline");
        Some(crate::dataplane_bench::run(&artifacts, args.quick)?)
    } else {
        None
    };
    let mut report = render(&figures, &route_counts, args.quick, policy.as_ref());
    let charts_dir = if args.out.is_absolute() {
        args.out.clone()
    } else {
        build::workspace_root().join(&args.out)
    };
    if let Some(dataplane) = &dataplane {
        report.push_str(&crate::dataplane_bench::render(dataplane));
    }
    if let Some(cni) = &cni {
        report.push_str(&cni_bench::render(cni, cni_pods));
    }
    if let Some(scale) = &scale {
        report.push_str(&crate::scale_bench::render(scale));
    }
    if let Some(bgp) = &bgp {
        report.push_str(&crate::bgp_bench::render(bgp));
    }
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        build::workspace_root().join(&args.out)
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    report.push_str(&write_charts(&out, &figures, policy.as_ref())?);
    if let Some(dataplane) = &dataplane {
        let (throughput, rr) = crate::dataplane_bench::chart_series(dataplane);
        crate::plots::chart(
            &charts_dir.join("throughput.svg"),
            "Cross-node TCP throughput by policy rules (native and VXLAN)",
            "policy rules",
            "Gbit/s",
            &throughput,
        )?;
        crate::plots::chart(
            &charts_dir.join("request-response.svg"),
            "Same-node request/response rate by policy rules",
            "policy rules",
            "transactions/s",
            &rr,
        )?;
        report.push_str(
            "\n![cross-node throughput](throughput.svg)\n\n\
             ![same-node request/response](request-response.svg)\n",
        );
    }
    let report = with_goals_summary(&report);
    std::fs::write(out.join("REPORT.md"), &report)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "programs": figures,
            "policy": policy,
            "control_plane": cni,
            "bgp": bgp,
            "agent_scale": scale,
            "dataplane": dataplane,
        }))?,
    )?;
    std::fs::write(out.join("results.csv"), csv(&figures))?;
    if let Some(policy) = &policy {
        std::fs::write(out.join("policy.csv"), crate::policy_bench::csv(policy))?;
    }
    if let Some(cni) = &cni {
        std::fs::write(out.join("control_plane.csv"), cni_bench::csv(cni))?;
    }
    if let Some(bgp) = &bgp {
        std::fs::write(out.join("bgp.csv"), crate::bgp_bench::csv(bgp))?;
    }
    if let Some(dataplane) = &dataplane {
        std::fs::write(
            out.join("dataplane.csv"),
            crate::dataplane_bench::csv(dataplane),
        )?;
    }
    println!("{report}");
    eprintln!("report written to {}", out.join("REPORT.md").display());
    Ok(())
}

/// Draws the charts next to the report and returns the report's section showing them.
fn write_charts(
    out: &Path,
    figures: &[Figure],
    policy: Option<&crate::policy_bench::PolicyResults>,
) -> Result<String> {
    let mut section = String::from("\n## Charts\n\n");
    let mut paths: Vec<&str> = figures.iter().map(|f| f.path.as_str()).collect();
    paths.dedup();
    if figures.iter().any(|f| f.path != FLOOR_CASE) {
        let series: Vec<crate::plots::Series> = paths
            .iter()
            .map(|path| crate::plots::Series {
                name: (*path).to_string(),
                points: figures
                    .iter()
                    .filter(|f| f.path == *path)
                    .map(|f| {
                        let s = &f.spread;
                        (f.routes as f64, s.median_ns, s.min_batch_ns, s.max_batch_ns)
                    })
                    .collect(),
            })
            .collect();
        crate::plots::line_chart(
            &out.join("programs.svg"),
            "Forwarding paths by route count (BPF_PROG_TEST_RUN)",
            "routes in TORTIE_ROUTES",
            &series,
        )?;
        section.push_str("![forwarding paths by route count](programs.svg)\n\n");
    }
    if let Some(policy) = policy {
        let (by_rules, by_entries) = crate::policy_bench::chart_series(policy);
        crate::plots::line_chart(
            &out.join("policy.svg"),
            "New-flow verdict by number of policy rules",
            "policy rules",
            &by_rules,
        )?;
        crate::plots::line_chart(
            &out.join("conntrack.svg"),
            "Established flow by conntrack table size",
            "conntrack entries",
            &by_entries,
        )?;
        section.push_str(
            "![new-flow verdict by rule count](policy.svg)\n\n\
             ![established flow by conntrack size](conntrack.svg)\n",
        );
    }
    Ok(section)
}

/// CSV rows (path, routes, median, min, max).
fn csv(figures: &[Figure]) -> String {
    let mut csv = String::from("path,routes,median_ns,min_batch_ns,max_batch_ns\n");
    for f in figures {
        let s = &f.spread;
        let _ = writeln!(
            csv,
            "\"{}\",{},{:.1},{:.1},{:.1}",
            f.path, f.routes, s.median_ns, s.min_batch_ns, s.max_batch_ns
        );
    }
    csv
}

fn machine_summary() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown CPU".into(), |m| m.trim().to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // Counted from /proc: the benchmark itself runs pinned to one CPU by then.
    let cpus = info.lines().filter(|l| l.starts_with("processor")).count();
    format!("{cpu}, {cpus} CPUs, kernel {}", kernel.trim())
}

/// Waits (at most 30 s) until the CPUs are at least 90% idle over a second, so that work a
/// previous section left to the kernel (freeing large maps, tearing down namespaces) does
/// not land in the next one's timings.
fn wait_for_quiet_cpus() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut before = cpu_times();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let now = cpu_times();
        let (Some((idle0, total0)), Some((idle1, total1))) = (before, now) else {
            return;
        };
        let idle_share = (idle1 - idle0) as f64 / (total1 - total0).max(1) as f64;
        if idle_share >= 0.9 {
            return;
        }
        if std::time::Instant::now() > deadline {
            eprintln!(
                "    the CPUs are still {:.0}% busy; going on",
                100.0 * (1.0 - idle_share)
            );
            return;
        }
        before = now;
    }
}

/// Idle and total jiffies of all CPUs, from the first line of /proc/stat.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((idle, fields.iter().sum()))
}

/// `report` with a table of every goal verdict it contains put after its header, so a reader
/// sees them first. Each section states its goals as `- what: result (met|not met; goal …)`
/// lines next to the figures they come from; the table gathers those lines (a line with any
/// "not met" in it counts as not met).
fn with_goals_summary(report: &str) -> String {
    let goals: Vec<(&str, &str, bool)> = report
        .lines()
        .filter_map(|line| line.strip_prefix("- "))
        .filter(|line| line.contains("goal ≤") || line.contains("goal ≥"))
        .filter_map(|line| line.split_once(": "))
        .map(|(what, result)| (what, result, !result.contains("not met")))
        .collect();
    if goals.is_empty() {
        return report.to_string();
    }
    let mut table = String::from(
        "## Goals\n\nEvery goal of this run, as its section states it (the figures and \
         profiles that explain each are in that section).\n\n| goal | verdict | result |\n\
         |---|---|---|\n",
    );
    for (what, result, met) in &goals {
        let verdict = if *met { "met" } else { "**not met**" };
        let _ = writeln!(table, "| {what} | {verdict} | {result} |");
    }
    table.push('\n');
    // After the title and the machine and run lines.
    match report.find("\n## ") {
        Some(at) => format!("{}\n{table}{}", &report[..at], &report[at + 1..]),
        None => format!("{report}\n{table}"),
    }
}

fn render(
    figures: &[Figure],
    route_counts: &[usize],
    quick: bool,
    policy: Option<&crate::policy_bench::PolicyResults>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# tortie benchmark report\n");
    let _ = writeln!(out, "Machine: {}.", machine_summary());
    let _ = writeln!(
        out,
        "Run: {}; program timings pinned to CPU {BENCH_CPU} (BPF_PROG_TEST_RUN executes on \
         the calling CPU); each lab section starts once the CPUs have been at least 90% idle \
         for a second (waiting at most 30 s), so that work left from the section before does \
         not land in its timings.\n",
        if quick {
            "--quick (indicative only)"
        } else {
            "full"
        }
    );
    let _ = writeln!(out, "## Programs (BPF_PROG_TEST_RUN, ns per packet)\n");
    let _ = writeln!(
        out,
        "Each cell: median of batch medians (one run per sample on a fresh packet copy), with the \
         range of batch medians. The floor row is the kernel's timing overhead around an empty \
         program; a path's own cost is roughly its figure minus the floor.\n"
    );
    let mut header = String::from("| path |");
    let mut rule = String::from("|---|");
    for routes in route_counts {
        let _ = write!(header, " {routes} routes |");
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    let mut paths: Vec<&str> = figures.iter().map(|f| f.path.as_str()).collect();
    paths.dedup();
    for path in paths {
        let mut row = format!("| {path} |");
        for routes in route_counts {
            if let Some(f) = figures
                .iter()
                .find(|f| f.path == path && f.routes == *routes)
            {
                let _ = write!(row, " {} |", f.spread.cell());
            }
        }
        let _ = writeln!(out, "{row}");
    }
    // The floor does not depend on the routes; any of its figures will do.
    let floor = figures
        .iter()
        .find(|f| f.path == FLOOR_CASE)
        .map(|f| f.spread.median_ns);
    if let Some(policy) = policy {
        out.push_str(&crate::policy_bench::render(policy, floor));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_goals_summary;

    #[test]
    fn every_goal_line_lands_in_the_summary_after_the_header() {
        let report = "# report\n\nMachine: m.\n\n## Programs\n\n\
            - new flow: 1.02× as measured (met), 1.20× without the floor (not met); goal ≤ 1.1×\n\
            - agent RSS at 1000 endpoints: 45.7 MiB once programmed (met; goal ≤ 64 MiB, 0.71×)\n\
            - established fast path in traffic: 400 ns per packet\n";
        let summary = with_goals_summary(report);
        let goals = summary.find("## Goals").expect("a goals section");
        assert!(goals < summary.find("## Programs").expect("the sections stay"));
        assert!(summary.contains("| new flow | **not met** |"));
        assert!(summary.contains("| agent RSS at 1000 endpoints | met |"));
        assert!(!summary.contains("| established fast path in traffic |"));
        assert_eq!(with_goals_summary("# no goals\n"), "# no goals\n");
    }
}
