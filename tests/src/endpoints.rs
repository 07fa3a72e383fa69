//! The endpoints file a node's agent reads: the workloads on that node.
//!
//! ```json
//! {"endpoints":[{"name":"pod-0-0","namespace":"default","node":"node-0",
//!   "iface":"cali…","ipv4":"10.65.0.10","mac":"02:54:0a:41:00:0a","labels":{"app":"pod-0-0"}}]}
//! ```

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::spec::Pod;
use crate::state::{write_json_atomic, StateError};

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointsFile {
    /// Workloads on the node.
    pub endpoints: Vec<Endpoint>,
}

/// One workload endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Pod name.
    pub name: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Node the pod runs on.
    pub node: String,
    /// Host-side interface (`cali…`) in the node namespace.
    pub iface: String,
    /// The pod's address.
    pub ipv4: Ipv4Addr,
    /// MAC of the pod's `eth0`.
    pub mac: String,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
}

impl From<&Pod> for Endpoint {
    fn from(pod: &Pod) -> Self {
        Self {
            name: pod.name.clone(),
            namespace: pod.namespace.clone(),
            node: pod.node.clone(),
            iface: pod.host_iface.clone(),
            ipv4: pod.ip,
            mac: pod.mac.clone(),
            labels: pod.labels.clone(),
        }
    }
}

impl EndpointsFile {
    /// The endpoints of the pods that run on `node`.
    pub fn for_node<'a>(node: &str, pods: impl IntoIterator<Item = &'a Pod>) -> Self {
        Self {
            endpoints: pods
                .into_iter()
                .filter(|pod| pod.node == node)
                .map(Endpoint::from)
                .collect(),
        }
    }

    /// Writes the file atomically (temporary file + rename).
    pub fn write(&self, path: &Path) -> Result<(), StateError> {
        write_json_atomic(path, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::LabSpec;

    #[test]
    fn endpoints_file_has_the_agreed_shape() {
        let (_, pods) = LabSpec::new("lab", 2, 1).plan();
        let file = EndpointsFile::for_node("node-1", &pods);
        let json = serde_json::to_value(&file).expect("serializable");
        let expected = serde_json::json!({"endpoints": [{
            "name": "pod-1-0",
            "namespace": "default",
            "node": "node-1",
            "iface": crate::spec::cali_iface_name("default", "pod-1-0"),
            "ipv4": "10.65.1.10",
            "mac": "02:54:0a:41:01:0a",
            "labels": {"app": "pod-1-0"},
        }]});
        assert_eq!(json, expected);
    }
}
