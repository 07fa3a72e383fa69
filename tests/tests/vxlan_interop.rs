//! tortie's VXLAN speaks to a plain Linux `vxlan` device: a namespace on the fabric with a
//! kernel VXLAN endpoint (VNI 4096, port 4789, no tortie) joins the cluster file as a node with
//! its own pod block, and a tortie pod and the kernel endpoint's address reach each other in
//! both directions. Needs root; skipped without (fails under CI).

use std::{net::Ipv4Addr, thread::sleep, time::Duration};

use serde_json::Value;
use tortie_lab::{harness, traffic, Artifacts, Encap, Lab, LabGuard, LabSpec};

/// Fabric address of the kernel VXLAN node.
const KERNEL_NODE_IP: &str = "10.99.0.50";
/// The kernel node's "pod" address, on its vxlan device, inside the lab's pool.
const KERNEL_POD_IP: &str = "10.65.200.1";
const KERNEL_BLOCK: &str = "10.65.200.0/26";
/// Next hop the kernel node uses for tortie's block (any address: only its MAC matters).
const TORTIE_VTEP_IP: &str = "10.65.0.1";
const TORTIE_VTEP_MAC: &str = "02:77:00:00:00:01";

fn ip_root(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace named like the lab's own (so the lab's teardown removes it) holding a kernel
/// VXLAN endpoint wired to the fabric bridge. Returns its vxlan device's MAC.
fn add_kernel_vxlan_node(lab: &Lab, node0_ip: Ipv4Addr) -> String {
    let netns = format!("tortie-{}-kvx", lab.name());
    ip_root(&["netns", "add", &netns]);
    let fabric = lab.netns_of("fabric").expect("fabric netns");
    ip_root(&[
        "-n", &fabric, "link", "add", "veth-kvx", "type", "veth", "peer", "name", "eth0", "netns",
        &netns,
    ]);
    ip_root(&[
        "-n", &fabric, "link", "set", "veth-kvx", "master", "br0", "up",
    ]);
    let in_ns = |args: &[&str]| {
        let mut full = vec!["-n", netns.as_str()];
        full.extend_from_slice(args);
        ip_root(&full);
    };
    in_ns(&["link", "set", "lo", "up"]);
    in_ns(&[
        "addr",
        "add",
        &format!("{KERNEL_NODE_IP}/24"),
        "dev",
        "eth0",
    ]);
    in_ns(&["link", "set", "eth0", "up"]);
    in_ns(&[
        "link",
        "add",
        "vxlan0",
        "type",
        "vxlan",
        "id",
        "4096",
        "dstport",
        "4789",
        "local",
        KERNEL_NODE_IP,
        "dev",
        "eth0",
        "nolearning",
    ]);
    in_ns(&[
        "addr",
        "add",
        &format!("{KERNEL_POD_IP}/32"),
        "dev",
        "vxlan0",
    ]);
    in_ns(&["link", "set", "vxlan0", "up"]);
    in_ns(&[
        "route",
        "add",
        "10.65.0.0/26",
        "via",
        TORTIE_VTEP_IP,
        "dev",
        "vxlan0",
        "onlink",
        "src",
        KERNEL_POD_IP,
    ]);
    in_ns(&[
        "neigh",
        "add",
        TORTIE_VTEP_IP,
        "lladdr",
        TORTIE_VTEP_MAC,
        "dev",
        "vxlan0",
        "nud",
        "permanent",
    ]);
    let out = std::process::Command::new("bridge")
        .args([
            "-n",
            &netns,
            "fdb",
            "append",
            TORTIE_VTEP_MAC,
            "dev",
            "vxlan0",
            "dst",
            &node0_ip.to_string(),
        ])
        .output()
        .expect("run bridge");
    assert!(
        out.status.success(),
        "bridge fdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = std::process::Command::new("ip")
        .args(["-n", &netns, "-j", "link", "show", "vxlan0"])
        .output()
        .expect("ip link show");
    let parsed: Value = serde_json::from_slice(&link.stdout).expect("ip -j output");
    parsed[0]["address"]
        .as_str()
        .expect("vxlan0 MAC")
        .to_string()
}

/// Adds the kernel node to the cluster file every agent reads (they re-read it on change).
fn announce_kernel_node(lab: &Lab, vxlan_mac: &str) {
    let path = &lab.node("node-0").expect("node-0").cluster_file;
    let mut cluster: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read cluster file"))
            .expect("cluster JSON");
    cluster["nodes"]
        .as_array_mut()
        .expect("nodes")
        .push(serde_json::json!({
            "name": "kernel-vxlan",
            "ipv4Address": format!("{KERNEL_NODE_IP}/24"),
            "blocks": [KERNEL_BLOCK],
            "vxlanTunnelMACAddr": vxlan_mac,
        }));
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&cluster).expect("serialize"),
    )
    .expect("write cluster file");
    std::fs::rename(&tmp, path).expect("replace cluster file");
}

#[test]
fn tortie_vxlan_interoperates_with_a_kernel_vxlan_device() {
    if harness::skip_unless_root("tortie_vxlan_interoperates_with_a_kernel_vxlan_device") {
        return;
    }
    harness::sweep_stale_test_labs("kvx");
    let spec = LabSpec::new(harness::test_lab_name("kvx"), 1, 1).with_encap(Encap::Vxlan);
    let artifacts = Artifacts::from_env_or_target().unwrap_or_else(|e| panic!("{e}"));
    let lab = LabGuard::up(&spec, &artifacts).unwrap_or_else(|e| panic!("lab up: {e:#}"));
    let node0_ip = lab.node("node-0").expect("node-0").ip;
    let vxlan_mac = add_kernel_vxlan_node(&lab, node0_ip);
    announce_kernel_node(&lab, &vxlan_mac);

    // The agent picks the change up within its resync interval.
    let mut reached = false;
    for _ in 0..20 {
        if traffic::ping(&lab, "pod-0-0", KERNEL_POD_IP, 1, &["-W", "1"]).is_ok() {
            reached = true;
            break;
        }
        sleep(Duration::from_millis(250));
    }
    assert!(
        reached,
        "tortie pod could not reach the kernel VXLAN endpoint {KERNEL_POD_IP}"
    );

    let capture = lab
        .capture("br0", "udp port 4789", 4, Duration::from_secs(10))
        .expect("capture");
    traffic::ping(&lab, "pod-0-0", KERNEL_POD_IP, 2, &[]).expect("pod → kernel endpoint");
    let captured = capture.finish().expect("capture result");
    let text = captured.text();
    assert!(
        text.contains("VXLAN") && text.contains("vni 4096"),
        "no VXLAN with VNI 4096 on the wire:\n{text}"
    );
    assert!(
        text.contains(&format!("{KERNEL_NODE_IP}.4789")),
        "nothing sent to the kernel endpoint's port 4789:\n{text}"
    );

    // And the other way: the kernel endpoint starts the conversation.
    let pod_ip = lab.pod("pod-0-0").expect("pod-0-0").ip.to_string();
    let kvx = format!("tortie-{}-kvx", lab.name());
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &kvx,
            "ping",
            "-c",
            "2",
            "-W",
            "2",
            "-I",
            KERNEL_POD_IP,
            &pod_ip,
        ])
        .output()
        .expect("ping from the kernel endpoint");
    assert!(
        out.status.success(),
        "kernel endpoint could not reach the tortie pod:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
