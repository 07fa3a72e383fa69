//! `tortie-agent`: tortie's per-node agent.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use tortie::{
    agent::{self, AgentConfig, DatastoreType, InputConfig},
    sync::{bird::BirdSettings, load::Capacities},
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
    ///
    /// Inputs come from JSON files (`--endpoints-file`, `--cluster-file`; the default,
    /// `--datastore-type none`) or from etcd (`--datastore-type etcdv3 --etcd-endpoints
    /// URL,...`): IP pools, nodes, IPAM blocks and this node's WorkloadEndpoints, applied as
    /// soon as they change. With etcd, the ready file is written after the first complete
    /// listing has been programmed; while etcd is unreachable at start-up the agent keeps
    /// retrying and programs nothing, and an outage later keeps the dataplane as it is.
    Run(Box<RunArgs>),
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
    /// Where inputs come from: `none` reads the JSON files below, `etcdv3` the datastore at
    /// --etcd-endpoints (the file flags are then refused).
    #[arg(
        long,
        env = "TORTIE_DATASTORE_TYPE",
        value_enum,
        default_value_t = DatastoreType::None
    )]
    datastore_type: DatastoreType,
    /// etcd client URLs, comma-separated (http://10.99.0.2:2379); required with
    /// --datastore-type etcdv3.
    #[arg(long, env = "TORTIE_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// JSON file of this node's endpoints: {"endpoints":[{name,namespace,iface,ipv4,mac,labels}]}
    /// (--datastore-type none only).
    #[arg(long, env = "TORTIE_ENDPOINTS_FILE")]
    endpoints_file: Option<PathBuf>,
    /// JSON file of IP pools and nodes: {"vxlanVNI","vxlanPort","ipPools":[{name,cidr,ipipMode,vxlanMode,natOutgoing}],"nodes":[{name,ipv4Address,blocks}]}
    /// (--datastore-type none only).
    #[arg(long, env = "TORTIE_CLUSTER_FILE")]
    cluster_file: Option<PathBuf>,
    /// File to create once the dataplane is programmed (with etcd: once the first complete
    /// listing has been programmed).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Capacity of the route map (applies when the map is first created).
    #[arg(long, default_value_t = bpf_maps::capacity::ROUTES)]
    max_routes: u32,
    /// Capacity of the interface map (applies when the map is first created).
    #[arg(long, default_value_t = bpf_maps::capacity::IFACES)]
    max_ifaces: u32,
    /// Capacity of the exact policy map: one entry per local endpoint, direction, peer
    /// identity and protocol/port its policies name (applies when the map is first created).
    #[arg(long, default_value_t = bpf_maps::capacity::POLICY_EXACT)]
    max_policy_entries: u32,
    /// Capacity of the IP cache's address map: every pod and node address in the cluster
    /// (applies when the map is first created).
    #[arg(long, default_value_t = bpf_maps::capacity::IPCACHE_ADDRS)]
    max_ipcache_addresses: u32,
    /// BIRD's configuration file: when given, this node speaks BGP and the agent renders
    /// BIRD's configuration from the datastore's Node, BGPConfiguration, BGPPeer and IPPool
    /// resources (--datastore-type etcdv3 only).
    #[arg(long, env = "TORTIE_BIRD_CONFIG")]
    bird_config: Option<PathBuf>,
    /// BIRD's control socket (BIRD's -s).
    #[arg(
        long,
        env = "TORTIE_BIRD_SOCKET",
        default_value = "/var/run/bird/bird.ctl"
    )]
    bird_socket: PathBuf,
    /// The bird binary that checks a configuration before it is installed.
    #[arg(long, default_value = "bird")]
    bird_binary: PathBuf,
    /// Run BIRD as a child of the agent (restarted whenever it exits, with graceful restart
    /// recovery), for a deployment where the agent's container is also BIRD's. Without it,
    /// BIRD is expected to run on its own with --bird-config and --bird-socket.
    #[arg(long, requires = "bird_config")]
    run_bird: bool,
    /// Directory of mounted secrets (<dir>/<secret name>/<key>) holding BGP passwords.
    #[arg(long, env = "TORTIE_BGP_SECRETS_DIR")]
    bgp_secrets_dir: Option<PathBuf>,
    /// Serve Prometheus /metrics, /healthz and /readyz on this address (e.g. 0.0.0.0:9091);
    /// off when not given.
    #[arg(long, env = "TORTIE_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
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
                let args = *args;
                let inputs = InputConfig::from_flags(
                    args.datastore_type,
                    &args.etcd_endpoints,
                    args.endpoints_file,
                    args.cluster_file,
                )?;
                if args.datastore_type == DatastoreType::None && !args.etcd_endpoints.is_empty() {
                    tracing::warn!(
                        "--etcd-endpoints (TORTIE_ETCD_ENDPOINTS) is ignored: inputs come from \
                         files; add --datastore-type etcdv3 to use the datastore"
                    );
                }
                if args.datastore_type == DatastoreType::None && args.bird_config.is_some() {
                    anyhow::bail!(
                        "--bird-config needs --datastore-type etcdv3: BIRD's configuration is \
                         rendered from the datastore's BGP resources"
                    );
                }
                agent::run(AgentConfig {
                    node_name: args.node_name,
                    pin_root: args.common.pin_root,
                    bpf_object: args.bpf_object,
                    uplink: args.common.uplink,
                    workload_prefix: args.common.workload_prefix,
                    inputs,
                    ready_file: args.ready_file,
                    capacities: Capacities {
                        routes: args.max_routes,
                        ifaces: args.max_ifaces,
                        policy_exact: args.max_policy_entries,
                        ipcache_addrs: args.max_ipcache_addresses,
                    },
                    resync_interval: Duration::from_secs_f64(args.resync_seconds.max(0.05)),
                    bird: args.bird_config.map(|config_path| BirdSettings {
                        config_path,
                        socket_path: args.bird_socket,
                        bird_binary: args.bird_binary,
                        secrets_dir: args.bgp_secrets_dir,
                        supervise: args.run_bird,
                    }),
                    metrics_addr: args.metrics_addr,
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
