//! Fresh signing keys for access tokens (`token-sidecar keygen`): PKCS#8 private keys and SPKI
//! public keys as PEM, the formats `openssl genpkey` and `openssl pkey -pubout` write, so the
//! files work with other tools too.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use jsonwebtoken::Algorithm;

/// The algorithms [`generate`] makes keys for, as `keygen --help` and errors list them.
pub const GENERATED_ALGORITHMS: &str = "ES256, EdDSA, RS256";

/// Why no key was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// An algorithm we do not generate keys for (HMAC, or one access tokens do not use).
    #[error("cannot generate a key for {0:?}: use one of ES256, EdDSA, RS256")]
    Unsupported(Algorithm),
    /// The crypto library refused (its random source failed, say).
    #[error("generating a key for {0:?} failed")]
    Failed(Algorithm),
}

/// A freshly generated key pair, as PEM text. `Debug` shows the public half only.
pub struct GeneratedKey {
    alg: Algorithm,
    private_pem: String,
    public_pem: String,
}

impl GeneratedKey {
    /// The algorithm the key signs.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The private key, PKCS#8 (`-----BEGIN PRIVATE KEY-----`). Secret: write it to a file
    /// only the owner reads, never to a log.
    pub fn private_pem(&self) -> &str {
        &self.private_pem
    }

    /// The public key, SPKI (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        f.debug_struct("GeneratedKey")
            .field("alg", &self.alg)
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

/// A new key for `alg`: ES256 (P-256), EdDSA (Ed25519) or RS256 (RSA-2048).
pub fn generate(alg: Algorithm) -> Result<GeneratedKey, GenerateError> {
    let failed = |_| GenerateError::Failed(alg);
    let (private_der, public_der) = match alg {
        Algorithm::ES256 => {
            let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).map_err(failed)?;
            let private = pair.to_pkcs8v1().map_err(failed)?.as_ref().to_vec();
            let public = pair.public_key().as_der().map_err(failed)?.as_ref().to_vec();
            (private, public)
        }
        Algorithm::EdDSA => {
            let pair = Ed25519KeyPair::generate().map_err(failed)?;
            // v1, as `openssl genpkey -algorithm ED25519` writes: every tool reads it.
            let private = pair.to_pkcs8v1().map_err(failed)?.as_ref().to_vec();
            let public = pair.public_key().as_der().map_err(failed)?.as_ref().to_vec();
            (private, public)
        }
        Algorithm::RS256 => {
            let pair = rsa::KeyPair::generate(rsa::KeySize::Rsa2048).map_err(failed)?;
            let private = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
                .map_err(failed)?
                .as_ref()
                .to_vec();
            let public = pair.public_key().as_der().map_err(failed)?.as_ref().to_vec();
            (private, public)
        }
        other => return Err(GenerateError::Unsupported(other)),
    };
    Ok(GeneratedKey {
        alg,
        private_pem: pem::encode(&pem::Pem::new("PRIVATE KEY", private_der)),
        public_pem: pem::encode(&pem::Pem::new("PUBLIC KEY", public_der)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{SigningKey, VerifyingKey};

    #[test]
    fn generated_keys_load_back_and_sign() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
            let key = generate(alg).expect("generate");
            assert_eq!(key.algorithm(), alg);
            assert!(key.private_pem().starts_with("-----BEGIN PRIVATE KEY-----"), "{alg:?}");
            assert!(key.public_pem().starts_with("-----BEGIN PUBLIC KEY-----"), "{alg:?}");
            let signing = SigningKey::from_pem(key.private_pem().as_bytes()).expect("private key loads");
            assert!(signing.signs(alg), "{alg:?}");
            let verifying = VerifyingKey::from_pem(key.public_pem().as_bytes()).expect("public key loads");
            assert!(verifying.kind().accepts(alg), "{alg:?}");
            let signature = signing.sign(alg, b"message").expect("sign");
            assert!(verifying.verify(alg, b"message", &signature), "{alg:?}");
            // The public PEM is the public half of this private key.
            let from_private = pem::encode(&pem::Pem::new(
                "PUBLIC KEY",
                signing.public_key_der().expect("public der"),
            ));
            assert_eq!(from_private, key.public_pem(), "{alg:?}");
        }
    }

    #[test]
    fn each_call_makes_a_new_key() {
        let a = generate(Algorithm::EdDSA).expect("generate");
        let b = generate(Algorithm::EdDSA).expect("generate");
        assert_ne!(a.public_pem(), b.public_pem());
    }

    #[test]
    fn other_algorithms_are_refused() {
        for alg in [Algorithm::HS256, Algorithm::ES384, Algorithm::PS256, Algorithm::RS512] {
            assert_eq!(generate(alg).expect_err("refused"), GenerateError::Unsupported(alg));
        }
    }

    #[test]
    fn debug_hides_the_private_key() {
        let key = generate(Algorithm::ES256).expect("generate");
        let text = format!("{key:?}");
        assert!(!text.contains("PRIVATE"), "{text}");
        assert!(text.contains("PUBLIC KEY"), "{text}");
    }
}
