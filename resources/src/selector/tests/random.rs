//! Randomized round trips: random trees, written with random spacing, quoting and
//! redundant parentheses, must parse to the tree's normal form, print canonically, parse
//! back unchanged, and match exactly the label sets a reference evaluator says they do.

use std::collections::{BTreeMap, BTreeSet};

use super::super::ast::{CompareOp, Node};
use crate::selector::Selector;

/// xorshift64*: small, deterministic, good enough to explore shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &["a", "app", "in", "has", "example.com/tier", "x-y_z.9"];
/// Values with quotes of either kind (never both: the language cannot write that),
/// spaces, operators and nothing at all.
const VALUES: &[&str] = &[
    "",
    "web",
    "we",
    "eb",
    "w",
    "x",
    "say \"hi\"",
    "it's",
    "a b",
    "&& ||",
    "{}",
    "é",
];
/// Extra label values, so that prefixes and substrings are sometimes but not always hit.
const LABEL_VALUES: &[&str] = &["web", "webx", "xweb", "", "x", "it's", "say \"hi\"", "é"];

fn random_node(rng: &mut Rng, depth: usize) -> Node {
    let leaf = depth == 0 || rng.chance(3);
    if leaf {
        let key = rng.pick(KEYS).to_string();
        return match rng.below(9) {
            0 => Node::All,
            1 => Node::Global,
            2 => Node::Has(key),
            3 => {
                let values = (0..rng.below(4))
                    .map(|_| rng.pick(VALUES).to_string())
                    .collect();
                Node::InSet {
                    key,
                    values,
                    negated: rng.chance(2),
                }
            }
            n => Node::Compare {
                key,
                op: [
                    CompareOp::Eq,
                    CompareOp::Ne,
                    CompareOp::Contains,
                    CompareOp::StartsWith,
                    CompareOp::EndsWith,
                ][n - 4],
                value: rng.pick(VALUES).to_string(),
            },
        };
    }
    match rng.below(3) {
        // Raw constructors on purpose: trees that are not in normal form (`!!x`, an
        // `&&` inside an `&&`) must parse to their normal form.
        0 => Node::Not(Box::new(random_node(rng, depth - 1))),
        n => {
            let children = (0..2 + rng.below(2))
                .map(|_| random_node(rng, depth - 1))
                .collect();
            if n == 1 {
                Node::And(children)
            } else {
                Node::Or(children)
            }
        }
    }
}

/// The tree's normal form, built with the smart constructors.
fn normalize(node: &Node) -> Node {
    match node {
        Node::Not(inner) => Node::not(normalize(inner)),
        Node::And(children) => Node::and(children.iter().map(normalize).collect()),
        Node::Or(children) => Node::or(children.iter().map(normalize).collect()),
        leaf => leaf.clone(),
    }
}

fn space(rng: &mut Rng) -> &'static str {
    ["", " ", "  ", "\t", " \t "][rng.below(5)]
}

/// Space that must separate two words.
fn gap(rng: &mut Rng) -> &'static str {
    [" ", "  ", "\t"][rng.below(3)]
}

fn quote(rng: &mut Rng, value: &str) -> String {
    let quote = if value.contains('"') {
        '\''
    } else if value.contains('\'') || rng.chance(2) {
        '"'
    } else {
        '\''
    };
    format!("{quote}{value}{quote}")
}

/// Writes `node` as a person might: random spacing and quotes, and parentheses where
/// needed plus some where not.
fn render(rng: &mut Rng, node: &Node) -> String {
    let group = |rng: &mut Rng, text: String, needed: bool| {
        if needed || rng.chance(4) {
            format!("({}{text}{})", space(rng), space(rng))
        } else {
            text
        }
    };
    match node {
        Node::All => format!("all({})", space(rng)),
        Node::Global => format!("global({})", space(rng)),
        Node::Has(key) => format!("has({}{key}{})", space(rng), space(rng)),
        Node::Compare { key, op, value } => {
            let op = match op {
                CompareOp::Eq => format!("{}=={}", space(rng), space(rng)),
                CompareOp::Ne => format!("{}!={}", space(rng), space(rng)),
                CompareOp::Contains => format!("{}contains{}", gap(rng), space(rng)),
                CompareOp::StartsWith => {
                    format!("{}starts{}with{}", gap(rng), gap(rng), space(rng))
                }
                CompareOp::EndsWith => format!("{}ends{}with{}", gap(rng), gap(rng), space(rng)),
            };
            format!("{key}{op}{}", quote(rng, value))
        }
        Node::InSet {
            key,
            values,
            negated,
        } => {
            let op = if *negated {
                format!("{}not{}in", gap(rng), gap(rng))
            } else {
                format!("{}in", gap(rng))
            };
            let mut items: Vec<String> = values.iter().map(|v| quote(rng, v)).collect();
            if !items.is_empty() && rng.chance(3) {
                // Duplicates collapse.
                items.push(items[0].clone());
            }
            let separator = format!("{},{}", space(rng), space(rng));
            format!(
                "{key}{op}{}{{{}{}{}}}",
                space(rng),
                space(rng),
                items.join(&separator),
                space(rng)
            )
        }
        Node::Not(inner) => {
            let text = render(rng, inner);
            let needed = matches!(**inner, Node::And(_) | Node::Or(_));
            format!("!{}{}", space(rng), group(rng, text, needed))
        }
        Node::And(children) | Node::Or(children) => {
            let is_and = matches!(node, Node::And(_));
            let parts: Vec<String> = children
                .iter()
                .map(|child| {
                    let text = render(rng, child);
                    group(rng, text, is_and && matches!(child, Node::Or(_)))
                })
                .collect();
            let op = if is_and { "&&" } else { "||" };
            let separator = format!("{}{op}{}", space(rng), space(rng));
            parts.join(&separator)
        }
    }
}

/// Calico's documented semantics, written out independently of the evaluator under test.
fn reference(node: &Node, labels: &BTreeMap<String, String>) -> bool {
    match node {
        Node::All | Node::Global => true,
        Node::Has(key) => labels.contains_key(key),
        Node::Compare { key, op, value } => match (labels.get(key), op) {
            (None, CompareOp::Ne) => true,
            (None, _) => false,
            (Some(label), CompareOp::Eq) => label == value,
            (Some(label), CompareOp::Ne) => label != value,
            (Some(label), CompareOp::Contains) => label.contains(value.as_str()),
            (Some(label), CompareOp::StartsWith) => label.starts_with(value.as_str()),
            (Some(label), CompareOp::EndsWith) => label.ends_with(value.as_str()),
        },
        Node::InSet {
            key,
            values,
            negated: false,
        } => labels.get(key).is_some_and(|label| values.contains(label)),
        Node::InSet {
            key,
            values,
            negated: true,
        } => labels.get(key).is_none_or(|label| !values.contains(label)),
        Node::Not(inner) => !reference(inner, labels),
        Node::And(children) => children.iter().all(|child| reference(child, labels)),
        Node::Or(children) => children.iter().any(|child| reference(child, labels)),
    }
}

fn keys_of(node: &Node, keys: &mut BTreeSet<String>) {
    match node {
        Node::Has(key) | Node::Compare { key, .. } | Node::InSet { key, .. } => {
            keys.insert(key.clone());
        }
        Node::Not(inner) => keys_of(inner, keys),
        Node::And(children) | Node::Or(children) => {
            for child in children {
                keys_of(child, keys);
            }
        }
        Node::All | Node::Global => {}
    }
}

fn random_labels(rng: &mut Rng) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for key in KEYS {
        if rng.chance(2) {
            let value = if rng.chance(2) {
                rng.pick(LABEL_VALUES)
            } else {
                rng.pick(VALUES)
            };
            labels.insert(key.to_string(), value.to_string());
        }
    }
    labels
}

#[test]
fn random_trees_round_trip_and_match_like_the_reference() {
    let mut rng = Rng(0x7071_e5e1_ec70_0001);
    let mut matched = 0;
    let mut evaluated = 0;
    for case in 0..3000 {
        let tree = random_node(&mut rng, 1 + case % 6);
        let written = render(&mut rng, &tree);
        let selector = Selector::parse(&written)
            .unwrap_or_else(|e| panic!("case {case}: {written:?} did not parse:\n{e}"));
        let normal = normalize(&tree);
        assert_eq!(selector.root, normal, "case {case}: {written:?}");
        assert_eq!(selector.to_string(), normal.to_string(), "case {case}");

        // The canonical text parses back to the same selector and prints the same.
        let canonical = selector.to_string();
        let again = Selector::parse(&canonical)
            .unwrap_or_else(|e| panic!("case {case}: canonical {canonical:?}:\n{e}"));
        assert_eq!(again, selector);
        assert_eq!(again.root, selector.root);
        assert_eq!(again.to_string(), canonical);

        let mut keys = BTreeSet::new();
        keys_of(&tree, &mut keys);
        assert_eq!(selector.label_keys(), keys, "case {case}: {canonical}");

        for _ in 0..8 {
            let labels = random_labels(&mut rng);
            let expected = reference(&tree, &labels);
            assert_eq!(
                selector.matches(&labels),
                expected,
                "case {case}: {canonical} against {labels:?}"
            );
            matched += usize::from(expected);
            evaluated += 1;
        }
    }
    // The generator must exercise both outcomes, or the comparison proves little.
    assert!(
        matched > evaluated / 5 && matched < evaluated * 4 / 5,
        "{matched} of {evaluated}"
    );
}
