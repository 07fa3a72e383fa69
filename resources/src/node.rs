//! `Node`: a host's addresses, BGP identity and tunnel addresses.

use serde::{Deserialize, Serialize};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::validate::{self, Errors};
use crate::values::AsNumber;

/// A Calico `Node` (projectcalico.org/v3, cluster-scoped), named like the Kubernetes node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    /// Name and labels (node selectors match these labels).
    pub metadata: ObjectMeta,
    /// The node's addresses.
    pub spec: NodeSpec,
}

resource_document!(Node, NodeSpec, Kind::Node);

/// The `spec` of a [`Node`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// BGP settings and the node's own addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgpSpec>,
    /// The IPv4 address of the node's VXLAN tunnel interface.
    #[serde(
        default,
        rename = "ipv4VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_vxlan_tunnel_addr: Option<String>,
    /// The IPv6 address of the node's VXLAN tunnel interface.
    #[serde(
        default,
        rename = "ipv6VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_vxlan_tunnel_addr: Option<String>,
    /// The MAC address of the node's IPv4 VXLAN tunnel interface.
    #[serde(
        default,
        rename = "vxlanTunnelMACAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr: Option<String>,
    /// The MAC address of the node's IPv6 VXLAN tunnel interface.
    #[serde(
        default,
        rename = "vxlanTunnelMACAddrV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr_v6: Option<String>,
    /// Every address of the node and where it came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    /// The orchestrators that know this node, and their name for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
}

/// The `spec.bgp` of a [`Node`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBgpSpec {
    /// The node's IPv4 address with its subnet's prefix length (`10.99.0.11/24`); the prefix
    /// decides which nodes share a subnet for `CrossSubnet` modes.
    #[serde(
        default,
        rename = "ipv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_address: Option<String>,
    /// The node's IPv6 address with its prefix length.
    #[serde(
        default,
        rename = "ipv6Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_address: Option<String>,
    /// The address of the node's IP-in-IP tunnel interface.
    #[serde(
        default,
        rename = "ipv4IPIPTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_ipip_tunnel_addr: Option<String>,
    /// The node's own AS number; the cluster's (BGPConfiguration) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// Makes the node a route reflector with this cluster ID (IPv4 format).
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
}

impl NodeBgpSpec {
    fn is_empty(&self) -> bool {
        *self == NodeBgpSpec::default()
    }

    /// The IPv4 address and its subnet (`10.99.0.11/24`; a bare address is a /32), when
    /// set and valid.
    pub fn ipv4_interface(&self) -> Option<Ipv4Net> {
        match validate::parse_cidr_or_ip(self.ipv4_address.as_deref()?)? {
            IpNet::V4(net) => Some(net),
            IpNet::V6(_) => None,
        }
    }

    /// The IPv6 address and its subnet (a bare address is a /128), when set and valid.
    pub fn ipv6_interface(&self) -> Option<Ipv6Net> {
        match validate::parse_cidr_or_ip(self.ipv6_address.as_deref()?)? {
            IpNet::V6(net) => Some(net),
            IpNet::V4(_) => None,
        }
    }
}

/// One address of a [`Node`] (`spec.addresses[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    /// The address, optionally with a prefix length.
    #[serde(default)]
    pub address: String,
    /// Where the address came from.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub address_type: Option<NodeAddressType>,
}

/// The source of a [`NodeAddress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeAddressType {
    /// The address Calico detected or was configured with.
    #[serde(rename = "CalicoNodeIP")]
    CalicoNodeIp,
    /// The Kubernetes node's internal IP.
    #[serde(rename = "InternalIP")]
    InternalIp,
    /// The Kubernetes node's external IP.
    #[serde(rename = "ExternalIP")]
    ExternalIp,
}

/// An orchestrator's reference to a [`Node`] (`spec.orchRefs[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrchRef {
    /// The orchestrator's name for the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The orchestrator, e.g. `k8s`. Required.
    #[serde(default)]
    pub orchestrator: String,
}

impl Node {
    /// A Node named `name` whose BGP IPv4 address (with its prefix length, as Calico writes
    /// it: `10.99.0.11/24`) is `address`, and nothing else set.
    pub fn with_bgp_ipv4(name: &str, address: &str) -> Node {
        Node {
            metadata: ObjectMeta::named(name),
            spec: NodeSpec {
                bgp: Some(NodeBgpSpec {
                    ipv4_address: Some(address.to_string()),
                    ..NodeBgpSpec::default()
                }),
                ..NodeSpec::default()
            },
        }
    }

    pub(crate) fn check(&self, errs: &mut Errors) {
        self.metadata
            .check(errs, Kind::Node, validate::dns1123_subdomain);
        let spec = &self.spec;
        if let Some(bgp) = &spec.bgp {
            check_bgp(errs, bgp);
        }
        if let Some(addr) = &spec.ipv4_vxlan_tunnel_addr {
            errs.check(
                "spec.ipv4VXLANTunnelAddr",
                validate::ip_address(addr, Some(4)).map(|_| ()),
            );
        }
        if let Some(addr) = &spec.ipv6_vxlan_tunnel_addr {
            errs.check(
                "spec.ipv6VXLANTunnelAddr",
                validate::ip_address(addr, Some(6)).map(|_| ()),
            );
        }
        if let Some(mac) = &spec.vxlan_tunnel_mac_addr {
            errs.check("spec.vxlanTunnelMACAddr", validate::mac_address(mac));
        }
        if let Some(mac) = &spec.vxlan_tunnel_mac_addr_v6 {
            errs.check("spec.vxlanTunnelMACAddrV6", validate::mac_address(mac));
        }
        for (i, address) in spec.addresses.iter().enumerate() {
            errs.check(
                format!("spec.addresses[{i}].address"),
                validate::ip_with_prefix(&address.address, None).map(|_| ()),
            );
        }
        for (i, orch_ref) in spec.orch_refs.iter().enumerate() {
            if orch_ref.orchestrator.is_empty() {
                errs.push(
                    format!("spec.orchRefs[{i}].orchestrator"),
                    "is required, e.g. k8s",
                );
            }
        }
    }
}

fn check_bgp(errs: &mut Errors, bgp: &NodeBgpSpec) {
    if bgp.is_empty() {
        errs.push(
            "spec.bgp",
            "must not be empty: set ipv4Address or ipv6Address, or remove bgp",
        );
    }
    if let Some(addr) = &bgp.ipv4_address {
        errs.check(
            "spec.bgp.ipv4Address",
            validate::ip_with_prefix(addr, Some(4)).map(|_| ()),
        );
    }
    if let Some(addr) = &bgp.ipv6_address {
        errs.check(
            "spec.bgp.ipv6Address",
            validate::ip_with_prefix(addr, Some(6)).map(|_| ()),
        );
    }
    if let Some(addr) = &bgp.ipv4_ipip_tunnel_addr {
        errs.check(
            "spec.bgp.ipv4IPIPTunnelAddr",
            validate::ip_address(addr, Some(4)).map(|_| ()),
        );
    }
    if bgp.as_number == Some(AsNumber(0)) {
        errs.push(
            "spec.bgp.asNumber",
            "0 is not a valid AS number: use 1 to 4294967295",
        );
    }
    if let Some(id) = &bgp.route_reflector_cluster_id {
        errs.check(
            "spec.bgp.routeReflectorClusterID",
            validate::ipv4_formatted(id).map(|_| ()),
        );
    }
}
