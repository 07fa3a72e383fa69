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

/// UDP header.
#[repr(C)]
pub struct UdpHdr {
    pub src_port: u16,
    pub dst_port: u16,
    pub len: u16,
    pub check: u16,
}

/// VXLAN header (RFC 7348): flags with the I bit, then the VNI in the upper 24 bits.
#[repr(C)]
pub struct VxlanHdr {
    pub flags: [u8; 4],
    pub vni: [u8; 4],
}

/// Everything VXLAN puts between the outer Ethernet header and the inner IPv4 header.
#[repr(C)]
pub struct VxlanEncap {
    pub ip: Ipv4Hdr,
    pub udp: UdpHdr,
    pub vxlan: VxlanHdr,
    pub inner_eth: EthHdr,
}

pub const ETH_HLEN: usize = core::mem::size_of::<EthHdr>();
pub const UDP_HLEN: usize = core::mem::size_of::<UdpHdr>();
pub const VXLAN_ENCAP_LEN: usize = core::mem::size_of::<VxlanEncap>();
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;
/// "Don't fragment" in `frag_off` (host byte order).
pub const IP_DF: u16 = 0x4000;
/// "More fragments" in `frag_off` (host byte order).
pub const IP_MF: u16 = 0x2000;
/// The fragment offset bits of `frag_off`.
pub const IP_OFFSET: u16 = 0x1fff;
/// "More fragments" and the fragment offset: any of them makes the packet a fragment.
pub const IP_MF_OFFSET: u16 = IP_MF | IP_OFFSET;
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const IPV4_HLEN: usize = core::mem::size_of::<Ipv4Hdr>();
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ARPOP_REQUEST: u16 = 1;
pub const ARPOP_REPLY: u16 = 2;
pub const ARPHRD_ETHER: u16 = 1;

const _: () = assert!(ETH_HLEN == 14);
const _: () = assert!(IPV4_HLEN == 20);
const _: () = assert!(core::mem::size_of::<ArpHdr>() == 28);
const _: () = assert!(VXLAN_ENCAP_LEN == 50);

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

/// The Internet checksum of a 20-byte IPv4 header (its `check` field must be zero).
#[inline(always)]
pub fn ipv4_header_checksum(ip: &Ipv4Hdr) -> u16 {
    // SAFETY: Ipv4Hdr is 20 bytes of plain integers, readable as ten 16-bit words.
    let words: &[u16; 10] = unsafe { &*(ip as *const Ipv4Hdr as *const [u16; 10]) };
    let mut sum: u32 = 0;
    for word in words {
        sum += u16::from_be(*word) as u32;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The IPv4 fields decisions are made on, copied out of the packet so that later pulls and
/// resizes cannot invalidate them.
#[derive(Clone, Copy)]
pub struct Ipv4Summary {
    pub version_ihl: u8,
    pub protocol: u8,
    /// Host byte order.
    pub tot_len: u16,
    /// Host byte order.
    pub frag_off: u16,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

impl Ipv4Summary {
    /// Header length in bytes.
    #[inline(always)]
    pub fn header_len(&self) -> u32 {
        ((self.version_ihl & 0x0f) as u32) * 4
    }

    /// Version 4, header at least 20 bytes, total length covering the header and within the
    /// `frame_len` bytes that follow the Ethernet header.
    #[inline(always)]
    pub fn is_well_formed(&self, frame_len: u32) -> bool {
        let header_len = self.header_len();
        let total = self.tot_len as u32;
        self.version_ihl >> 4 == 4
            && header_len >= 20
            && total >= header_len
            && total + ETH_HLEN as u32 <= frame_len
    }
}

/// Reads the IPv4 header after the Ethernet header, or `None` if the packet is too short.
#[inline(always)]
pub fn read_ipv4(ctx: &TcContext) -> Option<Ipv4Summary> {
    let (_, ip) = eth_and::<Ipv4Hdr>(ctx)?;
    // SAFETY: bounds-checked by eth_and; fields are copied out at once.
    let ip = unsafe { &*ip };
    Some(Ipv4Summary {
        version_ihl: ip.version_ihl,
        protocol: ip.protocol,
        tot_len: u16::from_be(ip.tot_len),
        frag_off: u16::from_be(ip.frag_off),
        src: ip.src,
        dst: ip.dst,
    })
}

/// The Ethernet type of the frame, or `None` for a runt.
#[inline(always)]
pub fn ether_type(ctx: &TcContext) -> Option<u16> {
    let start = linear(ctx, ETH_HLEN)?;
    // SAFETY: `linear` checked that the Ethernet header is in bounds.
    Some(u16::from_be(unsafe {
        (*(start as *const EthHdr)).ether_type
    }))
}
