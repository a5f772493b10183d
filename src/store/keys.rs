//! The key layout, in one place (docs/CONFIG.md, `[store]`, shows it too):
//!
//! | Key | Type | Value | Expiry |
//! |---|---|---|---|
//! | `<prefix>occ:{<room>}:<jid>` | string | `<shard>\|<nick>` | the lease, refreshed by its shard |
//! | `<prefix>rev:jti:<id>`, `<prefix>rev:user:<id>` | string | until (seconds since 1970) | at until |
//! | `<prefix>revoked` | sorted set | members `jti:<id>`, `user:<id>`, scored by until | trimmed |
//!
//! The room is a hash tag, so that a room's keys share a cluster slot.

use crate::access::Revoked;

/// The key of `jid`'s session in `room`.
pub fn occupant(prefix: &str, room: &str, jid: &str) -> String {
    format!("{prefix}occ:{{{room}}}:{jid}")
}

/// The value of an occupant's key: the shard that reported it, and the occupant JID.
pub fn occupant_value(shard: &str, nick: &str) -> String {
    format!("{shard}|{nick}")
}

/// The shard of an occupant key's value.
pub fn shard_of(value: &str) -> &str {
    value.split_once('|').map_or(value, |(shard, _)| shard)
}

/// The member of the revocation list for `what`.
pub fn revoked_member(what: &Revoked) -> String {
    match what {
        Revoked::TokenId(id) => format!("jti:{id}"),
        Revoked::User(id) => format!("user:{id}"),
    }
}

/// What a member of the revocation list names (`None`: not one of ours).
pub fn parse_revoked_member(member: &str) -> Option<Revoked> {
    match member.split_once(':')? {
        ("jti", id) => Some(Revoked::TokenId(id.to_owned())),
        ("user", id) => Some(Revoked::User(id.to_owned())),
        _ => None,
    }
}

/// The key of one revocation.
pub fn revoked(prefix: &str, what: &Revoked) -> String {
    format!("{prefix}rev:{}", revoked_member(what))
}

/// The key of the revocation list.
pub fn revocation_list(prefix: &str) -> String {
    format!("{prefix}revoked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(
            occupant("ts:", "r1@conference.example.com", "u@example.com/res"),
            "ts:occ:{r1@conference.example.com}:u@example.com/res"
        );
        assert_eq!(occupant_value("shard-a", "r1@muc/nick|x"), "shard-a|r1@muc/nick|x");
        assert_eq!(shard_of("shard-a|r1@muc/nick|x"), "shard-a");
        let jti = Revoked::TokenId("a:b".into());
        assert_eq!(revoked("ts:", &jti), "ts:rev:jti:a:b");
        assert_eq!(revoked("ts:", &Revoked::User("u1".into())), "ts:rev:user:u1");
        assert_eq!(parse_revoked_member(&revoked_member(&jti)), Some(jti));
        assert_eq!(parse_revoked_member("sub:x"), None);
        assert_eq!(revocation_list("ts:"), "ts:revoked");
        // Every key of a room is in the room's slot.
        let slot = |k: &str| redis::cluster_routing::Slot::for_key(k.as_bytes());
        assert_eq!(
            slot(&occupant("p:", "room@muc", "a@h/1")),
            slot(&occupant("p:", "room@muc", "b@h/2"))
        );
    }
}
