//! Any bytes as PEM key material: `VerifyingKey::from_pem` (a key server's body, a key set's
//! certificate, a session's `public_key`), `SigningKey::from_pem` and `AccessVerifier::from_pem`
//! (an issuer's or `verify-access`'s key file).
//!
//! Must hold: no panic; a private key is never taken as a verifying key; a verifying key has an
//! 8-hex-digit fingerprint, verifies no empty or zero signature and no HMAC made with its own PEM
//! as the secret (algorithm confusion); a signing key's signature verifies with its public half.
#![no_main]

#[path = "common/keys.rs"]
mod keys;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    keys::check_pem(data);
});
