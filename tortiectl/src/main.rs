//! `tortiectl`: calicoctl's counterpart for tortie.

use std::{net::Ipv4Addr, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tortie_datastore::{EtcdDatastore, EtcdOptions};
use tortie_ipam::Ipam;
use tortie_resources::{parse_documents, to_json, to_yaml, Kind, Resource};
use tortiectl::label::{self, LabelChange};
use tortiectl::{ipam, ResourceStore};

#[derive(Parser)]
#[command(
    name = "tortiectl",
    version,
    about = "Manage tortie's Calico-compatible resources and IPAM, and inspect the dataplane"
)]
struct Cli {
    #[command(flatten)]
    datastore: DatastoreArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct DatastoreArgs {
    /// Datastore type (only etcdv3 so far).
    #[arg(
        long,
        global = true,
        env = "TORTIE_DATASTORE_TYPE",
        default_value = "etcdv3"
    )]
    datastore_type: String,
    /// etcd endpoints, comma separated.
    #[arg(
        long,
        global = true,
        env = "TORTIE_ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:2379"
    )]
    etcd_endpoints: String,
}

#[derive(Args)]
struct Files {
    /// YAML or JSON file(s) with one or more resources; `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    /// Names in a table.
    Ps,
    /// More columns.
    Wide,
    /// YAML documents.
    Yaml,
    /// JSON.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create or replace resources.
    Apply(Files),
    /// Create resources that must not exist yet.
    Create(Files),
    /// Replace resources that must exist.
    Replace(Files),
    /// Check resources without touching the datastore.
    Validate(Files),
    /// Delete resources named in files, or `KIND NAME`.
    Delete {
        /// Kind (calicoctl spellings: ippool, wep, gnp, ...).
        kind: Option<String>,
        /// Name.
        name: Option<String>,
        /// Namespace for namespaced kinds.
        #[arg(short, long)]
        namespace: Option<String>,
        /// Files naming the resources.
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
    },
    /// Show resources.
    Get {
        /// Kind (calicoctl spellings: ippool, wep, gnp, ...).
        kind: String,
        /// Name (all when omitted).
        name: Option<String>,
        /// Namespace for namespaced kinds.
        #[arg(short, long)]
        namespace: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Ps)]
        output: Output,
    },
    /// Add, change or remove labels: `label KIND NAME key=value… [key-…]`. Labelling a pod
    /// record relabels its workload endpoints too.
    Label {
        /// Kind (calicoctl spellings: pod, namespace, wep, node, ...).
        kind: String,
        /// Name.
        name: String,
        /// `key=value` to set, `key-` to remove.
        #[arg(required = true)]
        labels: Vec<String>,
        /// Namespace for namespaced kinds.
        #[arg(short, long)]
        namespace: Option<String>,
        /// Change labels that already have another value.
        #[arg(long)]
        overwrite: bool,
        /// Treat bare keys as labels to remove.
        #[arg(long)]
        remove: bool,
    },
    /// Inspect this node's eBPF dataplane maps (needs root).
    Bpf(tortiectl::bpf::BpfArgs),
    /// Packets the dataplane dropped on this node, with the reason (and the policy rule),
    /// like a flow log (needs root).
    Flows(tortiectl::flows::FlowsArgs),
    /// This node's BGP sessions (`node status`), read from BIRD.
    Node(tortiectl::node::NodeArgs),
    /// IP address management.
    Ipam {
        #[command(subcommand)]
        command: IpamCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum IpamCommand {
    /// Pool and block usage, or who holds one address.
    Show {
        /// An address to look up.
        #[arg(long)]
        ip: Option<Ipv4Addr>,
    },
    /// Report leaked and double-allocated addresses and inconsistent handles.
    Check,
    /// Release one address.
    Release {
        /// The address.
        #[arg(long)]
        ip: Ipv4Addr,
    },
}

fn read_files(files: &[PathBuf]) -> Result<Vec<Resource>> {
    let mut resources = Vec::new();
    for file in files {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading standard input")?
        } else {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        };
        let parsed = parse_documents(&text).with_context(|| format!("in {}", file.display()))?;
        resources.extend(parsed.into_iter().map(Resource::with_defaults));
    }
    Ok(resources)
}

async fn connect(args: &DatastoreArgs) -> Result<ResourceStore> {
    if args.datastore_type != "etcdv3" {
        bail!(
            "datastore type {:?} is not supported yet; use etcdv3 (TORTIE_DATASTORE_TYPE=etcdv3)",
            args.datastore_type
        );
    }
    let endpoints: Vec<String> = args
        .etcd_endpoints
        .split(',')
        .map(|e| e.trim().to_string())
        .collect();
    let datastore = EtcdDatastore::connect(&endpoints, EtcdOptions::default()).await?;
    Ok(ResourceStore::new(Arc::new(datastore)))
}

fn parse_kind(kind: &str) -> Result<Kind> {
    kind.parse::<Kind>().map_err(|e| anyhow::anyhow!("{e}"))
}

fn render(resources: &[Resource], output: Output) -> String {
    match output {
        Output::Yaml => to_yaml(resources),
        Output::Json => to_json(resources),
        Output::Ps | Output::Wide => {
            let mut out = String::new();
            let namespaced = resources.first().is_some_and(|r| r.kind().namespaced());
            let header = if namespaced {
                "NAMESPACE   NAME"
            } else {
                "NAME"
            };
            let extra = matches!(output, Output::Wide)
                || resources.iter().any(|r| matches!(r, Resource::IpPool(_)));
            out.push_str(header);
            if extra && resources.iter().all(|r| matches!(r, Resource::IpPool(_))) {
                out.push_str("   CIDR   BLOCKSIZE   IPIP   VXLAN   NATOUTGOING   DISABLED");
            }
            out.push('\n');
            for resource in resources {
                if namespaced {
                    out.push_str(&format!("{:<11} ", resource.namespace().unwrap_or("")));
                }
                out.push_str(resource.name());
                if let Resource::IpPool(pool) = resource {
                    let s = &pool.spec;
                    out.push_str(&format!(
                        "   {}   {}   {:?}   {:?}   {}   {}",
                        s.cidr,
                        s.block_size(),
                        s.ipip_mode(),
                        s.vxlan_mode(),
                        s.nat_outgoing(),
                        s.disabled()
                    ));
                }
                out.push('\n');
            }
            out
        }
    }
}

/// The IPv4 addresses of the WorkloadEndpoints `selector` matches (for `flows --trace`).
async fn selected_addresses(datastore: &DatastoreArgs, selector: &str) -> Result<Vec<Ipv4Addr>> {
    let parsed = tortie_resources::Selector::parse(selector)
        .map_err(|error| anyhow::anyhow!("--selector {selector:?}: {error}"))?;
    let store = connect(datastore).await?;
    let mut addresses = Vec::new();
    for resource in store.list(Kind::WorkloadEndpoint, None).await? {
        let Resource::WorkloadEndpoint(endpoint) = resource else {
            continue;
        };
        if parsed.matches(&endpoint.metadata.labels) {
            addresses.extend(
                endpoint
                    .spec
                    .ip_nets()
                    .into_iter()
                    .filter_map(|net| match net {
                        ipnet::IpNet::V4(net) => Some(net.addr()),
                        ipnet::IpNet::V6(_) => None,
                    }),
            );
        }
    }
    if addresses.is_empty() {
        bail!("--selector {selector:?} matches no WorkloadEndpoint with an IPv4 address");
    }
    Ok(addresses)
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Version => {
            println!("tortiectl {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Bpf(args) => {
            print!("{}", tortiectl::bpf::run(&args)?);
            Ok(())
        }
        Command::Flows(args) => {
            let selected = match &args.selector {
                Some(selector) => selected_addresses(&cli.datastore, selector).await?,
                None => Vec::new(),
            };
            tortiectl::flows::run(&args, &selected)
        }
        Command::Node(args) => {
            print!("{}", tortiectl::node::run(&args)?);
            Ok(())
        }
        Command::Validate(files) => {
            let resources = read_files(&files.files)?;
            tortie_resources::validate_all(&resources)
                .map_err(|problems| anyhow::anyhow!(problems.join("\n")))?;
            println!("{} resource(s) valid", resources.len());
            Ok(())
        }
        Command::Apply(files) | Command::Create(files) | Command::Replace(files)
            if files.files.is_empty() =>
        {
            bail!("no files given")
        }
        Command::Apply(files) => {
            write_all(&cli.datastore, &files, "applied", |store, r| {
                Box::pin(async move { store.apply(&r).await })
            })
            .await
        }
        Command::Create(files) => {
            write_all(&cli.datastore, &files, "created", |store, r| {
                Box::pin(async move { store.create(&r).await })
            })
            .await
        }
        Command::Replace(files) => {
            write_all(&cli.datastore, &files, "replaced", |store, r| {
                Box::pin(async move { store.replace(&r).await })
            })
            .await
        }
        Command::Delete {
            kind,
            name,
            namespace,
            files,
        } => {
            let store = connect(&cli.datastore).await?;
            let targets: Vec<(Kind, Option<String>, String)> = if !files.is_empty() {
                read_files(&files)?
                    .iter()
                    .map(|r| {
                        (
                            r.kind(),
                            r.namespace().map(str::to_string),
                            r.name().to_string(),
                        )
                    })
                    .collect()
            } else {
                let (Some(kind), Some(name)) = (kind, name) else {
                    bail!("give KIND NAME or -f FILE");
                };
                let kind = parse_kind(&kind)?;
                let namespace = kind
                    .namespaced()
                    .then(|| namespace.unwrap_or_else(|| "default".into()));
                vec![(kind, namespace, name)]
            };
            for (kind, namespace, name) in &targets {
                store.delete(*kind, namespace.as_deref(), name).await?;
            }
            println!("Successfully deleted {} resource(s)", targets.len());
            Ok(())
        }
        Command::Get {
            kind,
            name,
            namespace,
            all_namespaces,
            output,
        } => {
            let store = connect(&cli.datastore).await?;
            let kind = parse_kind(&kind)?;
            let namespace = if !kind.namespaced() || all_namespaces {
                None
            } else {
                Some(namespace.unwrap_or_else(|| "default".into()))
            };
            let resources = match name {
                Some(name) => match store.get(kind, namespace.as_deref(), &name).await? {
                    Some(resource) => vec![resource],
                    None => bail!("{} {name} does not exist", kind.name()),
                },
                None => store.list(kind, namespace.as_deref()).await?,
            };
            print!("{}", render(&resources, output));
            Ok(())
        }
        Command::Label {
            kind,
            name,
            labels,
            namespace,
            overwrite,
            remove,
        } => {
            let kind = parse_kind(&kind)?;
            let changes = labels
                .iter()
                .map(|arg| LabelChange::parse(arg, remove))
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| anyhow::anyhow!(e))?;
            let namespace = kind
                .namespaced()
                .then(|| namespace.unwrap_or_else(|| "default".into()));
            let store = connect(&cli.datastore).await?;
            let done = label::label(
                &store,
                kind,
                namespace.as_deref(),
                &name,
                &changes,
                overwrite,
            )
            .await?;
            if done.unchanged {
                println!(
                    "{} {name}: labels already as asked, nothing changed",
                    kind.name()
                );
            } else {
                for written in &done.written {
                    println!("Successfully relabelled {written}");
                }
            }
            Ok(())
        }
        Command::Ipam { command } => {
            let store = connect(&cli.datastore).await?;
            match command {
                IpamCommand::Show { ip: Some(ip) } => {
                    println!("{}", ipam::show_ip(&store, ip).await?)
                }
                IpamCommand::Show { ip: None } => print!("{}", ipam::show(&store).await?),
                IpamCommand::Check => {
                    let report = ipam::run_check(&store).await?;
                    print!("{}", ipam::render_check(&report));
                    if !report.is_clean() {
                        bail!("IPAM check found {} problem(s)", report.problems.len());
                    }
                }
                IpamCommand::Release { ip } => {
                    let handle = Ipam::new(store.datastore()).release_ip(ip).await?;
                    match handle {
                        Some(handle) => println!("released {ip} (held by {handle})"),
                        None => println!("{ip} was not allocated"),
                    }
                }
            }
            Ok(())
        }
    }
}

type WriteFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Resource, tortiectl::StoreError>> + 'a>,
>;

async fn write_all(
    datastore: &DatastoreArgs,
    files: &Files,
    verb: &str,
    write: impl for<'a> Fn(&'a ResourceStore, Resource) -> WriteFuture<'a>,
) -> Result<()> {
    let resources = read_files(&files.files)?;
    let store = connect(datastore).await?;
    // The set is checked as a whole first: an invalid document means nothing is written.
    store.check(&resources).await?;
    for resource in &resources {
        write(&store, resource.clone())
            .await
            .with_context(|| format!("{} {}", verb.trim_end_matches('d'), resource.describe()))?;
    }
    println!("Successfully {verb} {} resource(s)", resources.len());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
