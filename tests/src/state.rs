//! A lab's persisted state (`/run/tortie/labs/<lab>/state.json`), shared by separate
//! `up`, `status`, `exec` and `down` invocations.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::artifacts::Artifacts;
use crate::control_plane::EtcdState;
use crate::spec::{
    self, DatastoreMode, Encap, ExternalHost, Node, Pod, Router, Topology, STATE_ROOT,
};

/// Bumped when the layout of `state.json` changes incompatibly.
pub const STATE_VERSION: u32 = 2;

/// Reading or writing lab state failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// File system error on a state file.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// `state.json` is not what this version writes.
    #[error("lab state {} is unreadable: {source} (remove the lab with `cargo xtask lab down --name <lab>`)", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A value could not be turned into JSON.
    #[error("encoding {} as JSON failed: {source}", path.display())]
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// `state.json` was written by an incompatible version.
    #[error("lab state {} has version {found}, this build reads version {STATE_VERSION} (tear the lab down and bring it up again)", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
}

/// Everything needed to inspect, enter and tear down a running lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The lab name.
    pub name: String,
    /// Agent binary and eBPF object the agents run with.
    pub artifacts: Artifacts,
    /// The pool's encapsulation.
    pub encap: Encap,
    /// Pool mode `CrossSubnet` rather than `Always`.
    pub cross_subnet: bool,
    /// The fabric layout.
    pub topology: Topology,
    /// The router between the segments and the external link.
    pub router: Router,
    /// The external host.
    pub external: ExternalHost,
    /// The nodes, in index order.
    pub nodes: Vec<Node>,
    /// The pods, node-major.
    pub pods: Vec<Pod>,
    /// Where the agents take their inputs from.
    #[serde(default)]
    pub datastore: DatastoreMode,
    /// The lab's etcd, once started.
    #[serde(default)]
    pub etcd: Option<EtcdState>,
    /// etcd's database is in memory ([`spec::etcd_memory_dir`]).
    #[serde(default)]
    pub etcd_in_memory: bool,
}

impl LabState {
    /// The state of a lab about to be built from `spec` (no agent started yet).
    pub fn planned(spec: &spec::LabSpec, artifacts: &Artifacts) -> Self {
        let (nodes, pods) = spec.plan();
        Self {
            version: STATE_VERSION,
            name: spec.name.clone(),
            artifacts: artifacts.clone(),
            encap: spec.encap,
            cross_subnet: spec.cross_subnet,
            topology: spec.topology,
            router: spec.router(),
            external: spec.external(),
            nodes,
            pods,
            datastore: spec.datastore,
            etcd: None,
            etcd_in_memory: spec.etcd_in_memory,
        }
    }

    /// The spec the lab was built from.
    pub fn spec(&self) -> spec::LabSpec {
        let pods_per_node = match self.nodes.first() {
            Some(first) => self.pods.iter().filter(|p| p.node == first.name).count(),
            None => 0,
        };
        spec::LabSpec::new(self.name.clone(), self.nodes.len(), pods_per_node)
            .with_encap(self.encap)
            .with_cross_subnet(self.cross_subnet)
            .with_topology(self.topology)
            .with_pod_mtu(self.pods.first().map(|pod| pod.mtu))
            .with_datastore(self.datastore)
            .with_etcd_in_memory(self.etcd_in_memory)
            .with_bgp(self.nodes.iter().any(|node| node.bird.is_some()))
    }

    /// The state of lab `name`, or `None` if it has no state file.
    pub fn load(name: &str) -> Result<Option<Self>, StateError> {
        let path = state_file(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    what: "reading",
                    path,
                    source,
                })
            }
        };
        let state: Self = serde_json::from_str(&text).map_err(|source| StateError::Parse {
            path: path.clone(),
            source,
        })?;
        if state.version != STATE_VERSION {
            return Err(StateError::Version {
                path,
                found: state.version,
            });
        }
        Ok(Some(state))
    }

    /// Writes `state.json` atomically, creating the state directory if needed.
    pub fn save(&self) -> Result<(), StateError> {
        let dir = spec::state_dir(&self.name);
        std::fs::create_dir_all(&dir).map_err(|source| StateError::Io {
            what: "creating state directory",
            path: dir.clone(),
            source,
        })?;
        write_json_atomic(&state_file(&self.name), self)
    }
}

/// `/run/tortie/labs/<lab>/state.json`.
pub fn state_file(name: &str) -> PathBuf {
    spec::state_dir(name).join("state.json")
}

/// Names of all labs that have a state directory.
pub fn list_labs() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(STATE_ROOT) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect()
}

/// Writes `value` as pretty JSON to `path` via a temporary file and a rename, so readers
/// (the agent watching its endpoints file, a concurrent `status`) never see half a file.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let io_err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Io { what, path, source }
    };
    let mut json = serde_json::to_vec_pretty(value).map_err(|source| StateError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    json.push(b'\n');
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let mut file = std::fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
    file.write_all(&json).map_err(io_err("writing", &tmp))?;
    file.sync_all().map_err(io_err("syncing", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_err("renaming into place", path))
}

/// Removes a lab's state directory. Absent is fine.
pub fn remove_state_dir(name: &str) -> Result<(), StateError> {
    let dir = spec::state_dir(name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Io {
            what: "removing state directory",
            path: dir,
            source,
        }),
    }
}

/// Removes everything in a lab's state directory except `*.agent.log`. Absent is fine.
pub fn remove_state_except_logs(name: &str) -> Result<(), StateError> {
    let dir = spec::state_dir(name);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StateError::Io {
                what: "reading state directory",
                path: dir,
                source,
            })
        }
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.to_string_lossy().ends_with(".agent.log") {
            continue;
        }
        std::fs::remove_file(&path).map_err(|source| StateError::Io {
            what: "removing",
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}
