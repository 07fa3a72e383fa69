//! The reference evaluator: one flow at a time, walking the rules in order.
//!
//! It shares normalization with the compiler but none of the compiler's machinery
//! (classes, address partitions, traffic sets, LPM encoding), so checking that the compiled
//! maps answer like it does checks exactly that machinery. It is also what
//! `tortiectl` can use to explain a verdict.

use std::net::Ipv4Addr;

use crate::model::{DecidedBy, Direction, PolicyInputs, Verdict};
use crate::normalize::{
    dir_index, normalize, Action, NormEndpoint, NormRule, Normalized, ProfileStage,
};

/// Why an evaluation could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvaluateError {
    /// The local endpoint is not among the inputs' endpoints.
    #[error("no endpoint {0:?}: name it as namespace/pod, as listed in the inputs")]
    UnknownEndpoint(String),
}

/// Evaluates flows against normalized inputs; build once, ask many times.
#[derive(Debug)]
pub struct Evaluator {
    norm: Normalized,
}

/// What a rule did to a flow.
enum Outcome {
    Decided(Verdict, DecidedBy),
    Pass,
    NoMatch,
}

impl Evaluator {
    /// Normalizes `inputs` (policies with errors are left out, as the compiler leaves them).
    pub fn new(inputs: &PolicyInputs) -> Evaluator {
        Evaluator {
            norm: normalize(inputs),
        }
    }

    /// The verdict for a new flow between local endpoint `endpoint` (`namespace/pod`) and
    /// `peer`, in `direction` (ingress: from the peer; egress: to it), of IP `protocol` to
    /// destination `port` (ICMP: `type << 8 | code`), and what decided it.
    pub fn evaluate(
        &self,
        endpoint: &str,
        direction: Direction,
        peer: Ipv4Addr,
        protocol: u8,
        port: u16,
    ) -> Result<(Verdict, DecidedBy), EvaluateError> {
        let norm = &self.norm;
        let ep = norm
            .endpoint(endpoint)
            .ok_or_else(|| EvaluateError::UnknownEndpoint(endpoint.to_string()))?;
        if norm.local_host.contains(&peer) {
            return Ok((Verdict::Allow, DecidedBy::LocalHost));
        }
        let peer_ep = norm.endpoint_at(peer);
        let destination_ports = match direction {
            Direction::Ingress => ep.named_ports.as_slice(),
            Direction::Egress => peer_ep.map_or(&[][..], |p| p.named_ports.as_slice()),
        };
        let judge = |rule: &NormRule| -> Outcome {
            let matches = rule.local_holds(ep)
                && rule.peer.eval(&mut |atom| atom.holds(peer, peer_ep))
                && rule.traffic_matches(protocol, port, destination_ports);
            if !matches {
                return Outcome::NoMatch;
            }
            let decided_by = || DecidedBy::Rule(rule.key.clone());
            match rule.action {
                Action::Allow => Outcome::Decided(Verdict::Allow, decided_by()),
                Action::Deny => Outcome::Decided(Verdict::Deny, decided_by()),
                Action::Pass => Outcome::Pass,
                Action::Log => Outcome::NoMatch,
            }
        };

        let d = dir_index(direction);
        let mut applied = false;
        for policy in &norm.policies {
            let Some(range) = policy.rules[d].clone() else {
                continue;
            };
            if !policy.applies.matches(ep) {
                continue;
            }
            applied = true;
            for rule in &norm.rules[range] {
                match judge(rule) {
                    Outcome::Decided(verdict, by) => return Ok((verdict, by)),
                    Outcome::Pass => {
                        return Ok(self.profiles(ep, direction, &judge));
                    }
                    Outcome::NoMatch => continue,
                }
            }
        }
        if applied {
            return Ok((Verdict::Deny, DecidedBy::DefaultDeny));
        }
        Ok(self.profiles(ep, direction, &judge))
    }

    fn profiles(
        &self,
        ep: &NormEndpoint,
        direction: Direction,
        judge: &dyn Fn(&NormRule) -> Outcome,
    ) -> (Verdict, DecidedBy) {
        for stage in self.norm.profile_stages(ep, direction) {
            match stage {
                ProfileStage::AllowAll => return (Verdict::Allow, DecidedBy::ProfileAllow),
                ProfileStage::DenyAll => return (Verdict::Deny, DecidedBy::DefaultDeny),
                ProfileStage::Rules(range) => {
                    for rule in &self.norm.rules[range] {
                        match judge(rule) {
                            Outcome::Decided(verdict, by) => return (verdict, by),
                            // A pass ends this profile; the next one decides.
                            Outcome::Pass => break,
                            Outcome::NoMatch => continue,
                        }
                    }
                }
            }
        }
        (Verdict::Deny, DecidedBy::DefaultDeny)
    }
}

/// Evaluates one flow; see [`Evaluator::evaluate`]. Build an [`Evaluator`] to ask many.
pub fn evaluate(
    inputs: &PolicyInputs,
    local_endpoint_key: &str,
    direction: Direction,
    peer_ip: Ipv4Addr,
    protocol: u8,
    port: u16,
) -> Result<(Verdict, DecidedBy), EvaluateError> {
    Evaluator::new(inputs).evaluate(local_endpoint_key, direction, peer_ip, protocol, port)
}

#[cfg(test)]
mod tests;
