//! Selector tests: parsing and canonical text, matching, errors and limits, Kubernetes
//! label selectors, and a randomized round trip against a reference evaluator.

mod errors;
mod label_selector;
mod matching;
mod parse;
mod random;

use std::collections::BTreeMap;

use super::Selector;

/// A label map from pairs.
fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Parses text that must be a valid selector.
fn parse(text: &str) -> Selector {
    Selector::parse(text).unwrap_or_else(|e| panic!("{text:?} did not parse:\n{e}"))
}
