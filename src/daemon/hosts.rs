//! The hosts the daemon verifies for.
//!
//! Hosts come from two places. `[hosts.*]` tables of the TOML file (and docker-jitsi-meet's
//! environment) exist from start and are replaced on SIGHUP. Hosts the shim sends in `hello` are
//! kept apart and win over a TOML table of the same name: Prosody's config is the admin's single
//! source of truth, the TOML is for standalone use and the CLI. A re-`hello` for a host replaces
//! its verifier (and so its key cache) only when its settings changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::{Config, ConfigError, HostSettings};
use crate::room::RoomPolicy;
use crate::token::Verifier;

/// Where a host's settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A `[hosts."…"]` table of the TOML file.
    Toml,
    /// docker-jitsi-meet's `JWT_*` environment (`config::env_host`).
    Env,
    /// The shim's `hello`.
    Hello,
}

impl Origin {
    /// The name `stats` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Toml => "toml",
            Origin::Env => "env",
            Origin::Hello => "hello",
        }
    }
}

/// One host ready to verify: its verifier, room policy and a generation number that changes
/// whenever its settings do (logins remembered under older generations are not reused for logins).
#[derive(Debug)]
pub struct Host {
    /// The VirtualHost.
    pub name: String,
    /// Where its settings came from.
    pub origin: Origin,
    /// Changes whenever the settings do; never [`super::login::ROOM_ONLY`].
    pub generation: u64,
    /// Verifies its tokens.
    pub verifier: Verifier,
    /// Its room rules.
    pub policy: RoomPolicy,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Host {
    /// A host with a new generation number.
    pub fn new(settings: HostSettings, origin: Origin) -> Result<Host, ConfigError> {
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
    /// The host in effect for `name`: from `hello`, else from the file or environment.
    pub fn get(&self, name: &str) -> Option<Arc<Host>> {
        let hosts = self.hosts.read().unwrap_or_else(|e| e.into_inner());
        hosts.hello.get(name).or_else(|| hosts.toml.get(name)).cloned()
    }

    /// Replaces all hosts of the TOML file and the environment (at start and on SIGHUP), keeping
    /// verifiers whose settings are unchanged.
    pub fn set_config(&self, config: &Config) -> Result<(), ConfigError> {
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
    pub fn set_hello(&self, settings: HostSettings) -> Result<bool, ConfigError> {
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
