//! Just enough DER to find a public key: read one TLV at a time, never index past the input, and
//! say what was wrong in a short phrase. Also the two writers `from_jwk` needs for an RSA key.

/// Universal tags used here.
pub(super) const INTEGER: u8 = 0x02;
pub(super) const BIT_STRING: u8 = 0x03;
pub(super) const OID: u8 = 0x06;
pub(super) const SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT`, the optional version of a tbsCertificate.
pub(super) const CONTEXT_0: u8 = 0xa0;

/// One element: its tag, its contents and the bytes of the whole element.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub whole: &'a [u8],
}

/// Reads the first element of `input`; returns it and what follows it.
pub(super) fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), &'static str> {
    let (&tag, after_tag) = input.split_first().ok_or("truncated DER (no tag)")?;
    if tag & 0x1f == 0x1f {
        return Err("unsupported DER tag (high tag number)");
    }
    let (&first, after_len) = after_tag.split_first().ok_or("truncated DER (no length)")?;
    let (len, after_len) = match first {
        0..=0x7f => (usize::from(first), after_len),
        0x80 => return Err("indefinite DER length"),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let (bytes, rest) = after_len.split_at_checked(n).ok_or("truncated DER length")?;
            let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, rest)
        }
        _ => return Err("DER length too large"),
    };
    let (content, rest) = after_len
        .split_at_checked(len)
        .ok_or("truncated DER (length past the end)")?;
    let header = input.len() - after_len.len();
    let whole = input.get(..header + len).ok_or("truncated DER (length past the end)")?;
    Ok((Tlv { tag, content, whole }, rest))
}

/// Reads the first element of `input`, which must have tag `tag`.
pub(super) fn expect<'a>(input: &'a [u8], tag: u8, what: &'static str) -> Result<(Tlv<'a>, &'a [u8]), &'static str> {
    let (tlv, rest) = read(input)?;
    if tlv.tag == tag { Ok((tlv, rest)) } else { Err(what) }
}

/// Dotted text of an object identifier, for error messages.
pub(super) fn oid_text(oid: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut value: u64 = 0;
    for (i, &b) in oid.iter().enumerate() {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let (a, rest) = match value {
                    0..=39 => (0, value),
                    40..=79 => (1, value - 40),
                    _ => (2, value - 80),
                };
                parts.push(a.to_string());
                parts.push(rest.to_string());
            } else {
                parts.push(value.to_string());
            }
            value = 0;
        } else if value > (u64::MAX >> 8) || i + 1 == oid.len() {
            return format!("(malformed OID of {} bytes)", oid.len());
        }
    }
    if parts.is_empty() {
        "(empty OID)".to_string()
    } else {
        parts.join(".")
    }
}

/// The value of a non-negative INTEGER's contents without leading zero bytes.
pub(super) fn unsigned_integer<'a>(content: &'a [u8], what: &'static str) -> Result<&'a [u8], &'static str> {
    match content.first() {
        None => Err(what),
        Some(&b) if b & 0x80 != 0 => Err(what),
        Some(_) => {
            let start = content.iter().position(|&b| b != 0).unwrap_or(content.len());
            content.get(start..).ok_or(what)
        }
    }
}

/// Bit length of a big-endian unsigned number without leading zero bytes.
pub(super) fn bit_length(be: &[u8]) -> u64 {
    match be.first() {
        None => 0,
        Some(&top) => (be.len() as u64 - 1) * 8 + u64::from(8 - top.leading_zeros()),
    }
}

/// Appends one element with tag `tag` and contents `content`.
pub(super) fn write(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let significant = bytes.get(skip..).unwrap_or(&[]);
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
}

/// Appends an INTEGER holding the unsigned big-endian number `be`.
pub(super) fn write_unsigned(out: &mut Vec<u8>, be: &[u8]) {
    let start = be.iter().position(|&b| b != 0).unwrap_or(be.len());
    let digits = be.get(start..).unwrap_or(&[]);
    let mut content = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(digits);
    write(out, INTEGER, &content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let (tlv, rest) = read(&[0x02, 0x01, 0x05, 0xff]).expect("short form");
        assert_eq!(
            (tlv.tag, tlv.content, tlv.whole, rest),
            (0x02, &[5u8][..], &[2u8, 1, 5][..], &[0xffu8][..])
        );

        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7u8, 0x80));
        let (tlv, rest) = read(&long).expect("long form");
        assert_eq!(tlv.content.len(), 0x80);
        assert_eq!(tlv.whole.len(), 0x83);
        assert!(rest.is_empty());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x01],
            &[0x30, 0x80, 0x00, 0x00],
            &[0x30, 0x82, 0x01],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x1f, 0x01, 0x00],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(read(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn oid_text_decodes_known_oids() {
        assert_eq!(
            oid_text(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]),
            "1.2.840.113549.1.1.1"
        );
        assert_eq!(oid_text(&[0x2b, 0x65, 0x70]), "1.3.101.112");
        assert_eq!(oid_text(&[0x2b, 0x81]), "(malformed OID of 2 bytes)");
        assert_eq!(oid_text(&[]), "(empty OID)");
    }

    #[test]
    fn integers_round_trip() {
        let mut out = Vec::new();
        write_unsigned(&mut out, &[0x00, 0x00, 0x80, 0x01]);
        assert_eq!(out, [0x02, 0x03, 0x00, 0x80, 0x01]);
        let (tlv, _) = read(&out).expect("integer");
        assert_eq!(unsigned_integer(tlv.content, "bad").expect("positive"), &[0x80, 0x01]);
        assert_eq!(bit_length(&[0x80, 0x01]), 16);
        assert_eq!(bit_length(&[0x01]), 1);
        assert!(unsigned_integer(&[0x80], "negative").is_err());
        assert!(unsigned_integer(&[], "empty").is_err());
    }
}
