//! The BGP plan: which sessions this node opens and which routes it advertises, computed
//! from the cluster's resources with Calico's semantics. Pure: no I/O besides asking the
//! inputs' [`SecretSource`](crate::SecretSource) for passwords.

mod cluster;
mod sessions;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use tortie_resources::{AsNumber, LogSeverity};

use crate::model::BgpInputs;
use cluster::Cluster;

/// What BIRD on this node should do: its identity, its sessions and its routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpPlan {
    /// The local node's name.
    pub node_name: String,
    /// The BGP router ID: the node's IPv4 address.
    pub router_id: Ipv4Addr,
    /// The local AS number.
    pub local_as: AsNumber,
    /// The port BIRD accepts sessions on.
    pub listen_port: u16,
    /// How much BIRD logs.
    pub log_severity: LogSeverity,
    /// The node's route reflector cluster ID, when it is a route reflector.
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    /// The sessions, ordered by peer address (one per address).
    pub sessions: Vec<Session>,
    /// The local blocks advertised to peers (those inside a pool that allows BGP export).
    pub exported_blocks: Vec<Ipv4Net>,
    /// Every block affine to this node: routes to them (or inside them) are never imported,
    /// so the node never learns its own pods' addresses from a peer.
    pub local_blocks: Vec<Ipv4Net>,
    /// The IPv4 pools that allow BGP export: routes learned inside them may be passed on
    /// (a route reflector reflects other nodes' blocks).
    pub export_pools: Vec<Ipv4Net>,
    /// Problems that did not stop the plan (a session left out, a setting ignored), each
    /// naming the resource and what to do.
    pub warnings: Vec<String>,
}

impl BgpPlan {
    /// Whether a session is internal BGP (same AS on both ends).
    pub fn is_internal(&self, session: &Session) -> bool {
        session.peer_as == self.local_as
    }
}

/// Why a session exists, which decides the prefix of its BIRD protocol name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SessionKind {
    /// The node-to-node mesh (`Mesh_…`).
    Mesh,
    /// A BGPPeer session where one end is a route reflector (`RR_…`).
    RouteReflector,
    /// A BGPPeer that applies to every node (`Global_…`).
    Global,
    /// A BGPPeer for one node or a node selector (`Node_…`).
    Node,
}

impl SessionKind {
    const ALL: [SessionKind; 4] = [
        SessionKind::Mesh,
        SessionKind::RouteReflector,
        SessionKind::Global,
        SessionKind::Node,
    ];

    /// The prefix of the BIRD protocol names of this kind (`Mesh`, `RR`, `Global`, `Node`).
    pub fn protocol_prefix(self) -> &'static str {
        match self {
            SessionKind::Mesh => "Mesh",
            SessionKind::RouteReflector => "RR",
            SessionKind::Global => "Global",
            SessionKind::Node => "Node",
        }
    }

    /// The name as users read it (`Mesh`, `RouteReflector`, `Global`, `Node`).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Mesh => "Mesh",
            SessionKind::RouteReflector => "RouteReflector",
            SessionKind::Global => "Global",
            SessionKind::Node => "Node",
        }
    }

    /// The BIRD protocol name of a session of this kind to `peer`: the prefix and the
    /// address with dots as underscores (`Mesh_10_99_0_12`), as Calico names them.
    pub fn protocol_name(self, peer: Ipv4Addr) -> String {
        let [a, b, c, d] = peer.octets();
        format!("{}_{a}_{b}_{c}_{d}", self.protocol_prefix())
    }

    /// The kind and peer address a protocol name stands for, when it is one of ours.
    pub fn parse_protocol_name(name: &str) -> Option<(SessionKind, Ipv4Addr)> {
        let (prefix, address) = name.split_once('_')?;
        let kind = SessionKind::ALL
            .into_iter()
            .find(|k| k.protocol_prefix() == prefix)?;
        let octets: Vec<u8> = address
            .split('_')
            .map(|part| part.parse().ok())
            .collect::<Option<_>>()?;
        let octets: [u8; 4] = octets.try_into().ok()?;
        let peer = Ipv4Addr::from(octets);
        // Only the canonical spelling: `Mesh_010_…` is not a name we render.
        (kind.protocol_name(peer) == name).then_some((kind, peer))
    }

    /// The kind of a protocol name, when it is one of ours.
    pub fn from_protocol_name(name: &str) -> Option<SessionKind> {
        SessionKind::parse_protocol_name(name).map(|(kind, _)| kind)
    }
}

impl fmt::Display for SessionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which resource asked for a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionOrigin {
    /// The node-to-node mesh, to this node.
    Mesh {
        /// The other node.
        node: String,
    },
    /// A `BGPPeer`.
    Peer {
        /// The BGPPeer's name.
        peer: String,
        /// The Calico node at the other end, when the peer is one.
        node: Option<String>,
    },
}

impl fmt::Display for SessionOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionOrigin::Mesh { node } => write!(f, "node-to-node mesh with node {node}"),
            SessionOrigin::Peer {
                peer,
                node: Some(node),
            } => write!(f, "BGPPeer {peer}, with node {node}"),
            SessionOrigin::Peer { peer, node: None } => write!(f, "BGPPeer {peer}"),
        }
    }
}

/// A session password. Its `Debug` output hides the value, so plans can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// A password with this value.
    pub fn new(value: impl Into<String>) -> Password {
        Password(value.into())
    }

    /// The value, for writing into BIRD's configuration.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// One BGP session this node configures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Why the session exists (decides the protocol name's prefix).
    pub kind: SessionKind,
    /// The resource that asked for it.
    pub origin: SessionOrigin,
    /// The peer's address.
    pub peer_ip: Ipv4Addr,
    /// The peer's port, when not 179.
    pub peer_port: Option<u16>,
    /// The peer's AS number.
    pub peer_as: AsNumber,
    /// The local address the session is bound to (`None`: the kernel picks).
    pub source_ip: Option<Ipv4Addr>,
    /// The TCP MD5 password.
    pub password: Option<Password>,
    /// The route reflector cluster ID when the peer is this node's route reflector client.
    pub route_reflector_client: Option<Ipv4Addr>,
    /// Send routes to this peer with their original next hop instead of this node's
    /// address (`keepOriginalNextHop`).
    pub keep_next_hop: bool,
    /// How long the peer keeps our routes while we restart, in seconds (`None`: BIRD's
    /// default of 120).
    pub graceful_restart_time_secs: Option<u32>,
    /// Wait for the peer to connect instead of connecting. The mesh opens each session
    /// from one end only, as Calico does, so two simultaneous connections cannot abort a
    /// graceful restart: the node whose address sorts higher *as text* connects (Calico
    /// compares the strings, so `10.0.0.9` connects to `10.0.0.10`; comparing the same way
    /// keeps a mixed mesh from having both ends wait).
    pub passive: bool,
}

impl Session {
    /// The BIRD protocol name, e.g. `Mesh_10_99_0_12`.
    pub fn protocol_name(&self) -> String {
        self.kind.protocol_name(self.peer_ip)
    }
}

/// Why no plan could be made for the local node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The local node has no `Node` resource.
    #[error(
        "node {node}: no Calico Node resource of that name: create it (the agent registers \
         its node at startup) or check the node name the agent was given"
    )]
    LocalNodeNotFound {
        /// The local node's name.
        node: String,
    },
    /// The local node has no IPv4 address for BGP.
    #[error(
        "node {node}: spec.bgp.ipv4Address is not set: set it to the node's address with its \
         subnet (e.g. 10.0.0.11/24); BGP needs it as router ID and session address"
    )]
    LocalNodeNoIpv4Address {
        /// The local node's name.
        node: String,
    },
    /// The local node's IPv4 address does not parse.
    #[error(
        "node {node}: spec.bgp.ipv4Address {value:?} is not an IPv4 address: write the \
         node's address with its subnet, e.g. 10.0.0.11/24"
    )]
    LocalNodeInvalidIpv4Address {
        /// The local node's name.
        node: String,
        /// The value written.
        value: String,
    },
}

/// Computes the BGP plan of `inputs.local_node`.
///
/// Calico's semantics:
/// - Identity: router ID and session address are the node's `spec.bgp.ipv4Address`; the
///   AS is the node's `spec.bgp.asNumber`, else the `default` BGPConfiguration's, else
///   64512; the listen port and log level are the `node.<name>` BGPConfiguration's, else
///   `default`'s, else 179 and Info. Other nodes resolve the same way.
/// - Mesh (`nodeToNodeMeshEnabled`, on by default): a session with every other node that
///   has an IPv4 address, with `nodeMeshPassword` and `nodeMeshMaxRestartTime`.
/// - BGPPeers apply to the node named by `node`, the nodes `nodeSelector` matches, or
///   every node when neither is set; they peer with `peerIP` (and `asNumber`), or with
///   every other node `peerSelector` matches (its own address, AS and port). Peering
///   along `peerSelector` is symmetric: a node it matches peers back with each node the
///   BGPPeer applies to.
/// - A node never peers with its own address, and has one session per peer address: an
///   explicit BGPPeer wins over the mesh, and among BGPPeers the first by name.
/// - A node with `routeReflectorClusterID` is a route reflector: its internal peers are
///   its clients unless they reflect for the same cluster ID.
/// - A password whose secret is missing leaves the session out (with `optional: true`,
///   the session comes up without a password); both are warnings.
///
/// Fails only when the local node itself cannot speak BGP (no Node resource, no IPv4
/// address). Problems with other resources leave the affected session or setting out and
/// are listed in [`BgpPlan::warnings`].
pub fn plan(inputs: &BgpInputs) -> Result<BgpPlan, PlanError> {
    let mut warnings = Vec::new();
    let cluster = Cluster::new(inputs, &mut warnings)?;
    let local = cluster.local();

    let sessions = sessions::sessions(&cluster, inputs, &mut warnings);

    let v4_pools: Vec<(Ipv4Net, bool)> = inputs
        .pools
        .iter()
        .filter_map(|pool| match pool.spec.cidr_net()? {
            ipnet::IpNet::V4(net) => Some((net, !pool.spec.disable_bgp_export())),
            ipnet::IpNet::V6(_) => None,
        })
        .collect();
    let mut local_blocks: Vec<Ipv4Net> = inputs.local_blocks.iter().map(|b| b.trunc()).collect();
    local_blocks.sort();
    local_blocks.dedup();
    let mut exported_blocks = Vec::new();
    for block in &local_blocks {
        match v4_pools.iter().find(|(pool, _)| pool.contains(block)) {
            Some((_, true)) => exported_blocks.push(*block),
            Some((_, false)) => {}
            None => warnings.push(format!(
                "node {}: block {block} is affine to this node but inside no IPPool: it is \
                 not advertised; release the block or recreate its pool",
                local.name
            )),
        }
    }
    let mut export_pools: Vec<Ipv4Net> = v4_pools
        .iter()
        .filter(|(_, export)| *export)
        .map(|(net, _)| *net)
        .collect();
    export_pools.sort();
    export_pools.dedup();

    Ok(BgpPlan {
        node_name: local.name.to_string(),
        router_id: cluster.local_ip(),
        local_as: local.as_number,
        listen_port: local.listen_port,
        log_severity: cluster.log_severity(),
        route_reflector_cluster_id: local.rr_cluster_id,
        sessions,
        exported_blocks,
        local_blocks,
        export_pools,
        warnings,
    })
}
