//! Keys for tests, generated with aws-lc-rs: public keys as SPKI PEM, JWK and self-signed
//! X.509 certificate; private keys as PKCS#8 PEM; and JWTs signed with them (by the library's own
//! signing, `token_sidecar::token::encode`).
//!
//! ```ignore
//! let key = TestKey::rsa();                       // also p256(), p384(), ed25519()
//! let pem = key.public_pem();                     // "-----BEGIN PUBLIC KEY-----…"
//! let jwk = key.jwk("kid-1");                     // {"kty":"RSA","kid":"kid-1","n":…,"e":…}
//! let cert = key.certificate_pem("test");         // "-----BEGIN CERTIFICATE-----…"
//! let token = key.jwt(Some("kid-1"), &serde_json::json!({"iss": "app"}));
//! let hs = hs_jwt(Algorithm::HS256, b"secret", Some("k"), &claims);
//! ```
//!
//! RSA key generation takes a moment in debug builds: reuse keys within a test where you can.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use token_sidecar::keys::SigningKey;
use token_sidecar::token::encode;

/// A 1024-bit RSA public key (generated with `openssl genrsa 1024`): must be refused as weak.
pub const WEAK_RSA_1024_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDELyYBejmuKiFA4tb5ic9fLH6R
diXqlzbfBtJErkt7BFz1LrL9qvA8Anctip1ttmDfAhpYZUvxXjyk7vqG9jQLIkT9
kutYlA8vrJl/fDx7cH82Hq5COkcU2gixICrDkd3ViNLnuhph7vsDTkrvWVee6aJN
p5qhpGVj1IxQhhws5wIDAQAB
-----END PUBLIC KEY-----
";

/// A generated key pair.
pub struct TestKey {
    pair: Pair,
    /// The same private key as the library's signing key (what JWTs are signed with).
    signing: SigningKey,
}

enum Pair {
    Rsa(rsa::KeyPair),
    Ec {
        pair: EcdsaKeyPair,
        pkcs8: Vec<u8>,
        p384: bool,
    },
    Ed {
        pair: Ed25519KeyPair,
        pkcs8: Vec<u8>,
    },
}

impl TestKey {
    /// RSA-2048.
    pub fn rsa() -> TestKey {
        let pair = rsa::KeyPair::generate(rsa::KeySize::Rsa2048).expect("RSA keygen");
        TestKey::new(Pair::Rsa(pair))
    }

    /// ECDSA P-256 (ES256).
    pub fn p256() -> TestKey {
        Self::ec(false)
    }

    /// ECDSA P-384 (ES384).
    pub fn p384() -> TestKey {
        Self::ec(true)
    }

    /// Ed25519 (EdDSA).
    pub fn ed25519() -> TestKey {
        let pair = Ed25519KeyPair::generate().expect("Ed25519 keygen");
        // PKCS#8 v1 (no embedded public key): what OpenSSL 3.0 and most tools read.
        let pkcs8 = pair.to_pkcs8v1().expect("Ed25519 PKCS#8").as_ref().to_vec();
        TestKey::new(Pair::Ed { pair, pkcs8 })
    }

    fn ec(p384: bool) -> TestKey {
        let alg = if p384 {
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING
        } else {
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING
        };
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new())
            .expect("EC keygen")
            .as_ref()
            .to_vec();
        let pair = EcdsaKeyPair::from_pkcs8(alg, &pkcs8).expect("EC pkcs8");
        TestKey::new(Pair::Ec { pair, pkcs8, p384 })
    }

    fn new(pair: Pair) -> TestKey {
        let mut key = TestKey {
            pair,
            signing: SigningKey::hmac(b"placeholder"),
        };
        key.signing = SigningKey::from_pem(key.private_pkcs8_pem().as_bytes()).expect("the library reads the key");
        key
    }

    /// The JWT algorithm this key signs with by default (RS256, ES256, ES384 or EdDSA).
    pub fn alg(&self) -> Algorithm {
        match &self.pair {
            Pair::Rsa(_) => Algorithm::RS256,
            Pair::Ec { p384: false, .. } => Algorithm::ES256,
            Pair::Ec { p384: true, .. } => Algorithm::ES384,
            Pair::Ed { .. } => Algorithm::EdDSA,
        }
    }

    /// The public key as SubjectPublicKeyInfo DER.
    pub fn public_der(&self) -> Vec<u8> {
        let der = match &self.pair {
            Pair::Rsa(pair) => pair.public_key().as_der(),
            Pair::Ec { pair, .. } => pair.public_key().as_der(),
            Pair::Ed { pair, .. } => pair.public_key().as_der(),
        };
        der.expect("public key DER").as_ref().to_vec()
    }

    /// The public key as `-----BEGIN PUBLIC KEY-----` PEM.
    pub fn public_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.public_der())
    }

    /// The RSA public key as PKCS#1 `-----BEGIN RSA PUBLIC KEY-----` PEM.
    pub fn rsa_public_pkcs1_pem(&self) -> String {
        match &self.pair {
            Pair::Rsa(pair) => pem_encode("RSA PUBLIC KEY", pair.public_key().as_ref()),
            _ => panic!("not an RSA key"),
        }
    }

    /// The private key as PKCS#8 `-----BEGIN PRIVATE KEY-----` PEM (what `mint --key` and
    /// `SigningKey::from_pem` read).
    pub fn private_pkcs8_pem(&self) -> String {
        let der = match &self.pair {
            Pair::Rsa(pair) => {
                let der: Pkcs8V1Der = pair.as_der().expect("RSA PKCS#8");
                der.as_ref().to_vec()
            }
            Pair::Ec { pkcs8, .. } | Pair::Ed { pkcs8, .. } => pkcs8.clone(),
        };
        pem_encode("PRIVATE KEY", &der)
    }

    /// The public key as a JWK with `kid` (and `use: sig`, `alg`).
    pub fn jwk(&self, kid: &str) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let alg = format!("{:?}", self.alg());
        match &self.pair {
            Pair::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA", "kid": kid, "use": "sig", "alg": alg,
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Pair::Ec { pair, p384, .. } => {
                let point = pair.public_key().as_ref();
                let len = if *p384 { 48 } else { 32 };
                json!({
                    "kty": "EC", "kid": kid, "use": "sig", "alg": alg,
                    "crv": if *p384 { "P-384" } else { "P-256" },
                    "x": b64(&point[1..1 + len]),
                    "y": b64(&point[1 + len..1 + 2 * len]),
                })
            }
            Pair::Ed { pair, .. } => json!({
                "kty": "OKP", "kid": kid, "use": "sig", "alg": alg,
                "crv": "Ed25519",
                "x": b64(pair.public_key().as_ref()),
            }),
        }
    }

    /// Signs `message` with `alg` (RS256/384/512 or PS256/384/512 for RSA; otherwise the key's own
    /// algorithm), in JWS form (ECDSA as fixed-size r‖s), with the library's signing keys.
    pub fn sign(&self, alg: Algorithm, message: &[u8]) -> Vec<u8> {
        self.signing.sign(alg, message).expect("sign")
    }

    /// A JWT signed with the key's own algorithm: header `{"alg", "typ": "JWT", "kid"}`.
    pub fn jwt(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": format!("{:?}", self.alg()), "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        self.jwt_with_header(&header, claims)
    }

    /// A JWT with exactly `header`, signed with the algorithm its `alg` names (or the key's own
    /// algorithm if `alg` is missing or not one this key can sign with).
    pub fn jwt_with_header(&self, header: &Value, claims: &Value) -> String {
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(|a| a.parse::<Algorithm>().ok())
            .filter(|a| match self.pair {
                Pair::Rsa(_) => matches!(
                    a,
                    Algorithm::RS256
                        | Algorithm::RS384
                        | Algorithm::RS512
                        | Algorithm::PS256
                        | Algorithm::PS384
                        | Algorithm::PS512
                ),
                _ => *a == self.alg(),
            })
            .unwrap_or(self.alg());
        encode(header, claims, &self.signing, alg).expect("sign")
    }

    /// A self-signed X.509 v3 certificate for this key, subject and issuer `CN=<cn>`, valid
    /// 2025-01-01 to 2099-12-31, as `-----BEGIN CERTIFICATE-----` PEM.
    pub fn certificate_pem(&self, cn: &str) -> String {
        pem_encode("CERTIFICATE", &self.certificate_der(cn))
    }

    /// The certificate of [`TestKey::certificate_pem`] as DER.
    pub fn certificate_der(&self, cn: &str) -> Vec<u8> {
        // sha256WithRSAEncryption, ecdsa-with-SHA256/384, Ed25519.
        let sig_alg = match &self.pair {
            Pair::Rsa(_) => {
                let mut alg = der(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]);
                alg.extend(der(0x05, &[]));
                der(0x30, &alg)
            }
            Pair::Ec { p384: false, .. } => der(0x30, &der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])),
            Pair::Ec { p384: true, .. } => der(0x30, &der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03])),
            Pair::Ed { .. } => der(0x30, &der(0x06, &[0x2b, 0x65, 0x70])),
        };
        let name = der(
            0x30,
            &der(
                0x31,
                &der(
                    0x30,
                    &[der(0x06, &[0x55, 0x04, 0x03]), der(0x0c, cn.as_bytes())].concat(),
                ),
            ),
        );
        let validity = der(
            0x30,
            &[der(0x17, b"250101000000Z"), der(0x18, b"20991231235959Z")].concat(),
        );
        let tbs = der(
            0x30,
            &[
                der(0xa0, &der(0x02, &[0x02])),
                der(0x02, &[0x01, 0x23, 0x45, 0x67]),
                sig_alg.clone(),
                name.clone(),
                validity,
                name,
                self.public_der(),
            ]
            .concat(),
        );
        let signature = match &self.pair {
            Pair::Rsa(_) => self.sign(Algorithm::RS256, &tbs),
            Pair::Ec { pkcs8, p384, .. } => {
                // X.509 wants the ASN.1 (DER) form of an ECDSA signature.
                let alg = if *p384 {
                    &signature::ECDSA_P384_SHA384_ASN1_SIGNING
                } else {
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING
                };
                let asn1 = EcdsaKeyPair::from_pkcs8(alg, pkcs8).expect("EC pkcs8");
                asn1.sign(&SystemRandom::new(), &tbs)
                    .expect("EC sign")
                    .as_ref()
                    .to_vec()
            }
            Pair::Ed { pair, .. } => pair.sign(&tbs).as_ref().to_vec(),
        };
        let mut bits = vec![0u8];
        bits.extend(signature);
        der(0x30, &[tbs, sig_alg, der(0x03, &bits)].concat())
    }
}

/// A JWT signed with an HMAC secret (`alg` HS256/384/512).
pub fn hs_jwt(alg: Algorithm, secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": format!("{alg:?}"), "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    hs_jwt_with_header(alg, secret, &header, claims)
}

/// A JWT with exactly `header` (whatever it says), HMAC-signed with `secret` by `alg`.
pub fn hs_jwt_with_header(alg: Algorithm, secret: &[u8], header: &Value, claims: &Value) -> String {
    encode(header, claims, &SigningKey::hmac(secret), alg).expect("an HMAC algorithm")
}

/// `base64url(header) "." base64url(claims)`.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// `der` bytes as PEM with `tag`.
pub fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}

/// One DER element.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}
