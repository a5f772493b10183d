//! Minting tokens: for admins testing a setup (`token-sidecar mint`) and for tests and benchmarks.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use crate::config::HostSettings;

/// Signs tokens with one key.
pub struct Minter {
    key: EncodingKey,
    alg: Algorithm,
    kid: Option<String>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Minter {
    /// Signs with the host's `app_secret`, using the host's first HS* `signature_algorithm`.
    pub fn with_secret(settings: &HostSettings) -> Result<Minter, String> {
        let secret = settings.app_secret.as_deref().ok_or_else(|| {
            format!(
                "host {:?} has no app_secret: pass --key PRIVATE_KEY.pem --kid KID",
                settings.host
            )
        })?;
        let alg = settings
            .signature_algorithms
            .iter()
            .copied()
            .find(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            .unwrap_or(Algorithm::HS256);
        Ok(Minter {
            key: EncodingKey::from_secret(secret.as_bytes()),
            alg,
            kid: None,
        })
    }

    /// Signs with a PEM private key (RSA, EC P-256/P-384 or Ed25519, PKCS#8 or PKCS#1), using the
    /// host's `signature_algorithm` when it fits the key.
    pub fn with_private_key(settings: &HostSettings, pem: &[u8], kid: Option<String>) -> Result<Minter, String> {
        let preferred = |family: &[Algorithm], fallback: Algorithm| {
            settings
                .signature_algorithms
                .iter()
                .copied()
                .find(|a| family.contains(a))
                .unwrap_or(fallback)
        };
        let probe = |key: &EncodingKey, alg: Algorithm| jsonwebtoken::crypto::sign(b"probe", key, alg).is_ok();
        if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
            let alg = preferred(
                &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
                Algorithm::RS256,
            );
            if probe(&key, alg) {
                return Ok(Minter { key, alg, kid });
            }
        }
        if let Ok(key) = EncodingKey::from_ec_pem(pem) {
            for alg in [
                preferred(&[Algorithm::ES256, Algorithm::ES384], Algorithm::ES256),
                Algorithm::ES256,
                Algorithm::ES384,
            ] {
                if probe(&key, alg) {
                    return Ok(Minter { key, alg, kid });
                }
            }
        }
        if let Ok(key) = EncodingKey::from_ed_pem(pem)
            && probe(&key, Algorithm::EdDSA)
        {
            return Ok(Minter {
                key,
                alg: Algorithm::EdDSA,
                kid,
            });
        }
        Err("the key file is not a PEM private key (RSA, EC P-256/P-384 or Ed25519)".into())
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// A signed token with header `{typ: "JWT", alg, kid?}` and these claims.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, String> {
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| format!("signing failed: {e}"))
    }
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
    let Value::Object(claims) = json!({
        "iss": iss, "aud": aud, "sub": sub, "room": "*", "iat": now, "exp": now + ttl,
    }) else {
        unreachable!("a json! object literal is an object")
    };
    claims
}

/// Sets `path` (dot-separated, e.g. `context.user.name`) to `value`, creating objects on the way.
pub fn set_claim(claims: &mut Map<String, Value>, path: &str, value: Value) -> Result<(), String> {
    let mut segments = path.split('.').collect::<Vec<_>>();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(format!("claim name {path:?} has an empty segment"));
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
        map = entry
            .as_object_mut()
            .ok_or_else(|| format!("{segment} is not an object"))?;
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
