//! Building the eBPF object and the binaries, linting, and running the tests.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use tortie_lab::Artifacts;

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A cargo invocation rooted at the workspace, free of the variables the outer `cargo run`
/// set for xtask itself (which would pin the wrong toolchain).
fn cargo(toolchain: Option<&str>) -> Command {
    let mut command = Command::new("cargo");
    if let Some(toolchain) = toolchain {
        command.arg(format!("+{toolchain}"));
    }
    command
        .current_dir(workspace_root())
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    command
}

/// Runs `command`, failing with `what` if it does not succeed.
pub fn run_step(command: &mut Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("{what}: could not start {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

const EBPF_TARGET: &str = "bpfel-unknown-none";

fn ebpf_cargo(subcommand: &str) -> Command {
    let mut command = cargo(Some("nightly"));
    command
        .args([subcommand, "-p", "dataplane-ebpf", "--release"])
        .args(["--target", EBPF_TARGET, "-Z", "build-std=core"])
        // BTF for the maps (typed `bpftool map dump`) and the programs.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-C\x1fdebuginfo=2\x1f-C\x1flink-arg=--btf",
        );
    command
}

/// Builds the eBPF programs and returns the object's path.
pub fn ebpf() -> Result<PathBuf> {
    eprintln!("==> building eBPF programs (nightly, {EBPF_TARGET}, BTF)");
    run_step(
        &mut ebpf_cargo("build"),
        "building the eBPF programs (run `cargo xtask setup` if bpf-linker or rust-src is missing)",
    )?;
    let object = workspace_root()
        .join("target")
        .join(EBPF_TARGET)
        .join("release")
        .join("dataplane-ebpf");
    if !object.exists() {
        bail!(
            "the eBPF build succeeded but {} is missing",
            object.display()
        );
    }
    Ok(object)
}

/// Builds the eBPF object and every userspace binary (debug profile).
pub fn all() -> Result<Artifacts> {
    build_all(false)
}

/// Builds the eBPF object and every userspace binary with optimisations, as shipped: what
/// benchmarks measure.
pub fn all_release() -> Result<Artifacts> {
    build_all(true)
}

fn build_all(release: bool) -> Result<Artifacts> {
    let bpf_object = ebpf()?;
    let profile = if release { "release" } else { "debug" };
    eprintln!("==> building tortie binaries ({profile})");
    let mut command = cargo(None);
    command.args([
        "build",
        "--bins",
        "-p",
        "tortie",
        "-p",
        "tortiectl",
        "-p",
        "tortie-cni",
        // The lab's probe tool, for connectivity matrices beyond ping.
        "-p",
        "tortie-lab",
    ]);
    if release {
        command.arg("--release");
    }
    run_step(
        &mut command,
        "building tortie-agent, tortiectl, tortie-cni and tortie-probe",
    )?;
    Ok(Artifacts {
        agent_bin: workspace_root()
            .join("target")
            .join(profile)
            .join("tortie-agent"),
        bpf_object,
    })
}

/// `cargo fmt --check`, clippy on stable for userspace and on nightly for the eBPF crate.
pub fn lint() -> Result<()> {
    eprintln!("==> cargo fmt --check");
    run_step(
        cargo(None).args(["fmt", "--all", "--check"]),
        "cargo fmt --check",
    )?;
    eprintln!("==> clippy (userspace)");
    run_step(
        cargo(None).args(["clippy", "--all-targets", "--", "-D", "warnings"]),
        "clippy on the userspace crates",
    )?;
    eprintln!("==> clippy (eBPF)");
    run_step(
        ebpf_cargo("clippy").args(["--", "-D", "warnings"]),
        "clippy on the eBPF crate",
    )
}

/// Lint, build, then run all tests with the built artifacts.
pub fn test(extra: &[String]) -> Result<()> {
    lint()?;
    let artifacts = all()?;
    eprintln!("==> cargo test");
    run_step(
        cargo(None)
            .arg("test")
            .args(extra)
            .env("TORTIE_BPF_OBJECT", &artifacts.bpf_object)
            .env("TORTIE_AGENT_BIN", &artifacts.agent_bin),
        "the tests",
    )
}
