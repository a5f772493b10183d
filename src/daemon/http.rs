//! The HTTP listener for API services (`[http] listen`): the public keys of the access-token
//! issuers as a JWKS, RFC 7662 introspection, revocation of token ids and users, and a health
//! check; and for Prometheus, the daemon's metrics (`GET /metrics`, unless `[http] metrics =
//! false`). axum on hyper; thin over [`crate::access`] and [`super::scrape`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};

use super::metrics::{Introspected, Revocation, RevokedKind};
use super::scrape;
use super::state::{DAEMON_VERSION, Shared};
use crate::access::Revoked;
use crate::access::introspect::{Introspection, introspect};
use crate::clock::unix_now;
use crate::config::HttpSettings;

/// The largest request body read: a form with one token.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest token id or user id `POST /v1/revoke` takes, in bytes.
pub const MAX_REVOKED_ID_BYTES: usize = 1024;
/// How long a revocation lasts without `until`: 24 hours.
pub const DEFAULT_REVOCATION_SECS: i64 = 24 * 3600;
/// The furthest ahead `until` may be: 366 days.
pub const MAX_REVOCATION_SECS: i64 = 366 * 24 * 3600;

#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    /// SHA-256 of the bearer secret; compared in constant time.
    secret: Option<[u8; 32]>,
    open: bool,
    /// What `GET /metrics` encodes.
    metrics: Arc<Registry>,
}

/// The routes, over the daemon's state.
pub fn router(shared: Arc<Shared>, settings: &HttpSettings) -> Router {
    let app = App {
        metrics: Arc::new(scrape::registry(shared.clone())),
        shared,
        secret: settings
            .introspect_secret
            .as_deref()
            .map(|s| crate::digest::sha256(s.as_bytes())),
        open: settings.introspect_without_secret,
    };
    let mut router = Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(healthz))
        .route("/v1/introspect", post(introspection))
        .route("/v1/revoke", post(revoke));
    if settings.metrics {
        router = router.route("/metrics", get(metrics));
    }
    router.layer(DefaultBodyLimit::max(MAX_BODY_BYTES)).with_state(app)
}

/// Binds `addr` (at start, so that a taken port stops the daemon with a clear error).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
        tracing::error!("HTTP listener stopped: {e}");
    }
}

async fn jwks(State(app): State<App>) -> Response {
    let keys: Vec<Value> = app
        .shared
        .issuers
        .ready()
        .iter()
        .flat_map(|i| i.jwks().iter().cloned())
        .collect();
    let mut response = axum::Json(json!({ "keys": keys })).into_response();
    // Services may cache it briefly; a rotation publishes the new key before it signs.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
    response
}

async fn healthz(State(app): State<App>) -> Response {
    let counts = app.shared.occupancy.counts();
    let issuers = app.shared.issuers.to_json();
    // Up, but an issuer whose settings were refused hands out no tokens, or the shared store is
    // away (other shards' occupants answer inactive): say so.
    let store = &app.shared.store;
    let degraded = issuers
        .as_object()
        .is_some_and(|all| all.values().any(|i| i["ready"] == false))
        || store.reachability() == crate::store::Reachability::Down;
    axum::Json(json!({
        "status": if degraded { "degraded" } else { "ok" },
        "daemon": DAEMON_VERSION,
        "issuers": issuers,
        "occupancy": {"rooms": counts.rooms, "occupants": counts.occupants},
        "store": {"kind": store.kind().name(), "state": store.reachability().name()},
    }))
    .into_response()
}

/// Prometheus' scrape: OpenMetrics text when the `Accept` header names it, else the text format
/// 0.0.4. No secret: the listener must stay on loopback or a private network (docs/METRICS.md).
async fn metrics(State(app): State<App>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    match scrape::render(&app.metrics, scrape::wants_openmetrics(accept)) {
        Ok((content_type, body)) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        // Not reached: encoding into a String does not fail.
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[derive(Deserialize)]
struct IntrospectForm {
    token: Option<String>,
}

fn error(status: StatusCode, code: &str, text: &str) -> Response {
    let mut r = (status, axum::Json(json!({"error": code, "error_description": text}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

impl App {
    /// `None` when the caller may use `endpoint` ("introspection", "revocation"), else the refusal
    /// to send. Both take the same secret, and both are open without one only where
    /// `introspect_without_secret` allows it (a loopback listener).
    fn refusal(&self, headers: &HeaderMap, endpoint: &str) -> Option<Response> {
        let Some(secret) = &self.secret else {
            if self.open {
                return None;
            }
            return Some(error(
                StatusCode::FORBIDDEN,
                "access_denied",
                &format!("{endpoint} is disabled: set [http] introspect_secret"),
            ));
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
            .map(|t| crate::digest::sha256(t.trim().as_bytes()));
        match presented {
            Some(p) if aws_lc_rs::constant_time::verify_slices_are_equal(&p, secret).is_ok() => None,
            _ => Some(error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                &format!("{endpoint} needs Authorization: Bearer <introspect_secret>"),
            )),
        }
    }
}

async fn introspection(
    State(app): State<App>,
    headers: HeaderMap,
    form: Result<Form<IntrospectForm>, FormRejection>,
) -> Response {
    if let Some(refused) = app.refusal(&headers, "introspection") {
        app.shared.metrics.introspection(Introspected::Unauthorized);
        return refused;
    }
    let Some(token) = form.ok().and_then(|Form(f)| f.token).filter(|t| !t.is_empty()) else {
        app.shared.metrics.introspection(Introspected::BadRequest);
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected a form body with token=<access token>",
        );
    };
    let issuers = app.shared.issuers.ready();
    let answer = introspect(
        &issuers,
        app.shared.revocations.as_ref(),
        app.shared.occupancy.as_ref(),
        &token,
        unix_now(),
    )
    .await;
    match &answer {
        Introspection::Active(_) => app.shared.metrics.introspection(Introspected::Active),
        Introspection::Inactive(why) => {
            app.shared.metrics.introspection(Introspected::Inactive(why));
            tracing::debug!(token = %crate::digest::fingerprint(token.as_bytes()), "introspection: inactive: {why}");
        }
    }
    axum::Json(answer.to_json()).into_response()
}

/// What `POST /v1/revoke` was asked: what to revoke, until when.
#[derive(Debug, PartialEq)]
struct RevokeRequest {
    what: Revoked,
    until: i64,
}

/// The form fields of `POST /v1/revoke` at `now`: exactly one of `jti` or `user`, each at most
/// [`MAX_REVOKED_ID_BYTES`] bytes, not empty, no control characters; `until` in whole seconds
/// since 1970, after `now` and at most [`MAX_REVOCATION_SECS`] ahead (default
/// [`DEFAULT_REVOCATION_SECS`] ahead). `Err` is the text for the 400.
fn read_revoke(fields: Vec<(String, String)>, now: i64) -> Result<RevokeRequest, String> {
    let (mut jti, mut user, mut until) = (None, None, None);
    for (name, value) in fields {
        let slot = match name.as_str() {
            "jti" => &mut jti,
            "user" => &mut user,
            "until" => &mut until,
            _ => {
                let shown: String = name.chars().take(32).flat_map(char::escape_default).collect();
                return Err(format!(
                    "unknown field \"{shown}\": expected jti or user, and optionally until"
                ));
            }
        };
        if slot.replace(value).is_some() {
            return Err(format!("{name} is given twice"));
        }
    }
    let checked = |name: &str, value: String| -> Result<String, String> {
        if value.is_empty() {
            Err(format!("{name} is empty"))
        } else if value.len() > MAX_REVOKED_ID_BYTES {
            Err(format!("{name} is longer than {MAX_REVOKED_ID_BYTES} bytes"))
        } else if value.chars().any(char::is_control) {
            Err(format!("{name} holds a control character"))
        } else {
            Ok(value)
        }
    };
    let what = match (jti, user) {
        (Some(jti), None) => Revoked::TokenId(checked("jti", jti)?),
        (None, Some(user)) => Revoked::User(checked("user", user)?),
        _ => return Err("give exactly one of jti=<token id> or user=<user id>".into()),
    };
    let until = match until {
        None => now + DEFAULT_REVOCATION_SECS,
        Some(text) => {
            let until: i64 = text
                .parse()
                .ok()
                .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or("until must be whole seconds since 1970 (digits only)")?;
            if until <= now {
                return Err(format!("until {until} is not in the future (now is {now})"));
            }
            if until - now > MAX_REVOCATION_SECS {
                return Err(format!(
                    "until {until} is more than {} days ahead",
                    MAX_REVOCATION_SECS / 86_400
                ));
            }
            until
        }
    };
    Ok(RevokeRequest { what, until })
}

/// `POST /v1/revoke`: `jti=<token id>` or `user=<user id>`, optionally `until=<unix seconds>`.
async fn revoke(
    State(app): State<App>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if let Some(refused) = app.refusal(&headers, "revocation") {
        app.shared.metrics.revocation(Revocation::Unauthorized);
        return refused;
    }
    let now = unix_now();
    let request = form
        .map_err(|_| {
            "expected a form body (application/x-www-form-urlencoded) with jti=<token id> or user=<user id>, and optionally until=<unix seconds>".to_owned()
        })
        .and_then(|Form(fields)| read_revoke(fields, now));
    let RevokeRequest { what, until } = match request {
        Ok(request) => request,
        Err(text) => {
            app.shared.metrics.revocation(Revocation::BadRequest);
            return error(StatusCode::BAD_REQUEST, "invalid_request", &text);
        }
    };
    let (kind, name, id) = match &what {
        Revoked::TokenId(jti) => (RevokedKind::TokenId, "jti", jti.clone()),
        Revoked::User(user) => (RevokedKind::User, "user", user.clone()),
    };
    let fingerprint = crate::digest::fingerprint(id.as_bytes());
    let revocations = app.shared.revocations.as_ref();
    let shared = match revocations.revoke(what.clone(), until).await {
        Ok(()) => revocations.is_shared(),
        // The store could not take it: in force here all the same when the local copy has it
        // until then.
        Err(e) if revocations.is_revoked(&what, until - 1) => {
            tracing::warn!(kind = name, id = %fingerprint, until, "revocation in force on this daemon only: {e}");
            false
        }
        Err(e) => {
            app.shared.metrics.revocation(Revocation::Unavailable);
            tracing::error!(kind = name, id = %fingerprint, until, "revocation not recorded: {e}");
            let mut refused = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                &format!("the revocation was not recorded: {e}"),
            );
            refused
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            return refused;
        }
    };
    app.shared.metrics.revocation(if shared {
        Revocation::Shared(kind)
    } else {
        Revocation::Local(kind)
    });
    tracing::info!(kind = name, id = %fingerprint, until, shared, "revoked");
    axum::Json(json!({"revoked": {name: id}, "until": until, "shared": shared})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn revoke_forms_are_bounded() {
        let now = 1_800_000_000;
        let read = |pairs: &[(&str, &str)]| read_revoke(form(pairs), now);
        assert_eq!(
            read(&[("jti", "abc")]),
            Ok(RevokeRequest {
                what: Revoked::TokenId("abc".into()),
                until: now + DEFAULT_REVOCATION_SECS
            })
        );
        assert_eq!(
            read(&[("user", "alice@example.com"), ("until", "1800000060")]),
            Ok(RevokeRequest {
                what: Revoked::User("alice@example.com".into()),
                until: 1_800_000_060
            })
        );
        let refused = |pairs: &[(&str, &str)], text: &str| {
            let got = read(pairs).expect_err("refused");
            assert!(got.contains(text), "{pairs:?}: {got}");
        };
        refused(&[], "exactly one of");
        refused(&[("jti", "a"), ("user", "b")], "exactly one of");
        refused(&[("jti", "a"), ("jti", "b")], "jti is given twice");
        refused(&[("jti", "")], "jti is empty");
        refused(&[("user", "a\nb")], "user holds a control character");
        let long = "x".repeat(MAX_REVOKED_ID_BYTES + 1);
        refused(&[("jti", &long)], "longer than 1024 bytes");
        assert!(read(&[("jti", &long[1..])]).is_ok(), "1024 bytes is the limit");
        refused(&[("token", "x")], "unknown field \"token\"");
        refused(&[("jti", "a"), ("until", "soon")], "whole seconds");
        refused(&[("jti", "a"), ("until", "+1800000060")], "whole seconds");
        refused(&[("jti", "a"), ("until", "1800000000")], "not in the future");
        refused(&[("jti", "a"), ("until", "1900000000")], "more than 366 days ahead");
        refused(&[("jti", "a"), ("until", "99999999999999999999999")], "whole seconds");
    }
}
