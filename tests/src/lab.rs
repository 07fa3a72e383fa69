//! A running lab: bring it up, find its parts, run commands in it, control its agents, remove it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::agent::{self, AgentProcess, READY_TIMEOUT};
use crate::artifacts::Artifacts;
use crate::bird;
use crate::bpffs;
use crate::capture::Capture;
use crate::cluster::ClusterFile;
use crate::control_plane::{self, EtcdState};
use crate::counters;
use crate::endpoints::EndpointsFile;
use crate::netns::{self, nsenter_command};
use crate::report::Progress;
use crate::spec::{
    self, DatastoreMode, Encap, ExternalHost, LabSpec, Node, Pod, Router, Topology,
    EXTERNAL_TARGET, ROUTER_TARGET,
};
use crate::state::LabState;
use crate::teardown::{teardown, TeardownOptions};
use crate::topology::{self, step};
use crate::Signal;

mod workloads;

pub use workloads::{PodRequest, ProbeResult};

/// How many pings of the connectivity matrix run at once.
const PING_PARALLELISM: usize = 16;

/// How long the agents get to program a change made through the datastore.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);

/// A lab that is up, as recorded in its state file.
#[derive(Clone, Debug)]
pub struct Lab {
    state: LabState,
}

/// What `cargo xtask lab status --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct LabStatus {
    /// Lab name.
    pub name: String,
    /// The pool's encapsulation (`none`, `ipip`, `vxlan`).
    pub encap: Encap,
    /// Whether the pool encapsulates only between subnets (`CrossSubnet`).
    pub cross_subnet: bool,
    /// The fabric layout (`flat`, `routed`).
    pub topology: Topology,
    /// The router between the segments and the external host.
    pub router: Router,
    /// The external host.
    pub external: ExternalHost,
    /// Nodes with their agents.
    pub nodes: Vec<NodeStatus>,
    /// Pods.
    pub pods: Vec<Pod>,
}

/// A node and whether its agent runs.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    /// `node-<i>`.
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Its fabric address.
    pub ip: Ipv4Addr,
    /// Its fabric segment (`br<segment>`, `10.99.<segment>.0/24`).
    pub segment: u8,
    /// Pid of the agent last started.
    pub agent_pid: Option<u32>,
    /// Whether that agent still runs.
    pub agent_running: bool,
    /// The agent's pin root.
    pub pin_root: PathBuf,
}

impl Lab {
    /// Builds the lab described by `spec` and starts one agent per node, waiting for each to be
    /// ready. Leftovers of an earlier lab with the same name are removed first. On failure
    /// everything created is removed and the error names the failed step. Does not check
    /// connectivity (see [`Lab::connectivity_matrix`]). Needs root.
    pub fn up(spec: &LabSpec, artifacts: &Artifacts) -> Result<Lab> {
        spec.validate().context("invalid lab description")?;
        artifacts.check()?;
        let progress = Progress::new();
        let name = spec.name.as_str();
        step(
            &progress,
            &format!("removing leftovers of lab {name}"),
            || {
                let options = TeardownOptions {
                    agent_cleanup: false,
                    keep_logs: false,
                };
                teardown(name, options, &progress)
            },
        )?;
        let mut lab = Lab {
            state: LabState::planned(spec, artifacts),
        };
        match lab.build(&progress) {
            Ok(()) => {
                let mode = if lab.state.cross_subnet {
                    " (CrossSubnet)"
                } else {
                    ""
                };
                progress.step(format_args!(
                    "lab {name} is up: {} node(s), {} pod(s), encap {}{mode}, {} fabric",
                    lab.state.nodes.len(),
                    lab.state.pods.len(),
                    lab.state.encap,
                    lab.state.topology
                ));
                Ok(lab)
            }
            Err(err) => {
                progress.step("tearing down what was created");
                let options = TeardownOptions {
                    agent_cleanup: false,
                    keep_logs: true,
                };
                if let Err(cleanup_err) = teardown(name, options, &progress) {
                    progress.warn(format_args!("{cleanup_err:#}"));
                }
                Err(err.context(format!("bringing lab {name} up failed")))
            }
        }
    }

    fn build(&mut self, progress: &Progress) -> Result<()> {
        let name = self.state.name.clone();
        step(progress, "checking bpffs at /sys/fs/bpf", || {
            Ok(bpffs::ensure_bpffs()?)
        })?;
        step(progress, "writing lab state", || Ok(self.state.save()?))?;
        let topology = self.state.topology;
        step(
            progress,
            &format!(
                "creating fabric {} ({topology}: {} segment(s))",
                spec::fabric_netns(&name),
                topology.segments()
            ),
            || topology::create_fabric(&name, topology),
        )?;
        let (router, external) = (&self.state.router, &self.state.external);
        let what = format!(
            "creating router {} and external host {} ({})",
            router.netns, external.netns, external.ip
        );
        step(progress, &what, || {
            topology::create_router_and_external(&name, router, external)
        })?;
        for node in &self.state.nodes {
            let what = format!("creating {} ({}, {})", node.name, node.netns, node.ip);
            step(progress, &what, || topology::create_node(&name, node))?;
        }
        match self.state.datastore {
            DatastoreMode::Files => self.build_from_files(progress),
            DatastoreMode::Etcd => self.build_control_plane(progress),
        }
    }

    /// Pods wired by the lab itself, agents reading the endpoints and cluster files.
    fn build_from_files(&mut self, progress: &Progress) -> Result<()> {
        let name = self.state.name.clone();
        for pod in &self.state.pods {
            let node = self.node_of(pod)?;
            let what = format!(
                "creating {} ({} on {}, {})",
                pod.name, pod.ip, pod.node, pod.host_iface
            );
            step(progress, &what, || topology::create_pod(node, pod))?;
        }
        step(progress, "writing endpoints files", || {
            for node in &self.state.nodes {
                EndpointsFile::for_node(&node.name, &self.state.pods)
                    .write(&node.endpoints_file)?;
            }
            Ok(())
        })?;
        let cluster_file = spec::cluster_file(&name);
        let what = format!("writing cluster file {}", cluster_file.display());
        step(progress, &what, || {
            let cluster = ClusterFile::for_lab(&self.state.spec(), &self.state.nodes);
            Ok(cluster.write(&cluster_file)?)
        })?;
        self.start_all_agents(progress)
    }

    /// etcd in the fabric, resources applied with tortiectl, agents watching etcd, pods
    /// created through tortie-cni.
    fn build_control_plane(&mut self, progress: &Progress) -> Result<()> {
        let name = self.state.name.clone();
        self.state.artifacts.check_control_plane()?;
        let what = format!(
            "starting etcd in {} at {}",
            spec::fabric_netns(&name),
            spec::etcd_endpoint()
        );
        step(progress, &what, || {
            let routed = self.state.topology.segments() > 1;
            control_plane::wire_etcd_address(&name, spec::segment_gateway(0), routed)?;
            // A fresh lab starts from an empty database, also when a crashed one left its
            // in-memory copy behind.
            let _ = std::fs::remove_dir_all(spec::etcd_memory_dir(&name));
            self.state.etcd = Some(control_plane::start_etcd(&name, self.state.etcd_in_memory)?);
            for node in &mut self.state.nodes {
                node.etcd_endpoints = Some(spec::etcd_endpoint());
            }
            Ok(self.state.save()?)
        })?;
        let resources = self.state_dir().join("resources.yaml");
        let what = format!(
            "applying the IP pool, {} node(s) and pod records with tortiectl ({})",
            self.state.nodes.len(),
            resources.display()
        );
        step(progress, &what, || {
            let yaml = control_plane::initial_resources(
                &self.state.spec(),
                &self.state.nodes,
                &self.state.pods,
            );
            control_plane::apply(&name, &self.state.artifacts, &yaml, &resources)
        })?;
        self.start_all_agents(progress)?;
        for node in self.state.nodes.iter().filter(|node| node.bird.is_some()) {
            let what = format!("starting BIRD on {} (configured by its agent)", node.name);
            step(progress, &what, || {
                bird::start(node, bird::Start::Fresh).map(drop)
            })?;
        }
        for index in 0..self.state.pods.len() {
            let pod = self.state.pods[index].clone();
            let what = format!("creating {} on {} through tortie-cni", pod.key(), pod.node);
            let attachment = step(progress, &what, || {
                let node = self.node_of(&pod)?;
                control_plane::add_pod(&name, &self.state.artifacts, node, &pod)
            })?;
            attachment.record_in(&mut self.state.pods[index]);
            self.state.save()?;
        }
        step(
            progress,
            "waiting for every node's maps to hold every pod",
            || self.wait_converged(CONVERGE_TIMEOUT),
        )
    }

    fn start_all_agents(&mut self, progress: &Progress) -> Result<()> {
        let nodes: Vec<String> = self.state.nodes.iter().map(|n| n.name.clone()).collect();
        for node in nodes {
            step(progress, &format!("starting agent on {node}"), || {
                self.start_agent(&node)
            })?;
        }
        Ok(())
    }

    /// The lab `name` as recorded by `up`; fails if it is not up.
    pub fn load(name: &str) -> Result<Lab> {
        spec::validate_lab_name(name)?;
        match LabState::load(name)? {
            Some(state) => Ok(Lab { state }),
            None => bail!(
                "lab {name} is not up (no {}); start it with `cargo xtask lab up --name {name}`",
                crate::state::state_file(name).display()
            ),
        }
    }

    /// Removes lab `name`: stops the agents (SIGTERM, SIGKILL after 3 s), runs
    /// `tortie-agent cleanup` in each node (failures are reported, not fatal; it runs after the
    /// stop because an agent keeps forwarding in place when it exits and would otherwise
    /// re-attach what cleanup removes), kills whatever still runs in the lab's namespaces, and
    /// deletes the namespaces, pins and state. Succeeds if the lab does not exist.
    pub fn down(name: &str) -> Result<()> {
        let progress = Progress::new();
        let options = TeardownOptions {
            agent_cleanup: true,
            keep_logs: false,
        };
        teardown(name, options, &progress)
    }

    /// The lab name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The state directory (`/run/tortie/labs/<lab>`), where agent logs are.
    pub fn state_dir(&self) -> PathBuf {
        spec::state_dir(&self.state.name)
    }

    /// The artifacts the agents run with.
    pub fn artifacts(&self) -> &Artifacts {
        &self.state.artifacts
    }

    /// All nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.state.nodes
    }

    /// All pods.
    pub fn pods(&self) -> &[Pod] {
        &self.state.pods
    }

    /// The spec the lab was built from.
    pub fn spec(&self) -> LabSpec {
        self.state.spec()
    }

    /// The pool's encapsulation.
    pub fn encap(&self) -> Encap {
        self.state.encap
    }

    /// The fabric layout.
    pub fn topology(&self) -> Topology {
        self.state.topology
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.state.router
    }

    /// The external host.
    pub fn external(&self) -> &ExternalHost {
        &self.state.external
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.state.nodes.iter().find(|n| n.name == name)
    }

    /// The pod called `name` (or `<namespace>/<name>`).
    pub fn pod(&self, name: &str) -> Option<&Pod> {
        let (namespace, pod) = match name.split_once('/') {
            Some((namespace, pod)) => (Some(namespace), pod),
            None => (None, name),
        };
        self.state
            .pods
            .iter()
            .find(|p| p.name == pod && namespace.is_none_or(|ns| p.namespace == ns))
    }

    fn node_of(&self, pod: &Pod) -> Result<&Node> {
        self.node(&pod.node)
            .ok_or_else(|| anyhow!("pod {} names unknown node {}", pod.name, pod.node))
    }

    fn pod_or_err(&self, name: &str) -> Result<&Pod> {
        self.pod(name)
            .ok_or_else(|| anyhow!("lab {} has no pod {name}", self.state.name))
    }

    fn node_or_err(&self, name: &str) -> Result<&Node> {
        self.node(name).ok_or_else(|| {
            let known: Vec<&str> = self.state.nodes.iter().map(|n| n.name.as_str()).collect();
            anyhow!(
                "lab {} has no node {name} (nodes: {})",
                self.state.name,
                known.join(", ")
            )
        })
    }

    /// The namespace of `target`: a pod (`pod-0-0`, `default/pod-0-0`), a node (`node-0`),
    /// `fabric`, `router`, `ext`, or a full namespace name of this lab.
    pub fn netns_of(&self, target: &str) -> Result<String> {
        if let Some(pod) = self.pod(target) {
            return Ok(pod.netns.clone());
        }
        if let Some(node) = self.node(target) {
            return Ok(node.netns.clone());
        }
        match target {
            "fabric" => return Ok(spec::fabric_netns(&self.state.name)),
            ROUTER_TARGET => return Ok(self.state.router.netns.clone()),
            EXTERNAL_TARGET => return Ok(self.state.external.netns.clone()),
            _ => {}
        }
        if target.starts_with(&spec::netns_prefix(&self.state.name)) && netns::netns_exists(target)
        {
            return Ok(target.to_owned());
        }
        let nodes: Vec<&str> = self.state.nodes.iter().map(|n| n.name.as_str()).collect();
        let pods: Vec<&str> = self.state.pods.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "lab {} has no node or pod named {target:?} (nodes: {}; pods: {}; or `fabric`, `router`, `ext`)",
            self.state.name,
            nodes.join(", "),
            pods.join(", ")
        )
    }

    /// A command running `cmd` inside `target`'s namespace; configure stdio and run it.
    pub fn command(&self, target: &str, cmd: &[&str]) -> Result<Command> {
        let (program, args) = cmd
            .split_first()
            .ok_or_else(|| anyhow!("no command given to run in {target}"))?;
        let ns = self.netns_of(target)?;
        let mut command = nsenter_command(&ns, *program, args);
        if let Some(node) = self.node(target) {
            // `lab exec node-0 -- tortiectl bpf routes` reads that node's maps.
            command.env("TORTIE_PIN_ROOT", &node.pin_root);
            // `lab exec node-0 -- tortiectl node status` asks that node's BIRD.
            if let Some(bird) = &node.bird {
                command.env("TORTIE_BIRD_SOCKET", &bird.socket);
            }
        }
        if self.state.datastore == DatastoreMode::Etcd {
            // `lab exec node-0 -- tortiectl get nodes` just works: the lab's binaries come
            // first on PATH and the datastore is the lab's etcd.
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![self.state.artifacts.bin_dir()];
            dirs.extend(std::env::split_paths(&path));
            if let Ok(joined) = std::env::join_paths(dirs) {
                command.env("PATH", joined);
            }
            command.envs(control_plane::datastore_env());
        }
        Ok(command)
    }

    /// Runs `cmd` in `target` and captures its output (stdin is empty). A non-zero exit is
    /// not an error here: check `status`.
    pub fn exec(&self, target: &str, cmd: &[&str]) -> Result<Output> {
        self.command(target, cmd)?
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running `{}` in {target}", cmd.join(" ")))
    }

    /// Starts `cmd` in `target` in the background (stdin empty, stdout and stderr piped: read
    /// them or use `wait_with_output`). The caller waits for or kills the child.
    pub fn spawn(&self, target: &str, cmd: &[&str]) -> Result<Child> {
        self.command(target, cmd)?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting `{}` in {target}", cmd.join(" ")))
    }

    /// Every pod pings every other pod once (`ping -c 1 -W 2`).
    /// Returns `(from, to, replied)` for each ordered pair, source-major.
    pub fn connectivity_matrix(&self) -> Vec<(String, String, bool)> {
        let pairs: Vec<(&Pod, &Pod)> = self
            .state
            .pods
            .iter()
            .flat_map(|a| self.state.pods.iter().map(move |b| (a, b)))
            .filter(|(a, b)| a.name != b.name || a.namespace != b.namespace)
            .collect();
        let mut results = Vec::with_capacity(pairs.len());
        for batch in pairs.chunks(PING_PARALLELISM) {
            let children: Vec<_> = batch
                .iter()
                .map(|(from, to)| {
                    let ip = to.ip.to_string();
                    nsenter_command(&from.netns, "ping", &["-q", "-c", "1", "-W", "2", &ip])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                })
                .collect();
            for ((from, to), child) in batch.iter().zip(children) {
                let replied = child
                    .and_then(|mut c| c.wait())
                    .is_ok_and(|status| status.success());
                results.push((from.name.clone(), to.name.clone(), replied));
            }
        }
        results
    }

    /// Every pod pings the external host once (`ping -c 1 -W 2 203.0.113.10`), which only
    /// answers if the pod's node source-NATs the traffic. Returns `(pod, replied)` per pod.
    pub fn external_reachability(&self) -> Vec<(String, bool)> {
        let ip = self.state.external.ip.to_string();
        let mut results = Vec::with_capacity(self.state.pods.len());
        for batch in self.state.pods.chunks(PING_PARALLELISM) {
            let children: Vec<_> = batch
                .iter()
                .map(|pod| {
                    nsenter_command(&pod.netns, "ping", &["-q", "-c", "1", "-W", "2", &ip])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                })
                .collect();
            for (pod, child) in batch.iter().zip(children) {
                let replied = child
                    .and_then(|mut c| c.wait())
                    .is_ok_and(|status| status.success());
                results.push((pod.name.clone(), replied));
            }
        }
        results
    }

    /// Starts a packet capture on a fabric bridge (`br0`, or `br1` in a routed lab) and
    /// returns once tcpdump listens; send the traffic afterwards, then call
    /// [`Capture::finish`]. It ends after `max_packets` packets or `timeout`.
    pub fn capture(
        &self,
        segment_iface: &str,
        filter: &str,
        max_packets: usize,
        timeout: Duration,
    ) -> Result<Capture> {
        self.capture_in("fabric", segment_iface, filter, max_packets, timeout)
    }

    /// Like [`Lab::capture`], on interface `iface` of any `target` (see [`Lab::netns_of`]),
    /// e.g. the router's `ext0`.
    pub fn capture_in(
        &self,
        target: &str,
        iface: &str,
        filter: &str,
        max_packets: usize,
        timeout: Duration,
    ) -> Result<Capture> {
        let ns = self.netns_of(target)?;
        Capture::start(&ns, iface, filter, max_packets, timeout)
            .with_context(|| format!("capturing on {iface} in {target}"))
    }

    /// The packet counters of `node`'s dataplane, summed over CPUs, by name
    /// (`drop_spoofed_source`, …; unknown indices as `counter_<i>`). Needs `bpftool`.
    pub fn counters(&self, node: &str) -> Result<BTreeMap<String, u64>> {
        let node = self.node_or_err(node)?;
        counters::read_counters(&node.pin_root)
            .with_context(|| format!("reading the counters of {}", node.name))
    }

    /// Nodes, agents and pods, for `status`.
    pub fn status(&self) -> LabStatus {
        LabStatus {
            name: self.state.name.clone(),
            encap: self.state.encap,
            cross_subnet: self.state.cross_subnet,
            topology: self.state.topology,
            router: self.state.router.clone(),
            external: self.state.external.clone(),
            nodes: self
                .state
                .nodes
                .iter()
                .map(|node| NodeStatus {
                    name: node.name.clone(),
                    netns: node.netns.clone(),
                    ip: node.ip,
                    segment: node.segment,
                    agent_pid: node.agent_pid,
                    agent_running: AgentProcess::of(node).is_some_and(|a| a.is_running()),
                    pin_root: node.pin_root.clone(),
                })
                .collect(),
            pods: self.state.pods.clone(),
        }
    }

    /// Where the agents take their inputs from.
    pub fn datastore(&self) -> DatastoreMode {
        self.state.datastore
    }

    /// The lab's etcd, in a lab fed from etcd.
    pub fn etcd(&self) -> Option<&EtcdState> {
        self.state.etcd.as_ref()
    }

    fn require_etcd(&self, what: &str) -> Result<()> {
        if self.state.datastore != DatastoreMode::Etcd {
            bail!(
                "{what} needs a lab fed from etcd; lab {} reads files (bring it up with --datastore etcd)",
                self.state.name
            );
        }
        Ok(())
    }

    /// Kills the lab's etcd (SIGKILL); agents keep the dataplane as it is meanwhile.
    pub fn stop_etcd(&self) -> Result<()> {
        self.require_etcd("stopping etcd")?;
        match &self.state.etcd {
            Some(etcd) => control_plane::stop_etcd(etcd),
            None => Ok(()),
        }
    }

    /// Starts the lab's etcd again on its database and waits until it is healthy.
    pub fn start_etcd(&mut self) -> Result<()> {
        self.require_etcd("starting etcd")?;
        if self.state.etcd.as_ref().is_some_and(EtcdState::is_running) {
            return Ok(());
        }
        if let Some(old) = &self.state.etcd {
            let _ = std::fs::remove_dir_all(&old.work_dir);
        }
        self.state.etcd = Some(control_plane::start_etcd(
            &self.state.name,
            self.state.etcd_in_memory,
        )?);
        self.state.save()?;
        Ok(())
    }

    /// Runs `tortiectl args…` from the fabric namespace against the lab's etcd.
    pub fn tortiectl(&self, args: &[&str]) -> Result<Output> {
        self.require_etcd("tortiectl")?;
        control_plane::tortiectl(
            &self.state.artifacts,
            &spec::fabric_netns(&self.state.name),
            args,
        )
    }

    /// Starts BIRD again on `node` after [`Lab::stop_bird`], recovering (graceful restart)
    /// and waits for its control socket.
    pub fn start_bird(&self, node: &str) -> Result<()> {
        bird::start(self.node_or_err(node)?, bird::Start::Recovering).map(drop)
    }

    /// Stops BIRD on `node` with `signal` (SIGKILL: a crash) and waits until it is gone.
    pub fn stop_bird(&self, node: &str, signal: Signal) -> Result<()> {
        bird::stop(self.node_or_err(node)?, signal)
    }

    /// `tortiectl node status -o json` for `node`: its BGP sessions as BIRD reports them.
    pub fn node_status(&self, node: &str) -> Result<Vec<serde_json::Value>> {
        let files = bird::files(self.node_or_err(node)?)?;
        let socket = files.socket.display().to_string();
        let output = control_plane::tortiectl(
            &self.state.artifacts,
            &spec::fabric_netns(&self.state.name),
            &["node", "status", "-o", "json", "--bird-socket", &socket],
        )?;
        if !output.status.success() {
            bail!(
                "tortiectl node status on {node} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "tortiectl node status on {node} printed no JSON: {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// The value of `series` (`name{labels}` as printed) in the `/metrics` of `node`'s agent,
    /// if the agent answers and exports it.
    pub fn agent_metric(&self, node: &str, series: &str) -> Option<f64> {
        let url = format!("http://{}/metrics", spec::AGENT_METRICS_ADDR);
        let out = self.exec(node, &["curl", "-s", "-m", "5", &url]).ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse().ok()).flatten()
            })
    }

    /// Whether the agent of `node` runs.
    pub fn agent_running(&self, node: &str) -> Result<bool> {
        let node = self.node_or_err(node)?;
        Ok(AgentProcess::of(node).is_some_and(|a| a.is_running()))
    }

    /// Sends `signal` to the agent of `node`. For SIGKILL, SIGTERM, SIGINT and SIGQUIT this
    /// returns once the agent has exited (up to 10 s). Fails if the agent is not running.
    pub fn kill_agent(&self, node: &str, signal: Signal) -> Result<()> {
        let node = self.node_or_err(node)?;
        let agent = AgentProcess::of(node)
            .filter(AgentProcess::is_running)
            .ok_or_else(|| anyhow!("the agent of {} is not running", node.name))?;
        if !agent.signal(signal)? {
            bail!("the agent of {} exited before {signal} was sent", node.name);
        }
        let terminating = matches!(
            signal,
            Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT
        );
        if terminating && !agent.wait_gone(Duration::from_secs(10)) {
            bail!(
                "the agent of {} (pid {}) still runs 10 s after {signal}; see {}",
                node.name,
                agent.pid,
                node.log_file.display()
            );
        }
        Ok(())
    }

    /// Starts the agent of `node` and waits (up to 30 s) for its ready file; records its pid.
    /// Fails if it is already running, or with the end of its log if it does not get ready.
    pub fn start_agent(&mut self, node: &str) -> Result<()> {
        let index = self
            .state
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| anyhow!("lab {} has no node {node}", self.state.name))?;
        let entry = &self.state.nodes[index];
        if let Some(running) = AgentProcess::of(entry).filter(AgentProcess::is_running) {
            return Err(agent::AgentError::AlreadyRunning {
                node: node.to_owned(),
                pid: running.pid,
            }
            .into());
        }
        let pid = agent::start(entry, &self.state.artifacts, READY_TIMEOUT)?;
        self.state.nodes[index].agent_pid = Some(pid);
        self.state.save()?;
        Ok(())
    }
}
