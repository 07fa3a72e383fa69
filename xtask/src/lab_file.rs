//! `cargo xtask lab up --spec FILE`: a lab described in YAML, for setups the flags do not
//! cover (more namespaces, pods with labels and ports, resources to apply).
//!
//! ```yaml
//! name: shop-lab          # default: lab
//! nodes: 3                # default: 3
//! podsPerNode: 1          # the lab's own pods (pod-<node>-<j> in default); default: 2
//! encap: vxlan            # none | ipip | vxlan; default: ipip
//! crossSubnet: false
//! topology: flat          # flat | routed
//! podMtu: 1400            # default: derived from the encapsulation
//! bgp: true               # BIRD on every node; default: true
//! demo: false             # also run the web/db policy demo; default: false
//! namespaces:
//! - name: shop
//!   labels: {team: checkout}
//! pods:
//! - name: shop/web        # namespace/name (or name, in default)
//!   node: node-1
//!   labels: {app: web}
//!   ports: [http:TCP:80]  # NAME:PROTO:PORT or PROTO:PORT
//!   serve: true           # answer probes on those ports (tortie-probe serve)
//! resources: |            # applied with tortiectl after the pods, as one file
//!   apiVersion: projectcalico.org/v3
//!   kind: GlobalNetworkPolicy
//!   ...
//! resourceFiles: [policies.yaml]   # relative to this file
//! ```
//!
//! A spec file always uses the etcd datastore (pods and resources go through it).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tortie_lab::{DatastoreMode, Encap, LabSpec, Topology};

/// A lab file, as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabFile {
    #[serde(default = "default_name")]
    name: String,
    #[serde(default = "default_nodes")]
    nodes: usize,
    #[serde(default = "default_pods_per_node")]
    pods_per_node: usize,
    #[serde(default = "default_encap")]
    encap: String,
    #[serde(default)]
    cross_subnet: bool,
    #[serde(default = "default_topology")]
    topology: String,
    #[serde(default)]
    pod_mtu: Option<u32>,
    #[serde(default = "default_true")]
    bgp: bool,
    #[serde(default)]
    demo: bool,
    #[serde(default)]
    namespaces: Vec<NamespaceEntry>,
    #[serde(default)]
    pods: Vec<PodEntry>,
    #[serde(default)]
    resources: Option<String>,
    #[serde(default)]
    resource_files: Vec<PathBuf>,
}

/// A namespace to create.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceEntry {
    /// Its name.
    pub name: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A pod to add through tortie-cni.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodEntry {
    /// `namespace/name`, or `name` in `default`.
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Container ports, `NAME:PROTO:PORT` or `PROTO:PORT`.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Answer probes on the ports.
    #[serde(default)]
    pub serve: bool,
}

/// What `lab up` does after the lab's own pods are up.
#[derive(Debug, Default)]
pub struct Extras {
    /// Namespaces to create first.
    pub namespaces: Vec<NamespaceEntry>,
    /// Pods to add.
    pub pods: Vec<PodEntry>,
    /// Resource documents to apply last (YAML, each a file's text).
    pub resources: Vec<(String, String)>,
    /// Run the web/db policy demo.
    pub demo: bool,
}

fn default_name() -> String {
    "lab".into()
}
fn default_nodes() -> usize {
    3
}
fn default_pods_per_node() -> usize {
    2
}
fn default_encap() -> String {
    "ipip".into()
}
fn default_topology() -> String {
    "flat".into()
}
fn default_true() -> bool {
    true
}

/// Reads `path` into the lab's spec and what to add to it.
pub fn load(path: &Path) -> Result<(LabSpec, Extras)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: LabFile = serde_yaml::from_str(&text).with_context(|| {
        format!(
            "{} is not a lab spec (see `cargo xtask lab up --help`)",
            path.display()
        )
    })?;
    let encap = match file.encap.as_str() {
        "none" => Encap::None,
        "ipip" => Encap::Ipip,
        "vxlan" => Encap::Vxlan,
        other => bail!(
            "{}: encap {other:?}: use none, ipip or vxlan",
            path.display()
        ),
    };
    let topology = match file.topology.as_str() {
        "flat" => Topology::Flat,
        "routed" => Topology::Routed,
        other => bail!("{}: topology {other:?}: use flat or routed", path.display()),
    };
    let spec = LabSpec::new(file.name, file.nodes, file.pods_per_node)
        .with_encap(encap)
        .with_cross_subnet(file.cross_subnet)
        .with_topology(topology)
        .with_pod_mtu(file.pod_mtu)
        .with_datastore(DatastoreMode::Etcd)
        .with_bgp(file.bgp);
    spec.validate()
        .with_context(|| format!("in {}", path.display()))?;
    let mut resources = Vec::new();
    if let Some(inline) = file.resources {
        resources.push(("spec-resources.yaml".to_string(), inline));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    for (index, relative) in file.resource_files.iter().enumerate() {
        let resolved = base.join(relative);
        let text = std::fs::read_to_string(&resolved).with_context(|| {
            format!(
                "{}: resourceFiles[{index}]: reading {}",
                path.display(),
                resolved.display()
            )
        })?;
        resources.push((format!("spec-resource-file-{index}.yaml"), text));
    }
    for (index, pod) in file.pods.iter().enumerate() {
        if !(0..file.nodes).any(|i| pod.node == format!("node-{i}")) {
            bail!(
                "{}: pods[{index}] ({}): node {:?} is not in the lab (node-0 … node-{})",
                path.display(),
                pod.name,
                pod.node,
                file.nodes.saturating_sub(1)
            );
        }
    }
    Ok((
        spec,
        Extras {
            namespaces: file.namespaces,
            pods: file.pods,
            resources,
            demo: file.demo,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_full_spec_reads_into_the_lab_and_its_extras() {
        let (dir, path) = write(
            "name: shop\nnodes: 2\nencap: vxlan\nnamespaces: [{name: shop, labels: {team: a}}]\n\
             pods:\n- {name: shop/web, node: node-1, labels: {app: web}, ports: ['http:TCP:80'], serve: true}\n\
             resources: |\n  kind: x\nresourceFiles: [more.yaml]\n",
        );
        std::fs::write(dir.path().join("more.yaml"), "kind: y\n").unwrap();
        let (spec, extras) = load(&path).unwrap();
        assert_eq!(
            (spec.name.as_str(), spec.nodes, spec.encap),
            ("shop", 2, Encap::Vxlan)
        );
        assert!(spec.bgp);
        assert_eq!(extras.namespaces[0].labels["team"], "a");
        assert!(extras.pods[0].serve);
        assert_eq!(extras.resources.len(), 2);
        assert_eq!(extras.resources[1].1, "kind: y\n");
        assert!(!extras.demo);
    }

    #[test]
    fn mistakes_name_the_field_and_the_fix() {
        let (_dir, path) = write("encap: gre\n");
        let error = format!("{:#}", load(&path).unwrap_err());
        assert!(error.contains("use none, ipip or vxlan"), "{error}");
        let (_dir, path) = write("nodes: 2\npods: [{name: a, node: node-5}]\n");
        let error = format!("{:#}", load(&path).unwrap_err());
        assert!(
            error.contains("pods[0] (a): node \"node-5\" is not in the lab"),
            "{error}"
        );
        let (_dir, path) = write("nodez: 2\n");
        assert!(format!("{:#}", load(&path).unwrap_err()).contains("nodez"));
    }
}
