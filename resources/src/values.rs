//! Values written either as a number or as a string, as Calico's `numorstring` types:
//! [`Protocol`], [`Port`] and [`AsNumber`].

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IP protocol: one of Calico's names or a protocol number.
///
/// Names are exact, as Calico spells them (`TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`,
/// `UDPLite`); a number may be written as an integer or a numeric string. Number `0` parses
/// but does not validate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `TCP` (6).
    Tcp,
    /// `UDP` (17).
    Udp,
    /// `ICMP` (1).
    Icmp,
    /// `ICMPv6` (58).
    IcmpV6,
    /// `SCTP` (132).
    Sctp,
    /// `UDPLite` (136).
    UdpLite,
    /// Any protocol by number, 1 to 255.
    Number(u8),
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => 1,
            Protocol::IcmpV6 => 58,
            Protocol::Sctp => 132,
            Protocol::UdpLite => 136,
            Protocol::Number(n) => n,
        }
    }

    /// Whether rules with this protocol may match ports (TCP, UDP, SCTP, UDPLite, by name
    /// or number).
    pub fn supports_ports(self) -> bool {
        matches!(self.number(), 6 | 17 | 132 | 136)
    }

    /// Whether this is ICMP (1).
    pub fn is_icmp(self) -> bool {
        self.number() == 1
    }

    /// Whether this is ICMPv6 (58).
    pub fn is_icmpv6(self) -> bool {
        self.number() == 58
    }

    fn name(self) -> Option<&'static str> {
        Some(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Icmp => "ICMP",
            Protocol::IcmpV6 => "ICMPv6",
            Protocol::Sctp => "SCTP",
            Protocol::UdpLite => "UDPLite",
            Protocol::Number(_) => return None,
        })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.number()),
        }
    }
}

const PROTOCOL_EXPECTED: &str =
    "expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a protocol number 1 to 255";

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Protocol, String> {
        Ok(match s {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "ICMP" => Protocol::Icmp,
            "ICMPv6" => Protocol::IcmpV6,
            "SCTP" => Protocol::Sctp,
            "UDPLite" => Protocol::UdpLite,
            _ => match s.parse::<u8>() {
                Ok(n) => Protocol::Number(n),
                Err(_) => return Err(format!("unknown protocol {s:?}: {PROTOCOL_EXPECTED}")),
            },
        })
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.name() {
            Some(name) => serializer.serialize_str(name),
            None => serializer.serialize_u8(self.number()),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ProtocolVisitor;
        impl Visitor<'_> for ProtocolVisitor {
            type Value = Protocol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protocol name or number")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Protocol, E> {
                u8::try_from(n).map(Protocol::Number).map_err(|_| {
                    E::custom(format!("protocol {n} is out of range: {PROTOCOL_EXPECTED}"))
                })
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Protocol, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!(
                        "protocol {n} is out of range: {PROTOCOL_EXPECTED}"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Protocol, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(ProtocolVisitor)
    }
}

/// A port match in a Calico rule: a number (`80`), an inclusive range written `"80:90"`, or
/// the name of a named port on the workload (`"http"`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    /// One port number.
    Number(u16),
    /// An inclusive range of port numbers.
    Range {
        /// The first port of the range.
        first: u16,
        /// The last port of the range (inclusive).
        last: u16,
    },
    /// A named port, resolved against the ports the selected workloads declare.
    Named(String),
}

impl Port {
    /// The inclusive port range this matches; `None` for a named port.
    pub fn range(&self) -> Option<(u16, u16)> {
        match self {
            Port::Number(n) => Some((*n, *n)),
            Port::Range { first, last } => Some((*first, *last)),
            Port::Named(_) => None,
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Number(n) => write!(f, "{n}"),
            Port::Range { first, last } => write!(f, "{first}:{last}"),
            Port::Named(name) => f.write_str(name),
        }
    }
}

fn parse_port_number(s: &str, whole: &str) -> Result<u16, String> {
    s.parse::<u16>().map_err(|_| {
        format!("invalid port {whole:?}: port numbers must be 0 to 65535 (and valid from 1)")
    })
}

impl FromStr for Port {
    type Err = String;

    /// `"80"` is a number, `"80:90"` a range, anything else a name.
    fn from_str(s: &str) -> Result<Port, String> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return parse_port_number(s, s).map(Port::Number);
        }
        if let Some((first, last)) = s.split_once(':') {
            return Ok(Port::Range {
                first: parse_port_number(first, s)?,
                last: parse_port_number(last, s)?,
            });
        }
        Ok(Port::Named(s.to_string()))
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Port::Number(n) => serializer.serialize_u16(*n),
            other => serializer.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number, a range \"first:last\" or a port name")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Port, E> {
                u16::try_from(n)
                    .map(Port::Number)
                    .map_err(|_| E::custom(format!("port {n} is out of range: must be 1 to 65535")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Port, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!(
                        "port {n} is out of range: must be 1 to 65535"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Port, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

/// A BGP autonomous system number, 1 to 4294967295. Accepts an integer, a numeric string,
/// or the dotted `high.low` notation (`"1.10"` is 65546); written out as an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AsNumber(pub u32);

impl fmt::Display for AsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for AsNumber {
    type Err = String;

    fn from_str(s: &str) -> Result<AsNumber, String> {
        let invalid = || {
            format!(
                "invalid AS number {s:?}: write a number 1 to 4294967295 or the dotted form \
                 like 1.10"
            )
        };
        if let Some((high, low)) = s.split_once('.') {
            let high: u16 = high.parse().map_err(|_| invalid())?;
            let low: u16 = low.parse().map_err(|_| invalid())?;
            return Ok(AsNumber((u32::from(high) << 16) | u32::from(low)));
        }
        s.parse().map(AsNumber).map_err(|_| invalid())
    }
}

impl Serialize for AsNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for AsNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AsVisitor;
        impl Visitor<'_> for AsVisitor {
            type Value = AsNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AS number")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<AsNumber, E> {
                u32::try_from(n).map(AsNumber).map_err(|_| {
                    E::custom(format!(
                        "AS number {n} is out of range: must be 1 to 4294967295"
                    ))
                })
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<AsNumber, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!(
                        "AS number {n} is out of range: must be 1 to 4294967295"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<AsNumber, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(AsVisitor)
    }
}

/// Serializes a policy `order` as an integer when it is a whole number (`order: 100`, as
/// calicoctl prints it) and as a float otherwise.
pub(crate) fn serialize_order<S: Serializer>(
    order: &Option<f64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match order {
        // 2^53: every integer below it is exact in an f64.
        Some(o) if o.fract() == 0.0 && o.abs() < 9_007_199_254_740_992.0 => {
            serializer.serialize_i64(*o as i64)
        }
        Some(o) => serializer.serialize_f64(*o),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols() {
        let p: Protocol = serde_json::from_str("\"TCP\"").unwrap();
        assert_eq!(p, Protocol::Tcp);
        let p: Protocol = serde_json::from_str("17").unwrap();
        assert_eq!(p, Protocol::Number(17));
        assert!(p.supports_ports());
        let p: Protocol = serde_json::from_str("\"ICMPv6\"").unwrap();
        assert!(p.is_icmpv6() && !p.supports_ports());
        assert!(serde_json::from_str::<Protocol>("\"tcp\"").is_err());
        assert!(serde_json::from_str::<Protocol>("256").is_err());
        assert_eq!(serde_json::to_string(&Protocol::Number(47)).unwrap(), "47");
        assert_eq!(
            serde_json::to_string(&Protocol::UdpLite).unwrap(),
            "\"UDPLite\""
        );
    }

    #[test]
    fn ports() {
        let ports: Vec<Port> = serde_json::from_str(r#"[80, "443", "8000:8080", "http"]"#).unwrap();
        assert_eq!(
            ports,
            vec![
                Port::Number(80),
                Port::Number(443),
                Port::Range {
                    first: 8000,
                    last: 8080
                },
                Port::Named("http".into())
            ]
        );
        assert_eq!(
            serde_json::to_string(&ports).unwrap(),
            r#"[80,443,"8000:8080","http"]"#
        );
        assert!(serde_json::from_str::<Port>("70000").is_err());
        assert!(serde_json::from_str::<Port>("\"1:x\"").is_err());
    }

    #[test]
    fn as_numbers() {
        assert_eq!("64512".parse(), Ok(AsNumber(64512)));
        assert_eq!("1.10".parse(), Ok(AsNumber(65546)));
        assert!("1.70000".parse::<AsNumber>().is_err());
        let n: AsNumber = serde_json::from_str("4294967295").unwrap();
        assert_eq!(n, AsNumber(u32::MAX));
        assert!(serde_json::from_str::<AsNumber>("4294967296").is_err());
        assert_eq!(serde_json::to_string(&AsNumber(65546)).unwrap(), "65546");
    }
}
