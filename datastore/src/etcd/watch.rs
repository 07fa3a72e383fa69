//! The stream behind [`EtcdDatastore::watch`](super::EtcdDatastore): etcd's watch responses
//! turned into [`WatchEvent`]s, and a liveness check for quiet watches.

use std::{collections::VecDeque, pin::Pin, time::Duration};

use etcd_client::EventType;
use futures::StreamExt;
use tokio::time::{Instant, Sleep};

use super::{
    errors::{fmt_duration, map_error, unavailable},
    key_string,
};
use crate::{DatastoreError, KeyValue, Revision, WatchEvent};

/// The state behind a [`WatchStream`]: buffered events and the liveness check.
pub(super) struct WatchState {
    /// Kept to ask for progress reports; dropping it with the stream cancels the watch.
    watcher: etcd_client::Watcher,
    stream: etcd_client::WatchStream,
    pending: VecDeque<WatchEvent>,
    /// Why the watch ended, handed out after the pending events.
    ended: Option<DatastoreError>,
    finished: bool,
    requested: Revision,
    what: String,
    endpoints: Vec<String>,
    check_interval: Duration,
    next_check: Pin<Box<Sleep>>,
    /// A progress request was sent and nothing has arrived since.
    check_outstanding: bool,
}

type WatchItem = Result<WatchEvent, DatastoreError>;

impl WatchState {
    /// The state of a watch etcd just created from revision `requested`.
    pub(super) fn new(
        watcher: etcd_client::Watcher,
        stream: etcd_client::WatchStream,
        requested: Revision,
        what: String,
        endpoints: Vec<String>,
        check_interval: Duration,
    ) -> WatchState {
        WatchState {
            watcher,
            stream,
            pending: VecDeque::new(),
            ended: None,
            finished: false,
            requested,
            what,
            endpoints,
            check_interval,
            next_check: Box::pin(tokio::time::sleep(check_interval)),
            check_outstanding: false,
        }
    }

    /// The next item for the stream, and the state to continue from.
    pub(super) async fn next(mut self) -> Option<(WatchItem, WatchState)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if let Some(err) = self.ended.take() {
                self.finished = true;
                return Some((Err(err), self));
            }
            if self.finished {
                return None;
            }
            // Events first: a consumer that was busy finds them queued, not a stale check.
            tokio::select! {
                biased;
                message = self.stream.next() => {
                    self.check_outstanding = false;
                    self.schedule_check();
                    self.absorb(message);
                }
                () = &mut self.next_check => self.check_liveness().await,
            }
        }
    }

    fn schedule_check(&mut self) {
        let deadline = Instant::now() + self.check_interval;
        self.next_check.as_mut().reset(deadline);
    }

    /// Asks etcd for a progress report; ends the watch if the previous one went unanswered.
    async fn check_liveness(&mut self) {
        if self.check_outstanding {
            self.ended = Some(unavailable(
                &self.endpoints,
                format!(
                    "{}: etcd did not answer a watch check within {}; is etcd running at {}?",
                    self.what,
                    fmt_duration(self.check_interval),
                    self.endpoints.join(","),
                ),
            ));
            return;
        }
        if let Err(err) = self.watcher.request_progress().await {
            self.ended = Some(map_error(&self.endpoints, &self.what, err));
            return;
        }
        self.check_outstanding = true;
        self.schedule_check();
    }

    /// Queues the events of one watch response, or records why the watch ended.
    fn absorb(&mut self, message: Option<Result<etcd_client::WatchResponse, etcd_client::Error>>) {
        let resp = match message {
            Some(Ok(resp)) => resp,
            Some(Err(err)) => {
                self.ended = Some(map_error(&self.endpoints, &self.what, err));
                return;
            }
            None => {
                self.ended = Some(unavailable(
                    &self.endpoints,
                    format!("{}: etcd closed the watch stream", self.what),
                ));
                return;
            }
        };
        if resp.compact_revision() > 0 {
            self.ended = Some(DatastoreError::Compacted {
                requested: self.requested,
                compacted: resp.compact_revision(),
            });
            return;
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let key = match key_string(kv.key()) {
                Ok(key) => key,
                Err(err) => {
                    self.ended = Some(err);
                    return;
                }
            };
            self.pending.push_back(match event.event_type() {
                EventType::Put => WatchEvent::Put(KeyValue {
                    key,
                    value: kv.value().to_vec(),
                    revision: kv.mod_revision(),
                }),
                EventType::Delete => WatchEvent::Delete {
                    key,
                    revision: kv.mod_revision(),
                },
            });
        }
        if resp.canceled() {
            let reason = match resp.cancel_reason() {
                "" => "no reason given",
                reason => reason,
            };
            self.ended = Some(DatastoreError::Backend(format!(
                "{}: etcd cancelled the watch: {reason}",
                self.what
            )));
        }
    }
}
