//! Small changes to a token, to check that a changed token is never accepted (shared by `token`
//! and `access_token`).

const B64_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";

/// The token with one character replaced, inserted or removed, as `tamper` says.
pub fn tampered(token: &str, tamper: &[u8]) -> Option<String> {
    let [a, b, c, ..] = *tamper else { return None };
    let mut bytes = token.as_bytes().to_vec();
    let at = usize::from(u16::from_le_bytes([a, b])) % (bytes.len() + 1);
    let ch = B64_CHARS[usize::from(c) % B64_CHARS.len()];
    match c % 3 {
        0 if at < bytes.len() => bytes[at] = ch,
        1 => bytes.insert(at, ch),
        _ if at < bytes.len() => {
            bytes.remove(at);
        }
        _ => bytes.push(ch),
    }
    String::from_utf8(bytes).ok()
}
