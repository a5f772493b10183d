//! token-sidecar: Jitsi-compatible JWT verification for Prosody.
//!
//! The library decides whether a token is accepted for a host ([`token::Verifier`]) and whether a
//! verified session may join a room ([`room::verify_room`]). It knows nothing about sockets or
//! Prosody: the daemon and the CLI sit on top of it.

pub mod config;
pub mod keys;
pub mod luapattern;
pub mod room;
pub mod server;
pub mod token;

/// What kind of JSON value `v` is, for messages: "null", "a boolean", "a number", "a string",
/// "an array", "an object".
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The short, non-reversible name under which a token may appear in logs: the first 8 hex digits
/// of its SHA-256. Tokens themselves are never logged.
pub fn fingerprint(token: &str) -> String {
    hex(&sha256(token.as_bytes())[..4])
}
