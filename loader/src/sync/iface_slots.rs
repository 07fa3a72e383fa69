//! Statistics slots: where the programs count each interface's packets in the per-CPU array
//! `TORTIE_IFSTATS`, so counting costs an array access instead of a hash lookup.
//!
//! The uplink always has slot 0. A workload interface keeps the slot it already has in
//! `TORTIE_IFACES` (also across agent restarts, since the map is pinned) and a new one gets
//! the lowest free slot, whose counters the caller zeroes before the interface's entry is
//! written: a reused slot must not carry a departed pod's counts.

use std::collections::{BTreeMap, BTreeSet};

use bpf_maps::{
    events::{NO_STATS_SLOT, UPLINK_STATS_SLOT},
    iface_flags, IfaceKey, IfaceValue,
};

/// The desired interfaces with their statistics slots, and the slots handed out anew.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Assigned {
    /// `desired`, every entry with its slot.
    pub ifaces: BTreeMap<IfaceKey, IfaceValue>,
    /// Slots that were free before: their counters must start from zero.
    pub fresh: Vec<u32>,
}

/// Gives every interface in `desired` a slot below `slots`, keeping those `current` (the map
/// as it is) already holds. An interface beyond the available slots gets
/// [`NO_STATS_SLOT`]: it works, but is not counted per interface.
pub fn assign(
    current: &BTreeMap<IfaceKey, IfaceValue>,
    desired: &BTreeMap<IfaceKey, IfaceValue>,
    slots: u32,
) -> Assigned {
    let is_uplink = |value: &IfaceValue| value.flags & iface_flags::HOST_UPLINK != 0;
    let mut taken = BTreeSet::from([UPLINK_STATS_SLOT]);
    let mut ifaces = BTreeMap::new();
    let mut waiting = Vec::new();
    for (ifindex, value) in desired {
        let kept = current
            .get(ifindex)
            .map(|old| old.stats_slot)
            .filter(|slot| *slot != UPLINK_STATS_SLOT && *slot < slots);
        let slot = match kept {
            _ if is_uplink(value) => Some(UPLINK_STATS_SLOT),
            // Two entries claiming one slot can only come from a damaged map: the first
            // keeps it.
            Some(slot) if taken.insert(slot) => Some(slot),
            _ => None,
        };
        match slot {
            Some(slot) => {
                ifaces.insert(
                    *ifindex,
                    IfaceValue {
                        stats_slot: slot,
                        ..*value
                    },
                );
            }
            None => waiting.push((*ifindex, *value)),
        }
    }
    let mut fresh = Vec::new();
    let mut free = (0..slots).filter(|slot| !taken.contains(slot));
    for (ifindex, value) in waiting {
        let slot = free.next().unwrap_or(NO_STATS_SLOT);
        if slot != NO_STATS_SLOT {
            fresh.push(slot);
        }
        ifaces.insert(
            ifindex,
            IfaceValue {
                stats_slot: slot,
                ..value
            },
        );
    }
    // The uplink's slot starts from zero when the uplink is new to the map.
    for (ifindex, value) in &ifaces {
        let was_uplink = current.get(ifindex).is_some_and(&is_uplink);
        if is_uplink(value) && !was_uplink {
            fresh.push(UPLINK_STATS_SLOT);
        }
    }
    Assigned { ifaces, fresh }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> IfaceValue {
        IfaceValue {
            flags: iface_flags::WORKLOAD | iface_flags::HAS_IPV4,
            ..IfaceValue::default()
        }
    }

    fn uplink() -> IfaceValue {
        IfaceValue {
            flags: iface_flags::HOST_UPLINK,
            ..IfaceValue::default()
        }
    }

    fn with_slot(value: IfaceValue, slot: u32) -> IfaceValue {
        IfaceValue {
            stats_slot: slot,
            ..value
        }
    }

    #[test]
    fn new_interfaces_get_the_lowest_free_slots_and_the_uplink_slot_zero() {
        let desired = BTreeMap::from([(2, uplink()), (7, workload()), (9, workload())]);
        let assigned = assign(&BTreeMap::new(), &desired, 8);
        assert_eq!(assigned.ifaces[&2].stats_slot, 0);
        assert_eq!(assigned.ifaces[&7].stats_slot, 1);
        assert_eq!(assigned.ifaces[&9].stats_slot, 2);
        assert_eq!(assigned.fresh, vec![1, 2, 0]);
    }

    #[test]
    fn programmed_interfaces_keep_their_slots_and_freed_ones_are_reused() {
        let current = BTreeMap::from([
            (2, with_slot(uplink(), 0)),
            (7, with_slot(workload(), 1)),
            (9, with_slot(workload(), 2)),
        ]);
        // Interface 7 went away, 11 is new.
        let desired = BTreeMap::from([(2, uplink()), (9, workload()), (11, workload())]);
        let assigned = assign(&current, &desired, 8);
        assert_eq!(assigned.ifaces[&9].stats_slot, 2);
        assert_eq!(assigned.ifaces[&11].stats_slot, 1);
        assert_eq!(assigned.fresh, vec![1], "only the reused slot is zeroed");
        // Nothing changes on the next sync.
        let again = assign(&assigned.ifaces, &desired, 8);
        assert_eq!(again.ifaces, assigned.ifaces);
        assert!(again.fresh.is_empty());
    }

    #[test]
    fn without_free_slots_an_interface_is_not_counted_and_duplicates_are_split() {
        let current =
            BTreeMap::from([(7, with_slot(workload(), 1)), (9, with_slot(workload(), 1))]);
        let desired = BTreeMap::from([(7, workload()), (9, workload()), (11, workload())]);
        let assigned = assign(&current, &desired, 3);
        assert_eq!(assigned.ifaces[&7].stats_slot, 1);
        assert_eq!(assigned.ifaces[&9].stats_slot, 2);
        assert_eq!(assigned.ifaces[&11].stats_slot, NO_STATS_SLOT);
        assert_eq!(assigned.fresh, vec![2]);
    }
}
