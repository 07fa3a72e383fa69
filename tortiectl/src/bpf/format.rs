//! Small decoders shared by the views: addresses, MACs, flag sets, protocols, identities.

use std::net::Ipv4Addr;

use bpf_maps::policy::{IDENTITY_HOST, IDENTITY_REMOTE_HOST, IDENTITY_WORLD};
use ipnet::Ipv4Net;

/// IP protocol numbers the dataplane handles by name.
pub const IPPROTO_ICMP: u8 = 1;
/// TCP.
pub const IPPROTO_TCP: u8 = 6;
/// UDP.
pub const IPPROTO_UDP: u8 = 17;

/// An IPv4 address stored in network byte order.
pub fn ipv4(bytes: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(bytes)
}

/// An LPM key's address and prefix length as a prefix (the length clamped to 32).
pub fn prefix(addr: [u8; 4], prefix_len: u32) -> Ipv4Net {
    Ipv4Net::new(ipv4(addr), prefix_len.min(32) as u8).unwrap_or_default()
}

/// A port stored in network byte order, as a number.
pub fn port(network_order: u16) -> u16 {
    u16::from_be(network_order)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac(bytes: [u8; 6]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A MAC, or `None` when it is all zeros (unset).
pub fn mac_if_set(bytes: [u8; 6]) -> Option<String> {
    (bytes != [0; 6]).then(|| mac(bytes))
}

/// The names of the bits set in `bits`, in table order; bits without a name appear as hex so
/// a newer dataplane's flags are never silently hidden.
pub fn flag_names(bits: u32, names: &[(u32, &'static str)]) -> Vec<String> {
    let mut known = 0;
    let mut out = Vec::new();
    for (bit, name) in names {
        known |= bit;
        if bits & bit != 0 {
            out.push((*name).to_string());
        }
    }
    if bits & !known != 0 {
        out.push(format!("{:#x}", bits & !known));
    }
    out
}

/// Flags for a table cell: comma separated, `-` when none.
pub fn flags_cell(flags: &[String]) -> String {
    if flags.is_empty() {
        "-".into()
    } else {
        flags.join(",")
    }
}

/// `tcp`, `udp`, `icmp`, or the protocol number.
pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        IPPROTO_ICMP => "icmp".into(),
        IPPROTO_TCP => "tcp".into(),
        IPPROTO_UDP => "udp".into(),
        4 => "ipip".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        132 => "sctp".into(),
        other => other.to_string(),
    }
}

/// The name of a reserved identity (`world`, `host`, `remote-host`).
pub fn reserved_identity(identity: u32) -> Option<&'static str> {
    match identity {
        IDENTITY_WORLD => Some("world"),
        IDENTITY_HOST => Some("host"),
        IDENTITY_REMOTE_HOST => Some("remote-host"),
        _ => None,
    }
}

/// An identity for a table cell: `1 (world)`, or the number.
pub fn identity_cell(identity: u32) -> String {
    match reserved_identity(identity) {
        Some(name) => format!("{identity} ({name})"),
        None => identity.to_string(),
    }
}

/// Whole seconds between two `CLOCK_MONOTONIC` nanosecond stamps (0 when `then` is later).
pub fn seconds_since(then_ns: u64, now_ns: u64) -> u64 {
    now_ns.saturating_sub(then_ns) / 1_000_000_000
}

/// An optional value for a table cell (`-` when absent).
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_name_known_bits_and_show_the_rest_in_hex() {
        let names = [(1, "a"), (4, "c")];
        assert_eq!(flag_names(0b101, &names), vec!["a", "c"]);
        assert_eq!(flag_names(0b1011, &names), vec!["a", "0xa"]);
        assert!(flag_names(0, &names).is_empty());
        assert_eq!(flags_cell(&[]), "-");
    }

    #[test]
    fn values_decode_from_network_order() {
        assert_eq!(port(8080u16.to_be()), 8080);
        assert_eq!(ipv4([10, 65, 0, 1]).to_string(), "10.65.0.1");
        assert_eq!(mac([0xee, 0xee, 0, 1, 0x2a, 0xff]), "ee:ee:00:01:2a:ff");
        assert_eq!(mac_if_set([0; 6]), None);
    }

    #[test]
    fn reserved_identities_have_names() {
        assert_eq!(identity_cell(1), "1 (world)");
        assert_eq!(identity_cell(2), "2 (host)");
        assert_eq!(identity_cell(3), "3 (remote-host)");
        assert_eq!(identity_cell(256), "256");
        assert_eq!(protocol_name(6), "tcp");
        assert_eq!(protocol_name(99), "99");
    }

    #[test]
    fn elapsed_seconds_never_go_negative() {
        assert_eq!(seconds_since(1_000_000_000, 3_500_000_000), 2);
        assert_eq!(seconds_since(5_000_000_000, 1_000_000_000), 0);
    }
}
