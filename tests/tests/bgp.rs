//! BGP in the lab: a real BIRD on every node, configured by its agent from the datastore.
//!
//! - three nodes in a full mesh: every session Established, every block learned;
//! - five nodes with the mesh off and one route reflector;
//! - an external router (a second BIRD playing a top-of-rack switch) that learns the pod
//!   blocks and advertises a prefix pods then reach natively with kernel forwarding off,
//!   through a BIRD crash on one node (graceful restart), until its BGPPeer is deleted.
//!
//! Needs root, BIRD 2 (Debian `bird2`) and etcd; skipped without root (fails under CI).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use tortie_lab::external_router::{self, ExternalRouter};
use tortie_lab::harness;
use tortie_lab::spec::{POD_POOL_CIDR, POD_POOL_NAME};
use tortie_lab::{Artifacts, DatastoreMode, Encap, Lab, LabGuard, LabSpec, Signal};

/// How long sessions may take to come up and routes to spread.
const CONVERGE: Duration = Duration::from_secs(45);

fn ok<T>(result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|err| panic!("{err:#}"))
}

/// A lab of `nodes` nodes with one pod each, native routing, BIRD on every node.
fn lab_up(short: &str, nodes: usize) -> LabGuard {
    harness::sweep_stale_test_labs(short);
    let artifacts = Artifacts::from_env_or_target().unwrap_or_else(|err| panic!("{err}"));
    let spec = LabSpec::new(harness::test_lab_name(short), nodes, 1)
        .with_encap(Encap::None)
        .with_datastore(DatastoreMode::Etcd)
        .with_bgp(true);
    LabGuard::up(&spec, &artifacts).unwrap_or_else(|err| panic!("lab up failed: {err:#}"))
}

/// One session of `tortiectl node status -o json`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Session {
    peer: String,
    peer_type: String,
    state: String,
    routes: u64,
}

fn sessions(lab: &Lab, node: &str) -> Vec<Session> {
    let mut sessions: Vec<Session> = ok(lab.node_status(node))
        .iter()
        .map(|row| Session {
            peer: row["peer"].as_str().unwrap_or_default().to_string(),
            peer_type: row["peer_type"].as_str().unwrap_or_default().to_string(),
            state: row["state"].as_str().unwrap_or_default().to_string(),
            routes: row["routes_received"].as_u64().unwrap_or_default(),
        })
        .collect();
    sessions.sort();
    sessions
}

/// Polls `check` until it returns `None` (success) or `CONVERGE` passes; panics with the
/// last complaint and what the node's BIRD and agent said.
fn eventually(lab: &Lab, what: &str, mut check: impl FnMut() -> Option<String>) {
    let started = Instant::now();
    loop {
        let Some(complaint) = check() else { return };
        if started.elapsed() > CONVERGE {
            panic!(
                "{what}: still not so after {} s: {complaint}\n{}",
                CONVERGE.as_secs(),
                harness::agent_logs(lab)
            );
        }
        sleep(Duration::from_millis(250));
    }
}

fn node_ip(lab: &Lab, node: &str) -> String {
    lab.node(node).map(|n| n.ip.to_string()).unwrap_or_default()
}

/// The pod block of each node (the /26 holding its pod's address).
fn block_of(lab: &Lab, node: &str) -> String {
    let pod = lab
        .pods()
        .iter()
        .find(|pod| pod.node == node)
        .unwrap_or_else(|| panic!("{node} has no pod"));
    let base = u32::from(pod.ip) & !63;
    format!("{}/26", Ipv4Addr::from(base))
}

/// `ip -4 route show proto bird` in `node`: the routes BIRD installed.
fn bird_routes(lab: &Lab, node: &str) -> String {
    let out = ok(lab.exec(node, &["ip", "-4", "route", "show", "proto", "bird"]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tortiectl bpf routes -o json` rows of `node` for `prefix`: its flags, if present.
fn bpf_route_flags(lab: &Lab, node: &str, prefix: &str) -> Option<Vec<String>> {
    let out = ok(lab.exec(node, &["tortiectl", "bpf", "routes", "-o", "json"]));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    rows.as_array()?
        .iter()
        .find(|row| row["prefix"].as_str() == Some(prefix))
        .map(|row| {
            row["flags"]
                .as_array()
                .map(|flags| {
                    flags
                        .iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        })
}

fn ping(lab: &Lab, from: &str, to: Ipv4Addr) -> bool {
    let to = to.to_string();
    lab.exec(from, &["ping", "-q", "-c", "1", "-W", "1", &to])
        .is_ok_and(|out| out.status.success())
}

#[test]
fn three_nodes_mesh_and_learn_each_others_blocks() {
    if harness::skip_unless_root("three_nodes_mesh_and_learn_each_others_blocks") {
        return;
    }
    let lab = lab_up("bgp-mesh", 3);
    let nodes: Vec<String> = lab.nodes().iter().map(|n| n.name.clone()).collect();
    for node in &nodes {
        let expected: BTreeSet<String> = nodes
            .iter()
            .filter(|other| *other != node)
            .map(|other| node_ip(&lab, other))
            .collect();
        eventually(&lab, &format!("{node}'s mesh sessions"), || {
            let sessions = sessions(&lab, node);
            let peers: BTreeSet<String> = sessions.iter().map(|s| s.peer.clone()).collect();
            let all_up = sessions
                .iter()
                .all(|s| s.peer_type == "Mesh" && s.state == "Established" && s.routes == 1);
            (peers != expected || !all_up).then(|| format!("{sessions:?}"))
        });
        eventually(&lab, &format!("{node}'s BGP routes"), || {
            let routes = bird_routes(&lab, node);
            let missing: Vec<String> = nodes
                .iter()
                .filter(|other| *other != node)
                .map(|other| format!("{} via {}", block_of(&lab, other), node_ip(&lab, other)))
                .filter(|route| !routes.contains(route.as_str()))
                .collect();
            (!missing.is_empty()).then(|| format!("missing {missing:?} in:\n{routes}"))
        });
        // A node never learns its own block back.
        assert!(
            !bird_routes(&lab, node).contains(&block_of(&lab, node)),
            "{node} learned its own block"
        );
    }
    harness::assert_all_pods_talk(&lab);
}

#[test]
fn five_nodes_peer_through_one_route_reflector_with_the_mesh_off() {
    if harness::skip_unless_root("five_nodes_peer_through_one_route_reflector_with_the_mesh_off") {
        return;
    }
    let lab = lab_up("bgp-rr", 5);
    let reflector = "node-0";
    let yaml = format!(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\n\
         spec:\n  nodeToNodeMeshEnabled: false\n  asNumber: 64512\n---\n\
         apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {reflector}\n  \
         labels:\n    route-reflector: \"true\"\nspec:\n  bgp:\n    ipv4Address: {}/24\n    \
         routeReflectorClusterID: 224.0.0.1\n---\n\
         apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: peer-with-route-reflectors\n\
         spec:\n  nodeSelector: all()\n  peerSelector: route-reflector == 'true'\n",
        node_ip(&lab, reflector)
    );
    ok(lab.apply_yaml("route-reflector.yaml", &yaml));

    let clients: Vec<String> = lab
        .nodes()
        .iter()
        .map(|n| n.name.clone())
        .filter(|name| name != reflector)
        .collect();
    eventually(&lab, "the reflector's sessions", || {
        let sessions = sessions(&lab, reflector);
        let up = sessions
            .iter()
            .filter(|s| s.peer_type == "RouteReflector" && s.state == "Established")
            .count();
        (up != clients.len() || sessions.len() != clients.len()).then(|| format!("{sessions:?}"))
    });
    let rr_ip = node_ip(&lab, reflector);
    for client in &clients {
        eventually(
            &lab,
            &format!("{client}'s session to the reflector"),
            || {
                let sessions = sessions(&lab, client);
                // The reflector's own block plus the three other clients'.
                let good = sessions.len() == 1
                    && sessions[0].peer == rr_ip
                    && sessions[0].peer_type == "RouteReflector"
                    && sessions[0].state == "Established"
                    && sessions[0].routes == 4;
                (!good).then(|| format!("{sessions:?}"))
            },
        );
        // Reflected routes keep the originating node as next hop.
        eventually(&lab, &format!("{client}'s BGP routes"), || {
            let routes = bird_routes(&lab, client);
            let missing: Vec<String> = lab
                .nodes()
                .iter()
                .filter(|n| &n.name != client)
                .map(|other| format!("{} via {}", block_of(&lab, &other.name), other.ip))
                .filter(|route| !routes.contains(route.as_str()))
                .collect();
            (!missing.is_empty()).then(|| format!("missing {missing:?} in:\n{routes}"))
        });
    }
    harness::assert_all_pods_talk(&lab);
}

#[test]
fn pods_reach_a_prefix_learned_from_an_external_router_with_forwarding_off() {
    if harness::skip_unless_root(
        "pods_reach_a_prefix_learned_from_an_external_router_with_forwarding_off",
    ) {
        return;
    }
    let lab = lab_up("bgp-tor", 3);
    // Pods keep their own addresses on the way out (no natOutgoing): replies find them only
    // because the router learned their blocks.
    ok(lab.apply_yaml(
        "pool.yaml",
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {POD_POOL_NAME}\n\
             spec:\n  cidr: {POD_POOL_CIDR}\n  blockSize: 26\n  ipipMode: Never\n  \
             vxlanMode: Never\n  natOutgoing: false\n  nodeSelector: all()\n"
        ),
    ));
    let router = ok(ExternalRouter::create(lab.name(), lab.nodes()));
    let peer_yaml = format!(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: tor\nspec:\n  \
         peerIP: {}\n  asNumber: {}\n",
        external_router::ROUTER_FABRIC_IP,
        external_router::ROUTER_AS
    );
    let pods: Vec<(String, String)> = lab
        .pods()
        .iter()
        .map(|p| (p.name.clone(), p.node.clone()))
        .collect();
    let host = external_router::HOST_IP;
    let prefix = external_router::HOST_PREFIX;

    // Without the peer the prefix is unknown: the host stack, which does not forward, gets
    // the packet and drops it.
    assert!(!ping(&lab, &pods[0].0, host), "reached {host} without BGP");

    ok(lab.apply_yaml("tor-peer.yaml", &peer_yaml));
    let tor_ip = external_router::ROUTER_FABRIC_IP.to_string();
    for node in lab.nodes() {
        eventually(
            &lab,
            &format!("{}'s session to the router", node.name),
            || {
                let sessions = sessions(&lab, &node.name);
                let good = sessions.iter().any(|s| {
                    s.peer == tor_ip
                        && s.peer_type == "Global"
                        && s.state == "Established"
                        && s.routes == 1
                });
                (!good).then(|| format!("{sessions:?}"))
            },
        );
        eventually(
            &lab,
            &format!("{}'s BPF route to {prefix}", node.name),
            || {
                let flags = bpf_route_flags(&lab, &node.name, prefix);
                let good = flags.as_ref().is_some_and(|f| {
                    f.iter().any(|f| f == "external") && f.iter().any(|f| f == "bgp")
                });
                (!good).then(|| format!("flags {flags:?}"))
            },
        );
        let forwarding = ok(lab.exec(&node.name, &["sysctl", "-n", "net.ipv4.ip_forward"]));
        assert_eq!(
            String::from_utf8_lossy(&forwarding.stdout).trim(),
            "0",
            "{} forwards in the kernel",
            node.name
        );
    }
    eventually(&lab, "the router's routes to the pod blocks", || {
        let routes = ok(router.learned_routes());
        let missing: Vec<String> = lab
            .nodes()
            .iter()
            .map(|node| format!("{} via {}", block_of(&lab, &node.name), node.ip))
            .filter(|route| !routes.contains(route.as_str()))
            .collect();
        (!missing.is_empty()).then(|| format!("missing {missing:?} in:\n{routes}"))
    });
    for (pod, node) in &pods {
        assert!(
            ping(&lab, pod, host),
            "{pod} on {node} cannot reach {host}\n{}",
            harness::agent_logs(&lab)
        );
    }

    // BIRD crashes on node-1 and comes back: its kernel routes stay (persist), the router
    // keeps node-1's block as a graceful-restart helper, and traffic flows throughout.
    let (pod, node) = &pods[1];
    ok(lab.stop_bird(node, Signal::SIGKILL));
    for _ in 0..5 {
        assert!(
            ping(&lab, pod, host),
            "{pod} lost {host} while BIRD on {node} was down"
        );
        sleep(Duration::from_millis(400));
    }
    ok(lab.start_bird(node));
    eventually(
        &lab,
        &format!("{node}'s sessions after the restart"),
        || {
            let sessions = sessions(&lab, node);
            let all_up = !sessions.is_empty() && sessions.iter().all(|s| s.state == "Established");
            (!all_up).then(|| format!("{sessions:?}"))
        },
    );
    assert!(ping(&lab, pod, host), "{pod} lost {host} after the restart");

    // Deleting the BGPPeer ends the session and withdraws the prefix from every BPF map.
    ok(lab.delete_yaml("tor-peer.yaml", &peer_yaml));
    for node in lab.nodes() {
        eventually(
            &lab,
            &format!("{prefix} leaving {}'s BPF map", node.name),
            || {
                bpf_route_flags(&lab, &node.name, prefix)
                    .map(|flags| format!("still there: {flags:?}"))
            },
        );
    }
    assert!(
        !ping(&lab, &pods[0].0, host),
        "{host} still reachable after its peer was deleted"
    );
}
