//! The public half of an access-token key as a JWK, for `/.well-known/jwks.json` and
//! `token-sidecar keygen`: RSA `{kty,n,e}`, EC `{kty,crv,x,y}`, Ed25519 `{kty:"OKP",crv,x}`, each
//! with `kid`, `alg` and `use:"sig"` (RFC 7517/7518/8037; base64url without padding).
//!
//! Read from the key's SPKI DER, so a key from a PEM file, a private key or a key pair in memory
//! all give the same JWK. Only public parts are ever copied: an HMAC secret has no JWK here.

use jsonwebtoken::Algorithm;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value, json};

use super::der;
use super::signing::SigningKey;

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Why a key has no public JWK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicJwkError {
    /// An HMAC secret: nothing of it may be published.
    #[error("an HMAC secret has no public key to publish (JWKS lists RSA, EC and Ed25519 keys only)")]
    Symmetric,
    /// The key cannot sign this algorithm (an RSA key published as ES256, say).
    #[error("a {kind} key cannot be published for {alg:?}")]
    WrongAlgorithm {
        /// The key's kind: "RSA", "EC P-256", "EC P-384", "Ed25519".
        kind: &'static str,
        /// The algorithm asked for.
        alg: Algorithm,
    },
    /// The key's type is not one a JWK here describes.
    #[error("key type {0} is not supported (RSA, EC P-256/P-384 or Ed25519)")]
    Unsupported(String),
    /// Not PEM, or PEM of something other than a public or private key.
    #[error("not a PEM public or private key")]
    NotPem,
    /// The SubjectPublicKeyInfo could not be read.
    #[error("malformed public key: {0}")]
    Malformed(&'static str),
}

/// One public JWK: its kid, algorithm and public parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    kid: String,
    alg: Algorithm,
    params: Params,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Params {
    Rsa { n: String, e: String },
    Ec { crv: &'static str, x: String, y: String },
    Ed25519 { x: String },
}

impl PublicJwk {
    /// The JWK of an asymmetric signing key, published for `alg` under `kid`.
    pub fn from_signing_key(key: &SigningKey, kid: &str, alg: Algorithm) -> Result<PublicJwk, PublicJwkError> {
        let spki = key.public_key_der().ok_or(PublicJwkError::Symmetric)?;
        PublicJwk::from_spki_der(&spki, kid, alg)
    }

    /// The JWK of a PEM key: a public key (`PUBLIC KEY`, SPKI) or any private key
    /// [`SigningKey::from_pem`] reads (for verify-only previous keys given either way).
    pub fn from_pem(pem: &[u8], kid: &str, alg: Algorithm) -> Result<PublicJwk, PublicJwkError> {
        let block = pem::parse(pem.trim_ascii()).map_err(|_| PublicJwkError::NotPem)?;
        match block.tag() {
            "PUBLIC KEY" => PublicJwk::from_spki_der(block.contents(), kid, alg),
            tag if tag.contains("PRIVATE KEY") => {
                let key = SigningKey::from_pem(pem).map_err(|_| PublicJwkError::NotPem)?;
                PublicJwk::from_signing_key(&key, kid, alg)
            }
            _ => Err(PublicJwkError::NotPem),
        }
    }

    /// The JWK of a SubjectPublicKeyInfo (DER), published for `alg` under `kid`.
    pub fn from_spki_der(spki: &[u8], kid: &str, alg: Algorithm) -> Result<PublicJwk, PublicJwkError> {
        let (oid, params, bits) = split_spki(spki).map_err(PublicJwkError::Malformed)?;
        // BIT STRING contents: a count of unused bits (0 for every key here), then the key.
        let key = match bits.split_first() {
            Some((0, key)) => key,
            _ => return Err(PublicJwkError::Malformed("the key BIT STRING has unused bits")),
        };
        let (kind, params) = match oid {
            OID_RSA => ("RSA", rsa_params(key)?),
            OID_EC_PUBLIC_KEY => {
                let (curve, _) =
                    der::expect(params, der::OID, "EC key without a named curve").map_err(PublicJwkError::Malformed)?;
                let (kind, crv, len) = match curve.content {
                    OID_P256 => ("EC P-256", "P-256", 32),
                    OID_P384 => ("EC P-384", "P-384", 48),
                    other => {
                        return Err(PublicJwkError::Unsupported(format!(
                            "EC curve {}",
                            der::oid_text(other)
                        )));
                    }
                };
                // Uncompressed point: 0x04 ‖ x ‖ y.
                let (x, y) = match key.split_first() {
                    Some((4, xy)) if xy.len() == 2 * len => xy.split_at(len),
                    _ => return Err(PublicJwkError::Malformed("EC point is not an uncompressed point")),
                };
                let params = Params::Ec {
                    crv,
                    x: base64url(x),
                    y: base64url(y),
                };
                (kind, params)
            }
            OID_ED25519 if key.len() == 32 => ("Ed25519", Params::Ed25519 { x: base64url(key) }),
            OID_ED25519 => return Err(PublicJwkError::Malformed("Ed25519 key is not 32 bytes")),
            other => return Err(PublicJwkError::Unsupported(der::oid_text(other))),
        };
        let fits = match &params {
            Params::Rsa { .. } => matches!(alg, Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512),
            Params::Ec { crv: "P-256", .. } => alg == Algorithm::ES256,
            Params::Ec { .. } => alg == Algorithm::ES384,
            Params::Ed25519 { .. } => alg == Algorithm::EdDSA,
        };
        if !fits {
            return Err(PublicJwkError::WrongAlgorithm { kind, alg });
        }
        Ok(PublicJwk {
            kid: kid.to_owned(),
            alg,
            params,
        })
    }

    /// The kid it is published under.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm it is published for.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The JWK as JSON.
    pub fn to_value(&self) -> Value {
        let mut out = Map::new();
        let mut put = |name: &str, value: &str| {
            out.insert(name.to_owned(), Value::from(value));
        };
        match &self.params {
            Params::Rsa { n, e } => {
                put("kty", "RSA");
                put("n", n);
                put("e", e);
            }
            Params::Ec { crv, x, y } => {
                put("kty", "EC");
                put("crv", crv);
                put("x", x);
                put("y", y);
            }
            Params::Ed25519 { x } => {
                put("kty", "OKP");
                put("crv", "Ed25519");
                put("x", x);
            }
        }
        put("kid", &self.kid);
        // Debug names are the JOSE names for every algorithm a JWK here can have.
        put("alg", &format!("{:?}", self.alg));
        put("use", "sig");
        Value::Object(out)
    }
}

impl Serialize for PublicJwk {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

/// The public JWK of an asymmetric signing key, as JSON (see [`PublicJwk::from_signing_key`]).
pub fn public_jwk(key: &SigningKey, kid: &str, alg: Algorithm) -> Result<Value, PublicJwkError> {
    PublicJwk::from_signing_key(key, kid, alg).map(|jwk| jwk.to_value())
}

/// A JWK Set, `{"keys":[…]}`, in the order given.
pub fn jwk_set<'a>(keys: impl IntoIterator<Item = &'a PublicJwk>) -> Value {
    json!({ "keys": keys.into_iter().map(PublicJwk::to_value).collect::<Vec<_>>() })
}

/// The kid an asymmetric key gets when none is configured: the first 16 hex digits of the
/// SHA-256 of its SPKI DER (stable across restarts, and the same for the key's PEM and JWK).
pub fn default_kid(spki_der: &[u8]) -> String {
    let mut hex = crate::digest::hex(&crate::digest::sha256(spki_der));
    hex.truncate(16);
    hex
}

/// Unpadded base64url, as JWK members are written.
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The algorithm OID, its parameters and the key bits of a SubjectPublicKeyInfo.
type SpkiParts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Splits a SubjectPublicKeyInfo into its parts; nothing may follow it.
fn split_spki(spki: &[u8]) -> Result<SpkiParts<'_>, &'static str> {
    let (outer, rest) = der::expect(spki, der::SEQUENCE, "expected a SEQUENCE")?;
    if !rest.is_empty() {
        return Err("bytes after the SubjectPublicKeyInfo");
    }
    let (alg_id, rest) = der::expect(outer.content, der::SEQUENCE, "expected an AlgorithmIdentifier")?;
    let (bits, _) = der::expect(rest, der::BIT_STRING, "expected the key BIT STRING")?;
    let (oid, params) = der::expect(alg_id.content, der::OID, "expected the algorithm OID")?;
    Ok((oid.content, params, bits.content))
}

/// `n` and `e` of a PKCS#1 RSAPublicKey, without leading zeros (RFC 7518 6.3.1).
fn rsa_params(pkcs1: &[u8]) -> Result<Params, PublicJwkError> {
    let read = || -> Result<Params, &'static str> {
        let (seq, _) = der::expect(pkcs1, der::SEQUENCE, "RSA key: expected a SEQUENCE")?;
        let (n, rest) = der::expect(seq.content, der::INTEGER, "RSA key: expected the modulus")?;
        let (e, _) = der::expect(rest, der::INTEGER, "RSA key: expected the exponent")?;
        let n = der::unsigned_integer(n.content, "RSA key: the modulus must be positive")?;
        let e = der::unsigned_integer(e.content, "RSA key: the exponent must be positive")?;
        if n.is_empty() || e.is_empty() {
            return Err("RSA key: zero modulus or exponent");
        }
        Ok(Params::Rsa {
            n: base64url(n),
            e: base64url(e),
        })
    };
    read().map_err(PublicJwkError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::VerifyingKey;
    use crate::keys::generate::generate;
    use crate::token::{Minter, encode};

    fn signing_input_and_signature(token: &str) -> (&str, Vec<u8>) {
        use base64::Engine;
        let (input, signature) = token.rsplit_once('.').expect("three parts");
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .expect("base64url");
        (input, signature)
    }

    #[test]
    fn the_jwk_verifies_what_the_key_signs() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
            let generated = generate(alg).expect("generate");
            let key = SigningKey::from_pem(generated.private_pem().as_bytes()).expect("key");
            let jwk = public_jwk(&key, "k1", alg).expect("jwk");
            assert_eq!(jwk["kid"], "k1");
            assert_eq!(jwk["alg"], format!("{alg:?}"));
            assert_eq!(jwk["use"], "sig");
            for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(jwk.get(member).is_none(), "{alg:?} JWK must not carry {member:?}");
            }
            let verifying = VerifyingKey::from_jwk(&jwk).expect("from_jwk");
            let token = Minter::new(key, alg, Some("k1".into()))
                .expect("minter")
                .sign(&json!({"sub": "x"}))
                .expect("sign");
            let (input, signature) = signing_input_and_signature(&token);
            assert!(verifying.verify(alg, input.as_bytes(), &signature), "{alg:?}");
            // The same JWK from the public PEM and from the private PEM.
            let from_public = PublicJwk::from_pem(generated.public_pem().as_bytes(), "k1", alg).expect("public pem");
            let from_private = PublicJwk::from_pem(generated.private_pem().as_bytes(), "k1", alg).expect("private pem");
            assert_eq!(from_public.to_value(), jwk);
            assert_eq!(from_private.to_value(), jwk);
        }
    }

    #[test]
    fn shapes_per_key_type() {
        let cases = [
            (
                Algorithm::ES256,
                json!(["alg", "crv", "kid", "kty", "use", "x", "y"]),
                "EC",
            ),
            (Algorithm::EdDSA, json!(["alg", "crv", "kid", "kty", "use", "x"]), "OKP"),
            (Algorithm::RS256, json!(["alg", "e", "kid", "kty", "n", "use"]), "RSA"),
        ];
        for (alg, members, kty) in cases {
            let key = SigningKey::from_pem(generate(alg).expect("generate").private_pem().as_bytes()).expect("key");
            let jwk = public_jwk(&key, "k", alg).expect("jwk");
            let names: Vec<&String> = jwk.as_object().expect("object").keys().collect();
            assert_eq!(json!(names), members, "{alg:?}");
            assert_eq!(jwk["kty"], kty);
            for value in jwk.as_object().expect("object").values() {
                let text = value.as_str().expect("strings only");
                assert!(
                    !text.contains('=') && !text.contains('+') && !text.contains('/'),
                    "{text}"
                );
            }
        }
        let rsa = SigningKey::generate_rsa().expect("rsa");
        let jwk = public_jwk(&rsa, "r", Algorithm::RS256).expect("jwk");
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(
            jwk["n"].as_str().map(str::len),
            Some(342),
            "2048-bit modulus, no leading zero"
        );
    }

    #[test]
    fn a_key_set_lists_every_key_in_order() {
        let a = SigningKey::from_pem(generate(Algorithm::ES256).expect("g").private_pem().as_bytes()).expect("a");
        let b = SigningKey::from_pem(generate(Algorithm::EdDSA).expect("g").private_pem().as_bytes()).expect("b");
        let jwks = [
            PublicJwk::from_signing_key(&a, "a", Algorithm::ES256).expect("a"),
            PublicJwk::from_signing_key(&b, "b", Algorithm::EdDSA).expect("b"),
        ];
        let set = jwk_set(&jwks);
        let keys = set["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 2);
        assert_eq!(
            (keys[0]["kid"].as_str(), keys[1]["kid"].as_str()),
            (Some("a"), Some("b"))
        );
        assert_eq!(serde_json::to_value(&jwks[0]).expect("serialize"), keys[0]);
        assert_eq!(jwk_set(&[]), json!({"keys": []}));
    }

    #[test]
    fn refusals() {
        let hmac = SigningKey::hmac(b"secret");
        assert_eq!(public_jwk(&hmac, "k", Algorithm::HS256), Err(PublicJwkError::Symmetric));
        let ec = SigningKey::from_pem(generate(Algorithm::ES256).expect("g").private_pem().as_bytes()).expect("ec");
        for alg in [Algorithm::ES384, Algorithm::RS256, Algorithm::EdDSA, Algorithm::HS256] {
            assert_eq!(
                public_jwk(&ec, "k", alg),
                Err(PublicJwkError::WrongAlgorithm { kind: "EC P-256", alg })
            );
        }
        let rsa = SigningKey::generate_rsa().expect("rsa");
        assert!(
            public_jwk(&rsa, "k", Algorithm::PS256).is_err(),
            "PS* is not accepted by verifiers here"
        );
        assert!(public_jwk(&rsa, "k", Algorithm::RS512).is_ok());
        assert_eq!(
            PublicJwk::from_pem(b"not pem", "k", Algorithm::ES256),
            Err(PublicJwkError::NotPem)
        );
        let spki = ec.public_key_der().expect("der");
        for len in 0..spki.len() {
            assert!(
                PublicJwk::from_spki_der(&spki[..len], "k", Algorithm::ES256).is_err(),
                "{len}"
            );
        }
    }

    #[test]
    fn default_kid_is_16_hex_digits_of_the_spki_digest() {
        let kid = default_kid(b"spki");
        assert_eq!(kid.len(), 16);
        assert_eq!(kid, crate::digest::hex(&crate::digest::sha256(b"spki"))[..16]);
    }

    #[test]
    fn encode_with_a_lying_header_still_checks_against_the_jwk() {
        // A token signed by another key with our kid must not verify with our JWK.
        let ours = SigningKey::from_pem(generate(Algorithm::EdDSA).expect("g").private_pem().as_bytes()).expect("k");
        let theirs = SigningKey::from_pem(generate(Algorithm::EdDSA).expect("g").private_pem().as_bytes()).expect("k");
        let verifying = VerifyingKey::from_jwk(&public_jwk(&ours, "k", Algorithm::EdDSA).expect("jwk")).expect("key");
        let token = encode(
            &json!({"alg": "EdDSA", "kid": "k"}),
            &json!({}),
            &theirs,
            Algorithm::EdDSA,
        )
        .expect("sign");
        let (input, signature) = signing_input_and_signature(&token);
        assert!(!verifying.verify(Algorithm::EdDSA, input.as_bytes(), &signature));
    }
}
