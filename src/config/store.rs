//! `[store]`: where occupancy and revocations live. `memory` (the default) keeps them in this
//! daemon; `valkey` or `redis` shares them with the daemons of the other shards (`crate::store`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// This daemon's memory: nothing shared.
    #[default]
    Memory,
    /// A Valkey server or cluster.
    Valkey,
    /// A Redis server or cluster (the same wire protocol).
    Redis,
}

impl StoreKind {
    /// The name in the config.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Valkey => "valkey",
            StoreKind::Redis => "redis",
        }
    }
}

/// Where the shared store is. `Debug` shows no password written in a URL.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreAddress {
    /// One server (`url`): `redis://host:port/db`, `rediss://` for TLS.
    Server(String),
    /// A cluster (`cluster_nodes`): some of its nodes, from which the client learns the rest.
    Cluster(Vec<String>),
}

impl StoreAddress {
    /// Every URL.
    pub fn urls(&self) -> &[String] {
        match self {
            StoreAddress::Server(url) => std::slice::from_ref(url),
            StoreAddress::Cluster(nodes) => nodes,
        }
    }
}

impl std::fmt::Debug for StoreAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreAddress::Server(url) => f.debug_tuple("Server").field(&redact_url(url)).finish(),
            StoreAddress::Cluster(nodes) => {
                let nodes: Vec<String> = nodes.iter().map(|u| redact_url(u)).collect();
                f.debug_tuple("Cluster").field(&nodes).finish()
            }
        }
    }
}

/// The lease bounds of `lease_seconds`, in seconds.
pub const LEASE_SECONDS: (u64, u64) = (10, 300);
/// The bounds of `timeout_ms`.
pub const TIMEOUT_MS: (u64, u64) = (10, 10_000);

/// `[store]`. `Debug` shows neither the password nor one written in a URL.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// `kind`.
    pub kind: StoreKind,
    /// `url` or `cluster_nodes`; `None` for `memory`.
    pub address: Option<StoreAddress>,
    /// `username`: an ACL user.
    pub username: Option<String>,
    /// The contents of `password_file`, without surrounding whitespace.
    pub password: Option<String>,
    /// The contents of `tls_ca_file` (PEM), to trust a private CA on `rediss://`.
    pub tls_ca: Option<Vec<u8>>,
    /// `shard`: this daemon's name in the store; `None`: the machine's hostname.
    pub shard: Option<String>,
    /// `lease_seconds`: how long what this shard published lives without a refresh.
    pub lease: Duration,
    /// `key_prefix`: the start of every key.
    pub key_prefix: String,
    /// `timeout_ms`: the most one command may take.
    pub timeout: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            kind: StoreKind::Memory,
            address: None,
            username: None,
            password: None,
            tls_ca: None,
            shard: None,
            lease: Duration::from_secs(30),
            key_prefix: "token-sidecar:".to_owned(),
            timeout: Duration::from_millis(500),
        }
    }
}

/// A URL with its password (`redis://user:password@host`) replaced.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:<redacted>@{host}{path}")
        }
        None => url.to_owned(),
    }
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let StoreSettings {
            kind,
            address,
            username,
            password,
            tls_ca,
            shard,
            lease,
            key_prefix,
            timeout,
        } = self;
        f.debug_struct("StoreSettings")
            .field("kind", kind)
            .field("address", address)
            .field("username", username)
            .field("password", &password.as_ref().map(|_| "<redacted>"))
            .field("tls_ca", &tls_ca.as_ref().map(|pem| pem.len()))
            .field("shard", shard)
            .field("lease", lease)
            .field("key_prefix", key_prefix)
            .field("timeout", timeout)
            .finish()
    }
}

/// A problem in `[store]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreProblem {
    /// `[store]` is not a table.
    #[error("[store] must be a table")]
    NotATable,
    /// An option `[store]` does not have.
    #[error("[store]: unknown option `{0}`")]
    UnknownOption(String),
    /// An option of the wrong type.
    #[error("[store] {option}: expected {expected}")]
    WrongType {
        /// The option.
        option: &'static str,
        /// What it takes.
        expected: &'static str,
    },
    /// `kind` is none of the three.
    #[error("[store] kind: expected \"memory\", \"valkey\" or \"redis\", found {0:?}")]
    Kind(String),
    /// A URL that is not `redis://` or `rediss://`.
    #[error("[store] {option}: expected a redis:// or rediss:// URL, found {url:?}")]
    Url {
        /// `url` or `cluster_nodes`.
        option: &'static str,
        /// The URL, its password redacted.
        url: String,
    },
    /// A shared store without an address, or with both.
    #[error("[store] kind = {0:?}: set url (one server) or cluster_nodes (a cluster), one of them")]
    Address(&'static str),
    /// Options of a shared store with `kind = "memory"`.
    #[error("[store] {0}: only with kind = \"valkey\" or \"redis\" (kind is \"memory\", nothing is shared)")]
    NotShared(String),
    /// A number outside its range.
    #[error("[store] {option}: expected a whole number from {min} to {max}, found {found}")]
    OutOfRange {
        /// The option.
        option: &'static str,
        /// The least value allowed.
        min: u64,
        /// The greatest value allowed.
        max: u64,
        /// The value found, as written.
        found: String,
    },
    /// A file that cannot be read.
    #[error("[store] {option}: cannot read {path}: {error}")]
    File {
        /// The option.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// A shard name the value format cannot carry.
    #[error("[store] shard: expected a non-empty name without `|` or blanks, found {0:?}")]
    Shard(String),
    /// A CA file for URLs that do not use TLS.
    #[error("[store] tls_ca_file: only with rediss:// URLs (TLS)")]
    CaWithoutTls,
    /// A key prefix with a hash tag in it.
    #[error("[store] key_prefix: `{{` and `}}` are not allowed (they would put every key in one cluster slot)")]
    KeyPrefix,
}

impl StoreSettings {
    /// Reads `[store]`.
    pub(super) fn from_table(value: &Value) -> Result<StoreSettings, StoreProblem> {
        let Value::Object(map) = value else {
            return Err(StoreProblem::NotATable);
        };
        let mut store = StoreSettings::default();
        let (mut url, mut nodes, mut password_file, mut ca_file) = (None, None, None, None);
        let mut shared_only = Vec::new();
        for (key, v) in map {
            let text = |option| {
                v.as_str().ok_or(StoreProblem::WrongType {
                    option,
                    expected: "a string",
                })
            };
            let number = |option, (min, max): (u64, u64)| {
                v.as_u64()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| StoreProblem::OutOfRange {
                        option,
                        min,
                        max,
                        found: v.to_string(),
                    })
            };
            if key != "kind" {
                shared_only.push(key.clone());
            }
            match key.as_str() {
                "kind" => {
                    store.kind = match text("kind")? {
                        "memory" => StoreKind::Memory,
                        "valkey" => StoreKind::Valkey,
                        "redis" => StoreKind::Redis,
                        other => return Err(StoreProblem::Kind(other.to_owned())),
                    }
                }
                "url" => url = Some(checked_url("url", text("url")?)?),
                "cluster_nodes" => {
                    let list = v.as_array().ok_or(StoreProblem::WrongType {
                        option: "cluster_nodes",
                        expected: "an array of redis:// URLs",
                    })?;
                    let mut all = Vec::with_capacity(list.len());
                    for node in list {
                        let node = node.as_str().ok_or(StoreProblem::WrongType {
                            option: "cluster_nodes",
                            expected: "an array of redis:// URLs",
                        })?;
                        all.push(checked_url("cluster_nodes", node)?);
                    }
                    nodes = Some(all);
                }
                "username" => store.username = Some(text("username")?.to_owned()),
                "password_file" => password_file = Some(PathBuf::from(text("password_file")?)),
                "tls_ca_file" => ca_file = Some(PathBuf::from(text("tls_ca_file")?)),
                "shard" => {
                    let shard = text("shard")?;
                    if !valid_shard(shard) {
                        return Err(StoreProblem::Shard(shard.to_owned()));
                    }
                    store.shard = Some(shard.to_owned());
                }
                "lease_seconds" => store.lease = Duration::from_secs(number("lease_seconds", LEASE_SECONDS)?),
                "key_prefix" => {
                    let prefix = text("key_prefix")?;
                    if prefix.contains(['{', '}']) {
                        return Err(StoreProblem::KeyPrefix);
                    }
                    store.key_prefix = prefix.to_owned();
                }
                "timeout_ms" => store.timeout = Duration::from_millis(number("timeout_ms", TIMEOUT_MS)?),
                other => return Err(StoreProblem::UnknownOption(other.to_owned())),
            }
        }
        if store.kind == StoreKind::Memory {
            if let Some(option) = shared_only.into_iter().next() {
                return Err(StoreProblem::NotShared(option));
            }
            return Ok(store);
        }
        store.address = match (url, nodes) {
            (Some(url), None) => Some(StoreAddress::Server(url)),
            (None, Some(nodes)) if !nodes.is_empty() => Some(StoreAddress::Cluster(nodes)),
            _ => return Err(StoreProblem::Address(store.kind.name())),
        };
        if let Some(path) = password_file {
            let text = read("password_file", &path)?;
            store.password = Some(String::from_utf8_lossy(&text).trim().to_owned());
        }
        if let Some(path) = ca_file {
            let all_tls = store
                .address
                .as_ref()
                .is_some_and(|a| a.urls().iter().all(|u| u.starts_with("rediss://")));
            if !all_tls {
                return Err(StoreProblem::CaWithoutTls);
            }
            store.tls_ca = Some(read("tls_ca_file", &path)?);
        }
        Ok(store)
    }
}

/// Whether `name` can be a shard's name: the value `<shard>|<nick>` is split at the first `|`.
pub fn valid_shard(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c: char| c == '|' || c.is_whitespace() || c.is_control())
}

fn checked_url(option: &'static str, url: &str) -> Result<String, StoreProblem> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(url.to_owned())
    } else {
        Err(StoreProblem::Url {
            option,
            url: redact_url(url),
        })
    }
}

fn read(option: &'static str, path: &PathBuf) -> Result<Vec<u8>, StoreProblem> {
    std::fs::read(path).map_err(|e| StoreProblem::File {
        option,
        path: path.clone(),
        error: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_and_refuses() {
        assert_eq!(StoreSettings::from_table(&json!({})).unwrap(), StoreSettings::default());
        let s = StoreSettings::from_table(&json!({
            "kind": "valkey", "url": "redis://127.0.0.1:6379/0", "shard": "shard-a",
            "lease_seconds": 60, "key_prefix": "ts:", "timeout_ms": 200, "username": "sidecar"
        }))
        .unwrap();
        assert_eq!(s.kind, StoreKind::Valkey);
        assert_eq!(s.address, Some(StoreAddress::Server("redis://127.0.0.1:6379/0".into())));
        assert_eq!(
            (s.shard.as_deref(), s.lease, s.key_prefix.as_str(), s.timeout),
            (
                Some("shard-a"),
                Duration::from_secs(60),
                "ts:",
                Duration::from_millis(200)
            )
        );
        let c = StoreSettings::from_table(&json!({"kind": "redis", "cluster_nodes": ["redis://a:1", "rediss://b:2"]}))
            .unwrap();
        assert_eq!(
            c.address,
            Some(StoreAddress::Cluster(vec!["redis://a:1".into(), "rediss://b:2".into()]))
        );
        let refused = |v| StoreSettings::from_table(&v).unwrap_err().to_string();
        assert_eq!(
            refused(json!({"kind": "valkey"})),
            "[store] kind = \"valkey\": set url (one server) or cluster_nodes (a cluster), one of them"
        );
        assert_eq!(
            refused(json!({"kind": "valkey", "url": "redis://a", "cluster_nodes": ["redis://b"]})),
            "[store] kind = \"valkey\": set url (one server) or cluster_nodes (a cluster), one of them"
        );
        assert_eq!(
            refused(json!({"url": "redis://a"})),
            "[store] url: only with kind = \"valkey\" or \"redis\" (kind is \"memory\", nothing is shared)"
        );
        assert_eq!(
            refused(json!({"kind": "memcached"})),
            "[store] kind: expected \"memory\", \"valkey\" or \"redis\", found \"memcached\""
        );
        assert_eq!(
            refused(json!({"kind": "valkey", "url": "http://u:secret@a"})),
            "[store] url: expected a redis:// or rediss:// URL, found \"http://u:<redacted>@a\""
        );
        assert_eq!(
            refused(json!({"kind": "valkey", "url": "redis://a", "lease_seconds": 2})),
            "[store] lease_seconds: expected a whole number from 10 to 300, found 2"
        );
        assert_eq!(
            refused(json!({"kind": "valkey", "url": "redis://a", "shard": "a|b"})),
            "[store] shard: expected a non-empty name without `|` or blanks, found \"a|b\""
        );
        assert_eq!(
            refused(json!({"kind": "valkey", "url": "redis://a", "key_prefix": "{x}"})),
            "[store] key_prefix: `{` and `}` are not allowed (they would put every key in one cluster slot)"
        );
        assert!(matches!(
            StoreSettings::from_table(
                &json!({"kind": "valkey", "url": "redis://a", "password_file": "/nonexistent/x"})
            ),
            Err(StoreProblem::File { .. })
        ));
        assert_eq!(
            refused(json!({"kind": "valkey", "url": "redis://a", "tls_ca_file": "/x"})),
            "[store] tls_ca_file: only with rediss:// URLs (TLS)"
        );
        assert!(matches!(
            StoreSettings::from_table(&json!({"kind": "valkey", "url": "redis://a", "pasword_file": "x"})),
            Err(StoreProblem::UnknownOption(_))
        ));
    }

    #[test]
    fn debug_shows_no_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "store-password-never-shown\n").unwrap();
        let s = StoreSettings::from_table(&json!({
            "kind": "valkey", "url": "redis://u:url-password-never-shown@h:1/0",
            "password_file": path.to_str().unwrap()
        }))
        .unwrap();
        assert_eq!(s.password.as_deref(), Some("store-password-never-shown"));
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("never-shown"), "{shown}");
        assert!(shown.contains("redis://u:<redacted>@h:1/0"), "{shown}");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }
}
