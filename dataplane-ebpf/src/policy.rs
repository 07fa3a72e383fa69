//! Policy verdicts for new flows, and the admission step every delivery path runs.
//!
//! A flow is judged on this node by the policies of the endpoints on this node that it
//! touches: the egress policy of its source when the source is a local pod, and the ingress
//! policy of its destination when the destination is a local pod. Each judgement is one IP
//! cache lookup (the peer's identity) and one policy lookup, each a hash lookup first and a
//! prefix-trie lookup only when that misses (see `bpf_maps::policy`); userspace has resolved
//! rule order, Pass, profiles and defaults into the entries, so the cost does not depend on
//! how many rules there are. Traffic to and from this node's own addresses is always allowed,
//! as Kubernetes requires for probes.

use aya_ebpf::{btf_maps::lpm_trie::Key, programs::TcContext};
use bpf_maps::{
    iface_flags,
    policy::{
        direction, verdict, PolicyKey, PolicyValue, IDENTITY_HOST, IDENTITY_WORLD,
        POLICY_PREFIX_FULL, RULE_DEFAULT_DENY,
    },
    route_flags, Counter, NodeConfig,
};

use crate::{
    conntrack, events,
    flow::{self, Flow},
    headers::IPPROTO_ICMP,
    maps::{
        count, count_rule, iface_lookup, route_lookup, TORTIE_IPCACHE, TORTIE_IPC_ADDR,
        TORTIE_POLEXACT, TORTIE_POLICY,
    },
};

/// Lets a packet's flow through, or says why not. Tracked flows pass after a state update
/// (and, when policy changed since they were allowed, a fresh verdict); new flows need every
/// local endpoint's policy to allow them and are tracked from then on; ICMP errors about a
/// tracked flow pass as related. `epoch` is the current policy epoch, from the node
/// configuration the caller has already read ([`epoch_of`]).
#[inline(always)]
pub fn admit(ctx: &TcContext, flow: &Flow, epoch: u32) -> Result<(), Counter> {
    let (key, src_is_a) = conntrack::key_of(flow);
    if let Some(entry) = conntrack::lookup(&key) {
        // SAFETY: a valid pointer into the map value for this program run.
        let entry = unsafe { &mut *entry };
        if entry.epoch != epoch {
            let original = conntrack::original_direction(&key, entry);
            if allowed_here(&original).is_err() {
                conntrack::remove(&key);
                return Err(Counter::DropPolicyRevoked);
            }
            entry.epoch = epoch;
            count(Counter::ConntrackRechecked);
        }
        conntrack::touch(entry, flow, src_is_a);
        // Every datagram of a tracked flow may be fragmented, not only the first one.
        flow::remember_fragment(flow);
        count(Counter::ConntrackHit);
        return Ok(());
    }
    if flow.protocol == IPPROTO_ICMP && flow::is_icmp_error(flow.icmp_type) {
        if let Some(quoted) = flow::quoted_flow(ctx, flow) {
            let (quoted_key, _) = conntrack::key_of(&quoted);
            if conntrack::lookup(&quoted_key).is_some() {
                count(Counter::ConntrackRelated);
                return Ok(());
            }
        }
    }
    allowed_here(flow).map_err(|()| Counter::DropPolicyDenied)?;
    conntrack::create(&key, flow, src_is_a, epoch);
    flow::remember_fragment(flow);
    count(Counter::PolicyAllowed);
    Ok(())
}

/// The policy epoch of a node configuration (0 before the agent has written a valid one).
#[inline(always)]
pub fn epoch_of(config: Option<&NodeConfig>) -> u32 {
    config.map_or(0, |config| config.policy_epoch)
}

/// Whether the policies of the local endpoints the flow touches allow it.
#[inline(always)]
pub fn allowed_here(flow: &Flow) -> Result<(), ()> {
    if let Some(endpoint) = policed_local_workload(flow.src, iface_flags::POLICED_EGRESS) {
        judge(endpoint, direction::EGRESS, flow.dst, flow)?;
    }
    if let Some(endpoint) = policed_local_workload(flow.dst, iface_flags::POLICED_INGRESS) {
        judge(endpoint, direction::INGRESS, flow.src, flow)?;
    }
    Ok(())
}

/// The interface of the local pod at `addr` when policies select it in the direction `flag`.
#[inline(always)]
fn policed_local_workload(addr: [u8; 4], flag: u32) -> Option<u32> {
    let route = route_lookup(addr)?;
    if route.flags & route_flags::LOCAL_WORKLOAD == 0 {
        return None;
    }
    let iface = iface_lookup(route.ifindex)?;
    (iface.flags & flag != 0).then_some(route.ifindex)
}

/// One endpoint's verdict on a flow with `peer`.
#[inline(always)]
fn judge(endpoint: u32, dir: u8, peer: [u8; 4], flow: &Flow) -> Result<(), ()> {
    let identity = identity_of(peer);
    if identity == IDENTITY_HOST {
        return Ok(());
    }
    let key = PolicyKey {
        endpoint: endpoint.to_be_bytes(),
        direction: dir,
        identity: identity.to_be_bytes(),
        protocol: flow.protocol,
        port: flow.policy_port.to_be_bytes(),
    };
    match policy_entry(&key) {
        Some(entry) => {
            count_rule(entry.rule);
            if entry.verdict == verdict::ALLOW {
                Ok(())
            } else {
                events::note_denying_rule(entry.rule);
                Err(())
            }
        }
        None => {
            count_rule(RULE_DEFAULT_DENY);
            events::note_denying_rule(RULE_DEFAULT_DENY);
            Err(())
        }
    }
}

/// The policy identity of `addr`: a pod's or node's from the exact map, else the identity of
/// the longest policy CIDR holding it, else "world".
#[inline(always)]
fn identity_of(addr: [u8; 4]) -> u32 {
    // SAFETY: the value is copied out at once; userspace only replaces whole entries.
    if let Some(entry) = unsafe { TORTIE_IPC_ADDR.get(addr) } {
        return entry.identity;
    }
    TORTIE_IPCACHE
        .get(&Key::new(32, addr))
        .map_or(IDENTITY_WORLD, |entry| entry.identity)
}

/// The verdict entry for a fully specified key: an exact protocol-and-port entry when there
/// is one (the longest prefix possible), else the longest wildcard or port-range entry.
#[inline(always)]
fn policy_entry(key: &PolicyKey) -> Option<PolicyValue> {
    // SAFETY: as in `identity_of`.
    if let Some(entry) = unsafe { TORTIE_POLEXACT.get(key) } {
        return Some(*entry);
    }
    TORTIE_POLICY
        .get(&Key::new(POLICY_PREFIX_FULL, *key))
        .copied()
}
