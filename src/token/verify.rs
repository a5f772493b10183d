//! The verification pipeline: from a token, or none, to the verdict of a login.
//!
//! Steps run in the order of Jitsi's plugins and the first failure ends the attempt with their
//! text (docs/COMPATIBILITY.md, "Logins"): choose the key (a pre-fetched `public_key`, the key
//! server / key set by `kid`, or the shared secret), split and decode, `typ`, `alg`, signature,
//! `exp`/`nbf` types and times, `iss`, `aud`, `room`, required context.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::{Accepted, AuthRequest, Check, MAX_TOKEN_BYTES, Purpose, Reason, Rejection, Trace, Verdict, VerifiedToken};
use crate::config::{ConfigError, HostProblem, HostSettings};
use crate::keys::{
    JwksSource, KEY_WAIT_LIMIT, KEY_WAITS_PER_HOST, KeyError, KeyObserver, KeyServer, KeySetAnswer, KeySourceStats,
    KeyWait, KeyWaitBudget, ShortKid, VerifyingKey, is_hmac, parse_algorithm,
};
use crate::{digest, json};

/// base64url that accepts the segment with or without `=` padding, as Lua's decoder does.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

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
    /// Lookups fetching from the key server or key set: at most [`KEY_WAITS_PER_HOST`].
    key_waits: KeyWaitBudget,
    /// The longest one lookup waits, whatever it waits behind (a fetch another login started,
    /// the key set and then the key server): [`KEY_WAIT_LIMIT`], or one whole fetch when the
    /// settings allow a longer one (hosts of the TOML file may).
    longest_wait: Duration,
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
    /// A verifier for one host's settings; key sources are set up (nothing is fetched yet).
    pub fn new(settings: HostSettings) -> Result<Verifier, ConfigError> {
        Verifier::observed(settings, None)
    }

    /// As [`Verifier::new`], its key sources telling `observer` of every fetch and lookup.
    pub fn observed(settings: HostSettings, observer: Option<Arc<dyn KeyObserver>>) -> Result<Verifier, ConfigError> {
        let key_source = |option: &'static str| {
            let host = settings.host.clone();
            move |error| ConfigError::Host {
                host,
                problem: HostProblem::KeySource { option, error },
            }
        };
        let key_server = settings
            .asap_key_server
            .as_deref()
            .map(|url| KeyServer::observed(url, settings.fetch.clone(), observer.clone()))
            .transpose()
            .map_err(key_source("asap_key_server"))?;
        let key_set = settings
            .cache_keys_url
            .as_deref()
            .map(|url| JwksSource::observed(url, settings.fetch.clone(), observer))
            .transpose()
            .map_err(key_source("cache_keys_url"))?;
        let secret = settings.app_secret.as_deref().map(|s| VerifyingKey::hmac(s.as_bytes()));
        let longest_wait = settings.fetch.longest_fetch().max(KEY_WAIT_LIMIT);
        Ok(Verifier {
            settings: Arc::new(settings),
            secret,
            key_server,
            key_set,
            key_waits: KeyWaitBudget::new(KEY_WAITS_PER_HOST),
            longest_wait,
        })
    }

    /// The host's settings.
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
        step!(trace, "crit", check_crit(&header), "absent".into());
        match request.purpose {
            Purpose::Login => step!(trace, "exp/nbf", self.check_times(&claims, now), "in date".into()),
            Purpose::RoomJoin => record(trace, "exp/nbf", true, || {
                "not checked: a room join judges the room, the login judged the token's time".into()
            }),
        }
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
        let sha256 = request.sha256.unwrap_or_else(|| digest::sha256(token.as_bytes()));
        Ok(Accepted::Token(Box::new(VerifiedToken {
            header,
            claims,
            fingerprint: digest::fingerprint_of(&sha256),
            sha256,
        })))
    }

    /// Choosing the key when it needs no key server or key set: a session's `public_key`, or
    /// the shared secret of a host without remote keys. `None` when the key must be looked up.
    fn local_key(&self, request: &AuthRequest<'_>) -> Option<Result<KeyChoice, Rejection>> {
        if let Some(pem) = request.public_key {
            return Some(
                VerifyingKey::from_pem(pem.as_bytes())
                    .map(KeyChoice::Owned)
                    .map_err(|e| {
                        // Jitsi's plugin would fail the signature check with a key it cannot load.
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

    /// Choosing the key by the header's `kid` (docs/COMPATIBILITY.md, "Keys"). `early_header`
    /// receives the header when this decoded it.
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
        let asymmetric = alg.as_str().and_then(parse_algorithm).is_some_and(|a| !is_hmac(a));
        if !asymmetric {
            return Err(Rejection::with(
                Reason::KidNeedsAsymmetricAlg,
                format!("alg is {}", show(Some(alg))),
            ));
        }
        *early_header = Some(header);

        let mut wait = self.key_waits.lookup();
        let mut lookup = std::pin::pin!(self.remote_key(&kid, &mut wait));
        // Most lookups are answered from the cache without waiting, and need no timer.
        if let Some(choice) = futures::FutureExt::now_or_never(lookup.as_mut()) {
            return choice;
        }
        match tokio::time::timeout(self.longest_wait, lookup).await {
            Ok(choice) => choice,
            Err(_) => Err(Rejection::with(
                Reason::KeyBusy,
                format!(
                    "kid {}: no key within {} ms, the longest a login waits for keys",
                    ShortKid(&kid),
                    self.longest_wait.as_millis()
                ),
            )),
        }
    }

    /// The key for `kid` from the key set, then the key server. A budget that was spent (the
    /// unknown-kid rate, the fetches under way) is [`Reason::KeyBusy`], a temporary failure; only a
    /// lookup that was made and failed is `could not obtain public key`.
    async fn remote_key(&self, kid: &str, wait: &mut KeyWait<'_>) -> Result<KeyChoice, Rejection> {
        let shown = ShortKid(kid);
        let mut failure = None;
        let mut not_now = None;
        if let Some(set) = &self.key_set {
            match set.lookup(kid, wait).await {
                Ok(KeySetAnswer::Found(key)) => return Ok(KeyChoice::Shared(key)),
                Ok(KeySetAnswer::Missing) => {
                    failure = Some(format!("kid {shown} is not in the key set at cache_keys_url"));
                }
                Ok(KeySetAnswer::RefreshLimited) => {
                    not_now = Some(format!(
                        "kid {shown} is not in the key set at cache_keys_url, which was fetched again for an unknown kid moments ago"
                    ));
                }
                Err(e) if e.is_budget() => not_now = Some(format!("kid {shown}: key set at cache_keys_url: {e}")),
                Err(e) => failure = Some(format!("key set at cache_keys_url: {e}")),
            }
        }
        if let Some(server) = &self.key_server {
            return server
                .key_within(kid, wait)
                .await
                .map(KeyChoice::Shared)
                .map_err(|e| match e {
                    KeyError::RateLimited { .. } => Rejection::with(Reason::KeyBusy, e.to_string()),
                    e if e.is_budget() => Rejection::with(Reason::KeyBusy, format!("kid {shown}: {e}")),
                    e => Rejection::with(
                        Reason::NoPublicKey,
                        format!("kid {shown}: {e} (is asap_key_server right?)"),
                    ),
                });
        }
        match not_now {
            Some(detail) => Err(Rejection::with(Reason::KeyBusy, detail)),
            None => Err(Rejection::with(Reason::NoPublicKey, failure.unwrap_or_default())),
        }
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
            format!("JSON {}, not an object", json::kind(&other)),
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

/// RFC 7515 4.1.11: `crit` lists extensions the recipient must understand, or refuse the token.
/// We understand none, so any `crit` is refused (Jitsi's plugins ignore it), after the signature.
fn check_crit(header: &Map<String, Value>) -> Result<(), Rejection> {
    match header.get("crit") {
        None => Ok(()),
        Some(crit) => Err(Rejection::with(
            Reason::InvalidHeader,
            format!(
                "crit is {}: it names extensions that must be understood, and none are (RFC 7515 4.1.11)",
                show(Some(crit))
            ),
        )),
    }
}

/// `iss`/`aud` against an accepted list: `*` accepts any present value; otherwise a string equal
/// to an entry, or (for arrays, RFC 7519 `aud`) any member equal to one. Only `aud` may be an
/// array: an array `iss` is refused, even under `*`.
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
    if name != "aud" && value.is_array() {
        return Err(Rejection::with(
            invalid,
            format!("{name} {} is an array; only aud may be one", show(Some(value))),
        ));
    }
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
                other => format!("{other} ({})", json::kind(other)),
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
