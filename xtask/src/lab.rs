//! `cargo xtask lab …`: a multi-node tortie cluster in network namespaces, for demos and for
//! poking at the dataplane by hand. The machinery lives in the `tortie-lab` crate, shared with
//! the end-to-end tests.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use tortie_lab::probe::Protocol;
use tortie_lab::spec::ContainerPort;
use tortie_lab::{
    demo, harness, report, Artifacts, DatastoreMode, Encap, Lab, LabSpec, PodRequest, Topology,
};

/// Lab subcommands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build tortie, create the lab (etcd in the fabric, pools and nodes applied with
    /// tortiectl, one agent per node, pods created through tortie-cni), ping every pod pair
    /// and, from every pod, the external host 203.0.113.10. A lab of the same name is replaced.
    Up {
        /// Lab name; part of every namespace (`tortie-<name>-…`) and pin path.
        #[arg(long, default_value = "lab")]
        name: String,
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Pods on each node.
        #[arg(long, default_value_t = 2)]
        pods_per_node: usize,
        /// How pod traffic crosses between nodes (the IP pool's ipipMode/vxlanMode).
        #[arg(long, value_enum, default_value_t = EncapArg::Ipip)]
        encap: EncapArg,
        /// Encapsulate only between subnets (pool mode CrossSubnet instead of Always); needs
        /// --encap ipip or vxlan, and --topology routed to make a difference.
        #[arg(long)]
        cross_subnet: bool,
        /// One fabric segment, or two (10.99.0.0/24 and 10.99.1.0/24) joined by the router.
        #[arg(long, value_enum, default_value_t = TopologyArg::Flat)]
        topology: TopologyArg,
        /// Pod MTU (default: 1500 minus 20 for IPIP or 50 for VXLAN).
        #[arg(long)]
        pod_mtu: Option<u32>,
        /// Where the agents take pools, nodes and pods from: `etcd` (the control plane:
        /// etcd, tortiectl, tortie-cni) or `files` (JSON files, pods wired by the lab).
        #[arg(long, value_enum, default_value_t = DatastoreArg::Etcd)]
        datastore: DatastoreArg,
        /// Leave BIRD out. By default (with the etcd datastore) every node runs BIRD, which
        /// its agent configures from the datastore: a node-to-node mesh sharing the pod blocks.
        #[arg(long)]
        no_bgp: bool,
        /// A lab spec file (YAML: nodes, encapsulation, namespaces, pods with labels and
        /// ports, resources to apply; see xtask/src/lab_file.rs). It replaces the other
        /// options.
        #[arg(long, conflicts_with_all = ["nodes", "pods_per_node", "encap", "cross_subnet",
            "topology", "pod_mtu", "datastore", "no_bgp"])]
        spec: Option<PathBuf>,
    },
    /// Show nodes, agents and pods of a lab.
    Status {
        /// Lab name.
        #[arg(long, default_value = "lab")]
        name: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a node's or pod's network namespace
    /// (`cargo xtask lab exec pod-0-0 -- ping 10.65.0.11`).
    Exec {
        /// Lab name.
        #[arg(long, default_value = "lab")]
        name: String,
        /// `node-<i>`, `pod-<i>-<j>` (or `default/pod-<i>-<j>`), `fabric`, `router` or `ext`.
        target: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Create a pod through tortie-cni in a running etcd lab, in any namespace, with labels
    /// and declared container ports (`cargo xtask lab add-pod --node node-1 shop/web
    /// --label app=web --port http:TCP:80 --serve`). The namespace record is created when
    /// missing; change labels later with `lab exec node-0 -- tortiectl label pod …`.
    AddPod {
        /// Lab name.
        #[arg(long, default_value = "lab")]
        name: String,
        /// Node to run it on.
        #[arg(long, default_value = "node-0")]
        node: String,
        /// `namespace/name` (or `name` in `default`).
        pod: String,
        /// `key=value`, repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// A container port: `NAME:PROTO:PORT` or `PROTO:PORT`, repeatable.
        #[arg(long = "port")]
        ports: Vec<String>,
        /// Serve the declared ports in the pod with tortie-probe (TCP accept, UDP echo, SCTP
        /// INIT ACK), so that `tortie-probe connect` from other pods has an answer.
        #[arg(long)]
        serve: bool,
    },
    /// Delete a pod through tortie-cni DEL in a running etcd lab.
    DeletePod {
        /// Lab name.
        #[arg(long, default_value = "lab")]
        name: String,
        /// `namespace/name` (or `name` in `default`).
        pod: String,
    },
    /// Stop the agents and remove the lab's namespaces, pins and state.
    Down {
        /// Lab name.
        #[arg(long, default_value = "lab")]
        name: String,
    },
}

/// `--encap` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EncapArg {
    /// Plain IPv4 between nodes.
    None,
    /// IP-in-IP (IP protocol 4).
    Ipip,
    /// VXLAN (UDP 4789, VNI 4096).
    Vxlan,
}

impl From<EncapArg> for Encap {
    fn from(arg: EncapArg) -> Self {
        match arg {
            EncapArg::None => Encap::None,
            EncapArg::Ipip => Encap::Ipip,
            EncapArg::Vxlan => Encap::Vxlan,
        }
    }
}

/// `--datastore` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DatastoreArg {
    /// etcd in the fabric, resources from tortiectl, pods through tortie-cni.
    Etcd,
    /// JSON files written by the lab.
    Files,
}

impl From<DatastoreArg> for DatastoreMode {
    fn from(arg: DatastoreArg) -> Self {
        match arg {
            DatastoreArg::Etcd => DatastoreMode::Etcd,
            DatastoreArg::Files => DatastoreMode::Files,
        }
    }
}

/// `--topology` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TopologyArg {
    /// Every node on one segment.
    Flat,
    /// Two segments joined by the router; node i is on segment i % 2.
    Routed,
}

impl From<TopologyArg> for Topology {
    fn from(arg: TopologyArg) -> Self {
        match arg {
            TopologyArg::Flat => Topology::Flat,
            TopologyArg::Routed => Topology::Routed,
        }
    }
}

/// Runs a lab subcommand. `build` is called only by `up`, to build the agent and the eBPF
/// object and return their paths. `exec` exits the process with the command's exit code.
pub fn run(cmd: LabCommand, build: impl FnOnce() -> Result<Artifacts>) -> Result<()> {
    match cmd {
        LabCommand::Up {
            name,
            spec: Some(file),
            ..
        } => {
            let (mut spec, extras) = crate::lab_file::load(&file)?;
            if name != "lab" {
                spec.name = name;
            }
            up(&spec, build, extras)
        }
        LabCommand::Up {
            name,
            nodes,
            pods_per_node,
            encap,
            cross_subnet,
            topology,
            pod_mtu,
            datastore,
            no_bgp,
            spec: None,
        } => {
            let datastore: DatastoreMode = datastore.into();
            let spec = LabSpec::new(name, nodes, pods_per_node)
                .with_encap(encap.into())
                .with_cross_subnet(cross_subnet)
                .with_topology(topology.into())
                .with_pod_mtu(pod_mtu)
                .with_datastore(datastore)
                .with_bgp(!no_bgp && datastore == DatastoreMode::Etcd);
            let extras = crate::lab_file::Extras {
                demo: datastore == DatastoreMode::Etcd,
                ..Default::default()
            };
            up(&spec, build, extras)
        }
        LabCommand::Status { name, json } => status(&name, json),
        LabCommand::Exec { name, target, cmd } => exec(&name, &target, &cmd),
        LabCommand::AddPod {
            name,
            node,
            pod,
            labels,
            ports,
            serve,
        } => add_pod(&name, &node, &pod, &labels, &ports, serve),
        LabCommand::DeletePod { name, pod } => {
            require_root("lab delete-pod")?;
            Lab::load(&name)?.delete_pod(&pod)?;
            eprintln!("pod {pod} deleted");
            Ok(())
        }
        LabCommand::Down { name } => {
            require_root("lab down")?;
            Lab::down(&name)?;
            eprintln!("lab {name} is down");
            Ok(())
        }
    }
}

fn require_root(what: &str) -> Result<()> {
    if !harness::is_root() {
        bail!("`cargo xtask {what}` needs root (it manages network namespaces and bpffs pins); run it as root, e.g. `sudo -E cargo xtask {what}`");
    }
    Ok(())
}

fn up(
    spec: &LabSpec,
    build: impl FnOnce() -> Result<Artifacts>,
    extras: crate::lab_file::Extras,
) -> Result<()> {
    require_root("lab up")?;
    spec.validate()?;
    let artifacts = build().context("building tortie for the lab")?;
    let mut lab = Lab::up(spec, &artifacts)?;
    let color = report::stdout_has_color();
    add_extras(&mut lab, &extras)?;
    let with_demo = extras.demo;
    if with_demo {
        eprintln!(
            "adding {ns}/{web} and {ns}/{db} through tortie-cni (the demo's second namespace)",
            ns = demo::NAMESPACE,
            web = demo::WEB,
            db = demo::DB
        );
        demo::add_pods(&mut lab)?;
    }

    eprintln!("checking connectivity: every pod pings every other pod and the external host once");
    let results = lab.connectivity_matrix();
    let pods: Vec<&str> = lab.pods().iter().map(|p| p.name.as_str()).collect();
    if results.is_empty() {
        println!("fewer than two pods: no pairs to ping");
    } else {
        println!("{}", report::format_matrix_colored(&pods, &results, color));
    }
    if with_demo && results.iter().all(|(_, _, ok)| *ok) {
        eprintln!(
            "applying the demo policy: only {ns}/{web} may reach {ns}/{db}\n{policy}",
            ns = demo::NAMESPACE,
            web = demo::WEB,
            db = demo::DB,
            policy = demo::POLICY
        );
        let after_policy = demo::apply_policy(&lab)?;
        println!(
            "with the policy ({} column: only {} gets in):\n{}",
            demo::DB,
            demo::WEB,
            report::format_matrix_colored(&pods, &after_policy, color)
        );
        if let Some(db) = lab.pod(&format!("{}/{}", demo::NAMESPACE, demo::DB)) {
            println!(
                "why were they dropped? on {db}'s node:\n  cargo xtask lab exec{flag} {node} -- \
                 tortiectl flows --pod {ns}/{db}\n",
                db = demo::DB,
                flag = if lab.name() == "lab" {
                    String::new()
                } else {
                    format!(" --name {}", lab.name())
                },
                node = db.node,
                ns = demo::NAMESPACE,
            );
        }
    }
    let external_ip = lab.external().ip.to_string();
    let external = lab.external_reachability();
    if !external.is_empty() {
        println!("{}", report::format_external(&external_ip, &external));
    }
    let first_pair = lab
        .pods()
        .first()
        .zip(lab.pods().get(1))
        .map(|(a, b)| (a.name.clone(), b.ip.to_string()));
    let first_node = lab.nodes().first().map_or("node-0", |n| n.name.as_str());
    println!(
        "{}",
        report::next_steps(
            lab.name(),
            first_pair.as_ref().map(|(a, ip)| (a.as_str(), ip.as_str())),
            first_node,
            lab.datastore() == DatastoreMode::Etcd,
            lab.nodes().iter().any(|node| node.bird.is_some()),
        )
    );

    let failed: Vec<String> = results
        .iter()
        .filter(|(_, _, ok)| !ok)
        .map(|(from, to, _)| format!("{from} → {to}"))
        .chain(
            external
                .iter()
                .filter(|(_, ok)| !ok)
                .map(|(pod, _)| format!("{pod} → {external_ip}")),
        )
        .collect();
    if !failed.is_empty() && !extras.resources.is_empty() {
        // The spec's own resources (policies) may well be what stops these pings.
        println!(
            "{} of {} pings got no reply; the spec file's resources apply, so that may be \
             intended (tortiectl flows on the destination's node says why)",
            failed.len(),
            results.len() + external.len()
        );
        return Ok(());
    }
    if !failed.is_empty() {
        const SHOWN: usize = 12;
        let more = match failed.len().saturating_sub(SHOWN) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        bail!(
            "{} of {} pings failed: {}{more}. The lab stays up for debugging; agent logs are {}/node-*.agent.log",
            failed.len(),
            results.len() + external.len(),
            failed[..failed.len().min(SHOWN)].join(", "),
            lab.state_dir().display()
        );
    }
    Ok(())
}

fn add_pod(
    name: &str,
    node: &str,
    pod: &str,
    labels: &[String],
    ports: &[String],
    serve: bool,
) -> Result<()> {
    require_root("lab add-pod")?;
    let mut lab = Lab::load(name)?;
    let (namespace, pod_name) = pod.split_once('/').unwrap_or(("default", pod));
    let labels = labels
        .iter()
        .map(|label| {
            label
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("--label {label:?}: expected key=value"))
        })
        .collect::<Result<_>>()?;
    let ports = ports
        .iter()
        .map(|port| parse_port(port))
        .collect::<Result<Vec<_>>>()?;
    let namespace_known = lab
        .tortiectl(&["get", "namespace", namespace])
        .is_ok_and(|out| out.status.success());
    if !namespace_known {
        lab.apply_namespace(namespace, &Default::default())?;
    }
    let created = lab.add_pod_with(&PodRequest {
        node: node.to_owned(),
        namespace: namespace.to_owned(),
        name: pod_name.to_owned(),
        labels,
        ports,
    })?;
    if serve {
        lab.serve_probes(&created.key())?;
    }
    println!(
        "pod {} on {} has {} (interface {})",
        created.key(),
        created.node,
        created.ip,
        created.host_iface
    );
    Ok(())
}

/// The namespaces, pods and resources of a lab spec file, in that order.
fn add_extras(lab: &mut Lab, extras: &crate::lab_file::Extras) -> Result<()> {
    for namespace in &extras.namespaces {
        eprintln!("creating namespace {}", namespace.name);
        lab.apply_namespace(&namespace.name, &namespace.labels)?;
    }
    for pod in &extras.pods {
        let (namespace, name) = pod.name.split_once('/').unwrap_or(("default", &pod.name));
        eprintln!(
            "adding {namespace}/{name} on {} through tortie-cni",
            pod.node
        );
        let ports = pod
            .ports
            .iter()
            .map(|port| parse_port(port))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("pod {}", pod.name))?;
        let created = lab.add_pod_with(&PodRequest {
            node: pod.node.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            labels: pod.labels.clone(),
            ports,
        })?;
        if pod.serve {
            lab.serve_probes(&created.key())?;
        }
    }
    for (file_name, yaml) in &extras.resources {
        eprintln!("applying {file_name} with tortiectl");
        lab.apply_yaml(file_name, yaml)?;
    }
    Ok(())
}

/// `NAME:PROTO:PORT` or `PROTO:PORT`.
fn parse_port(text: &str) -> Result<ContainerPort> {
    let parts: Vec<&str> = text.split(':').collect();
    let (name, protocol, port) = match parts.as_slice() {
        [protocol, port] => ("", *protocol, *port),
        [name, protocol, port] => (*name, *protocol, *port),
        _ => bail!("--port {text:?}: expected NAME:PROTO:PORT or PROTO:PORT"),
    };
    let protocol: Protocol = protocol
        .parse()
        .map_err(|err: String| anyhow::anyhow!("--port {text:?}: {err}"))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("--port {text:?}: the port is 1-65535"))?;
    Ok(ContainerPort {
        name: name.to_owned(),
        protocol: protocol.name().to_owned(),
        port,
    })
}

fn status(name: &str, json: bool) -> Result<()> {
    let status = Lab::load(name)?.status();
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", report::format_status(&status));
    }
    Ok(())
}

fn exec(name: &str, target: &str, cmd: &[String]) -> Result<()> {
    require_root("lab exec")?;
    let lab = Lab::load(name)?;
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let status = lab
        .command(target, &args)?
        .status()
        .with_context(|| format!("running `{}` in {target}", args.join(" ")))?;
    // Like a shell: a command killed by a signal exits with 128 + the signal number.
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    std::process::exit(code)
}
