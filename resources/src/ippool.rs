//! `IPPool`: a range of addresses pods get their IPs from, carved into per-node blocks.

use serde::{Deserialize, Serialize};

use ipnet::IpNet;

use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::validate::{self, Errors};

/// Block size of IPv4 pools that set none (a /26 block: 64 addresses).
pub const DEFAULT_BLOCK_SIZE_V4: u8 = 26;
/// Block size of IPv6 pools that set none (a /122 block: 64 addresses).
pub const DEFAULT_BLOCK_SIZE_V6: u8 = 122;
/// The node selector of pools that set none: every node.
pub const DEFAULT_NODE_SELECTOR: &str = "all()";

/// An `IPPool` (projectcalico.org/v3, cluster-scoped).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IpPool {
    /// Name and labels.
    pub metadata: ObjectMeta,
    /// The pool's range and how its addresses are used.
    pub spec: IpPoolSpec,
}

resource_document!(IpPool, IpPoolSpec, Kind::IpPool);

/// The `spec` of an [`IpPool`]. Unset optional fields take Calico's defaults; see
/// [`IpPoolSpec::apply_defaults`] and the accessors of the same names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpPoolSpec {
    /// The pool's range, a network such as `10.65.0.0/16` (no host bits). Required.
    #[serde(default)]
    pub cidr: String,
    /// Prefix length of the blocks handed to nodes: 20 to 32 for IPv4 (default 26), 116 to
    /// 128 for IPv6 (default 122). Must be at least the CIDR's prefix length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<i32>,
    /// When to encapsulate pod traffic in IP-in-IP (default `Never`; IPv4 pools only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<EncapMode>,
    /// When to encapsulate pod traffic in VXLAN (default `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<EncapMode>,
    /// Masquerade traffic from pods to destinations outside every pool (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing: Option<bool>,
    /// No new addresses are allocated from a disabled pool (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Do not advertise the pool's routes over BGP (default false).
    #[serde(
        default,
        rename = "disableBGPExport",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_bgp_export: Option<bool>,
    /// Which nodes may allocate from the pool (default `all()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// What the addresses may be used for (default `[Workload, Tunnel]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<AllowedUse>,
}

/// When a pool's traffic is encapsulated (`ipipMode`, `vxlanMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EncapMode {
    /// Never encapsulate.
    #[default]
    Never,
    /// Always encapsulate traffic to other nodes.
    Always,
    /// Encapsulate only traffic to nodes in another subnet.
    CrossSubnet,
}

impl EncapMode {
    /// Whether this mode encapsulates any traffic.
    pub fn enabled(self) -> bool {
        self != EncapMode::Never
    }
}

/// A use a pool's addresses may be put to (`allowedUses`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AllowedUse {
    /// Pod (workload) addresses.
    Workload,
    /// Node tunnel addresses (IPIP and VXLAN interfaces).
    Tunnel,
}

const DEFAULT_ALLOWED_USES: &[AllowedUse] = &[AllowedUse::Workload, AllowedUse::Tunnel];

impl IpPoolSpec {
    /// The pool's network, when `cidr` parses (a bare address counts as a /32 or /128).
    /// Host bits, which validation rejects, are cleared here.
    pub fn cidr_net(&self) -> Option<IpNet> {
        validate::parse_cidr_or_ip(&self.cidr).map(|net| net.trunc())
    }

    /// The block size in force: the one set, else 26 for IPv4 and 122 for IPv6 pools.
    pub fn block_size(&self) -> u8 {
        match self.block_size.and_then(|b| u8::try_from(b).ok()) {
            Some(size) => size,
            None => match self.cidr_net() {
                Some(IpNet::V6(_)) => DEFAULT_BLOCK_SIZE_V6,
                _ => DEFAULT_BLOCK_SIZE_V4,
            },
        }
    }

    /// The IP-in-IP mode in force (default `Never`).
    pub fn ipip_mode(&self) -> EncapMode {
        self.ipip_mode.unwrap_or_default()
    }

    /// The VXLAN mode in force (default `Never`).
    pub fn vxlan_mode(&self) -> EncapMode {
        self.vxlan_mode.unwrap_or_default()
    }

    /// Whether outgoing traffic is masqueraded (default false).
    pub fn nat_outgoing(&self) -> bool {
        self.nat_outgoing.unwrap_or(false)
    }

    /// Whether the pool is disabled (default false).
    pub fn disabled(&self) -> bool {
        self.disabled.unwrap_or(false)
    }

    /// Whether BGP export is disabled (default false).
    pub fn disable_bgp_export(&self) -> bool {
        self.disable_bgp_export.unwrap_or(false)
    }

    /// The node selector in force (default `all()`).
    pub fn node_selector(&self) -> &str {
        self.node_selector
            .as_deref()
            .unwrap_or(DEFAULT_NODE_SELECTOR)
    }

    /// The uses in force (default `[Workload, Tunnel]`).
    pub fn allowed_uses(&self) -> &[AllowedUse] {
        if self.allowed_uses.is_empty() {
            DEFAULT_ALLOWED_USES
        } else {
            &self.allowed_uses
        }
    }

    /// Writes every default into the unset fields, as Calico stores a pool. The block size
    /// is left unset when the CIDR does not parse (its family decides the default).
    pub fn apply_defaults(&mut self) {
        if self.block_size.is_none() && self.cidr_net().is_some() {
            self.block_size = Some(i32::from(self.block_size()));
        }
        self.ipip_mode.get_or_insert(EncapMode::Never);
        self.vxlan_mode.get_or_insert(EncapMode::Never);
        self.nat_outgoing.get_or_insert(false);
        self.disabled.get_or_insert(false);
        self.disable_bgp_export.get_or_insert(false);
        self.node_selector
            .get_or_insert_with(|| DEFAULT_NODE_SELECTOR.to_string());
        if self.allowed_uses.is_empty() {
            self.allowed_uses = DEFAULT_ALLOWED_USES.to_vec();
        }
    }
}

impl IpPool {
    pub(crate) fn check(&self, errs: &mut Errors) {
        self.metadata
            .check(errs, Kind::IpPool, validate::dns1123_subdomain);
        self.spec.check(errs);
    }
}

impl IpPoolSpec {
    fn check(&self, errs: &mut Errors) {
        let net = if self.cidr.is_empty() {
            errs.push(
                "spec.cidr",
                "is required: the pool's range, e.g. 10.65.0.0/16",
            );
            None
        } else {
            match validate::parse_cidr_or_ip(&self.cidr) {
                Some(net) => Some(net),
                None => {
                    errs.push(
                        "spec.cidr",
                        format!("{:?} is not a valid CIDR such as 10.65.0.0/16", self.cidr),
                    );
                    None
                }
            }
        };
        if let Some(net) = net {
            if net.addr() != net.network() {
                errs.push(
                    "spec.cidr",
                    format!(
                        "{} has host bits set: use the network address {}",
                        self.cidr,
                        net.trunc()
                    ),
                );
            }
            let link_local: IpNet = match net {
                IpNet::V4(_) => "169.254.0.0/16".parse().expect("valid literal"),
                IpNet::V6(_) => "fe80::/10".parse().expect("valid literal"),
            };
            if validate::nets_overlap(&net.trunc(), &link_local) {
                errs.push(
                    "spec.cidr",
                    format!("{} overlaps the link-local range {link_local}", net.trunc()),
                );
            }
            self.check_block_size(errs, &net);
            if matches!(net, IpNet::V6(_)) && self.ipip_mode().enabled() {
                errs.push(
                    "spec.ipipMode",
                    "IP-in-IP is not supported on an IPv6 pool: use Never (or vxlanMode)",
                );
            }
        }
        if self.ipip_mode().enabled() && self.vxlan_mode().enabled() {
            errs.push(
                "spec.ipipMode",
                "ipipMode and vxlanMode cannot both be enabled: set one of them to Never",
            );
        }
        validate::check_selector(errs, "spec.nodeSelector", self.node_selector.as_deref());
    }

    fn check_block_size(&self, errs: &mut Errors, net: &IpNet) {
        let (min, max) = match net {
            IpNet::V4(_) => (20, 32),
            IpNet::V6(_) => (116, 128),
        };
        if let Some(size) = self.block_size {
            if !(min..=max).contains(&size) {
                errs.push(
                    "spec.blockSize",
                    format!("{size} is out of range: must be {min} to {max}"),
                );
                return;
            }
        }
        // As Calico: a disabled pool allocates nothing, so its size does not matter.
        let block = self.block_size();
        if !self.disabled() && net.prefix_len() > block {
            if self.block_size.is_some() {
                errs.push(
                    "spec.blockSize",
                    format!(
                        "/{block} blocks do not fit in the /{} pool: blockSize must be at \
                         least the CIDR's prefix length",
                        net.prefix_len()
                    ),
                );
            } else {
                errs.push(
                    "spec.cidr",
                    format!(
                        "the pool {} is smaller than one block (the default /{block}): use a \
                         larger CIDR or set blockSize to at least {}",
                        self.cidr,
                        net.prefix_len()
                    ),
                );
            }
        }
    }
}
