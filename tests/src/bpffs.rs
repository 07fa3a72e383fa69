//! The bpf filesystem at `/sys/fs/bpf`, where agents pin their maps and links.

use std::io;
use std::path::{Path, PathBuf};

/// Where bpffs is expected.
pub const BPFFS_MOUNT_POINT: &str = "/sys/fs/bpf";

/// A bpffs operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    /// `/proc/mounts` could not be read.
    #[error("could not read /proc/mounts: {0}")]
    ReadMounts(#[source] io::Error),
    /// Mounting bpffs failed.
    #[error("mounting bpffs at {BPFFS_MOUNT_POINT} failed: {0} (needs root and a kernel with CONFIG_BPF_SYSCALL)")]
    Mount(#[source] nix::Error),
    /// Removing pins failed.
    #[error("removing pins under {} failed: {source} (check with `ls -R {}`)", path.display(), path.display())]
    RemovePins {
        /// The pin directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Whether `/proc/mounts` content lists a bpf filesystem at `/sys/fs/bpf`.
pub fn mounts_have_bpffs(mounts: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let _source = fields.next();
        let target = fields.next();
        let fstype = fields.next();
        target == Some(BPFFS_MOUNT_POINT) && fstype == Some("bpf")
    })
}

/// Mounts bpffs at `/sys/fs/bpf` unless it is mounted already.
pub fn ensure_bpffs() -> Result<(), BpffsError> {
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(BpffsError::ReadMounts)?;
    if mounts_have_bpffs(&mounts) {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        BPFFS_MOUNT_POINT,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(BpffsError::Mount)
}

/// Removes a pin directory recursively (unlinking a pin unpins it). Absent is fine.
pub fn remove_pins(dir: &Path) -> Result<(), BpffsError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BpffsError::RemovePins {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Removes `dir` if it is an empty directory; anything else is left alone.
pub fn remove_if_empty(dir: &Path) {
    // Fails when another lab still has pins there, which is what we want.
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bpffs_only_at_the_expected_mount_point() {
        let mounts = "sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw,relatime 0 0\n";
        assert!(mounts_have_bpffs(mounts));
        assert!(!mounts_have_bpffs("sysfs /sys sysfs rw 0 0\n"));
        assert!(!mounts_have_bpffs("bpf /mnt/bpf bpf rw 0 0\n"));
    }
}
