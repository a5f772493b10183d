//! `auth`: a login attempt.

use std::sync::Arc;

use serde_json::Value;

use crate::clock::unix_now;
use crate::daemon::hosts::Host;
use crate::daemon::login::{AcceptedLogin, ROOM_ONLY};
use crate::daemon::state::{Shared, Stats};
use crate::digest;
use crate::protocol::{Auth, Refusal, Reply};
use crate::token::{Accepted, AuthRequest, Purpose, Reason, Rejection};

pub(super) async fn auth(shared: &Shared, id: Value, auth: Auth<'_>) -> Reply {
    let Some(host) = shared.registry.get(&auth.host) else {
        return Reply::unknown_host(id, &auth.host);
    };
    let verdict = verify(
        shared,
        &host,
        auth.token.as_deref(),
        auth.public_key.as_deref(),
        auth.context_required,
        Purpose::Login,
    )
    .await;
    match verdict {
        Ok(None) => {
            tracing::debug!(host = %host.name, "anonymous login accepted");
            Reply::new(id, true).with("anonymous", true)
        }
        Ok(Some(login)) => {
            tracing::debug!(host = %host.name, token = %login.fingerprint(), "token accepted");
            Reply::prepared(id, login)
        }
        Err(rejection) => {
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

/// Verifies `token` for `host`, through the remembered logins. `Ok(None)` is an anonymous login.
///
/// A login remembered under this host's settings answers a login until the token's `exp`. What is
/// verified is remembered; a token verified with a session's own `public_key`, or for a room join
/// (times not checked), is remembered for room checks only: that verdict belongs to the session,
/// not to the host.
pub(super) async fn verify(
    shared: &Shared,
    host: &Host,
    token: Option<&str>,
    public_key: Option<&str>,
    context_required: bool,
    purpose: Purpose,
) -> Result<Option<Arc<AcceptedLogin>>, Rejection> {
    let sha256 = token.map(|t| digest::sha256(t.as_bytes())); // hashed once: it is the memory's key too
    let reusable = public_key.is_none() && purpose == Purpose::Login;
    if reusable && let Some(sha256) = &sha256 {
        if let Some(hit) = shared.logins.for_login(host.generation, sha256) {
            Stats::bump(&shared.stats.cache_hits);
            // `context` is the last check of the pipeline, so a remembered login passed all the others.
            if context_required && !hit.has_context() {
                return Err(Rejection::new(Reason::ContextRequired));
            }
            return Ok(Some(hit));
        }
        Stats::bump(&shared.stats.cache_misses);
    }
    let request = AuthRequest {
        token,
        public_key,
        context_required,
        sha256,
        purpose,
    };
    let now = unix_now();
    // One await of the verifier, so that its future is held once in this one.
    match host.verifier.verify(&request, now).await? {
        Accepted::Anonymous => Ok(None),
        Accepted::Token(verified) => {
            let generation = if reusable { host.generation } else { ROOM_ONLY };
            let login = AcceptedLogin::new(&verified, generation, shared.logins.valid_for(verified.exp(), now));
            let sha256 = verified.sha256;
            drop(verified); // its claims tree is freed here, on the thread that built it
            Ok(Some(shared.logins.remember(sha256, login)))
        }
    }
}
