//! `tortiectl bpf` run as a user runs it.
//!
//! - Always: a pin root that does not exist fails with its path and the fix.
//! - As root, with bpffs mounted at `/sys/fs/bpf`: standalone maps of the pinned maps' types
//!   are created and pinned under a scratch pin root (no eBPF object or agent needed), filled
//!   with known entries, and every view is checked, then `conntrack flush`. Skipped otherwise.
//! - With `TORTIE_TEST_PIN_ROOT` set to a live node's pin root, every read-only view of it must
//!   succeed and print valid JSON, e.g. against a running lab:
//!   `TORTIE_TEST_PIN_ROOT=/sys/fs/bpf/tortie/lab/node-0 cargo test -p tortiectl --test bpf`.
//!   Skipped when unset.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use aya::maps::{lpm_trie::Key, HashMap, LpmTrie, MapData, PerCpuArray, PerCpuValues};
use bpf_maps::{
    iface_flags, map_names, nat_flags,
    pins::maps_dir,
    policy::{ct_flags, direction, verdict, CtKey, CtValue, IpCacheValue, PolicyKey, PolicyValue},
    route_flags, Counter, IfaceValue, NatKey, NatValue, RouteValue, COUNTER_SLOTS,
};

/// `BPF_F_NO_PREALLOC`: LPM tries require it.
const NO_PREALLOC: u32 = 1;
const SEC: u64 = 1_000_000_000;

fn tortiectl(pin_root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tortiectl"))
        .arg("bpf")
        .args(args)
        .env("TORTIE_PIN_ROOT", pin_root)
        .output()
        .expect("run tortiectl")
}

fn ok(pin_root: &Path, args: &[&str]) -> String {
    let out = tortiectl(pin_root, args);
    assert!(
        out.status.success(),
        "tortiectl bpf {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(pin_root: &Path, args: &[&str]) -> String {
    let out = tortiectl(pin_root, args);
    assert!(!out.status.success(), "tortiectl bpf {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(pin_root: &Path, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let text = ok(pin_root, &args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}\n{text}"))
}

#[test]
fn a_missing_pin_root_says_where_and_what_to_do() {
    let root = Path::new("/nonexistent/tortie/lab/node-7");
    let error = fails(root, &["routes"]);
    assert!(error.contains("/nonexistent/tortie/lab/node-7"), "{error}");
    assert!(error.contains("is tortie-agent running"), "{error}");
    assert!(error.contains("TORTIE_PIN_ROOT"), "{error}");
}

/// A pin root on bpffs, removed with everything pinned under it.
struct ScratchPinRoot(PathBuf);

impl ScratchPinRoot {
    fn create() -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: pinning BPF maps needs root");
            return None;
        }
        let root = PathBuf::from(format!("/sys/fs/bpf/tortiectl-test-{}", std::process::id()));
        if let Err(error) = std::fs::create_dir_all(maps_dir(&root)) {
            eprintln!(
                "skipping: cannot create {} ({error}); is bpffs mounted?",
                root.display()
            );
            return None;
        }
        Some(Self(root))
    }

    fn pin(&self, name: &str) -> PathBuf {
        maps_dir(&self.0).join(name)
    }
}

impl Drop for ScratchPinRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn per_cpu(value_on_each: u64) -> PerCpuValues<u64> {
    let cpus = aya::util::nr_cpus().expect("cpu count");
    PerCpuValues::try_from(vec![value_on_each; cpus]).expect("per-cpu values")
}

/// Creates and pins the maps the views read, with known entries. Returns the number of CPUs.
fn populate(root: &ScratchPinRoot, now_ns: u64) -> u64 {
    let mut routes =
        LpmTrie::<MapData, [u8; 4], RouteValue>::create(16, NO_PREALLOC).expect("routes");
    routes
        .insert(
            &Key::new(26, [10, 65, 1, 0]),
            RouteValue {
                flags: route_flags::REMOTE_WORKLOAD
                    | route_flags::IN_POOL
                    | route_flags::TUNNELED_VXLAN,
                next_hop: [192, 168, 0, 11],
                tunnel_mac: [0x66, 0, 0, 0, 0, 0x0b],
                ..RouteValue::default()
            },
            0,
        )
        .expect("route");
    routes
        .insert(
            &Key::new(32, [10, 65, 0, 5]),
            RouteValue {
                flags: route_flags::LOCAL_WORKLOAD | route_flags::IN_POOL,
                ifindex: 1, // `lo`, which exists in every network namespace
                ..RouteValue::default()
            },
            0,
        )
        .expect("route");
    routes.pin(root.pin(map_names::ROUTES)).expect("pin routes");

    let mut ifaces = HashMap::<MapData, u32, IfaceValue>::create(16, 0).expect("ifaces");
    ifaces
        .insert(
            1,
            IfaceValue {
                flags: iface_flags::WORKLOAD | iface_flags::HAS_IPV4 | iface_flags::POLICED_INGRESS,
                ipv4: [10, 65, 0, 5],
                workload_mac: [0x0a, 0, 0, 0, 0, 5],
                host_mac: [0xee; 6],
                stats_slot: 1,
            },
            0,
        )
        .expect("iface");
    ifaces.pin(root.pin(map_names::IFACES)).expect("pin ifaces");

    let mut counters = PerCpuArray::<MapData, u64>::create(COUNTER_SLOTS, 0).expect("counters");
    counters
        .set(Counter::ForwardedLocal as u32, per_cpu(3), 0)
        .expect("counter");
    counters
        .pin(root.pin(map_names::COUNTERS))
        .expect("pin counters");

    let mut conntrack = HashMap::<MapData, CtKey, CtValue>::create(16, 0).expect("conntrack");
    let flow = |protocol: u8, port_a: u16| CtKey {
        addr_a: [10, 65, 0, 5],
        addr_b: [10, 65, 1, 7],
        port_a: port_a.to_be(),
        port_b: 80u16.to_be(),
        protocol,
        _pad: [0; 3],
    };
    conntrack
        .insert(
            flow(6, 40000),
            CtValue {
                created_ns: now_ns - 30 * SEC,
                last_seen_ns: now_ns - SEC,
                flags: ct_flags::OPENED_BY_A
                    | ct_flags::SYN_A
                    | ct_flags::SYN_B
                    | ct_flags::ESTABLISHED,
                epoch: 2,
            },
            0,
        )
        .expect("ct");
    conntrack
        .insert(
            flow(17, 5353),
            CtValue {
                created_ns: now_ns,
                last_seen_ns: now_ns,
                flags: ct_flags::OPENED_BY_A,
                epoch: 2,
            },
            0,
        )
        .expect("ct");
    conntrack
        .pin(root.pin(map_names::CONNTRACK))
        .expect("pin ct");

    let mut nat = HashMap::<MapData, NatKey, NatValue>::create(16, 0).expect("nat");
    nat.insert(
        NatKey {
            src: [10, 65, 0, 5],
            dst: [1, 1, 1, 1],
            src_port: 40001u16.to_be(),
            dst_port: 443u16.to_be(),
            protocol: 6,
            _pad: [0; 3],
        },
        NatValue {
            addr: [192, 168, 0, 10],
            port: 61000u16.to_be(),
            flags: nat_flags::OUTBOUND,
            last_seen_ns: now_ns,
        },
        0,
    )
    .expect("nat");
    nat.pin(root.pin(map_names::NAT)).expect("pin nat");

    let mut ipcache =
        LpmTrie::<MapData, [u8; 4], IpCacheValue>::create(16, NO_PREALLOC).expect("ipcache");
    ipcache
        .insert(
            &Key::new(0, [0, 0, 0, 0]),
            IpCacheValue {
                identity: 1,
                flags: 0,
            },
            0,
        )
        .expect("ipcache entry");
    ipcache
        .pin(root.pin(map_names::IPCACHE))
        .expect("pin ipcache");
    let mut addrs = HashMap::<MapData, [u8; 4], IpCacheValue>::create(16, 0).expect("addresses");
    addrs
        .insert(
            [10, 65, 0, 5],
            IpCacheValue {
                identity: 300,
                flags: 0,
            },
            0,
        )
        .expect("address entry");
    addrs
        .pin(root.pin(map_names::IPCACHE_ADDRS))
        .expect("pin addresses");

    let mut policy =
        LpmTrie::<MapData, PolicyKey, PolicyValue>::create(16, NO_PREALLOC).expect("policy");
    let key = PolicyKey {
        endpoint: 1u32.to_be_bytes(),
        direction: direction::INGRESS,
        identity: 300u32.to_be_bytes(),
        protocol: 6,
        port: 8000u16.to_be_bytes(),
    };
    policy
        .insert(
            &Key::new(90, key),
            PolicyValue {
                verdict: verdict::ALLOW,
                _pad: [0; 3],
                rule: 20,
            },
            0,
        )
        .expect("policy entry");
    policy.pin(root.pin(map_names::POLICY)).expect("pin policy");
    let exact = HashMap::<MapData, PolicyKey, PolicyValue>::create(16, 0).expect("exact policy");
    exact
        .pin(root.pin(map_names::POLICY_EXACT))
        .expect("pin exact policy");

    let mut hits = PerCpuArray::<MapData, u64>::create(64, 0).expect("rule hits");
    hits.set(20, per_cpu(7), 0).expect("hits");
    hits.pin(root.pin(map_names::RULE_HITS)).expect("pin hits");

    aya::util::nr_cpus().expect("cpu count") as u64
}

#[test]
fn every_view_reads_pinned_maps() {
    let Some(root) = ScratchPinRoot::create() else {
        return;
    };
    let populated_ns = tortiectl::bpf::monotonic_now_ns().expect("clock");
    let cpus = populate(&root, populated_ns);
    let pin_root = root.0.as_path();

    let routes = ok(pin_root, &["routes"]);
    assert!(
        routes.contains("10.65.1.0/26  remote-workload,in-pool,vxlan  192.168.0.11"),
        "{routes}"
    );
    assert!(routes.contains("66:00:00:00:00:0b"), "{routes}");
    assert!(routes.contains("1 (lo)"), "{routes}");

    let endpoints = ok(pin_root, &["ifstate"]);
    assert!(
        endpoints.contains("workload,policed-ingress  10.65.0.5"),
        "{endpoints}"
    );
    assert_eq!(json(pin_root, &["endpoints"])[0]["name"], "lo");

    let counters = ok(pin_root, &["counters"]);
    assert!(
        counters.contains(&format!("forwarded_local  {}", 3 * cpus)),
        "{counters}"
    );
    assert!(!counters.contains("arp_replied"), "{counters}");
    assert!(ok(pin_root, &["counters", "--all"]).contains("arp_replied"));

    let dump = ok(pin_root, &["conntrack", "dump"]);
    assert!(
        dump.contains("tcp 10.65.0.5:40000 ⇄ 10.65.1.7:80  10.65.0.5:40000  ESTABLISHED  "),
        "{dump}"
    );
    // The flow was created 30 s before `populated_ns`; however slowly the commands above
    // ran, its age is 30 s plus the time since, never a fixed figure.
    let dumped = json(pin_root, &["conntrack", "dump"]);
    let elapsed_s = (tortiectl::bpf::monotonic_now_ns().expect("clock") - populated_ns) / SEC;
    let age = dumped[0]["age_seconds"].as_u64().expect("age");
    assert!((30..=30 + elapsed_s).contains(&age), "{dumped}");
    assert!(dump.contains("NEW"), "{dump}");
    let stats = ok(pin_root, &["conntrack", "stats"]);
    assert!(stats.contains("2 entries of 16"), "{stats}");

    let nat = ok(pin_root, &["nat"]);
    assert!(
        nat.contains("10.65.0.5:40001 → 1.1.1.1:443  src 192.168.0.10:61000"),
        "{nat}"
    );

    let ipcache = ok(pin_root, &["ipcache"]);
    assert!(ipcache.contains("0.0.0.0/0     1 (world)"), "{ipcache}");

    for endpoint in ["lo", "1"] {
        let policy = json(pin_root, &["policy", endpoint]);
        assert_eq!(policy[0]["ports"], "8000-8063", "{policy}");
        assert_eq!(policy[0]["rule_hits"], 7 * cpus, "{policy}");
    }
    assert_eq!(json(pin_root, &["policy", "2"]), serde_json::json!([]));
    let error = fails(pin_root, &["policy", "no-such-iface0"]);
    assert!(
        error.contains("no interface named no-such-iface0"),
        "{error}"
    );

    assert!(ok(pin_root, &["conntrack", "flush"]).contains("deleted 2 conntrack entries"));
    assert_eq!(
        json(pin_root, &["conntrack", "dump"]),
        serde_json::json!([])
    );

    std::fs::remove_file(root.pin(map_names::IPCACHE)).expect("unpin");
    let error = fails(pin_root, &["ipcache"]);
    assert!(
        error.contains("map TORTIE_IPCACHE is not pinned at"),
        "{error}"
    );
}

#[test]
fn a_live_node_reads_cleanly() {
    let Some(root) = std::env::var_os("TORTIE_TEST_PIN_ROOT") else {
        eprintln!("skipping: set TORTIE_TEST_PIN_ROOT to a node's pin root to run");
        return;
    };
    let root = PathBuf::from(root);
    for view in [
        &["routes"][..],
        &["endpoints"],
        &["counters", "--all"],
        &["conntrack", "dump"],
        &["conntrack", "stats"],
        &["nat"],
        &["ipcache"],
        &["policy"],
    ] {
        json(&root, view);
        ok(&root, view);
    }
}
