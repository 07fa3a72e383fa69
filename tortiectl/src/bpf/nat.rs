//! `bpf nat`: natOutgoing translations, two entries per flow.

use bpf_maps::{nat_flags, NatKey, NatValue};
use serde::Serialize;

use super::{
    format::{ipv4, port, protocol_name, seconds_since, IPPROTO_ICMP},
    table::Table,
};

/// One entry of `TORTIE_NAT`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NatRow {
    /// `outbound` (pod → outside, source rewritten) or `inbound` (reply, destination
    /// rewritten back to the pod).
    pub direction: &'static str,
    /// Protocol name.
    pub protocol: String,
    /// The packet the entry matches, `src → dst`.
    pub matches: String,
    /// What the entry writes: `src ADDR:PORT` or `dst ADDR:PORT`.
    pub rewrite: String,
    /// Seconds since the entry last carried a packet.
    pub idle_seconds: u64,
}

/// `addr:port`, or `addr id N` for ICMP echo (whose identifier sits in the port slot).
fn endpoint(addr: [u8; 4], port_be: u16, icmp: bool, with_port: bool) -> String {
    match (icmp, with_port) {
        (_, false) => ipv4(addr).to_string(),
        (true, true) => format!("{} id {}", ipv4(addr), port(port_be)),
        (false, true) => format!("{}:{}", ipv4(addr), port(port_be)),
    }
}

impl NatRow {
    /// Decodes one entry at monotonic time `now_ns`.
    pub fn new(key: &NatKey, value: &NatValue, now_ns: u64) -> Self {
        let icmp = key.protocol == IPPROTO_ICMP;
        let outbound = value.flags & nat_flags::OUTBOUND != 0;
        let inbound = value.flags & nat_flags::INBOUND != 0;
        // ICMP keys hold the identifier as the source "port" and 0 as the destination's.
        let matches = format!(
            "{} → {}",
            endpoint(key.src, key.src_port, icmp, true),
            endpoint(key.dst, key.dst_port, icmp, !icmp)
        );
        let target = endpoint(value.addr, value.port, icmp, true);
        let (direction, rewrite) = match (outbound, inbound) {
            (true, false) => ("outbound", format!("src {target}")),
            (false, true) => ("inbound", format!("dst {target}")),
            _ => ("unknown", format!("{target} (flags {:#x})", value.flags)),
        };
        Self {
            direction,
            protocol: protocol_name(key.protocol),
            matches,
            rewrite,
            idle_seconds: seconds_since(value.last_seen_ns, now_ns),
        }
    }
}

/// The NAT table.
pub fn nat_table(rows: &[NatRow]) -> Table {
    let mut table = Table::new(&["DIRECTION", "PROTO", "MATCHES", "REWRITE", "IDLE"]);
    for row in rows {
        table.push(vec![
            row.direction.into(),
            row.protocol.clone(),
            row.matches.clone(),
            row.rewrite.clone(),
            format!("{}s", row.idle_seconds),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// A key; ports in host order.
    fn key(src: [u8; 4], src_port: u16, dst: [u8; 4], dst_port: u16, protocol: u8) -> NatKey {
        NatKey {
            src,
            dst,
            src_port: src_port.to_be(),
            dst_port: dst_port.to_be(),
            protocol,
            _pad: [0; 3],
        }
    }

    /// A value; the port in host order.
    fn value(addr: [u8; 4], port: u16, flags: u16, last_seen_ns: u64) -> NatValue {
        NatValue {
            addr,
            port: port.to_be(),
            flags,
            last_seen_ns,
        }
    }

    #[test]
    fn both_directions_of_a_tcp_flow() {
        let out_key = key([10, 65, 0, 5], 40000, [1, 1, 1, 1], 443, 6);
        let out_value = value([192, 168, 0, 10], 61000, nat_flags::OUTBOUND, 90 * SEC);
        let row = NatRow::new(&out_key, &out_value, 100 * SEC);
        assert_eq!(row.direction, "outbound");
        assert_eq!(row.matches, "10.65.0.5:40000 → 1.1.1.1:443");
        assert_eq!(row.rewrite, "src 192.168.0.10:61000");
        assert_eq!(row.idle_seconds, 10);

        let in_key = key([1, 1, 1, 1], 443, [192, 168, 0, 10], 61000, 6);
        let in_value = value([10, 65, 0, 5], 40000, nat_flags::INBOUND, 100 * SEC);
        let row = NatRow::new(&in_key, &in_value, 100 * SEC);
        assert_eq!(row.direction, "inbound");
        assert_eq!(row.rewrite, "dst 10.65.0.5:40000");
        let text = nat_table(&[row]).render();
        assert!(
            text.contains(
                "inbound    tcp    1.1.1.1:443 → 192.168.0.10:61000  dst 10.65.0.5:40000  0s"
            ),
            "{text}"
        );
    }

    #[test]
    fn icmp_shows_echo_identifiers() {
        let key = key([10, 65, 0, 5], 77, [8, 8, 8, 8], 0, 1);
        let value = value([192, 168, 0, 10], 61001, nat_flags::OUTBOUND, 0);
        let row = NatRow::new(&key, &value, 0);
        assert_eq!(row.matches, "10.65.0.5 id 77 → 8.8.8.8");
        assert_eq!(row.rewrite, "src 192.168.0.10 id 61001");
    }
}
