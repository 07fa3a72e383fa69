//! Where the agent pins its objects on bpffs.
//!
//! ```text
//! <root>/maps/v<MAP_LAYOUT_VERSION>/<MAP NAME>      maps (reused across agent restarts)
//! ```
//! Programs are attached as clsact filters, which belong to their interfaces, so they need no
//! pins of their own.

/// Default pin root; labs and tests use `<root>/<lab>/<node>` below it.
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/tortie";
/// Subdirectory of the pin root holding the maps.
pub const MAPS_DIR: &str = "maps";

/// `<root>/maps/v<MAP_LAYOUT_VERSION>`: the directory holding the maps of this layout.
#[cfg(feature = "user")]
pub fn maps_dir(pin_root: &std::path::Path) -> std::path::PathBuf {
    pin_root
        .join(MAPS_DIR)
        .join(std::format!("v{}", crate::MAP_LAYOUT_VERSION))
}
