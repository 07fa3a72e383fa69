//! Where the agent pins its objects on bpffs.
//!
//! ```text
//! <root>/maps/v<MAP_LAYOUT_VERSION>/<MAP NAME>      maps (reused across agent restarts)
//! <root>/links/<ifname>.<ifindex>.<ingress|egress>  TCX links (kernel >= 6.6)
//! ```
//! Links are named by interface name and index so that a restarted agent can tell a link of a
//! live interface from one whose interface was deleted while it was down.

/// Default pin root; labs and tests use `<root>/<lab>/<node>` below it.
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/tortie";
/// Subdirectory of the pin root holding the maps.
pub const MAPS_DIR: &str = "maps";
/// Subdirectory of the pin root holding the TC links.
pub const LINKS_DIR: &str = "links";
