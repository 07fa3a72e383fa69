//! BGP benchmark: how fast a new block reaches the other nodes, and how fast the agent
//! programs routes BGP learned.
//!
//! - *Block propagation*: a five-node lab fed from etcd with BIRD on every node (the node
//!   mesh) and no pods. Each node in turn gets its first pod through `tortie-cni`, which claims
//!   the node's first block. From the moment ADD starts (it claims the block early on, so
//!   the figures are upper bounds), then as soon as it returns, the other four nodes are
//!   polled every millisecond: their pinned `TORTIE_ROUTES` read
//!   directly (the agent's datastore watch programs the block there), and their kernel tables
//!   for the route BIRD installs when the BGP update arrives (`proto bird`). A sample is the
//!   time until the last of the four has it.
//! - *Learned routes*: a one-node lab without BIRD; 10,000 /32 routes are installed in the
//!   node's kernel the way BIRD installs them (`proto bird`, via a fabric neighbour) with one
//!   `ip -batch`, and the time until all of them are in `TORTIE_ROUTES` (as external, BGP
//!   learned) is measured; then the same for their withdrawal. This times the agent's route
//!   watch, its recomputation and the map writes; BIRD's own speed is not part of it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bpf_maps::route_flags;
use ipnet::Ipv4Net;
use serde::Serialize;
use tortie::sync::maps::DataplaneMaps;
use tortie_lab::netns::nsenter_command;
use tortie_lab::{control_plane, Artifacts, DatastoreMode, Encap, LabGuard, LabSpec, Node, Pod};

use crate::cni_bench::Latency;

/// Nodes of the propagation lab.
const NODES: usize = 5;
/// Routes of the learned-routes case.
const LEARNED_ROUTES: u32 = 10_000;
/// How long any one wait may take before the run fails.
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(1);

/// Every figure of the BGP section.
#[derive(Clone, Debug, Serialize)]
pub struct BgpResults {
    /// Block propagation to every other node: BPF map, kernel (BGP).
    pub propagation: Vec<Latency>,
    /// Routes installed in the kernel at once.
    pub learned_routes: u32,
    /// Seconds until all were in the BPF route map.
    pub add_seconds: f64,
    /// Seconds until all had left it after their withdrawal.
    pub withdraw_seconds: f64,
}

/// Runs both cases on fresh labs `bench-bgp` and `bench-bgp-routes`.
pub fn run(artifacts: &Artifacts) -> Result<BgpResults> {
    let propagation = block_propagation(artifacts)?;
    let (add_seconds, withdraw_seconds) = learned_routes(artifacts)?;
    Ok(BgpResults {
        propagation,
        learned_routes: LEARNED_ROUTES,
        add_seconds,
        withdraw_seconds,
    })
}

fn block_propagation(artifacts: &Artifacts) -> Result<Vec<Latency>> {
    let spec = LabSpec::new("bench-bgp", NODES, 0)
        .with_encap(Encap::None)
        .with_datastore(DatastoreMode::Etcd)
        .with_bgp(true);
    let lab = LabGuard::up(&spec, artifacts).context("bringing up the BGP benchmark lab")?;
    let nodes: Vec<Node> = lab.nodes().to_vec();
    let maps: Vec<DataplaneMaps> = nodes
        .iter()
        .map(|node| DataplaneMaps::open_pinned(&bpf_maps::pins::maps_dir(&node.pin_root)))
        .collect::<Result<_>>()?;
    wait_for("every mesh session", || {
        nodes.iter().all(|node| {
            lab.node_status(&node.name).is_ok_and(|sessions| {
                sessions.len() == NODES - 1 && sessions.iter().all(|s| s["state"] == "Established")
            })
        })
    })?;

    let (mut to_maps, mut to_kernels) = (Vec::new(), Vec::new());
    for (index, node) in nodes.iter().enumerate() {
        let name = format!("first-{index}");
        let mut pod = Pod::planned_for_cni(lab.name(), &node.name, "bench", &name, &[]);
        pod.mtu = spec.pod_mtu();
        // The block is claimed inside ADD, and the agents see it while ADD is still wiring
        // the pod: the clock starts with ADD (an upper bound of the propagation).
        let add_started = Instant::now();
        let attachment = control_plane::add_pod(lab.name(), artifacts, node, &pod)
            .with_context(|| format!("the first pod on {}", node.name))?;
        let block = Ipv4Net::new(attachment.ip, 26)?.trunc();
        let others: Vec<usize> = (0..nodes.len()).filter(|&i| i != index).collect();
        let (mut in_maps, mut in_kernels) = (None, None);
        while in_maps.is_none() || in_kernels.is_none() {
            if in_maps.is_none() && others.iter().all(|&i| holds(&maps[i], &block)) {
                in_maps = Some(add_started.elapsed());
            }
            if in_kernels.is_none()
                && others
                    .iter()
                    .all(|&i| kernel_has_bird_route(&nodes[i].netns, &block))
            {
                in_kernels = Some(add_started.elapsed());
            }
            if add_started.elapsed() > DEADLINE {
                bail!(
                    "block {block} of {} did not reach every node within {} s (maps: {in_maps:?}, \
                     kernels: {in_kernels:?})",
                    node.name,
                    DEADLINE.as_secs()
                );
            }
            std::thread::sleep(POLL);
        }
        to_maps.extend(in_maps);
        to_kernels.extend(in_kernels);
    }
    Ok(vec![
        Latency::of("CNI ADD start → every other node's BPF route map", to_maps),
        Latency::of(
            "CNI ADD start → every other node's kernel (BGP)",
            to_kernels,
        ),
    ])
}

fn holds(maps: &DataplaneMaps, block: &Ipv4Net) -> bool {
    maps.routes().is_ok_and(|routes| routes.contains_key(block))
}

fn kernel_has_bird_route(netns: &str, block: &Ipv4Net) -> bool {
    let block = block.to_string();
    nsenter_command(
        netns,
        "ip",
        &["-4", "route", "show", "proto", "bird", &block],
    )
    .stderr(Stdio::null())
    .output()
    .is_ok_and(|out| !out.stdout.is_empty())
}

/// Seconds until 10k kernel routes (`proto bird`) are in the map, then until they are gone.
fn learned_routes(artifacts: &Artifacts) -> Result<(f64, f64)> {
    let spec = LabSpec::new("bench-bgp-routes", 2, 0)
        .with_encap(Encap::None)
        .with_datastore(DatastoreMode::Etcd);
    let lab = LabGuard::up(&spec, artifacts).context("bringing up the learned-routes lab")?;
    let (node, neighbour) = match lab.nodes() {
        [node, neighbour, ..] => (node.clone(), neighbour.ip),
        _ => bail!("the learned-routes lab has fewer than two nodes"),
    };
    let maps = DataplaneMaps::open_pinned(&bpf_maps::pins::maps_dir(&node.pin_root))?;
    let prefixes: Vec<Ipv4Addr> = (0..LEARNED_ROUTES)
        .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 20, 0, 0)) + i))
        .collect();
    let learned = || -> usize {
        maps.routes().map_or(0, |routes| {
            routes
                .values()
                .filter(|r| r.flags & route_flags::LEARNED_BGP != 0)
                .count()
        })
    };

    let started = Instant::now();
    ip_batch(&node.netns, &prefixes, |prefix| {
        format!("route add {prefix}/32 via {neighbour} proto bird")
    })?;
    wait_for("10,000 learned routes in the map", || {
        learned() == LEARNED_ROUTES as usize
    })?;
    let add = started.elapsed().as_secs_f64();

    let started = Instant::now();
    ip_batch(&node.netns, &prefixes, |prefix| {
        format!("route del {prefix}/32 via {neighbour} proto bird")
    })?;
    wait_for("the learned routes leaving the map", || learned() == 0)?;
    Ok((add, started.elapsed().as_secs_f64()))
}

/// Runs one `ip -batch -` in `netns` with a line per prefix.
fn ip_batch(netns: &str, prefixes: &[Ipv4Addr], line: impl Fn(Ipv4Addr) -> String) -> Result<()> {
    let mut batch = String::new();
    for prefix in prefixes {
        batch.push_str(&line(*prefix));
        batch.push('\n');
    }
    let mut child = nsenter_command(netns, "ip", &["-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .context("starting ip -batch")?;
    child
        .stdin
        .take()
        .context("ip -batch has no stdin")?
        .write_all(batch.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("ip -batch in {netns} failed ({status})");
    }
    Ok(())
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > DEADLINE {
            bail!("{what}: not done within {} s", DEADLINE.as_secs());
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// The BGP section of REPORT.md.
pub fn render(results: &BgpResults) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Control plane (BGP)\n");
    let _ = writeln!(
        out,
        "A {NODES}-node lab with BIRD on every node (node-to-node mesh) and no pods; each node \
         in turn gets its first pod through `tortie-cni`, claiming its first block. The clock \
         starts when ADD starts (the block is claimed during ADD, so these are upper bounds \
         that include part of ADD); once ADD returns, the other nodes' pinned route maps and \
         kernel tables are polled every millisecond; a sample is the time until the last of \
         them holds the block. The map is programmed from the datastore watch, the kernel \
         route arrives over BGP (BIRD's export, the peers' import and kernel sync).\n"
    );
    let _ = writeln!(out, "| path | samples | p50 ms | p99 ms | max ms |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for f in &results.propagation {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            f.operation, f.samples, f.p50_ms, f.p99_ms, f.max_ms
        );
    }
    let rate = |seconds: f64| f64::from(results.learned_routes) / seconds.max(1e-9);
    let _ = writeln!(
        out,
        "\nLearned routes: {} /32 routes installed at once in a node's kernel as BIRD installs \
         them (`proto bird`, one `ip -batch`) were all in `TORTIE_ROUTES` after {:.2} s \
         ({:.0} routes/s); after their withdrawal the map was clear after {:.2} s ({:.0} \
         routes/s).",
        results.learned_routes,
        results.add_seconds,
        rate(results.add_seconds),
        results.withdraw_seconds,
        rate(results.withdraw_seconds)
    );
    out
}

/// CSV rows (operation, samples, p50, p99, max; then the learned-routes figures).
pub fn csv(results: &BgpResults) -> String {
    let mut csv = crate::cni_bench::csv(&results.propagation);
    let _ = writeln!(
        csv,
        "\"learned routes: add {} routes (s)\",1,{:.3},{:.3},{:.3}",
        results.learned_routes, results.add_seconds, results.add_seconds, results.add_seconds
    );
    let _ = writeln!(
        csv,
        "\"learned routes: withdraw {} routes (s)\",1,{:.3},{:.3},{:.3}",
        results.learned_routes,
        results.withdraw_seconds,
        results.withdraw_seconds,
        results.withdraw_seconds
    );
    csv
}
