//! The CNI commands. Each works from a validated [`Request`](crate::config::Request) and
//! returns either the JSON to print or a [`CniError`].

mod add;
mod check;
mod del;
mod gc;
mod status;
pub mod undo;

use serde_json::Value;
use sha1::{Digest, Sha1};

use crate::{
    calico,
    config::{Command, Container, NetConf},
    spec::{CniError, ErrorCode},
};

/// How the plugin names everything that belongs to one attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`, the interface inside the pod.
    pub ifname: String,
    /// IPAM handle, `<network>.<containerID>` (`k8s-pod-network.<id>` with the usual name).
    pub handle: String,
    /// Host-side interface, `cali` + 11 hex digits.
    pub host_ifname: String,
    /// Name of the pod side while it is still in the host namespace.
    pub temp_ifname: String,
    /// `k8s`, or `cni` without Kubernetes arguments.
    pub orchestrator: &'static str,
    /// Namespace of the endpoint.
    pub namespace: String,
    /// Pod name (empty without Kubernetes arguments).
    pub pod: String,
    /// WorkloadEndpoint name.
    pub endpoint_name: String,
    /// WorkloadEndpoint key.
    pub endpoint_key: String,
}

fn sha1_hex(text: &str) -> String {
    hex::encode(Sha1::digest(text.as_bytes()))
}

/// Calico's host-side name: `cali` + the first 11 hex digits of sha1("<namespace>.<pod>"),
/// so the name is the same for every sandbox of a pod and on every node.
pub fn host_veth_name(namespace: &str, pod: &str) -> String {
    tortie_resources::workload_endpoint::host_iface_name(namespace, pod)
}

/// The host-side name of a container run without Kubernetes arguments: `cali` + the first 11
/// hex digits of sha1(container ID).
pub fn host_veth_name_for_container(container_id: &str) -> String {
    format!("cali{}", &sha1_hex(container_id)[..11])
}

impl Identity {
    /// Names for `container` on this configuration's node.
    pub fn new(conf: &NetConf, container: &Container) -> Identity {
        let id = &container.id;
        let (orchestrator, namespace, pod, workload, host_ifname) = match &container.pod {
            Some(pod) => (
                "k8s",
                pod.namespace.clone(),
                pod.name.clone(),
                pod.name.clone(),
                host_veth_name(&pod.namespace, &pod.name),
            ),
            None => (
                "cni",
                "default".to_string(),
                String::new(),
                id.clone(),
                host_veth_name_for_container(id),
            ),
        };
        let endpoint_name = calico::workload_endpoint_name(
            &conf.nodename,
            orchestrator,
            &workload,
            &container.ifname,
        );
        Identity {
            container_id: id.clone(),
            ifname: container.ifname.clone(),
            handle: tortie_ipam::workload_handle(&conf.name, id),
            host_ifname,
            temp_ifname: format!("tmp{}", &sha1_hex(id)[..11]),
            orchestrator,
            endpoint_key: calico::workload_endpoint_key(&namespace, &endpoint_name),
            namespace,
            pod,
            endpoint_name,
        }
    }
}

/// Runs `command`; `Some(json)` is printed on stdout.
pub async fn execute(
    command: Command,
    conf: &NetConf,
    container: Option<&Container>,
) -> Result<Option<Value>, CniError> {
    let container = || {
        container.ok_or_else(|| CniError::new(ErrorCode::InvalidEnvironment, "no container given"))
    };
    match command {
        Command::Add => add::run(conf, container()?).await.map(Some),
        Command::Del => del::run(conf, container()?).await.map(|()| None),
        Command::Check => check::run(conf, container()?).await.map(|()| None),
        Command::Status => status::run(conf).await.map(|()| None),
        Command::Gc => gc::run(conf).await.map(|()| None),
        Command::Version => Ok(Some(crate::spec::version_info())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_match_calicos() {
        // Calico: "cali" + sha1("default.web-0")[:11], computed independently.
        assert_eq!(host_veth_name("default", "web-0"), "cali0d7763386da");
        assert_eq!(
            host_veth_name("default", "web-0").len(),
            15,
            "fits IFNAMSIZ"
        );
    }
}
