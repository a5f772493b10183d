//! Any bytes as JSON, each value in it as a JWK: `VerifyingKey::from_jwk` over the document, over
//! each element when it is an array, and over each member of a `keys` array (a JWKS).
//!
//! Must hold: no panic; an accepted JWK is one of the key types we take, with `kty` (and `crv`)
//! matching the key made, `use` absent or `sig`, `key_ops` absent, not an array or including
//! `verify`, and its `alg` (when given) one the key can verify; `oct` (a secret) is never
//! accepted; the key passes the same checks as a PEM key (no algorithm confusion).
#![no_main]

#[path = "common/keys.rs"]
mod keys;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use token_sidecar::keys::{KeyKind, VerifyingKey, parse_algorithm};

fn check(jwk: &Value) {
    let Ok(key) = VerifyingKey::from_jwk(jwk) else { return };
    let kty = jwk.get("kty").and_then(Value::as_str);
    let crv = jwk.get("crv").and_then(Value::as_str);
    match key.kind() {
        KeyKind::Rsa { bits } => {
            assert_eq!(kty, Some("RSA"));
            assert!((2048..=8192).contains(&bits), "an RSA key of {bits} bits was accepted");
        }
        KeyKind::EcP256 => assert_eq!((kty, crv), (Some("EC"), Some("P-256"))),
        KeyKind::EcP384 => assert_eq!((kty, crv), (Some("EC"), Some("P-384"))),
        KeyKind::Ed25519 => assert_eq!((kty, crv), (Some("OKP"), Some("Ed25519"))),
        KeyKind::Hmac => panic!("a JWK became an HMAC secret: {jwk}"),
    }
    if let Some(usage) = jwk.get("use") {
        assert_eq!(usage.as_str(), Some("sig"), "a JWK with use {usage} was accepted");
    }
    if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array) {
        assert!(
            ops.iter().any(|op| op.as_str() == Some("verify")),
            "key_ops without verify"
        );
    }
    if let Some(alg) = jwk.get("alg") {
        let alg = alg.as_str().and_then(parse_algorithm);
        assert!(
            alg.is_some_and(|a| key.kind().accepts(a)),
            "a JWK whose alg its key cannot verify"
        );
    }
    keys::check_verifying_key(&key, jwk.to_string().as_bytes());
}

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check(&doc);
    if let Some(list) = doc.as_array() {
        list.iter().for_each(check);
    }
    if let Some(list) = doc.get("keys").and_then(Value::as_array) {
        list.iter().for_each(check);
    }
});
