//! `IPAMConfiguration`: cluster-wide settings of the IP allocator.

use serde::{Deserialize, Serialize};

use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::validate::Errors;

/// The only name an `IPAMConfiguration` may have.
pub const IPAM_CONFIGURATION_NAME: &str = "default";

/// An `IPAMConfiguration` (projectcalico.org/v3, cluster-scoped). There is one, named
/// `default`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IpamConfiguration {
    /// Metadata; the name must be `default`.
    pub metadata: ObjectMeta,
    /// The allocator settings.
    pub spec: IpamConfigurationSpec,
}

resource_document!(
    IpamConfiguration,
    IpamConfigurationSpec,
    Kind::IpamConfiguration
);

/// The `spec` of an [`IpamConfiguration`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpamConfigurationSpec {
    /// Allocate only from blocks affine to the node, never borrowing an address from
    /// another node's block (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_affinity: Option<bool>,
    /// How many blocks one node may claim; 0 means no limit (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_blocks_per_host: Option<i32>,
    /// Claim new blocks for a node when its blocks are full (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_allocate_blocks: Option<bool>,
}

impl IpamConfigurationSpec {
    /// Whether strict affinity is on (default false).
    pub fn strict_affinity(&self) -> bool {
        self.strict_affinity.unwrap_or(false)
    }

    /// The per-node block limit; `None` when unlimited (unset or 0).
    pub fn max_blocks_per_host(&self) -> Option<u32> {
        self.max_blocks_per_host
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
    }

    /// Whether blocks are claimed automatically (default true).
    pub fn auto_allocate_blocks(&self) -> bool {
        self.auto_allocate_blocks.unwrap_or(true)
    }

    /// Writes every default into the unset fields.
    pub fn apply_defaults(&mut self) {
        self.strict_affinity.get_or_insert(false);
        self.max_blocks_per_host.get_or_insert(0);
        self.auto_allocate_blocks.get_or_insert(true);
    }
}

impl IpamConfiguration {
    pub(crate) fn check(&self, errs: &mut Errors) {
        self.metadata.check(errs, Kind::IpamConfiguration, |name| {
            if name == IPAM_CONFIGURATION_NAME {
                Ok(())
            } else {
                Err(format!(
                    "{name:?}: the IPAMConfiguration must be named {IPAM_CONFIGURATION_NAME}"
                ))
            }
        });
        if let Some(n) = self.spec.max_blocks_per_host {
            if n < 0 {
                errs.push(
                    "spec.maxBlocksPerHost",
                    format!("{n} is negative: use 0 for no limit or a positive count"),
                );
            }
        }
    }
}
