use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use tortie_resources::{
    AsNumber, BgpConfiguration, BgpConfigurationSpec, BgpPassword, BgpPeer, BgpPeerSpec, IpPool,
    IpPoolSpec, LogSeverity, Node, NodeBgpSpec, ObjectMeta, SecretKeySelector, SourceAddress,
};

use super::*;

fn node(name: &str, address: &str) -> Node {
    Node::with_bgp_ipv4(name, address)
}

fn labelled(mut node: Node, labels: &[(&str, &str)]) -> Node {
    node.metadata.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    node
}

fn bgp_of(node: &mut Node) -> &mut NodeBgpSpec {
    node.spec.bgp.get_or_insert_with(NodeBgpSpec::default)
}

fn route_reflector(mut node: Node, cluster_id: &str) -> Node {
    bgp_of(&mut node).route_reflector_cluster_id = Some(cluster_id.to_string());
    node
}

fn config(name: &str, spec: BgpConfigurationSpec) -> BgpConfiguration {
    BgpConfiguration {
        metadata: ObjectMeta::named(name),
        spec,
    }
}

/// A BGPPeer spec naming one router: `peerIP` and `asNumber`, nothing else.
fn peer_at(ip: &str, as_number: u32) -> BgpPeerSpec {
    BgpPeerSpec {
        peer_ip: Some(ip.into()),
        as_number: Some(AsNumber(as_number)),
        ..BgpPeerSpec::default()
    }
}

fn peer(name: &str, spec: BgpPeerSpec) -> BgpPeer {
    BgpPeer {
        metadata: ObjectMeta::named(name),
        spec,
    }
}

fn pool(name: &str, cidr: &str, disable_bgp_export: bool) -> IpPool {
    IpPool {
        metadata: ObjectMeta::named(name),
        spec: IpPoolSpec {
            cidr: cidr.to_string(),
            disable_bgp_export: Some(disable_bgp_export),
            ..IpPoolSpec::default()
        },
    }
}

fn password(secret: &str, key: &str, optional: Option<bool>) -> BgpPassword {
    BgpPassword {
        secret_key_ref: Some(SecretKeySelector {
            name: secret.to_string(),
            key: key.to_string(),
            optional,
        }),
    }
}

fn mesh_disabled() -> BgpConfiguration {
    config(
        "default",
        BgpConfigurationSpec {
            node_to_node_mesh_enabled: Some(false),
            ..BgpConfigurationSpec::default()
        },
    )
}

fn three_nodes() -> Vec<Node> {
    vec![
        node("node-c", "10.99.0.13/24"),
        node("node-a", "10.99.0.11/24"),
        node("node-b", "10.99.0.12/24"),
    ]
}

fn inputs(local: &str, nodes: Vec<Node>) -> BgpInputs {
    let mut inputs = BgpInputs::new(local);
    inputs.nodes = nodes;
    inputs
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

fn names(plan: &BgpPlan) -> Vec<String> {
    plan.sessions.iter().map(Session::protocol_name).collect()
}

fn session<'p>(plan: &'p BgpPlan, name: &str) -> &'p Session {
    plan.sessions
        .iter()
        .find(|s| s.protocol_name() == name)
        .unwrap_or_else(|| panic!("no session {name} in {:?}", names(plan)))
}

#[test]
fn mesh_of_three() {
    let plan = plan(&inputs("node-a", three_nodes())).unwrap();
    assert_eq!(plan.node_name, "node-a");
    assert_eq!(plan.router_id, ip("10.99.0.11"));
    assert_eq!(plan.local_as, AsNumber(64512));
    assert_eq!(plan.listen_port, 179);
    assert_eq!(plan.log_severity, LogSeverity::Info);
    assert_eq!(plan.route_reflector_cluster_id, None);
    assert_eq!(names(&plan), ["Mesh_10_99_0_12", "Mesh_10_99_0_13"]);
    let to_b = session(&plan, "Mesh_10_99_0_12");
    assert_eq!(
        to_b.origin,
        SessionOrigin::Mesh {
            node: "node-b".into()
        }
    );
    assert_eq!(to_b.kind, SessionKind::Mesh);
    assert_eq!(to_b.peer_as, AsNumber(64512));
    assert_eq!(to_b.peer_port, None);
    assert_eq!(to_b.source_ip, Some(ip("10.99.0.11")));
    assert_eq!(to_b.password, None);
    assert_eq!(to_b.route_reflector_client, None);
    assert!(!to_b.keep_next_hop);
    // Both peers have higher addresses: they connect to node-a.
    assert!(plan.sessions.iter().all(|s| s.passive));
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);

    let plan_c = super::plan(&inputs("node-c", three_nodes())).unwrap();
    assert_eq!(names(&plan_c), ["Mesh_10_99_0_11", "Mesh_10_99_0_12"]);
    assert!(plan_c.sessions.iter().all(|s| !s.passive));
}

#[test]
fn the_mesh_connects_from_the_address_that_sorts_higher_as_text() {
    let nodes = vec![
        node("node-9", "10.0.0.9/24"),
        node("node-10", "10.0.0.10/24"),
    ];
    // As Calico compares them: "10.0.0.9" > "10.0.0.10".
    let plan_9 = plan(&inputs("node-9", nodes.clone())).unwrap();
    assert!(!plan_9.sessions[0].passive);
    let plan_10 = plan(&inputs("node-10", nodes)).unwrap();
    assert!(plan_10.sessions[0].passive);
}

#[test]
fn as_numbers_ports_and_log_levels_fall_back_like_calico() {
    let mut nodes = three_nodes();
    bgp_of(&mut nodes[2]).as_number = Some(AsNumber(65012)); // node-b
    let mut inputs = inputs("node-a", nodes);
    inputs.configurations = vec![
        config(
            "default",
            BgpConfigurationSpec {
                as_number: Some(AsNumber(65000)),
                listen_port: Some(1179),
                log_severity_screen: Some(LogSeverity::Warning),
                node_mesh_max_restart_time: Some("90s".into()),
                ..BgpConfigurationSpec::default()
            },
        ),
        config(
            "node.node-b",
            BgpConfigurationSpec {
                listen_port: Some(2179),
                ..BgpConfigurationSpec::default()
            },
        ),
        config(
            "node.node-a",
            BgpConfigurationSpec {
                log_severity_screen: Some(LogSeverity::Debug),
                ..BgpConfigurationSpec::default()
            },
        ),
    ];
    let plan = plan(&inputs).unwrap();
    assert_eq!(plan.local_as, AsNumber(65000));
    assert_eq!(plan.listen_port, 1179);
    assert_eq!(plan.log_severity, LogSeverity::Debug);
    let to_b = session(&plan, "Mesh_10_99_0_12");
    assert_eq!(to_b.peer_as, AsNumber(65012));
    assert_eq!(to_b.peer_port, Some(2179));
    assert_eq!(to_b.graceful_restart_time_secs, Some(90));
    assert!(!plan.is_internal(to_b));
    let to_c = session(&plan, "Mesh_10_99_0_13");
    assert_eq!(to_c.peer_as, AsNumber(65000));
    assert_eq!(to_c.peer_port, Some(1179));
    assert!(plan.is_internal(to_c));
}

#[test]
fn mesh_disabled_with_a_route_reflector() {
    let nodes = vec![
        node("node-a", "10.99.0.11/24"),
        node("node-b", "10.99.0.12/24"),
        labelled(
            route_reflector(node("rr-1", "10.99.0.21/24"), "224.0.0.1"),
            &[("route-reflector", "true")],
        ),
        labelled(
            route_reflector(node("rr-2", "10.99.0.22/24"), "224.0.0.1"),
            &[("route-reflector", "true")],
        ),
    ];
    let peers = vec![peer(
        "peer-with-route-reflectors",
        BgpPeerSpec {
            node_selector: Some("all()".into()),
            peer_selector: Some("route-reflector == 'true'".into()),
            ..BgpPeerSpec::default()
        },
    )];
    let plan_for = |local: &str| {
        let mut inputs = inputs(local, nodes.clone());
        inputs.configurations = vec![mesh_disabled()];
        inputs.peers = peers.clone();
        plan(&inputs).unwrap()
    };

    // A client peers with the route reflectors only, and does not reflect.
    let client = plan_for("node-a");
    assert_eq!(names(&client), ["RR_10_99_0_21", "RR_10_99_0_22"]);
    for s in &client.sessions {
        assert_eq!(s.kind, SessionKind::RouteReflector);
        assert_eq!(s.route_reflector_client, None);
        assert!(!s.passive);
    }

    // A route reflector peers back with every node the BGPPeer applies to: its clients,
    // which it reflects for, and the other reflector of its cluster, which it does not.
    let reflector = plan_for("rr-1");
    assert_eq!(reflector.route_reflector_cluster_id, Some(ip("224.0.0.1")));
    assert_eq!(
        names(&reflector),
        ["RR_10_99_0_11", "RR_10_99_0_12", "RR_10_99_0_22"]
    );
    let to_client = session(&reflector, "RR_10_99_0_11");
    assert_eq!(to_client.route_reflector_client, Some(ip("224.0.0.1")));
    assert_eq!(
        to_client.origin,
        SessionOrigin::Peer {
            peer: "peer-with-route-reflectors".into(),
            node: Some("node-a".into())
        }
    );
    assert_eq!(
        session(&reflector, "RR_10_99_0_22").route_reflector_client,
        None
    );
    assert!(client.warnings.is_empty() && reflector.warnings.is_empty());
}

#[test]
fn a_route_reflector_in_the_mesh_reflects_for_its_mesh_peers() {
    let nodes = vec![
        route_reflector(node("node-a", "10.99.0.11/24"), "224.0.0.1"),
        node("node-b", "10.99.0.12/24"),
        route_reflector(node("node-c", "10.99.0.13/24"), "224.0.0.2"),
    ];
    let plan = plan(&inputs("node-a", nodes)).unwrap();
    assert_eq!(names(&plan), ["Mesh_10_99_0_12", "Mesh_10_99_0_13"]);
    assert_eq!(
        session(&plan, "Mesh_10_99_0_12").route_reflector_client,
        Some(ip("224.0.0.1"))
    );
    // Another cluster's reflector is a client too; only the same cluster ID is not.
    assert_eq!(
        session(&plan, "Mesh_10_99_0_13").route_reflector_client,
        Some(ip("224.0.0.1"))
    );
}

#[test]
fn global_peer_ip() {
    let mut inputs = inputs("node-a", three_nodes());
    inputs.peers = vec![peer(
        "tor",
        BgpPeerSpec {
            peer_ip: Some("10.0.0.1:1179".into()),
            as_number: Some(AsNumber(65000)),
            keep_original_next_hop: Some(true),
            max_restart_time: Some("1m30.5s".into()),
            source_address: Some(SourceAddress::None),
            ..BgpPeerSpec::default()
        },
    )];
    let plan = plan(&inputs).unwrap();
    assert_eq!(
        names(&plan),
        ["Global_10_0_0_1", "Mesh_10_99_0_12", "Mesh_10_99_0_13"]
    );
    let tor = session(&plan, "Global_10_0_0_1");
    assert_eq!(tor.kind, SessionKind::Global);
    assert_eq!(
        tor.origin,
        SessionOrigin::Peer {
            peer: "tor".into(),
            node: None
        }
    );
    assert_eq!(tor.peer_port, Some(1179));
    assert_eq!(tor.peer_as, AsNumber(65000));
    assert_eq!(tor.source_ip, None);
    assert!(tor.keep_next_hop);
    assert_eq!(tor.graceful_restart_time_secs, Some(91));
    assert!(!tor.passive);
    assert!(!plan.is_internal(tor));
}

#[test]
fn node_and_node_selector_peers() {
    let nodes = vec![
        labelled(node("node-a", "10.99.0.11/24"), &[("rack", "r1")]),
        labelled(node("node-b", "10.99.0.12/24"), &[("rack", "r2")]),
    ];
    let mut inputs = inputs("node-a", nodes.clone());
    inputs.configurations = vec![mesh_disabled()];
    inputs.peers = vec![
        peer(
            "node-b-only",
            BgpPeerSpec {
                node: Some("node-b".into()),
                ..peer_at("10.0.0.2", 65002)
            },
        ),
        peer(
            "node-a-only",
            BgpPeerSpec {
                node: Some("node-a".into()),
                ..peer_at("10.0.0.3", 65003)
            },
        ),
        peer(
            "rack-1-tor",
            BgpPeerSpec {
                node_selector: Some("rack == 'r1'".into()),
                ..peer_at("10.0.1.1", 65101)
            },
        ),
        peer(
            "rack-2-tor",
            BgpPeerSpec {
                node_selector: Some("rack == 'r2'".into()),
                ..peer_at("10.0.2.1", 65102)
            },
        ),
    ];
    let plan_a = plan(&inputs).unwrap();
    assert_eq!(names(&plan_a), ["Node_10_0_0_3", "Node_10_0_1_1"]);
    assert!(plan_a.sessions.iter().all(|s| s.kind == SessionKind::Node));
    assert_eq!(
        session(&plan_a, "Node_10_0_1_1").source_ip,
        Some(ip("10.99.0.11"))
    );

    inputs.local_node = "node-b".into();
    let plan_b = super::plan(&inputs).unwrap();
    assert_eq!(names(&plan_b), ["Node_10_0_0_2", "Node_10_0_2_1"]);
}

#[test]
fn a_node_never_peers_with_itself() {
    let mut inputs = inputs("node-a", three_nodes());
    inputs.configurations = vec![mesh_disabled()];
    inputs.peers = vec![
        // A BGPPeer naming node-a's own address, as one written for every node would.
        peer(
            "to-node-a",
            BgpPeerSpec {
                ..peer_at("10.99.0.11", 64512)
            },
        ),
        peer(
            "everyone",
            BgpPeerSpec {
                peer_selector: Some("all()".into()),
                ..BgpPeerSpec::default()
            },
        ),
    ];
    let plan_a = plan(&inputs).unwrap();
    assert_eq!(names(&plan_a), ["Global_10_99_0_12", "Global_10_99_0_13"]);
    inputs.local_node = "node-b".into();
    let plan_b = super::plan(&inputs).unwrap();
    assert_eq!(names(&plan_b), ["Global_10_99_0_11", "Global_10_99_0_13"]);
    // Both BGPPeers reach node-a from node-b; the first by name wins.
    assert_eq!(
        session(&plan_b, "Global_10_99_0_11").origin,
        SessionOrigin::Peer {
            peer: "everyone".into(),
            node: Some("node-a".into())
        }
    );
}

#[test]
fn duplicates_explicit_peers_win_over_the_mesh_and_the_first_name_wins() {
    let mut inputs = inputs("node-a", three_nodes());
    inputs.peers = vec![
        peer(
            "z-node-b",
            BgpPeerSpec {
                node: Some("node-a".into()),
                ..peer_at("10.99.0.12", 65099)
            },
        ),
        peer(
            "a-node-b",
            BgpPeerSpec {
                node: Some("node-a".into()),
                peer_ip: Some("10.99.0.12".into()),
                as_number: Some(AsNumber(64512)),
                keep_original_next_hop: Some(true),
                ..BgpPeerSpec::default()
            },
        ),
    ];
    let plan = plan(&inputs).unwrap();
    assert_eq!(names(&plan), ["Node_10_99_0_12", "Mesh_10_99_0_13"]);
    let to_b = session(&plan, "Node_10_99_0_12");
    assert_eq!(
        to_b.origin,
        SessionOrigin::Peer {
            peer: "a-node-b".into(),
            node: Some("node-b".into())
        }
    );
    assert_eq!(to_b.peer_as, AsNumber(64512));
    assert!(to_b.keep_next_hop);
}

#[test]
fn exported_blocks_follow_disable_bgp_export() {
    let mut inputs = inputs("node-a", three_nodes());
    inputs.pools = vec![
        pool("exported", "10.65.0.0/16", false),
        pool("private", "10.66.0.0/16", true),
        pool("v6", "fd00:65::/48", false),
    ];
    inputs.local_blocks = vec![
        net("10.66.1.0/26"),
        net("10.65.1.0/26"),
        net("10.67.1.0/26"),
        net("10.65.1.0/26"),
    ];
    let plan = plan(&inputs).unwrap();
    assert_eq!(plan.exported_blocks, [net("10.65.1.0/26")]);
    assert_eq!(plan.export_pools, [net("10.65.0.0/16")]);
    // Every local block is refused on import, exported or not, pool or not.
    assert_eq!(
        plan.local_blocks,
        [
            net("10.65.1.0/26"),
            net("10.66.1.0/26"),
            net("10.67.1.0/26")
        ]
    );
    assert_eq!(plan.warnings.len(), 1);
    assert!(
        plan.warnings[0].contains("10.67.1.0/26") && plan.warnings[0].contains("no IPPool"),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn passwords_from_secrets() {
    let mut inputs = inputs("node-a", three_nodes());
    inputs.configurations = vec![config(
        "default",
        BgpConfigurationSpec {
            node_mesh_password: Some(password("bgp-secrets", "mesh", None)),
            ..BgpConfigurationSpec::default()
        },
    )];
    inputs.peers = vec![
        peer(
            "found",
            BgpPeerSpec {
                peer_ip: Some("10.0.0.1".into()),
                as_number: Some(AsNumber(65000)),
                password: Some(password("bgp-secrets", "tor", None)),
                ..BgpPeerSpec::default()
            },
        ),
        peer(
            "missing",
            BgpPeerSpec {
                peer_ip: Some("10.0.0.2".into()),
                as_number: Some(AsNumber(65000)),
                password: Some(password("tor-secrets", "absent", None)),
                ..BgpPeerSpec::default()
            },
        ),
        peer(
            "missing-optional",
            BgpPeerSpec {
                peer_ip: Some("10.0.0.3".into()),
                as_number: Some(AsNumber(65000)),
                password: Some(password("tor-secrets", "absent", Some(true))),
                ..BgpPeerSpec::default()
            },
        ),
        peer(
            "quoted",
            BgpPeerSpec {
                peer_ip: Some("10.0.0.4".into()),
                as_number: Some(AsNumber(65000)),
                password: Some(password("bgp-secrets", "quoted", None)),
                ..BgpPeerSpec::default()
            },
        ),
    ];
    inputs.secrets = Box::new(|name: &str, key: &str| match (name, key) {
        ("bgp-secrets", "tor") => Some("tor-pw\\1".to_string()),
        ("bgp-secrets", "mesh") => Some("mesh-pw".to_string()),
        ("bgp-secrets", "quoted") => Some("say \"hi\"".to_string()),
        _ => None,
    });
    let plan = plan(&inputs).unwrap();
    assert_eq!(
        names(&plan),
        [
            "Global_10_0_0_1",
            "Global_10_0_0_3",
            "Mesh_10_99_0_12",
            "Mesh_10_99_0_13"
        ]
    );
    let pw = |name: &str| {
        session(&plan, name)
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
    };
    assert_eq!(pw("Global_10_0_0_1").as_deref(), Some("tor-pw\\1"));
    assert_eq!(pw("Global_10_0_0_3"), None);
    assert_eq!(pw("Mesh_10_99_0_12").as_deref(), Some("mesh-pw"));
    assert!(
        !format!("{plan:?}").contains("mesh-pw"),
        "Debug hides passwords"
    );

    assert_eq!(plan.warnings.len(), 3, "{:#?}", plan.warnings);
    let warning = |needle: &str| {
        plan.warnings
            .iter()
            .find(|w| w.starts_with(needle))
            .unwrap_or_else(|| panic!("no warning for {needle}: {:#?}", plan.warnings))
    };
    let missing = warning("BGPPeer missing:");
    for part in [
        "spec.password",
        "secret tor-secrets",
        "key absent",
        "10.0.0.2 is left out",
        "create the secret",
    ] {
        assert!(missing.contains(part), "{part:?} not in {missing}");
    }
    let optional = warning("BGPPeer missing-optional:");
    assert!(optional.contains("comes up without one"), "{optional}");
    let quoted = warning("BGPPeer quoted:");
    assert!(quoted.contains("double quote"), "{quoted}");
}

#[test]
fn a_missing_mesh_secret_leaves_the_mesh_out_with_one_warning() {
    let mut inputs = inputs("node-a", three_nodes());
    inputs.configurations = vec![config(
        "default",
        BgpConfigurationSpec {
            node_mesh_password: Some(password("bgp-secrets", "mesh", None)),
            ..BgpConfigurationSpec::default()
        },
    )];
    let plan = plan(&inputs).unwrap();
    assert!(plan.sessions.is_empty());
    assert_eq!(
        plan.warnings,
        [
            "BGPConfiguration default: spec.nodeMeshPassword: secret bgp-secrets has no key mesh \
          (or does not exist): the session to 10.99.0.12, 10.99.0.13 is left out; create the \
          secret with that key in the agent's namespace, or set optional: true to peer \
          without a password"
        ]
    );
}

#[test]
fn local_node_problems_are_errors_that_say_what_to_set() {
    let err = plan(&inputs("node-x", three_nodes())).unwrap_err();
    assert_eq!(
        err,
        PlanError::LocalNodeNotFound {
            node: "node-x".into()
        }
    );
    assert!(err.to_string().starts_with("node node-x: no Calico Node"));

    let mut nodes = three_nodes();
    nodes[1].spec.bgp = None; // node-a
    let err = plan(&inputs("node-a", nodes)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("node node-a: spec.bgp.ipv4Address is not set: set it"),
        "{text}"
    );

    let mut nodes = three_nodes();
    bgp_of(&mut nodes[1]).ipv4_address = Some("fd00::11/64".into());
    let err = plan(&inputs("node-a", nodes)).unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.bgp.ipv4Address \"fd00::11/64\" is not an IPv4 address"),
        "{err}"
    );
}

#[test]
fn nodes_without_an_address_are_skipped_and_bad_ones_reported() {
    let mut nodes = three_nodes();
    nodes[0].spec.bgp = None; // node-c: not a BGP node
    bgp_of(&mut nodes[2]).ipv4_address = Some("not-an-ip".into()); // node-b
    let plan = plan(&inputs("node-a", nodes)).unwrap();
    assert!(plan.sessions.is_empty());
    assert_eq!(plan.warnings.len(), 1);
    assert!(plan.warnings[0].starts_with("node node-b: spec.bgp.ipv4Address"));
}

#[test]
fn bad_bgp_peers_are_ignored_with_a_warning() {
    let mut inputs = inputs("node-a", three_nodes());
    inputs.configurations = vec![mesh_disabled()];
    inputs.peers = vec![
        peer(
            "bad-selector",
            BgpPeerSpec {
                peer_selector: Some("rack = 'r1'".into()),
                ..BgpPeerSpec::default()
            },
        ),
        peer(
            "no-as",
            BgpPeerSpec {
                peer_ip: Some("10.0.0.1".into()),
                ..BgpPeerSpec::default()
            },
        ),
        peer(
            "v6",
            BgpPeerSpec {
                peer_ip: Some("fd00::1".into()),
                as_number: Some(AsNumber(65000)),
                ..BgpPeerSpec::default()
            },
        ),
    ];
    let plan = plan(&inputs).unwrap();
    assert!(plan.sessions.is_empty());
    let starts: Vec<&str> = plan
        .warnings
        .iter()
        .map(|w| w.split(':').next().unwrap())
        .collect();
    assert_eq!(
        starts,
        ["BGPPeer bad-selector", "BGPPeer no-as", "BGPPeer v6"]
    );
}

#[test]
fn protocol_names_round_trip() {
    for kind in SessionKind::ALL {
        let name = kind.protocol_name(ip("10.99.0.12"));
        assert_eq!(
            SessionKind::parse_protocol_name(&name),
            Some((kind, ip("10.99.0.12")))
        );
        assert_eq!(SessionKind::from_protocol_name(&name), Some(kind));
    }
    assert_eq!(
        SessionKind::RouteReflector.protocol_name(ip("10.0.0.1")),
        "RR_10_0_0_1"
    );
    for name in [
        "device1",
        "Mesh_10_99_0",
        "Mesh_10_99_0_012",
        "Mesh_10_99_0_256",
        "Peer_10_0_0_1",
        "Mesh-10_0_0_1",
    ] {
        assert_eq!(SessionKind::from_protocol_name(name), None, "{name}");
    }
}
