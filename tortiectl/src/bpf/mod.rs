//! `tortiectl bpf ...`: the dataplane's pinned maps on this node, decoded.
//!
//! Every view reads the maps tortie-agent pins under `<pin root>/maps/v<layout>/`; only
//! `conntrack flush` writes. Decoding and formatting live in pure functions per view
//! ([`routes`], [`counters`], [`conntrack`], [`nat`], [`policy`]); this module opens the maps,
//! reads them and picks the output format.

pub mod conntrack;
pub mod counters;
pub mod format;
pub mod maps;
pub mod nat;
pub mod policy;
pub mod routes;
pub mod table;

use std::{
    collections::{BTreeMap, HashMap as StdHashMap},
    hash::Hash,
    path::PathBuf,
};

use anyhow::{Context, Result};
use aya::{
    maps::{lpm_trie::Key, HashMap, LpmTrie, MapData, MapError, PerCpuArray},
    Pod,
};
use bpf_maps::{
    map_names,
    pins::DEFAULT_ROOT,
    policy::{CtKey, CtValue, IpCacheValue, PolicyKey, PolicyValue, POLICY_PREFIX_FULL},
    IfaceKey, IfaceValue, NatKey, NatValue, RouteAddr, RouteValue,
};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use self::{
    conntrack::CtStats,
    maps::{read_error, BpfError, PinnedMaps},
    table::Table,
};

/// `tortiectl bpf` arguments.
#[derive(Args, Debug)]
pub struct BpfArgs {
    /// Pin root of the node's tortie maps (a lab node's is /sys/fs/bpf/tortie/<lab>/<node>).
    #[arg(long, env = "TORTIE_PIN_ROOT", default_value = DEFAULT_ROOT, global = true)]
    pub pin_root: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// What to show.
    #[command(subcommand)]
    pub command: BpfCommand,
}

/// Output formats of `tortiectl bpf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts (field names are stable).
    Json,
}

/// `tortiectl bpf` subcommands.
#[derive(Subcommand, Debug)]
pub enum BpfCommand {
    /// Routes: prefix, flags, next hop, interface, tunnel MAC.
    Routes,
    /// Interfaces the programs know: flags, workload address, MACs.
    #[command(alias = "ifstate")]
    Endpoints,
    /// Packet counters summed over CPUs (non-zero ones unless --all); with --rules, packets
    /// decided per policy rule instead.
    Counters {
        /// `dump` (the only action; it may be left out).
        #[arg(value_parser = ["dump"])]
        action: Option<String>,
        /// Show zero counters too.
        #[arg(long)]
        all: bool,
        /// Per-rule hit counts (`TORTIE_RULEHITS`) instead of the packet counters.
        #[arg(long)]
        rules: bool,
    },
    /// Tracked flows.
    Conntrack {
        /// What to do.
        #[command(subcommand)]
        command: ConntrackCommand,
    },
    /// natOutgoing translations (two entries per flow).
    Nat,
    /// Address prefixes and the identity policy sees for them.
    Ipcache,
    /// Compiled policy verdicts with per-rule hits, of one endpoint or all:
    /// `policy [dump] [POD|IFACE]`.
    Policy {
        /// `[dump] [ENDPOINT]`: a pod as `namespace/name` (or `name` in `default`), a `cali…`
        /// interface name or an interface index; every endpoint when omitted.
        #[arg(num_args = 0..=2, value_name = "dump] [POD|IFACE")]
        args: Vec<String>,
    },
}

/// `tortiectl bpf conntrack` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConntrackCommand {
    /// Every tracked flow: state, age, idle time, packets.
    Dump,
    /// Entries by protocol and state, and how full the map is.
    Stats,
    /// Delete every entry. Live flows are judged by policy again on their next packet (TCP
    /// resumes as PICKED_UP); natOutgoing translations are kept.
    Flush,
}

/// Runs one `tortiectl bpf` command and returns what to print.
pub fn run(args: &BpfArgs) -> Result<String> {
    let maps = PinnedMaps::locate(&args.pin_root)?;
    let format = args.output;
    Ok(match &args.command {
        BpfCommand::Routes => {
            let rows = read_routes(&maps)?;
            render(&rows, format, routes::routes_table)?
        }
        BpfCommand::Endpoints => {
            let rows = read_endpoints(&maps)?;
            render(&rows, format, routes::endpoints_table)?
        }
        BpfCommand::Counters {
            all, rules: true, ..
        } => {
            let sums = read_per_cpu_sums(&maps, map_names::RULE_HITS)?;
            let rows = counters::rule_hit_rows(&sums, *all);
            render(&rows, format, counters::rule_hits_table)?
        }
        BpfCommand::Counters { all, .. } => {
            let sums = read_per_cpu_sums(&maps, map_names::COUNTERS)?;
            let rows = counters::counter_rows(&sums, *all);
            render(&rows, format, counters::counters_table)?
        }
        BpfCommand::Conntrack { command } => run_conntrack(&maps, command, format)?,
        BpfCommand::Nat => {
            let (map, capacity) =
                maps.open_typed::<HashMap<MapData, NatKey, NatValue>>(map_names::NAT, "LRU hash")?;
            let now_ns = monotonic_now_ns()?;
            let mut entries: Vec<(NatKey, NatValue)> = snapshot(&map, capacity, map_names::NAT)?
                .into_iter()
                .collect();
            entries
                .sort_by_key(|(k, v)| (v.flags, k.protocol, k.src, k.src_port, k.dst, k.dst_port));
            let rows: Vec<nat::NatRow> = entries
                .iter()
                .map(|(key, value)| nat::NatRow::new(key, value, now_ns))
                .collect();
            render(&rows, format, nat::nat_table)?
        }
        BpfCommand::Ipcache => {
            let rows = read_ipcache(&maps)?;
            render(&rows, format, policy::ipcache_table)?
        }
        BpfCommand::Policy { args } => {
            let endpoint = policy_target(args)?
                .map(|target| resolve_endpoint(&target))
                .transpose()?;
            let rows = read_policy(&maps, endpoint)?;
            render(&rows, format, policy::policy_table)?
        }
    })
}

fn run_conntrack(maps: &PinnedMaps, command: &ConntrackCommand, format: Format) -> Result<String> {
    let (mut map, capacity) =
        maps.open_typed::<HashMap<MapData, CtKey, CtValue>>(map_names::CONNTRACK, "LRU hash")?;
    match command {
        ConntrackCommand::Dump => {
            let now_ns = monotonic_now_ns()?;
            let raw: Vec<(CtKey, CtValue)> = snapshot(&map, capacity, map_names::CONNTRACK)?
                .into_iter()
                .collect();
            let entries = conntrack::entries(&raw, now_ns);
            render(&entries, format, conntrack::dump_table)
        }
        ConntrackCommand::Stats => {
            let raw: Vec<(CtKey, CtValue)> = snapshot(&map, capacity, map_names::CONNTRACK)?
                .into_iter()
                .collect();
            let stats = CtStats::new(&raw, capacity);
            match format {
                Format::Table => Ok(stats.render()),
                Format::Json => json(&stats),
            }
        }
        ConntrackCommand::Flush => {
            let deleted = flush(&mut map, capacity)?;
            match format {
                Format::Table => Ok(format!("deleted {deleted} conntrack entries\n")),
                Format::Json => json(&serde_json::json!({ "deleted": deleted })),
            }
        }
    }
}

fn render<R: Serialize>(rows: &[R], format: Format, table: fn(&[R]) -> Table) -> Result<String> {
    match format {
        Format::Table => Ok(table(rows).render()),
        Format::Json => json(&rows),
    }
}

fn json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let mut text = serde_json::to_string_pretty(value).context("encoding JSON")?;
    text.push('\n');
    Ok(text)
}

/// The name of interface `index`, if it exists.
pub fn ifname(index: u32) -> Option<String> {
    nix::net::if_::if_indextoname(index)
        .ok()
        .and_then(|name| name.into_string().ok())
}

/// The endpoint of `policy [dump] [ENDPOINT]`.
fn policy_target(args: &[String]) -> Result<Option<String>> {
    match args {
        [] => Ok(None),
        [dump] if dump == "dump" => Ok(None),
        [dump, target] if dump == "dump" => Ok(Some(target.clone())),
        [target] => Ok(Some(target.clone())),
        _ => anyhow::bail!(
            "expected `policy [dump] [POD|IFACE]`, got `policy {}`",
            args.join(" ")
        ),
    }
}

/// An interface index from an index, an interface name, or a pod (`namespace/name`, or a
/// bare name in `default`), whose host-side interface has Calico's name.
fn resolve_endpoint(text: &str) -> Result<u32> {
    if let Ok(index) = text.parse::<u32>() {
        return Ok(index);
    }
    if let Ok(index) = nix::net::if_::if_nametoindex(text) {
        return Ok(index);
    }
    let (namespace, pod) = text.split_once('/').unwrap_or(("default", text));
    let iface = tortie_resources::workload_endpoint::host_iface_name(namespace, pod);
    nix::net::if_::if_nametoindex(iface.as_str()).with_context(|| {
        format!(
            "no interface named {text} on this node, and no pod {namespace}/{pod} here (its \
             interface would be {iface}); give an interface index to see the entries of an \
             interface that is gone (`tortiectl bpf endpoints` lists them)"
        )
    })
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_now_ns() -> Result<u64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .context("reading CLOCK_MONOTONIC")?;
    // Monotonic time is never negative.
    Ok((now.tv_sec() as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec() as u64))
}

fn read_routes(maps: &PinnedMaps) -> Result<Vec<routes::RouteRow>, BpfError> {
    let (trie, _) =
        maps.open_typed::<LpmTrie<MapData, RouteAddr, RouteValue>>(map_names::ROUTES, "LPM trie")?;
    let mut entries = Vec::new();
    for entry in trie.iter() {
        let (key, value) = entry.map_err(read_error(map_names::ROUTES))?;
        entries.push((format::prefix(key.data(), key.prefix_len()), value));
    }
    entries.sort_by_key(|(prefix, _)| *prefix);
    Ok(entries
        .iter()
        .map(|(prefix, value)| routes::RouteRow::new(*prefix, value, &ifname))
        .collect())
}

fn read_endpoints(maps: &PinnedMaps) -> Result<Vec<routes::EndpointRow>, BpfError> {
    let (map, capacity) =
        maps.open_typed::<HashMap<MapData, IfaceKey, IfaceValue>>(map_names::IFACES, "hash")?;
    let entries: BTreeMap<IfaceKey, IfaceValue> = snapshot(&map, capacity, map_names::IFACES)?
        .into_iter()
        .collect();
    Ok(entries
        .iter()
        .map(|(index, value)| routes::EndpointRow::new(*index, value, &ifname))
        .collect())
}

fn read_ipcache(maps: &PinnedMaps) -> Result<Vec<policy::IpCacheRow>, BpfError> {
    let (addrs, _) = maps
        .open_typed::<HashMap<MapData, [u8; 4], IpCacheValue>>(map_names::IPCACHE_ADDRS, "hash")?;
    let (trie, _) =
        maps.open_typed::<LpmTrie<MapData, [u8; 4], IpCacheValue>>(map_names::IPCACHE, "LPM trie")?;
    let mut rows = Vec::new();
    for entry in addrs.iter() {
        let (addr, value) = entry.map_err(read_error(map_names::IPCACHE_ADDRS))?;
        rows.push(policy::IpCacheRow::new(addr, 32, value.identity));
    }
    for entry in trie.iter() {
        let (key, value) = entry.map_err(read_error(map_names::IPCACHE))?;
        rows.push(policy::IpCacheRow::new(
            key.data(),
            key.prefix_len(),
            value.identity,
        ));
    }
    rows.sort_by_key(|row| row.prefix);
    Ok(rows)
}

fn read_policy(maps: &PinnedMaps, endpoint: Option<u32>) -> Result<Vec<policy::PolicyRow>> {
    let (exact, _) = maps
        .open_typed::<HashMap<MapData, PolicyKey, PolicyValue>>(map_names::POLICY_EXACT, "hash")?;
    let (trie, _) =
        maps.open_typed::<LpmTrie<MapData, PolicyKey, PolicyValue>>(map_names::POLICY, "LPM trie")?;
    let mut raw = Vec::new();
    for entry in exact.iter() {
        let (key, value) = entry.map_err(read_error(map_names::POLICY_EXACT))?;
        raw.push((POLICY_PREFIX_FULL, key, value));
    }
    for entry in trie.iter() {
        let (key, value): (Key<PolicyKey>, PolicyValue) =
            entry.map_err(read_error(map_names::POLICY))?;
        raw.push((key.prefix_len(), key.data(), value));
    }
    let (hits_map, rule_slots) =
        maps.open_typed::<PerCpuArray<MapData, u64>>(map_names::RULE_HITS, "per-CPU array")?;
    // One read per rule the entries name, not per entry.
    let mut hits: BTreeMap<u32, u64> = BTreeMap::new();
    for (_, _, value) in &raw {
        if value.rule < rule_slots && !hits.contains_key(&value.rule) {
            let per_cpu = hits_map
                .get(&value.rule, 0)
                .map_err(read_error(map_names::RULE_HITS))?;
            hits.insert(value.rule, per_cpu.iter().sum());
        }
    }
    let hits_of = |rule: u32| hits.get(&rule).copied();
    Ok(policy::policy_rows(&raw, endpoint, &ifname, &hits_of))
}

/// Every slot of a per-CPU `u64` array, summed over CPUs.
fn read_per_cpu_sums(maps: &PinnedMaps, name: &'static str) -> Result<Vec<u64>, BpfError> {
    let (array, _) = maps.open_typed::<PerCpuArray<MapData, u64>>(name, "per-CPU array")?;
    array
        .iter()
        .map(|per_cpu| {
            per_cpu
                .map(|values| values.iter().sum())
                .map_err(read_error(name))
        })
        .collect()
}

/// Every entry of a hash map, deduplicated ([`bpf_maps::user::snapshot`]: a walk bounded by
/// `capacity`, as the programs may delete or evict entries under it).
fn snapshot<K: Pod + Eq + Hash, V: Pod>(
    map: &HashMap<MapData, K, V>,
    capacity: u32,
    name: &'static str,
) -> Result<StdHashMap<K, V>, BpfError> {
    bpf_maps::user::snapshot(map, capacity).map_err(read_error(name))
}

/// Deletes every conntrack entry; keys are collected first because deleting under the walk
/// restarts it.
fn flush(map: &mut HashMap<MapData, CtKey, CtValue>, capacity: u32) -> Result<usize, BpfError> {
    let keys: Vec<CtKey> = snapshot(map, capacity, map_names::CONNTRACK)?
        .into_keys()
        .collect();
    let mut deleted = 0;
    for key in keys {
        match map.remove(&key) {
            Ok(()) => deleted += 1,
            // Evicted or expired meanwhile.
            Err(MapError::KeyNotFound) => {}
            Err(source) => {
                return Err(BpfError::Access {
                    action: "deleting from",
                    name: map_names::CONNTRACK,
                    source: Box::new(source),
                })
            }
        }
    }
    Ok(deleted)
}
