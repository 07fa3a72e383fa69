//! The network policy conformance table (`tests/conformance/*.yaml`, see
//! `tortie_lab::conformance`) run against the eBPF dataplane of a 3-node etcd lab.
//!
//! Nine pods (namespaces x, y, z × pods a, b, c) spread over the nodes, so that the matrix
//! covers same-node and cross-node (IPIP) pairs; every pod serves ports 80 and 81 on TCP, UDP
//! and SCTP. Each step of a case is applied with tortiectl, then every pair is probed at once
//! until the observed matrix equals the expected one or the step's time runs out. Every
//! case runs even after a failure; the test fails at the end, printing each failed case's
//! truth table. `TORTIE_CONFORMANCE_CASE=<text>` runs only the cases whose name contains it.
//!
//! Needs root, etcd and the lab's binaries; skipped without root (fails under CI).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use tortie_lab::conformance::{
    self, differences, model_pods, truth_table, Case, Matrix, PodRef, ProbeSpec, Step, Suite,
    NAMESPACES, PORTS,
};
use tortie_lab::harness;
use tortie_lab::probe::{Outcome, Protocol, Target};
use tortie_lab::spec::ContainerPort;
use tortie_lab::{Artifacts, DatastoreMode, Encap, Lab, LabGuard, LabSpec, PodRequest};

/// How long one probe waits: long enough for a cross-node round trip on a loaded machine,
/// short enough that a denied cell does not dominate the run.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// How long the dataplane gets to reach a step's expected matrix.
const STEP_DEADLINE: Duration = Duration::from_secs(12);
const NODES: usize = 3;

fn ok<T>(result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|err| panic!("{err:#}"))
}

fn load_suites() -> Vec<(String, Suite)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
            let suite: Suite = serde_yaml::from_str(&text)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            conformance::check_suite(&suite)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, suite)
        })
        .collect()
}

fn model_ports() -> Vec<ContainerPort> {
    PORTS
        .iter()
        .flat_map(|port| {
            Protocol::ALL.iter().map(move |protocol| ContainerPort {
                name: format!("serve-{port}-{}", protocol.name().to_ascii_lowercase()),
                protocol: protocol.name().to_owned(),
                port: *port,
            })
        })
        .collect()
}

fn namespace_labels(ns: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("ns".to_owned(), ns.to_owned())])
}

fn pod_labels(pod: &PodRef) -> BTreeMap<String, String> {
    BTreeMap::from([("pod".to_owned(), pod.name.clone())])
}

/// The model's cluster: namespaces, pods spread round-robin over the nodes, probe servers.
fn build_model(lab: &mut Lab) -> BTreeMap<PodRef, Ipv4Addr> {
    for ns in NAMESPACES {
        ok(lab.apply_namespace(ns, &namespace_labels(ns)));
    }
    let mut ips = BTreeMap::new();
    for (index, pod) in model_pods().into_iter().enumerate() {
        let created = ok(lab.add_pod_with(&PodRequest {
            node: format!("node-{}", index % NODES),
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            labels: pod_labels(&pod),
            ports: model_ports(),
        }));
        ok(lab.serve_probes(&pod.to_string()));
        ips.insert(pod, created.ip);
    }
    ips
}

/// Probes every ordered pair of distinct pods with each of `probes`, all at once.
fn observe(
    lab: &Lab,
    ips: &BTreeMap<PodRef, Ipv4Addr>,
    probes: &[ProbeSpec],
) -> BTreeMap<ProbeSpec, Matrix> {
    let pod_of: BTreeMap<Ipv4Addr, PodRef> =
        ips.iter().map(|(pod, ip)| (*ip, pod.clone())).collect();
    let plan: Vec<(String, Vec<Target>)> = ips
        .keys()
        .map(|from| {
            let targets = ips
                .iter()
                .filter(|(to, _)| *to != from)
                .flat_map(|(_, ip)| {
                    probes.iter().map(|probe| Target {
                        protocol: probe.protocol,
                        ip: *ip,
                        port: probe.port,
                    })
                })
                .collect();
            (from.to_string(), targets)
        })
        .collect();
    let mut matrices: BTreeMap<ProbeSpec, Matrix> = BTreeMap::new();
    for result in ok(lab.probe_from_pods(&plan, PROBE_TIMEOUT)) {
        let from = ok(PodRef::parse(&result.from).map_err(anyhow::Error::msg));
        let to = pod_of[&result.target.ip].clone();
        let probe = ProbeSpec {
            protocol: result.target.protocol,
            port: result.target.port,
        };
        matrices
            .entry(probe)
            .or_default()
            .insert((from, to), result.outcome == Outcome::Connected);
    }
    matrices
}

/// Probes until every probe's matrix equals `expected` or `deadline` passes; returns the
/// last observation when they never matched.
fn converge(
    lab: &Lab,
    ips: &BTreeMap<PodRef, Ipv4Addr>,
    probes: &[ProbeSpec],
    expected: &Matrix,
    deadline: Duration,
) -> Result<(), BTreeMap<ProbeSpec, Matrix>> {
    let started = Instant::now();
    loop {
        let observed = observe(lab, ips, probes);
        let all_match = probes.iter().all(|p| {
            observed
                .get(p)
                .is_some_and(|m| differences(expected, m).is_empty())
        });
        if all_match {
            return Ok(());
        }
        if started.elapsed() >= deadline {
            return Err(observed);
        }
    }
}

/// The resources of a YAML text, one document each, for deletion one by one.
fn documents(yaml: &str) -> Vec<String> {
    yaml.split("\n---")
        .map(|doc| doc.trim_start_matches("---").trim().to_owned())
        .filter(|doc| !doc.is_empty())
        .collect()
}

struct Runner<'a> {
    lab: &'a mut Lab,
    ips: BTreeMap<PodRef, Ipv4Addr>,
    pods: Vec<PodRef>,
    /// Every pair connects: the matrix without policy.
    everyone: Matrix,
}

impl Runner<'_> {
    fn run_step(&mut self, case: &Case, index: usize, step: &Step) -> Result<(), String> {
        let file = |verb: &str| {
            let slug: String = case
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            format!("conformance-{slug}-{index}-{verb}.yaml")
        };
        for change in &step.label {
            let result = match (&change.pod, &change.namespace) {
                (Some(pod), _) => self.lab.label_pod(pod, &change.set, &change.remove),
                (None, Some(ns)) => self.lab.label_namespace(ns, &change.set, &change.remove),
                (None, None) => Ok(()),
            };
            result.map_err(|err| format!("step {index}: label: {err:#}"))?;
        }
        if let Some(text) = &step.apply {
            let yaml = conformance::substitute(text, &self.ips)?;
            self.lab
                .apply_yaml(&file("apply"), &yaml)
                .map_err(|err| format!("step {index}: apply: {err:#}"))?;
        }
        if let Some(text) = &step.delete {
            let yaml = conformance::substitute(text, &self.ips)?;
            self.lab
                .delete_yaml(&file("delete"), &yaml)
                .map_err(|err| format!("step {index}: delete: {err:#}"))?;
        }
        let expected = step.expect.matrix(&self.pods)?;
        converge(self.lab, &self.ips, &step.probes, &expected, STEP_DEADLINE).map_err(|observed| {
            let mut report = format!("step {index}: the matrix did not converge\n");
            for probe in &step.probes {
                let empty = Matrix::new();
                let seen = observed.get(probe).unwrap_or(&empty);
                let wrong = differences(&expected, seen).len();
                if wrong > 0 {
                    report.push_str(&format!(
                        "{probe}: {wrong} wrong cell(s) (in brackets: observed)\n{}",
                        truth_table(&self.pods, &expected, seen)
                    ));
                }
            }
            report
        })
    }

    /// Deletes what the case applied and restores the model's labels, then waits until
    /// every pair connects again, so that one case cannot leak into the next.
    fn reset(&mut self, case: &Case) -> Result<(), String> {
        for step in &case.steps {
            let Some(text) = &step.apply else { continue };
            let yaml = conformance::substitute(text, &self.ips)?;
            for (n, doc) in documents(&yaml).iter().enumerate() {
                if let Err(err) = self
                    .lab
                    .delete_yaml(&format!("conformance-reset-{n}.yaml"), doc)
                {
                    let text = format!("{err:#}");
                    if !text.contains("does not exist") {
                        return Err(format!("reset: {text}"));
                    }
                }
            }
        }
        for ns in NAMESPACES {
            self.lab
                .apply_namespace(ns, &namespace_labels(ns))
                .map_err(|err| format!("reset: {err:#}"))?;
        }
        for pod in &self.pods {
            let current = self
                .lab
                .pod(&pod.to_string())
                .map(|p| p.labels.clone())
                .unwrap_or_default();
            let baseline = pod_labels(pod);
            if current != baseline {
                let extra: Vec<String> = current
                    .keys()
                    .filter(|k| !baseline.contains_key(*k))
                    .cloned()
                    .collect();
                self.lab
                    .label_pod(&pod.to_string(), &baseline, &extra)
                    .map_err(|err| format!("reset: {err:#}"))?;
            }
        }
        let baseline = [ProbeSpec {
            protocol: Protocol::Tcp,
            port: 80,
        }];
        converge(
            self.lab,
            &self.ips,
            &baseline,
            &self.everyone,
            STEP_DEADLINE,
        )
        .map_err(|_| "reset: pairs still blocked after the case's policies were deleted".into())
    }
}

#[test]
fn network_policy_conformance_table() {
    if harness::skip_unless_root("network_policy_conformance_table") {
        return;
    }
    let suites = load_suites();
    let only = std::env::var("TORTIE_CONFORMANCE_CASE").ok();
    harness::sweep_stale_test_labs("conf");
    let artifacts = Artifacts::from_env_or_target().unwrap_or_else(|err| panic!("{err}"));
    assert!(
        artifacts.probe_bin().exists(),
        "{} is missing: build it with `cargo build -p tortie-lab --bin tortie-probe`",
        artifacts.probe_bin().display()
    );
    let spec = LabSpec::new(harness::test_lab_name("conf"), NODES, 0)
        .with_encap(Encap::Ipip)
        .with_datastore(DatastoreMode::Etcd);
    let mut guard = LabGuard::up(&spec, &artifacts).unwrap_or_else(|err| panic!("{err:#}"));
    let lab: &mut Lab = &mut guard;
    let ips = build_model(lab);
    let pods = model_pods();
    let everyone = conformance::Expectation {
        default: true,
        rules: Vec::new(),
    }
    .matrix(&pods)
    .unwrap_or_else(|e| panic!("{e}"));
    let mut runner = Runner {
        lab,
        ips,
        pods,
        everyone,
    };

    // Without policy every pod reaches every other on every port and protocol.
    let all_probes: Vec<ProbeSpec> = PORTS
        .iter()
        .flat_map(|port| {
            Protocol::ALL.iter().map(|protocol| ProbeSpec {
                protocol: *protocol,
                port: *port,
            })
        })
        .collect();
    if let Err(observed) = converge(
        runner.lab,
        &runner.ips,
        &all_probes,
        &runner.everyone,
        STEP_DEADLINE,
    ) {
        for (probe, seen) in &observed {
            eprintln!(
                "{probe}\n{}",
                truth_table(&runner.pods, &runner.everyone, seen)
            );
        }
        panic!("without policy every pair must connect on every probe");
    }

    let started = Instant::now();
    let mut failures = Vec::new();
    let mut ran = 0;
    for (file, suite) in &suites {
        for case in &suite.cases {
            if only
                .as_deref()
                .is_some_and(|text| !case.name.contains(text))
            {
                continue;
            }
            ran += 1;
            let case_started = Instant::now();
            let mut outcome = Ok(());
            for (index, step) in case.steps.iter().enumerate() {
                outcome = runner.run_step(case, index, step);
                if outcome.is_err() {
                    break;
                }
            }
            let reset = runner.reset(case);
            let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
            eprintln!(
                "[{file}] {} ... {verdict} ({:.1}s)",
                case.name,
                case_started.elapsed().as_secs_f64()
            );
            if let Err(report) = outcome {
                failures.push(format!("[{file}] {}\n{report}", case.name));
            }
            if let Err(report) = reset {
                failures.push(format!("[{file}] {}\n{report}", case.name));
                break;
            }
        }
    }
    eprintln!(
        "{ran} case(s) in {:.0}s, {} failed",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(ran > 0, "no case matched TORTIE_CONFORMANCE_CASE={only:?}");
    assert!(
        failures.is_empty(),
        "{} of {ran} case(s) failed:\n\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        harness::agent_logs(runner.lab)
    );
}
