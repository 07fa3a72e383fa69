//! A node to run the plugin on, as a runtime would: a "node" network namespace with its own
//! etcd on its loopback, pod namespaces, and the plugin binary run inside the node namespace
//! with `CNI_*` variables and the configuration on stdin.
//!
//! Nothing is created in the root network namespace: the test thread itself enters the node
//! namespace (`setns` affects only that thread) before starting etcd, so etcd, the test's
//! etcd client and the plugin all share the node's loopback. Every namespace is removed by a
//! guard, on panic too; a new run removes the leftovers of a crashed one. Needs root.

#![allow(dead_code)]

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Once,
    },
};

use serde_json::{json, Value};
use tortie_datastore::{testing::EtcdServer, Datastore, EtcdDatastore, EtcdOptions};

/// Prefix of every namespace these tests create.
pub const NETNS_PREFIX: &str = "tortie-cnitest-";
/// The node the plugin runs on.
pub const NODE: &str = "node-0";
/// The network name, hence the IPAM handle prefix.
pub const NETWORK: &str = "k8s-pod-network";
/// The pod MTU configured.
pub const MTU: u64 = 1480;

/// Runs a command, panicking with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the CNI plugin tests need root (network namespaces, veths, etcd)"
    );
}

/// Removes namespaces left by test processes that no longer exist.
fn remove_leftovers() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: String) -> Netns {
        run("ip", &["netns", "add", &name]);
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `ip -j -n <ns> <args>` parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j", "-d", "-n", self.name.as_str()];
        full.extend_from_slice(args);
        let text = run("ip", &full);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("ip {full:?} printed no JSON ({e}): {text}"))
    }

    /// The interface's `ip -j link show` entry, if it exists.
    pub fn link(&self, name: &str) -> Option<Value> {
        let links = self.ip_json(&["link", "show"]);
        links
            .as_array()?
            .iter()
            .find(|l| l["ifname"] == name)
            .cloned()
    }

    /// Names of the interfaces.
    pub fn link_names(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .as_array()
            .map(|links| {
                links
                    .iter()
                    .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn exists(&self) -> bool {
        Path::new(&self.path()).exists()
    }

    pub fn delete(&self) {
        if self.exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.delete();
    }
}

/// The test thread inside a namespace; back in the original one on drop.
struct ThreadInNetns {
    original: File,
}

impl ThreadInNetns {
    fn enter(path: &str) -> ThreadInNetns {
        let original = File::open("/proc/thread-self/ns/net").expect("open this thread's netns");
        let target = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(&target, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("enter {path}: {e}"));
        ThreadInNetns { original }
    }
}

impl Drop for ThreadInNetns {
    fn drop(&mut self) {
        let _ = nix::sched::setns(&self.original, nix::sched::CloneFlags::CLONE_NEWNET);
    }
}

/// A pod sandbox: its namespace and the names the runtime passes.
#[derive(Debug)]
pub struct Pod {
    pub netns: Netns,
    pub container_id: String,
    pub namespace: String,
    pub name: String,
}

impl Pod {
    /// `cali` + 11 hex of sha1("<namespace>.<name>").
    pub fn host_ifname(&self) -> String {
        tortie_cni::plugin::host_veth_name(&self.namespace, &self.name)
    }

    pub fn handle(&self) -> String {
        format!("{NETWORK}.{}", self.container_id)
    }

    pub fn endpoint_key(&self) -> String {
        let name = tortie_cni::calico::workload_endpoint_name(NODE, "k8s", &self.name, "eth0");
        tortie_cni::calico::workload_endpoint_key(&self.namespace, &name)
    }

    /// `CNI_*` variables for `command`.
    pub fn env(&self, command: &str) -> Vec<(String, String)> {
        vec![
            ("CNI_COMMAND".into(), command.into()),
            ("CNI_CONTAINERID".into(), self.container_id.clone()),
            ("CNI_NETNS".into(), self.netns.path()),
            ("CNI_IFNAME".into(), "eth0".into()),
            (
                "CNI_ARGS".into(),
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
                    self.namespace, self.name, self.container_id
                ),
            ),
            ("CNI_PATH".into(), "/opt/cni/bin".into()),
        ]
    }
}

/// What the plugin printed and how it exited.
#[derive(Debug)]
pub struct PluginOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl PluginOutput {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?}; stderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts success and returns the JSON printed (Null when nothing was).
    pub fn ok(&self) -> Value {
        assert!(
            self.success,
            "the plugin failed: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts failure with `code` and returns the error JSON.
    pub fn error(&self, code: u64) -> Value {
        assert!(
            !self.success,
            "the plugin should have failed with {code}: {}",
            self.stdout
        );
        let error = self.json();
        assert_eq!(
            error["code"], code,
            "wrong code: {error}\nstderr: {}",
            self.stderr
        );
        assert!(
            error["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "no message: {error}"
        );
        error
    }
}

/// Runs the plugin binary inside `netns` (or as is, when `None`) like a runtime.
pub fn run_plugin(netns: Option<&str>, env: &[(String, String)], stdin: &str) -> PluginOutput {
    use std::io::Write;
    let binary = env!("CARGO_BIN_EXE_tortie-cni");
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("nsenter");
            command
                .arg(format!("--net=/run/netns/{netns}"))
                .arg("--")
                .arg(binary);
            command
        }
        None => Command::new(binary),
    };
    command
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start tortie-cni");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write the configuration");
    let output = child.wait_with_output().expect("wait for tortie-cni");
    PluginOutput {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);
static CLEANUP: Once = Once::new();

/// A node namespace with etcd, and the pods made on it.
pub struct Harness {
    // Fields drop in this order: client, runtime, etcd, back to the original namespace,
    // then the namespaces.
    pub store: EtcdDatastore,
    runtime: tokio::runtime::Runtime,
    pub etcd: EtcdServer,
    inside: ThreadInNetns,
    pods_made: AtomicUsize,
    pub node: Netns,
    base: String,
    pub log_dir: tempfile::TempDir,
}

impl Harness {
    /// A node with etcd and no pools.
    pub fn new() -> Harness {
        Self::with_etcd_args(&[])
    }

    /// A node whose etcd gets extra flags.
    pub fn with_etcd_args(etcd_args: &[&str]) -> Harness {
        require_root();
        CLEANUP.call_once(remove_leftovers);
        let base = format!(
            "{NETNS_PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let node = Netns::create(format!("{base}-node"));
        let inside = ThreadInNetns::enter(&node.path());
        let etcd =
            EtcdServer::start_local_with_args(etcd_args).expect("start etcd in the node namespace");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let store = runtime
            .block_on(EtcdDatastore::connect(
                &etcd.endpoints(),
                EtcdOptions::default(),
            ))
            .expect("connect to etcd");
        Harness {
            store,
            runtime,
            etcd,
            inside,
            pods_made: AtomicUsize::new(0),
            node,
            base,
            log_dir: tempfile::tempdir().expect("log dir"),
        }
    }

    /// Starts the stopped etcd again and reconnects the test's client to it.
    pub fn restart_etcd(&mut self) {
        self.etcd.start().expect("restart etcd");
        self.store = self
            .runtime
            .block_on(EtcdDatastore::connect(
                &self.etcd.endpoints(),
                EtcdOptions::default(),
            ))
            .expect("reconnect to etcd");
    }

    /// A new pod sandbox (its own namespace) for pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Pod {
        let index = self.pods_made.fetch_add(1, Ordering::SeqCst);
        let netns = Netns::create(format!("{}-pod{index}", self.base));
        Pod {
            netns,
            container_id: format!("c{index:02}{}", "0123456789abcdef".repeat(3)),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The network configuration a runtime would read from /etc/cni/net.d.
    pub fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": NETWORK,
            "type": "tortie-cni",
            "datastore_type": "etcdv3",
            "etcd_endpoints": self.etcd.client_url(),
            "nodename": NODE,
            "mtu": MTU,
            "ipam": {"type": "tortie-ipam"},
            "log_level": "debug",
            "log_file_path": self.log_path().display().to_string(),
        })
    }

    pub fn log_path(&self) -> PathBuf {
        self.log_dir.path().join("cni.log")
    }

    /// Runs the plugin on the node for `pod`.
    pub fn cni(&self, pod: &Pod, command: &str, conf: &Value) -> PluginOutput {
        run_plugin(Some(&self.node.name), &pod.env(command), &conf.to_string())
    }

    /// Runs the plugin on the node with explicit variables.
    pub fn cni_env(&self, env: &[(String, String)], conf: &Value) -> PluginOutput {
        run_plugin(Some(&self.node.name), env, &conf.to_string())
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub fn put_json(&self, key: &str, value: &Value) {
        let bytes = serde_json::to_vec(value).unwrap();
        self.block_on(async {
            match self.store.get(key).await.unwrap() {
                Some(kv) => self
                    .store
                    .update(key, &bytes, kv.revision)
                    .await
                    .map(|_| ()),
                None => self.store.create(key, &bytes).await.map(|_| ()),
            }
        })
        .unwrap_or_else(|e| panic!("write {key}: {e}"));
    }

    pub fn get_json(&self, key: &str) -> Option<Value> {
        self.block_on(self.store.get(key))
            .unwrap_or_else(|e| panic!("read {key}: {e}"))
            .map(|kv| serde_json::from_slice(&kv.value).expect("stored JSON"))
    }

    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.block_on(self.store.list(prefix))
            .expect("list")
            .entries
            .into_iter()
            .map(|kv| kv.key)
            .collect()
    }

    /// Seeds an IPPool.
    pub fn add_pool(&self, name: &str, cidr: &str, block_size: u8, extra_spec: Value) {
        let mut spec = json!({
            "cidr": cidr,
            "blockSize": block_size,
            "ipipMode": "Never",
            "vxlanMode": "Never",
            "natOutgoing": true,
            "nodeSelector": "all()",
        });
        if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra_spec) {
            spec.extend(extra);
        }
        self.put_json(
            &format!("/calico/resources/v3/projectcalico.org/ippools/{name}"),
            &json!({
                "kind": "IPPool",
                "apiVersion": "projectcalico.org/v3",
                "metadata": {"name": name},
                "spec": spec,
            }),
        );
    }

    /// The addresses an IPAM handle holds.
    pub fn handle_addresses(&self, handle: &str) -> Vec<std::net::Ipv4Addr> {
        self.block_on(tortie_ipam::Ipam::new(&self.store).addresses_of(handle))
            .expect("read the handle")
    }

    /// Names of the node's `cali*`/`tmp*` interfaces.
    pub fn node_pod_links(&self) -> Vec<String> {
        self.node
            .link_names()
            .into_iter()
            .filter(|n| n.starts_with("cali") || n.starts_with("tmp"))
            .collect()
    }

    /// Asserts the pod holds nothing: no address, no endpoint, no interface on the node.
    pub fn assert_nothing_left(&self, pod: &Pod) {
        assert!(
            self.handle_addresses(&pod.handle()).is_empty(),
            "the handle still holds addresses"
        );
        assert!(
            self.get_json(&format!("/calico/ipam/v2/handle/{}", pod.handle()))
                .is_none(),
            "the handle record is still there"
        );
        assert!(
            self.get_json(&pod.endpoint_key()).is_none(),
            "the WorkloadEndpoint is still there"
        );
        assert!(
            !self.node_pod_links().contains(&pod.host_ifname()),
            "{} is still on the node: {:?}",
            pod.host_ifname(),
            self.node_pod_links()
        );
        assert!(
            self.node_pod_links().iter().all(|n| !n.starts_with("tmp")),
            "a temporary interface is left: {:?}",
            self.node_pod_links()
        );
    }

    /// The plugin's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}
