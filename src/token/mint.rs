//! Minting tokens, for admins testing a setup (`token-sidecar mint`), the load tool, tests and
//! benchmarks: the one place JWTs are assembled and signed.

use jsonwebtoken::Algorithm;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::HostSettings;
use crate::keys::{SigningError, SigningKey};

/// Why a token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// Minting with the host's secret, and the host has none.
    #[error("host {0:?} has no app_secret: pass --key PRIVATE_KEY.pem --kid KID")]
    NoSecret(String),
    /// The key could not be used.
    #[error(transparent)]
    Key(#[from] SigningError),
    /// A claim path such as `context..name`.
    #[error("claim name {0:?} has an empty segment")]
    EmptyClaimSegment(String),
}

/// Signs tokens with one key and algorithm.
#[derive(Debug)]
pub struct Minter {
    key: SigningKey,
    alg: Algorithm,
    /// The header, `{alg, kid?, typ: "JWT"}`, already encoded: it is the same for every token.
    header: String,
}

impl Minter {
    /// Signs with `key` by `alg`, putting `kid` in the header.
    pub fn new(key: SigningKey, alg: Algorithm, kid: Option<String>) -> Result<Minter, MintError> {
        if !key.signs(alg) {
            return Err(SigningError::WrongAlgorithm { kind: key.kind(), alg }.into());
        }
        let mut header = json!({"alg": alg_name(alg), "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = Value::from(kid);
        }
        let header = base64url(&serde_json::to_vec(&header).unwrap_or_default());
        Ok(Minter { key, alg, header })
    }

    /// Signs with the host's `app_secret`, using the host's first HS* `signature_algorithm`.
    pub fn with_secret(settings: &HostSettings) -> Result<Minter, MintError> {
        let secret = settings
            .app_secret
            .as_deref()
            .ok_or_else(|| MintError::NoSecret(settings.host.clone()))?;
        let key = SigningKey::hmac(secret.as_bytes());
        let alg = key.pick_algorithm(&settings.signature_algorithms);
        Minter::new(key, alg, None)
    }

    /// Signs with a PEM private key (RSA, EC P-256/P-384 or Ed25519), using the host's
    /// `signature_algorithm` when it fits the key.
    pub fn with_private_key(settings: &HostSettings, pem: &[u8], kid: Option<String>) -> Result<Minter, MintError> {
        let key = SigningKey::from_pem(pem)?;
        let alg = key.pick_algorithm(&settings.signature_algorithms);
        Minter::new(key, alg, kid)
    }

    /// The algorithm this minter signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// A signed token with header `{alg, kid?, typ: "JWT"}` and these claims.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, MintError> {
        signed(self.header.clone(), claims, &self.key, self.alg)
    }
}

/// A JWT with exactly this header and these claims, signed with `key` by `alg` — whatever the
/// header says (tests make tokens whose header lies).
pub fn encode(
    header: &impl Serialize,
    claims: &impl Serialize,
    key: &SigningKey,
    alg: Algorithm,
) -> Result<String, MintError> {
    // Serialising JSON values into memory cannot fail.
    signed(
        base64url(&serde_json::to_vec(header).unwrap_or_default()),
        claims,
        key,
        alg,
    )
}

/// `header` (encoded) `.` claims `.` signature.
fn signed(mut token: String, claims: &impl Serialize, key: &SigningKey, alg: Algorithm) -> Result<String, MintError> {
    use base64::Engine;
    let claims = serde_json::to_vec(claims).unwrap_or_default();
    token.push('.');
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(claims, &mut token);
    let signature = key.sign(alg, token.as_bytes())?;
    token.push('.');
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// The header name of `alg` (`HS256`, …, `EdDSA`).
fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// Encodes `bytes` as unpadded base64url, as JWTs are.
pub fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The claims a token for `settings` needs to pass its checks: `iss` = app_id, `aud` = "jitsi",
/// `sub` = the MUC base domain (or the host), `room` = "*", `iat` = now, `exp` = now + ttl.
pub fn default_claims(settings: &HostSettings, now: i64, ttl: i64) -> Map<String, Value> {
    let sub = settings
        .muc_mapper_domain_base
        .clone()
        .unwrap_or_else(|| settings.host.clone());
    let aud = match settings.accepted_audiences.iter().find(|a| *a != "*") {
        Some(aud) => aud.clone(),
        None => "jitsi".to_owned(),
    };
    let iss = match settings.accepted_issuers.iter().find(|i| *i != "*") {
        Some(iss) => iss.clone(),
        None => settings.app_id.clone(),
    };
    let mut claims = Map::new();
    for (name, value) in [
        ("iss", Value::from(iss)),
        ("aud", aud.into()),
        ("sub", sub.into()),
        ("room", "*".into()),
        ("iat", now.into()),
        ("exp", (now + ttl).into()),
    ] {
        claims.insert(name.to_owned(), value);
    }
    claims
}

/// Sets `path` (dot-separated, e.g. `context.user.name`) to `value`, creating objects on the way.
pub fn set_claim(claims: &mut Map<String, Value>, path: &str, value: Value) -> Result<(), MintError> {
    let mut segments = path.split('.').collect::<Vec<_>>();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(MintError::EmptyClaimSegment(path.to_owned()));
    }
    let last = segments.pop().unwrap_or_default();
    let mut map = claims;
    for segment in segments {
        let entry = map
            .entry(segment.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(inner) = entry else {
            unreachable!("made an object above")
        };
        map = inner;
    }
    map.insert(last.to_owned(), value);
    Ok(())
}

/// Removes `path` (dot-separated) if present.
pub fn unset_claim(claims: &mut Map<String, Value>, path: &str) {
    let mut segments = path.split('.').collect::<Vec<_>>();
    let Some(last) = segments.pop() else { return };
    let mut map = claims;
    for segment in segments {
        match map.get_mut(segment).and_then(Value::as_object_mut) {
            Some(inner) => map = inner,
            None => return,
        }
    }
    map.remove(last);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::is_hmac;

    #[test]
    fn a_minted_token_has_the_header_and_claims_asked_for() {
        let key = SigningKey::hmac(b"s3cret");
        let minter = Minter::new(key, Algorithm::HS384, Some("k1".into())).unwrap();
        let token = minter.sign(&json!({"iss": "app"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |p: &str| -> Value {
            use base64::Engine;
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
        };
        assert_eq!(decode(parts[0]), json!({"alg": "HS384", "kid": "k1", "typ": "JWT"}));
        assert_eq!(decode(parts[1]), json!({"iss": "app"}));
        assert!(matches!(
            Minter::new(SigningKey::hmac(b"s"), Algorithm::RS256, None),
            Err(MintError::Key(SigningError::WrongAlgorithm { .. }))
        ));
        assert!(is_hmac(minter.algorithm()));
    }

    #[test]
    fn claim_paths() {
        let mut claims = Map::new();
        set_claim(&mut claims, "context.user.name", json!("Alice")).unwrap();
        set_claim(&mut claims, "room", json!("r")).unwrap();
        assert_eq!(
            Value::Object(claims.clone()),
            json!({"context": {"user": {"name": "Alice"}}, "room": "r"})
        );
        unset_claim(&mut claims, "context.user.name");
        unset_claim(&mut claims, "nothing.here");
        assert_eq!(
            Value::Object(claims.clone()),
            json!({"context": {"user": {}}, "room": "r"})
        );
        assert_eq!(
            set_claim(&mut claims, "a..b", json!(1)),
            Err(MintError::EmptyClaimSegment("a..b".into()))
        );
    }
}
