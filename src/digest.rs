//! SHA-256 and how digests are written: lowercase hex, and the 8-digit fingerprint under which a
//! token (or a key) may appear in logs. The one copy of each for the whole crate.

use serde::{Serialize, Serializer};

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The short, non-reversible name of some bytes for logs: the first 8 hex digits of their
/// SHA-256. Tokens, secrets and keys themselves are never logged.
pub fn fingerprint(data: &[u8]) -> String {
    fingerprint_of(&sha256(data))
}

/// The fingerprint of bytes whose SHA-256 is `digest`.
pub fn fingerprint_of(digest: &[u8; 32]) -> String {
    hex(&digest[..4])
}

/// Reads 64 hex digits (either case) back into a digest.
pub fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A SHA-256 serialised as 64 lowercase hex digits, formatted on the stack.
#[derive(Debug, Clone, Copy)]
pub struct Sha256Hex<'a>(pub &'a [u8; 32]);

impl Serialize for Sha256Hex<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            text[2 * i] = DIGITS[usize::from(b >> 4)];
            text[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        // Hex digits are ASCII.
        serializer.serialize_str(std::str::from_utf8(&text).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_fingerprints_agree() {
        let digest = sha256(b"abc");
        let text = hex(&digest);
        assert_eq!(text, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(fingerprint(b"abc"), "ba7816bf");
        assert_eq!(serde_json::to_value(Sha256Hex(&digest)).unwrap(), text.as_str());
        assert_eq!(parse_sha256_hex(&text), Some(digest));
        assert_eq!(parse_sha256_hex(&text.to_uppercase()), Some(digest));
        assert_eq!(parse_sha256_hex("zz"), None);
        assert_eq!(parse_sha256_hex(&"g".repeat(64)), None);
        assert_eq!(parse_sha256_hex(&"é".repeat(32)), None);
    }
}
