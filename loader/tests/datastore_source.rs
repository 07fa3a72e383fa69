//! The agent's datastore source against a real etcd: the first listing, live changes, an
//! outage that keeps the last inputs, and the resync after etcd comes back. Needs the `etcd`
//! binary (skipped without it, except in CI), but neither root nor the eBPF object.

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use ipnet::Ipv4Net;
use tokio::sync::watch;
use tortie::{
    model::{ClusterNode, EncapMode, IpPool, LocalEndpoint},
    source::{ConnectionState, DatastoreSource, DatastoreSourceConfig, Inputs},
};
use tortie_datastore::{testing::EtcdServer, Datastore, EtcdDatastore, EtcdOptions};
use tortie_ipam::AllocationBlock;
use tortie_resources::{
    workload_endpoint_name, IpPoolSpec, Kind, Node, ObjectMeta, WorkloadEndpoint,
    WorkloadEndpointSpec,
};

const NODE: &str = "node-0";
/// Generous: etcd restarts and reconnections on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn pool_json() -> (String, Vec<u8>) {
    let pool = tortie_resources::IpPool {
        metadata: ObjectMeta::named("default-ipv4-ippool"),
        spec: IpPoolSpec {
            cidr: "10.65.0.0/16".into(),
            ipip_mode: Some(tortie_resources::EncapMode::CrossSubnet),
            nat_outgoing: Some(true),
            ..IpPoolSpec::default()
        },
    };
    (
        Kind::IpPool.key(None, "default-ipv4-ippool"),
        serde_json::to_vec(&pool).unwrap(),
    )
}

fn node_json(name: &str, address: &str) -> (String, Vec<u8>) {
    let node = Node::with_bgp_ipv4(name, address);
    (
        Kind::Node.key(None, name),
        serde_json::to_vec(&node).unwrap(),
    )
}

fn block_json(cidr: &str, node: &str) -> (String, Vec<u8>) {
    let cidr: Ipv4Net = cidr.parse().unwrap();
    (
        tortie_ipam::keys::block(&cidr),
        serde_json::to_vec(&AllocationBlock::new(cidr, node)).unwrap(),
    )
}

fn wep_json(pod: &str, node: &str, ip: Ipv4Addr) -> (String, Vec<u8>) {
    let name = workload_endpoint_name(node, "k8s", pod, "eth0");
    let wep = WorkloadEndpoint {
        metadata: ObjectMeta::namespaced("default", &name),
        spec: WorkloadEndpointSpec {
            orchestrator: Some("k8s".into()),
            node: Some(node.into()),
            pod: Some(pod.into()),
            endpoint: Some("eth0".into()),
            ip_networks: vec![format!("{ip}/32")],
            interface_name: Some(format!("cali{pod:0>11}")),
            mac: Some(format!("02:54:0a:41:00:{:02x}", ip.octets()[3])),
            ..WorkloadEndpointSpec::default()
        },
    };
    (
        Kind::WorkloadEndpoint.key(Some("default"), &name),
        serde_json::to_vec(&wep).unwrap(),
    )
}

/// Writes `entry`, retrying while etcd (just restarted) does not answer yet.
async fn put(store: &EtcdDatastore, (key, value): (String, Vec<u8>)) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match store.create(&key, &value).await {
            Ok(_) => return,
            Err(error) if error.is_transient() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("writing {key}: {error}"),
        }
    }
}

async fn wait_for_inputs(
    inputs: &mut watch::Receiver<Option<Arc<Inputs>>>,
    what: &str,
    condition: impl Fn(&Inputs) -> bool,
) -> Arc<Inputs> {
    let waited = tokio::time::timeout(
        PATIENCE,
        inputs.wait_for(|current| current.as_deref().is_some_and(&condition)),
    )
    .await
    .map(|result| result.map(|current| current.clone()));
    match waited {
        Ok(Ok(current)) => current.expect("checked by the condition"),
        Ok(Err(_)) => panic!("the source stopped while waiting for {what}"),
        Err(_) => panic!(
            "no inputs with {what} within {PATIENCE:?}; last: {:#?}",
            *inputs.borrow()
        ),
    }
}

async fn wait_for_state(
    state: &mut watch::Receiver<ConnectionState>,
    what: &str,
    condition: impl Fn(&ConnectionState) -> bool,
) {
    let reached = tokio::time::timeout(PATIENCE, state.wait_for(condition))
        .await
        .is_ok_and(|result| result.is_ok());
    assert!(
        reached,
        "the source did not become {what} within {PATIENCE:?}; state: {}",
        *state.borrow()
    );
}

/// Shows the source's logs with a failing test's output (`RUST_LOG` tunes them).
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

fn endpoint_names(inputs: &Inputs) -> Vec<&str> {
    inputs.endpoints.iter().map(|e| e.name.as_str()).collect()
}

fn config(endpoints: Vec<String>) -> DatastoreSourceConfig {
    let mut config = DatastoreSourceConfig::new(endpoints, NODE);
    // Notice a dead connection quickly; keep the test short.
    config.etcd.watch_check_interval = Duration::from_secs(1);
    config.etcd.request_timeout = Duration::from_secs(2);
    config.etcd.connect_timeout = Duration::from_secs(2);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_etcd_through_an_outage_and_resyncs() {
    logs();
    let started =
        tokio::task::spawn_blocking(|| EtcdServer::start_local_or_skip("datastore_source"));
    let Some(mut server) = started.await.unwrap() else {
        return;
    };
    let store = EtcdDatastore::connect(&server.endpoints(), EtcdOptions::default())
        .await
        .unwrap();
    put(&store, pool_json()).await;
    put(&store, node_json(NODE, "10.99.0.11/24")).await;
    put(&store, node_json("node-1", "10.99.0.12/24")).await;
    put(&store, block_json("10.65.0.0/26", NODE)).await;
    put(&store, block_json("10.65.0.64/26", "node-1")).await;
    put(&store, wep_json("a", NODE, Ipv4Addr::new(10, 65, 0, 10))).await;
    put(
        &store,
        wep_json("x", "node-1", Ipv4Addr::new(10, 65, 0, 70)),
    )
    .await;
    // One broken endpoint must not hide the others.
    put(
        &store,
        (
            Kind::WorkloadEndpoint.key(Some("default"), "node-0-k8s-broken-eth0"),
            b"{not json".to_vec(),
        ),
    )
    .await;

    let source = DatastoreSource::spawn(config(server.endpoints()));
    let mut inputs = source.inputs();
    let mut state = source.state();

    // The first complete listing.
    let first = wait_for_inputs(&mut inputs, "the first listing", |_| true).await;
    assert_eq!(
        first.cluster.ip_pools,
        [IpPool {
            name: "default-ipv4-ippool".into(),
            cidr: "10.65.0.0/16".parse().unwrap(),
            ipip_mode: EncapMode::CrossSubnet,
            vxlan_mode: EncapMode::Never,
            nat_outgoing: true,
        }]
    );
    assert_eq!(
        first.cluster.nodes,
        [
            ClusterNode {
                name: NODE.into(),
                ipv4_address: "10.99.0.11/24".parse().unwrap(),
                blocks: vec!["10.65.0.0/26".parse().unwrap()],
                vxlan_tunnel_mac_addr: None,
            },
            ClusterNode {
                name: "node-1".into(),
                ipv4_address: "10.99.0.12/24".parse().unwrap(),
                blocks: vec!["10.65.0.64/26".parse().unwrap()],
                vxlan_tunnel_mac_addr: None,
            },
        ]
    );
    assert_eq!(
        first.endpoints,
        [LocalEndpoint {
            name: "a".into(),
            namespace: "default".into(),
            node: NODE.into(),
            iface: "cali0000000000a".into(),
            ipv4: Ipv4Addr::new(10, 65, 0, 10),
            mac: "02:54:0a:41:00:0a".parse().unwrap(),
            labels: Default::default(),
        }]
    );
    wait_for_state(&mut state, "connected", |s| {
        *s == ConnectionState::Connected
    })
    .await;

    // A change is published by the watch, without a new listing.
    put(&store, wep_json("b", NODE, Ipv4Addr::new(10, 65, 0, 11))).await;
    let live = wait_for_inputs(&mut inputs, "pod b", |i| endpoint_names(i) == ["a", "b"]).await;
    assert_eq!(live.cluster, first.cluster);

    // etcd goes away: the state says so and the last inputs stay published.
    server.stop();
    wait_for_state(&mut state, "unreachable", |s| {
        matches!(s, ConnectionState::Unreachable { .. })
    })
    .await;
    assert_eq!(inputs.borrow().as_deref(), Some(&*live));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(inputs.borrow().as_deref(), Some(&*live));

    // etcd comes back: the source lists again and follows the new writes.
    tokio::task::block_in_place(|| server.start()).unwrap();
    put(&store, wep_json("c", NODE, Ipv4Addr::new(10, 65, 0, 12))).await;
    let after = wait_for_inputs(&mut inputs, "pod c after the restart", |i| {
        endpoint_names(i) == ["a", "b", "c"]
    })
    .await;
    assert_eq!(after.cluster, first.cluster);
    wait_for_state(&mut state, "connected again", |s| {
        *s == ConnectionState::Connected
    })
    .await;

    // Deletions are followed too.
    store
        .delete(&wep_json("a", NODE, Ipv4Addr::new(10, 65, 0, 10)).0, None)
        .await
        .unwrap();
    wait_for_inputs(&mut inputs, "pod a deleted", |i| {
        endpoint_names(i) == ["b", "c"]
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_datastore_publishes_nothing_and_says_so() {
    logs();
    // Port 1 on loopback: nothing listens, connections are refused at once.
    let source = DatastoreSource::spawn(config(vec!["http://127.0.0.1:1".into()]));
    let mut state = source.state();
    wait_for_state(&mut state, "unreachable", |s| {
        matches!(s, ConnectionState::Unreachable { .. })
    })
    .await;
    assert!(source.inputs().borrow().is_none());
    let ConnectionState::Unreachable { reason, .. } = &*state.borrow() else {
        unreachable!()
    };
    assert!(reason.contains("127.0.0.1:1"), "{reason}");
}

#[tokio::test]
async fn an_unusable_endpoint_stops_the_source_with_the_reason() {
    logs();
    let source = DatastoreSource::spawn(config(vec!["https://10.99.0.2:2379".into()]));
    let mut state = source.state();
    wait_for_state(&mut state, "failed", |s| {
        matches!(s, ConnectionState::Failed { .. })
    })
    .await;
    assert!(
        state.borrow().to_string().contains("TLS is not supported"),
        "{}",
        *state.borrow()
    );
    // The inputs channel closes, which is how the agent learns the source is gone.
    let mut inputs = source.inputs();
    let closed = tokio::time::timeout(PATIENCE, inputs.changed()).await;
    assert!(matches!(closed, Ok(Err(_))), "{closed:?}");
}
