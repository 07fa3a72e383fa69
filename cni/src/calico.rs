//! The resources the plugin reads and writes, through `tortie-resources` (Calico's
//! `projectcalico.org/v3` types and etcd key layout): IP pools and the IPAM configuration
//! and the pod's record are read; the `WorkloadEndpoint` is written.
//!
//! This module only adapts those types to what the plugin needs: the pool fields that pick
//! where addresses come from, the pod's labels and named ports, and endpoint keys.

use std::collections::BTreeMap;

use ipnet::IpNet;
use tortie_ipam::IpamConfig;
pub use tortie_resources::{
    workload_endpoint_name, Kind, ObjectMeta, Protocol, WorkloadEndpoint, WorkloadEndpointPort,
    WorkloadEndpointSpec,
};
use tortie_resources::{AllowedUse, IpPool, IpamConfiguration, K8sProtocol, Pod};

/// Key prefix of all IP pools.
pub fn ip_pools_prefix() -> String {
    Kind::IpPool.prefix(None)
}

/// Key of the IPAM configuration (there is one, named `default`).
pub fn ipam_configuration_key() -> String {
    Kind::IpamConfiguration.key(None, "default")
}

/// Key prefix of all workload endpoints.
pub fn workload_endpoints_prefix() -> String {
    Kind::WorkloadEndpoint.prefix(None)
}

/// Key of one workload endpoint.
pub fn workload_endpoint_key(namespace: &str, name: &str) -> String {
    Kind::WorkloadEndpoint.key(Some(namespace), name)
}

/// Key of the stored endpoint `endpoint`.
pub fn key_of(endpoint: &WorkloadEndpoint) -> String {
    workload_endpoint_key(
        endpoint.metadata.namespace_or_default(),
        &endpoint.metadata.name,
    )
}

/// Key of a pod's record (labels, service account, ports), kept in the datastore by the
/// Kubernetes side of the control plane.
pub fn pod_key(namespace: &str, name: &str) -> String {
    Kind::Pod.key(Some(namespace), name)
}

/// The parts of an IP pool that decide whether pods get addresses from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Pool name.
    pub name: String,
    /// Its CIDR (IPv4 or IPv6).
    pub cidr: IpNet,
    /// Block prefix length (Calico's default: 26 for IPv4).
    pub block_size: u8,
    /// `nodeSelector` in force (`all()` by default).
    pub node_selector: String,
    /// `disabled`.
    pub disabled: bool,
    /// Whether `allowedUses` includes `Workload` (the default).
    pub for_workloads: bool,
}

impl Pool {
    /// Parses a stored IPPool.
    pub fn parse(bytes: &[u8]) -> Result<Pool, String> {
        let pool: IpPool = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let cidr = pool
            .spec
            .cidr_net()
            .ok_or_else(|| format!("spec.cidr {:?} is not a network", pool.spec.cidr))?;
        Ok(Pool {
            name: pool.metadata.name.clone(),
            cidr,
            block_size: pool.spec.block_size(),
            node_selector: pool.spec.node_selector().to_string(),
            disabled: pool.spec.disabled(),
            for_workloads: pool.spec.allowed_uses().contains(&AllowedUse::Workload),
        })
    }

    /// Whether the pool's selector is `all()`, the only one evaluated so far.
    pub fn selects_every_node(&self) -> bool {
        let selector: String = self.node_selector.split_whitespace().collect();
        selector.is_empty() || selector == "all()"
    }
}

/// Parses a stored IPAMConfiguration into IPAM's settings.
pub fn parse_ipam_configuration(bytes: &[u8]) -> Result<IpamConfig, String> {
    let config: IpamConfiguration = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(IpamConfig {
        strict_affinity: config.spec.strict_affinity(),
        max_blocks_per_host: config.spec.max_blocks_per_host().unwrap_or(0),
    })
}

/// What the plugin takes from a pod's record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// `spec.serviceAccountName`.
    pub service_account: Option<String>,
    /// Named container ports, for policies that match ports by name.
    pub ports: Vec<WorkloadEndpointPort>,
}

impl PodInfo {
    /// Parses a stored Kubernetes `Pod`.
    pub fn parse(bytes: &[u8]) -> Result<PodInfo, String> {
        let pod: Pod = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let ports = pod
            .spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter())
            .filter_map(|port| {
                let name = port.name.clone().filter(|n| !n.is_empty())?;
                let number = u16::try_from(port.container_port).ok().filter(|p| *p > 0)?;
                let protocol = match port.protocol.unwrap_or_default() {
                    K8sProtocol::Tcp => Protocol::Tcp,
                    K8sProtocol::Udp => Protocol::Udp,
                    K8sProtocol::Sctp => Protocol::Sctp,
                };
                Some(WorkloadEndpointPort {
                    name,
                    protocol,
                    port: number,
                    host_port: None,
                    host_ip: None,
                })
            })
            .collect();
        Ok(PodInfo {
            labels: pod.metadata.labels,
            service_account: pod.spec.service_account_name.filter(|s| !s.is_empty()),
            ports,
        })
    }
}

/// Parses a stored workload endpoint.
pub fn parse_workload_endpoint(bytes: &[u8]) -> Result<WorkloadEndpoint, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_names_follow_calicos_layout() {
        assert_eq!(
            workload_endpoint_name("node-0", "k8s", "web-0", "eth0"),
            "node--0-k8s-web--0-eth0"
        );
        assert_eq!(
            workload_endpoint_key("shop", "n"),
            "/calico/resources/v3/projectcalico.org/workloadendpoints/shop/n"
        );
        assert_eq!(
            ip_pools_prefix(),
            "/calico/resources/v3/projectcalico.org/ippools/"
        );
        assert_eq!(
            ipam_configuration_key(),
            "/calico/resources/v3/projectcalico.org/ipamconfigurations/default"
        );
    }

    #[test]
    fn pools_parse_with_calicos_defaults() {
        let pool = Pool::parse(
            br#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"p"},
                "spec":{"cidr":"10.65.0.0/16","ipipMode":"Never","natOutgoing":true}}"#,
        )
        .unwrap();
        assert_eq!(pool.block_size, 26);
        assert!(pool.selects_every_node() && !pool.disabled && pool.for_workloads);
        let tunnel_only = Pool::parse(
            br#"{"metadata":{"name":"t"},"spec":{"cidr":"10.66.0.0/16","allowedUses":["Tunnel"],
                "nodeSelector":"zone == 'a'","disabled":true}}"#,
        )
        .unwrap();
        assert!(
            !tunnel_only.for_workloads && !tunnel_only.selects_every_node() && tunnel_only.disabled
        );
    }

    #[test]
    fn pod_records_give_labels_accounts_and_named_ports() {
        let pod = PodInfo::parse(
            br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-0","labels":{"app":"web"}},
                "spec":{"serviceAccountName":"web","containers":[{"name":"c","ports":[
                  {"name":"http","containerPort":8080},{"containerPort":9090},
                  {"name":"dns","containerPort":53,"protocol":"UDP"}]}]}}"#,
        )
        .unwrap();
        assert_eq!(pod.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(pod.service_account.as_deref(), Some("web"));
        let ports: Vec<_> = pod
            .ports
            .iter()
            .map(|p| (p.name.as_str(), p.protocol, p.port))
            .collect();
        assert_eq!(
            ports,
            vec![("http", Protocol::Tcp, 8080), ("dns", Protocol::Udp, 53)]
        );
    }
}
