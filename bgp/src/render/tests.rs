use std::net::Ipv4Addr;

use tortie_resources::{AsNumber, LogSeverity};

use super::*;
use crate::calc::{Password, SessionKind, SessionOrigin};

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

fn mesh_session(peer: &str, node: &str, passive: bool) -> Session {
    Session {
        kind: SessionKind::Mesh,
        origin: SessionOrigin::Mesh { node: node.into() },
        peer_ip: ip(peer),
        peer_port: None,
        peer_as: AsNumber(64512),
        source_ip: Some(ip("10.99.0.11")),
        password: None,
        route_reflector_client: None,
        keep_next_hop: false,
        graceful_restart_time_secs: None,
        passive,
    }
}

/// A route reflector with every session option in use.
pub(crate) fn full_plan() -> BgpPlan {
    BgpPlan {
        node_name: "node-a".into(),
        router_id: ip("10.99.0.11"),
        local_as: AsNumber(64512),
        listen_port: 179,
        log_severity: LogSeverity::Info,
        route_reflector_cluster_id: Some(ip("224.0.0.1")),
        sessions: vec![
            Session {
                kind: SessionKind::Global,
                origin: SessionOrigin::Peer {
                    peer: "rack-1-tor".into(),
                    node: None,
                },
                peer_ip: ip("10.0.0.1"),
                peer_port: Some(1179),
                peer_as: AsNumber(65000),
                source_ip: None,
                password: Some(Password::new("s3cret\\x")),
                route_reflector_client: None,
                keep_next_hop: true,
                graceful_restart_time_secs: Some(300),
                passive: false,
            },
            Session {
                route_reflector_client: Some(ip("224.0.0.1")),
                graceful_restart_time_secs: Some(90),
                ..mesh_session("10.99.0.10", "node-0", false)
            },
            mesh_session("10.99.0.12", "node-b", true),
        ],
        exported_blocks: vec![net("10.65.1.0/26"), net("10.65.7.0/26")],
        local_blocks: vec![
            net("10.65.1.0/26"),
            net("10.65.7.0/26"),
            net("10.66.0.0/26"),
        ],
        export_pools: vec![net("10.65.0.0/16")],
        warnings: vec![],
    }
}

#[test]
fn renders_the_documented_shape() {
    let text = render(&full_plan());
    let golden = include_str!("../../tests/fixtures/node-a.bird.conf");
    if text != golden && std::env::var_os("TORTIE_BGP_UPDATE_GOLDEN").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/node-a.bird.conf"
        );
        std::fs::write(path, &text).unwrap();
        return;
    }
    assert_eq!(
        text, golden,
        "rendering changed: check it, then rerun with TORTIE_BGP_UPDATE_GOLDEN=1"
    );
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(render(&full_plan()), render(&full_plan()));
}

#[test]
fn sessions_carry_their_options() {
    let text = render(&full_plan());
    for line in [
        "router id 10.99.0.11;",
        "timeformat protocol iso long;",
        "protocol bgp Global_10_0_0_1 {",
        "  local as 64512;",
        "  neighbor 10.0.0.1 port 1179 as 65000;",
        "  password \"s3cret\\x\";",
        "  graceful restart time 300;",
        "    gateway direct;",
        "    next hop keep;",
        "protocol bgp Mesh_10_99_0_10 {",
        "  local 10.99.0.11 as 64512;",
        "  rr client;",
        "  rr cluster id 224.0.0.1;",
        "    gateway recursive;",
        "  passive on; # in the mesh, the peer connects (its address sorts higher)",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }
}

#[test]
fn own_blocks_are_never_imported_and_only_blocks_and_pools_exported() {
    let text = render(&full_plan());
    assert!(text.contains(
        "filter tortie_import {\n  if net ~ [ 10.65.1.0/26+, 10.65.7.0/26+, 10.66.0.0/26+ ] \
         then reject;\n  accept;\n}"
    ));
    assert!(text.contains(
        "filter tortie_export {\n  if proto = \"tortie_blocks\" then accept;\n  if source = \
         RTS_BGP && net ~ [ 10.65.0.0/16+ ] then accept;\n  reject;\n}"
    ));
    assert!(text.contains("  route 10.65.1.0/26 blackhole;\n  route 10.65.7.0/26 blackhole;\n"));
    assert!(!text.contains("route 10.66.0.0/26"));
}

#[test]
fn an_empty_plan_still_renders_every_base_protocol() {
    let plan = BgpPlan {
        sessions: vec![],
        exported_blocks: vec![],
        local_blocks: vec![],
        export_pools: vec![],
        route_reflector_cluster_id: None,
        ..full_plan()
    };
    let text = render(&plan);
    for part in [
        "protocol device {",
        "protocol direct {",
        "protocol kernel {",
        "protocol static tortie_blocks {",
        "filter tortie_import {\n  accept;\n}",
        "filter tortie_export {\n  if proto = \"tortie_blocks\" then accept;\n  reject;\n}",
        "# (none: no other node or BGPPeer to peer with)",
    ] {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
    assert!(!text.contains("protocol bgp"));
}

#[test]
fn listen_port_and_log_levels() {
    let mut plan = full_plan();
    plan.listen_port = 1179;
    plan.log_severity = LogSeverity::Error;
    let text = render(&plan);
    assert!(text.contains("  local 10.99.0.11 port 1179 as 64512;\n"));
    assert!(text.contains("  local port 1179 as 64512;\n"));
    assert!(text.contains("log stderr { error, auth, fatal, bug };\n"));
    assert!(!text.contains("debug protocols"));
}

#[test]
fn strings_drop_what_bird_cannot_quote() {
    assert_eq!(quotable("a\"b\nc\\d"), "abc\\d");
    assert_eq!(one_line("a\nb"), "a b");
}
