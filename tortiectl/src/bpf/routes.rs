//! `bpf routes` and `bpf endpoints`: the forwarding state the agent programmed.

use std::net::Ipv4Addr;

use bpf_maps::{iface_flags, route_flags, IfaceValue, RouteValue};
use ipnet::Ipv4Net;
use serde::Serialize;

use super::{
    format::{flag_names, flags_cell, ipv4, mac_if_set, or_dash},
    table::Table,
};

/// Route flag names, in bit order.
pub const ROUTE_FLAG_NAMES: [(u32, &str); 11] = [
    (route_flags::LOCAL_WORKLOAD, "local-workload"),
    (route_flags::REMOTE_WORKLOAD, "remote-workload"),
    (route_flags::LOCAL_HOST, "local-host"),
    (route_flags::REMOTE_HOST, "remote-host"),
    (route_flags::IN_POOL, "in-pool"),
    (route_flags::TUNNELED_IPIP, "ipip"),
    (route_flags::TUNNELED_VXLAN, "vxlan"),
    (route_flags::SAME_SUBNET, "same-subnet"),
    (route_flags::NAT_OUTGOING, "nat-outgoing"),
    (route_flags::LEARNED_BGP, "bgp"),
    (route_flags::EXTERNAL, "external"),
];

/// Interface flag names, in bit order. `HAS_IPV4` has none: it only says the address is
/// valid, which the address column shows.
pub const IFACE_FLAG_NAMES: [(u32, &str); 4] = [
    (iface_flags::WORKLOAD, "workload"),
    (iface_flags::HOST_UPLINK, "uplink"),
    (iface_flags::POLICED_INGRESS, "policed-ingress"),
    (iface_flags::POLICED_EGRESS, "policed-egress"),
];

/// One entry of `TORTIE_ROUTES`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteRow {
    /// Destination prefix.
    pub prefix: Ipv4Net,
    /// Flag names.
    pub flags: Vec<String>,
    /// Next-hop node, for remote prefixes.
    pub next_hop: Option<Ipv4Addr>,
    /// Host-side interface of a local workload.
    pub ifindex: Option<u32>,
    /// That interface's name, when it still exists.
    pub iface: Option<String>,
    /// VXLAN inner destination MAC, when set.
    pub tunnel_mac: Option<String>,
}

impl RouteRow {
    /// Decodes one route; `ifname` resolves interface indices.
    pub fn new(
        prefix: Ipv4Net,
        value: &RouteValue,
        ifname: &dyn Fn(u32) -> Option<String>,
    ) -> Self {
        let ifindex = (value.ifindex != 0).then_some(value.ifindex);
        Self {
            prefix,
            flags: flag_names(value.flags, &ROUTE_FLAG_NAMES),
            next_hop: (value.next_hop != [0; 4]).then(|| ipv4(value.next_hop)),
            ifindex,
            iface: ifindex.and_then(ifname),
            tunnel_mac: mac_if_set(value.tunnel_mac),
        }
    }
}

/// The routes table.
pub fn routes_table(rows: &[RouteRow]) -> Table {
    let mut table = Table::new(&["PREFIX", "FLAGS", "NEXT-HOP", "IFINDEX", "TUNNEL-MAC"]);
    for row in rows {
        table.push(vec![
            row.prefix.to_string(),
            flags_cell(&row.flags),
            or_dash(row.next_hop),
            iface_cell(row.ifindex, row.iface.as_deref()),
            or_dash(row.tunnel_mac.as_deref()),
        ]);
    }
    table
}

/// One entry of `TORTIE_IFACES`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointRow {
    /// Host-side interface index.
    pub ifindex: u32,
    /// Its name, when it still exists.
    pub name: Option<String>,
    /// Flag names.
    pub flags: Vec<String>,
    /// The workload's address, when programmed.
    pub ipv4: Option<Ipv4Addr>,
    /// MAC of the pod's `eth0`.
    pub workload_mac: Option<String>,
    /// MAC of the host side.
    pub host_mac: Option<String>,
}

impl EndpointRow {
    /// Decodes one interface entry; `ifname` resolves its index.
    pub fn new(ifindex: u32, value: &IfaceValue, ifname: &dyn Fn(u32) -> Option<String>) -> Self {
        let has_ipv4 = value.flags & iface_flags::HAS_IPV4 != 0;
        Self {
            ifindex,
            name: ifname(ifindex),
            flags: flag_names(value.flags & !iface_flags::HAS_IPV4, &IFACE_FLAG_NAMES),
            ipv4: has_ipv4.then(|| ipv4(value.ipv4)),
            workload_mac: mac_if_set(value.workload_mac),
            host_mac: mac_if_set(value.host_mac),
        }
    }
}

/// The endpoints table.
pub fn endpoints_table(rows: &[EndpointRow]) -> Table {
    let mut table = Table::new(&[
        "IFINDEX",
        "NAME",
        "FLAGS",
        "IPV4",
        "WORKLOAD-MAC",
        "HOST-MAC",
    ]);
    for row in rows {
        table.push(vec![
            row.ifindex.to_string(),
            or_dash(row.name.as_deref()),
            flags_cell(&row.flags),
            or_dash(row.ipv4),
            or_dash(row.workload_mac.as_deref()),
            or_dash(row.host_mac.as_deref()),
        ]);
    }
    table
}

/// `7 (cali1234)`, `7`, or `-`.
pub fn iface_cell(ifindex: Option<u32>, name: Option<&str>) -> String {
    match (ifindex, name) {
        (Some(index), Some(name)) => format!("{index} ({name})"),
        (Some(index), None) => index.to_string(),
        (None, _) => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(index: u32) -> Option<String> {
        (index == 7).then(|| "cali1234abcd".to_string())
    }

    #[test]
    fn a_remote_vxlan_block_decodes() {
        let value = RouteValue {
            flags: route_flags::REMOTE_WORKLOAD
                | route_flags::IN_POOL
                | route_flags::TUNNELED_VXLAN,
            next_hop: [192, 168, 0, 11],
            ifindex: 0,
            tunnel_mac: [0x66, 0x1, 0x2, 0x3, 0x4, 0x5],
            _pad: [0; 2],
        };
        let row = RouteRow::new("10.65.1.0/26".parse().unwrap(), &value, &names);
        assert_eq!(row.flags, vec!["remote-workload", "in-pool", "vxlan"]);
        assert_eq!(row.next_hop, Some(Ipv4Addr::new(192, 168, 0, 11)));
        assert_eq!(row.ifindex, None);
        assert_eq!(row.tunnel_mac.as_deref(), Some("66:01:02:03:04:05"));
        let text = routes_table(&[row]).render();
        assert!(
            text.lines().nth(1).unwrap().starts_with(
                "10.65.1.0/26  remote-workload,in-pool,vxlan  192.168.0.11  -        66:01:02:03:04:05"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_local_workload_names_its_interface() {
        let value = RouteValue {
            flags: route_flags::LOCAL_WORKLOAD | route_flags::NAT_OUTGOING | route_flags::IN_POOL,
            ifindex: 7,
            ..RouteValue::default()
        };
        let row = RouteRow::new("10.65.0.5/32".parse().unwrap(), &value, &names);
        assert_eq!(row.flags, vec!["local-workload", "in-pool", "nat-outgoing"]);
        assert_eq!(
            (row.ifindex, row.iface.as_deref()),
            (Some(7), Some("cali1234abcd"))
        );
        assert_eq!(row.next_hop, None);
        assert_eq!(row.tunnel_mac, None);
        assert!(routes_table(&[row]).render().contains("7 (cali1234abcd)"));
        // An interface that is gone keeps its index.
        let gone = RouteRow::new(
            "10.65.0.6/32".parse().unwrap(),
            &RouteValue {
                ifindex: 9,
                ..value
            },
            &names,
        );
        assert_eq!((gone.ifindex, gone.iface), (Some(9), None));
    }

    #[test]
    fn endpoints_show_the_address_only_when_programmed() {
        let value = IfaceValue {
            flags: iface_flags::WORKLOAD | iface_flags::HAS_IPV4 | iface_flags::POLICED_INGRESS,
            ipv4: [10, 65, 0, 5],
            workload_mac: [0xa, 0, 0, 0, 0, 1],
            host_mac: [0xee; 6],
            stats_slot: 1,
        };
        let row = EndpointRow::new(7, &value, &names);
        assert_eq!(row.flags, vec!["workload", "policed-ingress"]);
        assert_eq!(row.ipv4, Some(Ipv4Addr::new(10, 65, 0, 5)));
        assert_eq!(row.host_mac.as_deref(), Some("ee:ee:ee:ee:ee:ee"));
        let unprogrammed = EndpointRow::new(
            8,
            &IfaceValue {
                flags: iface_flags::WORKLOAD,
                ..value
            },
            &names,
        );
        assert_eq!(unprogrammed.ipv4, None);
        assert_eq!(unprogrammed.name, None);
        let uplink = EndpointRow::new(
            2,
            &IfaceValue {
                flags: iface_flags::HOST_UPLINK,
                ..IfaceValue::default()
            },
            &names,
        );
        assert_eq!(uplink.flags, vec!["uplink"]);
        let text = endpoints_table(&[row, uplink]).render();
        assert!(
            text.contains("7        cali1234abcd  workload,policed-ingress  10.65.0.5"),
            "{text}"
        );
        assert!(text.contains("2        -             uplink"), "{text}");
    }
}
