//! What key sources tell an observer (the daemon's metrics, docs/METRICS.md): how each fetch
//! ended and how long it took, and what each lookup counted. Only fixed names: never a kid, a URL
//! or a host. Nothing here knows about Prometheus.

use std::fmt;
use std::time::Duration;

/// Which kind of key source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `asap_key_server`: one PEM per kid.
    KeyServer,
    /// `cache_keys_url`: a key set.
    KeySet,
}

impl SourceKind {
    /// Every kind, in the order of [`SourceKind::index`].
    pub const ALL: [SourceKind; 2] = [SourceKind::KeyServer, SourceKind::KeySet];

    /// `key_server` or `key_set`.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::KeyServer => "key_server",
            SourceKind::KeySet => "key_set",
        }
    }

    /// Its place in [`SourceKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How one fetch ended: its last try, after any retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// A usable key (or key set).
    Ok,
    /// HTTP 404 or 410.
    NotFound,
    /// Another HTTP status than 200, 404 and 410 (a 3xx included: redirects are not followed).
    HttpError,
    /// No answer in time.
    Timeout,
    /// No connection.
    ConnectError,
    /// An answer that is not a usable key or key set (a bad body, a weak key).
    BadKey,
}

impl FetchOutcome {
    /// Every outcome, in the order of [`FetchOutcome::index`].
    pub const ALL: [FetchOutcome; 6] = [
        FetchOutcome::Ok,
        FetchOutcome::NotFound,
        FetchOutcome::HttpError,
        FetchOutcome::Timeout,
        FetchOutcome::ConnectError,
        FetchOutcome::BadKey,
    ];

    /// The label value: `ok`, `not_found`, `http_error`, `timeout`, `connect_error`, `bad_key`.
    pub fn name(self) -> &'static str {
        match self {
            FetchOutcome::Ok => "ok",
            FetchOutcome::NotFound => "not_found",
            FetchOutcome::HttpError => "http_error",
            FetchOutcome::Timeout => "timeout",
            FetchOutcome::ConnectError => "connect_error",
            FetchOutcome::BadKey => "bad_key",
        }
    }

    /// Its place in [`FetchOutcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a lookup counted, as the source's own counters ([`super::KeySourceStats`]) count it: a
/// lookup may count two (a stale key served is also a hit; for a key set, a refresh refused by the
/// unknown-kid interval is also a negative hit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupEvent {
    /// Answered from the cache (fresh or stale).
    Hit,
    /// Needed a fetch.
    Miss,
    /// Answered from the negative cache (a recent failure, a kid the set lacks).
    NegativeHit,
    /// Refused a fetch by the unknown-kid rate (`asap_key_fetch_rate`, or the key set's interval).
    RateLimited,
    /// Refused a fetch because the host's fetches under way were at their limit.
    Busy,
    /// A key past its TTL (or a set past its refresh time) served.
    StaleServed,
}

impl LookupEvent {
    /// Every event, in the order of [`LookupEvent::index`].
    pub const ALL: [LookupEvent; 6] = [
        LookupEvent::Hit,
        LookupEvent::Miss,
        LookupEvent::NegativeHit,
        LookupEvent::RateLimited,
        LookupEvent::Busy,
        LookupEvent::StaleServed,
    ];

    /// The label value: `hit`, `miss`, `negative_hit`, `rate_limited`, `busy`, `stale_served`.
    pub fn name(self) -> &'static str {
        match self {
            LookupEvent::Hit => "hit",
            LookupEvent::Miss => "miss",
            LookupEvent::NegativeHit => "negative_hit",
            LookupEvent::RateLimited => "rate_limited",
            LookupEvent::Busy => "busy",
            LookupEvent::StaleServed => "stale_served",
        }
    }

    /// Its place in [`LookupEvent::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Told of what key sources do. Called on the lookup's own task: keep it to a counter.
pub trait KeyObserver: fmt::Debug + Send + Sync {
    /// A fetch from a `source` ended with `outcome`, `took` after it began (tries and backoff
    /// included: what a login waiting for it waited).
    fn fetched(&self, source: SourceKind, outcome: FetchOutcome, took: Duration);

    /// A lookup in a `source` counted `event`.
    fn counted(&self, source: SourceKind, event: LookupEvent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_all() {
        for (n, kind) in SourceKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), n);
        }
        for (n, outcome) in FetchOutcome::ALL.iter().enumerate() {
            assert_eq!(outcome.index(), n);
        }
        for (n, event) in LookupEvent::ALL.iter().enumerate() {
            assert_eq!(event.index(), n);
        }
    }
}
