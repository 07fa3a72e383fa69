//! The etcd v3 backend of [`Datastore`].
//!
//! [`EtcdDatastore`] speaks etcd's gRPC API through the `etcd-client` crate. Every operation
//! is bounded by [`EtcdOptions::request_timeout`]; connection trouble becomes
//! [`DatastoreError::Unavailable`] naming the endpoints, so callers retry with backoff
//! ([`DatastoreError::is_transient`]). The underlying gRPC channel reconnects by itself: after
//! etcd comes back, the same `EtcdDatastore` works again without being rebuilt.
//!
//! A write that fails as `Unavailable` because etcd did not answer in time may still have
//! been applied: retried, it can meet its own earlier success as `AlreadyExists` or
//! `Conflict`, so read the key again before deciding it lost.
//!
//! # Watching without missing anything
//!
//! A watch ends when etcd restarts, the connection breaks or the start revision was
//! compacted, so a consumer runs a list-then-watch loop:
//!
//! ```no_run
//! # use futures::StreamExt;
//! # use tortie_datastore::{Datastore, DatastoreError};
//! # async fn run(store: &dyn Datastore) -> Result<(), DatastoreError> {
//! loop {
//!     // Retry this with backoff while it is `Unavailable`.
//!     let listing = store.list("/calico/resources/v3/projectcalico.org/ippools/").await?;
//!     // ... replace the local cache with `listing.entries` ...
//!     let mut changes = store
//!         .watch("/calico/resources/v3/projectcalico.org/ippools/", listing.revision + 1)
//!         .await?;
//!     while let Some(change) = changes.next().await {
//!         match change {
//!             Ok(_event) => { /* apply the event to the cache */ }
//!             // Compacted, Unavailable: list again.
//!             Err(_) => break,
//!         }
//!     }
//! }
//! # }
//! ```

use std::{fmt, future::Future, sync::Mutex, time::Duration};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tokio::time::timeout;

use crate::{Datastore, DatastoreError, KeyValue, Listing, Revision, WatchStream};

mod errors;
mod watch;

use errors::{fmt_duration, is_stale_token, map_error, unavailable};
use watch::WatchState;

/// How to reach etcd.
///
/// Build it with struct update syntax so new fields (TLS settings, for one) do not break
/// callers: `EtcdOptions { request_timeout: Duration::from_secs(3), ..Default::default() }`.
#[derive(Clone)]
pub struct EtcdOptions {
    /// How long [`EtcdDatastore::connect`] waits for etcd to answer (default 5 s).
    pub connect_timeout: Duration,
    /// How long one operation may take before it fails as
    /// [`DatastoreError::Unavailable`] (default 10 s).
    pub request_timeout: Duration,
    /// etcd user, when etcd has authentication enabled; needs `password` too.
    pub username: Option<String>,
    /// Password of `username`.
    pub password: Option<String>,
    /// How often a quiet watch checks that etcd still answers (default 10 s). A watch whose
    /// check is not answered within another interval ends with
    /// [`DatastoreError::Unavailable`], so a dead connection is noticed even when the peer
    /// vanished without closing it.
    pub watch_check_interval: Duration,
    /// How many keys [`Datastore::list`] fetches per request (default 500). Every page is
    /// read at the revision of the first one, so the listing stays one consistent snapshot.
    pub list_page_size: u32,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            username: None,
            password: None,
            watch_check_interval: Duration::from_secs(10),
            list_page_size: 500,
        }
    }
}

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("watch_check_interval", &self.watch_check_interval)
            .field("list_page_size", &self.list_page_size)
            .finish()
    }
}

/// A [`Datastore`] on etcd v3 (etcd 3.4 or later).
///
/// Cheap to share behind an `Arc`; every method takes `&self` and may run concurrently.
pub struct EtcdDatastore {
    /// Replaced when an expired auth token forces a new login.
    client: Mutex<Client>,
    endpoints: Vec<String>,
    options: EtcdOptions,
}

impl fmt::Debug for EtcdDatastore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdDatastore")
            .field("endpoints", &self.endpoints)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl EtcdDatastore {
    /// Connects to etcd at `endpoints` (`http://10.99.0.2:2379`, or `10.99.0.2:2379`) and
    /// checks that it answers within [`EtcdOptions::connect_timeout`].
    ///
    /// Fails with [`DatastoreError::InvalidConfig`] for unusable endpoints or options and with
    /// [`DatastoreError::Unavailable`] when etcd does not answer; the latter is worth retrying.
    /// With several endpoints, requests are spread over those that answer.
    pub async fn connect(
        endpoints: &[String],
        options: EtcdOptions,
    ) -> Result<Self, DatastoreError> {
        let endpoints = normalize_endpoints(endpoints)?;
        if options.username.is_some() != options.password.is_some() {
            return Err(DatastoreError::InvalidConfig(
                "etcd username and password must be given together".into(),
            ));
        }
        if options.request_timeout.is_zero() || options.connect_timeout.is_zero() {
            return Err(DatastoreError::InvalidConfig(
                "etcd connect and request timeouts must be longer than zero".into(),
            ));
        }
        let client = open_client(&endpoints, &options).await?;
        let store = EtcdDatastore {
            client: Mutex::new(client),
            endpoints,
            options,
        };
        // The channel connects lazily: ask etcd something so that a wrong address fails here,
        // where the user is looking, instead of at the first real request.
        let deadline = store.options.connect_timeout;
        store
            .call_within(deadline, "connect", |mut client| async move {
                client.status().await.map(|_| ())
            })
            .await?;
        Ok(store)
    }

    /// The endpoints this datastore talks to, as URLs.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Discards the history before `revision`: watches from older revisions fail with
    /// [`DatastoreError::Compacted`] afterwards. etcd is usually compacted by its own
    /// `--auto-compaction-*` settings; this is for maintenance tools and tests.
    pub async fn compact(&self, revision: Revision) -> Result<(), DatastoreError> {
        self.call("compact", |mut client| async move {
            client.compact(revision, None).await.map(|_| ())
        })
        .await
    }

    /// The current store revision (the revision of the latest write).
    pub async fn current_revision(&self) -> Result<Revision, DatastoreError> {
        self.call("read the current revision", |mut client| async move {
            let resp = client
                .get("\0", Some(GetOptions::new().with_count_only()))
                .await?;
            Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
        })
        .await
    }

    fn client(&self) -> Client {
        self.client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn endpoints_display(&self) -> String {
        self.endpoints.join(",")
    }

    fn unavailable(&self, reason: String) -> DatastoreError {
        unavailable(&self.endpoints, reason)
    }

    /// Runs `op` within the request timeout.
    async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, DatastoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_within(self.options.request_timeout, what, op)
            .await
    }

    /// Runs `op` within `limit`, mapping failures to [`DatastoreError`]. An expired auth token
    /// is renewed once and `op` retried: etcd rejects such requests before applying them, so
    /// the retry cannot apply a write twice.
    async fn call_within<T, F, Fut>(
        &self,
        limit: Duration,
        what: &str,
        op: F,
    ) -> Result<T, DatastoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut logged_in_again = false;
        loop {
            let result = timeout(limit, op(self.client())).await;
            match result {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => {
                    if !logged_in_again && self.options.username.is_some() && is_stale_token(&err) {
                        tracing::info!(endpoints = %self.endpoints_display(), "etcd auth token expired; logging in again");
                        self.log_in_again().await?;
                        logged_in_again = true;
                        continue;
                    }
                    return Err(map_error(&self.endpoints, what, err));
                }
                Err(_elapsed) => {
                    return Err(self.unavailable(format!(
                    "{what}: no answer within {}; is etcd running at {} and reachable from here?",
                    fmt_duration(limit),
                    self.endpoints_display()
                )))
                }
            }
        }
    }

    async fn log_in_again(&self) -> Result<(), DatastoreError> {
        let client = open_client(&self.endpoints, &self.options).await?;
        *self
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = client;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Datastore for EtcdDatastore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, DatastoreError> {
        let resp = self
            .call(&format!("get {key}"), |mut client| async move {
                client.get(key, None).await
            })
            .await?;
        resp.kvs().first().map(convert_kv).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Listing, DatastoreError> {
        // A listing pinned to a revision fails if that revision is compacted between two
        // pages; start over then, a few times.
        const ATTEMPTS: usize = 3;
        let what = format!("list {prefix}");
        let mut last_error = None;
        for _ in 0..ATTEMPTS {
            match self.list_pages(prefix, &what).await {
                Ok(listing) => return Ok(listing),
                Err(err @ DatastoreError::Compacted { .. }) => last_error = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            DatastoreError::Backend(format!("{what}: etcd kept compacting during the listing"))
        }))
    }

    async fn create(&self, key: &str, value: &[u8]) -> Result<Revision, DatastoreError> {
        let resp = self
            .call(&format!("create {key}"), |mut client| async move {
                let txn = Txn::new()
                    .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, value, None)]);
                client.txn(txn).await
            })
            .await?;
        if !resp.succeeded() {
            return Err(DatastoreError::AlreadyExists { key: key.into() });
        }
        header_revision(resp.header(), key)
    }

    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Revision,
    ) -> Result<Revision, DatastoreError> {
        let resp = self
            .call(&format!("update {key}"), |mut client| async move {
                // The key must exist: a missing key has mod_revision 0, so comparing the
                // revision alone would let `expected == 0` create it.
                let txn = Txn::new()
                    .when([
                        Compare::create_revision(key, CompareOp::Greater, 0),
                        Compare::mod_revision(key, CompareOp::Equal, expected),
                    ])
                    .and_then([TxnOp::put(key, value, None)])
                    .or_else([TxnOp::get(key, Some(GetOptions::new().with_keys_only()))]);
                client.txn(txn).await
            })
            .await?;
        if !resp.succeeded() {
            return Err(DatastoreError::Conflict {
                key: key.into(),
                expected,
                actual: revision_in_failure_branch(&resp.op_responses()),
            });
        }
        header_revision(resp.header(), key)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(), DatastoreError> {
        let what = format!("delete {key}");
        let Some(expected) = expected else {
            let resp = self
                .call(
                    &what,
                    |mut client| async move { client.delete(key, None).await },
                )
                .await?;
            return if resp.deleted() == 0 {
                Err(DatastoreError::NotFound { key: key.into() })
            } else {
                Ok(())
            };
        };
        let resp = self
            .call(&what, |mut client| async move {
                let txn = Txn::new()
                    .when([
                        Compare::create_revision(key, CompareOp::Greater, 0),
                        Compare::mod_revision(key, CompareOp::Equal, expected),
                    ])
                    .and_then([TxnOp::delete(key, None::<DeleteOptions>)])
                    .or_else([TxnOp::get(key, Some(GetOptions::new().with_keys_only()))]);
                client.txn(txn).await
            })
            .await?;
        if resp.succeeded() {
            return Ok(());
        }
        match revision_in_failure_branch(&resp.op_responses()) {
            None => Err(DatastoreError::NotFound { key: key.into() }),
            actual => Err(DatastoreError::Conflict {
                key: key.into(),
                expected,
                actual,
            }),
        }
    }

    /// Changes under `prefix` from revision `from` on. `from <= 0` means "from now", which
    /// can miss changes made before the watch started; use a listing's `revision + 1`.
    ///
    /// A compacted `from` shows up as a [`DatastoreError::Compacted`] item on the stream.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, DatastoreError> {
        let (start, end) = prefix_range(prefix);
        let what = format!("watch {prefix}");
        let (watcher, stream) = self
            .call(&what, |mut client| {
                let options = WatchOptions::new()
                    .with_range(end.clone())
                    .with_start_revision(from.max(0));
                let start = start.clone();
                async move { client.watch(start, Some(options)).await }
            })
            .await?;
        let state = WatchState::new(
            watcher,
            stream,
            from,
            what,
            self.endpoints.clone(),
            self.options.watch_check_interval,
        );
        Ok(Box::pin(futures::stream::unfold(state, WatchState::next)))
    }
}

impl EtcdDatastore {
    async fn list_pages(&self, prefix: &str, what: &str) -> Result<Listing, DatastoreError> {
        let (mut start, end) = prefix_range(prefix);
        let page_size = i64::from(self.options.list_page_size.max(1));
        let mut listing = Listing::default();
        loop {
            let pinned = listing.revision;
            let resp = self
                .call(what, |mut client| {
                    let mut options = GetOptions::new()
                        .with_range(end.clone())
                        .with_limit(page_size);
                    if pinned > 0 {
                        options = options.with_revision(pinned);
                    }
                    let start = start.clone();
                    async move { client.get(start, Some(options)).await }
                })
                .await
                .map_err(|err| match err {
                    // etcd does not say how far it compacted; past `pinned`, at least.
                    DatastoreError::Backend(msg) if msg.contains("compacted") => {
                        DatastoreError::Compacted {
                            requested: pinned,
                            compacted: pinned + 1,
                        }
                    }
                    other => other,
                })?;
            if listing.revision == 0 {
                listing.revision = header_revision(resp.header(), prefix)?;
            }
            for kv in resp.kvs() {
                listing.entries.push(convert_kv(kv)?);
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    // The next page starts right after the last key.
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok(listing),
            }
        }
    }
}

async fn open_client(
    endpoints: &[String],
    options: &EtcdOptions,
) -> Result<Client, DatastoreError> {
    let mut connect = ConnectOptions::new();
    if let (Some(user), Some(password)) = (&options.username, &options.password) {
        connect = connect.with_user(user.clone(), password.clone());
    }
    // Without credentials this only builds the lazy channel; with them it logs in.
    match timeout(
        options.connect_timeout,
        Client::connect(endpoints, Some(connect)),
    )
    .await
    {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(err)) => Err(map_error(endpoints, "connect", err)),
        Err(_elapsed) => Err(unavailable(
            endpoints,
            format!(
                "connect: no answer within {}; is etcd running at {} and reachable from here?",
                fmt_duration(options.connect_timeout),
                endpoints.join(",")
            ),
        )),
    }
}

/// Turns `host:port` into `http://host:port` and rejects what this build cannot use.
fn normalize_endpoints(endpoints: &[String]) -> Result<Vec<String>, DatastoreError> {
    if endpoints.is_empty() {
        return Err(DatastoreError::InvalidConfig(
            "no etcd endpoints given; pass at least one, like http://10.99.0.2:2379".into(),
        ));
    }
    endpoints
        .iter()
        .map(|endpoint| {
            let endpoint = endpoint.trim();
            let url = if endpoint.starts_with("http://") {
                endpoint.to_string()
            } else if endpoint.starts_with("https://") {
                return Err(DatastoreError::InvalidConfig(format!(
                    "etcd endpoint {endpoint}: TLS is not supported yet; use an http:// endpoint"
                )));
            } else if endpoint.contains("://") {
                return Err(DatastoreError::InvalidConfig(format!(
                    "etcd endpoint {endpoint}: expected http://HOST:PORT"
                )));
            } else {
                format!("http://{endpoint}")
            };
            let authority = &url["http://".len()..];
            let authority = authority.strip_suffix('/').unwrap_or(authority);
            let has_port = authority
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !has_port || authority.contains('/') {
                return Err(DatastoreError::InvalidConfig(format!(
                    "etcd endpoint {endpoint}: expected http://HOST:PORT, like http://10.99.0.2:2379"
                )));
            }
            Ok(format!("http://{authority}"))
        })
        .collect()
}

/// The etcd key range of everything under `prefix`: `[start, end)`.
fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        // etcd rejects an empty key; "\0" to "\0" means every key.
        return (vec![0], vec![0]);
    }
    let start = prefix.as_bytes().to_vec();
    let mut end = start.clone();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (start, end);
        }
    }
    // A prefix of only 0xff bytes: everything from it on.
    (start, vec![0])
}

pub(super) fn key_string(key: &[u8]) -> Result<String, DatastoreError> {
    String::from_utf8(key.to_vec()).map_err(|_| {
        DatastoreError::Backend(format!(
            "etcd holds a key that is not UTF-8: {}",
            String::from_utf8_lossy(key)
        ))
    })
}

fn convert_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue, DatastoreError> {
    Ok(KeyValue {
        key: key_string(kv.key())?,
        value: kv.value().to_vec(),
        revision: kv.mod_revision(),
    })
}

fn header_revision(
    header: Option<&etcd_client::ResponseHeader>,
    key: &str,
) -> Result<Revision, DatastoreError> {
    header.map(|h| h.revision()).ok_or_else(|| {
        DatastoreError::Backend(format!("etcd answered for {key} without a response header"))
    })
}

/// The revision the `get` in a failed transaction's else-branch found, `None` if the key is
/// gone.
fn revision_in_failure_branch(responses: &[TxnOpResponse]) -> Option<Revision> {
    responses.iter().find_map(|resp| match resp {
        TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.mod_revision()),
        _ => None,
    })
}
