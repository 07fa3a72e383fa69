//! `tortiectl ipam check`: consistency of blocks, handles and (optionally) live workloads.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::Ipv4Addr,
};

use crate::{HandleRecord, StoredBlock};

/// One inconsistency.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// An address is held by a handle no live workload has (the pod is gone).
    Leaked {
        /// The address.
        ip: Ipv4Addr,
        /// Its handle.
        handle: String,
    },
    /// An address appears in more than one block (overlapping blocks).
    DoubleAllocated {
        /// The address.
        ip: Ipv4Addr,
        /// Handles holding it.
        handles: Vec<String>,
    },
    /// An address is allocated without a handle.
    NoHandle {
        /// The address.
        ip: Ipv4Addr,
    },
    /// A handle record's counts disagree with the blocks.
    HandleMismatch {
        /// The handle.
        handle: String,
        /// Addresses the record claims.
        recorded: u32,
        /// Addresses the blocks hold for it.
        actual: u32,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Leaked { ip, handle } => write!(
                f,
                "leaked: {ip} is held by {handle}, which no workload endpoint uses (release it with `tortiectl ipam release --ip {ip}`)"
            ),
            Problem::DoubleAllocated { ip, handles } => {
                write!(f, "double-allocated: {ip} is allocated {} times ({})", handles.len(), handles.join(", "))
            }
            Problem::NoHandle { ip } => write!(f, "no handle: {ip} is allocated to nobody"),
            Problem::HandleMismatch {
                handle,
                recorded,
                actual,
            } => write!(
                f,
                "handle {handle} records {recorded} address(es) but the blocks hold {actual}"
            ),
        }
    }
}

/// What `check` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Addresses allocated in all blocks.
    pub allocated: usize,
    /// Blocks examined.
    pub blocks: usize,
    /// Handles examined.
    pub handles: usize,
    /// Every inconsistency, sorted.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks blocks against handles and, when `live_handles` is given, against the handles of
/// existing workloads.
pub fn check(
    blocks: &[StoredBlock],
    handles: &[HandleRecord],
    live_handles: Option<&BTreeSet<String>>,
) -> CheckReport {
    let mut report = CheckReport {
        blocks: blocks.len(),
        handles: handles.len(),
        ..CheckReport::default()
    };
    let mut by_ip: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    let mut per_handle: BTreeMap<String, u32> = BTreeMap::new();
    for stored in blocks {
        for (ip, attribute) in stored.block.allocated() {
            report.allocated += 1;
            match attribute.and_then(|a| a.handle_id.clone()) {
                Some(handle) => {
                    *per_handle.entry(handle.clone()).or_default() += 1;
                    by_ip.entry(ip).or_default().push(handle);
                }
                None => report.problems.push(Problem::NoHandle { ip }),
            }
        }
    }
    for (ip, owners) in &by_ip {
        if owners.len() > 1 {
            report.problems.push(Problem::DoubleAllocated {
                ip: *ip,
                handles: owners.clone(),
            });
        }
        if let Some(live) = live_handles {
            for handle in owners.iter().filter(|h| !live.contains(*h)) {
                report.problems.push(Problem::Leaked {
                    ip: *ip,
                    handle: handle.clone(),
                });
            }
        }
    }
    let recorded: BTreeMap<&str, u32> = handles
        .iter()
        .map(|h| (h.handle_id.as_str(), h.block.values().sum()))
        .collect();
    let names: BTreeSet<&str> = recorded
        .keys()
        .copied()
        .chain(per_handle.keys().map(String::as_str))
        .collect();
    for handle in names {
        let recorded = recorded.get(handle).copied().unwrap_or(0);
        let actual = per_handle.get(handle).copied().unwrap_or(0);
        if recorded != actual {
            report.problems.push(Problem::HandleMismatch {
                handle: handle.into(),
                recorded,
                actual,
            });
        }
    }
    report.problems.sort();
    report
}
