//! First-match resolution over the whole (protocol, port) space.
//!
//! For one local endpoint, direction and peer class, the rules that can match are known,
//! each with the traffic it matches. Walking them in order while keeping the traffic not
//! yet decided gives, for every (protocol, port), the first rule that decides it — the same
//! answer as evaluating packet by packet, computed once for all packets.

use std::borrow::Cow;

use super::lpm::{Decision, DEFAULT_DENY, PROFILE_ALLOW};
use super::traffic_set::TrafficSet;
use crate::normalize::Action;

/// A rule that matches the peer class: what it does and which traffic it matches.
pub(crate) struct Step<'a> {
    pub action: Action,
    /// The verdict and rule id when it allows or denies.
    pub decision: Decision,
    pub traffic: Cow<'a, TrafficSet>,
}

/// A profile in the chain, reduced to the steps that match the class.
pub(crate) enum ProfileSteps<'a> {
    AllowAll,
    DenyAll,
    Rules(Vec<Step<'a>>),
}

/// Disjoint pieces of traffic covering everything, each with its decision.
pub(crate) fn resolve(
    policy: Option<&[Step<'_>]>,
    profiles: &[ProfileSteps<'_>],
) -> Vec<(TrafficSet, Decision)> {
    let mut pieces = Vec::new();
    let mut to_profiles = match policy {
        None => TrafficSet::all(),
        Some(steps) => {
            let mut undecided = TrafficSet::all();
            let mut passed = TrafficSet::empty();
            for step in steps {
                let hit = step.traffic.intersect(&undecided);
                if hit.is_empty() {
                    continue;
                }
                match step.action {
                    Action::Allow | Action::Deny => pieces.push((hit.clone(), step.decision)),
                    Action::Pass => passed = passed.union(&hit),
                    Action::Log => continue,
                }
                undecided = undecided.subtract(&hit);
                if undecided.is_empty() {
                    break;
                }
            }
            // Policies applied and none decided: Calico's end-of-tier drop.
            if !undecided.is_empty() {
                pieces.push((undecided, DEFAULT_DENY));
            }
            passed
        }
    };
    for profile in profiles {
        if to_profiles.is_empty() {
            break;
        }
        match profile {
            ProfileSteps::AllowAll => {
                pieces.push((
                    std::mem::replace(&mut to_profiles, TrafficSet::empty()),
                    PROFILE_ALLOW,
                ));
            }
            ProfileSteps::DenyAll => {
                pieces.push((
                    std::mem::replace(&mut to_profiles, TrafficSet::empty()),
                    DEFAULT_DENY,
                ));
            }
            ProfileSteps::Rules(steps) => {
                // Traffic this profile has not looked at yet; a pass ends the profile for
                // its traffic, which goes on to the next profile.
                let mut unseen = to_profiles.clone();
                for step in steps {
                    let hit = step.traffic.intersect(&unseen);
                    if hit.is_empty() {
                        continue;
                    }
                    match step.action {
                        Action::Allow | Action::Deny => {
                            to_profiles = to_profiles.subtract(&hit);
                            pieces.push((hit.clone(), step.decision));
                        }
                        Action::Pass => {}
                        Action::Log => continue,
                    }
                    unseen = unseen.subtract(&hit);
                    if unseen.is_empty() {
                        break;
                    }
                }
            }
        }
    }
    // No profile decided: Calico drops.
    if !to_profiles.is_empty() {
        pieces.push((to_profiles, DEFAULT_DENY));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::super::traffic_set::PortSet;
    use super::*;
    use crate::model::Verdict;

    fn step(action: Action, rule: u32, traffic: TrafficSet) -> Step<'static> {
        let verdict = action.verdict().unwrap_or(Verdict::Allow);
        Step {
            action,
            decision: Decision { verdict, rule },
            traffic: Cow::Owned(traffic),
        }
    }

    fn decision_at(pieces: &[(TrafficSet, Decision)], protocol: u8, port: u16) -> Decision {
        let found: Vec<_> = pieces
            .iter()
            .filter(|(set, _)| set.contains(protocol, port))
            .collect();
        assert_eq!(found.len(), 1, "pieces must partition the space");
        found[0].1
    }

    #[test]
    fn first_match_wins_then_default_deny() {
        let tcp80 = TrafficSet::protocol(6, PortSet::range(80, 80));
        let tcp = TrafficSet::protocol(6, PortSet::all());
        let steps = [
            step(Action::Log, 15, TrafficSet::all()),
            step(Action::Deny, 16, tcp80),
            step(Action::Allow, 17, tcp),
        ];
        let pieces = resolve(Some(&steps), &[ProfileSteps::AllowAll]);
        assert_eq!(decision_at(&pieces, 6, 80).rule, 16);
        assert_eq!(decision_at(&pieces, 6, 81).rule, 17);
        assert_eq!(decision_at(&pieces, 17, 80), DEFAULT_DENY);
    }

    #[test]
    fn pass_goes_to_profiles() {
        let udp = TrafficSet::protocol(17, PortSet::all());
        let steps = [step(Action::Pass, 16, udp.clone())];
        let profiles = [
            ProfileSteps::Rules(vec![
                step(
                    Action::Pass,
                    20,
                    TrafficSet::protocol(17, PortSet::range(53, 53)),
                ),
                step(Action::Allow, 21, udp),
            ]),
            ProfileSteps::AllowAll,
        ];
        let pieces = resolve(Some(&steps), &profiles);
        assert_eq!(decision_at(&pieces, 17, 54).rule, 21);
        // Passed by the first profile, allowed by the second.
        assert_eq!(decision_at(&pieces, 17, 53), PROFILE_ALLOW);
        assert_eq!(decision_at(&pieces, 6, 53), DEFAULT_DENY);
    }

    #[test]
    fn no_policy_uses_profiles() {
        let pieces = resolve(None, &[ProfileSteps::Rules(vec![]), ProfileSteps::AllowAll]);
        assert_eq!(decision_at(&pieces, 6, 1), PROFILE_ALLOW);
        let pieces = resolve(None, &[ProfileSteps::DenyAll, ProfileSteps::AllowAll]);
        assert_eq!(decision_at(&pieces, 6, 1), DEFAULT_DENY);
        let pieces = resolve(None, &[]);
        assert_eq!(decision_at(&pieces, 6, 1), DEFAULT_DENY);
    }
}
