//! Kubernetes label selectors as Calico selectors.

use super::{Selector, SelectorError};
use crate::k8s::{LabelSelector, LabelSelectorRequirement, SelectorOperator};
use crate::validate;

/// One condition of a label selector written as selector text, with the field it came
/// from and what Kubernetes validation would find wrong with it.
struct Term {
    text: String,
    /// The problem, starting with the field's path.
    problem: Option<String>,
}

impl LabelSelector {
    /// The Calico selector that matches exactly the labels this Kubernetes selector does:
    /// each `matchLabels` entry as `key == "value"`, then each `matchExpressions` entry
    /// (`In` as `in`, `NotIn` as `not in`, `Exists` as `has()`, `DoesNotExist` as
    /// `!has()`), all joined with `&&`. An empty selector selects everything: `all()`.
    ///
    /// `NotIn` matches when the label is absent in both languages, so the translation
    /// keeps Kubernetes' meaning.
    ///
    /// Fails where Kubernetes validation would: an invalid key or value, `In`/`NotIn`
    /// without values, `Exists`/`DoesNotExist` with values. The error's text is the
    /// selector the conversion wrote, its position the offending condition, and its
    /// message names the field (`matchExpressions[1].values`).
    pub fn to_selector(&self) -> Result<Selector, SelectorError> {
        let mut terms = Vec::new();
        for (key, value) in &self.match_labels {
            let problem = validate::qualified_name(key)
                .and_then(|()| validate::label_value(value))
                .err()
                .map(|reason| format!("matchLabels[{key:?}]: {reason}"));
            terms.push(Term {
                text: format!("{key} == \"{value}\""),
                problem,
            });
        }
        for (i, requirement) in self.match_expressions.iter().enumerate() {
            terms.push(expression_term(i, requirement));
        }
        if terms.is_empty() {
            return Ok(Selector::all());
        }
        let mut text = String::new();
        let mut first_problem = None;
        for term in terms {
            if !text.is_empty() {
                text.push_str(" && ");
            }
            if let (None, Some(problem)) = (&first_problem, term.problem) {
                first_problem = Some((text.len(), problem));
            }
            text.push_str(&term.text);
        }
        if let Some((byte, message)) = first_problem {
            return Err(SelectorError::at(&text, byte, message));
        }
        // Parsing the text (rather than building the tree directly) guarantees the
        // result is exactly what its canonical text parses back to.
        Selector::parse(&text)
    }
}

fn expression_term(i: usize, requirement: &LabelSelectorRequirement) -> Term {
    let key = &requirement.key;
    let set = || {
        let quoted: Vec<String> = requirement
            .values
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect();
        format!("{{{}}}", quoted.join(", "))
    };
    let text = match requirement.operator {
        SelectorOperator::In => format!("{key} in {}", set()),
        SelectorOperator::NotIn => format!("{key} not in {}", set()),
        SelectorOperator::Exists => format!("has({key})"),
        SelectorOperator::DoesNotExist => format!("!has({key})"),
    };
    Term {
        text,
        problem: requirement_problem(i, requirement),
    }
}

/// What Kubernetes validation finds wrong with a requirement, prefixed by the field.
fn requirement_problem(i: usize, requirement: &LabelSelectorRequirement) -> Option<String> {
    let path = format!("matchExpressions[{i}]");
    if let Err(reason) = validate::qualified_name(&requirement.key) {
        return Some(format!("{path}.key: {reason}"));
    }
    for (j, value) in requirement.values.iter().enumerate() {
        if let Err(reason) = validate::label_value(value) {
            return Some(format!("{path}.values[{j}]: {reason}"));
        }
    }
    let operator = requirement.operator;
    let needs_values = matches!(operator, SelectorOperator::In | SelectorOperator::NotIn);
    if needs_values && requirement.values.is_empty() {
        Some(format!(
            "{path}.values: operator {operator:?} needs at least one value (Kubernetes \
             rejects an empty list)"
        ))
    } else if !needs_values && !requirement.values.is_empty() {
        Some(format!(
            "{path}.values: operator {operator:?} takes no values: remove them, or use In or \
             NotIn"
        ))
    } else {
        None
    }
}
