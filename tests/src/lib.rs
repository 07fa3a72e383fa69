//! A multi-node tortie cluster built from network namespaces.
//!
//! The same lab is the demo (`cargo xtask lab up`) and the end-to-end test harness: every node
//! is a namespace running its own `tortie-agent`, every pod a namespace wired to its node with a
//! Calico-style veth (`cali…` on the host side, `eth0` in the pod). Nodes keep
//! `net.ipv4.ip_forward=0`, so traffic that arrives between pods was forwarded by the eBPF
//! programs, not by the kernel.
//!
//! Everything lives in namespaces named `tortie-<lab>-…`; nothing is added to the root network
//! namespace. Needs root, iproute2 and util-linux `nsenter`; the agent needs bpffs at
//! `/sys/fs/bpf` and TCX (Linux >= 6.6).
//!
//! ```no_run
//! use tortie_lab::{Artifacts, LabGuard, LabSpec};
//! # fn main() -> anyhow::Result<()> {
//! let lab = LabGuard::up(&LabSpec::new("demo", 1, 2), &Artifacts::from_env_or_target()?)?;
//! let out = lab.exec("pod-0-0", &["ping", "-c", "1", "10.65.0.11"])?;
//! assert!(out.status.success());
//! # Ok(()) }
//! ```

pub mod agent;
pub mod artifacts;
pub mod bpffs;
pub mod endpoints;
pub mod guard;
pub mod harness;
pub mod lab;
pub mod netns;
pub mod report;
pub mod spec;
pub mod state;
pub mod teardown;
pub mod topology;

pub use artifacts::Artifacts;
pub use guard::LabGuard;
pub use lab::{Lab, LabStatus, NodeStatus};
pub use nix::sys::signal::Signal;
pub use spec::{cali_iface_name, LabSpec, Node, Pod};
