//! The network policy conformance table: cases read from YAML files under
//! `tests/conformance/`, and the expected reachability matrices they describe.
//!
//! The model is the one of Kubernetes' e2e NetworkPolicy suite: namespaces `x`, `y`, `z`
//! (labelled `ns: <name>` and `kubernetes.io/metadata.name: <name>`), each with pods `a`, `b`,
//! `c` (labelled `pod: <name>`), every pod serving ports 80 and 81 over TCP, UDP and SCTP, with
//! the named container ports `serve-<port>-<tcp|udp|sctp>`. A case is a list of steps; each step
//! changes the cluster and then probes every ordered pair of distinct pods:
//!
//! ```yaml
//! cases:
//!   - name: default deny ingress
//!     upstream: should support a 'default-deny-ingress' policy
//!     steps:
//!       - apply: |            # resources for `tortiectl apply -f`
//!           apiVersion: networking.k8s.io/v1
//!           kind: NetworkPolicy
//!           metadata: {name: deny-ingress, namespace: x}
//!           spec: {podSelector: {}, policyTypes: [Ingress]}
//!         probes: [TCP/80]
//!         expect:
//!           default: true       # every pair connects…
//!           rules:              # …except, later rules overriding earlier ones:
//!             - "* -> x/*: false"
//! ```
//!
//! A step may also `delete` resources (YAML naming them, for `tortiectl delete -f`) and
//! `label` pods or namespaces (`{pod: x/a, set: {k: v}, remove: [k]}` or `{namespace: y, …}`).
//! Peers in rules are `ns/pod` with `*` for any namespace or pod. In `apply` and `delete`
//! text, `{{ip x/a}}` becomes pod x/a's address and `{{net x/a 24}}` the /24 around it.
//! After a case the runner deletes what it applied and restores the original labels.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::probe::Protocol;

/// The model's namespaces.
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
/// The model's pods, in every namespace.
pub const PODS: [&str; 3] = ["a", "b", "c"];
/// The ports every pod serves, on every protocol.
pub const PORTS: [u16; 2] = [80, 81];

/// A file of cases.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// The cases, run in order.
    pub cases: Vec<Case>,
}

/// One case of the table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Short name.
    pub name: String,
    /// The upstream test this case transcribes, when there is one.
    #[serde(default)]
    pub upstream: Option<String>,
    /// What happens, in order.
    pub steps: Vec<Step>,
}

/// A change to the cluster followed by a probe of the whole matrix.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Resources to apply.
    #[serde(default)]
    pub apply: Option<String>,
    /// Resources to delete.
    #[serde(default)]
    pub delete: Option<String>,
    /// Label changes.
    #[serde(default)]
    pub label: Vec<LabelChange>,
    /// What to probe, `PROTO/PORT` (`TCP/80`).
    pub probes: Vec<ProbeSpec>,
    /// The expected matrix, for every probe of the step.
    pub expect: Expectation,
}

/// A label change of one pod or namespace.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelChange {
    /// `ns/pod`.
    #[serde(default)]
    pub pod: Option<String>,
    /// Namespace name.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels to set (overwriting).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Labels to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// What one probe sends: protocol and destination port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct ProbeSpec {
    /// Transport.
    pub protocol: Protocol,
    /// Destination port.
    pub port: u16,
}

impl TryFrom<String> for ProbeSpec {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let (protocol, port) = text
            .split_once('/')
            .ok_or_else(|| format!("probe {text:?}: expected PROTO/PORT, e.g. TCP/80"))?;
        Ok(ProbeSpec {
            protocol: protocol.parse()?,
            port: port
                .parse()
                .map_err(|err| format!("probe {text:?}: port: {err}"))?,
        })
    }
}

impl fmt::Display for ProbeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol, self.port)
    }
}

/// An expected matrix: a default and overriding rules.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Whether pairs connect unless a rule says otherwise.
    pub default: bool,
    /// `FROM -> TO: BOOL`, applied in order.
    #[serde(default)]
    pub rules: Vec<String>,
}

/// A pod of the model, `ns/pod`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl PodRef {
    /// Parses `ns/pod`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (namespace, name) = text
            .split_once('/')
            .filter(|(ns, pod)| !ns.is_empty() && !pod.is_empty())
            .ok_or_else(|| format!("{text:?}: expected NAMESPACE/POD"))?;
        Ok(PodRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// Every pod of the model, namespace-major.
pub fn model_pods() -> Vec<PodRef> {
    NAMESPACES
        .iter()
        .flat_map(|ns| {
            PODS.iter().map(move |pod| PodRef {
                namespace: (*ns).to_owned(),
                name: (*pod).to_owned(),
            })
        })
        .collect()
}

/// Reachability of ordered pairs of distinct pods.
pub type Matrix = BTreeMap<(PodRef, PodRef), bool>;

/// A peer pattern of a rule: `ns/pod` with `*` wildcards, or `*` alone.
fn matches(pattern: &str, pod: &PodRef) -> Result<bool, String> {
    if pattern == "*" {
        return Ok(true);
    }
    let (ns, name) = pattern
        .split_once('/')
        .ok_or_else(|| format!("peer {pattern:?}: expected *, NS/POD, NS/* or */POD"))?;
    Ok((ns == "*" || ns == pod.namespace) && (name == "*" || name == pod.name))
}

impl Expectation {
    /// The matrix over `pods` (loopback pairs left out).
    pub fn matrix(&self, pods: &[PodRef]) -> Result<Matrix, String> {
        let rules = self
            .rules
            .iter()
            .map(|rule| parse_rule(rule))
            .collect::<Result<Vec<_>, _>>()?;
        let mut matrix = Matrix::new();
        for from in pods {
            for to in pods {
                if from == to {
                    continue;
                }
                let mut ok = self.default;
                for (from_pattern, to_pattern, value) in &rules {
                    if matches(from_pattern, from)? && matches(to_pattern, to)? {
                        ok = *value;
                    }
                }
                matrix.insert((from.clone(), to.clone()), ok);
            }
        }
        Ok(matrix)
    }
}

fn parse_rule(rule: &str) -> Result<(String, String, bool), String> {
    let bad = || format!("rule {rule:?}: expected `FROM -> TO: true|false`");
    let (peers, value) = rule.rsplit_once(':').ok_or_else(bad)?;
    let (from, to) = peers.split_once("->").ok_or_else(bad)?;
    let value = value.trim().parse::<bool>().map_err(|_| bad())?;
    Ok((from.trim().to_owned(), to.trim().to_owned(), value))
}

/// Replaces `{{ip ns/pod}}` and `{{net ns/pod LEN}}` in `text` with addresses from `ips`.
pub fn substitute(text: &str, ips: &BTreeMap<PodRef, Ipv4Addr>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {text:?}"))?;
        out.push_str(&expand(after[..end].trim(), ips)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn expand(placeholder: &str, ips: &BTreeMap<PodRef, Ipv4Addr>) -> Result<String, String> {
    let words: Vec<&str> = placeholder.split_whitespace().collect();
    let ip_of = |pod: &str| {
        let pod = PodRef::parse(pod)?;
        ips.get(&pod)
            .copied()
            .ok_or_else(|| format!("{{{{{placeholder}}}}}: no pod {pod}"))
    };
    match words.as_slice() {
        ["ip", pod] => Ok(ip_of(pod)?.to_string()),
        ["net", pod, len] => {
            let len: u32 = len
                .parse()
                .ok()
                .filter(|len| (1..=32).contains(len))
                .ok_or_else(|| format!("{{{{{placeholder}}}}}: bad prefix length"))?;
            let mask = u32::MAX << (32 - len);
            let network = Ipv4Addr::from(u32::from(ip_of(pod)?) & mask);
            Ok(format!("{network}/{len}"))
        }
        _ => Err(format!(
            "{{{{{placeholder}}}}}: expected {{{{ip NS/POD}}}} or {{{{net NS/POD LEN}}}}"
        )),
    }
}

/// Pairs where `observed` differs from `expected`.
pub fn differences(expected: &Matrix, observed: &Matrix) -> Vec<(PodRef, PodRef, bool)> {
    expected
        .iter()
        .filter(|(pair, ok)| observed.get(*pair) != Some(*ok))
        .map(|((from, to), ok)| (from.clone(), to.clone(), *ok))
        .collect()
}

/// A truth table like the upstream suite prints: rows are clients, columns servers; `.`
/// connects, `X` does not, `-` is loopback; a wrong cell shows what was observed, in
/// brackets.
pub fn truth_table(pods: &[PodRef], expected: &Matrix, observed: &Matrix) -> String {
    let mut out = String::from("from\\to");
    for to in pods {
        out.push_str(&format!(" {:>5}", to.to_string()));
    }
    out.push('\n');
    for from in pods {
        out.push_str(&format!("{:<7}", from.to_string()));
        for to in pods {
            let pair = (from.clone(), to.clone());
            let cell = match (expected.get(&pair), observed.get(&pair)) {
                (None, _) => "-".to_owned(),
                (Some(e), Some(o)) if e == o => if *o { "." } else { "X" }.to_owned(),
                (Some(_), Some(o)) => format!("[{}]", if *o { "." } else { "X" }),
                (Some(_), None) => "[?]".to_owned(),
            };
            out.push_str(&format!(" {cell:>5}"));
        }
        out.push('\n');
    }
    out
}

/// Checks a suite before anything runs: every step probes something, every rule and
/// placeholder parses, every label change names exactly one model pod or namespace.
pub fn check_suite(suite: &Suite) -> Result<(), String> {
    let pods = model_pods();
    let fake_ips: BTreeMap<PodRef, Ipv4Addr> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| (pod.clone(), Ipv4Addr::new(10, 0, 0, 1 + i as u8)))
        .collect();
    let mut names = BTreeSet::new();
    for case in &suite.cases {
        let context = |err: String| format!("case {:?}: {err}", case.name);
        if !names.insert(case.name.as_str()) {
            return Err(context("the name is used twice".to_owned()));
        }
        if case.steps.is_empty() {
            return Err(context("no steps".to_owned()));
        }
        for step in &case.steps {
            if step.probes.is_empty() {
                return Err(context("a step probes nothing".to_owned()));
            }
            step.expect.matrix(&pods).map_err(context)?;
            for text in step.apply.iter().chain(step.delete.iter()) {
                substitute(text, &fake_ips).map_err(context)?;
            }
            for change in &step.label {
                match (&change.pod, &change.namespace) {
                    (Some(pod), None) => {
                        let pod = PodRef::parse(pod).map_err(context)?;
                        if !pods.contains(&pod) {
                            return Err(context(format!("label: no pod {pod} in the model")));
                        }
                    }
                    (None, Some(ns)) if NAMESPACES.contains(&ns.as_str()) => {}
                    _ => {
                        return Err(context(
                            "label: name exactly one model pod or namespace".to_owned(),
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(text: &str) -> PodRef {
        PodRef::parse(text).unwrap()
    }

    #[test]
    fn rules_override_the_default_in_order() {
        let expectation = Expectation {
            default: true,
            rules: vec![
                "* -> x/*: false".into(),
                "x/* -> x/a: true".into(),
                "*/b -> y/c: false".into(),
            ],
        };
        let matrix = expectation.matrix(&model_pods()).unwrap();
        assert_eq!(matrix.len(), 72, "9 pods, loopback left out");
        assert!(!matrix[&(pod("y/a"), pod("x/b"))]);
        assert!(matrix[&(pod("x/b"), pod("x/a"))]);
        assert!(!matrix[&(pod("y/a"), pod("x/a"))]);
        assert!(!matrix[&(pod("z/b"), pod("y/c"))]);
        assert!(matrix[&(pod("z/a"), pod("y/c"))]);
        let bad = Expectation {
            default: true,
            rules: vec!["x/a => y: false".into()],
        };
        assert!(bad.matrix(&model_pods()).is_err());
    }

    #[test]
    fn placeholders_become_addresses() {
        let ips = BTreeMap::from([(pod("x/a"), Ipv4Addr::new(10, 65, 1, 77))]);
        assert_eq!(
            substitute("cidr: {{net x/a 24}}\nexcept: [{{ip x/a}}/32]", &ips).unwrap(),
            "cidr: 10.65.1.0/24\nexcept: [10.65.1.77/32]"
        );
        assert!(substitute("{{ip y/a}}", &ips).is_err());
        assert!(substitute("{{net x/a 33}}", &ips).is_err());
        assert!(substitute("{{ip x/a", &ips).is_err());
    }

    #[test]
    fn the_truth_table_marks_wrong_cells() {
        let pods = vec![pod("x/a"), pod("x/b")];
        let expected = Expectation {
            default: true,
            rules: vec![],
        }
        .matrix(&pods)
        .unwrap();
        let mut observed = expected.clone();
        observed.insert((pod("x/a"), pod("x/b")), false);
        let table = truth_table(&pods, &expected, &observed);
        assert!(table.contains("[X]"), "{table}");
        assert_eq!(differences(&expected, &observed).len(), 1);
    }

    #[test]
    fn the_committed_tables_are_well_formed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let suite: Suite = serde_yaml::from_str(&text)
                    .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
                check_suite(&suite).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
                files += 1;
            }
        }
        assert!(files > 0, "no tables in {}", dir.display());
    }
}
