//! The node the program tests and benchmarks run against: node-0 of a two-node cluster, with
//! pod A on the test-run interface, pod B beside it and pod blocks on node-1, programmed
//! through the agent's own calc path.

use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::Result;

use super::TEST_RUN_IFINDEX;
use crate::{
    calc::{
        desired_state,
        policy::{add_to_desired, compile_for_node, PolicyAllocators, PolicyTables},
        CalcInputs, DesiredState, HostInterface,
    },
    model::{parse_cluster, ClusterConfig, LocalEndpoint, MacAddr, PolicyInputs},
};

/// Host side of every pod veth (Calico's MAC).
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// Pod A's `eth0`; pod A sits on the test-run interface.
pub const POD_A_MAC: [u8; 6] = [0x02, 0x54, 10, 65, 0, 10];
/// Pod B's `eth0`.
pub const POD_B_MAC: [u8; 6] = [0x02, 0x54, 10, 65, 0, 11];
/// Pod A's address.
pub const POD_A: [u8; 4] = [10, 65, 0, 10];
/// Pod B's address.
pub const POD_B: [u8; 4] = [10, 65, 0, 11];
/// Host side of pod B (it need not exist: redirects are only recorded in test runs).
pub const POD_B_IFINDEX: u32 = 77;
/// This node's address.
pub const NODE_IP: [u8; 4] = [10, 99, 0, 11];
/// Uplink of this node.
pub const UPLINK_IFINDEX: u32 = 88;
/// MAC of the uplink.
pub const UPLINK_MAC: [u8; 6] = [0x02, 0x99, 0, 0, 0, 11];
/// MAC of node-1's uplink.
pub const PEER_MAC: [u8; 6] = [0x02, 0x99, 0, 0, 0, 12];
/// node-1's address.
pub const REMOTE_NODE: [u8; 4] = [10, 99, 0, 12];
/// A pod in node-1's block.
pub const REMOTE_POD: [u8; 4] = [10, 65, 1, 10];
/// node-1's VXLAN tunnel MAC.
pub const REMOTE_VTEP_MAC: [u8; 6] = [0x66, 0, 0, 0, 0, 1];
/// An address outside every pool (TEST-NET-3).
pub const EXTERNAL: [u8; 4] = [203, 0, 113, 10];

/// The two-node cluster with one natOutgoing pool in the given modes (`Never`, `Always`,
/// `CrossSubnet`).
pub fn cluster(ipip_mode: &str, vxlan_mode: &str) -> Result<ClusterConfig> {
    Ok(parse_cluster(&format!(
        r#"{{"ipPools":[{{"name":"p","cidr":"10.65.0.0/16","ipipMode":"{ipip_mode}",
                         "vxlanMode":"{vxlan_mode}","natOutgoing":true}}],
            "nodes":[{{"name":"node-0","ipv4Address":"10.99.0.11/24","blocks":["10.65.0.0/26"]}},
                     {{"name":"node-1","ipv4Address":"10.99.0.12/24","blocks":["10.65.1.0/26"],
                       "vxlanTunnelMACAddr":"66:00:00:00:00:01"}}]}}"#
    ))?)
}

fn endpoint(name: &str, iface: &str, ip: [u8; 4], mac: [u8; 6]) -> LocalEndpoint {
    LocalEndpoint {
        name: name.into(),
        namespace: "default".into(),
        node: "node-0".into(),
        iface: iface.into(),
        ipv4: Ipv4Addr::from(ip),
        mac: MacAddr(mac),
        labels: BTreeMap::new(),
    }
}

fn interface(name: &str, index: u32, mac: [u8; 6]) -> HostInterface {
    HostInterface {
        name: name.into(),
        index,
        mac: MacAddr(mac),
    }
}

/// The agent's calc inputs for node-0 of `cluster`, handed to `with` (they borrow locals).
fn with_calc_inputs<T>(
    cluster: &ClusterConfig,
    with: impl FnOnce(&CalcInputs<'_>) -> T,
) -> Result<T> {
    let endpoints = [
        endpoint("a", "cali-a", POD_A, POD_A_MAC),
        endpoint("b", "cali-b", POD_B, POD_B_MAC),
    ];
    let interfaces = [
        interface("cali-a", TEST_RUN_IFINDEX, HOST_MAC),
        interface("cali-b", POD_B_IFINDEX, HOST_MAC),
        interface("eth0", UPLINK_IFINDEX, UPLINK_MAC),
    ];
    let uplink_addrs = ["10.99.0.11/24".parse()?];
    Ok(with(&CalcInputs {
        node_name: "node-0",
        endpoints: &endpoints,
        interfaces: &interfaces,
        uplink: Some("eth0"),
        uplink_addrs: &uplink_addrs,
        default_gateway: None,
        cluster: Some(cluster),
        learned_routes: &[],
    }))
}

/// node-0's desired dataplane in `cluster`.
pub fn desired(cluster: &ClusterConfig) -> Result<DesiredState> {
    with_calc_inputs(cluster, desired_state)
}

/// node-0's desired dataplane in `cluster` with `policy` compiled for it and folded in, the
/// way the agent does it (`compile_for_node`, then `add_to_desired`). Pods `default/a` and
/// `default/b` of `policy` are the fixture's pods A and B (their interfaces are filled in);
/// keep `allocators` across calls so identities and rule ids stay stable, as in the agent.
/// The compilation comes back too, for its rule ids, warnings and errors.
pub fn desired_with_policy(
    cluster: &ClusterConfig,
    policy: &PolicyInputs,
    allocators: &mut PolicyAllocators,
) -> Result<(DesiredState, tortie_policy::CompiledPolicy)> {
    with_calc_inputs(cluster, |inputs| {
        let mut desired = desired_state(inputs);
        let compiled = compile_for_node(policy, inputs, allocators);
        add_to_desired(&mut desired, &compiled, &PolicyTables::of(&compiled));
        (desired, compiled)
    })
}
