//! The demonstration `cargo xtask lab up` ends with: two pods in a second namespace, a
//! policy, and the connectivity matrix before and after it.
//!
//! `shop/web` and `shop/db` join the lab's pods (through `tortie-cni`, like every pod of an
//! etcd lab). At first every pod reaches every other. Then a Kubernetes NetworkPolicy lets
//! only `shop/web` into `shop/db`: the matrix's `db` column turns red except for `web`, and
//! everything else stays green.

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::lab::{Lab, PodRequest};

/// The demo's namespace.
pub const NAMESPACE: &str = "shop";
/// The pod the policy lets in.
pub const WEB: &str = "web";
/// The pod the policy protects.
pub const DB: &str = "db";

/// The demo policy, as a user would write it.
pub const POLICY: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db-from-web-only
  namespace: shop
spec:
  podSelector:
    matchLabels:
      app: db
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels:
          app: web
";

/// How long the policy may take to show in the matrix.
const POLICY_DEADLINE: Duration = Duration::from_secs(20);

/// Adds `shop/web` and `shop/db` on different nodes (as far as the lab has them).
pub fn add_pods(lab: &mut Lab) -> Result<()> {
    lab.apply_namespace(NAMESPACE, &BTreeMap::new())?;
    let nodes: Vec<String> = lab.nodes().iter().map(|n| n.name.clone()).collect();
    let node = |i: usize| nodes[i % nodes.len().max(1)].clone();
    for (name, node) in [(WEB, node(1)), (DB, node(2))] {
        lab.add_pod_with(&PodRequest {
            node,
            namespace: NAMESPACE.into(),
            name: name.into(),
            labels: BTreeMap::from([("app".to_string(), name.to_string())]),
            ports: Vec::new(),
        })?;
    }
    Ok(())
}

/// Whether `from` should reach `to` once the policy is in force (pod names as in the matrix).
pub fn allowed_with_policy(from: &str, to: &str) -> bool {
    to != DB || from == WEB
}

/// Applies the policy and waits until the matrix shows it (the agents apply it within a
/// second; the rest is the pings). Returns the matrix; fails with the cells that disagree.
pub fn apply_policy(lab: &Lab) -> Result<Vec<(String, String, bool)>> {
    lab.apply_yaml("demo-policy.yaml", POLICY)?;
    let started = Instant::now();
    loop {
        let results = lab.connectivity_matrix();
        let wrong = mismatches(&results, allowed_with_policy);
        if wrong.is_empty() {
            return Ok(results);
        }
        if started.elapsed() > POLICY_DEADLINE {
            bail!(
                "after {} s the matrix still disagrees with the policy: {}",
                POLICY_DEADLINE.as_secs(),
                wrong.join(", ")
            );
        }
        sleep(Duration::from_millis(500));
    }
}

/// The pairs of `results` whose outcome is not what `expected` says, as `a → b (got …)`.
pub fn mismatches(
    results: &[(String, String, bool)],
    expected: impl Fn(&str, &str) -> bool,
) -> Vec<String> {
    results
        .iter()
        .filter(|(from, to, ok)| expected(from, to) != *ok)
        .map(|(from, to, ok)| {
            let got = if *ok { "replied" } else { "no reply" };
            format!("{from} → {to} ({got})")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_web_reaches_db_under_the_policy() {
        assert!(allowed_with_policy(WEB, DB));
        assert!(!allowed_with_policy("pod-0-0", DB));
        assert!(allowed_with_policy(DB, WEB));
        assert!(allowed_with_policy("pod-0-0", "pod-1-0"));
        let results = vec![
            ("pod-0-0".to_string(), DB.to_string(), true),
            (WEB.to_string(), DB.to_string(), true),
        ];
        assert_eq!(
            mismatches(&results, allowed_with_policy),
            vec!["pod-0-0 → db (replied)".to_string()]
        );
    }
}
