//! Key material prepared once for fast, repeated verification.

use jsonwebtoken::Algorithm;

use super::KeyError;

/// What a key is, and so which algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Hmac,
    Rsa { bits: u32 },
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind can verify `alg`.
    pub fn accepts(self, alg: Algorithm) -> bool {
        todo!("{alg:?}")
    }
}

/// A key ready to verify signatures.
pub struct VerifyingKey {
    kind: KeyKind,
}

impl VerifyingKey {
    /// An HMAC secret: the raw bytes of the configured string (not base64-decoded).
    pub fn hmac(secret: &[u8]) -> Self {
        todo!("{}", secret.len())
    }

    /// A public key from PEM: SPKI (`PUBLIC KEY`), PKCS#1 (`RSA PUBLIC KEY`) or an X.509
    /// `CERTIFICATE` (its subject public key). RSA keys under 2048 bits are refused.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        todo!("{}", pem.len())
    }

    /// A public key from one JWK (RSA, EC P-256/P-384, OKP Ed25519).
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, KeyError> {
        todo!("{jwk}")
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Verifies `signature` over `message` with `alg`. False when the signature is wrong or when
    /// this key cannot be used with `alg`.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        todo!("{alg:?} {} {}", message.len(), signature.len())
    }
}
