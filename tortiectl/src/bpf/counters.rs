//! `bpf counters`: what happened to packets, summed over CPUs.

use bpf_maps::Counter;
use serde::Serialize;

use super::table::Table;

/// One counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CounterRow {
    /// Stable name (`drop_policy_denied`); `slot_N` for a slot this tortiectl has no name for.
    pub name: String,
    /// Index in `TORTIE_COUNTERS`.
    pub slot: u32,
    /// Packets, summed over CPUs.
    pub value: u64,
    /// Whether it counts dropped packets.
    pub drop: bool,
}

/// Rows for the per-slot totals `sums` (index = slot): named counters first in slot order,
/// then non-zero slots without a name (a newer dataplane's). Zeros only with `all`.
pub fn counter_rows(sums: &[u64], all: bool) -> Vec<CounterRow> {
    let value = |slot: u32| sums.get(slot as usize).copied().unwrap_or(0);
    let mut rows: Vec<CounterRow> = Counter::ALL
        .iter()
        .map(|counter| CounterRow {
            name: counter.name().to_string(),
            slot: *counter as u32,
            value: value(*counter as u32),
            drop: counter.is_drop(),
        })
        .collect();
    for slot in 0..sums.len() as u32 {
        if value(slot) != 0 && !Counter::ALL.iter().any(|c| *c as u32 == slot) {
            rows.push(CounterRow {
                name: format!("slot_{slot}"),
                slot,
                value: value(slot),
                drop: slot >= 16,
            });
        }
    }
    rows.retain(|row| all || row.value != 0);
    rows
}

/// The counters table.
pub fn counters_table(rows: &[CounterRow]) -> Table {
    let mut table = Table::new(&["COUNTER", "VALUE"]);
    for row in rows {
        table.push(vec![row.name.clone(), row.value.to_string()]);
    }
    table
}

/// Packets one policy rule decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleHitRow {
    /// Index in `TORTIE_RULEHITS`, as `tortiectl bpf policy` shows it per entry.
    pub rule: u32,
    /// Name of a reserved rule (`default-deny`, `profile-allow`).
    pub name: Option<&'static str>,
    /// Packets, summed over CPUs.
    pub hits: u64,
}

/// Rows for the per-rule totals `sums` (index = rule); zeros only with `all`.
pub fn rule_hit_rows(sums: &[u64], all: bool) -> Vec<RuleHitRow> {
    (0u32..)
        .zip(sums)
        .filter(|(_, hits)| all || **hits != 0)
        .map(|(rule, hits)| RuleHitRow {
            rule,
            name: super::policy::builtin_rule_name(rule),
            hits: *hits,
        })
        .collect()
}

/// The rule hits table.
pub fn rule_hits_table(rows: &[RuleHitRow]) -> Table {
    let mut table = Table::new(&["RULE", "HITS"]);
    for row in rows {
        table.push(vec![
            super::policy::rule_cell(row.rule, row.name),
            row.hits.to_string(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_non_zero_counters_unless_all() {
        let mut sums = vec![0u64; 32];
        sums[Counter::ForwardedLocal as usize] = 5;
        sums[Counter::DropPolicyDenied as usize] = 2;
        let rows = counter_rows(&sums, false);
        assert_eq!(
            rows.iter()
                .map(|r| (r.name.as_str(), r.value, r.drop))
                .collect::<Vec<_>>(),
            vec![
                ("forwarded_local", 5, false),
                ("drop_policy_denied", 2, true)
            ]
        );
        assert_eq!(counter_rows(&sums, true).len(), Counter::ALL.len());
        let text = counters_table(&rows).render();
        assert!(text.contains("drop_policy_denied  2"), "{text}");
    }

    #[test]
    fn unnamed_slots_still_show() {
        let mut sums = vec![0u64; 32];
        sums[31] = 9;
        let rows = counter_rows(&sums, false);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].name.as_str(), rows[0].slot, rows[0].drop),
            ("slot_31", 31, true)
        );
    }

    #[test]
    fn rule_hits_name_the_reserved_rules() {
        let rows = rule_hit_rows(&[3, 0, 0, 7], false);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, Some("default-deny"));
        assert_eq!((rows[1].rule, rows[1].hits, rows[1].name), (3, 7, None));
        assert_eq!(rule_hit_rows(&[0, 0], true).len(), 2);
    }
}
