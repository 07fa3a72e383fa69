//! IPAM against a real etcd: allocation across nodes, release, exhaustion, affinity rules,
//! concurrent allocation and a randomised churn checked for double allocation and leaks.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    sync::Arc,
};

use tortie_datastore::{testing::EtcdServer, EtcdDatastore, EtcdOptions};
use tortie_ipam::{check, AssignRequest, Ipam, IpamConfig, IpamError, PoolSpec};

/// A real etcd and a client for it, or `None` when etcd is not installed (outside CI).
async fn etcd() -> Option<(EtcdServer, Arc<EtcdDatastore>)> {
    let server = EtcdServer::start_local_or_skip("ipam")?;
    let store = EtcdDatastore::connect(&server.endpoints(), EtcdOptions::default())
        .await
        .expect("connect to etcd");
    Some((server, Arc::new(store)))
}

fn pool(name: &str, cidr: &str, block_size: u8) -> PoolSpec {
    PoolSpec {
        name: name.into(),
        cidr: cidr.parse().expect("pool CIDR"),
        block_size,
    }
}

fn request<'a>(
    handle: &'a str,
    node: &'a str,
    pools: &'a [PoolSpec],
    config: IpamConfig,
) -> AssignRequest<'a> {
    AssignRequest {
        handle,
        node,
        attributes: BTreeMap::from([("node".to_string(), node.to_string())]),
        pools,
        config,
    }
}

#[tokio::test]
async fn nodes_get_their_own_blocks_and_release_by_handle() {
    let Some((_server, store)) = etcd().await else {
        return;
    };
    let ipam = Ipam::new(store.as_ref());
    let pools = [pool("p", "10.65.0.0/16", 26)];
    let config = IpamConfig::default();

    let a = ipam
        .auto_assign(&request("h-a", "node-0", &pools, config))
        .await
        .unwrap();
    let b = ipam
        .auto_assign(&request("h-b", "node-1", &pools, config))
        .await
        .unwrap();
    let c = ipam
        .auto_assign(&request("h-c", "node-0", &pools, config))
        .await
        .unwrap();
    assert_eq!(a, Ipv4Addr::new(10, 65, 0, 0));
    assert_eq!(c, Ipv4Addr::new(10, 65, 0, 1), "same node, same block");
    assert_eq!(
        b,
        Ipv4Addr::new(10, 65, 0, 64),
        "another node claims the next block"
    );
    assert_eq!(
        ipam.node_blocks("node-0").await.unwrap(),
        vec!["10.65.0.0/26".parse().unwrap()]
    );

    let again = ipam
        .auto_assign(&request("h-a", "node-0", &pools, config))
        .await
        .unwrap();
    assert_eq!(
        again, a,
        "a retried ADD for the same handle gets the same address"
    );

    assert_eq!(ipam.release_by_handle("h-a").await.unwrap(), vec![a]);
    assert!(
        ipam.release_by_handle("h-a").await.unwrap().is_empty(),
        "release is idempotent"
    );
    assert!(ipam.addresses_of("h-a").await.unwrap().is_empty());
    let report = check(
        &ipam.blocks().await.unwrap(),
        &ipam.handles().await.unwrap(),
        None,
    );
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.allocated, 2);
}

#[tokio::test]
async fn exhausted_pools_say_so_and_strict_affinity_forbids_borrowing() {
    let Some((_server, store)) = etcd().await else {
        return;
    };
    let ipam = Ipam::new(store.as_ref());
    // Two blocks of four addresses.
    let pools = [pool("tiny", "10.66.0.0/29", 30)];
    let strict = IpamConfig {
        strict_affinity: true,
        max_blocks_per_host: 1,
    };
    for i in 0..4 {
        ipam.auto_assign(&request(&format!("n0-{i}"), "node-0", &pools, strict))
            .await
            .unwrap();
    }
    // node-0 may not claim a second block and may not borrow.
    let error = ipam
        .auto_assign(&request("n0-extra", "node-0", &pools, strict))
        .await
        .unwrap_err();
    assert!(matches!(error, IpamError::Exhausted { .. }), "{error}");
    assert!(error.to_string().contains("maxBlocksPerHost=1"), "{error}");
    // node-1 takes the other block...
    for i in 0..4 {
        ipam.auto_assign(&request(&format!("n1-{i}"), "node-1", &pools, strict))
            .await
            .unwrap();
    }
    // ...and once node-1 frees an address, node-0 still may not borrow it under strict affinity,
    ipam.release_by_handle("n1-0").await.unwrap();
    let strict_error = ipam
        .auto_assign(&request("n0-borrow", "node-0", &pools, strict))
        .await
        .unwrap_err();
    assert!(
        strict_error.to_string().contains("strictAffinity"),
        "{strict_error}"
    );
    // but can when affinity is not strict.
    let relaxed = IpamConfig {
        strict_affinity: false,
        max_blocks_per_host: 1,
    };
    let borrowed = ipam
        .auto_assign(&request("n0-borrow", "node-0", &pools, relaxed))
        .await
        .unwrap();
    assert_eq!(
        borrowed,
        Ipv4Addr::new(10, 66, 0, 4),
        "borrowed node-1's freed address"
    );

    let error = ipam
        .auto_assign(&request("nobody", "node-2", &[], relaxed))
        .await
        .unwrap_err();
    assert!(matches!(error, IpamError::NoPools { .. }));
}

#[tokio::test]
async fn concurrent_allocation_on_three_nodes_never_double_allocates() {
    let Some((_server, store)) = etcd().await else {
        return;
    };
    let pools = Arc::new([pool("p", "10.67.0.0/24", 28)]);
    let mut tasks = Vec::new();
    for node in 0..3 {
        for n in 0..12 {
            let store = store.clone();
            let pools = pools.clone();
            tasks.push(tokio::spawn(async move {
                let ipam = Ipam::new(store.as_ref());
                let handle = format!("c-{node}-{n}");
                let node_name = format!("node-{node}");
                ipam.auto_assign(&request(
                    &handle,
                    &node_name,
                    pools.as_ref(),
                    IpamConfig::default(),
                ))
                .await
                .map(|ip| (handle, ip))
            }));
        }
    }
    let mut seen = BTreeMap::new();
    for task in tasks {
        let (handle, ip) = task.await.unwrap().unwrap();
        assert!(
            seen.insert(ip, handle.clone()).is_none(),
            "{ip} handed out twice"
        );
    }
    assert_eq!(seen.len(), 36);
    let ipam = Ipam::new(store.as_ref());
    let live: BTreeSet<String> = seen.values().cloned().collect();
    let report = check(
        &ipam.blocks().await.unwrap(),
        &ipam.handles().await.unwrap(),
        Some(&live),
    );
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.allocated, 36);
}

/// A small deterministic generator, so a failing churn can be replayed from its seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[tokio::test]
async fn random_churn_across_nodes_and_pools_leaves_no_leak_or_double_allocation() {
    let Some((_server, store)) = etcd().await else {
        return;
    };
    let ipam = Ipam::new(store.as_ref());
    let pools = [pool("a", "10.68.0.0/26", 29), pool("b", "10.69.0.0/27", 29)];
    let seed = 0x7017_1e5e_ed00_0001;
    let mut rng = XorShift(seed);
    // What a correct IPAM must hold: handle → address.
    let mut model: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    let mut next = 0;
    for step in 0..300 {
        if model.is_empty() || rng.below(3) != 0 {
            let node = format!("node-{}", rng.below(3));
            let handle = format!("churn-{next}");
            next += 1;
            match ipam
                .auto_assign(&request(&handle, &node, &pools, IpamConfig::default()))
                .await
            {
                Ok(ip) => {
                    assert!(
                        !model.values().any(|held| *held == ip),
                        "seed {seed:#x} step {step}: {ip} allocated twice"
                    );
                    model.insert(handle, ip);
                }
                Err(IpamError::Exhausted { .. }) => assert_eq!(model.len(), 96, "exhausted early"),
                Err(e) => panic!("seed {seed:#x} step {step}: {e}"),
            }
        } else {
            let victim = model.keys().nth(rng.below(model.len())).cloned().unwrap();
            let ip = model.remove(&victim).unwrap();
            assert_eq!(ipam.release_by_handle(&victim).await.unwrap(), vec![ip]);
        }
    }
    let live: BTreeSet<String> = model.keys().cloned().collect();
    let report = check(
        &ipam.blocks().await.unwrap(),
        &ipam.handles().await.unwrap(),
        Some(&live),
    );
    assert!(report.is_clean(), "seed {seed:#x}: {:?}", report.problems);
    assert_eq!(report.allocated, model.len());
    for (handle, ip) in &model {
        assert_eq!(ipam.addresses_of(handle).await.unwrap(), vec![*ip]);
    }
}

#[tokio::test]
async fn check_reports_leaks_against_live_workloads() {
    let Some((_server, store)) = etcd().await else {
        return;
    };
    let ipam = Ipam::new(store.as_ref());
    let pools = [pool("p", "10.70.0.0/24", 26)];
    let kept = ipam
        .auto_assign(&request("live", "node-0", &pools, IpamConfig::default()))
        .await
        .unwrap();
    let leaked = ipam
        .auto_assign(&request("gone", "node-0", &pools, IpamConfig::default()))
        .await
        .unwrap();
    let live = BTreeSet::from(["live".to_string()]);
    let report = check(
        &ipam.blocks().await.unwrap(),
        &ipam.handles().await.unwrap(),
        Some(&live),
    );
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let text = report.problems[0].to_string();
    assert!(
        text.contains(&leaked.to_string()) && text.contains("gone"),
        "{text}"
    );
    assert_eq!(ipam.release_ip(leaked).await.unwrap(), Some("gone".into()));
    let report = check(
        &ipam.blocks().await.unwrap(),
        &ipam.handles().await.unwrap(),
        Some(&live),
    );
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(ipam.addresses_of("live").await.unwrap(), vec![kept]);
}
