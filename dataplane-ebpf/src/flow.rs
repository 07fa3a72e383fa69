//! The transport-level identity of an IPv4 packet: protocol, ports (or ICMP type, code and
//! echo id), TCP flags, and what a fragment belongs to.
//!
//! Fields are read with `bpf_skb_load_bytes` at the offset the IP header length gives, so IP
//! options shift the transport header instead of being misread as ports. A non-first fragment
//! has no transport header: it takes the ports its datagram's first fragment was allowed with
//! (recorded in `TORTIE_FRAGS`), or is dropped.

use aya_ebpf::programs::TcContext;
use bpf_maps::{
    policy::{FragmentKey, FragmentValue},
    Counter,
};

use crate::{
    headers::{
        linear, Ipv4Summary, ETH_HLEN, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, IPPROTO_ICMP,
        IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPV4_HLEN, IP_MF, IP_MF_OFFSET, IP_OFFSET,
    },
    maps::TORTIE_FRAGS,
};

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;

pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// One packet's flow, as conntrack and policy see it.
#[derive(Clone, Copy)]
pub struct Flow {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// Source port, or ICMP echo identifier (network byte order); 0 when there is none.
    pub src_port: u16,
    /// Destination port, or ICMP echo identifier (network byte order); 0 when there is none.
    pub dst_port: u16,
    pub protocol: u8,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// What policy matches ports against: the destination port in host order, or
    /// `type << 8 | code` for ICMP.
    pub policy_port: u16,
    /// ICMP type (0 for other protocols).
    pub icmp_type: u8,
    /// Offset of the transport header in the frame.
    pub l4_offset: usize,
    /// The packet is the first fragment of a fragmented datagram.
    pub first_fragment: bool,
    /// IP identification, for fragment tracking.
    pub ip_id: u16,
}

/// Reads the flow of `ip`. Non-first fragments of unknown datagrams are refused.
#[inline(always)]
pub fn read_flow(ctx: &TcContext, ip: &Ipv4Summary) -> Result<Flow, Counter> {
    let l4_offset = ETH_HLEN + ip.header_len() as usize;
    let fragmented = ip.frag_off & IP_MF_OFFSET != 0;
    // Only fragments need the IP id (to find their datagram): no extra load per packet.
    let ip_id: u16 = if fragmented {
        ctx.load(ETH_HLEN + 4).map_err(|_| Counter::DropMalformed)?
    } else {
        0
    };
    let mut flow = Flow {
        src: ip.src,
        dst: ip.dst,
        src_port: 0,
        dst_port: 0,
        protocol: ip.protocol,
        tcp_flags: 0,
        policy_port: 0,
        icmp_type: 0,
        l4_offset,
        first_fragment: ip.frag_off & IP_MF != 0 && ip.frag_off & IP_OFFSET == 0,
        ip_id,
    };
    if ip.frag_off & IP_OFFSET != 0 {
        let key = fragment_key(&flow);
        // SAFETY: copied out at once.
        let Some(ports) = (unsafe { TORTIE_FRAGS.get(key).copied() }) else {
            return Err(Counter::DropFragmentUnknown);
        };
        flow.src_port = ports.src_port;
        flow.dst_port = ports.dst_port;
        flow.policy_port = u16::from_be(ports.dst_port);
        return Ok(flow);
    }
    match ip.protocol {
        IPPROTO_TCP => {
            let header: [u8; 14] = transport_bytes(ctx, l4_offset)?;
            flow.src_port = u16::from_ne_bytes([header[0], header[1]]);
            flow.dst_port = u16::from_ne_bytes([header[2], header[3]]);
            flow.tcp_flags = header[13];
        }
        IPPROTO_UDP | IPPROTO_SCTP => {
            let ports: [u8; 4] = transport_bytes(ctx, l4_offset)?;
            flow.src_port = u16::from_ne_bytes([ports[0], ports[1]]);
            flow.dst_port = u16::from_ne_bytes([ports[2], ports[3]]);
        }
        IPPROTO_ICMP => {
            let header: [u8; 8] = transport_bytes(ctx, l4_offset)?;
            flow.icmp_type = header[0];
            flow.policy_port = u16::from_be_bytes([header[0], header[1]]);
            if header[0] == ICMP_ECHO_REQUEST || header[0] == ICMP_ECHO_REPLY {
                // Request and reply share the identifier: both directions find one entry.
                let id = u16::from_ne_bytes([header[4], header[5]]);
                flow.src_port = id;
                flow.dst_port = id;
            }
            return Ok(flow);
        }
        _ => return Ok(flow),
    }
    flow.policy_port = u16::from_be(flow.dst_port);
    Ok(flow)
}

/// The first `N` bytes of the transport header at `l4_offset`. Without IP options (nearly
/// every packet) they are read straight from the packet after one bounds check; with
/// options the offset varies, which `bpf_skb_load_bytes` handles.
#[inline(always)]
fn transport_bytes<const N: usize>(ctx: &TcContext, l4_offset: usize) -> Result<[u8; N], Counter> {
    const PLAIN_L4_OFFSET: usize = ETH_HLEN + IPV4_HLEN;
    if l4_offset == PLAIN_L4_OFFSET {
        if let Some(start) = linear(ctx, PLAIN_L4_OFFSET + N) {
            // SAFETY: `linear` checked that N bytes after the headers are in the packet;
            // the bytes are copied out at once.
            return Ok(unsafe { *((start + PLAIN_L4_OFFSET) as *const [u8; N]) });
        }
    }
    ctx.load(l4_offset).map_err(|_| Counter::DropMalformed)
}

/// Whether an ICMP type reports an error about another packet (which it quotes).
#[inline(always)]
pub fn is_icmp_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
    )
}

/// The flow of the packet an ICMP error quotes, seen from the error's direction (its source
/// and destination swapped back), or `None` when the quote is truncated.
#[inline(always)]
pub fn quoted_flow(ctx: &TcContext, flow: &Flow) -> Option<Flow> {
    let inner_offset = flow.l4_offset + 8;
    let header: [u8; 20] = ctx.load(inner_offset).ok()?;
    let inner_header_len = ((header[0] & 0x0f) as usize) * 4;
    if header[0] >> 4 != 4 || inner_header_len < 20 {
        return None;
    }
    let protocol = header[9];
    let ports: [u16; 2] = match protocol {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => {
            ctx.load(inner_offset + inner_header_len).ok()?
        }
        IPPROTO_ICMP => {
            let icmp: [u8; 8] = ctx.load(inner_offset + inner_header_len).ok()?;
            let id = u16::from_ne_bytes([icmp[4], icmp[5]]);
            [id, id]
        }
        _ => [0, 0],
    };
    Some(Flow {
        src: [header[12], header[13], header[14], header[15]],
        dst: [header[16], header[17], header[18], header[19]],
        src_port: ports[0],
        dst_port: ports[1],
        protocol,
        tcp_flags: 0,
        policy_port: u16::from_be(ports[1]),
        icmp_type: 0,
        l4_offset: inner_offset + inner_header_len,
        first_fragment: false,
        ip_id: 0,
    })
}

/// Remembers the ports of an allowed first fragment for the datagram's later fragments.
#[inline(always)]
pub fn remember_fragment(flow: &Flow) {
    if !flow.first_fragment {
        return;
    }
    let value = FragmentValue {
        src_port: flow.src_port,
        dst_port: flow.dst_port,
    };
    // A full table evicts the oldest datagram (LRU); its later fragments are then dropped.
    let _ = TORTIE_FRAGS.insert(fragment_key(flow), value, 0);
}

#[inline(always)]
fn fragment_key(flow: &Flow) -> FragmentKey {
    FragmentKey {
        src: flow.src,
        dst: flow.dst,
        id: flow.ip_id,
        protocol: flow.protocol,
        _pad: 0,
    }
}
