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
            let cell = if from == to {
                "·"
            } else {
                match outcome(from, to) {
                    Some(true) => "✓",
                    Some(false) => "✗",
                    None => "?",
                }
            };
            let _ = write!(out, " {cell:>width$}");
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
pub fn next_steps(lab: &str, first_pod: Option<(&str, &str)>, first_node: &str) -> String {
    let flag = name_flag(lab);
    let mut out = String::from("next:\n");
    let _ = writeln!(out, "  cargo xtask lab status{flag}");
    if let Some((pod, peer_ip)) = first_pod {
        let _ = writeln!(out, "  cargo xtask lab exec{flag} {pod} -- ping {peer_ip}");
    }
    let _ = writeln!(
        out,
        "  bpftool map dump pinned {}/{}/v{}/{}",
        crate::spec::pin_root(lab, first_node).display(),
        bpf_maps::pins::MAPS_DIR,
        bpf_maps::MAP_LAYOUT_VERSION,
        bpf_maps::map_names::ROUTES,
    );
    let _ = writeln!(out, "  cargo xtask lab down{flag}");
    out
}

/// The status as two readable tables.
pub fn format_status(status: &LabStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "lab {}", status.name);
    let _ = writeln!(
        out,
        "  {:<8} {:<12} {:<11} {:<32} NETNS",
        "NODE", "IP", "AGENT", "PIN ROOT"
    );
    for node in &status.nodes {
        let agent = match (node.agent_pid, node.agent_running) {
            (Some(pid), true) => pid.to_string(),
            (Some(pid), false) => format!("{pid} dead"),
            (None, _) => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {:<8} {:<12} {:<11} {:<32} {}",
            node.name,
            node.ip,
            agent,
            node.pin_root.display().to_string(),
            node.netns
        );
    }
    let _ = writeln!(
        out,
        "  {:<10} {:<8} {:<12} {:<16} {:<18} NETNS",
        "POD", "NODE", "IP", "HOST IFACE", "MAC"
    );
    for pod in &status.pods {
        let _ = writeln!(
            out,
            "  {:<10} {:<8} {:<12} {:<16} {:<18} {}",
            pod.name, pod.node, pod.ip, pod.host_iface, pod.mac, pod.netns
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
    fn next_steps_name_non_default_labs() {
        assert!(next_steps("lab", None, "node-0").contains("lab down\n"));
        let text = next_steps("x", Some(("pod-0-0", "10.65.0.11")), "node-0");
        assert!(text.contains("lab exec --name x pod-0-0 -- ping 10.65.0.11"));
        assert!(text.contains("/sys/fs/bpf/tortie/x/node-0/maps/v1/TORTIE_ROUTES"));
    }
}
