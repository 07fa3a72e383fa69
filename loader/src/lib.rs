//! tortie's userspace: the node agent and the libraries it is built from.
//!
//! Layers, each calling only downward:
//! - [`model`]: typed inputs (endpoints, interfaces) and their validation;
//! - [`calc`]: pure functions from inputs to the desired dataplane state;
//! - [`sync`]: everything that touches the kernel (bpffs, programs, maps, netlink routes);
//! - [`source`]: where inputs come from besides files: the etcd datastore, listed and
//!   watched by its own task, translated into [`model`] types and published whole;
//! - [`agent`]: the event loop tying them together.
//!
//! `tortie-agent run` reads its inputs either from JSON files (`--endpoints-file`,
//! `--cluster-file`) or, with `--datastore-type etcdv3`, from Calico's resources in etcd
//! (`IPPool`s, `Node`s, this node's `WorkloadEndpoint`s, IPAM blocks).

pub mod agent;
pub mod calc;
pub mod metrics;
pub mod model;
pub mod packets;
pub mod source;
pub mod sync;
