//! Connectivity probes for the policy conformance table: what `tortie-probe` serves and how
//! it connects, and how its output is read back.
//!
//! A probe is one connection attempt from a pod to `protocol ip:port`:
//! - TCP: a completed three-way handshake;
//! - UDP: a datagram echoed back by the server;
//! - SCTP: an INIT answered by an INIT ACK carrying the initiator's verification tag. The
//!   lab's kernel has no SCTP stack, so both ends speak the first leg of the SCTP handshake
//!   over raw IP sockets (protocol 132). The dataplane sees the same packets a kernel SCTP
//!   association would start with: a new SCTP flow to the port, then its reply.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// IANA protocol number of SCTP.
pub const IPPROTO_SCTP: i32 = 132;

/// SCTP chunk types used by the probe.
const CHUNK_INIT: u8 = 1;
const CHUNK_INIT_ACK: u8 = 2;
/// State Cookie parameter of INIT ACK (mandatory there).
const PARAM_STATE_COOKIE: u16 = 7;

/// A transport protocol a probe can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Every protocol, in the order reports list them.
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// Upper-case name, as Kubernetes spells it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            _ => Err(format!("unknown protocol {s:?}: use TCP, UDP or SCTP")),
        }
    }
}

/// Where a probe goes: `PROTO:IP:PORT` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// Transport.
    pub protocol: Protocol,
    /// Destination address.
    pub ip: Ipv4Addr,
    /// Destination port.
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.protocol, self.ip, self.port)
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.splitn(3, ':');
        let (Some(protocol), Some(ip), Some(port)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("probe target {s:?}: expected PROTO:IP:PORT"));
        };
        Ok(Target {
            protocol: protocol.parse()?,
            ip: ip
                .parse()
                .map_err(|err| format!("probe target {s:?}: address: {err}"))?,
            port: port
                .parse()
                .map_err(|err| format!("probe target {s:?}: port: {err}"))?,
        })
    }
}

/// What one probe observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake completed (TCP), the echo came back (UDP), INIT ACK arrived (SCTP).
    Connected,
    /// Actively refused (TCP RST or ICMP unreachable): the network delivered, nobody served.
    Refused,
    /// Nothing came back in time: what a dropped packet looks like.
    Timeout,
    /// The probe itself failed (socket error).
    Error,
}

impl Outcome {
    /// The word `tortie-probe connect` prints.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Connected => "connected",
            Outcome::Refused => "refused",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            Outcome::Connected,
            Outcome::Refused,
            Outcome::Timeout,
            Outcome::Error,
        ]
        .into_iter()
        .find(|o| o.word() == s)
        .ok_or_else(|| format!("unknown probe outcome {s:?}"))
    }
}

/// One line of `tortie-probe connect` output: `TARGET OUTCOME [detail]`.
pub fn format_result(target: &Target, outcome: Outcome, detail: &str) -> String {
    if detail.is_empty() {
        format!("{target} {}", outcome.word())
    } else {
        format!("{target} {} {detail}", outcome.word())
    }
}

/// Parses the output of `tortie-probe connect` back into (target, outcome) pairs.
pub fn parse_results(text: &str) -> Result<Vec<(Target, Outcome)>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let (Some(target), Some(outcome)) = (words.next(), words.next()) else {
                return Err(format!(
                    "probe output line {line:?}: expected TARGET OUTCOME"
                ));
            };
            Ok((target.parse()?, outcome.parse()?))
        })
        .collect()
}

/// CRC32c (Castagnoli), SCTP's checksum (RFC 9260 appendix A).
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

/// An SCTP packet: common header plus one chunk, with its checksum filled in.
fn sctp_packet(src_port: u16, dst_port: u16, vtag: u32, chunk: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(12 + chunk.len());
    packet.extend_from_slice(&src_port.to_be_bytes());
    packet.extend_from_slice(&dst_port.to_be_bytes());
    packet.extend_from_slice(&vtag.to_be_bytes());
    packet.extend_from_slice(&[0; 4]);
    packet.extend_from_slice(chunk);
    // The CRC goes on the wire least significant byte first, as Linux writes it.
    let crc = crc32c(&packet);
    packet[8..12].copy_from_slice(&crc.to_le_bytes());
    packet
}

/// The fixed part of INIT and INIT ACK: initiate tag, a_rwnd, streams, initial TSN.
fn init_body(chunk_type: u8, tag: u32, params: &[u8]) -> Vec<u8> {
    let length = 20 + params.len();
    let mut chunk = Vec::with_capacity(length);
    chunk.push(chunk_type);
    chunk.push(0);
    chunk.extend_from_slice(&u16::try_from(length).unwrap_or(u16::MAX).to_be_bytes());
    chunk.extend_from_slice(&tag.to_be_bytes());
    chunk.extend_from_slice(&65_535u32.to_be_bytes());
    chunk.extend_from_slice(&1u16.to_be_bytes());
    chunk.extend_from_slice(&1u16.to_be_bytes());
    chunk.extend_from_slice(&tag.to_be_bytes());
    chunk.extend_from_slice(params);
    chunk
}

/// An SCTP INIT from `src_port` to `dst_port` offering initiate tag `tag` (non-zero).
pub fn sctp_init(src_port: u16, dst_port: u16, tag: u32) -> Vec<u8> {
    sctp_packet(src_port, dst_port, 0, &init_body(CHUNK_INIT, tag, &[]))
}

/// The INIT ACK answering `init`, with the server's own tag and an opaque state cookie.
pub fn sctp_init_ack(init: &SctpHeader, server_tag: u32) -> Vec<u8> {
    let cookie = *b"tortie-probe-cookie\0";
    let mut param = Vec::with_capacity(4 + cookie.len());
    param.extend_from_slice(&PARAM_STATE_COOKIE.to_be_bytes());
    param.extend_from_slice(&u16::try_from(4 + cookie.len()).unwrap_or(0).to_be_bytes());
    param.extend_from_slice(&cookie);
    sctp_packet(
        init.dst_port,
        init.src_port,
        init.initiate_tag,
        &init_body(CHUNK_INIT_ACK, server_tag, &param),
    )
}

/// The parts of a received SCTP packet the probe looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SctpHeader {
    /// Source address (from the IP header).
    pub src: Ipv4Addr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Verification tag.
    pub vtag: u32,
    /// Type of the first chunk.
    pub chunk_type: u8,
    /// Initiate tag of an INIT or INIT ACK (0 for other chunks).
    pub initiate_tag: u32,
}

impl SctpHeader {
    /// Whether this is an INIT.
    pub fn is_init(&self) -> bool {
        self.chunk_type == CHUNK_INIT
    }

    /// Whether this is the INIT ACK answering an INIT sent from `port` with tag `tag`.
    pub fn answers(&self, port: u16, tag: u32) -> bool {
        self.chunk_type == CHUNK_INIT_ACK && self.dst_port == port && self.vtag == tag
    }
}

/// Parses an IPv4 packet as a raw socket delivers it (IP header included). Packets that are
/// too short or not SCTP give `None`.
pub fn parse_sctp(packet: &[u8]) -> Option<SctpHeader> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    if ihl < 20 || *packet.get(9)? != 132 {
        return None;
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let sctp = packet.get(ihl..)?;
    let be16 = |at: usize| Some(u16::from_be_bytes([*sctp.get(at)?, *sctp.get(at + 1)?]));
    let be32 = |at: usize| {
        Some(u32::from_be_bytes([
            *sctp.get(at)?,
            *sctp.get(at + 1)?,
            *sctp.get(at + 2)?,
            *sctp.get(at + 3)?,
        ]))
    };
    let chunk_type = *sctp.get(12)?;
    let initiate_tag = if chunk_type == CHUNK_INIT || chunk_type == CHUNK_INIT_ACK {
        be32(16)?
    } else {
        0
    };
    Some(SctpHeader {
        src,
        src_port: be16(0)?,
        dst_port: be16(2)?,
        vtag: be32(4)?,
        chunk_type,
        initiate_tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ip_header(src: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 132, 0, 0];
        packet.extend_from_slice(&src);
        packet.extend_from_slice(&[10, 0, 0, 2]);
        packet.extend_from_slice(payload);
        packet
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn init_and_init_ack_round_trip() {
        let init = sctp_init(40_000, 80, 0xdead_beef);
        let mut zeroed = init.clone();
        zeroed[8..12].copy_from_slice(&[0; 4]);
        assert_eq!(init[8..12], crc32c(&zeroed).to_le_bytes());
        let seen = parse_sctp(&with_ip_header([10, 0, 0, 1], &init)).unwrap();
        assert!(seen.is_init());
        assert_eq!(
            (
                seen.src,
                seen.src_port,
                seen.dst_port,
                seen.vtag,
                seen.initiate_tag
            ),
            (Ipv4Addr::new(10, 0, 0, 1), 40_000, 80, 0, 0xdead_beef)
        );
        let ack = sctp_init_ack(&seen, 7);
        let reply = parse_sctp(&with_ip_header([10, 0, 0, 2], &ack)).unwrap();
        assert!(reply.answers(40_000, 0xdead_beef));
        assert!(!reply.answers(40_001, 0xdead_beef));
        assert_eq!(reply.initiate_tag, 7);
        assert!(parse_sctp(&[0x45, 0]).is_none());
    }

    #[test]
    fn targets_and_results_parse_back() {
        let target: Target = "sctp:10.0.0.1:81".parse().unwrap();
        assert_eq!(target.to_string(), "SCTP:10.0.0.1:81");
        let line = format_result(&target, Outcome::Timeout, "after 1s");
        assert_eq!(
            parse_results(&format!("{line}\n\n")).unwrap(),
            vec![(target, Outcome::Timeout)]
        );
        assert!("icmp:10.0.0.1:1".parse::<Target>().is_err());
        assert!("TCP:10.0.0.1".parse::<Target>().is_err());
        assert!(parse_results("TCP:10.0.0.1:80 maybe").is_err());
    }
}
