//! Validation: [`FieldError`], the entry points [`validate`], [`validate_all`] and
//! [`validate_pool_against`], and the field checks every resource shares (names, labels,
//! addresses, ports, durations).
//!
//! Validation never stops at the first problem: every check runs and every failure is
//! reported with the path of the field (`spec.ingress[0].destination.ports[1]`) and a
//! reason a user can act on. Values that the field's type cannot hold at all (a port of
//! 70000, an unknown `ipipMode`) are already rejected while parsing, as Calico rejects them
//! while decoding.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;

use crate::ippool::IpPool;
use crate::resource::Resource;
use crate::selector::Selector;

/// One problem found in a resource: which object, which field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The object, as `IPPool default-ipv4-ippool` or `NetworkPolicy default/allow-web`;
    /// empty when the error is not tied to an object.
    pub object: String,
    /// Path of the field inside the object, e.g. `spec.blockSize` or
    /// `spec.ingress[0].source.nets[1]`.
    pub path: String,
    /// What is wrong and, where it helps, what to write instead.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.object.is_empty() {
            write!(f, "{}: ", self.object)?;
        }
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for FieldError {}

/// Validates one resource: every field check of its kind, every problem reported.
///
/// Defaults need not be applied first; unset optional fields are checked as their defaults
/// would be where the default matters (an IPPool's block size against its CIDR).
pub fn validate(resource: &Resource) -> Result<(), Vec<FieldError>> {
    let mut errs = Errors::new(resource.describe());
    resource.check(&mut errs);
    errs.into_result()
}

/// Validates a set of resources as one change: each resource on its own, then the checks
/// across them (the same object twice, IP pools whose CIDRs overlap).
///
/// Every message starts with the resource's 1-based position in `resources`, so a user can
/// find it even when names repeat: `resource 2: IPPool pool-b: spec.cidr: ...`. An invalid
/// set should be rejected whole.
pub fn validate_all(resources: &[Resource]) -> Result<(), Vec<String>> {
    let mut messages = Vec::new();
    let mut seen: HashMap<(crate::Kind, Option<&str>, &str), usize> = HashMap::new();
    for (i, resource) in resources.iter().enumerate() {
        if let Err(errors) = validate(resource) {
            messages.extend(errors.iter().map(|e| format!("resource {}: {e}", i + 1)));
        }
        let id = (resource.kind(), resource.namespace(), resource.name());
        if let Some(first) = seen.insert(id, i) {
            messages.push(format!(
                "resource {}: {}: appears more than once in this set (first as resource {}): \
                 keep one definition",
                i + 1,
                resource.describe(),
                first + 1
            ));
        }
    }
    let pools: Vec<(usize, &IpPool)> = resources
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Resource::IpPool(pool) => Some((i, pool)),
            _ => None,
        })
        .collect();
    for (n, &(i, pool)) in pools.iter().enumerate() {
        let earlier: Vec<IpPool> = pools[..n].iter().map(|(_, p)| (*p).clone()).collect();
        for error in validate_pool_against(pool, &earlier) {
            messages.push(format!("resource {}: {error}", i + 1));
        }
    }
    if messages.is_empty() {
        Ok(())
    } else {
        Err(messages)
    }
}

/// Checks a pool against the pools that already exist: its CIDR must not overlap any of
/// theirs. A pool of the same name is the one being replaced and is skipped, and so is any
/// pool whose CIDR does not parse (its own validation reports that).
pub fn validate_pool_against(pool: &IpPool, existing: &[IpPool]) -> Vec<FieldError> {
    let mut errs = Errors::new(Resource::describe_parts(
        crate::Kind::IpPool,
        None,
        &pool.metadata.name,
    ));
    let Some(net) = pool.spec.cidr_net() else {
        return Vec::new();
    };
    for other in existing {
        if other.metadata.name == pool.metadata.name {
            continue;
        }
        let Some(other_net) = other.spec.cidr_net() else {
            continue;
        };
        if nets_overlap(&net, &other_net) {
            errs.push(
                "spec.cidr",
                format!(
                    "{net} overlaps IPPool {} ({other_net}): pools must not share addresses",
                    other.metadata.name
                ),
            );
        }
    }
    errs.into_vec()
}

/// Whether two networks share any address.
pub(crate) fn nets_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Collects the errors of one object while its checks run.
pub(crate) struct Errors {
    object: String,
    errors: Vec<FieldError>,
}

impl Errors {
    pub(crate) fn new(object: String) -> Self {
        Errors {
            object,
            errors: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError {
            object: self.object.clone(),
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// Records `result`'s error, if any, at `path`.
    pub(crate) fn check(&mut self, path: impl Into<String>, result: Result<(), String>) {
        if let Err(reason) = result {
            self.push(path, reason);
        }
    }

    pub(crate) fn into_vec(self) -> Vec<FieldError> {
        self.errors
    }

    pub(crate) fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// Path of a map entry: `metadata.labels["app.kubernetes.io/name"]`.
pub(crate) fn key_path(base: &str, key: &str) -> String {
    format!("{base}[{key:?}]")
}

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

fn is_label_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A DNS-1123 label: at most 63 lower-case alphanumerics or `-`, starting and ending with an
/// alphanumeric (Kubernetes namespace names).
pub(crate) fn dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > DNS1123_LABEL_MAX {
        return Err(format!(
            "{s:?} is {} characters long: must be at most {DNS1123_LABEL_MAX}",
            s.len()
        ));
    }
    if !is_label_part(s) {
        return Err(format!(
            "{s:?} is not a valid name: use lower-case letters, digits and '-', starting and \
             ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated labels of lower-case
/// alphanumerics and `-` (most resource names).
pub(crate) fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        return Err(format!(
            "{s:?} is {} characters long: must be at most {DNS1123_SUBDOMAIN_MAX}",
            s.len()
        ));
    }
    if !s.split('.').all(is_label_part) {
        return Err(format!(
            "{s:?} is not a valid name: use lower-case letters, digits, '-' and '.', starting \
             and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn is_qualified_name_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// A Kubernetes qualified name (label and annotation keys): an optional DNS subdomain
/// prefix and `/`, then at most 63 alphanumerics, `-`, `_` or `.`.
pub(crate) fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if dns1123_subdomain(prefix).is_err() {
            return Err(format!(
                "key {key:?} has an invalid prefix {prefix:?}: it must be a DNS subdomain such \
                 as example.com"
            ));
        }
    }
    if !is_qualified_name_part(name) {
        return Err(format!(
            "key {key:?} is not valid: the name part must be 1 to 63 letters, digits, '-', '_' \
             or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A Kubernetes label value: empty, or at most 63 alphanumerics, `-`, `_` or `.`, starting
/// and ending with an alphanumeric.
pub(crate) fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_qualified_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "value {value:?} is not valid: use at most 63 letters, digits, '-', '_' or '.', \
             starting and ending with a letter or digit"
        ))
    }
}

/// Checks every key and value of a label map at `path`.
pub(crate) fn check_labels(errs: &mut Errors, path: &str, labels: &BTreeMap<String, String>) {
    for (key, value) in labels {
        let entry = key_path(path, key);
        errs.check(&entry, qualified_name(key));
        errs.check(&entry, label_value(value));
    }
}

const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// Checks annotation keys and the annotations' total size (256 KiB, as Kubernetes).
pub(crate) fn check_annotations(
    errs: &mut Errors,
    path: &str,
    annotations: &BTreeMap<String, String>,
) {
    let mut total = 0;
    for (key, value) in annotations {
        errs.check(
            key_path(path, key),
            qualified_name(&key.to_ascii_lowercase()),
        );
        total += key.len() + value.len();
    }
    if total > ANNOTATIONS_MAX_BYTES {
        errs.push(
            path,
            format!("annotations total {total} bytes: must be at most {ANNOTATIONS_MAX_BYTES}"),
        );
    }
}

/// Checks a selector field when present: it must be a valid Calico selector, and not
/// empty (Calico reads an empty selector as `all()`, which is better written as such or
/// by leaving the field out). A syntax error is reported with its position and a caret
/// under the offending character.
///
/// Returns the parsed selector for further checks, or `None` when the field is absent or
/// invalid (its error is already recorded).
pub(crate) fn check_selector(
    errs: &mut Errors,
    path: &str,
    selector: Option<&str>,
) -> Option<Selector> {
    let text = selector?;
    if text.trim().is_empty() {
        errs.push(
            path,
            "must not be empty: write a selector such as all() or omit the field",
        );
        return None;
    }
    match Selector::parse(text) {
        Ok(selector) => Some(selector),
        Err(error) => {
            errs.push(path, error.to_string());
            None
        }
    }
}

/// A Calico selector other than an EntityRule `namespaceSelector` must not use `global()`.
pub(crate) fn check_no_global(errs: &mut Errors, path: &str, selector: Option<&Selector>) {
    if selector.is_some_and(Selector::uses_global) {
        errs.push(
            path,
            "global() can only be used in a rule's namespaceSelector",
        );
    }
}

/// Parses `"10.0.0.1"` or `"10.0.0.0/24"`; a bare address is a full-length network. Returns
/// the network with the address as written (host bits kept; see [`IpNet::trunc`]).
pub(crate) fn parse_cidr_or_ip(s: &str) -> Option<IpNet> {
    if s.contains('/') {
        s.parse().ok()
    } else {
        s.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

/// Parses a CIDR that must carry a prefix length (`10.0.0.0/24`), host bits allowed.
pub(crate) fn parse_cidr(s: &str) -> Option<IpNet> {
    if s.contains('/') {
        s.parse().ok()
    } else {
        None
    }
}

/// Checks an IP address, optionally restricted to one family (4 or 6).
pub(crate) fn ip_address(s: &str, family: Option<u8>) -> Result<IpAddr, String> {
    let Ok(ip) = s.parse::<IpAddr>() else {
        return Err(match family {
            Some(4) => format!("{s:?} is not a valid IPv4 address"),
            Some(6) => format!("{s:?} is not a valid IPv6 address"),
            _ => format!("{s:?} is not a valid IP address"),
        });
    };
    check_family(s, &IpNet::from(ip), family)?;
    Ok(ip)
}

fn check_family(s: &str, net: &IpNet, family: Option<u8>) -> Result<(), String> {
    match (family, net) {
        (Some(4), IpNet::V6(_)) => Err(format!("{s:?} is IPv6: must be an IPv4 address")),
        (Some(6), IpNet::V4(_)) => Err(format!("{s:?} is IPv4: must be an IPv6 address")),
        _ => Ok(()),
    }
}

/// Checks an address with an optional prefix length (`10.99.0.11/24` or `10.99.0.11`),
/// optionally restricted to one family.
pub(crate) fn ip_with_prefix(s: &str, family: Option<u8>) -> Result<IpNet, String> {
    let Some(net) = parse_cidr_or_ip(s) else {
        return Err(format!(
            "{s:?} is not a valid address: write an IP address, optionally with a prefix \
             length (10.0.0.1/24)"
        ));
    };
    check_family(s, &net, family)?;
    Ok(net)
}

/// Checks an IPv4-formatted string such as a BGP route reflector cluster ID.
pub(crate) fn ipv4_formatted(s: &str) -> Result<Ipv4Addr, String> {
    s.parse::<Ipv4Addr>()
        .map_err(|_| format!("{s:?} is not in IPv4 address format (for example 224.0.0.1)"))
}

/// Parses an Ethernet MAC address written as six hex pairs separated by `:` or `-`
/// (`ee:ee:ee:ee:ee:ee`).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let separator = if s.contains(':') { ':' } else { '-' };
    let mut mac = [0u8; 6];
    let mut parts = s.split(separator);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

pub(crate) fn mac_address(s: &str) -> Result<(), String> {
    parse_mac(s).map(|_| ()).ok_or_else(|| {
        format!("{s:?} is not a valid MAC address: write six hex pairs like ee:ee:ee:ee:ee:ee")
    })
}

/// A Kubernetes port name (IANA service name): 1 to 15 lower-case letters, digits or `-`,
/// with at least one letter, no `-` at either end and no `--`.
pub(crate) fn port_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid port name: use 1 to 15 lower-case letters, digits and '-', \
             with at least one letter and no '-' at either end or twice in a row"
        ))
    }
}

/// A Linux interface name as Calico accepts it: 1 to 15 letters, digits, `_`, `.` or `-`.
pub(crate) fn interface_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid interface name: use 1 to 15 letters, digits, '_', '.' or '-'"
        ))
    }
}

/// Parses a Go-style duration (`90s`, `2m30s`, `1.5h`, `500ms`; units `ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h`), the format Calico uses for BGP restart times. Negative durations
/// are rejected; `0` alone is allowed.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid =
        || format!("{s:?} is not a valid duration: write a number and a unit, like 120s or 2m30s");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(invalid());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ns = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total_ns += number * unit_ns;
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

/// Checks a Go-style duration string.
pub(crate) fn go_duration(s: &str) -> Result<(), String> {
    parse_go_duration(s).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_subdomain("my.ippool-1").is_ok());
        assert!(dns1123_subdomain("node--0-k8s-pod--a-eth0").is_ok());
        assert!(dns1123_subdomain("Pool").is_err());
        assert!(dns1123_subdomain("-pool").is_err());
        assert!(dns1123_subdomain("a..b").is_err());
        assert!(dns1123_subdomain(&"a".repeat(254)).is_err());
        assert!(dns1123_label("kube-system").is_ok());
        assert!(dns1123_label("kube.system").is_err());
    }

    #[test]
    fn labels() {
        assert!(qualified_name("app.kubernetes.io/name").is_ok());
        assert!(qualified_name("app").is_ok());
        assert!(qualified_name("Bad Key").is_err());
        assert!(qualified_name("UPPER.example.com/x").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("web_1.x").is_ok());
        assert!(label_value("-web").is_err());
    }

    #[test]
    fn macs_ports_durations() {
        assert_eq!(parse_mac("ee:ee:ee:ee:ee:ee"), Some([0xee; 6]));
        assert_eq!(parse_mac("02-00-00-00-00-0A"), Some([2, 0, 0, 0, 0, 0x0a]));
        assert_eq!(parse_mac("ee:ee:ee:ee:ee"), None);
        assert_eq!(parse_mac("ee:ee:ee:ee:ee:ee:ee"), None);
        assert!(port_name("http").is_ok());
        assert!(port_name("http-alt2").is_ok());
        assert!(port_name("8080").is_err());
        assert!(port_name("my--port").is_err());
        assert!(port_name("a-very-long-port-name").is_err());
        assert_eq!(parse_go_duration("120s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_go_duration("2m30s"), Ok(Duration::from_secs(150)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("120").is_err());
        assert!(parse_go_duration("-5s").is_err());
        assert!(parse_go_duration("5 s").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn addresses() {
        assert!(ip_with_prefix("10.99.0.11/24", Some(4)).is_ok());
        assert!(ip_with_prefix("10.99.0.11", Some(4)).is_ok());
        assert!(ip_with_prefix("fd00::1/64", Some(4)).is_err());
        assert!(ip_with_prefix("10.99.0.300/24", None).is_err());
        assert!(ip_address("fd00::1", Some(6)).is_ok());
        assert!(ip_address("10.0.0.1", Some(6)).is_err());
        assert!(parse_cidr("10.0.0.1").is_none());
        assert!(nets_overlap(
            &"10.0.0.0/8".parse().unwrap(),
            &"10.1.0.0/16".parse().unwrap()
        ));
        assert!(!nets_overlap(
            &"10.0.0.0/16".parse().unwrap(),
            &"10.1.0.0/16".parse().unwrap()
        ));
        assert!(!nets_overlap(
            &"10.0.0.0/8".parse().unwrap(),
            &"fd00::/8".parse().unwrap()
        ));
    }
}
