//! How a kid appears in refusal details and logs: cut to a short, quoted prefix.
//!
//! A kid comes from a token nobody has verified yet, so it can be 16 KiB of anything. Shown whole,
//! one login fills a log line and a refusal's `detail` with it (and the shim copies the detail into
//! Prosody's log); a short prefix still tells an admin which key was meant.

use std::fmt;

/// Characters of a kid shown before it is cut. Kids in use are short (`jitsi/key1`, a 16-hex-digit
/// key id, a Firebase 40-hex-digit id); 16 is enough to tell them apart in a log.
pub const KID_SHOWN_CHARS: usize = 16;

/// Displays a kid as a quoted, escaped string of at most [`KID_SHOWN_CHARS`] characters, with `…`
/// after the quote when it was cut: `"jitsi/key1"`, `"0123456789abcdef"…`. Control characters
/// and quotes are escaped as in Rust's `{:?}`, so a kid cannot start a new log line.
#[derive(Clone, Copy)]
pub struct ShortKid<'a>(pub &'a str);

impl fmt::Display for ShortKid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(KID_SHOWN_CHARS) {
            Some((cut, _)) => write!(f, "{:?}…", &self.0[..cut]),
            None => write!(f, "{:?}", self.0),
        }
    }
}

impl fmt::Debug for ShortKid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_kids_are_shown_whole_and_long_ones_cut() {
        assert_eq!(ShortKid("jitsi/key1").to_string(), "\"jitsi/key1\"");
        assert_eq!(ShortKid("0123456789abcdef").to_string(), "\"0123456789abcdef\"");
        assert_eq!(ShortKid("0123456789abcdefX").to_string(), "\"0123456789abcdef\"…");
        assert_eq!(
            ShortKid(&"k".repeat(16_000)).to_string(),
            format!("{:?}…", "k".repeat(16))
        );
        // Cut on characters, not bytes; escapes keep a kid on one line.
        assert_eq!(ShortKid(&"é".repeat(20)).to_string(), format!("{:?}…", "é".repeat(16)));
        assert_eq!(ShortKid("a\nb\"c").to_string(), "\"a\\nb\\\"c\"");
        assert_eq!(ShortKid("").to_string(), "\"\"");
    }
}
