//! The ASAP key server: one PEM public key per kid at `<base>/<sha256hex(kid)>.pem`.
//!
//! Keys are cached for `ttl`, then refetched; while the server fails (timeout, connection error,
//! 5xx) the old key is served for up to `stale_if_error` more. Failures are remembered for
//! `negative_ttl`. Concurrent lookups of one kid share one fetch (moka's per-key
//! `and_compute_with`), and fetches for kids we have never seen are rate-limited: kids come from
//! tokens nobody has verified yet.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::Op;
use reqwest::Client;

use super::fetch::{self, Counters, FetchSettings, KeyError, KeySourceError, KeySourceStats};
use super::material::VerifyingKey;
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
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now.max(self.last);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl KeyServer {
    /// `base_url` must be an http or https URL.
    pub fn new(base_url: &str, settings: FetchSettings) -> Result<Self, KeySourceError> {
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
            counters: Counters::default(),
        })
    }

    /// The URL the key for `kid` is fetched from: base, exactly one `/`, hex SHA-256 of the kid, `.pem`.
    pub fn url_for(&self, kid: &str) -> String {
        format!("{}/{}.pem", self.base, digest::hex(&digest::sha256(kid.as_bytes())))
    }

    /// The key for `kid`: from the cache, or fetched (once, however many callers wait for it).
    pub async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, KeyError> {
        if let Some(entry) = self.cache.get(kid).await
            && let Some(answer) = self.answer_from(&entry, Instant::now())
        {
            return answer;
        }
        self.fetch_through(kid).await
    }

    /// The source's counters.
    pub fn stats(&self) -> KeySourceStats {
        self.counters.snapshot()
    }

    /// The answer `entry` gives without fetching, if it gives one; counts it.
    fn answer_from(&self, entry: &Entry, now: Instant) -> Option<Result<Arc<VerifyingKey>, KeyError>> {
        match entry.freshness(now, &self.settings) {
            Freshness::Fresh(key) => {
                Counters::bump(&self.counters.hits);
                Some(Ok(key))
            }
            Freshness::StaleHeld(key) => {
                Counters::bump(&self.counters.hits);
                Counters::bump(&self.counters.stale_served);
                Some(Ok(key))
            }
            Freshness::Negative(error) => {
                Counters::bump(&self.counters.negative_hits);
                Some(Err(error))
            }
            Freshness::NeedsFetch => None,
        }
    }

    /// Fetches `kid` under the per-kid lock, unless someone else did while we waited for it.
    async fn fetch_through(&self, kid: &str) -> Result<Arc<VerifyingKey>, KeyError> {
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
                if stale.is_none() && !self.take_unknown_kid_budget(now) {
                    Counters::bump(&self.counters.rate_limited);
                    tracing::debug!(kid = ?kid, "unknown-kid fetch budget spent; not fetching");
                    *slot = Some(Err(KeyError::RateLimited { kid: kid.to_string() }));
                    return Op::Nop;
                }
                Counters::bump(&self.counters.misses);
                let (answer, op) = self.refetch(kid, stale).await;
                *slot = Some(answer);
                op
            })
            .await;
        outcome.unwrap_or_else(|| {
            // Unreachable: every branch of the closure fills the slot.
            Err(KeyError::BadKey(format!("internal error looking up kid {kid:?}")))
        })
    }

    fn take_unknown_kid_budget(&self, now: Instant) -> bool {
        let mut bucket = self
            .unknown_kid_budget
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        bucket.take(now)
    }

    /// One fetch of `kid`'s key, and what the cache should hold after it.
    async fn refetch(
        &self,
        kid: &str,
        stale: Option<(Arc<VerifyingKey>, Instant)>,
    ) -> (Result<Arc<VerifyingKey>, KeyError>, Op<Entry>) {
        let url = self.url_for(kid);
        match self.fetch_key(&url).await {
            Ok(key) => {
                tracing::debug!(kid = ?kid, %url, key = ?key, "fetched public key");
                let entry = Entry::Key {
                    key: Arc::clone(&key),
                    fetched: Instant::now(),
                    retry_after: None,
                };
                (Ok(key), Op::Put(entry))
            }
            Err(error) => match stale {
                Some((key, fetched)) if error.is_transient() => {
                    tracing::warn!(kid = ?kid, %url, %error, "key refetch failed; serving the cached key");
                    Counters::bump(&self.counters.stale_served);
                    let entry = Entry::Key {
                        key: Arc::clone(&key),
                        fetched,
                        retry_after: Instant::now().checked_add(self.settings.negative_ttl),
                    };
                    (Ok(key), Op::Put(entry))
                }
                _ => {
                    tracing::warn!(kid = ?kid, %url, %error, "could not fetch public key");
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
    fn zero_rate_is_unlimited() {
        let mut bucket = TokenBucket::new(0);
        let now = Instant::now();
        assert!((0..1000).all(|_| bucket.take(now)));
    }
}
