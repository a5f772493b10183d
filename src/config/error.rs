//! Configuration errors. Each names the file, table, host and option at fault and says what was
//! expected, in the words admins see in logs and on the command line.

use std::fmt;
use std::path::PathBuf;

use crate::keys::KeySourceError;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A problem inside a file.
    #[error("{}: {error}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The problem.
        error: Box<ConfigError>,
    },
    /// Not TOML.
    #[error("{0}")]
    Syntax(String),
    /// A top-level key other than `server`, `hosts`, `issuers`, `http` and `store`.
    #[error(
        "unknown top-level key `{0}` (expected [server], [http], [store], [hosts.\"<VirtualHost>\"] or [issuers.\"<Prosody host>\"])"
    )]
    UnknownSection(String),
    /// `hosts` is not a table of tables.
    #[error("`hosts` must be a table of [hosts.\"<VirtualHost>\"] tables")]
    HostsNotATable,
    /// `hosts.X` is not a table.
    #[error("hosts.{0:?} must be a table of options")]
    HostNotATable(String),
    /// A problem in `[server]`.
    #[error("{0}")]
    Server(#[from] ServerProblem),
    /// A problem in `[http]`.
    #[error("{0}")]
    Http(#[from] super::HttpProblem),
    /// A problem in `[store]`.
    #[error("{0}")]
    Store(#[from] super::StoreProblem),
    /// `issuers` is not a table of tables.
    #[error("`issuers` must be a table of [issuers.\"<Prosody host>\"] tables")]
    IssuersNotATable,

    /// A problem with one host's settings.
    #[error("host {host:?}: {problem}")]
    Host {
        /// The VirtualHost.
        host: String,
        /// The problem.
        problem: HostProblem,
    },
    /// A host the CLI was asked about is not in the file.
    #[error("no [hosts.{host:?}] table in the config (hosts configured: {})", list(known))]
    NoSuchHost {
        /// The host asked for.
        host: String,
        /// The hosts the file has.
        known: Vec<String>,
    },
    /// A problem with the host docker-jitsi-meet's environment describes.
    #[error("from the environment (JWT_*, XMPP_DOMAIN): {0}")]
    Environment(Box<ConfigError>),
}

fn list(known: &[String]) -> String {
    if known.is_empty() {
        "none".to_owned()
    } else {
        known.join(", ")
    }
}

/// A problem in `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerProblem {
    /// `[server]` is not a table.
    #[error("[server] must be a table")]
    NotATable,
    /// An option `[server]` does not have.
    #[error("[server]: unknown option `{0}`")]
    UnknownOption(String),
    /// A value of the wrong type.
    #[error("[server] {option}: expected {expected}, found {found}")]
    WrongType {
        /// The option.
        option: String,
        /// What it takes.
        expected: &'static str,
        /// What it has.
        found: &'static str,
    },
    /// `socket_mode` is not an octal mode.
    #[error("[server] socket_mode: {0:?} is not an octal mode such as \"0660\"")]
    SocketMode(String),
    /// A number outside its range.
    #[error("[server] {option}: expected a whole number from {min} to {max}, found {found}")]
    OutOfRange {
        /// The option.
        option: String,
        /// The least value allowed.
        min: u64,
        /// The greatest value allowed.
        max: u64,
        /// The value found, as written.
        found: String,
    },
}

/// A problem with one host's settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostProblem {
    /// A name that is not a host option (an error only in TOML files).
    #[error("unknown option `{0}` (see docs/CONFIG.md for the options)")]
    UnknownOption(String),
    /// A value of the wrong type.
    #[error("option `{option}` must be {expected}, found {found}")]
    WrongType {
        /// The option.
        option: &'static str,
        /// What it takes.
        expected: &'static str,
        /// What it has.
        found: &'static str,
    },
    /// No `app_id`.
    #[error(
        "option `app_id` is required (it is also the default accepted issuer); the Lua plugin \
         silently turns itself off without it, we refuse to start"
    )]
    AppIdMissing,
    /// None of `app_secret`, `asap_key_server`, `cache_keys_url`.
    #[error("no key source: set `app_secret`, `asap_key_server` or `cache_keys_url`")]
    NoKeySource,
    /// A value of the right type that cannot be used.
    #[error("option `{option}`: {problem}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// What is wrong with the value.
        problem: ValueProblem,
    },
    /// A key source URL that cannot be used.
    #[error("option `{option}`: {error}")]
    KeySource {
        /// `asap_key_server` or `cache_keys_url`.
        option: &'static str,
        /// What is wrong with it.
        error: KeySourceError,
    },
    /// A key fetch that may take longer than a login through the shim waits for keys.
    #[error(
        "options `asap_key_fetch_timeout` ({}) and `asap_key_fetch_retries` ({retries}) let one key \
         fetch take {} (every try timing out, with the backoff between tries), more than the {} a \
         login may wait for keys before the shim's `token_sidecar_timeout` ({} by default) gives up: \
         lower one of them",
        seconds(.timeout_ms),
        seconds(.longest_ms),
        seconds(.limit_ms),
        seconds(.shim_ms)
    )]
    KeyFetchTooLong {
        /// `asap_key_fetch_timeout`, in milliseconds.
        timeout_ms: u64,
        /// `asap_key_fetch_retries`.
        retries: u32,
        /// The longest one fetch may take, in milliseconds.
        longest_ms: u64,
        /// The longest a login waits for keys (`keys::KEY_WAIT_LIMIT`), in milliseconds.
        limit_ms: u64,
        /// The shim's default timeout (`keys::SHIM_TIMEOUT`), in milliseconds.
        shim_ms: u64,
    },
}

/// Milliseconds as admins write seconds: `9.3 s`, `60 s`.
fn seconds(ms: &u64) -> String {
    let text = format!("{:.3}", *ms as f64 / 1000.0);
    format!("{} s", text.trim_end_matches('0').trim_end_matches('.'))
}

/// What is wrong with an option's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueProblem {
    /// An empty `app_secret`.
    EmptySecret,
    /// An empty list where one item at least is needed.
    EmptyList,
    /// An algorithm name this daemon does not verify.
    UnsupportedAlgorithm(String),
    /// A number outside the option's range.
    OutOfRange {
        /// The least value allowed.
        min: u64,
        /// The greatest value allowed.
        max: u64,
        /// The unit, with a leading space (`" seconds"`), or empty.
        unit: &'static str,
    },
    /// 0 for an option that must be more.
    Zero,
}

impl fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueProblem::EmptySecret => f.write_str("is empty; set the shared secret or remove the option"),
            ValueProblem::EmptyList => f.write_str("is an empty array"),
            ValueProblem::UnsupportedAlgorithm(name) => {
                write!(f, "{name:?} is not supported ({})", crate::keys::ALGORITHM_NAMES)
            }
            ValueProblem::OutOfRange { min, max, unit } => match (*min, *max) {
                (min, u64::MAX) => write!(f, "must be at least {min}{unit}"),
                (0, max) => write!(f, "must be at most {max}{unit}"),
                (min, max) => write!(f, "must be between {min} and {max}{unit}"),
            },
            ValueProblem::Zero => f.write_str("must be more than 0 seconds"),
        }
    }
}
