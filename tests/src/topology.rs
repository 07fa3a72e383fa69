//! Building a lab's namespaces and links from its planned state.
//!
//! Order matters in one place: a namespace's sysctls are set right after it exists and before
//! any interface is added, because interfaces copy `net.ipv4.conf.default.*` when they appear
//! in a namespace.

use anyhow::{Context, Result};

use crate::netns;
use crate::report::Progress;
use crate::spec::{
    fabric_netns, segment_bridge, ExternalHost, Node, Pod, Router, Topology, EXTERNAL_PREFIX_LEN,
    FABRIC_PREFIX_LEN, HOST_SIDE_MAC, MTU, NODE_UPLINK, POD_IFACE, WORKLOAD_GATEWAY,
};

/// Sysctls of every node: the kernel must not forward (the eBPF programs do), and strict
/// reverse-path filtering would drop pod traffic that arrives on `cali*` without kernel routes.
pub const NODE_SYSCTLS: [(&str, &str); 3] = [
    ("net.ipv4.ip_forward", "0"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
];

/// Sysctls of the router: it forwards between the segments and the external link, and must
/// not drop tunnel packets whose source is on another segment than the one they arrive on.
pub const ROUTER_SYSCTLS: [(&str, &str); 3] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
];

/// Runs one named step, printing it and naming it in the error.
pub fn step<T>(progress: &Progress, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    progress.step(name);
    f().with_context(|| format!("step '{name}' failed"))
}

/// Creates the fabric namespace with one bridge per segment of `topology`.
pub fn create_fabric(lab: &str, topology: Topology) -> Result<()> {
    let ns = fabric_netns(lab);
    netns::create_netns(&ns)?;
    netns::set_link_up(&ns, "lo")?;
    for segment in 0..topology.segments() {
        let bridge = segment_bridge(segment);
        netns::create_bridge(&ns, &bridge)?;
        netns::set_link_up(&ns, &bridge)?;
    }
    Ok(())
}

/// Creates the router namespace with a leg on every segment's bridge, then the external host
/// wired straight to the router. Neither gets a route to the pod pool.
pub fn create_router_and_external(lab: &str, router: &Router, ext: &ExternalHost) -> Result<()> {
    let fabric = fabric_netns(lab);
    netns::create_netns(&router.netns)?;
    for (key, value) in ROUTER_SYSCTLS {
        netns::set_sysctl(&router.netns, key, value)?;
    }
    netns::set_link_up(&router.netns, "lo")?;
    for leg in &router.legs {
        netns::create_veth_into(&fabric, &leg.fabric_port, &router.netns, &leg.iface, MTU)?;
        netns::attach_to_bridge(&fabric, &leg.fabric_port, &segment_bridge(leg.segment))?;
        netns::set_link_up(&fabric, &leg.fabric_port)?;
        netns::add_address(&router.netns, &leg.iface, leg.ip, FABRIC_PREFIX_LEN)?;
        netns::set_link_up(&router.netns, &leg.iface)?;
    }

    netns::create_netns(&ext.netns)?;
    netns::set_link_up(&ext.netns, "lo")?;
    netns::create_veth_into(
        &router.netns,
        &router.external_iface,
        &ext.netns,
        &ext.iface,
        MTU,
    )?;
    netns::add_address(
        &router.netns,
        &router.external_iface,
        router.external_ip,
        EXTERNAL_PREFIX_LEN,
    )?;
    netns::set_link_up(&router.netns, &router.external_iface)?;
    netns::add_address(&ext.netns, &ext.iface, ext.ip, EXTERNAL_PREFIX_LEN)?;
    netns::set_link_up(&ext.netns, &ext.iface)?;
    netns::add_default_route(&ext.netns, ext.gateway, &ext.iface)?;
    Ok(())
}

/// Creates a node namespace, its sysctls, its uplink plugged into its segment's bridge, and a
/// default route via the router.
pub fn create_node(lab: &str, node: &Node) -> Result<()> {
    let fabric = fabric_netns(lab);
    netns::create_netns(&node.netns)?;
    for (key, value) in NODE_SYSCTLS {
        netns::set_sysctl(&node.netns, key, value)?;
    }
    netns::set_link_up(&node.netns, "lo")?;
    netns::create_veth_into(&fabric, &node.fabric_port, &node.netns, NODE_UPLINK, MTU)?;
    netns::attach_to_bridge(&fabric, &node.fabric_port, &node.bridge())?;
    netns::set_link_up(&fabric, &node.fabric_port)?;
    netns::add_address(&node.netns, NODE_UPLINK, node.ip, FABRIC_PREFIX_LEN)?;
    netns::set_link_up(&node.netns, NODE_UPLINK)?;
    netns::add_default_route(&node.netns, node.gateway, NODE_UPLINK)?;
    Ok(())
}

/// Creates a pod namespace and its veth pair to the node, Calico style: host side `cali…`
/// with MAC ee:ee:ee:ee:ee:ee and no address; pod side `eth0` with a /32 and a default route
/// via 169.254.1.1; both ends with the pod MTU. No kernel route to the pod is added in the
/// node; that is the agent's job.
pub fn create_pod(node: &Node, pod: &Pod) -> Result<()> {
    netns::create_netns(&pod.netns)?;
    netns::set_link_up(&pod.netns, "lo")?;
    netns::create_veth_into(&node.netns, &pod.host_iface, &pod.netns, POD_IFACE, pod.mtu)?;
    netns::set_mac(&node.netns, &pod.host_iface, HOST_SIDE_MAC)?;
    netns::set_link_up(&node.netns, &pod.host_iface)?;
    netns::set_mac(&pod.netns, POD_IFACE, &pod.mac)?;
    netns::add_address(&pod.netns, POD_IFACE, pod.ip, 32)?;
    netns::set_link_up(&pod.netns, POD_IFACE)?;
    netns::add_link_route(&pod.netns, WORKLOAD_GATEWAY, POD_IFACE)?;
    netns::add_default_route(&pod.netns, WORKLOAD_GATEWAY, POD_IFACE)?;
    Ok(())
}
