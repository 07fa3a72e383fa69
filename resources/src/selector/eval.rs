//! Evaluating a selector against a set of labels.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use super::ast::{CompareOp, Node};

/// Something with labels a selector can be evaluated against: a pod, a namespace, a node,
/// or just a map.
pub trait LabelSource {
    /// The value of label `key`, or `None` when the label is absent. (A label present
    /// with an empty value is `Some("")`, which `has(key)` matches.)
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelSource for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> LabelSource for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<T: LabelSource + ?Sized> LabelSource for &T {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

/// Whether `node` matches `labels`, with Calico's semantics: `!=` and `not in` match
/// when the label is absent, every other comparison needs the label present, and
/// `all()` and `global()` match everything.
pub(super) fn matches(node: &Node, labels: &dyn LabelSource) -> bool {
    match node {
        // global() narrows *which* resources are in scope (the non-namespaced ones); the
        // caller applies that, as Calico does. As an expression it is always true.
        Node::All | Node::Global => true,
        Node::Has(key) => labels.label(key).is_some(),
        Node::Compare { key, op, value } => {
            let label = labels.label(key);
            match op {
                CompareOp::Eq => label == Some(value.as_str()),
                CompareOp::Ne => label != Some(value.as_str()),
                CompareOp::Contains => label.is_some_and(|l| l.contains(value.as_str())),
                CompareOp::StartsWith => label.is_some_and(|l| l.starts_with(value.as_str())),
                CompareOp::EndsWith => label.is_some_and(|l| l.ends_with(value.as_str())),
            }
        }
        Node::InSet {
            key,
            values,
            negated,
        } => {
            let member = labels.label(key).is_some_and(|l| values.contains(l));
            member != *negated
        }
        Node::Not(inner) => !matches(inner, labels),
        Node::And(children) => children.iter().all(|child| matches(child, labels)),
        Node::Or(children) => children.iter().any(|child| matches(child, labels)),
    }
}
