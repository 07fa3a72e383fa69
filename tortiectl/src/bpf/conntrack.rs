//! `bpf conntrack dump | stats | flush`: tracked flows.

use std::collections::BTreeMap;

use bpf_maps::policy::{ct_flags, CtKey, CtValue};
use serde::Serialize;

use super::{
    format::{flag_names, ipv4, port, protocol_name, seconds_since, IPPROTO_ICMP, IPPROTO_TCP},
    table::Table,
};

/// Conntrack flag names, in bit order.
pub const CT_FLAG_NAMES: [(u32, &str); 8] = [
    (ct_flags::OPENED_BY_A, "opened-by-a"),
    (ct_flags::SYN_A, "syn-a"),
    (ct_flags::SYN_B, "syn-b"),
    (ct_flags::FIN_A, "fin-a"),
    (ct_flags::FIN_B, "fin-b"),
    (ct_flags::RST, "rst"),
    (ct_flags::ESTABLISHED, "established"),
    (ct_flags::PICKED_UP, "picked-up"),
];

/// A flow's state, derived from what the programs recorded.
///
/// TCP: `CLOSED(RST)` after a RST, `FIN_WAIT` once either side sent a FIN, `PICKED_UP` for a
/// flow first seen mid-stream, `ESTABLISHED` once replies were seen, `SYN_SENT` before.
/// Other protocols: `ESTABLISHED` once replies were seen, `NEW` before.
pub fn state(protocol: u8, flags: u32) -> &'static str {
    let has = |bit: u32| flags & bit != 0;
    if protocol != IPPROTO_TCP {
        return if has(ct_flags::ESTABLISHED) {
            "ESTABLISHED"
        } else {
            "NEW"
        };
    }
    if has(ct_flags::RST) {
        "CLOSED(RST)"
    } else if has(ct_flags::FIN_A) || has(ct_flags::FIN_B) {
        "FIN_WAIT"
    } else if has(ct_flags::PICKED_UP) {
        "PICKED_UP"
    } else if has(ct_flags::ESTABLISHED) {
        "ESTABLISHED"
    } else {
        "SYN_SENT"
    }
}

/// One tracked flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CtRow {
    /// Protocol name.
    pub protocol: String,
    /// Side A (the lower address and port).
    pub a: String,
    /// Side B.
    pub b: String,
    /// The side that opened the flow (`a` or `b`).
    pub opener: &'static str,
    /// See [`state`].
    pub state: &'static str,
    /// Raw flag names.
    pub flags: Vec<String>,
    /// Seconds since the flow was first allowed.
    pub age_seconds: u64,
    /// Seconds since its last packet (refreshed by the programs about once a second).
    pub idle_seconds: u64,
    /// Policy epoch it was allowed under.
    pub epoch: u32,
}

impl CtRow {
    /// Decodes one entry at monotonic time `now_ns`.
    pub fn new(key: &CtKey, value: &CtValue, now_ns: u64) -> Self {
        // ICMP echo flows carry the identifier in both port slots; show it once, in the flow.
        let side = |addr: [u8; 4], port_be: u16| {
            if key.protocol == IPPROTO_ICMP {
                ipv4(addr).to_string()
            } else {
                format!("{}:{}", ipv4(addr), port(port_be))
            }
        };
        Self {
            protocol: protocol_name(key.protocol),
            a: side(key.addr_a, key.port_a),
            b: side(key.addr_b, key.port_b),
            opener: if value.flags & ct_flags::OPENED_BY_A != 0 {
                "a"
            } else {
                "b"
            },
            state: state(key.protocol, value.flags),
            flags: flag_names(value.flags, &CT_FLAG_NAMES),
            age_seconds: seconds_since(value.created_ns, now_ns),
            idle_seconds: seconds_since(value.last_seen_ns, now_ns),
            epoch: value.epoch,
        }
    }

    /// `tcp 10.65.0.5:40000 ⇄ 10.65.1.7:80` (ICMP: `icmp 10.65.0.5 ⇄ 8.8.8.8 id 77`).
    pub fn flow(&self, key: &CtKey) -> String {
        let mut flow = format!("{} {} ⇄ {}", self.protocol, self.a, self.b);
        if key.protocol == IPPROTO_ICMP {
            flow.push_str(&format!(" id {}", port(key.port_a)));
        }
        flow
    }
}

/// A flow for output: the row plus its one-line rendering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CtEntry {
    /// `proto a ⇄ b`.
    pub flow: String,
    /// Decoded fields.
    #[serde(flatten)]
    pub row: CtRow,
}

/// Decodes every entry, sorted by protocol, then side A, then side B.
pub fn entries(raw: &[(CtKey, CtValue)], now_ns: u64) -> Vec<CtEntry> {
    let mut sorted: Vec<&(CtKey, CtValue)> = raw.iter().collect();
    sorted.sort_by_key(|(k, _)| {
        (
            k.protocol,
            u32::from_be_bytes(k.addr_a),
            port(k.port_a),
            u32::from_be_bytes(k.addr_b),
            port(k.port_b),
        )
    });
    sorted
        .into_iter()
        .map(|(key, value)| {
            let row = CtRow::new(key, value, now_ns);
            CtEntry {
                flow: row.flow(key),
                row,
            }
        })
        .collect()
}

/// The dump table.
pub fn dump_table(entries: &[CtEntry]) -> Table {
    let mut table = Table::new(&["FLOW", "OPENER", "STATE", "AGE", "IDLE", "EPOCH"]);
    for entry in entries {
        let row = &entry.row;
        let opener = if row.opener == "a" { &row.a } else { &row.b };
        table.push(vec![
            entry.flow.clone(),
            opener.clone(),
            row.state.into(),
            format!("{}s", row.age_seconds),
            format!("{}s", row.idle_seconds),
            row.epoch.to_string(),
        ]);
    }
    table
}

/// Entry counts by protocol and state, and how full the map is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CtStats {
    /// Entries in the map.
    pub entries: usize,
    /// The map's capacity (it is an LRU: beyond it the least recently used flow is evicted).
    pub capacity: u32,
    /// protocol → state → entries.
    pub by_protocol: BTreeMap<String, BTreeMap<&'static str, usize>>,
}

impl CtStats {
    /// Counts `raw` for a map of `capacity` entries.
    pub fn new<'a>(raw: impl IntoIterator<Item = &'a (CtKey, CtValue)>, capacity: u32) -> Self {
        let mut stats = Self {
            capacity,
            ..Self::default()
        };
        for (key, value) in raw {
            stats.entries += 1;
            *stats
                .by_protocol
                .entry(protocol_name(key.protocol))
                .or_default()
                .entry(state(key.protocol, value.flags))
                .or_default() += 1;
        }
        stats
    }

    /// The stats as a table followed by a summary line.
    pub fn render(&self) -> String {
        let mut table = Table::new(&["PROTO", "STATE", "ENTRIES"]);
        for (protocol, states) in &self.by_protocol {
            for (state, count) in states {
                table.push(vec![protocol.clone(), (*state).into(), count.to_string()]);
            }
        }
        let fill = if self.capacity == 0 {
            0.0
        } else {
            100.0 * self.entries as f64 / f64::from(self.capacity)
        };
        format!(
            "{}{} entries of {} ({fill:.1}% full)\n",
            table.render(),
            self.entries,
            self.capacity
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn key(protocol: u8) -> CtKey {
        CtKey {
            addr_a: [10, 65, 0, 5],
            addr_b: [10, 65, 1, 7],
            port_a: 40000u16.to_be(),
            port_b: 80u16.to_be(),
            protocol,
            _pad: [0; 3],
        }
    }

    #[test]
    fn tcp_states_follow_the_flags() {
        use ct_flags::*;
        assert_eq!(state(6, OPENED_BY_A | SYN_A), "SYN_SENT");
        assert_eq!(
            state(6, OPENED_BY_A | SYN_A | SYN_B | ESTABLISHED),
            "ESTABLISHED"
        );
        assert_eq!(state(6, PICKED_UP | ESTABLISHED), "PICKED_UP");
        assert_eq!(state(6, ESTABLISHED | FIN_A), "FIN_WAIT");
        assert_eq!(state(6, ESTABLISHED | FIN_A | FIN_B), "FIN_WAIT");
        assert_eq!(state(6, ESTABLISHED | FIN_A | RST), "CLOSED(RST)");
        assert_eq!(state(6, PICKED_UP | ESTABLISHED | FIN_B), "FIN_WAIT");
    }

    #[test]
    fn other_protocols_are_new_until_replied() {
        assert_eq!(state(17, ct_flags::OPENED_BY_A), "NEW");
        assert_eq!(
            state(17, ct_flags::OPENED_BY_A | ct_flags::ESTABLISHED),
            "ESTABLISHED"
        );
        // TCP bits mean nothing for UDP.
        assert_eq!(state(17, ct_flags::RST), "NEW");
        assert_eq!(state(1, ct_flags::ESTABLISHED), "ESTABLISHED");
    }

    #[test]
    fn a_tcp_flow_renders_with_opener_age_and_idle() {
        let value = CtValue {
            created_ns: 40 * SEC,
            last_seen_ns: 98 * SEC,
            flags: ct_flags::SYN_B | ct_flags::ESTABLISHED,
            epoch: 3,
        };
        let rows = entries(&[(key(6), value)], 100 * SEC);
        let row = &rows[0];
        assert_eq!(row.flow, "tcp 10.65.0.5:40000 ⇄ 10.65.1.7:80");
        assert_eq!(row.row.opener, "b");
        assert_eq!((row.row.age_seconds, row.row.idle_seconds), (60, 2));
        assert_eq!(row.row.flags, vec!["syn-b", "established"]);
        let text = dump_table(&rows).render();
        let line = text.lines().nth(1).unwrap();
        assert_eq!(
            line,
            "tcp 10.65.0.5:40000 ⇄ 10.65.1.7:80  10.65.1.7:80  ESTABLISHED  60s  2s    3"
        );
        let json = serde_json::to_value(row).unwrap();
        assert_eq!(json["flow"], "tcp 10.65.0.5:40000 ⇄ 10.65.1.7:80");
        assert_eq!(json["state"], "ESTABLISHED");
        assert_eq!(json["idle_seconds"], 2);
    }

    #[test]
    fn icmp_flows_show_the_echo_id_once() {
        let mut k = key(1);
        k.port_a = 77u16.to_be();
        k.port_b = 77u16.to_be();
        let rows = entries(
            &[(
                k,
                CtValue {
                    flags: ct_flags::OPENED_BY_A,
                    ..CtValue::default()
                },
            )],
            0,
        );
        assert_eq!(rows[0].flow, "icmp 10.65.0.5 ⇄ 10.65.1.7 id 77");
        assert_eq!(rows[0].row.state, "NEW");
    }

    #[test]
    fn entries_sort_by_protocol_then_addresses() {
        let mut later = key(6);
        later.addr_a = [10, 65, 0, 200];
        let raw = [
            (later, CtValue::default()),
            (key(17), CtValue::default()),
            (key(6), CtValue::default()),
        ];
        let flows: Vec<String> = entries(&raw, 0).into_iter().map(|e| e.flow).collect();
        assert_eq!(
            flows,
            vec![
                "tcp 10.65.0.5:40000 ⇄ 10.65.1.7:80",
                "tcp 10.65.0.200:40000 ⇄ 10.65.1.7:80",
                "udp 10.65.0.5:40000 ⇄ 10.65.1.7:80",
            ]
        );
    }

    #[test]
    fn stats_count_by_protocol_and_state() {
        let established = CtValue {
            flags: ct_flags::ESTABLISHED,
            ..CtValue::default()
        };
        let raw = [
            (key(6), established),
            (key(6), established),
            (key(6), CtValue::default()),
            (key(17), CtValue::default()),
        ];
        let stats = CtStats::new(&raw, 1000);
        assert_eq!(stats.entries, 4);
        assert_eq!(stats.by_protocol["tcp"]["ESTABLISHED"], 2);
        assert_eq!(stats.by_protocol["tcp"]["SYN_SENT"], 1);
        assert_eq!(stats.by_protocol["udp"]["NEW"], 1);
        let text = stats.render();
        assert!(text.contains("tcp    ESTABLISHED  2"), "{text}");
        assert!(text.ends_with("4 entries of 1000 (0.4% full)\n"), "{text}");
    }
}
