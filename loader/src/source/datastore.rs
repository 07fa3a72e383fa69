//! The etcd source: lists IP pools, nodes, workload endpoints and IPAM blocks, watches them,
//! and publishes the translated inputs after every batch of changes.
//!
//! The task runs Calico's list-then-watch loop: list every section, publish, watch each
//! section from its listing's revision + 1, apply events to the raw cache, and publish again
//! once a batch has settled ([`DatastoreSourceConfig::debounce`]). When anything fails — the
//! connection, a listing, a watch — it logs the outage once, keeps the last published inputs
//! (the dataplane stays as it is), retries with a capped backoff, and lists everything again
//! on the way back, so nothing that changed meanwhile is missed.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::{stream, StreamExt};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tortie_datastore::{
    Datastore, DatastoreError, EtcdDatastore, EtcdOptions, WatchEvent, WatchStream,
};
use tracing::Instrument;

use super::Inputs;
use crate::model::{
    from_resources::{translate, ResourceCache, Section},
    Translation,
};

/// First retry delay after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// A session that lasted this long was healthy: the next failure retries quickly again.
/// Shorter sessions keep the backoff growing, so a watch that keeps breaking right after a
/// successful listing cannot make the agent list the whole datastore ten times a second.
const STABLE_SESSION: Duration = Duration::from_secs(5);

/// How the source reaches the datastore and how it paces itself.
#[derive(Clone, Debug)]
pub struct DatastoreSourceConfig {
    /// etcd client URLs (`http://10.99.0.2:2379`).
    pub endpoints: Vec<String>,
    /// This node's name: only its workload endpoints are kept.
    pub node_name: String,
    /// Connection settings.
    pub etcd: EtcdOptions,
    /// How long a batch of changes may gather before the inputs are published: one
    /// translation for a burst of writes (a pod's endpoint and its block) instead of one each.
    pub debounce: Duration,
    /// The longest wait between two attempts while the datastore is unreachable.
    pub max_backoff: Duration,
}

impl DatastoreSourceConfig {
    /// Settings for an agent: etcd timeouts short enough that an outage is noticed within
    /// seconds, a 10 ms debounce and retries at most 2 s apart.
    pub fn new(endpoints: Vec<String>, node_name: impl Into<String>) -> Self {
        DatastoreSourceConfig {
            endpoints,
            node_name: node_name.into(),
            etcd: EtcdOptions {
                connect_timeout: Duration::from_secs(3),
                request_timeout: Duration::from_secs(5),
                watch_check_interval: Duration::from_secs(5),
                ..EtcdOptions::default()
            },
            debounce: Duration::from_millis(10),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Whether the source currently reaches the datastore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Starting; no attempt has finished yet.
    Connecting,
    /// Listed and watching: published inputs follow the datastore.
    Connected,
    /// Failing since `since`; the last published inputs (if any) stay in force.
    Unreachable {
        /// When the outage began.
        since: SystemTime,
        /// The first failure of the outage.
        reason: String,
    },
    /// The configuration cannot work (a malformed endpoint URL); the source has stopped.
    Failed {
        /// What is wrong.
        reason: String,
    },
}

impl std::fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionState::Connecting => f.write_str("connecting"),
            ConnectionState::Connected => f.write_str("connected"),
            ConnectionState::Unreachable { since, reason } => {
                let seconds = since.elapsed().unwrap_or_default().as_secs();
                write!(f, "unreachable for {seconds}s ({reason})")
            }
            ConnectionState::Failed { reason } => write!(f, "stopped: {reason}"),
        }
    }
}

/// A running datastore source. Dropping it stops the task.
#[derive(Debug)]
pub struct DatastoreSource {
    inputs: watch::Receiver<Option<Arc<Inputs>>>,
    state: watch::Receiver<ConnectionState>,
    task: JoinHandle<()>,
}

impl DatastoreSource {
    /// Starts the source on the current tokio runtime.
    pub fn spawn(config: DatastoreSourceConfig) -> DatastoreSource {
        let (inputs_tx, inputs) = watch::channel(None);
        let (state_tx, state) = watch::channel(ConnectionState::Connecting);
        let span = tracing::info_span!("datastore", endpoints = %config.endpoints.join(","));
        let max_backoff = config.max_backoff;
        let task = tokio::spawn(
            Worker {
                config,
                inputs: inputs_tx,
                outage: Outage::new(state_tx),
                backoff: Backoff::new(MIN_BACKOFF, max_backoff),
                cache: ResourceCache::default(),
                reported: BTreeSet::new(),
                resyncs: 0,
            }
            .run()
            .instrument(span),
        );
        DatastoreSource {
            inputs,
            state,
            task,
        }
    }

    /// The published inputs: `None` until the first complete listing, then always the
    /// latest. `changed()` on it wakes on every new value.
    pub fn inputs(&self) -> watch::Receiver<Option<Arc<Inputs>>> {
        self.inputs.clone()
    }

    /// The connection state, updated as it changes.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }
}

impl Drop for DatastoreSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The source task's state.
struct Worker {
    config: DatastoreSourceConfig,
    inputs: watch::Sender<Option<Arc<Inputs>>>,
    outage: Outage,
    backoff: Backoff,
    cache: ResourceCache,
    /// Warnings already logged, so that a bad object is reported once, not per batch.
    reported: BTreeSet<String>,
    /// Completed listings, to tell the first from resyncs in logs.
    resyncs: u64,
}

/// How a session ended.
struct SessionEnd {
    /// Whether it got as far as a complete listing.
    listed: bool,
    error: DatastoreError,
}

impl Worker {
    async fn run(mut self) {
        // The client reconnects by itself once built, so it is built once; only building it
        // can fail for good (a malformed URL), and that is reported and ends the source.
        let store = loop {
            match EtcdDatastore::connect(&self.config.endpoints, self.config.etcd.clone()).await {
                Ok(store) => break store,
                Err(DatastoreError::InvalidConfig(reason)) => {
                    tracing::error!("cannot use the datastore: {reason}; fix --etcd-endpoints");
                    self.outage.fail_for_good(reason);
                    return;
                }
                Err(error) => {
                    self.outage.failed(&error);
                    tokio::time::sleep(self.backoff.next()).await;
                }
            }
        };
        loop {
            let started = Instant::now();
            let end = self.session(&store).await;
            if started.elapsed() >= STABLE_SESSION {
                self.backoff.reset();
            }
            if end.listed {
                // The watch broke but etcd may be fine (a leader change, a compaction): list
                // again; the outage is only declared if that fails too.
                tracing::debug!("watch ended ({}); listing again", end.error);
            } else {
                self.outage.failed(&end.error);
            }
            tokio::time::sleep(self.backoff.next()).await;
        }
    }

    /// Lists every section, publishes, then follows the watches until one fails.
    async fn session(&mut self, store: &dyn Datastore) -> SessionEnd {
        let not_listed = |error| SessionEnd {
            listed: false,
            error,
        };
        let mut listings = Vec::with_capacity(Section::ALL.len());
        for section in Section::ALL {
            match store.list(&section.prefix()).await {
                Ok(listing) => listings.push((section, listing)),
                Err(error) => return not_listed(error),
            }
        }
        // The cache changes only once every section is listed, so a half-done resync never
        // publishes a datastore with, say, the nodes but not yet their blocks.
        let mut watches = Vec::with_capacity(listings.len());
        for (section, listing) in listings {
            watches.push((section, listing.revision + 1));
            self.cache.replace(
                section,
                listing.entries.into_iter().map(|kv| (kv.key, kv.value)),
            );
        }
        self.resyncs += 1;
        let first = self.resyncs == 1;
        let changed = self.publish();
        if first || changed {
            tracing::info!(
                keys = self.cache.len(),
                "{} datastore listing applied",
                if first { "first" } else { "fresh" }
            );
        }
        self.outage.recovered();

        let mut streams: Vec<WatchStream> = Vec::with_capacity(watches.len());
        for (section, from) in watches {
            match store.watch(&section.prefix(), from).await {
                // A watch that ends without an error would silently stop one section's
                // updates (select_all just drops it); make its end an error like any other.
                Ok(watch) => streams.push(Box::pin(watch.chain(stream::once(async move {
                    Err(DatastoreError::Backend(format!(
                        "the watch on {} ended",
                        section.prefix()
                    )))
                })))),
                Err(error) => {
                    return SessionEnd {
                        listed: true,
                        error,
                    }
                }
            }
        }
        let mut events = stream::select_all(streams);
        loop {
            let error = match events.next().await {
                Some(Ok(event)) => {
                    // What the batch applied is published even when an error ended it.
                    let error = self.batch(event, &mut events).await;
                    self.publish();
                    error
                }
                Some(Err(error)) => Some(error),
                None => Some(DatastoreError::Backend("every watch ended".into())),
            };
            if let Some(error) = error {
                return SessionEnd {
                    listed: true,
                    error,
                };
            }
        }
    }

    /// Applies `first` and whatever else arrives within the debounce window; returns the
    /// error that ended the watch, if one did.
    async fn batch(
        &mut self,
        first: WatchEvent,
        events: &mut (impl futures::Stream<Item = Result<WatchEvent, DatastoreError>> + Unpin),
    ) -> Option<DatastoreError> {
        self.apply(first);
        let deadline = Instant::now() + self.config.debounce;
        loop {
            match tokio::time::timeout_at(deadline, events.next()).await {
                Err(_elapsed) => return None,
                Ok(Some(Ok(event))) => self.apply(event),
                Ok(Some(Err(error))) => return Some(error),
                Ok(None) => return Some(DatastoreError::Backend("every watch ended".into())),
            }
        }
    }

    fn apply(&mut self, event: WatchEvent) {
        match event {
            WatchEvent::Put(kv) => {
                self.cache.put(kv.key, kv.value);
            }
            WatchEvent::Delete { key, .. } => {
                self.cache.remove(&key);
            }
        }
    }

    /// Translates the cache and publishes the inputs if they differ from the last ones;
    /// returns whether they did.
    fn publish(&mut self) -> bool {
        let Translation {
            cluster,
            endpoints,
            policy,
            bgp,
            warnings,
        } = translate(&self.cache, &self.config.node_name);
        for warning in &warnings {
            if !self.reported.contains(warning) {
                tracing::warn!("{warning}");
            }
        }
        self.reported = warnings.into_iter().collect();
        let inputs = Inputs {
            cluster,
            endpoints,
            policy,
            bgp,
        };
        let changed = self.inputs.send_if_modified(|current| {
            if current.as_deref() == Some(&inputs) {
                return false;
            }
            tracing::debug!(
                pools = inputs.cluster.ip_pools.len(),
                nodes = inputs.cluster.nodes.len(),
                endpoints = inputs.endpoints.len(),
                "inputs published"
            );
            *current = Some(Arc::new(inputs));
            true
        });
        changed
    }
}

/// Tracks one outage at a time so that it is logged when it starts and when it ends, not
/// at every retry.
struct Outage {
    state: watch::Sender<ConnectionState>,
    since: Option<(Instant, SystemTime)>,
}

impl Outage {
    fn new(state: watch::Sender<ConnectionState>) -> Self {
        Outage { state, since: None }
    }

    fn failed(&mut self, error: &DatastoreError) {
        if self.since.is_some() {
            tracing::debug!("datastore still unreachable: {error}");
            return;
        }
        let now = (Instant::now(), SystemTime::now());
        self.since = Some(now);
        tracing::warn!(
            "{error}; keeping the last inputs (the dataplane stays as it is) and retrying"
        );
        self.state.send_replace(ConnectionState::Unreachable {
            since: now.1,
            reason: error.to_string(),
        });
    }

    fn recovered(&mut self) {
        if let Some((since, _)) = self.since.take() {
            tracing::info!(
                "datastore reachable again after {:.1}s; inputs resynced",
                since.elapsed().as_secs_f64()
            );
        }
        self.state.send_if_modified(|state| {
            let was = std::mem::replace(state, ConnectionState::Connected);
            was != ConnectionState::Connected
        });
    }

    fn fail_for_good(&mut self, reason: String) {
        self.state.send_replace(ConnectionState::Failed { reason });
    }
}

/// Exponential backoff from `min`, doubling up to `max`.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    fn next(&mut self) -> Duration {
        let delay = self.next.min(self.max.max(self.min));
        self.next = (self.next * 2).min(self.max.max(self.min));
        delay
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<u128> = (0..7).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(100));
    }
}
