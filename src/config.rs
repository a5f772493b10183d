//! Configuration: per-host token settings under Prosody's option names, and the daemon's own
//! settings.
//!
//! Host settings arrive from two places with one parser: a TOML file (`[hosts."meet.example.com"]`
//! tables) and, later, the shim's `hello`, which forwards what Prosody's config says. Both are
//! turned into JSON values first so that one function decides what each option means.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::keys::FetchSettings;
use crate::room::RoomPolicy;

/// Default socket path of the daemon.
pub const DEFAULT_SOCKET: &str = "/run/token-sidecar/token-sidecar.sock";

/// Every host option we understand, with the type it takes (for `--help`, docs and errors).
pub const HOST_OPTIONS: &[(&str, &str)] = &[
    ("app_id", "string"),
    ("app_secret", "string"),
    ("asap_key_server", "string"),
    ("cache_keys_url", "string"),
    ("signature_algorithm", "string or array of strings"),
    ("allow_empty_token", "boolean"),
    ("asap_accepted_issuers", "string or array of strings"),
    ("asap_accepted_audiences", "string or array of strings"),
    ("asap_require_room_claim", "boolean"),
    ("enable_domain_verification", "boolean"),
    ("muc_mapper_domain_base", "string"),
    ("muc_mapper_domain_prefix", "string"),
    ("muc_mapper_domain", "string"),
    ("jwt_pubkey_cache_size", "positive integer"),
    ("token_leeway", "seconds"),
    ("token_require_exp", "boolean"),
    ("asap_key_ttl", "seconds"),
    ("asap_key_stale_if_error", "seconds"),
    ("asap_key_negative_ttl", "seconds"),
    ("asap_key_fetch_timeout", "seconds"),
    ("asap_key_fetch_retries", "non-negative integer"),
    ("asap_key_fetch_rate", "positive integer"),
];

/// A configuration problem. The message names the host and option and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Token settings of one Prosody VirtualHost.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSettings {
    pub host: String,
    pub app_id: String,
    pub app_secret: Option<String>,
    pub asap_key_server: Option<String>,
    pub cache_keys_url: Option<String>,
    /// The algorithms a token's `alg` may name (the reference accepts exactly one).
    pub signature_algorithms: Vec<Algorithm>,
    pub allow_empty_token: bool,
    pub accepted_issuers: Vec<String>,
    pub accepted_audiences: Vec<String>,
    pub require_room_claim: bool,
    pub enable_domain_verification: bool,
    pub muc_mapper_domain_base: Option<String>,
    pub muc_mapper_domain_prefix: String,
    pub muc_mapper_domain: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf` (the reference allows none).
    pub leeway: u64,
    /// Refuse tokens without `exp` (the reference accepts them: they never expire).
    pub require_exp: bool,
    pub fetch: FetchSettings,
}

/// The daemon's own settings (`[server]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Path of the Unix socket the shim connects to (`socket`).
    pub socket: PathBuf,
    /// File mode of the socket, e.g. 0o660 (`socket_mode`, an octal string in TOML).
    pub socket_mode: u32,
    /// Group (name or numeric id) given to the socket, so Prosody's group can connect (`socket_group`).
    pub socket_group: Option<String>,
    /// Most connections served at once; further clients wait in the kernel's backlog (`max_connections`).
    pub max_connections: usize,
    /// Most requests being worked on for all connections together (`max_inflight`).
    pub max_inflight: usize,
    /// Most requests in flight on one connection; past it the daemon stops reading that
    /// connection until replies have been written (`max_inflight_per_connection`).
    pub max_inflight_per_connection: usize,
    /// Longest request line in bytes, newline excluded (`max_line_bytes`).
    pub max_line_bytes: usize,
    /// A connection whose peer accepts no reply bytes for this long is closed (`write_timeout`, seconds).
    pub write_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take before the daemon exits anyway
    /// (`shutdown_grace`, seconds).
    pub shutdown_grace: Duration,
    /// Most verified tokens remembered for the room check (`verify_cache_size`).
    pub verify_cache_size: u64,
    /// Longest time a verified token is remembered, even if its `exp` is later (`verify_cache_ttl`, seconds).
    pub verify_cache_ttl: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            socket: PathBuf::from(DEFAULT_SOCKET),
            socket_mode: 0o660,
            socket_group: None,
            max_connections: 1024,
            max_inflight: 1024,
            max_inflight_per_connection: 128,
            max_line_bytes: 64 * 1024,
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            verify_cache_size: 10_000,
            verify_cache_ttl: Duration::from_secs(600),
        }
    }
}

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub server: ServerSettings,
    pub hosts: BTreeMap<String, HostSettings>,
    /// Which of `hosts` came from the environment (`add_env_host`) rather than the file.
    pub env_hosts: std::collections::BTreeSet<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Config::from_toml(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let root: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError(e.message().to_owned()))?;
        let mut config = Config::default();
        for (key, value) in root {
            match key.as_str() {
                "server" => config.server = parse_server(&toml_to_json(value))?,
                "hosts" => {
                    let Value::Object(hosts) = toml_to_json(value) else {
                        return Err(ConfigError(
                            "`hosts` must be a table of [hosts.\"<VirtualHost>\"] tables".into(),
                        ));
                    };
                    for (host, table) in hosts {
                        let Value::Object(options) = table else {
                            return Err(ConfigError(format!("hosts.{host:?} must be a table of options")));
                        };
                        let settings = HostSettings::from_options(&host, &options, true)?;
                        config.hosts.insert(host, settings);
                    }
                }
                other => {
                    return Err(ConfigError(format!(
                        "unknown top-level key `{other}` (expected [server] or [hosts.\"<VirtualHost>\"])"
                    )));
                }
            }
        }
        Ok(config)
    }

    pub fn host(&self, host: &str) -> Result<&HostSettings, ConfigError> {
        self.hosts.get(host).ok_or_else(|| {
            let known: Vec<&str> = self.hosts.keys().map(String::as_str).collect();
            ConfigError(format!(
                "no [hosts.{host:?}] table in the config (hosts configured: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })
    }
}

/// The host docker-jitsi-meet's environment describes, as its Prosody config template would set it
/// (REFERENCE §1e): only when `ENABLE_AUTH` is on and `AUTH_TYPE` is `jwt`, for the VirtualHost
/// `XMPP_DOMAIN`. `get` reads one variable (`std::env::var` in the daemon; a map in tests).
///
/// Differences from the template, on purpose: list variables are split on commas with blanks
/// trimmed and empty items dropped (the template keeps `" b"` of `"a, b"` and then never matches
/// it); a boolean is on for `1`, `true`, `yes` or `on` in any case.
pub fn env_host(get: impl Fn(&str) -> Option<String>) -> Result<Option<HostSettings>, ConfigError> {
    let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let on = |name: &str| {
        set(name).is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
    };
    let (Some(domain), true, true) = (
        set("XMPP_DOMAIN"),
        on("ENABLE_AUTH"),
        set("AUTH_TYPE").is_some_and(|t| t.trim() == "jwt"),
    ) else {
        return Ok(None);
    };
    let domain = domain.trim().to_owned();
    let list = |v: String| -> Value {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Value::from)
            .collect()
    };
    let mut options = Map::new();
    let mut put = |option: &str, value: Option<Value>| {
        if let Some(value) = value {
            options.insert(option.to_owned(), value);
        }
    };
    put("app_id", get("JWT_APP_ID").map(Value::from));
    put("app_secret", set("JWT_APP_SECRET").map(Value::from));
    put("asap_key_server", set("JWT_ASAP_KEYSERVER").map(Value::from));
    put("allow_empty_token", Some(on("JWT_ALLOW_EMPTY").into()));
    put(
        "enable_domain_verification",
        Some(on("JWT_ENABLE_DOMAIN_VERIFICATION").into()),
    );
    put(
        "signature_algorithm",
        set("JWT_SIGN_TYPE").map(|v| Value::from(v.trim())),
    );
    put("asap_accepted_issuers", set("JWT_ACCEPTED_ISSUERS").map(list));
    put("asap_accepted_audiences", set("JWT_ACCEPTED_AUDIENCES").map(list));
    put("muc_mapper_domain_base", Some(Value::from(domain.clone())));
    put(
        "muc_mapper_domain_prefix",
        Some(Value::from(
            set("XMPP_MUC_DOMAIN_PREFIX").unwrap_or_else(|| "muc".into()),
        )),
    );
    HostSettings::from_options(&domain, &options, true)
        .map(Some)
        .map_err(|e| ConfigError(format!("from the environment (JWT_*, XMPP_DOMAIN): {e}")))
}

impl Config {
    /// Adds the host of docker-jitsi-meet's environment (`env_host`) unless the file has a table
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

fn parse_server(value: &Value) -> Result<ServerSettings, ConfigError> {
    let Value::Object(map) = value else {
        return Err(ConfigError("[server] must be a table".into()));
    };
    let mut server = ServerSettings::default();
    for (key, v) in map {
        let wrong =
            |expected: &str| ConfigError(format!("[server] {key}: expected {expected}, found {}", type_name(v)));
        match key.as_str() {
            "socket" => server.socket = PathBuf::from(v.as_str().ok_or_else(|| wrong("a path string"))?),
            "socket_mode" => {
                let text = v.as_str().ok_or_else(|| wrong("an octal string such as \"0660\""))?;
                server.socket_mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "[server] socket_mode: {text:?} is not an octal mode such as \"0660\""
                        ))
                    })?;
            }
            "socket_group" => server.socket_group = Some(v.as_str().ok_or_else(|| wrong("a group name"))?.to_owned()),
            "max_connections" => server.max_connections = limit(key, v, 1, 1 << 20)? as usize,
            "max_inflight" => server.max_inflight = limit(key, v, 1, 1 << 20)? as usize,
            "max_inflight_per_connection" => server.max_inflight_per_connection = limit(key, v, 1, 1 << 16)? as usize,
            "max_line_bytes" => server.max_line_bytes = limit(key, v, 1024, 16 << 20)? as usize,
            "write_timeout" => server.write_timeout = Duration::from_secs(limit(key, v, 1, 3600)?),
            "shutdown_grace" => server.shutdown_grace = Duration::from_secs(limit(key, v, 0, 3600)?),
            "verify_cache_size" => server.verify_cache_size = limit(key, v, 0, 100_000_000)?,
            "verify_cache_ttl" => server.verify_cache_ttl = Duration::from_secs(limit(key, v, 0, 86_400)?),
            other => return Err(ConfigError(format!("[server]: unknown option `{other}`"))),
        }
    }
    Ok(server)
}

/// A whole number option of `[server]` within `min..=max`.
fn limit(key: &str, v: &Value, min: u64, max: u64) -> Result<u64, ConfigError> {
    v.as_u64().filter(|n| (min..=max).contains(n)).ok_or_else(|| {
        ConfigError(format!(
            "[server] {key}: expected a whole number from {min} to {max}, found {v}"
        ))
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

/// Reads typed options out of one host's table, naming the host and option in every error.
struct Options<'a> {
    host: &'a str,
    map: &'a Map<String, Value>,
}

impl Options<'_> {
    fn wrong(&self, key: &str, expected: &str, found: &Value) -> ConfigError {
        ConfigError(format!(
            "host {:?}: option `{key}` must be {expected}, found {}",
            self.host,
            type_name(found)
        ))
    }

    fn invalid(&self, key: &str, why: impl fmt::Display) -> ConfigError {
        ConfigError(format!("host {:?}: option `{key}`: {why}", self.host))
    }

    fn get(&self, key: &str) -> Option<&Value> {
        // Lua's nil and JSON null both mean "not set".
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.wrong(key, "a boolean (true or false)", other)),
        }
    }

    /// A string or an array of strings (Prosody's `get_option_array` turns a string into one item).
    fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            // An empty Lua table (`{ }` in Prosody's config) reaches us from the shim as `{}`.
            Some(Value::Object(map)) if map.is_empty() => Ok(Some(Vec::new())),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.wrong(key, "a string or an array of strings", other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.wrong(key, "a string or an array of strings", other)),
        }
    }

    /// A whole, non-negative number (Lua numbers may arrive as floats such as `60.0`).
    fn whole(&self, key: &str, expected: &str) -> Result<Option<u64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => n
                .as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e15)
                        .map(|f| f as u64)
                })
                .map(Some)
                .ok_or_else(|| self.wrong(key, expected, v)),
            Some(other) => Err(self.wrong(key, expected, other)),
        }
    }

    fn seconds(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v @ Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e9)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| self.wrong(key, "a number of seconds (0 or more)", v)),
            Some(other) => Err(self.wrong(key, "a number of seconds", other)),
        }
    }

    fn url(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let Some(text) = self.string(key)? else { return Ok(None) };
        let parsed =
            reqwest::Url::parse(&text).map_err(|e| self.invalid(key, format!("{text:?} is not a URL ({e})")))?;
        match parsed.scheme() {
            "http" | "https" => Ok(Some(text)),
            scheme => Err(self.invalid(key, format!("{scheme}:// URLs are not supported; use http or https"))),
        }
    }
}

/// The algorithms we verify. `none` is not among them, by construction.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

impl HostSettings {
    /// Builds one host's settings from its options. `strict` refuses unknown option names (a TOML
    /// file is ours, so a typo there is an error).
    pub fn from_options(host: &str, map: &Map<String, Value>, strict: bool) -> Result<HostSettings, ConfigError> {
        let o = Options { host, map };
        if strict && let Some(unknown) = map.keys().find(|k| !HOST_OPTIONS.iter().any(|(name, _)| name == k)) {
            return Err(ConfigError(format!(
                "host {host:?}: unknown option `{unknown}` (see docs/CONFIG.md for the options)"
            )));
        }

        let app_id = o.string("app_id")?.filter(|s| !s.is_empty()).ok_or_else(|| {
            ConfigError(format!(
                "host {host:?}: option `app_id` is required (it is also the default accepted issuer); \
                 the Lua plugin silently turns itself off without it, we refuse to start"
            ))
        })?;
        let app_secret = o.string("app_secret")?;
        if app_secret.as_deref() == Some("") {
            return Err(o.invalid("app_secret", "is empty; set the shared secret or remove the option"));
        }
        let asap_key_server = o.url("asap_key_server")?;
        let cache_keys_url = o.url("cache_keys_url")?;
        if app_secret.is_none() && asap_key_server.is_none() && cache_keys_url.is_none() {
            return Err(ConfigError(format!(
                "host {host:?}: no key source: set `app_secret`, `asap_key_server` or `cache_keys_url`"
            )));
        }

        let signature_algorithms = match o.strings("signature_algorithm")? {
            Some(names) if names.is_empty() => {
                return Err(o.invalid("signature_algorithm", "is an empty array"));
            }
            Some(names) => names
                .iter()
                .map(|name| {
                    parse_algorithm(name).ok_or_else(|| {
                        o.invalid(
                            "signature_algorithm",
                            format!("{name:?} is not supported (HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, EdDSA)"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None if asap_key_server.is_some() || cache_keys_url.is_some() => vec![Algorithm::RS256],
            None => vec![Algorithm::HS256],
        };

        let accepted_issuers = o
            .strings("asap_accepted_issuers")?
            .unwrap_or_else(|| vec![app_id.clone()]);
        let accepted_audiences = o
            .strings("asap_accepted_audiences")?
            .unwrap_or_else(|| vec!["*".to_owned()]);

        let defaults = FetchSettings::default();
        let cache_size = o
            .whole("jwt_pubkey_cache_size", "a positive integer")?
            .unwrap_or(defaults.cache_size);
        if cache_size == 0 {
            return Err(o.invalid("jwt_pubkey_cache_size", "must be at least 1"));
        }
        let retries = o
            .whole("asap_key_fetch_retries", "a whole number (0 or more)")?
            .unwrap_or(defaults.retries.into());
        if retries > 10 {
            return Err(o.invalid("asap_key_fetch_retries", "at most 10 retries"));
        }
        let rate = o
            .whole("asap_key_fetch_rate", "a positive integer")?
            .unwrap_or(defaults.unknown_kid_rate.into());
        if rate == 0 || rate > 10_000 {
            return Err(o.invalid("asap_key_fetch_rate", "must be between 1 and 10000 fetches per second"));
        }
        let timeout = o.seconds("asap_key_fetch_timeout", defaults.timeout)?;
        if timeout.is_zero() {
            return Err(o.invalid("asap_key_fetch_timeout", "must be more than 0 seconds"));
        }
        let fetch = FetchSettings {
            ttl: o.seconds("asap_key_ttl", defaults.ttl)?,
            stale_if_error: o.seconds("asap_key_stale_if_error", defaults.stale_if_error)?,
            negative_ttl: o.seconds("asap_key_negative_ttl", defaults.negative_ttl)?,
            timeout,
            retries: retries as u32,
            cache_size,
            unknown_kid_rate: rate as u32,
        };

        let leeway = o.whole("token_leeway", "a whole number of seconds")?.unwrap_or(0);
        if leeway > 86_400 {
            return Err(o.invalid("token_leeway", "at most 86400 seconds"));
        }

        Ok(HostSettings {
            host: host.to_owned(),
            app_id,
            app_secret,
            asap_key_server,
            cache_keys_url,
            signature_algorithms,
            allow_empty_token: o.boolean("allow_empty_token", false)?,
            accepted_issuers,
            accepted_audiences,
            require_room_claim: o.boolean("asap_require_room_claim", true)?,
            enable_domain_verification: o.boolean("enable_domain_verification", true)?,
            muc_mapper_domain_base: o.string("muc_mapper_domain_base")?.filter(|s| !s.is_empty()),
            muc_mapper_domain_prefix: o
                .string("muc_mapper_domain_prefix")?
                .unwrap_or_else(|| "conference".to_owned()),
            muc_mapper_domain: o.string("muc_mapper_domain")?.filter(|s| !s.is_empty()),
            leeway,
            require_exp: o.boolean("token_require_exp", false)?,
            fetch,
        })
    }

    /// Things that load but will not work as the admin probably means, for a warning at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let asymmetric = self.asap_key_server.is_some() || self.cache_keys_url.is_some();
        if asymmetric && self.app_secret.is_some() {
            out.push(format!(
                "host {:?}: both a key server and app_secret are set; the key server wins and HS tokens are refused",
                self.host
            ));
        }
        if self.allow_empty_token {
            out.push(format!(
                "host {:?}: allow_empty_token is on: clients without a token log in anonymously",
                self.host
            ));
        }
        if self.enable_domain_verification && self.muc_mapper_domain_base.is_none() {
            out.push(format!(
                "host {:?}: enable_domain_verification is on but muc_mapper_domain_base is not set: \
                 tenant rooms and sub \"*\" are refused as a server misconfiguration",
                self.host
            ));
        }
        out
    }

    /// The real MUC domain: `muc_mapper_domain`, else `<prefix>.<base>`; none without a base.
    pub fn muc_domain(&self) -> Option<String> {
        let base = self.muc_mapper_domain_base.as_ref()?;
        Some(
            self.muc_mapper_domain
                .clone()
                .unwrap_or_else(|| format!("{}.{}", self.muc_mapper_domain_prefix, base)),
        )
    }

    pub fn room_policy(&self) -> RoomPolicy {
        RoomPolicy {
            enable_domain_verification: self.enable_domain_verification,
            require_room_claim: self.require_room_claim,
            allow_empty_token: self.allow_empty_token,
            muc_domain_base: self.muc_mapper_domain_base.clone(),
            muc_domain_prefix: self.muc_mapper_domain_prefix.clone(),
            muc_domain: self.muc_domain(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(toml_body: &str) -> Result<HostSettings, ConfigError> {
        let text = format!("[hosts.\"meet.example.com\"]\n{toml_body}");
        Config::from_toml(&text).map(|c| c.hosts["meet.example.com"].clone())
    }

    #[test]
    fn defaults_follow_the_reference() {
        let h = host("app_id = \"myapp\"\napp_secret = \"s3cret\"").unwrap();
        assert_eq!(h.signature_algorithms, vec![Algorithm::HS256]);
        assert_eq!(h.accepted_issuers, vec!["myapp"]);
        assert_eq!(h.accepted_audiences, vec!["*"]);
        assert!(h.require_room_claim && h.enable_domain_verification && !h.allow_empty_token);
        assert_eq!(h.fetch.cache_size, 128);
        assert_eq!(h.leeway, 0);
        assert!(!h.require_exp);
        assert_eq!(h.muc_domain(), None);

        let h = host("app_id = \"a\"\nasap_key_server = \"https://keys.example.com/asap\"").unwrap();
        assert_eq!(h.signature_algorithms, vec![Algorithm::RS256]);
        let h = host("app_id = \"a\"\ncache_keys_url = \"https://keys.example.com/jwks\"").unwrap();
        assert_eq!(h.signature_algorithms, vec![Algorithm::RS256]);
    }

    #[test]
    fn a_bare_string_is_a_one_item_array() {
        let h = host("app_id = \"a\"\napp_secret = \"s\"\nasap_accepted_issuers = \"x\"\nasap_accepted_audiences = [\"y\", \"z\"]").unwrap();
        assert_eq!(h.accepted_issuers, vec!["x"]);
        assert_eq!(h.accepted_audiences, vec!["y", "z"]);
    }

    #[test]
    fn muc_domain_is_derived_from_base_and_prefix() {
        let h = host("app_id = \"a\"\napp_secret = \"s\"\nmuc_mapper_domain_base = \"example.com\"\nmuc_mapper_domain_prefix = \"muc\"").unwrap();
        assert_eq!(h.muc_domain().as_deref(), Some("muc.example.com"));
        let h = host("app_id = \"a\"\napp_secret = \"s\"\nmuc_mapper_domain_base = \"example.com\"\nmuc_mapper_domain = \"rooms.example.net\"").unwrap();
        assert_eq!(h.muc_domain().as_deref(), Some("rooms.example.net"));
    }

    #[test]
    fn errors_name_the_option_and_the_expected_type() {
        let cases: &[(&str, &str)] = &[
            ("app_secret = \"s\"", "option `app_id` is required"),
            ("app_id = \"a\"", "no key source"),
            (
                "app_id = 5\napp_secret = \"s\"",
                "option `app_id` must be a string, found an integer",
            ),
            (
                "app_id = \"a\"\napp_secret = \"s\"\nallow_empty_token = \"yes\"",
                "`allow_empty_token` must be a boolean",
            ),
            (
                "app_id = \"a\"\napp_secret = \"s\"\nasap_accepted_issuers = [1]",
                "`asap_accepted_issuers` must be a string or an array of strings",
            ),
            (
                "app_id = \"a\"\napp_secret = \"s\"\nsignature_algorithm = \"none\"",
                "\"none\" is not supported",
            ),
            (
                "app_id = \"a\"\napp_secret = \"s\"\nsignature_algorithm = []",
                "empty array",
            ),
            (
                "app_id = \"a\"\nasap_key_server = \"file:///etc/keys\"",
                "file:// URLs are not supported",
            ),
            ("app_id = \"a\"\nasap_key_server = \"\"", "is not a URL"),
            ("app_id = \"a\"\napp_secret = \"\"", "`app_secret`: is empty"),
            (
                "app_id = \"a\"\napp_secret = \"s\"\njwt_pubkey_cache_size = 0",
                "at least 1",
            ),
            (
                "app_id = \"a\"\napp_secret = \"s\"\njwt_pubkey_cache_size = 1.5",
                "`jwt_pubkey_cache_size` must be a positive integer",
            ),
            (
                "app_id = \"a\"\napp_secret = \"s\"\nasap_key_ttl = -1",
                "`asap_key_ttl` must be a number of seconds",
            ),
            (
                "app_id = \"a\"\napp_secret = \"s\"\napp_idd = \"x\"",
                "unknown option `app_idd`",
            ),
        ];
        for (body, expected) in cases {
            let err = host(body).expect_err(body).0;
            assert!(err.contains(expected), "{body:?}: {err:?} lacks {expected:?}");
            assert!(
                err.contains("meet.example.com") || err.contains("is not a URL"),
                "{err}"
            );
        }
    }

    #[test]
    fn server_table() {
        let c =
            Config::from_toml("[server]\nsocket = \"/tmp/x.sock\"\nsocket_mode = \"0600\"\nsocket_group = \"prosody\"")
                .unwrap();
        assert_eq!(c.server.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.server.socket_mode, 0o600);
        assert_eq!(c.server.socket_group.as_deref(), Some("prosody"));
        assert!(Config::from_toml("[server]\nsocket_mode = \"999\"").is_err());
        let c = Config::from_toml("[server]\nmax_inflight = 8\nmax_line_bytes = 4096\nshutdown_grace = 2").unwrap();
        assert_eq!(
            (c.server.max_inflight, c.server.max_line_bytes, c.server.shutdown_grace),
            (8, 4096, Duration::from_secs(2))
        );
        let err = Config::from_toml("[server]\nmax_inflight = 0").unwrap_err().0;
        assert!(err.contains("max_inflight: expected a whole number from 1"), "{err}");
        assert!(
            Config::from_toml("[surver]\n")
                .unwrap_err()
                .0
                .contains("unknown top-level key")
        );
        assert!(Config::from_toml("hosts = 3").is_err());
        assert!(
            Config::from_toml("[hosts]\nx = 3")
                .unwrap_err()
                .0
                .contains("must be a table")
        );
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name: &str| vars.get(name).cloned()
    }

    #[test]
    fn docker_environment_defines_the_xmpp_domain_host() {
        let base = [
            ("XMPP_DOMAIN", "meet.jitsi"),
            ("ENABLE_AUTH", "1"),
            ("AUTH_TYPE", "jwt"),
            ("JWT_APP_ID", "my_app"),
            ("JWT_APP_SECRET", "s3cret"),
        ];
        let h = env_host(env(&base)).unwrap().expect("a host");
        assert_eq!(h.host, "meet.jitsi");
        assert_eq!(h.app_id, "my_app");
        assert_eq!(h.muc_domain().as_deref(), Some("muc.meet.jitsi"));
        assert!(!h.enable_domain_verification, "docker writes false unless set");
        assert!(!h.allow_empty_token);
        assert_eq!(h.accepted_issuers, vec!["my_app".to_owned()]);

        let mut more = base.to_vec();
        more.extend([
            ("JWT_ACCEPTED_ISSUERS", "a, b,,c "),
            ("JWT_ACCEPTED_AUDIENCES", "jitsi"),
            ("JWT_ALLOW_EMPTY", "true"),
            ("JWT_ENABLE_DOMAIN_VERIFICATION", "1"),
            ("XMPP_MUC_DOMAIN_PREFIX", "conference"),
        ]);
        let h = env_host(env(&more)).unwrap().unwrap();
        assert_eq!(h.accepted_issuers, vec!["a", "b", "c"]);
        assert_eq!(h.accepted_audiences, vec!["jitsi"]);
        assert!(h.allow_empty_token && h.enable_domain_verification);
        assert_eq!(h.muc_domain().as_deref(), Some("conference.meet.jitsi"));

        // Off unless ENABLE_AUTH is on and AUTH_TYPE is jwt.
        for (k, v) in [("ENABLE_AUTH", "0"), ("AUTH_TYPE", "internal")] {
            let mut vars = base.to_vec();
            vars.retain(|(name, _)| *name != k);
            vars.push((k, v));
            assert!(env_host(env(&vars)).unwrap().is_none(), "{k}={v}");
        }
        // No secret and no key server: the same refusal as a TOML table, naming the environment.
        let no_key: Vec<_> = base.iter().copied().filter(|(k, _)| *k != "JWT_APP_SECRET").collect();
        let e = env_host(env(&no_key)).unwrap_err().to_string();
        assert!(e.contains("environment"), "{e}");

        // A TOML table for the same VirtualHost wins.
        let mut config =
            Config::from_toml("[hosts.\"meet.jitsi\"]\napp_id = \"from_toml\"\napp_secret = \"x\"\n").unwrap();
        config.add_env_host(env(&base)).unwrap();
        assert_eq!(config.hosts["meet.jitsi"].app_id, "from_toml");
        let mut empty = Config::default();
        empty.add_env_host(env(&base)).unwrap();
        assert_eq!(empty.hosts["meet.jitsi"].app_id, "my_app");
    }

    #[test]
    fn lenient_mode_ignores_unknown_options() {
        let map: Map<String, Value> =
            serde_json::from_str(r#"{"app_id":"a","app_secret":"s","something_new":1,"token_leeway":30.0}"#).unwrap();
        let h = HostSettings::from_options("h", &map, false).unwrap();
        assert_eq!(h.leeway, 30);
    }
}
