//! Compiles Calico and Kubernetes network policy into the maps tortie's eBPF programs
//! read, so that judging a new flow costs two map lookups whatever the number of rules.
//!
//! # What the programs do with the output
//!
//! 1. Look the peer's address up in the IP cache (`/32`s in the `TORTIE_IPC_ADDR` hash, CIDRs
//!    in the `TORTIE_IPCACHE` LPM trie): its *identity*. No match is
//!    [`bpf_maps::policy::IDENTITY_WORLD`].
//!    [`bpf_maps::policy::IDENTITY_HOST`] (this node) is always allowed.
//! 2. If policy applies to the local endpoint in that direction (the `POLICED_*` interface
//!    flags, [`CompiledPolicy::policed`]), look up `(endpoint, direction, identity,
//!    protocol, port)` (full keys in the `TORTIE_POLEXACT` hash, wildcard and port-range
//!    prefixes in the `TORTIE_POLICY` LPM trie); no entry is a deny.
//!
//! # Identities
//!
//! Rules select peers by conditions on addresses: CIDRs (`nets`, `notNets`, `ipBlock`,
//! `except`) and sets of pods (selectors, namespaces, service accounts). Each condition is
//! an *atom*; the compiler groups addresses by the exact set of atoms they satisfy (plus,
//! for egress rules with named ports, the port numbers the peer pod gives those names).
//! Addresses in one class are indistinguishable to every rule, so one identity — and one
//! set of policy entries per endpoint — serves them all. Pods get `/32` entries; CIDRs,
//! being nested or disjoint, get one entry each and let longest-prefix match find the
//! innermost; the rest of IPv4 is the world. See [`identity`](crate::IdentityAllocator)
//! for nodes and the details.
//!
//! # Policy map layout
//!
//! The key's prefix length says how much of `(endpoint, direction, identity, protocol,
//! port)` an entry fixes: 72 bits = any protocol and port; 80 = any port of one protocol;
//! `80 + n` = the ports sharing their top `n` bits; 96 = one port. ICMP's "port" is
//! `type << 8 | code`.
//!
//! # First-match resolution
//!
//! Calico evaluates policies in order (ascending `order`, then name; Kubernetes policies
//! as order 1000), rules in order; allow and deny end the evaluation, log continues, pass
//! skips to the profiles; when policies apply and none decides, the flow is denied; when
//! none applies, the endpoint's profiles decide. The compiler does this once per (local
//! endpoint, direction, identity) for the whole (protocol, port) space at once, with
//! interval sets, then writes the fewest LPM entries that give the same answer for every
//! (protocol, port): an any-protocol entry for protocols no rule names, and per protocol an
//! optimal prefix cover of its port ranges.
//!
//! # Determinism and stability
//!
//! [`compile()`] is a pure function of its inputs and of the two allocators the caller keeps
//! across runs: [`IdentityAllocator`] names classes by a canonical signature of their atoms,
//! [`RuleAllocator`] names rules by policy and position, so unchanged classes and rules
//! keep their numbers and map updates stay small. Output collections are ordered maps.
//!
//! [`evaluate()`] walks the rules for one flow without any of that machinery; the tests check
//! that the compiled maps agree with it on random clusters and flows.
//!
//! # Layers
//!
//! `model` (inputs) → `normalize` (one rule form for every policy kind) → `identity`
//! (classes of peers) → `compile` (entries); `evaluate` sits beside `compile`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod alloc;
mod bits;
mod compile;
mod evaluate;
mod identity;
mod model;
mod normalize;
#[cfg(test)]
mod testutil;

pub use compile::{compile, CompiledPolicy, OrderedPolicyKey, RuleAllocator};
pub use evaluate::{evaluate, EvaluateError, Evaluator};
pub use identity::IdentityAllocator;
pub use model::{
    DecidedBy, Direction, Endpoint, NamedPort, Namespace, PolicyInputs, PolicyKind, RuleInfo,
    RuleKey, ServiceAccount, Verdict, LABEL_CALICO_NAME, LABEL_CALICO_NAMESPACE,
    LABEL_CALICO_ORCHESTRATOR, LABEL_CALICO_SERVICE_ACCOUNT, LABEL_K8S_NAMESPACE_NAME,
};
