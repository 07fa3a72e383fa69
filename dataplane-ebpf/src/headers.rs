//! Wire headers and bounds-checked access to them.
//!
//! Every accessor returns `None` instead of touching bytes past `data_end`, so a truncated packet
//! can only ever be counted as malformed, never read out of bounds.

use aya_ebpf::programs::TcContext;

/// Ethernet II header.
#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// Network byte order.
    pub ether_type: u16,
}

/// IPv4 header without options.
#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub check: u16,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

/// ARP for IPv4 over Ethernet.
#[repr(C)]
pub struct ArpHdr {
    pub htype: u16,
    pub ptype: u16,
    pub hlen: u8,
    pub plen: u8,
    pub oper: u16,
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    pub tpa: [u8; 4],
}

pub const ETH_HLEN: usize = core::mem::size_of::<EthHdr>();
pub const IPV4_HLEN: usize = core::mem::size_of::<Ipv4Hdr>();
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ARPOP_REQUEST: u16 = 1;
pub const ARPOP_REPLY: u16 = 2;
pub const ARPHRD_ETHER: u16 = 1;

const _: () = assert!(ETH_HLEN == 14);
const _: () = assert!(IPV4_HLEN == 20);
const _: () = assert!(core::mem::size_of::<ArpHdr>() == 28);

/// Start of the linear packet data once at least `needed` bytes are in it, or `None` if the
/// packet is shorter. Bytes that exist but sit in paged fragments are pulled in first.
///
/// Pulling invalidates every packet pointer taken before, so a step takes all the headers it
/// needs from one call.
#[inline(always)]
pub fn linear(ctx: &TcContext, needed: usize) -> Option<usize> {
    if ctx.data() + needed > ctx.data_end()
        && ((ctx.len() as usize) < needed || ctx.pull_data(needed as u32).is_err())
    {
        return None;
    }
    let start = ctx.data();
    if start + needed > ctx.data_end() {
        return None;
    }
    Some(start)
}

/// The Ethernet header and the header `T` right after it, from one bounds check.
#[inline(always)]
pub fn eth_and<T>(ctx: &TcContext) -> Option<(*mut EthHdr, *mut T)> {
    let start = linear(ctx, ETH_HLEN + core::mem::size_of::<T>())?;
    Some((start as *mut EthHdr, (start + ETH_HLEN) as *mut T))
}

/// RFC 1624 incremental update of an Internet checksum when one 16-bit word changes.
#[inline(always)]
pub fn csum_replace16(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!check as u32) + (!old as u32) + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
