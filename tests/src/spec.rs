//! What a lab consists of and what everything in it is called. Pure functions, no I/O.
//!
//! ```text
//! tortie-<lab>-fabric          bridge br0 (segment 0, 10.99.0.0/24); for `routed` also br1
//!                              (segment 1, 10.99.1.0/24); one port veth-n<i> per node,
//!                              veth-r<s> per router leg
//! tortie-<lab>-router          r<s> 10.99.<s>.1/24 on br<s>, ext0 203.0.113.1/24; forwards
//! tortie-<lab>-ext             eth0 203.0.113.10/24, default via 203.0.113.1 (TEST-NET-3)
//! tortie-<lab>-node-<i>        eth0 10.99.<s>.<11+i>/24 (s = i % 2 when routed, else 0),
//!                              default via 10.99.<s>.1, pods' block 10.65.<i>.0/26
//! tortie-<lab>-<ns>-<pod>      eth0 10.65.<i>.<10+j>/32, default via 169.254.1.1,
//!                              MTU 1500 minus the encapsulation overhead
//! ```
//!
//! The router and the external host have no route to the pod pool 10.65.0.0/16: a pod reaches
//! the external host only if its node source-NATs the traffic (the pool's `natOutgoing`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

pub use crate::modes::{DatastoreMode, Encap, EncapMode, Topology};

/// Lab name used when none is given.
pub const DEFAULT_LAB_NAME: &str = "lab";
/// Every network namespace the lab creates starts with this.
pub const NETNS_PREFIX: &str = "tortie-";
/// The bridge of fabric segment 0, in the fabric namespace.
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
/// Where each lab agent serves /metrics, /healthz and /readyz, inside its node's namespace.
pub const AGENT_METRICS_ADDR: &str = "127.0.0.1:9091";
/// MTU of the fabric: uplinks, bridges, router and external host. Pod interfaces get this
/// minus the encapsulation overhead ([`Encap::overhead_bytes`]).
pub const MTU: u32 = 1500;
/// Prefix length of each fabric segment 10.99.<s>.0/24.
pub const FABRIC_PREFIX_LEN: u8 = 24;
/// Nodes get 10.99.<s>.11 upwards; the limit keeps them inside the /24.
pub const MAX_NODES: usize = 240;
/// Where the lab's etcd serves clients, on the fabric's first segment (`br0`).
pub const ETCD_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// etcd's client port (its peer port is the next one).
pub const ETCD_PORT: u16 = 2379;
/// The IP pool every pod address comes from.
pub const POD_POOL_CIDR: &str = "10.65.0.0/16";
/// Name of the lab's IP pool, Calico's default.
pub const POD_POOL_NAME: &str = "default-ipv4-ippool";
/// VXLAN network identifier, Calico's default.
pub const VXLAN_VNI: u32 = 4096;
/// VXLAN UDP port, Calico's default (the IANA port, which tcpdump decodes as VXLAN).
pub const VXLAN_PORT: u16 = 4789;
/// `exec` target and namespace suffix of the router between the segments and the outside.
pub const ROUTER_TARGET: &str = "router";
/// `exec` target and namespace suffix of the external host.
pub const EXTERNAL_TARGET: &str = "ext";
/// The router's leg towards the external host.
pub const ROUTER_EXTERNAL_IFACE: &str = "ext0";
/// The router's address on the external link (TEST-NET-3).
pub const EXTERNAL_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The external host's address (TEST-NET-3): what natOutgoing traffic goes to.
pub const EXTERNAL_HOST_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Prefix length of the external link 203.0.113.0/24.
pub const EXTERNAL_PREFIX_LEN: u8 = 24;
/// The external host's interface towards the router.
pub const EXTERNAL_IFACE: &str = "eth0";
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
    /// `CrossSubnet` only chooses when to encapsulate, so it needs an encapsulation.
    #[error("--cross-subnet needs an encapsulation: add --encap ipip or --encap vxlan")]
    CrossSubnetWithoutEncap,
    /// BIRD's configuration is rendered from the datastore's resources.
    #[error("--bgp needs the etcd datastore: add --datastore etcd")]
    BgpWithoutDatastore,
    /// A pod MTU that IPv4 or the fabric cannot carry.
    #[error("pod MTU {mtu} is out of range: use 576 to {max} (the fabric MTU minus the {overhead}-byte encapsulation)")]
    PodMtu {
        /// The rejected MTU.
        mtu: u32,
        /// The largest that fits.
        max: u32,
        /// Bytes the encapsulation adds.
        overhead: u32,
    },
    /// An unknown value for one of the lab's enumerations.
    #[error("{value:?} is not a valid {what}; use one of: {expected}")]
    UnknownValue {
        /// What was being parsed (`encapsulation`, `topology`).
        what: &'static str,
        /// The rejected value.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
}

/// The shape of a lab: its name, how many nodes, how many pods on each, how pod traffic
/// crosses between nodes and how the fabric is laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabSpec {
    /// Lab name; part of every namespace, pin and state path of the lab.
    pub name: String,
    /// Number of nodes (`node-0` …).
    pub nodes: usize,
    /// Pods on each node (`pod-<node>-<j>`).
    pub pods_per_node: usize,
    /// The pool's encapsulation.
    pub encap: Encap,
    /// Encapsulate only between subnets (pool mode `CrossSubnet` instead of `Always`).
    pub cross_subnet: bool,
    /// One segment or two joined by the router.
    pub topology: Topology,
    /// Pod MTU instead of the uplink MTU minus the encapsulation overhead.
    pub pod_mtu_override: Option<u32>,
    /// Where the agents take their inputs from.
    pub datastore: DatastoreMode,
    /// Every node runs BIRD, configured by its agent from the datastore (node-to-node mesh
    /// unless the lab's resources say otherwise).
    pub bgp: bool,
    /// etcd keeps its database in memory (tmpfs, [`etcd_memory_dir`]) instead of on disk,
    /// so that a slow disk's fsync stalls stay out of timings that are about tortie.
    pub etcd_in_memory: bool,
}

impl LabSpec {
    /// A flat lab without encapsulation; check it with [`LabSpec::validate`] (done by `Lab::up`).
    pub fn new(name: impl Into<String>, nodes: usize, pods_per_node: usize) -> Self {
        Self {
            name: name.into(),
            nodes,
            pods_per_node,
            encap: Encap::None,
            cross_subnet: false,
            topology: Topology::Flat,
            pod_mtu_override: None,
            datastore: DatastoreMode::Files,
            bgp: false,
            etcd_in_memory: false,
        }
    }

    /// The same spec with etcd's database in memory (see [`LabSpec::etcd_in_memory`]).
    pub fn with_etcd_in_memory(mut self, in_memory: bool) -> Self {
        self.etcd_in_memory = in_memory;
        self
    }

    /// The same spec with BIRD on every node (needs the etcd datastore).
    pub fn with_bgp(mut self, bgp: bool) -> Self {
        self.bgp = bgp;
        self
    }

    /// The same spec with the agents fed from `datastore`.
    pub fn with_datastore(mut self, datastore: DatastoreMode) -> Self {
        self.datastore = datastore;
        self
    }

    /// The same spec with a fixed pod MTU (`None`: derived from the encapsulation).
    pub fn with_pod_mtu(mut self, mtu: Option<u32>) -> Self {
        self.pod_mtu_override = mtu;
        self
    }

    /// The same spec with encapsulation `encap`.
    pub fn with_encap(mut self, encap: Encap) -> Self {
        self.encap = encap;
        self
    }

    /// The same spec with pool mode `CrossSubnet` (`true`) or `Always` (`false`).
    pub fn with_cross_subnet(mut self, cross_subnet: bool) -> Self {
        self.cross_subnet = cross_subnet;
        self
    }

    /// The same spec with fabric layout `topology`.
    pub fn with_topology(mut self, topology: Topology) -> Self {
        self.topology = topology;
        self
    }

    /// The pool's `(ipipMode, vxlanMode)`.
    pub fn pool_modes(&self) -> (EncapMode, EncapMode) {
        let on = if self.cross_subnet {
            EncapMode::CrossSubnet
        } else {
            EncapMode::Always
        };
        match self.encap {
            Encap::None => (EncapMode::Never, EncapMode::Never),
            Encap::Ipip => (on, EncapMode::Never),
            Encap::Vxlan => (EncapMode::Never, on),
        }
    }

    /// MTU of pod interfaces (both ends of the veth): the fabric's minus the encapsulation
    /// overhead, so that an encapsulated full-size pod packet still fits on the fabric.
    pub fn pod_mtu(&self) -> u32 {
        self.pod_mtu_override
            .unwrap_or(MTU - self.encap.overhead_bytes())
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
        if self.cross_subnet && self.encap == Encap::None {
            return Err(SpecError::CrossSubnetWithoutEncap);
        }
        if self.bgp && self.datastore != DatastoreMode::Etcd {
            return Err(SpecError::BgpWithoutDatastore);
        }
        let overhead = self.encap.overhead_bytes();
        let max = MTU - overhead;
        if let Some(mtu) = self
            .pod_mtu_override
            .filter(|mtu| !(576..=max).contains(mtu))
        {
            return Err(SpecError::PodMtu { mtu, max, overhead });
        }
        Ok(())
    }

    /// Every node and pod of the lab with its names and addresses (agents not started).
    pub fn plan(&self) -> (Vec<Node>, Vec<Pod>) {
        let nodes: Vec<Node> = (0..self.nodes)
            .map(|i| {
                let mut node = Node::planned(&self.name, i, self.topology.segment_of(i));
                if self.bgp {
                    node.bird = Some(BirdFiles::planned(&state_dir(&self.name), &node.name));
                }
                node
            })
            .collect();
        let mtu = self.pod_mtu();
        let pods = (0..self.nodes)
            .flat_map(|i| (0..self.pods_per_node).map(move |j| (i, j)))
            .map(|(i, j)| Pod::planned(&self.name, i, j, mtu))
            .collect();
        (nodes, pods)
    }

    /// The router joining the segments and the external link.
    pub fn router(&self) -> Router {
        Router::planned(&self.name, self.topology)
    }

    /// The external host behind the router.
    pub fn external(&self) -> ExternalHost {
        ExternalHost::planned(&self.name)
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
    /// The fabric segment the node is on (`10.99.<segment>.0/24`, bridge `br<segment>`).
    pub segment: u8,
    /// The router's address on the node's segment: the node's default gateway.
    pub gateway: Ipv4Addr,
    /// The fabric side of the node's uplink veth, a port of `br<segment>`.
    pub fabric_port: String,
    /// The node's pod block, `10.65.<i>.0/26`.
    pub pod_block: String,
    /// The agent's `--pin-root`.
    pub pin_root: PathBuf,
    /// The agent's `--endpoints-file`.
    pub endpoints_file: PathBuf,
    /// The agent's `--cluster-file` (one file shared by every node of the lab).
    pub cluster_file: PathBuf,
    /// The agent's `--ready-file`.
    pub ready_file: PathBuf,
    /// Where the agent's stdout and stderr are appended.
    pub log_file: PathBuf,
    /// Pid of the agent last started for this node.
    pub agent_pid: Option<u32>,
    /// The etcd the agent watches (`--etcd-endpoints`); `None`: it reads the lab's files.
    #[serde(default)]
    pub etcd_endpoints: Option<String>,
    /// BIRD's files, when the node speaks BGP.
    #[serde(default)]
    pub bird: Option<BirdFiles>,
}

/// Where a node's BIRD keeps its configuration (written by the agent), control socket, log
/// and pid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BirdFiles {
    /// The configuration the agent renders (`bird -c`, agent `--bird-config`).
    pub config: PathBuf,
    /// The control socket (`bird -s`, agent and tortiectl `--bird-socket`).
    pub socket: PathBuf,
    /// BIRD's stderr.
    pub log: PathBuf,
    /// BIRD's pid file (`bird -P`).
    pub pid_file: PathBuf,
}

impl BirdFiles {
    fn planned(dir: &Path, node: &str) -> Self {
        Self {
            config: dir.join(format!("{node}.bird.conf")),
            socket: dir.join(format!("{node}.bird.ctl")),
            log: dir.join(format!("{node}.bird.log")),
            pid_file: dir.join(format!("{node}.bird.pid")),
        }
    }
}

impl Node {
    fn planned(lab: &str, index: usize, segment: u8) -> Self {
        let name = node_name(index);
        let dir = state_dir(lab);
        Self {
            netns: node_netns(lab, &name),
            ip: node_ip(segment, index),
            segment,
            gateway: segment_gateway(segment),
            fabric_port: format!("veth-n{index}"),
            pod_block: pod_block(index),
            pin_root: pin_root(lab, &name),
            endpoints_file: dir.join(format!("{name}.endpoints.json")),
            cluster_file: cluster_file(lab),
            ready_file: dir.join(format!("{name}.ready")),
            log_file: dir.join(format!("{name}.agent.log")),
            agent_pid: None,
            etcd_endpoints: None,
            bird: None,
            name,
            index,
        }
    }

    /// `<pin root>/maps/v<layout>`: where the agent pins this node's maps.
    pub fn maps_dir(&self) -> PathBuf {
        maps_dir(&self.pin_root)
    }

    /// The bridge of the node's segment in the fabric namespace.
    pub fn bridge(&self) -> String {
        segment_bridge(self.segment)
    }

    /// `10.99.<s>.<11+i>/24`, the uplink address with its prefix.
    pub fn cidr(&self) -> String {
        format!("{}/{FABRIC_PREFIX_LEN}", self.ip)
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
    /// MTU of both ends of the pod's veth.
    pub mtu: u32,
    /// Declared container ports (named ones are what policies match by name).
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
}

/// A port a pod's container declares, as in a Kubernetes pod spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPort {
    /// Port name (`serve-80-tcp`), empty for an unnamed port.
    pub name: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// Port number.
    pub port: u16,
}

impl Pod {
    /// A pod to be created through the CNI plugin on `node`: its address, MAC and host
    /// interface are placeholders until the ADD result fills them in.
    pub fn planned_for_cni(
        lab: &str,
        node: &str,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Self {
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            labels: owned_labels(labels),
            node: node.to_owned(),
            netns: pod_netns(lab, namespace, name),
            ip: Ipv4Addr::UNSPECIFIED,
            host_iface: cali_iface_name(namespace, name),
            mac: String::new(),
            mtu: MTU,
            ports: Vec::new(),
        }
    }

    /// `namespace/name`, how messages name the pod.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn planned(lab: &str, node_index: usize, pod_index: usize, mtu: u32) -> Self {
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
            mtu,
            name,
            ports: Vec::new(),
        }
    }
}

/// The router: one leg per fabric segment and one towards the external host. It forwards
/// (`ip_forward=1`) but knows no route to the pod pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Router {
    /// `tortie-<lab>-router`.
    pub netns: String,
    /// One leg per segment, in segment order.
    pub legs: Vec<RouterLeg>,
    /// The leg towards the external host ([`ROUTER_EXTERNAL_IFACE`]).
    pub external_iface: String,
    /// Its address, [`EXTERNAL_GATEWAY`]/24.
    pub external_ip: Ipv4Addr,
}

/// A router leg on a fabric segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterLeg {
    /// The segment (`br<segment>`).
    pub segment: u8,
    /// Interface name in the router namespace, `r<segment>`.
    pub iface: String,
    /// `10.99.<segment>.1`, the gateway of the segment's nodes.
    pub ip: Ipv4Addr,
    /// The fabric side of the leg's veth, `veth-r<segment>`, a port of `br<segment>`.
    pub fabric_port: String,
}

impl Router {
    fn planned(lab: &str, topology: Topology) -> Self {
        Self {
            netns: router_netns(lab),
            legs: (0..topology.segments())
                .map(|segment| RouterLeg {
                    segment,
                    iface: format!("r{segment}"),
                    ip: segment_gateway(segment),
                    fabric_port: format!("veth-r{segment}"),
                })
                .collect(),
            external_iface: ROUTER_EXTERNAL_IFACE.to_owned(),
            external_ip: EXTERNAL_GATEWAY,
        }
    }
}

/// A host outside the cluster, behind the router, on TEST-NET-3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalHost {
    /// `tortie-<lab>-ext`.
    pub netns: String,
    /// Its interface towards the router, [`EXTERNAL_IFACE`].
    pub iface: String,
    /// [`EXTERNAL_HOST_IP`]/24.
    pub ip: Ipv4Addr,
    /// Its default gateway, the router's [`EXTERNAL_GATEWAY`].
    pub gateway: Ipv4Addr,
}

impl ExternalHost {
    fn planned(lab: &str) -> Self {
        Self {
            netns: external_netns(lab),
            iface: EXTERNAL_IFACE.to_owned(),
            ip: EXTERNAL_HOST_IP,
            gateway: EXTERNAL_GATEWAY,
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

/// The namespace of the router.
pub fn router_netns(lab: &str) -> String {
    format!("{}{ROUTER_TARGET}", netns_prefix(lab))
}

/// The namespace of the external host.
pub fn external_netns(lab: &str) -> String {
    format!("{}{EXTERNAL_TARGET}", netns_prefix(lab))
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

/// `10.99.<segment>.<11+i>`. Callers keep `index < MAX_NODES`.
pub fn node_ip(segment: u8, index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, segment, octet(11 + index))
}

/// `10.99.<segment>.1`, the router on a segment.
pub fn segment_gateway(segment: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, segment, 1)
}

/// `br<segment>`, the segment's bridge in the fabric namespace.
pub fn segment_bridge(segment: u8) -> String {
    format!("br{segment}")
}

/// `10.65.<i>.0/26`.
pub fn pod_block(node_index: usize) -> String {
    format!("10.65.{}.0/26", octet(node_index))
}

/// `10.65.<i>.<10+j>`. Callers keep the indices below the `MAX_*` limits.
pub fn pod_ip(node_index: usize, pod_index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 65, octet(node_index), octet(10 + pod_index))
}

pub(crate) fn octet(value: usize) -> u8 {
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

/// Where a lab keeps etcd's database when it is in memory (a tmpfs); removed with the lab.
pub fn etcd_memory_dir(lab: &str) -> PathBuf {
    PathBuf::from("/dev/shm/tortie-labs").join(lab)
}

/// `labels` as a pod record holds them.
pub fn owned_labels(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// `http://10.99.0.2:2379`, the lab's etcd as nodes and pods reach it.
pub fn etcd_endpoint() -> String {
    format!("http://{ETCD_IP}:{ETCD_PORT}")
}

/// `/run/tortie/labs/<lab>/cluster.json`, the agents' `--cluster-file`.
pub fn cluster_file(lab: &str) -> PathBuf {
    state_dir(lab).join("cluster.json")
}

/// `<pin_root>/maps/v<layout>`: the maps of this build's layout under an agent's pin root.
pub fn maps_dir(pin_root: &Path) -> PathBuf {
    pin_root
        .join(bpf_maps::pins::MAPS_DIR)
        .join(format!("v{}", bpf_maps::MAP_LAYOUT_VERSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_follows_the_address_scheme() {
        let (nodes, pods) = LabSpec::new("lab", 2, 2).plan();
        assert_eq!(nodes[1].netns, "tortie-lab-node-1");
        assert_eq!(nodes[1].ip, Ipv4Addr::new(10, 99, 0, 12));
        assert_eq!(nodes[1].segment, 0);
        assert_eq!(nodes[1].gateway, Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(nodes[1].bridge(), "br0");
        assert_eq!(nodes[1].cidr(), "10.99.0.12/24");
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
        assert_eq!(pods[3].mtu, 1500);
    }

    #[test]
    fn routed_labs_alternate_segments() {
        let spec = LabSpec::new("lab", 3, 1).with_topology(Topology::Routed);
        let (nodes, _) = spec.plan();
        let placed: Vec<_> = nodes.iter().map(|n| (n.segment, n.ip, n.gateway)).collect();
        assert_eq!(
            placed,
            [
                (0, Ipv4Addr::new(10, 99, 0, 11), Ipv4Addr::new(10, 99, 0, 1)),
                (1, Ipv4Addr::new(10, 99, 1, 12), Ipv4Addr::new(10, 99, 1, 1)),
                (0, Ipv4Addr::new(10, 99, 0, 13), Ipv4Addr::new(10, 99, 0, 1)),
            ]
        );
        assert_eq!(nodes[1].bridge(), "br1");
        let router = spec.router();
        assert_eq!(router.netns, "tortie-lab-router");
        let legs: Vec<_> = router
            .legs
            .iter()
            .map(|l| (l.iface.as_str(), l.ip))
            .collect();
        assert_eq!(
            legs,
            [
                ("r0", Ipv4Addr::new(10, 99, 0, 1)),
                ("r1", Ipv4Addr::new(10, 99, 1, 1))
            ]
        );
        assert_eq!(LabSpec::new("lab", 3, 1).router().legs.len(), 1);
        assert_eq!(spec.external().netns, "tortie-lab-ext");
        assert_eq!(spec.external().ip, Ipv4Addr::new(203, 0, 113, 10));
    }

    #[test]
    fn pod_mtu_leaves_room_for_the_encapsulation() {
        let spec = |encap| LabSpec::new("lab", 1, 1).with_encap(encap);
        assert_eq!(spec(Encap::None).pod_mtu(), 1500);
        assert_eq!(spec(Encap::Ipip).pod_mtu(), 1480);
        assert_eq!(spec(Encap::Vxlan).pod_mtu(), 1450);
        assert_eq!(spec(Encap::Vxlan).plan().1[0].mtu, 1450);
        let fixed = spec(Encap::Ipip).with_pod_mtu(Some(1400));
        assert_eq!(fixed.pod_mtu(), 1400);
        assert!(fixed.validate().is_ok());
        let too_big = spec(Encap::Vxlan).with_pod_mtu(Some(1460));
        assert!(matches!(
            too_big.validate(),
            Err(SpecError::PodMtu { max: 1450, .. })
        ));
    }

    #[test]
    fn pool_modes_follow_encap_and_cross_subnet() {
        use EncapMode::*;
        let spec = |encap, cross| {
            LabSpec::new("lab", 1, 1)
                .with_encap(encap)
                .with_cross_subnet(cross)
        };
        assert_eq!(spec(Encap::None, false).pool_modes(), (Never, Never));
        assert_eq!(spec(Encap::Ipip, false).pool_modes(), (Always, Never));
        assert_eq!(spec(Encap::Ipip, true).pool_modes(), (CrossSubnet, Never));
        assert_eq!(spec(Encap::Vxlan, false).pool_modes(), (Never, Always));
        assert_eq!(spec(Encap::Vxlan, true).pool_modes(), (Never, CrossSubnet));
        assert!(spec(Encap::None, true).validate().is_err());
        assert!(spec(Encap::Ipip, true).validate().is_ok());
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
