//! The plugin's datastore work: connecting, reading pools and settings, and keeping the
//! WorkloadEndpoint. Every failure becomes the CNI code a runtime acts on: unreachable etcd
//! is 11 (retry later), a failed write 102, unreadable data 104.

use std::time::Duration;

use tortie_datastore::{Datastore, DatastoreError, EtcdDatastore, EtcdOptions, Revision};
use tortie_ipam::{IpamConfig, IpamError, PoolSpec};

use crate::{
    calico::{self, PodInfo, Pool, WorkloadEndpoint},
    spec::{CniError, ErrorCode},
};

/// How long the plugin waits for etcd to answer a connection; kubelet gives a whole ADD a
/// few minutes, and a node whose etcd is down is better told quickly to retry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one datastore request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A datastore error while reading: unreachable → 11, otherwise 104.
pub fn read_error(what: &str, error: DatastoreError) -> CniError {
    if error.is_transient() {
        CniError::new(ErrorCode::TryAgainLater, "the datastore is unreachable")
            .details(format!("{what}: {error}"))
    } else {
        CniError::new(ErrorCode::DatastoreRead, format!("cannot {what}")).details(error.to_string())
    }
}

/// A datastore error while writing: unreachable → 11, otherwise 102.
pub fn write_error(what: &str, error: DatastoreError) -> CniError {
    if error.is_transient() {
        CniError::new(ErrorCode::TryAgainLater, "the datastore is unreachable")
            .details(format!("{what}: {error}"))
    } else {
        CniError::new(ErrorCode::DatastoreWrite, format!("cannot {what}"))
            .details(error.to_string())
    }
}

/// Maps an IPAM failure: no address → 100, contention or outage → 11, broken records → 104,
/// other store failures → 102.
pub fn ipam_error(what: &str, error: IpamError) -> CniError {
    match error {
        IpamError::Exhausted { .. } | IpamError::NoPools { .. } => {
            CniError::new(ErrorCode::PoolExhausted, error.to_string())
        }
        IpamError::Contention { .. } => {
            CniError::new(ErrorCode::TryAgainLater, format!("cannot {what}"))
                .details(error.to_string())
        }
        IpamError::Corrupt { .. } | IpamError::UnknownAddress { .. } => {
            CniError::new(ErrorCode::DatastoreRead, format!("cannot {what}"))
                .details(error.to_string())
        }
        IpamError::Datastore(inner) => write_error(what, inner),
    }
}

/// Connects to etcd.
pub async fn connect(endpoints: &[String]) -> Result<EtcdDatastore, CniError> {
    let options = EtcdOptions {
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
        ..EtcdOptions::default()
    };
    EtcdDatastore::connect(endpoints, options)
        .await
        .map_err(|error| match error {
            DatastoreError::InvalidConfig(reason) => CniError::new(
                ErrorCode::InvalidNetworkConfig,
                "invalid network configuration field `etcd_endpoints`",
            )
            .details(reason),
            other => CniError::new(ErrorCode::TryAgainLater, "the datastore is unreachable")
                .details(other.to_string()),
        })
}

/// Every IP pool, parsed; unparsable ones are reported, not fatal.
pub async fn ip_pools(store: &dyn Datastore) -> Result<Vec<Pool>, CniError> {
    let listing = store
        .list(&calico::ip_pools_prefix())
        .await
        .map_err(|e| read_error("list IP pools", e))?;
    Ok(listing
        .entries
        .iter()
        .filter_map(|kv| match Pool::parse(&kv.value) {
            Ok(pool) => Some(pool),
            Err(reason) => {
                tracing::warn!(key = %kv.key, %reason, "skipping an IP pool that does not parse");
                None
            }
        })
        .collect())
}

/// The pools this node may allocate pod addresses from: enabled, IPv4, for workloads, and
/// selecting every node (other selectors are not evaluated yet, so such pools are skipped).
pub fn usable_pools(pools: &[Pool], node: &str) -> Vec<PoolSpec> {
    pools
        .iter()
        .filter_map(|pool| {
            let ipnet::IpNet::V4(cidr) = pool.cidr else {
                tracing::debug!(pool = %pool.name, "skipping IPv6 pool: pods get IPv4 only");
                return None;
            };
            if pool.disabled {
                tracing::debug!(pool = %pool.name, "skipping disabled pool");
                return None;
            }
            if !pool.for_workloads {
                tracing::debug!(pool = %pool.name, "skipping pool not allowed for workloads");
                return None;
            }
            if !pool.selects_every_node() {
                tracing::info!(
                    pool = %pool.name,
                    selector = %pool.node_selector,
                    node,
                    "skipping pool: only nodeSelector all() is supported yet"
                );
                return None;
            }
            Some(PoolSpec {
                name: pool.name.clone(),
                cidr,
                block_size: pool.block_size,
            })
        })
        .collect()
}

/// The cluster's IPAM settings (`IPAMConfiguration default`), defaults when absent.
pub async fn ipam_config(store: &dyn Datastore) -> Result<IpamConfig, CniError> {
    let key = calico::ipam_configuration_key();
    let Some(kv) = store
        .get(&key)
        .await
        .map_err(|e| read_error("read the IPAM configuration", e))?
    else {
        return Ok(IpamConfig::default());
    };
    calico::parse_ipam_configuration(&kv.value).map_err(|reason| {
        CniError::new(
            ErrorCode::DatastoreRead,
            "the IPAM configuration does not parse",
        )
        .details(format!("{key}: {reason}"))
    })
}

/// The pod's record, when the datastore has one; an unparsable one is logged and ignored (the
/// pod still gets its network, only without labels).
pub async fn pod_info(
    store: &dyn Datastore,
    namespace: &str,
    name: &str,
) -> Result<Option<PodInfo>, CniError> {
    let key = calico::pod_key(namespace, name);
    let Some(kv) = store
        .get(&key)
        .await
        .map_err(|e| read_error(&format!("read pod {namespace}/{name}"), e))?
    else {
        return Ok(None);
    };
    match PodInfo::parse(&kv.value) {
        Ok(info) => Ok(Some(info)),
        Err(reason) => {
            tracing::warn!(%key, %reason, "the pod record does not parse; the endpoint gets no pod labels");
            Ok(None)
        }
    }
}

/// A stored endpoint with its revision; an unparsable record is returned as `None` with the
/// revision so it can be replaced.
pub async fn workload_endpoint(
    store: &dyn Datastore,
    key: &str,
) -> Result<Option<(Option<WorkloadEndpoint>, Revision)>, CniError> {
    let Some(kv) = store
        .get(key)
        .await
        .map_err(|e| read_error(&format!("read WorkloadEndpoint {key}"), e))?
    else {
        return Ok(None);
    };
    match calico::parse_workload_endpoint(&kv.value) {
        Ok(endpoint) => Ok(Some((Some(endpoint), kv.revision))),
        Err(reason) => {
            tracing::warn!(%key, %reason, "a stored WorkloadEndpoint does not parse");
            Ok(Some((None, kv.revision)))
        }
    }
}

/// Writes `endpoint`, replacing whatever is at its key (a previous sandbox of the same pod):
/// the newest ADD of a pod owns its endpoint, as in Calico.
pub async fn put_workload_endpoint(
    store: &dyn Datastore,
    endpoint: &WorkloadEndpoint,
) -> Result<(), CniError> {
    let key = calico::key_of(endpoint);
    let what = format!("write WorkloadEndpoint {key}");
    let value = serde_json::to_vec(endpoint)
        .map_err(|e| CniError::new(ErrorCode::DatastoreWrite, &what).details(e.to_string()))?;
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let result = match workload_endpoint(store, &key).await? {
            None => store.create(&key, &value).await.map(|_| ()),
            Some((previous, revision)) => {
                if let Some(previous) =
                    previous.filter(|p| p.spec.container_id != endpoint.spec.container_id)
                {
                    tracing::info!(
                        %key,
                        previous_container = previous.spec.container_id.as_deref().unwrap_or(""),
                        "replacing the endpoint of an earlier sandbox of this pod"
                    );
                }
                store.update(&key, &value, revision).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => return Ok(()),
            Err(DatastoreError::AlreadyExists { .. } | DatastoreError::Conflict { .. }) => continue,
            Err(e) => return Err(write_error(&what, e)),
        }
    }
    Err(CniError::new(ErrorCode::TryAgainLater, what)
        .details("the key kept changing under concurrent writers"))
}

/// Deletes the endpoint at `key` if it belongs to `container_id` (or cannot be read); an
/// endpoint of another sandbox of the pod is left alone. Returns whether one was deleted.
pub async fn delete_workload_endpoint(
    store: &dyn Datastore,
    key: &str,
    container_id: &str,
) -> Result<bool, CniError> {
    let what = format!("delete WorkloadEndpoint {key}");
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let Some((endpoint, revision)) = workload_endpoint(store, key).await? else {
            return Ok(false);
        };
        if let Some(endpoint) = &endpoint {
            if endpoint.spec.container_id.as_deref() != Some(container_id) {
                tracing::info!(
                    %key,
                    owner = endpoint.spec.container_id.as_deref().unwrap_or(""),
                    "leaving the endpoint alone: it belongs to another sandbox of this pod"
                );
                return Ok(false);
            }
        }
        match store.delete(key, Some(revision)).await {
            Ok(()) => return Ok(true),
            Err(DatastoreError::NotFound { .. }) => return Ok(false),
            Err(DatastoreError::Conflict { .. }) => continue,
            Err(e) => return Err(write_error(&what, e)),
        }
    }
    Err(CniError::new(ErrorCode::TryAgainLater, what)
        .details("the key kept changing under concurrent writers"))
}

/// Every stored endpoint that parses.
pub async fn workload_endpoints(
    store: &dyn Datastore,
) -> Result<Vec<(WorkloadEndpoint, Revision)>, CniError> {
    let listing = store
        .list(&calico::workload_endpoints_prefix())
        .await
        .map_err(|e| read_error("list WorkloadEndpoints", e))?;
    Ok(listing
        .entries
        .iter()
        .filter_map(|kv| {
            calico::parse_workload_endpoint(&kv.value)
                .ok()
                .map(|e| (e, kv.revision))
        })
        .collect())
}
