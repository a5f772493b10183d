//! An API service that serves only the current participants of a meeting: what an API developer
//! writes next to a Jitsi deployment running token-sidecar. It does not link token-sidecar; it
//! uses the daemon's two HTTP endpoints and an ordinary JOSE library (jsonwebtoken).
//!
//! ```text
//! api_service --listen 127.0.0.1:8080 \
//!     --jwks http://127.0.0.1:5290/.well-known/jwks.json \
//!     --introspect http://127.0.0.1:5290/v1/introspect \
//!     --introspect-secret-file /etc/token-sidecar/introspect.secret [--aud my-api]
//! curl -H "Authorization: Bearer $ACCESS_TOKEN" http://127.0.0.1:8080/whoami
//! curl -H "Authorization: Bearer $ACCESS_TOKEN" "http://127.0.0.1:8080/whoami?room=room1@conference.meet.example.com"
//! ```
//!
//! With `?room=<room JID>`, the token must also be for that room (a service serving one meeting
//! must not accept a participant of another): 403 otherwise.
//!
//! `GET /whoami` checks the token twice:
//! 1. offline, with the issuer's public keys (JWKS): signature, `exp`, `nbf`, `aud` — cheap, and
//!    refuses forged or expired tokens without asking anyone (401);
//! 2. by introspection: is the holder still in the room right now? A token stays valid for its
//!    lifetime after its holder left; only the daemon knows who is present (403 when not).
//!
//! Answers: 200 `{"user":…,"room":…,"occupant":{room,jid,nick,role,affiliation}}`,
//! 401/403 `{"error":"…"}`, 502 when introspection cannot be asked.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokio::sync::{Mutex, RwLock};

/// An unknown kid refetches the JWKS at most this often, so junk tokens cannot make us hammer
/// the key server.
const MIN_REFETCH: Duration = Duration::from_secs(10);
/// How long the daemon may take to answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

const USAGE: &str =
    "usage: api_service --listen ADDR --jwks URL --introspect URL --introspect-secret-file FILE [--aud AUDIENCE]";

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("{USAGE}")]
    Usage,
    #[error("--listen {0:?} is not an address such as 127.0.0.1:8080")]
    BadListen(String),
    #[error("cannot read {path}: {source}")]
    SecretFile { path: String, source: std::io::Error },
    #[error("{0} is empty")]
    EmptySecret(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// Why the JWKS could not be had.
#[derive(Debug, thiserror::Error)]
enum JwksError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("not a JWKS: {0}")]
    Json(#[from] serde_json::Error),
}

/// Why introspection gave no answer.
#[derive(Debug, thiserror::Error)]
enum IntrospectError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
}

struct Settings {
    listen: SocketAddr,
    jwks_url: String,
    introspect_url: String,
    secret: String,
    audience: Option<String>,
}

struct App {
    settings: Settings,
    http: reqwest::Client,
    keys: RwLock<JwkSet>,
    /// When the JWKS was last fetched; held while fetching, so one fetch runs at a time.
    last_fetch: Mutex<Option<Instant>>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("api_service: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), StartError> {
    let settings = parse_args(std::env::args().skip(1))?;
    let mut client = reqwest::Client::builder().timeout(HTTP_TIMEOUT);
    if is_loopback(&settings.introspect_url) && is_loopback(&settings.jwks_url) {
        // The daemon runs on this machine: a proxy must not see the tokens or the secret.
        client = client.no_proxy();
    }
    let app = Arc::new(App {
        settings,
        http: client.build()?,
        keys: RwLock::new(JwkSet { keys: Vec::new() }),
        last_fetch: Mutex::new(None),
    });
    // Start even when the daemon is not up yet: the first token's unknown kid fetches again.
    if let Err(error) = app.refetch_keys().await {
        eprintln!("api_service: JWKS {} not loaded yet: {error}", app.settings.jwks_url);
    }

    let listener = tokio::net::TcpListener::bind(app.settings.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: app.settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    println!("listening on {addr}");
    let router = Router::new().route("/whoami", get(whoami)).with_state(app);
    axum::serve(listener, router).await.map_err(StartError::Serve)
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Settings, StartError> {
    let (mut listen, mut jwks, mut introspect, mut secret_file, mut audience) = (None, None, None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(StartError::Usage)?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().map_err(|_| StartError::BadListen(value))?),
            "--jwks" => jwks = Some(value),
            "--introspect" => introspect = Some(value),
            "--introspect-secret-file" => secret_file = Some(value),
            "--aud" => audience = Some(value),
            _ => return Err(StartError::Usage),
        }
    }
    let (Some(listen), Some(jwks_url), Some(introspect_url), Some(secret_file)) =
        (listen, jwks, introspect, secret_file)
    else {
        return Err(StartError::Usage);
    };
    let secret = std::fs::read_to_string(&secret_file).map_err(|source| StartError::SecretFile {
        path: secret_file.clone(),
        source,
    })?;
    // A header value cannot hold a newline, and editors add one.
    let secret = secret.trim().to_owned();
    if secret.is_empty() {
        return Err(StartError::EmptySecret(secret_file));
    }
    Ok(Settings {
        listen,
        jwks_url,
        introspect_url,
        secret,
        audience,
    })
}

/// `GET /whoami`: who the bearer of a current participant's access token is.
async fn whoami(
    State(app): State<Arc<App>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = bearer_token(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "missing bearer token");
    };
    let claims = match app.verify(token).await {
        Ok(claims) => claims,
        Err(reason) => return error(StatusCode::UNAUTHORIZED, reason),
    };
    if let Some(wanted) = query.get("room")
        && claims.pointer("/occupant/room").and_then(Value::as_str) != Some(wanted.as_str())
    {
        return error(StatusCode::FORBIDDEN, "the token is for another room");
    }
    match app.introspect(token).await {
        Ok(true) => {}
        Ok(false) => return error(StatusCode::FORBIDDEN, "not a current participant"),
        Err(reason) => {
            eprintln!("api_service: introspection failed: {reason}");
            return error(StatusCode::BAD_GATEWAY, "introspection unavailable");
        }
    }
    let occupant = claims.get("occupant").cloned().unwrap_or(Value::Null);
    // The muc door's tokens name the user by JID; the extdisco door's carry Jitsi's context.
    let user = claims
        .pointer("/context/user")
        .or_else(|| claims.get("userJid"))
        .or_else(|| occupant.get("jid"))
        .cloned()
        .unwrap_or(Value::Null);
    let room = claims
        .get("room")
        .or_else(|| occupant.get("room"))
        .cloned()
        .unwrap_or(Value::Null);
    Json(json!({"user": user, "room": room, "occupant": occupant})).into_response()
}

impl App {
    /// The claims of `token` if one of the issuer's keys signed it and it is in its lifetime.
    async fn verify(&self, token: &str) -> Result<Value, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        let kid = header.kid.as_deref().ok_or("the token has no kid")?;
        let jwk = self.key(kid).await.ok_or("unknown signing key")?;
        let alg = jwk_algorithm(&jwk).ok_or("unusable signing key")?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| "unusable signing key")?;
        // Only the JWK's own algorithm: a token naming HS256 cannot use the public key as a secret.
        let mut validation = Validation::new(alg);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &self.settings.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        match jsonwebtoken::decode::<Value>(token, &key, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired",
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => "token not valid yet",
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "bad signature",
                jsonwebtoken::errors::ErrorKind::InvalidAudience => "wrong audience",
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => "algorithm not accepted",
                _ => "invalid token",
            }),
        }
    }

    /// The key with this kid, refetching the JWKS when it is unknown (keys rotate).
    async fn key(&self, kid: &str) -> Option<Jwk> {
        if let Some(jwk) = self.keys.read().await.find(kid) {
            return Some(jwk.clone());
        }
        let mut last_fetch = self.last_fetch.lock().await;
        // Someone may have fetched while we waited for the lock.
        if let Some(jwk) = self.keys.read().await.find(kid) {
            return Some(jwk.clone());
        }
        if last_fetch.is_some_and(|at| at.elapsed() < MIN_REFETCH) {
            return None;
        }
        *last_fetch = Some(Instant::now());
        drop(last_fetch);
        if let Err(error) = self.refetch_keys().await {
            eprintln!("api_service: JWKS refetch failed: {error}");
        }
        self.keys.read().await.find(kid).cloned()
    }

    async fn refetch_keys(&self) -> Result<(), JwksError> {
        let response = self.http.get(&self.settings.jwks_url).send().await?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        let set: JwkSet = serde_json::from_slice(&response.bytes().await?)?;
        *self.keys.write().await = set;
        Ok(())
    }

    /// Whether the daemon says the token's holder is in the room now.
    async fn introspect(&self, token: &str) -> Result<bool, IntrospectError> {
        let response = self
            .http
            .post(&self.settings.introspect_url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.settings.secret))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("token={}", form_encode(token)))
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(IntrospectError::Status(response.status().as_u16()));
        }
        let answer: Value = serde_json::from_slice(&response.bytes().await?)?;
        Ok(answer.get("active") == Some(&Value::Bool(true)))
    }
}

/// The algorithm a JWK is for: its `alg`, else its key type's usual one. Never an HMAC one.
fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(alg), _) => alg.to_string().parse().ok()?,
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
        (None, _) => return None,
    };
    (!matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)).then_some(alg)
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `application/x-www-form-urlencoded` value: everything but unreserved characters escaped.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}
