//! The built programs a lab runs: the agent binary and the eBPF object it loads.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variable naming the agent binary.
pub const AGENT_BIN_ENV: &str = "TORTIE_AGENT_BIN";
/// Environment variable naming the eBPF object.
pub const BPF_OBJECT_ENV: &str = "TORTIE_BPF_OBJECT";

/// A required build output is missing.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The file does not exist (or is not a file).
    #[error("{what} not found at {}: {hint}", path.display())]
    Missing {
        /// Which artifact.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// How to produce it.
        hint: &'static str,
    },
}

/// Paths of the agent binary and the eBPF object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifacts {
    /// `tortie-agent`.
    pub agent_bin: PathBuf,
    /// The `dataplane-ebpf` object passed as `--bpf-object`.
    pub bpf_object: PathBuf,
}

impl Artifacts {
    /// Artifacts at the given paths (made absolute against the current directory).
    pub fn new(agent_bin: impl Into<PathBuf>, bpf_object: impl Into<PathBuf>) -> Self {
        Self {
            agent_bin: absolute(agent_bin.into()),
            bpf_object: absolute(bpf_object.into()),
        }
    }

    /// `$TORTIE_AGENT_BIN` and `$TORTIE_BPF_OBJECT` when set, else the workspace's build
    /// outputs `target/debug/tortie-agent` and
    /// `target/bpfel-unknown-none/release/dataplane-ebpf` (`$CARGO_TARGET_DIR` is honoured).
    /// Fails naming the missing file and the command that builds it.
    pub fn from_env_or_target() -> Result<Self, ArtifactError> {
        let target = target_dir();
        let agent_bin = std::env::var_os(AGENT_BIN_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("debug").join("tortie-agent"));
        let bpf_object = std::env::var_os(BPF_OBJECT_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                target
                    .join("bpfel-unknown-none")
                    .join("release")
                    .join("dataplane-ebpf")
            });
        let artifacts = Self::new(agent_bin, bpf_object);
        artifacts.check()?;
        Ok(artifacts)
    }

    /// `tortiectl`, built beside the agent.
    pub fn tortiectl_bin(&self) -> PathBuf {
        self.agent_bin.with_file_name("tortiectl")
    }

    /// The lab's probe tool `tortie-probe`, built beside the agent.
    pub fn probe_bin(&self) -> PathBuf {
        self.agent_bin.with_file_name("tortie-probe")
    }

    /// The CNI plugin `tortie-cni`, built beside the agent.
    pub fn cni_bin(&self) -> PathBuf {
        self.agent_bin.with_file_name("tortie-cni")
    }

    /// The directory of the binaries, put on `PATH` by `lab exec`.
    pub fn bin_dir(&self) -> PathBuf {
        self.agent_bin
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Fails if the control plane's binaries (`tortiectl`, `tortie-cni`) are missing.
    pub fn check_control_plane(&self) -> Result<(), ArtifactError> {
        for (what, path) in [
            ("tortiectl", self.tortiectl_bin()),
            ("tortie-cni", self.cni_bin()),
        ] {
            if !path.is_file() {
                return Err(ArtifactError::Missing {
                    what,
                    path,
                    hint:
                        "run `cargo build` (tortiectl and tortie-cni are built beside tortie-agent)",
                });
            }
        }
        Ok(())
    }

    /// Fails if either file is missing.
    pub fn check(&self) -> Result<(), ArtifactError> {
        if !self.agent_bin.is_file() {
            return Err(ArtifactError::Missing {
                what: "tortie-agent",
                path: self.agent_bin.clone(),
                hint: "run `cargo build -p tortie` (or set TORTIE_AGENT_BIN)",
            });
        }
        if !self.bpf_object.is_file() {
            return Err(ArtifactError::Missing {
                what: "the eBPF object",
                path: self.bpf_object.clone(),
                hint: "run `cargo xtask build-ebpf` (or set TORTIE_BPF_OBJECT)",
            });
        }
        Ok(())
    }
}

/// The workspace root (parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}
