//! tortie's TC programs.
//!
//! | program            | attach point                 | job                                       |
//! |--------------------|------------------------------|-------------------------------------------|
//! | `tortie_from_wep`  | ingress of host-side `cali*` | ARP answer, anti-spoof, route, redirect   |
//! | `tortie_to_wep`    | egress of host-side `cali*`  | traffic entering a pod from the host      |
//! | `tortie_from_hep`  | ingress of the uplink        | traffic arriving from the fabric          |
//! | `tortie_to_hep`    | egress of the uplink         | traffic leaving the node                  |
#![no_std]
#![no_main]

mod arp;
mod headers;
mod maps;
mod verdict;
mod workload;

use aya_ebpf::{macros::classifier, programs::TcContext};
use bpf_maps::Counter;
use verdict::{finish, Verdict};

/// Ingress of a host-side workload interface: everything a pod sends starts here.
#[classifier]
pub fn tortie_from_wep(ctx: TcContext) -> i32 {
    // SAFETY: the context pointer is valid for the whole program run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    finish(workload::from_workload(&ctx, ifindex))
}

/// Egress of a host-side workload interface: traffic the host stack sends into a pod.
#[classifier]
pub fn tortie_to_wep(_ctx: TcContext) -> i32 {
    finish(Verdict::Pass(Counter::ToWorkload))
}

/// Ingress of the host uplink.
#[classifier]
pub fn tortie_from_hep(_ctx: TcContext) -> i32 {
    finish(Verdict::Pass(Counter::UplinkPassed))
}

/// Egress of the host uplink.
#[classifier]
pub fn tortie_to_hep(_ctx: TcContext) -> i32 {
    finish(Verdict::Pass(Counter::UplinkPassed))
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
