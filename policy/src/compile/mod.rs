//! Compilation: normalized policies → IP cache, policy map entries, policed flags and rule
//! ids.
//!
//! 1. Per local endpoint and direction, the *context*: the ordered rules of the policies
//!    that apply (after the rules' conditions on the local endpoint itself), and the profile
//!    chain. Endpoints with equal contexts share all the work below.
//! 2. The atoms of those rules' peer conditions define the identity classes
//!    ([`crate::identity`]); every rule's peer condition is evaluated once per class.
//! 3. Per context and class: the rules that match the class, resolved first-match over the
//!    whole (protocol, port) space ([`resolve`](mod@resolve)) and encoded as LPM entries ([`lpm`]). The
//!    result depends only on which rules matched (and, for egress rules with named ports,
//!    on the class's named ports), so it is computed once per distinct set and copied to
//!    every (endpoint, identity) that has it.

mod lpm;
mod output;
mod resolve;
mod traffic_set;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bpf_maps::policy::{PolicyValue, IDENTITY_HOST, RULE_DEFAULT_DENY, RULE_PROFILE_ALLOW};

use crate::bits::BitSet;
use crate::identity::{build_classes, AtomTable, Classes, IdentityAllocator, Member};
use crate::model::{Direction, NamedPort, PolicyInputs, RuleInfo, RuleKey, Verdict};
use crate::normalize::{
    dir_index, normalize, Action, Expr, NormEndpoint, Normalized, ProfileStage, Traffic,
};
use lpm::{Decision, Entry};
use output::check_capacity;
pub use output::{CompiledPolicy, OrderedPolicyKey, RuleAllocator};
use resolve::{resolve, ProfileSteps, Step};
use traffic_set::{traffic_union, TrafficSet};

/// One profile in a context: its rules after the local filter (flat indices).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum StageKey {
    AllowAll,
    DenyAll,
    Rules(Vec<usize>),
}

/// Everything that decides an endpoint's verdicts in one direction, except the peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ContextKey {
    direction: Direction,
    /// The applying policies' rules in order (log rules dropped); `None` when no policy
    /// applies.
    policy: Option<Vec<usize>>,
    profiles: Vec<StageKey>,
    /// The endpoint's named ports, when an ingress rule names ports (they are the
    /// destination's).
    local_ports: Vec<NamedPort>,
}

impl ContextKey {
    /// Whether the direction needs no policy: no policy applies and the first profile that
    /// can decide anything allows everything.
    fn allows_all(&self) -> bool {
        if self.policy.is_some() {
            return false;
        }
        for stage in &self.profiles {
            match stage {
                StageKey::Rules(rules) if rules.is_empty() => continue,
                StageKey::AllowAll => return true,
                _ => return false,
            }
        }
        false
    }

    /// Every rule, in order.
    fn rules(&self) -> Vec<usize> {
        let mut all: Vec<usize> = self.policy.iter().flatten().copied().collect();
        for stage in &self.profiles {
            if let StageKey::Rules(rules) = stage {
                all.extend(rules);
            }
        }
        all
    }
}

/// A context shared by endpoints, with per-rule data the classes reuse.
struct Context {
    key: ContextKey,
    /// [`ContextKey::rules`].
    rules: Vec<usize>,
    /// Per position in `rules`: its traffic, unless it depends on the peer's named ports.
    fixed_traffic: Vec<Option<TrafficSet>>,
    peer_named: bool,
    endpoints: Vec<u32>,
}

/// The rules of `range` that can decide something for this endpoint.
fn filtered(norm: &Normalized, range: std::ops::Range<usize>, ep: &NormEndpoint) -> Vec<usize> {
    range
        .filter(|&r| norm.rules[r].action != Action::Log && norm.rules[r].local_holds(ep))
        .collect()
}

/// Compiles every policy into map contents.
///
/// Pure and deterministic: the output depends only on `inputs` and the allocators' state.
/// Policies with errors are skipped whole (and reported); the rest compile.
pub fn compile(
    inputs: &PolicyInputs,
    identities: &mut IdentityAllocator,
    rules: &mut RuleAllocator,
) -> CompiledPolicy {
    let norm = normalize(inputs);
    let mut out = CompiledPolicy {
        warnings: norm.warnings.clone(),
        errors: norm.errors.clone(),
        ..CompiledPolicy::default()
    };

    // Which policies apply to which local endpoint; each distinct selector is evaluated once.
    let locals: Vec<(usize, u32)> = norm
        .endpoints
        .iter()
        .enumerate()
        .filter_map(|(i, ep)| Some((i, ep.ifindex?)))
        .collect();
    let mut applying: Vec<Vec<usize>> = vec![Vec::new(); locals.len()];
    let mut selected: HashMap<&crate::normalize::AppliesTo, Arc<Vec<bool>>> = HashMap::new();
    for (p, policy) in norm.policies.iter().enumerate() {
        let hits = selected
            .entry(&policy.applies)
            .or_insert_with(|| {
                Arc::new(
                    locals
                        .iter()
                        .map(|&(e, _)| policy.applies.matches(&norm.endpoints[e]))
                        .collect(),
                )
            })
            .clone();
        for (l, hit) in hits.iter().enumerate() {
            if *hit {
                applying[l].push(p);
            }
        }
    }

    // Contexts, and the rules that get ids: every allow/deny rule of what applies (before
    // local filtering, so ids do not churn with endpoint changes).
    let mut contexts: Vec<Context> = Vec::new();
    let mut context_ids: HashMap<ContextKey, usize> = HashMap::new();
    let mut numbered: BTreeSet<usize> = BTreeSet::new();
    for (l, &(e, ifindex)) in locals.iter().enumerate() {
        let ep = &norm.endpoints[e];
        let mut policed = [false; 2];
        for direction in Direction::BOTH {
            let d = dir_index(direction);
            let mut policy: Option<Vec<usize>> = None;
            for &p in &applying[l] {
                if let Some(range) = norm.policies[p].rules[d].clone() {
                    numbered.extend(range.clone());
                    policy
                        .get_or_insert_with(Vec::new)
                        .extend(filtered(&norm, range, ep));
                }
            }
            let profiles = norm
                .profile_stages(ep, direction)
                .into_iter()
                .map(|stage| match stage {
                    ProfileStage::AllowAll => StageKey::AllowAll,
                    ProfileStage::DenyAll => StageKey::DenyAll,
                    ProfileStage::Rules(range) => {
                        numbered.extend(range.clone());
                        StageKey::Rules(filtered(&norm, range, ep))
                    }
                })
                .collect();
            let mut key = ContextKey {
                direction,
                policy,
                profiles,
                local_ports: Vec::new(),
            };
            if key.allows_all() {
                continue;
            }
            policed[d] = true;
            let rules_in_order = key.rules();
            if rules_in_order
                .iter()
                .any(|&r| norm.rules[r].local_named_ports())
            {
                key.local_ports = ep.named_ports.clone();
            }
            let id = match context_ids.get(&key) {
                Some(&id) => id,
                None => {
                    let fixed_traffic = rules_in_order
                        .iter()
                        .map(|&r| {
                            let rule = &norm.rules[r];
                            (!rule.peer_named_ports())
                                .then(|| traffic_union(&rule.traffic, &key.local_ports))
                        })
                        .collect::<Vec<_>>();
                    let peer_named = fixed_traffic.iter().any(Option::is_none);
                    contexts.push(Context {
                        key: key.clone(),
                        rules: rules_in_order,
                        fixed_traffic,
                        peer_named,
                        endpoints: Vec::new(),
                    });
                    context_ids.insert(key, contexts.len() - 1);
                    contexts.len() - 1
                }
            };
            contexts[id].endpoints.push(ifindex);
        }
        out.policed.insert(ifindex, (policed[0], policed[1]));
    }

    // Rule ids.
    let rule_ids = assign_rule_ids(&norm, &numbered, rules, &mut out);

    // Atoms of the peer conditions that can decide something, and the named ports egress
    // rules read from peers.
    let mut table = AtomTable::default();
    let mut named_refs: BTreeSet<(&str, u8)> = BTreeSet::new();
    let mut peer_exprs: HashMap<usize, Expr<u32>> = HashMap::new();
    for context in &contexts {
        for &r in &context.rules {
            let rule = &norm.rules[r];
            peer_exprs
                .entry(r)
                .or_insert_with(|| rule.peer.map(&mut |atom| table.intern(atom)));
            if rule.peer_named_ports() {
                named_refs.extend(rule.traffic.iter().flat_map(Traffic::named_refs));
            }
        }
    }

    let classes = build_classes(&norm, &table, &named_refs);
    let class_identity = assign_identities(&classes, &table, identities, &mut out);

    for (net, member) in &classes.ipcache {
        let identity = match member {
            Member::LocalHost => Some(IDENTITY_HOST),
            Member::Class(c) => class_identity[*c],
        };
        if let Some(identity) = identity {
            out.ipcache.insert(*net, identity);
        }
    }

    // Which classes each rule's peer condition matches (rules with equal conditions share).
    let mut by_expr: HashMap<&Expr<u32>, Arc<BitSet>> = HashMap::new();
    let mut rule_classes: HashMap<usize, Arc<BitSet>> = HashMap::new();
    for (&r, expr) in &peer_exprs {
        let bits = by_expr
            .entry(expr)
            .or_insert_with(|| {
                let mut bits = BitSet::new(classes.list.len());
                for (c, class) in classes.list.iter().enumerate() {
                    if expr.eval(&mut |&atom| class.atoms.get(atom as usize)) {
                        bits.set(c);
                    }
                }
                Arc::new(bits)
            })
            .clone();
        rule_classes.insert(r, bits);
    }

    // Classes with equal named ports share resolutions of egress named-port rules.
    let mut named_ids: HashMap<&[NamedPort], usize> = HashMap::new();
    let class_named: Vec<usize> = classes
        .list
        .iter()
        .map(|class| {
            let next = named_ids.len();
            *named_ids.entry(class.named.as_slice()).or_insert(next)
        })
        .collect();

    let decision_of = |r: usize| -> Decision {
        // Pass rules decide nothing: their decision is never read.
        let verdict = norm.rules[r].action.verdict().unwrap_or(Verdict::Allow);
        let rule = rule_ids.get(&r).copied().unwrap_or(match verdict {
            Verdict::Deny => RULE_DEFAULT_DENY,
            Verdict::Allow => RULE_PROFILE_ALLOW,
        });
        Decision { verdict, rule }
    };

    let mut templates: HashMap<(usize, BitSet, usize), Arc<Vec<Entry>>> = HashMap::new();
    for (ctx_id, context) in contexts.iter().enumerate() {
        let direction = context.key.direction;
        // Every rule of a context has its peer condition evaluated above.
        let classes_of: Vec<&BitSet> = context.rules.iter().map(|r| &*rule_classes[r]).collect();
        for (c, class) in classes.list.iter().enumerate() {
            let Some(identity) = class_identity[c] else {
                continue;
            };
            let mut matched = BitSet::new(context.rules.len());
            for (pos, bits) in classes_of.iter().enumerate() {
                if bits.get(c) {
                    matched.set(pos);
                }
            }
            let named = if context.peer_named {
                class_named[c]
            } else {
                0
            };
            let template = templates
                .entry((ctx_id, matched, named))
                .or_insert_with_key(|(_, matched, _)| {
                    Arc::new(resolve_context(
                        &norm,
                        context,
                        matched,
                        &class.named,
                        &decision_of,
                    ))
                })
                .clone();
            for &ifindex in &context.endpoints {
                for entry in template.iter() {
                    let key = OrderedPolicyKey::new(
                        ifindex,
                        direction,
                        identity,
                        entry.protocol,
                        entry.port,
                    );
                    let value = PolicyValue {
                        verdict: entry.decision.verdict.map_value(),
                        _pad: [0; 3],
                        rule: entry.decision.rule,
                    };
                    out.entries.insert((entry.prefix_len, key), value);
                }
            }
        }
    }
    check_capacity(&mut out);
    out
}

/// Resolves one context for one class (given by the rules it matched) into entries.
fn resolve_context(
    norm: &Normalized,
    context: &Context,
    matched: &BitSet,
    class_named: &[NamedPort],
    decision_of: &dyn Fn(usize) -> Decision,
) -> Vec<Entry> {
    // Positions in `context.rules` run on from the policy rules through each profile's.
    let mut position = 0usize;
    let mut steps_of = |rules: &[usize]| {
        steps(
            norm,
            context,
            matched,
            class_named,
            decision_of,
            rules,
            &mut position,
        )
    };
    let policy = context.key.policy.as_deref().map(&mut steps_of);
    let profiles: Vec<ProfileSteps<'_>> = context
        .key
        .profiles
        .iter()
        .map(|stage| match stage {
            StageKey::AllowAll => ProfileSteps::AllowAll,
            StageKey::DenyAll => ProfileSteps::DenyAll,
            StageKey::Rules(rules) => ProfileSteps::Rules(steps_of(rules)),
        })
        .collect();
    let pieces = resolve(policy.as_deref(), &profiles);
    lpm::encode(&pieces)
}

/// The steps of the rules that matched, for `rules` starting at `*position` in the
/// context's rule list (advanced past them).
fn steps<'a>(
    norm: &Normalized,
    context: &'a Context,
    matched: &BitSet,
    class_named: &[NamedPort],
    decision_of: &dyn Fn(usize) -> Decision,
    rules: &[usize],
    position: &mut usize,
) -> Vec<Step<'a>> {
    let mut steps = Vec::new();
    for &r in rules {
        let pos = *position;
        *position += 1;
        if !matched.get(pos) {
            continue;
        }
        let traffic = match &context.fixed_traffic[pos] {
            Some(set) => Cow::Borrowed(set),
            None => Cow::Owned(traffic_union(&norm.rules[r].traffic, class_named)),
        };
        steps.push(Step {
            action: norm.rules[r].action,
            decision: decision_of(r),
            traffic,
        });
    }
    steps
}

fn assign_rule_ids(
    norm: &Normalized,
    numbered: &BTreeSet<usize>,
    allocator: &mut RuleAllocator,
    out: &mut CompiledPolicy,
) -> HashMap<usize, u32> {
    let deciding: Vec<(usize, Verdict)> = numbered
        .iter()
        .filter_map(|&r| Some((r, norm.rules[r].action.verdict()?)))
        .collect();
    let keys: BTreeSet<RuleKey> = deciding
        .iter()
        .map(|&(r, _)| norm.rules[r].key.clone())
        .collect();
    let unplaced = allocator.inner.assign(&keys);
    if !unplaced.is_empty() {
        out.errors.push(format!(
            "{} rules got no hit counter (the counter array is full); their hits are counted \
             as default deny or profile allow. First: {}",
            unplaced.len(),
            unplaced[0]
        ));
    }
    let mut ids = HashMap::new();
    for (r, action) in deciding {
        let key = &norm.rules[r].key;
        if let Some(id) = allocator.get(key) {
            ids.insert(r, id);
            out.rules.insert(
                id,
                RuleInfo {
                    key: key.clone(),
                    action,
                },
            );
        }
    }
    ids
}

/// Numbers every class: the fixed identities, then the allocator's by signature.
fn assign_identities(
    classes: &Classes,
    table: &AtomTable,
    allocator: &mut IdentityAllocator,
    out: &mut CompiledPolicy,
) -> Vec<Option<u32>> {
    let signatures: Vec<Option<String>> = (0..classes.list.len())
        .map(|c| {
            Classes::fixed_identity(c)
                .is_none()
                .then(|| classes.list[c].signature(table))
        })
        .collect();
    let wanted: BTreeSet<String> = signatures.iter().flatten().cloned().collect();
    let unplaced = allocator.assign(&wanted);
    if !unplaced.is_empty() {
        out.errors.push(format!(
            "{} peer classes got no identity (the identity space is exhausted); their \
             addresses are treated as the world",
            unplaced.len()
        ));
    }
    out.identities.insert(
        bpf_maps::policy::IDENTITY_WORLD,
        "world: addresses under no policy CIDR and of no pod".into(),
    );
    out.identities.insert(IDENTITY_HOST, "this node".into());
    out.identities.insert(
        bpf_maps::policy::IDENTITY_REMOTE_HOST,
        "other nodes (under no policy CIDR)".into(),
    );
    signatures
        .into_iter()
        .enumerate()
        .map(|(c, signature)| match signature {
            None => Classes::fixed_identity(c),
            Some(signature) => {
                let id = allocator.get(&signature);
                if let Some(id) = id {
                    out.identities.insert(id, signature);
                }
                id
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
