//! Inputs (local endpoints, the cluster's pools and nodes, this node's interfaces) → desired
//! map contents, node configuration and kernel routes. Pure: no I/O.

use std::{collections::BTreeMap, net::Ipv4Addr};

use bpf_maps::{iface_flags, node_flags, route_flags, IfaceValue, NodeConfig, RouteValue};
use ipnet::Ipv4Net;

use crate::model::{ClusterConfig, ClusterNode, IpPool, LocalEndpoint, MacAddr};

/// First and last natOutgoing source port: above Linux's default ephemeral range
/// (32768–60999), so translated flows never collide with the node's own sockets.
pub const NAT_PORT_RANGE: (u16, u16) = (61000, 65535);

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

/// A route BGP learned: one BIRD installed in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LearnedRoute {
    /// The advertised prefix.
    pub prefix: Ipv4Net,
    /// Where BGP says to send its traffic: the advertising node, or a router.
    pub next_hop: Ipv4Addr,
}

/// A kernel route tortie owns, for traffic the host itself sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KernelRoute {
    /// Straight out of an interface (a local pod's `cali*`).
    Device { ifindex: u32 },
    /// Via a next hop on the uplink, which is on-link even when the kernel cannot tell.
    Gateway { via: Ipv4Addr, ifindex: u32 },
}

/// Everything the calculation looks at.
#[derive(Clone, Copy, Debug)]
pub struct CalcInputs<'a> {
    /// This node's name.
    pub node_name: &'a str,
    /// Pods on this node.
    pub endpoints: &'a [LocalEndpoint],
    /// This node's interfaces.
    pub interfaces: &'a [HostInterface],
    /// Name of the uplink.
    pub uplink: Option<&'a str>,
    /// The uplink's IPv4 addresses with their prefixes.
    pub uplink_addrs: &'a [Ipv4Net],
    /// The node's default gateway, for remote nodes on other subnets.
    pub default_gateway: Option<Ipv4Addr>,
    /// Pools and nodes, when known.
    pub cluster: Option<&'a ClusterConfig>,
    /// Routes BGP learned (empty when BGP is off).
    pub learned_routes: &'a [LearnedRoute],
}

/// What the dataplane should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// Route map entries.
    pub routes: BTreeMap<Ipv4Net, RouteValue>,
    /// Interface map entries, by interface index.
    pub ifaces: BTreeMap<u32, IfaceValue>,
    /// The node configuration entry, when the node's address and uplink are known.
    pub node_config: Option<NodeConfig>,
    /// tortie's kernel routes.
    pub kernel_routes: BTreeMap<Ipv4Net, KernelRoute>,
    /// Identity and policy map contents.
    pub policy: std::sync::Arc<super::policy::PolicyTables>,
    /// Endpoints whose interface does not exist (yet); reported, not programmed.
    pub missing_interfaces: Vec<String>,
    /// Inputs that could not be used, with the reason.
    pub warnings: Vec<String>,
}

fn host_net(addr: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::from(addr)
}

fn pool_flags(pool: Option<&IpPool>) -> u32 {
    match pool {
        Some(pool) if pool.nat_outgoing => route_flags::IN_POOL | route_flags::NAT_OUTGOING,
        Some(_) => route_flags::IN_POOL,
        None => 0,
    }
}

/// Computes the desired state for one node.
pub fn desired_state(inputs: &CalcInputs<'_>) -> DesiredState {
    let mut state = DesiredState::default();
    let by_name: BTreeMap<&str, &HostInterface> = inputs
        .interfaces
        .iter()
        .map(|i| (i.name.as_str(), i))
        .collect();
    let uplink = inputs.uplink.and_then(|name| by_name.get(name).copied());
    let this_node = inputs.cluster.and_then(|c| c.node(inputs.node_name));

    add_local_workloads(&mut state, inputs, &by_name);
    add_host(&mut state, inputs, uplink, this_node);
    if let Some(cluster) = inputs.cluster {
        if this_node.is_none() {
            state.warnings.push(format!(
                "node {} is not among the cluster's nodes; remote pods are not routed",
                inputs.node_name
            ));
        }
        add_pools(&mut state, cluster);
        if let (Some(this_node), Some(uplink)) = (this_node, uplink) {
            add_remote_nodes(&mut state, inputs, cluster, this_node, uplink);
            add_learned_routes(&mut state, inputs.learned_routes, cluster, this_node);
        }
    }
    state
}

fn add_local_workloads(
    state: &mut DesiredState,
    inputs: &CalcInputs<'_>,
    by_name: &BTreeMap<&str, &HostInterface>,
) {
    for endpoint in inputs.endpoints {
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
                // Given out when the map is written (sync::iface_slots).
                stats_slot: 0,
            },
        );
        let pool = inputs
            .cluster
            .and_then(|c| c.pool_of(&host_net(endpoint.ipv4)));
        state.routes.insert(
            host_net(endpoint.ipv4),
            RouteValue {
                flags: route_flags::LOCAL_WORKLOAD | pool_flags(pool),
                ifindex: iface.index,
                ..RouteValue::default()
            },
        );
        state.kernel_routes.insert(
            host_net(endpoint.ipv4),
            KernelRoute::Device {
                ifindex: iface.index,
            },
        );
    }
}

fn add_host(
    state: &mut DesiredState,
    inputs: &CalcInputs<'_>,
    uplink: Option<&HostInterface>,
    this_node: Option<&ClusterNode>,
) {
    for net in inputs.uplink_addrs {
        state.routes.insert(
            host_net(net.addr()),
            RouteValue {
                flags: route_flags::LOCAL_HOST,
                ..RouteValue::default()
            },
        );
    }
    let Some(uplink) = uplink else { return };
    state.ifaces.insert(
        uplink.index,
        IfaceValue {
            flags: iface_flags::HOST_UPLINK,
            host_mac: uplink.mac.0,
            ..IfaceValue::default()
        },
    );
    // The node's address: the one the cluster knows it by, else the uplink's first.
    let host_ip = this_node
        .map(ClusterNode::ip)
        .or_else(|| inputs.uplink_addrs.first().map(Ipv4Net::addr));
    let Some(host_ip) = host_ip else { return };
    let cluster = inputs.cluster;
    state.node_config = Some(NodeConfig {
        flags: node_flags::VALID,
        host_ipv4: host_ip.octets(),
        uplink_ifindex: uplink.index,
        vxlan_vni: cluster.map_or(crate::model::cluster::DEFAULT_VXLAN_VNI, |c| c.vxlan_vni),
        vxlan_port: cluster.map_or(crate::model::cluster::DEFAULT_VXLAN_PORT, |c| c.vxlan_port),
        nat_port_min: NAT_PORT_RANGE.0,
        nat_port_max: NAT_PORT_RANGE.1,
        vxlan_mac: uplink.mac.0,
        // Set by the policy sync, which owns the epoch.
        policy_epoch: 0,
    });
}

fn add_pools(state: &mut DesiredState, cluster: &ClusterConfig) {
    for pool in &cluster.ip_pools {
        // Pool-wide entries mark destinations as "inside the cluster" for natOutgoing and
        // carry the pool's flags for sources; more specific block and pod routes win.
        state.routes.insert(
            pool.cidr,
            RouteValue {
                flags: pool_flags(Some(pool)),
                ..RouteValue::default()
            },
        );
    }
}

fn add_remote_nodes(
    state: &mut DesiredState,
    inputs: &CalcInputs<'_>,
    cluster: &ClusterConfig,
    this_node: &ClusterNode,
    uplink: &HostInterface,
) {
    let local_subnet = this_node.ipv4_address.trunc();
    for node in cluster.nodes.iter().filter(|n| n.name != this_node.name) {
        let node_ip = node.ip();
        let same_subnet = local_subnet.contains(&node_ip);
        state.routes.insert(
            host_net(node_ip),
            RouteValue {
                flags: route_flags::REMOTE_HOST
                    | if same_subnet {
                        route_flags::SAME_SUBNET
                    } else {
                        0
                    },
                next_hop: node_ip.octets(),
                ..RouteValue::default()
            },
        );
        // The host's own packets to the node's pods leave through the uplink toward a hop the
        // uplink can reach directly; the uplink program encapsulates them when needed.
        let kernel_hop = if same_subnet {
            Some(node_ip)
        } else {
            inputs.default_gateway
        };
        for block in &node.blocks {
            let Some(pool) = cluster.pool_of(block) else {
                continue;
            };
            let mut flags = route_flags::REMOTE_WORKLOAD | pool_flags(Some(pool));
            if same_subnet {
                flags |= route_flags::SAME_SUBNET;
            }
            if pool.ipip_mode.encapsulates(same_subnet) {
                flags |= route_flags::TUNNELED_IPIP;
            } else if pool.vxlan_mode.encapsulates(same_subnet) {
                flags |= route_flags::TUNNELED_VXLAN;
            }
            state.routes.insert(
                *block,
                RouteValue {
                    flags,
                    next_hop: node_ip.octets(),
                    tunnel_mac: node.vxlan_tunnel_mac_addr.unwrap_or_default().0,
                    ..RouteValue::default()
                },
            );
            match kernel_hop {
                Some(via) => {
                    state.kernel_routes.insert(
                        *block,
                        KernelRoute::Gateway {
                            via,
                            ifindex: uplink.index,
                        },
                    );
                }
                None => state.warnings.push(format!(
                    "node {} ({node_ip}) is on another subnet and this node has no default \
                     gateway: the host cannot reach block {block} (pods still can)",
                    node.name
                )),
            }
        }
    }
}

/// BGP-learned routes, under the datastore's: a prefix the datastore already routes (a
/// node's block, a node, a local pod) keeps that route, since the datastore also knows the
/// node behind it and so the encapsulation; BGP adds what only it knows. A learned prefix
/// inside a pool is a remote block (encapsulated per the pool's mode when its next hop is a
/// node; plain otherwise, a router cannot decapsulate); one outside every pool is external.
/// Prefixes overlapping this node's own blocks are ignored: they can only be stale echoes.
fn add_learned_routes(
    state: &mut DesiredState,
    learned: &[LearnedRoute],
    cluster: &ClusterConfig,
    this_node: &ClusterNode,
) {
    let local_subnet = this_node.ipv4_address.trunc();
    for route in learned {
        let prefix = route.prefix;
        let overlaps_own = this_node
            .blocks
            .iter()
            .any(|block| block.contains(&prefix) || prefix.contains(block));
        let known = state
            .routes
            .get(&prefix)
            .is_some_and(|existing| existing.flags & !pool_flags_mask() != 0);
        if overlaps_own || known {
            continue;
        }
        let same_subnet = local_subnet.contains(&route.next_hop);
        let subnet_flag = if same_subnet {
            route_flags::SAME_SUBNET
        } else {
            0
        };
        let value = match cluster.pool_of(&prefix) {
            Some(pool) => {
                let mut flags = route_flags::REMOTE_WORKLOAD
                    | route_flags::LEARNED_BGP
                    | pool_flags(Some(pool))
                    | subnet_flag;
                let node = cluster.nodes.iter().find(|n| n.ip() == route.next_hop);
                if node.is_some() {
                    if pool.ipip_mode.encapsulates(same_subnet) {
                        flags |= route_flags::TUNNELED_IPIP;
                    } else if pool.vxlan_mode.encapsulates(same_subnet) {
                        flags |= route_flags::TUNNELED_VXLAN;
                    }
                }
                RouteValue {
                    flags,
                    next_hop: route.next_hop.octets(),
                    tunnel_mac: node
                        .and_then(|n| n.vxlan_tunnel_mac_addr)
                        .unwrap_or_default()
                        .0,
                    ..RouteValue::default()
                }
            }
            None => RouteValue {
                flags: route_flags::EXTERNAL | route_flags::LEARNED_BGP | subnet_flag,
                next_hop: route.next_hop.octets(),
                ..RouteValue::default()
            },
        };
        state.routes.insert(prefix, value);
    }
}

/// The flags a pool-wide entry carries; an entry with only these is not a route of its own.
fn pool_flags_mask() -> u32 {
    route_flags::IN_POOL | route_flags::NAT_OUTGOING
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_cluster, EncapMode};

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

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    fn cluster(ipip: EncapMode, vxlan: EncapMode) -> ClusterConfig {
        let mut cluster = parse_cluster(
            r#"{"ipPools":[{"name":"p","cidr":"10.65.0.0/16","natOutgoing":true}],
                "nodes":[{"name":"node-0","ipv4Address":"10.99.0.11/24","blocks":["10.65.0.0/26"]},
                         {"name":"node-1","ipv4Address":"10.99.1.12/24","blocks":["10.65.1.0/26"]},
                         {"name":"node-2","ipv4Address":"10.99.0.13/24","blocks":["10.65.2.0/26"],
                          "vxlanTunnelMACAddr":"66:00:00:00:00:02"}]}"#,
        )
        .unwrap();
        cluster.ip_pools[0].ipip_mode = ipip;
        cluster.ip_pools[0].vxlan_mode = vxlan;
        cluster
    }

    fn state_for(cluster: &ClusterConfig) -> DesiredState {
        state_learning(cluster, &[])
    }

    fn state_learning(cluster: &ClusterConfig, learned_routes: &[LearnedRoute]) -> DesiredState {
        desired_state(&CalcInputs {
            node_name: "node-0",
            endpoints: &[endpoint("a", "calia", [10, 65, 0, 10])],
            interfaces: &[iface("calia", 7), iface("eth0", 2)],
            uplink: Some("eth0"),
            uplink_addrs: &[net("10.99.0.11/24")],
            default_gateway: Some(Ipv4Addr::new(10, 99, 0, 1)),
            cluster: Some(cluster),
            learned_routes,
        })
    }

    fn learned(prefix: &str, next_hop: [u8; 4]) -> LearnedRoute {
        LearnedRoute {
            prefix: net(prefix),
            next_hop: Ipv4Addr::from(next_hop),
        }
    }

    #[test]
    fn bgp_routes_fill_in_what_the_datastore_does_not_know() {
        let cluster = cluster(EncapMode::Always, EncapMode::Never);
        let state = state_learning(
            &cluster,
            &[
                // A router's prefix outside every pool.
                learned("192.168.100.0/24", [10, 99, 0, 1]),
                // A block of node-2 the datastore has not told this node about yet.
                learned("10.65.9.0/26", [10, 99, 0, 13]),
                // A pool block behind a router: no tunnel to a router.
                learned("10.65.8.0/26", [10, 99, 0, 1]),
                // node-1's block, which the datastore routes already.
                learned("10.65.1.0/26", [10, 99, 0, 1]),
                // An echo of this node's own block.
                learned("10.65.0.0/26", [10, 99, 0, 13]),
            ],
        );
        let external = state.routes[&net("192.168.100.0/24")];
        assert_eq!(
            external.flags,
            route_flags::EXTERNAL | route_flags::LEARNED_BGP | route_flags::SAME_SUBNET
        );
        assert_eq!(external.next_hop, [10, 99, 0, 1]);
        let block = state.routes[&net("10.65.9.0/26")];
        assert_eq!(
            block.flags,
            route_flags::REMOTE_WORKLOAD
                | route_flags::LEARNED_BGP
                | route_flags::IN_POOL
                | route_flags::NAT_OUTGOING
                | route_flags::SAME_SUBNET
                | route_flags::TUNNELED_IPIP
        );
        assert_eq!(block.tunnel_mac, [0x66, 0, 0, 0, 0, 2]);
        let routed = state.routes[&net("10.65.8.0/26")];
        assert_eq!(routed.flags & route_flags::TUNNELED_IPIP, 0);
        assert_ne!(routed.flags & route_flags::REMOTE_WORKLOAD, 0);
        let datastore = state.routes[&net("10.65.1.0/26")];
        assert_eq!(datastore.flags & route_flags::LEARNED_BGP, 0);
        assert_eq!(datastore.next_hop, [10, 99, 1, 12]);
        assert!(!state.routes.contains_key(&net("10.65.0.0/26")));
    }

    #[test]
    fn local_pods_get_route_iface_and_kernel_route() {
        let state = state_for(&cluster(EncapMode::Never, EncapMode::Never));
        let pod = net("10.65.0.10/32");
        assert_eq!(
            state.routes[&pod].flags,
            route_flags::LOCAL_WORKLOAD | route_flags::IN_POOL | route_flags::NAT_OUTGOING
        );
        assert_eq!(state.routes[&pod].ifindex, 7);
        assert_eq!(state.ifaces[&7].ipv4, [10, 65, 0, 10]);
        assert_eq!(state.ifaces[&2].flags, iface_flags::HOST_UPLINK);
        assert_eq!(
            state.kernel_routes[&pod],
            KernelRoute::Device { ifindex: 7 }
        );
        assert_eq!(
            state.routes[&net("10.99.0.11/32")].flags,
            route_flags::LOCAL_HOST
        );
        let config = state.node_config.unwrap();
        assert_eq!(config.host_ipv4, [10, 99, 0, 11]);
        assert_eq!((config.vxlan_vni, config.vxlan_port), (4096, 4789));
    }

    #[test]
    fn native_mode_routes_blocks_plainly_to_their_nodes() {
        let state = state_for(&cluster(EncapMode::Never, EncapMode::Never));
        let block = &state.routes[&net("10.65.2.0/26")];
        assert_eq!(block.next_hop, [10, 99, 0, 13]);
        assert_eq!(
            block.flags & (route_flags::TUNNELED_IPIP | route_flags::TUNNELED_VXLAN),
            0
        );
        assert_ne!(block.flags & route_flags::SAME_SUBNET, 0);
        assert_eq!(
            state.kernel_routes[&net("10.65.2.0/26")],
            KernelRoute::Gateway {
                via: Ipv4Addr::new(10, 99, 0, 13),
                ifindex: 2
            }
        );
        assert!(
            !state.routes.contains_key(&net("10.65.0.0/26")),
            "own block is not remote"
        );
    }

    #[test]
    fn always_and_cross_subnet_pick_the_tunnel_per_node() {
        let always = state_for(&cluster(EncapMode::Always, EncapMode::Never));
        for block in ["10.65.1.0/26", "10.65.2.0/26"] {
            assert_ne!(
                always.routes[&net(block)].flags & route_flags::TUNNELED_IPIP,
                0
            );
        }
        let cross = state_for(&cluster(EncapMode::Never, EncapMode::CrossSubnet));
        let other_subnet = &cross.routes[&net("10.65.1.0/26")];
        let same_subnet = &cross.routes[&net("10.65.2.0/26")];
        assert_ne!(other_subnet.flags & route_flags::TUNNELED_VXLAN, 0);
        assert_eq!(same_subnet.flags & route_flags::TUNNELED_VXLAN, 0);
        assert_eq!(same_subnet.tunnel_mac, [0x66, 0, 0, 0, 0, 2]);
        // Host traffic to the other subnet's block goes to the gateway first.
        assert_eq!(
            cross.kernel_routes[&net("10.65.1.0/26")],
            KernelRoute::Gateway {
                via: Ipv4Addr::new(10, 99, 0, 1),
                ifindex: 2
            }
        );
        assert_eq!(
            cross.routes[&net("10.99.1.12/32")].flags,
            route_flags::REMOTE_HOST
        );
    }

    #[test]
    fn pools_mark_the_cluster_for_nat_outgoing() {
        let state = state_for(&cluster(EncapMode::Never, EncapMode::Never));
        assert_eq!(
            state.routes[&net("10.65.0.0/16")].flags,
            route_flags::IN_POOL | route_flags::NAT_OUTGOING
        );
    }

    #[test]
    fn without_a_cluster_only_local_state_is_programmed() {
        let state = desired_state(&CalcInputs {
            node_name: "node-0",
            endpoints: &[endpoint("a", "calia", [10, 65, 0, 10])],
            interfaces: &[],
            uplink: None,
            uplink_addrs: &[],
            default_gateway: None,
            cluster: None,
            learned_routes: &[],
        });
        assert!(state.routes.is_empty() && state.ifaces.is_empty());
        assert_eq!(state.missing_interfaces, vec!["default/a".to_string()]);
        assert!(state.node_config.is_none());
    }
}
