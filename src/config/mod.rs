//! Configuration: per-host token settings under Prosody's option names, and the daemon's own
//! settings.
//!
//! Host settings arrive from three places with one parser: a TOML file (`[hosts."…"]` tables),
//! docker-jitsi-meet's `JWT_*` environment, and the shim's `hello`, which forwards what Prosody's
//! config says. Each is turned into a JSON object of options first, so that one function
//! ([`HostSettings::from_options`]) decides what each option means, reading the kind and default
//! of every option from one table ([`options::HOST_OPTIONS`]).
//!
//! Files: `options.rs` (the host-option table and the typed reader), `host.rs` (one host's
//! settings), `server.rs` (`[server]`), `http.rs` (`[http]`), `store.rs` (`[store]`), `env.rs` (docker-jitsi-meet's environment), `error.rs`
//! (what can go wrong, by file, table, host and option).

mod env;
mod error;
mod host;
mod http;
pub mod options;
mod server;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use env::env_host;
pub use error::{ConfigError, HostProblem, ServerProblem, ValueProblem};
pub use host::HostSettings;
pub use http::{HttpProblem, HttpSettings};
pub use server::{DEFAULT_SOCKET, ServerSettings};
pub use store::{StoreAddress, StoreKind, StoreProblem, StoreSettings, redact_url, valid_shard};

/// A whole configuration: `[server]` and the hosts of the file and the environment. `Debug` shows
/// the issuers by name only (their options hold keys).
#[derive(Clone, PartialEq, Default)]
pub struct Config {
    /// `[server]`.
    pub server: ServerSettings,
    /// Host settings by VirtualHost.
    pub hosts: BTreeMap<String, HostSettings>,
    /// Which of `hosts` came from the environment ([`Config::add_env_host`]) rather than the file.
    pub env_hosts: BTreeSet<String>,
    /// `[issuers."<Prosody host>"]`: access-token issuers, as `{"module", "options"}` entries
    /// (checked by the daemon at start and on SIGHUP; see `access::read_issuer`).
    pub issuers: BTreeMap<String, Map<String, Value>>,
    /// `[http]`.
    pub http: HttpSettings,
    /// `[store]`.
    pub store: StoreSettings,
}

impl Config {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|e| ConfigError::InFile {
            path: path.to_owned(),
            error: Box::new(e),
        })
    }

    /// Parses TOML text: `[server]` and `[hosts."<VirtualHost>"]` tables.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let root: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax(e.message().to_owned()))?;
        let mut config = Config::default();
        for (key, value) in root {
            match key.as_str() {
                "server" => config.server = ServerSettings::from_table(&toml_to_json(value))?,
                "hosts" => {
                    let Value::Object(hosts) = toml_to_json(value) else {
                        return Err(ConfigError::HostsNotATable);
                    };
                    for (host, table) in hosts {
                        let Value::Object(options) = table else {
                            return Err(ConfigError::HostNotATable(host));
                        };
                        let settings = HostSettings::from_options(&host, &options, true)?;
                        config.hosts.insert(host, settings);
                    }
                }
                "http" => config.http = HttpSettings::from_table(&toml_to_json(value))?,
                "store" => config.store = StoreSettings::from_table(&toml_to_json(value))?,
                "issuers" => {
                    let Value::Object(issuers) = toml_to_json(value) else {
                        return Err(ConfigError::IssuersNotATable);
                    };
                    for (name, table) in issuers {
                        let Value::Object(mut options) = table else {
                            return Err(ConfigError::IssuersNotATable);
                        };
                        let module = options.remove("module").unwrap_or(Value::Null);
                        let mut entry = Map::new();
                        entry.insert("module".into(), module);
                        entry.insert("options".into(), Value::Object(options));
                        // What the options mean is the daemon's to check (`daemon::check`).
                        config.issuers.insert(name, entry);
                    }
                }
                other => return Err(ConfigError::UnknownSection(other.to_owned())),
            }
        }
        Ok(config)
    }

    /// The settings of `host`, or an error listing the hosts there are.
    pub fn host(&self, host: &str) -> Result<&HostSettings, ConfigError> {
        self.hosts.get(host).ok_or_else(|| ConfigError::NoSuchHost {
            host: host.to_owned(),
            known: self.hosts.keys().cloned().collect(),
        })
    }

    /// Adds the host of docker-jitsi-meet's environment ([`env_host`]) unless the file has a table
    /// for that VirtualHost: the file is more specific, and a shim's `hello` wins over both.
    pub fn add_env_host(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(host) = env_host(get)?
            && !self.hosts.contains_key(&host.host)
        {
            self.env_hosts.insert(host.host.clone());
            self.hosts.insert(host.host.clone(), host);
        }
        Ok(())
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Config {
            server,
            hosts,
            env_hosts,
            issuers,
            http,
            store,
        } = self;
        f.debug_struct("Config")
            .field("server", server)
            .field("hosts", hosts)
            .field("env_hosts", env_hosts)
            .field("issuers", &issuers.keys().collect::<Vec<_>>())
            .field("http", http)
            .field("store", store)
            .finish()
    }
}

/// Where the daemon's configuration comes from: the `--config` file (if any), the environment,
/// and command-line overrides. Loading it at start and on SIGHUP goes through [`ConfigSource::load`],
/// so a reload builds the configuration exactly as the start did.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The TOML file (`--config`).
    pub path: Option<PathBuf>,
    /// `--socket`: overrides `[server] socket`.
    pub socket: Option<PathBuf>,
}

impl ConfigSource {
    /// Reads the file (or starts from the defaults), adds the environment's host (`get` reads one
    /// variable) and applies the command-line overrides.
    pub fn load(&self, get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut config = match &self.path {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        config.add_env_host(get)?;
        if let Some(socket) = &self.socket {
            config.server.socket = socket.clone();
        }
        Ok(config)
    }
}

fn toml_to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn server_table() {
        let c =
            Config::from_toml("[server]\nsocket = \"/tmp/x.sock\"\nsocket_mode = \"0600\"\nsocket_group = \"prosody\"")
                .unwrap();
        assert_eq!(c.server.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.server.socket_mode, 0o600);
        assert_eq!(c.server.socket_group.as_deref(), Some("prosody"));
        assert!(matches!(
            Config::from_toml("[server]\nsocket_mode = \"999\""),
            Err(ConfigError::Server(ServerProblem::SocketMode(_)))
        ));
        let c = Config::from_toml("[server]\nmax_inflight = 8\nmax_line_bytes = 4096\nshutdown_grace = 2").unwrap();
        assert_eq!(
            (c.server.max_inflight, c.server.max_line_bytes, c.server.shutdown_grace),
            (8, 4096, Duration::from_secs(2))
        );
        let err = Config::from_toml("[server]\nmax_inflight = 0").unwrap_err();
        assert!(matches!(
            &err,
            ConfigError::Server(ServerProblem::OutOfRange { min: 1, .. })
        ));
        assert_eq!(
            err.to_string(),
            "[server] max_inflight: expected a whole number from 1 to 1048576, found 0"
        );
        assert!(matches!(
            Config::from_toml("[surver]\n"),
            Err(ConfigError::UnknownSection(s)) if s == "surver"
        ));
        assert!(matches!(
            Config::from_toml("hosts = 3"),
            Err(ConfigError::HostsNotATable)
        ));
        assert!(matches!(Config::from_toml("[hosts]\nx = 3"), Err(ConfigError::HostNotATable(h)) if h == "x"));
        assert!(matches!(
            Config::from_toml("[server]\nsokcet = 1"),
            Err(ConfigError::Server(ServerProblem::UnknownOption(_)))
        ));
    }

    #[test]
    fn debug_shows_no_issuer_key_and_no_introspection_secret() {
        let c = Config::from_toml(
            "[http]\nintrospect_secret = \"introspect-never-shown\"\n\
             [issuers.\"c.example\"]\nmodule = \"access_token\"\naccess_token_key = \"key-never-shown-0123456789abcdef\"\n\
             [store]\nkind = \"valkey\"\nurl = \"redis://u:store-never-shown@h:6379/0\"\n",
        )
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("never-shown"), "{shown}");
        assert!(shown.contains("c.example"), "{shown}");
        assert_eq!(c.store.kind, StoreKind::Valkey);
    }

    #[test]
    fn a_source_builds_the_same_config_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nsocket = \"/from/file.sock\"\n").unwrap();
        let source = ConfigSource {
            path: Some(path.clone()),
            socket: Some(PathBuf::from("/from/flag.sock")),
        };
        let no_env = |_: &str| None;
        let first = source.load(no_env).unwrap();
        assert_eq!(first.server.socket, PathBuf::from("/from/flag.sock"));
        assert_eq!(source.load(no_env).unwrap(), first);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(source.load(no_env), Err(ConfigError::Read { .. })));
    }
}
