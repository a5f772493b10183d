//! Who is in which room now, as the shim reports it: what introspection reads to say whether the
//! holder of an access token is still in the meeting.
//!
//! The store is an interface so that a store shared by several shards can stand in for the
//! in-memory one. Every entry carries the reporter (one shim connection) that put it there: when
//! that connection ends, its entries go (the shim re-sends the whole occupancy when it comes
//! back), so a Prosody that died leaves nobody behind who looks present.

use std::collections::HashMap;
use std::sync::RwLock;

use futures::future::{BoxFuture, FutureExt, ready};

/// Who reported an entry: one shim connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reporter(pub u64);

/// One occupant's session in one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupant {
    /// The room's bare JID, e.g. `room1@conference.meet.example.com`.
    pub room: String,
    /// The occupant's real full JID, e.g. `abc@meet.example.com/res`.
    pub jid: String,
    /// The occupant JID, `room@muc/nick`.
    pub nick: String,
}

/// How big the store is, for `stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OccupancyCounts {
    /// Rooms with at least one occupant.
    pub rooms: usize,
    /// Occupant sessions.
    pub occupants: usize,
}

/// Why a store could not answer (a shared store that is unreachable, say).
#[derive(Debug, Clone, thiserror::Error)]
#[error("occupancy store: {0}")]
pub struct StoreError(pub String);

/// The occupancy store. Methods return futures so that a networked store fits behind it.
pub trait OccupancyStore: Send + Sync {
    /// `occupant` joined (or is confirmed present).
    fn joined(&self, reporter: Reporter, occupant: Occupant) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The session `jid` left `room`.
    fn left(&self, room: &str, jid: &str) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The whole occupancy of the MUC component `muc`: replaces every entry of its rooms.
    fn replace_muc(
        &self,
        reporter: Reporter,
        muc: &str,
        occupants: Vec<Occupant>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Drops what `reporter` reported (its connection ended).
    fn forget(&self, reporter: Reporter) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Whether the session `jid` is in `room` now.
    fn is_present(&self, room: &str, jid: &str) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// The store's size.
    fn counts(&self) -> OccupancyCounts;
}

/// One room's occupants: real full JID → (occupant JID, reporter).
type RoomOccupants = HashMap<String, (String, Reporter)>;

/// The store of one daemon: a map in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Room bare JID → its occupants.
    rooms: RwLock<HashMap<String, RoomOccupants>>,
}

fn muc_of(room: &str) -> &str {
    room.split_once('@').map_or("", |(_, host)| host)
}

impl MemoryStore {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, RoomOccupants>> {
        self.rooms.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Every entry now (a shared store publishes what changed between two of these).
    pub fn occupants(&self) -> Vec<Occupant> {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        rooms
            .iter()
            .flat_map(|(room, occupants)| {
                occupants.iter().map(|(jid, (nick, _))| Occupant {
                    room: room.clone(),
                    jid: jid.clone(),
                    nick: nick.clone(),
                })
            })
            .collect()
    }
}

impl OccupancyStore for MemoryStore {
    fn joined(&self, reporter: Reporter, o: Occupant) -> BoxFuture<'_, Result<(), StoreError>> {
        self.write()
            .entry(o.room)
            .or_default()
            .insert(o.jid, (o.nick, reporter));
        ready(Ok(())).boxed()
    }

    fn left(&self, room: &str, jid: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut rooms = self.write();
        if let Some(occupants) = rooms.get_mut(room) {
            occupants.remove(jid);
            if occupants.is_empty() {
                rooms.remove(room);
            }
        }
        ready(Ok(())).boxed()
    }

    fn replace_muc(
        &self,
        reporter: Reporter,
        muc: &str,
        occupants: Vec<Occupant>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut rooms = self.write();
        rooms.retain(|room, _| muc_of(room) != muc);
        for o in occupants.into_iter().filter(|o| muc_of(&o.room) == muc) {
            rooms.entry(o.room).or_default().insert(o.jid, (o.nick, reporter));
        }
        ready(Ok(())).boxed()
    }

    fn forget(&self, reporter: Reporter) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut rooms = self.write();
        rooms.retain(|_, occupants| {
            occupants.retain(|_, (_, by)| *by != reporter);
            !occupants.is_empty()
        });
        ready(Ok(())).boxed()
    }

    fn is_present(&self, room: &str, jid: &str) -> BoxFuture<'_, Result<bool, StoreError>> {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        let present = rooms.get(room).is_some_and(|o| o.contains_key(jid));
        ready(Ok(present)).boxed()
    }

    fn counts(&self) -> OccupancyCounts {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        OccupancyCounts {
            rooms: rooms.len(),
            occupants: rooms.values().map(HashMap::len).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    fn o(room: &str, jid: &str) -> Occupant {
        Occupant {
            room: room.into(),
            jid: jid.into(),
            nick: format!("{room}/n"),
        }
    }

    #[test]
    fn join_leave_replace_forget() {
        let s = MemoryStore::default();
        let (a, b) = (Reporter(1), Reporter(2));
        block_on(s.joined(a, o("r1@muc", "u1@h/x"))).unwrap();
        block_on(s.joined(a, o("r2@muc", "u2@h/x"))).unwrap();
        block_on(s.joined(b, o("r3@other", "u3@h/x"))).unwrap();
        assert!(block_on(s.is_present("r1@muc", "u1@h/x")).unwrap());
        assert!(!block_on(s.is_present("r1@muc", "u2@h/x")).unwrap());
        block_on(s.left("r1@muc", "u1@h/x")).unwrap();
        assert!(!block_on(s.is_present("r1@muc", "u1@h/x")).unwrap());
        // A resync of one MUC replaces its rooms only.
        block_on(s.replace_muc(b, "muc", vec![o("r1@muc", "u9@h/x"), o("r3@other", "ignored@h/x")])).unwrap();
        assert!(!block_on(s.is_present("r2@muc", "u2@h/x")).unwrap());
        assert!(block_on(s.is_present("r1@muc", "u9@h/x")).unwrap());
        assert!(block_on(s.is_present("r3@other", "u3@h/x")).unwrap());
        assert!(!block_on(s.is_present("r3@other", "ignored@h/x")).unwrap());
        assert_eq!(s.counts(), OccupancyCounts { rooms: 2, occupants: 2 });
        block_on(s.forget(b)).unwrap();
        assert_eq!(s.counts(), OccupancyCounts::default());
    }
}
