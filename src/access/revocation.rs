//! Revocations: token ids (`jti`) and users (`context.user.id`, else `sub`) that are shut out until
//! a time. A login whose token's `jti` is revoked is refused; an access token whose `jti` is revoked
//! introspects inactive; a revoked user gets no new access tokens.
//!
//! Reading is synchronous and local (a login never waits on a network store): every
//! implementation keeps the whole list in memory. A shared store fills its local copy from the
//! store and keeps applying it while the store is away; [`Revocations::revoke`] writes through.

use std::collections::HashMap;
use std::sync::RwLock;

use futures::future::{BoxFuture, FutureExt, ready};

use super::occupancy::StoreError;

/// What is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Revoked {
    /// A token id: a login token's or an access token's `jti`.
    TokenId(String),
    /// A user: `context.user.id` of the login token, else its `sub`.
    User(String),
}

/// The revocation list.
pub trait Revocations: Send + Sync {
    /// Whether `what` is revoked at `now` (seconds since 1970). Local, never blocks.
    fn is_revoked(&self, what: &Revoked, now: i64) -> bool;
    /// Revokes `what` until `until` (seconds since 1970); later revocations of the same thing
    /// keep the later time.
    fn revoke(&self, what: Revoked, until: i64) -> BoxFuture<'_, Result<(), StoreError>>;
    /// How many entries are in force at `now`.
    fn count(&self, now: i64) -> usize;
    /// Whether a revocation that [`Revocations::revoke`] took reaches the other daemons (a shared
    /// store): what `POST /v1/revoke` answers as `shared`. When `revoke` fails, the store could
    /// not take it; an implementation with a local copy applies it there all the same, and the
    /// caller sees that in [`Revocations::is_revoked`].
    fn is_shared(&self) -> bool {
        false
    }
    /// The index of the first of `what` revoked at `now`, asking the shared store itself when
    /// there is one (a revocation made on another daemon is then seen before its local copy is
    /// refreshed); for introspection, which may wait on the store. Logins use
    /// [`Revocations::is_revoked`], which never waits.
    fn first_revoked<'a>(&'a self, what: &'a [Revoked], now: i64) -> BoxFuture<'a, Option<usize>> {
        ready(what.iter().position(|w| self.is_revoked(w, now))).boxed()
    }
}

/// The revocation list of one daemon, in memory (lost at restart).
#[derive(Debug, Default)]
pub struct MemoryRevocations {
    entries: RwLock<HashMap<Revoked, i64>>,
}

/// At most this many entries; past it, expired ones are dropped first, then the revocation is
/// refused.
pub const MAX_REVOCATIONS: usize = 1_000_000;

impl MemoryRevocations {
    /// Puts `what` in force until `until`, keeping the later of two times. Shared stores use this
    /// for their local copy.
    pub fn insert(&self, what: Revoked, until: i64, now: i64) -> Result<(), StoreError> {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_REVOCATIONS && !entries.contains_key(&what) {
            entries.retain(|_, t| *t > now);
            if entries.len() >= MAX_REVOCATIONS {
                return Err(StoreError(format!(
                    "the revocation list is full ({MAX_REVOCATIONS} entries)"
                )));
            }
        }
        let t = entries.entry(what).or_insert(until);
        *t = (*t).max(until);
        Ok(())
    }
}

impl Revocations for MemoryRevocations {
    fn is_revoked(&self, what: &Revoked, now: i64) -> bool {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(what).is_some_and(|until| *until > now)
    }

    fn revoke(&self, what: Revoked, until: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        ready(self.insert(what, until, crate::clock::unix_now())).boxed()
    }

    fn count(&self, now: i64) -> usize {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.values().filter(|until| **until > now).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_until_a_time_keeping_the_later_one() {
        let r = MemoryRevocations::default();
        let jti = Revoked::TokenId("abc".into());
        assert!(!r.is_revoked(&jti, 100));
        r.insert(jti.clone(), 200, 100).unwrap();
        assert!(r.is_revoked(&jti, 199));
        assert!(!r.is_revoked(&jti, 200), "in force until, not at, its time");
        r.insert(jti.clone(), 150, 100).unwrap();
        assert!(r.is_revoked(&jti, 199), "an earlier time does not shorten it");
        assert!(
            !r.is_revoked(&Revoked::User("abc".into()), 150),
            "a user is not a token id"
        );
        assert_eq!(r.count(100), 1);
        assert_eq!(r.count(300), 0);
    }
}
