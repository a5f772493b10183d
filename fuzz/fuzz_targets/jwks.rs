//! Any bytes as a JWKS document for `AccessVerifier::from_jwks` (`verify-access --jwks`, API
//! services linking the crate), then tokens against the verifier it makes.
//!
//! The daemon's own `cache_keys_url` parser (`keys::jwks::parse_key_set`) is private: the
//! `key_fetch` target reaches it through `JwksSource` over loopback HTTP.
//!
//! Must hold: no panic; a verifier is made only from `{"keys":[…]}` with at least one usable
//! JWK; it is never symmetric; no token whose signature is an HMAC (with the document, or a
//! member of it, as the secret), empty or garbage is accepted, whatever its `alg` and `kid`.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use token_sidecar::access::verify::{AccessKeyError, AccessVerifier};
use token_sidecar::keys::{SigningKey, VerifyingKey, parse_algorithm};

const NOW: i64 = 1_800_000_000;
const ALGS: [&str; 11] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA", "none", "PS256",
];

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let list = doc.get("keys").and_then(Value::as_array);
    let verifier = match AccessVerifier::from_jwks(&doc) {
        Ok(verifier) => verifier,
        Err(error) => {
            let _ = error.to_string();
            match error {
                AccessKeyError::NotAJwks => assert!(list.is_none()),
                AccessKeyError::EmptyJwks => assert!(list.is_some_and(Vec::is_empty)),
                AccessKeyError::NoUsableKeys { listed, .. } => {
                    let list = list.expect("NoUsableKeys without a keys array");
                    assert_eq!(listed, list.len());
                    assert!(list.iter().all(|jwk| VerifyingKey::from_jwk(jwk).is_err()));
                }
                other => panic!("from_jwks returned {other:?}"),
            }
            return;
        }
    };
    let list = list.expect("a verifier from a document without a keys array");
    assert!(
        list.iter().any(|jwk| VerifyingKey::from_jwk(jwk).is_ok()),
        "a verifier with no usable key"
    );
    assert!(!verifier.is_symmetric(), "a JWKS made a symmetric verifier");

    let mut kids: Vec<Option<&str>> = vec![None];
    kids.extend(
        list.iter()
            .filter_map(|jwk| jwk.get("kid").and_then(Value::as_str))
            .take(4)
            .map(Some),
    );
    let text = String::from_utf8_lossy(data);
    let secrets: Vec<Vec<u8>> = std::iter::once(data.to_vec())
        .chain(std::iter::once(text.trim().as_bytes().to_vec()))
        .chain(list.iter().take(2).map(|jwk| jwk.to_string().into_bytes()))
        .chain(
            list.iter()
                .take(2)
                .filter_map(|jwk| jwk.get("n").and_then(Value::as_str))
                .map(|n| n.as_bytes().to_vec()),
        )
        .collect();
    let claims = B64.encode(json!({"exp": NOW + 60, "iat": NOW}).to_string());
    for alg in ALGS {
        for kid in &kids {
            let mut header = json!({"alg": alg});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            let signed = format!("{}.{claims}", B64.encode(header.to_string()));
            let mut signatures = vec![Vec::new(), vec![0u8; 256], vec![0xffu8; 64]];
            let hmac_alg = parse_algorithm(match alg {
                "HS384" => "HS384",
                "HS512" => "HS512",
                _ => "HS256",
            })
            .expect("an HMAC algorithm");
            for secret in &secrets {
                if let Ok(mac) = SigningKey::hmac(secret).sign(hmac_alg, signed.as_bytes()) {
                    signatures.push(mac);
                }
            }
            for signature in signatures {
                let token = format!("{signed}.{}", B64.encode(&signature));
                let verdict = verifier.verify(&token, NOW);
                assert!(verdict.is_err(), "accepted a forged token with alg {alg}, kid {kid:?}");
                let _ = verdict.map_err(|e| e.to_string());
            }
        }
    }
});
