//! Object metadata shared by every kind, and the checks on it.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::kind::Kind;
use crate::validate::{self, Errors};

/// The namespace a namespaced resource is in when its metadata names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Metadata of a resource (`metadata:`), the subset of Kubernetes `ObjectMeta` that Calico
/// resources use. Only `name` is required.
///
/// Kubernetes bookkeeping fields that appear in objects exported from a cluster
/// (`generation`, `managedFields`, `ownerReferences`, `finalizers`, `generateName`,
/// `deletionTimestamp`, `deletionGracePeriodSeconds`, `selfLink`) are accepted and dropped;
/// any other unknown field is an error, so a typo such as `lables` is caught.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "MetaDocument")]
pub struct ObjectMeta {
    /// The resource's name, unique per kind (and per namespace for namespaced kinds).
    pub name: String,
    /// The namespace, for namespaced kinds; `default` when omitted. Cluster-scoped kinds
    /// must not set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels that selectors match.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The datastore revision this copy was read at; used for compare-and-swap updates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// A unique identifier the datastore assigns on creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// When the resource was created (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
}

impl ObjectMeta {
    /// Metadata with only a name (cluster-scoped kinds).
    pub fn named(name: impl Into<String>) -> Self {
        ObjectMeta {
            name: name.into(),
            ..ObjectMeta::default()
        }
    }

    /// Metadata with a namespace and a name (namespaced kinds).
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectMeta {
            name: name.into(),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        }
    }

    /// The namespace in force for a namespaced kind: the one set, else `default`.
    pub fn namespace_or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }

    /// Checks the name (with `name_rule`), the namespace against the kind's scope, labels
    /// and annotations.
    pub(crate) fn check(
        &self,
        errs: &mut Errors,
        kind: Kind,
        name_rule: fn(&str) -> Result<(), String>,
    ) {
        if self.name.is_empty() {
            errs.push("metadata.name", "is required");
        } else {
            errs.check("metadata.name", name_rule(&self.name));
        }
        match (&self.namespace, kind.namespaced()) {
            (Some(namespace), true) => {
                errs.check("metadata.namespace", validate::dns1123_label(namespace));
            }
            (Some(_), false) => errs.push(
                "metadata.namespace",
                format!("{} is cluster-scoped: remove the namespace", kind.name()),
            ),
            (None, _) => {}
        }
        validate::check_labels(errs, "metadata.labels", &self.labels);
        validate::check_annotations(errs, "metadata.annotations", &self.annotations);
    }
}

/// The metadata as it may appear in a document, with the Kubernetes fields we drop.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetaDocument {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    creation_timestamp: Option<String>,
    #[serde(default, rename = "generation")]
    _generation: IgnoredAny,
    #[serde(default, rename = "generateName")]
    _generate_name: IgnoredAny,
    #[serde(default, rename = "managedFields")]
    _managed_fields: IgnoredAny,
    #[serde(default, rename = "ownerReferences")]
    _owner_references: IgnoredAny,
    #[serde(default, rename = "finalizers")]
    _finalizers: IgnoredAny,
    #[serde(default, rename = "deletionTimestamp")]
    _deletion_timestamp: IgnoredAny,
    #[serde(default, rename = "deletionGracePeriodSeconds")]
    _deletion_grace_period_seconds: IgnoredAny,
    #[serde(default, rename = "selfLink")]
    _self_link: IgnoredAny,
}

impl From<MetaDocument> for ObjectMeta {
    fn from(doc: MetaDocument) -> Self {
        ObjectMeta {
            name: doc.name,
            namespace: doc.namespace,
            labels: doc.labels.unwrap_or_default(),
            annotations: doc.annotations.unwrap_or_default(),
            resource_version: doc.resource_version,
            uid: doc.uid,
            creation_timestamp: doc.creation_timestamp,
        }
    }
}
