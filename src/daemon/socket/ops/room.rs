//! `room`: may this session join (or create) this room? Decided from what the session got at
//! login — the token's claims, never its age (docs/COMPATIBILITY.md, "Room joins after login").

use std::sync::Arc;

use serde_json::Value;

use super::auth::{host_error, host_unavailable, revoked, revoked_parts, verify};
use crate::access::issuer::session_user;
use crate::clock::unix_now;
use crate::daemon::login::AcceptedLogin;
use crate::daemon::metrics::{RoomCheck, RoomError};
use crate::daemon::state::{CacheUser, Shared};
use crate::digest;
use crate::protocol::{ErrorCode, Refusal, Reply, Room, RoomSessionFields};
use crate::room::{RoomDecision, RoomSession, RoomTarget, verify_room};
use crate::token::{AuthRequest, Purpose};

/// Where the session's token fields come from.
enum Login {
    /// A login the daemon remembers (or a token it just verified).
    Remembered(Arc<AcceptedLogin>),
    /// The fields the shim says the login set on the session.
    Session(RoomSessionFields),
    /// A session without a token.
    None,
}

pub(super) async fn room(shared: &Shared, id: Value, room: Room<'_>) -> Reply {
    let host = match shared.registry.get(&room.host) {
        Ok(host) => host,
        Err(unavailable) => {
            shared
                .metrics
                .room_check(RoomCheck::Error(RoomError::Host(host_error(&unavailable))));
            return host_unavailable(id, &room.host, &unavailable);
        }
    };
    let prefix = room.prefix.as_deref().unwrap_or("");
    let sha256 = match (&room.token_sha256, &room.token) {
        (Some(hex), _) => match digest::parse_sha256_hex(hex) {
            Some(sha256) => Some(sha256),
            None => {
                shared.metrics.room_check(RoomCheck::Error(RoomError::BadRequest));
                return Reply::error(
                    id,
                    ErrorCode::BadRequest,
                    "room: `token_sha256` must be 64 hex digits, as an auth reply gives it",
                );
            }
        },
        (None, Some(token)) => Some(digest::sha256(token.as_bytes())),
        (None, None) => None,
    };
    let remembered = sha256.as_ref().and_then(|sha256| shared.logins.for_room(sha256));
    let login = match (remembered, room.session, &room.token) {
        (Some(login), ..) => {
            shared.stats.cache_lookup(CacheUser::Room, true);
            Login::Remembered(login)
        }
        (None, Some(fields), _) => {
            shared.stats.cache_lookup(CacheUser::Room, false);
            Login::Session(fields)
        }
        // A session's token the daemon does not remember: the login judged its time, so only
        // what the token says is checked again.
        (None, None, Some(token)) => {
            let request = AuthRequest {
                token: Some(token),
                // Hashed above when it is this token's (not a `token_sha256` sent beside it).
                sha256: sha256.filter(|_| room.token_sha256.is_none()),
                purpose: Purpose::RoomJoin,
                ..AuthRequest::default()
            };
            match verify(shared, &host, request).await {
                Ok(Some(login)) => Login::Remembered(login),
                Ok(None) => Login::None,
                Err(rejection) => {
                    shared.metrics.room_check(RoomCheck::TokenRefused(&rejection.reason));
                    tracing::info!(
                        host = %host.name,
                        token = %digest::fingerprint(token.as_bytes()),
                        reason = %rejection.reason,
                        "room join refused: the token does not verify"
                    );
                    return Reply::refused(id, &Refusal::token(&rejection).at_join());
                }
            }
        }
        (None, None, None) if sha256.is_some() => {
            shared.metrics.room_check(RoomCheck::Error(RoomError::UnknownToken));
            return Reply::error(
                id,
                ErrorCode::UnknownToken,
                "no verified token with this token_sha256 is cached for this host; send `token` instead",
            );
        }
        (None, None, None) => Login::None,
    };
    // A session whose token, or user, was revoked since its login joins no more rooms. A
    // remembered login names both; the session's fields name only the user (context.user.id, else
    // sub), so a login the daemon no longer remembers escapes a revoked jti (docs/SCALING.md).
    let now = unix_now();
    let refused = match &login {
        Login::Remembered(login) => revoked(shared, login, now).map(|r| (r, login.fingerprint().to_owned())),
        Login::Session(fields) => {
            let user = session_user(
                fields.jitsi_meet_context_user.as_ref(),
                fields.jitsi_meet_domain.as_ref(),
            );
            revoked_parts(shared, None, user.as_deref(), now).map(|r| (r, "session".to_owned()))
        }
        Login::None => None,
    };
    if let Some((rejection, token)) = refused {
        shared.metrics.room_check(RoomCheck::TokenRefused(&rejection.reason));
        tracing::info!(
            host = %host.name,
            room = %room.room,
            token = %token,
            reason = %rejection.reason,
            detail = rejection.detail.as_deref().unwrap_or(""),
            "room join refused"
        );
        return Reply::refused(id, &Refusal::token(&rejection).at_join());
    }
    let session = match &login {
        Login::Remembered(login) => login.room_session(prefix),
        Login::Session(fields) => RoomSession {
            has_token: true,
            room: fields.jitsi_meet_room.as_ref(),
            sub: fields.jitsi_meet_domain.as_ref(),
            context_room: fields.jitsi_meet_context_room.as_ref(),
            tenant: fields.jitsi_meet_str_tenant.as_ref(),
            query_prefix: prefix,
        },
        Login::None => RoomSession {
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
        RoomDecision::Allow { tenant_mismatch } => {
            shared.metrics.room_check(RoomCheck::Allowed);
            Reply::new(id, true).with("tenant_mismatch", tenant_mismatch)
        }
        RoomDecision::Deny { denial, detail } => {
            shared.metrics.room_check(RoomCheck::Denied(&denial));
            tracing::info!(
                host = %host.name,
                room = %room.room,
                token = %match &login {
                    Login::Remembered(login) => login.fingerprint(),
                    Login::Session(_) => "session",
                    Login::None => "none",
                },
                reason = denial.text(),
                detail = %detail,
                "room join refused"
            );
            Reply::refused(id, &Refusal::room(&denial, &detail))
        }
    }
}
