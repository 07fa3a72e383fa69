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
}
