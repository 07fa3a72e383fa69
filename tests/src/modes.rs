//! How pod traffic crosses the fabric: the pool's encapsulation and its modes, and the
//! fabric's layout.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::spec::{octet, SpecError};

/// How pod traffic between nodes is carried, i.e. the pool's encapsulation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encap {
    /// Plain IPv4 between nodes (both pool modes `Never`).
    #[default]
    None,
    /// IP-in-IP, IP protocol 4 (the pool's `ipipMode`).
    Ipip,
    /// VXLAN on UDP 4789 with VNI 4096 (the pool's `vxlanMode`).
    Vxlan,
}

impl Encap {
    /// Every value, in the order the CLI lists them.
    pub const ALL: [Encap; 3] = [Encap::None, Encap::Ipip, Encap::Vxlan];

    /// The lowercase name used on the command line and in `status`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Encap::None => "none",
            Encap::Ipip => "ipip",
            Encap::Vxlan => "vxlan",
        }
    }

    /// Bytes the encapsulation adds to each packet on the wire: an outer IPv4 header (20) for
    /// IPIP; outer IPv4 + UDP + VXLAN + inner Ethernet (20 + 8 + 8 + 14) for VXLAN.
    pub const fn overhead_bytes(self) -> u32 {
        match self {
            Encap::None => 0,
            Encap::Ipip => 20,
            Encap::Vxlan => 50,
        }
    }
}

impl fmt::Display for Encap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Encap {
    type Err = SpecError;

    fn from_str(value: &str) -> Result<Self, SpecError> {
        Encap::ALL
            .into_iter()
            .find(|e| e.as_str() == value)
            .ok_or_else(|| SpecError::UnknownValue {
                what: "encapsulation",
                value: value.to_owned(),
                expected: "none, ipip, vxlan",
            })
    }
}

/// How the fabric is laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// Every node on one L2 segment (br0, 10.99.0.0/24).
    #[default]
    Flat,
    /// Two L2 segments (br0 10.99.0.0/24, br1 10.99.1.0/24) joined by the router; node `i` is
    /// on segment `i % 2`. The setting `CrossSubnet` is made for.
    Routed,
}

impl Topology {
    /// Every value, in the order the CLI lists them.
    pub const ALL: [Topology; 2] = [Topology::Flat, Topology::Routed];

    /// The lowercase name used on the command line and in `status`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Topology::Flat => "flat",
            Topology::Routed => "routed",
        }
    }

    /// How many fabric segments (bridges, router legs) the topology has.
    pub const fn segments(self) -> u8 {
        match self {
            Topology::Flat => 1,
            Topology::Routed => 2,
        }
    }

    /// The segment node `index` is on.
    pub fn segment_of(self, index: usize) -> u8 {
        match self {
            Topology::Flat => 0,
            Topology::Routed => octet(index % 2),
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Topology {
    type Err = SpecError;

    fn from_str(value: &str) -> Result<Self, SpecError> {
        Topology::ALL
            .into_iter()
            .find(|t| t.as_str() == value)
            .ok_or_else(|| SpecError::UnknownValue {
                what: "topology",
                value: value.to_owned(),
                expected: "flat, routed",
            })
    }
}

/// Where the agents take pools, nodes and endpoints from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatastoreMode {
    /// An etcd in the fabric namespace: pools and nodes applied with `tortiectl`, pods
    /// created by calling `tortie-cni`, agents watching etcd. How a cluster runs, and what
    /// `cargo xtask lab up` builds.
    Etcd,
    /// JSON files written by the lab (endpoints per node, one cluster file) and pods wired
    /// by the lab itself: the dataplane alone, without the control plane.
    #[default]
    Files,
}

impl DatastoreMode {
    /// Every value, in the order the CLI lists them.
    pub const ALL: [DatastoreMode; 2] = [DatastoreMode::Etcd, DatastoreMode::Files];

    /// The lowercase name used on the command line and in `status`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DatastoreMode::Etcd => "etcd",
            DatastoreMode::Files => "files",
        }
    }
}

impl fmt::Display for DatastoreMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatastoreMode {
    type Err = SpecError;

    fn from_str(value: &str) -> Result<Self, SpecError> {
        DatastoreMode::ALL
            .into_iter()
            .find(|d| d.as_str() == value)
            .ok_or_else(|| SpecError::UnknownValue {
                what: "datastore",
                value: value.to_owned(),
                expected: "etcd, files",
            })
    }
}

/// A pool's `ipipMode` / `vxlanMode`, with Calico's spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncapMode {
    /// Never encapsulate.
    Never,
    /// Encapsulate all traffic to other nodes.
    Always,
    /// Encapsulate only traffic to nodes on another subnet.
    CrossSubnet,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enumerations_parse_their_own_names() {
        for encap in Encap::ALL {
            assert_eq!(encap.as_str().parse::<Encap>().ok(), Some(encap));
        }
        for topology in Topology::ALL {
            assert_eq!(topology.as_str().parse::<Topology>().ok(), Some(topology));
        }
        for datastore in DatastoreMode::ALL {
            assert_eq!(
                datastore.as_str().parse::<DatastoreMode>().ok(),
                Some(datastore)
            );
        }
        assert!("gre".parse::<Encap>().is_err());
        assert!("mesh".parse::<Topology>().is_err());
    }
}
