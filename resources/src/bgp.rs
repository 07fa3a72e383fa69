//! `BGPPeer` and `BGPConfiguration`: who the nodes peer with, and the cluster's BGP settings.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::validate::{self, Errors};
use crate::values::AsNumber;

/// The AS number of a cluster whose `default` BGPConfiguration sets none.
pub const DEFAULT_AS_NUMBER: AsNumber = AsNumber(64512);
/// The BGP port nodes listen on by default.
pub const DEFAULT_BGP_PORT: u16 = 179;
/// The name of the cluster-wide BGPConfiguration; per-node ones are named `node.<node>`.
pub const DEFAULT_BGP_CONFIGURATION_NAME: &str = "default";

/// A `BGPPeer` (projectcalico.org/v3, cluster-scoped): a BGP session some nodes open.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BgpPeer {
    /// Name and labels.
    pub metadata: ObjectMeta,
    /// Which nodes peer with whom.
    pub spec: BgpPeerSpec,
}

resource_document!(BgpPeer, BgpPeerSpec, Kind::BgpPeer);

/// The `spec` of a [`BgpPeer`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPeerSpec {
    /// The one node that peers; every node when neither this nor `nodeSelector` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The remote peer, `ip`, `ipv4:port` or `[ipv6]:port`.
    #[serde(default, rename = "peerIP", skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<String>,
    /// The remote AS number; required with `peerIP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// Selects the nodes that peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// Selects Calico nodes to peer with, instead of `peerIP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<String>,
    /// The session's password, from a Kubernetes secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BgpPassword>,
    /// The source address of the session (default `UseNodeIP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<SourceAddress>,
    /// Keep the next hop of routes received from this peer (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_original_next_hop: Option<bool>,
    /// How long the peer keeps routes while this node restarts (a duration such as `120s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<String>,
}

/// A BGP session password (`password:`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPassword {
    /// The secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

/// A key of a Kubernetes secret in Calico's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// The secret's name.
    #[serde(default)]
    pub name: String,
    /// The key within the secret.
    #[serde(default)]
    pub key: String,
    /// Whether the session may come up without the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// The source address of a BGP session (`sourceAddress`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SourceAddress {
    /// Bind the session to the node's own address.
    #[default]
    #[serde(rename = "UseNodeIP")]
    UseNodeIp,
    /// Let the kernel pick the source address.
    None,
}

impl BgpPeerSpec {
    /// The source address setting in force (default `UseNodeIP`).
    pub fn source_address(&self) -> SourceAddress {
        self.source_address.unwrap_or_default()
    }

    /// Whether the original next hop is kept (default false).
    pub fn keep_original_next_hop(&self) -> bool {
        self.keep_original_next_hop.unwrap_or(false)
    }

    /// The peer's address and port (`None` when the port is the default), when `peerIP` is
    /// set and valid.
    pub fn peer_addr(&self) -> Option<(IpAddr, Option<u16>)> {
        parse_peer_ip(self.peer_ip.as_deref()?).ok()
    }

    /// Writes every default into the unset fields.
    pub fn apply_defaults(&mut self) {
        self.source_address.get_or_insert(SourceAddress::UseNodeIp);
        self.keep_original_next_hop.get_or_insert(false);
    }
}

/// Parses `ip`, `ipv4:port` or `[ipv6]:port`.
fn parse_peer_ip(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    let invalid =
        || format!("{s:?} is not a valid peer address: write an IP, ipv4:port or [ipv6]:port");
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    let addr: std::net::SocketAddr = s.parse().map_err(|_| invalid())?;
    if addr.port() == 0 {
        return Err(format!("{s:?} has port 0: use 1 to 65535"));
    }
    Ok((addr.ip(), Some(addr.port())))
}

fn check_password(errs: &mut Errors, path: &str, password: &BgpPassword) {
    match &password.secret_key_ref {
        None => errs.push(
            format!("{path}.secretKeyRef"),
            "is required: name the secret and key that hold the password",
        ),
        Some(secret) => {
            if secret.name.is_empty() {
                errs.push(format!("{path}.secretKeyRef.name"), "is required");
            } else {
                errs.check(
                    format!("{path}.secretKeyRef.name"),
                    validate::dns1123_subdomain(&secret.name),
                );
            }
            if secret.key.is_empty() {
                errs.push(format!("{path}.secretKeyRef.key"), "is required");
            }
        }
    }
}

fn check_as_number(errs: &mut Errors, path: &str, as_number: Option<AsNumber>) {
    if as_number == Some(AsNumber(0)) {
        errs.push(path, "0 is not a valid AS number: use 1 to 4294967295");
    }
}

impl BgpPeer {
    pub(crate) fn check(&self, errs: &mut Errors) {
        self.metadata
            .check(errs, Kind::BgpPeer, validate::dns1123_subdomain);
        let spec = &self.spec;
        if let Some(node) = &spec.node {
            errs.check("spec.node", validate::dns1123_subdomain(node));
            if spec.node_selector.is_some() {
                errs.push(
                    "spec.node",
                    "cannot be set together with nodeSelector: use one",
                );
            }
        }
        validate::check_selector(errs, "spec.nodeSelector", spec.node_selector.as_deref());
        validate::check_selector(errs, "spec.peerSelector", spec.peer_selector.as_deref());
        match (&spec.peer_ip, &spec.peer_selector) {
            (Some(peer_ip), selector) => {
                errs.check("spec.peerIP", parse_peer_ip(peer_ip).map(|_| ()));
                if selector.is_some() {
                    errs.push(
                        "spec.peerIP",
                        "cannot be set together with peerSelector: use one",
                    );
                }
                if spec.as_number.is_none() {
                    errs.push("spec.asNumber", "is required when peerIP is set");
                }
            }
            (None, Some(_)) => {
                if spec.as_number.is_some() {
                    errs.push(
                        "spec.asNumber",
                        "must not be set with peerSelector: the selected nodes' own AS numbers \
                         are used",
                    );
                }
            }
            (None, None) => errs.push(
                "spec.peerIP",
                "either peerIP (with asNumber) or peerSelector is required",
            ),
        }
        check_as_number(errs, "spec.asNumber", spec.as_number);
        if let Some(password) = &spec.password {
            check_password(errs, "spec.password", password);
        }
        if let Some(time) = &spec.max_restart_time {
            errs.check("spec.maxRestartTime", validate::go_duration(time));
        }
    }
}

/// A `BGPConfiguration` (projectcalico.org/v3, cluster-scoped). The one named `default`
/// holds the cluster's settings; `node.<node>` ones override some of them for one node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BgpConfiguration {
    /// Metadata; the name is `default` or `node.<node name>`.
    pub metadata: ObjectMeta,
    /// The BGP settings.
    pub spec: BgpConfigurationSpec,
}

resource_document!(
    BgpConfiguration,
    BgpConfigurationSpec,
    Kind::BgpConfiguration
);

/// The `spec` of a [`BgpConfiguration`]. Defaults apply to the `default` configuration
/// only: an unset field in a per-node one falls back to `default`'s value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpConfigurationSpec {
    /// Log level of the BGP daemon (default `Info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<LogSeverity>,
    /// Whether every node peers with every other (default true; `default` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// The cluster's AS number (default 64512; `default` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// The port BGP listens on (default 179).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    /// The password of the node-to-node mesh sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BgpPassword>,
    /// How long mesh peers keep routes while a node restarts (a duration such as `120s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<String>,
    /// Service cluster IP ranges to advertise (`default` only).
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<ServiceCidr>,
    /// Service external IP ranges to advertise (`default` only).
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<ServiceCidr>,
    /// Service load balancer IP ranges to advertise (`default` only).
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<ServiceCidr>,
}

/// A service address range to advertise (`{cidr: ...}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCidr {
    /// The range, e.g. `10.96.0.0/12`.
    #[serde(default)]
    pub cidr: String,
}

/// A log level (`logSeverityScreen`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LogSeverity {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    #[default]
    Info,
    /// Problems that were handled.
    Warning,
    /// Failures.
    Error,
    /// Failures that stop the daemon.
    Fatal,
}

impl BgpConfigurationSpec {
    /// The log level in force (default `Info`).
    pub fn log_severity_screen(&self) -> LogSeverity {
        self.log_severity_screen.unwrap_or_default()
    }

    /// Whether the node-to-node mesh is on (default true).
    pub fn node_to_node_mesh_enabled(&self) -> bool {
        self.node_to_node_mesh_enabled.unwrap_or(true)
    }

    /// The cluster AS number in force (default 64512).
    pub fn as_number(&self) -> AsNumber {
        self.as_number.unwrap_or(DEFAULT_AS_NUMBER)
    }

    /// The BGP listen port in force (default 179).
    pub fn listen_port(&self) -> u16 {
        self.listen_port.unwrap_or(DEFAULT_BGP_PORT)
    }
}

impl BgpConfiguration {
    /// Whether this is the cluster-wide configuration (named `default`).
    pub fn is_default(&self) -> bool {
        self.metadata.name == DEFAULT_BGP_CONFIGURATION_NAME
    }

    /// Writes Calico's defaults into the unset fields of the `default` configuration; a
    /// per-node configuration is left as written, so it keeps inheriting from `default`.
    pub fn apply_defaults(&mut self) {
        if !self.is_default() {
            return;
        }
        let spec = &mut self.spec;
        spec.log_severity_screen.get_or_insert(LogSeverity::Info);
        spec.node_to_node_mesh_enabled.get_or_insert(true);
        spec.as_number.get_or_insert(DEFAULT_AS_NUMBER);
        spec.listen_port.get_or_insert(DEFAULT_BGP_PORT);
    }

    pub(crate) fn check(&self, errs: &mut Errors) {
        self.metadata.check(errs, Kind::BgpConfiguration, |name| {
            validate::dns1123_subdomain(name)?;
            if name == DEFAULT_BGP_CONFIGURATION_NAME || name.starts_with("node.") {
                Ok(())
            } else {
                Err(format!(
                    "{name:?}: name the cluster-wide configuration default, or a node's \
                     node.<node name>"
                ))
            }
        });
        let spec = &self.spec;
        if !self.is_default() {
            let only_default = |set: bool, path: &str, errs: &mut Errors| {
                if set {
                    errs.push(
                        path,
                        "can only be set in the BGPConfiguration named default",
                    );
                }
            };
            only_default(
                spec.node_to_node_mesh_enabled.is_some(),
                "spec.nodeToNodeMeshEnabled",
                errs,
            );
            only_default(spec.as_number.is_some(), "spec.asNumber", errs);
            only_default(
                !spec.service_cluster_ips.is_empty(),
                "spec.serviceClusterIPs",
                errs,
            );
            only_default(
                !spec.service_external_ips.is_empty(),
                "spec.serviceExternalIPs",
                errs,
            );
            only_default(
                !spec.service_load_balancer_ips.is_empty(),
                "spec.serviceLoadBalancerIPs",
                errs,
            );
        }
        check_as_number(errs, "spec.asNumber", spec.as_number);
        if spec.listen_port == Some(0) {
            errs.push("spec.listenPort", "0 is not a valid port: use 1 to 65535");
        }
        let mesh_disabled = spec.node_to_node_mesh_enabled == Some(false);
        if let Some(password) = &spec.node_mesh_password {
            check_password(errs, "spec.nodeMeshPassword", password);
            if mesh_disabled {
                errs.push(
                    "spec.nodeMeshPassword",
                    "cannot be set when nodeToNodeMeshEnabled is false",
                );
            }
        }
        if let Some(time) = &spec.node_mesh_max_restart_time {
            errs.check("spec.nodeMeshMaxRestartTime", validate::go_duration(time));
            if mesh_disabled {
                errs.push(
                    "spec.nodeMeshMaxRestartTime",
                    "cannot be set when nodeToNodeMeshEnabled is false",
                );
            }
        }
        for (field, cidrs) in [
            ("serviceClusterIPs", &spec.service_cluster_ips),
            ("serviceExternalIPs", &spec.service_external_ips),
            ("serviceLoadBalancerIPs", &spec.service_load_balancer_ips),
        ] {
            for (i, cidr) in cidrs.iter().enumerate() {
                if validate::parse_cidr_or_ip(&cidr.cidr).is_none() {
                    errs.push(
                        format!("spec.{field}[{i}].cidr"),
                        format!("{:?} is not a valid CIDR such as 10.96.0.0/12", cidr.cidr),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses() {
        assert_eq!(
            parse_peer_ip("10.99.0.1"),
            Ok(("10.99.0.1".parse().unwrap(), None))
        );
        assert_eq!(
            parse_peer_ip("10.99.0.1:1179"),
            Ok(("10.99.0.1".parse().unwrap(), Some(1179)))
        );
        assert_eq!(
            parse_peer_ip("[fd00::1]:179"),
            Ok(("fd00::1".parse().unwrap(), Some(179)))
        );
        assert!(parse_peer_ip("10.99.0.1:0").is_err());
        assert!(parse_peer_ip("10.99.0.1:70000").is_err());
        assert!(parse_peer_ip("fd00::1:179:x").is_err());
        assert!(parse_peer_ip("router.example.com").is_err());
    }
}
