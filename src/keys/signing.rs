//! Signing keys: what `token-sidecar mint`, the load tool, the tests and the benchmarks sign JWTs
//! with. A key is parsed once and kept, so each signature costs the signature alone.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use aws_lc_rs::{hmac, rsa};
use jsonwebtoken::Algorithm;

use super::algorithm::is_hmac;

/// A key that signs: an HMAC secret, or an RSA, EC P-256/P-384 or Ed25519 private key.
pub enum SigningKey {
    /// A shared secret, used as raw bytes (as `app_secret` is).
    Hmac(Box<[u8]>),
    /// An RSA private key: RS256/384/512 (and PS256/384/512, which hosts do not accept).
    Rsa(rsa::KeyPair),
    /// An EC private key and the one algorithm its curve signs: ES256 (P-256) or ES384 (P-384).
    Ec(EcdsaKeyPair, Algorithm),
    /// An Ed25519 private key: EdDSA.
    Ed25519(Ed25519KeyPair),
}

/// Why a key could not be made or could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The file holds no PEM private key we can use.
    #[error("the key file is not a PEM private key (RSA, EC P-256/P-384 or Ed25519)")]
    NotAPrivateKey,
    /// This key cannot sign with this algorithm (an RSA key asked for ES256, say).
    #[error("this {kind} key cannot sign {alg:?}")]
    WrongAlgorithm {
        /// The key's kind.
        kind: &'static str,
        /// The algorithm asked for.
        alg: Algorithm,
    },
    /// The crypto library refused (not expected with a key it parsed).
    #[error("signing with {0:?} failed")]
    Failed(Algorithm),
}

impl SigningKey {
    /// An HMAC secret (HS256/384/512).
    pub fn hmac(secret: &[u8]) -> SigningKey {
        SigningKey::Hmac(secret.into())
    }

    /// A private key from PEM: PKCS#8 (`PRIVATE KEY`) for RSA, EC and Ed25519, PKCS#1
    /// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, SigningError> {
        let parsed = pem::parse(pem).map_err(|_| SigningError::NotAPrivateKey)?;
        let der = parsed.contents();
        match parsed.tag() {
            "RSA PRIVATE KEY" => rsa::KeyPair::from_der(der).map(SigningKey::Rsa).ok(),
            "EC PRIVATE KEY" => Self::ec(der),
            "PRIVATE KEY" => rsa::KeyPair::from_pkcs8(der)
                .map(SigningKey::Rsa)
                .ok()
                .or_else(|| Self::ec(der))
                .or_else(|| Ed25519KeyPair::from_pkcs8(der).map(SigningKey::Ed25519).ok()),
            _ => None,
        }
        .ok_or(SigningError::NotAPrivateKey)
    }

    fn ec(der: &[u8]) -> Option<SigningKey> {
        let p256 = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let p384 = &signature::ECDSA_P384_SHA384_FIXED_SIGNING;
        EcdsaKeyPair::from_private_key_der(p256, der)
            .map(|pair| SigningKey::Ec(pair, Algorithm::ES256))
            .or_else(|_| {
                EcdsaKeyPair::from_private_key_der(p384, der).map(|pair| SigningKey::Ec(pair, Algorithm::ES384))
            })
            .ok()
    }

    /// A fresh RSA-2048 key (for the load tool and tests).
    pub fn generate_rsa() -> Result<SigningKey, SigningError> {
        rsa::KeyPair::generate(rsa::KeySize::Rsa2048)
            .map(SigningKey::Rsa)
            .map_err(|_| SigningError::Failed(Algorithm::RS256))
    }

    /// What kind of key this is, for messages: "HMAC", "RSA", "EC P-256", "EC P-384", "Ed25519".
    pub fn kind(&self) -> &'static str {
        match self {
            SigningKey::Hmac(_) => "HMAC",
            SigningKey::Rsa(_) => "RSA",
            SigningKey::Ec(_, Algorithm::ES384) => "EC P-384",
            SigningKey::Ec(..) => "EC P-256",
            SigningKey::Ed25519(_) => "Ed25519",
        }
    }

    /// Whether this key signs `alg`.
    pub fn signs(&self, alg: Algorithm) -> bool {
        match self {
            SigningKey::Hmac(_) => is_hmac(alg),
            SigningKey::Rsa(_) => rsa_padding(alg).is_some(),
            SigningKey::Ec(_, own) => *own == alg,
            SigningKey::Ed25519(_) => alg == Algorithm::EdDSA,
        }
    }

    /// The algorithm to sign with: the first of `preferred` this key signs, else its own default
    /// (HS256, RS256, the curve's ES*, EdDSA).
    pub fn pick_algorithm(&self, preferred: &[Algorithm]) -> Algorithm {
        preferred
            .iter()
            .copied()
            .find(|a| self.signs(*a))
            .unwrap_or(match self {
                SigningKey::Hmac(_) => Algorithm::HS256,
                SigningKey::Rsa(_) => Algorithm::RS256,
                SigningKey::Ec(_, own) => *own,
                SigningKey::Ed25519(_) => Algorithm::EdDSA,
            })
    }

    /// The public half as SPKI DER (`None` for an HMAC secret).
    pub fn public_key_der(&self) -> Option<Vec<u8>> {
        use aws_lc_rs::encoding::AsDer;
        match self {
            SigningKey::Hmac(_) => None,
            SigningKey::Rsa(pair) => pair.public_key().as_der().ok().map(|d| d.as_ref().to_vec()),
            SigningKey::Ec(pair, _) => pair.public_key().as_der().ok().map(|d| d.as_ref().to_vec()),
            SigningKey::Ed25519(pair) => pair.public_key().as_der().ok().map(|d| d.as_ref().to_vec()),
        }
    }

    /// The JWS signature of `message` by `alg` (ECDSA as fixed-size r‖s, as JWTs carry it).
    pub fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, SigningError> {
        let wrong = || SigningError::WrongAlgorithm { kind: self.kind(), alg };
        let failed = |_| SigningError::Failed(alg);
        match self {
            SigningKey::Hmac(secret) => {
                let digest = match alg {
                    Algorithm::HS256 => hmac::HMAC_SHA256,
                    Algorithm::HS384 => hmac::HMAC_SHA384,
                    Algorithm::HS512 => hmac::HMAC_SHA512,
                    _ => return Err(wrong()),
                };
                Ok(hmac::sign(&hmac::Key::new(digest, secret), message).as_ref().to_vec())
            }
            SigningKey::Rsa(pair) => {
                let padding = rsa_padding(alg).ok_or_else(wrong)?;
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(padding, &SystemRandom::new(), message, &mut out)
                    .map_err(failed)?;
                Ok(out)
            }
            SigningKey::Ec(pair, own) if *own == alg => Ok(pair
                .sign(&SystemRandom::new(), message)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
            SigningKey::Ed25519(pair) if alg == Algorithm::EdDSA => Ok(pair.sign(message).as_ref().to_vec()),
            _ => Err(wrong()),
        }
    }
}

fn rsa_padding(alg: Algorithm) -> Option<&'static dyn signature::RsaEncoding> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_SHA512,
        _ => return None,
    })
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        f.debug_tuple("SigningKey").field(&self.kind()).finish()
    }
}
