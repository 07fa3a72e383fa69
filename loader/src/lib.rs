//! tortie's userspace: the node agent and the libraries it is built from.
//!
//! Layers, each calling only downward:
//! - [`model`]: typed inputs (endpoints, interfaces) and their validation;
//! - [`calc`]: pure functions from inputs to the desired dataplane state;
//! - [`sync`]: everything that touches the kernel (bpffs, programs, maps, netlink routes);
//! - [`agent`]: the event loop tying them together.

pub mod agent;
pub mod calc;
pub mod model;
pub mod packets;
pub mod sync;
