//! Attaching the TC programs to interfaces so that they outlive the agent.
//!
//! Programs are attached as clsact `bpf` filters in direct-action mode at a fixed priority and
//! handle. Filters belong to the interface, not to the process, so forwarding continues while
//! the agent is down; a restarted agent *changes* the existing filter in place, which swaps the
//! program atomically (no moment without one). The same code path serves every kernel from
//! 5.10 on. (TCX links would need pinning to survive the process; pinning them fails with
//! EPERM on this project's reference kernel, see docs/dataplane.md.)

use anyhow::{Context, Result};
use aya::{
    programs::{
        links::Link as _,
        tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
        SchedClassifier, TcAttachType,
    },
    Ebpf,
};
use bpf_maps::program_names;

use crate::calc::HostInterface;

/// Priority of tortie's filters: ahead of anything else on the interface.
pub const FILTER_PRIORITY: u16 = 1;
/// Handle of tortie's filters (`tc filter show dev caliX ingress` shows `handle 0x7417`).
pub const FILTER_HANDLE: u32 = 0x7417;

/// What an interface is to the dataplane, which decides the programs it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfaceRole {
    /// Host side of a pod's veth (`cali*`).
    Workload,
    /// The node's uplink to the fabric.
    Uplink,
}

impl IfaceRole {
    /// The role of interface `name`: the uplink, a workload interface (by prefix), or none.
    pub fn of(name: &str, uplink: Option<&str>, workload_prefix: &str) -> Option<Self> {
        if uplink == Some(name) {
            Some(IfaceRole::Uplink)
        } else if name.starts_with(workload_prefix) {
            Some(IfaceRole::Workload)
        } else {
            None
        }
    }

    /// The program for each direction.
    pub fn programs(self) -> [(&'static str, TcAttachType); 2] {
        match self {
            IfaceRole::Workload => [
                (program_names::FROM_WORKLOAD, TcAttachType::Ingress),
                (program_names::TO_WORKLOAD, TcAttachType::Egress),
            ],
            IfaceRole::Uplink => [
                (program_names::FROM_HOST_IFACE, TcAttachType::Ingress),
                (program_names::TO_HOST_IFACE, TcAttachType::Egress),
            ],
        }
    }
}

fn direction_name(attach_type: TcAttachType) -> &'static str {
    match attach_type {
        TcAttachType::Egress => "egress",
        _ => "ingress",
    }
}

fn existing_filter(
    iface: &HostInterface,
    attach_type: TcAttachType,
) -> Result<SchedClassifierLink> {
    Ok(SchedClassifierLink::attached(
        &iface.name,
        attach_type,
        FILTER_PRIORITY,
        TcHandle::from(FILTER_HANDLE),
        None,
    )?)
}

/// Attaches the programs of `role` on `iface`, replacing tortie's filters in place when they
/// exist (agent restart, upgrade).
pub fn attach(ebpf: &mut Ebpf, iface: &HostInterface, role: IfaceRole) -> Result<()> {
    // EEXIST when the qdisc is already there is the normal case.
    let _ = aya::programs::tc::qdisc_add_clsact(&iface.name);
    for (program_name, attach_type) in role.programs() {
        let program: &mut SchedClassifier = ebpf
            .program_mut(program_name)
            .with_context(|| format!("program {program_name} not loaded"))?
            .try_into()?;
        let replaced = existing_filter(iface, attach_type)
            .ok()
            .and_then(|filter| program.attach_to_link(filter).ok());
        let id = match replaced {
            Some(id) => id,
            None => program
                .attach_with_options(
                    &iface.name,
                    attach_type,
                    TcAttachOptions::Netlink(NlOptions {
                        priority: FILTER_PRIORITY,
                        handle: TcHandle::from(FILTER_HANDLE),
                        ..NlOptions::default()
                    }),
                )
                .with_context(|| {
                    format!(
                        "attaching {program_name} to {} {}",
                        iface.name,
                        direction_name(attach_type)
                    )
                })?,
        };
        // The filter must outlive this process: dropping the link would delete it.
        std::mem::forget(program.take_link(id)?);
    }
    Ok(())
}

/// Deletes tortie's filters from `iface` (used by `cleanup`). Missing filters are fine.
pub fn detach(iface: &HostInterface, role: IfaceRole) {
    for (_, attach_type) in role.programs() {
        if let Ok(filter) = existing_filter(iface, attach_type) {
            if filter.detach().is_ok() {
                tracing::debug!(iface = %iface.name, direction = direction_name(attach_type), "filter removed");
            }
        }
    }
}
