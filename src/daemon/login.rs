//! Accepted logins, remembered by token: the reply a login got (so the same token again costs a
//! lookup) and the claims the room check reads (so a room join uses the login's verdict, as Jitsi's
//! `verify_room` uses the session fields the login set, and never looks at the token's `exp`).
//!
//! An entry is not the token's claims tree: with one entry per login, a cache of trees makes every
//! insert evict (and free) a cold tree of a few dozen allocations, which was a third of the
//! daemon's CPU under load; the reply's text and a few claims are cheap to build once and to drop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use super::limited_cache::{Digest, LimitedCache};
use crate::access::issuer::{id_text, user_id};
use crate::config::ServerSettings;
use crate::digest::Sha256Hex;
use crate::protocol::Prepared;
use crate::room::RoomSession;
use crate::token::{ContextUser, SessionView, VerifiedToken};

/// A host generation no host has: the entry serves room checks only (a token verified with a
/// session's own `public_key`, or verified for a room join without its times).
pub const ROOM_ONLY: u64 = 0;

/// What the daemon keeps of an accepted login.
#[derive(Debug)]
pub struct AcceptedLogin {
    /// The accepted reply line without its `id` and newline: `reply[..split]` goes before
    /// `,"id":<id>,`, `reply[split..]` after.
    reply: Box<str>,
    split: usize,
    fingerprint: Box<str>,
    room: Option<Value>,
    sub: Option<Value>,
    context_room: Option<Value>,
    tenant: Option<Value>,
    has_context: bool,
    /// The token's `jti`, when a string: what a revocation of the token names.
    jti: Option<Box<str>>,
    /// The token's user, `context.user.id` (or a Firebase-style `user_id`), else `sub`: what a
    /// revocation of the user names.
    user: Option<Box<str>>,
    /// The host settings' generation the token was verified under, or [`ROOM_ONLY`].
    generation: u64,
    /// Until when the same token logs in again without a verification: its `exp`, at most
    /// `verify_cache_ttl` after the login.
    valid_until: Instant,
}

impl AcceptedLogin {
    /// The login of `token`, verified under host generation `generation`, that may answer a new
    /// login of the same token until `valid_until`.
    pub fn new(token: &VerifiedToken, generation: u64, valid_until: Instant) -> AcceptedLogin {
        let (reply, split) = accepted_text(token);
        let room = token.room_session("");
        AcceptedLogin {
            reply: reply.into_boxed_str(),
            split,
            fingerprint: token.fingerprint.clone().into_boxed_str(),
            room: room.room.cloned(),
            sub: room.sub.cloned(),
            context_room: room.context_room.cloned(),
            tenant: room.tenant.cloned(),
            has_context: token.claims.contains_key("context"),
            jti: token.claims.get("jti").and_then(Value::as_str).map(Box::from),
            user: login_user(token).map(String::into_boxed_str),
            generation,
            valid_until,
        }
    }

    /// The first 8 hex digits of the token's SHA-256, for logs.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether the token has a `context` claim (`session.contextRequired`).
    pub fn has_context(&self) -> bool {
        self.has_context
    }

    /// The token's `jti`, when it is a string.
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }

    /// The token's user: `context.user.id` (or a Firebase-style `user_id`), else `sub`.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The claims the room check reads, as `VerifiedToken::room_session` gave them.
    pub fn room_session<'a>(&'a self, query_prefix: &'a str) -> RoomSession<'a> {
        RoomSession {
            has_token: true,
            room: self.room.as_ref(),
            sub: self.sub.as_ref(),
            context_room: self.context_room.as_ref(),
            tenant: self.tenant.as_ref(),
            query_prefix,
        }
    }
}

/// The user of a login, as a revocation names it: the id of the session's
/// `jitsi_meet_context_user` (`context.user.id`, or a Firebase-style top-level `user_id`), else
/// `sub`; a string as it is, a number as its JSON text.
fn login_user(token: &VerifiedToken) -> Option<String> {
    let from_context = match token.session_view().jitsi_meet_context_user {
        Some(ContextUser::Claim(user)) => user_id(user),
        Some(ContextUser::UserId(id)) => id_text(id),
        None => None,
    };
    from_context.or_else(|| token.claims.get("sub").and_then(id_text))
}

impl Prepared for AcceptedLogin {
    fn write_line(&self, id: &Value, out: &mut Vec<u8>) {
        out.extend_from_slice(self.reply[..self.split].as_bytes());
        out.extend_from_slice(b",\"id\":");
        if serde_json::to_writer(&mut *out, id).is_err() {
            out.extend_from_slice(b"null"); // not reached: a JSON value always serialises
        }
        out.push(b',');
        out.extend_from_slice(self.reply[self.split..].as_bytes());
        out.push(b'\n');
    }
}

/// Accepted logins by the token's SHA-256, at most `verify_cache_size` of them, each kept
/// `verify_cache_ttl` after the login.
pub struct Logins {
    cache: LimitedCache<Arc<AcceptedLogin>>,
    keep: Duration,
}

impl Logins {
    /// An empty memory sized by `[server]`.
    pub fn new(settings: &ServerSettings) -> Logins {
        Logins {
            cache: LimitedCache::new(settings.verify_cache_size),
            keep: settings.verify_cache_ttl,
        }
    }

    /// How long a token whose `exp` is `exp` may log in again from memory, verified at `now`.
    fn valid_for(&self, exp: Option<i64>, now: i64) -> Duration {
        match exp {
            Some(exp) => Duration::from_secs(u64::try_from(exp.saturating_sub(now)).unwrap_or(0)).min(self.keep),
            None => self.keep,
        }
    }

    /// Remembers the login of `token`, verified at `now` (seconds since 1970) under host generation
    /// `generation` (or [`ROOM_ONLY`]).
    pub fn remember(&self, token: &VerifiedToken, generation: u64, now: i64) -> Arc<AcceptedLogin> {
        let at = Instant::now();
        let login = Arc::new(AcceptedLogin::new(
            token,
            generation,
            at + self.valid_for(token.exp(), now),
        ));
        self.cache.insert(token.sha256, login.clone(), at + self.keep);
        login
    }

    /// The login of this token under this host generation, while it may log in without a verification.
    pub fn for_login(&self, generation: u64, sha256: &Digest) -> Option<Arc<AcceptedLogin>> {
        let now = Instant::now();
        self.cache
            .get(sha256, now)
            .filter(|login| login.generation == generation && login.valid_until > now)
    }

    /// Any remembered login of this token: what a session that logged in with it got.
    pub fn for_room(&self, sha256: &Digest) -> Option<Arc<AcceptedLogin>> {
        self.cache.get(sha256, Instant::now())
    }

    /// Logins remembered now.
    pub fn count(&self) -> u64 {
        self.cache.count(Instant::now())
    }
}

/// The accepted-login reply, in two parts around its `id` so that a remembered login's text can be
/// reused for any request. Fields are declared in name order, so the bytes are those of the same
/// reply built as a `serde_json::Map` (whose keys are sorted): `anonymous`, `claims`, `exp`,
/// `fingerprint` | `id` | `ok`, `session`, `token_sha256`.
#[derive(Serialize)]
struct AcceptedHead<'a> {
    anonymous: bool,
    claims: &'a Map<String, Value>,
    exp: Option<i64>,
    fingerprint: &'a str,
}

#[derive(Serialize)]
struct AcceptedTail<'a> {
    ok: bool,
    session: SessionView<'a>,
    token_sha256: Sha256Hex<'a>,
}

/// The accepted reply for `token` without `id` and newline, and where the `id` goes: the text
/// is `{head}` with its closing brace dropped, then (at the split) `{tail}` without its opening
/// one; [`AcceptedLogin::write_line`] puts `,"id":<id>,` between them.
fn accepted_text(token: &VerifiedToken) -> (String, usize) {
    let head = AcceptedHead {
        anonymous: false,
        claims: &token.claims,
        exp: token.exp(),
        fingerprint: &token.fingerprint,
    };
    let tail = AcceptedTail {
        ok: true,
        session: token.session_view(),
        token_sha256: Sha256Hex(&token.sha256),
    };
    // Serialising JSON values into memory cannot fail; if it did, the fallbacks still make a
    // valid (if bare) accepted reply.
    let mut text = serde_json::to_string(&head).unwrap_or_else(|_| r#"{"anonymous":false}"#.into());
    text.pop(); // `}`
    let split = text.len();
    let tail = serde_json::to_string(&tail).unwrap_or_else(|_| r#"{"ok":true}"#.into());
    text.push_str(&tail[1..]); // without `{`
    (text, split)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Reply;

    /// The accepted reply built field by field, as the protocol defines it.
    fn accepted_as_map(id: Value, token: &VerifiedToken) -> Vec<u8> {
        Reply::new(id, true)
            .with("anonymous", false)
            .with("claims", Value::Object(token.claims.clone()))
            .with("session", serde_json::to_value(token.session_view()).unwrap())
            .with("fingerprint", token.fingerprint.clone())
            .with("exp", token.exp())
            .with("token_sha256", crate::digest::hex(&token.sha256))
            .to_line()
    }

    fn token(claims: Value, n: usize) -> VerifiedToken {
        let Value::Object(claims) = claims else { panic!() };
        VerifiedToken {
            header: Map::new(),
            claims,
            fingerprint: "1a2b3c4d".into(),
            sha256: crate::digest::sha256(n.to_string().as_bytes()),
        }
    }

    #[test]
    fn accepted_replies_are_the_bytes_of_the_map_built_ones() {
        let claims = [
            serde_json::json!({"iss": "app", "aud": "jitsi", "sub": "meet.example.com", "room": "*",
                "exp": 1_800_003_600,
                "context": {"user": {"id": "1", "name": "Ådam \"quoted\"\n"}, "group": "g", "tenant": "acme",
                    "features": {"recording": true}, "room": {"lobby_bypass": true}}}),
            serde_json::json!({"iss": "app", "user_id": "u-1", "exp": 1.5e9, "zz": [1, null, {"b": 1, "a": 2}]}),
            serde_json::json!({"context": null, "user_id": "u-2", "room": null}),
            serde_json::json!({"context": {"user": null}, "user_id": "u-3", "exp": "soon"}),
            serde_json::json!({}),
        ];
        for (n, claims) in claims.into_iter().enumerate() {
            let token = token(claims, n);
            for id in [Value::from(n), Value::from("id-x"), Value::Null] {
                let expected = accepted_as_map(id.clone(), &token);
                let login = Arc::new(AcceptedLogin::new(&token, 1, Instant::now()));
                let reply = Reply::prepared(id, login);
                assert_eq!(
                    String::from_utf8(reply.to_line()).unwrap(),
                    String::from_utf8(expected).unwrap()
                );
            }
        }
    }

    #[test]
    fn a_login_serves_logins_until_its_exp_and_room_checks_after() {
        let settings = ServerSettings::default();
        let logins = Logins::new(&settings);
        let now = 1_000_000;
        let token = token(serde_json::json!({"room": "r", "sub": "s", "exp": now}), 1);
        logins.remember(&token, 7, now);
        assert!(logins.for_login(7, &token.sha256).is_none(), "expired for logins");
        let room = logins.for_room(&token.sha256).expect("kept for room checks");
        assert_eq!(room.room_session("").room, Some(&Value::from("r")));
        logins.remember(&token, 7, now - 60);
        assert!(logins.for_login(7, &token.sha256).is_some());
        assert!(logins.for_login(8, &token.sha256).is_none(), "another generation");
        assert_eq!(logins.valid_for(Some(100), 40), Duration::from_secs(60));
        assert_eq!(logins.valid_for(Some(100), 400), Duration::ZERO);
        assert_eq!(logins.valid_for(None, 0), settings.verify_cache_ttl);
    }
}
