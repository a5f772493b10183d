//! Fetch settings, errors, and the HTTP client shared by the key server and JWKS sources.
//!
//! One GET with bounded time and size, retried only when trying again can help (timeout,
//! connection error, 5xx). Redirects are not followed: a key server that redirects is
//! misconfigured, and following one would let a compromised server send us anywhere.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode, Url, header, redirect};

use super::kid::ShortKid;
use super::observe::{FetchOutcome, KeyObserver, LookupEvent, SourceKind};
use crate::cause_chain::cause_chain;

/// How keys are fetched and cached (host options `asap_key_*` and `jwt_pubkey_cache_size`; their
/// defaults are in the host-option table, `config::options`).
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
    /// 0 turns the limit off.
    pub unknown_kid_rate: u32,
}

impl FetchSettings {
    /// The longest one fetch may take: every try timing out, with the backoff between tries.
    /// With the defaults, 3 tries of 3 s and 100 + 200 ms of backoff: 9.3 s.
    pub fn longest_fetch(&self) -> Duration {
        // Past the 5th retry the backoff is always its 1 s cap: no loop over a huge count.
        let stepped = self.retries.min(BACKOFF_STEPS);
        let backoffs: Duration = (1..=stepped).map(backoff).sum();
        let capped = Duration::from_secs(u64::from(self.retries - stepped));
        self.timeout
            .saturating_mul(self.retries.saturating_add(1))
            .saturating_add(backoffs)
            .saturating_add(capped)
    }
}

/// Counters a key source keeps, for `stats` and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KeySourceStats {
    /// HTTP requests started (each retry counts).
    pub http_requests: u64,
    /// Lookups answered from the cache (fresh or stale).
    pub hits: u64,
    /// Lookups that needed a fetch.
    pub misses: u64,
    /// Lookups answered from the negative cache.
    pub negative_hits: u64,
    /// Lookups refused because the unknown-kid fetch budget was spent.
    pub rate_limited: u64,
    /// Lookups refused at once because the host's budget of fetches (`keys::KEY_WAITS_PER_HOST`)
    /// was spent.
    pub busy: u64,
    /// Stale keys served because a refetch failed.
    pub stale_served: u64,
}

/// Why a key could not be had. `Display` is for admins: it names the URL and what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// An HTTP status other than 200.
    #[error("HTTP {status} from {url}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// No answer in time, on every try.
    #[error("no answer from {url} within {timeout_ms} ms ({tries} tries)")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout of one try.
        timeout_ms: u64,
        /// Tries made.
        tries: u32,
    },
    /// No connection.
    #[error("could not connect to {url}: {detail}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        detail: String,
    },
    /// An answer that is not a key (or a key set).
    #[error("{url} did not return a usable key: {detail}")]
    BadBody {
        /// The URL.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Key material that cannot be used.
    #[error("not a usable public key: {0}")]
    BadKey(String),
    /// An RSA key under 2048 bits.
    #[error("RSA key of {bits} bits refused: at least 2048 are required")]
    WeakKey {
        /// Its size.
        bits: u32,
    },
    /// The unknown-kid fetch budget is spent.
    #[error("too many fetches for unknown kids (asap_key_fetch_rate); kid {} not fetched", ShortKid(.kid))]
    RateLimited {
        /// The kid not fetched.
        kid: String,
    },
    /// The host's budget of fetches is spent (`keys::KEY_WAITS_PER_HOST`).
    #[error("{limit} key fetches of this host are already under way; not starting another")]
    Busy {
        /// The budget.
        limit: usize,
    },
}

impl KeyError {
    /// Whether the server may answer better if asked again: a timeout, a connection error or a
    /// 5xx. A 4xx or a bad body will not change by retrying, and does not justify serving a stale key.
    pub fn is_transient(&self) -> bool {
        match self {
            KeyError::Timeout { .. } | KeyError::Connect { .. } => true,
            KeyError::Status { status, .. } => (500..600).contains(status),
            _ => false,
        }
    }

    /// Whether the key was not looked for because a budget was spent (the unknown-kid rate, the
    /// host's fetches under way): the same login may succeed a moment later, so it is refused as a
    /// temporary failure rather than with the permanent-looking `could not obtain public key`.
    pub fn is_budget(&self) -> bool {
        matches!(self, KeyError::RateLimited { .. } | KeyError::Busy { .. })
    }

    /// How a fetch that failed with this error ended, for an observer; `None` for the errors of a
    /// budget, which come before any fetch.
    pub fn fetch_outcome(&self) -> Option<FetchOutcome> {
        match self {
            KeyError::Status { status: 404 | 410, .. } => Some(FetchOutcome::NotFound),
            KeyError::Status { .. } => Some(FetchOutcome::HttpError),
            KeyError::Timeout { .. } => Some(FetchOutcome::Timeout),
            KeyError::Connect { .. } => Some(FetchOutcome::ConnectError),
            KeyError::BadBody { .. } | KeyError::BadKey(_) | KeyError::WeakKey { .. } => Some(FetchOutcome::BadKey),
            KeyError::RateLimited { .. } | KeyError::Busy { .. } => None,
        }
    }
}

/// Largest body accepted from a key server or key set URL.
pub(super) const MAX_BODY: usize = 64 * 1024;

const USER_AGENT: &str = concat!("token-sidecar/", env!("CARGO_PKG_VERSION"));

/// Retries whose backoff is below its cap; from the next one on it is 1 s.
const BACKOFF_STEPS: u32 = 5;

/// Pause before the `retry`-th retry (1-based): 100 ms, 200 ms, 400 ms… at most 1 s.
fn backoff(retry: u32) -> Duration {
    let factor = 1u64 << retry.saturating_sub(1).min(4);
    Duration::from_millis((100 * factor).min(1000))
}

/// Why a key source (`asap_key_server`, `cache_keys_url`) cannot be used. `Display` says what is
/// wrong with the URL; callers name the host and option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySourceError {
    /// Not a URL at all.
    #[error("{url:?} is not a URL ({reason})")]
    NotAUrl {
        /// The text given.
        url: String,
        /// What the URL parser said.
        reason: String,
    },
    /// A scheme other than http or https (`file://` included).
    #[error("{scheme}:// URLs are not supported; use http or https")]
    Scheme {
        /// The scheme given.
        scheme: String,
    },
    /// No host name.
    #[error("{url:?} has no host")]
    NoHost {
        /// The URL given.
        url: String,
    },
    /// A `#fragment`, which would never reach the server.
    #[error("{url:?} must not have a #fragment")]
    Fragment {
        /// The URL given.
        url: String,
    },
    /// A `?query` on a key server base URL, which the key file name is appended to.
    #[error("{url:?} must not have a ?query (the key file name is appended to it)")]
    Query {
        /// The URL given.
        url: String,
    },
    /// The HTTP client could not be built (a broken TLS set-up, say).
    #[error("could not build the HTTP client for {url}: {detail}")]
    Client {
        /// The URL given.
        url: String,
        /// The client library's error chain.
        detail: String,
    },
}

/// Checks that `url` is an http(s) URL keys can be fetched from: the one place URLs of key
/// sources are validated (the config loader calls it too).
pub fn parse_http_url(url: &str) -> Result<Url, KeySourceError> {
    let trimmed = url.trim();
    let parsed = Url::parse(trimmed).map_err(|e| KeySourceError::NotAUrl {
        url: trimmed.to_owned(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => {
            return Err(KeySourceError::Scheme {
                scheme: other.to_owned(),
            });
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(KeySourceError::NoHost {
            url: trimmed.to_owned(),
        });
    }
    if parsed.fragment().is_some() {
        return Err(KeySourceError::Fragment {
            url: trimmed.to_owned(),
        });
    }
    Ok(parsed)
}

/// Whether requests to `url` stay on this machine (and so must not go through a proxy).
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The HTTP client for one key source: timeouts from `settings`, no redirects, our User-Agent,
/// the system proxy unless the URL is on loopback.
pub(super) fn build_client(url: &Url, settings: &FetchSettings) -> Result<Client, KeySourceError> {
    let mut builder = Client::builder()
        .user_agent(USER_AGENT)
        .redirect(redirect::Policy::none())
        .connect_timeout(settings.timeout)
        .read_timeout(settings.timeout)
        .timeout(settings.timeout)
        .pool_idle_timeout(Duration::from_secs(60));
    if is_loopback(url) {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| KeySourceError::Client {
        url: url.to_string(),
        detail: cause_chain(&e),
    })
}

/// A successful answer.
#[derive(Debug)]
pub(super) struct Fetched {
    pub body: Vec<u8>,
    /// How long the answer may be used, from `Cache-Control: max-age` minus `Age`.
    pub max_age: Option<Duration>,
}

/// GETs `url`, retrying after a timeout, connection error or 5xx up to `settings.retries`
/// times. Only a 200 with a non-empty body of at most [`MAX_BODY`] bytes is a success.
pub(super) async fn fetch(
    client: &Client,
    url: &str,
    settings: &FetchSettings,
    counters: &Counters,
) -> Result<Fetched, KeyError> {
    let mut tries = 0u32;
    loop {
        if tries > 0 {
            tokio::time::sleep(backoff(tries)).await;
        }
        tries += 1;
        counters.http_requests.fetch_add(1, Ordering::Relaxed);
        let outcome = match tokio::time::timeout(settings.timeout, fetch_once(client, url)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::Timeout),
        };
        let error = match outcome {
            Ok(fetched) => return Ok(fetched),
            Err(failure) => failure.into_error(url, settings.timeout, tries),
        };
        if error.is_transient() && tries <= settings.retries {
            tracing::debug!(%url, try_number = tries, %error, "key fetch failed; retrying");
            continue;
        }
        return Err(error);
    }
}

/// Why one try failed, before it becomes a [`KeyError`].
enum Failure {
    Timeout,
    Connect(String),
    Status(u16),
    BadBody(String),
}

impl Failure {
    fn into_error(self, url: &str, timeout: Duration, tries: u32) -> KeyError {
        let url = url.to_string();
        match self {
            Failure::Timeout => KeyError::Timeout {
                url,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                tries,
            },
            Failure::Connect(detail) => KeyError::Connect { url, detail },
            Failure::Status(status) => KeyError::Status { url, status },
            Failure::BadBody(detail) => KeyError::BadBody { url, detail },
        }
    }

    fn from_reqwest(error: &reqwest::Error) -> Failure {
        if error.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Connect(cause_chain(error))
        }
    }
}

async fn fetch_once(client: &Client, url: &str) -> Result<Fetched, Failure> {
    let mut response = client.get(url).send().await.map_err(|e| Failure::from_reqwest(&e))?;
    if response.status() == StatusCode::NO_CONTENT {
        return Err(Failure::BadBody("HTTP 204: the answer has no body".to_string()));
    }
    if response.status() != StatusCode::OK {
        return Err(Failure::Status(response.status().as_u16()));
    }
    if response.content_length().is_some_and(|len| len > MAX_BODY as u64) {
        return Err(Failure::BadBody(format!("body larger than {} KiB", MAX_BODY / 1024)));
    }
    let max_age = freshness(response.headers());
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| Failure::from_reqwest(&e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Failure::BadBody(format!("body larger than {} KiB", MAX_BODY / 1024)));
        }
        body.extend_from_slice(&chunk);
    }
    if body.is_empty() {
        return Err(Failure::BadBody("empty body".to_string()));
    }
    Ok(Fetched { body, max_age })
}

/// `Cache-Control: max-age` minus `Age`, if the server said how long its answer is good for.
/// `no-cache` and `no-store` count as 0.
fn freshness(headers: &header::HeaderMap) -> Option<Duration> {
    let mut max_age: Option<u64> = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let (name, arg) = match directive.split_once('=') {
                Some((name, arg)) => (name.trim(), Some(arg.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
                max_age = Some(0);
            } else if name.eq_ignore_ascii_case("max-age")
                && let Some(secs) = arg.and_then(parse_seconds)
            {
                max_age = Some(max_age.map_or(secs, |m| m.min(secs)));
            }
        }
    }
    let age = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_seconds(v.trim()))
        .unwrap_or(0);
    max_age.map(|secs| Duration::from_secs(secs.saturating_sub(age)))
}

/// Delta-seconds (RFC 9111 1.2.2): digits only; too large saturates.
fn parse_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// The counters behind [`KeySourceStats`], and the observer told of the same events.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub http_requests: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    negative_hits: AtomicU64,
    rate_limited: AtomicU64,
    busy: AtomicU64,
    stale_served: AtomicU64,
    observer: Option<(SourceKind, Arc<dyn KeyObserver>)>,
}

impl Counters {
    /// Counters whose events `observer` also hears of, as those of a `source`.
    pub fn observed(source: SourceKind, observer: Option<Arc<dyn KeyObserver>>) -> Counters {
        Counters {
            observer: observer.map(|o| (source, o)),
            ..Counters::default()
        }
    }

    /// Counts what a lookup did.
    pub fn count(&self, event: LookupEvent) {
        let counter = match event {
            LookupEvent::Hit => &self.hits,
            LookupEvent::Miss => &self.misses,
            LookupEvent::NegativeHit => &self.negative_hits,
            LookupEvent::RateLimited => &self.rate_limited,
            LookupEvent::Busy => &self.busy,
            LookupEvent::StaleServed => &self.stale_served,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some((source, observer)) = &self.observer {
            observer.counted(*source, event);
        }
    }

    /// Tells the observer how a fetch begun at `started` ended.
    pub fn fetched<T>(&self, result: &Result<T, KeyError>, started: Instant) {
        let Some((source, observer)) = &self.observer else {
            return;
        };
        let outcome = match result {
            Ok(_) => Some(FetchOutcome::Ok),
            Err(error) => error.fetch_outcome(),
        };
        if let Some(outcome) = outcome {
            observer.fetched(*source, outcome, started.elapsed());
        }
    }

    pub fn snapshot(&self) -> KeySourceStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        KeySourceStats {
            http_requests: get(&self.http_requests),
            hits: get(&self.hits),
            misses: get(&self.misses),
            negative_hits: get(&self.negative_hits),
            rate_limited: get(&self.rate_limited),
            busy: get(&self.busy),
            stale_served: get(&self.stale_served),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(parse_http_url("https://keys.example.com/asap").is_ok());
        assert!(parse_http_url(" http://127.0.0.1:8080/ ").is_ok());
        let file = parse_http_url("file:///etc/keys").expect_err("file");
        assert_eq!(file, KeySourceError::Scheme { scheme: "file".into() });
        assert_eq!(file.to_string(), "file:// URLs are not supported; use http or https");
        assert!(matches!(parse_http_url(""), Err(KeySourceError::NotAUrl { .. })));
        assert!(matches!(
            parse_http_url("keys.example.com"),
            Err(KeySourceError::NotAUrl { .. })
        ));
        assert!(matches!(
            parse_http_url("https://k.example/#frag"),
            Err(KeySourceError::Fragment { .. })
        ));
    }

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://127.0.0.1:1/",
            "http://127.8.9.10/",
            "http://[::1]:80/",
            "http://localhost/",
            "http://LOCALHOST./x",
            "http://a.localhost/",
        ] {
            assert!(is_loopback(&Url::parse(url).expect("url")), "{url}");
        }
        for url in ["http://10.0.0.1/", "https://keys.example.com/", "http://[::2]/"] {
            assert!(!is_loopback(&Url::parse(url).expect("url")), "{url}");
        }
    }

    #[test]
    fn cache_control_max_age() {
        let parse = |values: &[&str], age: Option<&str>| {
            let mut headers = header::HeaderMap::new();
            for v in values {
                headers.append(header::CACHE_CONTROL, v.parse().expect("header"));
            }
            if let Some(age) = age {
                headers.insert(header::AGE, age.parse().expect("header"));
            }
            freshness(&headers)
        };
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(parse(&[], None), None);
        assert_eq!(parse(&["public, max-age=19845, must-revalidate"], None), secs(19845));
        assert_eq!(parse(&["Max-Age = \"60\""], None), secs(60));
        assert_eq!(parse(&["max-age=600"], Some("100")), secs(500));
        assert_eq!(parse(&["max-age=60"], Some("100")), secs(0));
        assert_eq!(parse(&["no-cache"], None), secs(0));
        assert_eq!(parse(&["s-maxage=5, max-age=abc"], None), None);
        assert_eq!(parse(&["max-age=-5"], None), None);
        assert_eq!(parse(&["max-age=99999999999999999999999"], None), secs(u64::MAX));
        assert_eq!(parse(&["max-age=100", "max-age=50"], None), secs(50));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(400));
        assert_eq!(backoff(30), Duration::from_secs(1));
        assert_eq!(backoff(BACKOFF_STEPS + 1), Duration::from_secs(1));
    }

    #[test]
    fn longest_fetch_counts_every_try_and_backoff() {
        let settings = |timeout_ms, retries| FetchSettings {
            ttl: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            negative_ttl: Duration::ZERO,
            timeout: Duration::from_millis(timeout_ms),
            retries,
            cache_size: 1,
            unknown_kid_rate: 0,
        };
        let ms = |ms| Duration::from_millis(ms);
        assert_eq!(settings(3000, 0).longest_fetch(), ms(3000));
        assert_eq!(settings(3000, 2).longest_fetch(), ms(9000 + 100 + 200));
        // 11 tries of 0.5 s; backoffs 0.1, 0.2, 0.4, 0.8, then 1 s each.
        assert_eq!(settings(500, 10).longest_fetch(), ms(5500 + 1500 + 6000));
        let loop_sum: Duration = (1..=10).map(backoff).sum();
        assert_eq!(settings(0, 10).longest_fetch(), loop_sum);
        // A count no option allows still gives an answer, at once.
        assert!(settings(1, u32::MAX).longest_fetch() > Duration::from_secs(u64::from(u32::MAX)));
    }

    #[test]
    fn kids_are_shown_short_in_errors() {
        let error = KeyError::RateLimited { kid: "x".repeat(500) };
        assert_eq!(
            error.to_string(),
            format!(
                "too many fetches for unknown kids (asap_key_fetch_rate); kid \"{}\"… not fetched",
                "x".repeat(16)
            )
        );
        assert!(error.is_budget() && !error.is_transient());
        assert!(KeyError::Busy { limit: 1 }.is_budget());
    }

    #[test]
    fn errors_map_to_fetch_outcomes() {
        let status = |status| KeyError::Status {
            url: "u".into(),
            status,
        };
        assert_eq!(status(404).fetch_outcome(), Some(FetchOutcome::NotFound));
        assert_eq!(status(410).fetch_outcome(), Some(FetchOutcome::NotFound));
        assert_eq!(status(302).fetch_outcome(), Some(FetchOutcome::HttpError));
        assert_eq!(status(503).fetch_outcome(), Some(FetchOutcome::HttpError));
        assert_eq!(
            KeyError::WeakKey { bits: 1024 }.fetch_outcome(),
            Some(FetchOutcome::BadKey)
        );
        assert_eq!(KeyError::Busy { limit: 1 }.fetch_outcome(), None);
    }
}
