//! What must hold for any key material the daemon reads (shared by `key_pem` and `key_der`).
#![allow(dead_code)] // each target uses part of it

use jsonwebtoken::Algorithm;
use token_sidecar::access::verify::AccessVerifier;
use token_sidecar::keys::{KeyKind, SigningKey, VerifyingKey, parse_algorithm};

/// Every algorithm a header may name.
pub const ALGORITHMS: [&str; 9] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA",
];

const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJmdXp6In0";

fn algorithms() -> impl Iterator<Item = Algorithm> {
    ALGORITHMS.iter().filter_map(|name| parse_algorithm(name))
}

/// The checks for one PEM text (a key server's body, a Firebase map's value, a session's
/// `public_key`, an issuer's key file).
pub fn check_pem(pem: &[u8]) {
    let tag = pem::parse(pem.trim_ascii()).ok().map(|p| p.tag().to_owned());

    match VerifyingKey::from_pem(pem) {
        Ok(key) => {
            if let Some(tag) = &tag {
                assert!(
                    !tag.contains("PRIVATE"),
                    "a private key ({tag}) was taken as a verifying key"
                );
            }
            check_verifying_key(&key, pem);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }

    if let Ok(private) = SigningKey::from_pem(pem) {
        let _ = format!("{private:?}");
        let alg = private.pick_algorithm(&[]);
        assert!(
            private.signs(alg),
            "{} key does not sign its own default {alg:?}",
            private.kind()
        );
        let signature = private
            .sign(alg, MESSAGE)
            .expect("a parsed key signs its default algorithm");
        if let Some(spki) = private.public_key_der() {
            let public = pem::encode(&pem::Pem::new("PUBLIC KEY", spki));
            if let Ok(key) = VerifyingKey::from_pem(public.as_bytes()) {
                assert!(
                    key.verify(alg, MESSAGE, &signature),
                    "the public half of a {} key does not verify its {alg:?} signature",
                    private.kind()
                );
            }
        }
    }

    let _ = AccessVerifier::from_pem(pem).map(|v| v.is_symmetric());
}

/// A verifying key made from untrusted text: well formed, and no algorithm confusion.
pub fn check_verifying_key(key: &VerifyingKey, source: &[u8]) {
    let fingerprint = key.fingerprint();
    assert_eq!(fingerprint.len(), 8, "fingerprint {fingerprint:?}");
    assert!(
        fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
        "fingerprint {fingerprint:?}"
    );
    let _ = format!("{key:?}");
    assert!(
        algorithms().any(|a| key.kind().accepts(a)),
        "{:?} accepts no algorithm",
        key.kind()
    );
    assert_ne!(key.kind(), KeyKind::Hmac, "public key material became an HMAC key");
    for alg in algorithms() {
        // Nothing verifies against an empty or all-zero signature.
        assert!(!key.verify(alg, MESSAGE, &[]), "{alg:?} accepted an empty signature");
        assert!(!key.verify(alg, MESSAGE, &[0; 64]), "{alg:?} accepted a zero signature");
        // RFC 8725 §2.1: the key's own text (or anything) as an HMAC secret must not verify.
        for secret in [source, source.trim_ascii()] {
            if let Ok(mac) = SigningKey::hmac(secret).sign(hmac_of(alg), MESSAGE) {
                assert!(
                    !key.verify(alg, MESSAGE, &mac),
                    "{:?} key accepted an HMAC made with its PEM",
                    key.kind()
                );
            }
        }
    }
}

fn hmac_of(alg: Algorithm) -> Algorithm {
    match alg {
        Algorithm::HS384 | Algorithm::RS384 | Algorithm::ES384 => Algorithm::HS384,
        Algorithm::HS512 | Algorithm::RS512 => Algorithm::HS512,
        _ => Algorithm::HS256,
    }
}
