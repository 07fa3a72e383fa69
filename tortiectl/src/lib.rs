//! `tortiectl`: Calico-compatible resources and IPAM in tortie's datastore.

pub mod ipam;
pub mod store;

pub use store::{ResourceStore, StoreError};
