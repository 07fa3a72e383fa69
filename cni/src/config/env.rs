//! The `CNI_*` environment: which container, which namespace, which interface, which pod.

use std::path::PathBuf;

use crate::spec::{CniError, ErrorCode};

/// The process environment the plugin reads (only these variables).
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// `CNI_COMMAND`.
    pub command: Option<String>,
    /// `CNI_CONTAINERID`.
    pub container_id: Option<String>,
    /// `CNI_NETNS`.
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: Option<String>,
    /// `CNI_ARGS`.
    pub args: Option<String>,
    /// `TORTIE_DATASTORE_TYPE`, used when the configuration has no `datastore_type`.
    pub datastore_type: Option<String>,
    /// `TORTIE_ETCD_ENDPOINTS`, used when the configuration has no `etcd_endpoints`.
    pub etcd_endpoints: Option<String>,
    /// `TORTIE_NODENAME`, used when the configuration has no `nodename`.
    pub nodename: Option<String>,
}

impl Environment {
    /// Reads the variables through `lookup` (`std::env::var` in the binary).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Environment {
            command: lookup("CNI_COMMAND"),
            container_id: lookup("CNI_CONTAINERID"),
            netns: lookup("CNI_NETNS"),
            ifname: lookup("CNI_IFNAME"),
            args: lookup("CNI_ARGS"),
            datastore_type: lookup("TORTIE_DATASTORE_TYPE"),
            etcd_endpoints: lookup("TORTIE_ETCD_ENDPOINTS"),
            nodename: lookup("TORTIE_NODENAME"),
        }
    }

    /// Reads the process environment.
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// The pod a container belongs to, from `CNI_ARGS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct K8sPod {
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `K8S_POD_NAME`.
    pub name: String,
}

/// The container an ADD, DEL or CHECK is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// `CNI_CONTAINERID`.
    pub id: String,
    /// `CNI_NETNS`; may be absent for DEL.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// The pod, when the runtime is Kubernetes.
    pub pod: Option<K8sPod>,
}

pub(super) fn env_error(msg: impl Into<String>) -> CniError {
    CniError::new(ErrorCode::InvalidEnvironment, msg)
}

/// Container IDs are alphanumerics, `_`, `.` and `-`, starting with an alphanumeric (spec).
pub(super) fn valid_container_id(id: &str) -> bool {
    id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Interface names the kernel accepts: 1–15 bytes, no `/`, `:` or whitespace, not `.`/`..`.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

pub(super) fn container(env: &Environment, netns_required: bool) -> Result<Container, CniError> {
    let non_empty = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
    let id = non_empty(&env.container_id).ok_or_else(|| {
        env_error("CNI_CONTAINERID is not set")
            .details("the runtime must set CNI_CONTAINERID to the container's ID")
    })?;
    if !valid_container_id(&id) {
        return Err(env_error(format!("CNI_CONTAINERID={id} is invalid")).details(
            "container IDs are letters, digits, '_', '.' and '-', starting with a letter or digit",
        ));
    }
    let netns = non_empty(&env.netns).map(PathBuf::from);
    if netns_required && netns.is_none() {
        return Err(env_error("CNI_NETNS is not set")
            .details("the runtime must set CNI_NETNS to the container's network namespace path"));
    }
    let ifname = non_empty(&env.ifname)
        .ok_or_else(|| env_error("CNI_IFNAME is not set").details("set CNI_IFNAME, like eth0"))?;
    if !valid_ifname(&ifname) {
        return Err(env_error(format!("CNI_IFNAME={ifname} is invalid"))
            .details("interface names are 1 to 15 characters without '/', ':' or whitespace"));
    }
    let pod = parse_cni_args(env.args.as_deref().unwrap_or(""))?;
    Ok(Container {
        id,
        netns,
        ifname,
        pod,
    })
}

/// `K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;...`; other keys are ignored.
fn parse_cni_args(args: &str) -> Result<Option<K8sPod>, CniError> {
    let mut namespace = None;
    let mut name = None;
    for pair in args.split(';').filter(|p| !p.trim().is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(
                env_error(format!("CNI_ARGS entry `{pair}` is not KEY=VALUE"))
                    .details(format!("CNI_ARGS={args}")),
            );
        };
        match key.trim() {
            "K8S_POD_NAMESPACE" => namespace = Some(value.trim().to_string()),
            "K8S_POD_NAME" => name = Some(value.trim().to_string()),
            _ => {}
        }
    }
    match (namespace, name) {
        (Some(namespace), Some(name)) if !namespace.is_empty() && !name.is_empty() => {
            Ok(Some(K8sPod { namespace, name }))
        }
        (None, None) => Ok(None),
        _ => Err(
            env_error("CNI_ARGS has only one of K8S_POD_NAMESPACE and K8S_POD_NAME")
                .details(format!("both must be set and non-empty; CNI_ARGS={args}")),
        ),
    }
}
