//! Allocation and release against the datastore, every write a compare-and-swap.

use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnet::Ipv4Net;
use tortie_datastore::{Datastore, DatastoreError, Revision};

use crate::{
    block::{AllocationAttribute, AllocationBlock},
    keys, HandleRecord, IpamConfig, IpamError, PoolSpec,
};

/// How often one operation retries after losing a compare-and-swap.
const MAX_ATTEMPTS: u32 = 64;
/// Full passes (affine blocks, new block, borrowing) before a pool counts as exhausted.
const ASSIGN_ROUNDS: usize = 3;

/// A block as stored, with the revision to compare against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlock {
    /// The block.
    pub block: AllocationBlock,
    /// Revision of its last write.
    pub revision: Revision,
}

/// One address wanted by one handle.
#[derive(Clone, Debug)]
pub struct AssignRequest<'a> {
    /// Owner of the address (`k8s-pod-network.<containerID>` for pods).
    pub handle: &'a str,
    /// The node asking; blocks become affine to it.
    pub node: &'a str,
    /// Extra attributes stored with the address (namespace, pod, ...).
    pub attributes: BTreeMap<String, String>,
    /// Pools to allocate from, in order of preference (already filtered for this node).
    pub pools: &'a [PoolSpec],
    /// Cluster settings.
    pub config: IpamConfig,
}

/// IPAM over a datastore.
#[derive(Clone, Copy, Debug)]
pub struct Ipam<'a> {
    store: &'a dyn Datastore,
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, IpamError> {
    serde_json::from_slice(bytes).map_err(|e| IpamError::Corrupt {
        key: key.into(),
        reason: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Our own plain structs: serialising them cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn block_cidr_of_key(key: &str) -> Option<Ipv4Net> {
    let segment = key.rsplit('/').next()?;
    let (addr, len) = segment.rsplit_once('-')?;
    Ipv4Net::new(addr.parse().ok()?, len.parse().ok()?).ok()
}

impl<'a> Ipam<'a> {
    /// IPAM on `store`.
    pub fn new(store: &'a dyn Datastore) -> Self {
        Self { store }
    }

    /// Every block.
    pub async fn blocks(&self) -> Result<Vec<StoredBlock>, IpamError> {
        let listing = self.store.list(keys::BLOCKS_PREFIX).await?;
        listing
            .entries
            .iter()
            .map(|kv| {
                Ok(StoredBlock {
                    block: parse(&kv.key, &kv.value)?,
                    revision: kv.revision,
                })
            })
            .collect()
    }

    /// Every handle record.
    pub async fn handles(&self) -> Result<Vec<HandleRecord>, IpamError> {
        let listing = self.store.list(keys::HANDLES_PREFIX).await?;
        listing
            .entries
            .iter()
            .map(|kv| parse(&kv.key, &kv.value))
            .collect()
    }

    async fn load_block(&self, cidr: &Ipv4Net) -> Result<Option<StoredBlock>, IpamError> {
        let key = keys::block(cidr);
        match self.store.get(&key).await? {
            Some(kv) => Ok(Some(StoredBlock {
                block: parse(&key, &kv.value)?,
                revision: kv.revision,
            })),
            None => Ok(None),
        }
    }

    /// The addresses `handle` holds.
    pub async fn addresses_of(&self, handle: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        let Some(kv) = self.store.get(&keys::handle(handle)).await? else {
            return Ok(Vec::new());
        };
        let record: HandleRecord = parse(&kv.key, &kv.value)?;
        let mut found = Vec::new();
        for cidr in record
            .block
            .keys()
            .filter_map(|c| c.parse::<Ipv4Net>().ok())
        {
            if let Some(stored) = self.load_block(&cidr).await? {
                found.extend(
                    stored
                        .block
                        .allocated()
                        .filter(|(_, a)| a.and_then(|a| a.handle_id.as_deref()) == Some(handle))
                        .map(|(ip, _)| ip),
                );
            }
        }
        Ok(found)
    }

    /// Allocates one address for `request.handle` on `request.node`. Asking again for a handle
    /// that already holds an address returns that address (a retried CNI ADD gets the same IP).
    pub async fn auto_assign(&self, request: &AssignRequest<'_>) -> Result<Ipv4Addr, IpamError> {
        if request.pools.is_empty() {
            return Err(IpamError::NoPools {
                node: request.node.into(),
            });
        }
        if let Some(existing) = self.addresses_of(request.handle).await?.first() {
            return Ok(*existing);
        }
        let attribute = AllocationAttribute {
            handle_id: Some(request.handle.into()),
            secondary: request.attributes.clone(),
        };
        let in_pools = |cidr: &Ipv4Net| request.pools.iter().any(|p| p.cidr.contains(cidr));

        let max = request.config.max_blocks_per_host as usize;
        let mut affine_count = 0;
        // Other nodes allocate at the same time: each round starts from a fresh view.
        for _ in 0..ASSIGN_ROUNDS {
            // 1. Blocks already affine to this node.
            let blocks = self.blocks().await?;
            let affine: Vec<Ipv4Net> = blocks
                .iter()
                .filter(|s| s.block.affine_node() == Some(request.node) && in_pools(&s.block.cidr))
                .map(|s| s.block.cidr)
                .collect();
            affine_count = affine.len();
            for cidr in &affine {
                if let Some(ip) = self.assign_from(cidr, &attribute, request.handle).await? {
                    return Ok(ip);
                }
            }

            // 2. A new block for this node, within maxBlocksPerHost.
            if max == 0 || affine.len() < max {
                if let Some(ip) = self.claim_block(request, &attribute, &blocks).await? {
                    return Ok(ip);
                }
            }

            // 3. Borrow from another node's block, unless affinity is strict.
            if !request.config.strict_affinity {
                let blocks = self.blocks().await?;
                let mut candidates: Vec<&StoredBlock> = blocks
                    .iter()
                    .filter(|s| in_pools(&s.block.cidr) && s.block.used() < s.block.size())
                    .collect();
                candidates.sort_by_key(|s| s.block.used());
                for stored in candidates {
                    let cidr = stored.block.cidr;
                    if let Some(ip) = self.assign_from(&cidr, &attribute, request.handle).await? {
                        tracing::info!(node = request.node, %cidr, %ip, "borrowed an address from another node's block");
                        return Ok(ip);
                    }
                }
            }
        }

        let pools = request
            .pools
            .iter()
            .map(|p| format!("{} ({})", p.name, p.cidr))
            .collect::<Vec<_>>()
            .join(", ");
        let mut hint = String::new();
        if max != 0 && affine_count >= max {
            hint.push_str(&format!(
                "; node {} already holds maxBlocksPerHost={max} block(s)",
                request.node
            ));
        }
        if request.config.strict_affinity {
            hint.push_str(
                "; strictAffinity is on, so other nodes' free addresses are not borrowed",
            );
        }
        if hint.is_empty() {
            hint.push_str("; add a pool or release addresses (`tortiectl ipam check`)");
        }
        Err(IpamError::Exhausted {
            node: request.node.into(),
            pools,
            hint,
        })
    }

    /// Claims the first free block of the request's pools for its node and allocates from it.
    async fn claim_block(
        &self,
        request: &AssignRequest<'_>,
        attribute: &AllocationAttribute,
        existing: &[StoredBlock],
    ) -> Result<Option<Ipv4Addr>, IpamError> {
        for pool in request.pools {
            let Ok(subnets) = pool.cidr.subnets(pool.block_size) else {
                continue;
            };
            for cidr in subnets {
                if existing.iter().any(|s| s.block.cidr == cidr) {
                    continue;
                }
                let mut block = AllocationBlock::new(cidr, request.node);
                // Record the handle first so a crash leaves a handle to clean up, never an
                // address nobody owns.
                self.add_to_handle(request.handle, &cidr).await?;
                let Some(ip) = block.allocate(attribute.clone()) else {
                    self.remove_from_handle(request.handle, &cidr).await?;
                    continue;
                };
                match self
                    .store
                    .create(&keys::block(&cidr), &encode(&block))
                    .await
                {
                    Ok(_) => {
                        // The affinity record mirrors the block's `affinity` for Calico tools;
                        // the block itself is the source of truth.
                        match self
                            .store
                            .create(
                                &keys::affinity(request.node, &cidr),
                                br#"{"state":"confirmed","deleted":false}"#,
                            )
                            .await
                        {
                            Ok(_) | Err(DatastoreError::AlreadyExists { .. }) => {}
                            Err(e) => return Err(e.into()),
                        }
                        tracing::info!(node = request.node, %cidr, pool = %pool.name, "claimed block");
                        return Ok(Some(ip));
                    }
                    Err(DatastoreError::AlreadyExists { .. }) => {
                        // Someone claimed it first. If it was this node (a concurrent ADD),
                        // use it rather than claiming yet another block.
                        self.remove_from_handle(request.handle, &cidr).await?;
                        let ours = self
                            .load_block(&cidr)
                            .await?
                            .is_some_and(|s| s.block.affine_node() == Some(request.node));
                        if ours {
                            if let Some(ip) =
                                self.assign_from(&cidr, attribute, request.handle).await?
                            {
                                return Ok(Some(ip));
                            }
                        }
                    }
                    Err(e) => {
                        let _ = self.remove_from_handle(request.handle, &cidr).await;
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(None)
    }

    /// Allocates from block `cidr`, retrying lost compare-and-swaps; `None` if it is full.
    async fn assign_from(
        &self,
        cidr: &Ipv4Net,
        attribute: &AllocationAttribute,
        handle: &str,
    ) -> Result<Option<Ipv4Addr>, IpamError> {
        let key = keys::block(cidr);
        match self.load_block(cidr).await? {
            Some(stored) if stored.block.used() < stored.block.size() => {}
            _ => return Ok(None),
        }
        self.add_to_handle(handle, cidr).await?;
        for _ in 0..MAX_ATTEMPTS {
            let Some(mut stored) = self.load_block(cidr).await? else {
                break;
            };
            let Some(ip) = stored.block.allocate(attribute.clone()) else {
                break;
            };
            match self
                .store
                .update(&key, &encode(&stored.block), stored.revision)
                .await
            {
                Ok(_) => return Ok(Some(ip)),
                Err(DatastoreError::Conflict { .. }) => continue,
                Err(e) => {
                    let _ = self.remove_from_handle(handle, cidr).await;
                    return Err(e.into());
                }
            }
        }
        self.remove_from_handle(handle, cidr).await?;
        Ok(None)
    }

    /// Adds one address in `cidr` to `handle`'s record.
    async fn add_to_handle(&self, handle: &str, cidr: &Ipv4Net) -> Result<(), IpamError> {
        self.change_handle(handle, cidr, 1).await
    }

    /// Removes one address in `cidr` from `handle`'s record (deleting it when empty).
    async fn remove_from_handle(&self, handle: &str, cidr: &Ipv4Net) -> Result<(), IpamError> {
        self.change_handle(handle, cidr, -1).await
    }

    async fn change_handle(
        &self,
        handle: &str,
        cidr: &Ipv4Net,
        delta: i64,
    ) -> Result<(), IpamError> {
        let key = keys::handle(handle);
        for _ in 0..MAX_ATTEMPTS {
            let current = self.store.get(&key).await?;
            let (mut record, revision) = match &current {
                Some(kv) => (parse::<HandleRecord>(&key, &kv.value)?, Some(kv.revision)),
                None => (
                    HandleRecord {
                        handle_id: handle.into(),
                        ..HandleRecord::default()
                    },
                    None,
                ),
            };
            let count = record.block.entry(cidr.to_string()).or_insert(0);
            *count = (*count as i64 + delta).max(0) as u32;
            if *count == 0 {
                record.block.remove(&cidr.to_string());
            }
            let result = match (revision, record.block.is_empty()) {
                (None, true) => return Ok(()),
                (None, false) => self.store.create(&key, &encode(&record)).await.map(|_| ()),
                (Some(rev), true) => self.store.delete(&key, Some(rev)).await,
                (Some(rev), false) => self
                    .store
                    .update(&key, &encode(&record), rev)
                    .await
                    .map(|_| ()),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(DatastoreError::Conflict { .. } | DatastoreError::AlreadyExists { .. }) => {
                    continue
                }
                Err(DatastoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::Contention {
            key,
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Releases every address `handle` holds and deletes the handle. Releasing an unknown
    /// handle succeeds and releases nothing (CNI DEL must be idempotent).
    pub async fn release_by_handle(&self, handle: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        let key = keys::handle(handle);
        let Some(kv) = self.store.get(&key).await? else {
            return Ok(Vec::new());
        };
        let record: HandleRecord = parse(&key, &kv.value)?;
        let mut released = Vec::new();
        for cidr in record
            .block
            .keys()
            .filter_map(|c| c.parse::<Ipv4Net>().ok())
        {
            released.extend(
                self.release_in_block(&cidr, |b| b.release_handle(handle))
                    .await?,
            );
        }
        match self.store.delete(&key, None).await {
            Ok(()) | Err(DatastoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(released)
    }

    /// Releases one address, whoever holds it; returns its handle.
    pub async fn release_ip(&self, ip: Ipv4Addr) -> Result<Option<String>, IpamError> {
        let Some(stored) = self
            .blocks()
            .await?
            .into_iter()
            .find(|s| s.block.cidr.contains(&ip))
        else {
            return Err(IpamError::UnknownAddress { ip });
        };
        let cidr = stored.block.cidr;
        let mut handle = None;
        self.release_in_block(&cidr, |b| {
            handle = b.release_ip(ip).flatten();
            vec![ip]
        })
        .await?;
        if let Some(handle) = &handle {
            self.remove_from_handle(handle, &cidr).await?;
        }
        Ok(handle)
    }

    async fn release_in_block(
        &self,
        cidr: &Ipv4Net,
        mut release: impl FnMut(&mut AllocationBlock) -> Vec<Ipv4Addr>,
    ) -> Result<Vec<Ipv4Addr>, IpamError> {
        let key = keys::block(cidr);
        for _ in 0..MAX_ATTEMPTS {
            let Some(mut stored) = self.load_block(cidr).await? else {
                return Ok(Vec::new());
            };
            let released = release(&mut stored.block);
            if released.is_empty() {
                return Ok(released);
            }
            match self
                .store
                .update(&key, &encode(&stored.block), stored.revision)
                .await
            {
                Ok(_) => return Ok(released),
                Err(DatastoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::Contention {
            key,
            attempts: MAX_ATTEMPTS,
        })
    }

    /// The CIDR of every block affine to `node`.
    pub async fn node_blocks(&self, node: &str) -> Result<Vec<Ipv4Net>, IpamError> {
        Ok(self
            .blocks()
            .await?
            .into_iter()
            .filter(|s| s.block.affine_node() == Some(node))
            .map(|s| s.block.cidr)
            .collect())
    }

    /// Parses a block key (for watchers).
    pub fn block_cidr_of_key(key: &str) -> Option<Ipv4Net> {
        block_cidr_of_key(key)
    }
}
