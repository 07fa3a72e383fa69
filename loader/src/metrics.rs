//! The agent's HTTP endpoints (`tortie-agent run --metrics-addr`): Prometheus `/metrics`,
//! `/healthz` (the agent's loop is alive) and `/readyz` (the dataplane matches the inputs).
//!
//! The agent records what it did in a shared [`Health`]; the dataplane's counters are read
//! from their pinned map at each scrape, so they are exact, not sampled. The server is a
//! minimal HTTP/1.1 responder (one request per connection): three fixed paths need no
//! framework.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{Map, MapData, PerCpuArray};
use bpf_maps::{map_names, Counter};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::watch,
};

use crate::source::ConnectionState;

/// What the agent has done, as the endpoints report it.
#[derive(Debug)]
pub struct Health {
    /// When the event loop last went round; stale means the agent is stuck.
    pub last_loop: Instant,
    /// How long the last sync took, and whether it succeeded.
    pub last_sync: Option<(Duration, bool)>,
    /// Syncs run, and failed.
    pub syncs: u64,
    /// Syncs that failed.
    pub sync_errors: u64,
    /// The last sync programmed the inputs as they were then, without error.
    pub in_sync: bool,
    /// Entries the agent programmed, per map.
    pub map_entries: BTreeMap<&'static str, usize>,
    /// Conntrack entries left after the last expiry sweep.
    pub conntrack_entries: Option<usize>,
    /// natOutgoing entries left after the last expiry sweep.
    pub nat_entries: Option<usize>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            last_loop: Instant::now(),
            last_sync: None,
            syncs: 0,
            sync_errors: 0,
            in_sync: false,
            map_entries: BTreeMap::new(),
            conntrack_entries: None,
            nat_entries: None,
        }
    }
}

/// The handle the agent updates.
pub type SharedHealth = Arc<Mutex<Health>>;

/// What the server needs besides [`Health`].
pub struct MetricsSources {
    /// The agent's records.
    pub health: SharedHealth,
    /// Where the pinned maps are (counters are read at each scrape).
    pub maps_dir: PathBuf,
    /// The datastore connection, when there is a datastore.
    pub datastore: Option<watch::Receiver<ConnectionState>>,
    /// BIRD's control socket, when this node speaks BGP.
    pub bird_socket: Option<PathBuf>,
    /// How long the loop may stay silent before `/healthz` fails.
    pub stale_after: Duration,
}

/// Binds `addr` and serves the endpoints for as long as the agent runs.
pub async fn serve(addr: SocketAddr, sources: MetricsSources) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for metrics on {addr} (--metrics-addr)"))?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    let sources = Arc::new(sources);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let sources = Arc::clone(&sources);
            tokio::spawn(async move {
                let mut request = vec![0u8; 2048];
                let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut request))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let response = respond(&request[..read], &sources).await;
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(())
}

async fn respond(request: &[u8], sources: &Arc<MetricsSources>) -> String {
    let line = String::from_utf8_lossy(request);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" {
        return reply(405, "text/plain", "only GET is served\n");
    }
    match path {
        "/metrics" => {
            let sources = Arc::clone(sources);
            // Reading maps and BIRD's socket blocks: off the event loop.
            match tokio::task::spawn_blocking(move || render(&sources)).await {
                Ok(body) => reply(200, "text/plain; version=0.0.4", &body),
                Err(error) => reply(500, "text/plain", &format!("{error}\n")),
            }
        }
        "/healthz" => {
            let age = lock(&sources.health).last_loop.elapsed();
            if age <= sources.stale_after {
                reply(200, "text/plain", "ok\n")
            } else {
                reply(
                    503,
                    "text/plain",
                    &format!(
                        "the agent's loop has not run for {:.1} s\n",
                        age.as_secs_f64()
                    ),
                )
            }
        }
        "/readyz" => match not_ready(sources) {
            None => reply(200, "text/plain", "ready\n"),
            Some(reason) => reply(503, "text/plain", &format!("{reason}\n")),
        },
        _ => reply(404, "text/plain", "try /metrics, /healthz or /readyz\n"),
    }
}

/// Why the node is not ready, or `None`: the last sync programmed the latest inputs and the
/// datastore (if any) is connected.
fn not_ready(sources: &MetricsSources) -> Option<String> {
    let health = lock(&sources.health);
    if health.syncs == 0 {
        return Some("not programmed yet (waiting for the first complete inputs)".into());
    }
    if !health.in_sync {
        return Some("the last sync failed: the dataplane may not match the inputs".into());
    }
    if let Some(state) = &sources.datastore {
        let state = state.borrow();
        if !matches!(*state, ConnectionState::Connected) {
            return Some(format!("datastore: {}", *state));
        }
    }
    None
}

fn lock(health: &SharedHealth) -> std::sync::MutexGuard<'_, Health> {
    health
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn reply(status: u16, content_type: &str, body: &str) -> String {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The Prometheus text exposition of everything known.
pub fn render(sources: &MetricsSources) -> String {
    let mut out = String::new();
    let counters = read_counters(&sources.maps_dir);
    metric(
        &mut out,
        "tortie_packets_total",
        "counter",
        "Packets by what the dataplane did with them (forwarded, passed to the host, ...).",
    );
    for (counter, value) in counters.iter().filter(|(c, _)| !c.is_drop()) {
        let _ = writeln!(
            out,
            "tortie_packets_total{{counter=\"{}\"}} {value}",
            counter.name()
        );
    }
    metric(
        &mut out,
        "tortie_drops_total",
        "counter",
        "Packets dropped, by reason (tortiectl flows shows each one).",
    );
    for (counter, value) in counters.iter().filter(|(c, _)| c.is_drop()) {
        let reason = counter.name().trim_start_matches("drop_");
        let _ = writeln!(out, "tortie_drops_total{{reason=\"{reason}\"}} {value}");
    }

    iface_metrics(&mut out, &sources.maps_dir);
    let health = lock(&sources.health);
    metric(
        &mut out,
        "tortie_map_entries",
        "gauge",
        "Entries the agent programmed into each map.",
    );
    for (map, entries) in &health.map_entries {
        let _ = writeln!(out, "tortie_map_entries{{map=\"{map}\"}} {entries}");
    }
    if let Some(entries) = health.conntrack_entries {
        metric(
            &mut out,
            "tortie_conntrack_entries",
            "gauge",
            "Tracked connections after the last expiry sweep.",
        );
        let _ = writeln!(out, "tortie_conntrack_entries {entries}");
    }
    if let Some(entries) = health.nat_entries {
        metric(
            &mut out,
            "tortie_nat_entries",
            "gauge",
            "natOutgoing entries after the last expiry sweep.",
        );
        let _ = writeln!(out, "tortie_nat_entries {entries}");
    }
    metric(
        &mut out,
        "tortie_syncs_total",
        "counter",
        "Dataplane syncs run.",
    );
    let _ = writeln!(out, "tortie_syncs_total {}", health.syncs);
    metric(
        &mut out,
        "tortie_sync_errors_total",
        "counter",
        "Dataplane syncs that failed (the next one retries).",
    );
    let _ = writeln!(out, "tortie_sync_errors_total {}", health.sync_errors);
    if let Some((duration, _)) = health.last_sync {
        metric(
            &mut out,
            "tortie_last_sync_seconds",
            "gauge",
            "How long the last dataplane sync took.",
        );
        let _ = writeln!(
            out,
            "tortie_last_sync_seconds {:.6}",
            duration.as_secs_f64()
        );
    }
    drop(health);
    metric(
        &mut out,
        "tortie_ready",
        "gauge",
        "1 when the dataplane matches the inputs (what /readyz reports).",
    );
    let _ = writeln!(
        out,
        "tortie_ready {}",
        u8::from(not_ready(sources).is_none())
    );
    if let Some(state) = &sources.datastore {
        metric(
            &mut out,
            "tortie_datastore_connected",
            "gauge",
            "1 while the datastore is listed and watched.",
        );
        let connected = matches!(*state.borrow(), ConnectionState::Connected);
        let _ = writeln!(out, "tortie_datastore_connected {}", u8::from(connected));
    }
    if let Some(socket) = &sources.bird_socket {
        bgp_metrics(&mut out, socket);
    }
    out
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Each counter summed over CPUs; empty if the map cannot be read.
fn read_counters(maps_dir: &std::path::Path) -> Vec<(Counter, u64)> {
    let counters = MapData::from_pin(maps_dir.join(map_names::COUNTERS))
        .ok()
        .and_then(|data| Map::from_map_data(data).ok())
        .and_then(|map| PerCpuArray::<MapData, u64>::try_from(map).ok());
    let Some(counters) = counters else {
        return Vec::new();
    };
    Counter::ALL
        .iter()
        .filter_map(|counter| {
            let per_cpu = counters.get(&(*counter as u32), 0).ok()?;
            Some((*counter, per_cpu.iter().sum()))
        })
        .collect()
}

/// Packets, bytes and drops per interface and hook, summed over CPUs: each programmed
/// interface's statistics slot (from `TORTIE_IFACES`) read in `TORTIE_IFSTATS`.
fn iface_metrics(out: &mut String, maps_dir: &std::path::Path) {
    use bpf_maps::{
        events::{iface_stats_index, IfaceStats, NO_STATS_SLOT},
        iface_flags, IfaceKey, IfaceValue,
    };
    let open = |name: &str| {
        MapData::from_pin(maps_dir.join(name))
            .ok()
            .and_then(|data| Map::from_map_data(data).ok())
    };
    let stats = open(map_names::IFACE_STATS)
        .and_then(|map| PerCpuArray::<MapData, IfaceStats>::try_from(map).ok());
    let ifaces = open(map_names::IFACES)
        .and_then(|map| aya::maps::HashMap::<MapData, IfaceKey, IfaceValue>::try_from(map).ok());
    let (Some(stats), Some(ifaces)) = (stats, ifaces) else {
        return;
    };
    let mut rows: BTreeMap<(String, &'static str), (u64, u64, u64)> = BTreeMap::new();
    for (ifindex, iface) in ifaces.iter().filter_map(Result::ok) {
        if iface.stats_slot == NO_STATS_SLOT {
            continue;
        }
        let name = nix::net::if_::if_indextoname(ifindex)
            .ok()
            .and_then(|name| name.into_string().ok())
            .unwrap_or_else(|| ifindex.to_string());
        let directions = if iface.flags & iface_flags::HOST_UPLINK != 0 {
            ["from-fabric", "to-fabric"]
        } else {
            ["from-pod", "to-pod"]
        };
        for (egress, direction) in [(false, directions[0]), (true, directions[1])] {
            let Ok(per_cpu) = stats.get(&iface_stats_index(iface.stats_slot, egress), 0) else {
                continue;
            };
            let row = rows.entry((name.clone(), direction)).or_default();
            for cpu in per_cpu.iter() {
                row.0 += cpu.packets;
                row.1 += cpu.bytes;
                row.2 += cpu.drops;
            }
        }
    }
    for (name, help, pick) in [
        (
            "tortie_iface_packets_total",
            "Packets the programs handled, per interface and hook.",
            0usize,
        ),
        (
            "tortie_iface_bytes_total",
            "Bytes the programs handled, per interface and hook.",
            1,
        ),
        (
            "tortie_iface_drops_total",
            "Packets the programs dropped, per interface and hook (reasons: tortie_drops_total).",
            2,
        ),
    ] {
        metric(out, name, "counter", help);
        for ((iface, direction), values) in &rows {
            let value = [values.0, values.1, values.2][pick];
            let _ = writeln!(
                out,
                "{name}{{iface=\"{iface}\",hook=\"{direction}\"}} {value}"
            );
        }
    }
}

/// BIRD's state and its sessions by BGP state.
fn bgp_metrics(out: &mut String, socket: &std::path::Path) {
    let sessions = tortie_bgp::BirdClient::connect_with_timeout(socket, Duration::from_secs(2))
        .ok()
        .and_then(|mut client| tortie_bgp::sessions(&mut client).ok());
    metric(
        out,
        "tortie_bird_up",
        "gauge",
        "1 when BIRD answers on its control socket.",
    );
    let _ = writeln!(out, "tortie_bird_up {}", u8::from(sessions.is_some()));
    let Some(sessions) = sessions else { return };
    metric(
        out,
        "tortie_bgp_sessions",
        "gauge",
        "BGP sessions by state.",
    );
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for session in &sessions {
        *by_state.entry(session.bgp_state.to_string()).or_default() += 1;
    }
    for (state, count) in by_state {
        let _ = writeln!(out, "tortie_bgp_sessions{{state=\"{state}\"}} {count}");
    }
}
