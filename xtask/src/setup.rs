//! `cargo xtask setup`: everything a fresh Debian 12 machine needs to build and run tortie.
//! Each step checks first and skips what is already there.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::build::run_step;

/// Debian packages the project uses (build, lab, tests).
const DEBIAN_PACKAGES: &[&str] = &[
    "bpftool",
    "iproute2",
    "util-linux",
    "iputils-ping",
    "iperf3",
    "socat",
    "tcpdump",
    "procps",
    "etcd-server",
    "etcd-client",
    "bird2",
    "curl",
    // The benchmark's Calico-style iptables baseline.
    "iptables",
    "ipset",
    // The benchmark's CPU profiles.
    "linux-perf",
];

/// bpf-linker must link against the same LLVM major as rustc (22 for the pinned toolchains).
const BPF_LINKER_VERSION: &str = "^0.13";
const BPF_LINKER_LLVM_FEATURE: &str = "llvm-22";

/// Installs what is missing.
pub fn run() -> Result<()> {
    debian_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    eprintln!("==> setup complete");
    Ok(())
}

fn output(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|package| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
                .is_none_or(|status| !status.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        eprintln!("==> Debian packages: all present");
        return Ok(());
    }
    eprintln!("==> installing Debian packages: {}", missing.join(" "));
    run_step(
        Command::new("apt-get").args(["update", "-qq"]),
        "apt-get update (setup needs root)",
    )?;
    run_step(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )?;
    if missing.contains(&"bird2") {
        keep_packaged_bird_stopped();
    }
    Ok(())
}

/// The bird2 package enables a BIRD service in the host's own namespace; tortie runs BIRD
/// per node (the agent configures it), never that one.
fn keep_packaged_bird_stopped() {
    let succeeds = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|out| out.status.success())
    };
    // systemd where there is one; the package's init script otherwise.
    let stopped = succeeds("systemctl", &["disable", "--now", "bird.service"])
        || (succeeds("service", &["bird", "stop"])
            && succeeds("update-rc.d", &["bird", "disable"]));
    if stopped {
        eprintln!("==> disabled the bird2 package's service (tortie runs BIRD per node)");
    }
}

fn nightly_sysroot() -> Result<PathBuf> {
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]));
    match sysroot {
        Some(path) => Ok(PathBuf::from(path.trim())),
        None => {
            eprintln!("==> installing the nightly toolchain");
            run_step(
                Command::new("rustup").args([
                    "toolchain",
                    "install",
                    "nightly",
                    "--profile",
                    "minimal",
                ]),
                "rustup toolchain install nightly",
            )?;
            let path = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
                .context("nightly rustc still unavailable after installing it")?;
            Ok(PathBuf::from(path.trim()))
        }
    }
}

fn nightly_rust_src() -> Result<()> {
    let sysroot = nightly_sysroot()?;
    if sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        eprintln!("==> nightly rust-src: present");
        return Ok(());
    }
    eprintln!("==> installing nightly rust-src");
    run_step(
        Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
        "rustup component add rust-src",
    )
}

/// Where bpf-linker finds rustc's own LLVM: a `lib/libLLVM.so` symlink into the nightly
/// sysroot. The binary keeps an rpath to it, so it lives in a stable cache directory.
fn llvm_prefix() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/tortie/llvm")
}

fn bpf_linker_works() -> bool {
    output(Command::new("bpf-linker").arg("--version")).is_some()
}

fn bpf_linker() -> Result<()> {
    let sysroot = nightly_sysroot()?;
    let prefix = llvm_prefix();
    link_rustc_llvm(&sysroot, &prefix)?;
    if bpf_linker_works() {
        eprintln!("==> bpf-linker: present");
        return Ok(());
    }
    eprintln!(
        "==> building bpf-linker {BPF_LINKER_VERSION} against rustc's LLVM (about 3 minutes)"
    );
    run_step(
        Command::new("cargo")
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args([
                "--no-default-features",
                "--features",
                BPF_LINKER_LLVM_FEATURE,
            ])
            .env("LLVM_PREFIX", &prefix)
            .env_remove("RUSTUP_TOOLCHAIN"),
        "cargo install bpf-linker",
    )?;
    if !bpf_linker_works() {
        bail!("bpf-linker was installed but does not run; is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

fn link_rustc_llvm(sysroot: &Path, prefix: &Path) -> Result<()> {
    let lib_dir = sysroot.join("lib");
    let llvm = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM shared library in {}", lib_dir.display()))?;
    std::fs::create_dir_all(prefix.join("lib"))?;
    // `libLLVM.so` is what bpf-linker's build links against; the versioned soname is what the
    // installed binary asks the dynamic loader for (found through its rpath to this directory).
    let soname = llvm
        .file_name()
        .context("libLLVM path without a file name")?;
    for link in [
        prefix.join("lib/libLLVM.so"),
        prefix.join("lib").join(soname),
    ] {
        if std::fs::read_link(&link).ok().as_deref() == Some(llvm.as_path()) {
            continue;
        }
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)
            .with_context(|| format!("linking {} to {}", link.display(), llvm.display()))?;
    }
    Ok(())
}
