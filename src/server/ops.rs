//! What each op does: one function per op, from a typed request to its reply.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Map, Value, json};

use super::Shared;
use super::protocol::{self, Auth, ErrorCode, Hello, Op, PROTOCOL_VERSION, Reply, Request, Room};
use super::registry::{CachedToken, Host};
use crate::config::{HOST_OPTIONS, HostSettings};
use crate::room::{RoomDecision, RoomSession, RoomTarget, verify_room};
use crate::token::{Accepted, AuthRequest, Reason, Rejection};

/// The daemon's name and version, as `hello` and `ping` report it.
pub const DAEMON_VERSION: &str = concat!("token-sidecar ", env!("CARGO_PKG_VERSION"));

/// Parses and answers one request line, counting the outcome.
pub async fn answer(shared: &Shared, line: &[u8]) -> Reply {
    let (id, parsed) = protocol::parse(line);
    let (op, reply) = match parsed {
        Ok(request) => {
            let op = request.op();
            (op, execute(shared, id, request).await)
        }
        Err(bad) => {
            tracing::debug!(error = %bad, "bad request");
            (Op::Invalid, Reply::error(id, ErrorCode::BadRequest, bad.to_string()))
        }
    };
    shared.stats.count(op, &reply);
    reply
}

async fn execute(shared: &Shared, id: Value, request: Request) -> Reply {
    match request {
        Request::Hello(hello) => self::hello(shared, id, hello),
        Request::Auth(auth) => self::auth(shared, id, auth).await,
        Request::Room(room) => self::room(shared, id, room).await,
        Request::Ping => Reply::new(id, true).with("daemon", DAEMON_VERSION),
        Request::Stats => self::stats(shared, id).await,
        Request::AccessToken => Reply::error(
            id,
            ErrorCode::NotImplemented,
            "access_token is not implemented yet (reserved for participant access tokens)",
        ),
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn unknown_host(id: Value, host: &str) -> Reply {
    Reply::error(
        id,
        ErrorCode::UnknownHost,
        format!("host {host:?} is not registered: send it in `hello` or add [hosts.{host:?}] to the TOML file"),
    )
}

fn hello(shared: &Shared, id: Value, hello: Hello) -> Reply {
    if hello.version != PROTOCOL_VERSION {
        return Reply::error(
            id,
            ErrorCode::UnsupportedVersion,
            format!(
                "this daemon speaks protocol version {PROTOCOL_VERSION}; the shim sent version {}",
                hello.version
            ),
        );
    }
    let mut accepted = Vec::new();
    let mut errors = Map::new();
    let mut warnings = Vec::new();
    for (name, options) in &hello.hosts {
        match HostSettings::from_options(name, options, false) {
            Ok(settings) => {
                for key in options.keys() {
                    if !HOST_OPTIONS.iter().any(|(known, _)| known == key) {
                        warnings.push(format!("host {name:?}: option `{key}` is not used by token-sidecar"));
                    }
                }
                let host_warnings = settings.warnings();
                match shared.registry.set_hello(settings) {
                    Ok(replaced) => {
                        if replaced {
                            tracing::info!(host = %name, "host registered by hello");
                            for warning in &host_warnings {
                                tracing::warn!("{warning}");
                            }
                        }
                        warnings.extend(host_warnings);
                        accepted.push(Value::String(name.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(host = %name, "hello: {e}");
                        errors.insert(name.clone(), Value::String(e.to_string()));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(host = %name, "hello: {e}");
                errors.insert(name.clone(), Value::String(e.to_string()));
            }
        }
    }
    Reply::new(id, true)
        .with("version", PROTOCOL_VERSION)
        .with("daemon", DAEMON_VERSION)
        .with("accepted", accepted)
        .with("errors", errors)
        .with("warnings", warnings)
}

fn refusal(id: Value, rejection: &Rejection) -> Reply {
    let mut reply = Reply::new(id, false)
        .with("condition", rejection.reason.condition())
        .with("text", rejection.reason.to_string());
    if let Some(detail) = &rejection.detail {
        reply = reply.with("detail", detail.clone());
    }
    reply
}

/// Verifies `token` for `host`, through the cache of verified tokens. `Ok(None)` is an anonymous
/// login. Tokens checked against a session's own `public_key` bypass the cache: their verdict
/// belongs to that session's key, not to the host.
async fn verify(
    shared: &Shared,
    host: &Host,
    token: Option<&str>,
    public_key: Option<&str>,
    context_required: bool,
    now: i64,
) -> Result<Option<Arc<CachedToken>>, Rejection> {
    // Tokens checked with the session's own key, and logins without a token, bypass the cache.
    let key = match (token, public_key) {
        (Some(token), None) => Some((host.generation, crate::sha256(token.as_bytes()))),
        _ => None,
    };
    let request = AuthRequest {
        token,
        public_key,
        context_required,
        sha256: key.map(|k| k.1), // hashed once: the cache key is the token's SHA-256 too
    };
    if let Some(key) = &key {
        if let Some(hit) = shared.tokens.get(key) {
            shared.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            // `context` is the last check of the pipeline, so a cached token passed all the others.
            if context_required && !hit.has_context() {
                return Err(Rejection {
                    reason: Reason::ContextRequired,
                    detail: None,
                });
            }
            return Ok(Some(hit));
        }
        shared.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
    }
    // One await of the verifier, so that its future is held once in this one.
    match host.verifier.verify(&request, now).await? {
        Accepted::Anonymous => Ok(None),
        Accepted::Token(verified) => Ok(Some(match key {
            Some(key) => shared.tokens.insert(key, *verified, now),
            None => Arc::new(CachedToken::transient(*verified)),
        })),
    }
}

async fn auth(shared: &Shared, id: Value, auth: Auth) -> Reply {
    let Some(host) = shared.registry.get(&auth.host) else {
        return unknown_host(id, &auth.host);
    };
    let now = unix_now();
    let verdict = verify(
        shared,
        &host,
        auth.token.as_deref(),
        auth.public_key.as_deref(),
        auth.context_required,
        now,
    )
    .await;
    match verdict {
        Ok(None) => {
            tracing::debug!(host = %host.name, "anonymous login accepted");
            Reply::new(id, true).with("anonymous", true)
        }
        Ok(Some(cached)) => {
            tracing::debug!(host = %host.name, token = %cached.fingerprint(), "token accepted");
            Reply::accepted(id, cached)
        }
        Err(rejection) => {
            tracing::info!(
                host = %host.name,
                token = %auth.token.as_deref().map(crate::fingerprint).unwrap_or_else(|| "none".into()),
                reason = %rejection.reason,
                detail = rejection.detail.as_deref().unwrap_or(""),
                "login refused"
            );
            refusal(id, &rejection)
        }
    }
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

async fn room(shared: &Shared, id: Value, room: Room) -> Reply {
    let Some(host) = shared.registry.get(&room.host) else {
        return unknown_host(id, &room.host);
    };
    let prefix = room.prefix.as_deref().unwrap_or("");
    let cached = match (&room.token, &room.token_sha256) {
        (Some(token), _) => match verify(shared, &host, Some(token), None, false, unix_now()).await {
            Ok(cached) => cached,
            Err(rejection) => {
                tracing::info!(
                    host = %host.name,
                    token = %crate::fingerprint(token),
                    reason = %rejection.reason,
                    "room join refused: the token does not verify"
                );
                return refusal(id, &rejection).with("jitmeet", Value::Null);
            }
        },
        (None, Some(hash)) => {
            let Some(hash) = parse_sha256(hash) else {
                return Reply::error(
                    id,
                    ErrorCode::BadRequest,
                    "room: `token_sha256` must be 64 hex digits, as an auth reply gives it",
                );
            };
            match shared.tokens.get(&(host.generation, hash)) {
                Some(hit) => {
                    shared.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                    Some(hit)
                }
                None => {
                    return Reply::error(
                        id,
                        ErrorCode::UnknownToken,
                        "no verified token with this token_sha256 is cached for this host; send `token` instead",
                    );
                }
            }
        }
        (None, None) => None,
    };
    let session = match &cached {
        Some(cached) => cached.room_session(prefix),
        None => RoomSession {
            query_prefix: prefix,
            ..RoomSession::default()
        },
    };
    let target = RoomTarget {
        jid: &room.room,
        allow_unauthenticated_access: if room.room_exists {
            room.allow_unauthenticated_access
        } else {
            None
        },
    };
    match verify_room(&host.policy, &session, &target) {
        RoomDecision::Allow { tenant_mismatch } => Reply::new(id, true).with("tenant_mismatch", tenant_mismatch),
        RoomDecision::Deny { denial, detail } => {
            tracing::info!(
                host = %host.name,
                room = %room.room,
                token = %cached.as_ref().map(|c| c.fingerprint()).unwrap_or("none"),
                reason = denial.text(),
                detail = %detail,
                "room join refused"
            );
            Reply::new(id, false)
                .with("condition", "not-allowed")
                .with("text", denial.text())
                .with("jitmeet", denial.jitmeet())
                .with("detail", detail)
        }
    }
}

async fn stats(shared: &Shared, id: Value) -> Reply {
    let mut ops = Map::new();
    for op in Op::ALL {
        let [ok, refused, error] = shared.stats.get(op);
        ops.insert(
            op.name().into(),
            json!({ "ok": ok, "refused": refused, "error": error }),
        );
    }
    let mut hosts = BTreeMap::new();
    for host in shared.registry.all() {
        let (key_server, key_set) = host.verifier.key_stats();
        hosts.insert(
            host.name.clone(),
            json!({ "origin": host.origin.as_str(), "key_server": key_server, "key_set": key_set }),
        );
    }
    let settings = &shared.settings;
    let global_in_use = settings.max_inflight - shared.global.available_permits();
    Reply::new(id, true)
        .with("daemon", DAEMON_VERSION)
        .with("ops", ops)
        .with(
            "connections",
            json!({
                "open": shared.stats.connections.load(Ordering::Relaxed),
                "accepted": shared.stats.accepted.load(Ordering::Relaxed),
                "limit": settings.max_connections,
            }),
        )
        .with(
            "inflight",
            json!({
                "now": global_in_use,
                "limit": settings.max_inflight,
                "per_connection_limit": settings.max_inflight_per_connection,
            }),
        )
        .with(
            "verify_cache",
            json!({
                "entries": shared.tokens.entry_count(),
                "capacity": settings.verify_cache_size,
                "hits": shared.stats.cache_hits.load(Ordering::Relaxed),
                "misses": shared.stats.cache_misses.load(Ordering::Relaxed),
            }),
        )
        .with("hosts", serde_json::to_value(hosts).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_round_trips() {
        let digest = crate::sha256(b"x");
        assert_eq!(parse_sha256(&crate::hex(&digest)), Some(digest));
        assert_eq!(parse_sha256("zz"), None);
        assert_eq!(parse_sha256(&"g".repeat(64)), None);
    }
}
