//! `tortiectl`: Calico-compatible resources and IPAM in tortie's datastore, and the
//! dataplane's pinned eBPF maps on a node ([`bpf`]).

pub mod bpf;
pub mod flows;
pub mod ipam;
pub mod label;
pub mod node;
pub mod store;

pub use store::{ResourceStore, StoreError};
