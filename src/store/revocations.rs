//! [`SharedRevocations`]: the revocation list shared by the shards. Reading is local (a
//! [`MemoryRevocations`] copy, refreshed from the store every second), so logins never wait on the
//! store and revocations keep applying while it is away; revoking writes the store and the copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};

use super::keys;
use super::link::{Link, LinkError};
use super::status::{Reachability, StoreOp, StoreStatus};
use super::tasks::Task;
use crate::access::{MemoryRevocations, Revocations, Revoked, StoreError};
use crate::clock::unix_now;

/// How often the local copy is refreshed from the store (and revocations made while it was away
/// are published).
pub const REFRESH: Duration = Duration::from_secs(1);

/// Most revocations kept to publish when the store is back.
pub const MAX_UNPUBLISHED: usize = 10_000;

struct Inner {
    local: MemoryRevocations,
    /// Revoked here while the store was away: what → until.
    unpublished: Mutex<HashMap<Revoked, i64>>,
    link: Link,
    prefix: String,
    timeout: Duration,
    status: Arc<StoreStatus>,
}

/// Revocations in a Valkey/Redis store shared by the shards.
pub struct SharedRevocations {
    inner: Arc<Inner>,
    _refresher: Task,
}

impl std::fmt::Debug for SharedRevocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRevocations")
            .field("link", &self.inner.link)
            .finish_non_exhaustive()
    }
}

impl SharedRevocations {
    /// A list shared through `link`; starts its refresher (needs a tokio runtime).
    pub(super) fn start(link: Link, prefix: String, timeout: Duration, status: Arc<StoreStatus>) -> SharedRevocations {
        let inner = Arc::new(Inner {
            local: MemoryRevocations::default(),
            unpublished: Mutex::new(HashMap::new()),
            link,
            prefix,
            timeout,
            status,
        });
        let refresher = Task::spawn(refresh(inner.clone()));
        SharedRevocations {
            inner,
            _refresher: refresher,
        }
    }
}

impl Revocations for SharedRevocations {
    fn is_revoked(&self, what: &Revoked, now: i64) -> bool {
        self.inner.local.is_revoked(what, now)
    }

    fn revoke(&self, what: Revoked, until: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let inner = &self.inner;
            inner.local.insert(what.clone(), until, unix_now())?;
            match write(inner, &what, until).await {
                Ok(()) => {
                    inner.status.succeeded();
                    Ok(())
                }
                Err(LinkError(e)) => {
                    inner.status.failed(StoreOp::Revoke, &e);
                    let mut unpublished = inner.unpublished.lock().unwrap_or_else(|e| e.into_inner());
                    let kept = if unpublished.len() < MAX_UNPUBLISHED || unpublished.contains_key(&what) {
                        let t = unpublished.entry(what).or_insert(until);
                        *t = (*t).max(until);
                        "in force on this daemon; shared when the store is back"
                    } else {
                        "in force on this daemon only"
                    };
                    inner.status.set_unpublished_revocations(unpublished.len());
                    Err(StoreError(format!("shared store unreachable: {e} (revocation {kept})")))
                }
            }
        }
        .boxed()
    }

    fn count(&self, now: i64) -> usize {
        self.inner.local.count(now)
    }

    /// What `revoke` took is in the shared store, for every daemon sharing it.
    fn is_shared(&self) -> bool {
        true
    }

    /// The local copy, then each key in the store (a revocation made on another shard within the
    /// last refresh is found there); what the store cannot answer is left to the local copy.
    fn first_revoked<'a>(&'a self, what: &'a [Revoked], now: i64) -> BoxFuture<'a, Option<usize>> {
        async move {
            let inner = &self.inner;
            if let Some(i) = what.iter().position(|w| inner.local.is_revoked(w, now)) {
                return Some(i);
            }
            // Known to be away: the local copy is all there is, and an answer for this daemon's
            // own occupants must not wait out `timeout_ms` per key (the refresher notices the
            // store's return).
            if inner.status.reachability() == Reachability::Down {
                return None;
            }
            for (i, w) in what.iter().enumerate() {
                let key = keys::revoked(&inner.prefix, w);
                let until = match inner
                    .link
                    .query::<Option<i64>>(redis::cmd("GET").arg(&key), inner.timeout)
                    .await
                {
                    Ok(until) => until,
                    Err(LinkError(e)) => {
                        inner.status.failed(StoreOp::ReadRevocations, &e);
                        return None;
                    }
                };
                if let Some(until) = until.filter(|until| *until > now) {
                    // Keep it for logins here too, before the next refresh would.
                    let _ = inner.local.insert(w.clone(), until, now);
                    return Some(i);
                }
            }
            None
        }
        .boxed()
    }
}

/// Writes one revocation: into the list (keeping the later time, `GT`), then its own key with the
/// list's time, expiring then; and trims what expired from the list.
async fn write(inner: &Inner, what: &Revoked, until: i64) -> Result<(), LinkError> {
    let list = keys::revocation_list(&inner.prefix);
    let member = keys::revoked_member(what);
    let t = inner.timeout;
    inner
        .link
        .query::<()>(redis::cmd("ZADD").arg(&list).arg("GT").arg(until).arg(&member), t)
        .await?;
    let score: Option<f64> = inner
        .link
        .query(redis::cmd("ZSCORE").arg(&list).arg(&member), t)
        .await?;
    // Scores are whole seconds written by us; `as` is exact for them.
    let until = score.map_or(until, |s| s as i64).max(until);
    let now = unix_now();
    if until > now {
        let key = keys::revoked(&inner.prefix, what);
        inner
            .link
            .query::<()>(redis::cmd("SET").arg(&key).arg(until).arg("EXAT").arg(until), t)
            .await?;
    }
    inner
        .link
        .query::<()>(redis::cmd("ZREMRANGEBYSCORE").arg(&list).arg("-inf").arg(now), t)
        .await
}

/// Every [`REFRESH`]: publishes what was revoked while the store was away, then reads the list
/// into the local copy.
async fn refresh(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let waiting: Vec<(Revoked, i64)> = inner
            .unpublished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(what, until)| (what.clone(), *until))
            .collect();
        for (what, until) in waiting {
            match write(&inner, &what, until).await {
                Ok(()) => {
                    let mut unpublished = inner.unpublished.lock().unwrap_or_else(|e| e.into_inner());
                    if unpublished.get(&what).is_some_and(|t| *t <= until) {
                        unpublished.remove(&what);
                    }
                    inner.status.set_unpublished_revocations(unpublished.len());
                }
                Err(LinkError(e)) => {
                    inner.status.failed(StoreOp::Revoke, &e);
                    break;
                }
            }
        }
        let now = unix_now();
        let list = keys::revocation_list(&inner.prefix);
        let read = inner
            .link
            .query::<Vec<(String, f64)>>(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&list)
                    .arg(format!("({now}"))
                    .arg("+inf")
                    .arg("WITHSCORES"),
                inner.timeout,
            )
            .await;
        match read {
            Ok(entries) => {
                inner.status.succeeded();
                for (member, until) in entries {
                    if let Some(what) = keys::parse_revoked_member(&member) {
                        // Whole seconds, as written. A full list keeps what it has.
                        let _ = inner.local.insert(what, until as i64, now);
                    }
                }
            }
            Err(LinkError(e)) => inner.status.failed(StoreOp::ReadRevocations, &e),
        }
        inner.status.log_transition();
    }
}
