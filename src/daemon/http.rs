//! The HTTP listener for API services (`[http] listen`): the public keys of the access-token
//! issuers as a JWKS, RFC 7662 introspection, and a health check; and for Prometheus, the
//! daemon's metrics (`GET /metrics`, unless `[http] metrics = false`). axum on hyper; thin over
//! [`crate::access`] and [`super::scrape`].

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

use super::metrics::Introspected;
use super::scrape;
use super::state::{DAEMON_VERSION, Shared};
use crate::access::introspect::{Introspection, introspect};
use crate::clock::unix_now;
use crate::config::HttpSettings;

/// The largest request body read: a form with one token.
const MAX_BODY_BYTES: usize = 64 * 1024;

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
        .route("/v1/introspect", post(introspection));
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
    // Up, but an issuer whose settings were refused hands out no tokens: say so.
    let degraded = issuers
        .as_object()
        .is_some_and(|all| all.values().any(|i| i["ready"] == false));
    axum::Json(json!({
        "status": if degraded { "degraded" } else { "ok" },
        "daemon": DAEMON_VERSION,
        "issuers": issuers,
        "occupancy": {"rooms": counts.rooms, "occupants": counts.occupants},
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
    /// `None` when the caller may introspect, else the refusal to send.
    fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        let Some(secret) = &self.secret else {
            if self.open {
                return None;
            }
            return Some(error(
                StatusCode::FORBIDDEN,
                "access_denied",
                "introspection is disabled: set [http] introspect_secret",
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
                "introspection needs Authorization: Bearer <introspect_secret>",
            )),
        }
    }
}

async fn introspection(
    State(app): State<App>,
    headers: HeaderMap,
    form: Result<Form<IntrospectForm>, FormRejection>,
) -> Response {
    if let Some(refused) = app.refusal(&headers) {
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
    let answer = introspect(&issuers, app.shared.occupancy.as_ref(), &token, unix_now()).await;
    match &answer {
        Introspection::Active(_) => app.shared.metrics.introspection(Introspected::Active),
        Introspection::Inactive(why) => {
            app.shared.metrics.introspection(Introspected::Inactive(why));
            tracing::debug!(token = %crate::digest::fingerprint(token.as_bytes()), "introspection: inactive: {why}");
        }
    }
    axum::Json(answer.to_json()).into_response()
}
