//! The sessions: explicit BGPPeers first, then the node-to-node mesh, one session per peer
//! address.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use tortie_resources::bgp::DEFAULT_BGP_PORT;
use tortie_resources::validate::parse_go_duration;
use tortie_resources::{AsNumber, BgpPassword, BgpPeer, Selector, SourceAddress};

use super::cluster::{BgpNode, Cluster};
use super::{Password, Session, SessionKind, SessionOrigin};
use crate::model::{BgpInputs, SecretSource};

/// All sessions of the local node, ordered by peer address.
pub(super) fn sessions(
    cluster: &Cluster,
    inputs: &BgpInputs,
    warnings: &mut Vec<String>,
) -> Vec<Session> {
    let mut set = SessionSet::default();
    // An explicit BGPPeer wins over the mesh for the same address, and among BGPPeers the
    // first by name wins: BGPPeers are offered first, in name order.
    let mut peers: Vec<&BgpPeer> = inputs.peers.iter().collect();
    peers.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for peer in peers {
        peer_sessions(cluster, peer, &mut set, inputs.secrets.as_ref(), warnings);
    }
    if cluster.mesh_enabled() {
        mesh_sessions(cluster, &mut set, inputs.secrets.as_ref(), warnings);
    }
    set.finish(warnings)
}

/// The far end of a session.
struct Target<'c, 'a> {
    ip: Ipv4Addr,
    port: Option<u16>,
    as_number: AsNumber,
    /// The Calico node at that address, if any (its route reflector role matters).
    node: Option<&'c BgpNode<'a>>,
}

impl<'c, 'a> Target<'c, 'a> {
    fn node(node: &'c BgpNode<'a>, ip: Ipv4Addr) -> Self {
        Target {
            ip,
            port: (node.listen_port != DEFAULT_BGP_PORT).then_some(node.listen_port),
            as_number: node.as_number,
            node: Some(node),
        }
    }
}

/// What a session's password setting resolved to.
enum PasswordLookup {
    None,
    Found(Password),
    /// The secret is missing; `optional` says whether the session comes up without it.
    Missing {
        secret: String,
        key: String,
        optional: bool,
    },
    /// The value cannot be written into BIRD's configuration.
    Unquotable {
        secret: String,
        key: String,
    },
}

/// The sessions chosen so far, keyed by peer address, and the secrets found missing.
#[derive(Default)]
struct SessionSet {
    /// `None`: the address was claimed by a session that had to be left out; the mesh does
    /// not step in, since the user asked for something else at that address.
    by_peer: BTreeMap<Ipv4Addr, Option<Session>>,
    /// (owner, field, secret, key, optional) → the peers affected, for one warning each.
    missing_secrets: BTreeMap<(String, &'static str, String, String, bool), Vec<Ipv4Addr>>,
    /// (owner, field, secret, key) → the peers affected.
    unquotable: BTreeMap<(String, &'static str, String, String), Vec<Ipv4Addr>>,
}

impl SessionSet {
    fn claimed(&self, ip: Ipv4Addr) -> bool {
        self.by_peer.contains_key(&ip)
    }

    /// Adds `session`, with the password lookup's outcome; `owner` and `field` name the
    /// setting for warnings.
    fn add(
        &mut self,
        mut session: Session,
        password: &PasswordLookup,
        owner: &str,
        field: &'static str,
    ) {
        let ip = session.peer_ip;
        match password {
            PasswordLookup::None => {}
            PasswordLookup::Found(password) => session.password = Some(password.clone()),
            PasswordLookup::Missing {
                secret,
                key,
                optional,
            } => {
                self.missing_secrets
                    .entry((
                        owner.to_string(),
                        field,
                        secret.clone(),
                        key.clone(),
                        *optional,
                    ))
                    .or_default()
                    .push(ip);
                if !optional {
                    self.by_peer.insert(ip, None);
                    return;
                }
            }
            PasswordLookup::Unquotable { secret, key } => {
                self.unquotable
                    .entry((owner.to_string(), field, secret.clone(), key.clone()))
                    .or_default()
                    .push(ip);
                self.by_peer.insert(ip, None);
                return;
            }
        }
        self.by_peer.insert(ip, Some(session));
    }

    fn finish(self, warnings: &mut Vec<String>) -> Vec<Session> {
        for ((owner, field, secret, key, optional), peers) in self.missing_secrets {
            let peers = list(&peers);
            if optional {
                warnings.push(format!(
                    "{owner}: {field}: secret {secret} has no key {key} (or does not exist); \
                     the password is optional, so the session to {peers} comes up without \
                     one: create the secret with that key to protect it"
                ));
            } else {
                warnings.push(format!(
                    "{owner}: {field}: secret {secret} has no key {key} (or does not exist): \
                     the session to {peers} is left out; create the secret with that key in \
                     the agent's namespace, or set optional: true to peer without a password"
                ));
            }
        }
        for ((owner, field, secret, key), peers) in self.unquotable {
            warnings.push(format!(
                "{owner}: {field}: the password in secret {secret} key {key} contains a double \
                 quote or a line break, which BIRD cannot take: the session to {} is left \
                 out; store a password without them",
                list(&peers)
            ));
        }
        self.by_peer.into_values().flatten().collect()
    }
}

fn list(peers: &[Ipv4Addr]) -> String {
    peers
        .iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Looks a password setting up in the secrets.
fn lookup_password(secrets: &dyn SecretSource, password: Option<&BgpPassword>) -> PasswordLookup {
    let Some(password) = password else {
        return PasswordLookup::None;
    };
    let Some(secret) = &password.secret_key_ref else {
        // Validation requires secretKeyRef; without it there is nothing to look up.
        return PasswordLookup::Missing {
            secret: "(unset)".to_string(),
            key: "(unset)".to_string(),
            optional: false,
        };
    };
    match secrets.secret(&secret.name, &secret.key) {
        // BIRD 2.0 strings have no escapes: a double quote or a line break cannot be
        // written inside one (a backslash is taken literally, so it is fine).
        Some(value) if value.contains(['"', '\n', '\r', '\0']) => PasswordLookup::Unquotable {
            secret: secret.name.clone(),
            key: secret.key.clone(),
        },
        Some(value) => PasswordLookup::Found(Password::new(value)),
        None => PasswordLookup::Missing {
            secret: secret.name.clone(),
            key: secret.key.clone(),
            optional: secret.optional.unwrap_or(false),
        },
    }
}

/// A restart time in whole seconds (rounded up), or a warning naming `owner` and `field`.
fn restart_time_secs(
    time: Option<&str>,
    owner: &str,
    field: &str,
    warnings: &mut Vec<String>,
) -> Option<u32> {
    let time = time?;
    match parse_go_duration(time) {
        Ok(duration) => {
            let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
            Some(u32::try_from(secs).unwrap_or(u32::MAX))
        }
        Err(reason) => {
            warnings.push(format!(
                "{owner}: {field}: {reason}; BIRD's default restart time (120s) is used"
            ));
            None
        }
    }
}

/// The route reflector settings of a session to `target`: the cluster ID when the target
/// is our client, and whether either end is a route reflector.
fn route_reflection(local: &BgpNode, target: &Target) -> (Option<Ipv4Addr>, bool) {
    let target_cluster = target.node.and_then(|n| n.rr_cluster_id);
    // As Calico: a route reflector treats every internal peer as its client unless the peer
    // reflects for the same cluster. (BIRD allows clients only on internal sessions.)
    let client = local
        .rr_cluster_id
        .filter(|id| target.as_number == local.as_number && target_cluster != Some(*id));
    (
        client,
        local.is_route_reflector() || target_cluster.is_some(),
    )
}

fn parse_selector(
    text: Option<&str>,
    owner: &str,
    field: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Selector>, ()> {
    let Some(text) = text else {
        return Ok(None);
    };
    Selector::parse(text).map(Some).map_err(|e| {
        warnings.push(format!(
            "{owner}: {field}: {e}\nThe BGPPeer is ignored until the selector is fixed."
        ));
    })
}

/// The sessions a BGPPeer gives the local node.
fn peer_sessions(
    cluster: &Cluster,
    peer: &BgpPeer,
    set: &mut SessionSet,
    secrets: &dyn SecretSource,
    warnings: &mut Vec<String>,
) {
    let owner = format!("BGPPeer {}", peer.metadata.name);
    let spec = &peer.spec;
    let local = cluster.local();
    let Ok(node_selector) = parse_selector(
        spec.node_selector.as_deref(),
        &owner,
        "spec.nodeSelector",
        warnings,
    ) else {
        return;
    };
    let Ok(peer_selector) = parse_selector(
        spec.peer_selector.as_deref(),
        &owner,
        "spec.peerSelector",
        warnings,
    ) else {
        return;
    };
    // Which nodes the BGPPeer is for: `node`, else `nodeSelector`, else every node.
    let applies_to = |node: &BgpNode| match (&spec.node, &node_selector) {
        (Some(name), _) => name == node.name,
        (None, Some(selector)) => selector.matches(node.labels),
        (None, None) => true,
    };
    let is_global = spec.node.is_none() && node_selector.is_none();

    let mut targets: Vec<Target> = Vec::new();
    if applies_to(local) {
        if let Some(selector) = &peer_selector {
            targets.extend(
                cluster
                    .peerable_nodes()
                    .filter(|(node, _)| selector.matches(node.labels))
                    .map(|(node, ip)| Target::node(node, ip)),
            );
        } else if let Some(text) = &spec.peer_ip {
            match (spec.peer_addr(), spec.as_number) {
                (None, _) => warnings.push(format!(
                    "{owner}: spec.peerIP {text:?} is not an address: write an IP or ip:port; \
                     the BGPPeer is ignored"
                )),
                (Some((IpAddr::V6(_), _)), _) => warnings.push(format!(
                    "{owner}: spec.peerIP {text}: IPv6 sessions are not supported yet; the \
                     BGPPeer is ignored"
                )),
                (Some(_), None) => warnings.push(format!(
                    "{owner}: spec.asNumber is required with peerIP: set the peer's AS number; \
                     the BGPPeer is ignored"
                )),
                // A BGPPeer may name this node's own address (one written for all nodes,
                // e.g. a route reflector's): a node never peers with itself.
                (Some((IpAddr::V4(ip), _)), Some(_)) if ip == cluster.local_ip() => {}
                (Some((IpAddr::V4(ip), port)), Some(as_number)) => targets.push(Target {
                    ip,
                    port: port.filter(|p| *p != DEFAULT_BGP_PORT),
                    as_number,
                    node: cluster.node_with_ip(ip),
                }),
            }
        } else {
            warnings.push(format!(
                "{owner}: neither spec.peerIP nor spec.peerSelector is set: set one; the \
                 BGPPeer is ignored"
            ));
        }
    }
    // Peering along a peerSelector is symmetric, as in Calico: a node the selector picks
    // peers back with every node the BGPPeer applies to. Both ends of each session are
    // thus configured, and a route reflector picked this way learns of its clients.
    if let Some(selector) = &peer_selector {
        if selector.matches(local.labels) {
            targets.extend(
                cluster
                    .peerable_nodes()
                    .filter(|(node, _)| applies_to(node))
                    .map(|(node, ip)| Target::node(node, ip)),
            );
        }
    }
    if targets.is_empty() {
        return;
    }

    let password = lookup_password(secrets, spec.password.as_ref());
    let restart_time = restart_time_secs(
        spec.max_restart_time.as_deref(),
        &owner,
        "spec.maxRestartTime",
        warnings,
    );
    let source_ip = match spec.source_address() {
        SourceAddress::UseNodeIp => Some(cluster.local_ip()),
        SourceAddress::None => None,
    };
    for target in targets {
        if set.claimed(target.ip) {
            continue;
        }
        let (rr_client, either_rr) = route_reflection(local, &target);
        let kind = if either_rr {
            SessionKind::RouteReflector
        } else if is_global {
            SessionKind::Global
        } else {
            SessionKind::Node
        };
        let session = Session {
            kind,
            origin: SessionOrigin::Peer {
                peer: peer.metadata.name.clone(),
                node: target.node.map(|n| n.name.to_string()),
            },
            peer_ip: target.ip,
            peer_port: target.port,
            peer_as: target.as_number,
            source_ip,
            password: None,
            route_reflector_client: rr_client,
            keep_next_hop: spec.keep_original_next_hop(),
            graceful_restart_time_secs: restart_time,
            passive: false,
        };
        set.add(session, &password, &owner, "spec.password");
    }
}

/// The node-to-node mesh: a session with every other node that has an IPv4 address.
fn mesh_sessions(
    cluster: &Cluster,
    set: &mut SessionSet,
    secrets: &dyn SecretSource,
    warnings: &mut Vec<String>,
) {
    let owner = "BGPConfiguration default";
    let config = cluster.default_config();
    let password = lookup_password(secrets, config.and_then(|c| c.node_mesh_password.as_ref()));
    let restart_time = restart_time_secs(
        config.and_then(|c| c.node_mesh_max_restart_time.as_deref()),
        owner,
        "spec.nodeMeshMaxRestartTime",
        warnings,
    );
    let local = cluster.local();
    let local_ip = cluster.local_ip();
    for (node, ip) in cluster.peerable_nodes() {
        if set.claimed(ip) {
            continue;
        }
        let target = Target::node(node, ip);
        let (rr_client, _) = route_reflection(local, &target);
        let session = Session {
            kind: SessionKind::Mesh,
            origin: SessionOrigin::Mesh {
                node: node.name.to_string(),
            },
            peer_ip: ip,
            peer_port: target.port,
            peer_as: target.as_number,
            source_ip: Some(local_ip),
            password: None,
            route_reflector_client: rr_client,
            keep_next_hop: false,
            graceful_restart_time_secs: restart_time,
            passive: ip.to_string() > local_ip.to_string(),
        };
        set.add(session, &password, owner, "spec.nodeMeshPassword");
    }
}
