//! The one place that turns a decision into a TC return code and counts it.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::generated::{bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use bpf_maps::Counter;

use crate::{
    events::{finish_trace, report_drop},
    maps::{count, TORTIE_IFSTATS},
};
use bpf_maps::events::{iface_stats_index, FlowEvent, NO_STATS_SLOT};

/// What a program decided for a packet.
pub enum Verdict {
    /// Let the kernel stack handle it.
    Pass(Counter),
    /// Drop it, counting the reason.
    Drop(Counter),
    /// Deliver into the peer (pod side) of a host-side veth, skipping the host stack.
    RedirectPeer { ifindex: u32, counter: Counter },
    /// Send out of an interface (egress).
    RedirectEgress { ifindex: u32, counter: Counter },
    /// Send out of an interface after the kernel's FIB and neighbour lookup of the packet's
    /// destination have filled in the Ethernet header.
    RedirectNeigh { ifindex: u32, counter: Counter },
}

impl Verdict {
    /// The counter the verdict is counted under when it succeeds.
    #[inline(always)]
    fn counter(&self) -> Counter {
        match self {
            Verdict::Pass(counter) | Verdict::Drop(counter) => *counter,
            Verdict::RedirectPeer { counter, .. }
            | Verdict::RedirectEgress { counter, .. }
            | Verdict::RedirectNeigh { counter, .. } => *counter,
        }
    }
}

/// Where a program counts a packet per interface: the interface's statistics slot, and
/// whether the program runs on its egress hook.
pub struct IfaceCount {
    pub slot: u32,
    pub egress: bool,
}

/// Applies `verdict` of the program at `hook`: counts it (also on the interface, when it has
/// a statistics slot), reports a drop (and, for a traced packet, its outcome), and returns
/// the TC action code.
#[inline(always)]
pub fn finish(
    ctx: &TcContext,
    hook: u8,
    iface: IfaceCount,
    trace: Option<FlowEvent>,
    verdict: Verdict,
) -> i32 {
    let outcome = verdict.counter();
    let action = apply(verdict);
    count_on_iface(ctx, iface, action.is_err());
    match action {
        Err(reason) => {
            report_drop(ctx, hook, reason);
            TC_ACT_SHOT
        }
        Ok(action) => {
            if let Some(event) = trace {
                finish_trace(event, outcome);
            }
            action
        }
    }
}

/// The TC action for `verdict` after counting it, or the drop reason.
#[inline(always)]
fn apply(verdict: Verdict) -> Result<i32, Counter> {
    match verdict {
        Verdict::Pass(counter) => {
            count(counter);
            Ok(TC_ACT_OK)
        }
        Verdict::Drop(counter) => {
            count(counter);
            Err(counter)
        }
        Verdict::RedirectPeer { ifindex, counter } => {
            // SAFETY: plain helper call; the kernel validates the ifindex.
            redirected(unsafe { bpf_redirect_peer(ifindex, 0) }, counter)
        }
        Verdict::RedirectEgress { ifindex, counter } => {
            // SAFETY: plain helper call; the kernel validates the ifindex.
            redirected(unsafe { bpf_redirect(ifindex, 0) }, counter)
        }
        Verdict::RedirectNeigh { ifindex, counter } => {
            // SAFETY: no next-hop parameters: the kernel looks up the destination itself.
            redirected(
                unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) },
                counter,
            )
        }
    }
}

/// Adds the packet to its interface's statistics on this CPU: an array slot, no lookup.
#[inline(always)]
fn count_on_iface(ctx: &TcContext, iface: IfaceCount, dropped: bool) {
    if iface.slot == NO_STATS_SLOT {
        return;
    }
    let index = iface_stats_index(iface.slot, iface.egress);
    if let Some(stats) = TORTIE_IFSTATS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot; TC programs do not preempt each other on one CPU.
        unsafe {
            (*stats).packets += 1;
            (*stats).bytes += u64::from(ctx.len());
            (*stats).drops += u64::from(dropped);
        }
    }
}

#[inline(always)]
fn redirected(action: i64, counter: Counter) -> Result<i32, Counter> {
    if action == TC_ACT_SHOT as i64 {
        count(Counter::DropRedirectFailed);
        Err(Counter::DropRedirectFailed)
    } else {
        count(counter);
        Ok(action as i32)
    }
}
