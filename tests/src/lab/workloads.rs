//! Workloads of an etcd-fed lab: pods with namespaces, labels and named ports, label changes,
//! resources applied and deleted with tortiectl, and connectivity probes between pods.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::{Lab, CONVERGE_TIMEOUT};
use crate::control_plane;
use crate::convergence::{self, Lagging};
use crate::netns::nsenter_command;
use crate::probe::{self, Outcome, Protocol, Target};
use crate::spec::{self, ContainerPort, Pod};

/// A pod to create through `tortie-cni`.
#[derive(Clone, Debug, Default)]
pub struct PodRequest {
    /// Node it runs on (`node-1`).
    pub node: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its declared container ports.
    pub ports: Vec<ContainerPort>,
}

/// What one probe from a pod observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// The probing pod, `namespace/name`.
    pub from: String,
    /// Where it went.
    pub target: Target,
    /// What came back.
    pub outcome: Outcome,
}

/// The ports `tortie-probe serve` listens on for `ports`, by protocol.
fn serve_args(ports: &[ContainerPort]) -> Result<Vec<String>> {
    let mut by_protocol: BTreeMap<Protocol, Vec<String>> = BTreeMap::new();
    for port in ports {
        let protocol: Protocol = port.protocol.parse().map_err(|e: String| anyhow!(e))?;
        by_protocol
            .entry(protocol)
            .or_default()
            .push(port.port.to_string());
    }
    let mut args = vec!["serve".to_owned()];
    for (protocol, ports) in by_protocol {
        args.push(format!("--{}", protocol.name().to_ascii_lowercase()));
        args.push(ports.join(","));
    }
    Ok(args)
}

impl Lab {
    /// Creates pod `namespace/name` on `node` through `tortie-cni` (after writing its pod
    /// record with `labels`), records it and returns it with the address IPAM gave it.
    pub fn add_pod(
        &mut self,
        node: &str,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Result<Pod> {
        self.add_pod_with(&PodRequest {
            node: node.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            labels: spec::owned_labels(labels),
            ports: Vec::new(),
        })
    }

    /// Creates a pod through `tortie-cni` after writing its pod record (labels, ports), then
    /// waits until every node's maps hold it. The namespace record must exist already for
    /// namespace selectors to see it (see [`Lab::apply_namespace`]).
    pub fn add_pod_with(&mut self, request: &PodRequest) -> Result<Pod> {
        self.require_etcd("adding a pod")?;
        let (namespace, name) = (request.namespace.as_str(), request.name.as_str());
        if self.pod(&format!("{namespace}/{name}")).is_some() {
            bail!("lab {} already has pod {namespace}/{name}", self.state.name);
        }
        let node = self.node_or_err(&request.node)?.clone();
        let mut pod = Pod {
            labels: request.labels.clone(),
            ports: request.ports.clone(),
            mtu: self.state.spec().pod_mtu(),
            ..Pod::planned_for_cni(&self.state.name, &node.name, namespace, name, &[])
        };
        self.apply_yaml(
            &format!("pod-{namespace}-{name}.yaml"),
            &control_plane::pod_record(&pod),
        )?;
        control_plane::add_pod(&self.state.name, &self.state.artifacts, &node, &pod)?
            .record_in(&mut pod);
        self.state.pods.push(pod.clone());
        self.state.save()?;
        self.wait_converged(CONVERGE_TIMEOUT)?;
        Ok(pod)
    }

    /// Waits until every node's maps program its own pods' interfaces and route to every pod,
    /// as `tortiectl bpf endpoints` and `tortiectl bpf routes` show them. Fails after
    /// `timeout`, naming what each lagging node lacks.
    pub fn wait_converged(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let lagging = self.lagging_nodes()?;
            if lagging.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                let report: Vec<String> = lagging
                    .iter()
                    .map(|(node, lag)| {
                        format!(
                            "{node} lacks endpoints for {:?} and routes to {:?}",
                            lag.endpoints, lag.routes
                        )
                    })
                    .collect();
                bail!(
                    "the agents did not program every pod within {timeout:?}: {}; see the agent logs in {}",
                    report.join("; "),
                    self.state_dir().display()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    fn lagging_nodes(&self) -> Result<Vec<(String, Lagging)>> {
        let all: Vec<Ipv4Addr> = self.state.pods.iter().map(|p| p.ip).collect();
        let mut lagging = Vec::new();
        for node in &self.state.nodes {
            let local: Vec<Ipv4Addr> = self
                .state
                .pods
                .iter()
                .filter(|p| p.node == node.name)
                .map(|p| p.ip)
                .collect();
            let endpoints = self.bpf_json(&node.name, "endpoints")?;
            let routes = self.bpf_json(&node.name, "routes")?;
            let parse =
                |what: &str, err: String| anyhow!("tortiectl bpf {what} on {}: {err}", node.name);
            let lag = convergence::lagging(
                &convergence::endpoint_addresses(&endpoints).map_err(|e| parse("endpoints", e))?,
                &convergence::route_prefixes(&routes).map_err(|e| parse("routes", e))?,
                &local,
                &all,
            );
            if !lag.is_empty() {
                lagging.push((node.name.clone(), lag));
            }
        }
        Ok(lagging)
    }

    /// `tortiectl bpf <what> -o json` on `node`. Before the agent has pinned its maps this
    /// prints an empty list, so that a node that is still starting counts as lagging.
    fn bpf_json(&self, node: &str, what: &str) -> Result<String> {
        let tortiectl = self.state.artifacts.tortiectl_bin();
        let tortiectl = tortiectl.to_string_lossy();
        let output = self.exec(node, &[&tortiectl, "bpf", what, "-o", "json"])?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Ok("[]".to_owned())
        }
    }

    /// Deletes pod `name` (or `namespace/name`) through `tortie-cni` DEL and removes its
    /// namespace.
    pub fn delete_pod(&mut self, name: &str) -> Result<()> {
        self.require_etcd("deleting a pod")?;
        let pod = self.pod_or_err(name)?.clone();
        let node = self.node_of(&pod)?.clone();
        control_plane::delete_pod(&self.state.name, &self.state.artifacts, &node, &pod)?;
        self.state
            .pods
            .retain(|p| !(p.name == pod.name && p.namespace == pod.namespace));
        self.state.save()?;
        Ok(())
    }

    /// Creates or replaces the namespace record `name` with `labels` (plus the
    /// `kubernetes.io/metadata.name` label every Kubernetes namespace has).
    pub fn apply_namespace(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<()> {
        let record = control_plane::namespace_record(name, labels);
        self.apply_yaml(&format!("namespace-{name}.yaml"), &record)
    }

    /// `tortiectl apply -f` of `yaml`, saved as `file_name` in the lab's state directory.
    pub fn apply_yaml(&self, file_name: &str, yaml: &str) -> Result<()> {
        self.require_etcd("applying resources")?;
        let saved = self.state_dir().join(file_name);
        control_plane::apply(&self.state.name, &self.state.artifacts, yaml, &saved)
    }

    /// `tortiectl delete -f` of `yaml` (which names the resources), saved as `file_name`.
    pub fn delete_yaml(&self, file_name: &str, yaml: &str) -> Result<()> {
        self.require_etcd("deleting resources")?;
        let saved = self.state_dir().join(file_name);
        control_plane::tortiectl_file(
            &self.state.name,
            &self.state.artifacts,
            "delete",
            yaml,
            &saved,
        )
    }

    /// Relabels pod `namespace/name` with `tortiectl label pod` (which relabels its
    /// endpoint too): `set` overwrites, `remove` deletes keys the pod has.
    pub fn label_pod(
        &mut self,
        key: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        let pod = self.pod_or_err(key)?.clone();
        let remove: Vec<String> = remove
            .iter()
            .filter(|k| pod.labels.contains_key(*k))
            .cloned()
            .collect();
        self.label("pod", &pod.name, Some(&pod.namespace), set, &remove)?;
        if let Some(stored) = self
            .state
            .pods
            .iter_mut()
            .find(|p| p.name == pod.name && p.namespace == pod.namespace)
        {
            for key in &remove {
                stored.labels.remove(key);
            }
            stored.labels.extend(set.clone());
        }
        Ok(self.state.save()?)
    }

    /// Relabels namespace `name` with `tortiectl label namespace`.
    pub fn label_namespace(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        self.label("namespace", name, None, set, remove)
    }

    fn label(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        if set.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let mut args: Vec<String> = vec!["label".into(), kind.into(), name.into()];
        if let Some(namespace) = namespace {
            args.extend(["-n".to_owned(), namespace.to_owned()]);
        }
        args.extend(set.iter().map(|(k, v)| format!("{k}={v}")));
        args.extend(remove.iter().map(|k| format!("{k}-")));
        args.push("--overwrite".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.require_etcd("tortiectl")?;
        control_plane::tortiectl_checked(
            &self.state.artifacts,
            &spec::fabric_netns(&self.state.name),
            &args,
        )
    }

    /// Starts `tortie-probe serve` in pod `key` on its declared ports and waits until it
    /// listens. The server runs until the lab goes down.
    pub fn serve_probes(&self, key: &str) -> Result<()> {
        let pod = self.pod_or_err(key)?;
        let args = serve_args(&pod.ports)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let bin = self.state.artifacts.probe_bin();
        // Its errors go to a log of its own: an inherited stderr would keep the caller's
        // pipes open for as long as the server runs.
        let log_path = self
            .state_dir()
            .join(format!("probe-{}-{}.log", pod.namespace, pod.name));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut child = nsenter_command(&pod.netns, bin.as_os_str(), &[])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} in {key}", bin.display()))?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout)
                .read_line(&mut line)
                .with_context(|| format!("reading from the probe server in {key}"))?;
        }
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            let error = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("the probe server in {key} did not start: {}", error.trim());
        }
        Ok(())
    }

    /// Probes `targets` from each pod, every pod and every target at once; each probe waits
    /// up to `timeout`. Returns one result per (pod, target).
    pub fn probe_from_pods(
        &self,
        plan: &[(String, Vec<Target>)],
        timeout: Duration,
    ) -> Result<Vec<ProbeResult>> {
        let bin = self.state.artifacts.probe_bin();
        let timeout_arg = timeout.as_millis().to_string();
        let mut running: Vec<(String, Child)> = Vec::new();
        for (key, targets) in plan {
            if targets.is_empty() {
                continue;
            }
            let pod = self.pod_or_err(key)?;
            let mut args = vec![
                "connect".to_owned(),
                "--timeout-ms".into(),
                timeout_arg.clone(),
            ];
            args.extend(targets.iter().map(Target::to_string));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let child = nsenter_command(&pod.netns, bin.as_os_str(), &[])
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting {} in {key}", bin.display()))?;
            running.push((pod.key(), child));
        }
        let mut results = Vec::new();
        for (from, child) in running {
            let output = child
                .wait_with_output()
                .with_context(|| format!("waiting for the probes from {from}"))?;
            if !output.status.success() {
                bail!(
                    "tortie-probe connect in {from} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let text = String::from_utf8_lossy(&output.stdout);
            for (target, outcome) in probe::parse_results(&text).map_err(|e| anyhow!(e))? {
                results.push(ProbeResult {
                    from: from.clone(),
                    target,
                    outcome,
                });
            }
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_each_protocol_on_its_ports() {
        let port = |protocol: &str, port| ContainerPort {
            name: String::new(),
            protocol: protocol.into(),
            port,
        };
        let args = serve_args(&[port("TCP", 80), port("UDP", 80), port("TCP", 81)]).unwrap();
        assert_eq!(args, ["serve", "--tcp", "80,81", "--udp", "80"]);
        assert!(serve_args(&[port("ICMP", 1)]).is_err());
    }
}
