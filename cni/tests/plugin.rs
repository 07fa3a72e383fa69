//! The plugin binary against a real kernel and a real etcd: run inside a node namespace the
//! way a container runtime runs it, then check what a user would see — the interfaces,
//! addresses and routes in the pod, the host side, the WorkloadEndpoint and the IPAM
//! records in etcd. Needs root and `/usr/bin/etcd` (Debian `etcd-server`).

mod common;

use std::net::Ipv4Addr;

use common::{run_plugin, Harness, Pod, MTU, NODE};
use serde_json::{json, Value};

fn ipv4_of(result: &Value) -> Ipv4Addr {
    let address = result["ips"][0]["address"].as_str().expect("an address");
    address
        .trim_end_matches("/32")
        .parse()
        .expect("an IPv4 /32")
}

/// The pod side as `ip` shows it: eth0's address list and the routes.
fn assert_pod_wired(pod: &Pod, ip: Ipv4Addr) {
    let eth0 = pod.netns.link("eth0").expect("eth0 in the pod");
    assert_eq!(eth0["mtu"], MTU, "pod MTU: {eth0}");
    assert!(
        eth0["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "eth0 is up: {eth0}"
    );
    assert_eq!(eth0["linkinfo"]["info_kind"], "veth", "{eth0}");
    let lo = pod.netns.link("lo").expect("lo");
    assert!(
        lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "lo is up"
    );

    let addresses = pod.netns.ip_json(&["-4", "addr", "show", "dev", "eth0"]);
    let infos = addresses[0]["addr_info"]
        .as_array()
        .expect("addr_info")
        .clone();
    assert_eq!(infos.len(), 1, "exactly one IPv4 address: {infos:?}");
    assert_eq!(infos[0]["local"], ip.to_string());
    assert_eq!(infos[0]["prefixlen"], 32);

    let routes = pod.netns.ip_json(&["-4", "route", "show"]);
    let routes = routes.as_array().expect("routes");
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "169.254.1.1" && r["dev"] == "eth0" && r["scope"] == "link"),
        "169.254.1.1 dev eth0 scope link: {routes:?}"
    );
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "169.254.1.1" && r["dev"] == "eth0"),
        "default via 169.254.1.1 dev eth0: {routes:?}"
    );
}

fn assert_host_side(h: &Harness, pod: &Pod) {
    let host = h
        .node
        .link(&pod.host_ifname())
        .expect("the host side on the node");
    assert_eq!(host["address"], "ee:ee:ee:ee:ee:ee", "{host}");
    assert_eq!(host["mtu"], MTU, "{host}");
    assert_eq!(host["linkinfo"]["info_kind"], "veth", "{host}");
    assert!(
        host["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{host}"
    );
}

#[test]
fn add_wires_the_pod_check_verifies_it_and_del_removes_everything() {
    let h = Harness::new();
    // Only the last pool is usable: another node selector, disabled, tunnels only.
    h.add_pool(
        "zone-a",
        "10.66.0.0/16",
        26,
        json!({"nodeSelector": "zone == 'a'"}),
    );
    h.add_pool("off", "10.67.0.0/16", 26, json!({"disabled": true}));
    h.add_pool(
        "tunnels",
        "10.68.0.0/16",
        26,
        json!({"allowedUses": ["Tunnel"]}),
    );
    h.add_pool("default-ipv4-ippool", "10.65.0.0/16", 26, json!({}));
    let pod = h.pod("shop", "web-0");
    h.put_json(
        &tortie_cni::calico::pod_key("shop", "web-0"),
        &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web", "tier": "front"}},
            "spec": {"serviceAccountName": "web", "containers": [{"name": "nginx", "ports": [
                {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                {"containerPort": 9090}
            ]}]}
        }),
    );
    let conf = h.conf("1.1.0");

    let result = h.cni(&pod, "ADD", &conf).ok();
    let ip = ipv4_of(&result);
    assert!(
        "10.65.0.0/16"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&ip),
        "from the usable pool: {ip}"
    );
    let pod_mac = pod.netns.link("eth0").expect("eth0")["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        result,
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": pod.host_ifname(), "mac": "ee:ee:ee:ee:ee:ee"},
                {"name": "eth0", "mac": pod_mac, "sandbox": pod.netns.path()}
            ],
            "ips": [{"address": format!("{ip}/32"), "gateway": "169.254.1.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
            "dns": {}
        })
    );
    assert_pod_wired(&pod, ip);
    assert_host_side(&h, &pod);

    let endpoint = h
        .get_json(&pod.endpoint_key())
        .expect("the WorkloadEndpoint");
    assert_eq!(endpoint["kind"], "WorkloadEndpoint");
    assert_eq!(endpoint["apiVersion"], "projectcalico.org/v3");
    assert_eq!(endpoint["metadata"]["name"], "node--0-k8s-web--0-eth0");
    assert_eq!(endpoint["metadata"]["namespace"], "shop");
    assert_eq!(
        endpoint["metadata"]["labels"],
        json!({
            "app": "web", "tier": "front",
            "projectcalico.org/namespace": "shop",
            "projectcalico.org/orchestrator": "k8s",
            "projectcalico.org/serviceaccount": "web"
        })
    );
    let spec = &endpoint["spec"];
    assert_eq!(spec["orchestrator"], "k8s");
    assert!(
        spec.get("workload").is_none(),
        "Calico leaves workload unset for pods"
    );
    assert_eq!(spec["node"], NODE);
    assert_eq!(spec["containerID"], pod.container_id);
    assert_eq!(spec["pod"], "web-0");
    assert_eq!(spec["endpoint"], "eth0");
    assert_eq!(spec["ipNetworks"], json!([format!("{ip}/32")]));
    assert_eq!(spec["interfaceName"], pod.host_ifname());
    assert_eq!(spec["mac"], pod_mac);
    assert_eq!(spec["profiles"], json!(["kns.shop", "ksa.shop.web"]));
    assert_eq!(
        spec["ports"],
        json!([{"name": "http", "protocol": "TCP", "port": 8080}])
    );
    // What the agent reads back: the endpoint parses and validates as a Calico resource.
    let typed: tortie_resources::WorkloadEndpoint =
        serde_json::from_value(endpoint.clone()).expect("parses");
    tortie_resources::validate(&tortie_resources::Resource::WorkloadEndpoint(typed))
        .expect("validates");
    assert_eq!(
        h.handle_addresses(&pod.handle()),
        vec![ip],
        "the handle holds exactly the pod's address"
    );

    // CHECK with the result as prevResult passes ...
    let mut check = conf.clone();
    check["prevResult"] = result.clone();
    h.cni(&pod, "CHECK", &check).ok();
    // ... and fails, naming the route, once the default route is gone.
    pod.netns.ip(&["route", "del", "default"]);
    let error = h.cni(&pod, "CHECK", &check).error(103);
    assert!(
        error["msg"]
            .as_str()
            .unwrap()
            .contains("route 0.0.0.0/0 via 169.254.1.1"),
        "{error}"
    );

    // DEL removes everything, and is idempotent.
    h.cni(&pod, "DEL", &conf).ok();
    assert!(pod.netns.link("eth0").is_none(), "eth0 is gone");
    h.assert_nothing_left(&pod);
    h.cni(&pod, "DEL", &conf).ok();
    h.assert_nothing_left(&pod);
    assert!(
        h.log().contains("pod attached"),
        "the log file is written: {}",
        h.log()
    );
}

#[test]
fn cni_0_4_0_results_and_del_after_the_sandbox_is_gone() {
    let h = Harness::new();
    h.add_pool("default-ipv4-ippool", "10.65.0.0/16", 26, json!({}));
    let pod = h.pod("default", "db-0");
    let conf = h.conf("0.4.0");
    let result = h.cni(&pod, "ADD", &conf).ok();
    assert_eq!(result["cniVersion"], "0.4.0");
    assert_eq!(result["ips"][0]["version"], "4");
    assert_eq!(result["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(result["ips"][0]["interface"], 1);
    assert_eq!(result["interfaces"][1]["sandbox"], pod.netns.path());
    let ip = ipv4_of(&result);
    assert_pod_wired(&pod, ip);

    let mut check = conf.clone();
    check["prevResult"] = result;
    h.cni(&pod, "CHECK", &check).ok();

    // The runtime removed the sandbox first: DEL still cleans up the datastore.
    pod.netns.delete();
    h.cni(&pod, "DEL", &conf).ok();
    h.assert_nothing_left(&pod);
    let mut no_netns = pod.env("DEL");
    no_netns.retain(|(k, _)| k != "CNI_NETNS");
    no_netns.push(("CNI_NETNS".into(), String::new()));
    h.cni_env(&no_netns, &conf).ok();

    // CHECK of a gone sandbox: the container is unknown.
    h.cni(&pod, "CHECK", &check).error(3);
}

#[test]
fn version_and_status() {
    let version = run_plugin(
        None,
        &[("CNI_COMMAND".into(), "VERSION".into())],
        r#"{"cniVersion":"1.1.0"}"#,
    )
    .ok();
    assert_eq!(
        version,
        json!({"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
    );

    let mut h = Harness::new();
    let status = vec![("CNI_COMMAND".to_string(), "STATUS".to_string())];
    let conf = h.conf("1.1.0");
    let error = h.cni_env(&status, &conf).error(50);
    assert!(
        error["details"]
            .as_str()
            .unwrap()
            .contains("no enabled IPv4 IP pool"),
        "{error}"
    );
    h.add_pool("default-ipv4-ippool", "10.65.0.0/16", 26, json!({}));
    assert_eq!(
        h.cni_env(&status, &conf).ok(),
        Value::Null,
        "STATUS prints nothing when ready"
    );
    h.etcd.stop();
    let error = h.cni_env(&status, &conf).error(50);
    assert!(
        error["details"].as_str().unwrap().contains("unreachable"),
        "{error}"
    );
}

#[test]
fn gc_releases_what_stale_containers_hold() {
    let h = Harness::new();
    h.add_pool("default-ipv4-ippool", "10.65.0.0/16", 26, json!({}));
    let kept = h.pod("default", "kept");
    let stale = h.pod("default", "stale");
    let conf = h.conf("1.1.0");
    let kept_ip = ipv4_of(&h.cni(&kept, "ADD", &conf).ok());
    h.cni(&stale, "ADD", &conf).ok();
    // A container whose ADD died before writing its endpoint: only an address.
    let ghost = "k8s-pod-network.ghost0123456789";
    let ghost_ip = h
        .block_on(
            tortie_ipam::Ipam::new(&h.store).auto_assign(&tortie_ipam::AssignRequest {
                handle: ghost,
                node: NODE,
                attributes: [("node".to_string(), NODE.to_string())].into(),
                pools: &[tortie_ipam::PoolSpec {
                    name: "default-ipv4-ippool".into(),
                    cidr: "10.65.0.0/16".parse().unwrap(),
                    block_size: 26,
                }],
                config: Default::default(),
            }),
        )
        .unwrap();
    assert!(
        !h.handle_addresses(ghost).is_empty(),
        "ghost holds {ghost_ip}"
    );

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": kept.container_id, "ifname": "eth0"}]);
    h.cni_env(
        &[
            ("CNI_COMMAND".into(), "GC".into()),
            ("CNI_PATH".into(), "/opt/cni/bin".into()),
        ],
        &gc,
    )
    .ok();

    h.assert_nothing_left(&stale);
    assert!(
        h.handle_addresses(ghost).is_empty(),
        "the ghost's address is released"
    );
    assert_eq!(
        h.handle_addresses(&kept.handle()),
        vec![kept_ip],
        "the valid container keeps its address"
    );
    assert!(
        h.get_json(&kept.endpoint_key()).is_some(),
        "and its endpoint"
    );
    assert!(
        h.node.link(&kept.host_ifname()).is_some(),
        "and its interface"
    );
    assert_pod_wired(&kept, kept_ip);
}

#[test]
fn invalid_invocations_are_rejected_with_their_codes() {
    let conf = json!({"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "tortie-cni",
        "etcd_endpoints": "http://127.0.0.1:9", "nodename": NODE});
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let full = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc"),
        ("CNI_NETNS", "/run/netns/none"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];
    // Validation fails before anything is touched, so these run without a node.
    let error = run_plugin(None, &env(&full[1..]), &conf.to_string()).error(4);
    assert!(
        error["msg"].as_str().unwrap().contains("CNI_COMMAND"),
        "{error}"
    );
    let no_id: Vec<_> = full
        .iter()
        .filter(|(k, _)| *k != "CNI_CONTAINERID")
        .copied()
        .collect();
    let error = run_plugin(None, &env(&no_id), &conf.to_string()).error(4);
    assert!(
        error["msg"].as_str().unwrap().contains("CNI_CONTAINERID"),
        "{error}"
    );
    run_plugin(None, &env(&full), "{\"cniVersion\": ").error(6);
    let old = json!({"cniVersion": "0.1.0", "name": "n", "type": "tortie-cni"});
    let error = run_plugin(None, &env(&full), &old.to_string()).error(1);
    assert_eq!(error["cniVersion"], "1.1.0");
    let mut bad_mtu = conf.clone();
    bad_mtu["mtu"] = json!(10);
    let error = run_plugin(None, &env(&full), &bad_mtu.to_string()).error(7);
    assert!(error["msg"].as_str().unwrap().contains("mtu"), "{error}");
    let mut kubernetes = conf.clone();
    kubernetes["datastore_type"] = json!("kubernetes");
    run_plugin(None, &env(&full), &kubernetes.to_string()).error(2);
}

#[test]
fn an_unknown_netns_fails_with_3_and_leaves_nothing() {
    let h = Harness::new();
    h.add_pool("default-ipv4-ippool", "10.65.0.0/16", 26, json!({}));
    let pod = h.pod("default", "lost");
    let mut env = pod.env("ADD");
    for (key, value) in env.iter_mut() {
        if key == "CNI_NETNS" {
            *value = "/run/netns/tortie-cnitest-does-not-exist".into();
        }
    }
    let error = h.cni_env(&env, &h.conf("1.1.0")).error(3);
    assert!(
        error["msg"].as_str().unwrap().contains("does not exist"),
        "{error}"
    );
    h.assert_nothing_left(&pod);
    assert!(
        h.keys("/calico/ipam/v2/").is_empty(),
        "IPAM untouched: {:?}",
        h.keys("/calico/ipam/v2/")
    );
}

#[test]
fn an_exhausted_pool_fails_with_100_and_leaves_nothing() {
    let h = Harness::new();
    h.add_pool("tiny", "10.65.0.0/30", 30, json!({}));
    let conf = h.conf("1.1.0");
    let pods: Vec<Pod> = (0..5).map(|i| h.pod("default", &format!("p{i}"))).collect();
    let mut ips = Vec::new();
    for pod in &pods[..4] {
        ips.push(ipv4_of(&h.cni(pod, "ADD", &conf).ok()));
    }
    ips.sort();
    let expected: Vec<Ipv4Addr> = (0..4).map(|i| Ipv4Addr::new(10, 65, 0, i)).collect();
    assert_eq!(ips, expected, "every address of the /30 is used once");
    let error = h.cni(&pods[4], "ADD", &conf).error(100);
    assert!(
        error["msg"].as_str().unwrap().contains("tiny"),
        "the message names the pool: {error}"
    );
    h.assert_nothing_left(&pods[4]);
    assert_eq!(pods[4].netns.link_names(), vec!["lo"], "nothing in the pod");
    assert_eq!(
        h.node_pod_links().len(),
        4,
        "only the four wired pods on the node"
    );
}

#[test]
fn the_ipam_configuration_is_honoured() {
    let h = Harness::new();
    h.add_pool("small-blocks", "10.65.0.0/24", 30, json!({}));
    h.put_json(
        "/calico/resources/v3/projectcalico.org/ipamconfigurations/default",
        &json!({"kind": "IPAMConfiguration", "apiVersion": "projectcalico.org/v3",
                "metadata": {"name": "default"}, "spec": {"strictAffinity": true, "maxBlocksPerHost": 1}}),
    );
    let conf = h.conf("1.1.0");
    let pods: Vec<Pod> = (0..5).map(|i| h.pod("default", &format!("q{i}"))).collect();
    for pod in &pods[..4] {
        h.cni(pod, "ADD", &conf).ok();
    }
    let error = h.cni(&pods[4], "ADD", &conf).error(100);
    assert!(
        error["msg"]
            .as_str()
            .unwrap()
            .contains("maxBlocksPerHost=1"),
        "{error}"
    );
    h.assert_nothing_left(&pods[4]);
}

#[test]
fn an_unreachable_datastore_is_try_again_later() {
    let mut h = Harness::new();
    h.add_pool("default-ipv4-ippool", "10.65.0.0/16", 26, json!({}));
    let pod = h.pod("default", "web-1");
    let conf = h.conf("1.1.0");
    h.etcd.stop();
    let error = h.cni(&pod, "ADD", &conf).error(11);
    assert!(
        error["details"]
            .as_str()
            .unwrap()
            .contains(&h.etcd.client_url()),
        "names the endpoint: {error}"
    );
    h.cni(&pod, "DEL", &conf).error(11);
    h.restart_etcd();
    h.assert_nothing_left(&pod);
    assert_eq!(pod.netns.link_names(), vec!["lo"], "nothing in the pod");
    // Once etcd is back, the same ADD succeeds.
    h.cni(&pod, "ADD", &conf).ok();
}

#[test]
fn a_failure_after_the_veth_exists_leaves_nothing() {
    let h = Harness::new();
    h.add_pool("default-ipv4-ippool", "10.65.0.0/16", 26, json!({}));
    let pod = h.pod("default", "clash");
    // Something already owns eth0 in the sandbox: renaming the pod side fails after the
    // address is assigned and the veth pair is created and moved.
    pod.netns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "other",
    ]);
    let conf = h.conf("1.1.0");
    let error = h.cni(&pod, "ADD", &conf).error(101);
    let text = error.to_string();
    assert!(
        text.contains("eth0 already exists"),
        "names the interface: {error}"
    );
    assert!(
        text.contains(&pod.netns.path()),
        "names the namespace: {error}"
    );
    h.assert_nothing_left(&pod);
    let mut left = pod.netns.link_names();
    left.sort();
    assert_eq!(
        left,
        vec!["eth0", "lo", "other"],
        "the pod's own eth0 is untouched, the peer gone"
    );
    let log = h.log();
    assert!(
        log.contains("undo: released addresses") && log.contains("undo: deleted host interface"),
        "{log}"
    );
}

#[test]
fn a_failed_endpoint_write_leaves_nothing() {
    // etcd refuses requests over 2 KiB: the pod record fits, the endpoint carrying its
    // labels plus everything else does not, so ADD fails at its very last step.
    let h = Harness::with_etcd_args(&["--max-request-bytes=2048"]);
    h.add_pool("default-ipv4-ippool", "10.65.0.0/16", 26, json!({}));
    let pod = h.pod("default", "big-labels");
    let labels: serde_json::Map<String, Value> = (0..14)
        .map(|i| (format!("example.com/label-{i:02}"), json!("v".repeat(80))))
        .collect();
    h.put_json(
        &tortie_cni::calico::pod_key("default", "big-labels"),
        &json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "big-labels", "namespace": "default", "labels": labels}}),
    );
    let conf = h.conf("1.1.0");
    let error = h.cni(&pod, "ADD", &conf).error(102);
    assert!(
        error["msg"].as_str().unwrap().contains("WorkloadEndpoint"),
        "{error}"
    );
    let log = h.log();
    assert!(
        log.contains("pod side configured"),
        "it failed after wiring the pod: {log}"
    );
    assert!(
        log.contains("undo: released addresses") && log.contains("undo: deleted host interface"),
        "{log}"
    );
    h.assert_nothing_left(&pod);
    assert_eq!(pod.netns.link_names(), vec!["lo"], "nothing in the pod");
}

#[test]
fn an_add_that_panics_half_way_is_still_undone() {
    use tortie_cni::plugin::undo::{Undo, UndoAction};
    let h = Harness::new();
    h.add_pool("default-ipv4-ippool", "10.65.0.0/16", 26, json!({}));
    let pod = h.pod("default", "panicky");
    // What an ADD has done by the time it dies: an address, a veth pair, an endpoint.
    let pools = [tortie_ipam::PoolSpec {
        name: "default-ipv4-ippool".into(),
        cidr: "10.65.0.0/16".parse().unwrap(),
        block_size: 26,
    }];
    h.block_on(
        tortie_ipam::Ipam::new(&h.store).auto_assign(&tortie_ipam::AssignRequest {
            handle: &pod.handle(),
            node: NODE,
            attributes: Default::default(),
            pools: &pools,
            config: Default::default(),
        }),
    )
    .unwrap();
    h.node.ip(&[
        "link",
        "add",
        &pod.host_ifname(),
        "type",
        "veth",
        "peer",
        "name",
        "tmp0123456789a",
    ]);
    h.put_json(&pod.endpoint_key(), &json!({"kind": "WorkloadEndpoint", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "n", "namespace": "default"},
        "spec": {"orchestrator": "k8s", "node": NODE, "containerID": pod.container_id, "endpoint": "eth0",
                 "ipNetworks": [], "interfaceName": pod.host_ifname()}}));

    let mut undo = Undo::new(vec![h.etcd.client_url()]);
    undo.push(UndoAction::ReleaseAddresses {
        handle: pod.handle(),
    });
    undo.push(UndoAction::DeleteHostLink {
        name: pod.host_ifname(),
    });
    undo.push(UndoAction::DeleteEndpoint {
        key: pod.endpoint_key(),
        container_id: pod.container_id.clone(),
    });
    // The test thread is inside the node namespace, so the undo thread Drop starts is too.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _undo = undo;
        panic!("ADD died half-way");
    }));
    assert!(panicked.is_err());
    h.assert_nothing_left(&pod);
}

#[test]
fn a_container_without_kubernetes_arguments_is_named_by_its_id() {
    let h = Harness::new();
    h.add_pool("default-ipv4-ippool", "10.65.0.0/16", 26, json!({}));
    let pod = h.pod("default", "unused");
    let mut env = pod.env("ADD");
    env.retain(|(k, _)| k != "CNI_ARGS");
    let conf = h.conf("1.0.0");
    let result = h.cni_env(&env, &conf).ok();
    let host = tortie_cni::plugin::host_veth_name_for_container(&pod.container_id);
    assert_eq!(result["interfaces"][0]["name"], host);
    assert!(h.node.link(&host).is_some(), "{host} on the node");
    assert_pod_wired(&pod, ipv4_of(&result));
    let name = tortie_cni::calico::workload_endpoint_name(NODE, "cni", &pod.container_id, "eth0");
    let key = tortie_cni::calico::workload_endpoint_key("default", &name);
    let endpoint = h.get_json(&key).expect("the endpoint");
    assert_eq!(endpoint["spec"]["orchestrator"], "cni");
    assert_eq!(endpoint["spec"]["workload"], pod.container_id);

    env.iter_mut().find(|(k, _)| k == "CNI_COMMAND").unwrap().1 = "DEL".into();
    h.cni_env(&env, &conf).ok();
    assert!(h.node.link(&host).is_none() && h.get_json(&key).is_none());
    assert!(h.handle_addresses(&pod.handle()).is_empty());
}
