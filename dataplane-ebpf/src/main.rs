//! tortie's TC programs.
//!
//! | program            | attach point                 | job                                       |
//! |--------------------|------------------------------|-------------------------------------------|
//! | `tortie_from_wep`  | ingress of host-side `cali*` | ARP answer, anti-spoof, policy + conntrack, route, encap, NAT |
//! | `tortie_to_wep`    | egress of host-side `cali*`  | host → pod traffic: the pod's ingress policy |
//! | `tortie_from_hep`  | ingress of the uplink        | decap, natOutgoing replies, ingress policy, delivery |
//! | `tortie_to_hep`    | egress of the uplink         | the host's own traffic into tunnels       |
#![no_std]
#![no_main]

mod arp;
mod conntrack;
mod events;
mod flow;
mod forward;
mod headers;
mod host_iface;
mod maps;
mod nat;
mod policy;
mod tunnel;
mod verdict;
mod workload;

use aya_ebpf::{macros::classifier, programs::TcContext};
use bpf_maps::events::{hook, NO_STATS_SLOT, UPLINK_STATS_SLOT};
use verdict::{finish, IfaceCount};

/// Ingress of a host-side workload interface: everything a pod sends starts here.
#[classifier]
pub fn tortie_from_wep(ctx: TcContext) -> i32 {
    let ifindex = ifindex_of(&ctx);
    let iface = maps::iface_lookup(ifindex);
    finish(
        &ctx,
        hook::FROM_WORKLOAD,
        workload_count(iface.as_ref(), false),
        events::trace_start(&ctx, hook::FROM_WORKLOAD),
        workload::from_workload(&ctx, ifindex, iface.as_ref()),
    )
}

/// Egress of a host-side workload interface: traffic the host stack sends into a pod.
#[classifier]
pub fn tortie_to_wep(ctx: TcContext) -> i32 {
    let iface = maps::iface_lookup(ifindex_of(&ctx));
    finish(
        &ctx,
        hook::TO_WORKLOAD,
        workload_count(iface.as_ref(), true),
        events::trace_start(&ctx, hook::TO_WORKLOAD),
        workload::to_workload(&ctx),
    )
}

#[inline(always)]
fn ifindex_of(ctx: &TcContext) -> u32 {
    // SAFETY: the context pointer is valid for the whole program run.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Where a workload interface's packets are counted: its slot, once the agent has
/// programmed it.
#[inline(always)]
fn workload_count(iface: Option<&bpf_maps::IfaceValue>, egress: bool) -> IfaceCount {
    IfaceCount {
        slot: iface.map_or(NO_STATS_SLOT, |iface| iface.stats_slot),
        egress,
    }
}

/// Ingress of the host uplink: tunnels from other nodes, plain traffic for local pods,
/// natOutgoing replies.
#[classifier]
pub fn tortie_from_hep(ctx: TcContext) -> i32 {
    finish(
        &ctx,
        hook::FROM_HOST_IFACE,
        IfaceCount {
            slot: UPLINK_STATS_SLOT,
            egress: false,
        },
        events::trace_start(&ctx, hook::FROM_HOST_IFACE),
        host_iface::from_host_iface(&ctx),
    )
}

/// Egress of the host uplink: the host's own packets to pods behind a tunnel.
#[classifier]
pub fn tortie_to_hep(ctx: TcContext) -> i32 {
    finish(
        &ctx,
        hook::TO_HOST_IFACE,
        IfaceCount {
            slot: UPLINK_STATS_SLOT,
            egress: true,
        },
        events::trace_start(&ctx, hook::TO_HOST_IFACE),
        host_iface::to_host_iface(&ctx),
    )
}

/// Does nothing: the floor that benchmarks measure the other programs against. Never attached.
#[classifier]
pub fn tortie_floor(_ctx: TcContext) -> i32 {
    aya_ebpf::bindings::TC_ACT_OK
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never executed.
    loop {}
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
