//! `tortie-agent`: tortie's per-node agent.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use tortie::{
    agent::{self, AgentConfig},
    sync::load::Capacities,
};

#[derive(Parser)]
#[command(
    name = "tortie-agent",
    version,
    about = "tortie's node agent: loads, attaches and programs the eBPF dataplane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the programs, attach them and keep the maps in sync (until SIGTERM).
    Run(RunArgs),
    /// Remove every program, pin and kernel route the agent created.
    Cleanup(CommonArgs),
}

#[derive(Args)]
struct CommonArgs {
    /// bpffs directory for pinned maps and links.
    #[arg(long, env = "TORTIE_PIN_ROOT", default_value = bpf_maps::pins::DEFAULT_ROOT)]
    pin_root: PathBuf,
    /// The interface facing the fabric.
    #[arg(long, env = "TORTIE_UPLINK")]
    uplink: Option<String>,
    /// Prefix of host-side pod interfaces.
    #[arg(long, env = "TORTIE_WORKLOAD_PREFIX", default_value = "cali")]
    workload_prefix: String,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// This node's name.
    #[arg(long, env = "TORTIE_NODE_NAME")]
    node_name: String,
    /// The compiled eBPF object (`cargo xtask build-ebpf` prints its path).
    #[arg(
        long,
        env = "TORTIE_BPF_OBJECT",
        default_value = "/usr/lib/tortie/tortie.bpf.o"
    )]
    bpf_object: PathBuf,
    /// JSON file of this node's endpoints: {"endpoints":[{name,namespace,iface,ipv4,mac,labels}]}.
    #[arg(long, env = "TORTIE_ENDPOINTS_FILE")]
    endpoints_file: Option<PathBuf>,
    /// JSON file of IP pools and nodes: {"vxlanVNI","vxlanPort","ipPools":[{name,cidr,ipipMode,vxlanMode,natOutgoing}],"nodes":[{name,ipv4Address,blocks}]}.
    #[arg(long, env = "TORTIE_CLUSTER_FILE")]
    cluster_file: Option<PathBuf>,
    /// File to create once the dataplane is programmed.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Capacity of the route map (applies when the map is first created).
    #[arg(long, default_value_t = bpf_maps::capacity::ROUTES)]
    max_routes: u32,
    /// Capacity of the interface map (applies when the map is first created).
    #[arg(long, default_value_t = bpf_maps::capacity::IFACES)]
    max_ifaces: u32,
    /// Seconds between re-reads of the inputs and re-checks of the dataplane.
    #[arg(long, default_value_t = 1.0)]
    resync_seconds: f64,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                agent::run(AgentConfig {
                    node_name: args.node_name,
                    pin_root: args.common.pin_root,
                    bpf_object: args.bpf_object,
                    uplink: args.common.uplink,
                    workload_prefix: args.common.workload_prefix,
                    endpoints_file: args.endpoints_file,
                    cluster_file: args.cluster_file,
                    ready_file: args.ready_file,
                    capacities: Capacities {
                        routes: args.max_routes,
                        ifaces: args.max_ifaces,
                    },
                    resync_interval: Duration::from_secs_f64(args.resync_seconds.max(0.05)),
                })
                .await
            }
            Command::Cleanup(args) => {
                agent::cleanup(
                    &args.pin_root,
                    &args.workload_prefix,
                    args.uplink.as_deref(),
                )
                .await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
