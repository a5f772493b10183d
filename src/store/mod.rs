//! Where occupancy and revocations live (`[store]`): this daemon's memory (`memory`, the default),
//! or a Valkey/Redis server or cluster shared by the daemons of every Jitsi shard, so that
//! introspection on any shard answers for any shard's participants and a revocation reaches them
//! all. Behind the same interfaces as the in-memory ones ([`OccupancyStore`], [`Revocations`]).
//!
//! **Occupancy** ([`SharedStore`]). This shard's own reports stay in a local [`MemoryStore`],
//! which answers for its own occupants and is changed at once by every join, leave, resync and
//! dropped connection; one task publishes the changes (`SET <prefix>occ:{<room>}:<jid>
//! <shard>|<nick> EX <lease>` for a join, `DEL` at once for a leave, the difference for a resync or
//! a dropped connection) and re-publishes every entry this shard owns every lease/3, pipelined (by
//! slot on a cluster: the room is a hash tag, so a room's keys share one). A dead shard's entries
//! expire with their lease. After the store failed, the task retries every second and then
//! re-publishes everything (a restarted store is empty). `is_present` answers from the local store
//! first; otherwise it asks the store (`GET`, within `timeout_ms`): absent → false; an entry of
//! another shard → true; an entry of this shard that the local store does not have (a leave whose
//! `DEL` has not landed) → false, and the key is deleted: a local leave always wins. When the store
//! cannot answer, `Err("shared store unreachable: …")`, which introspection turns into inactive
//! with that reason — never true for someone who left. One limit: while this shard cannot reach the
//! store but others can (a partition), a leave here is seen elsewhere only when the entry's lease
//! runs out.
//!
//! **Revocations** ([`SharedRevocations`]). `SET <prefix>rev:<jti|user>:<id> <until> EXAT <until>`,
//! and the sorted set `<prefix>revoked` (members `jti:<id>`, `user:<id>`, scored by until, later
//! time kept with `ZADD GT`, expired ones trimmed) that every daemon reads whole every second into
//! its local [`MemoryRevocations`] (`ZRANGEBYSCORE (now +inf`). `is_revoked` reads only that copy,
//! so it works while the store is away; `revoke` writes the store and the copy, and when the store
//! is away keeps the revocation locally, returns the error (the caller says it was not shared)
//! and publishes it when the store is back.
//!
//! **State** ([`StoreStatus`]): up or down and since when, the last error, errors by operation, the
//! publish backlog; logged once per change, never per request.
//!
//! **Bounds.** The publish queue keeps one change per key, at most 100,000 SETs (beyond, the next
//! full re-publish stands in for them) and 100,000 DELs (beyond, those keys expire with the lease);
//! at most 10,000 revocations wait to be published. A dead store costs no memory beyond these.
//!
//! Files: `link.rs` (the connection, timeouts, pipelines by slot), `keys.rs` (the key layout),
//! `backlog.rs` (the bounded queue), `occupancy.rs`, `revocations.rs`, `status.rs`, `tasks.rs`.

mod backlog;
pub mod keys;
mod link;
mod occupancy;
mod revocations;
pub mod status;
mod tasks;

use std::sync::Arc;
use std::time::Duration;

pub use link::OpenError;
pub use occupancy::SharedStore;
pub use revocations::SharedRevocations;
pub use status::{Reachability, StoreOp, StoreStatus};

use crate::access::{MemoryRevocations, MemoryStore, OccupancyStore, Revocations};
use crate::config::{StoreKind, StoreSettings, valid_shard};
use link::Link;

/// The stores a daemon uses, and their state.
pub struct Store {
    /// Who is in which room.
    pub occupancy: Arc<dyn OccupancyStore>,
    /// What is revoked.
    pub revocations: Arc<dyn Revocations>,
    /// The shared store's state (always up for `memory`).
    pub status: Arc<StoreStatus>,
    /// The shared occupancy, to flush at shutdown.
    shared: Option<Arc<SharedStore>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The in-memory stores: nothing shared.
    pub fn memory() -> Store {
        Store {
            occupancy: Arc::new(MemoryStore::default()),
            revocations: Arc::new(MemoryRevocations::default()),
            status: Arc::new(StoreStatus::memory()),
            shared: None,
        }
    }

    /// The stores `settings` ask for. A shared store is connected lazily (the daemon starts while
    /// it is away) and its tasks start here: call within a tokio runtime. They stop when the
    /// returned stores are dropped.
    pub fn open(settings: &StoreSettings) -> Result<Store, OpenError> {
        if settings.kind == StoreKind::Memory {
            return Ok(Store::memory());
        }
        let shard = match &settings.shard {
            Some(shard) => shard.clone(),
            None => hostname()
                .filter(|h| valid_shard(h))
                .ok_or_else(|| OpenError::new("no shard name: set [store] shard (the hostname cannot be read)"))?,
        };
        let link = Link::open(settings)?;
        let status = Arc::new(StoreStatus::shared(settings.kind, Some(shard.clone())));
        let occupancy = Arc::new(SharedStore::start(
            link.clone(),
            shard,
            settings.key_prefix.clone(),
            settings.lease,
            settings.timeout,
            status.clone(),
        ));
        let revocations = SharedRevocations::start(link, settings.key_prefix.clone(), settings.timeout, status.clone());
        Ok(Store {
            occupancy: occupancy.clone(),
            revocations: Arc::new(revocations),
            status,
            shared: Some(occupancy),
        })
    }

    /// Publishes what is still queued (the leaves of the connections that just ended), for at most
    /// `within`: at shutdown, so that other shards see this one's occupants leave now rather than
    /// when their lease runs out.
    pub async fn flush(&self, within: Duration) -> bool {
        match &self.shared {
            Some(shared) => shared.flush(within).await,
            None => true,
        }
    }
}

/// The machine's hostname (Linux), the default shard name.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}
