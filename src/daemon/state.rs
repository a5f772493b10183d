//! What every connection shares: settings, hosts, remembered logins, counters, the global
//! in-flight budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use super::hosts::Registry;
use super::issuers::Issuers;
use super::login::Logins;
use super::metrics::Metrics;
use crate::access::{MemoryRevocations, MemoryStore, OccupancyStore, Revocations};
use crate::config::ServerSettings;
use crate::protocol::{Op, Outcome};
use crate::store::StoreStatus;

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
    /// Counters for `stats` (and `/metrics`).
    pub stats: Stats,
    /// Counters for `/metrics` only.
    pub metrics: Metrics,
    /// When the daemon started, in seconds since 1970.
    pub started: f64,
    /// In-flight requests across all connections.
    pub global: Arc<Semaphore>,
    /// The access-token issuers.
    pub issuers: Issuers,
    /// Who is in which room now, as the shims report it.
    pub occupancy: Arc<dyn OccupancyStore>,
    /// Revoked token ids and users (in memory, or shared through `[store]`).
    pub revocations: Arc<dyn Revocations>,
    /// The state of the store behind `occupancy` and `revocations` (`[store]`).
    pub store: Arc<StoreStatus>,
    /// Numbers connections, so that what one reported can be dropped when it ends.
    pub next_connection: AtomicU64,
    /// `[http]` as the daemon started with it.
    pub http: crate::config::HttpSettings,
}

impl Shared {
    /// State for a daemon with these settings and no hosts yet.
    pub fn new(settings: ServerSettings) -> Shared {
        let metrics = Metrics::default();
        Shared {
            logins: Logins::new(&settings),
            global: Arc::new(Semaphore::new(settings.max_inflight)),
            registry: Registry::observed(metrics.keys.clone()),
            stats: Stats::default(),
            metrics,
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            issuers: Issuers::default(),
            occupancy: Arc::new(MemoryStore::default()),
            revocations: Arc::new(MemoryRevocations::default()),
            store: Arc::new(StoreStatus::memory()),
            next_connection: AtomicU64::new(1),
            http: crate::config::HttpSettings::default(),
            settings,
        }
    }
}

const OUTCOMES: [Outcome; 3] = [Outcome::Ok, Outcome::Refused, Outcome::Error];

/// Which op looked in the remembered logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUser {
    /// A login.
    Auth,
    /// A room check.
    Room,
}

impl CacheUser {
    /// Both, in the order of their index.
    pub const ALL: [CacheUser; 2] = [CacheUser::Auth, CacheUser::Room];

    /// The op's name.
    pub fn name(self) -> &'static str {
        match self {
            CacheUser::Auth => "auth",
            CacheUser::Room => "room",
        }
    }
}

/// Counters for `stats`, which `/metrics` reports too.
#[derive(Default)]
pub struct Stats {
    /// Replies by op and outcome.
    replies: [[AtomicU64; OUTCOMES.len()]; Op::ALL.len()],
    /// Connections open now.
    pub connections: AtomicUsize,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Lookups in the remembered logins by op: [found one, found none]. For logins a miss is a
    /// verification; for room checks, a check that used the shim's session fields instead.
    cache: [[AtomicU64; 2]; CacheUser::ALL.len()],
}

impl Stats {
    /// Counts a reply to `op`.
    pub fn count(&self, op: Op, outcome: Outcome) {
        self.replies[op as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a lookup in the remembered logins by `user`: `hit` when it found one.
    pub fn cache_lookup(&self, user: CacheUser, hit: bool) {
        self.cache[user as usize][usize::from(!hit)].fetch_add(1, Ordering::Relaxed);
    }

    /// Lookups in the remembered logins by `user` so far: (hits, misses).
    pub fn cache_lookups(&self, user: CacheUser) -> (u64, u64) {
        let [hits, misses] = &self.cache[user as usize];
        (hits.load(Ordering::Relaxed), misses.load(Ordering::Relaxed))
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
}
