//! The JWS algorithms this crate knows, by their header names.

use jsonwebtoken::Algorithm;

/// The names [`parse_algorithm`] accepts, in the order messages list them.
pub const ALGORITHM_NAMES: &str = "HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, EdDSA";

/// The algorithm a header `alg` (or `signature_algorithm`) names. `none` is not among them, by
/// construction, nor are algorithms no key here can verify.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Whether `alg` is an HMAC (shared secret) algorithm.
pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}
