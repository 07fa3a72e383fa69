//! Whole-machine CPU profiles of benchmark traffic: `perf record` timer sampling with call
//! chains, reduced to what the report needs — how much of the busy CPU time tortie's programs
//! take, what inside them, and what takes the rest.
//!
//! `bpftool prog profile` would count cycles and cache misses per program, but it needs
//! hardware performance counters; many virtual machines expose none. Timer sampling
//! (`cpu-clock`) works everywhere, and JIT-compiled programs carry frame pointers, so a sample
//! taken in a map helper still names the program that called it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Sampling frequency per CPU (Hz): fine enough for a few seconds of traffic, cheap enough
/// not to disturb it much.
const FREQUENCY_HZ: &str = "2999";
/// Rows of each symbol table in the report.
const TOP: usize = 10;

/// One profiled workload.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Profile {
    /// What ran while sampling.
    pub workload: String,
    /// Samples on every CPU.
    pub samples: u64,
    /// Samples of idle CPUs.
    pub idle: u64,
    /// Samples with a tortie program on the stack (the program or a helper it called).
    pub in_programs: u64,
    /// Those samples by program.
    pub by_program: BTreeMap<String, u64>,
    /// Those samples by the function running (the program's own code, or a helper).
    pub program_leaves: Vec<(String, u64)>,
    /// Busy samples by the function running, most first.
    pub busy_leaves: Vec<(String, u64)>,
}

/// Why no profile was taken, or `None` when `perf` can sample here.
pub fn unavailable() -> Option<String> {
    let perf = Command::new("perf")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match perf {
        Ok(status) if status.success() => None,
        _ => Some("`perf` is not installed (Debian package `linux-perf`)".into()),
    }
}

/// Whether the machine exposes a hardware PMU, which `bpftool prog profile` needs.
pub fn has_hardware_counters() -> bool {
    Path::new("/sys/bus/event_source/devices/cpu").exists()
        || Path::new("/sys/bus/event_source/devices/cpu_core").exists()
}

/// Samples every CPU while `workload` runs (it should last about `seconds`), then reduces the
/// samples. `scratch` holds perf's data file and is removed afterwards.
pub fn record(
    name: &str,
    seconds: f64,
    scratch: &Path,
    workload: impl FnOnce() -> Result<()>,
) -> Result<Profile> {
    let duration = format!("{seconds}");
    let perf = Command::new("perf")
        .args([
            "record",
            "-a",
            "-g",
            "-e",
            "cpu-clock",
            "-F",
            FREQUENCY_HZ,
            "-o",
        ])
        .arg(scratch)
        .args(["--", "sleep", &duration])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting perf record")?;
    let ran = workload();
    let recorded = perf.wait_with_output().context("waiting for perf record")?;
    ran?;
    if !recorded.status.success() {
        bail!(
            "perf record failed: {}",
            String::from_utf8_lossy(&recorded.stderr)
        );
    }
    let script = Command::new("perf")
        .args(["script", "-F", "comm,cpu,ip,sym", "-i"])
        .arg(scratch)
        .stderr(Stdio::null())
        .output()
        .context("running perf script")?;
    let _ = std::fs::remove_file(scratch);
    if !script.status.success() {
        bail!("perf script failed on {}", scratch.display());
    }
    let mut profile = reduce(&String::from_utf8_lossy(&script.stdout));
    profile.workload = name.to_string();
    Ok(profile)
}

/// Folds `perf script` output (a header line per sample, then one tab-indented
/// `address symbol` line per frame, innermost first) into a [`Profile`].
fn reduce(script: &str) -> Profile {
    let mut profile = Profile::default();
    let mut program_leaves: BTreeMap<String, u64> = BTreeMap::new();
    let mut busy_leaves: BTreeMap<String, u64> = BTreeMap::new();
    for sample in script.split("\n\n").filter(|s| !s.trim().is_empty()) {
        let frames: Vec<&str> = sample
            .lines()
            .filter(|line| line.starts_with('\t'))
            .map(|line| {
                let line = line.trim();
                line.split_once(' ')
                    .map_or(line, |(_, symbol)| symbol.trim())
            })
            .collect();
        let Some(leaf) = frames.first() else {
            continue;
        };
        profile.samples += 1;
        if frames.iter().any(|frame| is_idle(frame)) {
            profile.idle += 1;
            continue;
        }
        *busy_leaves.entry(busy_name(&frames)).or_default() += 1;
        if let Some(program) = frames.iter().find_map(|frame| tortie_program(frame)) {
            profile.in_programs += 1;
            *profile.by_program.entry(program.to_string()).or_default() += 1;
            *program_leaves.entry(display_name(leaf)).or_default() += 1;
        }
    }
    profile.program_leaves = most_first(program_leaves);
    profile.busy_leaves = most_first(busy_leaves);
    profile
}

/// The running function of a busy sample; a lock primitive is named with the function that
/// took the lock (`__pv_queued_spin_lock_slowpath ← sk_wait_data`), since which lock is
/// contended is the point.
fn busy_name(frames: &[&str]) -> String {
    let leaf = display_name(frames[0]);
    if !is_lock(frames[0]) {
        return leaf;
    }
    match frames.iter().find(|frame| !is_lock(frame)) {
        Some(caller) => format!("{leaf} ← {caller}"),
        None => leaf,
    }
}

fn is_lock(symbol: &str) -> bool {
    [
        "_raw_spin_",
        "__pv_queued_spin",
        "queued_spin",
        "native_queued_spin",
        "do_raw_spin",
    ]
    .iter()
    .any(|prefix| symbol.starts_with(prefix))
}

/// The idle loop: CPUs with nothing to run.
fn is_idle(symbol: &str) -> bool {
    matches!(symbol, "do_idle" | "cpu_startup_entry" | "cpuidle_enter")
}

/// `tortie_from_wep` out of the JIT image's symbol `bpf_prog_<tag>_tortie_from_wep`.
fn tortie_program(symbol: &str) -> Option<&str> {
    let (_tag, name) = symbol.strip_prefix("bpf_prog_")?.split_once('_')?;
    name.starts_with("tortie_").then_some(name)
}

/// A symbol as the report shows it: a program's own code under its name, not its tag.
fn display_name(symbol: &str) -> String {
    match tortie_program(symbol) {
        Some(program) => format!("{program} (its own code)"),
        None => symbol.to_string(),
    }
}

fn most_first(counts: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

/// The report's subsection for `profiles`.
pub fn render(profiles: &[Profile], skipped: Option<&str>) -> String {
    let mut out = String::from("\n### Profile\n\n");
    let counters = if has_hardware_counters() {
        "This machine has hardware counters, but the report uses timer sampling everywhere so \
         that runs on different machines compare."
    } else {
        "`bpftool prog profile` needs hardware performance counters, which this machine does \
         not expose (no `cpu` PMU under /sys/bus/event_source/devices), so the profile is \
         timer sampling instead."
    };
    let _ = writeln!(
        out,
        "`perf record -a -g -e cpu-clock -F {FREQUENCY_HZ}` on both CPUs while one workload \
         ran (an extra run, not one of the measured ones). A sample counts for tortie when a \
         tortie program is on its call chain, so the helpers and map lookups a program calls \
         are included. Shares are of the busy (non-idle) samples. {counters}\n"
    );
    if let Some(reason) = skipped {
        let _ = writeln!(out, "Not profiled in this run: {reason}.");
        return out;
    }
    for profile in profiles {
        let busy = profile.samples.saturating_sub(profile.idle).max(1) as f64;
        let share = |n: u64| 100.0 * n as f64 / busy;
        let by_program = profile
            .by_program
            .iter()
            .map(|(program, n)| format!("{program} {:.1}%", share(*n)))
            .collect::<Vec<_>>()
            .join(", ");
        let by_program = if by_program.is_empty() {
            String::new()
        } else {
            format!(" ({by_program})")
        };
        let _ = writeln!(
            out,
            "**{}**: {} samples, {} busy; tortie's programs {:.1}% of busy CPU time{by_program}.\n",
            profile.workload,
            profile.samples,
            profile.samples - profile.idle,
            share(profile.in_programs),
        );
        let locks: u64 = profile
            .busy_leaves
            .iter()
            .filter(|(symbol, _)| is_lock(symbol))
            .map(|(_, n)| n)
            .sum();
        let _ = writeln!(
            out,
            "Spin locks take {:.1}% of it: waiting for a contended lock, and the \
             interrupts-off sections a lock release ends (timer samples cannot land inside \
             those, so `_raw_spin_unlock_irqrestore` collects them; wakeups of the task on the \
             other CPU are the usual ones here). Each is shown with the function that took the \
             lock.\n",
            share(locks)
        );
        let _ = writeln!(
            out,
            "| busy CPU, by function | share | inside tortie's programs, by function | share |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        for row in 0..TOP {
            let cell = |leaves: &[(String, u64)]| {
                leaves
                    .get(row)
                    .map_or((String::new(), String::new()), |(s, n)| {
                        (format!("`{s}`"), format!("{:.1}%", share(*n)))
                    })
            };
            let (busy_symbol, busy_share) = cell(&profile.busy_leaves);
            let (program_symbol, program_share) = cell(&profile.program_leaves);
            if busy_symbol.is_empty() && program_symbol.is_empty() {
                break;
            }
            let _ = writeln!(
                out,
                "| {busy_symbol} | {busy_share} | {program_symbol} | {program_share} |"
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "swapper [000] \n\
        \tffffffff822613eb pv_native_safe_halt\n\
        \tffffffff813d00d6 do_idle\n\
        \n\
        tortie-probe [001] \n\
        \tffffffff81111111 htab_map_hash\n\
        \tffffffffc0001234 bpf_prog_e7c9995836a8b45d_tortie_from_wep\n\
        \tffffffff81222222 cls_bpf_classify\n\
        \n\
        tortie-probe [001] \n\
        \tffffffffc0001240 bpf_prog_e7c9995836a8b45d_tortie_from_wep\n\
        \tffffffff81222222 cls_bpf_classify\n\
        \n\
        iperf3 [000] \n\
        \tffffffff81333333 tcp_ack\n\
        \tffffffff81444444 tcp_rcv_established\n\
        \n\
        tortie-probe [000] \n\
        \tffffffff81555555 __pv_queued_spin_lock_slowpath\n\
        \tffffffff81666666 _raw_spin_lock_bh\n\
        \tffffffff81777777 sk_wait_data\n";

    #[test]
    fn samples_fold_into_programs_helpers_and_the_rest() {
        let profile = reduce(SCRIPT);
        assert_eq!(
            (profile.samples, profile.idle, profile.in_programs),
            (5, 1, 2)
        );
        assert_eq!(profile.by_program["tortie_from_wep"], 2);
        assert_eq!(
            profile.program_leaves,
            vec![
                ("htab_map_hash".to_string(), 1),
                ("tortie_from_wep (its own code)".to_string(), 1)
            ]
        );
        assert!(profile.busy_leaves.contains(&(
            "__pv_queued_spin_lock_slowpath ← sk_wait_data".to_string(),
            1
        )));
        assert_eq!(profile.busy_leaves.len(), 4);
        assert!(render(&[profile], None).contains("tortie's programs 50.0% of busy CPU time"));
    }

    #[test]
    fn only_tortie_programs_count() {
        assert_eq!(
            tortie_program("bpf_prog_e7c9995836a8b45d_tortie_to_hep"),
            Some("tortie_to_hep")
        );
        assert_eq!(tortie_program("bpf_prog_4f9302ba65b90ccd_memset"), None);
        assert_eq!(tortie_program("tcp_ack"), None);
    }
}
