//! What the program test files share.

use std::path::PathBuf;

/// The eBPF object to load (`TORTIE_BPF_OBJECT`, else the release build in `target/`), or
/// `None` when not root: BPF_PROG_TEST_RUN needs root, and CI, which runs as root, never
/// skips.
pub fn object() -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "BPF_PROG_TEST_RUN tests need root, and CI runs as root"
        );
        eprintln!("skipping: BPF_PROG_TEST_RUN needs root");
        return None;
    }
    let path = std::env::var_os("TORTIE_BPF_OBJECT").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/bpfel-unknown-none/release/dataplane-ebpf")
        },
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-ebpf` (or `cargo xtask test`)",
        path.display()
    );
    Some(path)
}
