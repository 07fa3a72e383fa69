//! Loading the eBPF object with its maps pinned (and reused) under the pin root.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use aya::{
    programs::{ProgramError, SchedClassifier},
    util::KernelVersion,
    Ebpf, EbpfError, EbpfLoader,
};
use bpf_maps::{map_names, program_names};

/// Oldest kernel the programs are written for (`bpf_redirect_peer`, TC BTF maps).
pub const MIN_KERNEL: (u8, u8, u16) = (5, 10, 0);

/// Map capacities chosen at load time (they apply when a map is first created).
#[derive(Clone, Copy, Debug)]
pub struct Capacities {
    /// Entries of the route map.
    pub routes: u32,
    /// Entries of the interface map.
    pub ifaces: u32,
    /// Entries of the exact policy map.
    pub policy_exact: u32,
    /// Entries of the IP cache's address map.
    pub ipcache_addrs: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Self {
            routes: bpf_maps::capacity::ROUTES,
            ifaces: bpf_maps::capacity::IFACES,
            policy_exact: bpf_maps::capacity::POLICY_EXACT,
            ipcache_addrs: bpf_maps::capacity::IPCACHE_ADDRS,
        }
    }
}

/// Directory holding the maps of the current layout version (shared with `tortiectl`).
pub use bpf_maps::pins::maps_dir;

/// Checks the things whose absence would otherwise surface as cryptic syscall errors.
pub fn check_prerequisites() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "tortie-agent must run as root (it needs CAP_BPF, CAP_NET_ADMIN and \
             CAP_SYS_ADMIN to load programs, attach them and mount bpffs)"
        );
    }
    let (major, minor, patch) = MIN_KERNEL;
    match KernelVersion::current() {
        Ok(version) if version < KernelVersion::new(major, minor, patch) => bail!(
            "kernel {version} is too old: tortie needs Linux {major}.{minor} or newer \
             (bpf_redirect_peer, BTF maps)"
        ),
        Ok(_) => Ok(()),
        Err(error) => {
            tracing::warn!(%error, "could not read the kernel version; trying anyway");
            Ok(())
        }
    }
}

/// Loads the object at `object`, reusing maps pinned under `pin_root` (or creating and pinning
/// them), and loads every program into the kernel.
pub fn load_dataplane(object: &Path, pin_root: &Path, capacities: Capacities) -> Result<Ebpf> {
    let maps = maps_dir(pin_root);
    std::fs::create_dir_all(&maps)
        .with_context(|| format!("creating map pin directory {}", maps.display()))?;
    let pin_paths: Vec<(&str, PathBuf)> = map_names::ALL
        .iter()
        .map(|name| (*name, maps.join(name)))
        .collect();

    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(map_names::ROUTES, capacities.routes)
        .map_max_entries(map_names::IFACES, capacities.ifaces)
        // Two statistics entries (ingress, egress) per interface slot.
        .map_max_entries(map_names::IFACE_STATS, capacities.ifaces.saturating_mul(2))
        .map_max_entries(map_names::POLICY_EXACT, capacities.policy_exact)
        .map_max_entries(map_names::IPCACHE_ADDRS, capacities.ipcache_addrs);
    for (name, path) in &pin_paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader.load_file(object).map_err(|error| match error {
        EbpfError::FileError { path, error } => anyhow::anyhow!(
            "cannot read the eBPF object {}: {error}; build it with `cargo xtask build-ebpf` \
             and pass its path with --bpf-object",
            path.display()
        ),
        other => anyhow::Error::new(other).context(format!(
            "loading eBPF object {} with maps under {}",
            object.display(),
            maps.display()
        )),
    })?;

    for name in [
        program_names::FROM_WORKLOAD,
        program_names::TO_WORKLOAD,
        program_names::FROM_HOST_IFACE,
        program_names::TO_HOST_IFACE,
    ] {
        let program: &mut SchedClassifier = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} is missing from {}", object.display()))?
            .try_into()
            .with_context(|| format!("program {name} is not a TC classifier"))?;
        program
            .load()
            .map_err(|error| explain_load_error(name, error))?;
    }
    Ok(ebpf)
}

/// Turns a verifier rejection caused by a missing helper into a message about the kernel.
fn explain_load_error(program: &str, error: ProgramError) -> anyhow::Error {
    if let ProgramError::LoadError { verifier_log, .. } = &error {
        let log = verifier_log.to_string();
        if let Some(line) = log.lines().find(|line| line.contains("unknown func")) {
            return anyhow::anyhow!(
                "the kernel rejected program {program}: it lacks a BPF helper ({line}); \
                 tortie needs Linux 5.10 or newer"
            );
        }
        return anyhow::anyhow!("the verifier rejected program {program}:\n{log}");
    }
    anyhow::Error::new(error).context(format!("loading program {program}"))
}
