//! The lab's control plane, run the way a cluster runs it: a real etcd in the fabric
//! namespace, pools and nodes applied as `projectcalico.org/v3` YAML with `tortiectl`, and pods
//! created by calling `tortie-cni` exactly as a container runtime does (`CNI_*` environment,
//! network configuration on stdin, a network namespace path).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use tortie_datastore::testing::{self as etcd_testing, EtcdServer};

use crate::artifacts::Artifacts;
use crate::netns::{self, nsenter_command};
use crate::spec::{
    self, etcd_endpoint, fabric_netns, EncapMode, LabSpec, Node, Pod, ETCD_IP, ETCD_PORT,
    POD_IFACE, POD_POOL_CIDR, POD_POOL_NAME,
};

/// The CNI network name (Calico's default), also the prefix of IPAM handles.
pub const CNI_NETWORK: &str = "k8s-pod-network";
/// The CNI spec version the lab's configuration declares.
pub const CNI_VERSION: &str = "1.1.0";
/// How long one CNI call may take before the lab gives up on it.
pub const CNI_TIMEOUT: Duration = Duration::from_secs(60);

/// The lab's etcd as recorded in its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdState {
    /// Process id of the running etcd.
    pub pid: u32,
    /// Client URL, as nodes and pods reach it.
    pub client_url: String,
    /// Its database, kept across restarts.
    pub data_dir: PathBuf,
    /// Its log.
    pub log_file: PathBuf,
    /// Its work dir (log and pid file), removed with the lab.
    pub work_dir: PathBuf,
}

impl EtcdState {
    /// Whether this etcd still runs (the pid is checked against its command line, so a
    /// recycled pid never counts).
    pub fn is_running(&self) -> bool {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        let data_dir = self.data_dir.display().to_string();
        String::from_utf8_lossy(&cmdline).contains(&data_dir)
    }
}

/// Gives the fabric an address for etcd on the first segment and, in a routed lab, a route
/// to the other segments through the router.
pub fn wire_etcd_address(lab: &str, router_ip: Ipv4Addr, routed: bool) -> Result<()> {
    let fabric = fabric_netns(lab);
    netns::add_address(&fabric, &spec::segment_bridge(0), ETCD_IP, 24)?;
    if routed {
        let mut command = nsenter_command(
            &fabric,
            "ip",
            &[
                "route",
                "add",
                "10.99.0.0/16",
                "via",
                &router_ip.to_string(),
            ],
        );
        netns::run_checked(
            format!("route to the fabric segments in {fabric}"),
            &mut command,
        )?;
    }
    Ok(())
}

/// Starts the lab's etcd in the fabric namespace on its data dir (a fresh database the first
/// time, the same one after [`stop_etcd`]) and waits until it is healthy. `in_memory` puts
/// the database on a tmpfs ([`spec::etcd_memory_dir`]) instead of the lab's state dir.
pub fn start_etcd(lab: &str, in_memory: bool) -> Result<EtcdState> {
    let data_dir = if in_memory {
        spec::etcd_memory_dir(lab).join("etcd")
    } else {
        spec::state_dir(lab).join("etcd")
    };
    let server = EtcdServer::start_in_netns(&fabric_netns(lab), ETCD_IP, ETCD_PORT, &data_dir)
        .with_context(|| format!("starting etcd for lab {lab}"))?;
    let detached = server.detach()?;
    Ok(EtcdState {
        pid: detached.pid,
        client_url: detached.client_url,
        data_dir,
        log_file: detached.log_file,
        work_dir: detached.work_dir,
    })
}

/// Kills the lab's etcd (SIGKILL, like a crash or a lost server) and waits until it is gone.
/// Its database stays for [`start_etcd`].
pub fn stop_etcd(etcd: &EtcdState) -> Result<()> {
    if !etcd.is_running() {
        return Ok(());
    }
    let pid = nix::unistd::Pid::from_raw(etcd.pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)
        .with_context(|| format!("killing etcd (pid {})", etcd.pid))?;
    let started = Instant::now();
    while etcd.is_running() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("etcd (pid {}) still runs 10 s after SIGKILL", etcd.pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Whether the lab's etcd answers its health check.
pub fn etcd_healthy(lab: &str) -> bool {
    etcd_testing::is_healthy(
        Some(&fabric_netns(lab)),
        SocketAddrV4::new(ETCD_IP, ETCD_PORT),
    )
}

/// The resources a lab starts from, as `tortiectl apply` takes them: the IP pool with the
/// lab's encapsulation, one Node per node with its fabric address, and the Kubernetes
/// namespace and pod records whose labels the CNI plugin copies into workload endpoints.
pub fn initial_resources(spec: &LabSpec, nodes: &[Node], pods: &[Pod]) -> String {
    let (ipip, vxlan) = spec.pool_modes();
    let mode = |mode: EncapMode| match mode {
        EncapMode::Never => "Never",
        EncapMode::Always => "Always",
        EncapMode::CrossSubnet => "CrossSubnet",
    };
    let mut documents = vec![format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {POD_POOL_NAME}\n\
         spec:\n  cidr: {POD_POOL_CIDR}\n  blockSize: 26\n  ipipMode: {}\n  vxlanMode: {}\n  \
         natOutgoing: true\n  nodeSelector: all()\n",
        mode(ipip),
        mode(vxlan)
    )];
    for node in nodes {
        documents.push(format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {}\nspec:\n  bgp:\n    \
             ipv4Address: {}\n",
            node.name,
            node.cidr()
        ));
    }
    let mut namespaces: Vec<&str> = pods.iter().map(|p| p.namespace.as_str()).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    for namespace in namespaces {
        documents.push(namespace_record(namespace, &BTreeMap::new()));
    }
    for pod in pods {
        documents.push(pod_record(pod));
    }
    documents.join("---\n")
}

/// The Kubernetes pod record of `pod` (name, namespace, node, labels, container ports).
pub fn pod_record(pod: &Pod) -> String {
    let mut labels = String::new();
    for (key, value) in &pod.labels {
        labels.push_str(&format!("    {}: {}\n", quote(key), quote(value)));
    }
    if labels.is_empty() {
        labels.push_str("    {}\n");
    }
    let mut spec = format!("spec:\n  nodeName: {}\n", pod.node);
    if !pod.ports.is_empty() {
        spec.push_str("  containers:\n  - name: server\n    ports:\n");
        for port in &pod.ports {
            spec.push_str(&format!(
                "    - containerPort: {}\n      protocol: {}\n",
                port.port, port.protocol
            ));
            if !port.name.is_empty() {
                spec.push_str(&format!("      name: {}\n", quote(&port.name)));
            }
        }
    }
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {}\n  namespace: {}\n  labels:\n{labels}{spec}",
        pod.name, pod.namespace
    )
}

/// A Kubernetes namespace record with `labels` plus the `kubernetes.io/metadata.name` label
/// Kubernetes sets on every namespace.
pub fn namespace_record(name: &str, labels: &BTreeMap<String, String>) -> String {
    let mut all = labels.clone();
    all.insert("kubernetes.io/metadata.name".to_owned(), name.to_owned());
    let mut text =
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n");
    for (key, value) in &all {
        text.push_str(&format!("    {}: {}\n", quote(key), quote(value)));
    }
    text
}

/// JSON strings are YAML strings: quoting keeps `round: 0` a string, as labels must be.
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// Environment that points `tortiectl` (and anything else reading it) at the lab's etcd.
pub fn datastore_env() -> [(&'static str, String); 2] {
    [
        ("TORTIE_DATASTORE_TYPE", "etcdv3".to_owned()),
        ("TORTIE_ETCD_ENDPOINTS", etcd_endpoint()),
    ]
}

/// Runs `tortiectl args…` inside namespace `ns` against the lab's etcd (stdin empty).
/// Returns the output whatever the exit status.
pub fn tortiectl(artifacts: &Artifacts, ns: &str, args: &[&str]) -> Result<Output> {
    let bin = artifacts.tortiectl_bin();
    let mut command = nsenter_command(ns, bin.as_os_str(), &[]);
    command.args(args).envs(datastore_env());
    run_with_stdin(&mut command, "", CNI_TIMEOUT)
        .with_context(|| format!("running tortiectl {}", args.join(" ")))
}

/// Like [`tortiectl`], failing with tortiectl's message unless it succeeds.
pub fn tortiectl_checked(artifacts: &Artifacts, ns: &str, args: &[&str]) -> Result<()> {
    let output = tortiectl(artifacts, ns, args)?;
    if !output.status.success() {
        bail!(
            "tortiectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    Ok(())
}

/// Writes `yaml` to `saved_as`, then runs `tortiectl <verb> -f <saved_as>` from the fabric
/// namespace; fails with tortiectl's message.
pub fn tortiectl_file(
    lab: &str,
    artifacts: &Artifacts,
    verb: &str,
    yaml: &str,
    saved_as: &Path,
) -> Result<()> {
    std::fs::write(saved_as, yaml).with_context(|| format!("writing {}", saved_as.display()))?;
    let file = saved_as.display().to_string();
    tortiectl_checked(artifacts, &fabric_netns(lab), &[verb, "-f", &file])
}

/// Applies `yaml` (saved as `saved_as`) with `tortiectl apply -f` from the fabric namespace;
/// fails with tortiectl's message.
pub fn apply(lab: &str, artifacts: &Artifacts, yaml: &str, saved_as: &Path) -> Result<()> {
    tortiectl_file(lab, artifacts, "apply", yaml, saved_as)
}

/// The container ID a runtime would give the pod's sandbox: stable per lab and pod, 40 hex.
pub fn container_id(lab: &str, pod: &Pod) -> String {
    hex::encode(Sha1::digest(
        format!("{lab}/{}/{}", pod.namespace, pod.name).as_bytes(),
    ))
}

/// What an ADD gave the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// MAC of the pod's `eth0`.
    pub mac: String,
    /// The host-side interface.
    pub host_iface: String,
}

impl Attachment {
    /// Fills in what the ADD decided (address, MAC, host interface) in `pod`'s record.
    pub fn record_in(self, pod: &mut Pod) {
        pod.ip = self.ip;
        pod.mac = self.mac;
        pod.host_iface = self.host_iface;
    }
}

/// The network configuration the runtime hands `tortie-cni` on `node`.
pub fn network_config(lab: &str, node: &Node, mtu: u32) -> Value {
    json!({
        "cniVersion": CNI_VERSION,
        "name": CNI_NETWORK,
        "type": "tortie-cni",
        "datastore_type": "etcdv3",
        "etcd_endpoints": etcd_endpoint(),
        "nodename": node.name,
        "mtu": mtu,
        "ipam": { "type": "tortie-ipam" },
        "log_level": "info",
        "log_file_path": cni_log(lab, node).display().to_string(),
    })
}

/// Where `tortie-cni` logs on `node`.
pub fn cni_log(lab: &str, node: &Node) -> PathBuf {
    spec::state_dir(lab).join(format!("{}.cni.log", node.name))
}

/// One CNI call as the runtime makes it: in the node's namespace, `CNI_*` set, the
/// configuration on stdin. Returns the process output.
pub fn call_cni(
    lab: &str,
    artifacts: &Artifacts,
    node: &Node,
    pod: &Pod,
    command: &str,
) -> Result<Output> {
    let bin = artifacts.cni_bin();
    let mut process = nsenter_command(&node.netns, bin.as_os_str(), &[]);
    let cni_args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
        pod.namespace,
        pod.name,
        container_id(lab, pod)
    );
    let bin_dir = bin
        .parent()
        .map(|dir| dir.display().to_string())
        .unwrap_or_default();
    process
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id(lab, pod))
        .env(
            "CNI_NETNS",
            netns::netns_path(&pod.netns).display().to_string(),
        )
        .env("CNI_IFNAME", POD_IFACE)
        .env("CNI_ARGS", cni_args)
        .env("CNI_PATH", bin_dir);
    let config = network_config(lab, node, pod.mtu).to_string();
    run_with_stdin(&mut process, &config, CNI_TIMEOUT)
        .with_context(|| format!("calling tortie-cni {command} for {}", pod.key()))
}

/// Creates `pod` on `node` the way a runtime does: a new network namespace, then CNI ADD.
/// On failure the namespace is removed again (the plugin itself undoes its part).
pub fn add_pod(lab: &str, artifacts: &Artifacts, node: &Node, pod: &Pod) -> Result<Attachment> {
    add_pod_timed(lab, artifacts, node, pod).map(|(attachment, _)| attachment)
}

/// [`add_pod`], also returning how long the CNI ADD call itself took (the runtime's share,
/// creating the namespace, excluded).
pub fn add_pod_timed(
    lab: &str,
    artifacts: &Artifacts,
    node: &Node,
    pod: &Pod,
) -> Result<(Attachment, std::time::Duration)> {
    netns::create_netns(&pod.netns)?;
    let result = netns::set_link_up(&pod.netns, "lo")
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            let started = std::time::Instant::now();
            let output = call_cni(lab, artifacts, node, pod, "ADD")?;
            let took = started.elapsed();
            Ok((parse_add_result(pod, &output)?, took))
        });
    if result.is_err() {
        let _ = netns::delete_netns(&pod.netns);
    }
    result
}

/// Removes `pod`: CNI DEL (which releases its address and deletes its endpoint), then its
/// namespace.
pub fn delete_pod(lab: &str, artifacts: &Artifacts, node: &Node, pod: &Pod) -> Result<()> {
    let output = call_cni(lab, artifacts, node, pod, "DEL")?;
    if !output.status.success() {
        bail!(
            "tortie-cni DEL for {} failed: {}",
            pod.key(),
            describe_cni_failure(&output)
        );
    }
    if netns::netns_exists(&pod.netns) {
        netns::delete_netns(&pod.netns)?;
    }
    Ok(())
}

fn parse_add_result(pod: &Pod, output: &Output) -> Result<Attachment> {
    if !output.status.success() {
        bail!(
            "tortie-cni ADD for {} failed: {}",
            pod.key(),
            describe_cni_failure(output)
        );
    }
    let result: Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "tortie-cni ADD for {} printed no JSON result: {}",
            pod.key(),
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    let ip = result["ips"][0]["address"]
        .as_str()
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        .ok_or_else(|| {
            anyhow!(
                "the ADD result for {} has no IPv4 address: {result}",
                pod.key()
            )
        })?;
    let interfaces = result["interfaces"].as_array().cloned().unwrap_or_default();
    let host = interfaces
        .iter()
        .find(|iface| iface.get("sandbox").is_none())
        .and_then(|iface| iface["name"].as_str())
        .ok_or_else(|| anyhow!("the ADD result for {} names no host interface", pod.key()))?;
    let mac = interfaces
        .iter()
        .find(|iface| iface.get("sandbox").is_some())
        .and_then(|iface| iface["mac"].as_str())
        .ok_or_else(|| anyhow!("the ADD result for {} has no pod MAC", pod.key()))?;
    Ok(Attachment {
        ip,
        mac: mac.to_owned(),
        host_iface: host.to_owned(),
    })
}

/// The CNI error object on stdout (`code`, `msg`, `details`), or whatever was printed.
pub fn describe_cni_failure(output: &Output) -> String {
    #[derive(Deserialize)]
    struct CniError {
        code: u32,
        msg: String,
        #[serde(default)]
        details: String,
    }
    match serde_json::from_slice::<CniError>(&output.stdout) {
        Ok(error) if error.details.is_empty() => format!("code {}: {}", error.code, error.msg),
        Ok(error) => format!("code {}: {} ({})", error.code, error.msg, error.details),
        Err(_) => format!(
            "{} {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Runs `command` with `stdin` written to it and its output captured; kills it after
/// `timeout`.
fn run_with_stdin(command: &mut Command, stdin: &str, timeout: Duration) -> Result<Output> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{}`", netns::command_line(command)))?;
    if let Some(mut input) = child.stdin.take() {
        // A program that exits without reading its input is not an error here.
        let _ = input.write_all(stdin.as_bytes());
    }
    crate::harness::KillOnDrop::new(child).wait_output(timeout)
}
