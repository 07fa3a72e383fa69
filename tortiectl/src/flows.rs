//! `tortiectl flows`: the packets the dataplane dropped on this node, and why, read from the
//! `TORTIE_EVENTS` ring buffer like a flow log.
//!
//! Reading consumes the events (a ring buffer has one reader position): run one `flows` per
//! node at a time. Without `--follow` it prints what is buffered and exits.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData, RingBuf};
use bpf_maps::{
    events::{event_kind, hook, l3, FlowEvent, RuleName},
    map_names,
    pins::DEFAULT_ROOT,
    Counter, IfaceValue,
};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::bpf::{ifname, maps::PinnedMaps, table::Table};

/// `tortiectl flows …`.
#[derive(Debug, Args)]
pub struct FlowsArgs {
    /// Pin root of the node's tortie maps (a lab node's is /sys/fs/bpf/tortie/<lab>/<node>).
    #[arg(long, env = "TORTIE_PIN_ROOT", default_value = DEFAULT_ROOT)]
    pin_root: PathBuf,
    /// Keep printing events as they come (until interrupted).
    #[arg(short, long)]
    follow: bool,
    /// Only flows from or to this pod: its IP, its host-side interface, or `namespace/name`
    /// (the interface name Calico derives from it).
    #[arg(long)]
    pod: Option<String>,
    /// Only these verdicts (the dataplane reports drops).
    #[arg(long, value_enum, default_value_t = VerdictFilter::Drop)]
    verdict: VerdictFilter,
    /// Stop after this many seconds of --follow (default: never).
    #[arg(long)]
    timeout: Option<u64>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = FlowsOutput::Table)]
    output: FlowsOutput,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum VerdictFilter {
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FlowsOutput {
    Table,
    /// One JSON object per line.
    Json,
}

/// One reported packet, as printed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowRow {
    /// Monotonic time of the packet (seconds since boot).
    pub time: f64,
    /// `drop`.
    pub verdict: &'static str,
    /// Why: the counter name (`policy_denied`, `spoofed_source`, ...).
    pub reason: String,
    /// Where: `from-pod`, `to-pod`, `from-fabric`, `to-fabric`.
    pub hook: &'static str,
    /// The interface the program ran on.
    pub iface: String,
    /// `tcp`, `udp`, `sctp`, `icmp` or the protocol number.
    pub protocol: String,
    /// Source address and port.
    pub src: String,
    /// Destination address and port (ICMP: type/code).
    pub dst: String,
    /// For policy drops: the rule id and what it is.
    pub rule: Option<String>,
    /// Bytes on the wire.
    pub len: u32,
}

/// What identifies the pod asked for.
struct PodFilter {
    ifindex: Option<u32>,
    ip: Option<[u8; 4]>,
}

/// Runs `tortiectl flows`; prints as it goes.
pub fn run(args: &FlowsArgs) -> Result<()> {
    let maps = PinnedMaps::locate(&args.pin_root)?;
    let (mut ring, _) = maps.open_typed::<RingBuf<MapData>>(map_names::EVENTS, "ring buffer")?;
    let names = rule_names(&maps);
    let filter = args
        .pod
        .as_deref()
        .map(|pod| pod_filter(&maps, pod))
        .transpose()?;
    let started = Instant::now();
    let deadline = args.timeout.map(Duration::from_secs);
    let mut printed = 0usize;
    if args.output == FlowsOutput::Table && !args.follow {
        let mut table = Table::new(&HEADERS);
        while let Some(item) = ring.next() {
            if let Some(row) = decode(&item, &names, filter.as_ref()) {
                table.push(cells(&row));
            }
        }
        if table.is_empty() {
            println!("no dropped packets reported since the last read");
        } else {
            print!("{}", table.render());
        }
        return Ok(());
    }
    if args.output == FlowsOutput::Table {
        println!("{}", HEADERS.join("  "));
    }
    loop {
        let mut seen = false;
        while let Some(item) = ring.next() {
            seen = true;
            let Some(row) = decode(&item, &names, filter.as_ref()) else {
                continue;
            };
            match args.output {
                FlowsOutput::Json => println!("{}", serde_json::to_string(&row)?),
                FlowsOutput::Table => println!("{}", cells(&row).join("  ")),
            }
            printed += 1;
        }
        if !args.follow || deadline.is_some_and(|limit| started.elapsed() >= limit) {
            break;
        }
        if !seen {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if printed == 0 && args.output == FlowsOutput::Table {
        println!("no dropped packets reported");
    }
    Ok(())
}

const HEADERS: [&str; 9] = [
    "TIME",
    "VERDICT",
    "REASON",
    "WHERE",
    "IFACE",
    "PROTO",
    "SOURCE",
    "DESTINATION",
    "RULE",
];

fn cells(row: &FlowRow) -> Vec<String> {
    vec![
        format!("{:.6}", row.time),
        row.verdict.into(),
        row.reason.clone(),
        row.hook.into(),
        row.iface.clone(),
        row.protocol.clone(),
        row.src.clone(),
        row.dst.clone(),
        row.rule.clone().unwrap_or_else(|| "-".into()),
    ]
}

/// Rule id → text, from `TORTIE_RULENAME` (empty if the map cannot be read).
fn rule_names(maps: &PinnedMaps) -> BTreeMap<u32, String> {
    let Ok((map, _)) =
        maps.open_typed::<HashMap<MapData, u32, RuleName>>(map_names::RULE_NAMES, "hash")
    else {
        return BTreeMap::new();
    };
    map.iter()
        .filter_map(Result::ok)
        .map(|(rule, name)| (rule, name.as_str().to_string()))
        .collect()
}

fn pod_filter(maps: &PinnedMaps, pod: &str) -> Result<PodFilter> {
    if let Ok(ip) = pod.parse::<Ipv4Addr>() {
        return Ok(PodFilter {
            ifindex: None,
            ip: Some(ip.octets()),
        });
    }
    let iface = match pod.split_once('/') {
        Some((namespace, name)) => {
            tortie_resources::workload_endpoint::host_iface_name(namespace, name)
        }
        None => pod.to_string(),
    };
    let ifindex = nix::net::if_::if_nametoindex(iface.as_str())
        .with_context(|| format!("no interface {iface} on this node for pod {pod}"))?;
    let (ifaces, _) =
        maps.open_typed::<HashMap<MapData, u32, IfaceValue>>(map_names::IFACES, "hash")?;
    let ip = ifaces.get(&ifindex, 0).ok().map(|value| value.ipv4);
    Ok(PodFilter {
        ifindex: Some(ifindex),
        ip,
    })
}

/// The row of one ring-buffer record, if it is an event that passes `filter`.
fn decode(
    bytes: &[u8],
    names: &BTreeMap<u32, String>,
    filter: Option<&PodFilter>,
) -> Option<FlowRow> {
    if bytes.len() < std::mem::size_of::<FlowEvent>() {
        return None;
    }
    // SAFETY: FlowEvent is plain old data of the size checked above; read unaligned.
    let event: FlowEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if event.kind != event_kind::DROP {
        return None;
    }
    if let Some(filter) = filter {
        let by_iface = filter.ifindex == Some(event.ifindex);
        let by_ip = filter
            .ip
            .is_some_and(|ip| ip == event.src || ip == event.dst);
        if !by_iface && !by_ip {
            return None;
        }
    }
    Some(row_of(&event, names))
}

/// The printed form of `event`.
pub fn row_of(event: &FlowEvent, names: &BTreeMap<u32, String>) -> FlowRow {
    let reason = Counter::ALL
        .iter()
        .find(|counter| **counter as u32 == event.reason)
        .map_or_else(
            || format!("reason {}", event.reason),
            |c| c.name().to_string(),
        );
    let reason = reason.strip_prefix("drop_").unwrap_or(&reason).to_string();
    let policy_drop = event.reason == Counter::DropPolicyDenied as u32
        || event.reason == Counter::DropPolicyRevoked as u32;
    let (protocol, ported) = match (event.l3, event.protocol) {
        (l3::IPV6, _) => ("ipv6".to_string(), false),
        (l3::ARP, _) => ("arp".to_string(), false),
        (l3::OTHER, _) => ("-".to_string(), false),
        (_, 6) => ("tcp".to_string(), true),
        (_, 17) => ("udp".to_string(), true),
        (_, 132) => ("sctp".to_string(), true),
        (_, 1) => ("icmp".to_string(), false),
        (_, other) => (other.to_string(), false),
    };
    let addressed = event.l3 == l3::IPV4;
    let endpoint = |addr: [u8; 4], port: u16| {
        let ip = Ipv4Addr::from(addr);
        if !addressed {
            "-".to_string()
        } else if ported {
            format!("{ip}:{port}")
        } else {
            ip.to_string()
        }
    };
    let mut dst = endpoint(event.dst, event.dst_port);
    if addressed && event.protocol == 1 {
        let _ = write!(
            dst,
            " type {} code {}",
            event.dst_port >> 8,
            event.dst_port & 0xff
        );
    }
    FlowRow {
        time: event.timestamp_ns as f64 / 1e9,
        verdict: "drop",
        reason,
        hook: match event.hook {
            hook::FROM_WORKLOAD => "from-pod",
            hook::TO_WORKLOAD => "to-pod",
            hook::FROM_HOST_IFACE => "from-fabric",
            hook::TO_HOST_IFACE => "to-fabric",
            _ => "-",
        },
        iface: ifname(event.ifindex).unwrap_or_else(|| event.ifindex.to_string()),
        protocol,
        src: endpoint(event.src, event.src_port),
        dst,
        rule: policy_drop.then(|| match names.get(&event.rule) {
            Some(name) => format!("{}: {name}", event.rule),
            None => event.rule.to_string(),
        }),
        len: event.len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_drop_names_its_rule_and_ports() {
        let event = FlowEvent {
            timestamp_ns: 1_500_000_000,
            kind: event_kind::DROP,
            hook: hook::FROM_HOST_IFACE,
            l3: l3::IPV4,
            protocol: 6,
            reason: Counter::DropPolicyDenied as u32,
            ifindex: 0,
            rule: 17,
            src: [10, 65, 0, 1],
            dst: [10, 65, 1, 2],
            src_port: 40000,
            dst_port: 80,
            len: 74,
        };
        let names = BTreeMap::from([(17, "Deny NetworkPolicy shop/web spec.ingress[0]".into())]);
        let row = row_of(&event, &names);
        assert_eq!(row.reason, "policy_denied");
        assert_eq!(row.hook, "from-fabric");
        assert_eq!(row.src, "10.65.0.1:40000");
        assert_eq!(row.dst, "10.65.1.2:80");
        assert_eq!(
            row.rule.as_deref(),
            Some("17: Deny NetworkPolicy shop/web spec.ingress[0]")
        );
    }

    #[test]
    fn other_drops_carry_no_rule_and_icmp_shows_type_and_code() {
        let event = FlowEvent {
            kind: event_kind::DROP,
            hook: hook::FROM_WORKLOAD,
            l3: l3::IPV4,
            protocol: 1,
            reason: Counter::DropSpoofedSource as u32,
            dst_port: 8 << 8,
            src: [10, 0, 0, 9],
            dst: [10, 65, 0, 2],
            ..FlowEvent::default()
        };
        let row = row_of(&event, &BTreeMap::new());
        assert_eq!(row.reason, "spoofed_source");
        assert_eq!(row.rule, None);
        assert_eq!(row.dst, "10.65.0.2 type 8 code 0");

        // Frames other than IPv4 carry no addresses to show.
        let ipv6 = FlowEvent {
            l3: l3::IPV6,
            src: [0x20, 0x01, 0x0d, 0xb8],
            reason: Counter::DropUnsupported as u32,
            ..event
        };
        let row = row_of(&ipv6, &BTreeMap::new());
        assert_eq!((row.protocol.as_str(), row.src.as_str()), ("ipv6", "-"));
    }
}
