//! Workload endpoints local to this node: the pods whose `cali*` interfaces the agent programs.
//!
//! They come either from a JSON file,
//! `{"endpoints":[{"name","namespace","node","iface","ipv4","mac","labels"}]}`, or from the
//! datastore's `WorkloadEndpoint`s ([`super::from_resources`]); both go through
//! [`EndpointChecker`].

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

/// Every consistency problem of an endpoints document, each prefixed with the path of the
/// offending field (`endpoints[0] (default/a).iface: ...`). Empty when it can be used.
pub fn validate(endpoints: &[LocalEndpoint]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut checker = EndpointChecker::default();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let at = format!("endpoints[{index}] ({})", endpoint.key());
        for problem in checker.problems(endpoint) {
            problems.push(problem.at(&at));
        }
        // Recorded even when invalid, so that a later clash is reported too.
        checker.record(endpoint);
    }
    problems
}

/// The field of a [`LocalEndpoint`] a problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointField {
    /// `name` and `namespace`.
    Identity,
    /// `iface`.
    Iface,
    /// `ipv4`.
    Ipv4,
    /// `mac`.
    Mac,
}

/// One problem with one endpoint, without the endpoint's path, so that the file and the
/// datastore can each name the field in their own terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointProblem {
    /// The field at fault.
    pub field: EndpointField,
    /// What is wrong.
    pub reason: String,
}

impl EndpointProblem {
    /// `<at>.<field>: <reason>` with the endpoints file's field names.
    pub fn at(&self, at: &str) -> String {
        let field = match self.field {
            EndpointField::Identity => return format!("{at}: {}", self.reason),
            EndpointField::Iface => "iface",
            EndpointField::Ipv4 => "ipv4",
            EndpointField::Mac => "mac",
        };
        format!("{at}.{field}: {}", self.reason)
    }
}

/// Checks endpoints one at a time against those recorded before: two endpoints may not
/// share an address (the dataplane routes it to one interface) nor an interface.
#[derive(Debug, Default)]
pub struct EndpointChecker {
    by_ip: HashMap<Ipv4Addr, String>,
    by_iface: HashMap<String, String>,
}

impl EndpointChecker {
    /// What is wrong with `endpoint`, on its own and against the recorded endpoints.
    pub fn problems(&self, endpoint: &LocalEndpoint) -> Vec<EndpointProblem> {
        let mut problems = Vec::new();
        let mut push = |field, reason| problems.push(EndpointProblem { field, reason });
        if endpoint.name.is_empty() || endpoint.namespace.is_empty() {
            push(
                EndpointField::Identity,
                "name and namespace must not be empty".into(),
            );
        }
        if endpoint.iface.is_empty() || endpoint.iface.len() > MAX_IFACE_NAME_LEN {
            push(
                EndpointField::Iface,
                format!(
                    "{:?} must be 1 to {MAX_IFACE_NAME_LEN} characters",
                    endpoint.iface
                ),
            );
        }
        let ip = endpoint.ipv4;
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
            push(EndpointField::Ipv4, format!("{ip} cannot be a pod address"));
        }
        if endpoint.mac.0[0] & 1 == 1 || endpoint.mac.0 == [0; 6] {
            push(
                EndpointField::Mac,
                format!("{} is not a unicast address", endpoint.mac),
            );
        }
        if let Some(other) = self.by_ip.get(&ip) {
            push(EndpointField::Ipv4, format!("{ip} is also used by {other}"));
        }
        if let Some(other) = self.by_iface.get(&endpoint.iface) {
            push(
                EndpointField::Iface,
                format!("{} is also used by {other}", endpoint.iface),
            );
        }
        problems
    }

    /// Takes `endpoint`'s address and interface; the first endpoint to take one keeps it.
    pub fn record(&mut self, endpoint: &LocalEndpoint) {
        self.by_ip
            .entry(endpoint.ipv4)
            .or_insert_with(|| endpoint.key());
        self.by_iface
            .entry(endpoint.iface.clone())
            .or_insert_with(|| endpoint.key());
    }
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
