//! The hosts the daemon verifies for, and the cache of verified tokens.
//!
//! Hosts come from two places. `[hosts.*]` tables of the TOML file exist from start and are
//! replaced on SIGHUP. Hosts the shim sends in `hello` are kept apart and win over a TOML table
//! of the same name: Prosody's config is the admin's single source of truth, the TOML is for
//! standalone use and the CLI. A re-`hello` for a host replaces its verifier (and so its key
//! cache) only when its settings changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use crate::config::{HostSettings, ServerSettings};
use crate::room::RoomPolicy;
use crate::token::{VerifiedToken, Verifier};

/// Where a host's settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Toml,
    Hello,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Toml => "toml",
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

    /// Replaces all TOML hosts (at start and on SIGHUP), keeping verifiers whose settings are unchanged.
    pub fn set_toml(&self, settings: impl IntoIterator<Item = HostSettings>) -> Result<(), crate::config::ConfigError> {
        let old = self.hosts.read().unwrap_or_else(|e| e.into_inner()).toml.clone();
        let mut new = HashMap::new();
        for s in settings {
            let host = match old.get(&s.host) {
                Some(existing) if *existing.verifier.settings() == s => existing.clone(),
                _ => Arc::new(Host::new(s, Origin::Toml)?),
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

/// A verified token, remembered until `until`.
#[derive(Debug)]
pub struct CachedToken {
    pub token: VerifiedToken,
    until: Instant,
}

impl CachedToken {
    /// A verified token that is not stored (checked with a session's own key).
    pub fn transient(token: VerifiedToken) -> CachedToken {
        CachedToken {
            token,
            until: Instant::now(),
        }
    }
}

struct UntilExpiry;

impl Expiry<TokenKey, Arc<CachedToken>> for UntilExpiry {
    fn expire_after_create(&self, _key: &TokenKey, value: &Arc<CachedToken>, created_at: Instant) -> Option<Duration> {
        Some(value.until.saturating_duration_since(created_at))
    }
}

/// Verified tokens by host and hash, each until its `exp` (capped by `verify_cache_ttl`).
#[derive(Clone)]
pub struct TokenCache {
    cache: Cache<TokenKey, Arc<CachedToken>>,
    max_ttl: Duration,
}

impl TokenCache {
    pub fn new(settings: &ServerSettings) -> TokenCache {
        TokenCache {
            cache: Cache::builder()
                .max_capacity(settings.verify_cache_size)
                .expire_after(UntilExpiry)
                .build(),
            max_ttl: settings.verify_cache_ttl,
        }
    }

    pub fn get(&self, key: &TokenKey) -> Option<Arc<CachedToken>> {
        self.cache.get(key)
    }

    /// Remembers `token`, verified at `now` (seconds since 1970), until its `exp` at most.
    pub fn insert(&self, key: TokenKey, token: VerifiedToken, now: i64) -> Arc<CachedToken> {
        let left = match token.exp() {
            Some(exp) => Duration::from_secs(exp.saturating_sub(now).max(0) as u64).min(self.max_ttl),
            None => self.max_ttl,
        };
        let entry = Arc::new(CachedToken {
            token,
            until: Instant::now() + left,
        });
        if !left.is_zero() {
            self.cache.insert(key, entry.clone());
        }
        entry
    }

    /// Entries held now (after running moka's pending maintenance, so the count is current).
    pub fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}
