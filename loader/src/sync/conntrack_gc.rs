//! Expiring idle flows from `TORTIE_CT` and `TORTIE_NAT`.
//!
//! The programs only record what they see (who opened a flow, SYN/FIN/RST per side, replies,
//! last activity); deciding when a flow is over is userspace's job, as in Calico's BPF
//! dataplane. Both maps are LRU hashes, so a full map never refuses a new flow, but without
//! expiry a closed flow would keep its entry until memory pressure evicts it: a port scan
//! could push out live flows, and a NAT entry would pin its source port for as long.
//!
//! # Calling it
//!
//! The collector opens its own handles on the pinned maps, so it does not care which maps
//! [`super::maps::DataplaneMaps`] took out of the [`aya::Ebpf`] object:
//!
//! ```no_run
//! # fn example(pin_root: &std::path::Path) -> anyhow::Result<()> {
//! use tortie::sync::{conntrack_gc::{ConntrackGc, CtTimeouts}, load};
//!
//! // Once, after `load::load_dataplane` has created (or reused) the pins:
//! let mut gc = ConntrackGc::open_pinned(&load::maps_dir(pin_root), CtTimeouts::default())?;
//! // Every `conntrack_gc::INTERVAL`:
//! let stats = gc.collect_now()?;
//! tracing::debug!(%stats, "conntrack swept");
//! # Ok(())
//! # }
//! ```
//!
//! A sweep costs two or three syscalls per entry (about a second for half a million flows) and
//! blocks meanwhile: from async code run it with `tokio::task::spawn_blocking` (the collector
//! is `Send`). Callers holding typed maps instead can use [`sweep_conntrack`], [`sweep_nat`]
//! and [`count_fragments`] directly; they accept any `HashMap<T: BorrowMut<MapData>, ..>`,
//! including one borrowed from `Ebpf::map_mut`.
//!
//! # Races with the programs
//!
//! Expired keys are collected first and deleted afterwards (deleting while walking a hash
//! makes the kernel's `get_next_key` restart from the first bucket). Before each delete the
//! entry is read again and judged again, so a flow that woke up since the walk is kept. What
//! remains is the window between that read and the delete; losing it costs what an LRU
//! eviction costs: the flow's next packet is judged by policy again (TCP resumes as
//! `PICKED_UP`), or a natOutgoing flow claims a new port.

use std::{
    borrow::{Borrow, BorrowMut},
    collections::HashMap as StdHashMap,
    fmt,
    hash::Hash,
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result};
use aya::{
    maps::{HashMap, IterableMap, Map, MapData, MapError},
    Pod,
};
use bpf_maps::{
    map_names, nat_flags,
    policy::{ct_flags, CtKey, CtValue, FragmentKey, FragmentValue},
    NatKey, NatValue,
};

/// How often the agent should sweep. Calico's BPF conntrack scanner also runs every 10 s: a
/// flow outlives its timeout by at most this much, and the LRU protects the capacity
/// meanwhile, so sweeping more often would only cost CPU.
pub const INTERVAL: Duration = Duration::from_secs(10);

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Idle time after which a flow is forgotten, by what the programs have seen of it.
///
/// The defaults follow Calico's (`BPFConntrackTimeouts`). Expiring a flow that was in fact
/// still alive is cheap: its next packet goes through policy again and, if still allowed, is
/// tracked anew. So each timeout only needs to outlast the quiet periods normal traffic has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtTimeouts {
    /// TCP that has not seen a reply yet (a SYN, or a scan).
    pub tcp_syn_sent: Duration,
    /// TCP with replies and no FIN/RST on both sides.
    pub tcp_established: Duration,
    /// TCP with a FIN from both sides.
    pub tcp_fins_seen: Duration,
    /// TCP after a RST.
    pub tcp_reset: Duration,
    /// UDP, which has no end-of-flow signal.
    pub udp: Duration,
    /// ICMP echo flows.
    pub icmp: Duration,
    /// Every other protocol.
    pub other: Duration,
}

impl Default for CtTimeouts {
    fn default() -> Self {
        Self {
            // A client retrying a SYN after 20 s simply gets judged by policy again; meanwhile
            // scans and SYN floods, which never get replies, free their entries quickly.
            tcp_syn_sent: Duration::from_secs(20),
            // Long enough for idle pooled connections (database, HTTP keep-alive); one idle
            // for longer is picked up again on its next packet.
            tcp_established: Duration::from_secs(60 * 60),
            // Covers TIME_WAIT-ish stragglers: the last ACK and retransmitted FINs.
            tcp_fins_seen: Duration::from_secs(30),
            // The flow is over; a short grace lets packets already in flight and retransmitted
            // RSTs through as part of it rather than as new flows.
            tcp_reset: Duration::from_secs(10),
            // Covers DNS retries and request/response protocols; streaming protocols send far
            // more often than this.
            udp: Duration::from_secs(60),
            // An echo reply follows its request within milliseconds, and ping sends every
            // second, so a live ping never goes quiet this long.
            icmp: Duration::from_secs(5),
            // GRE, ESP, SCTP...: the programs track no state for them, so be generous.
            other: Duration::from_secs(600),
        }
    }
}

/// What a tracked flow looks like to the collector; each class has its own timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlowClass {
    /// TCP without replies yet.
    TcpSynSent,
    /// TCP with replies, not closed.
    TcpEstablished,
    /// TCP with a FIN from both sides.
    TcpFinsSeen,
    /// TCP after a RST.
    TcpReset,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
    /// Any other protocol.
    Other,
}

impl FlowClass {
    /// Every class, in index order.
    pub const ALL: [FlowClass; 7] = [
        FlowClass::TcpSynSent,
        FlowClass::TcpEstablished,
        FlowClass::TcpFinsSeen,
        FlowClass::TcpReset,
        FlowClass::Udp,
        FlowClass::Icmp,
        FlowClass::Other,
    ];

    /// The class of a conntrack entry of `protocol`.
    pub fn of_conntrack(value: &CtValue, protocol: u8) -> Self {
        match protocol {
            IPPROTO_TCP => {
                let flags = value.flags;
                if flags & ct_flags::RST != 0 {
                    FlowClass::TcpReset
                } else if flags & ct_flags::FIN_A != 0 && flags & ct_flags::FIN_B != 0 {
                    FlowClass::TcpFinsSeen
                } else if flags & ct_flags::ESTABLISHED == 0 {
                    FlowClass::TcpSynSent
                } else {
                    FlowClass::TcpEstablished
                }
            }
            other => Self::of_protocol(other),
        }
    }

    /// The class of a natOutgoing entry. NAT entries carry no TCP state, so TCP counts as
    /// established: a NAT port is only recycled once the flow has been quiet that long.
    pub fn of_nat(protocol: u8) -> Self {
        match protocol {
            IPPROTO_TCP => FlowClass::TcpEstablished,
            other => Self::of_protocol(other),
        }
    }

    fn of_protocol(protocol: u8) -> Self {
        match protocol {
            IPPROTO_UDP => FlowClass::Udp,
            IPPROTO_ICMP => FlowClass::Icmp,
            _ => FlowClass::Other,
        }
    }

    /// How long a flow of this class may stay idle.
    pub fn timeout(self, timeouts: &CtTimeouts) -> Duration {
        match self {
            FlowClass::TcpSynSent => timeouts.tcp_syn_sent,
            FlowClass::TcpEstablished => timeouts.tcp_established,
            FlowClass::TcpFinsSeen => timeouts.tcp_fins_seen,
            FlowClass::TcpReset => timeouts.tcp_reset,
            FlowClass::Udp => timeouts.udp,
            FlowClass::Icmp => timeouts.icmp,
            FlowClass::Other => timeouts.other,
        }
    }

    /// Name for logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            FlowClass::TcpSynSent => "tcp-syn-sent",
            FlowClass::TcpEstablished => "tcp-established",
            FlowClass::TcpFinsSeen => "tcp-fins-seen",
            FlowClass::TcpReset => "tcp-reset",
            FlowClass::Udp => "udp",
            FlowClass::Icmp => "icmp",
            FlowClass::Other => "other",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Whether a conntrack entry of `protocol` has been idle longer than its class allows at
/// `now_ns` (`CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`). A `last_seen_ns` after
/// `now_ns` (a packet arrived after `now_ns` was read) counts as fresh.
pub fn expired(value: &CtValue, protocol: u8, now_ns: u64, timeouts: &CtTimeouts) -> bool {
    idle_longer_than(
        value.last_seen_ns,
        now_ns,
        FlowClass::of_conntrack(value, protocol).timeout(timeouts),
    )
}

fn idle_longer_than(last_seen_ns: u64, now_ns: u64, timeout: Duration) -> bool {
    let timeout_ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    now_ns.saturating_sub(last_seen_ns) > timeout_ns
}

/// Entry counts per [`FlowClass`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByClass([usize; FlowClass::ALL.len()]);

impl ByClass {
    /// Counts one more entry of `class`.
    pub fn add(&mut self, class: FlowClass) {
        self.0[class.index()] += 1;
    }

    /// Entries of `class`.
    pub fn get(&self, class: FlowClass) -> usize {
        self.0[class.index()]
    }

    /// Entries of every class.
    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }

    /// The classes with a non-zero count.
    pub fn iter(&self) -> impl Iterator<Item = (FlowClass, usize)> + '_ {
        FlowClass::ALL
            .into_iter()
            .map(|class| (class, self.get(class)))
            .filter(|(_, count)| *count > 0)
    }

    fn merge(&mut self, other: &ByClass) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

/// What one collection saw and removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Conntrack entries walked.
    pub conntrack_seen: usize,
    /// Conntrack entries deleted, by the class whose timeout they exceeded.
    pub conntrack_removed: ByClass,
    /// natOutgoing entries walked.
    pub nat_seen: usize,
    /// natOutgoing entries deleted, by the class whose timeout they exceeded.
    pub nat_removed: ByClass,
    /// Entries found expired but active again before their delete (kept).
    pub revived: usize,
    /// Fragment entries present (the LRU alone bounds them; counted for visibility).
    pub fragments: usize,
}

impl SweepStats {
    /// Adds the counts of `other`.
    pub fn merge(&mut self, other: &SweepStats) {
        self.conntrack_seen += other.conntrack_seen;
        self.conntrack_removed.merge(&other.conntrack_removed);
        self.nat_seen += other.nat_seen;
        self.nat_removed.merge(&other.nat_removed);
        self.revived += other.revived;
        self.fragments += other.fragments;
    }
}

impl fmt::Display for SweepStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let removed = |f: &mut fmt::Formatter<'_>, by_class: &ByClass| {
            write!(f, "{} expired", by_class.total())?;
            let mut classes = by_class.iter().peekable();
            if classes.peek().is_some() {
                let list: Vec<String> = classes
                    .map(|(class, count)| format!("{} {count}", class.name()))
                    .collect();
                write!(f, " ({})", list.join(", "))?;
            }
            Ok(())
        };
        write!(f, "conntrack {} seen, ", self.conntrack_seen)?;
        removed(f, &self.conntrack_removed)?;
        write!(f, "; nat {} seen, ", self.nat_seen)?;
        removed(f, &self.nat_removed)?;
        write!(
            f,
            "; {} revived; {} fragments",
            self.revived, self.fragments
        )
    }
}

/// Handles on the three maps the collector looks after.
pub struct ConntrackGc {
    conntrack: HashMap<MapData, CtKey, CtValue>,
    nat: HashMap<MapData, NatKey, NatValue>,
    fragments: HashMap<MapData, FragmentKey, FragmentValue>,
    timeouts: CtTimeouts,
}

// `collect` is meant for `spawn_blocking`.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<ConntrackGc>()
};

impl ConntrackGc {
    /// Opens `TORTIE_CT`, `TORTIE_NAT` and `TORTIE_FRAGS` pinned in `maps_dir` (see
    /// [`super::load::maps_dir`]). These are new handles on the same kernel maps the programs
    /// use, independent of the object's own.
    pub fn open_pinned(maps_dir: &Path, timeouts: CtTimeouts) -> Result<Self> {
        Ok(Self::new(
            open_pinned_hash(maps_dir, map_names::CONNTRACK)?,
            open_pinned_hash(maps_dir, map_names::NAT)?,
            open_pinned_hash(maps_dir, map_names::FRAGMENTS)?,
            timeouts,
        ))
    }

    /// A collector over maps the caller already holds (e.g. taken from the `Ebpf` object with
    /// `HashMap::try_from(ebpf.take_map(name))`).
    pub fn new(
        conntrack: HashMap<MapData, CtKey, CtValue>,
        nat: HashMap<MapData, NatKey, NatValue>,
        fragments: HashMap<MapData, FragmentKey, FragmentValue>,
        timeouts: CtTimeouts,
    ) -> Self {
        Self {
            conntrack,
            nat,
            fragments,
            timeouts,
        }
    }

    /// Deletes the conntrack and NAT entries idle past their timeout at `now_ns`
    /// (`CLOCK_MONOTONIC` nanoseconds, see [`monotonic_now_ns`]) and counts fragments.
    pub fn collect(&mut self, now_ns: u64) -> Result<SweepStats> {
        let mut stats = sweep_conntrack(&mut self.conntrack, now_ns, &self.timeouts)?;
        stats.merge(&sweep_nat(&mut self.nat, now_ns, &self.timeouts)?);
        stats.fragments = count_fragments(&self.fragments)?;
        Ok(stats)
    }

    /// [`Self::collect`] at the current time.
    pub fn collect_now(&mut self) -> Result<SweepStats> {
        self.collect(monotonic_now_ns()?)
    }
}

fn open_pinned_hash<K: Pod, V: Pod>(maps_dir: &Path, name: &str) -> Result<HashMap<MapData, K, V>> {
    let path = maps_dir.join(name);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("opening pinned map {}", path.display()))?;
    let map = Map::from_map_data(data).with_context(|| format!("map {}", path.display()))?;
    HashMap::try_from(map).with_context(|| {
        format!(
            "map {} is not the hash of the key and value sizes this agent expects",
            path.display()
        )
    })
}

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_now_ns() -> Result<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return Err(std::io::Error::last_os_error()).context("reading CLOCK_MONOTONIC");
    }
    // Monotonic time is never negative.
    Ok((now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64))
}

/// Deletes the conntrack entries [`expired`] at `now_ns`.
pub fn sweep_conntrack<T: BorrowMut<MapData>>(
    map: &mut HashMap<T, CtKey, CtValue>,
    now_ns: u64,
    timeouts: &CtTimeouts,
) -> Result<SweepStats> {
    let entries = snapshot(map, map_names::CONNTRACK)?;
    let mut stats = SweepStats {
        conntrack_seen: entries.len(),
        ..SweepStats::default()
    };
    let candidates = entries
        .iter()
        .filter(|(key, value)| expired(value, key.protocol, now_ns, timeouts))
        .map(|(key, _)| *key);
    for key in candidates {
        // Judged again on a fresh read: the flow may have carried a packet since the walk.
        let Some(value) = get(map, &key, map_names::CONNTRACK)? else {
            continue;
        };
        if !expired(&value, key.protocol, now_ns, timeouts) {
            stats.revived += 1;
            continue;
        }
        if remove(map, &key, map_names::CONNTRACK)? {
            stats
                .conntrack_removed
                .add(FlowClass::of_conntrack(&value, key.protocol));
        }
    }
    Ok(stats)
}

/// Deletes the natOutgoing flows idle past their protocol's timeout at `now_ns`.
///
/// A flow has two entries (outbound and inbound) whose timestamps advance separately: a flow
/// with traffic in only one direction leaves the other entry stale. Both go together, when
/// the newer of the two is idle too long; removing only the stale one would let another flow
/// claim the port while the live entry still maps to it.
pub fn sweep_nat<T: BorrowMut<MapData>>(
    map: &mut HashMap<T, NatKey, NatValue>,
    now_ns: u64,
    timeouts: &CtTimeouts,
) -> Result<SweepStats> {
    let entries = snapshot(map, map_names::NAT)?;
    let mut stats = SweepStats {
        nat_seen: entries.len(),
        ..SweepStats::default()
    };
    for key in expired_nat(&entries, now_ns, timeouts) {
        let Some(value) = get(map, &key, map_names::NAT)? else {
            continue;
        };
        let partner = match nat_partner(&key, &value) {
            Some(partner_key) => get(map, &partner_key, map_names::NAT)?,
            None => None,
        };
        if !nat_flow_expired(&key, &value, partner.as_ref(), now_ns, timeouts) {
            stats.revived += 1;
            continue;
        }
        if remove(map, &key, map_names::NAT)? {
            stats.nat_removed.add(FlowClass::of_nat(key.protocol));
        }
    }
    Ok(stats)
}

/// Entries in the fragments map.
pub fn count_fragments<T: Borrow<MapData>>(
    map: &HashMap<T, FragmentKey, FragmentValue>,
) -> Result<usize> {
    Ok(snapshot(map, map_names::FRAGMENTS)?.len())
}

/// The NAT keys whose flow has been idle too long, given a snapshot of the map.
pub fn expired_nat(
    entries: &StdHashMap<NatKey, NatValue>,
    now_ns: u64,
    timeouts: &CtTimeouts,
) -> Vec<NatKey> {
    entries
        .iter()
        .filter(|(key, value)| {
            let partner = nat_partner(key, value).and_then(|partner| entries.get(&partner));
            nat_flow_expired(key, value, partner, now_ns, timeouts)
        })
        .map(|(key, _)| *key)
        .collect()
}

fn nat_flow_expired(
    key: &NatKey,
    value: &NatValue,
    partner: Option<&NatValue>,
    now_ns: u64,
    timeouts: &CtTimeouts,
) -> bool {
    let last_seen_ns = partner.map_or(value.last_seen_ns, |partner| {
        value.last_seen_ns.max(partner.last_seen_ns)
    });
    idle_longer_than(
        last_seen_ns,
        now_ns,
        FlowClass::of_nat(key.protocol).timeout(timeouts),
    )
}

/// The key of the other direction of a natOutgoing flow, as the programs write it: the
/// outbound key is what the pod sends, the inbound key what the reply to the node carries (for
/// ICMP echo the identifier takes the source-port slot and the other port is 0).
pub fn nat_partner(key: &NatKey, value: &NatValue) -> Option<NatKey> {
    let icmp = key.protocol == IPPROTO_ICMP;
    let (src, dst, src_port, dst_port) = if value.flags & nat_flags::OUTBOUND != 0 {
        // Outbound: pod → remote, rewritten to node:nat-port. The reply: remote → node.
        let (reply_src_port, reply_dst_port) = if icmp {
            (value.port, 0)
        } else {
            (key.dst_port, value.port)
        };
        (key.dst, value.addr, reply_src_port, reply_dst_port)
    } else if value.flags & nat_flags::INBOUND != 0 {
        // Inbound: remote → node:nat-port, rewritten to pod:port. The original: pod → remote.
        let original_dst_port = if icmp { 0 } else { key.src_port };
        (value.addr, key.src, value.port, original_dst_port)
    } else {
        return None;
    };
    Some(NatKey {
        src,
        dst,
        src_port,
        dst_port,
        protocol: key.protocol,
        _pad: [0; 3],
    })
}

/// Every entry of `map`, deduplicated ([`bpf_maps::user::snapshot`]: a walk bounded by the
/// map's capacity, so a busy map cannot keep a sweep going forever).
fn snapshot<T: Borrow<MapData>, K: Pod + Eq + Hash, V: Pod>(
    map: &HashMap<T, K, V>,
    name: &str,
) -> Result<StdHashMap<K, V>> {
    let capacity = IterableMap::map(map)
        .info()
        .with_context(|| format!("reading the description of map {name}"))?
        .max_entries();
    bpf_maps::user::snapshot(map, capacity).with_context(|| format!("walking map {name}"))
}

fn get<T: Borrow<MapData>, K: Pod, V: Pod>(
    map: &HashMap<T, K, V>,
    key: &K,
    name: &str,
) -> Result<Option<V>> {
    match map.get(key, 0) {
        Ok(value) => Ok(Some(value)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading an entry of map {name}")),
    }
}

/// Deletes `key`; `false` when it was already gone (evicted, or removed by the programs).
fn remove<T: BorrowMut<MapData>, K: Pod, V: Pod>(
    map: &mut HashMap<T, K, V>,
    key: &K,
    name: &str,
) -> Result<bool> {
    match map.remove(key) {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(error) => Err(error).with_context(|| format!("deleting an entry of map {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    /// A "now" far enough from zero that every `now - timeout` below is positive.
    const NOW: u64 = 10_000 * SEC;

    fn ct(flags: u32, idle_s: u64) -> CtValue {
        CtValue {
            created_ns: NOW - idle_s * SEC - SEC,
            last_seen_ns: NOW - idle_s * SEC,
            flags,
            epoch: 1,
        }
    }

    /// Whether an entry idle exactly `timeout` is kept and one idle a nanosecond longer goes.
    fn boundary(flags: u32, protocol: u8, timeout_s: u64) {
        let t = CtTimeouts::default();
        let mut value = ct(flags, timeout_s);
        assert!(
            !expired(&value, protocol, NOW, &t),
            "flags {flags:#x} proto {protocol}: idle exactly {timeout_s}s must be kept"
        );
        value.last_seen_ns -= 1;
        assert!(
            expired(&value, protocol, NOW, &t),
            "flags {flags:#x} proto {protocol}: idle past {timeout_s}s must expire"
        );
    }

    const ESTABLISHED: u32 = ct_flags::OPENED_BY_A | ct_flags::SYN_A | ct_flags::ESTABLISHED;

    #[test]
    fn tcp_without_replies_expires_after_20s() {
        boundary(ct_flags::OPENED_BY_A | ct_flags::SYN_A, IPPROTO_TCP, 20);
        // Even with a FIN from one side, no reply means not established.
        boundary(ct_flags::SYN_A | ct_flags::FIN_A, IPPROTO_TCP, 20);
    }

    #[test]
    fn established_tcp_lasts_an_hour() {
        boundary(ESTABLISHED, IPPROTO_TCP, 3600);
        boundary(ESTABLISHED | ct_flags::SYN_B, IPPROTO_TCP, 3600);
        // Half-closed stays established until the other side closes too.
        boundary(ESTABLISHED | ct_flags::FIN_A, IPPROTO_TCP, 3600);
        boundary(ESTABLISHED | ct_flags::FIN_B, IPPROTO_TCP, 3600);
        // Picked up mid-stream: treated as established.
        boundary(
            ct_flags::PICKED_UP | ct_flags::ESTABLISHED,
            IPPROTO_TCP,
            3600,
        );
    }

    #[test]
    fn tcp_closed_by_both_sides_expires_after_30s() {
        boundary(
            ESTABLISHED | ct_flags::FIN_A | ct_flags::FIN_B,
            IPPROTO_TCP,
            30,
        );
    }

    #[test]
    fn tcp_reset_expires_after_10s_whatever_else_was_seen() {
        boundary(ct_flags::RST, IPPROTO_TCP, 10);
        boundary(ESTABLISHED | ct_flags::RST, IPPROTO_TCP, 10);
        boundary(
            ESTABLISHED | ct_flags::FIN_A | ct_flags::FIN_B | ct_flags::RST,
            IPPROTO_TCP,
            10,
        );
    }

    #[test]
    fn udp_icmp_and_other_protocols_ignore_tcp_flags() {
        for flags in [0, ct_flags::ESTABLISHED, ct_flags::RST | ct_flags::FIN_A] {
            boundary(flags, IPPROTO_UDP, 60);
            boundary(flags, IPPROTO_ICMP, 5);
            boundary(flags, 47, 600); // GRE
            boundary(flags, 132, 600); // SCTP
        }
    }

    #[test]
    fn fresh_and_future_entries_are_kept() {
        let t = CtTimeouts::default();
        assert!(!expired(&ct(0, 0), IPPROTO_ICMP, NOW, &t));
        // A packet stamped after `now` was read.
        let future = CtValue {
            last_seen_ns: NOW + SEC,
            ..ct(0, 0)
        };
        assert!(!expired(&future, IPPROTO_ICMP, NOW, &t));
        // Right after boot, `now` is smaller than any timeout.
        assert!(!expired(&ct(0, 0), IPPROTO_ICMP, 0, &t));
    }

    #[test]
    fn custom_timeouts_apply() {
        let t = CtTimeouts {
            udp: Duration::from_secs(1),
            ..CtTimeouts::default()
        };
        assert!(expired(&ct(0, 2), IPPROTO_UDP, NOW, &t));
        let forever = CtTimeouts {
            tcp_established: Duration::MAX,
            ..CtTimeouts::default()
        };
        let ancient = CtValue {
            last_seen_ns: 0,
            ..ct(ESTABLISHED, 0)
        };
        assert!(!expired(&ancient, IPPROTO_TCP, u64::MAX, &forever));
    }

    #[test]
    fn classes_have_distinct_names_and_indices() {
        for (index, class) in FlowClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), index);
        }
        let mut names: Vec<_> = FlowClass::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FlowClass::ALL.len());
    }

    fn nat_pair(
        protocol: u8,
        outbound_idle_s: u64,
        inbound_idle_s: u64,
    ) -> [(NatKey, NatValue); 2] {
        let pod = [10, 65, 0, 5];
        let remote = [1, 1, 1, 1];
        let node = [192, 168, 0, 10];
        let (pod_port, remote_port, nat_port) = (40000u16.to_be(), 53u16.to_be(), 61000u16.to_be());
        let icmp = protocol == IPPROTO_ICMP;
        let outbound_key = NatKey {
            src: pod,
            dst: remote,
            src_port: pod_port,
            dst_port: if icmp { 0 } else { remote_port },
            protocol,
            _pad: [0; 3],
        };
        let inbound_key = NatKey {
            src: remote,
            dst: node,
            src_port: if icmp { nat_port } else { remote_port },
            dst_port: if icmp { 0 } else { nat_port },
            protocol,
            _pad: [0; 3],
        };
        [
            (
                outbound_key,
                NatValue {
                    addr: node,
                    port: nat_port,
                    flags: nat_flags::OUTBOUND,
                    last_seen_ns: NOW - outbound_idle_s * SEC,
                },
            ),
            (
                inbound_key,
                NatValue {
                    addr: pod,
                    port: pod_port,
                    flags: nat_flags::INBOUND,
                    last_seen_ns: NOW - inbound_idle_s * SEC,
                },
            ),
        ]
    }

    #[test]
    fn nat_partners_point_at_each_other() {
        for protocol in [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP] {
            let [(out_key, out_value), (in_key, in_value)] = nat_pair(protocol, 0, 0);
            assert_eq!(
                nat_partner(&out_key, &out_value),
                Some(in_key),
                "{protocol}"
            );
            assert_eq!(nat_partner(&in_key, &in_value), Some(out_key), "{protocol}");
        }
        let [(key, value), _] = nat_pair(IPPROTO_UDP, 0, 0);
        let no_direction = NatValue { flags: 0, ..value };
        assert_eq!(nat_partner(&key, &no_direction), None);
    }

    #[test]
    fn nat_flows_expire_as_a_pair_by_their_newest_entry() {
        let t = CtTimeouts::default();
        let expired_keys = |pair: [(NatKey, NatValue); 2]| {
            let mut keys = expired_nat(&StdHashMap::from(pair), NOW, &t);
            keys.sort_by_key(|k| (k.src, k.dst));
            keys
        };
        // One-way UDP: the inbound entry is stale but the flow is alive.
        assert!(expired_keys(nat_pair(IPPROTO_UDP, 1, 500)).is_empty());
        assert!(expired_keys(nat_pair(IPPROTO_UDP, 500, 1)).is_empty());
        // Both quiet past 60 s: both go.
        assert_eq!(expired_keys(nat_pair(IPPROTO_UDP, 61, 70)).len(), 2);
        // TCP NAT knows no TCP state: an hour.
        assert!(expired_keys(nat_pair(IPPROTO_TCP, 3000, 3000)).is_empty());
        assert_eq!(expired_keys(nat_pair(IPPROTO_TCP, 3601, 3700)).len(), 2);
        assert_eq!(expired_keys(nat_pair(IPPROTO_ICMP, 6, 6)).len(), 2);
    }

    #[test]
    fn orphan_nat_entries_expire_on_their_own() {
        let t = CtTimeouts::default();
        let [outbound, inbound] = nat_pair(IPPROTO_UDP, 61, 0);
        assert_eq!(
            expired_nat(&StdHashMap::from([outbound]), NOW, &t),
            vec![outbound.0]
        );
        let [_, inbound_stale] = nat_pair(IPPROTO_UDP, 0, 61);
        assert_eq!(
            expired_nat(&StdHashMap::from([inbound_stale]), NOW, &t),
            vec![inbound_stale.0]
        );
        assert!(expired_nat(&StdHashMap::from([inbound]), NOW, &t).is_empty());
    }

    #[test]
    fn stats_render_for_logs() {
        let mut stats = SweepStats {
            conntrack_seen: 10,
            nat_seen: 4,
            fragments: 1,
            ..SweepStats::default()
        };
        stats.conntrack_removed.add(FlowClass::Udp);
        stats.conntrack_removed.add(FlowClass::Udp);
        stats.conntrack_removed.add(FlowClass::TcpReset);
        let mut total = SweepStats::default();
        total.merge(&stats);
        assert_eq!(total, stats);
        assert_eq!(
            stats.to_string(),
            "conntrack 10 seen, 3 expired (tcp-reset 1, udp 2); nat 4 seen, 0 expired; \
             0 revived; 1 fragments"
        );
    }

    /// Sweeps a real (unpinned) kernel hash map; needs root.
    #[test]
    fn sweep_deletes_only_expired_entries_from_a_kernel_map() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: creating BPF maps needs root");
            return;
        }
        let mut map = match HashMap::<MapData, CtKey, CtValue>::create(64, 0) {
            Ok(map) => map,
            Err(error) => {
                eprintln!("skipping: the kernel refused a BPF hash map: {error}");
                return;
            }
        };
        let key = |port: u16, protocol: u8| CtKey {
            addr_a: [10, 65, 0, 1],
            addr_b: [10, 65, 0, 2],
            port_a: port.to_be(),
            port_b: 80u16.to_be(),
            protocol,
            _pad: [0; 3],
        };
        let entries = [
            (key(1, IPPROTO_TCP), ct(ESTABLISHED, 100)),    // kept
            (key(2, IPPROTO_TCP), ct(ct_flags::SYN_A, 21)), // expired: no reply
            (key(3, IPPROTO_TCP), ct(ESTABLISHED | ct_flags::RST, 11)), // expired: reset
            (key(4, IPPROTO_UDP), ct(0, 59)),               // kept
            (key(5, IPPROTO_UDP), ct(0, 61)),               // expired
            (key(6, IPPROTO_ICMP), ct(0, 6)),               // expired
        ];
        for (k, v) in &entries {
            map.insert(k, v, 0).expect("insert");
        }
        let stats = sweep_conntrack(&mut map, NOW, &CtTimeouts::default()).expect("sweep");
        assert_eq!(stats.conntrack_seen, 6);
        assert_eq!(stats.conntrack_removed.total(), 4);
        assert_eq!(stats.conntrack_removed.get(FlowClass::TcpSynSent), 1);
        assert_eq!(stats.conntrack_removed.get(FlowClass::TcpReset), 1);
        assert_eq!(stats.conntrack_removed.get(FlowClass::Udp), 1);
        assert_eq!(stats.conntrack_removed.get(FlowClass::Icmp), 1);
        let mut left: Vec<u16> = map
            .keys()
            .map(|k| u16::from_be(k.expect("key").port_a))
            .collect();
        left.sort_unstable();
        assert_eq!(left, vec![1, 4]);

        let mut nat = HashMap::<MapData, NatKey, NatValue>::create(64, 0).expect("nat map");
        for (k, v) in
            nat_pair(IPPROTO_UDP, 61, 61)
                .into_iter()
                .chain(nat_pair(IPPROTO_TCP, 10, 4000))
        {
            nat.insert(k, v, 0).expect("insert nat");
        }
        let stats = sweep_nat(&mut nat, NOW, &CtTimeouts::default()).expect("sweep nat");
        assert_eq!((stats.nat_seen, stats.nat_removed.total()), (4, 2));
        assert!(nat.keys().all(|k| k.expect("key").protocol == IPPROTO_TCP));
    }
}
