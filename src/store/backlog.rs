//! What waits to be published: the last change of each key (a join after a leave of the same key
//! leaves one SET). Bounded, so that a store away for long cannot grow memory without bound:
//!
//! - SETs past [`MAX_SETS`] are dropped and the next full re-publish (which writes every entry this
//!   shard owns) stands in for them;
//! - DELs past [`MAX_DELS`] are dropped and counted: those keys expire with the lease instead.

use std::collections::{HashMap, HashSet};

/// Most SETs kept.
pub const MAX_SETS: usize = 100_000;
/// Most DELs kept.
pub const MAX_DELS: usize = 100_000;

/// The pending changes.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Key → value to SET.
    sets: HashMap<String, String>,
    /// Keys to DEL.
    dels: HashSet<String>,
    /// Changes taken by the publisher and not yet known to be in the store.
    in_flight: usize,
    /// SETs were dropped: publish everything.
    pub overflowed: bool,
}

/// What [`Backlog::del`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Kept.
    Kept,
    /// Dropped: the queue of DELs was full.
    Dropped,
}

impl Backlog {
    /// `key` is to be set to `value`.
    pub fn set(&mut self, key: String, value: String) {
        self.dels.remove(&key);
        if self.sets.len() >= MAX_SETS && !self.sets.contains_key(&key) {
            self.overflowed = true;
            return;
        }
        self.sets.insert(key, value);
    }

    /// `key` is to be deleted.
    pub fn del(&mut self, key: String) -> Queued {
        self.sets.remove(&key);
        if self.dels.len() >= MAX_DELS && !self.dels.contains(&key) {
            return Queued::Dropped;
        }
        self.dels.insert(key);
        Queued::Kept
    }

    /// Changes not yet published: those waiting and those being sent.
    pub fn len(&self) -> usize {
        self.sets.len() + self.dels.len() + self.in_flight
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes everything waiting (the overflow flag stays); it counts as in flight until
    /// [`Backlog::sent`] or [`Backlog::restore`].
    pub fn take(&mut self) -> Batch {
        let batch = Batch {
            sets: std::mem::take(&mut self.sets),
            dels: std::mem::take(&mut self.dels),
        };
        self.in_flight = batch.sets.len() + batch.dels.len();
        batch
    }

    /// The batch last taken is in the store.
    pub fn sent(&mut self) {
        self.in_flight = 0;
    }

    /// Puts back what could not be published, except keys changed again since.
    pub fn restore(&mut self, batch: Batch) {
        self.in_flight = 0;
        for (key, value) in batch.sets {
            if !self.sets.contains_key(&key) && !self.dels.contains(&key) {
                self.set(key, value);
            }
        }
        for key in batch.dels {
            if !self.sets.contains_key(&key) && !self.dels.contains(&key) {
                // Counted as dropped when it was first queued, if at all.
                let _ = self.del(key);
            }
        }
    }
}

/// Changes taken from the backlog to publish.
#[derive(Debug, Default)]
pub struct Batch {
    /// Key → value to SET.
    pub sets: HashMap<String, String>,
    /// Keys to DEL.
    pub dels: HashSet<String>,
}

impl Batch {
    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty() && self.dels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_by_key_and_restores_only_older_changes() {
        let mut b = Backlog::default();
        b.set("k1".into(), "a".into());
        assert_eq!(b.del("k1".into()), Queued::Kept);
        b.set("k2".into(), "b".into());
        assert_eq!(b.len(), 2, "one change per key");
        let batch = b.take();
        assert!(batch.dels.contains("k1") && batch.sets["k2"] == "b");
        assert_eq!(b.len(), 2, "in flight until sent or restored");
        // k1 joined again while the batch was out: the old DEL must not come back over it.
        b.set("k1".into(), "c".into());
        b.restore(batch);
        let again = b.take();
        assert_eq!(again.sets.get("k1").map(String::as_str), Some("c"));
        assert!(!again.dels.contains("k1"));
        assert_eq!(again.sets.get("k2").map(String::as_str), Some("b"));
        b.sent();
        assert!(b.is_empty(), "nothing waits once the batch is in the store");
    }

    #[test]
    fn bounded() {
        let mut b = Backlog::default();
        for n in 0..MAX_DELS {
            assert_eq!(b.del(format!("d{n}")), Queued::Kept);
        }
        assert_eq!(b.del("one-more".into()), Queued::Dropped);
        assert_eq!(b.del("d0".into()), Queued::Kept, "a key already queued is kept");
        for n in 0..=MAX_SETS {
            b.set(format!("s{n}"), String::new());
        }
        assert!(b.overflowed);
        assert_eq!(b.len(), MAX_DELS + MAX_SETS);
    }
}
