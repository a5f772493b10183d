//! How many lookups may make one host's key sources work at once, and how long a login waits.
//!
//! A lookup answered from the cache never waits and never counts. One that makes a key source
//! work — it fetches a kid that is not cached or past its TTL, loads or refreshes the key set, or
//! waits for the unknown-kid rate to allow its fetch — first takes a place in its host's
//! [`KeyWaitBudget`]; when none is free it is refused at once with a temporary failure
//! ([`KeyError::Busy`]) instead of queueing behind a slow key server. A lookup of a kid another
//! lookup is fetching, or one that waits for a key set fetch already running, joins that fetch
//! without a place: a thousand logins with one new kid make one request and are all answered. So a
//! key server that hangs holds at most [`KEY_WAITS_PER_HOST`] fetches of its host (and the logins
//! joined to them), never the logins of other hosts or those that need no fetch (the daemon does
//! not hold a connection's reading for a request that waits).

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::fetch::KeyError;

/// The most lookups of one host that may fetch, or wait for the unknown-kid rate, at once. A fetch
/// from a key server on the same network takes tens of milliseconds, so 256 at once is thousands
/// of new kids a second, far past `asap_key_fetch_rate`'s default of 10; a key server that hangs
/// holds 256 small tasks (a few KiB each), not the daemon.
pub const KEY_WAITS_PER_HOST: usize = 256;

/// The shim's default `token_sidecar_timeout`: how long Prosody waits for the daemon's answer.
pub const SHIM_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a login of a host the shim registered may wait for keys: the shim's timeout less
/// half a second for the rest of the answer (the signature check, the socket, Prosody's own
/// scheduling, a few milliseconds together). A fetch that may take longer — every try timing out,
/// with the backoff between tries — is a configuration the shim's timeout would cut short, so
/// such a host is refused (`HostProblem::KeyFetchTooLong`).
pub const KEY_WAIT_LIMIT: Duration = Duration::from_millis(9_500);

/// The longest a lookup waits for the unknown-kid budget (`asap_key_fetch_rate`, at least 1 a
/// second) to allow its fetch: long enough for the next token of any rate when nobody else is
/// waiting, so that a burst of new kids is spread out instead of refused.
pub const UNKNOWN_KID_WAIT: Duration = Duration::from_secs(1);

/// One host's budget of lookups making its key sources work.
#[derive(Debug)]
pub struct KeyWaitBudget {
    places: Semaphore,
    limit: usize,
}

impl KeyWaitBudget {
    /// A budget of `limit` waiting lookups.
    pub fn new(limit: usize) -> Self {
        KeyWaitBudget {
            places: Semaphore::new(limit),
            limit,
        }
    }

    /// The most lookups that may wait at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Lookups holding a place now.
    pub fn waiting(&self) -> usize {
        self.limit.saturating_sub(self.places.available_permits())
    }

    /// A lookup under this budget; it takes a place only if it makes a key source work.
    pub fn lookup(&self) -> KeyWait<'_> {
        KeyWait {
            budget: Some(self),
            place: None,
        }
    }
}

/// One lookup's standing in its host's budget: whether it holds a place. The place is given back
/// when this is dropped (the lookup ended, or was given up).
#[derive(Debug)]
pub struct KeyWait<'a> {
    budget: Option<&'a KeyWaitBudget>,
    place: Option<SemaphorePermit<'a>>,
}

impl KeyWait<'static> {
    /// A lookup under no budget (the key sources' own `key` methods, tests and tools).
    pub fn unlimited() -> Self {
        KeyWait {
            budget: None,
            place: None,
        }
    }
}

impl KeyWait<'_> {
    /// Takes a place before fetching; once taken it is kept until the lookup ends.
    /// `Err(KeyError::Busy)` when every place is taken: the caller answers without waiting.
    pub fn enter(&mut self) -> Result<(), KeyError> {
        let Some(budget) = self.budget else {
            return Ok(());
        };
        if self.place.is_none() {
            let place = budget
                .places
                .try_acquire()
                .map_err(|_| KeyError::Busy { limit: budget.limit })?;
            self.place = Some(place);
        }
        Ok(())
    }

    /// Whether this lookup holds a place (it fetched, or is fetching).
    pub fn is_waiting(&self) -> bool {
        self.place.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_taken_once_and_given_back() {
        let budget = KeyWaitBudget::new(2);
        let mut first = budget.lookup();
        assert!(!first.is_waiting());
        first.enter().expect("a place");
        first.enter().expect("the same place");
        assert_eq!(budget.waiting(), 1);
        let mut second = budget.lookup();
        second.enter().expect("a place");
        let mut third = budget.lookup();
        assert_eq!(third.enter(), Err(KeyError::Busy { limit: 2 }));
        assert!(!third.is_waiting());
        drop(first);
        third.enter().expect("a place given back");
        assert_eq!(budget.waiting(), 2);
        let mut free = KeyWait::unlimited();
        free.enter().expect("no budget");
        assert!(!free.is_waiting());
    }

    #[test]
    fn the_default_key_fetch_fits_the_limit() {
        let defaults = super::super::FetchSettings {
            ttl: Duration::from_secs(3600),
            stale_if_error: Duration::from_secs(86_400),
            negative_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(3),
            retries: 2,
            cache_size: 128,
            unknown_kid_rate: 10,
        };
        // 3 tries of 3 s and 100 + 200 ms of backoff.
        assert_eq!(defaults.longest_fetch(), Duration::from_millis(9_300));
        assert!(defaults.longest_fetch() <= KEY_WAIT_LIMIT);
        assert!(KEY_WAIT_LIMIT < SHIM_TIMEOUT);
    }
}
