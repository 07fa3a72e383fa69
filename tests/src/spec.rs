//! What a lab consists of and what everything in it is called. Pure functions, no I/O.
//!
//! ```text
//! tortie-<lab>-fabric          bridge br0, one port veth-n<i> per node
//! tortie-<lab>-node-<i>        eth0 10.99.0.<11+i>/24, pods' block 10.65.<i>.0/26
//! tortie-<lab>-<ns>-<pod>      eth0 10.65.<i>.<10+j>/32, default via 169.254.1.1
//! ```

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Lab name used when none is given.
pub const DEFAULT_LAB_NAME: &str = "lab";
/// Every network namespace the lab creates starts with this.
pub const NETNS_PREFIX: &str = "tortie-";
/// The bridge in the fabric namespace that connects the nodes.
pub const FABRIC_BRIDGE: &str = "br0";
/// A node's interface towards the fabric (the agent's `--uplink`).
pub const NODE_UPLINK: &str = "eth0";
/// A pod's interface name inside its namespace.
pub const POD_IFACE: &str = "eth0";
/// MAC of every host-side workload interface, as in Calico.
pub const HOST_SIDE_MAC: &str = "ee:ee:ee:ee:ee:ee";
/// The link-local next hop pods route through, as in Calico.
pub const WORKLOAD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Kubernetes namespace of the lab's pods.
pub const POD_NAMESPACE: &str = "default";
/// MTU of every lab interface.
pub const MTU: u32 = 1500;
/// Prefix length of the fabric subnet 10.99.0.0/24.
pub const FABRIC_PREFIX_LEN: u8 = 24;
/// Nodes get 10.99.0.11 upwards; the limit keeps them inside the /24.
pub const MAX_NODES: usize = 240;
/// Pods get .10 upwards inside their node's /26.
pub const MAX_PODS_PER_NODE: usize = 50;
/// Lab names stay short so that namespace names stay readable.
pub const MAX_NAME_LEN: usize = 32;
/// Labs keep their state below this directory (tmpfs: a reboot forgets labs, as it forgets netns).
pub const STATE_ROOT: &str = "/run/tortie/labs";

/// A lab description that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The lab name would make unusable or ambiguous namespace/pin names.
    #[error("lab name {name:?} is invalid: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Node count outside what the fabric subnet can address.
    #[error("{nodes} nodes is out of range: a lab has 1 to {MAX_NODES} nodes")]
    Nodes {
        /// The rejected count.
        nodes: usize,
    },
    /// Pod count outside what a node's /26 block can address.
    #[error("{pods} pods per node is out of range: a node's /26 block holds 0 to {MAX_PODS_PER_NODE} lab pods")]
    PodsPerNode {
        /// The rejected count.
        pods: usize,
    },
}

/// The shape of a lab: its name, how many nodes, how many pods on each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabSpec {
    /// Lab name; part of every namespace, pin and state path of the lab.
    pub name: String,
    /// Number of nodes (`node-0` …).
    pub nodes: usize,
    /// Pods on each node (`pod-<node>-<j>`).
    pub pods_per_node: usize,
}

impl LabSpec {
    /// A spec; check it with [`LabSpec::validate`] (done by `Lab::up`).
    pub fn new(name: impl Into<String>, nodes: usize, pods_per_node: usize) -> Self {
        Self {
            name: name.into(),
            nodes,
            pods_per_node,
        }
    }

    /// Checks the name and the counts against what the address plan can hold.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_lab_name(&self.name)?;
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return Err(SpecError::Nodes { nodes: self.nodes });
        }
        if self.pods_per_node > MAX_PODS_PER_NODE {
            return Err(SpecError::PodsPerNode {
                pods: self.pods_per_node,
            });
        }
        Ok(())
    }

    /// Every node and pod of the lab with its names and addresses (agents not started).
    pub fn plan(&self) -> (Vec<Node>, Vec<Pod>) {
        let nodes: Vec<Node> = (0..self.nodes)
            .map(|i| Node::planned(&self.name, i))
            .collect();
        let pods = (0..self.nodes)
            .flat_map(|i| (0..self.pods_per_node).map(move |j| (i, j)))
            .map(|(i, j)| Pod::planned(&self.name, i, j))
            .collect();
        (nodes, pods)
    }
}

/// Lab names are `[a-z0-9-]`, start with a letter or digit, and are at most [`MAX_NAME_LEN`] long.
pub fn validate_lab_name(name: &str) -> Result<(), SpecError> {
    let invalid = |reason| SpecError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("it is longer than 32 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid("use only lowercase letters, digits and '-'"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(invalid("it must not start or end with '-'"));
    }
    Ok(())
}

/// A node of the lab: a network namespace running one agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// `node-<i>`, also the agent's `--node-name`.
    pub name: String,
    /// Position `i` in the lab; decides the addresses.
    pub index: usize,
    /// `tortie-<lab>-node-<i>`.
    pub netns: String,
    /// Address of the uplink `eth0` on the fabric (/24).
    pub ip: Ipv4Addr,
    /// The fabric side of the node's uplink veth, a port of `br0`.
    pub fabric_port: String,
    /// The node's pod block, `10.65.<i>.0/26`.
    pub pod_block: String,
    /// The agent's `--pin-root`.
    pub pin_root: PathBuf,
    /// The agent's `--endpoints-file`.
    pub endpoints_file: PathBuf,
    /// The agent's `--ready-file`.
    pub ready_file: PathBuf,
    /// Where the agent's stdout and stderr are appended.
    pub log_file: PathBuf,
    /// Pid of the agent last started for this node.
    pub agent_pid: Option<u32>,
}

impl Node {
    fn planned(lab: &str, index: usize) -> Self {
        let name = node_name(index);
        let dir = state_dir(lab);
        Self {
            netns: node_netns(lab, &name),
            ip: node_ip(index),
            fabric_port: format!("veth-n{index}"),
            pod_block: pod_block(index),
            pin_root: pin_root(lab, &name),
            endpoints_file: dir.join(format!("{name}.endpoints.json")),
            ready_file: dir.join(format!("{name}.ready")),
            log_file: dir.join(format!("{name}.agent.log")),
            agent_pid: None,
            name,
            index,
        }
    }
}

/// A pod of the lab: a network namespace wired to its node by a veth pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// `pod-<i>-<j>`.
    pub name: String,
    /// Kubernetes namespace ([`POD_NAMESPACE`]).
    pub namespace: String,
    /// `app=<name>`.
    pub labels: BTreeMap<String, String>,
    /// Name of the node the pod runs on.
    pub node: String,
    /// `tortie-<lab>-<namespace>-<name>`.
    pub netns: String,
    /// The pod's /32 address.
    pub ip: Ipv4Addr,
    /// Host-side interface in the node namespace (`cali…`).
    pub host_iface: String,
    /// MAC of the pod's `eth0`.
    pub mac: String,
}

impl Pod {
    fn planned(lab: &str, node_index: usize, pod_index: usize) -> Self {
        let name = pod_name(node_index, pod_index);
        let ip = pod_ip(node_index, pod_index);
        Self {
            namespace: POD_NAMESPACE.to_owned(),
            labels: BTreeMap::from([("app".to_owned(), name.clone())]),
            node: node_name(node_index),
            netns: pod_netns(lab, POD_NAMESPACE, &name),
            ip,
            host_iface: cali_iface_name(POD_NAMESPACE, &name),
            mac: pod_mac(ip),
            name,
        }
    }
}

/// `tortie-<lab>-`: the start of every namespace name of the lab.
pub fn netns_prefix(lab: &str) -> String {
    format!("{NETNS_PREFIX}{lab}-")
}

/// The namespace holding the fabric bridge.
pub fn fabric_netns(lab: &str) -> String {
    format!("{}fabric", netns_prefix(lab))
}

/// The namespace of a node.
pub fn node_netns(lab: &str, node: &str) -> String {
    format!("{}{node}", netns_prefix(lab))
}

/// The namespace of a pod.
pub fn pod_netns(lab: &str, namespace: &str, pod: &str) -> String {
    format!("{}{namespace}-{pod}", netns_prefix(lab))
}

/// `node-<i>`.
pub fn node_name(index: usize) -> String {
    format!("node-{index}")
}

/// `pod-<node>-<j>`.
pub fn pod_name(node_index: usize, pod_index: usize) -> String {
    format!("pod-{node_index}-{pod_index}")
}

/// `10.99.0.<11+i>`. Callers keep `index < MAX_NODES`.
pub fn node_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, octet(11 + index))
}

/// `10.65.<i>.0/26`.
pub fn pod_block(node_index: usize) -> String {
    format!("10.65.{}.0/26", octet(node_index))
}

/// `10.65.<i>.<10+j>`. Callers keep the indices below the `MAX_*` limits.
pub fn pod_ip(node_index: usize, pod_index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 65, octet(node_index), octet(10 + pod_index))
}

fn octet(value: usize) -> u8 {
    u8::try_from(value).unwrap_or(u8::MAX)
}

/// A locally administered unicast MAC derived from the pod IP: `02:54:<ip bytes>`.
pub fn pod_mac(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:54:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Calico's host-side interface name: `cali` + the first 11 hex digits of
/// sha1("<namespace>.<pod>"), 15 characters, the kernel's limit.
pub fn cali_iface_name(namespace: &str, pod: &str) -> String {
    let digest = Sha1::digest(format!("{namespace}.{pod}").as_bytes());
    let hex = hex::encode(digest);
    format!("cali{}", &hex[..11])
}

/// `/sys/fs/bpf/tortie/<lab>`: every pin of the lab is below it.
pub fn lab_pin_dir(lab: &str) -> PathBuf {
    PathBuf::from(bpf_maps::pins::DEFAULT_ROOT).join(lab)
}

/// `/sys/fs/bpf/tortie/<lab>/<node>`, the agent's `--pin-root`.
pub fn pin_root(lab: &str, node: &str) -> PathBuf {
    lab_pin_dir(lab).join(node)
}

/// `/run/tortie/labs/<lab>`.
pub fn state_dir(lab: &str) -> PathBuf {
    PathBuf::from(STATE_ROOT).join(lab)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_follows_the_address_scheme() {
        let (nodes, pods) = LabSpec::new("lab", 2, 2).plan();
        assert_eq!(nodes[1].netns, "tortie-lab-node-1");
        assert_eq!(nodes[1].ip, Ipv4Addr::new(10, 99, 0, 12));
        assert_eq!(nodes[1].fabric_port, "veth-n1");
        assert_eq!(
            nodes[1].pin_root,
            PathBuf::from("/sys/fs/bpf/tortie/lab/node-1")
        );
        let names: Vec<_> = pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["pod-0-0", "pod-0-1", "pod-1-0", "pod-1-1"]);
        assert_eq!(pods[3].ip, Ipv4Addr::new(10, 65, 1, 11));
        assert_eq!(pods[3].netns, "tortie-lab-default-pod-1-1");
        assert_eq!(pods[3].mac, "02:54:0a:41:01:0b");
        assert_eq!(pods[3].node, "node-1");
        assert_eq!(pods[3].labels["app"], "pod-1-1");
    }

    #[test]
    fn cali_names_fit_the_kernel_limit() {
        let name = cali_iface_name("default", "pod-0-0");
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("cali"));
    }

    #[test]
    fn rejects_names_and_counts_outside_the_plan() {
        assert!(LabSpec::new("lab", 1, 2).validate().is_ok());
        assert!(LabSpec::new("Lab", 1, 2).validate().is_err());
        assert!(LabSpec::new("a/b", 1, 2).validate().is_err());
        assert!(LabSpec::new("-x", 1, 2).validate().is_err());
        assert!(LabSpec::new("", 1, 2).validate().is_err());
        assert!(LabSpec::new("lab", 0, 2).validate().is_err());
        assert!(LabSpec::new("lab", MAX_NODES + 1, 2).validate().is_err());
        assert!(LabSpec::new("lab", 1, MAX_PODS_PER_NODE + 1)
            .validate()
            .is_err());
    }
}
