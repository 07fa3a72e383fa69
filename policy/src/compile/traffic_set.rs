//! Sets of (protocol, port) as interval lists, for first-match resolution.
//!
//! The space is 256 protocols × 65536 ports. A [`TrafficSet`] stores the port set of each
//! protocol it names and one flag for every protocol it does not, so "all protocols but TCP"
//! and "TCP ports 80–90" are both a few words, and the resolution never enumerates ports.

use std::collections::BTreeMap;

use crate::model::NamedPort;
use crate::normalize::{PortSpec, Traffic};

/// The last port (or ICMP `type << 8 | code`).
const MAX_PORT: u32 = 0xffff;

/// A set of ports: sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct PortSet(Vec<(u32, u32)>);

impl PortSet {
    pub fn empty() -> PortSet {
        PortSet(Vec::new())
    }

    pub fn all() -> PortSet {
        PortSet(vec![(0, MAX_PORT)])
    }

    /// The ports of an inclusive range.
    pub fn range(first: u16, last: u16) -> PortSet {
        if first > last {
            return PortSet::empty();
        }
        PortSet(vec![(u32::from(first), u32::from(last))])
    }

    /// Builds from arbitrary ranges.
    pub fn from_ranges(mut ranges: Vec<(u32, u32)>) -> PortSet {
        ranges.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (first, last) in ranges {
            match out.last_mut() {
                Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
                _ => out.push((first, last)),
            }
        }
        PortSet(out)
    }

    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[cfg(test)]
    pub fn is_all(&self) -> bool {
        self.0 == [(0, MAX_PORT)]
    }

    #[cfg(test)]
    pub fn contains(&self, port: u32) -> bool {
        self.0
            .iter()
            .any(|&(first, last)| first <= port && port <= last)
    }

    pub fn union(&self, other: &PortSet) -> PortSet {
        let mut all = self.0.clone();
        all.extend_from_slice(&other.0);
        PortSet::from_ranges(all)
    }

    pub fn intersect(&self, other: &PortSet) -> PortSet {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.0.len() && j < other.0.len() {
            let (a0, a1) = self.0[i];
            let (b0, b1) = other.0[j];
            let (lo, hi) = (a0.max(b0), a1.min(b1));
            if lo <= hi {
                out.push((lo, hi));
            }
            if a1 < b1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        PortSet(out)
    }

    pub fn complement(&self) -> PortSet {
        let mut out = Vec::new();
        let mut next = 0u32;
        for &(first, last) in &self.0 {
            if first > next {
                out.push((next, first - 1));
            }
            next = last + 1;
        }
        if next <= MAX_PORT {
            out.push((next, MAX_PORT));
        }
        PortSet(out)
    }

    pub fn subtract(&self, other: &PortSet) -> PortSet {
        self.intersect(&other.complement())
    }
}

/// A set of (protocol, port): per named protocol its ports, and `other` for the rest.
/// Normalized: no protocol is stored with the set `other` already implies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TrafficSet {
    /// Whether every port of every protocol not in `by_protocol` is in the set.
    pub other: bool,
    pub by_protocol: BTreeMap<u8, PortSet>,
}

impl TrafficSet {
    pub fn empty() -> TrafficSet {
        TrafficSet {
            other: false,
            by_protocol: BTreeMap::new(),
        }
    }

    pub fn all() -> TrafficSet {
        TrafficSet {
            other: true,
            by_protocol: BTreeMap::new(),
        }
    }

    /// The ports of one protocol.
    pub fn protocol(protocol: u8, ports: PortSet) -> TrafficSet {
        let mut set = TrafficSet::empty();
        if !ports.is_empty() {
            set.by_protocol.insert(protocol, ports);
        }
        set
    }

    fn default_ports(&self) -> PortSet {
        if self.other {
            PortSet::all()
        } else {
            PortSet::empty()
        }
    }

    /// The ports of `protocol` in the set.
    pub fn ports(&self, protocol: u8) -> PortSet {
        self.by_protocol
            .get(&protocol)
            .cloned()
            .unwrap_or_else(|| self.default_ports())
    }

    pub fn is_empty(&self) -> bool {
        !self.other && self.by_protocol.is_empty()
    }

    fn combine(
        &self,
        other: &TrafficSet,
        flag: fn(bool, bool) -> bool,
        ports: fn(&PortSet, &PortSet) -> PortSet,
    ) -> TrafficSet {
        let mut out = TrafficSet {
            other: flag(self.other, other.other),
            by_protocol: BTreeMap::new(),
        };
        let default = out.default_ports();
        for &protocol in self.by_protocol.keys().chain(other.by_protocol.keys()) {
            if out.by_protocol.contains_key(&protocol) {
                continue;
            }
            let set = ports(&self.ports(protocol), &other.ports(protocol));
            if set != default {
                out.by_protocol.insert(protocol, set);
            }
        }
        // A protocol equal to the default is dropped above; keep the map canonical.
        out
    }

    pub fn intersect(&self, other: &TrafficSet) -> TrafficSet {
        self.combine(other, |a, b| a && b, PortSet::intersect)
    }

    pub fn union(&self, other: &TrafficSet) -> TrafficSet {
        self.combine(other, |a, b| a || b, PortSet::union)
    }

    pub fn subtract(&self, other: &TrafficSet) -> TrafficSet {
        self.combine(other, |a, b| a && !b, PortSet::subtract)
    }

    /// Whether (protocol, port) is in the set.
    #[cfg(test)]
    pub fn contains(&self, protocol: u8, port: u16) -> bool {
        self.ports(protocol).contains(u32::from(port))
    }
}

fn spec_ports(spec: &PortSpec, protocol: u8, named: &[NamedPort]) -> Vec<(u32, u32)> {
    match spec {
        PortSpec::Range(first, last) => vec![(u32::from(*first), u32::from(*last))],
        PortSpec::Named(name) => named
            .iter()
            .filter(|np| np.name == *name && np.protocol == protocol)
            .map(|np| (u32::from(np.port), u32::from(np.port)))
            .collect(),
    }
}

/// The set a [`Traffic`] matches, named ports resolving against `named` (the destination
/// endpoint's).
pub(crate) fn traffic_set(traffic: &Traffic, named: &[NamedPort]) -> TrafficSet {
    let Some(protocol) = traffic.protocol else {
        // Normalization only lets port and ICMP conditions through with a protocol.
        let mut set = TrafficSet::all();
        if let Some(excluded) = traffic.not_protocol {
            set.by_protocol.insert(excluded, PortSet::empty());
        }
        return set;
    };
    if traffic.not_protocol == Some(protocol) {
        return TrafficSet::empty();
    }
    let port_set = |specs: &[PortSpec]| {
        PortSet::from_ranges(
            specs
                .iter()
                .flat_map(|spec| spec_ports(spec, protocol, named))
                .collect(),
        )
    };
    let mut ports = if traffic.ports.is_empty() {
        PortSet::all()
    } else {
        port_set(&traffic.ports)
    };
    if !traffic.not_ports.is_empty() {
        ports = ports.subtract(&port_set(&traffic.not_ports));
    }
    if let Some(icmp) = traffic.icmp {
        let (first, last) = icmp.range();
        ports = ports.intersect(&PortSet::range(first, last));
    }
    if let Some(icmp) = traffic.not_icmp {
        let (first, last) = icmp.range();
        ports = ports.subtract(&PortSet::range(first, last));
    }
    TrafficSet::protocol(protocol, ports)
}

/// The union of several alternatives.
pub(crate) fn traffic_union(alternatives: &[Traffic], named: &[NamedPort]) -> TrafficSet {
    alternatives.iter().fold(TrafficSet::empty(), |acc, t| {
        acc.union(&traffic_set(t, named))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Traffic;

    #[test]
    fn port_set_algebra() {
        let a = PortSet::from_ranges(vec![(10, 20), (21, 30), (50, 60)]);
        assert_eq!(a.ranges(), &[(10, 30), (50, 60)]);
        let b = PortSet::range(25, 55);
        assert_eq!(a.intersect(&b).ranges(), &[(25, 30), (50, 55)]);
        assert_eq!(a.subtract(&b).ranges(), &[(10, 24), (56, 60)]);
        assert_eq!(a.union(&b).ranges(), &[(10, 60)]);
        assert_eq!(
            PortSet::range(0, 5).complement().ranges(),
            &[(6, u32::from(u16::MAX))]
        );
        assert!(PortSet::all().complement().is_empty());
        assert!(PortSet::empty().complement().is_all());
    }

    #[test]
    fn traffic_set_algebra_is_canonical() {
        let tcp80 = TrafficSet::protocol(6, PortSet::range(80, 80));
        let all = TrafficSet::all();
        let rest = all.subtract(&tcp80);
        assert!(rest.other);
        assert!(!rest.contains(6, 80));
        assert!(rest.contains(6, 81));
        assert!(rest.contains(17, 80));
        // Adding back what was removed gives the canonical "all".
        assert_eq!(rest.union(&tcp80), all);
        assert!(rest.intersect(&tcp80).is_empty());
        assert_eq!(all.subtract(&all), TrafficSet::empty());
    }

    #[test]
    fn traffic_to_set() {
        let named = vec![NamedPort {
            name: "http".into(),
            protocol: 6,
            port: 8080,
        }];
        let t = Traffic {
            protocol: Some(6),
            ports: vec![PortSpec::Range(1, 100), PortSpec::Named("http".into())],
            not_ports: vec![PortSpec::Range(50, 50)],
            ..Traffic::default()
        };
        let set = traffic_set(&t, &named);
        assert!(!set.other);
        assert_eq!(set.ports(6).ranges(), &[(1, 49), (51, 100), (8080, 8080)]);
        let not_tcp = Traffic {
            not_protocol: Some(6),
            ..Traffic::default()
        };
        let set = traffic_set(&not_tcp, &[]);
        assert!(set.other && set.ports(6).is_empty());
        let unresolved = Traffic {
            protocol: Some(6),
            ports: vec![PortSpec::Named("grpc".into())],
            ..Traffic::default()
        };
        assert!(traffic_set(&unresolved, &named).is_empty());
    }
}
