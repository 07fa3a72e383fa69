//! Reading an agent's packet counters (`TORTIE_COUNTERS`, a per-CPU array) with `bpftool`,
//! summed over CPUs and keyed by the counter's name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::netns::{command_line, run_checked};

/// Counter names by index, for counters this build's `bpf-maps` may not list yet.
const KNOWN_NAMES: [(u32, &str); 18] = [
    (0, "forwarded_local"),
    (1, "passed_to_host"),
    (2, "arp_replied"),
    (3, "uplink_passed"),
    (4, "to_workload"),
    (5, "forwarded_remote"),
    (6, "encapsulated"),
    (7, "decapsulated"),
    (8, "nat_outgoing"),
    (16, "drop_malformed"),
    (17, "drop_spoofed_source"),
    (18, "drop_unknown_workload"),
    (19, "drop_ttl_exceeded"),
    (20, "drop_redirect_failed"),
    (21, "drop_unsupported"),
    (22, "drop_unknown_tunnel_source"),
    (23, "drop_no_route"),
    (24, "drop_nat_ports_exhausted"),
];

/// Reading the counters failed.
#[derive(Debug, thiserror::Error)]
pub enum CountersError {
    /// No (or no unambiguous) map layout directory below the pin root.
    #[error("no counters map under {}: {reason} (is the agent of this node running? see its log)", dir.display())]
    NoMaps {
        /// `<pin root>/maps`.
        dir: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// bpftool failed.
    #[error(transparent)]
    Bpftool(#[from] crate::netns::NetnsError),
    /// bpftool printed something this parser does not understand.
    #[error("`{command}` printed unexpected JSON: {reason}")]
    Parse {
        /// The command line.
        command: String,
        /// What was wrong.
        reason: String,
    },
}

/// The name of counter `index`: the shared `bpf-maps` name, else a known one, else
/// `counter_<index>`.
pub fn counter_name(index: u32) -> String {
    if let Some(counter) = bpf_maps::Counter::ALL.iter().find(|c| **c as u32 == index) {
        return counter.name().to_owned();
    }
    KNOWN_NAMES.iter().find(|(i, _)| *i == index).map_or_else(
        || format!("counter_{index}"),
        |(_, name)| (*name).to_owned(),
    )
}

/// `<pin_root>/maps/v<N>/TORTIE_COUNTERS`: the single layout directory, or the current
/// layout's when an older one was left behind.
pub fn counters_pin(pin_root: &Path) -> Result<PathBuf, CountersError> {
    let dir = pin_root.join(bpf_maps::pins::MAPS_DIR);
    let no_maps = |reason: String| CountersError::NoMaps {
        dir: dir.clone(),
        reason,
    };
    let entries = std::fs::read_dir(&dir).map_err(|err| no_maps(err.to_string()))?;
    let mut versions: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            name.strip_prefix('v')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    versions.sort();
    let current = format!("v{}", bpf_maps::MAP_LAYOUT_VERSION);
    let chosen = match versions.as_slice() {
        [] => return Err(no_maps("no v<N> directory".to_owned())),
        [only] => only.clone(),
        several if several.contains(&current) => current,
        several => {
            return Err(no_maps(format!(
                "several layouts ({}) and none is this build's {current}",
                several.join(", ")
            )))
        }
    };
    Ok(dir.join(chosen).join(bpf_maps::map_names::COUNTERS))
}

/// Dumps the counters pinned below `pin_root`, summed over CPUs, by name.
pub fn read_counters(pin_root: &Path) -> Result<BTreeMap<String, u64>, CountersError> {
    let pin = counters_pin(pin_root)?;
    let mut command = Command::new("bpftool");
    command.args(["-j", "map", "dump", "pinned"]).arg(&pin);
    let line = command_line(&command);
    let out = run_checked(format!("dumping {}", pin.display()), &mut command)?;
    parse_dump(&out).map_err(|reason| CountersError::Parse {
        command: line,
        reason,
    })
}

/// Parses `bpftool -j map dump` of a per-CPU array: entries with a `formatted` (BTF) view or
/// raw little-endian hex bytes; per-CPU `values` or a single `value`.
pub fn parse_dump(json: &str) -> Result<BTreeMap<String, u64>, String> {
    let value: Value = serde_json::from_str(json).map_err(|err| err.to_string())?;
    let entries = value
        .as_array()
        .ok_or_else(|| "expected a JSON array of entries".to_owned())?;
    let mut counters = BTreeMap::new();
    for entry in entries {
        let view = entry.get("formatted").unwrap_or(entry);
        let key = view
            .get("key")
            .and_then(number)
            .ok_or_else(|| format!("entry without a numeric key: {entry}"))?;
        let index = u32::try_from(key).map_err(|_| format!("key {key} is not an index"))?;
        let total = match (view.get("values"), view.get("value")) {
            (Some(Value::Array(per_cpu)), _) => per_cpu
                .iter()
                .map(|cpu| cpu.get("value").and_then(number))
                .sum::<Option<u64>>(),
            (_, Some(single)) => number(single),
            _ => None,
        }
        .ok_or_else(|| format!("entry without numeric values: {entry}"))?;
        *counters.entry(counter_name(index)).or_insert(0) += total;
    }
    Ok(counters)
}

/// A number, or little-endian hex bytes (`["0x05","0x00",…]`).
fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::Array(bytes) => bytes.iter().rev().try_fold(0u64, |acc, byte| {
            let byte = u8::from_str_radix(byte.as_str()?.trim_start_matches("0x"), 16).ok()?;
            Some(acc.checked_shl(8)? | u64::from(byte))
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_the_agreed_indices() {
        assert_eq!(counter_name(0), "forwarded_local");
        assert_eq!(counter_name(17), "drop_spoofed_source");
        assert_eq!(counter_name(5), "forwarded_remote");
        assert_eq!(counter_name(24), "drop_nat_ports_exhausted");
        assert_eq!(counter_name(31), "counter_31");
    }

    #[test]
    fn sums_formatted_per_cpu_values() {
        let json = r#"[
            {"key": 17, "values": [{"cpu": 0, "value": 2}, {"cpu": 1, "value": 3}]},
            {"key": 30, "values": [{"cpu": 0, "value": 1}, {"cpu": 1, "value": 0}]}
        ]"#;
        let counters = parse_dump(json).expect("parses");
        assert_eq!(counters["drop_spoofed_source"], 5);
        assert_eq!(counters["counter_30"], 1);
    }

    #[test]
    fn reads_raw_hex_and_prefers_the_formatted_view() {
        let json = r#"[
            {"key": ["0x00","0x00","0x00","0x00"],
             "values": [{"cpu": 0, "value": ["0x01","0x01","0x00","0x00","0x00","0x00","0x00","0x00"]}]},
            {"key": ["0x01","0x00","0x00","0x00"], "values": [],
             "formatted": {"key": 1, "values": [{"cpu": 0, "value": 7}]}}
        ]"#;
        let counters = parse_dump(json).expect("parses");
        assert_eq!(counters["forwarded_local"], 257);
        assert_eq!(counters["passed_to_host"], 7);
        assert!(parse_dump("{}").is_err());
    }
}
