//! The `{apiVersion, kind, metadata, spec}` document around each resource's spec.
//!
//! Every resource type serializes as a complete document, so a single `IpPool` written to
//! etcd or printed carries its `apiVersion` and `kind`. When deserializing a type directly,
//! `apiVersion` and `kind` may be omitted (the items of an `IPPoolList`), but if present they
//! must be the type's own.

use crate::kind::Kind;

/// Checks a document's declared type against the type being read.
pub(crate) fn check_type(
    expected: Kind,
    api_version: Option<&str>,
    kind: Option<&str>,
) -> Result<(), String> {
    if let Some(kind) = kind {
        if kind != expected.name() {
            return Err(format!("expected kind {}, found {kind:?}", expected.name()));
        }
    }
    if let Some(api_version) = api_version {
        if api_version != expected.api_version() {
            return Err(format!(
                "kind {} does not exist in apiVersion {api_version:?}: use {}",
                expected.name(),
                expected.api_version()
            ));
        }
    }
    Ok(())
}

/// Implements `Serialize` and `Deserialize` for a `{ metadata, spec }` resource struct.
///
/// The document's top level is strict (unknown fields are errors). A `status` is accepted
/// and dropped: the datastore and other tools may carry one, and nothing here reads it.
macro_rules! resource_document {
    ($ty:ident, $spec:ty, $kind:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let mut doc = serializer.serialize_struct(stringify!($ty), 4)?;
                doc.serialize_field("apiVersion", $kind.api_version())?;
                doc.serialize_field("kind", $kind.name())?;
                doc.serialize_field("metadata", &self.metadata)?;
                doc.serialize_field("spec", &self.spec)?;
                doc.end()
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                #[derive(serde::Deserialize)]
                #[serde(rename_all = "camelCase", deny_unknown_fields)]
                struct Document {
                    #[serde(default)]
                    api_version: Option<String>,
                    #[serde(default)]
                    kind: Option<String>,
                    metadata: $crate::meta::ObjectMeta,
                    #[serde(default)]
                    spec: Option<$spec>,
                    #[serde(default, rename = "status")]
                    _status: serde::de::IgnoredAny,
                }
                let doc = Document::deserialize(deserializer)?;
                $crate::envelope::check_type(
                    $kind,
                    doc.api_version.as_deref(),
                    doc.kind.as_deref(),
                )
                .map_err(serde::de::Error::custom)?;
                Ok($ty {
                    metadata: doc.metadata,
                    spec: doc.spec.unwrap_or_default(),
                })
            }
        }
    };
}
