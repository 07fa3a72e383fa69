//! The etcd backend against a real etcd (Debian's `etcd-server`), one server per test.
//!
//! Without an `etcd` binary these tests skip on a developer machine and fail in CI.

use std::{
    collections::BTreeSet,
    fmt::Debug,
    future::Future,
    net::{Ipv4Addr, TcpListener},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use tortie_datastore::{
    testing::{etcd_binary, EtcdServer},
    Datastore, DatastoreError, EtcdDatastore, EtcdOptions, KeyValue, WatchEvent, WatchStream,
};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Generous bound for "answers instead of hanging": the request timeout plus slack for a
/// busy machine.
const NO_HANG: Duration = Duration::from_secs(10);

fn options() -> EtcdOptions {
    EtcdOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: REQUEST_TIMEOUT,
        watch_check_interval: Duration::from_secs(1),
        ..Default::default()
    }
}

async fn connect(server: &EtcdServer) -> EtcdDatastore {
    EtcdDatastore::connect(&server.endpoints(), options())
        .await
        .unwrap_or_else(|err| panic!("connect to {}: {err}", server.client_url()))
}

/// The next watch item, failing the test instead of waiting forever.
async fn next_item(stream: &mut WatchStream) -> Option<Result<WatchEvent, DatastoreError>> {
    tokio::time::timeout(NO_HANG, stream.next())
        .await
        .expect("the watch neither delivered nor ended in time")
}

async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    match next_item(stream).await {
        Some(Ok(event)) => event,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

fn put(key: &str, value: &str, revision: i64) -> WatchEvent {
    WatchEvent::Put(KeyValue {
        key: key.into(),
        value: value.into(),
        revision,
    })
}

/// Runs `op` and checks it fails as `Unavailable`, naming the endpoint, without hanging.
async fn expect_unavailable<T: Debug>(
    what: &str,
    endpoint: &str,
    op: impl Future<Output = Result<T, DatastoreError>>,
) {
    let started = Instant::now();
    let result = tokio::time::timeout(NO_HANG, op)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {NO_HANG:?} while etcd was down"));
    match result {
        Err(err @ DatastoreError::Unavailable { .. }) => {
            assert!(err.is_transient());
            let message = err.to_string();
            assert!(
                message.contains(endpoint) && message.contains("etcd"),
                "{what}: the error should name etcd and {endpoint}: {message}"
            );
            eprintln!("{what}: {message} (after {:?})", started.elapsed());
        }
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_update_delete() {
    let Some(server) = EtcdServer::start_local_or_skip("create_get_update_delete") else {
        return;
    };
    let store = connect(&server).await;

    assert_eq!(store.get("/t/a").await.unwrap(), None);
    let created = store.create("/t/a", b"one").await.unwrap();
    assert_eq!(
        store.get("/t/a").await.unwrap(),
        Some(KeyValue {
            key: "/t/a".into(),
            value: b"one".to_vec(),
            revision: created,
        })
    );

    let updated = store.update("/t/a", b"two", created).await.unwrap();
    assert!(updated > created);
    let read = store.get("/t/a").await.unwrap().expect("key exists");
    assert_eq!(
        (read.value.as_slice(), read.revision),
        (&b"two"[..], updated)
    );

    store.delete("/t/a", None).await.unwrap();
    assert_eq!(store.get("/t/a").await.unwrap(), None);
    assert!(matches!(
        store.delete("/t/a", None).await,
        Err(DatastoreError::NotFound { key }) if key == "/t/a"
    ));
}

#[tokio::test]
async fn create_twice_is_already_exists() {
    let Some(server) = EtcdServer::start_local_or_skip("create_twice_is_already_exists") else {
        return;
    };
    let store = connect(&server).await;
    let first = store.create("/t/k", b"first").await.unwrap();
    match store.create("/t/k", b"second").await {
        Err(DatastoreError::AlreadyExists { key }) => assert_eq!(key, "/t/k"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let kv = store.get("/t/k").await.unwrap().unwrap();
    assert_eq!((kv.value.as_slice(), kv.revision), (&b"first"[..], first));
}

#[tokio::test]
async fn update_with_stale_revision_conflicts_and_reports_the_actual_one() {
    let Some(server) = EtcdServer::start_local_or_skip("update_conflict") else {
        return;
    };
    let store = connect(&server).await;
    let r1 = store.create("/t/k", b"1").await.unwrap();
    let r2 = store.update("/t/k", b"2", r1).await.unwrap();
    match store.update("/t/k", b"3", r1).await {
        Err(DatastoreError::Conflict {
            key,
            expected,
            actual,
        }) => {
            assert_eq!((key.as_str(), expected, actual), ("/t/k", r1, Some(r2)));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get("/t/k").await.unwrap().unwrap().value, b"2");

    // A missing key cannot be updated, not even with the "missing" revision 0.
    for expected in [0, r2] {
        match store.update("/t/missing", b"x", expected).await {
            Err(DatastoreError::Conflict { actual: None, .. }) => {}
            other => panic!("expected Conflict with no actual revision, got {other:?}"),
        }
    }
    assert_eq!(store.get("/t/missing").await.unwrap(), None);
}

#[tokio::test]
async fn delete_with_stale_revision_conflicts() {
    let Some(server) = EtcdServer::start_local_or_skip("delete_conflict") else {
        return;
    };
    let store = connect(&server).await;
    let r1 = store.create("/t/k", b"1").await.unwrap();
    let r2 = store.update("/t/k", b"2", r1).await.unwrap();
    match store.delete("/t/k", Some(r1)).await {
        Err(DatastoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (r1, Some(r2))),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(
        store.get("/t/k").await.unwrap().is_some(),
        "a lost CAS must not delete"
    );
    store.delete("/t/k", Some(r2)).await.unwrap();
    assert_eq!(store.get("/t/k").await.unwrap(), None);
    assert!(matches!(
        store.delete("/t/k", Some(r2)).await,
        Err(DatastoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn list_returns_the_prefix_at_one_revision() {
    let Some(server) = EtcdServer::start_local_or_skip("list_snapshot") else {
        return;
    };
    let store = connect(&server).await;
    store.create("/p/b", b"b").await.unwrap();
    store.create("/p/a", b"a").await.unwrap();
    store.create("/q/x", b"x").await.unwrap();
    // Sorts right after "/p/" but is not under it.
    store.create("/p0", b"no").await.unwrap();
    let last = store.create("/p/c", b"c").await.unwrap();

    let listing = store.list("/p/").await.unwrap();
    let keys: Vec<&str> = listing.entries.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/p/a", "/p/b", "/p/c"]);
    assert_eq!(listing.revision, last);
    assert_eq!(listing.entries[2].revision, last);

    let later = store.create("/p/d", b"d").await.unwrap();
    assert_eq!(store.list("/p/").await.unwrap().entries.len(), 4);
    assert_eq!(store.list("/p/").await.unwrap().revision, later);
    assert_eq!(store.list("/nothing/").await.unwrap().entries, vec![]);
    // The empty prefix lists everything.
    assert_eq!(store.list("").await.unwrap().entries.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_list_is_a_snapshot_while_keys_are_written() {
    let Some(server) = EtcdServer::start_local_or_skip("paged_list_snapshot") else {
        return;
    };
    // One key per page, so a listing spans many requests while the writer runs.
    let store = Arc::new(
        EtcdDatastore::connect(
            &server.endpoints(),
            EtcdOptions {
                list_page_size: 1,
                ..options()
            },
        )
        .await
        .unwrap(),
    );
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..80 {
                let key = format!("/w/{i:03}");
                let revision = store.create(&key, b"v").await.unwrap();
                written.push((key, revision));
            }
            written
        })
    };
    let mut listings = Vec::new();
    while !writer.is_finished() {
        listings.push(store.list("/w/").await.unwrap());
    }
    let written = writer.await.unwrap();
    assert!(listings.len() >= 2, "the writer finished before a listing");
    for listing in &listings {
        let expected: BTreeSet<&str> = written
            .iter()
            .filter(|(_, revision)| *revision <= listing.revision)
            .map(|(key, _)| key.as_str())
            .collect();
        let got: BTreeSet<&str> = listing.entries.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            got, expected,
            "listing at revision {} is not that revision's state",
            listing.revision
        );
    }
}

#[tokio::test]
async fn watch_delivers_puts_and_deletes_in_order() {
    let Some(server) = EtcdServer::start_local_or_skip("watch_in_order") else {
        return;
    };
    let store = connect(&server).await;
    let r1 = store.create("/w/a", b"1").await.unwrap();
    let r2 = store.create("/w/b", b"1").await.unwrap();
    store.create("/other/x", b"not watched").await.unwrap();
    store.delete("/w/a", None).await.unwrap();
    let r3 = store.current_revision().await.unwrap();
    let r5 = store.update("/w/b", b"2", r2).await.unwrap();

    let mut watch = store.watch("/w/", r1).await.unwrap();
    assert_eq!(next_event(&mut watch).await, put("/w/a", "1", r1));
    assert_eq!(next_event(&mut watch).await, put("/w/b", "1", r2));
    assert_eq!(
        next_event(&mut watch).await,
        WatchEvent::Delete {
            key: "/w/a".into(),
            revision: r3,
        }
    );
    assert_eq!(next_event(&mut watch).await, put("/w/b", "2", r5));

    // And live changes after catching up.
    let r6 = store.create("/w/c", b"live").await.unwrap();
    assert_eq!(next_event(&mut watch).await, put("/w/c", "live", r6));
}

#[tokio::test]
async fn list_then_watch_from_the_next_revision_misses_nothing() {
    let Some(server) = EtcdServer::start_local_or_skip("list_then_watch") else {
        return;
    };
    let store = connect(&server).await;
    let a = store.create("/s/a", b"a").await.unwrap();
    store.create("/s/b", b"b").await.unwrap();
    let listing = store.list("/s/").await.unwrap();
    assert_eq!(listing.entries.len(), 2);

    // Writes between the listing and the watch.
    let a2 = store.update("/s/a", b"a2", a).await.unwrap();
    store.delete("/s/b", None).await.unwrap();
    let c = store.create("/s/c", b"c").await.unwrap();

    let mut watch = store.watch("/s/", listing.revision + 1).await.unwrap();
    assert_eq!(next_event(&mut watch).await, put("/s/a", "a2", a2));
    assert_eq!(
        next_event(&mut watch).await,
        WatchEvent::Delete {
            key: "/s/b".into(),
            revision: a2 + 1,
        }
    );
    assert_eq!(next_event(&mut watch).await, put("/s/c", "c", c));
    let d = store.create("/s/d", b"d").await.unwrap();
    assert_eq!(next_event(&mut watch).await, put("/s/d", "d", d));

    // A quiet watch on a healthy etcd stays open through several liveness checks.
    let quiet = tokio::time::timeout(Duration::from_millis(3500), watch.next()).await;
    assert!(quiet.is_err(), "a quiet watch delivered {quiet:?}");
    let e = store.create("/s/e", b"e").await.unwrap();
    assert_eq!(next_event(&mut watch).await, put("/s/e", "e", e));
}

#[tokio::test]
async fn watch_from_a_compacted_revision_fails_with_compacted() {
    let Some(server) = EtcdServer::start_local_or_skip("watch_compacted") else {
        return;
    };
    let store = connect(&server).await;
    let first = store.create("/c/k", b"0").await.unwrap();
    let mut revision = first;
    for i in 1..5 {
        revision = store
            .update("/c/k", i.to_string().as_bytes(), revision)
            .await
            .unwrap();
    }
    store.compact(revision).await.unwrap();

    let mut watch = store.watch("/c/", first).await.unwrap();
    match next_item(&mut watch).await {
        Some(Err(DatastoreError::Compacted {
            requested,
            compacted,
        })) => assert_eq!((requested, compacted), (first, revision)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(
        next_item(&mut watch).await.is_none(),
        "a compacted watch ends"
    );

    // Watching from the compaction revision on still works.
    let mut watch = store.watch("/c/", revision).await.unwrap();
    assert_eq!(next_event(&mut watch).await, put("/c/k", "4", revision));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_is_unavailable_and_the_same_client_recovers() {
    let Some(mut server) = EtcdServer::start_local_or_skip("etcd_down") else {
        return;
    };
    let endpoint = server.client_url();
    let store = connect(&server).await;
    let revision = store.create("/o/k", b"before").await.unwrap();
    let mut watch = store.watch("/o/", revision + 1).await.unwrap();

    server.stop();

    // The open watch ends with an error instead of going quiet.
    match next_item(&mut watch).await {
        Some(Err(err)) => assert!(err.is_transient(), "expected Unavailable, got {err:?}"),
        other => panic!("expected the watch to fail, got {other:?}"),
    }
    assert!(next_item(&mut watch).await.is_none());

    expect_unavailable("get", &endpoint, store.get("/o/k")).await;
    expect_unavailable("list", &endpoint, store.list("/o/")).await;
    expect_unavailable("create", &endpoint, store.create("/o/new", b"x")).await;
    expect_unavailable("update", &endpoint, store.update("/o/k", b"x", revision)).await;
    expect_unavailable("delete", &endpoint, store.delete("/o/k", None)).await;
    let watch = async { store.watch("/o/", revision).await.map(|_stream| ()) };
    expect_unavailable("watch", &endpoint, watch).await;

    server.start().unwrap();

    // The same client works again at once: the data survived, writes and watches work.
    let kv = store
        .get("/o/k")
        .await
        .unwrap()
        .expect("data survives a restart");
    assert_eq!(
        (kv.value.as_slice(), kv.revision),
        (&b"before"[..], revision)
    );
    let mut watch = store.watch("/o/", revision + 1).await.unwrap();
    let after = store.update("/o/k", b"after", revision).await.unwrap();
    assert_eq!(next_event(&mut watch).await, put("/o/k", "after", after));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_etcd_times_out_and_watches_notice() {
    let Some(mut server) = EtcdServer::start_local_or_skip("etcd_hung") else {
        return;
    };
    let endpoint = server.client_url();
    let store = connect(&server).await;
    let revision = store.create("/h/k", b"v").await.unwrap();
    let mut watch = store.watch("/h/", revision + 1).await.unwrap();

    // Connections stay open but nothing answers: only timeouts can tell.
    server.pause().unwrap();
    let started = Instant::now();
    expect_unavailable("get while etcd hangs", &endpoint, store.get("/h/k")).await;
    assert!(
        started.elapsed() >= REQUEST_TIMEOUT,
        "a hung etcd cannot answer before the request timeout"
    );
    match next_item(&mut watch).await {
        Some(Err(err)) => assert!(err.is_transient(), "expected Unavailable, got {err:?}"),
        other => panic!("expected the watch check to fail, got {other:?}"),
    }

    server.resume().unwrap();
    assert_eq!(store.get("/h/k").await.unwrap().unwrap().revision, revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compare_and_swap_increments_lose_nothing() {
    const TASKS: u64 = 8;
    const INCREMENTS: u64 = 25;
    let Some(server) = EtcdServer::start_local_or_skip("concurrent_cas") else {
        return;
    };
    let store = Arc::new(connect(&server).await);
    store.create("/counter", b"0").await.unwrap();

    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut conflicts = 0u64;
                for _ in 0..INCREMENTS {
                    loop {
                        let kv = store.get("/counter").await.unwrap().unwrap();
                        let value: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                        let next = (value + 1).to_string();
                        match store.update("/counter", next.as_bytes(), kv.revision).await {
                            Ok(_) => break,
                            Err(DatastoreError::Conflict { .. }) => conflicts += 1,
                            Err(err) => panic!("increment failed: {err}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let kv = store.get("/counter").await.unwrap().unwrap();
    assert_eq!(kv.value, (TASKS * INCREMENTS).to_string().into_bytes());
    eprintln!(
        "{} increments, {conflicts} conflicts retried",
        TASKS * INCREMENTS
    );
}

#[tokio::test]
async fn unusable_configuration_and_unreachable_etcd_say_what_to_do() {
    let no_endpoints = EtcdDatastore::connect(&[], options()).await;
    assert!(matches!(
        no_endpoints,
        Err(DatastoreError::InvalidConfig(_))
    ));
    for bad in [
        "https://127.0.0.1:2379",
        "ftp://x:1",
        "127.0.0.1",
        "http://127.0.0.1:2379/v3",
    ] {
        match EtcdDatastore::connect(&[bad.to_string()], options()).await {
            Err(DatastoreError::InvalidConfig(message)) => assert!(message.contains(bad)),
            other => panic!("{bad}: expected InvalidConfig, got {other:?}"),
        }
    }
    let half_credentials = EtcdOptions {
        username: Some("root".into()),
        ..options()
    };
    assert!(matches!(
        EtcdDatastore::connect(&["127.0.0.1:2379".into()], half_credentials).await,
        Err(DatastoreError::InvalidConfig(_))
    ));

    // A loopback port nobody listens on.
    let port = {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    expect_unavailable(
        "connect",
        &endpoint,
        EtcdDatastore::connect(&[format!("127.0.0.1:{port}")], options()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_used_and_an_expired_token_is_renewed() {
    if let Err(err) = etcd_binary() {
        if std::env::var_os("CI").is_some() {
            panic!("{err}");
        }
        eprintln!("SKIPPED credentials test: {err}");
        return;
    }
    // Tokens expire after one idle second.
    let server = EtcdServer::start_local_with_args(&["--auth-token-ttl=1"]).unwrap();
    {
        let mut admin = etcd_client::Client::connect(server.endpoints(), None)
            .await
            .unwrap();
        admin.user_add("root", "s3cret", None).await.unwrap();
        admin.user_grant_role("root", "root").await.unwrap();
        admin.auth_enable().await.unwrap();
    }
    let with = |username: &str, password: &str| EtcdOptions {
        username: Some(username.into()),
        password: Some(password.into()),
        ..options()
    };

    match EtcdDatastore::connect(&server.endpoints(), with("root", "wrong")).await {
        Err(err @ DatastoreError::Backend(_)) => {
            assert!(err.to_string().contains("password"), "{err}")
        }
        other => panic!("expected a credentials error, got {other:?}"),
    }
    let anonymous = connect(&server).await;
    match anonymous.get("/a/k").await {
        Err(err @ DatastoreError::Backend(_)) => {
            assert!(err.to_string().contains("username and password"), "{err}")
        }
        other => panic!("expected an authentication error, got {other:?}"),
    }

    let store = EtcdDatastore::connect(&server.endpoints(), with("root", "s3cret"))
        .await
        .unwrap();
    let revision = store.create("/a/k", b"v").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The token expired meanwhile; the datastore logs in again by itself.
    let revision = store.update("/a/k", b"w", revision).await.unwrap();
    assert_eq!(store.get("/a/k").await.unwrap().unwrap().revision, revision);
}

/// A network namespace made for one test, deleted on drop.
struct TestNetns(String);

impl TestNetns {
    fn create(name: String) -> TestNetns {
        // A crashed earlier run may have left it behind.
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let run = |args: &[&str]| {
            let status = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(status.success(), "ip {}: {status}", args.join(" "));
        };
        run(&["netns", "add", &name]);
        let netns = TestNetns(name);
        run(&["-n", &netns.0, "link", "set", "lo", "up"]);
        netns
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// Runs `body` on a thread of its own inside `netns`, with a runtime of its own, so its
/// sockets live in that namespace.
fn in_netns<T: Send + 'static>(
    netns: &str,
    body: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = T>>> + Send + 'static,
) -> T {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body())
    })
    .join()
    .unwrap()
}

#[test]
fn etcd_in_a_network_namespace_keeps_its_data_across_restarts() {
    if etcd_binary().is_err() || !nix::unistd::geteuid().is_root() {
        if std::env::var_os("CI").is_some() {
            panic!("this test needs root and etcd, which CI has");
        }
        eprintln!("SKIPPED etcd_in_a_network_namespace: needs root and etcd");
        return;
    }
    let netns = TestNetns::create(format!("tortie-ds-{}", std::process::id()));
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("etcd");
    // Inside the namespace, its own loopback: nothing outside can reach it.
    let mut server =
        EtcdServer::start_in_netns(&netns.0, Ipv4Addr::LOCALHOST, 2379, &data_dir).unwrap();
    assert_eq!(server.endpoints(), ["http://127.0.0.1:2379"]);
    assert!(
        data_dir.join("member").is_dir(),
        "etcd keeps its data where asked"
    );

    let endpoints = server.endpoints();
    let revision = in_netns(&netns.0, move || {
        Box::pin(async move {
            let store = EtcdDatastore::connect(&endpoints, options()).await.unwrap();
            store.create("/n/k", b"in the namespace").await.unwrap()
        })
    });

    server.stop();
    server.start().unwrap();
    let endpoints = server.endpoints();
    let kv = in_netns(&netns.0, move || {
        Box::pin(async move {
            let store = EtcdDatastore::connect(&endpoints, options()).await.unwrap();
            store.get("/n/k").await.unwrap()
        })
    });
    assert_eq!(kv.map(|kv| kv.revision), Some(revision));

    let pid = server.pid().unwrap();
    drop(server);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "etcd {pid} survived drop"
    );
    assert!(
        data_dir.is_dir(),
        "the caller's data dir is the caller's to remove"
    );
}

#[test]
fn a_dropped_local_server_leaves_nothing_behind() {
    let Some(server) = EtcdServer::start_local_or_skip("dropped_server") else {
        return;
    };
    let pid = server.pid().unwrap();
    let data_dir = server.data_dir().to_path_buf();
    assert!(data_dir.is_dir());
    drop(server);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!data_dir.exists(), "{} was not removed", data_dir.display());
}
