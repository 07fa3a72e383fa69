//! Kubernetes label selectors converted to Calico selectors.

use super::{labels, parse};
use crate::k8s::{LabelSelector, LabelSelectorRequirement, SelectorOperator};

fn requirement(key: &str, operator: SelectorOperator, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn selector(
    match_labels: &[(&str, &str)],
    expressions: Vec<LabelSelectorRequirement>,
) -> LabelSelector {
    LabelSelector {
        match_labels: labels(match_labels),
        match_expressions: expressions,
    }
}

#[test]
fn conversions() {
    use SelectorOperator::*;
    let cases = [
        (selector(&[], vec![]), "all()"),
        (selector(&[("app", "web")], vec![]), r#"app == "web""#),
        (
            selector(&[("tier", "db"), ("app", "")], vec![]),
            r#"app == "" && tier == "db""#,
        ),
        (
            selector(&[], vec![requirement("env", In, &["prod", "dev", "prod"])]),
            r#"env in {"dev", "prod"}"#,
        ),
        (
            selector(&[], vec![requirement("env", NotIn, &["prod"])]),
            r#"env not in {"prod"}"#,
        ),
        (
            selector(&[], vec![requirement("env", Exists, &[])]),
            "has(env)",
        ),
        (
            selector(&[], vec![requirement("example.com/env", DoesNotExist, &[])]),
            "!has(example.com/env)",
        ),
        (
            selector(
                &[("app", "web")],
                vec![
                    requirement("env", NotIn, &["dev"]),
                    requirement("canary", DoesNotExist, &[]),
                ],
            ),
            r#"app == "web" && env not in {"dev"} && !has(canary)"#,
        ),
    ];
    for (label_selector, expected) in cases {
        let converted = label_selector
            .to_selector()
            .unwrap_or_else(|e| panic!("{label_selector:?}: {e}"));
        assert_eq!(converted.to_string(), expected);
        // Round trip: the canonical text parses back to an equal selector.
        assert_eq!(parse(&converted.to_string()), converted);
    }
}

#[test]
fn kubernetes_semantics() {
    use SelectorOperator::*;
    let converted = selector(
        &[("app", "web")],
        vec![
            requirement("env", NotIn, &["dev"]),
            requirement("tier", In, &["fe", "be"]),
            requirement("canary", DoesNotExist, &[]),
            requirement("team", Exists, &[]),
        ],
    )
    .to_selector()
    .unwrap();
    let base = [("app", "web"), ("tier", "fe"), ("team", "")];
    // NotIn matches when the key is absent, as in Kubernetes.
    assert!(converted.matches(&labels(&base)));
    assert!(converted.matches(&labels(&[base[0], base[1], base[2], ("env", "prod")])));
    assert!(!converted.matches(&labels(&[base[0], base[1], base[2], ("env", "dev")])));
    assert!(!converted.matches(&labels(&[base[0], base[1], base[2], ("canary", "y")])));
    assert!(!converted.matches(&labels(&[base[0], base[1]])));
    assert!(!converted.matches(&labels(&[base[0], ("tier", "db"), base[2]])));
    assert!(!converted.matches(&labels(&[("app", "db"), base[1], base[2]])));
    // An empty selector selects everything.
    assert!(LabelSelector::default()
        .to_selector()
        .unwrap()
        .matches(&labels(&[])));
}

#[test]
fn invalid_label_selectors_are_rejected_as_kubernetes_would() {
    use SelectorOperator::*;
    let cases = [
        (
            selector(&[("app", "web")], vec![requirement("env", In, &[])]),
            16,
            "matchExpressions[0].values: operator In needs at least one value",
        ),
        (
            selector(&[], vec![requirement("env", NotIn, &[])]),
            0,
            "matchExpressions[0].values: operator NotIn needs at least one value",
        ),
        (
            selector(&[], vec![requirement("env", Exists, &["x"])]),
            0,
            "matchExpressions[0].values: operator Exists takes no values",
        ),
        (
            selector(
                &[],
                vec![
                    requirement("a", Exists, &[]),
                    requirement("bad key", DoesNotExist, &[]),
                ],
            ),
            10,
            "matchExpressions[1].key: key \"bad key\" is not valid",
        ),
        (
            selector(&[], vec![requirement("env", In, &["ok", "it's"])]),
            0,
            "matchExpressions[0].values[1]: value \"it's\" is not valid",
        ),
        (
            selector(&[("app", "say \"hi\"")], vec![]),
            0,
            "matchLabels[\"app\"]: value \"say \\\"hi\\\"\" is not valid",
        ),
        (
            selector(&[("-app", "web")], vec![]),
            0,
            "matchLabels[\"-app\"]: key \"-app\" is not valid",
        ),
    ];
    for (label_selector, position, message) in cases {
        let Err(error) = label_selector.to_selector() else {
            panic!("{label_selector:?} converted");
        };
        assert!(
            error.message.starts_with(message),
            "{:?} does not start with {message:?}",
            error.message
        );
        assert_eq!(error.position, position, "{error}");
    }
    let error = selector(&[("app", "web")], vec![requirement("env", In, &[])])
        .to_selector()
        .unwrap_err();
    assert_eq!(error.text, r#"app == "web" && env in {}"#);
}
