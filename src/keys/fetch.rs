//! Fetch settings, errors, and the HTTP client shared by the key server and JWKS sources.

use std::time::Duration;

/// How keys are fetched and cached (host options `asap_key_*` and `jwt_pubkey_cache_size`).
#[derive(Debug, Clone, PartialEq)]
pub struct FetchSettings {
    /// How long a fetched key is used before it is fetched again (`asap_key_ttl`).
    pub ttl: Duration,
    /// How long past `ttl` a key may still be used while refetching fails (`asap_key_stale_if_error`).
    pub stale_if_error: Duration,
    /// How long a 404 or failed fetch is remembered (`asap_key_negative_ttl`).
    pub negative_ttl: Duration,
    /// Timeout of one HTTP try, connect to last byte (`asap_key_fetch_timeout`).
    pub timeout: Duration,
    /// Further tries after a timeout, connection error or 5xx (`asap_key_fetch_retries`).
    pub retries: u32,
    /// Most kids kept (`jwt_pubkey_cache_size`).
    pub cache_size: u64,
    /// Fetches for kids not in the cache allowed per second, and as a burst (`asap_key_fetch_rate`).
    pub unknown_kid_rate: u32,
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            ttl: Duration::from_secs(3600),
            stale_if_error: Duration::from_secs(86400),
            negative_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(3),
            retries: 2,
            cache_size: 128,
            unknown_kid_rate: 10,
        }
    }
}

/// Why a key could not be had. `Display` is for admins: it names the URL and what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("HTTP {status} from {url}")]
    Status { url: String, status: u16 },
    #[error("no answer from {url} within {timeout_ms} ms ({tries} tries)")]
    Timeout { url: String, timeout_ms: u64, tries: u32 },
    #[error("could not connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("{url} did not return a usable key: {detail}")]
    BadBody { url: String, detail: String },
    #[error("not a usable public key: {0}")]
    BadKey(String),
    #[error("RSA key of {bits} bits refused: at least 2048 are required")]
    WeakKey { bits: u32 },
    #[error("too many fetches for unknown kids; kid {kid:?} not fetched")]
    RateLimited { kid: String },
}
