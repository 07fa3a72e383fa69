//! Helpers for tests that build labs.

use crate::lab::Lab;
use crate::spec;
use crate::state;

/// Whether the current user is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns `true` when the caller should skip because it is not root: prints
/// "skipping: needs root". Under CI (`$CI` set) it panics instead, because there a skipped
/// end-to-end test would hide a broken setup.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test} needs root (it creates network namespaces and loads eBPF programs), and CI must run it as root");
    }
    eprintln!("{test}: skipping: needs root");
    true
}

/// A lab name unique to this test process: `t-<short>-<pid>`.
pub fn test_lab_name(short: &str) -> String {
    format!("t-{short}-{}", std::process::id())
}

/// Removes labs `t-<short>-<pid>` left by test processes that no longer run (a run killed
/// before its guards could clean up). Failures are printed and otherwise ignored.
pub fn sweep_stale_test_labs(short: &str) {
    let prefix = format!("t-{short}-");
    let mut names: Vec<String> = state::list_labs();
    if let Ok(entries) = std::fs::read_dir(bpf_maps::pins::DEFAULT_ROOT) {
        names.extend(
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok()),
        );
    }
    if let Ok(namespaces) = crate::netns::list_netns() {
        let ns_prefix = format!("{}{prefix}", spec::NETNS_PREFIX);
        names.extend(namespaces.iter().filter_map(|ns| {
            let pid: String = ns
                .strip_prefix(&ns_prefix)?
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            Some(format!("{prefix}{pid}"))
        }));
    }
    names.sort();
    names.dedup();
    for name in names {
        let Some(pid) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            if let Err(err) = Lab::down(&name) {
                eprintln!("removing stale test lab {name} failed: {err:#}");
            }
        }
    }
}
