//! Reading resources from YAML or JSON text, and writing them out as calicoctl does.

use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::kind::{Kind, K8S_CORE_API_VERSION};
use crate::resource::{DecodeError, Resource};

/// Why [`parse_documents`] rejected its input: which document, which field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The 1-based position of the failing document in the input (YAML documents separated
    /// by `---`, or JSON values one after another).
    pub document: usize,
    /// The 0-based index in the document's `items` (a `List`) or top-level array, when the
    /// failing resource came from one.
    pub item: Option<usize>,
    /// The failing resource's `kind`, when it declares one.
    pub kind: Option<String>,
    /// The failing resource's `metadata.name`, when it has one.
    pub name: Option<String>,
    /// The field that failed (`spec.ipipMode`), when known.
    pub path: Option<String>,
    /// What is wrong (for syntax errors, with the line and column in the input).
    pub reason: String,
}

impl fmt::Display for ParseError {
    /// `document 2 (IPPool pool-b): spec.ipipMode: unknown variant ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        if let Some(item) = self.item {
            write!(f, ", items[{item}]")?;
        }
        match (&self.kind, &self.name) {
            (Some(kind), Some(name)) => write!(f, " ({kind} {name})")?,
            (Some(kind), None) => write!(f, " ({kind})")?,
            (None, Some(name)) => write!(f, " ({name})")?,
            (None, None) => {}
        }
        f.write_str(": ")?;
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    fn syntax(document: usize, reason: String) -> Self {
        ParseError {
            document,
            item: None,
            kind: None,
            name: None,
            path: None,
            reason,
        }
    }

    fn decode(document: usize, item: Option<usize>, error: DecodeError) -> Self {
        ParseError {
            document,
            item,
            kind: error.kind,
            name: error.name,
            path: error.path,
            reason: error.reason,
        }
    }
}

/// Parses every resource in `text`.
///
/// `text` is YAML, one or more documents separated by `---`, or JSON: one object, several
/// objects one after another, or an array of objects. A document may also be a list — `kind:
/// List` or `kind: <Kind>List` (`IPPoolList`) with `items`, whose items may omit the
/// `apiVersion` and `kind` the list's name implies. Empty documents are skipped.
///
/// Resources come back as written: no defaults applied ([`Resource::with_defaults`]) and
/// not validated ([`crate::validate_all`]). The first document that cannot be read stops
/// parsing with an error naming it.
pub fn parse_documents(text: &str) -> Result<Vec<Resource>, ParseError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        match json_documents(text) {
            Ok(values) => return decode_all(values),
            Err(json_error) => {
                // Flow-style YAML also starts with `{` or `[`.
                if let Ok(values) = yaml_documents(text) {
                    return decode_all(values);
                }
                return Err(json_error);
            }
        }
    }
    decode_all(yaml_documents(text)?)
}

fn json_documents(text: &str) -> Result<Vec<Value>, ParseError> {
    let mut values = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        let document = values.len() + 1;
        values.push(value.map_err(|e| ParseError::syntax(document, format!("invalid JSON: {e}")))?);
    }
    Ok(values)
}

fn yaml_documents(text: &str) -> Result<Vec<Value>, ParseError> {
    let mut values = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let invalid =
            |e: &dyn fmt::Display| ParseError::syntax(i + 1, format!("invalid YAML: {e}"));
        let mut yaml = serde_yaml::Value::deserialize(document).map_err(|e| invalid(&e))?;
        yaml.apply_merge().map_err(|e| invalid(&e))?;
        let value = serde_json::to_value(yaml).map_err(|e| invalid(&e))?;
        values.push(value);
    }
    Ok(values)
}

fn decode_all(values: Vec<Value>) -> Result<Vec<Resource>, ParseError> {
    let mut resources = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let document = i + 1;
        match value {
            Value::Null => {}
            Value::Array(items) => {
                for (n, item) in items.into_iter().enumerate() {
                    resources.push(
                        Resource::from_value(item)
                            .map_err(|e| ParseError::decode(document, Some(n), e))?,
                    );
                }
            }
            Value::Object(map) if list_kind(&map).is_some() => {
                let item_kind = list_kind(&map).flatten();
                let items = match map.get("items") {
                    Some(Value::Array(items)) => items.clone(),
                    None | Some(Value::Null) => Vec::new(),
                    Some(_) => {
                        return Err(ParseError {
                            path: Some("items".into()),
                            kind: map.get("kind").and_then(Value::as_str).map(str::to_owned),
                            ..ParseError::syntax(document, "must be a list of resources".into())
                        })
                    }
                };
                for (n, mut item) in items.into_iter().enumerate() {
                    if let (Some(kind), Value::Object(fields)) = (item_kind, &mut item) {
                        fields.entry("kind").or_insert_with(|| kind.name().into());
                        fields
                            .entry("apiVersion")
                            .or_insert_with(|| kind.api_version().into());
                    }
                    resources.push(
                        Resource::from_value(item)
                            .map_err(|e| ParseError::decode(document, Some(n), e))?,
                    );
                }
            }
            value => resources.push(
                Resource::from_value(value).map_err(|e| ParseError::decode(document, None, e))?,
            ),
        }
    }
    Ok(resources)
}

/// Whether a document is a list: `Some(None)` for `kind: List`, `Some(Some(kind))` for
/// `kind: <Kind>List` (in that kind's apiVersion, or none declared), `None` otherwise.
fn list_kind(map: &Map<String, Value>) -> Option<Option<Kind>> {
    let kind = map.get("kind")?.as_str()?;
    if kind == "List" {
        return Some(None);
    }
    let item_kind = kind.strip_suffix("List")?;
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    Kind::ALL
        .into_iter()
        .find(|k| k.name() == item_kind && api_version.is_none_or(|v| v == k.api_version()))
        .map(Some)
}

/// Writes resources as YAML documents separated by `---`, as `calicoctl get -o yaml` does
/// for several objects. Empty input gives an empty string.
pub fn to_yaml(resources: &[Resource]) -> String {
    resources
        .iter()
        // Writing these plain structs (string keys, no maps keyed by non-strings) cannot fail.
        .map(|r| serde_yaml::to_string(r).expect("resources serialize to YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Writes resources as pretty JSON: one resource as its object; any other number as a
/// list — `<Kind>List` in the kind's apiVersion when all share a kind, else `List` (v1) —
/// as `calicoctl get -o json` does.
pub fn to_json(resources: &[Resource]) -> String {
    // Writing these plain structs (string keys, no maps keyed by non-strings) cannot fail.
    let value = |r: &Resource| serde_json::to_value(r).expect("resources serialize to JSON");
    let document = match resources {
        [one] => value(one),
        many => {
            let first = many.first().map(Resource::kind);
            let (kind, api_version) = match first {
                Some(kind) if many.iter().all(|r| r.kind() == kind) => {
                    (format!("{}List", kind.name()), kind.api_version())
                }
                _ => ("List".to_string(), K8S_CORE_API_VERSION),
            };
            serde_json::json!({
                "apiVersion": api_version,
                "kind": kind,
                "metadata": {},
                "items": many.iter().map(value).collect::<Vec<_>>(),
            })
        }
    };
    let mut text = serde_json::to_string_pretty(&document).expect("a JSON value serializes");
    text.push('\n');
    text
}
