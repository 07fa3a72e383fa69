//! `bpf ipcache` and `bpf policy`: peer identities and the compiled policy verdicts.

use std::collections::BTreeMap;

use bpf_maps::policy::{
    direction, verdict, PolicyKey, PolicyValue, POLICY_PREFIX_ANY_PORT, POLICY_PREFIX_ANY_PROTOCOL,
    POLICY_PREFIX_FULL, RULE_DEFAULT_DENY, RULE_PROFILE_ALLOW,
};
use ipnet::Ipv4Net;
use serde::Serialize;

use super::{
    format::{identity_cell, or_dash, prefix, protocol_name, reserved_identity, IPPROTO_ICMP},
    routes::iface_cell,
    table::Table,
};

/// One entry of `TORTIE_IPCACHE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IpCacheRow {
    /// Address prefix.
    pub prefix: Ipv4Net,
    /// Identity of every address under it.
    pub identity: u32,
    /// Name of a reserved identity.
    pub identity_name: Option<&'static str>,
}

impl IpCacheRow {
    /// Decodes one entry (`prefix_len` is clamped to 32).
    pub fn new(addr: [u8; 4], prefix_len: u32, identity: u32) -> Self {
        Self {
            prefix: prefix(addr, prefix_len),
            identity,
            identity_name: reserved_identity(identity),
        }
    }
}

/// The IP cache table.
pub fn ipcache_table(rows: &[IpCacheRow]) -> Table {
    let mut table = Table::new(&["PREFIX", "IDENTITY"]);
    for row in rows {
        table.push(vec![row.prefix.to_string(), identity_cell(row.identity)]);
    }
    table
}

/// What part of the protocol and port space a policy key covers, from its LPM prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortMatch {
    /// [`POLICY_PREFIX_ANY_PROTOCOL`]: every protocol and port.
    AnyProtocol,
    /// [`POLICY_PREFIX_ANY_PORT`]: every port of one protocol.
    AnyPort,
    /// `POLICY_PREFIX_ANY_PORT + n`: the 2^(16-n) ports sharing the key port's top `n` bits.
    Range {
        /// First port (or ICMP `type << 8 | code`).
        first: u16,
        /// Last port, inclusive.
        last: u16,
    },
    /// A prefix length the agent never writes.
    Unexpected(u32),
}

impl PortMatch {
    /// Decodes the LPM prefix length of a key whose port is `port` (host order).
    pub fn new(prefix_len: u32, port: u16) -> Self {
        match prefix_len {
            POLICY_PREFIX_ANY_PROTOCOL => PortMatch::AnyProtocol,
            POLICY_PREFIX_ANY_PORT => PortMatch::AnyPort,
            len if len > POLICY_PREFIX_ANY_PORT && len <= POLICY_PREFIX_FULL => {
                let port_bits = POLICY_PREFIX_FULL - len;
                let span = (1u32 << port_bits) - 1;
                let first = u32::from(port) & !span;
                PortMatch::Range {
                    first: first as u16,
                    last: (first + span) as u16,
                }
            }
            other => PortMatch::Unexpected(other),
        }
    }

    /// The ports as text: `any`, `80`, `8000-8063`; for ICMP `type 8`, `type 3 code 4`.
    pub fn describe(self, protocol: u8) -> String {
        match self {
            PortMatch::AnyProtocol | PortMatch::AnyPort => "any".into(),
            PortMatch::Range { first, last } if protocol == IPPROTO_ICMP => {
                let (icmp_type, code) = (first >> 8, first & 0xff);
                match last - first {
                    0 => format!("type {icmp_type} code {code}"),
                    0xff => format!("type {icmp_type}"),
                    _ => format!("type/code {first:#06x}-{last:#06x}"),
                }
            }
            PortMatch::Range { first, last } if first == last => first.to_string(),
            PortMatch::Range { first, last } => format!("{first}-{last}"),
            PortMatch::Unexpected(len) => format!("? (prefix /{len})"),
        }
    }
}

/// One entry of `TORTIE_POLICY`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyRow {
    /// Policy endpoint: the host-side interface index.
    pub endpoint: u32,
    /// That interface's name, when it still exists.
    pub iface: Option<String>,
    /// `ingress` or `egress`.
    pub direction: String,
    /// Peer identity.
    pub identity: u32,
    /// Name of a reserved identity.
    pub identity_name: Option<&'static str>,
    /// Protocol name, `any` for every protocol.
    pub protocol: String,
    /// Ports (or ICMP type/code) as text.
    pub ports: String,
    /// First port of the range, when the key is narrower than its protocol.
    pub port_first: Option<u16>,
    /// Last port of the range.
    pub port_last: Option<u16>,
    /// `allow` or `deny`.
    pub verdict: String,
    /// The deciding rule's index in `TORTIE_RULEHITS`.
    pub rule: u32,
    /// Name of a built-in rule (`default-deny`, `profile-allow`).
    pub rule_name: Option<&'static str>,
    /// Packets that rule decided, over all CPUs (shared by every entry of the rule).
    pub rule_hits: Option<u64>,
    /// The key's LPM prefix length.
    pub prefix_len: u32,
}

impl PolicyRow {
    /// Decodes one entry; `ifname` resolves the endpoint, `hits` the rule's hit count.
    pub fn new(
        prefix_len: u32,
        key: &PolicyKey,
        value: &PolicyValue,
        ifname: &dyn Fn(u32) -> Option<String>,
        hits: &dyn Fn(u32) -> Option<u64>,
    ) -> Self {
        let endpoint = u32::from_be_bytes(key.endpoint);
        let identity = u32::from_be_bytes(key.identity);
        let port_match = PortMatch::new(prefix_len, u16::from_be_bytes(key.port));
        let (port_first, port_last) = match port_match {
            PortMatch::Range { first, last } => (Some(first), Some(last)),
            _ => (None, None),
        };
        Self {
            endpoint,
            iface: ifname(endpoint),
            direction: match key.direction {
                direction::INGRESS => "ingress".into(),
                direction::EGRESS => "egress".into(),
                other => format!("direction-{other}"),
            },
            identity,
            identity_name: reserved_identity(identity),
            protocol: match port_match {
                PortMatch::AnyProtocol => "any".into(),
                _ => protocol_name(key.protocol),
            },
            ports: port_match.describe(key.protocol),
            port_first,
            port_last,
            verdict: match value.verdict {
                verdict::ALLOW => "allow".into(),
                verdict::DENY => "deny".into(),
                other => format!("verdict-{other}"),
            },
            rule: value.rule,
            rule_name: builtin_rule_name(value.rule),
            rule_hits: hits(value.rule),
            prefix_len,
        }
    }
}

/// The name of a rule index the dataplane reserves (`default-deny`, `profile-allow`).
pub fn builtin_rule_name(rule: u32) -> Option<&'static str> {
    match rule {
        RULE_DEFAULT_DENY => Some("default-deny"),
        RULE_PROFILE_ALLOW => Some("profile-allow"),
        _ => None,
    }
}

/// A rule for a table cell: `0 (default-deny)`, or the index.
pub fn rule_cell(rule: u32, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{rule} ({name})"),
        None => rule.to_string(),
    }
}

/// Decodes `raw` entries (`(prefix_len, key, value)`), keeping those of `endpoint` when
/// given, sorted by endpoint, direction, identity, protocol, then port.
pub fn policy_rows(
    raw: &[(u32, PolicyKey, PolicyValue)],
    endpoint: Option<u32>,
    ifname: &dyn Fn(u32) -> Option<String>,
    hits: &dyn Fn(u32) -> Option<u64>,
) -> Vec<PolicyRow> {
    let mut selected: Vec<&(u32, PolicyKey, PolicyValue)> = raw
        .iter()
        .filter(|(_, key, _)| endpoint.is_none_or(|e| u32::from_be_bytes(key.endpoint) == e))
        .collect();
    // Big-endian fields sort numerically as bytes; the prefix length breaks ties (wider first).
    selected.sort_by_key(|(len, key, _)| {
        (
            key.endpoint,
            key.direction,
            key.identity,
            key.protocol,
            key.port,
            *len,
        )
    });
    // Interface names are looked up once per endpoint.
    let mut names: BTreeMap<u32, Option<String>> = BTreeMap::new();
    for (_, key, _) in &selected {
        let index = u32::from_be_bytes(key.endpoint);
        names.entry(index).or_insert_with(|| ifname(index));
    }
    let cached_ifname = |index: u32| -> Option<String> { names.get(&index).cloned().flatten() };
    selected
        .into_iter()
        .map(|(len, key, value)| PolicyRow::new(*len, key, value, &cached_ifname, hits))
        .collect()
}

/// The policy table.
pub fn policy_table(rows: &[PolicyRow]) -> Table {
    let mut table = Table::new(&[
        "ENDPOINT",
        "DIRECTION",
        "IDENTITY",
        "PROTO",
        "PORTS",
        "VERDICT",
        "RULE",
        "HITS",
    ]);
    for row in rows {
        table.push(vec![
            iface_cell(Some(row.endpoint), row.iface.as_deref()),
            row.direction.clone(),
            identity_cell(row.identity),
            row.protocol.clone(),
            row.ports.clone(),
            row.verdict.clone(),
            rule_cell(row.rule, row.rule_name),
            or_dash(row.rule_hits),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(endpoint: u32, dir: u8, identity: u32, protocol: u8, port: u16) -> PolicyKey {
        PolicyKey {
            endpoint: endpoint.to_be_bytes(),
            direction: dir,
            identity: identity.to_be_bytes(),
            protocol,
            port: port.to_be_bytes(),
        }
    }

    fn allow(rule: u32) -> PolicyValue {
        PolicyValue {
            verdict: verdict::ALLOW,
            _pad: [0; 3],
            rule,
        }
    }

    #[test]
    fn prefix_lengths_become_port_ranges() {
        assert_eq!(PortMatch::new(72, 0), PortMatch::AnyProtocol);
        assert_eq!(PortMatch::new(80, 0), PortMatch::AnyPort);
        assert_eq!(
            PortMatch::new(96, 443),
            PortMatch::Range {
                first: 443,
                last: 443
            }
        );
        // 8000-8063: 64 ports, 6 free bits, so 10 fixed ones.
        assert_eq!(
            PortMatch::new(90, 8000),
            PortMatch::Range {
                first: 8000,
                last: 8063
            }
        );
        // The key's low bits are ignored as the kernel ignores them.
        assert_eq!(
            PortMatch::new(90, 8001),
            PortMatch::Range {
                first: 8000,
                last: 8063
            }
        );
        // One bit: half the port space.
        assert_eq!(
            PortMatch::new(81, 40000),
            PortMatch::Range {
                first: 32768,
                last: 65535
            }
        );
        assert_eq!(PortMatch::new(64, 0), PortMatch::Unexpected(64));
        assert_eq!(PortMatch::new(97, 0), PortMatch::Unexpected(97));
    }

    #[test]
    fn ports_describe_per_protocol() {
        assert_eq!(PortMatch::new(96, 53).describe(17), "53");
        assert_eq!(PortMatch::new(90, 8000).describe(6), "8000-8063");
        assert_eq!(PortMatch::new(80, 0).describe(6), "any");
        assert_eq!(PortMatch::new(88, 8 << 8).describe(1), "type 8");
        assert_eq!(
            PortMatch::new(96, (3 << 8) | 4).describe(1),
            "type 3 code 4"
        );
        assert_eq!(PortMatch::new(70, 0).describe(6), "? (prefix /70)");
    }

    #[test]
    fn rows_filter_by_endpoint_sort_and_carry_hits() {
        let raw = [
            (96, key(7, direction::INGRESS, 300, 6, 8080), allow(20)),
            (72, key(9, direction::EGRESS, 1, 0, 0), allow(21)),
            (
                72,
                key(7, direction::INGRESS, 2, 0, 0),
                allow(RULE_PROFILE_ALLOW),
            ),
            (
                80,
                key(7, direction::EGRESS, 256, 17, 0),
                PolicyValue {
                    verdict: verdict::DENY,
                    _pad: [0; 3],
                    rule: RULE_DEFAULT_DENY,
                },
            ),
        ];
        let ifname = |index: u32| (index == 7).then(|| "cali7".to_string());
        let hits = |rule: u32| (rule == 20).then_some(42);
        let rows = policy_rows(&raw, Some(7), &ifname, &hits);
        let summary: Vec<(String, u32, String, String, String, u32)> = rows
            .iter()
            .map(|r| {
                (
                    r.direction.clone(),
                    r.identity,
                    r.protocol.clone(),
                    r.ports.clone(),
                    r.verdict.clone(),
                    r.rule,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "ingress".into(),
                    2,
                    "any".into(),
                    "any".into(),
                    "allow".into(),
                    1
                ),
                (
                    "ingress".into(),
                    300,
                    "tcp".into(),
                    "8080".into(),
                    "allow".into(),
                    20
                ),
                (
                    "egress".into(),
                    256,
                    "udp".into(),
                    "any".into(),
                    "deny".into(),
                    0
                ),
            ]
        );
        assert_eq!(rows[1].rule_hits, Some(42));
        assert_eq!(
            (rows[1].port_first, rows[1].port_last),
            (Some(8080), Some(8080))
        );
        assert_eq!(rows[0].identity_name, Some("host"));
        let text = policy_table(&rows).render();
        assert!(
            text.contains(
                "7 (cali7)  ingress    300       tcp    8080   allow    20                 42"
            ),
            "{text}"
        );
        assert!(text.contains("0 (default-deny)"), "{text}");
        assert_eq!(policy_rows(&raw, None, &ifname, &hits).len(), 4);
    }

    #[test]
    fn ipcache_rows_name_reserved_identities() {
        let row = IpCacheRow::new([0, 0, 0, 0], 0, 1);
        assert_eq!(row.prefix.to_string(), "0.0.0.0/0");
        assert_eq!(row.identity_name, Some("world"));
        let text = ipcache_table(&[row, IpCacheRow::new([10, 65, 0, 5], 32, 300)]).render();
        assert!(text.contains("0.0.0.0/0     1 (world)"), "{text}");
        assert!(text.contains("10.65.0.5/32  300"), "{text}");
    }
}
