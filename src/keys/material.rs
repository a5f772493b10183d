//! Key material prepared once for fast, repeated verification.
//!
//! Parsing happens when a key is made; `verify` then costs one HMAC or one public-key
//! operation. Public keys are parsed by aws-lc-rs; this file only finds out what kind of key a
//! PEM or JWK holds (and refuses what we do not accept) before handing the bytes over.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::{hmac, signature};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use signature::{ParsedPublicKey, VerificationAlgorithm};

use super::der;
use super::fetch::KeyError;

/// RSA keys shorter than this are refused (and aws-lc-rs would not verify with them anyway).
const MIN_RSA_BITS: u64 = 2048;
/// The largest RSA key aws-lc-rs verifies with.
const MAX_RSA_BITS: u64 = 8192;

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// What a key is, and so which algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A shared secret: HS256/384/512.
    Hmac,
    /// An RSA public key: RS256/384/512.
    Rsa {
        /// Its size.
        bits: u32,
    },
    /// An EC P-256 public key: ES256.
    EcP256,
    /// An EC P-384 public key: ES384.
    EcP384,
    /// An Ed25519 public key: EdDSA.
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind can verify `alg`.
    pub fn accepts(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Hmac => matches!(alg, HS256 | HS384 | HS512),
            KeyKind::Rsa { .. } => matches!(alg, RS256 | RS384 | RS512),
            KeyKind::EcP256 => alg == ES256,
            KeyKind::EcP384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

/// A key ready to verify signatures.
pub struct VerifyingKey {
    kind: KeyKind,
    material: Material,
    /// First 8 hex digits of the SHA-256 of the secret, or of the public key's SPKI DER.
    fingerprint: String,
}

enum Material {
    /// Boxed: three HMAC keys are large, and a public key should not pay for them.
    Hmac(Box<HmacKeys>),
    Rsa {
        rs256: ParsedPublicKey,
        rs384: ParsedPublicKey,
        rs512: ParsedPublicKey,
    },
    /// EC and Ed25519 keys: exactly one algorithm, the one `kind` accepts.
    Single(ParsedPublicKey),
}

struct HmacKeys {
    hs256: hmac::Key,
    hs384: hmac::Key,
    hs512: hmac::Key,
}

impl VerifyingKey {
    /// An HMAC secret: the raw bytes of the configured string (not base64-decoded).
    pub fn hmac(secret: &[u8]) -> Self {
        VerifyingKey {
            kind: KeyKind::Hmac,
            material: Material::Hmac(Box::new(HmacKeys {
                hs256: hmac::Key::new(hmac::HMAC_SHA256, secret),
                hs384: hmac::Key::new(hmac::HMAC_SHA384, secret),
                hs512: hmac::Key::new(hmac::HMAC_SHA512, secret),
            })),
            fingerprint: crate::digest::fingerprint(secret),
        }
    }

    /// A public key from PEM: SPKI (`PUBLIC KEY`), PKCS#1 (`RSA PUBLIC KEY`) or an X.509
    /// `CERTIFICATE` (its subject public key). RSA keys under 2048 bits are refused.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let text = pem.trim_ascii();
        if text.is_empty() {
            return Err(bad("empty input, expected a PEM public key"));
        }
        if !text.starts_with(b"-----BEGIN ") {
            return Err(bad("not PEM: expected \"-----BEGIN PUBLIC KEY-----\""));
        }
        let block = pem::parse(text).map_err(|e| bad(format!("not valid PEM: {e}")))?;
        let der = block.contents();
        match block.tag() {
            "PUBLIC KEY" => from_spki(whole_element(der, "SubjectPublicKeyInfo")?),
            "RSA PUBLIC KEY" => rsa_from_pkcs1(whole_element(der, "RSAPublicKey")?),
            "CERTIFICATE" => from_spki(certificate_spki(der).map_err(bad)?),
            tag if tag.contains("PRIVATE") => Err(bad(format!(
                "this is a private key ({tag}); a public key or certificate is needed"
            ))),
            tag => Err(bad(format!(
                "PEM type \"{tag}\" is not supported (use PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)"
            ))),
        }
    }

    /// A public key from one JWK (RSA, EC P-256/P-384, OKP Ed25519).
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, KeyError> {
        let obj = jwk.as_object().ok_or_else(|| bad("a JWK must be a JSON object"))?;
        if let Some(usage) = obj.get("use")
            && usage.as_str() != Some("sig")
        {
            return Err(bad(format!("JWK \"use\" is {usage}, not \"sig\": not a signature key")));
        }
        if let Some(ops) = obj.get("key_ops").and_then(|v| v.as_array())
            && !ops.iter().any(|op| op.as_str() == Some("verify"))
        {
            return Err(bad("JWK \"key_ops\" does not include \"verify\""));
        }
        let kty = obj
            .get("kty")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("JWK has no \"kty\""))?;
        let key = match kty {
            "RSA" => {
                let n = jwk_bytes(jwk, "n")?;
                let e = jwk_bytes(jwk, "e")?;
                let mut body = Vec::with_capacity(n.len() + e.len() + 16);
                der::write_unsigned(&mut body, &n);
                der::write_unsigned(&mut body, &e);
                let mut pkcs1 = Vec::with_capacity(body.len() + 4);
                der::write(&mut pkcs1, der::SEQUENCE, &body);
                rsa_from_pkcs1(&pkcs1)?
            }
            "EC" => {
                let (kind, alg, len): (_, &'static dyn VerificationAlgorithm, _) =
                    match obj.get("crv").and_then(|v| v.as_str()) {
                        Some("P-256") => (KeyKind::EcP256, &signature::ECDSA_P256_SHA256_FIXED, 32),
                        Some("P-384") => (KeyKind::EcP384, &signature::ECDSA_P384_SHA384_FIXED, 48),
                        Some(other) => {
                            return Err(bad(format!(
                                "EC curve {other:?} is not supported (only P-256 and P-384)"
                            )));
                        }
                        None => return Err(bad("EC JWK has no \"crv\"")),
                    };
                let x = jwk_bytes(jwk, "x")?;
                let y = jwk_bytes(jwk, "y")?;
                if x.len() != len || y.len() != len {
                    return Err(bad(format!(
                        "EC JWK coordinates must be {len} bytes each, got {} and {}",
                        x.len(),
                        y.len()
                    )));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                single(kind, alg, &point)?
            }
            "OKP" => match obj.get("crv").and_then(|v| v.as_str()) {
                Some("Ed25519") => {
                    let x = jwk_bytes(jwk, "x")?;
                    if x.len() != 32 {
                        return Err(bad(format!("Ed25519 JWK \"x\" must be 32 bytes, got {}", x.len())));
                    }
                    single(KeyKind::Ed25519, &signature::ED25519, &x)?
                }
                Some(other) => {
                    return Err(bad(format!("OKP curve {other:?} is not supported (only Ed25519)")));
                }
                None => return Err(bad("OKP JWK has no \"crv\"")),
            },
            "oct" => return Err(bad("symmetric (\"oct\") JWKs are not accepted")),
            other => return Err(bad(format!("JWK key type {other:?} is not supported"))),
        };
        if let Some(alg) = obj.get("alg") {
            let usable = alg
                .as_str()
                .and_then(|a| a.parse::<Algorithm>().ok())
                .is_some_and(|a| key.kind.accepts(a));
            if !usable {
                return Err(bad(format!("JWK \"alg\" {alg} cannot be used with this {kty} key")));
            }
        }
        Ok(key)
    }

    /// What the key is.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// First 8 hex digits of the SHA-256 of the secret or of the public key (SPKI DER): enough
    /// to tell keys apart in logs, nothing an attacker can use.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Verifies `signature` over `message` with `alg`. False when the signature is wrong or when
    /// this key cannot be used with `alg`.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        let key = match (&self.material, alg) {
            (Material::Hmac(keys), Algorithm::HS256) => &keys.hs256,
            (Material::Hmac(keys), Algorithm::HS384) => &keys.hs384,
            (Material::Hmac(keys), Algorithm::HS512) => &keys.hs512,
            (Material::Rsa { rs256, .. }, Algorithm::RS256) => {
                return rs256.verify_sig(message, signature).is_ok();
            }
            (Material::Rsa { rs384, .. }, Algorithm::RS384) => {
                return rs384.verify_sig(message, signature).is_ok();
            }
            (Material::Rsa { rs512, .. }, Algorithm::RS512) => {
                return rs512.verify_sig(message, signature).is_ok();
            }
            (Material::Single(key), alg) if self.kind.accepts(alg) => {
                return key.verify_sig(message, signature).is_ok();
            }
            _ => return false,
        };
        hmac::verify(key, message, signature).is_ok()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kind", &self.kind)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

fn bad(reason: impl Into<String>) -> KeyError {
    KeyError::BadKey(reason.into())
}

/// The fingerprint of a parsed public key: over its canonical SPKI DER, so the same key gives
/// the same fingerprint whether it came as PEM, PKCS#1 or JWK.
fn public_fingerprint(key: &ParsedPublicKey) -> String {
    match key.as_der() {
        Ok(der) => crate::digest::fingerprint(der.as_ref()),
        Err(_) => crate::digest::fingerprint(key.as_ref()),
    }
}

/// `der` must be exactly one element (nothing after it).
fn whole_element<'a>(der: &'a [u8], what: &str) -> Result<&'a [u8], KeyError> {
    let (tlv, rest) = der::read(der).map_err(|e| bad(format!("{what}: {e}")))?;
    if tlv.tag != der::SEQUENCE {
        return Err(bad(format!("{what}: expected a DER SEQUENCE")));
    }
    if !rest.is_empty() {
        return Err(bad(format!("{what}: {} unexpected bytes after the key", rest.len())));
    }
    Ok(tlv.whole)
}

/// The SubjectPublicKeyInfo inside an X.509 certificate.
fn certificate_spki(cert: &[u8]) -> Result<&[u8], &'static str> {
    let (certificate, _) = der::expect(cert, der::SEQUENCE, "certificate: expected a SEQUENCE")?;
    let (tbs, _) = der::expect(
        certificate.content,
        der::SEQUENCE,
        "certificate: expected tbsCertificate",
    )?;
    let mut rest = tbs.content;
    let (first, after) = der::read(rest)?;
    if first.tag == der::CONTEXT_0 {
        rest = after; // version
    }
    let (_, rest) = der::expect(rest, der::INTEGER, "certificate: expected the serial number")?;
    let (_, rest) = der::expect(rest, der::SEQUENCE, "certificate: expected the signature algorithm")?;
    let (_, rest) = der::expect(rest, der::SEQUENCE, "certificate: expected the issuer")?;
    let (_, rest) = der::expect(rest, der::SEQUENCE, "certificate: expected the validity")?;
    let (_, rest) = der::expect(rest, der::SEQUENCE, "certificate: expected the subject")?;
    let (spki, _) = der::expect(rest, der::SEQUENCE, "certificate: expected the subject public key info")?;
    Ok(spki.whole)
}

/// A key from a SubjectPublicKeyInfo, its type read from the algorithm OID.
fn from_spki(spki: &[u8]) -> Result<VerifyingKey, KeyError> {
    let (oid, params, bits) = split_spki(spki).map_err(|e| bad(format!("SubjectPublicKeyInfo: {e}")))?;
    match oid {
        OID_RSA => {
            // BIT STRING: one byte of unused bits (must be 0), then the PKCS#1 RSAPublicKey.
            match bits.split_first() {
                Some((0, pkcs1)) => rsa_keys(spki, rsa_bits(pkcs1)?),
                _ => Err(bad("RSA key: malformed BIT STRING")),
            }
        }
        OID_EC_PUBLIC_KEY => {
            let curve = der::expect(params, der::OID, "EC key: curve must be a named curve OID")
                .map_err(bad)?
                .0
                .content;
            match curve {
                OID_P256 => single(KeyKind::EcP256, &signature::ECDSA_P256_SHA256_FIXED, spki),
                OID_P384 => single(KeyKind::EcP384, &signature::ECDSA_P384_SHA384_FIXED, spki),
                other => Err(bad(format!(
                    "EC curve {} is not supported (only P-256 and P-384)",
                    der::oid_text(other)
                ))),
            }
        }
        OID_ED25519 => single(KeyKind::Ed25519, &signature::ED25519, spki),
        OID_RSA_PSS => Err(bad("RSASSA-PSS keys are not supported (use an rsaEncryption key)")),
        other => Err(bad(format!(
            "key algorithm {} is not supported (RSA, EC P-256/P-384 or Ed25519)",
            der::oid_text(other)
        ))),
    }
}

/// The algorithm OID, its parameters and the key bits of a SubjectPublicKeyInfo.
type SpkiParts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Splits a SubjectPublicKeyInfo into its parts.
fn split_spki(spki: &[u8]) -> Result<SpkiParts<'_>, &'static str> {
    let (outer, _) = der::expect(spki, der::SEQUENCE, "expected a SEQUENCE")?;
    let (alg_id, rest) = der::expect(outer.content, der::SEQUENCE, "expected an AlgorithmIdentifier")?;
    let (bits, _) = der::expect(rest, der::BIT_STRING, "expected the key BIT STRING")?;
    let (oid, params) = der::expect(alg_id.content, der::OID, "expected the algorithm OID")?;
    Ok((oid.content, params, bits.content))
}

/// The modulus size of a PKCS#1 RSAPublicKey, refused when too small or too large.
fn rsa_bits(pkcs1: &[u8]) -> Result<u32, KeyError> {
    let parse = |der: &[u8]| -> Result<u64, &'static str> {
        let (seq, _) = der::expect(der, der::SEQUENCE, "expected a SEQUENCE")?;
        let (n, rest) = der::expect(seq.content, der::INTEGER, "expected the modulus")?;
        let (e, _) = der::expect(rest, der::INTEGER, "expected the exponent")?;
        let n = der::unsigned_integer(n.content, "the modulus must be positive")?;
        der::unsigned_integer(e.content, "the exponent must be positive")?;
        Ok(der::bit_length(n))
    };
    let bits = parse(pkcs1).map_err(|e| bad(format!("RSA key: {e}")))?;
    if bits < MIN_RSA_BITS {
        // Under 2048, so it fits.
        return Err(KeyError::WeakKey {
            bits: u32::try_from(bits).unwrap_or(u32::MAX),
        });
    }
    if bits > MAX_RSA_BITS {
        return Err(bad(format!(
            "RSA key of {bits} bits is larger than the {MAX_RSA_BITS} supported"
        )));
    }
    u32::try_from(bits).map_err(|_| bad("RSA key too large"))
}

fn rsa_from_pkcs1(pkcs1: &[u8]) -> Result<VerifyingKey, KeyError> {
    let bits = rsa_bits(pkcs1)?;
    rsa_keys(pkcs1, bits)
}

/// RSA keys for RS256/384/512 from SPKI or PKCS#1 DER (aws-lc-rs reads both).
fn rsa_keys(der: &[u8], bits: u32) -> Result<VerifyingKey, KeyError> {
    let parse = |alg: &'static signature::RsaParameters| {
        ParsedPublicKey::new(alg, der).map_err(|e| bad(format!("RSA key rejected: {e}")))
    };
    let rs256 = parse(&signature::RSA_PKCS1_2048_8192_SHA256)?;
    let rs384 = parse(&signature::RSA_PKCS1_2048_8192_SHA384)?;
    let rs512 = parse(&signature::RSA_PKCS1_2048_8192_SHA512)?;
    Ok(VerifyingKey {
        kind: KeyKind::Rsa { bits },
        fingerprint: public_fingerprint(&rs256),
        material: Material::Rsa { rs256, rs384, rs512 },
    })
}

fn single(kind: KeyKind, alg: &'static dyn VerificationAlgorithm, bytes: &[u8]) -> Result<VerifyingKey, KeyError> {
    let key = ParsedPublicKey::new(alg, bytes).map_err(|e| bad(format!("{kind:?} key rejected: {e}")))?;
    Ok(VerifyingKey {
        kind,
        fingerprint: public_fingerprint(&key),
        material: Material::Single(key),
    })
}

/// A base64url member of a JWK (padding tolerated).
fn jwk_bytes(jwk: &serde_json::Value, member: &str) -> Result<Vec<u8>, KeyError> {
    let text = jwk
        .get(member)
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad(format!("JWK has no \"{member}\"")))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| bad(format!("JWK \"{member}\" is not base64url: {e}")))?;
    if bytes.is_empty() {
        return Err(bad(format!("JWK \"{member}\" is empty")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use aws_lc_rs::{rsa, signature as sig};
    use std::sync::OnceLock;

    const MSG: &[u8] = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0";
    const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    fn pem_of(tag: &str, der: &[u8]) -> String {
        pem::encode(&pem::Pem::new(tag, der.to_vec()))
    }

    fn rsa_pair() -> &'static rsa::KeyPair {
        static PAIR: OnceLock<rsa::KeyPair> = OnceLock::new();
        PAIR.get_or_init(|| rsa::KeyPair::generate(rsa::KeySize::Rsa2048).expect("rsa keygen"))
    }

    /// Checks that `key` verifies `good` under `alg` only, and rejects a flipped signature
    /// and every other algorithm.
    fn check(key: &VerifyingKey, alg: Algorithm, good: &[u8]) {
        assert!(key.verify(alg, MSG, good), "{alg:?} good signature");
        let mut flipped = good.to_vec();
        if let Some(b) = flipped.last_mut() {
            *b ^= 1;
        }
        assert!(!key.verify(alg, MSG, &flipped), "{alg:?} flipped signature");
        assert!(!key.verify(alg, b"other message", good), "{alg:?} other message");
        assert!(!key.verify(alg, MSG, &[]), "{alg:?} empty signature");
        for other in ALL.into_iter().filter(|&a| a != alg) {
            assert!(!key.verify(other, MSG, good), "{alg:?} key used as {other:?}");
        }
    }

    #[test]
    fn hmac_verifies_its_own_algorithms_only() {
        let key = VerifyingKey::hmac(b"s3cret");
        assert_eq!(key.kind(), KeyKind::Hmac);
        for (alg, h) in [
            (Algorithm::HS256, hmac::HMAC_SHA256),
            (Algorithm::HS384, hmac::HMAC_SHA384),
            (Algorithm::HS512, hmac::HMAC_SHA512),
        ] {
            let tag = hmac::sign(&hmac::Key::new(h, b"s3cret"), MSG);
            check(&key, alg, tag.as_ref());
            let wrong = hmac::sign(&hmac::Key::new(h, b"s3creT"), MSG);
            assert!(!key.verify(alg, MSG, wrong.as_ref()));
            // A truncated tag must not verify.
            assert!(!key.verify(alg, MSG, &tag.as_ref()[..16]));
        }
    }

    #[test]
    fn rsa_verifies_rs_family() {
        let pair = rsa_pair();
        let spki = pair.public_key().as_der().expect("spki");
        let key = VerifyingKey::from_pem(pem_of("PUBLIC KEY", spki.as_ref()).as_bytes()).expect("pem");
        assert_eq!(key.kind(), KeyKind::Rsa { bits: 2048 });
        for (alg, enc) in [
            (Algorithm::RS256, &sig::RSA_PKCS1_SHA256),
            (Algorithm::RS384, &sig::RSA_PKCS1_SHA384),
            (Algorithm::RS512, &sig::RSA_PKCS1_SHA512),
        ] {
            let mut out = vec![0; pair.public_modulus_len()];
            pair.sign(enc, &SystemRandom::new(), MSG, &mut out).expect("sign");
            check(&key, alg, &out);
        }
        // A PS256 signature is refused even though the key is RSA.
        let mut pss = vec![0; pair.public_modulus_len()];
        pair.sign(&sig::RSA_PSS_SHA256, &SystemRandom::new(), MSG, &mut pss)
            .expect("sign");
        assert!(!key.verify(Algorithm::PS256, MSG, &pss));
        assert!(!key.verify(Algorithm::RS256, MSG, &pss));
    }

    #[test]
    fn rsa_from_pkcs1_pem_and_jwk_are_the_same_key() {
        let pair = rsa_pair();
        let public = pair.public_key();
        let spki = VerifyingKey::from_pem(pem_of("PUBLIC KEY", public.as_der().expect("spki").as_ref()).as_bytes())
            .expect("spki");
        let pkcs1 = VerifyingKey::from_pem(pem_of("RSA PUBLIC KEY", public.as_ref()).as_bytes()).expect("pkcs1");
        let jwk = serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        let from_jwk = VerifyingKey::from_jwk(&jwk).expect("jwk");
        assert_eq!(spki.fingerprint(), pkcs1.fingerprint());
        assert_eq!(spki.fingerprint(), from_jwk.fingerprint());
        let mut out = vec![0; pair.public_modulus_len()];
        pair.sign(&sig::RSA_PKCS1_SHA256, &SystemRandom::new(), MSG, &mut out)
            .expect("sign");
        for key in [&spki, &pkcs1, &from_jwk] {
            check(key, Algorithm::RS256, &out);
        }
    }

    #[test]
    fn ec_and_ed25519_verify_their_algorithm_only() {
        let rng = SystemRandom::new();
        for (alg, signing, kind) in [
            (Algorithm::ES256, &sig::ECDSA_P256_SHA256_FIXED_SIGNING, KeyKind::EcP256),
            (Algorithm::ES384, &sig::ECDSA_P384_SHA384_FIXED_SIGNING, KeyKind::EcP384),
        ] {
            let pair = EcdsaKeyPair::generate(signing).expect("ec keygen");
            let spki = pair.public_key().as_der().expect("spki");
            let key = VerifyingKey::from_pem(pem_of("PUBLIC KEY", spki.as_ref()).as_bytes()).expect("ec pem");
            assert_eq!(key.kind(), kind);
            let signature = pair.sign(&rng, MSG).expect("sign");
            check(&key, alg, signature.as_ref());
        }
        let pair = Ed25519KeyPair::generate().expect("ed keygen");
        let spki = pair.public_key().as_der().expect("spki");
        let key = VerifyingKey::from_pem(pem_of("PUBLIC KEY", spki.as_ref()).as_bytes()).expect("ed pem");
        assert_eq!(key.kind(), KeyKind::Ed25519);
        check(&key, Algorithm::EdDSA, pair.sign(MSG).as_ref());

        let jwk = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        });
        let from_jwk = VerifyingKey::from_jwk(&jwk).expect("okp jwk");
        assert_eq!(from_jwk.fingerprint(), key.fingerprint());
        check(&from_jwk, Algorithm::EdDSA, pair.sign(MSG).as_ref());
    }

    #[test]
    fn ec_jwk() {
        let pair = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
        let point = pair.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        let key = VerifyingKey::from_jwk(&jwk).expect("ec jwk");
        assert_eq!(key.kind(), KeyKind::EcP256);
        let signature = pair.sign(&SystemRandom::new(), MSG).expect("sign");
        check(&key, Algorithm::ES256, signature.as_ref());

        // Wrong curve name for the coordinates, and a point off the curve.
        let mut wrong = jwk.clone();
        wrong["crv"] = "P-384".into();
        assert!(matches!(VerifyingKey::from_jwk(&wrong), Err(KeyError::BadKey(_))));
        let mut off = jwk.clone();
        off["y"] = URL_SAFE_NO_PAD.encode([7u8; 32]).into();
        assert!(matches!(VerifyingKey::from_jwk(&off), Err(KeyError::BadKey(_))));
    }

    #[test]
    fn jwk_refusals() {
        let bad_jwks = [
            serde_json::json!("not an object"),
            serde_json::json!({}),
            serde_json::json!({"kty": "oct", "k": "c2VjcmV0"}),
            serde_json::json!({"kty": "RSA", "n": "AQAB"}),
            serde_json::json!({"kty": "RSA", "n": "!!!", "e": "AQAB"}),
            serde_json::json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
            serde_json::json!({"kty": "OKP", "crv": "X25519", "x": "AA"}),
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
            serde_json::json!({"kty": "XYZ"}),
        ];
        for jwk in bad_jwks {
            assert!(
                matches!(VerifyingKey::from_jwk(&jwk), Err(KeyError::BadKey(_))),
                "{jwk}"
            );
        }
        let public = rsa_pair().public_key();
        let mut jwk = serde_json::json!({
            "kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        assert!(VerifyingKey::from_jwk(&jwk).is_ok());
        jwk["use"] = "enc".into();
        let err = VerifyingKey::from_jwk(&jwk).expect_err("enc key");
        assert!(err.to_string().contains("\"enc\""), "{err}");
        jwk["use"] = "sig".into();
        jwk["alg"] = "PS256".into();
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
        jwk["alg"] = "ES256".into();
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
        jwk["alg"] = "RS512".into();
        assert!(VerifyingKey::from_jwk(&jwk).is_ok());
    }

    #[test]
    fn pem_refusals_are_errors_not_panics() {
        let cases: [&[u8]; 8] = [
            b"",
            b"   \n",
            b"hello",
            b"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
            b"-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n",
            b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
            b"-----BEGIN FOO-----\nMAA=\n-----END FOO-----\n",
            b"-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
        ];
        for case in cases {
            let err = VerifyingKey::from_pem(case).expect_err("must be refused");
            assert!(matches!(err, KeyError::BadKey(_)), "{err:?}");
        }
        let private = VerifyingKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n")
            .expect_err("private");
        assert!(private.to_string().contains("private key"), "{private}");
    }

    #[test]
    fn truncated_spki_never_panics() {
        let spki = rsa_pair().public_key().as_der().expect("spki");
        let der = spki.as_ref();
        for len in 0..der.len() {
            let pem = pem_of("PUBLIC KEY", &der[..len]);
            assert!(VerifyingKey::from_pem(pem.as_bytes()).is_err(), "truncated to {len}");
            let cert = pem_of("CERTIFICATE", &der[..len]);
            assert!(VerifyingKey::from_pem(cert.as_bytes()).is_err());
        }
        let mut trailing = der.to_vec();
        trailing.push(0);
        assert!(VerifyingKey::from_pem(pem_of("PUBLIC KEY", &trailing).as_bytes()).is_err());
    }

    #[test]
    fn debug_shows_kind_and_fingerprint_only() {
        let key = VerifyingKey::hmac(b"very secret value");
        let text = format!("{key:?}");
        assert!(text.contains("Hmac"), "{text}");
        assert!(text.contains(key.fingerprint()), "{text}");
        assert_eq!(key.fingerprint().len(), 8);
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn keys_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<VerifyingKey>();
    }
}
