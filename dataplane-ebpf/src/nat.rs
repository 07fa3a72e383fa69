//! natOutgoing: pods in a pool with `natOutgoing: true` that talk to addresses outside every
//! pool leave with the node's address, as Calico's MASQUERADE does, but in the program.
//!
//! Each flow gets two entries in `TORTIE_NAT`: the outbound key (pod side) maps to the node
//! address and NAT port, the inbound key (what the reply carries) maps back to the pod. Ports
//! come from the node config's range, chosen at random and claimed with `BPF_NOEXIST`, so two
//! CPUs can never hand out the same one. TCP, UDP and ICMP echo are translated; other protocols
//! and non-first fragments are dropped and counted rather than leaked with a pod address.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_NOEXIST},
    helpers::generated::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    programs::TcContext,
};
use bpf_maps::{nat_flags, route_flags, Counter, NatKey, NatValue, NodeConfig};

use crate::{
    forward::deliver_to_local_workload,
    headers::{
        Ipv4Summary, ETH_HLEN, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_TCP,
        IPPROTO_UDP, IP_MF_OFFSET,
    },
    maps::{count, route_lookup, TORTIE_NAT},
    verdict::Verdict,
};

/// Offset of the IPv4 checksum in the frame.
const IP_CHECK_OFFSET: usize = ETH_HLEN + 10;
/// Offsets of the IPv4 source and destination addresses in the frame.
const IP_SRC_OFFSET: usize = ETH_HLEN + 12;
const IP_DST_OFFSET: usize = ETH_HLEN + 16;
/// Candidate ports tried before giving up on a new flow.
const PORT_ATTEMPTS: u32 = 8;

/// Where a flow's ports sit and how its checksum covers them.
struct L4 {
    protocol: u8,
    /// Offset of the L4 header in the frame.
    offset: usize,
    /// Source port or ICMP echo identifier, as on the wire.
    src_port: u16,
    /// Destination port (0 for ICMP), as on the wire.
    dst_port: u16,
}

impl L4 {
    /// Offset of the L4 checksum.
    fn check_offset(&self) -> usize {
        match self.protocol {
            IPPROTO_TCP => self.offset + 16,
            IPPROTO_UDP => self.offset + 6,
            _ => self.offset + 2,
        }
    }

    /// Offset of the port a translation rewrites: source outbound, destination inbound (for
    /// ICMP echo both are the identifier).
    fn port_offset(&self, outbound: bool) -> usize {
        if self.protocol == IPPROTO_ICMP {
            self.offset + 4
        } else if outbound {
            self.offset
        } else {
            self.offset + 2
        }
    }
}

/// Reads the ports of a translatable packet; `Err` for what natOutgoing must not pass.
#[inline(always)]
fn read_l4(ctx: &TcContext, ip: &Ipv4Summary, echo_type: u8) -> Result<L4, Counter> {
    if ip.frag_off & IP_MF_OFFSET != 0 {
        // Fragments carry no ports (or only the first does); reassembly is the host's job.
        return Err(Counter::DropUnsupported);
    }
    let offset = ETH_HLEN + ip.header_len() as usize;
    match ip.protocol {
        IPPROTO_TCP | IPPROTO_UDP => {
            let ports: [u16; 2] = ctx.load(offset).map_err(|_| Counter::DropMalformed)?;
            Ok(L4 {
                protocol: ip.protocol,
                offset,
                src_port: ports[0],
                dst_port: ports[1],
            })
        }
        IPPROTO_ICMP => {
            let header: [u8; 8] = ctx.load(offset).map_err(|_| Counter::DropMalformed)?;
            if header[0] != echo_type {
                return Err(Counter::DropUnsupported);
            }
            Ok(L4 {
                protocol: ip.protocol,
                offset,
                src_port: u16::from_ne_bytes([header[4], header[5]]),
                dst_port: 0,
            })
        }
        _ => Err(Counter::DropUnsupported),
    }
}

fn key(src: [u8; 4], dst: [u8; 4], src_port: u16, dst_port: u16, protocol: u8) -> NatKey {
    NatKey {
        src,
        dst,
        src_port,
        dst_port,
        protocol,
        _pad: [0; 3],
    }
}

/// Whether a pod packet to `dst` must be masqueraded: its source pool has natOutgoing and the
/// destination is in no pool and is not a node of the cluster.
#[inline(always)]
pub fn applies(src: [u8; 4], dst: [u8; 4]) -> bool {
    let from_nat_pool = route_lookup(src).is_some_and(|r| r.flags & route_flags::NAT_OUTGOING != 0);
    from_nat_pool
        && route_lookup(dst).is_none_or(|r| {
            r.flags & (route_flags::IN_POOL | route_flags::LOCAL_HOST | route_flags::REMOTE_HOST)
                == 0
        })
}

/// Rewrites the source of a pod's packet to the node address and a NAT port.
#[inline(always)]
pub fn outbound(ctx: &TcContext, ip: &Ipv4Summary, config: &NodeConfig) -> Result<(), Counter> {
    let l4 = read_l4(ctx, ip, ICMP_ECHO_REQUEST)?;
    let forward_key = key(ip.src, ip.dst, l4.src_port, l4.dst_port, l4.protocol);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let nat_port = match TORTIE_NAT.get_ptr_mut(forward_key) {
        Some(entry) => {
            // SAFETY: the pointer stays valid for this program run; the write is a timestamp.
            unsafe {
                (*entry).last_seen_ns = now;
                (*entry).port
            }
        }
        None => claim_port(&forward_key, &l4, config, now)?,
    };
    rewrite(
        ctx,
        &l4,
        IP_SRC_OFFSET,
        ip.src,
        config.host_ipv4,
        l4.src_port,
        nat_port,
        true,
    )?;
    count(Counter::NatOutgoing);
    Ok(())
}

#[inline(always)]
fn claim_port(
    forward_key: &NatKey,
    l4: &L4,
    config: &NodeConfig,
    now: u64,
) -> Result<u16, Counter> {
    let span = (config.nat_port_max as u32).saturating_sub(config.nat_port_min as u32) + 1;
    // SAFETY: plain helper call.
    let mut candidate = unsafe { bpf_get_prandom_u32() } % span;
    for _ in 0..PORT_ATTEMPTS {
        let port = ((config.nat_port_min as u32 + candidate) as u16).to_be();
        let (reply_src_port, reply_dst_port) = if l4.protocol == IPPROTO_ICMP {
            (port, 0)
        } else {
            (l4.dst_port, port)
        };
        let reverse_key = key(
            forward_key.dst,
            config.host_ipv4,
            reply_src_port,
            reply_dst_port,
            l4.protocol,
        );
        let back_to_pod = NatValue {
            addr: forward_key.src,
            port: l4.src_port,
            flags: nat_flags::INBOUND,
            last_seen_ns: now,
        };
        if TORTIE_NAT
            .insert(reverse_key, back_to_pod, BPF_NOEXIST as u64)
            .is_ok()
        {
            let to_node = NatValue {
                addr: config.host_ipv4,
                port,
                flags: nat_flags::OUTBOUND,
                last_seen_ns: now,
            };
            if TORTIE_NAT.insert(*forward_key, to_node, 0).is_err() {
                let _ = TORTIE_NAT.remove(reverse_key);
                return Err(Counter::DropNatPortsExhausted);
            }
            return Ok(port);
        }
        candidate = (candidate + 7919) % span;
    }
    Err(Counter::DropNatPortsExhausted)
}

/// Undoes natOutgoing on a reply addressed to the node and delivers it to the pod, or `None`
/// when the packet belongs to no translated flow (then it is the host's own traffic).
#[inline(always)]
pub fn inbound(ctx: &TcContext, ip: &Ipv4Summary) -> Option<Verdict> {
    let l4 = read_l4(ctx, ip, ICMP_ECHO_REPLY).ok()?;
    let reverse_key = key(ip.src, ip.dst, l4.src_port, l4.dst_port, l4.protocol);
    let entry = TORTIE_NAT.get_ptr_mut(reverse_key)?;
    // SAFETY: valid for this program run; fields are copied out at once.
    let (pod, pod_port) = unsafe {
        (*entry).last_seen_ns = bpf_ktime_get_ns();
        ((*entry).addr, (*entry).port)
    };
    let nat_port = if l4.protocol == IPPROTO_ICMP {
        l4.src_port
    } else {
        l4.dst_port
    };
    if let Err(reason) = rewrite(
        ctx,
        &l4,
        IP_DST_OFFSET,
        ip.dst,
        pod,
        nat_port,
        pod_port,
        false,
    ) {
        return Some(Verdict::Drop(reason));
    }
    let route = route_lookup(pod)?;
    if route.flags & route_flags::LOCAL_WORKLOAD == 0 {
        return Some(Verdict::Drop(Counter::DropNoRoute));
    }
    Some(deliver_to_local_workload(ctx, route.ifindex))
}

/// Replaces one address and one port, keeping the IPv4 and L4 checksums right (including
/// packets whose L4 checksum the NIC will finish, and UDP without a checksum).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn rewrite(
    ctx: &TcContext,
    l4: &L4,
    addr_offset: usize,
    old_addr: [u8; 4],
    new_addr: [u8; 4],
    old_port: u16,
    new_port: u16,
    outbound: bool,
) -> Result<(), Counter> {
    let old_addr = u32::from_ne_bytes(old_addr) as u64;
    let new_addr_raw = u32::from_ne_bytes(new_addr) as u64;
    let mangled_zero = if l4.protocol == IPPROTO_UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    };
    let failed = |_| Counter::DropRewriteFailed;
    if l4.protocol != IPPROTO_ICMP {
        // TCP and UDP checksums cover the addresses through the pseudo-header.
        ctx.l4_csum_replace(
            l4.check_offset(),
            old_addr,
            new_addr_raw,
            BPF_F_PSEUDO_HDR as u64 | mangled_zero | 4,
        )
        .map_err(failed)?;
    }
    ctx.l4_csum_replace(
        l4.check_offset(),
        old_port as u64,
        new_port as u64,
        mangled_zero | 2,
    )
    .map_err(failed)?;
    ctx.store(l4.port_offset(outbound), &new_port, 0)
        .map_err(failed)?;
    ctx.l3_csum_replace(IP_CHECK_OFFSET, old_addr, new_addr_raw, 4)
        .map_err(failed)?;
    ctx.store(addr_offset, &new_addr, 0).map_err(failed)?;
    Ok(())
}
