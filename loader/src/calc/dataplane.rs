//! Inputs (local endpoints, the node's interfaces and addresses) → desired map contents and
//! kernel routes.

use std::{collections::BTreeMap, fmt, net::Ipv4Addr};

use bpf_maps::{iface_flags, route_flags, IfaceValue, RouteValue};

use crate::model::{LocalEndpoint, MacAddr};

/// An interface of this node, as netlink reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInterface {
    /// Interface name.
    pub name: String,
    /// Kernel interface index.
    pub index: u32,
    /// Its MAC address (zero for interfaces without one).
    pub mac: MacAddr,
}

/// An IPv4 prefix, the key of the route map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Prefix {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length in bits (0–32).
    pub len: u8,
}

impl Ipv4Prefix {
    /// A /32 for one address.
    pub fn host(addr: Ipv4Addr) -> Self {
        Self { addr, len: 32 }
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// What the dataplane should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// Route map entries.
    pub routes: BTreeMap<Ipv4Prefix, RouteValue>,
    /// Interface map entries, by interface index.
    pub ifaces: BTreeMap<u32, IfaceValue>,
    /// Kernel routes for host-originated traffic to local pods: pod address → interface index.
    pub kernel_routes: BTreeMap<Ipv4Addr, u32>,
    /// Endpoints whose interface does not exist (yet); reported, not programmed.
    pub missing_interfaces: Vec<String>,
}

/// Computes the desired state for one node.
///
/// `uplink` is the interface facing the fabric and `host_addrs` the node's own IPv4 addresses.
pub fn desired_state(
    endpoints: &[LocalEndpoint],
    interfaces: &[HostInterface],
    uplink: Option<&str>,
    host_addrs: &[Ipv4Addr],
) -> DesiredState {
    let mut state = DesiredState::default();
    let by_name: BTreeMap<&str, &HostInterface> =
        interfaces.iter().map(|i| (i.name.as_str(), i)).collect();

    for endpoint in endpoints {
        let Some(iface) = by_name.get(endpoint.iface.as_str()) else {
            state.missing_interfaces.push(endpoint.key());
            continue;
        };
        state.ifaces.insert(
            iface.index,
            IfaceValue {
                flags: iface_flags::WORKLOAD | iface_flags::HAS_IPV4,
                ipv4: endpoint.ipv4.octets(),
                workload_mac: endpoint.mac.0,
                host_mac: iface.mac.0,
            },
        );
        state.routes.insert(
            Ipv4Prefix::host(endpoint.ipv4),
            RouteValue {
                flags: route_flags::LOCAL_WORKLOAD,
                ifindex: iface.index,
                ..RouteValue::default()
            },
        );
        state.kernel_routes.insert(endpoint.ipv4, iface.index);
    }

    if let Some(uplink) = uplink.and_then(|name| by_name.get(name)) {
        state.ifaces.insert(
            uplink.index,
            IfaceValue {
                flags: iface_flags::HOST_UPLINK,
                host_mac: uplink.mac.0,
                ..IfaceValue::default()
            },
        );
    }
    for addr in host_addrs {
        state
            .routes
            .entry(Ipv4Prefix::host(*addr))
            .or_insert(RouteValue {
                flags: route_flags::LOCAL_HOST,
                ..RouteValue::default()
            });
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str, iface: &str, ip: [u8; 4]) -> LocalEndpoint {
        LocalEndpoint {
            name: name.into(),
            namespace: "default".into(),
            node: "node-0".into(),
            iface: iface.into(),
            ipv4: Ipv4Addr::from(ip),
            mac: MacAddr([2, 0x54, ip[0], ip[1], ip[2], ip[3]]),
            labels: BTreeMap::new(),
        }
    }

    fn iface(name: &str, index: u32) -> HostInterface {
        HostInterface {
            name: name.into(),
            index,
            mac: MacAddr([0xee; 6]),
        }
    }

    #[test]
    fn local_pods_get_route_iface_and_kernel_route() {
        let state = desired_state(
            &[endpoint("a", "calia", [10, 65, 0, 10])],
            &[iface("calia", 7), iface("eth0", 2)],
            Some("eth0"),
            &[Ipv4Addr::new(10, 99, 0, 11)],
        );
        let pod = Ipv4Prefix::host(Ipv4Addr::new(10, 65, 0, 10));
        assert_eq!(state.routes[&pod].flags, route_flags::LOCAL_WORKLOAD);
        assert_eq!(state.routes[&pod].ifindex, 7);
        assert_eq!(state.ifaces[&7].ipv4, [10, 65, 0, 10]);
        assert_eq!(state.ifaces[&7].host_mac, [0xee; 6]);
        assert_eq!(state.ifaces[&2].flags, iface_flags::HOST_UPLINK);
        assert_eq!(state.kernel_routes[&Ipv4Addr::new(10, 65, 0, 10)], 7);
        let host = Ipv4Prefix::host(Ipv4Addr::new(10, 99, 0, 11));
        assert_eq!(state.routes[&host].flags, route_flags::LOCAL_HOST);
    }

    #[test]
    fn endpoints_without_interfaces_are_reported_not_programmed() {
        let state = desired_state(&[endpoint("a", "calia", [10, 65, 0, 10])], &[], None, &[]);
        assert!(state.routes.is_empty() && state.ifaces.is_empty());
        assert_eq!(state.missing_interfaces, vec!["default/a".to_string()]);
    }
}
