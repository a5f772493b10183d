//! The hosts the daemon verifies for, and the cache of verified tokens.
//!
//! Hosts come from two places. `[hosts.*]` tables of the TOML file exist from start and are
//! replaced on SIGHUP. Hosts the shim sends in `hello` are kept apart and win over a TOML table
//! of the same name: Prosody's config is the admin's single source of truth, the TOML is for
//! standalone use and the CLI. A re-`hello` for a host replaces its verifier (and so its key
//! cache) only when its settings changed.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use crate::config::{HostSettings, ServerSettings};
use crate::room::{RoomPolicy, RoomSession};
use crate::token::{VerifiedToken, Verifier};
use serde_json::Value;

/// Where a host's settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Toml,
    /// docker-jitsi-meet's `JWT_*` environment (`config::env_host`).
    Env,
    Hello,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Toml => "toml",
            Origin::Env => "env",
            Origin::Hello => "hello",
        }
    }
}

/// One host ready to verify: its verifier, room policy and a generation number that changes
/// whenever its settings do (cache entries of older generations are never used).
#[derive(Debug)]
pub struct Host {
    pub name: String,
    pub origin: Origin,
    pub generation: u64,
    pub verifier: Verifier,
    pub policy: RoomPolicy,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Host {
    pub fn new(settings: HostSettings, origin: Origin) -> Result<Host, crate::config::ConfigError> {
        let policy = settings.room_policy();
        let name = settings.host.clone();
        Ok(Host {
            name,
            origin,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            verifier: Verifier::new(settings)?,
            policy,
        })
    }
}

#[derive(Default)]
struct Hosts {
    toml: HashMap<String, Arc<Host>>,
    hello: HashMap<String, Arc<Host>>,
}

/// The host table; cheap to read from many tasks.
#[derive(Default)]
pub struct Registry {
    hosts: RwLock<Hosts>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<Arc<Host>> {
        let hosts = self.hosts.read().unwrap_or_else(|e| e.into_inner());
        hosts.hello.get(name).or_else(|| hosts.toml.get(name)).cloned()
    }

    /// Replaces all hosts of the TOML file and the environment (at start and on SIGHUP), keeping
    /// verifiers whose settings are unchanged.
    pub fn set_toml(&self, config: &crate::config::Config) -> Result<(), crate::config::ConfigError> {
        let old = self.hosts.read().unwrap_or_else(|e| e.into_inner()).toml.clone();
        let mut new = HashMap::new();
        for s in config.hosts.values() {
            let origin = if config.env_hosts.contains(&s.host) {
                Origin::Env
            } else {
                Origin::Toml
            };
            let host = match old.get(&s.host) {
                Some(existing) if *existing.verifier.settings() == *s && existing.origin == origin => existing.clone(),
                _ => Arc::new(Host::new(s.clone(), origin)?),
            };
            new.insert(host.name.clone(), host);
        }
        self.hosts.write().unwrap_or_else(|e| e.into_inner()).toml = new;
        Ok(())
    }

    /// Registers a host from `hello`. Returns false when the settings were already in place.
    pub fn set_hello(&self, settings: HostSettings) -> Result<bool, crate::config::ConfigError> {
        let unchanged = self
            .hosts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .hello
            .get(&settings.host)
            .is_some_and(|existing| *existing.verifier.settings() == settings);
        if unchanged {
            return Ok(false);
        }
        let host = Arc::new(Host::new(settings, Origin::Hello)?);
        self.hosts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .hello
            .insert(host.name.clone(), host);
        Ok(true)
    }

    /// All hosts in effect, sorted by name.
    pub fn all(&self) -> Vec<Arc<Host>> {
        let hosts = self.hosts.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Arc<Host>> = hosts.hello.values().cloned().collect();
        out.extend(
            hosts
                .toml
                .iter()
                .filter(|(name, _)| !hosts.hello.contains_key(*name))
                .map(|(_, h)| h.clone()),
        );
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Key of a verified token: the host generation and the token's full SHA-256 (the 8-digit log
/// fingerprint is far too short to identify a token).
pub type TokenKey = (u64, [u8; 32]);

/// What the daemon keeps of a verified token: the accepted reply's text and the few claims the
/// room check reads, remembered until `until`.
///
/// Not the token's claims tree: with one entry per login, a cache of trees makes every insert
/// evict (and free) a cold tree of a few dozen allocations, which was a third of the daemon's CPU
/// under load; a few strings are cheap to build once and to drop.
#[derive(Debug)]
pub struct CachedToken {
    /// The accepted reply line without its `id` and newline: `reply[..split]` goes before
    /// `,"id":<id>,`, `reply[split..]` after (see `protocol::accepted_text`).
    reply: Box<str>,
    split: usize,
    fingerprint: Box<str>,
    room: Option<Value>,
    sub: Option<Value>,
    context_room: Option<Value>,
    tenant: Option<Value>,
    has_context: bool,
    until: Instant,
}

impl CachedToken {
    fn new(token: &VerifiedToken, until: Instant) -> CachedToken {
        let (reply, split) = super::protocol::accepted_text(token);
        let room = token.room_session("");
        CachedToken {
            reply: reply.into_boxed_str(),
            split,
            fingerprint: token.fingerprint.clone().into_boxed_str(),
            room: room.room.cloned(),
            sub: room.sub.cloned(),
            context_room: room.context_room.cloned(),
            tenant: room.tenant.cloned(),
            has_context: token.claims.contains_key("context"),
            until,
        }
    }

    /// A verified token that is not stored (checked with a session's own key).
    pub fn transient(token: VerifiedToken) -> CachedToken {
        CachedToken::new(&token, Instant::now())
    }

    /// The first 8 hex digits of the token's SHA-256, for logs.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether the token has a `context` claim (`session.contextRequired`).
    pub fn has_context(&self) -> bool {
        self.has_context
    }

    /// The claims the room check reads, as `VerifiedToken::room_session` gave them.
    pub fn room_session<'a>(&'a self, query_prefix: &'a str) -> RoomSession<'a> {
        RoomSession {
            has_token: true,
            room: self.room.as_ref(),
            sub: self.sub.as_ref(),
            context_room: self.context_room.as_ref(),
            tenant: self.tenant.as_ref(),
            query_prefix,
        }
    }

    /// Appends the accepted reply for request `id`, newline included.
    pub fn write_reply(&self, id: &Value, out: &mut Vec<u8>) {
        out.extend_from_slice(self.reply[..self.split].as_bytes());
        out.extend_from_slice(b",\"id\":");
        if serde_json::to_writer(&mut *out, id).is_err() {
            out.extend_from_slice(b"null"); // not reached: a JSON value always serialises
        }
        out.push(b',');
        out.extend_from_slice(self.reply[self.split..].as_bytes());
        out.push(b'\n');
    }
}

/// Verified tokens by host and hash, each until its `exp` (capped by `verify_cache_ttl`), at most
/// `verify_cache_size` of them.
///
/// A small cache of its own rather than moka's: a login inserts one entry that is read a few times
/// (the room checks) and then ages out, so recency or frequency tracking buys nothing, and moka's
/// per-insert bookkeeping (sketch, deques, epoch-deferred frees, key hashing) was a fifth of the
/// daemon's CPU under load. Here: shards chosen by digest bytes, each a mutex around a map and its
/// insertion order; a full shard drops its oldest entry (first in, first out), an expired entry is
/// dropped when read. Only verified tokens are stored, so nobody without the host's key can choose
/// the digests, and the digest bytes serve as the hash.
pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
    max_ttl: Duration,
}

#[derive(Default)]
struct Shard {
    map: HashMap<TokenKey, Slot, BuildHasherDefault<DigestHasher>>,
    /// Keys in insertion order, with the sequence number of the insert; a key replaced or dropped
    /// since leaves a record whose number no longer matches, skipped when it reaches the front.
    order: VecDeque<(TokenKey, u64)>,
    seq: u64,
}

struct Slot {
    entry: Arc<CachedToken>,
    seq: u64,
}

/// Hashes a [`TokenKey`] by mixing the generation with the digest's first 8 bytes.
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
        self.write_u64(u64::from_le_bytes(word));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, _len: usize) {} // the slice length prefix: always 32
}

const SHARDS: usize = 32;

impl TokenCache {
    pub fn new(settings: &ServerSettings) -> TokenCache {
        let capacity = usize::try_from(settings.verify_cache_size).unwrap_or(usize::MAX);
        // Never more shards than entries, so that the bound holds for small capacities too.
        let shards = SHARDS.min(capacity).max(1);
        TokenCache {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            shard_capacity: capacity / shards,
            max_ttl: settings.verify_cache_ttl,
        }
    }

    fn shard(&self, key: &TokenKey) -> MutexGuard<'_, Shard> {
        // Bytes 8.. of the digest: independent of the bits the map hashes.
        let pick = u64::from_le_bytes(key.1[8..16].try_into().expect("8 bytes")) as usize % self.shards.len();
        self.shards[pick].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &TokenKey) -> Option<Arc<CachedToken>> {
        let mut shard = self.shard(key);
        let slot = shard.map.get(key)?;
        if slot.entry.until > Instant::now() {
            return Some(slot.entry.clone());
        }
        shard.map.remove(key);
        None
    }

    /// Remembers `token`, verified at `now` (seconds since 1970), until its `exp` at most.
    pub fn insert(&self, key: TokenKey, token: VerifiedToken, now: i64) -> Arc<CachedToken> {
        let left = match token.exp() {
            Some(exp) => Duration::from_secs(exp.saturating_sub(now).max(0) as u64).min(self.max_ttl),
            None => self.max_ttl,
        };
        let entry = Arc::new(CachedToken::new(&token, Instant::now() + left));
        drop(token); // its claims tree is freed here, on the thread that built it
        if left.is_zero() || self.shard_capacity == 0 {
            return entry;
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
        shard.map.insert(
            key,
            Slot {
                entry: entry.clone(),
                seq,
            },
        );
        entry
    }

    /// Entries held now that have not expired.
    pub fn entry_count(&self) -> u64 {
        let now = Instant::now();
        self.shards
            .iter()
            .map(|s| {
                let shard = s.lock().unwrap_or_else(|e| e.into_inner());
                shard.map.values().filter(|slot| slot.entry.until > now).count() as u64
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified_with_exp(exp: i64) -> VerifiedToken {
        let mut claims = serde_json::Map::new();
        claims.insert("exp".into(), exp.into());
        VerifiedToken {
            header: serde_json::Map::new(),
            claims,
            fingerprint: "00000000".into(),
            sha256: [0; 32],
        }
    }

    fn cache(size: u64) -> TokenCache {
        let settings = ServerSettings {
            verify_cache_size: size,
            ..ServerSettings::default()
        };
        TokenCache::new(&settings)
    }

    fn key(n: u8) -> TokenKey {
        (1, crate::sha256(&[n]))
    }

    #[test]
    fn holds_at_most_its_capacity_and_drops_the_oldest() {
        for size in [1u64, 5, 32, 100, 1000] {
            let c = cache(size);
            for n in 0..=255u8 {
                c.insert(key(n), verified_with_exp(i64::MAX / 2), 0);
                assert!(c.entry_count() <= size, "size {size}: {} entries", c.entry_count());
            }
            // the newest entry is always there
            assert!(c.get(&key(255)).is_some());
        }
        let c = cache(1000);
        for n in 0..=255u8 {
            c.insert(key(n), verified_with_exp(i64::MAX / 2), 0);
        }
        assert_eq!(c.entry_count(), 256);
        assert!((0..=255u8).all(|n| c.get(&key(n)).is_some()));
    }

    #[test]
    fn a_replaced_key_is_kept_once_and_an_expired_one_is_gone() {
        let c = cache(64);
        c.insert(key(1), verified_with_exp(i64::MAX / 2), 0);
        c.insert(key(1), verified_with_exp(i64::MAX / 2), 0);
        assert_eq!(c.entry_count(), 1);
        // exp already past: handed back, not stored
        let now = 1_000_000;
        c.insert(key(2), verified_with_exp(now - 1), now);
        assert!(c.get(&key(2)).is_none());
        let zero = cache(0);
        zero.insert(key(3), verified_with_exp(i64::MAX / 2), 0);
        assert_eq!(zero.entry_count(), 0);
    }
}
