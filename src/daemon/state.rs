//! What every connection shares: settings, hosts, remembered logins, counters, the global
//! in-flight budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use super::hosts::Registry;
use super::issuers::Issuers;
use super::login::Logins;
use crate::access::{MemoryStore, OccupancyStore};
use crate::config::ServerSettings;
use crate::protocol::{Op, Outcome};

/// The daemon's name and version, as `hello` and `ping` report it.
pub const DAEMON_VERSION: &str = concat!("token-sidecar ", env!("CARGO_PKG_VERSION"));

/// State every connection shares.
pub struct Shared {
    /// `[server]` as the daemon started with it.
    pub settings: ServerSettings,
    /// The hosts.
    pub registry: Registry,
    /// Accepted logins, by token.
    pub logins: Logins,
    /// Counters for `stats`.
    pub stats: Stats,
    /// In-flight requests across all connections.
    pub global: Arc<Semaphore>,
    /// The access-token issuers.
    pub issuers: Issuers,
    /// Who is in which room now, as the shims report it.
    pub occupancy: Arc<dyn OccupancyStore>,
    /// Numbers connections, so that what one reported can be dropped when it ends.
    pub next_connection: AtomicU64,
    /// `[http]` as the daemon started with it.
    pub http: crate::config::HttpSettings,
}

impl Shared {
    /// State for a daemon with these settings and no hosts yet.
    pub fn new(settings: ServerSettings) -> Shared {
        Shared {
            logins: Logins::new(&settings),
            global: Arc::new(Semaphore::new(settings.max_inflight)),
            registry: Registry::default(),
            stats: Stats::default(),
            issuers: Issuers::default(),
            occupancy: Arc::new(MemoryStore::default()),
            next_connection: AtomicU64::new(1),
            http: crate::config::HttpSettings::default(),
            settings,
        }
    }
}

const OUTCOMES: [Outcome; 3] = [Outcome::Ok, Outcome::Refused, Outcome::Error];

/// Counters for `stats`.
#[derive(Default)]
pub struct Stats {
    /// Replies by op and outcome.
    replies: [[AtomicU64; OUTCOMES.len()]; Op::ALL.len()],
    /// Connections open now.
    pub connections: AtomicUsize,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Logins and room checks answered from remembered logins.
    pub cache_hits: AtomicU64,
    /// Logins verified, and room checks that found no remembered login.
    pub cache_misses: AtomicU64,
}

impl Stats {
    /// Counts a reply to `op`.
    pub fn count(&self, op: Op, outcome: Outcome) {
        self.replies[op as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Replies to `op` so far by outcome: ok, refused, error.
    pub fn replies(&self, op: Op) -> [(Outcome, u64); 3] {
        OUTCOMES.map(|outcome| {
            (
                outcome,
                self.replies[op as usize][outcome as usize].load(Ordering::Relaxed),
            )
        })
    }

    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
