//! `tortiectl flows`: the packets the dataplane dropped on this node, and why, read from the
//! `TORTIE_EVENTS` ring buffer like a flow log.
//!
//! Reading consumes the events (a ring buffer has one reader position): run one `flows` per
//! node at a time. Without `--follow` it prints what is buffered and exits.
//!
//! `--trace` also reports every packet from or to the chosen pods, whatever became of it,
//! for as long as the command runs: it writes their addresses with a deadline a few seconds
//! ahead and keeps moving the deadline; when it stops (or dies), tracing ends by itself.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, MapData, RingBuf};
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
    /// Also report every packet from or to the pod (--pod) or pods (--selector), not only
    /// drops, while the command runs (implies --follow).
    #[arg(long)]
    trace: bool,
    /// With --trace: the pods whose WorkloadEndpoints this Calico selector matches
    /// (`app == 'web'`), resolved through the datastore.
    #[arg(long, requires = "trace")]
    pub selector: Option<String>,
    /// Only these events (default: drops, or everything with --trace).
    #[arg(long, value_enum)]
    verdict: Option<VerdictFilter>,
    /// Stop after this many seconds of --follow (default: never).
    #[arg(long)]
    timeout: Option<u64>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = FlowsOutput::Table)]
    output: FlowsOutput,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum VerdictFilter {
    /// Dropped packets.
    Drop,
    /// Traced packets that went on.
    Pass,
    /// Both.
    All,
}

impl VerdictFilter {
    fn admits(self, kind: u8) -> bool {
        match self {
            VerdictFilter::Drop => kind == event_kind::DROP,
            VerdictFilter::Pass => kind == event_kind::TRACE,
            VerdictFilter::All => true,
        }
    }
}

/// How long a trace deadline reaches ahead; renewed every second while tracing.
const TRACE_LEASE_NS: u64 = 5_000_000_000;

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
    /// `drop`, or `pass` for a traced packet that went on.
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

/// Runs `tortiectl flows`; prints as it goes. `selected` are the addresses `--selector`
/// resolved to (the caller reads the datastore).
pub fn run(args: &FlowsArgs, selected: &[Ipv4Addr]) -> Result<()> {
    let maps = PinnedMaps::locate(&args.pin_root)?;
    let (mut ring, _) = maps.open_typed::<RingBuf<MapData>>(map_names::EVENTS, "ring buffer")?;
    let names = rule_names(&maps);
    let filter = args
        .pod
        .as_deref()
        .map(|pod| pod_filter(&maps, pod))
        .transpose()?;
    let verdicts = args.verdict.unwrap_or(if args.trace {
        VerdictFilter::All
    } else {
        VerdictFilter::Drop
    });
    let mut tracer = if args.trace {
        let mut addresses: Vec<[u8; 4]> = selected.iter().map(|ip| ip.octets()).collect();
        addresses.extend(filter.as_ref().and_then(|f| f.ip));
        if addresses.is_empty() {
            anyhow::bail!(
                "--trace needs pods to trace: give --pod (with an address the node knows) or \
                 --selector matching some WorkloadEndpoints"
            );
        }
        Some(Tracer::start(&maps, addresses)?)
    } else {
        None
    };
    let follow = args.follow || args.trace;
    let started = Instant::now();
    let deadline = args.timeout.map(Duration::from_secs);
    let mut printed = 0usize;
    if args.output == FlowsOutput::Table && !follow {
        let mut table = Table::new(&HEADERS);
        while let Some(item) = ring.next() {
            if let Some(row) = decode(&item, &names, filter.as_ref(), verdicts) {
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
        if let Some(tracer) = &mut tracer {
            tracer.renew()?;
        }
        while let Some(item) = ring.next() {
            seen = true;
            let Some(row) = decode(&item, &names, filter.as_ref(), verdicts) else {
                continue;
            };
            match args.output {
                FlowsOutput::Json => println!("{}", serde_json::to_string(&row)?),
                FlowsOutput::Table => println!("{}", cells(&row).join("  ")),
            }
            printed += 1;
        }
        if !follow || deadline.is_some_and(|limit| started.elapsed() >= limit) {
            break;
        }
        if !seen {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if printed == 0 && args.output == FlowsOutput::Table {
        println!("no packets reported");
    }
    if let Some(tracer) = tracer {
        tracer.stop();
    }
    Ok(())
}

/// The addresses being traced and the deadline that keeps them traced.
struct Tracer {
    addresses: Vec<[u8; 4]>,
    traced: HashMap<MapData, [u8; 4], u64>,
    until: Array<MapData, u64>,
    renewed: Option<Instant>,
}

impl Tracer {
    fn start(maps: &PinnedMaps, addresses: Vec<[u8; 4]>) -> Result<Self> {
        let (traced, _) =
            maps.open_typed::<HashMap<MapData, [u8; 4], u64>>(map_names::TRACE, "hash")?;
        let (until, _) = maps.open_typed::<Array<MapData, u64>>(map_names::TRACE_UNTIL, "array")?;
        let mut tracer = Self {
            addresses,
            traced,
            until,
            renewed: None,
        };
        tracer.renew()?;
        Ok(tracer)
    }

    /// Pushes the deadlines forward (at most once a second).
    fn renew(&mut self) -> Result<()> {
        if self
            .renewed
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return Ok(());
        }
        let deadline = crate::bpf::monotonic_now_ns()? + TRACE_LEASE_NS;
        for address in &self.addresses {
            self.traced
                .insert(address, deadline, 0)
                .with_context(|| format!("tracing {}", Ipv4Addr::from(*address)))?;
        }
        self.until
            .set(0, deadline, 0)
            .context("switching tracing on")?;
        self.renewed = Some(Instant::now());
        Ok(())
    }

    /// Ends tracing now instead of at the deadline.
    fn stop(mut self) {
        for address in &self.addresses {
            let _ = self.traced.remove(address);
        }
        let _ = self.until.set(0, 0, 0);
    }
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
    verdicts: VerdictFilter,
) -> Option<FlowRow> {
    if bytes.len() < std::mem::size_of::<FlowEvent>() {
        return None;
    }
    // SAFETY: FlowEvent is plain old data of the size checked above; read unaligned.
    let event: FlowEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if !verdicts.admits(event.kind) {
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
    let dropped = event.kind == event_kind::DROP;
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
        verdict: if dropped { "drop" } else { "pass" },
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
