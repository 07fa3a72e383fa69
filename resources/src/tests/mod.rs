//! Tests across modules: realistic documents of every kind through parsing, defaults,
//! validation and output.

mod defaults;
mod documents;
mod roundtrip;
mod samples;
mod validation;

use crate::{parse_documents, Resource};

/// Parses text that must hold exactly one resource.
fn parse_one(text: &str) -> Resource {
    let mut resources = parse_documents(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resources.len(), 1, "expected one resource");
    resources.remove(0)
}

/// The messages of a resource's validation errors, in order.
fn errors_of(resource: &Resource) -> Vec<String> {
    match crate::validate(resource) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}
