//! The hosts the daemon verifies for.
//!
//! Hosts come from two places. `[hosts.*]` tables of the TOML file (and docker-jitsi-meet's
//! environment) exist from start and are replaced on SIGHUP. Hosts the shim sends in `hello` are
//! kept apart and win over a TOML table of the same name: Prosody's config is the admin's single
//! source of truth, the TOML is for standalone use and the CLI. A re-`hello` for a host replaces
//! its verifier (and so its key cache) only when its settings changed.
//!
//! Two rules keep a `hello` from doing harm (docs/PROTOCOL.md, "Hosts: `hello` and the TOML file"):
//!
//! - **Refused settings are remembered as refused.** A host whose settings from `hello` are refused
//!   answers every login and room check with the error `settings-refused` until a `hello` brings
//!   valid settings. Keeping the previous settings would keep a secret the admin replaced valid
//!   (a rotated `app_secret` next to a typo); falling back to a TOML table would apply settings
//!   the admin did not choose for Prosody.
//! - **One Prosody cannot overwrite another's host.** Several Prosody processes may share one
//!   daemon (visitor nodes on one machine). A `hello` that would change a host's settings while
//!   another open connection holds them (it sent exactly the settings in effect) is refused for
//!   that host, naming the options that differ; the settings in effect stay. Once no open
//!   connection holds them — that Prosody stopped, or every holder now sends the new settings — a
//!   `hello` replaces them. A host has one set of settings, whoever asks: room checks and access
//!   tokens need not know which Prosody a request came from.
//!
//! Connections are told apart by the listener's number for them ([`Reporter`]); the registry
//! forgets what a connection sent when [`Registry::release`] is called for it as it closes.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value};

use crate::access::Reporter;
use crate::config::options::host_option;
use crate::config::{Config, ConfigError, HostSettings};
use crate::keys::KeyObserver;
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
    /// A host with a new generation number, whose key sources tell `observer` what they do.
    pub fn new(
        settings: HostSettings,
        origin: Origin,
        observer: Option<Arc<dyn KeyObserver>>,
    ) -> Result<Host, ConfigError> {
        let policy = settings.room_policy();
        let name = settings.host.clone();
        Ok(Host {
            name,
            origin,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            verifier: Verifier::observed(settings, observer)?,
            policy,
        })
    }
}

/// Why a host cannot answer a login or a room check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Neither `hello` nor the TOML file (nor the environment) has it.
    Unknown,
    /// Its settings from `hello` were refused; why, naming the option.
    Refused(Arc<str>),
}

/// Why a `hello` did not register a host. `Display` is the text of the reply's `errors` entry.
#[derive(Debug)]
pub enum HelloRefusal {
    /// The settings are not valid. The host now refuses logins and room checks.
    Invalid(ConfigError),
    /// Another open connection holds other settings for the host; they stay in effect.
    Conflict {
        /// The host.
        host: String,
        /// The holder, for the admin: its instance id, or that it sent none.
        holder: String,
        /// The options whose values differ from those in effect (names only: values may be secrets).
        differing: Vec<String>,
        /// Why the new settings would have been refused anyway, if they would.
        invalid: Option<String>,
    },
}

impl fmt::Display for HelloRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelloRefusal::Invalid(e) => write!(f, "{e}"),
            HelloRefusal::Conflict {
                host,
                holder,
                differing,
                invalid,
            } => {
                write!(
                    f,
                    "host {host:?}: another Prosody connected to this daemon ({holder}) registered other settings \
                     for it and is still connected, so they stay in effect"
                )?;
                if !differing.is_empty() {
                    write!(f, " (options that differ: `{}`)", differing.join("`, `"))?;
                }
                write!(
                    f,
                    "; give every Prosody process the same options for this host, or give each its own daemon \
                     (`token_sidecar_socket`)"
                )?;
                match invalid {
                    Some(e) => write!(f, "; these settings are not valid either: {e}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for HelloRefusal {}

/// A host's settings from `hello`: in effect, or refused.
#[derive(Debug, Clone)]
enum State {
    Ready(Arc<Host>),
    Refused(Arc<str>),
}

/// A host registered by `hello`.
struct Registered {
    state: State,
    /// The options of the `hello` that set `state`, to name what a conflicting `hello` changes.
    options: Map<String, Value>,
    /// What each open connection that sent this host sent last (`None`: settings that are not
    /// valid), and its instance id for messages.
    sent: HashMap<Reporter, (Option<HostSettings>, Option<String>)>,
}

impl Registered {
    /// Another open connection than `from` that holds the settings in effect, if any. Refused
    /// settings have no holder: they protect nothing.
    fn holder(&self, from: Option<Reporter>) -> Option<&Option<String>> {
        let State::Ready(host) = &self.state else {
            return None;
        };
        self.sent
            .iter()
            .filter(|(connection, _)| Some(**connection) != from)
            .find(|(_, (settings, _))| settings.as_ref() == Some(host.verifier.settings()))
            .map(|(_, (_, instance))| instance)
    }
}

#[derive(Default)]
struct Hosts {
    toml: HashMap<String, Arc<Host>>,
    hello: HashMap<String, Registered>,
}

/// The host table; cheap to read from many tasks.
#[derive(Default)]
pub struct Registry {
    hosts: RwLock<Hosts>,
    /// One `hello` registration at a time, so that a verifier can be built outside the table's
    /// lock (it may set up an HTTP client) without another `hello` changing the host meanwhile.
    registering: Mutex<()>,
    /// Told of the key sources' fetches and lookups (the daemon's metrics).
    observer: Option<Arc<dyn KeyObserver>>,
}

/// What a `hello` does to a host, decided before anything is built.
enum Plan {
    Unchanged,
    Conflict(HelloRefusal),
    Replace,
}

impl Registry {
    /// An empty table whose hosts' key sources tell `observer` what they do.
    pub fn observed(observer: Arc<dyn KeyObserver>) -> Registry {
        Registry {
            observer: Some(observer),
            ..Registry::default()
        }
    }

    /// The host in effect for `name`: from `hello`, else from the file or environment. A host
    /// whose settings from `hello` were refused is [`Unavailable::Refused`], even with a TOML table.
    pub fn get(&self, name: &str) -> Result<Arc<Host>, Unavailable> {
        let hosts = self.hosts.read().unwrap_or_else(|e| e.into_inner());
        match hosts.hello.get(name).map(|r| &r.state) {
            Some(State::Ready(host)) => Ok(host.clone()),
            Some(State::Refused(why)) => Err(Unavailable::Refused(why.clone())),
            None => hosts.toml.get(name).cloned().ok_or(Unavailable::Unknown),
        }
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
                _ => Arc::new(Host::new(s.clone(), origin, self.observer.clone())?),
            };
            new.insert(host.name.clone(), host);
        }
        self.hosts.write().unwrap_or_else(|e| e.into_inner()).toml = new;
        Ok(())
    }

    /// Registers host `name` from a `hello` sent on connection `from` (`None`: a caller that does
    /// not say which connection it is; it holds nothing afterwards) with its `options` and
    /// the `settings` read from them. Returns whether the host's verifier was replaced (false:
    /// the settings were already in effect). Refused settings leave the host refused; a
    /// conflict leaves it as it was (see the module's rules).
    pub fn set_hello(
        &self,
        name: &str,
        options: &Map<String, Value>,
        settings: Result<HostSettings, ConfigError>,
        from: Option<Reporter>,
        instance: Option<&str>,
    ) -> Result<bool, HelloRefusal> {
        let _one_at_a_time = self.registering.lock().unwrap_or_else(|e| e.into_inner());
        let sent = settings.as_ref().ok().cloned();
        let plan = self.plan(name, options, &settings, from);
        let (state, result) = match plan {
            Plan::Unchanged => (None, Ok(false)),
            Plan::Conflict(conflict) => (None, Err(conflict)),
            Plan::Replace => match settings.and_then(|s| Host::new(s, Origin::Hello, self.observer.clone())) {
                Ok(host) => (Some(State::Ready(Arc::new(host))), Ok(true)),
                Err(e) => (
                    Some(State::Refused(Arc::from(e.to_string()))),
                    Err(HelloRefusal::Invalid(e)),
                ),
            },
        };
        let mut hosts = self.hosts.write().unwrap_or_else(|e| e.into_inner());
        let registered = match (hosts.hello.entry(name.to_owned()), state) {
            (Entry::Occupied(registered), None) => registered.into_mut(),
            (Entry::Occupied(registered), Some(state)) => {
                let registered = registered.into_mut();
                registered.state = state;
                registered.options = options.clone();
                registered
            }
            (Entry::Vacant(vacant), Some(state)) => vacant.insert(Registered {
                state,
                options: options.clone(),
                sent: HashMap::new(),
            }),
            // Not reached: a host not registered yet is always replaced, so it has a state.
            (Entry::Vacant(_), None) => return result,
        };
        // Even a refused `hello` says what this connection wants now: it no longer holds the
        // settings in effect, so that Prosody processes changing a host one after the other
        // agree once the last one has sent the new settings.
        if let Some(connection) = from {
            registered.sent.insert(connection, (sent, instance.map(str::to_owned)));
        }
        result
    }

    fn plan(
        &self,
        name: &str,
        options: &Map<String, Value>,
        settings: &Result<HostSettings, ConfigError>,
        from: Option<Reporter>,
    ) -> Plan {
        let hosts = self.hosts.read().unwrap_or_else(|e| e.into_inner());
        let Some(registered) = hosts.hello.get(name) else {
            return Plan::Replace;
        };
        let in_effect = match &registered.state {
            State::Ready(host) => Some(host.verifier.settings()),
            State::Refused(_) => None,
        };
        if let (Some(in_effect), Ok(settings)) = (in_effect, settings)
            && in_effect == settings
        {
            return Plan::Unchanged;
        }
        let Some(holder) = registered.holder(from) else {
            return Plan::Replace;
        };
        Plan::Conflict(HelloRefusal::Conflict {
            host: name.to_owned(),
            holder: match holder {
                Some(instance) => format!("instance {instance:?}"),
                None => "a client that sent no instance".to_owned(),
            },
            differing: differing(&registered.options, options),
            invalid: settings.as_ref().err().map(ToString::to_string),
        })
    }

    /// Forgets what `connection` sent: called when it closes, so that what it registered is no
    /// longer held by a live connection (a restarted Prosody registers its settings again).
    pub fn release(&self, connection: Reporter) {
        let mut hosts = self.hosts.write().unwrap_or_else(|e| e.into_inner());
        for registered in hosts.hello.values_mut() {
            registered.sent.remove(&connection);
        }
    }

    /// All hosts in effect, sorted by name (not those whose settings were refused).
    pub fn all(&self) -> Vec<Arc<Host>> {
        let hosts = self.hosts.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Arc<Host>> = hosts
            .hello
            .values()
            .filter_map(|r| match &r.state {
                State::Ready(host) => Some(host.clone()),
                State::Refused(_) => None,
            })
            .collect();
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

    /// The hosts whose settings from `hello` were refused, with why, sorted by name.
    pub fn refused(&self) -> Vec<(String, Arc<str>)> {
        let hosts = self.hosts.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, Arc<str>)> = hosts
            .hello
            .iter()
            .filter_map(|(name, r)| match &r.state {
                State::Refused(why) => Some((name.clone(), why.clone())),
                State::Ready(_) => None,
            })
            .collect();
        out.sort();
        out
    }
}

/// The host options whose values differ between two `hello`s, sorted: names only, since values
/// may be secrets. Names that are no host option are left out (the daemon ignores them).
fn differing(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<String> {
    let mut names: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|name| host_option(name).is_some() && old.get(*name) != new.get(*name))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}
