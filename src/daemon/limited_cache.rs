//! A bounded cache keyed by SHA-256 digests, each entry kept until a deadline.
//!
//! Not moka: a login inserts one entry that is read a few times (the room checks) and then ages
//! out, so recency or frequency tracking buys nothing, and moka's per-insert bookkeeping (sketch,
//! deques, epoch-deferred frees, key hashing) was a fifth of the daemon's CPU under load
//! (docs/PERFORMANCE.md). Here: shards chosen by digest bytes, each a mutex around a map and its
//! insertion order; a full shard drops its oldest entry (first in, first out), an expired entry is
//! dropped when read. Keys are digests of verified tokens, which nobody without a host's key can
//! choose, so the digest bytes serve as the hash.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// A key: a SHA-256 digest.
pub type Digest = [u8; 32];

/// At most `capacity` entries, each until its deadline.
pub struct LimitedCache<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    shard_capacity: usize,
}

struct Shard<V> {
    map: HashMap<Digest, Slot<V>, BuildHasherDefault<DigestHasher>>,
    /// Keys in insertion order, with the sequence number of the insert; a key replaced or dropped
    /// since leaves a record whose number no longer matches, skipped when it reaches the front.
    order: VecDeque<(Digest, u64)>,
    seq: u64,
}

impl<V> Default for Shard<V> {
    fn default() -> Self {
        Shard {
            map: HashMap::default(),
            order: VecDeque::new(),
            seq: 0,
        }
    }
}

struct Slot<V> {
    value: V,
    until: Instant,
    seq: u64,
}

/// Hashes a digest by its first 8 bytes.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, _len: usize) {} // the array length prefix: always 32
}

const SHARDS: usize = 32;

impl<V: Clone> LimitedCache<V> {
    /// A cache of at most `capacity` entries (0: nothing is kept).
    pub fn new(capacity: u64) -> LimitedCache<V> {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        // Never more shards than entries, so that the bound holds for small capacities too.
        let shards = SHARDS.min(capacity).max(1);
        LimitedCache {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            shard_capacity: capacity / shards,
        }
    }

    fn shard(&self, key: &Digest) -> MutexGuard<'_, Shard<V>> {
        // Bytes 8.. of the digest: independent of the bits the map hashes.
        let mut word = [0u8; 8];
        word.copy_from_slice(&key[8..16]);
        let pick = (u64::from_le_bytes(word) % self.shards.len() as u64) as usize;
        self.shards[pick].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `key`, unless it expired by `now` (then it is dropped).
    pub fn get(&self, key: &Digest, now: Instant) -> Option<V> {
        let mut shard = self.shard(key);
        let slot = shard.map.get(key)?;
        if slot.until > now {
            return Some(slot.value.clone());
        }
        shard.map.remove(key);
        None
    }

    /// Keeps `value` for `key` until `until`, dropping the shard's oldest entries if it is full.
    pub fn insert(&self, key: Digest, value: V, until: Instant) {
        if self.shard_capacity == 0 {
            return;
        }
        let mut shard = self.shard(&key);
        while shard.order.len() >= self.shard_capacity {
            let Some((old, seq)) = shard.order.pop_front() else {
                break;
            };
            if shard.map.get(&old).is_some_and(|slot| slot.seq == seq) {
                shard.map.remove(&old);
            }
        }
        shard.seq += 1;
        let seq = shard.seq;
        shard.order.push_back((key, seq));
        shard.map.insert(key, Slot { value, until, seq });
    }

    /// Entries held that have not expired by `now`.
    pub fn count(&self, now: Instant) -> u64 {
        self.shards
            .iter()
            .map(|s| {
                let shard = s.lock().unwrap_or_else(|e| e.into_inner());
                shard.map.values().filter(|slot| slot.until > now).count() as u64
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(n: u8) -> Digest {
        crate::digest::sha256(&[n])
    }

    #[test]
    fn holds_at_most_its_capacity_and_drops_the_oldest() {
        let now = Instant::now();
        let later = now + Duration::from_secs(3600);
        for size in [1u64, 5, 32, 100, 1000] {
            let c = LimitedCache::new(size);
            for n in 0..=255u8 {
                c.insert(key(n), n, later);
                assert!(c.count(now) <= size, "size {size}: {} entries", c.count(now));
            }
            // the newest entry is always there
            assert_eq!(c.get(&key(255), now), Some(255));
        }
        let c = LimitedCache::new(1000);
        for n in 0..=255u8 {
            c.insert(key(n), n, later);
        }
        assert_eq!(c.count(now), 256);
        assert!((0..=255u8).all(|n| c.get(&key(n), now) == Some(n)));
    }

    #[test]
    fn a_replaced_key_is_kept_once_and_an_expired_one_is_gone() {
        let now = Instant::now();
        let c = LimitedCache::new(64);
        c.insert(key(1), 1, now + Duration::from_secs(60));
        c.insert(key(1), 2, now + Duration::from_secs(60));
        assert_eq!(c.count(now), 1);
        assert_eq!(c.get(&key(1), now), Some(2));
        c.insert(key(2), 3, now);
        assert_eq!(c.get(&key(2), now), None);
        let zero = LimitedCache::new(0);
        zero.insert(key(3), 4, now + Duration::from_secs(60));
        assert_eq!(zero.count(now), 0);
    }
}
