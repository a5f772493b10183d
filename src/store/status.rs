//! The store's state, for `stats`, `/healthz` and `/metrics`: up or down and since when, the last
//! error, errors by operation, and the publish backlog.
//!
//! Requests only update atomics here; the transitions are logged by the revocation refresher's
//! one-second tick ([`StoreStatus::log_transition`]), at most one line per [`LOG_GAP`], so that a
//! store failing for some keys only (a cluster node down) cannot write a line per request.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::clock::unix_now;
use crate::config::StoreKind;

/// What the store was asked to do, for the error counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Publishing joins and leaves.
    Publish,
    /// Re-publishing (refreshing the lease of) everything this shard owns.
    Refresh,
    /// Asking whether someone is present.
    Lookup,
    /// Writing a revocation.
    Revoke,
    /// Reading the revocation list.
    ReadRevocations,
}

impl StoreOp {
    /// Every operation, in the order of its index.
    pub const ALL: [StoreOp; 5] = [
        StoreOp::Publish,
        StoreOp::Refresh,
        StoreOp::Lookup,
        StoreOp::Revoke,
        StoreOp::ReadRevocations,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            StoreOp::Publish => "publish",
            StoreOp::Refresh => "refresh",
            StoreOp::Lookup => "lookup",
            StoreOp::Revoke => "revoke",
            StoreOp::ReadRevocations => "read_revocations",
        }
    }
}

/// Whether the store answered the last time it was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// Not asked yet.
    Unknown = 0,
    /// It answered.
    Up = 1,
    /// It did not.
    Down = 2,
}

impl Reachability {
    fn from_u8(n: u8) -> Reachability {
        match n {
            1 => Reachability::Up,
            2 => Reachability::Down,
            _ => Reachability::Unknown,
        }
    }

    /// The name `stats` shows.
    pub fn name(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Up => "up",
            Reachability::Down => "down",
        }
    }
}

/// The least time between two log lines about the store going down or coming back.
pub const LOG_GAP: Duration = Duration::from_secs(5);

/// The store's state. For `memory` it is always up and counts nothing.
#[derive(Debug)]
pub struct StoreStatus {
    kind: StoreKind,
    shard: Option<String>,
    state: AtomicU8,
    /// When `state` last changed, in seconds since 1970.
    since: AtomicI64,
    last_error: Mutex<Option<String>>,
    errors: [AtomicU64; StoreOp::ALL.len()],
    backlog: AtomicUsize,
    dropped_leaves: AtomicU64,
    /// Revocations made here while the store was away, not yet in it: the publisher does not
    /// re-publish this shard's occupants before they are (so that no other shard sees a revoked
    /// holder present again before it can see the revocation).
    unpublished_revocations: AtomicUsize,
    /// How many times it went down: the publisher re-publishes everything after each.
    outages: AtomicU64,
    /// The state last logged, and when.
    logged: Mutex<(Reachability, Option<Instant>)>,
}

impl Default for StoreStatus {
    fn default() -> Self {
        StoreStatus::memory()
    }
}

impl StoreStatus {
    /// The status of the in-memory store: up, nothing shared.
    pub fn memory() -> StoreStatus {
        let status = StoreStatus::shared(StoreKind::Memory, None);
        status.state.store(Reachability::Up as u8, Ordering::Relaxed);
        status
    }

    /// The status of a shared store of `kind`, seen from `shard`, not asked yet.
    pub fn shared(kind: StoreKind, shard: Option<String>) -> StoreStatus {
        StoreStatus {
            kind,
            shard,
            state: AtomicU8::new(Reachability::Unknown as u8),
            since: AtomicI64::new(unix_now()),
            last_error: Mutex::new(None),
            errors: Default::default(),
            backlog: AtomicUsize::new(0),
            dropped_leaves: AtomicU64::new(0),
            unpublished_revocations: AtomicUsize::new(0),
            outages: AtomicU64::new(0),
            logged: Mutex::new((Reachability::Unknown, None)),
        }
    }

    /// The kind of store.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// This daemon's shard name in the store (none for `memory`).
    pub fn shard(&self) -> Option<&str> {
        self.shard.as_deref()
    }

    /// Whether the store answered the last time.
    pub fn reachability(&self) -> Reachability {
        Reachability::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Whether it is up (1 for the gauge).
    pub fn is_up(&self) -> bool {
        self.reachability() == Reachability::Up
    }

    /// Since when it has been in its state, in seconds since 1970.
    pub fn since(&self) -> i64 {
        self.since.load(Ordering::Relaxed)
    }

    /// The last error (never a secret: the store's and the client's texts hold no password).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Errors of `op` so far.
    pub fn errors(&self, op: StoreOp) -> u64 {
        self.errors[op as usize].load(Ordering::Relaxed)
    }

    /// Keys waiting to be published.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Leaves that could not be queued while the store was away (the queue was full): their keys
    /// expire with the lease instead.
    pub fn dropped_leaves(&self) -> u64 {
        self.dropped_leaves.load(Ordering::Relaxed)
    }

    /// Revocations made here while the store was away and not yet in it.
    pub fn unpublished_revocations(&self) -> usize {
        self.unpublished_revocations.load(Ordering::Relaxed)
    }

    pub(super) fn set_unpublished_revocations(&self, n: usize) {
        self.unpublished_revocations.store(n, Ordering::Relaxed);
    }

    pub(super) fn set_backlog(&self, n: usize) {
        self.backlog.store(n, Ordering::Relaxed);
    }

    pub(super) fn dropped_leave(&self) {
        self.dropped_leaves.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times the store went down so far (whoever saw it: a lookup, the revocation
    /// refresher, the publisher).
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    fn set_state(&self, to: Reachability) {
        if self.state.swap(to as u8, Ordering::Relaxed) != to as u8 {
            self.since.store(unix_now(), Ordering::Relaxed);
            if to == Reachability::Down {
                self.outages.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The store answered.
    pub(super) fn succeeded(&self) {
        self.set_state(Reachability::Up);
    }

    /// The store did not answer `op`, with `error`.
    pub(super) fn failed(&self, op: StoreOp, error: &str) {
        self.errors[op as usize].fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_owned());
        self.set_state(Reachability::Down);
    }

    /// Logs a change of state since the last line, if [`LOG_GAP`] has passed since it: a warning
    /// when the store went away, a note when it came back.
    pub(super) fn log_transition(&self) {
        let now = self.reachability();
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if now == logged.0 || now == Reachability::Unknown || logged.1.is_some_and(|at| at.elapsed() < LOG_GAP) {
            return;
        }
        let kind = self.kind.name();
        match now {
            Reachability::Down => tracing::warn!(
                error = self.last_error().as_deref().unwrap_or(""),
                "shared store ({kind}) unreachable: answering from what this daemon knows; other shards' occupants \
                 introspect inactive, revocations already known still apply"
            ),
            _ if logged.0 == Reachability::Unknown => {
                tracing::info!(shard = self.shard(), "shared store ({kind}) reachable")
            }
            _ => tracing::info!(
                shard = self.shard(),
                "shared store ({kind}) reachable again; re-publishing"
            ),
        }
        *logged = (now, Some(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_errors_and_transitions() {
        let s = StoreStatus::shared(StoreKind::Valkey, Some("a".into()));
        assert_eq!(s.reachability(), Reachability::Unknown);
        assert!(!s.is_up());
        s.failed(StoreOp::Lookup, "connection refused");
        s.failed(StoreOp::Lookup, "connection refused");
        assert_eq!(s.reachability(), Reachability::Down);
        assert_eq!(s.outages(), 1, "one outage, however many errors");
        assert_eq!(s.errors(StoreOp::Lookup), 2);
        assert_eq!(s.errors(StoreOp::Publish), 0);
        assert_eq!(s.last_error().as_deref(), Some("connection refused"));
        s.succeeded();
        assert!(s.is_up());
        assert!(StoreStatus::memory().is_up());
    }
}
