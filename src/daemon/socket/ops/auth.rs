//! `auth`: a login attempt.

use std::sync::Arc;

use serde_json::Value;

use crate::access::Revoked;
use crate::clock::unix_now;
use crate::daemon::hosts::{Host, Unavailable};
use crate::daemon::login::{AcceptedLogin, ROOM_ONLY};
use crate::daemon::metrics::{HostError, Login};
use crate::daemon::state::{CacheUser, Shared};
use crate::digest;
use crate::protocol::{Auth, ErrorCode, Refusal, Reply};
use crate::token::{Accepted, AuthRequest, Purpose, Reason, Rejection};

pub(super) async fn auth(shared: &Shared, id: Value, auth: Auth<'_>) -> Reply {
    let host = match shared.registry.get(&auth.host) {
        Ok(host) => host,
        Err(unavailable) => {
            shared.metrics.login(Login::Error(host_error(&unavailable)));
            return host_unavailable(id, &auth.host, &unavailable);
        }
    };
    let request = AuthRequest {
        token: auth.token.as_deref(),
        public_key: auth.public_key.as_deref(),
        context_required: auth.context_required,
        ..AuthRequest::default()
    };
    let verdict = verify(shared, &host, request).await;
    match verdict {
        Ok(None) => {
            shared.metrics.login(Login::Anonymous);
            tracing::debug!(host = %host.name, "anonymous login accepted");
            Reply::new(id, true).with("anonymous", true)
        }
        Ok(Some(login)) => {
            shared.metrics.login(Login::Accepted);
            tracing::debug!(host = %host.name, token = %login.fingerprint(), "token accepted");
            Reply::prepared(id, login)
        }
        Err(rejection) => {
            shared.metrics.login(Login::Refused(&rejection.reason));
            tracing::info!(
                host = %host.name,
                token = %auth.token.as_deref().map_or_else(|| "none".into(), |t| digest::fingerprint(t.as_bytes())),
                reason = %rejection.reason,
                detail = rejection.detail.as_deref().unwrap_or(""),
                tenant = auth.prefix.as_deref().unwrap_or(""),
                room = auth.room.as_deref().unwrap_or(""),
                user_agent = auth.user_agent.as_deref().unwrap_or(""),
                "login refused"
            );
            Reply::refused(id, &Refusal::token(&rejection))
        }
    }
}

/// Why a host cannot answer, as the metrics name it.
pub(super) fn host_error(unavailable: &Unavailable) -> HostError {
    match unavailable {
        Unavailable::Unknown => HostError::UnknownHost,
        Unavailable::Refused(_) => HostError::SettingsRefused,
    }
}

/// The error reply to a login or room check for a host that cannot answer it. A host whose
/// settings were refused answers nothing, not even from remembered logins: its settings may have
/// been replaced because a secret leaked. The shim treats the error as the service failing
/// (`temporary-auth-failure`, `service-unavailable`) and logs its text at error level; the
/// daemon logged the refused settings at error level when the `hello` came.
pub(super) fn host_unavailable(id: Value, name: &str, unavailable: &Unavailable) -> Reply {
    match unavailable {
        Unavailable::Unknown => Reply::unknown_host(id, name),
        Unavailable::Refused(why) => {
            tracing::debug!(host = %name, "request refused: the host's settings were refused");
            Reply::error(
                id,
                ErrorCode::SettingsRefused,
                format!("{why}; until a hello brings valid settings, logins and room checks on this host are refused"),
            )
        }
    }
}

/// Verifies `request` for `host`, through the remembered logins. `Ok(None)` is an anonymous login.
/// The token is hashed here unless the caller already did (`request.sha256`).
///
/// A login remembered under this host's settings answers a login until the token's `exp`. What is
/// verified is remembered; a token verified with a session's own `public_key`, or for a room join
/// (times not checked), is remembered for room checks only: that verdict belongs to the session,
/// not to the host.
///
/// Revocation is checked last, on a remembered login as on a verified one: a token whose `jti`
/// or user is revoked is refused ([`Reason::Revoked`]), though it stays remembered (the
/// revocation may end before the token does).
pub(super) async fn verify(
    shared: &Shared,
    host: &Host,
    mut request: AuthRequest<'_>,
) -> Result<Option<Arc<AcceptedLogin>>, Rejection> {
    // Hashed once: the memory's key, and the verifier's fingerprint.
    if request.sha256.is_none() {
        request.sha256 = request.token.map(|t| digest::sha256(t.as_bytes()));
    }
    let reusable = request.public_key.is_none() && request.purpose == Purpose::Login;
    if reusable && let Some(sha256) = &request.sha256 {
        if let Some(hit) = shared.logins.for_login(host.generation, sha256) {
            shared.stats.cache_lookup(CacheUser::Auth, true);
            // `context` is the last check of the pipeline, so a remembered login passed all the others.
            if request.context_required && !hit.has_context() {
                return Err(Rejection::new(Reason::ContextRequired));
            }
            return match revoked(shared, &hit, unix_now()) {
                Some(rejection) => Err(rejection),
                None => Ok(Some(hit)),
            };
        }
        shared.stats.cache_lookup(CacheUser::Auth, false);
    }
    let now = unix_now();
    // One await of the verifier, so that its future is held once in this one.
    let login = match host.verifier.verify(&request, now).await? {
        Accepted::Anonymous => return Ok(None),
        Accepted::Token(verified) => {
            let generation = if reusable { host.generation } else { ROOM_ONLY };
            // The claims tree is freed at the end of this arm, on the thread that built it; the
            // memory keeps only the reply text and the room claims.
            shared.logins.remember(&verified, generation, now)
        }
    };
    match revoked(shared, &login, now) {
        Some(rejection) => Err(rejection),
        None => Ok(Some(login)),
    }
}

/// The refusal of `login` at `now` when its token's `jti`, or its user (`context.user.id`, else
/// `sub`), is revoked. The detail says which, never the value.
pub(super) fn revoked(shared: &Shared, login: &AcceptedLogin, now: i64) -> Option<Rejection> {
    revoked_parts(shared, login.jti(), login.user(), now)
}

/// The refusal of a login whose token has this `jti` and `user` when either is revoked at `now`.
pub(super) fn revoked_parts(shared: &Shared, jti: Option<&str>, user: Option<&str>, now: i64) -> Option<Rejection> {
    let revocations = shared.revocations.as_ref();
    if let Some(jti) = jti
        && revocations.is_revoked(&Revoked::TokenId(jti.to_owned()), now)
    {
        return Some(Rejection::with(Reason::Revoked, "the token's jti is revoked"));
    }
    let user = user?;
    revocations.is_revoked(&Revoked::User(user.to_owned()), now).then(|| {
        Rejection::with(
            Reason::Revoked,
            "the token's user (context.user.id, else sub) is revoked",
        )
    })
}
