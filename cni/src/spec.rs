//! The CNI protocol itself: versions, error codes, and the result a plugin prints.
//!
//! Everything here follows the CNI specification 1.1.0 (and the 0.4.0 and 1.0.0 result
//! formats, which runtimes still ask for). Nothing here touches the kernel or the datastore.

use std::{fmt, net::Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The specification version this plugin implements.
pub const SPEC_VERSION: &str = "1.1.0";

/// A CNI specification version the plugin accepts in a network configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CniVersion {
    /// 0.4.0: results carry `"version": "4"` on each IP; adds CHECK.
    V0_4_0,
    /// 1.0.0: no `version` on IPs.
    V1_0_0,
    /// 1.1.0: adds STATUS and GC.
    V1_1_0,
}

impl CniVersion {
    /// Every supported version, oldest first.
    pub const ALL: [CniVersion; 3] = [CniVersion::V0_4_0, CniVersion::V1_0_0, CniVersion::V1_1_0];

    /// Parses `"0.4.0"`, `"1.0.0"` or `"1.1.0"`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// The version as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to `CNI_COMMAND=VERSION`.
pub fn version_info() -> Value {
    json!({
        "cniVersion": SPEC_VERSION,
        "supportedVersions": CniVersion::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
    })
}

/// Error codes: 1–99 are the specification's, 100 and up this plugin's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: the configuration's `cniVersion` is not supported.
    IncompatibleVersion = 1,
    /// 2: a configuration field has a value this plugin does not support.
    UnsupportedField = 2,
    /// 3: the container (its network namespace) is unknown or gone.
    UnknownContainer = 3,
    /// 4: a `CNI_*` environment variable is missing or invalid.
    InvalidEnvironment = 4,
    /// 5: reading stdin or another I/O failure.
    IoFailure = 5,
    /// 6: stdin is not valid JSON.
    DecodeFailed = 6,
    /// 7: the network configuration is invalid.
    InvalidNetworkConfig = 7,
    /// 11: a transient failure (datastore unreachable); the runtime should retry.
    TryAgainLater = 11,
    /// 50: STATUS: the plugin cannot serve ADD now.
    PluginNotAvailable = 50,
    /// 100: no address is free in the usable pools.
    PoolExhausted = 100,
    /// 101: creating or configuring the interfaces failed.
    InterfaceSetup = 101,
    /// 102: writing to the datastore failed.
    DatastoreWrite = 102,
    /// 103: CHECK found the attachment different from its previous result.
    CheckFailed = 103,
    /// 104: reading the datastore failed for a reason retrying will not fix (corrupt data).
    DatastoreRead = 104,
}

/// A failure reported to the runtime as the specification's error JSON.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg} ({code:?}){}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct CniError {
    /// The code.
    pub code: ErrorCode,
    /// A short message.
    pub msg: String,
    /// What exactly failed and what to do.
    pub details: String,
}

impl CniError {
    /// An error with a message and no details.
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Adds details.
    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error JSON, tagged with the version the runtime asked for.
    pub fn to_json(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "code": self.code as u32,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

/// An interface in a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Its MAC address, `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The network namespace path for interfaces inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// An address in a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length.
    pub address: Ipv4Net,
    /// The gateway the container uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// Index into `interfaces` of the interface holding the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route in a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub dst: Ipv4Net,
    /// Next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<Ipv4Addr>,
}

/// The result of ADD (and the `prevResult` of CHECK and DEL).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    /// Interfaces created: the host side first, the container side second.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    /// Routes added in the container.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// DNS settings (none: the runtime's own apply).
    #[serde(default)]
    pub dns: Value,
}

impl CniResult {
    /// The result JSON in the format of `version`: 0.4.0 adds `"version": "4"` to each IP.
    pub fn render(&self, version: CniVersion) -> Value {
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut value = serde_json::to_value(ip).unwrap_or(Value::Null);
                if version == CniVersion::V0_4_0 {
                    if let Value::Object(map) = &mut value {
                        map.insert("version".into(), Value::String("4".into()));
                    }
                }
                value
            })
            .collect();
        let dns = match &self.dns {
            Value::Object(_) => self.dns.clone(),
            _ => json!({}),
        };
        json!({
            "cniVersion": version.as_str(),
            "interfaces": self.interfaces,
            "ips": ips,
            "routes": self.routes,
            "dns": dns,
        })
    }

    /// Reads a `prevResult` in any supported format (IPv6 entries are skipped: this plugin
    /// never creates them).
    pub fn parse_prev(value: &Value) -> Result<CniResult, CniError> {
        let invalid = |why: String| {
            CniError::new(ErrorCode::InvalidNetworkConfig, "invalid prevResult").details(why)
        };
        let Value::Object(map) = value else {
            return Err(invalid(format!(
                "prevResult must be an object, found {value}"
            )));
        };
        let mut map = map.clone();
        if let Some(Value::Array(ips)) = map.get_mut("ips") {
            ips.retain(|ip| {
                let address = ip.get("address").and_then(Value::as_str).unwrap_or("");
                !address.contains(':')
            });
        }
        if let Some(Value::Array(routes)) = map.get_mut("routes") {
            routes.retain(|route| {
                let dst = route.get("dst").and_then(Value::as_str).unwrap_or("");
                !dst.contains(':')
            });
        }
        serde_json::from_value(Value::Object(map)).map_err(|e| invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cali0123456789a".into(),
                    mac: "ee:ee:ee:ee:ee:ee".into(),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "02:00:00:00:00:01".into(),
                    sandbox: Some("/run/netns/p".into()),
                },
            ],
            ips: vec![IpConfig {
                address: "10.65.0.5/32".parse().unwrap(),
                gateway: Some(Ipv4Addr::new(169, 254, 1, 1)),
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some(Ipv4Addr::new(169, 254, 1, 1)),
            }],
            dns: json!({}),
        }
    }

    #[test]
    fn results_render_per_version() {
        let v1 = sample().render(CniVersion::V1_1_0);
        assert_eq!(
            v1,
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [
                    {"name": "cali0123456789a", "mac": "ee:ee:ee:ee:ee:ee"},
                    {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/p"}
                ],
                "ips": [{"address": "10.65.0.5/32", "gateway": "169.254.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
                "dns": {}
            })
        );
        let v04 = sample().render(CniVersion::V0_4_0);
        assert_eq!(v04["cniVersion"], "0.4.0");
        assert_eq!(v04["ips"][0]["version"], "4");
    }

    #[test]
    fn previous_results_parse_in_both_formats() {
        for version in CniVersion::ALL {
            let rendered = sample().render(version);
            assert_eq!(CniResult::parse_prev(&rendered).unwrap().ips, sample().ips);
        }
        let with_v6 = json!({"ips": [{"address": "fd00::1/128"}, {"address": "10.0.0.1/32"}]});
        assert_eq!(CniResult::parse_prev(&with_v6).unwrap().ips.len(), 1);
        let error = CniResult::parse_prev(&json!({"ips": [{"address": "nope"}]})).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidNetworkConfig);
    }

    #[test]
    fn errors_and_versions_render() {
        let error = CniError::new(ErrorCode::PoolExhausted, "no address").details("pool p is full");
        assert_eq!(
            error.to_json("1.0.0"),
            json!({"cniVersion": "1.0.0", "code": 100, "msg": "no address", "details": "pool p is full"})
        );
        assert_eq!(
            version_info(),
            json!({"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
        );
        assert_eq!(CniVersion::parse("0.1.0"), None);
        assert_eq!(CniVersion::parse("1.0.0"), Some(CniVersion::V1_0_0));
    }
}
