//! Everything that touches the kernel: bpffs, program loading and attachment, map contents and
//! netlink routes. Each operation is idempotent so a restarted agent converges from any state.

pub mod attach;
pub mod bird;
pub mod bpffs;
pub mod conntrack_gc;
pub mod iface_slots;
pub mod load;
pub mod maps;
pub mod netlink;
pub mod policy_maps;
pub mod test_run;
