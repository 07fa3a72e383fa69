//! The resources BIRD's configuration is rendered from, decoded from the datastore cache.
//!
//! They are kept as the resources themselves (not the dataplane's digest of them): the BGP
//! plan needs labels for selectors, AS numbers and route reflector IDs, which the dataplane
//! has no use for.

use ipnet::Ipv4Net;
use serde::de::DeserializeOwned;
use tortie_resources::{BgpConfiguration, BgpPeer, IpPool, Node};

use super::{
    from_resources::{ResourceCache, Section},
    ClusterConfig,
};

/// Nodes, pools, BGP peers and configurations as stored, and this node's affine blocks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BgpResources {
    /// Every `Node`.
    pub nodes: Vec<Node>,
    /// Every `IPPool`.
    pub pools: Vec<IpPool>,
    /// Every `BGPPeer`.
    pub peers: Vec<BgpPeer>,
    /// Every `BGPConfiguration`.
    pub configurations: Vec<BgpConfiguration>,
    /// The IPAM blocks affine to this node: what it advertises.
    pub local_blocks: Vec<Ipv4Net>,
}

/// Decodes the BGP-related sections; an object that does not decode is reported and left
/// out (the rest still configure BIRD).
pub fn bgp_resources(
    cache: &ResourceCache,
    cluster: &ClusterConfig,
    node_name: &str,
    warnings: &mut Vec<String>,
) -> BgpResources {
    BgpResources {
        nodes: decode_all(cache, Section::Nodes, "Node", warnings, false),
        pools: decode_all(cache, Section::IpPools, "IPPool", warnings, false),
        peers: decode_all(cache, Section::BgpPeers, "BGPPeer", warnings, true),
        configurations: decode_all(
            cache,
            Section::BgpConfigurations,
            "BGPConfiguration",
            warnings,
            true,
        ),
        local_blocks: cluster
            .node(node_name)
            .map(|node| node.blocks.clone())
            .unwrap_or_default(),
    }
}

/// Every object of `section`. Nodes and pools that fail to decode are already reported by
/// the dataplane's translation, so `report` is false for them.
fn decode_all<T: DeserializeOwned>(
    cache: &ResourceCache,
    section: Section,
    kind: &str,
    warnings: &mut Vec<String>,
    report: bool,
) -> Vec<T> {
    cache
        .entries(section)
        .filter_map(|(key, value)| match serde_json::from_slice(value) {
            Ok(object) => Some(object),
            Err(error) => {
                if report {
                    warnings.push(format!("{key}: not a valid {kind}: {error}; ignored"));
                }
                None
            }
        })
        .collect()
}
