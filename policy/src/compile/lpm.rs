//! Encoding a resolved verdict function as the fewest LPM entries.
//!
//! Below one `(endpoint, direction, identity)` the policy key is a 24-bit trie: protocol
//! (8 bits) then port (16 bits). The encoding uses three levels:
//!
//! - one 72-bit entry for every protocol no rule names (omitted when that is the default
//!   deny, which is what a missing entry means);
//! - per named protocol, its 16-bit port function encoded optimally: a dynamic program
//!   over the binary trie of ports finds, for every inherited decision, the fewest entries
//!   (at prefix lengths 80 to 96) that produce the function. Only trie nodes where the
//!   function is not constant are visited, at most 17 per boundary between ranges.

use super::traffic_set::TrafficSet;
use crate::model::Verdict;
use bpf_maps::policy::{
    POLICY_PREFIX_ANY_PORT, POLICY_PREFIX_ANY_PROTOCOL, RULE_DEFAULT_DENY, RULE_PROFILE_ALLOW,
};

/// A verdict and the rule id it is counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Decision {
    pub verdict: Verdict,
    pub rule: u32,
}

/// What a missing entry means.
pub(crate) const DEFAULT_DENY: Decision = Decision {
    verdict: Verdict::Deny,
    rule: RULE_DEFAULT_DENY,
};

/// A missing `kns.`/`ksa.` profile.
pub(crate) const PROFILE_ALLOW: Decision = Decision {
    verdict: Verdict::Allow,
    rule: RULE_PROFILE_ALLOW,
};

/// One LPM entry under an `(endpoint, direction, identity)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub prefix_len: u32,
    /// 0 at the any-protocol level.
    pub protocol: u8,
    /// The port's top `prefix_len - 80` bits; the rest are zero.
    pub port: u16,
    pub decision: Decision,
}

/// A trie node of one protocol's ports.
enum Node {
    /// The whole block has one decision.
    Uniform(Decision),
    Split(Box<Split>),
}

struct Split {
    /// Fewest entries in the block for each decision it could inherit that occurs in it.
    costs: Vec<(Decision, u32)>,
    /// Fewest entries when inheriting any decision that does not occur in it.
    absent: u32,
    /// Fewest entries when this node gets an entry of its own, and that entry's decision.
    own: (u32, Decision),
    left: Node,
    right: Node,
}

fn cost(node: &Node, inherited: Decision) -> u32 {
    match node {
        Node::Uniform(d) => u32::from(*d != inherited),
        Node::Split(s) => s
            .costs
            .iter()
            .find(|(d, _)| *d == inherited)
            .map_or(s.absent, |(_, c)| *c),
    }
}

fn absent_cost(node: &Node) -> u32 {
    match node {
        Node::Uniform(_) => 1,
        Node::Split(s) => s.absent,
    }
}

fn decisions(node: &Node) -> Vec<Decision> {
    match node {
        Node::Uniform(d) => vec![*d],
        Node::Split(s) => s.costs.iter().map(|(d, _)| *d).collect(),
    }
}

/// Builds the node for ports `first..first + size` from the segments overlapping it
/// (sorted, contiguous, neighbours with different decisions).
fn build(segments: &[(u32, u32, Decision)], first: u32, size: u32) -> Node {
    if segments.len() <= 1 {
        return Node::Uniform(segments.first().map_or(DEFAULT_DENY, |s| s.2));
    }
    let mid = first + size / 2;
    let left_end = segments.partition_point(|s| s.0 < mid);
    let right_start = segments.partition_point(|s| s.1 < mid);
    let left = build(&segments[..left_end], first, size / 2);
    let right = build(&segments[right_start..], mid, size / 2);
    let mut present = decisions(&left);
    present.extend(decisions(&right));
    present.sort();
    present.dedup();
    let own = present
        .iter()
        .map(|&d| (1 + cost(&left, d) + cost(&right, d), d))
        .min()
        .unwrap_or((1, DEFAULT_DENY));
    let costs = present
        .iter()
        .map(|&d| (d, (cost(&left, d) + cost(&right, d)).min(own.0)))
        .collect();
    let absent = (absent_cost(&left) + absent_cost(&right)).min(own.0);
    Node::Split(Box::new(Split {
        costs,
        absent,
        own,
        left,
        right,
    }))
}

fn emit(
    node: &Node,
    inherited: Decision,
    port: u32,
    depth: u32,
    protocol: u8,
    out: &mut Vec<Entry>,
) {
    let mut push = |decision| {
        out.push(Entry {
            prefix_len: POLICY_PREFIX_ANY_PORT + depth,
            protocol,
            port: port as u16,
            decision,
        })
    };
    match node {
        Node::Uniform(d) => {
            if *d != inherited {
                push(*d);
            }
        }
        Node::Split(s) => {
            let keep = cost(&s.left, inherited) + cost(&s.right, inherited);
            let below = if s.own.0 < keep {
                push(s.own.1);
                s.own.1
            } else {
                inherited
            };
            emit(&s.left, below, port, depth + 1, protocol, out);
            let right_port = port | (1 << (15 - depth));
            emit(&s.right, below, right_port, depth + 1, protocol, out);
        }
    }
}

/// The entries for a resolution: disjoint pieces covering all traffic, each with its
/// decision.
pub(crate) fn encode(pieces: &[(TrafficSet, Decision)]) -> Vec<Entry> {
    let other = pieces
        .iter()
        .find(|(set, _)| set.other)
        .map_or(DEFAULT_DENY, |(_, d)| *d);
    let mut out = Vec::new();
    if other != DEFAULT_DENY {
        out.push(Entry {
            prefix_len: POLICY_PREFIX_ANY_PROTOCOL,
            protocol: 0,
            port: 0,
            decision: other,
        });
    }
    let mut protocols: Vec<u8> = pieces
        .iter()
        .flat_map(|(set, _)| set.by_protocol.keys().copied())
        .collect();
    protocols.sort_unstable();
    protocols.dedup();
    for protocol in protocols {
        let mut segments: Vec<(u32, u32, Decision)> = pieces
            .iter()
            .flat_map(|(set, d)| {
                set.ports(protocol)
                    .ranges()
                    .iter()
                    .map(|&(first, last)| (first, last, *d))
                    .collect::<Vec<_>>()
            })
            .collect();
        segments.sort_unstable_by_key(|s| s.0);
        let mut merged: Vec<(u32, u32, Decision)> = Vec::with_capacity(segments.len());
        for seg in segments {
            match merged.last_mut() {
                Some(prev) if prev.2 == seg.2 && prev.1 + 1 == seg.0 => prev.1 = seg.1,
                _ => merged.push(seg),
            }
        }
        let root = build(&merged, 0, 1 << 16);
        emit(&root, other, 0, 0, protocol, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::traffic_set::PortSet;
    use super::*;

    fn allow(rule: u32) -> Decision {
        Decision {
            verdict: Verdict::Allow,
            rule,
        }
    }

    /// Longest-prefix lookup over entries of one (endpoint, direction, identity).
    fn lookup(entries: &[Entry], protocol: u8, port: u16) -> Decision {
        let mut best: Option<&Entry> = None;
        for e in entries {
            let matches = if e.prefix_len == POLICY_PREFIX_ANY_PROTOCOL {
                true
            } else {
                let bits = e.prefix_len - POLICY_PREFIX_ANY_PORT;
                let mask = if bits == 0 {
                    0
                } else {
                    u16::MAX << (16 - bits)
                };
                e.protocol == protocol && (port & mask) == e.port
            };
            if matches && best.is_none_or(|b| b.prefix_len < e.prefix_len) {
                best = Some(e);
            }
        }
        best.map_or(DEFAULT_DENY, |e| e.decision)
    }

    fn pieces_for(ranges: &[(u16, u16, u32)]) -> Vec<(TrafficSet, Decision)> {
        let mut rest = TrafficSet::all();
        let mut pieces = Vec::new();
        for &(first, last, rule) in ranges {
            let set = TrafficSet::protocol(6, PortSet::range(first, last)).intersect(&rest);
            rest = rest.subtract(&set);
            pieces.push((set, allow(rule)));
        }
        pieces.push((rest, DEFAULT_DENY));
        pieces
    }

    #[test]
    fn single_port_is_one_full_entry() {
        let entries = encode(&pieces_for(&[(80, 80, 20)]));
        assert_eq!(
            entries,
            vec![Entry {
                prefix_len: 96,
                protocol: 6,
                port: 80,
                decision: allow(20)
            }]
        );
    }

    #[test]
    fn aligned_block_is_one_entry() {
        let entries = encode(&pieces_for(&[(1024, 2047, 20)]));
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].prefix_len, 80 + 6);
        assert_eq!(entries[0].port, 1024);
    }

    #[test]
    fn all_but_one_port_uses_the_protocol_entry() {
        // Allow every TCP port but 22: one any-port entry plus one exact deny.
        let mut rest = TrafficSet::all();
        let deny22 = TrafficSet::protocol(6, PortSet::range(22, 22));
        rest = rest.subtract(&deny22);
        let tcp = TrafficSet::protocol(6, PortSet::all()).intersect(&rest);
        rest = rest.subtract(&tcp);
        let pieces = vec![
            (deny22, DEFAULT_DENY),
            (tcp, allow(17)),
            (rest, DEFAULT_DENY),
        ];
        let entries = encode(&pieces);
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(lookup(&entries, 6, 22), DEFAULT_DENY);
        assert_eq!(lookup(&entries, 6, 23), allow(17));
        assert_eq!(lookup(&entries, 17, 22), DEFAULT_DENY);
    }

    #[test]
    fn encoding_reproduces_the_function() {
        let pieces = pieces_for(&[
            (1, 1000, 20),
            (500, 5000, 21),
            (65535, 65535, 22),
            (0, 0, 23),
        ]);
        let entries = encode(&pieces);
        for port in [
            0u16, 1, 2, 499, 500, 1000, 1001, 4999, 5000, 5001, 65534, 65535,
        ] {
            let expected = pieces
                .iter()
                .find(|(set, _)| set.contains(6, port))
                .map(|(_, d)| *d)
                .unwrap();
            assert_eq!(lookup(&entries, 6, port), expected, "port {port}");
        }
        // Range 1..=1000 alone needs 10 prefixes; sharing with its neighbours never needs
        // more than the sum of the parts.
        assert!(entries.len() <= 10 + 12 + 1 + 1, "{}", entries.len());
    }

    #[test]
    fn other_protocols_get_the_any_protocol_entry() {
        let all = TrafficSet::all();
        let entries = encode(&[(all, PROFILE_ALLOW)]);
        assert_eq!(
            entries,
            vec![Entry {
                prefix_len: 72,
                protocol: 0,
                port: 0,
                decision: PROFILE_ALLOW
            }]
        );
        assert!(encode(&[(TrafficSet::all(), DEFAULT_DENY)]).is_empty());
    }
}
