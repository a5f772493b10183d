//! [`SharedStore`]: occupancy shared by the shards. This shard's own reports live in a local
//! [`MemoryStore`], which answers for them; every change is published to the store by one task,
//! which also re-publishes everything this shard owns every lease/3 (module doc of `store`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use super::backlog::{Backlog, Batch, Queued};
use super::keys;
use super::link::{Link, LinkError};
use super::status::{StoreOp, StoreStatus};
use super::tasks::Task;
use crate::access::{MemoryStore, OccupancyCounts, OccupancyStore, Occupant, Reporter, StoreError};

/// How long the publisher waits before trying a store that failed again.
const RETRY: Duration = Duration::from_secs(1);

/// What the publisher and the store share.
struct Inner {
    /// This shard's own reports: what it answers for, and what it publishes.
    local: MemoryStore,
    /// Changes not yet published. Local changes are made while holding it, so that the order of
    /// the changes queued is the order of the local ones.
    backlog: Mutex<Backlog>,
    wake: Notify,
    link: Link,
    shard: String,
    prefix: String,
    lease: Duration,
    timeout: Duration,
    status: Arc<StoreStatus>,
}

/// Occupancy in a Valkey/Redis store shared by the shards.
pub struct SharedStore {
    inner: Arc<Inner>,
    _publisher: Task,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore")
            .field("shard", &self.inner.shard)
            .field("link", &self.inner.link)
            .finish_non_exhaustive()
    }
}

/// Key → value of every entry.
fn published(inner: &Inner, occupants: Vec<Occupant>) -> HashMap<String, String> {
    occupants
        .into_iter()
        .map(|o| {
            (
                keys::occupant(&inner.prefix, &o.room, &o.jid),
                keys::occupant_value(&inner.shard, &o.nick),
            )
        })
        .collect()
}

impl SharedStore {
    /// A store publishing as `shard` through `link`; starts its publisher (needs a tokio runtime).
    pub(super) fn start(
        link: Link,
        shard: String,
        prefix: String,
        lease: Duration,
        timeout: Duration,
        status: Arc<StoreStatus>,
    ) -> SharedStore {
        let inner = Arc::new(Inner {
            local: MemoryStore::default(),
            backlog: Mutex::new(Backlog::default()),
            wake: Notify::new(),
            link,
            shard,
            prefix,
            lease,
            timeout,
            status,
        });
        let publisher = Task::spawn(publish(inner.clone()));
        SharedStore {
            inner,
            _publisher: publisher,
        }
    }

    /// Waits until what is queued has been published, for at most `within`; whether it was.
    pub async fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.inner.backlog.lock().await.is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.inner.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Applies `change` to the local store and queues what it changed.
    async fn change(&self, change: impl FnOnce(&MemoryStore) -> BoxFuture<'_, Result<(), StoreError>>) {
        let inner = &self.inner;
        let mut backlog = inner.backlog.lock().await;
        let before = published(inner, inner.local.occupants());
        // The in-memory store cannot fail.
        let _ = change(&inner.local).await;
        let after = published(inner, inner.local.occupants());
        for key in before.keys().filter(|k| !after.contains_key(*k)) {
            if backlog.del(key.clone()) == Queued::Dropped {
                inner.status.dropped_leave();
            }
        }
        for (key, value) in after {
            if before.get(&key) != Some(&value) {
                backlog.set(key, value);
            }
        }
        inner.status.set_backlog(backlog.len());
        drop(backlog);
        inner.wake.notify_one();
    }
}

impl OccupancyStore for SharedStore {
    fn joined(&self, reporter: Reporter, occupant: Occupant) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let inner = &self.inner;
            let key = keys::occupant(&inner.prefix, &occupant.room, &occupant.jid);
            let value = keys::occupant_value(&inner.shard, &occupant.nick);
            let mut backlog = inner.backlog.lock().await;
            inner.local.joined(reporter, occupant).await?;
            backlog.set(key, value);
            inner.status.set_backlog(backlog.len());
            drop(backlog);
            inner.wake.notify_one();
            Ok(())
        }
        .boxed()
    }

    fn left(&self, room: &str, jid: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        let (room, jid) = (room.to_owned(), jid.to_owned());
        async move {
            let inner = &self.inner;
            let mut backlog = inner.backlog.lock().await;
            inner.local.left(&room, &jid).await?;
            if backlog.del(keys::occupant(&inner.prefix, &room, &jid)) == Queued::Dropped {
                inner.status.dropped_leave();
            }
            inner.status.set_backlog(backlog.len());
            drop(backlog);
            inner.wake.notify_one();
            Ok(())
        }
        .boxed()
    }

    fn replace_muc(
        &self,
        reporter: Reporter,
        muc: &str,
        occupants: Vec<Occupant>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let muc = muc.to_owned();
        async move {
            self.change(|local| local.replace_muc(reporter, &muc, occupants)).await;
            Ok(())
        }
        .boxed()
    }

    fn forget(&self, reporter: Reporter) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            self.change(|local| local.forget(reporter)).await;
            Ok(())
        }
        .boxed()
    }

    fn is_present(&self, room: &str, jid: &str) -> BoxFuture<'_, Result<bool, StoreError>> {
        let (room, jid) = (room.to_owned(), jid.to_owned());
        async move {
            let inner = &self.inner;
            if inner.local.is_present(&room, &jid).await? {
                return Ok(true);
            }
            let key = keys::occupant(&inner.prefix, &room, &jid);
            let value: Option<String> = match inner.link.query(redis::cmd("GET").arg(&key), inner.timeout).await {
                Ok(value) => {
                    inner.status.succeeded();
                    value
                }
                Err(LinkError(e)) => {
                    inner.status.failed(StoreOp::Lookup, &e);
                    return Err(StoreError(format!("shared store unreachable: {e}")));
                }
            };
            match value {
                None => Ok(false),
                Some(value) if keys::shard_of(&value) == inner.shard => {
                    // Ours, but not in the local store: a leave whose DEL has not landed (or was
                    // lost). The local leave wins; delete the key unless a join came meanwhile.
                    let mut backlog = inner.backlog.lock().await;
                    if !inner.local.is_present(&room, &jid).await? && backlog.del(key) == Queued::Dropped {
                        inner.status.dropped_leave();
                    }
                    drop(backlog);
                    inner.wake.notify_one();
                    Ok(false)
                }
                Some(_) => Ok(true),
            }
        }
        .boxed()
    }

    fn counts(&self) -> OccupancyCounts {
        self.inner.local.counts()
    }
}

/// The publisher: sends what is queued as soon as it is queued, re-publishes everything every
/// lease/3, and after the store was seen down (by anyone: a lookup, the revocation refresher, a
/// publish) tries every [`RETRY`] until it answers, then re-publishes everything (a restarted store
/// is empty). The only writer of occupancy keys, so that a DEL queued after a refresh's snapshot
/// always lands after that refresh.
async fn publish(inner: Arc<Inner>) {
    let period = inner.lease / 3;
    let mut next_refresh = Instant::now();
    let mut failing = false;
    let mut everything = true;
    let mut outages = inner.status.outages();
    loop {
        tokio::select! {
            () = inner.wake.notified(), if !failing => {}
            () = tokio::time::sleep(RETRY) => {}
            () = tokio::time::sleep_until(next_refresh) => {}
        }
        if Instant::now() >= next_refresh {
            everything = true;
            next_refresh = Instant::now() + period;
        }
        let seen = inner.status.outages();
        if seen != outages {
            (outages, everything) = (seen, true);
        }
        let batch = inner.backlog.lock().await.take();
        if !batch.is_empty() {
            match send(&inner, &batch).await {
                Ok(()) => {
                    inner.status.succeeded();
                    let mut backlog = inner.backlog.lock().await;
                    backlog.sent();
                    inner.status.set_backlog(backlog.len());
                }
                Err(LinkError(e)) => {
                    inner.status.failed(StoreOp::Publish, &e);
                    let mut backlog = inner.backlog.lock().await;
                    backlog.restore(batch);
                    inner.status.set_backlog(backlog.len());
                    (failing, everything) = (true, true);
                    continue;
                }
            }
        }
        // Not before this shard's revocations made while the store was away are in it: a holder
        // re-published present must not be seen before their revocation can be (the revocation
        // refresher publishes those within a second).
        if everything && inner.status.unpublished_revocations() > 0 {
            continue;
        }
        if everything || inner.backlog.lock().await.overflowed {
            let all = {
                let mut backlog = inner.backlog.lock().await;
                backlog.overflowed = false;
                published(&inner, inner.local.occupants())
            };
            let batch = Batch {
                sets: all,
                ..Batch::default()
            };
            match send(&inner, &batch).await {
                Ok(()) => {
                    // Nothing sent says nothing about the store.
                    if !batch.is_empty() {
                        inner.status.succeeded();
                    }
                    everything = false;
                }
                Err(LinkError(e)) => {
                    inner.status.failed(StoreOp::Refresh, &e);
                    (failing, everything) = (true, true);
                    continue;
                }
            }
        }
        failing = false;
        inner.status.set_backlog(inner.backlog.lock().await.len());
        inner.status.log_transition();
    }
}

/// Sends a batch: DELs, and SETs with the lease.
async fn send(inner: &Inner, batch: &Batch) -> Result<(), LinkError> {
    let lease = inner.lease.as_secs().max(1);
    let mut commands = Vec::with_capacity(batch.sets.len() + batch.dels.len());
    for key in &batch.dels {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key);
        commands.push((key.clone(), cmd));
    }
    for (key, value) in &batch.sets {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("EX").arg(lease);
        commands.push((key.clone(), cmd));
    }
    inner.link.run_all(commands, inner.timeout).await
}
