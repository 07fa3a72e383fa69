//! What the agent knows about the rest of the cluster: IP pools (with their encapsulation and
//! natOutgoing settings), nodes and the pod blocks affine to them.
//!
//! It comes either from a JSON file whose field names are Calico's (`ipipMode`, `vxlanMode`,
//! `natOutgoing`, `vxlanVNI`, ...) or from the datastore's resources
//! ([`super::from_resources`]); both go through the same checks ([`validate`]).

use std::{collections::HashSet, net::Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::MacAddr;

/// Calico's default VXLAN network identifier.
pub const DEFAULT_VXLAN_VNI: u32 = 4096;
/// Calico's (and IANA's) VXLAN UDP port.
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

/// When a pool's traffic between nodes is encapsulated (Calico's `ipipMode` / `vxlanMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncapMode {
    /// Never: native routing.
    #[default]
    Never,
    /// Always encapsulate.
    Always,
    /// Encapsulate only toward nodes on another subnet.
    CrossSubnet,
}

impl EncapMode {
    /// Whether traffic to a node is encapsulated under this mode.
    pub fn encapsulates(self, same_subnet: bool) -> bool {
        match self {
            EncapMode::Never => false,
            EncapMode::Always => true,
            EncapMode::CrossSubnet => !same_subnet,
        }
    }
}

/// An IP pool (the parts of Calico's `IPPool.spec` the dataplane uses).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpPool {
    /// Pool name.
    pub name: String,
    /// The pool's CIDR.
    pub cidr: Ipv4Net,
    /// IPIP between nodes.
    #[serde(default)]
    pub ipip_mode: EncapMode,
    /// VXLAN between nodes.
    #[serde(default)]
    pub vxlan_mode: EncapMode,
    /// Masquerade traffic from the pool to destinations outside every pool.
    #[serde(default)]
    pub nat_outgoing: bool,
}

/// A node: its address on the fabric and the pod blocks it owns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNode {
    /// Node name.
    pub name: String,
    /// Address and subnet on the fabric (Calico's `spec.bgp.ipv4Address`, e.g. `10.99.0.11/24`).
    pub ipv4_address: Ipv4Net,
    /// Pod blocks affine to the node.
    #[serde(default)]
    pub blocks: Vec<Ipv4Net>,
    /// MAC of the node's VXLAN tunnel device, when it is a kernel `vxlan` device.
    #[serde(default, rename = "vxlanTunnelMACAddr")]
    pub vxlan_tunnel_mac_addr: Option<MacAddr>,
}

impl ClusterNode {
    /// The node's address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ipv4_address.addr()
    }
}

/// The cluster as the agent sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    /// VXLAN network identifier (Calico's FelixConfiguration `vxlanVNI`).
    #[serde(default = "default_vni", rename = "vxlanVNI")]
    pub vxlan_vni: u32,
    /// VXLAN UDP port (FelixConfiguration `vxlanPort`).
    #[serde(default = "default_port")]
    pub vxlan_port: u16,
    /// IP pools.
    #[serde(default)]
    pub ip_pools: Vec<IpPool>,
    /// Nodes, this one included.
    #[serde(default)]
    pub nodes: Vec<ClusterNode>,
}

fn default_vni() -> u32 {
    DEFAULT_VXLAN_VNI
}

fn default_port() -> u16 {
    DEFAULT_VXLAN_PORT
}

impl ClusterConfig {
    /// The pool containing `net`, if any.
    pub fn pool_of(&self, net: &Ipv4Net) -> Option<&IpPool> {
        self.ip_pools.iter().find(|pool| pool.cidr.contains(net))
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&ClusterNode> {
        self.nodes.iter().find(|node| node.name == name)
    }
}

/// Everything wrong with a cluster document; it is rejected whole.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Not JSON of the expected shape.
    #[error("cluster file is not valid: {0}")]
    Syntax(#[from] serde_json::Error),
    /// Well-formed, but inconsistent.
    #[error("cluster file rejected:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// Parses and validates a cluster document.
pub fn parse_cluster(text: &str) -> Result<ClusterConfig, ClusterError> {
    let cluster: ClusterConfig = serde_json::from_str(text)?;
    let problems = validate(&cluster);
    if problems.is_empty() {
        Ok(cluster)
    } else {
        Err(ClusterError::Invalid(problems))
    }
}

/// Every consistency problem of a cluster document, each prefixed with the path of the
/// offending field (`ipPools[0] (a).cidr: ...`). Empty when the document can be used.
pub fn validate(cluster: &ClusterConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if cluster.vxlan_vni == 0 || cluster.vxlan_vni > 0xff_ffff {
        problems.push(format!(
            "vxlanVNI: {} must be between 1 and 16777215",
            cluster.vxlan_vni
        ));
    }
    if cluster.vxlan_port == 0 {
        problems.push("vxlanPort: must not be 0".into());
    }
    for (index, pool) in cluster.ip_pools.iter().enumerate() {
        let at = format!("ipPools[{index}] ({})", pool.name);
        for problem in pool_problems(pool) {
            problems.push(problem.at(&at));
        }
        for (other_index, other) in cluster.ip_pools.iter().enumerate().skip(index + 1) {
            if pools_overlap(pool, other) {
                problems.push(format!(
                    "{at}.cidr: {} overlaps ipPools[{other_index}] ({}) {}",
                    pool.cidr, other.name, other.cidr
                ));
            }
        }
    }
    let mut names = HashSet::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        let at = format!("nodes[{index}] ({})", node.name);
        if !names.insert(node.name.as_str()) {
            problems.push(format!("{at}.name: duplicate node name"));
        }
        for block in &node.blocks {
            for problem in block_problems(cluster, block) {
                problems.push(problem.at(&at));
            }
        }
    }
    problems
}

/// One problem with one field of a cluster object, without the object's path, so that
/// the file and the datastore can each say where it lies in their own terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field, by its Calico name (`cidr`, `ipipMode`, `blocks`); empty for the object.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl FieldProblem {
    /// `<at>.<field>: <reason>` (or `<at>: <reason>` for the object itself).
    pub fn at(&self, at: &str) -> String {
        if self.field.is_empty() {
            format!("{at}: {}", self.reason)
        } else {
            format!("{at}.{}: {}", self.field, self.reason)
        }
    }
}

/// What is wrong with a pool on its own (other pools aside): host bits in its CIDR, both
/// encapsulations enabled.
pub fn pool_problems(pool: &IpPool) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    if pool.cidr != pool.cidr.trunc() {
        problems.push(FieldProblem {
            field: "cidr",
            reason: format!(
                "{} has host bits set; did you mean {}?",
                pool.cidr,
                pool.cidr.trunc()
            ),
        });
    }
    if pool.ipip_mode != EncapMode::Never && pool.vxlan_mode != EncapMode::Never {
        problems.push(FieldProblem {
            field: "",
            reason: "ipipMode and vxlanMode cannot both be enabled; set one of them to Never"
                .into(),
        });
    }
    problems
}

/// Whether two pools share addresses: a route could not tell which pool's settings apply.
pub fn pools_overlap(a: &IpPool, b: &IpPool) -> bool {
    a.cidr.contains(&b.cidr.network()) || b.cidr.contains(&a.cidr.network())
}

/// What is wrong with a node's block given the cluster's pools: host bits, or no pool
/// containing it (its pods would have no encapsulation or NAT settings).
pub fn block_problems(cluster: &ClusterConfig, block: &Ipv4Net) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    if *block != block.trunc() {
        problems.push(FieldProblem {
            field: "blocks",
            reason: format!("{block} has host bits set"),
        });
    }
    if cluster.pool_of(block).is_none() {
        problems.push(FieldProblem {
            field: "blocks",
            reason: format!("{block} lies in no IP pool"),
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_calico() {
        let cluster = parse_cluster(
            r#"{"ipPools":[{"name":"p","cidr":"10.65.0.0/16"}],
                "nodes":[{"name":"n0","ipv4Address":"10.99.0.11/24","blocks":["10.65.0.0/26"]}]}"#,
        )
        .unwrap();
        assert_eq!(cluster.vxlan_vni, 4096);
        assert_eq!(cluster.vxlan_port, 4789);
        assert_eq!(cluster.ip_pools[0].ipip_mode, EncapMode::Never);
        assert!(!cluster.ip_pools[0].nat_outgoing);
        assert_eq!(cluster.nodes[0].ip(), Ipv4Addr::new(10, 99, 0, 11));
    }

    #[test]
    fn rejects_inconsistent_documents_with_every_reason() {
        let text = r#"{"vxlanVNI":0,
            "ipPools":[{"name":"a","cidr":"10.65.0.1/16","ipipMode":"Always","vxlanMode":"CrossSubnet"},
                       {"name":"b","cidr":"10.65.128.0/17"}],
            "nodes":[{"name":"n","ipv4Address":"10.99.0.11/24","blocks":["10.70.0.0/26"]},
                     {"name":"n","ipv4Address":"10.99.0.12/24"}]}"#;
        let Err(ClusterError::Invalid(problems)) = parse_cluster(text) else {
            panic!("accepted");
        };
        let all = problems.join("\n");
        for expected in [
            "vxlanVNI: 0",
            "ipPools[0] (a).cidr: 10.65.0.1/16 has host bits set",
            "cannot both be enabled",
            "overlaps ipPools[1] (b)",
            "nodes[0] (n).blocks: 10.70.0.0/26 lies in no IP pool",
            "nodes[1] (n).name: duplicate",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn cross_subnet_encapsulates_only_across_subnets() {
        assert!(EncapMode::CrossSubnet.encapsulates(false));
        assert!(!EncapMode::CrossSubnet.encapsulates(true));
        assert!(EncapMode::Always.encapsulates(true));
        assert!(!EncapMode::Never.encapsulates(false));
    }
}
