//! IPIP and VXLAN, built and taken apart here: the kernel has no `ipip` module on some nodes,
//! and doing VXLAN in the program spares a trip through a tunnel device.
//!
//! Encapsulation grows the packet right after the Ethernet header with
//! `bpf_skb_adjust_room(BPF_ADJ_ROOM_MAC)` and tells the kernel what was added, so GSO
//! super-packets are segmented correctly later; `FIXED_GSO` keeps the segment size, which the
//! reduced pod MTU already accounts for.

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_DECAP_L3_IPV4,
        BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
        BPF_F_ADJ_ROOM_FIXED_GSO,
    },
    helpers::generated::bpf_get_hash_recalc,
    programs::TcContext,
};
use bpf_maps::{route_flags, Counter, NodeConfig, RouteValue};

use crate::{
    headers::{
        eth_and, ipv4_header_checksum, linear, EthHdr, Ipv4Hdr, Ipv4Summary, UdpHdr, VxlanEncap,
        VxlanHdr, ETH_HLEN, ETH_P_IP, IPPROTO_IPIP, IPPROTO_UDP, IPV4_HLEN, IP_DF, UDP_HLEN,
        VXLAN_ENCAP_LEN,
    },
    maps::count,
};

/// TTL of outer headers (what Linux tunnels use by default).
const OUTER_TTL: u8 = 64;
/// Source ports for VXLAN, spread by flow hash like Linux does (RFC 7348 §5).
const VXLAN_SPORT_MIN: u32 = 32768;
const VXLAN_SPORT_RANGE: u32 = 61000 - 32768;

/// What the outer header copies from the inner one.
struct Inner {
    tos: u8,
    total_len: u32,
    id: u16,
    df: u16,
}

#[inline(always)]
fn inner_fields(ctx: &TcContext) -> Result<Inner, Counter> {
    let (_, ip) = eth_and::<Ipv4Hdr>(ctx).ok_or(Counter::DropMalformed)?;
    // SAFETY: bounds-checked by eth_and.
    let ip = unsafe { &*ip };
    Ok(Inner {
        tos: ip.tos,
        total_len: u16::from_be(ip.tot_len) as u32,
        id: ip.id,
        df: u16::from_be(ip.frag_off) & IP_DF,
    })
}

#[inline(always)]
fn outer_ipv4(inner: &Inner, added: u32, protocol: u8, src: [u8; 4], dst: [u8; 4]) -> Ipv4Hdr {
    // GSO super-packets may not fit 16 bits once grown; segmentation rewrites every segment's
    // length anyway.
    let total = (inner.total_len + added).min(0xffff) as u16;
    let mut ip = Ipv4Hdr {
        version_ihl: 0x45,
        tos: inner.tos,
        tot_len: total.to_be(),
        id: inner.id,
        frag_off: inner.df.to_be(),
        ttl: OUTER_TTL,
        protocol,
        check: 0,
        src,
        dst,
    };
    ip.check = ipv4_header_checksum(&ip).to_be();
    ip
}

/// Encapsulates the packet as `route` requires (no-op for plain routes).
#[inline(always)]
pub fn encapsulate_for(
    ctx: &TcContext,
    route: &RouteValue,
    config: &NodeConfig,
) -> Result<(), Counter> {
    if route.flags & route_flags::TUNNELED_IPIP != 0 {
        encapsulate_ipip(ctx, config.host_ipv4, route.next_hop)
    } else if route.flags & route_flags::TUNNELED_VXLAN != 0 {
        encapsulate_vxlan(ctx, route, config)
    } else {
        Ok(())
    }
}

/// IPIP (protocol 4): a 20-byte outer IPv4 header from this node to the next-hop node.
#[inline(always)]
pub fn encapsulate_ipip(ctx: &TcContext, src: [u8; 4], dst: [u8; 4]) -> Result<(), Counter> {
    let inner = inner_fields(ctx)?;
    let flags = (BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO) as u64;
    ctx.adjust_room(IPV4_HLEN as i32, BPF_ADJ_ROOM_MAC, flags)
        .map_err(|_| Counter::DropRewriteFailed)?;
    let (_, outer) = eth_and::<Ipv4Hdr>(ctx).ok_or(Counter::DropRewriteFailed)?;
    // SAFETY: bounds-checked by eth_and after the resize.
    unsafe { *outer = outer_ipv4(&inner, IPV4_HLEN as u32, IPPROTO_IPIP, src, dst) };
    count(Counter::Encapsulated);
    Ok(())
}

/// VXLAN: outer IPv4 + UDP (port and VNI from the node config) + VXLAN + inner Ethernet.
#[inline(always)]
pub fn encapsulate_vxlan(
    ctx: &TcContext,
    route: &RouteValue,
    config: &NodeConfig,
) -> Result<(), Counter> {
    let inner = inner_fields(ctx)?;
    // SAFETY: plain helper call on our own context.
    let hash = unsafe { bpf_get_hash_recalc(ctx.skb.skb) };
    let src_port =
        (VXLAN_SPORT_MIN + ((hash as u64 * VXLAN_SPORT_RANGE as u64) >> 32) as u32) as u16;
    let flags = (BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
        | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
        | BPF_F_ADJ_ROOM_ENCAP_L2_ETH
        | BPF_F_ADJ_ROOM_FIXED_GSO) as u64
        | ((ETH_HLEN as u64) << 56);
    ctx.adjust_room(VXLAN_ENCAP_LEN as i32, BPF_ADJ_ROOM_MAC, flags)
        .map_err(|_| Counter::DropRewriteFailed)?;
    let (_, encap) = eth_and::<VxlanEncap>(ctx).ok_or(Counter::DropRewriteFailed)?;
    let vni = config.vxlan_vni;
    let header = VxlanEncap {
        ip: outer_ipv4(
            &inner,
            VXLAN_ENCAP_LEN as u32,
            IPPROTO_UDP,
            config.host_ipv4,
            route.next_hop,
        ),
        udp: UdpHdr {
            src_port: src_port.to_be(),
            dst_port: config.vxlan_port.to_be(),
            len: ((inner.total_len + (VXLAN_ENCAP_LEN - IPV4_HLEN) as u32).min(0xffff) as u16)
                .to_be(),
            // Zero: no UDP checksum, as Linux VXLAN sends by default over IPv4.
            check: 0,
        },
        vxlan: VxlanHdr {
            flags: [0x08, 0, 0, 0],
            vni: [(vni >> 16) as u8, (vni >> 8) as u8, vni as u8, 0],
        },
        inner_eth: EthHdr {
            dst: route.tunnel_mac,
            src: config.vxlan_mac,
            ether_type: ETH_P_IP.to_be(),
        },
    };
    // SAFETY: bounds-checked by eth_and after the resize.
    unsafe { *encap = header };
    count(Counter::Encapsulated);
    Ok(())
}

/// What an arriving tunnel packet turned out to be.
pub enum Decap {
    /// Not a tunnel packet for this node: handle it as plain traffic.
    NotTunnel,
    /// Decapsulated; the inner IPv4 packet now follows the Ethernet header.
    Done,
}

/// Removes `len` bytes after the Ethernet header (an outer header stack).
#[inline(always)]
fn shrink(ctx: &TcContext, len: usize) -> Result<(), Counter> {
    let flags = (BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO) as u64;
    // DECAP_L3 (Linux 6.3) clears the tunnel GSO bits; older kernels refuse the flag, and
    // for them the plain shrink is right.
    if ctx
        .adjust_room(-(len as i32), BPF_ADJ_ROOM_MAC, flags)
        .is_ok()
        || ctx
            .adjust_room(
                -(len as i32),
                BPF_ADJ_ROOM_MAC,
                BPF_F_ADJ_ROOM_FIXED_GSO as u64,
            )
            .is_ok()
    {
        count(Counter::Decapsulated);
        Ok(())
    } else {
        Err(Counter::DropRewriteFailed)
    }
}

/// Decapsulates IPIP or VXLAN addressed to this node. The outer source must be a known node
/// (`is_node`), or the packet is dropped: tunnels are not an open door into pods.
#[inline(always)]
pub fn decapsulate(
    ctx: &TcContext,
    outer: &Ipv4Summary,
    config: &NodeConfig,
    is_node: impl Fn([u8; 4]) -> bool,
) -> Result<Decap, Counter> {
    if outer.dst != config.host_ipv4 {
        return Ok(Decap::NotTunnel);
    }
    match outer.protocol {
        IPPROTO_IPIP => {
            if outer.version_ihl != 0x45 {
                return Err(Counter::DropUnsupported);
            }
            if !is_node(outer.src) {
                return Err(Counter::DropUnknownTunnelSource);
            }
            linear(ctx, ETH_HLEN + 2 * IPV4_HLEN).ok_or(Counter::DropMalformed)?;
            shrink(ctx, IPV4_HLEN).map(|()| Decap::Done)
        }
        IPPROTO_UDP if outer.version_ihl == 0x45 => {
            let Some((_, encap)) = eth_and::<VxlanEncap>(ctx) else {
                return Ok(Decap::NotTunnel);
            };
            // SAFETY: bounds-checked by eth_and.
            let encap = unsafe { &*encap };
            if u16::from_be(encap.udp.dst_port) != config.vxlan_port {
                return Ok(Decap::NotTunnel);
            }
            if !is_node(outer.src) {
                return Err(Counter::DropUnknownTunnelSource);
            }
            let vni = config.vxlan_vni;
            if encap.vxlan.vni != [(vni >> 16) as u8, (vni >> 8) as u8, vni as u8, 0] {
                return Err(Counter::DropWrongVni);
            }
            if u16::from_be(encap.inner_eth.ether_type) != ETH_P_IP {
                return Err(Counter::DropUnsupported);
            }
            linear(ctx, ETH_HLEN + VXLAN_ENCAP_LEN + IPV4_HLEN).ok_or(Counter::DropMalformed)?;
            shrink(ctx, VXLAN_ENCAP_LEN).map(|()| Decap::Done)
        }
        _ => Ok(Decap::NotTunnel),
    }
}

const _: () = assert!(UDP_HLEN == 8);
