//! Removing a lab, from any state: fully up, half built by a crashed `up`, or already gone.
//!
//! The state file is used when present, but not relied on: agents are also found through
//! `/proc` by their pin root, and namespaces by their `tortie-<lab>-` prefix.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::agent::{self, AgentProcess, STOP_GRACE};
use crate::bpffs;
use crate::netns;
use crate::report::Progress;
use crate::spec::{self, netns_prefix};
use crate::state::{self, LabState};

/// What a teardown does besides removing everything.
#[derive(Clone, Copy, Debug)]
pub struct TeardownOptions {
    /// Run `tortie-agent cleanup` in each node namespace before deleting it.
    pub agent_cleanup: bool,
    /// Keep the agents' logs in the state directory (after a failed `up`, whose error points
    /// at them); everything else there is removed.
    pub keep_logs: bool,
}

/// Removes lab `name`: stops its agents (SIGTERM, SIGKILL after 3 s), runs the agents'
/// cleanup if asked, deletes its namespaces, pins and state directory. Succeeds when there is
/// nothing to remove. Problems that leave something behind are returned together at the end;
/// the rest are reported as warnings.
pub fn teardown(name: &str, options: TeardownOptions, progress: &Progress) -> Result<()> {
    spec::validate_lab_name(name)?;
    let state = match LabState::load(name) {
        Ok(state) => state,
        Err(err) => {
            progress.warn(format_args!(
                "{err}; removing lab {name} by its names instead"
            ));
            None
        }
    };
    let mut failures: Vec<String> = Vec::new();

    let agents = lab_agents(name, state.as_ref());
    if !agents.is_empty() {
        progress.step(format_args!("stopping {} agent(s)", agents.len()));
    }
    for agent in &agents {
        if let Err(err) = agent.stop(STOP_GRACE) {
            failures.push(err.to_string());
        }
    }

    if let (true, Some(state)) = (options.agent_cleanup, state.as_ref()) {
        if state.artifacts.agent_bin.is_file() {
            for node in state.nodes.iter().filter(|n| netns::netns_exists(&n.netns)) {
                progress.step(format_args!("running agent cleanup on {}", node.name));
                if let Err(err) = agent::cleanup(node, &state.artifacts) {
                    progress.warn(err);
                }
            }
        }
    }

    match lab_namespaces(name, state.as_ref()) {
        Ok(namespaces) => {
            kill_leftover_processes(&namespaces, progress);
            if !namespaces.is_empty() {
                progress.step(format_args!("deleting {} namespace(s)", namespaces.len()));
            }
            for ns in namespaces {
                if let Err(err) = netns::delete_netns(&ns) {
                    failures.push(err.to_string());
                }
            }
        }
        Err(err) => failures.push(err.to_string()),
    }

    // etcd died with the fabric's processes above; its work dir (log, pid) lives outside the
    // state directory.
    if let Some(etcd) = state.as_ref().and_then(|s| s.etcd.as_ref()) {
        if etcd.work_dir.exists() {
            if let Err(err) = std::fs::remove_dir_all(&etcd.work_dir) {
                progress.warn(format_args!(
                    "removing etcd's work dir {}: {err}",
                    etcd.work_dir.display()
                ));
            }
        }
    }

    // An in-memory etcd database lives outside the state directory too.
    let memory_dir = spec::etcd_memory_dir(name);
    if memory_dir.exists() {
        if let Err(err) = std::fs::remove_dir_all(&memory_dir) {
            progress.warn(format_args!(
                "removing etcd's in-memory database {}: {err}",
                memory_dir.display()
            ));
        }
    }
    // The shared parent goes with the last lab that used it (fails, harmlessly, while
    // another lab's database is still there).
    if let Some(parent) = memory_dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }

    let pin_dir = spec::lab_pin_dir(name);
    if pin_dir.exists() {
        progress.step(format_args!("removing pins {}", pin_dir.display()));
    }
    if let Err(err) = bpffs::remove_pins(&pin_dir) {
        failures.push(err.to_string());
    }
    let removed = if options.keep_logs {
        state::remove_state_except_logs(name)
    } else {
        state::remove_state_dir(name)
    };
    if let Err(err) = removed {
        failures.push(err.to_string());
    }

    // Only when no other lab is being built or running: an agent starting right now could
    // otherwise find the directory it is creating its pin root in gone.
    if state::list_labs().is_empty() {
        if let Some(root) = pin_dir.parent() {
            bpffs::remove_if_empty(root);
        }
    }

    if !failures.is_empty() {
        bail!(
            "lab {name} was not fully removed:\n  {}",
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// Kills what still runs inside the lab's namespaces (tools started with `lab exec` or by a
/// test that did not stop them): once the namespace names are gone nothing could reach them.
fn kill_leftover_processes(namespaces: &[String], progress: &Progress) {
    let pids: BTreeSet<u32> = namespaces
        .iter()
        .flat_map(|ns| netns::pids_in_netns(ns))
        .collect();
    if pids.is_empty() {
        return;
    }
    progress.step(format_args!(
        "killing {} process(es) left in the lab's namespaces",
        pids.len()
    ));
    for pid in pids {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The lab's agents: those recorded in its state that still run, and any found in `/proc`.
fn lab_agents(name: &str, state: Option<&LabState>) -> Vec<AgentProcess> {
    let mut agents: Vec<AgentProcess> = state
        .into_iter()
        .flat_map(|s| s.nodes.iter())
        .filter_map(AgentProcess::of)
        .filter(AgentProcess::is_running)
        .collect();
    for found in agent::find_agents_below(&spec::lab_pin_dir(name)) {
        if !agents.iter().any(|a| a.pid == found.pid) {
            agents.push(found);
        }
    }
    agents
}

/// Namespaces of the lab that exist: those named in its state, and those with its prefix that
/// do not belong to another lab whose name extends this one (`lab` vs `lab-2`).
fn lab_namespaces(name: &str, state: Option<&LabState>) -> Result<Vec<String>> {
    let existing = netns::list_netns()?;
    let mut owned: BTreeSet<String> = owned_by_prefix(name, &existing, &state::list_labs())
        .into_iter()
        .collect();
    if let Some(state) = state {
        let recorded = [
            spec::fabric_netns(name),
            state.router.netns.clone(),
            state.external.netns.clone(),
        ]
        .into_iter()
        .chain(state.nodes.iter().map(|n| n.netns.clone()))
        .chain(state.pods.iter().map(|p| p.netns.clone()));
        owned.extend(recorded.filter(|ns| existing.contains(ns)));
    }
    Ok(owned.into_iter().collect())
}

/// Names in `existing` that start with `tortie-<name>-`, minus those that start with the
/// prefix of another lab in `labs` whose prefix is longer.
pub fn owned_by_prefix(name: &str, existing: &[String], labs: &[String]) -> Vec<String> {
    let prefix = netns_prefix(name);
    let shadowing: Vec<String> = labs
        .iter()
        .filter(|other| other.as_str() != name)
        .map(|other| netns_prefix(other))
        .filter(|other| other.starts_with(&prefix))
        .collect();
    existing
        .iter()
        .filter(|ns| ns.starts_with(&prefix))
        .filter(|ns| !shadowing.iter().any(|other| ns.starts_with(other)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prefix_match_spares_labs_with_longer_names() {
        let existing = strings(&[
            "tortie-lab-fabric",
            "tortie-lab-node-0",
            "tortie-lab-2-fabric",
            "tortie-labx-fabric",
            "other",
        ]);
        let labs = strings(&["lab", "lab-2"]);
        assert_eq!(
            owned_by_prefix("lab", &existing, &labs),
            strings(&["tortie-lab-fabric", "tortie-lab-node-0"])
        );
        assert_eq!(
            owned_by_prefix("lab-2", &existing, &labs),
            strings(&["tortie-lab-2-fabric"])
        );
    }
}
