//! `WorkloadEndpoint`: a pod's network interface as Calico sees it, and Calico's naming of
//! endpoints.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use ipnet::IpNet;

use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::validate::{self, Errors};
use crate::values::Protocol;

/// The orchestrator name of Kubernetes endpoints.
pub const ORCHESTRATOR_K8S: &str = "k8s";
/// The interface name of a pod's primary endpoint.
pub const DEFAULT_ENDPOINT: &str = "eth0";

/// A `WorkloadEndpoint` (projectcalico.org/v3, namespaced): one interface of one pod.
///
/// Its name is derived from its identifiers; see [`workload_endpoint_name`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadEndpoint {
    /// Name, namespace and labels (the pod's labels plus Calico's own).
    pub metadata: ObjectMeta,
    /// The endpoint's identifiers, addresses and interface.
    pub spec: WorkloadEndpointSpec,
}

resource_document!(
    WorkloadEndpoint,
    WorkloadEndpointSpec,
    Kind::WorkloadEndpoint
);

/// The `spec` of a [`WorkloadEndpoint`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    /// The orchestrator that created the workload (`k8s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<String>,
    /// The workload's name for non-Kubernetes orchestrators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The node the workload runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The container runtime's ID of the pod sandbox.
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
    /// The pod's name (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The interface inside the workload (`eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The pod's service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The endpoint's addresses, each a single address (`10.65.0.10/32`).
    #[serde(default, rename = "ipNetworks", skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<String>,
    /// One-to-one NAT mappings onto the endpoint's addresses.
    #[serde(default, rename = "ipNATs", skip_serializing_if = "Vec::is_empty")]
    pub ip_nats: Vec<IpNat>,
    /// The profiles whose rules apply to the endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// The host side of the endpoint's veth (`cali1234567890a`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    /// The MAC address of the interface inside the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The workload's named ports, for rules that match ports by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<WorkloadEndpointPort>,
}

/// A one-to-one NAT of a [`WorkloadEndpoint`] (`spec.ipNATs[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpNat {
    /// The endpoint's address (one of its `ipNetworks`).
    #[serde(default, rename = "internalIP")]
    pub internal_ip: String,
    /// The address that maps onto it.
    #[serde(default, rename = "externalIP")]
    pub external_ip: String,
}

/// A port the workload declares (`spec.ports[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointPort {
    /// The port's name; required unless `hostPort` is set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The protocol (TCP, UDP or SCTP).
    pub protocol: Protocol,
    /// The port number in the workload.
    pub port: u16,
    /// The node port mapped to it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// The node address the host port binds, if restricted.
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

impl WorkloadEndpointSpec {
    /// The endpoint's addresses that parse (a bare address counts as a /32 or /128).
    pub fn ip_nets(&self) -> Vec<IpNet> {
        self.ip_networks
            .iter()
            .filter_map(|n| validate::parse_cidr_or_ip(n))
            .collect()
    }

    /// The workload-side MAC address, when set and valid.
    pub fn mac_addr(&self) -> Option<[u8; 6]> {
        validate::parse_mac(self.mac.as_deref()?)
    }

    /// The name Calico gives an endpoint with these identifiers, when all are set: the pod
    /// is the workload segment for `k8s`, the container ID for `cni`, else `workload`.
    pub fn expected_name(&self) -> Option<String> {
        let orchestrator = self.orchestrator.as_deref()?;
        let workload = match orchestrator {
            ORCHESTRATOR_K8S => self.pod.as_deref()?,
            "cni" => self.container_id.as_deref()?,
            _ => self.workload.as_deref()?,
        };
        Some(workload_endpoint_name(
            self.node.as_deref()?,
            orchestrator,
            workload,
            self.endpoint.as_deref()?,
        ))
    }
}

/// Calico's name for a workload endpoint: `<node>-<orchestrator>-<workload>-<endpoint>`,
/// with each `-` inside a segment doubled so the name splits back unambiguously.
///
/// For a Kubernetes pod: `workload_endpoint_name("node-0", "k8s", "pod-a", "eth0")` is
/// `"node--0-k8s-pod--a-eth0"`. Segments must not begin or end with `-` (validation
/// reports that).
pub fn workload_endpoint_name(
    node: &str,
    orchestrator: &str,
    workload: &str,
    endpoint: &str,
) -> String {
    [node, orchestrator, workload, endpoint]
        .map(|segment| segment.replace('-', "--"))
        .join("-")
}

/// The identifiers a workload endpoint name encodes; see [`parse_workload_endpoint_name`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadEndpointNameParts {
    /// The node.
    pub node: String,
    /// The orchestrator (`k8s`).
    pub orchestrator: String,
    /// The workload: the pod for `k8s`.
    pub workload: String,
    /// The interface inside the workload (`eth0`).
    pub endpoint: String,
}

/// Splits a name made by [`workload_endpoint_name`] back into its four segments; `None`
/// when it does not have exactly four.
pub fn parse_workload_endpoint_name(name: &str) -> Option<WorkloadEndpointNameParts> {
    let bytes = name.as_bytes();
    let mut segments = Vec::new();
    let mut start = 0;
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == b'-' {
            if bytes.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            segments.push(name[start..i].replace("--", "-"));
            start = i + 1;
        }
        i += 1;
    }
    segments.push(name[start..].replace("--", "-"));
    if segments.len() != 4 || segments.iter().any(String::is_empty) {
        return None;
    }
    let mut segments = segments.into_iter();
    Some(WorkloadEndpointNameParts {
        node: segments.next()?,
        orchestrator: segments.next()?,
        workload: segments.next()?,
        endpoint: segments.next()?,
    })
}

fn container_id(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid container ID: use letters, digits and '-', starting and \
             ending with a letter or digit"
        ))
    }
}

impl WorkloadEndpoint {
    pub(crate) fn check(&self, errs: &mut Errors) {
        self.metadata
            .check(errs, Kind::WorkloadEndpoint, validate::dns1123_subdomain);
        let spec = &self.spec;
        for (path, value) in [
            ("spec.node", &spec.node),
            ("spec.orchestrator", &spec.orchestrator),
            ("spec.workload", &spec.workload),
            ("spec.pod", &spec.pod),
            ("spec.endpoint", &spec.endpoint),
        ] {
            let Some(value) = value else { continue };
            if value.starts_with('-') || value.ends_with('-') {
                errs.push(
                    path,
                    format!("{value:?} must not begin or end with '-' (it is part of the name)"),
                );
            } else if path != "spec.orchestrator" {
                errs.check(path, validate::dns1123_subdomain(value));
            }
        }
        if let Some(id) = &spec.container_id {
            errs.check("spec.containerID", container_id(id));
        }
        if let Some(expected) = spec.expected_name() {
            if !self.metadata.name.is_empty() && self.metadata.name != expected {
                errs.push(
                    "metadata.name",
                    format!(
                        "{:?} does not match the endpoint's node, orchestrator, workload and \
                         endpoint: name it {expected:?}",
                        self.metadata.name
                    ),
                );
            }
        }
        let mut networks = Vec::new();
        for (i, network) in spec.ip_networks.iter().enumerate() {
            let path = format!("spec.ipNetworks[{i}]");
            match validate::parse_cidr_or_ip(network) {
                None => errs.push(
                    path,
                    format!("{network:?} is not a valid address such as 10.65.0.10/32"),
                ),
                Some(net) if net.prefix_len() != net.max_prefix_len() => errs.push(
                    path,
                    format!(
                        "{network} contains more than one address: use /{}",
                        net.max_prefix_len()
                    ),
                ),
                Some(net) => networks.push(net),
            }
        }
        for (i, nat) in spec.ip_nats.iter().enumerate() {
            check_nat(errs, &format!("spec.ipNATs[{i}]"), nat, &networks);
        }
        for (i, profile) in spec.profiles.iter().enumerate() {
            errs.check(
                format!("spec.profiles[{i}]"),
                validate::dns1123_subdomain(profile),
            );
        }
        if let Some(name) = &spec.interface_name {
            errs.check("spec.interfaceName", validate::interface_name(name));
        }
        if let Some(mac) = &spec.mac {
            errs.check("spec.mac", validate::mac_address(mac));
        }
        for (i, port) in spec.ports.iter().enumerate() {
            check_port(errs, &format!("spec.ports[{i}]"), port);
        }
    }
}

fn check_nat(errs: &mut Errors, path: &str, nat: &IpNat, networks: &[IpNet]) {
    let internal = validate::ip_address(&nat.internal_ip, None);
    let external = validate::ip_address(&nat.external_ip, None);
    if let Err(reason) = &internal {
        errs.push(format!("{path}.internalIP"), reason.clone());
    }
    if let Err(reason) = &external {
        errs.push(format!("{path}.externalIP"), reason.clone());
    }
    if let (Ok(internal), Ok(external)) = (internal, external) {
        if internal.is_ipv4() != external.is_ipv4() {
            errs.push(
                format!("{path}.externalIP"),
                format!("{external} and {internal} are of different IP versions"),
            );
        }
        let in_endpoint = networks.iter().any(|net| net.contains(&internal));
        if !in_endpoint {
            errs.push(
                format!("{path}.internalIP"),
                format!("{internal} is not one of the endpoint's ipNetworks"),
            );
        }
    }
}

fn check_port(errs: &mut Errors, path: &str, port: &WorkloadEndpointPort) {
    if !port.protocol.supports_ports() {
        errs.push(
            format!("{path}.protocol"),
            format!("{} has no ports: use TCP, UDP or SCTP", port.protocol),
        );
    }
    if port.port == 0 {
        errs.push(
            format!("{path}.port"),
            "0 is not a valid port: use 1 to 65535",
        );
    }
    if port.name.is_empty() {
        if port.host_port.is_none() {
            errs.push(format!("{path}.name"), "is required unless hostPort is set");
        }
    } else {
        errs.check(format!("{path}.name"), validate::port_name(&port.name));
    }
    if port.host_port == Some(0) {
        errs.push(
            format!("{path}.hostPort"),
            "0 is not a valid port: use 1 to 65535 or omit hostPort",
        );
    }
    if let Some(ip) = &port.host_ip {
        errs.check(
            format!("{path}.hostIP"),
            validate::ip_address(ip, None).map(|_: IpAddr| ()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_dashes() {
        assert_eq!(
            workload_endpoint_name("node-0", "k8s", "pod-a", "eth0"),
            "node--0-k8s-pod--a-eth0"
        );
        assert_eq!(
            workload_endpoint_name("ip-10-0-0-1.ec2.internal", "k8s", "web", "eth0"),
            "ip--10--0--0--1.ec2.internal-k8s-web-eth0"
        );
    }

    #[test]
    fn names_split_back() {
        let parts = parse_workload_endpoint_name("node--0-k8s-pod--a-eth0").unwrap();
        assert_eq!(
            parts,
            WorkloadEndpointNameParts {
                node: "node-0".into(),
                orchestrator: "k8s".into(),
                workload: "pod-a".into(),
                endpoint: "eth0".into(),
            }
        );
        assert_eq!(parse_workload_endpoint_name("node-k8s-pod"), None);
        assert_eq!(parse_workload_endpoint_name("a-b-c-d-e"), None);
    }
}

/// Calico's host-side interface name of a Kubernetes pod: `cali` + the first 11 hex digits of
/// sha1("<namespace>.<pod>"). The same for every sandbox of the pod and on every node, so
/// tools can find a pod's interface from its name alone.
pub fn host_iface_name(namespace: &str, pod: &str) -> String {
    use sha1::{Digest, Sha1};
    let digest = hex::encode(Sha1::digest(format!("{namespace}.{pod}").as_bytes()));
    format!("cali{}", &digest[..11])
}

#[cfg(test)]
mod iface_name_tests {
    #[test]
    fn matches_calicos_names() {
        assert_eq!(
            super::host_iface_name("default", "web-0"),
            "cali0d7763386da"
        );
    }
}
