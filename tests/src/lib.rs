//! A multi-node tortie cluster built from network namespaces.
//!
//! The same lab is the demo (`cargo xtask lab up`) and the end-to-end test harness: every node
//! is a namespace running its own `tortie-agent`, every pod a namespace wired to its node with a
//! Calico-style veth (`cali…` on the host side, `eth0` in the pod). Nodes keep
//! `net.ipv4.ip_forward=0`, so traffic that arrives between pods was forwarded by the eBPF
//! programs, not by the kernel.
//!
//! Nodes sit on one fabric segment or, for a routed lab, on two segments joined by a router
//! namespace, behind which an external host on TEST-NET-3 stands in for the internet. Pod
//! traffic between nodes is plain, IPIP or VXLAN, as the lab's pool says
//! (`LabSpec::with_encap`); captures on the fabric show which ([`Lab::capture`]).
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
pub mod bird;
pub mod bpffs;
pub mod capture;
pub mod cluster;
pub mod conformance;
pub mod control_plane;
pub mod convergence;
pub mod counters;
pub mod demo;
pub mod endpoints;
pub mod external_router;
pub mod guard;
pub mod harness;
pub mod lab;
pub mod modes;
pub mod netns;
pub mod probe;
pub mod report;
pub mod spec;
pub mod state;
pub mod teardown;
pub mod topology;
pub mod traffic;

pub use artifacts::Artifacts;
pub use capture::{Capture, Captured, Packet};
pub use guard::LabGuard;
pub use lab::{Lab, LabStatus, NodeStatus, PodRequest, ProbeResult};
pub use nix::sys::signal::Signal;
pub use spec::{cali_iface_name, DatastoreMode, Encap, LabSpec, Node, Pod, Topology};
