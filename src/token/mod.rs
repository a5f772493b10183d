//! The verification pipeline (REFERENCE §3): from a token, or none, to the session a login gets.
//!
//! Steps run in the reference's order and the first failure ends the attempt with the reference's
//! text: choose the key (a pre-fetched `public_key`, the key server / key set by `kid`, or the
//! shared secret), split and decode, `typ`, `alg`, signature, `exp`/`nbf` types and times, `iss`,
//! `aud`, `room`, required context.

mod mint;
mod reason;

pub use mint::{Minter, default_claims, set_claim, unset_claim};

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use jsonwebtoken::Algorithm;
use serde::Serialize;
use serde_json::{Map, Value};

pub use reason::Reason;

use crate::config::{ConfigError, HostSettings, parse_algorithm};
use crate::keys::{JwksSource, KeyError, KeyServer, KeySourceStats, VerifyingKey};
use crate::room::RoomSession;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// base64url that accepts the segment with or without `=` padding, as Lua's decoder does.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the caller knows of the login attempt.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthRequest<'a> {
    /// The token from `?token=` or `Authorization: Bearer`; `Some("")` for `?token=` (which is
    /// verified and fails, as in the reference, even with `allow_empty_token`).
    pub token: Option<&'a str>,
    /// A PEM public key a `pre-jitsi-authentication-fetch-key` handler put on the session.
    pub public_key: Option<&'a str>,
    /// `session.contextRequired`: refuse tokens without a `context` claim.
    pub context_required: bool,
    /// The token's SHA-256 when the caller has it already (the daemon keys its cache by it).
    pub sha256: Option<[u8; 32]>,
}

/// A successful check.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// No token and `allow_empty_token`: an anonymous login with no token fields.
    Anonymous,
    Token(Box<VerifiedToken>),
}

/// A verified token: its header and claims as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// First 8 hex digits of the token's SHA-256: the only way a token appears in logs.
    pub fingerprint: String,
    /// The token's whole SHA-256, for callers that key caches by token.
    pub sha256: [u8; 32],
}

/// The session fields of REFERENCE §5, as the shim writes them onto the Prosody session.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SessionFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_room: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_domain: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_auth_issuer: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_str_tenant: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_context_user: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_context_group: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_context_features: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_context_room: Option<Value>,
}

/// [`SessionFields`] borrowed from the claims. Fields are declared in name order, so it serialises
/// to the same bytes as `serde_json::to_value(session_fields())` (whose maps are sorted).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SessionView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_auth_issuer: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_context_features: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_context_group: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_context_room: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_context_user: Option<ContextUser<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_domain: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_room: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_str_tenant: Option<&'a Value>,
}

/// `jitsi_meet_context_user`: the `context.user` claim, or `{"id": user_id}` for a token without
/// `context` that has a top-level `user_id`.
#[derive(Debug, Clone, Copy)]
pub enum ContextUser<'a> {
    Claim(&'a Value),
    UserId(&'a Value),
}

impl ContextUser<'_> {
    fn to_value(self) -> Value {
        match self {
            ContextUser::Claim(user) => user.clone(),
            ContextUser::UserId(id) => serde_json::json!({ "id": id }),
        }
    }
}

impl Serialize for ContextUser<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            ContextUser::Claim(user) => user.serialize(serializer),
            ContextUser::UserId(id) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("id", id)?;
                map.end()
            }
        }
    }
}

impl VerifiedToken {
    fn context(&self) -> Option<&Map<String, Value>> {
        self.claims.get("context").and_then(Value::as_object)
    }

    fn context_field(&self, name: &str) -> Option<&Value> {
        self.context().and_then(|c| c.get(name)).filter(|v| !v.is_null())
    }

    fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// `exp` as whole seconds, when it is a number.
    pub fn exp(&self) -> Option<i64> {
        self.claims.get("exp").and_then(Value::as_f64).map(|f| f as i64)
    }

    pub fn session_fields(&self) -> SessionFields {
        let view = self.session_view();
        SessionFields {
            jitsi_meet_room: view.jitsi_meet_room.cloned(),
            jitsi_meet_domain: view.jitsi_meet_domain.cloned(),
            jitsi_meet_auth_issuer: view.jitsi_meet_auth_issuer.cloned(),
            jitsi_meet_str_tenant: view.jitsi_meet_str_tenant.cloned(),
            jitsi_meet_context_user: view.jitsi_meet_context_user.map(ContextUser::to_value),
            jitsi_meet_context_group: view.jitsi_meet_context_group.cloned(),
            jitsi_meet_context_features: view.jitsi_meet_context_features.cloned(),
            jitsi_meet_context_room: view.jitsi_meet_context_room.cloned(),
        }
    }

    /// The session fields borrowed from the claims, for writing a reply without copying them.
    pub fn session_view(&self) -> SessionView<'_> {
        let user = match self.context_field("user") {
            Some(user) => Some(ContextUser::Claim(user)),
            // Firebase-style tokens carry the user id at the top level.
            None if self.claims.get("context").is_none() => self
                .claims
                .get("user_id")
                .filter(|v| !v.is_null())
                .map(ContextUser::UserId),
            None => None,
        };
        SessionView {
            jitsi_meet_auth_issuer: self.claim("iss"),
            jitsi_meet_context_features: self.context_field("features"),
            jitsi_meet_context_group: self.context_field("group"),
            jitsi_meet_context_room: self.context_field("room"),
            jitsi_meet_context_user: user,
            jitsi_meet_domain: self.claim("sub"),
            jitsi_meet_room: self.claim("room"),
            jitsi_meet_str_tenant: self.context_field("tenant"),
        }
    }

    /// What the room rules need from this token, for a client that connected with URL tenant `prefix`.
    pub fn room_session<'a>(&'a self, query_prefix: &'a str) -> RoomSession<'a> {
        RoomSession {
            has_token: true,
            room: self.claim("room"),
            sub: self.claim("sub"),
            context_room: self.context_field("room"),
            tenant: self.context_field("tenant"),
            query_prefix,
        }
    }
}

/// A refused token: the reason the client sees, and for logs and `--explain` what went wrong in
/// more words (never the token itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: Option<String>,
}

impl Rejection {
    fn new(reason: Reason) -> Self {
        Rejection { reason, detail: None }
    }
    fn with(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: Some(detail.into()),
        }
    }
}

pub type Verdict = Result<Accepted, Rejection>;

/// One step of a check, recorded for `verify --explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub step: &'static str,
    pub passed: bool,
    pub note: String,
}

/// Where `verify_traced` records its steps; `None` costs nothing.
pub type Trace<'a> = Option<&'a mut Vec<Check>>;

fn record(trace: &mut Trace<'_>, step: &'static str, passed: bool, note: impl FnOnce() -> String) {
    if let Some(checks) = trace.as_deref_mut() {
        checks.push(Check {
            step,
            passed,
            note: note(),
        });
    }
}

/// Runs `check`; records its outcome; turns a failure into a rejection.
macro_rules! step {
    ($trace:expr, $name:literal, $result:expr, $ok_note:expr) => {
        match $result {
            Ok(value) => {
                record($trace, $name, true, || $ok_note);
                value
            }
            Err(rejection) => {
                let rejection: Rejection = rejection;
                record($trace, $name, false, || match &rejection.detail {
                    Some(detail) => format!("{}: {}", rejection.reason, detail),
                    None => rejection.reason.to_string(),
                });
                return Err(rejection);
            }
        }
    };
}

/// Verifies tokens for one host.
pub struct Verifier {
    settings: Arc<HostSettings>,
    secret: Option<VerifyingKey>,
    key_server: Option<KeyServer>,
    key_set: Option<JwksSource>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("host", &self.settings.host)
            .finish_non_exhaustive()
    }
}

enum KeyChoice {
    Owned(VerifyingKey),
    Shared(Arc<VerifyingKey>),
    Secret,
}

impl Verifier {
    pub fn new(settings: HostSettings) -> Result<Verifier, ConfigError> {
        let key_server = settings
            .asap_key_server
            .as_deref()
            .map(|url| KeyServer::new(url, settings.fetch.clone()))
            .transpose()
            .map_err(|e| ConfigError(format!("host {:?}: asap_key_server: {e}", settings.host)))?;
        let key_set = settings
            .cache_keys_url
            .as_deref()
            .map(|url| JwksSource::new(url, settings.fetch.clone()))
            .transpose()
            .map_err(|e| ConfigError(format!("host {:?}: cache_keys_url: {e}", settings.host)))?;
        let secret = settings.app_secret.as_deref().map(|s| VerifyingKey::hmac(s.as_bytes()));
        Ok(Verifier {
            settings: Arc::new(settings),
            secret,
            key_server,
            key_set,
        })
    }

    pub fn settings(&self) -> &HostSettings {
        &self.settings
    }

    /// Counters of the key server and the key set, when configured.
    pub fn key_stats(&self) -> (Option<KeySourceStats>, Option<KeySourceStats>) {
        (
            self.key_server.as_ref().map(KeyServer::stats),
            self.key_set.as_ref().map(JwksSource::stats),
        )
    }

    /// Loads the key set now, so the first login does not wait for it.
    pub async fn warm_up(&self) -> Result<(), KeyError> {
        if let Some(set) = &self.key_set {
            set.refresh().await?;
        }
        Ok(())
    }

    /// Checks a login attempt at `now` (seconds since 1970).
    pub async fn verify(&self, request: &AuthRequest<'_>, now: i64) -> Verdict {
        self.verify_traced(request, now, None).await
    }

    /// As [`Verifier::verify`], recording each step in `trace`.
    pub async fn verify_traced(&self, request: &AuthRequest<'_>, now: i64, mut trace: Trace<'_>) -> Verdict {
        let trace = &mut trace;
        let settings = &*self.settings;
        let Some(token) = request.token else {
            if settings.allow_empty_token {
                record(trace, "token", true, || {
                    "no token; allow_empty_token lets the client in anonymously".into()
                });
                return Ok(Accepted::Anonymous);
            }
            record(trace, "token", false, || Reason::TokenRequired.to_string());
            return Err(Rejection::new(Reason::TokenRequired));
        };
        step!(
            trace,
            "size",
            if token.len() > MAX_TOKEN_BYTES {
                Err(Rejection::with(
                    Reason::TokenTooLarge,
                    format!("{} bytes, the limit is {MAX_TOKEN_BYTES}", token.len()),
                ))
            } else {
                Ok(())
            },
            format!("{} bytes", token.len())
        );

        let mut early_header = None;
        let key = step!(
            trace,
            "key",
            match self.local_key(request) {
                Some(choice) => choice,
                // Only a key fetch waits; its future is boxed so that every other verification
                // (and the daemon's per-request future holding it) stays small.
                None => Box::pin(self.choose_key(token, request, &mut early_header)).await,
            },
            "found".into()
        );
        let key: &VerifyingKey = match &key {
            KeyChoice::Owned(k) => k,
            KeyChoice::Shared(k) => k,
            KeyChoice::Secret => self
                .secret
                .as_ref()
                .ok_or_else(|| Rejection::new(Reason::NoVerificationKey))?,
        };

        let parts = step!(trace, "structure", split(token), "three parts".into());
        let header = match early_header {
            Some(header) => header,
            None => step!(
                trace,
                "header",
                decode_object(parts[0], Reason::InvalidHeader),
                "JSON object".into()
            ),
        };
        let claims = step!(
            trace,
            "payload",
            decode_object(parts[1], Reason::InvalidBody),
            "JSON object".into()
        );
        let signature = step!(
            trace,
            "signature encoding",
            B64URL
                .decode(parts[2])
                .map_err(|e| Rejection::with(Reason::InvalidSignature, format!("not base64url: {e}"))),
            "base64url".into()
        );

        step!(trace, "typ", check_typ(&header), "absent or JWT".into());
        let alg = step!(
            trace,
            "alg",
            self.check_alg(&header, key),
            format!(
                "one of {:?} and fits the {:?} key",
                settings.signature_algorithms,
                key.kind()
            )
        );
        let signed_len = parts[0].len() + 1 + parts[1].len();
        step!(
            trace,
            "signature",
            if key.verify(alg, &token.as_bytes()[..signed_len], &signature) {
                Ok(())
            } else {
                Err(Rejection::new(Reason::InvalidSignature))
            },
            format!("{alg:?} signature is valid")
        );
        step!(trace, "exp/nbf", self.check_times(&claims, now), "in date".into());
        step!(
            trace,
            "iss",
            check_listed(
                &claims,
                "iss",
                &settings.accepted_issuers,
                Reason::IssMissing,
                Reason::IssInvalid
            ),
            format!("{} accepted", show(claims.get("iss")))
        );
        step!(
            trace,
            "aud",
            check_listed(
                &claims,
                "aud",
                &settings.accepted_audiences,
                Reason::AudMissing,
                Reason::AudInvalid
            ),
            format!("{} accepted", show(claims.get("aud")))
        );
        step!(
            trace,
            "room",
            if settings.require_room_claim && !claims.contains_key("room") {
                Err(Rejection::new(Reason::RoomMissing))
            } else {
                Ok(())
            },
            match claims.get("room") {
                Some(room) => format!("room claim {}", show(Some(room))),
                None => "no room claim (asap_require_room_claim is off)".into(),
            }
        );
        step!(
            trace,
            "context",
            if request.context_required && !claims.contains_key("context") {
                Err(Rejection::new(Reason::ContextRequired))
            } else {
                Ok(())
            },
            "ok".into()
        );
        let sha256 = request.sha256.unwrap_or_else(|| crate::sha256(token.as_bytes()));
        Ok(Accepted::Token(Box::new(VerifiedToken {
            header,
            claims,
            fingerprint: crate::hex(&sha256[..4]),
            sha256,
        })))
    }

    /// REFERENCE §3 step 2 when it needs no key server or key set: a session's `public_key`, or
    /// the shared secret of a host without remote keys. `None` when the key must be looked up.
    fn local_key(&self, request: &AuthRequest<'_>) -> Option<Result<KeyChoice, Rejection>> {
        if let Some(pem) = request.public_key {
            return Some(
                VerifyingKey::from_pem(pem.as_bytes())
                    .map(KeyChoice::Owned)
                    .map_err(|e| {
                        // The reference would fail the signature check with a key it cannot load.
                        Rejection::with(
                            Reason::InvalidSignature,
                            format!("the session's public_key is unusable: {e}"),
                        )
                    }),
            );
        }
        if self.key_server.is_none() && self.key_set.is_none() {
            return Some(if self.secret.is_some() {
                Ok(KeyChoice::Secret)
            } else {
                Err(Rejection::new(Reason::NoVerificationKey))
            });
        }
        None
    }

    /// REFERENCE §3 step 2. `early_header` receives the header when the kid path decoded it.
    async fn choose_key(
        &self,
        token: &str,
        request: &AuthRequest<'_>,
        early_header: &mut Option<Map<String, Value>>,
    ) -> Result<KeyChoice, Rejection> {
        if let Some(choice) = self.local_key(request) {
            return choice;
        }

        let Some((encoded, _)) = token.split_once('.') else {
            return Err(Rejection::with(Reason::InvalidToken, "no '.' in the token"));
        };
        let header = decode_object(encoded, Reason::BadTokenFormat)?;
        let kid = match header.get("kid") {
            Some(Value::String(kid)) => kid.clone(),
            Some(other) => {
                return Err(Rejection::with(
                    Reason::KidMissing,
                    format!("kid is {}, not a string", show(Some(other))),
                ));
            }
            None => return Err(Rejection::new(Reason::KidMissing)),
        };
        let alg = header.get("alg").ok_or_else(|| Rejection::new(Reason::AlgMissing))?;
        let asymmetric = alg
            .as_str()
            .and_then(parse_algorithm)
            .is_some_and(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
        if !asymmetric {
            return Err(Rejection::with(
                Reason::KidNeedsAsymmetricAlg,
                format!("alg is {}", show(Some(alg))),
            ));
        }
        *early_header = Some(header);

        let mut failure = None;
        if let Some(set) = &self.key_set {
            match set.key(&kid).await {
                Ok(Some(key)) => return Ok(KeyChoice::Shared(key)),
                Ok(None) => failure = Some(format!("kid {kid:?} is not in the key set at cache_keys_url")),
                Err(e) => failure = Some(format!("key set at cache_keys_url: {e}")),
            }
        }
        if let Some(server) = &self.key_server {
            return server.key(&kid).await.map(KeyChoice::Shared).map_err(|e| {
                Rejection::with(
                    Reason::NoPublicKey,
                    format!("kid {kid:?}: {e} (is asap_key_server right?)"),
                )
            });
        }
        Err(Rejection::with(Reason::NoPublicKey, failure.unwrap_or_default()))
    }

    fn check_alg(&self, header: &Map<String, Value>, key: &VerifyingKey) -> Result<Algorithm, Rejection> {
        let Some(name) = header.get("alg").and_then(Value::as_str) else {
            return Err(Rejection::with(
                Reason::InvalidAlg,
                format!("alg is {}", show(header.get("alg"))),
            ));
        };
        let Some(alg) = parse_algorithm(name) else {
            return Err(Rejection::with(
                Reason::InvalidAlg,
                format!("alg {name:?} is not supported"),
            ));
        };
        if !self.settings.signature_algorithms.contains(&alg) {
            return Err(Rejection::with(
                Reason::InvalidAlg,
                format!(
                    "alg {name} is not this host's signature_algorithm ({:?})",
                    self.settings.signature_algorithms
                ),
            ));
        }
        if !key.kind().accepts(alg) {
            return Err(Rejection::with(
                Reason::InvalidAlg,
                format!("alg {name} cannot be used with a {:?} key", key.kind()),
            ));
        }
        Ok(alg)
    }

    fn check_times(&self, claims: &Map<String, Value>, now: i64) -> Result<(), Rejection> {
        let number = |name: &str, reason: Reason| match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(Rejection::with(reason, format!("{name} is {}", show(Some(other))))),
        };
        let exp = number("exp", Reason::ExpNotNumber)?;
        let nbf = number("nbf", Reason::NbfNotNumber)?;
        let leeway = self.settings.leeway as f64;
        let now_f = now as f64;
        match exp {
            Some(exp) if now_f >= exp + leeway => {
                let valid_for = claims.get("iat").and_then(Value::as_f64).map(|iat| (exp - iat) as i64);
                return Err(Rejection::new(Reason::Expired {
                    since: (now_f - exp).floor() as i64,
                    valid_for,
                }));
            }
            None if self.settings.require_exp => return Err(Rejection::new(Reason::ExpMissing)),
            _ => {}
        }
        if let Some(nbf) = nbf
            && now_f + leeway < nbf
        {
            return Err(Rejection::with(
                Reason::NotYetValid,
                format!("valid in {} s", (nbf - now_f).ceil() as i64),
            ));
        }
        Ok(())
    }
}

/// Splits a token into exactly three non-empty parts.
fn split(token: &str) -> Result<[&str; 3], Rejection> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => Ok([h, p, s]),
        _ => Err(Rejection::with(
            Reason::InvalidToken,
            format!(
                "{} '.'-separated parts; a JWT has three, none empty",
                token.split('.').count()
            ),
        )),
    }
}

fn decode_object(encoded: &str, reason: Reason) -> Result<Map<String, Value>, Rejection> {
    let bytes = B64URL
        .decode(encoded)
        .map_err(|e| Rejection::with(reason.clone(), format!("not base64url: {e}")))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Rejection::with(
            reason,
            format!("JSON {}, not an object", crate::json_kind(&other)),
        )),
        Err(e) => Err(Rejection::with(reason, format!("not JSON: {e}"))),
    }
}

fn check_typ(header: &Map<String, Value>) -> Result<(), Rejection> {
    match header.get("typ") {
        None => Ok(()),
        Some(Value::String(typ)) if typ.eq_ignore_ascii_case("JWT") => Ok(()),
        Some(other) => Err(Rejection::with(
            Reason::InvalidTyp,
            format!("typ is {}", show(Some(other))),
        )),
    }
}

/// `iss`/`aud` against an accepted list: `*` accepts any present value; otherwise a string equal
/// to an entry, or (for arrays, RFC 7519 `aud`) any member equal to one.
fn check_listed(
    claims: &Map<String, Value>,
    name: &str,
    accepted: &[String],
    missing: Reason,
    invalid: Reason,
) -> Result<(), Rejection> {
    let Some(value) = claims.get(name) else {
        return Err(Rejection::new(missing));
    };
    if accepted.iter().any(|a| a == "*") {
        return Ok(());
    }
    let listed = |v: &Value| v.as_str().is_some_and(|s| accepted.iter().any(|a| a == s));
    let ok = match value {
        Value::Array(items) => items.iter().any(listed),
        other => listed(other),
    };
    if ok {
        Ok(())
    } else {
        Err(Rejection::with(
            invalid,
            format!("{name} {} is not in {accepted:?}", show(Some(value))),
        ))
    }
}

/// A short rendering of a claim for explanations: strings quoted, long values cut.
fn show(v: Option<&Value>) -> String {
    match v {
        None => "absent".into(),
        Some(v) => {
            let text = match v {
                Value::String(s) => format!("the string {s:?}"),
                other => format!("{other} ({})", crate::json_kind(other)),
            };
            if text.len() > 80 {
                let cut = (0..=77).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
                format!("{}…", &text[..cut])
            } else {
                text
            }
        }
    }
}

/// Encodes `bytes` as unpadded base64url, as JWTs are.
pub fn base64url(bytes: &[u8]) -> String {
    general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
