//! Kubernetes `Namespace` and `Pod` (v1), kept as label records for etcd mode.

use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::K8sProtocol;
use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::validate::{self, Errors};

/// A Kubernetes `Namespace` (v1, cluster-scoped), kept for its labels. `spec` and `status`
/// are accepted and dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Namespace {
    /// Name and labels.
    pub metadata: ObjectMeta,
}

impl Serialize for Namespace {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut doc = serializer.serialize_struct("Namespace", 3)?;
        doc.serialize_field("apiVersion", Kind::Namespace.api_version())?;
        doc.serialize_field("kind", Kind::Namespace.name())?;
        doc.serialize_field("metadata", &self.metadata)?;
        doc.end()
    }
}

impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Document {
            #[serde(default)]
            api_version: Option<String>,
            #[serde(default)]
            kind: Option<String>,
            metadata: ObjectMeta,
            #[serde(default, rename = "spec")]
            _spec: IgnoredAny,
            #[serde(default, rename = "status")]
            _status: IgnoredAny,
        }
        let doc = Document::deserialize(deserializer)?;
        crate::envelope::check_type(
            Kind::Namespace,
            doc.api_version.as_deref(),
            doc.kind.as_deref(),
        )
        .map_err(de::Error::custom)?;
        Ok(Namespace {
            metadata: doc.metadata,
        })
    }
}

impl Namespace {
    pub(crate) fn check(&self, errs: &mut Errors) {
        self.metadata
            .check(errs, Kind::Namespace, validate::dns1123_label);
    }
}

/// A Kubernetes `Pod` (v1, namespaced), kept for its labels, node, ports and addresses.
/// Fields of `spec` and `status` not modelled here are accepted and dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pod {
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// Where the pod runs and what it declares.
    pub spec: PodSpec,
    /// The pod's addresses.
    pub status: PodStatus,
}

/// The parts of a pod's `spec` the network needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The node the pod is scheduled on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The pod's service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Whether the pod uses the node's network namespace (it then has no endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// The containers, for their declared ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
}

/// A container of a [`Pod`], for its ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// The container's name.
    #[serde(default)]
    pub name: String,
    /// The ports the container declares.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
}

/// A port a container declares; named ones can be matched by name in policies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// The port's name, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port number in the pod.
    pub container_port: i32,
    /// The protocol (default TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<K8sProtocol>,
    /// The node port mapped to it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    /// The node address the host port binds, if restricted.
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// The parts of a pod's `status` the network needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    /// The pod's primary address.
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    /// All the pod's addresses (dual stack).
    #[serde(default, rename = "podIPs", skip_serializing_if = "Vec::is_empty")]
    pub pod_ips: Vec<PodIp>,
}

/// One entry of `status.podIPs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodIp {
    /// The address.
    #[serde(default)]
    pub ip: String,
}

impl PodStatus {
    fn is_empty(&self) -> bool {
        *self == PodStatus::default()
    }
}

impl Serialize for Pod {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut doc = serializer.serialize_struct("Pod", 5)?;
        doc.serialize_field("apiVersion", Kind::Pod.api_version())?;
        doc.serialize_field("kind", Kind::Pod.name())?;
        doc.serialize_field("metadata", &self.metadata)?;
        doc.serialize_field("spec", &self.spec)?;
        if self.status.is_empty() {
            doc.skip_field("status")?;
        } else {
            doc.serialize_field("status", &self.status)?;
        }
        doc.end()
    }
}

impl<'de> Deserialize<'de> for Pod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Document {
            #[serde(default)]
            api_version: Option<String>,
            #[serde(default)]
            kind: Option<String>,
            metadata: ObjectMeta,
            #[serde(default)]
            spec: Option<PodSpec>,
            #[serde(default)]
            status: Option<PodStatus>,
        }
        let doc = Document::deserialize(deserializer)?;
        crate::envelope::check_type(Kind::Pod, doc.api_version.as_deref(), doc.kind.as_deref())
            .map_err(de::Error::custom)?;
        Ok(Pod {
            metadata: doc.metadata,
            spec: doc.spec.unwrap_or_default(),
            status: doc.status.unwrap_or_default(),
        })
    }
}

impl Pod {
    /// Writes the defaults the Kubernetes API server would: protocol TCP on container
    /// ports that name none.
    pub fn apply_defaults(&mut self) {
        for port in self
            .spec
            .containers
            .iter_mut()
            .flat_map(|c| c.ports.iter_mut())
        {
            port.protocol.get_or_insert(K8sProtocol::Tcp);
        }
    }

    pub(crate) fn check(&self, errs: &mut Errors) {
        self.metadata
            .check(errs, Kind::Pod, validate::dns1123_subdomain);
        if let Some(node) = &self.spec.node_name {
            errs.check("spec.nodeName", validate::dns1123_subdomain(node));
        }
        for (i, container) in self.spec.containers.iter().enumerate() {
            for (j, port) in container.ports.iter().enumerate() {
                let path = format!("spec.containers[{i}].ports[{j}]");
                if !(1..=65535).contains(&port.container_port) {
                    errs.push(
                        format!("{path}.containerPort"),
                        format!(
                            "{} is out of range: must be 1 to 65535",
                            port.container_port
                        ),
                    );
                }
                if let Some(name) = &port.name {
                    errs.check(format!("{path}.name"), validate::port_name(name));
                }
                if let Some(host_port) = port.host_port {
                    if !(1..=65535).contains(&host_port) {
                        errs.push(
                            format!("{path}.hostPort"),
                            format!("{host_port} is out of range: must be 1 to 65535"),
                        );
                    }
                }
                if let Some(ip) = &port.host_ip {
                    errs.check(
                        format!("{path}.hostIP"),
                        validate::ip_address(ip, None).map(|_| ()),
                    );
                }
            }
        }
        if let Some(ip) = &self.status.pod_ip {
            errs.check("status.podIP", validate::ip_address(ip, None).map(|_| ()));
        }
        for (i, ip) in self.status.pod_ips.iter().enumerate() {
            errs.check(
                format!("status.podIPs[{i}].ip"),
                validate::ip_address(&ip.ip, None).map(|_| ()),
            );
        }
    }
}
