//! Policy as this node's dataplane needs it: compile the cluster's policies for the local
//! endpoints and fold the result into the desired state (identity and policy map entries,
//! the policed flags of local interfaces).
//!
//! Pure apart from the allocators, which the caller keeps across runs so that identities and
//! rule ids stay stable and only changed entries are rewritten.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use bpf_maps::{
    events::RuleName,
    iface_flags,
    policy::{IpCacheValue, RULE_DEFAULT_DENY, RULE_PROFILE_ALLOW},
};
use ipnet::Ipv4Net;
use tortie_policy::{
    compile, CompiledPolicy, IdentityAllocator, OrderedPolicyKey, PolicyInputs, RuleAllocator,
};

use super::{CalcInputs, DesiredState};

/// Identity and rule numbering kept across compilations.
#[derive(Debug, Default)]
pub struct PolicyAllocators {
    /// Identity classes → numbers.
    pub identities: IdentityAllocator,
    /// Rules → numbers.
    pub rules: RuleAllocator,
}

/// Compiles `policy` (the cluster's policy inputs, without local interface indices) for this
/// node: local endpoints get the index of their interface, this node's addresses are the
/// host, the other nodes' addresses remote hosts.
pub fn compile_for_node(
    policy: &PolicyInputs,
    inputs: &CalcInputs<'_>,
    allocators: &mut PolicyAllocators,
) -> CompiledPolicy {
    let mut policy = policy.clone();
    let iface_index: HashMap<&str, u32> = inputs
        .interfaces
        .iter()
        .map(|iface| (iface.name.as_str(), iface.index))
        .collect();
    let local_ifindex: BTreeMap<String, u32> = inputs
        .endpoints
        .iter()
        .filter_map(|endpoint| Some((endpoint.key(), *iface_index.get(endpoint.iface.as_str())?)))
        .collect();
    for endpoint in &mut policy.endpoints {
        endpoint.ifindex = local_ifindex.get(&endpoint.key).copied();
    }
    policy.local_host = inputs.uplink_addrs.iter().map(Ipv4Net::addr).collect();
    if let Some(cluster) = inputs.cluster {
        for node in &cluster.nodes {
            if node.name == inputs.node_name {
                if !policy.local_host.contains(&node.ip()) {
                    policy.local_host.push(node.ip());
                }
            } else {
                policy.remote_hosts.push(node.ip());
            }
        }
    }
    compile(&policy, &mut allocators.identities, &mut allocators.rules)
}

/// The map contents of one compilation. Shared (not copied) by every desired state built
/// from it, so the sync can tell "same tables as last applied" by pointer and skip them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyTables {
    /// IP cache entries: prefix → the identity policy knows its addresses by.
    pub ipcache: BTreeMap<Ipv4Net, IpCacheValue>,
    /// Policy entries by (prefix length, key).
    pub entries: PolicyEntries,
    /// What each rule id stands for, for drop reports and dumps (`TORTIE_RULENAME`).
    pub rule_names: BTreeMap<u32, RuleName>,
}

impl PolicyTables {
    /// The tables of `compiled`.
    pub fn of(compiled: &CompiledPolicy) -> Arc<PolicyTables> {
        Arc::new(PolicyTables {
            ipcache: compiled
                .ipcache
                .iter()
                .map(|(prefix, identity)| {
                    (
                        *prefix,
                        IpCacheValue {
                            identity: *identity,
                            flags: 0,
                        },
                    )
                })
                .collect(),
            entries: compiled.entries.clone(),
            rule_names: rule_names(compiled),
        })
    }
}

/// Adds a compilation to `desired`: its tables, and the policed flags of interfaces the
/// dataplane knows (an interface without an entry is not forwarded for at all, so it needs
/// no flag).
/// `Deny NetworkPolicy shop/web spec.ingress[0]` per rule id, and the reserved ones.
fn rule_names(compiled: &CompiledPolicy) -> BTreeMap<u32, RuleName> {
    let mut names: BTreeMap<u32, RuleName> = compiled
        .rules
        .iter()
        .map(|(id, info)| {
            (
                *id,
                RuleName::new(&format!("{:?} {}", info.action, info.key)),
            )
        })
        .collect();
    names.insert(
        RULE_DEFAULT_DENY,
        RuleName::new("default deny: policies select the endpoint and none allowed the flow"),
    );
    names.insert(
        RULE_PROFILE_ALLOW,
        RuleName::new("profile allow: no policy selects the endpoint"),
    );
    names
}

pub fn add_to_desired(
    desired: &mut DesiredState,
    compiled: &CompiledPolicy,
    tables: &Arc<PolicyTables>,
) {
    desired.policy = Arc::clone(tables);
    for (ifindex, (ingress, egress)) in &compiled.policed {
        if let Some(iface) = desired.ifaces.get_mut(ifindex) {
            if *ingress {
                iface.flags |= iface_flags::POLICED_INGRESS;
            }
            if *egress {
                iface.flags |= iface_flags::POLICED_EGRESS;
            }
        }
    }
}

/// Policy map entries by (prefix length, key).
pub type PolicyEntries = BTreeMap<(u32, OrderedPolicyKey), bpf_maps::policy::PolicyValue>;
