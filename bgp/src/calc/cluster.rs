//! The cluster as BGP sees it: each node's address, AS number, port and route reflector
//! role, with the BGPConfiguration fallbacks resolved once.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use tortie_resources::bgp::{DEFAULT_AS_NUMBER, DEFAULT_BGP_CONFIGURATION_NAME, DEFAULT_BGP_PORT};
use tortie_resources::{AsNumber, BgpConfigurationSpec, LogSeverity, Node};

use super::PlanError;
use crate::model::BgpInputs;

/// A node's BGP identity.
#[derive(Debug)]
pub(super) struct BgpNode<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// `None` when the node has no (valid) IPv4 address: nothing peers with it.
    pub ip: Option<Ipv4Addr>,
    pub as_number: AsNumber,
    pub listen_port: u16,
    pub rr_cluster_id: Option<Ipv4Addr>,
}

impl BgpNode<'_> {
    pub fn is_route_reflector(&self) -> bool {
        self.rr_cluster_id.is_some()
    }
}

/// Every node's identity, and the local node's settings.
pub(super) struct Cluster<'a> {
    default_config: Option<&'a BgpConfigurationSpec>,
    local_config: Option<&'a BgpConfigurationSpec>,
    /// Sorted by name; the local node is `nodes[local]`.
    nodes: Vec<BgpNode<'a>>,
    local: usize,
    local_ip: Ipv4Addr,
}

impl<'a> Cluster<'a> {
    /// Resolves every node; fails when the local node is missing or has no IPv4 address.
    pub fn new(inputs: &'a BgpInputs, warnings: &mut Vec<String>) -> Result<Self, PlanError> {
        let configs: HashMap<&str, &BgpConfigurationSpec> = inputs
            .configurations
            .iter()
            .map(|c| (c.metadata.name.as_str(), &c.spec))
            .collect();
        let default_config = configs.get(DEFAULT_BGP_CONFIGURATION_NAME).copied();
        let node_config = |node: &str| -> Option<&BgpConfigurationSpec> {
            configs.get(format!("node.{node}").as_str()).copied()
        };
        let cluster_as = default_config
            .and_then(|c| c.as_number)
            .unwrap_or(DEFAULT_AS_NUMBER);

        let mut sorted: Vec<&Node> = inputs.nodes.iter().collect();
        sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        sorted.dedup_by(|a, b| a.metadata.name == b.metadata.name);

        let local_name = inputs.local_node.as_str();
        let mut nodes = Vec::with_capacity(sorted.len());
        let mut local = None;
        for node in sorted {
            let name = node.metadata.name.as_str();
            let bgp = node.spec.bgp.as_ref();
            let ip = bgp.and_then(|b| b.ipv4_interface()).map(|net| net.addr());
            if name == local_name {
                local = Some(nodes.len());
            } else if let (None, Some(value)) = (ip, bgp.and_then(|b| b.ipv4_address.as_ref())) {
                warnings.push(format!(
                    "node {name}: spec.bgp.ipv4Address {value:?} is not an IPv4 address: no \
                     session to this node until it is fixed (e.g. 10.0.0.12/24)"
                ));
            }
            let rr_cluster_id = match bgp.and_then(|b| b.route_reflector_cluster_id.as_deref()) {
                None => None,
                Some(id) => match id.parse::<Ipv4Addr>() {
                    Ok(id) => Some(id),
                    Err(_) => {
                        warnings.push(format!(
                            "node {name}: spec.bgp.routeReflectorClusterID {id:?} is not in \
                             IPv4 form: the node is not treated as a route reflector until it \
                             is written like 224.0.0.1"
                        ));
                        None
                    }
                },
            };
            let listen_port = node_config(name)
                .and_then(|c| c.listen_port)
                .or(default_config.and_then(|c| c.listen_port))
                .unwrap_or(DEFAULT_BGP_PORT);
            nodes.push(BgpNode {
                name,
                labels: &node.metadata.labels,
                ip,
                as_number: bgp.and_then(|b| b.as_number).unwrap_or(cluster_as),
                listen_port,
                rr_cluster_id,
            });
        }

        let Some(local) = local else {
            return Err(PlanError::LocalNodeNotFound {
                node: local_name.to_string(),
            });
        };
        let local_ip = match nodes[local].ip {
            Some(ip) => ip,
            None => {
                let value = inputs.nodes.iter().find_map(|n| {
                    (n.metadata.name == local_name)
                        .then(|| n.spec.bgp.as_ref()?.ipv4_address.clone())
                        .flatten()
                });
                return Err(match value {
                    None => PlanError::LocalNodeNoIpv4Address {
                        node: local_name.to_string(),
                    },
                    Some(value) => PlanError::LocalNodeInvalidIpv4Address {
                        node: local_name.to_string(),
                        value,
                    },
                });
            }
        };
        Ok(Cluster {
            default_config,
            local_config: node_config(local_name),
            nodes,
            local,
            local_ip,
        })
    }

    pub fn local(&self) -> &BgpNode<'a> {
        &self.nodes[self.local]
    }

    pub fn local_ip(&self) -> Ipv4Addr {
        self.local_ip
    }

    /// The other nodes that have an IPv4 address (other than the local node's own), by name.
    pub fn peerable_nodes(&self) -> impl Iterator<Item = (&BgpNode<'a>, Ipv4Addr)> {
        self.nodes.iter().enumerate().filter_map(move |(i, node)| {
            let ip = node.ip?;
            (i != self.local && ip != self.local_ip).then_some((node, ip))
        })
    }

    /// The node whose address is `ip`, other than the local node.
    pub fn node_with_ip(&self, ip: Ipv4Addr) -> Option<&BgpNode<'a>> {
        self.peerable_nodes()
            .find(|(_, node_ip)| *node_ip == ip)
            .map(|(node, _)| node)
    }

    /// The cluster-wide configuration, when there is one.
    pub fn default_config(&self) -> Option<&'a BgpConfigurationSpec> {
        self.default_config
    }

    /// The local node's log level: its own configuration's, else `default`'s, else Info.
    pub fn log_severity(&self) -> LogSeverity {
        self.local_config
            .and_then(|c| c.log_severity_screen)
            .or(self.default_config.and_then(|c| c.log_severity_screen))
            .unwrap_or_default()
    }

    /// Whether the node-to-node mesh is on (the `default` configuration's setting; on when
    /// there is none).
    pub fn mesh_enabled(&self) -> bool {
        self.default_config
            .is_none_or(|c| c.node_to_node_mesh_enabled())
    }
}
