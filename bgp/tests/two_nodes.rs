//! Two nodes in a mesh, each a BIRD in its own network namespace, joined by a veth pair:
//! rendered configurations bring the sessions up, routes reach the kernels, and an applied
//! change reaches the peer.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{poll, root_and_bird, veth, wait_until, Bird, Netns, TestDir};
use ipnet::Ipv4Net;
use tortie_bgp::{
    plan, render, sessions, ApplyOutcome, BgpInputs, BgpState, BirdClient, BirdConfig, SessionKind,
};
use tortie_resources::{IpPool, IpPoolSpec, Node, ObjectMeta};

const TIMEOUT: Duration = Duration::from_secs(30);

fn node(name: &str, address: &str) -> Node {
    Node::with_bgp_ipv4(name, address)
}

/// The configuration of `local` in a cluster of node-a and node-b, with `blocks` affine.
fn config_for(local: &str, blocks: &[&str]) -> String {
    let mut inputs = BgpInputs::new(local);
    inputs.nodes = vec![
        node("node-a", "10.99.200.1/24"),
        node("node-b", "10.99.200.2/24"),
    ];
    inputs.pools = vec![IpPool {
        metadata: ObjectMeta::named("default-ipv4-ippool"),
        spec: IpPoolSpec {
            cidr: "10.65.0.0/16".into(),
            ..IpPoolSpec::default()
        },
    }];
    inputs.local_blocks = blocks.iter().map(|b| b.parse().unwrap()).collect();
    let plan = plan(&inputs).expect("plan");
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    render(&plan)
}

/// Waits until `bird`'s only session is Established with `routes` routes received.
fn wait_established(bird: &Bird, peer: &str, routes: u64) {
    let name = format!("Mesh_{}", peer.replace('.', "_"));
    let mut last = String::new();
    let session = poll(TIMEOUT, || {
        let mut client = BirdClient::connect(&bird.socket).ok()?;
        let all = sessions(&mut client).ok()?;
        last = format!("{all:#?}");
        let [session] = all.as_slice() else {
            return None;
        };
        (session.name == name
            && session.bgp_state == BgpState::Established
            && session.routes_received == routes)
            .then(|| session.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "{name} did not come up with {routes} routes within {TIMEOUT:?}; last \
             status:\n{last}\nBIRD log:\n{}",
            bird.log_text()
        )
    });
    assert_eq!(session.kind, Some(SessionKind::Mesh));
    assert_eq!(session.peer_address, Some(peer.parse().unwrap()));
    assert_eq!(session.peer_as, Some(64512));
    assert!(session.uptime.is_some(), "{session:?}");
}

/// Waits until the namespace's main table has a BIRD route to `block`.
fn wait_kernel_route(ns: &Netns, block: &str) {
    let block: Ipv4Net = block.parse().unwrap();
    wait_until(TIMEOUT, &format!("{block} in {}'s kernel", ns.name), || {
        let routes = ns.ip(&["-4", "route", "show", "exact", &block.to_string()]);
        routes.contains("proto bird").then_some(())
    });
}

fn write_first_config(config: &BirdConfig, text: &str) {
    // BIRD is not running yet: the file is written, nobody reloads.
    assert_eq!(
        config.apply(text).expect("apply before BIRD starts"),
        ApplyOutcome::Written { reloaded: false }
    );
}

fn bird_config(dir: &Path) -> BirdConfig {
    std::fs::create_dir_all(dir).unwrap();
    BirdConfig::new(dir.join("bird.conf"), dir.join("bird.ctl"))
}

#[test]
fn two_node_mesh_learns_routes_and_applies_changes() {
    if !root_and_bird("two_node_mesh_learns_routes_and_applies_changes") {
        return;
    }
    let tmp = TestDir::create("tbgp-mesh");
    let ns_a = Netns::create("tbgp-mesh-a");
    let ns_b = Netns::create("tbgp-mesh-b");
    veth(
        (&ns_a, "tbgpmesha", "10.99.200.1/24"),
        (&ns_b, "tbgpmeshb", "10.99.200.2/24"),
    );

    let config_a = bird_config(&tmp.path.join("a"));
    let config_b = bird_config(&tmp.path.join("b"));
    write_first_config(&config_a, &config_for("node-a", &["10.65.1.0/26"]));
    write_first_config(&config_b, &config_for("node-b", &["10.65.2.0/26"]));
    // Locals drop in reverse order: the BIRDs, started last, stop before their namespaces
    // and directories go, also when an assertion fails.
    let bird_a = Bird::start(&ns_a, &config_a.config_path);
    let bird_b = Bird::start(&ns_b, &config_b.config_path);

    wait_established(&bird_a, "10.99.200.2", 1);
    wait_established(&bird_b, "10.99.200.1", 1);
    wait_kernel_route(&ns_a, "10.65.2.0/26");
    wait_kernel_route(&ns_b, "10.65.1.0/26");
    // Own blocks stay out of the kernel (they are BIRD-internal blackholes).
    assert!(!ns_a
        .ip(&["-4", "route", "show", "exact", "10.65.1.0/26"])
        .contains("proto bird"));

    // node-a gets a second block: the new configuration is applied and reaches node-b.
    let changed = config_for("node-a", &["10.65.1.0/26", "10.65.3.0/26"]);
    assert_eq!(
        config_a.apply(&changed).expect("apply the change"),
        ApplyOutcome::Written { reloaded: true }
    );
    wait_kernel_route(&ns_b, "10.65.3.0/26");
    wait_established(&bird_b, "10.99.200.1", 2);
    assert_eq!(
        config_a.apply(&changed).expect("apply again"),
        ApplyOutcome::Unchanged
    );

    // A configuration BIRD rejects leaves the running one, and the file, alone.
    let err = config_a
        .apply(&changed.replace("router id", "router idd"))
        .expect_err("invalid configuration");
    assert!(err.to_string().contains("bird.conf"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&config_a.config_path).unwrap(),
        changed
    );
    wait_established(&bird_b, "10.99.200.1", 2);
}
