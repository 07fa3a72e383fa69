//! The datastore behind tortie's control plane.
//!
//! [`Datastore`] is a small key-value contract — revisions, prefix listing, watches that resume
//! from a revision, compare-and-swap — that every backend provides: etcd v3 first, the
//! Kubernetes API next. Callers (IPAM, the CNI plugin, the agent, `tortiectl`) only see this
//! trait and the typed layers built on it, so a new backend does not touch them.
//!
//! [`EtcdDatastore`] is the etcd v3 backend; [`testing::EtcdServer`] runs a real etcd for
//! tests and labs.
//!
//! Keys follow Calico's etcd v3 layout (`/calico/resources/v3/projectcalico.org/...`,
//! `/calico/ipam/v2/...`), values are JSON.

#![warn(missing_docs)]

use std::{fmt, pin::Pin};

use futures::Stream;

pub mod etcd;
pub mod testing;

pub use etcd::{EtcdDatastore, EtcdOptions};

/// A monotonically increasing store revision (etcd's `mod_revision`, Kubernetes'
/// `resourceVersion`). Every write produces a new one.
pub type Revision = i64;

/// One stored value with the revision of its last write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// Full key.
    pub key: String,
    /// Stored bytes (JSON).
    pub value: Vec<u8>,
    /// Revision of the last write to this key; the token for compare-and-swap.
    pub revision: Revision,
}

/// A consistent snapshot of every key under a prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The entries, ordered by key.
    pub entries: Vec<KeyValue>,
    /// Store revision the snapshot was taken at; watch from `revision + 1` to miss nothing.
    pub revision: Revision,
}

/// A change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated.
    Put(KeyValue),
    /// A key was deleted at `revision`.
    Delete {
        /// The deleted key.
        key: String,
        /// Revision of the deletion.
        revision: Revision,
    },
}

impl WatchEvent {
    /// The revision this event happened at.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// A stream of changes; it ends (or yields an error) when the backend loses the watch, after
/// which the caller lists again and watches from the new revision.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, DatastoreError>> + Send>>;

/// Why a datastore operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// The key does not exist.
    #[error("{key} does not exist")]
    NotFound {
        /// The key.
        key: String,
    },
    /// `create` found the key already there.
    #[error("{key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// A compare-and-swap lost: someone else wrote the key since it was read.
    #[error("{key} was modified concurrently (expected revision {expected}, found {actual:?}); read it again and retry")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The revision found, `None` if the key is gone.
        actual: Option<Revision>,
    },
    /// The requested watch revision was compacted away; list again.
    #[error("revision {requested} has been compacted (oldest available {compacted}); list again")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision the store still has.
        compacted: Revision,
    },
    /// The datastore cannot be reached or did not answer in time.
    #[error("datastore unavailable at {endpoints}: {reason}")]
    Unavailable {
        /// Where we tried.
        endpoints: String,
        /// What happened.
        reason: String,
    },
    /// The datastore configuration cannot work (no endpoints, a malformed URL, a username
    /// without a password); fix the configuration, retrying will not help.
    #[error("invalid datastore configuration: {0}")]
    InvalidConfig(String),
    /// Anything else the backend reported.
    #[error("datastore error: {0}")]
    Backend(String),
}

impl DatastoreError {
    /// Whether retrying the same operation later can succeed (connection trouble), as
    /// opposed to errors about the data itself.
    pub fn is_transient(&self) -> bool {
        matches!(self, DatastoreError::Unavailable { .. })
    }
}

/// A key-value store with revisions, the contract every backend fulfils.
#[async_trait::async_trait]
pub trait Datastore: Send + Sync + fmt::Debug {
    /// The value at `key`, or `None`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, DatastoreError>;

    /// Every key under `prefix`, as one consistent snapshot.
    async fn list(&self, prefix: &str) -> Result<Listing, DatastoreError>;

    /// Writes `value` at `key` only if the key does not exist; returns the new revision.
    /// An existing key is [`DatastoreError::AlreadyExists`].
    async fn create(&self, key: &str, value: &[u8]) -> Result<Revision, DatastoreError>;

    /// Writes `value` at `key` only if its last write was at `expected` (compare-and-swap);
    /// returns the new revision. Otherwise [`DatastoreError::Conflict`] with the revision
    /// found, `actual: None` if the key does not exist (an update never creates a key).
    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Revision,
    ) -> Result<Revision, DatastoreError>;

    /// Deletes `key`, only if its last write was at `expected` when given
    /// ([`DatastoreError::Conflict`] otherwise). Deleting a missing key is `NotFound`.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(), DatastoreError>;

    /// Changes under `prefix` from revision `from` (inclusive) on, in revision order. Start
    /// from a [`Listing::revision`]` + 1` to miss nothing after the listing. A `from` older
    /// than the store keeps yields [`DatastoreError::Compacted`]; list again then.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, DatastoreError>;
}
