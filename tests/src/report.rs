//! What the lab tells a person: progress lines, the ping matrix, the status table, next steps.

use std::fmt::{Display, Write as _};
use std::time::Instant;

use crate::lab::LabStatus;
use crate::spec::DEFAULT_LAB_NAME;

/// Progress lines on stderr, each with the time since the operation began.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Starts the clock.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    /// Prints `[  1.23s] <message>`.
    pub fn step(&self, message: impl Display) {
        eprintln!("[{:>7.2}s] {message}", self.started.elapsed().as_secs_f64());
    }

    /// Prints `[  1.23s] warning: <message>`.
    pub fn warn(&self, message: impl Display) {
        self.step(format_args!("warning: {message}"));
    }
}

/// The ping matrix: one row per source pod, one column per destination, ✓ or ✗.
pub fn format_matrix(pods: &[&str], results: &[(String, String, bool)]) -> String {
    format_matrix_colored(pods, results, false)
}

/// Whether output to stdout may use colour: a terminal, and `NO_COLOR` unset.
pub fn stdout_has_color() -> bool {
    use std::io::IsTerminal as _;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// [`format_matrix`], with replies in green and failures in red when `color`.
pub fn format_matrix_colored(
    pods: &[&str],
    results: &[(String, String, bool)],
    color: bool,
) -> String {
    let outcome = |from: &str, to: &str| {
        results
            .iter()
            .find(|(a, b, _)| a == from && b == to)
            .map(|&(_, _, ok)| ok)
    };
    let width = pods
        .iter()
        .map(|p| p.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = String::new();
    let _ = writeln!(out, "ping matrix (row pings column):");
    let _ = write!(out, "  {:width$}", "");
    for pod in pods {
        let _ = write!(out, " {pod:>width$}");
    }
    out.push('\n');
    for from in pods {
        let _ = write!(out, "  {from:width$}");
        for to in pods {
            let (cell, paint) = if from == to {
                ("·", "")
            } else {
                match outcome(from, to) {
                    Some(true) => ("✓", "\x1b[32m"),
                    Some(false) => ("✗", "\x1b[31m"),
                    None => ("?", ""),
                }
            };
            // Padding by hand: escape codes take no columns.
            let _ = write!(out, " {:>pad$}", "", pad = width - 1);
            if color && !paint.is_empty() {
                let _ = write!(out, "{paint}{cell}\x1b[0m");
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

/// `--name <lab>` when the lab is not the default one, for suggested commands.
fn name_flag(lab: &str) -> String {
    if lab == DEFAULT_LAB_NAME {
        String::new()
    } else {
        format!(" --name {lab}")
    }
}

/// Commands worth trying next on a lab that is up.
pub fn next_steps(
    lab: &str,
    first_pod: Option<(&str, &str)>,
    first_node: &str,
    with_datastore: bool,
    with_bgp: bool,
) -> String {
    let flag = name_flag(lab);
    let mut out = String::from("next:\n");
    let _ = writeln!(out, "  cargo xtask lab status{flag}");
    if with_datastore {
        let _ = writeln!(
            out,
            "  cargo xtask lab exec{flag} {first_node} -- tortiectl get workloadendpoints -o wide"
        );
        let _ = writeln!(
            out,
            "  cargo xtask lab exec{flag} {first_node} -- tortiectl ipam show"
        );
    }
    if with_bgp {
        let _ = writeln!(
            out,
            "  cargo xtask lab exec{flag} {first_node} -- tortiectl node status"
        );
    }
    if let Some((pod, peer_ip)) = first_pod {
        let _ = writeln!(out, "  cargo xtask lab exec{flag} {pod} -- ping {peer_ip}");
    }
    let _ = writeln!(
        out,
        "  bpftool map dump pinned {}",
        crate::spec::maps_dir(&crate::spec::pin_root(lab, first_node))
            .join(bpf_maps::map_names::ROUTES)
            .display(),
    );
    let _ = writeln!(
        out,
        "  cargo xtask lab exec{flag} fabric -- tcpdump -nn -v -i br0"
    );
    let _ = writeln!(out, "  cargo xtask lab down{flag}");
    out
}

/// Which pods reach the external host, one line each.
pub fn format_external(external_ip: &str, results: &[(String, bool)]) -> String {
    let mut out = format!("external host {external_ip} (needs natOutgoing):\n");
    for (pod, replied) in results {
        let mark = if *replied { "✓" } else { "✗" };
        let _ = writeln!(out, "  {pod} → {external_ip} {mark}");
    }
    out
}

/// The status as readable tables: the lab's modes, router and external host, nodes, pods.
pub fn format_status(status: &LabStatus) -> String {
    let mut out = String::new();
    let mode = if status.cross_subnet {
        " (CrossSubnet)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "lab {}: encap {}{mode}, {} fabric",
        status.name, status.encap, status.topology
    );
    let legs: Vec<String> = status
        .router
        .legs
        .iter()
        .map(|leg| format!("{} {}", leg.iface, leg.ip))
        .chain(std::iter::once(format!(
            "{} {}",
            status.router.external_iface, status.router.external_ip
        )))
        .collect();
    let _ = writeln!(
        out,
        "  router   {} ({})",
        legs.join(", "),
        status.router.netns
    );
    let _ = writeln!(
        out,
        "  external {} via {} ({})",
        status.external.ip, status.external.gateway, status.external.netns
    );
    let pin_width = status
        .nodes
        .iter()
        .map(|n| n.pin_root.display().to_string().chars().count())
        .max()
        .unwrap_or(0)
        .max(32);
    let _ = writeln!(
        out,
        "  {:<8} {:<12} {:<4} {:<11} {:<pin_width$} NETNS",
        "NODE", "IP", "SEG", "AGENT", "PIN ROOT"
    );
    for node in &status.nodes {
        let agent = match (node.agent_pid, node.agent_running) {
            (Some(pid), true) => pid.to_string(),
            (Some(pid), false) => format!("{pid} dead"),
            (None, _) => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {:<8} {:<12} {:<4} {:<11} {:<pin_width$} {}",
            node.name,
            node.ip.to_string(),
            format!("br{}", node.segment),
            agent,
            node.pin_root.display().to_string(),
            node.netns
        );
    }
    let _ = writeln!(
        out,
        "  {:<10} {:<8} {:<12} {:<16} {:<18} {:<5} NETNS",
        "POD", "NODE", "IP", "HOST IFACE", "MAC", "MTU"
    );
    for pod in &status.pods {
        let _ = writeln!(
            out,
            "  {:<10} {:<8} {:<12} {:<16} {:<18} {:<5} {}",
            pod.name,
            pod.node,
            pod.ip.to_string(),
            pod.host_iface,
            pod.mac,
            pod.mtu,
            pod.netns
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_marks_each_pair() {
        let results = vec![
            ("a".to_owned(), "b".to_owned(), true),
            ("b".to_owned(), "a".to_owned(), false),
        ];
        let text = format_matrix(&["a", "b"], &results);
        let rows: Vec<&str> = text.lines().skip(2).collect();
        assert!(rows[0].ends_with('✓'), "{text}");
        assert!(rows[1].contains('✗') && rows[1].ends_with('·'), "{text}");
    }

    #[test]
    fn status_shows_modes_router_segments_and_mtu() {
        use crate::lab::NodeStatus;
        use crate::spec::{Encap, LabSpec, Topology};
        let spec = LabSpec::new("x", 2, 1)
            .with_encap(Encap::Vxlan)
            .with_cross_subnet(true)
            .with_topology(Topology::Routed);
        let (nodes, pods) = spec.plan();
        let status = LabStatus {
            name: spec.name.clone(),
            encap: spec.encap,
            cross_subnet: spec.cross_subnet,
            topology: spec.topology,
            router: spec.router(),
            external: spec.external(),
            nodes: nodes
                .iter()
                .map(|n| NodeStatus {
                    name: n.name.clone(),
                    netns: n.netns.clone(),
                    ip: n.ip,
                    segment: n.segment,
                    agent_pid: None,
                    agent_running: false,
                    pin_root: n.pin_root.clone(),
                })
                .collect(),
            pods,
        };
        let text = format_status(&status);
        assert!(
            text.starts_with("lab x: encap vxlan (CrossSubnet), routed fabric\n"),
            "{text}"
        );
        assert!(
            text.contains("r0 10.99.0.1, r1 10.99.1.1, ext0 203.0.113.1"),
            "{text}"
        );
        assert!(text.contains("203.0.113.10 via 203.0.113.1"), "{text}");
        assert!(text.contains("10.99.1.12   br1"), "{text}");
        assert!(text.contains(" 1450 "), "{text}");
        let json = serde_json::to_value(&status).expect("serializable");
        assert_eq!(json["encap"], "vxlan");
        assert_eq!(json["cross_subnet"], true);
        assert_eq!(json["topology"], "routed");
        assert_eq!(json["router"]["legs"][1]["ip"], "10.99.1.1");
        assert_eq!(json["external"]["ip"], "203.0.113.10");
        assert_eq!(json["nodes"][1]["segment"], 1);
    }

    #[test]
    fn external_lines_mark_each_pod() {
        let text = format_external(
            "203.0.113.10",
            &[("a".to_owned(), true), ("b".to_owned(), false)],
        );
        assert!(text.contains("a → 203.0.113.10 ✓"), "{text}");
        assert!(text.contains("b → 203.0.113.10 ✗"), "{text}");
    }

    #[test]
    fn next_steps_name_non_default_labs() {
        assert!(next_steps("lab", None, "node-0", false, false).contains("lab down\n"));
        let text = next_steps("x", Some(("pod-0-0", "10.65.0.11")), "node-0", true, true);
        assert!(text.contains("lab exec --name x pod-0-0 -- ping 10.65.0.11"));
        assert!(text.contains("lab exec --name x node-0 -- tortiectl ipam show"));
        let pin = format!(
            "/sys/fs/bpf/tortie/x/node-0/maps/v{}/TORTIE_ROUTES",
            bpf_maps::MAP_LAYOUT_VERSION
        );
        assert!(text.contains(&pin), "{text}");
    }
}
