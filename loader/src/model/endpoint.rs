//! Workload endpoints local to this node: the pods whose `cali*` interfaces the agent programs.
//!
//! Until a datastore feeds the agent, endpoints come from a JSON file:
//! `{"endpoints":[{"name","namespace","node","iface","ipv4","mac","labels"}]}`.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
};

use serde::{Deserialize, Serialize};

use super::MacAddr;

/// Linux's limit on interface names (IFNAMSIZ minus the NUL).
pub const MAX_IFACE_NAME_LEN: usize = 15;

/// A pod on this node, as the dataplane needs to know it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEndpoint {
    /// Pod name.
    pub name: String,
    /// Kubernetes namespace of the pod.
    pub namespace: String,
    /// Node the pod runs on.
    #[serde(default)]
    pub node: String,
    /// Host-side interface (`cali…`).
    pub iface: String,
    /// The pod's IPv4 address: the only source address it may use.
    pub ipv4: Ipv4Addr,
    /// MAC of the pod's `eth0`.
    pub mac: MacAddr,
    /// Pod labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl LocalEndpoint {
    /// `namespace/name`, how logs and errors name a pod.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Deserialize)]
struct EndpointsDocument {
    endpoints: Vec<LocalEndpoint>,
}

/// Everything wrong with an endpoints document; the document is rejected whole.
#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    /// Not JSON of the expected shape.
    #[error("endpoints file is not valid: {0}")]
    Syntax(#[from] serde_json::Error),
    /// Well-formed, but inconsistent.
    #[error("endpoints file rejected:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// Parses and validates an endpoints document.
pub fn parse_endpoints(text: &str) -> Result<Vec<LocalEndpoint>, EndpointsError> {
    let document: EndpointsDocument = serde_json::from_str(text)?;
    let problems = validate(&document.endpoints);
    if problems.is_empty() {
        Ok(document.endpoints)
    } else {
        Err(EndpointsError::Invalid(problems))
    }
}

fn validate(endpoints: &[LocalEndpoint]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_ip: HashMap<Ipv4Addr, String> = HashMap::new();
    let mut by_iface: HashMap<&str, String> = HashMap::new();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let at = format!("endpoints[{index}] ({})", endpoint.key());
        if endpoint.name.is_empty() || endpoint.namespace.is_empty() {
            problems.push(format!("{at}: name and namespace must not be empty"));
        }
        if endpoint.iface.is_empty() || endpoint.iface.len() > MAX_IFACE_NAME_LEN {
            problems.push(format!(
                "{at}.iface: {:?} must be 1 to {MAX_IFACE_NAME_LEN} characters",
                endpoint.iface
            ));
        }
        let ip = endpoint.ipv4;
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
            problems.push(format!("{at}.ipv4: {ip} cannot be a pod address"));
        }
        if endpoint.mac.0[0] & 1 == 1 || endpoint.mac.0 == [0; 6] {
            problems.push(format!(
                "{at}.mac: {} is not a unicast address",
                endpoint.mac
            ));
        }
        if let Some(other) = by_ip.insert(ip, endpoint.key()) {
            problems.push(format!("{at}.ipv4: {ip} is also used by {other}"));
        }
        if let Some(other) = by_iface.insert(&endpoint.iface, endpoint.key()) {
            problems.push(format!(
                "{at}.iface: {} is also used by {other}",
                endpoint.iface
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"endpoints":[
        {"name":"a","namespace":"default","node":"n0","iface":"cali0000000000a","ipv4":"10.65.0.10","mac":"02:54:0a:41:00:0a"},
        {"name":"b","namespace":"default","node":"n0","iface":"cali0000000000b","ipv4":"10.65.0.11","mac":"02:54:0a:41:00:0b","labels":{"app":"b"}}
    ]}"#;

    #[test]
    fn parses_a_valid_document() {
        let endpoints = parse_endpoints(GOOD).unwrap();
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[1].labels["app"], "b");
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let text = r#"{"endpoints":[
            {"name":"a","namespace":"default","iface":"cali-name-too-long","ipv4":"10.65.0.10","mac":"03:00:00:00:00:01"},
            {"name":"b","namespace":"default","iface":"cali1","ipv4":"10.65.0.10","mac":"02:00:00:00:00:01"}
        ]}"#;
        let Err(EndpointsError::Invalid(problems)) = parse_endpoints(text) else {
            panic!("invalid document accepted");
        };
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with("endpoints[0] (default/a).iface"));
        assert!(problems[1].contains("not a unicast"));
        assert!(problems[2].contains("10.65.0.10 is also used by default/a"));
    }

    #[test]
    fn rejects_a_bad_mac_with_a_message() {
        let text = r#"{"endpoints":[{"name":"a","namespace":"d","iface":"c","ipv4":"10.0.0.1","mac":"nope"}]}"#;
        let error = parse_endpoints(text).unwrap_err().to_string();
        assert!(error.contains("invalid MAC address \"nope\""), "{error}");
    }
}
