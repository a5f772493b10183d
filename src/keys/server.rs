//! The ASAP key server: one PEM public key per kid at `<base>/<sha256hex(kid)>.pem`.
//!
//! Keys are cached for `ttl`, then refetched; while the server fails (timeout, connection error,
//! 5xx) the old key is served for up to `stale_if_error` more. Failures are remembered for
//! `negative_ttl`. Concurrent lookups of one kid share one fetch (moka's per-key
//! `and_compute_with`), and fetches for kids we have never seen are rate-limited: kids come from
//! tokens nobody has verified yet. A lookup that finds the rate spent waits a moment for the next
//! token ([`UNKNOWN_KID_WAIT`]) rather than being refused, so a burst of random kids delays a real
//! new kid by a fraction of a second instead of refusing it; a lookup still without one is refused
//! with [`KeyError::RateLimited`], which logins show as a temporary failure.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::Op;
use reqwest::Client;

use super::fetch::{self, Counters, FetchSettings, KeyError, KeySourceError, KeySourceStats};
use super::kid::ShortKid;
use super::material::VerifyingKey;
use super::observe::{KeyObserver, LookupEvent, SourceKind};
use super::wait::{KeyWait, UNKNOWN_KID_WAIT};
use crate::digest;

/// An ASAP key server (`asap_key_server`): the public key for `kid` is fetched from
/// `<base>/<hex sha256(kid)>.pem`, cached with a TTL, stale-if-error and a negative cache.
pub struct KeyServer {
    base: String,
    settings: FetchSettings,
    client: Client,
    cache: Cache<String, Entry>,
    unknown_kid_budget: Mutex<TokenBucket>,
    counters: Counters,
}

/// What the cache holds for a kid.
#[derive(Clone)]
enum Entry {
    Key {
        key: Arc<VerifyingKey>,
        fetched: Instant,
        /// After a failed refetch of a stale key: no new try before this.
        retry_after: Option<Instant>,
    },
    Failed {
        error: KeyError,
        at: Instant,
    },
}

/// What a lookup should do with an entry.
enum Freshness {
    Fresh(Arc<VerifyingKey>),
    /// Past `ttl`, a refetch failed recently: serve the stale key without asking again yet.
    StaleHeld(Arc<VerifyingKey>),
    Negative(KeyError),
    NeedsFetch,
}

impl Entry {
    fn freshness(&self, now: Instant, settings: &FetchSettings) -> Freshness {
        match self {
            Entry::Key {
                key,
                fetched,
                retry_after,
            } => {
                let age = now.saturating_duration_since(*fetched);
                if age < settings.ttl {
                    Freshness::Fresh(Arc::clone(key))
                } else if age < settings.ttl.saturating_add(settings.stale_if_error)
                    && retry_after.is_some_and(|t| now < t)
                {
                    Freshness::StaleHeld(Arc::clone(key))
                } else {
                    Freshness::NeedsFetch
                }
            }
            Entry::Failed { error, at } => {
                if now.saturating_duration_since(*at) < settings.negative_ttl {
                    Freshness::Negative(error.clone())
                } else {
                    Freshness::NeedsFetch
                }
            }
        }
    }

    /// The key this entry may still serve if a refetch fails, with when it was fetched.
    fn stale_key(&self, now: Instant, settings: &FetchSettings) -> Option<(Arc<VerifyingKey>, Instant)> {
        match self {
            Entry::Key { key, fetched, .. }
                if now.saturating_duration_since(*fetched) < settings.ttl.saturating_add(settings.stale_if_error) =>
            {
                Some((Arc::clone(key), *fetched))
            }
            _ => None,
        }
    }

    /// When the cache may forget this entry.
    fn deadline(&self, settings: &FetchSettings) -> Option<Instant> {
        match self {
            Entry::Key { fetched, .. } => fetched.checked_add(settings.ttl.saturating_add(settings.stale_if_error)),
            Entry::Failed { at, .. } => at.checked_add(settings.negative_ttl),
        }
    }
}

/// Per-entry lifetimes for moka: a key lives through its stale window, a failure for
/// `negative_ttl`.
struct EntryExpiry {
    settings: FetchSettings,
}

impl EntryExpiry {
    fn remaining(&self, entry: &Entry, now: Instant) -> Option<Duration> {
        entry
            .deadline(&self.settings)
            .map(|deadline| deadline.saturating_duration_since(now))
    }
}

impl Expiry<String, Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &String, entry: &Entry, created_at: Instant) -> Option<Duration> {
        self.remaining(entry, created_at)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        updated_at: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.remaining(entry, updated_at)
    }
}

/// Fetches for unknown kids: `rate` per second, bursts of `rate`. A rate of 0 means no limit.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        TokenBucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the next token, from `now` (zero when one is there).
    fn until_next(&mut self, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        self.refill(now);
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0) / self.rate).min(MAX_TOKEN_WAIT_S))
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now.max(self.last);
    }
}

/// A bound on [`TokenBucket::until_next`] so that the seconds always make a `Duration` (the
/// slowest rate, 1 a second, never needs more than 1 s).
const MAX_TOKEN_WAIT_S: f64 = 3600.0;

impl KeyServer {
    /// `base_url` must be an http or https URL.
    pub fn new(base_url: &str, settings: FetchSettings) -> Result<Self, KeySourceError> {
        Self::observed(base_url, settings, None)
    }

    /// As [`KeyServer::new`], telling `observer` of every fetch and lookup.
    pub fn observed(
        base_url: &str,
        settings: FetchSettings,
        observer: Option<Arc<dyn KeyObserver>>,
    ) -> Result<Self, KeySourceError> {
        let parsed = fetch::parse_http_url(base_url)?;
        if parsed.query().is_some() {
            return Err(KeySourceError::Query {
                url: base_url.trim().to_owned(),
            });
        }
        let client = fetch::build_client(&parsed, &settings)?;
        let cache = Cache::builder()
            .max_capacity(settings.cache_size)
            .expire_after(EntryExpiry {
                settings: settings.clone(),
            })
            .build();
        Ok(KeyServer {
            base: base_url.trim().trim_end_matches('/').to_string(),
            unknown_kid_budget: Mutex::new(TokenBucket::new(settings.unknown_kid_rate)),
            settings,
            client,
            cache,
            counters: Counters::observed(SourceKind::KeyServer, observer),
        })
    }

    /// The URL the key for `kid` is fetched from: base, exactly one `/`, hex SHA-256 of the kid, `.pem`.
    pub fn url_for(&self, kid: &str) -> String {
        format!("{}/{}.pem", self.base, digest::hex(&digest::sha256(kid.as_bytes())))
    }

    /// The key for `kid`: from the cache, or fetched (once, however many callers wait for it).
    pub async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, KeyError> {
        self.key_within(kid, &mut KeyWait::unlimited()).await
    }

    /// As [`KeyServer::key`], taking a place in `wait`'s budget before fetching (or waiting for
    /// the unknown-kid rate to allow a fetch). A lookup of a kid another lookup is fetching waits
    /// for that fetch without a place. When the budget is spent the lookup does not wait: it
    /// serves a key past its TTL if it has one (as when a refetch fails), else it is refused with
    /// [`KeyError::Busy`].
    pub async fn key_within(&self, kid: &str, wait: &mut KeyWait<'_>) -> Result<Arc<VerifyingKey>, KeyError> {
        if let Some(entry) = self.cache.get(kid).await
            && let Some(answer) = self.answer_from(&entry, Instant::now())
        {
            return answer;
        }
        self.fetch_through(kid, wait).await
    }

    /// The source's counters.
    pub fn stats(&self) -> KeySourceStats {
        self.counters.snapshot()
    }

    /// The answer `entry` gives without fetching, if it gives one; counts it.
    fn answer_from(&self, entry: &Entry, now: Instant) -> Option<Result<Arc<VerifyingKey>, KeyError>> {
        match entry.freshness(now, &self.settings) {
            Freshness::Fresh(key) => {
                self.counters.count(LookupEvent::Hit);
                Some(Ok(key))
            }
            Freshness::StaleHeld(key) => {
                self.counters.count(LookupEvent::Hit);
                self.counters.count(LookupEvent::StaleServed);
                Some(Ok(key))
            }
            Freshness::Negative(error) => {
                self.counters.count(LookupEvent::NegativeHit);
                Some(Err(error))
            }
            Freshness::NeedsFetch => None,
        }
    }

    /// Fetches `kid` under the per-kid lock, unless someone else did while we waited for it.
    async fn fetch_through(&self, kid: &str, wait: &mut KeyWait<'_>) -> Result<Arc<VerifyingKey>, KeyError> {
        let mut outcome: Option<Result<Arc<VerifyingKey>, KeyError>> = None;
        let slot = &mut outcome;
        self.cache
            .entry_by_ref(kid)
            .and_compute_with(|current| async move {
                let now = Instant::now();
                let current = current.map(|e| e.into_value());
                if let Some(answer) = current.as_ref().and_then(|e| self.answer_from(e, now)) {
                    *slot = Some(answer);
                    return Op::Nop;
                }
                let stale = current.and_then(|e| e.stale_key(now, &self.settings));
                if let Err(busy) = wait.enter() {
                    *slot = Some(match stale {
                        Some((key, _)) => {
                            self.counters.count(LookupEvent::Hit);
                            self.counters.count(LookupEvent::StaleServed);
                            tracing::debug!(kid = %ShortKid(kid), "too many key fetches; serving the cached key past its TTL");
                            Ok(key)
                        }
                        None => {
                            self.counters.count(LookupEvent::Busy);
                            Err(busy)
                        }
                    });
                    return Op::Nop;
                }
                if stale.is_none() && !self.unknown_kid_token().await {
                    self.counters.count(LookupEvent::RateLimited);
                    tracing::debug!(kid = %ShortKid(kid), "unknown-kid fetch budget spent; not fetching");
                    *slot = Some(Err(KeyError::RateLimited { kid: kid.to_string() }));
                    return Op::Nop;
                }
                self.counters.count(LookupEvent::Miss);
                let (answer, op) = self.refetch(kid, stale).await;
                *slot = Some(answer);
                op
            })
            .await;
        outcome.unwrap_or_else(|| {
            // Unreachable: every branch of the closure fills the slot.
            Err(KeyError::BadKey(format!(
                "internal error looking up kid {}",
                ShortKid(kid)
            )))
        })
    }

    /// A token of the unknown-kid budget, waiting up to [`UNKNOWN_KID_WAIT`] for one. Waiters are
    /// few (each holds a place in its host's key-wait budget) and wake once per token.
    async fn unknown_kid_token(&self) -> bool {
        let give_up = Instant::now() + UNKNOWN_KID_WAIT;
        loop {
            let now = Instant::now();
            let next = {
                let mut bucket = self
                    .unknown_kid_budget
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if bucket.take(now) {
                    return true;
                }
                bucket.until_next(now)
            };
            if now + next > give_up {
                return false;
            }
            tokio::time::sleep(next).await;
        }
    }

    /// One fetch of `kid`'s key, and what the cache should hold after it.
    async fn refetch(
        &self,
        kid: &str,
        stale: Option<(Arc<VerifyingKey>, Instant)>,
    ) -> (Result<Arc<VerifyingKey>, KeyError>, Op<Entry>) {
        let url = self.url_for(kid);
        let started = Instant::now();
        let fetched = self.fetch_key(&url).await;
        self.counters.fetched(&fetched, started);
        match fetched {
            Ok(key) => {
                tracing::debug!(kid = %ShortKid(kid), %url, key = ?key, "fetched public key");
                let entry = Entry::Key {
                    key: Arc::clone(&key),
                    fetched: Instant::now(),
                    retry_after: None,
                };
                (Ok(key), Op::Put(entry))
            }
            Err(error) => match stale {
                Some((key, fetched)) if error.is_transient() => {
                    tracing::warn!(kid = %ShortKid(kid), %url, %error, "key refetch failed; serving the cached key");
                    self.counters.count(LookupEvent::StaleServed);
                    let entry = Entry::Key {
                        key: Arc::clone(&key),
                        fetched,
                        retry_after: Instant::now().checked_add(self.settings.negative_ttl),
                    };
                    (Ok(key), Op::Put(entry))
                }
                _ => {
                    tracing::warn!(kid = %ShortKid(kid), %url, %error, "could not fetch public key");
                    let entry = Entry::Failed {
                        error: error.clone(),
                        at: Instant::now(),
                    };
                    (Err(error), Op::Put(entry))
                }
            },
        }
    }

    async fn fetch_key(&self, url: &str) -> Result<Arc<VerifyingKey>, KeyError> {
        let fetched = fetch::fetch(&self.client, url, &self.settings, &self.counters).await?;
        VerifyingKey::from_pem(&fetched.body)
            .map(Arc::new)
            .map_err(|e| KeyError::BadBody {
                url: url.to_string(),
                detail: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_refills_at_its_rate() {
        let mut bucket = TokenBucket::new(2);
        let start = bucket.last;
        assert!(bucket.take(start));
        assert!(bucket.take(start));
        assert!(!bucket.take(start));
        assert!(bucket.take(start + Duration::from_millis(500)));
        assert!(!bucket.take(start + Duration::from_millis(500)));
        // Never more than the burst, however long it was idle.
        let later = start + Duration::from_secs(3600);
        assert!(bucket.take(later) && bucket.take(later));
        assert!(!bucket.take(later));
    }

    #[test]
    fn until_next_says_when_a_token_comes() {
        let mut bucket = TokenBucket::new(10);
        let start = bucket.last;
        assert_eq!(bucket.until_next(start), Duration::ZERO);
        while bucket.take(start) {}
        let wait = bucket.until_next(start);
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert_eq!(bucket.until_next(start + Duration::from_millis(100)), Duration::ZERO);
        assert!(bucket.take(start + Duration::from_millis(100)));
        assert_eq!(TokenBucket::new(0).until_next(start), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_spent_budget_waits_for_the_next_token() {
        let server = KeyServer::new(
            "http://127.0.0.1:9/keys",
            FetchSettings {
                ttl: Duration::from_secs(60),
                stale_if_error: Duration::ZERO,
                negative_ttl: Duration::ZERO,
                timeout: Duration::from_millis(100),
                retries: 0,
                cache_size: 16,
                unknown_kid_rate: 5,
            },
        )
        .expect("server");
        let created = server
            .unknown_kid_budget
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .last;
        for _ in 0..5 {
            assert!(server.unknown_kid_token().await);
        }
        // The burst is spent: the sixth is not refused but waits for the next token, which comes
        // 200 ms after the full bucket was made at 5 a second (however slow this machine is).
        assert!(server.unknown_kid_token().await);
        let waited = created.elapsed();
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut bucket = TokenBucket::new(0);
        let now = Instant::now();
        assert!((0..1000).all(|_| bucket.take(now)));
    }
}
