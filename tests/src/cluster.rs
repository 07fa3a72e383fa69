//! The cluster file every agent reads (`--cluster-file`): the IP pools and the nodes of the
//! cluster, with Calico's field names, so an agent knows where every block lives, how to reach
//! its node, and whether to encapsulate.
//!
//! ```json
//! {"vxlanVNI": 4096, "vxlanPort": 4789,
//!  "ipPools": [{"name": "default-ipv4-ippool", "cidr": "10.65.0.0/16",
//!               "ipipMode": "Never", "vxlanMode": "Never", "natOutgoing": true}],
//!  "nodes": [{"name": "node-0", "ipv4Address": "10.99.0.11/24", "blocks": ["10.65.0.0/26"]}]}
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::spec::{EncapMode, LabSpec, Node, POD_POOL_CIDR, POD_POOL_NAME, VXLAN_PORT, VXLAN_VNI};
use crate::state::{write_json_atomic, StateError};

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterFile {
    /// VXLAN network identifier of the cluster.
    #[serde(rename = "vxlanVNI")]
    pub vxlan_vni: u32,
    /// VXLAN UDP port of the cluster.
    pub vxlan_port: u16,
    /// The IP pools.
    pub ip_pools: Vec<IpPool>,
    /// Every node with its address and its pod blocks.
    pub nodes: Vec<ClusterNode>,
}

/// An IP pool (`projectcalico.org/v3` IPPool spec, the fields the dataplane needs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpPool {
    /// Pool name.
    pub name: String,
    /// The pool's CIDR.
    pub cidr: String,
    /// When to encapsulate in IPIP.
    pub ipip_mode: EncapMode,
    /// When to encapsulate in VXLAN.
    pub vxlan_mode: EncapMode,
    /// Source-NAT traffic from the pool to destinations outside every pool.
    pub nat_outgoing: bool,
}

/// A node as the other nodes see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNode {
    /// Node name (the agent's `--node-name`).
    pub name: String,
    /// Its address with prefix length (Calico's `spec.bgp.ipv4Address`); the prefix tells
    /// which nodes share its subnet, which `CrossSubnet` needs.
    pub ipv4_address: String,
    /// The pod blocks affine to the node.
    pub blocks: Vec<String>,
}

impl ClusterFile {
    /// The cluster file of a lab built from `spec` with `nodes`.
    pub fn for_lab(spec: &LabSpec, nodes: &[Node]) -> Self {
        let (ipip_mode, vxlan_mode) = spec.pool_modes();
        Self {
            vxlan_vni: VXLAN_VNI,
            vxlan_port: VXLAN_PORT,
            ip_pools: vec![IpPool {
                name: POD_POOL_NAME.to_owned(),
                cidr: POD_POOL_CIDR.to_owned(),
                ipip_mode,
                vxlan_mode,
                nat_outgoing: true,
            }],
            nodes: nodes
                .iter()
                .map(|node| ClusterNode {
                    name: node.name.clone(),
                    ipv4_address: node.cidr(),
                    blocks: vec![node.pod_block.clone()],
                })
                .collect(),
        }
    }

    /// Writes the file atomically (temporary file + rename).
    pub fn write(&self, path: &Path) -> Result<(), StateError> {
        write_json_atomic(path, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Encap, Topology};

    #[test]
    fn cluster_file_has_the_agreed_shape() {
        let spec = LabSpec::new("lab", 2, 1)
            .with_encap(Encap::Vxlan)
            .with_cross_subnet(true)
            .with_topology(Topology::Routed);
        let (nodes, _) = spec.plan();
        let json = serde_json::to_value(ClusterFile::for_lab(&spec, &nodes)).expect("serializable");
        let expected = serde_json::json!({
            "vxlanVNI": 4096,
            "vxlanPort": 4789,
            "ipPools": [{
                "name": "default-ipv4-ippool",
                "cidr": "10.65.0.0/16",
                "ipipMode": "Never",
                "vxlanMode": "CrossSubnet",
                "natOutgoing": true,
            }],
            "nodes": [
                {"name": "node-0", "ipv4Address": "10.99.0.11/24", "blocks": ["10.65.0.0/26"]},
                {"name": "node-1", "ipv4Address": "10.99.1.12/24", "blocks": ["10.65.1.0/26"]},
            ],
        });
        assert_eq!(json, expected);
    }

    #[test]
    fn plain_pools_never_encapsulate() {
        let spec = LabSpec::new("lab", 1, 1);
        let file = ClusterFile::for_lab(&spec, &spec.plan().0);
        assert_eq!(file.ip_pools[0].ipip_mode, EncapMode::Never);
        assert_eq!(file.ip_pools[0].vxlan_mode, EncapMode::Never);
        let spec = spec.with_encap(Encap::Ipip);
        let file = ClusterFile::for_lab(&spec, &spec.plan().0);
        assert_eq!(file.ip_pools[0].ipip_mode, EncapMode::Always);
    }
}
