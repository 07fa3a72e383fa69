//! Typed resources over the key-value datastore: JSON documents at Calico's keys, with the
//! store revision exposed as `metadata.resourceVersion` for compare-and-swap.

use std::sync::Arc;

use tortie_datastore::{Datastore, DatastoreError, KeyValue, Revision};
use tortie_resources::{validate_pool_against, Kind, Resource};

/// Why a resource operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The resource does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// `create` of an existing resource.
    #[error("{0} already exists; use `tortiectl apply` or `tortiectl replace` to change it")]
    AlreadyExists(String),
    /// Someone else changed it since it was read.
    #[error("{0} was changed by someone else (resourceVersion no longer matches); get it again and retry")]
    Conflict(String),
    /// Invalid resource(s); nothing was written.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// Stored data that does not decode.
    #[error("stored document at {key} is not a valid resource: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The datastore failed.
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
}

/// Resources in a datastore.
#[derive(Clone, Debug)]
pub struct ResourceStore {
    datastore: Arc<dyn Datastore>,
}

fn decode(kv: &KeyValue) -> Result<Resource, StoreError> {
    let mut resource: Resource =
        serde_json::from_slice(&kv.value).map_err(|e| StoreError::Corrupt {
            key: kv.key.clone(),
            reason: e.to_string(),
        })?;
    resource.metadata_mut().resource_version = Some(kv.revision.to_string());
    Ok(resource)
}

fn encode(resource: &Resource) -> Vec<u8> {
    let mut stored = resource.clone();
    // The revision is the store's business, not part of the document.
    stored.metadata_mut().resource_version = None;
    serde_json::to_vec(&stored).unwrap_or_default()
}

fn expected_revision(resource: &Resource) -> Option<Revision> {
    resource
        .metadata()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
}

impl ResourceStore {
    /// Typed access to `datastore`.
    pub fn new(datastore: Arc<dyn Datastore>) -> Self {
        Self { datastore }
    }

    /// The underlying datastore.
    pub fn datastore(&self) -> &dyn Datastore {
        self.datastore.as_ref()
    }

    /// One resource.
    pub async fn get(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Resource>, StoreError> {
        match self.datastore.get(&kind.key(namespace, name)).await? {
            Some(kv) => decode(&kv).map(Some),
            None => Ok(None),
        }
    }

    /// Every resource of `kind` (in `namespace`, or in all namespaces when `None`).
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<Vec<Resource>, StoreError> {
        let listing = self.datastore.list(&kind.prefix(namespace)).await?;
        listing.entries.iter().map(decode).collect()
    }

    /// Checks a set of resources as one change: each must be valid, and IP pools must not
    /// overlap each other or the stored ones. Any problem rejects the whole set.
    pub async fn check(&self, resources: &[Resource]) -> Result<(), StoreError> {
        let mut problems: Vec<String> = match tortie_resources::validate_all(resources) {
            Ok(()) => Vec::new(),
            Err(problems) => problems,
        };
        let pools: Vec<_> = resources
            .iter()
            .filter_map(|r| match r {
                Resource::IpPool(pool) => Some(pool.clone()),
                _ => None,
            })
            .collect();
        if !pools.is_empty() {
            let mut others: Vec<_> = self
                .list(Kind::IpPool, None)
                .await?
                .into_iter()
                .filter_map(|r| match r {
                    Resource::IpPool(pool) => Some(pool),
                    _ => None,
                })
                .filter(|stored| {
                    !pools
                        .iter()
                        .any(|p| p.metadata.name == stored.metadata.name)
                })
                .collect();
            for pool in &pools {
                problems.extend(
                    validate_pool_against(pool, &others)
                        .iter()
                        .map(|e| e.to_string()),
                );
                others.push(pool.clone());
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Invalid(problems))
        }
    }

    /// Creates `resource`; it must not exist.
    pub async fn create(&self, resource: &Resource) -> Result<Resource, StoreError> {
        let resource = resource.clone().with_defaults();
        match self
            .datastore
            .create(&resource.key(), &encode(&resource))
            .await
        {
            Ok(revision) => Ok(with_revision(resource, revision)),
            Err(DatastoreError::AlreadyExists { .. }) => {
                Err(StoreError::AlreadyExists(resource.describe()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces an existing `resource`, compare-and-swap on its `resourceVersion` when given,
    /// else on the stored one.
    pub async fn replace(&self, resource: &Resource) -> Result<Resource, StoreError> {
        let resource = resource.clone().with_defaults();
        let key = resource.key();
        let expected = match expected_revision(&resource) {
            Some(revision) => revision,
            None => match self.datastore.get(&key).await? {
                Some(kv) => kv.revision,
                None => return Err(StoreError::NotFound(resource.describe())),
            },
        };
        match self
            .datastore
            .update(&key, &encode(&resource), expected)
            .await
        {
            Ok(revision) => Ok(with_revision(resource, revision)),
            Err(DatastoreError::Conflict { actual: None, .. }) => {
                Err(StoreError::NotFound(resource.describe()))
            }
            Err(DatastoreError::Conflict { .. }) => Err(StoreError::Conflict(resource.describe())),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates or replaces `resource`.
    pub async fn apply(&self, resource: &Resource) -> Result<Resource, StoreError> {
        for _ in 0..8 {
            let result = if self.datastore.get(&resource.key()).await?.is_some() {
                self.replace(resource).await
            } else {
                self.create(resource).await
            };
            match result {
                // Lost a race with another writer: look again.
                Err(StoreError::AlreadyExists(_) | StoreError::NotFound(_))
                    if expected_revision(resource).is_none() => {}
                Err(StoreError::Conflict(_)) if expected_revision(resource).is_none() => {}
                other => return other,
            }
        }
        Err(StoreError::Conflict(resource.describe()))
    }

    /// Deletes a resource.
    pub async fn delete(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), StoreError> {
        match self
            .datastore
            .delete(&kind.key(namespace, name), None)
            .await
        {
            Ok(()) => Ok(()),
            Err(DatastoreError::NotFound { .. }) => Err(StoreError::NotFound(format!(
                "{} {}{name}",
                kind.name(),
                namespace.map(|ns| format!("{ns}/")).unwrap_or_default()
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

fn with_revision(mut resource: Resource, revision: Revision) -> Resource {
    resource.metadata_mut().resource_version = Some(revision.to_string());
    resource
}
