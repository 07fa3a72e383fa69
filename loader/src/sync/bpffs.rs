//! Making sure the pin root lives on a BPF filesystem.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::{
    mount::{mount, MsFlags},
    sys::statfs::statfs,
};

/// `BPF_FS_MAGIC` from `include/uapi/linux/magic.h`.
const BPF_FS_MAGIC: libc::__fsword_t = 0xcafe_4a11;
/// Where bpffs is conventionally mounted.
pub const BPFFS_MOUNT_POINT: &str = "/sys/fs/bpf";

fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type().0 == BPF_FS_MAGIC)
}

/// The closest existing ancestor of `path` (or `path` itself).
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut current = path.to_path_buf();
    while !current.exists() {
        if !current.pop() {
            return PathBuf::from("/");
        }
    }
    current
}

/// Ensures `pin_root` can be created on bpffs, mounting bpffs at `/sys/fs/bpf` if the root
/// lies below it and nothing is mounted there yet, then creates the directory.
pub fn ensure_pin_root(pin_root: &Path) -> Result<()> {
    let ancestor = existing_ancestor(pin_root);
    if !is_bpffs(&ancestor) {
        if !pin_root.starts_with(BPFFS_MOUNT_POINT) {
            bail!(
                "pin root {} is not on a BPF filesystem; choose a directory under a bpffs mount \
                 (e.g. {BPFFS_MOUNT_POINT}/tortie)",
                pin_root.display()
            );
        }
        tracing::info!(mount_point = BPFFS_MOUNT_POINT, "mounting bpffs");
        mount(
            Some("bpf"),
            BPFFS_MOUNT_POINT,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| {
            format!(
                "bpffs is not mounted at {BPFFS_MOUNT_POINT} and mounting it failed; \
                 mount it with `mount -t bpf bpf {BPFFS_MOUNT_POINT}` (in a container, \
                 mount the host's {BPFFS_MOUNT_POINT})"
            )
        })?;
    }
    std::fs::create_dir_all(pin_root)
        .with_context(|| format!("creating pin directory {}", pin_root.display()))
}
