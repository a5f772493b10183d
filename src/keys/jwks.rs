//! A pre-fetched key set (`cache_keys_url`): JWKS `{keys:[…]}` or a Firebase-style
//! `{kid: "-----BEGIN CERTIFICATE-----…"}` map.
//!
//! The set is loaded at the first lookup (or by `refresh`), refreshed after the response's
//! `max-age` (at most [`MAX_REFRESH`], so that a key revoked from the set leaves on schedule
//! whatever the server says; in the background; lookups keep using the current set, and a failed
//! refresh keeps it), and reloaded at most once per interval when a token names a kid the set lacks. A key
//! that is gone from a newer set stays usable for a grace period, so tokens signed just before a
//! rotation still verify. One unusable key is skipped, never the whole set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use reqwest::Client;

use super::fetch::{self, Counters, FetchSettings, KeyError, KeySourceError, KeySourceStats};
use super::kid::ShortKid;
use super::material::VerifyingKey;
use super::observe::{KeyObserver, LookupEvent, SourceKind};
use super::wait::KeyWait;

/// The longest a set is used before it is fetched again, whatever its `max-age` says: a day, so a
/// key the publisher removed (revoked) stops verifying at most a day (plus the grace period) later.
/// Google's certificate endpoints say about 6 hours; a year-long `max-age` is a misconfiguration.
pub const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// What a key set says about a kid.
#[derive(Clone)]
pub enum KeySetAnswer {
    /// The kid's key.
    Found(Arc<VerifyingKey>),
    /// The set does not have the kid (it was loaded or refreshed for this lookup, or the set is
    /// fresh and lacks it).
    Missing,
    /// The set lacks the kid and may not be refreshed for it yet (one refresh per
    /// `unknown_kid_interval`): asked again later, it may have it.
    RefreshLimited,
}

impl KeySetAnswer {
    /// The key, if found.
    pub fn key(self) -> Option<Arc<VerifyingKey>> {
        match self {
            KeySetAnswer::Found(key) => Some(key),
            KeySetAnswer::Missing | KeySetAnswer::RefreshLimited => None,
        }
    }
}

/// The intervals a key set keeps. The defaults follow the Lua plugin; tests shorten them.
#[derive(Debug, Clone, PartialEq)]
pub struct JwksTiming {
    /// How long a key missing from a newer set is still used (90 minutes).
    pub grace: Duration,
    /// The shortest time between refreshes driven by `max-age` (60 s).
    pub min_refresh: Duration,
    /// How often an unknown kid may trigger a refresh (30 s).
    pub unknown_kid_interval: Duration,
    /// Refresh interval when the response has no `Cache-Control: max-age` (6 hours).
    pub default_max_age: Duration,
    /// Wait after a failed refresh before the next try (30 s).
    pub retry_after_failure: Duration,
}

impl Default for JwksTiming {
    fn default() -> Self {
        JwksTiming {
            grace: Duration::from_secs(90 * 60),
            min_refresh: Duration::from_secs(60),
            unknown_kid_interval: Duration::from_secs(30),
            default_max_age: Duration::from_secs(6 * 3600),
            retry_after_failure: Duration::from_secs(30),
        }
    }
}

/// A key set fetched from `cache_keys_url` (JWKS or a Firebase-style certificate map), refreshed
/// by its `Cache-Control` and looked up by `kid`.
pub struct JwksSource {
    url: String,
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    client: Client,
    settings: FetchSettings,
    timing: JwksTiming,
    /// The current set; `None` until one has loaded.
    set: RwLock<Option<Arc<KeySet>>>,
    /// When the set should next be refreshed.
    refresh_at: Mutex<Option<Instant>>,
    /// Held while fetching, so that one fetch runs at a time.
    fetching: tokio::sync::Mutex<FetchState>,
    /// Counts finished fetches, so a caller that waited for `fetching` can tell whether
    /// someone else fetched meanwhile.
    generation: AtomicU64,
    /// A background refresh is running.
    refreshing: AtomicBool,
    counters: Counters,
}

#[derive(Default)]
struct FetchState {
    /// The last failure while no set had loaded, and when it happened.
    last_error: Option<(KeyError, Instant)>,
    /// When an unknown kid last triggered a refresh.
    last_unknown_refresh: Option<Instant>,
}

struct KeySet {
    keys: HashMap<String, Slot>,
}

struct Slot {
    key: Arc<VerifyingKey>,
    /// When a newer set stopped listing this kid.
    gone_since: Option<Instant>,
}

impl KeySet {
    fn get(&self, kid: &str, now: Instant, grace: Duration) -> Option<Arc<VerifyingKey>> {
        let slot = self.keys.get(kid)?;
        match slot.gone_since {
            Some(gone) if now.saturating_duration_since(gone) >= grace => None,
            _ => Some(Arc::clone(&slot.key)),
        }
    }

    fn live_count(&self) -> usize {
        self.keys.values().filter(|s| s.gone_since.is_none()).count()
    }
}

impl JwksSource {
    /// `url` must be an http or https URL. Nothing is fetched until the first lookup or `refresh`.
    pub fn new(url: &str, settings: FetchSettings) -> Result<Self, KeySourceError> {
        Self::with_timing(url, settings, JwksTiming::default())
    }

    /// Like [`JwksSource::new`], with other intervals (tests shorten them).
    pub fn with_timing(url: &str, settings: FetchSettings, timing: JwksTiming) -> Result<Self, KeySourceError> {
        Self::build(url, settings, timing, None)
    }

    /// As [`JwksSource::new`], telling `observer` of every fetch and lookup.
    pub fn observed(
        url: &str,
        settings: FetchSettings,
        observer: Option<Arc<dyn KeyObserver>>,
    ) -> Result<Self, KeySourceError> {
        Self::build(url, settings, JwksTiming::default(), observer)
    }

    fn build(
        url: &str,
        settings: FetchSettings,
        timing: JwksTiming,
        observer: Option<Arc<dyn KeyObserver>>,
    ) -> Result<Self, KeySourceError> {
        let parsed = fetch::parse_http_url(url)?;
        let client = fetch::build_client(&parsed, &settings)?;
        let url = url.trim().to_string();
        Ok(JwksSource {
            url: url.clone(),
            inner: Arc::new(Inner {
                url,
                client,
                settings,
                timing,
                set: RwLock::new(None),
                refresh_at: Mutex::new(None),
                fetching: tokio::sync::Mutex::new(FetchState::default()),
                generation: AtomicU64::new(0),
                refreshing: AtomicBool::new(false),
                counters: Counters::observed(SourceKind::KeySet, observer),
            }),
        })
    }

    /// The URL the set is fetched from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `Ok(Some(key))` when `kid` is in the set; `Ok(None)` when it is not, even after the one
    /// rate-limited refresh an unknown kid may trigger; `Err` when no set could ever be loaded.
    pub async fn key(&self, kid: &str) -> Result<Option<Arc<VerifyingKey>>, KeyError> {
        Ok(self.lookup(kid, &mut KeyWait::unlimited()).await?.key())
    }

    /// As [`JwksSource::key`], saying whether a missing kid was refused a refresh, and taking a
    /// place in `wait`'s budget before waiting for a fetch (a first load, a refresh for an
    /// unknown kid, or one already running): [`KeyError::Busy`] when the budget is spent.
    pub async fn lookup(&self, kid: &str, wait: &mut KeyWait<'_>) -> Result<KeySetAnswer, KeyError> {
        let inner = &self.inner;
        let now = Instant::now();
        let Some(set) = inner.current() else {
            return self.first_load(kid, wait).await;
        };
        let due = inner.refresh_due(now);
        if due {
            self.spawn_refresh();
        }
        if let Some(key) = set.get(kid, now, inner.timing.grace) {
            inner.counters.count(LookupEvent::Hit);
            if due {
                inner.counters.count(LookupEvent::StaleServed);
            }
            return Ok(KeySetAnswer::Found(key));
        }
        self.unknown_kid(kid, now, wait).await
    }

    /// Fetches the set now; returns how many keys it holds.
    pub async fn refresh(&self) -> Result<usize, KeyError> {
        let mut state = self.inner.fetching.lock().await;
        self.inner.load(&mut state).await
    }

    /// Counters. For a key set: `misses` are lookups that fetched (first load or an unknown
    /// kid's refresh); `negative_hits` are `Ok(None)` answers given without fetching, or
    /// errors repeated while no set has loaded; `rate_limited` are unknown kids that could not
    /// refresh because the last such refresh was too recent; `stale_served` are keys served
    /// from a set past its refresh time.
    pub fn stats(&self) -> KeySourceStats {
        self.inner.counters.snapshot()
    }

    /// A place in `wait`'s budget before fetching. A lookup that waits for a fetch another one
    /// started (it waits for `fetching`) takes none: the set is fetched once for all of them.
    fn enter(&self, wait: &mut KeyWait<'_>) -> Result<(), KeyError> {
        wait.enter()
            .inspect_err(|_| self.inner.counters.count(LookupEvent::Busy))
    }

    /// No set yet: load one (one fetch for all waiting callers), unless the last try failed
    /// less than `negative_ttl` ago.
    async fn first_load(&self, kid: &str, wait: &mut KeyWait<'_>) -> Result<KeySetAnswer, KeyError> {
        let inner = &self.inner;
        let mut state = inner.fetching.lock().await;
        if inner.current().is_none() {
            if let Some((error, at)) = &state.last_error
                && at.elapsed() < inner.settings.negative_ttl
            {
                inner.counters.count(LookupEvent::NegativeHit);
                return Err(error.clone());
            }
            self.enter(wait)?;
            inner.counters.count(LookupEvent::Miss);
            inner.load(&mut state).await?;
            drop(state);
            return Ok(found_or_missing(
                inner
                    .current()
                    .and_then(|set| set.get(kid, Instant::now(), inner.timing.grace)),
            ));
        }
        // Someone else loaded the set while we waited.
        drop(state);
        let found = inner
            .current()
            .and_then(|set| set.get(kid, Instant::now(), inner.timing.grace));
        Ok(self.count_lookup(found))
    }

    /// `kid` is not in the set: refresh once if the unknown-kid interval allows, then look again.
    async fn unknown_kid(&self, kid: &str, now: Instant, wait: &mut KeyWait<'_>) -> Result<KeySetAnswer, KeyError> {
        let inner = &self.inner;
        let seen = inner.generation.load(Ordering::Acquire);
        let mut state = inner.fetching.lock().await;
        if inner.generation.load(Ordering::Acquire) != seen {
            // Someone fetched while we waited: their set is as new as ours would be.
            drop(state);
            let found = inner
                .current()
                .and_then(|set| set.get(kid, Instant::now(), inner.timing.grace));
            return Ok(self.count_lookup(found));
        }
        let allowed = state
            .last_unknown_refresh
            .is_none_or(|last| now.saturating_duration_since(last) >= inner.timing.unknown_kid_interval);
        if !allowed {
            inner.counters.count(LookupEvent::RateLimited);
            inner.counters.count(LookupEvent::NegativeHit);
            return Ok(KeySetAnswer::RefreshLimited);
        }
        self.enter(wait)?;
        state.last_unknown_refresh = Some(now);
        inner.counters.count(LookupEvent::Miss);
        tracing::debug!(kid = %ShortKid(kid), url = %inner.url, "unknown kid; refreshing the key set");
        // A failed refresh keeps the old set (and is logged by `load`).
        let _ = inner.load(&mut state).await;
        drop(state);
        let found = inner
            .current()
            .and_then(|set| set.get(kid, Instant::now(), inner.timing.grace));
        Ok(found_or_missing(found))
    }

    fn count_lookup(&self, found: Option<Arc<VerifyingKey>>) -> KeySetAnswer {
        if found.is_some() {
            self.inner.counters.count(LookupEvent::Hit);
        } else {
            self.inner.counters.count(LookupEvent::NegativeHit);
        }
        found_or_missing(found)
    }

    /// Starts one background refresh unless one is running. Without a tokio runtime the set
    /// is refreshed by the next lookup that finds it due and has one.
    fn spawn_refresh(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self
            .inner
            .refreshing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let inner = Arc::clone(&self.inner);
        runtime.spawn(async move {
            let _running = RefreshingFlag(Arc::clone(&inner));
            let mut state = inner.fetching.lock().await;
            if inner.refresh_due(Instant::now()) {
                let _ = inner.load(&mut state).await;
            }
        });
    }
}

fn found_or_missing(found: Option<Arc<VerifyingKey>>) -> KeySetAnswer {
    found.map_or(KeySetAnswer::Missing, KeySetAnswer::Found)
}

/// How long a freshly loaded set is used: its `max-age` (or the default without one), no less than
/// `min_refresh` and no more than [`MAX_REFRESH`].
fn refresh_interval(max_age: Option<Duration>, timing: &JwksTiming) -> Duration {
    max_age
        .unwrap_or(timing.default_max_age)
        .min(MAX_REFRESH)
        .max(timing.min_refresh)
}

/// Clears `refreshing` when the background refresh ends, however it ends.
struct RefreshingFlag(Arc<Inner>);

impl Drop for RefreshingFlag {
    fn drop(&mut self) {
        self.0.refreshing.store(false, Ordering::Release);
    }
}

impl Inner {
    fn current(&self) -> Option<Arc<KeySet>> {
        self.set.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn refresh_due(&self, now: Instant) -> bool {
        self.refresh_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|at| now >= at)
    }

    fn set_refresh_at(&self, at: Option<Instant>) {
        *self.refresh_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = at;
    }

    /// Fetches and installs a new set. The caller holds `fetching` (passed in as `state`).
    async fn load(&self, state: &mut FetchState) -> Result<usize, KeyError> {
        let started = Instant::now();
        let result = self.fetch_set().await;
        self.counters.fetched(&result, started);
        self.generation.fetch_add(1, Ordering::AcqRel);
        let now = Instant::now();
        match result {
            Ok((keys, max_age)) => {
                let interval = refresh_interval(max_age, &self.timing);
                let set = self.merge(keys, now);
                let count = set.live_count();
                tracing::debug!(url = %self.url, keys = count, refresh_in_s = interval.as_secs(), "loaded key set");
                *self.set.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(set));
                self.set_refresh_at(now.checked_add(interval));
                state.last_error = None;
                Ok(count)
            }
            Err(error) => {
                if self.current().is_some() {
                    tracing::warn!(url = %self.url, %error, "key set refresh failed; keeping the current set");
                    self.set_refresh_at(now.checked_add(self.timing.retry_after_failure));
                } else {
                    tracing::warn!(url = %self.url, %error, "could not load key set");
                    state.last_error = Some((error.clone(), now));
                }
                Err(error)
            }
        }
    }

    /// The new keys, plus keys of the old set still in their grace period.
    fn merge(&self, fresh: HashMap<String, Arc<VerifyingKey>>, now: Instant) -> KeySet {
        let mut keys: HashMap<String, Slot> = fresh
            .into_iter()
            .map(|(kid, key)| (kid, Slot { key, gone_since: None }))
            .collect();
        if let Some(old) = self.current() {
            for (kid, slot) in &old.keys {
                if keys.contains_key(kid) {
                    continue;
                }
                let gone = slot.gone_since.unwrap_or(now);
                if now.saturating_duration_since(gone) < self.timing.grace {
                    tracing::debug!(url = %self.url, kid = %ShortKid(kid), "kid gone from the key set; kept for the grace period");
                    keys.insert(
                        kid.clone(),
                        Slot {
                            key: Arc::clone(&slot.key),
                            gone_since: Some(gone),
                        },
                    );
                }
            }
        }
        KeySet { keys }
    }

    async fn fetch_set(&self) -> Result<(HashMap<String, Arc<VerifyingKey>>, Option<Duration>), KeyError> {
        let fetched = fetch::fetch(&self.client, &self.url, &self.settings, &self.counters).await?;
        let keys = parse_key_set(&fetched.body, &self.url).map_err(|detail| KeyError::BadBody {
            url: self.url.clone(),
            detail,
        })?;
        Ok((keys, fetched.max_age))
    }
}

/// The keys of a JWKS document or a Firebase-style `{kid: PEM}` map. Keys without a kid or
/// that cannot be used are skipped (with a warning); the set fails only when it is not one of
/// these shapes, or when it lists keys and none of them can be used.
fn parse_key_set(body: &[u8], url: &str) -> Result<HashMap<String, Arc<VerifyingKey>>, String> {
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let obj = doc
        .as_object()
        .ok_or("expected a JSON object (JWKS or a {kid: certificate} map)")?;
    let mut keys = HashMap::new();
    let mut listed = 0usize;
    let mut add = |kid: &str, parsed: Result<VerifyingKey, KeyError>| match parsed {
        Ok(key) => {
            if keys.contains_key(kid) {
                tracing::warn!(url, kid = %ShortKid(kid), "kid listed twice in key set; using the first");
            } else {
                keys.insert(kid.to_string(), Arc::new(key));
            }
        }
        Err(error) => tracing::warn!(url, kid = %ShortKid(kid), %error, "skipping unusable key in key set"),
    };
    if let Some(list) = obj.get("keys") {
        let list = list.as_array().ok_or("JWKS \"keys\" must be an array")?;
        for jwk in list {
            listed += 1;
            match jwk.get("kid").and_then(|k| k.as_str()) {
                Some(kid) if !kid.is_empty() => add(kid, VerifyingKey::from_jwk(jwk)),
                _ => tracing::warn!(url, "skipping JWK without a kid"),
            }
        }
    } else {
        for (kid, value) in obj {
            listed += 1;
            match value.as_str() {
                Some(pem) => add(kid, VerifyingKey::from_pem(pem.as_bytes())),
                None => {
                    tracing::warn!(url, kid = %ShortKid(kid), "skipping key set entry that is not a PEM string")
                }
            }
        }
    }
    if keys.is_empty() && listed > 0 {
        return Err(format!("none of the {listed} keys listed could be used"));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_capped_at_a_day_and_floored_at_min_refresh() {
        let timing = JwksTiming::default();
        let secs = Duration::from_secs;
        assert_eq!(refresh_interval(Some(secs(19_845)), &timing), secs(19_845));
        assert_eq!(refresh_interval(None, &timing), secs(6 * 3600));
        // A year, or what `Cache-Control: max-age=99999999999` parses to: a day.
        assert_eq!(refresh_interval(Some(secs(365 * 86_400)), &timing), MAX_REFRESH);
        assert_eq!(refresh_interval(Some(Duration::MAX), &timing), secs(86_400));
        assert_eq!(refresh_interval(Some(secs(0)), &timing), secs(60));
        let long_default = JwksTiming {
            default_max_age: secs(7 * 86_400),
            ..JwksTiming::default()
        };
        assert_eq!(refresh_interval(None, &long_default), MAX_REFRESH);
    }
}
