//! Which protocols and destination ports a rule matches.
//!
//! A [`Traffic`] is Calico's protocol, port and ICMP fields; a Kubernetes port list becomes
//! one `Traffic` per port (any of them matching). ICMP type and code live in the "port"
//! (`type << 8 | code`), as the dataplane keys them.

use crate::model::NamedPort;

/// IP protocol number of ICMP.
pub(crate) const PROTO_ICMP: u8 = 1;

/// Whether destination ports mean anything for the protocol (TCP, UDP, SCTP, UDPLite).
pub(crate) fn has_ports(protocol: u8) -> bool {
    matches!(protocol, 6 | 17 | 132 | 136)
}

/// A destination port condition: a range of numbers or a named port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PortSpec {
    /// Inclusive range.
    Range(u16, u16),
    /// Resolved against the destination endpoint's named ports of the rule's protocol.
    Named(String),
}

impl PortSpec {
    fn contains(&self, protocol: u8, port: u16, named: &[NamedPort]) -> bool {
        match self {
            PortSpec::Range(first, last) => (*first..=*last).contains(&port),
            PortSpec::Named(name) => named
                .iter()
                .any(|np| np.name == *name && np.protocol == protocol && np.port == port),
        }
    }
}

/// ICMP type and optional code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct IcmpSpec {
    pub icmp_type: u8,
    pub code: Option<u8>,
}

impl IcmpSpec {
    /// The inclusive range of "ports" (`type << 8 | code`) it matches.
    pub fn range(self) -> (u16, u16) {
        let base = u16::from(self.icmp_type) << 8;
        match self.code {
            Some(code) => (base | u16::from(code), base | u16::from(code)),
            None => (base, base | 0xff),
        }
    }

    fn contains(self, port: u16) -> bool {
        let (first, last) = self.range();
        (first..=last).contains(&port)
    }
}

/// A protocol/port condition: every field that is set must hold.
///
/// Normalization guarantees that port and ICMP conditions only appear with `protocol` set,
/// as Calico requires; that is what lets the compiler express them per protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Traffic {
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    /// The port is in one of these (when any).
    pub ports: Vec<PortSpec>,
    /// The port is in none of these.
    pub not_ports: Vec<PortSpec>,
    pub icmp: Option<IcmpSpec>,
    pub not_icmp: Option<IcmpSpec>,
}

impl Traffic {
    /// Every protocol and port.
    pub fn any() -> Traffic {
        Traffic::default()
    }

    /// Every port of one protocol.
    pub fn protocol(protocol: u8) -> Traffic {
        Traffic {
            protocol: Some(protocol),
            ..Traffic::default()
        }
    }

    /// Whether a packet of `protocol` to `port` matches, named ports resolving against
    /// `named` (the destination endpoint's).
    pub fn matches(&self, protocol: u8, port: u16, named: &[NamedPort]) -> bool {
        self.protocol.is_none_or(|p| p == protocol)
            && self.not_protocol != Some(protocol)
            && (self.ports.is_empty()
                || self
                    .ports
                    .iter()
                    .any(|spec| spec.contains(protocol, port, named)))
            && !self
                .not_ports
                .iter()
                .any(|spec| spec.contains(protocol, port, named))
            && self.icmp.is_none_or(|icmp| icmp.contains(port))
            && !self.not_icmp.is_some_and(|icmp| icmp.contains(port))
    }

    /// Whether any port condition names a port.
    pub fn uses_named_ports(&self) -> bool {
        self.named_refs().next().is_some()
    }

    /// The `(name, protocol)` pairs of named ports the condition reads.
    pub fn named_refs(&self) -> impl Iterator<Item = (&str, u8)> + '_ {
        let protocol = self.protocol.unwrap_or(0);
        self.ports
            .iter()
            .chain(&self.not_ports)
            .filter_map(move |spec| match spec {
                PortSpec::Named(name) => Some((name.as_str(), protocol)),
                PortSpec::Range(..) => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http() -> Vec<NamedPort> {
        vec![NamedPort {
            name: "http".into(),
            protocol: 6,
            port: 8080,
        }]
    }

    #[test]
    fn ports_and_not_ports() {
        let t = Traffic {
            protocol: Some(6),
            ports: vec![PortSpec::Range(80, 90), PortSpec::Named("http".into())],
            not_ports: vec![PortSpec::Range(85, 85)],
            ..Traffic::default()
        };
        assert!(t.matches(6, 80, &[]));
        assert!(!t.matches(6, 85, &[]));
        assert!(!t.matches(17, 80, &[]));
        assert!(t.matches(6, 8080, &http()));
        assert!(!t.matches(6, 8080, &[]));
        assert!(t.uses_named_ports());
        assert_eq!(t.named_refs().collect::<Vec<_>>(), vec![("http", 6)]);
    }

    #[test]
    fn named_port_needs_matching_protocol() {
        let t = Traffic {
            protocol: Some(17),
            ports: vec![PortSpec::Named("http".into())],
            ..Traffic::default()
        };
        assert!(!t.matches(17, 8080, &http()));
    }

    #[test]
    fn not_protocol_and_icmp() {
        let t = Traffic {
            not_protocol: Some(6),
            ..Traffic::default()
        };
        assert!(!t.matches(6, 1, &[]));
        assert!(t.matches(17, 1, &[]));
        let echo = Traffic {
            protocol: Some(PROTO_ICMP),
            icmp: Some(IcmpSpec {
                icmp_type: 8,
                code: None,
            }),
            not_icmp: Some(IcmpSpec {
                icmp_type: 8,
                code: Some(3),
            }),
            ..Traffic::default()
        };
        assert!(echo.matches(1, 8 << 8, &[]));
        assert!(echo.matches(1, (8 << 8) | 255, &[]));
        assert!(!echo.matches(1, (8 << 8) | 3, &[]));
        assert!(!echo.matches(1, 0, &[]));
    }
}
