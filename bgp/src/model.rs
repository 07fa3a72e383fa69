//! What the BGP plan is computed from: the cluster's resources as this node sees them, and
//! where session passwords come from.

use std::fmt;
use std::io;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use tortie_resources::{BgpConfiguration, BgpPeer, IpPool, Node};

/// Everything [`plan`](crate::plan) needs, read from the datastore (and IPAM) by the caller.
///
/// The resource lists are taken as they are stored; order does not matter, the plan sorts
/// what it needs. Unset optional fields take Calico's defaults, so defaults need not be
/// applied first.
pub struct BgpInputs {
    /// The name of the node this configuration is for (its `Node` resource's name).
    pub local_node: String,
    /// Every Calico `Node` in the cluster, the local one included.
    pub nodes: Vec<Node>,
    /// Every `BGPConfiguration`: `default` and any per-node `node.<name>`.
    pub configurations: Vec<BgpConfiguration>,
    /// Every `BGPPeer`.
    pub peers: Vec<BgpPeer>,
    /// Every `IPPool`.
    pub pools: Vec<IpPool>,
    /// The IPAM blocks affine to the local node: the routes this node originates.
    pub local_blocks: Vec<Ipv4Net>,
    /// Where session passwords (`secretKeyRef`) are read from.
    pub secrets: Box<dyn SecretSource + Send + Sync>,
}

impl BgpInputs {
    /// Inputs for `local_node` with no resources, no blocks and no secrets; fill the fields
    /// that apply.
    pub fn new(local_node: impl Into<String>) -> BgpInputs {
        BgpInputs {
            local_node: local_node.into(),
            nodes: Vec::new(),
            configurations: Vec::new(),
            peers: Vec::new(),
            pools: Vec::new(),
            local_blocks: Vec::new(),
            secrets: Box::new(NoSecrets),
        }
    }
}

impl fmt::Debug for BgpInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BgpInputs")
            .field("local_node", &self.local_node)
            .field("nodes", &self.nodes)
            .field("configurations", &self.configurations)
            .field("peers", &self.peers)
            .field("pools", &self.pools)
            .field("local_blocks", &self.local_blocks)
            .finish_non_exhaustive()
    }
}

/// A source of Kubernetes secret values, for BGP session passwords.
///
/// Any closure `Fn(&str, &str) -> Option<String>` taking the secret's name and key is one.
pub trait SecretSource {
    /// The value of `key` in the secret `name`, or `None` when either does not exist.
    fn secret(&self, name: &str, key: &str) -> Option<String>;
}

impl<F> SecretSource for F
where
    F: Fn(&str, &str) -> Option<String>,
{
    fn secret(&self, name: &str, key: &str) -> Option<String> {
        self(name, key)
    }
}

/// A secret source with no secrets: every password reference is missing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn secret(&self, _name: &str, _key: &str) -> Option<String> {
        None
    }
}

/// Secrets mounted as files, one directory per secret and one file per key:
/// `<path>/<secret name>/<key>`, the layout of a Kubernetes secret volume per secret.
///
/// A trailing newline is dropped (files written with `echo` have one; BGP passwords never
/// end in one). A file that cannot be read counts as missing and is logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretsDir {
    /// The directory holding one subdirectory per secret.
    pub path: PathBuf,
}

impl SecretsDir {
    /// Secrets under `path`.
    pub fn new(path: impl Into<PathBuf>) -> SecretsDir {
        SecretsDir { path: path.into() }
    }
}

impl SecretSource for SecretsDir {
    fn secret(&self, name: &str, key: &str) -> Option<String> {
        // Names come from resources: refuse anything that would step outside the directory.
        let unsafe_component = |s: &str| s.is_empty() || s == "." || s == ".." || s.contains('/');
        if unsafe_component(name) || unsafe_component(key) {
            tracing::warn!(
                secret = name,
                key,
                "secret name or key is not a plain file name"
            );
            return None;
        }
        let file = self.path.join(name).join(key);
        match std::fs::read_to_string(&file) {
            Ok(mut value) => {
                if value.ends_with('\n') {
                    value.pop();
                    if value.ends_with('\r') {
                        value.pop();
                    }
                }
                Some(value)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot read secret file");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_dir_reads_and_trims() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bgp-secrets")).unwrap();
        std::fs::write(dir.path().join("bgp-secrets/rack1"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("bgp-secrets/raw"), "  keep spaces ").unwrap();
        let secrets = SecretsDir::new(dir.path());
        assert_eq!(
            secrets.secret("bgp-secrets", "rack1").as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            secrets.secret("bgp-secrets", "raw").as_deref(),
            Some("  keep spaces ")
        );
        assert_eq!(secrets.secret("bgp-secrets", "absent"), None);
        assert_eq!(secrets.secret("absent", "rack1"), None);
        assert_eq!(secrets.secret("..", "bgp-secrets"), None);
        assert_eq!(secrets.secret("bgp-secrets", "../bgp-secrets/rack1"), None);
    }

    #[test]
    fn closures_are_secret_sources() {
        let source = |name: &str, key: &str| (name == "s" && key == "k").then(|| "pw".to_string());
        assert_eq!(source.secret("s", "k").as_deref(), Some("pw"));
        assert_eq!(source.secret("s", "x"), None);
    }
}
