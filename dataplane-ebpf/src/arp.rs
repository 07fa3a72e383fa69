//! Answering a pod's ARP requests on the host side.
//!
//! Every pod routes through `169.254.1.1`, an address no interface holds. Calico answers with
//! proxy ARP in the kernel; tortie answers here, turning the request into a reply in place and
//! sending it back out of the same interface, so the node needs no proxy-ARP sysctls or routes.

use bpf_maps::{Counter, IfaceValue};

use crate::{
    headers::{eth_and, ArpHdr, ARPHRD_ETHER, ARPOP_REPLY, ARPOP_REQUEST, ETH_P_IP},
    verdict::Verdict,
};
use aya_ebpf::programs::TcContext;

/// Handles an ARP frame sent by the pod behind `ifindex`.
#[inline(always)]
pub fn from_workload(ctx: &TcContext, ifindex: u32, iface: &IfaceValue) -> Verdict {
    let Some((eth, arp)) = eth_and::<ArpHdr>(ctx) else {
        return Verdict::Drop(Counter::DropMalformed);
    };
    // SAFETY: both pointers come from one bounds check with no pull after it.
    let (eth, arp) = unsafe { (&mut *eth, &mut *arp) };
    if u16::from_be(arp.htype) != ARPHRD_ETHER
        || u16::from_be(arp.ptype) != ETH_P_IP
        || arp.hlen != 6
        || arp.plen != 4
    {
        return Verdict::Drop(Counter::DropMalformed);
    }
    // Replies (to the host's own resolution of the pod) and the pod probing its own address go
    // to the kernel as usual.
    if u16::from_be(arp.oper) != ARPOP_REQUEST || arp.tpa == iface.ipv4 {
        return Verdict::Pass(Counter::PassedToHost);
    }

    let requested = arp.tpa;
    arp.oper = ARPOP_REPLY.to_be();
    arp.tha = arp.sha;
    arp.tpa = arp.spa;
    arp.sha = iface.host_mac;
    arp.spa = requested;
    eth.dst = eth.src;
    eth.src = iface.host_mac;
    Verdict::RedirectEgress {
        ifindex,
        counter: Counter::ArpReplied,
    }
}
