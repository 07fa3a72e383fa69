//! Stable number allocation shared by identities and rule ids.

use std::collections::{BTreeMap, BTreeSet};

/// Hands out numbers in `first..=last` to keys, keeping a key's number for as long as the
/// key is in use.
///
/// New keys get numbers that were never used before while any remain, and only then the
/// lowest freed one. A freed number may still be named by map entries the agent has not
/// replaced yet (the IP cache and the policy map are not updated atomically), so giving it a
/// new meaning at once could briefly apply one class's verdicts to another.
#[derive(Clone, Debug)]
pub(crate) struct Allocator<K: Ord + Clone> {
    ids: BTreeMap<K, u32>,
    keys: BTreeMap<u32, K>,
    next: u64,
    last: u32,
    free: BTreeSet<u32>,
}

impl<K: Ord + Clone> Allocator<K> {
    pub fn new(first: u32, last: u32) -> Self {
        Allocator {
            ids: BTreeMap::new(),
            keys: BTreeMap::new(),
            next: u64::from(first),
            last,
            free: BTreeSet::new(),
        }
    }

    pub fn get(&self, key: &K) -> Option<u32> {
        self.ids.get(key).copied()
    }

    pub fn key(&self, id: u32) -> Option<&K> {
        self.keys.get(&id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Makes `keys` exactly the allocated set: kept keys keep their numbers, keys not in
    /// `keys` are freed, new keys are numbered in their sorted order (so the result depends
    /// only on the previous state and `keys`). Returns the keys no number was left for.
    pub fn assign(&mut self, keys: &BTreeSet<K>) -> Vec<K> {
        let stale: Vec<K> = self
            .ids
            .keys()
            .filter(|k| !keys.contains(*k))
            .cloned()
            .collect();
        for key in stale {
            if let Some(id) = self.ids.remove(&key) {
                self.keys.remove(&id);
                self.free.insert(id);
            }
        }
        let mut unplaced = Vec::new();
        for key in keys {
            if self.ids.contains_key(key) {
                continue;
            }
            let id = if self.next <= u64::from(self.last) {
                let id = self.next as u32;
                self.next += 1;
                Some(id)
            } else {
                self.free.pop_first()
            };
            match id {
                Some(id) => {
                    self.ids.insert(key.clone(), id);
                    self.keys.insert(id, key.clone());
                }
                None => unplaced.push(key.clone()),
            }
        }
        unplaced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keys: &[&'static str]) -> BTreeSet<&'static str> {
        keys.iter().copied().collect()
    }

    #[test]
    fn keeps_ids_and_frees_unused() {
        let mut a = Allocator::new(10, 20);
        assert!(a.assign(&set(&["b", "a"])).is_empty());
        assert_eq!((a.get(&"a"), a.get(&"b")), (Some(10), Some(11)));
        a.assign(&set(&["b", "c"]));
        assert_eq!(a.get(&"a"), None);
        assert_eq!(a.get(&"b"), Some(11));
        // Fresh numbers first: 10 was freed but is not reused yet.
        assert_eq!(a.get(&"c"), Some(12));
        assert_eq!(a.key(12), Some(&"c"));
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn reuses_freed_ids_when_fresh_ones_run_out() {
        let mut a = Allocator::new(1, 2);
        a.assign(&set(&["a", "b"]));
        a.assign(&set(&["b", "c"]));
        assert_eq!(a.get(&"c"), Some(1));
        assert_eq!(a.assign(&set(&["b", "c", "d"])), vec!["d"]);
    }
}
