//! [`Resource`]: any supported object, read from and written as its document.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::bgp::{BgpConfiguration, BgpPeer};
use crate::ipam_config::IpamConfiguration;
use crate::ippool::IpPool;
use crate::k8s::{K8sNetworkPolicy, Namespace, Pod};
use crate::kind::{Kind, TypeError};
use crate::meta::ObjectMeta;
use crate::node::Node;
use crate::policy::{GlobalNetworkPolicy, NetworkPolicy, Profile};
use crate::validate::{Errors, FieldError};
use crate::workload_endpoint::WorkloadEndpoint;

/// Any supported resource.
///
/// It (de)serializes as the usual `{apiVersion, kind, metadata, spec}` document, choosing
/// the type from `apiVersion` and `kind`. Deserializing does not apply defaults or validate;
/// see [`Resource::with_defaults`] and [`crate::validate()`].
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    /// An `IPPool`.
    IpPool(IpPool),
    /// The `IPAMConfiguration`.
    IpamConfiguration(IpamConfiguration),
    /// A Calico `Node`.
    Node(Node),
    /// A `WorkloadEndpoint`.
    WorkloadEndpoint(WorkloadEndpoint),
    /// A `BGPPeer`.
    BgpPeer(BgpPeer),
    /// A `BGPConfiguration`.
    BgpConfiguration(BgpConfiguration),
    /// A Calico `NetworkPolicy`.
    NetworkPolicy(NetworkPolicy),
    /// A `GlobalNetworkPolicy`.
    GlobalNetworkPolicy(GlobalNetworkPolicy),
    /// A `Profile`.
    Profile(Profile),
    /// A Kubernetes `NetworkPolicy`.
    K8sNetworkPolicy(K8sNetworkPolicy),
    /// A Kubernetes `Namespace`.
    Namespace(Namespace),
    /// A Kubernetes `Pod`.
    Pod(Pod),
}

/// Runs `$body` with `$inner` bound to the resource inside any variant.
macro_rules! each_variant {
    ($resource:expr, $inner:ident => $body:expr) => {
        match $resource {
            Resource::IpPool($inner) => $body,
            Resource::IpamConfiguration($inner) => $body,
            Resource::Node($inner) => $body,
            Resource::WorkloadEndpoint($inner) => $body,
            Resource::BgpPeer($inner) => $body,
            Resource::BgpConfiguration($inner) => $body,
            Resource::NetworkPolicy($inner) => $body,
            Resource::GlobalNetworkPolicy($inner) => $body,
            Resource::Profile($inner) => $body,
            Resource::K8sNetworkPolicy($inner) => $body,
            Resource::Namespace($inner) => $body,
            Resource::Pod($inner) => $body,
        }
    };
}

impl Resource {
    /// The resource's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::IpPool(_) => Kind::IpPool,
            Resource::IpamConfiguration(_) => Kind::IpamConfiguration,
            Resource::Node(_) => Kind::Node,
            Resource::WorkloadEndpoint(_) => Kind::WorkloadEndpoint,
            Resource::BgpPeer(_) => Kind::BgpPeer,
            Resource::BgpConfiguration(_) => Kind::BgpConfiguration,
            Resource::NetworkPolicy(_) => Kind::NetworkPolicy,
            Resource::GlobalNetworkPolicy(_) => Kind::GlobalNetworkPolicy,
            Resource::Profile(_) => Kind::Profile,
            Resource::K8sNetworkPolicy(_) => Kind::K8sNetworkPolicy,
            Resource::Namespace(_) => Kind::Namespace,
            Resource::Pod(_) => Kind::Pod,
        }
    }

    /// The `apiVersion` of the resource's document.
    pub fn api_version(&self) -> &'static str {
        self.kind().api_version()
    }

    /// The resource's name.
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// The namespace in force: for a namespaced kind the one set, else `default`; `None`
    /// for cluster-scoped kinds (even if the metadata wrongly sets one).
    pub fn namespace(&self) -> Option<&str> {
        self.kind()
            .namespaced()
            .then(|| self.metadata().namespace_or_default())
    }

    /// The resource's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        each_variant!(self, r => &r.metadata)
    }

    /// The resource's metadata, to change.
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each_variant!(self, r => &mut r.metadata)
    }

    /// The datastore key; see [`Kind::key`].
    pub fn key(&self) -> String {
        self.kind().key(self.namespace(), self.name())
    }

    /// The object as messages name it: `IPPool pool-a`, `NetworkPolicy prod/allow-web`.
    pub fn describe(&self) -> String {
        Resource::describe_parts(self.kind(), self.namespace(), self.name())
    }

    pub(crate) fn describe_parts(kind: Kind, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(namespace) => format!("{kind} {namespace}/{name}"),
            None => format!("{kind} {name}"),
        }
    }

    /// The resource with Calico's (and Kubernetes') defaults written into every unset field,
    /// as they are stored and as `tortiectl get` shows them: the namespace of namespaced
    /// kinds, IPPool block size, modes, flags, node selector and uses, IPAMConfiguration
    /// settings, BGPPeer source address, the `default` BGPConfiguration's settings, policy
    /// types, and the protocol of Kubernetes ports.
    pub fn with_defaults(mut self) -> Self {
        self.apply_defaults();
        self
    }

    /// Writes the defaults in place; see [`Resource::with_defaults`].
    pub fn apply_defaults(&mut self) {
        if self.kind().namespaced() && self.metadata().namespace.is_none() {
            self.metadata_mut().namespace = Some(crate::meta::DEFAULT_NAMESPACE.to_string());
        }
        match self {
            Resource::IpPool(r) => r.spec.apply_defaults(),
            Resource::IpamConfiguration(r) => r.spec.apply_defaults(),
            Resource::BgpPeer(r) => r.spec.apply_defaults(),
            Resource::BgpConfiguration(r) => r.apply_defaults(),
            Resource::NetworkPolicy(r) => r.spec.apply_defaults(),
            Resource::GlobalNetworkPolicy(r) => r.spec.apply_defaults(),
            Resource::K8sNetworkPolicy(r) => r.spec.apply_defaults(),
            Resource::Pod(r) => r.apply_defaults(),
            Resource::Node(_)
            | Resource::WorkloadEndpoint(_)
            | Resource::Profile(_)
            | Resource::Namespace(_) => {}
        }
    }

    /// Validates the resource; see [`crate::validate()`].
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        crate::validate::validate(self)
    }

    pub(crate) fn check(&self, errs: &mut Errors) {
        each_variant!(self, r => r.check(errs))
    }

    /// Reads a resource from a parsed document, choosing its type from `apiVersion` and
    /// `kind`.
    pub fn from_value(value: Value) -> Result<Resource, DecodeError> {
        let declared = |field: &str| value.get(field).and_then(Value::as_str).map(str::to_owned);
        let (kind, api_version) = (declared("kind"), declared("apiVersion"));
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let fail = |path: Option<String>, reason: String| DecodeError {
            kind: kind.clone(),
            name: name.clone(),
            path,
            reason,
        };
        if !value.is_object() {
            return Err(fail(
                None,
                format!(
                    "expected a resource (a map with apiVersion, kind, metadata and spec), \
                     found {}",
                    describe_value(&value)
                ),
            ));
        }
        let resolved = match (&kind, &api_version) {
            (None, _) => Err(TypeError::MissingKind),
            (Some(kind), None) => {
                let expected: Vec<&str> = Kind::ALL
                    .into_iter()
                    .filter(|k| k.name() == kind)
                    .map(|k| k.api_version())
                    .collect();
                // An unknown kind is the clearer error when both are wrong.
                match Kind::from_type("", kind) {
                    Err(e @ TypeError::UnknownKind { .. }) => Err(e),
                    _ => Err(TypeError::MissingApiVersion {
                        kind: kind.clone(),
                        expected: expected.join(" or "),
                    }),
                }
            }
            (Some(kind), Some(api_version)) => Kind::from_type(api_version, kind),
        };
        let resolved = resolved.map_err(|e| fail(None, e.to_string()))?;
        fn typed<T: serde::de::DeserializeOwned>(
            value: Value,
            wrap: fn(T) -> Resource,
        ) -> Result<Resource, (String, String)> {
            serde_path_to_error::deserialize(value)
                .map(wrap)
                .map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
        }
        let result = match resolved {
            Kind::IpPool => typed(value, Resource::IpPool),
            Kind::IpamConfiguration => typed(value, Resource::IpamConfiguration),
            Kind::Node => typed(value, Resource::Node),
            Kind::WorkloadEndpoint => typed(value, Resource::WorkloadEndpoint),
            Kind::BgpPeer => typed(value, Resource::BgpPeer),
            Kind::BgpConfiguration => typed(value, Resource::BgpConfiguration),
            Kind::NetworkPolicy => typed(value, Resource::NetworkPolicy),
            Kind::GlobalNetworkPolicy => typed(value, Resource::GlobalNetworkPolicy),
            Kind::Profile => typed(value, Resource::Profile),
            Kind::K8sNetworkPolicy => typed(value, Resource::K8sNetworkPolicy),
            Kind::Namespace => typed(value, Resource::Namespace),
            Kind::Pod => typed(value, Resource::Pod),
        };
        result.map_err(|(path, reason)| {
            // serde_path_to_error writes "." for the document's top level.
            let path = (path != ".").then_some(path);
            fail(path, reason)
        })
    }
}

fn describe_value(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Why a document could not be read as a resource:
/// `IPPool pool-a: spec.ipipMode: unknown variant ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The document's `kind`, when it declares one.
    pub kind: Option<String>,
    /// The document's `metadata.name`, when it has one.
    pub name: Option<String>,
    /// The field that failed (`spec.ipipMode`), when the failure is inside the document.
    pub path: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.kind, &self.name) {
            (Some(kind), Some(name)) => write!(f, "{kind} {name}: ")?,
            (Some(kind), None) => write!(f, "{kind}: ")?,
            (None, Some(name)) => write!(f, "{name}: ")?,
            (None, None) => {}
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for DecodeError {}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        each_variant!(self, r => r.serialize(serializer))
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Resource::from_value(value).map_err(serde::de::Error::custom)
    }
}

macro_rules! from_variant {
    ($($variant:ident),*) => {
        $(impl From<$variant> for Resource {
            fn from(resource: $variant) -> Resource {
                Resource::$variant(resource)
            }
        })*
    };
}

from_variant!(
    IpPool,
    IpamConfiguration,
    Node,
    WorkloadEndpoint,
    BgpPeer,
    BgpConfiguration,
    NetworkPolicy,
    GlobalNetworkPolicy,
    Profile,
    K8sNetworkPolicy,
    Namespace,
    Pod
);
