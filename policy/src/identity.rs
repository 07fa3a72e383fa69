//! Identities: classes of peer addresses that every compiled rule treats alike.
//!
//! Each rule's peer condition is a boolean expression over *atoms* (an address block, a set
//! of endpoints). An address's *valuation* is the set of atoms it satisfies, plus — for
//! egress rules that name ports — the port numbers its pod gives those names. Two addresses
//! with the same valuation get the same verdict from every rule, so they can share one
//! identity; addresses with different valuations never do.
//!
//! Addresses come in four sorts:
//!
//! - pod addresses: one `/32` IP cache entry each, valuation from every atom;
//! - policy CIDRs (`nets`, `notNets`, `ipBlock`, `except`): CIDRs are prefixes, so any two
//!   are nested or disjoint, and the addresses under a CIDR but under none of its nested
//!   CIDRs all satisfy exactly the CIDRs enclosing it. One IP cache entry per CIDR (with
//!   uncovered addresses) therefore encodes the whole partition of IPv4 space minimally: the
//!   LPM lookup finds the innermost CIDR, whose class is that valuation. Addresses under no
//!   CIDR need no entry: they are [`IDENTITY_WORLD`];
//! - other nodes: `/32`s with [`IDENTITY_REMOTE_HOST`], whose policy entries are the
//!   world's valuation. A node address inside a policy CIDR would get other verdicts than
//!   that, so it gets a class of its own instead, marked as a node (its signature starts
//!   with `remote-host`), rather than joining the CIDR's class: a node stays recognisable as
//!   one in dumps, and classes never mix nodes and non-nodes;
//! - this node: `/32`s with [`bpf_maps::policy::IDENTITY_HOST`], which the programs always allow.
//!
//! Classes are named by a canonical *signature* — the sorted text of their atoms and named
//! ports — so a class that survives a recompilation keeps its number in the
//! [`IdentityAllocator`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use bpf_maps::policy::{IDENTITY_FIRST_ALLOCATED, IDENTITY_REMOTE_HOST, IDENTITY_WORLD};
use ipnet::Ipv4Net;

use crate::alloc::Allocator;
use crate::bits::BitSet;
use crate::model::NamedPort;
use crate::normalize::{Atom, NormEndpoint, Normalized};

/// Remembers which identity number each class of peers has, across compilations.
///
/// Keep one for the life of the agent and pass it to every [`crate::compile()`]: a class whose
/// signature is unchanged keeps its number, so the IP cache and policy entries of unaffected
/// peers do not churn. Numbers of classes that disappear are freed after the compilation;
/// numbers are reused only once fresh ones run out.
#[derive(Clone, Debug)]
pub struct IdentityAllocator {
    inner: Allocator<String>,
}

impl Default for IdentityAllocator {
    fn default() -> Self {
        IdentityAllocator::new()
    }
}

impl IdentityAllocator {
    /// An empty allocator numbering from [`IDENTITY_FIRST_ALLOCATED`].
    pub fn new() -> Self {
        IdentityAllocator {
            inner: Allocator::new(IDENTITY_FIRST_ALLOCATED, u32::MAX),
        }
    }

    /// The number of the class with this signature, if allocated.
    pub fn get(&self, signature: &str) -> Option<u32> {
        self.inner.get(&signature.to_string())
    }

    /// The signature of an allocated identity.
    pub fn signature(&self, identity: u32) -> Option<&str> {
        self.inner.key(identity).map(String::as_str)
    }

    /// How many identities are allocated.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.inner.len() == 0
    }

    pub(crate) fn assign(&mut self, signatures: &BTreeSet<String>) -> Vec<String> {
        self.inner.assign(signatures)
    }
}

/// The atoms of every compiled rule, numbered.
#[derive(Debug, Default)]
pub(crate) struct AtomTable {
    pub atoms: Vec<Atom>,
    index: HashMap<Atom, u32>,
}

impl AtomTable {
    pub fn intern(&mut self, atom: &Atom) -> u32 {
        if let Some(&id) = self.index.get(atom) {
            return id;
        }
        let id = u32::try_from(self.atoms.len()).unwrap_or(u32::MAX);
        self.atoms.push(atom.clone());
        self.index.insert(atom.clone(), id);
        id
    }

    pub fn len(&self) -> usize {
        self.atoms.len()
    }
}

/// A class of peer addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Class {
    /// The atoms its addresses satisfy.
    pub atoms: BitSet,
    /// Its pods' named ports that egress rules name (sorted).
    pub named: Vec<NamedPort>,
    /// Node addresses that needed a class of their own.
    pub remote_host: bool,
}

impl Class {
    /// Canonical text: equal exactly when the classes are (atom texts contain no newline).
    pub fn signature(&self, table: &AtomTable) -> String {
        let mut parts: Vec<String> = self
            .atoms
            .ones()
            .map(|i| table.atoms[i].canonical())
            .collect();
        parts.sort();
        parts.extend(
            self.named
                .iter()
                .map(|np| format!("port {:?}/{}={}", np.name, np.protocol, np.port)),
        );
        if self.remote_host {
            parts.insert(0, "remote-host".to_string());
        }
        parts.join("\n")
    }
}

/// Who an IP cache prefix belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Member {
    Class(usize),
    LocalHost,
}

/// Index in [`Classes::list`] of the world: no atom, no node.
pub(crate) const CLASS_WORLD: usize = 0;
/// Index in [`Classes::list`] of nodes outside every policy CIDR.
pub(crate) const CLASS_REMOTE_HOST: usize = 1;

/// Every class of peers and the IP cache prefixes that name them.
#[derive(Debug)]
pub(crate) struct Classes {
    pub list: Vec<Class>,
    pub ipcache: BTreeMap<Ipv4Net, Member>,
}

impl Classes {
    /// The identity number of a class, given the allocator's numbers for signatures.
    pub fn fixed_identity(class: usize) -> Option<u32> {
        match class {
            CLASS_WORLD => Some(IDENTITY_WORLD),
            CLASS_REMOTE_HOST => Some(IDENTITY_REMOTE_HOST),
            _ => None,
        }
    }
}

/// The CIDR atoms, for finding every one that contains an address.
struct NetIndex {
    /// Per prefix length present: network address → atom.
    by_len: Vec<(u8, HashMap<u32, usize>)>,
}

impl NetIndex {
    fn new(table: &AtomTable) -> NetIndex {
        let mut by_len: BTreeMap<u8, HashMap<u32, usize>> = BTreeMap::new();
        for (i, atom) in table.atoms.iter().enumerate() {
            if let Atom::Net(net) = atom {
                by_len
                    .entry(net.prefix_len())
                    .or_default()
                    .insert(u32::from(net.network()), i);
            }
        }
        NetIndex {
            by_len: by_len.into_iter().collect(),
        }
    }

    /// Sets the bit of every CIDR atom containing `addr` (with prefix at most `max_len`).
    fn mark(&self, addr: Ipv4Addr, max_len: u8, bits: &mut BitSet) {
        let addr = u32::from(addr);
        for (len, nets) in &self.by_len {
            if *len > max_len {
                break;
            }
            let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
            if let Some(&atom) = nets.get(&(addr & mask)) {
                bits.set(atom);
            }
        }
    }
}

/// The CIDR atoms with addresses of their own (not all covered by nested CIDRs).
fn nets_with_own_addresses(table: &AtomTable) -> Vec<Ipv4Net> {
    let mut nets: Vec<(Ipv4Net, usize)> = table
        .atoms
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a {
            Atom::Net(net) => Some((*net, i)),
            Atom::Endpoints(_) => None,
        })
        .collect();
    nets.sort_by_key(|(net, _)| (net.network(), net.prefix_len()));
    let size = |net: &Ipv4Net| 1u64 << (32 - u32::from(net.prefix_len()));
    let mut covered = vec![0u64; nets.len()];
    let mut stack: Vec<usize> = Vec::new();
    for i in 0..nets.len() {
        while let Some(&top) = stack.last() {
            if nets[top].0.contains(&nets[i].0) {
                break;
            }
            stack.pop();
        }
        if let Some(&parent) = stack.last() {
            covered[parent] += size(&nets[i].0);
        }
        stack.push(i);
    }
    nets.into_iter()
        .zip(covered)
        .filter(|((net, _), covered)| *covered < size(net))
        .map(|((net, _), _)| net)
        .collect()
}

/// Groups every address the maps must distinguish into classes.
///
/// `named_refs` are the `(name, protocol)` pairs egress rules resolve against peers.
pub(crate) fn build_classes(
    norm: &Normalized,
    table: &AtomTable,
    named_refs: &BTreeSet<(&str, u8)>,
) -> Classes {
    let atom_count = table.len();
    let world = Class {
        atoms: BitSet::new(atom_count),
        named: Vec::new(),
        remote_host: false,
    };
    // Nodes outside every CIDR: the world's valuation under their own fixed number.
    let mut list = vec![world.clone(), world];
    let mut index: HashMap<Class, usize> = HashMap::new();
    index.insert(list[CLASS_WORLD].clone(), CLASS_WORLD);
    let mut class_of = |class: Class, list: &mut Vec<Class>| -> usize {
        *index.entry(class).or_insert_with_key(|class| {
            list.push(class.clone());
            list.len() - 1
        })
    };

    let nets = NetIndex::new(table);
    let filters: Vec<(usize, &Atom)> = table
        .atoms
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(a, Atom::Endpoints(_)))
        .collect();

    let mut ipcache = BTreeMap::new();

    for net in nets_with_own_addresses(table) {
        let mut bits = BitSet::new(atom_count);
        nets.mark(net.network(), net.prefix_len(), &mut bits);
        let class = class_of(
            Class {
                atoms: bits,
                named: Vec::new(),
                remote_host: false,
            },
            &mut list,
        );
        ipcache.insert(net, Member::Class(class));
    }

    for &addr in &norm.remote_hosts {
        if norm.by_ip.contains_key(&addr) {
            continue;
        }
        let mut bits = BitSet::new(atom_count);
        nets.mark(addr, 32, &mut bits);
        let class = if bits.is_clear() {
            CLASS_REMOTE_HOST
        } else {
            class_of(
                Class {
                    atoms: bits,
                    named: Vec::new(),
                    remote_host: true,
                },
                &mut list,
            )
        };
        ipcache.insert(host_net(addr), Member::Class(class));
    }

    let mut owners: Vec<(&Ipv4Addr, &usize)> = norm.by_ip.iter().collect();
    owners.sort();
    for (&addr, &i) in owners {
        let ep: &NormEndpoint = &norm.endpoints[i];
        let mut bits = BitSet::new(atom_count);
        nets.mark(addr, 32, &mut bits);
        for &(atom, filter) in &filters {
            if filter.holds(addr, Some(ep)) {
                bits.set(atom);
            }
        }
        let named = ep
            .named_ports
            .iter()
            .filter(|np| named_refs.contains(&(np.name.as_str(), np.protocol)))
            .cloned()
            .collect();
        let class = class_of(
            Class {
                atoms: bits,
                named,
                remote_host: false,
            },
            &mut list,
        );
        ipcache.insert(host_net(addr), Member::Class(class));
    }

    for &addr in &norm.local_host {
        ipcache.insert(host_net(addr), Member::LocalHost);
    }

    Classes { list, ipcache }
}

fn host_net(addr: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::from(addr)
}

#[cfg(test)]
mod tests;
