//! Whether every node's dataplane has caught up with the lab's pods.
//!
//! The agents program a new pod moments after its CNI ADD returns. A probe sent in that
//! window is dropped, and a one-shot ping never retries, so the lab waits for the maps
//! themselves — read with `tortiectl bpf … -o json`, as a user would — before it reports a
//! change done.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::Value;

/// What one node's maps still lack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lagging {
    /// Local pods whose interface is not programmed with their address.
    pub endpoints: Vec<Ipv4Addr>,
    /// Pods (local or remote) that no route covers.
    pub routes: Vec<Ipv4Addr>,
}

impl Lagging {
    /// Nothing is missing.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty() && self.routes.is_empty()
    }
}

/// Addresses of the programmed endpoints in `tortiectl bpf endpoints -o json`.
pub fn endpoint_addresses(json: &str) -> Result<BTreeSet<Ipv4Addr>, String> {
    rows(json)?
        .iter()
        .filter_map(|row| row.get("ipv4").and_then(Value::as_str))
        .map(|ip| {
            ip.parse()
                .map_err(|err| format!("endpoint address {ip:?}: {err}"))
        })
        .collect()
}

/// Prefixes of `tortiectl bpf routes -o json`, as (network, length).
pub fn route_prefixes(json: &str) -> Result<Vec<(Ipv4Addr, u8)>, String> {
    rows(json)?
        .iter()
        .filter_map(|row| row.get("prefix").and_then(Value::as_str))
        .map(parse_prefix)
        .collect()
}

/// What a node lacks: `local` pods need an endpoint, `all` pods a covering route.
pub fn lagging(
    endpoints: &BTreeSet<Ipv4Addr>,
    routes: &[(Ipv4Addr, u8)],
    local: &[Ipv4Addr],
    all: &[Ipv4Addr],
) -> Lagging {
    Lagging {
        endpoints: local
            .iter()
            .filter(|ip| !endpoints.contains(ip))
            .copied()
            .collect(),
        routes: all
            .iter()
            .filter(|ip| !routes.iter().any(|route| covers(*route, **ip)))
            .copied()
            .collect(),
    }
}

fn rows(json: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str(json).map_err(|err| err.to_string())? {
        Value::Array(rows) => Ok(rows),
        other => Err(format!("expected a JSON array, got {other}")),
    }
}

fn parse_prefix(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, len) = text
        .split_once('/')
        .ok_or_else(|| format!("route prefix {text:?} has no length"))?;
    let ip = ip
        .parse()
        .map_err(|err| format!("route prefix {text:?}: {err}"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|len| *len <= 32)
        .ok_or_else(|| format!("route prefix {text:?}: bad length"))?;
    Ok((ip, len))
}

/// Whether `route` contains `ip`; the default route does not count, as it leads off the
/// cluster rather than to a pod.
fn covers((network, len): (Ipv4Addr, u8), ip: Ipv4Addr) -> bool {
    if len == 0 {
        return false;
    }
    let mask = u32::MAX << (32 - u32::from(len));
    u32::from(network) & mask == u32::from(ip) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn reads_the_json_tortiectl_prints() {
        let endpoints = r#"[{"ifindex":7,"name":"cali1","flags":["workload"],"ipv4":"10.244.0.1"},
            {"ifindex":2,"name":"eth0","flags":["uplink"],"ipv4":null}]"#;
        assert_eq!(
            endpoint_addresses(endpoints).unwrap(),
            BTreeSet::from([ip("10.244.0.1")])
        );
        let routes = r#"[{"prefix":"10.244.0.64/26","flags":["remote"]},{"prefix":"0.0.0.0/0"}]"#;
        assert_eq!(
            route_prefixes(routes).unwrap(),
            vec![(ip("10.244.0.64"), 26), (ip("0.0.0.0"), 0)]
        );
        assert!(route_prefixes("{}").is_err());
        assert!(route_prefixes(r#"[{"prefix":"10.0.0.0/40"}]"#).is_err());
    }

    #[test]
    fn names_what_is_missing() {
        let endpoints = BTreeSet::from([ip("10.244.0.1")]);
        let routes = [(ip("10.244.0.0"), 26), (ip("0.0.0.0"), 0)];
        let local = [ip("10.244.0.1"), ip("10.244.0.2")];
        let all = [ip("10.244.0.1"), ip("10.244.0.2"), ip("10.244.0.70")];
        let lag = lagging(&endpoints, &routes, &local, &all);
        assert_eq!(lag.endpoints, vec![ip("10.244.0.2")]);
        assert_eq!(lag.routes, vec![ip("10.244.0.70")]);
        assert!(lagging(&endpoints, &routes, &local[..1], &all[..2]).is_empty());
    }
}
