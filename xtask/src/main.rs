//! `cargo xtask`: set-up, builds, the lab and the test suite.

mod bench;
mod bgp_bench;
mod build;
mod cni_bench;
mod dataplane_bench;
mod lab;
mod lab_file;
mod plots;
mod policy_bench;
mod profile;
mod scale_bench;
mod setup;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "tortie's development tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building and running tortie needs (idempotent: skips what is present).
    Setup,
    /// Build the eBPF programs with BTF; prints the object's path as the last line.
    BuildEbpf,
    /// Build the eBPF object and the userspace binaries.
    Build,
    /// A multi-node cluster in network namespaces.
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
    /// Formatting and clippy (userspace on stable, eBPF on nightly) with warnings as errors.
    Lint,
    /// Measure the dataplane and write a report (needs root).
    Bench(bench::BenchArgs),
    /// Lint, build, then run every test (unit, BPF_PROG_TEST_RUN and lab end-to-end; needs root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Setup => setup::run(),
        Command::BuildEbpf => {
            let object = build::ebpf()?;
            println!("{}", object.display());
            Ok(())
        }
        Command::Build => {
            let artifacts = build::all()?;
            println!("{}", artifacts.bpf_object.display());
            println!("{}", artifacts.agent_bin.display());
            Ok(())
        }
        Command::Lab { command } => lab::run(command, build::all),
        Command::Lint => build::lint(),
        Command::Bench(args) => bench::run(&args),
        Command::Test { cargo_args } => build::test(&cargo_args),
    }
}
