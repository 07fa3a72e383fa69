//! What the runtime hands the plugin: the `CNI_*` environment and the network configuration
//! on stdin, validated into a [`Request`].
//!
//! Validation happens before anything is touched, and every failure names the variable or
//! field at fault, so a broken `/etc/cni/net.d` file is found from the kubelet's log alone.

mod env;

use std::{collections::BTreeSet, path::PathBuf};

use serde_json::{Map, Value};
use tracing::Level;

use env::{container, env_error, valid_container_id};
pub use env::{valid_ifname, Container, Environment, K8sPod};

use crate::spec::{CniError, CniVersion, ErrorCode, SPEC_VERSION};

/// The default pod MTU when the configuration gives none.
pub const DEFAULT_MTU: u32 = 1500;

/// The CNI operation asked for in `CNI_COMMAND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Whether the plugin can serve ADD.
    Status,
    /// Release what belongs to attachments the runtime no longer knows.
    Gc,
    /// Report the supported versions.
    Version,
}

impl Command {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }
}

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attachment {
    /// Container ID.
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

/// Where logs go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Most verbose level written.
    pub level: Level,
    /// Log file (appended); stderr when `None`.
    pub file: Option<PathBuf>,
}

/// The validated network configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    /// The requested version (results are rendered in its format).
    pub version: CniVersion,
    /// Network name; IPAM handles are `<name>.<containerID>`.
    pub name: String,
    /// etcd endpoints (`datastore_type: etcdv3`).
    pub etcd_endpoints: Vec<String>,
    /// This node's name.
    pub nodename: String,
    /// MTU of both veth ends.
    pub mtu: u32,
    /// Logging.
    pub log: LogConfig,
    /// `prevResult`, if given.
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC only).
    pub valid_attachments: Option<BTreeSet<Attachment>>,
}

/// A validated invocation.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// VERSION needs nothing else.
    Version,
    /// Any other command.
    Network {
        /// ADD, DEL, CHECK, STATUS or GC.
        command: Command,
        /// The configuration.
        conf: Box<NetConf>,
        /// The container (ADD, DEL and CHECK).
        container: Option<Container>,
    },
}

fn config_error(field: &str, details: impl Into<String>) -> CniError {
    CniError::new(
        ErrorCode::InvalidNetworkConfig,
        format!("invalid network configuration field `{field}`"),
    )
    .details(details)
}

/// The version to tag an error with: the configuration's when it is a supported one.
pub fn error_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned))
        .filter(|v| CniVersion::parse(v).is_some())
        .unwrap_or_else(|| SPEC_VERSION.to_string())
}

/// Validates the environment and stdin; nothing is touched before this succeeds.
pub fn parse(env: &Environment, stdin: &[u8]) -> Result<Request, CniError> {
    let command = match env.command.as_deref().map(str::trim) {
        None | Some("") => {
            return Err(env_error("CNI_COMMAND is not set").details(
                "the runtime must set CNI_COMMAND to ADD, DEL, CHECK, STATUS, GC or VERSION",
            ))
        }
        Some(text) => Command::parse(text).ok_or_else(|| {
            env_error(format!("CNI_COMMAND={text} is not a CNI command"))
                .details("expected ADD, DEL, CHECK, STATUS, GC or VERSION")
        })?,
    };
    if command == Command::Version {
        return Ok(Request::Version);
    }
    let conf_map = decode(stdin)?;
    let version = parse_version(&conf_map)?;
    let container = match command {
        Command::Add | Command::Check => Some(container(env, true)?),
        Command::Del => Some(container(env, false)?),
        _ => None,
    };
    let conf = net_conf(env, &conf_map, version, command)?;
    Ok(Request::Network {
        command,
        conf: Box::new(conf),
        container,
    })
}

fn decode(stdin: &[u8]) -> Result<Map<String, Value>, CniError> {
    if stdin.iter().all(u8::is_ascii_whitespace) {
        return Err(
            CniError::new(ErrorCode::DecodeFailed, "no network configuration on stdin")
                .details("the runtime must pass the network configuration JSON on stdin"),
        );
    }
    match serde_json::from_slice::<Value>(stdin) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(CniError::new(
            ErrorCode::DecodeFailed,
            "the network configuration is not a JSON object",
        )
        .details(format!("found {other}"))),
        Err(e) => Err(CniError::new(
            ErrorCode::DecodeFailed,
            "failed to decode the network configuration",
        )
        .details(e.to_string())),
    }
}

fn parse_version(conf: &Map<String, Value>) -> Result<CniVersion, CniError> {
    let supported = CniVersion::ALL.map(|v| v.as_str()).join(", ");
    match conf.get("cniVersion") {
        None => Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            "the network configuration has no cniVersion",
        )
        .details(format!("set cniVersion to one of {supported}"))),
        Some(Value::String(text)) => CniVersion::parse(text).ok_or_else(|| {
            CniError::new(
                ErrorCode::IncompatibleVersion,
                format!("incompatible CNI version {text}"),
            )
            .details(format!("this plugin supports {supported}"))
        }),
        Some(other) => Err(config_error(
            "cniVersion",
            format!("must be a string like \"1.1.0\", found {other}"),
        )),
    }
}

fn string_field(conf: &Map<String, Value>, field: &str) -> Result<Option<String>, CniError> {
    match conf.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.trim().to_string())),
        Some(other) => Err(config_error(
            field,
            format!("must be a string, found {other}"),
        )),
    }
}

fn net_conf(
    env: &Environment,
    conf: &Map<String, Value>,
    version: CniVersion,
    command: Command,
) -> Result<NetConf, CniError> {
    let name = string_field(conf, "name")?
        .ok_or_else(|| config_error("name", "the network needs a name, like k8s-pod-network"))?;
    if !valid_container_id(&name) {
        return Err(config_error(
            "name",
            format!("{name:?}: use letters, digits, '_', '.' and '-'"),
        ));
    }

    let datastore_type = string_field(conf, "datastore_type")?
        .or_else(|| env.datastore_type.clone().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "etcdv3".to_string());
    if datastore_type != "etcdv3" {
        return Err(CniError::new(
            ErrorCode::UnsupportedField,
            format!("unsupported field datastore_type={datastore_type}"),
        )
        .details("only datastore_type \"etcdv3\" is supported"));
    }
    let endpoints_text = string_field(conf, "etcd_endpoints")?
        .or_else(|| env.etcd_endpoints.clone().filter(|v| !v.trim().is_empty()))
        .ok_or_else(|| {
            config_error(
                "etcd_endpoints",
                "datastore_type etcdv3 needs etcd_endpoints (or TORTIE_ETCD_ENDPOINTS), like http://10.99.0.2:2379",
            )
        })?;
    let etcd_endpoints: Vec<String> = endpoints_text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    if etcd_endpoints.is_empty() {
        return Err(config_error("etcd_endpoints", "no endpoint given"));
    }

    let nodename = match string_field(conf, "nodename")?
        .or_else(|| env.nodename.clone().filter(|v| !v.trim().is_empty()))
    {
        Some(name) => name,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                config_error("nodename", "not set, no TORTIE_NODENAME and no hostname")
            })?,
    };

    let mtu = match conf.get("mtu") {
        None | Some(Value::Null) => DEFAULT_MTU,
        Some(value) => value
            .as_u64()
            .filter(|m| (68..=65535).contains(m))
            .map(|m| m as u32)
            .ok_or_else(|| {
                config_error(
                    "mtu",
                    format!("must be a number from 68 to 65535, found {value}"),
                )
            })?,
    };

    match conf.get("ipam") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ipam)) => match ipam.get("type").and_then(Value::as_str) {
            Some("tortie-ipam" | "calico-ipam") => {}
            Some(other) => {
                return Err(CniError::new(
                    ErrorCode::UnsupportedField,
                    format!("unsupported field ipam.type={other}"),
                )
                .details("only \"tortie-ipam\" (or its alias \"calico-ipam\") is supported"))
            }
            None => return Err(config_error("ipam.type", "missing; use \"tortie-ipam\"")),
        },
        Some(other) => {
            return Err(config_error(
                "ipam",
                format!("must be an object, found {other}"),
            ))
        }
    }

    let level = match string_field(conf, "log_level")?
        .map(|l| l.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("info") => Level::INFO,
        Some("error") => Level::ERROR,
        Some("warn" | "warning") => Level::WARN,
        Some("debug") => Level::DEBUG,
        Some("trace") => Level::TRACE,
        Some(other) => {
            return Err(config_error(
                "log_level",
                format!("{other:?}: use error, warning, info, debug or trace"),
            ))
        }
    };
    let file = string_field(conf, "log_file_path")?.map(PathBuf::from);

    let prev_result = match conf.get("prevResult") {
        None | Some(Value::Null) => None,
        Some(value @ Value::Object(_)) => Some(value.clone()),
        Some(other) => {
            return Err(config_error(
                "prevResult",
                format!("must be an object, found {other}"),
            ))
        }
    };

    let valid_attachments = if command == Command::Gc {
        Some(valid_attachments(conf)?)
    } else {
        None
    };

    Ok(NetConf {
        version,
        name,
        etcd_endpoints,
        nodename,
        mtu,
        log: LogConfig { level, file },
        prev_result,
        valid_attachments,
    })
}

fn valid_attachments(conf: &Map<String, Value>) -> Result<BTreeSet<Attachment>, CniError> {
    const FIELD: &str = "cni.dev/valid-attachments";
    let Some(value) = conf.get(FIELD) else {
        // Treating a missing list as empty would release every pod of the node.
        return Err(config_error(
            FIELD,
            "GC needs the list of attachments still in use",
        ));
    };
    let Value::Array(entries) = value else {
        return Err(config_error(
            FIELD,
            format!("must be an array, found {value}"),
        ));
    };
    entries
        .iter()
        .map(|entry| {
            let get = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_owned);
            match (get("containerID"), get("ifname")) {
                (Some(container_id), Some(ifname)) => Ok(Attachment {
                    container_id,
                    ifname,
                }),
                _ => Err(config_error(
                    FIELD,
                    format!("each entry needs containerID and ifname, found {entry}"),
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(command: &str) -> Environment {
        Environment {
            command: Some(command.into()),
            container_id: Some("c0ffee".into()),
            netns: Some("/run/netns/pod".into()),
            ifname: Some("eth0".into()),
            args: Some(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c0ffee"
                    .into(),
            ),
            ..Environment::default()
        }
    }

    const CONF: &str = r#"{"cniVersion":"1.1.0","name":"k8s-pod-network","type":"tortie-cni",
        "datastore_type":"etcdv3","etcd_endpoints":"http://10.99.0.2:2379, http://10.99.0.3:2379",
        "nodename":"node-0","mtu":1480,"ipam":{"type":"tortie-ipam"},"log_level":"debug"}"#;

    fn code_of(result: Result<Request, CniError>) -> ErrorCode {
        result.expect_err("should fail").code
    }

    #[test]
    fn a_full_add_parses() {
        let Request::Network {
            command,
            conf,
            container,
        } = parse(&env("ADD"), CONF.as_bytes()).unwrap()
        else {
            panic!("not a network request")
        };
        assert_eq!(command, Command::Add);
        assert_eq!(conf.version, CniVersion::V1_1_0);
        assert_eq!(conf.mtu, 1480);
        assert_eq!(conf.nodename, "node-0");
        assert_eq!(
            conf.etcd_endpoints,
            vec!["http://10.99.0.2:2379", "http://10.99.0.3:2379"]
        );
        assert_eq!(conf.log.level, Level::DEBUG);
        let container = container.unwrap();
        assert_eq!(
            container.pod,
            Some(K8sPod {
                namespace: "default".into(),
                name: "web-0".into()
            })
        );
        assert_eq!(container.netns, Some(PathBuf::from("/run/netns/pod")));
    }

    #[test]
    fn environment_fallbacks_apply_only_when_the_config_is_silent() {
        let mut env = env("ADD");
        env.nodename = Some("from-env".into());
        env.etcd_endpoints = Some("http://127.0.0.1:2379".into());
        let conf = r#"{"cniVersion":"1.0.0","name":"n","type":"tortie-cni"}"#;
        let Request::Network { conf, .. } = parse(&env, conf.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(conf.nodename, "from-env");
        assert_eq!(conf.etcd_endpoints, vec!["http://127.0.0.1:2379"]);
        assert_eq!(conf.mtu, DEFAULT_MTU);
        let Request::Network { conf, .. } = parse(&env, CONF.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(conf.nodename, "node-0", "the config wins");
    }

    #[test]
    fn failures_carry_the_specified_codes() {
        let mut no_command = env("ADD");
        no_command.command = None;
        assert_eq!(
            code_of(parse(&no_command, CONF.as_bytes())),
            ErrorCode::InvalidEnvironment
        );
        let mut no_id = env("ADD");
        no_id.container_id = None;
        let error = parse(&no_id, CONF.as_bytes()).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidEnvironment);
        assert!(error.msg.contains("CNI_CONTAINERID"), "{error}");
        let mut no_netns = env("DEL");
        no_netns.netns = None;
        assert!(
            parse(&no_netns, CONF.as_bytes()).is_ok(),
            "DEL needs no netns"
        );
        no_netns.command = Some("ADD".into());
        assert_eq!(
            code_of(parse(&no_netns, CONF.as_bytes())),
            ErrorCode::InvalidEnvironment
        );

        assert_eq!(
            code_of(parse(&env("ADD"), b"{nope")),
            ErrorCode::DecodeFailed
        );
        assert_eq!(code_of(parse(&env("ADD"), b"")), ErrorCode::DecodeFailed);
        let old = CONF.replace("1.1.0", "0.1.0");
        assert_eq!(
            code_of(parse(&env("ADD"), old.as_bytes())),
            ErrorCode::IncompatibleVersion
        );
        let k8s = CONF.replace("etcdv3", "kubernetes");
        assert_eq!(
            code_of(parse(&env("ADD"), k8s.as_bytes())),
            ErrorCode::UnsupportedField
        );
        let host_local = CONF.replace("\"tortie-ipam\"", "\"host-local\"");
        assert_eq!(
            code_of(parse(&env("ADD"), host_local.as_bytes())),
            ErrorCode::UnsupportedField
        );
        let bad_mtu = CONF.replace("1480", "\"big\"");
        let error = parse(&env("ADD"), bad_mtu.as_bytes()).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidNetworkConfig);
        assert!(error.msg.contains("mtu"), "{error}");
        let no_endpoints = CONF.replace("\"etcd_endpoints\"", "\"other\"");
        let error = parse(&env("ADD"), no_endpoints.as_bytes()).unwrap_err();
        assert!(error.msg.contains("etcd_endpoints"), "{error}");

        let mut half_pod = env("ADD");
        half_pod.args = Some("K8S_POD_NAME=x".into());
        assert_eq!(
            code_of(parse(&half_pod, CONF.as_bytes())),
            ErrorCode::InvalidEnvironment
        );
        let mut bad_ifname = env("ADD");
        bad_ifname.ifname = Some("this-is-far-too-long".into());
        assert_eq!(
            code_of(parse(&bad_ifname, CONF.as_bytes())),
            ErrorCode::InvalidEnvironment
        );
    }

    #[test]
    fn gc_needs_its_attachment_list() {
        let gc = CONF.replace(
            "\"mtu\":1480",
            r#""mtu":1480,"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]"#,
        );
        let Request::Network { conf, .. } = parse(&env("GC"), gc.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(conf.valid_attachments.unwrap().len(), 1);
        assert_eq!(
            code_of(parse(&env("GC"), CONF.as_bytes())),
            ErrorCode::InvalidNetworkConfig
        );
    }

    #[test]
    fn the_example_conflist_is_valid() {
        // A runtime hands each plugin its entry plus the list's name and cniVersion.
        let list: Value = serde_json::from_str(include_str!("../../10-tortie.conflist")).unwrap();
        let mut plugin = list["plugins"][0].clone();
        plugin["name"] = list["name"].clone();
        plugin["cniVersion"] = list["cniVersion"].clone();
        let Request::Network { conf, .. } =
            parse(&env("ADD"), plugin.to_string().as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(conf.name, "k8s-pod-network");
        assert_eq!(conf.mtu, 1480);
        assert_eq!(
            conf.log.file,
            Some(PathBuf::from("/var/log/tortie/cni.log"))
        );
    }

    #[test]
    fn version_needs_nothing_and_errors_use_the_asked_version() {
        let env = Environment {
            command: Some("VERSION".into()),
            ..Environment::default()
        };
        assert_eq!(parse(&env, b"").unwrap(), Request::Version);
        assert_eq!(error_version(br#"{"cniVersion":"0.4.0"}"#), "0.4.0");
        assert_eq!(error_version(br#"{"cniVersion":"0.1.0"}"#), SPEC_VERSION);
        assert_eq!(error_version(b"garbage"), SPEC_VERSION);
    }
}
