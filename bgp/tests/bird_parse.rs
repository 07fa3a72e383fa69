//! Every shape of rendered configuration passes BIRD's own parser (`bird -p`).

mod common;

use std::net::Ipv4Addr;
use std::process::Command;

use ipnet::Ipv4Net;
use tortie_bgp::{plan, render, BgpInputs, BgpPlan, Password, Session, SessionKind, SessionOrigin};
use tortie_resources::{
    AsNumber, BgpConfiguration, BgpConfigurationSpec, BgpPassword, BgpPeer, BgpPeerSpec, IpPool,
    IpPoolSpec, LogSeverity, Node, ObjectMeta, SecretKeySelector, SourceAddress,
};

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

/// Fails the test with BIRD's message when it rejects `text`.
fn assert_bird_accepts(variant: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bird.conf");
    std::fs::write(&file, text).unwrap();
    let output = Command::new("bird")
        .arg("-p")
        .arg("-c")
        .arg(&file)
        .output()
        .expect("run bird -p");
    assert!(
        output.status.success(),
        "BIRD rejects the {variant} configuration: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn session(kind: SessionKind, peer: &str, peer_as: u32) -> Session {
    Session {
        kind,
        origin: SessionOrigin::Peer {
            peer: "p".into(),
            node: None,
        },
        peer_ip: ip(peer),
        peer_port: None,
        peer_as: AsNumber(peer_as),
        source_ip: Some(ip("10.99.0.11")),
        password: None,
        route_reflector_client: None,
        keep_next_hop: false,
        graceful_restart_time_secs: None,
        passive: false,
    }
}

fn base_plan() -> BgpPlan {
    BgpPlan {
        node_name: "node-a".into(),
        router_id: ip("10.99.0.11"),
        local_as: AsNumber(64512),
        listen_port: 179,
        log_severity: LogSeverity::Info,
        route_reflector_cluster_id: None,
        sessions: vec![],
        exported_blocks: vec![],
        local_blocks: vec![],
        export_pools: vec![],
        warnings: vec![],
    }
}

fn every_option_plan() -> BgpPlan {
    BgpPlan {
        route_reflector_cluster_id: Some(ip("224.0.0.1")),
        sessions: vec![
            Session {
                peer_port: Some(1179),
                source_ip: None,
                password: Some(Password::new(r"p4ss w\rd #;{}'`$ é")),
                keep_next_hop: true,
                graceful_restart_time_secs: Some(300),
                ..session(SessionKind::Global, "10.0.0.1", 65000)
            },
            Session {
                route_reflector_client: Some(ip("224.0.0.1")),
                graceful_restart_time_secs: Some(0),
                ..session(SessionKind::RouteReflector, "10.99.0.12", 64512)
            },
            Session {
                passive: true,
                origin: SessionOrigin::Mesh {
                    node: "node-c".into(),
                },
                ..session(SessionKind::Mesh, "10.99.0.13", 64512)
            },
            Session {
                keep_next_hop: true,
                ..session(SessionKind::Node, "10.0.1.1", 4_200_000_000)
            },
        ],
        exported_blocks: vec![net("10.65.1.0/26"), net("10.65.9.7/32")],
        local_blocks: vec![
            net("10.65.1.0/26"),
            net("10.65.9.7/32"),
            net("10.66.0.0/26"),
        ],
        export_pools: vec![net("10.65.0.0/16"), net("192.168.0.0/24")],
        ..base_plan()
    }
}

#[test]
fn every_rendered_variant_passes_bird_p() {
    if !common::bird_available("every_rendered_variant_passes_bird_p") {
        return;
    }
    assert_bird_accepts("empty", &render(&base_plan()));
    assert_bird_accepts("every option", &render(&every_option_plan()));
    assert_bird_accepts("golden file", include_str!("fixtures/node-a.bird.conf"));
    for severity in [
        LogSeverity::Trace,
        LogSeverity::Debug,
        LogSeverity::Info,
        LogSeverity::Warning,
        LogSeverity::Error,
        LogSeverity::Fatal,
    ] {
        let plan = BgpPlan {
            log_severity: severity,
            ..every_option_plan()
        };
        assert_bird_accepts(&format!("log {severity:?}"), &render(&plan));
    }
    let plan = BgpPlan {
        listen_port: 1179,
        local_as: AsNumber(4_200_000_001),
        ..every_option_plan()
    };
    assert_bird_accepts("listen port and 4-byte AS", &render(&plan));
    let plan = BgpPlan {
        exported_blocks: vec![],
        ..every_option_plan()
    };
    assert_bird_accepts("sessions without blocks", &render(&plan));
}

fn node(name: &str, address: &str, labels: &[(&str, &str)], rr: Option<&str>) -> Node {
    let mut node = Node::with_bgp_ipv4(name, address);
    if let Some(bgp) = node.spec.bgp.as_mut() {
        bgp.route_reflector_cluster_id = rr.map(str::to_string);
    }
    node.metadata.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    node
}

#[test]
fn planned_clusters_pass_bird_p() {
    if !common::bird_available("planned_clusters_pass_bird_p") {
        return;
    }
    let nodes = vec![
        node("node-a", "10.99.0.11/24", &[], None),
        node("node-b", "10.99.0.12/24", &[], None),
        node(
            "rr-1",
            "10.99.0.21/24",
            &[("rr", "true")],
            Some("224.0.0.1"),
        ),
    ];
    let secret_ref = |optional| BgpPassword {
        secret_key_ref: Some(SecretKeySelector {
            name: "bgp".into(),
            key: "pw".into(),
            optional: Some(optional),
        }),
    };
    for (local, mesh) in [
        ("node-a", true),
        ("rr-1", true),
        ("node-a", false),
        ("rr-1", false),
    ] {
        let mut inputs = BgpInputs::new(local);
        inputs.nodes = nodes.clone();
        inputs.configurations = vec![BgpConfiguration {
            metadata: ObjectMeta::named("default"),
            spec: BgpConfigurationSpec {
                node_to_node_mesh_enabled: Some(mesh),
                node_mesh_password: mesh.then(|| secret_ref(false)),
                node_mesh_max_restart_time: mesh.then(|| "2m".to_string()),
                listen_port: Some(1179),
                ..BgpConfigurationSpec::default()
            },
        }];
        inputs.peers = vec![
            BgpPeer {
                metadata: ObjectMeta::named("to-rr"),
                spec: BgpPeerSpec {
                    peer_selector: Some("rr == 'true'".into()),
                    ..BgpPeerSpec::default()
                },
            },
            BgpPeer {
                metadata: ObjectMeta::named("tor"),
                spec: BgpPeerSpec {
                    peer_ip: Some("10.0.0.1".into()),
                    as_number: Some(AsNumber(65000)),
                    password: Some(secret_ref(true)),
                    source_address: Some(SourceAddress::None),
                    keep_original_next_hop: Some(true),
                    ..BgpPeerSpec::default()
                },
            },
        ];
        inputs.pools = vec![
            IpPool {
                metadata: ObjectMeta::named("pods"),
                spec: IpPoolSpec {
                    cidr: "10.65.0.0/16".into(),
                    ..IpPoolSpec::default()
                },
            },
            IpPool {
                metadata: ObjectMeta::named("private"),
                spec: IpPoolSpec {
                    cidr: "10.66.0.0/16".into(),
                    disable_bgp_export: Some(true),
                    ..IpPoolSpec::default()
                },
            },
        ];
        inputs.local_blocks = vec![net("10.65.4.0/26"), net("10.66.4.0/26")];
        inputs.secrets = Box::new(|_: &str, _: &str| Some("mesh pw".to_string()));
        let plan = plan(&inputs).unwrap();
        assert!(!plan.sessions.is_empty());
        assert_bird_accepts(&format!("{local}, mesh {mesh}"), &render(&plan));
    }
}
