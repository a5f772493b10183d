//! Verifying an access token offline: the signature (by kid and alg), `exp`/`nbf`/`iat` and
//! optionally `aud`. No presence check: that is what introspection adds.
//!
//! A verifier holds either public keys or HMAC secrets, never both, and each key verifies only
//! the algorithms its type allows, so an HS256 token cannot be checked against a public key
//! taken as a secret (algorithm confusion), nor `none` pass.
//!
//! `token-sidecar verify-access` and the daemon's introspection use it; API services that do
//! not link this crate do the same checks with any JOSE library and the JWKS.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use crate::keys::{KeyError, KeyKind, SigningKey, VerifyingKey, parse_algorithm};
use crate::token::MAX_TOKEN_BYTES;

/// How far in the future `iat` may be: clocks of the issuer and the verifier differ a little.
pub const MAX_IAT_AHEAD_SECS: i64 = 60;

/// Every algorithm a key here can verify, in the order messages list them.
const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The largest signature accepted (RSA-8192), so it is decoded on the stack.
const MAX_SIGNATURE_BYTES: usize = 1024;

/// Why an access token is refused. `Display` is the text for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessRefusal {
    /// Longer than any token we issue.
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not a compact JWS, or a header or claims that are not JSON objects.
    #[error("the token is not a well-formed JWS: {0}")]
    Malformed(&'static str),
    /// An `alg` none of this verifier's keys verifies (`none` and HS* on public keys included).
    #[error("alg {alg} is not accepted by this verifier ({accepted})")]
    AlgNotAccepted {
        /// The header's `alg` (quoted when it is not an algorithm name).
        alg: String,
        /// What the verifier accepts, e.g. "RS256, ES256, EdDSA keys only".
        accepted: Arc<str>,
    },
    /// The header's kid names no key of this verifier.
    #[error("no key with kid {}", crate::keys::ShortKid(kid))]
    NoKey {
        /// The header's kid.
        kid: String,
    },
    /// The key the kid names is for another algorithm.
    #[error("the key with kid {} does not verify {alg}", crate::keys::ShortKid(kid))]
    KeyRejectsAlg {
        /// The header's kid.
        kid: String,
        /// The header's alg.
        alg: String,
    },
    /// No key of the verifier made this signature.
    #[error("signature does not match")]
    BadSignature,
    /// No `exp`: access tokens must expire.
    #[error("the token has no exp")]
    NoExp,
    /// A time claim that is not a number.
    #[error("claim {0} is not a number")]
    NotANumber(&'static str),
    /// `exp` is now or past.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    /// `iat` is more than [`MAX_IAT_AHEAD_SECS`] in the future.
    #[error("the token was issued in the future (iat)")]
    IssuedInFuture,
    /// An expected audience is not the token's `aud` (nor in it).
    #[error("audience does not match")]
    AudienceMismatch,
}

/// Why a verifier could not be built from the keys given. `Display` is for the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessKeyError {
    /// Not `{"keys":[…]}`.
    #[error("not a JWKS: expected a JSON object with a \"keys\" array")]
    NotAJwks,
    /// A JWKS with an empty `keys`.
    #[error("the JWKS lists no keys")]
    EmptyJwks,
    /// A JWKS none of whose keys can be used.
    #[error("none of the {listed} keys in the JWKS can be used (the first: {first})")]
    NoUsableKeys {
        /// How many keys it lists.
        listed: usize,
        /// Why the first was refused.
        first: KeyError,
    },
    /// Text that is not a PEM key (an HMAC secret given as a key file, say).
    #[error("not a PEM public or private key (RSA, EC P-256/P-384 or Ed25519)")]
    NotPem,
    /// A PEM key that cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// An empty HMAC secret.
    #[error("the HMAC secret is empty")]
    EmptySecret,
    /// A key given for an algorithm it cannot verify.
    #[error("a {kind:?} key cannot verify {alg:?}")]
    WrongAlgorithm {
        /// The key's kind.
        kind: KeyKind,
        /// The algorithm it was given for.
        alg: Algorithm,
    },
    /// Public keys and secrets in one verifier.
    #[error("HMAC secrets and public keys cannot share a verifier (that would allow algorithm confusion)")]
    Mixed,
    /// No key at all.
    #[error("no keys given")]
    NoKeys,
}

/// A set of algorithms, one bit each (in [`ALGORITHMS`] order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct AlgSet(u16);

impl AlgSet {
    fn bit(alg: Algorithm) -> u16 {
        ALGORITHMS.iter().position(|&a| a == alg).map_or(0, |i| 1 << i)
    }

    fn one(alg: Algorithm) -> AlgSet {
        AlgSet(Self::bit(alg))
    }

    /// Every algorithm a key of `kind` verifies.
    fn of_kind(kind: KeyKind) -> AlgSet {
        AlgSet(
            ALGORITHMS
                .iter()
                .filter(|&&a| kind.accepts(a))
                .fold(0, |bits, &a| bits | Self::bit(a)),
        )
    }

    fn contains(self, alg: Algorithm) -> bool {
        self.0 & Self::bit(alg) != 0
    }

    fn names(self) -> String {
        let names: Vec<String> = ALGORITHMS
            .iter()
            .filter(|&&a| self.contains(a))
            .map(|a| format!("{a:?}"))
            .collect();
        names.join(", ")
    }
}

#[derive(Debug)]
struct Entry {
    kid: Option<Box<str>>,
    algs: AlgSet,
    key: VerifyingKey,
}

/// Verifies access tokens offline with a fixed set of keys. Build it once; `verify` then costs
/// the decoding and one signature check (more only for a token without a kid and several keys).
#[derive(Debug)]
pub struct AccessVerifier {
    entries: Vec<Entry>,
    /// The union of the entries' algorithms.
    algs: AlgSet,
    /// What refusals say this verifier accepts; made once, shared by every refusal.
    accepted: Arc<str>,
    audience: Option<Box<str>>,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kid: Option<Cow<'a, str>>,
    crit: Option<IgnoredAny>,
}

impl AccessVerifier {
    /// From a JWKS, `{"keys":[…]}` (RSA, EC P-256/P-384, Ed25519). A key's `kid` picks it; a key
    /// with an `alg` verifies that algorithm only. Unusable keys are skipped (and logged), unless
    /// none is usable.
    pub fn from_jwks(jwks: &Value) -> Result<AccessVerifier, AccessKeyError> {
        let list = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(AccessKeyError::NotAJwks)?;
        if list.is_empty() {
            return Err(AccessKeyError::EmptyJwks);
        }
        let mut entries = Vec::with_capacity(list.len());
        let mut first_error = None;
        for jwk in list {
            let kid = jwk.get("kid").and_then(Value::as_str);
            match VerifyingKey::from_jwk(jwk) {
                Ok(key) => {
                    // `from_jwk` has checked that a given `alg` fits the key.
                    let algs = match jwk.get("alg").and_then(Value::as_str).and_then(parse_algorithm) {
                        Some(alg) => AlgSet::one(alg),
                        None => AlgSet::of_kind(key.kind()),
                    };
                    entries.push(Entry {
                        kid: kid.map(Into::into),
                        algs,
                        key,
                    });
                }
                Err(error) => {
                    tracing::warn!(kid = ?kid.map(crate::keys::ShortKid), %error, "skipping unusable key in the JWKS");
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(first) if entries.is_empty() => Err(AccessKeyError::NoUsableKeys {
                listed: list.len(),
                first,
            }),
            _ => Ok(AccessVerifier::new(entries)),
        }
    }

    /// From the contents of a PEM key file: a public key (SPKI, PKCS#1 or a certificate) or a
    /// private key (its public half is used). Any kid is accepted.
    pub fn from_pem(pem: &[u8]) -> Result<AccessVerifier, AccessKeyError> {
        let text = pem.trim_ascii();
        if !text.starts_with(b"-----BEGIN ") {
            return Err(AccessKeyError::NotPem);
        }
        let tag = pem::parse(text).map_err(|_| AccessKeyError::NotPem)?.tag().to_owned();
        let key = if tag.contains("PRIVATE KEY") {
            let private = SigningKey::from_pem(text).map_err(|_| AccessKeyError::NotPem)?;
            let spki = private.public_key_der().ok_or(AccessKeyError::NotPem)?;
            VerifyingKey::from_pem(pem::encode(&pem::Pem::new("PUBLIC KEY", spki)).as_bytes())?
        } else {
            VerifyingKey::from_pem(text)?
        };
        Ok(AccessVerifier::new(vec![Entry {
            kid: None,
            algs: AlgSet::of_kind(key.kind()),
            key,
        }]))
    }

    /// From an HMAC secret, used as raw bytes: HS256, HS384 and HS512. Any kid is accepted.
    pub fn from_secret(secret: &[u8]) -> Result<AccessVerifier, AccessKeyError> {
        if secret.is_empty() {
            return Err(AccessKeyError::EmptySecret);
        }
        let key = VerifyingKey::hmac(secret);
        Ok(AccessVerifier::new(vec![Entry {
            kid: None,
            algs: AlgSet::of_kind(KeyKind::Hmac),
            key,
        }]))
    }

    /// From an issuer's keys: each verifies the one algorithm given with it, and is picked by its
    /// kid (a key without a kid by any kid). All public keys or all secrets.
    pub fn from_keys(
        keys: impl IntoIterator<Item = (Option<String>, Algorithm, VerifyingKey)>,
    ) -> Result<AccessVerifier, AccessKeyError> {
        let mut entries = Vec::new();
        for (kid, alg, key) in keys {
            if !key.kind().accepts(alg) {
                return Err(AccessKeyError::WrongAlgorithm { kind: key.kind(), alg });
            }
            entries.push(Entry {
                kid: kid.map(Into::into),
                algs: AlgSet::one(alg),
                key,
            });
        }
        let Some(first) = entries.first() else {
            return Err(AccessKeyError::NoKeys);
        };
        let symmetric = first.key.kind() == KeyKind::Hmac;
        if entries.iter().any(|e| (e.key.kind() == KeyKind::Hmac) != symmetric) {
            return Err(AccessKeyError::Mixed);
        }
        Ok(AccessVerifier::new(entries))
    }

    fn new(entries: Vec<Entry>) -> AccessVerifier {
        let algs = AlgSet(entries.iter().fold(0, |bits, e| bits | e.algs.0));
        let symmetric = entries.iter().all(|e| e.key.kind() == KeyKind::Hmac);
        let accepted = if symmetric {
            format!("{} with a shared secret only", algs.names())
        } else {
            format!("{} keys only", algs.names())
        };
        AccessVerifier {
            entries,
            algs,
            accepted: accepted.into(),
            audience: None,
        }
    }

    /// Also require this audience: `aud` equal to it, or an array containing it.
    pub fn with_audience(mut self, audience: impl Into<String>) -> AccessVerifier {
        self.audience = Some(audience.into().into_boxed_str());
        self
    }

    /// Whether this verifier holds HMAC secrets (else public keys).
    pub fn is_symmetric(&self) -> bool {
        self.entries.iter().all(|e| e.key.kind() == KeyKind::Hmac)
    }

    /// The claims of `token` when its signature and times hold at `now` (seconds since 1970),
    /// and its audience when one is expected.
    pub fn verify(&self, token: &str, now: i64) -> Result<Map<String, Value>, AccessRefusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AccessRefusal::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AccessRefusal::Malformed("expected header.claims.signature"));
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| AccessRefusal::Malformed("the header is not base64url"))?;
        // serde would also read a struct from a JSON array; a JOSE header is an object. And the
        // struct below skips members it does not read without checking them (fuzzing found a
        // signed header with `1e400` or bytes that are not UTF-8 in such a member accepted):
        // RFC 7515 wants the whole header to be a UTF-8 JSON object, so read it as one first.
        // It is a few dozen bytes; this costs about a microsecond.
        if header_json.trim_ascii_start().first() != Some(&b'{')
            || std::str::from_utf8(&header_json).is_err()
            || serde_json::from_slice::<serde_json::Map<String, Value>>(&header_json).is_err()
        {
            return Err(AccessRefusal::Malformed("the header is not a JSON object"));
        }
        let header: Header<'_> = serde_json::from_slice(&header_json)
            .map_err(|_| AccessRefusal::Malformed("the header is not a JSON object with string alg and kid"))?;
        if header.crit.is_some() {
            return Err(AccessRefusal::Malformed("the header has \"crit\" extensions"));
        }
        let alg_name = header
            .alg
            .as_deref()
            .ok_or(AccessRefusal::Malformed("the header has no alg"))?;
        let alg = parse_algorithm(alg_name)
            .filter(|&alg| self.algs.contains(alg))
            .ok_or_else(|| AccessRefusal::AlgNotAccepted {
                alg: shown_alg(alg_name),
                accepted: Arc::clone(&self.accepted),
            })?;

        let kid = header.kid.as_deref();
        let by_kid = |e: &&Entry| match (&e.kid, kid) {
            (Some(own), Some(kid)) => **own == *kid,
            _ => true,
        };
        if let Some(kid) = kid {
            if !self.entries.iter().any(|e| by_kid(&e)) {
                return Err(AccessRefusal::NoKey { kid: shown_kid(kid) });
            }
            if !self.entries.iter().filter(by_kid).any(|e| e.algs.contains(alg)) {
                return Err(AccessRefusal::KeyRejectsAlg {
                    kid: shown_kid(kid),
                    alg: shown_alg(alg_name),
                });
            }
        }

        let mut signature = [0u8; MAX_SIGNATURE_BYTES];
        let signature = match URL_SAFE_NO_PAD.decode_slice(signature_b64, &mut signature) {
            Ok(len) => signature.get(..len).unwrap_or_default(),
            Err(base64::DecodeSliceError::OutputSliceTooSmall) => return Err(AccessRefusal::BadSignature),
            Err(_) => return Err(AccessRefusal::Malformed("the signature is not base64url")),
        };
        // The signed input is the token up to the last dot.
        let signed = token
            .get(..header_b64.len() + 1 + claims_b64.len())
            .unwrap_or_default()
            .as_bytes();
        let verified = self
            .entries
            .iter()
            .filter(by_kid)
            .filter(|e| e.algs.contains(alg))
            .any(|e| e.key.verify(alg, signed, signature));
        if !verified {
            return Err(AccessRefusal::BadSignature);
        }

        let claims_json = URL_SAFE_NO_PAD
            .decode(claims_b64)
            .map_err(|_| AccessRefusal::Malformed("the claims are not base64url"))?;
        let claims: Map<String, Value> = serde_json::from_slice(&claims_json)
            .map_err(|_| AccessRefusal::Malformed("the claims are not a JSON object"))?;
        self.check_claims(&claims, now)?;
        Ok(claims)
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: i64) -> Result<(), AccessRefusal> {
        // As f64: a time may be written with a fraction; seconds since 1970 fit exactly.
        let now_f = now as f64;
        let exp = time_claim(claims, "exp")?.ok_or(AccessRefusal::NoExp)?;
        if now_f >= exp {
            return Err(AccessRefusal::Expired);
        }
        if time_claim(claims, "nbf")?.is_some_and(|nbf| now_f < nbf) {
            return Err(AccessRefusal::NotYetValid);
        }
        if time_claim(claims, "iat")?.is_some_and(|iat| iat > now_f + MAX_IAT_AHEAD_SECS as f64) {
            return Err(AccessRefusal::IssuedInFuture);
        }
        if let Some(expected) = self.audience.as_deref() {
            let matches = match claims.get("aud") {
                Some(Value::String(aud)) => aud == expected,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected)),
                _ => false,
            };
            if !matches {
                return Err(AccessRefusal::AudienceMismatch);
            }
        }
        Ok(())
    }
}

/// A time claim: `None` when absent, an error when not a number.
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, AccessRefusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value.as_f64().map(Some).ok_or(AccessRefusal::NotANumber(name)),
    }
}

/// The header's kid for a message, cut short: it comes from the token, which may be 16 KiB.
/// The header's kid as a refusal keeps it: its first 64 characters (messages show fewer, see
/// [`crate::keys::ShortKid`]).
fn shown_kid(kid: &str) -> String {
    kid.chars().take(64).collect()
}

/// The header's alg for a message: its name, or quoted and cut short when it is no algorithm
/// (it comes from the token, so it must not forge a log line).
fn shown_alg(alg: &str) -> String {
    match parse_algorithm(alg) {
        Some(known) => format!("{known:?}"),
        None => format!("{:?}", alg.chars().take(32).collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{PublicJwk, generate, jwk_set};
    use crate::token::encode;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    struct Keys {
        es256: SigningKey,
        eddsa: SigningKey,
        rs256: SigningKey,
        other_es256: SigningKey,
        secret: SigningKey,
        jwks: Value,
        es256_public_pem: String,
    }

    fn private(alg: Algorithm) -> (SigningKey, String) {
        let generated = generate(alg).expect("generate");
        let key = SigningKey::from_pem(generated.private_pem().as_bytes()).expect("load");
        (key, generated.public_pem().to_owned())
    }

    fn keys() -> &'static Keys {
        static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| {
            let (es256, es256_public_pem) = private(Algorithm::ES256);
            let (eddsa, _) = private(Algorithm::EdDSA);
            let (rs256, _) = private(Algorithm::RS256);
            let (other_es256, _) = private(Algorithm::ES256);
            let jwks = jwk_set(&[
                PublicJwk::from_signing_key(&es256, "es", Algorithm::ES256).expect("jwk"),
                PublicJwk::from_signing_key(&eddsa, "ed", Algorithm::EdDSA).expect("jwk"),
                PublicJwk::from_signing_key(&rs256, "rs", Algorithm::RS256).expect("jwk"),
            ]);
            Keys {
                es256,
                eddsa,
                rs256,
                other_es256,
                secret: SigningKey::hmac(b"s3cret"),
                jwks,
                es256_public_pem,
            }
        })
    }

    fn claims() -> Value {
        json!({"iss": "conference.meet.example.com", "aud": "api", "iat": NOW - 10, "exp": NOW + 60,
               "occupant": {"room": "r@conference.meet.example.com", "jid": "u@meet.example.com/x"}})
    }

    fn with(changes: Value) -> Value {
        let mut out = claims();
        for (name, value) in changes.as_object().expect("object") {
            if value.is_null() {
                out.as_object_mut().expect("object").remove(name);
            } else {
                out[name] = value.clone();
            }
        }
        out
    }

    fn sign(key: &SigningKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": format!("{alg:?}"), "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        encode(&header, claims, key, alg).expect("sign")
    }

    fn jwks_verifier() -> AccessVerifier {
        AccessVerifier::from_jwks(&keys().jwks).expect("jwks")
    }

    #[test]
    fn table() {
        let k = keys();
        let jwks = jwks_verifier();
        let jwks_aud = jwks_verifier().with_audience("api");
        let jwks_other_aud = jwks_verifier().with_audience("other");
        let pem = AccessVerifier::from_pem(k.es256_public_pem.as_bytes()).expect("pem");
        let hmac = AccessVerifier::from_secret(b"s3cret").expect("secret");
        let es = |claims: &Value| sign(&k.es256, Algorithm::ES256, Some("es"), claims);
        let b64 = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let valid = es(&claims());
        let (head, rest) = valid.split_once('.').expect("dot");

        type Expect = Result<(), AccessRefusal>;
        let alg_refused = |alg: &str, accepted: &str| -> Expect {
            Err(AccessRefusal::AlgNotAccepted {
                alg: alg.into(),
                accepted: accepted.into(),
            })
        };
        let jwks_accepts = "RS256, ES256, EdDSA keys only";
        let cases: Vec<(&str, &AccessVerifier, String, Expect)> = vec![
            ("es256 by kid", &jwks, valid.clone(), Ok(())),
            (
                "eddsa by kid",
                &jwks,
                sign(&k.eddsa, Algorithm::EdDSA, Some("ed"), &claims()),
                Ok(()),
            ),
            (
                "rs256 by kid",
                &jwks,
                sign(&k.rs256, Algorithm::RS256, Some("rs"), &claims()),
                Ok(()),
            ),
            (
                "no kid tries the keys of its alg",
                &jwks,
                sign(&k.eddsa, Algorithm::EdDSA, None, &claims()),
                Ok(()),
            ),
            (
                "pem: any kid",
                &pem,
                sign(&k.es256, Algorithm::ES256, Some("whatever"), &claims()),
                Ok(()),
            ),
            (
                "hmac",
                &hmac,
                sign(&k.secret, Algorithm::HS256, None, &claims()),
                Ok(()),
            ),
            (
                "hmac HS512 with a kid",
                &hmac,
                sign(&k.secret, Algorithm::HS512, Some("x"), &claims()),
                Ok(()),
            ),
            ("audience string", &jwks_aud, valid.clone(), Ok(())),
            (
                "audience in an array",
                &jwks_aud,
                es(&with(json!({"aud": ["x", "api"]}))),
                Ok(()),
            ),
            (
                "float times",
                &jwks,
                es(&with(json!({"exp": NOW as f64 + 0.5}))),
                Ok(()),
            ),
            ("iat 60 s ahead", &jwks, es(&with(json!({"iat": NOW + 60}))), Ok(())),
            ("nbf now", &jwks, es(&with(json!({"nbf": NOW}))), Ok(())),
            // Refusals.
            (
                "unknown kid",
                &jwks,
                sign(&k.es256, Algorithm::ES256, Some("k1"), &claims()),
                Err(AccessRefusal::NoKey { kid: "k1".into() }),
            ),
            (
                "kid of a key for another alg",
                &jwks,
                sign(&k.rs256, Algorithm::RS256, Some("es"), &claims()),
                Err(AccessRefusal::KeyRejectsAlg {
                    kid: "es".into(),
                    alg: "RS256".into(),
                }),
            ),
            (
                "another key under our kid",
                &jwks,
                sign(&k.other_es256, Algorithm::ES256, Some("es"), &claims()),
                Err(AccessRefusal::BadSignature),
            ),
            (
                "wrong key for pem",
                &pem,
                sign(&k.other_es256, Algorithm::ES256, None, &claims()),
                Err(AccessRefusal::BadSignature),
            ),
            (
                "HS256 to a JWKS",
                &jwks,
                sign(&k.secret, Algorithm::HS256, Some("es"), &claims()),
                alg_refused("HS256", jwks_accepts),
            ),
            (
                "HS256 to a pem key",
                &pem,
                sign(&k.secret, Algorithm::HS256, None, &claims()),
                alg_refused("HS256", "ES256 keys only"),
            ),
            (
                "ES256 to a secret",
                &hmac,
                valid.clone(),
                alg_refused("ES256", "HS256, HS384, HS512 with a shared secret only"),
            ),
            (
                "alg none",
                &jwks,
                format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"exp":9999999999}"#)),
                alg_refused("\"none\"", jwks_accepts),
            ),
            (
                "PS256",
                &jwks,
                format!("{}.{}.AAAA", b64(r#"{"alg":"PS256","kid":"rs"}"#), b64("{}")),
                alg_refused("\"PS256\"", jwks_accepts),
            ),
            (
                "expired",
                &jwks,
                es(&with(json!({"exp": NOW}))),
                Err(AccessRefusal::Expired),
            ),
            (
                "no exp",
                &jwks,
                es(&with(json!({"exp": null}))),
                Err(AccessRefusal::NoExp),
            ),
            (
                "exp a string",
                &jwks,
                es(&with(json!({"exp": "tomorrow"}))),
                Err(AccessRefusal::NotANumber("exp")),
            ),
            (
                "nbf ahead",
                &jwks,
                es(&with(json!({"nbf": NOW + 1}))),
                Err(AccessRefusal::NotYetValid),
            ),
            (
                "iat 61 s ahead",
                &jwks,
                es(&with(json!({"iat": NOW + 61}))),
                Err(AccessRefusal::IssuedInFuture),
            ),
            (
                "audience mismatch",
                &jwks_other_aud,
                valid.clone(),
                Err(AccessRefusal::AudienceMismatch),
            ),
            (
                "no audience",
                &jwks_aud,
                es(&with(json!({"aud": null}))),
                Err(AccessRefusal::AudienceMismatch),
            ),
            (
                "audience not a string",
                &jwks_aud,
                es(&with(json!({"aud": 7}))),
                Err(AccessRefusal::AudienceMismatch),
            ),
            (
                "two parts",
                &jwks,
                format!("{head}.x"),
                Err(AccessRefusal::Malformed("expected header.claims.signature")),
            ),
            (
                "four parts",
                &jwks,
                format!("{valid}.x"),
                Err(AccessRefusal::Malformed("expected header.claims.signature")),
            ),
            (
                "empty",
                &jwks,
                String::new(),
                Err(AccessRefusal::Malformed("expected header.claims.signature")),
            ),
            (
                "padded header",
                &jwks,
                format!("{head}=.{rest}"),
                Err(AccessRefusal::Malformed("the header is not base64url")),
            ),
            (
                "header an array",
                &jwks,
                format!("{}.{rest}", b64(r#"["ES256"]"#)),
                Err(AccessRefusal::Malformed("the header is not a JSON object")),
            ),
            (
                "kid a number",
                &jwks,
                format!("{}.{rest}", b64(r#"{"alg":"ES256","kid":1}"#)),
                Err(AccessRefusal::Malformed(
                    "the header is not a JSON object with string alg and kid",
                )),
            ),
            (
                "crit",
                &jwks,
                format!("{}.{rest}", b64(r#"{"alg":"ES256","kid":"es","crit":["x"]}"#)),
                Err(AccessRefusal::Malformed("the header has \"crit\" extensions")),
            ),
            (
                "no alg",
                &jwks,
                format!("{}.{rest}", b64(r#"{"kid":"es"}"#)),
                Err(AccessRefusal::Malformed("the header has no alg")),
            ),
            (
                "tampered claims",
                &jwks,
                format!(
                    "{head}.{}.{}",
                    b64(r#"{"exp":9999999999}"#),
                    valid.rsplit('.').next().unwrap_or_default()
                ),
                Err(AccessRefusal::BadSignature),
            ),
            (
                "signature not base64url",
                &jwks,
                format!("{}.!!", valid.rsplit_once('.').map(|(a, _)| a).unwrap_or_default()),
                Err(AccessRefusal::Malformed("the signature is not base64url")),
            ),
            (
                "huge signature",
                &jwks,
                format!(
                    "{}.{}",
                    valid.rsplit_once('.').map(|(a, _)| a).unwrap_or_default(),
                    "A".repeat(2000)
                ),
                Err(AccessRefusal::BadSignature),
            ),
            (
                "signed claims that are not an object",
                &jwks,
                sign(&k.es256, Algorithm::ES256, Some("es"), &json!([1])),
                Err(AccessRefusal::Malformed("the claims are not a JSON object")),
            ),
            (
                "too large",
                &jwks,
                "a".repeat(MAX_TOKEN_BYTES + 1),
                Err(AccessRefusal::TooLarge),
            ),
        ];
        for (name, verifier, token, expected) in cases {
            let got = verifier.verify(&token, NOW).map(|_| ());
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn the_claims_come_back() {
        let token = sign(&keys().eddsa, Algorithm::EdDSA, Some("ed"), &claims());
        let got = jwks_verifier().verify(&token, NOW).expect("accepted");
        assert_eq!(Value::Object(got), claims());
    }

    /// Fuzzing finding 2 (docs/FUZZING.md): a signed header whose unread member is not strict JSON.
    #[test]
    fn a_signed_header_that_is_not_strict_json_is_refused() {
        let secret = SigningKey::hmac(b"0123456789abcdef0123456789abcdef");
        let verifier = AccessVerifier::from_secret(b"0123456789abcdef0123456789abcdef").expect("secret");
        let body = URL_SAFE_NO_PAD.encode(claims().to_string());
        for header in [
            &br#"{"alg":"HS256","x":1e400}"#[..],
            &b"{\"alg\":\"HS256\",\"x\":\"\xff\"}"[..],
        ] {
            let signed = format!("{}.{body}", URL_SAFE_NO_PAD.encode(header));
            let signature = secret.sign(Algorithm::HS256, signed.as_bytes()).expect("sign");
            let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature));
            assert_eq!(
                verifier.verify(&token, NOW),
                Err(AccessRefusal::Malformed("the header is not a JSON object")),
                "{}",
                String::from_utf8_lossy(header)
            );
        }
        // The same with a plain header verifies, so the refusal is the header's.
        let token = sign(&secret, Algorithm::HS256, None, &claims());
        assert!(verifier.verify(&token, NOW).is_ok());
    }

    #[test]
    fn refusal_texts() {
        let texts = [
            (AccessRefusal::Expired, "the token has expired"),
            (AccessRefusal::BadSignature, "signature does not match"),
            (AccessRefusal::NoKey { kid: "k1".into() }, "no key with kid \"k1\""),
            (
                AccessRefusal::AlgNotAccepted {
                    alg: "HS256".into(),
                    accepted: "RS256, ES256, EdDSA keys only".into(),
                },
                "alg HS256 is not accepted by this verifier (RS256, ES256, EdDSA keys only)",
            ),
            (AccessRefusal::AudienceMismatch, "audience does not match"),
        ];
        for (refusal, text) in texts {
            assert_eq!(refusal.to_string(), text);
        }
        // A kid from the token is quoted, so it cannot forge a log line, and cut short.
        let forged = AccessRefusal::NoKey { kid: "a\"\nb".into() }.to_string();
        assert!(!forged.contains('\n'), "{forged}");
        assert_eq!(shown_kid(&"k".repeat(1000)).len(), 64);
    }

    #[test]
    fn from_keys_matches_kid_and_alg() {
        let k = keys();
        let public = |key: &SigningKey| {
            let der = key.public_key_der().expect("public");
            VerifyingKey::from_pem(pem::encode(&pem::Pem::new("PUBLIC KEY", der)).as_bytes()).expect("key")
        };
        let verifier = AccessVerifier::from_keys([
            (Some("new".to_owned()), Algorithm::ES256, public(&k.es256)),
            (Some("old".to_owned()), Algorithm::RS256, public(&k.rs256)),
        ])
        .expect("keys");
        assert!(!verifier.is_symmetric());
        let old = sign(&k.rs256, Algorithm::RS256, Some("old"), &claims());
        assert!(verifier.verify(&old, NOW).is_ok());
        // RS384 by the same RSA key: the issuer's key is for RS256 only.
        let rs384 = sign(&k.rs256, Algorithm::RS384, Some("old"), &claims());
        assert!(matches!(
            verifier.verify(&rs384, NOW),
            Err(AccessRefusal::AlgNotAccepted { .. })
        ));

        let secret =
            AccessVerifier::from_keys([(None, Algorithm::HS256, VerifyingKey::hmac(b"s3cret"))]).expect("hmac");
        assert!(secret.is_symmetric());
        let hs256 = sign(&k.secret, Algorithm::HS256, None, &claims());
        assert!(secret.verify(&hs256, NOW).is_ok());
        let hs512 = sign(&k.secret, Algorithm::HS512, None, &claims());
        assert!(matches!(
            secret.verify(&hs512, NOW),
            Err(AccessRefusal::AlgNotAccepted { .. })
        ));

        let errors = [
            (
                AccessVerifier::from_keys([(None, Algorithm::HS256, public(&k.es256))]).err(),
                AccessKeyError::WrongAlgorithm {
                    kind: KeyKind::EcP256,
                    alg: Algorithm::HS256,
                },
            ),
            (
                AccessVerifier::from_keys([
                    (None, Algorithm::ES256, public(&k.es256)),
                    (None, Algorithm::HS256, VerifyingKey::hmac(b"x")),
                ])
                .err(),
                AccessKeyError::Mixed,
            ),
            (AccessVerifier::from_keys([]).err(), AccessKeyError::NoKeys),
        ];
        for (got, expected) in errors {
            assert_eq!(got, Some(expected));
        }
    }

    #[test]
    fn construction_refusals() {
        let k = keys();
        assert_eq!(
            AccessVerifier::from_jwks(&json!([])).err(),
            Some(AccessKeyError::NotAJwks)
        );
        assert_eq!(
            AccessVerifier::from_jwks(&json!({"keys": {}})).err(),
            Some(AccessKeyError::NotAJwks)
        );
        assert_eq!(
            AccessVerifier::from_jwks(&json!({"keys": []})).err(),
            Some(AccessKeyError::EmptyJwks)
        );
        let oct = AccessVerifier::from_jwks(&json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}));
        assert!(
            matches!(oct, Err(AccessKeyError::NoUsableKeys { listed: 1, .. })),
            "{oct:?}"
        );
        // One bad key among good ones is skipped.
        let mut mixed = k.jwks.clone();
        mixed["keys"]
            .as_array_mut()
            .expect("keys")
            .push(json!({"kty": "oct", "k": "c2VjcmV0"}));
        assert!(AccessVerifier::from_jwks(&mixed).is_ok());

        assert_eq!(AccessVerifier::from_pem(b"s3cret").err(), Some(AccessKeyError::NotPem));
        assert_eq!(
            AccessVerifier::from_secret(b"").err(),
            Some(AccessKeyError::EmptySecret)
        );
        let generated = generate(Algorithm::EdDSA).expect("generate");
        let from_private = AccessVerifier::from_pem(generated.private_pem().as_bytes()).expect("private pem");
        let key = SigningKey::from_pem(generated.private_pem().as_bytes()).expect("key");
        assert!(
            from_private
                .verify(&sign(&key, Algorithm::EdDSA, Some("x"), &claims()), NOW)
                .is_ok()
        );
    }

    #[test]
    fn verifiers_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<AccessVerifier>();
    }
}
