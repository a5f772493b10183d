//! Lua 5.4 string patterns (`string.match`), for `context.room.regex` room claims.
//!
//! Patterns come from tokens, so they are untrusted: the whole pattern is checked before any
//! matching (a malformed pattern is refused even where Lua would only notice the fault on a
//! path it happens to reach), the matcher's work is counted against [`WORK_BUDGET`], and its
//! recursion is capped at Lua's own `MAXCCALLS` (200). Nothing here panics.
//!
//! The budget counts work, not steps: testing one subject byte against a single-character class
//! costs the length of that class in the pattern (a set of 5,000 members costs 5,000, since the
//! set is walked member by member, and so does finding where it ends), a step of the matcher
//! costs 1, and a back-reference or `%b` costs the subject bytes it compares. Work is charged
//! before it is done, so a call stops within one class or one subject's length of the budget,
//! whatever the pattern: well under a millisecond on a release build, a few on a debug build.
//!
//! Like Lua, the matcher works on bytes with the C locale: `%a`, `.` and sets see one byte, not
//! one character. A capture that would cut a UTF-8 character in two cannot be returned as a
//! `String`, so [`lua_match`] refuses it with [`PatternError::Malformed`] rather than pretending
//! that nothing matched.
//!
//! Not supported: position captures `()` (a number cannot be a room name).

/// Units of work (about one byte comparison each; see the module's documentation) allowed for one
/// [`lua_match`] call before it gives up with [`PatternError::TooComplex`]. A room name matched by a
/// sensible pattern needs a few hundred to a few thousand.
pub const WORK_BUDGET: u64 = 100_000;

/// Lua's `MAXCCALLS`: how deep the matcher may recurse.
const MAX_DEPTH: usize = 200;

/// Lua's `LUA_MAXCAPTURES`.
const MAX_CAPTURES: usize = 32;

const ESC: u8 = b'%';

/// Why a pattern could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Not a Lua pattern.
    #[error("malformed pattern: {0}")]
    Malformed(String),
    /// A Lua pattern feature room patterns do not support (position captures).
    #[error("unsupported in room patterns: {0}")]
    Unsupported(String),
    /// Over the work budget or the nesting limit; the work done when it gave up.
    #[error("pattern too complex: gave up after {0} units of work")]
    TooComplex(u64),
}

/// Like Lua's `subject:match(pattern)`: the first capture (or the whole match when the pattern
/// has no captures) of the first match, or `None` when nothing matches.
pub fn lua_match(subject: &str, pattern: &str) -> Result<Option<String>, PatternError> {
    let pat = pattern.as_bytes();
    validate(pat)?;

    let (anchored, body) = match pat.split_first() {
        Some((b'^', rest)) => (true, rest),
        _ => (false, pat),
    };
    let mut m = Matcher {
        src: subject.as_bytes(),
        pat: body,
        captures: Vec::with_capacity(MAX_CAPTURES),
        work: 0,
        depth: 0,
    };

    let mut start = 0;
    loop {
        m.captures.clear();
        if let Some(end) = m.do_match(start, 0)? {
            let (from, to) = match m.captures.first() {
                Some(&Capture { start, len: Some(len) }) => (start, start + len),
                Some(_) => return Err(malformed("unfinished capture")),
                None => (start, end),
            };
            let bytes = m.src.get(from..to).unwrap_or_default();
            return match std::str::from_utf8(bytes) {
                Ok(s) => Ok(Some(s.to_owned())),
                Err(_) => Err(malformed(
                    "the match would split a multi-byte UTF-8 character (patterns work on bytes)",
                )),
            };
        }
        start += 1;
        if anchored || start > m.src.len() {
            return Ok(None);
        }
    }
}

fn malformed(what: &str) -> PatternError {
    PatternError::Malformed(what.to_owned())
}

/// Walks the pattern the way the matcher will and refuses anything it could trip on later.
/// After this, the matcher may assume a well-formed pattern (it still never indexes blindly).
fn validate(pat: &[u8]) -> Result<(), PatternError> {
    let mut p = usize::from(pat.first() == Some(&b'^'));
    // For each capture opened so far: whether it has been closed.
    let mut closed: Vec<bool> = Vec::new();
    while p < pat.len() {
        match pat[p] {
            b'(' => {
                if pat.get(p + 1) == Some(&b')') {
                    return Err(PatternError::Unsupported("position capture ()".to_owned()));
                }
                if closed.len() >= MAX_CAPTURES {
                    return Err(malformed("too many captures"));
                }
                closed.push(false);
                p += 1;
            }
            b')' => {
                match closed.iter().rposition(|c| !c) {
                    Some(i) => closed[i] = true,
                    None => return Err(malformed("invalid pattern capture")),
                }
                p += 1;
            }
            ESC if pat.get(p + 1) == Some(&b'b') => {
                if p + 3 >= pat.len() {
                    return Err(malformed("missing arguments to '%b'"));
                }
                p += 4;
            }
            ESC if pat.get(p + 1) == Some(&b'f') => {
                p += 2;
                if pat.get(p) != Some(&b'[') {
                    return Err(malformed("missing '[' after '%f' in pattern"));
                }
                p = class_end(pat, p)?;
            }
            ESC if pat.get(p + 1).is_some_and(u8::is_ascii_digit) => {
                let digit = pat[p + 1];
                let index = usize::from(digit - b'0');
                if index == 0 || !closed.get(index - 1).copied().unwrap_or(false) {
                    return Err(malformed(&format!("invalid capture index %{}", char::from(digit))));
                }
                p += 2;
            }
            _ => {
                p = class_end(pat, p)?;
                if matches!(pat.get(p), Some(b'*' | b'+' | b'-' | b'?')) {
                    p += 1;
                }
            }
        }
    }
    if closed.iter().any(|c| !c) {
        return Err(malformed("unfinished capture"));
    }
    Ok(())
}

/// The index just past the single-character class starting at `p` (a byte, `.`, `%x` or a set).
fn class_end(pat: &[u8], p: usize) -> Result<usize, PatternError> {
    let mut p = p;
    let Some(&c) = pat.get(p) else {
        return Err(malformed("ends with '%'"));
    };
    p += 1;
    match c {
        ESC => {
            if p >= pat.len() {
                return Err(malformed("ends with '%'"));
            }
            Ok(p + 1)
        }
        b'[' => {
            if pat.get(p) == Some(&b'^') {
                p += 1;
            }
            // The first member is taken whatever it is, so `[]]` and `[^]]` contain `]`.
            loop {
                let Some(&member) = pat.get(p) else {
                    return Err(malformed("missing ']'"));
                };
                p += 1;
                if member == ESC && p < pat.len() {
                    p += 1;
                }
                if pat.get(p) == Some(&b']') {
                    return Ok(p + 1);
                }
            }
        }
        _ => Ok(p),
    }
}

/// The work of testing one byte against the class `pat[p..ep]`, or of finding its end: its
/// length in the pattern (at least 1).
fn class_cost(p: usize, ep: usize) -> u64 {
    u64::try_from(ep.saturating_sub(p)).unwrap_or(u64::MAX).max(1)
}

/// Lua's character classes in the C locale (and 5.4's leftover `%z`); an upper-case class
/// letter is the complement.
/// Any other byte after `%` stands for itself.
fn class_matches(c: u8, class: u8) -> bool {
    let found = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        // Deprecated in Lua 5.2 but still in 5.4's matcher: the NUL byte.
        b'z' => c == 0,
        _ => return class == c,
    };
    if class.is_ascii_uppercase() { !found } else { found }
}

#[derive(Debug, Clone, Copy)]
struct Capture {
    start: usize,
    /// `None` while the capture is still open.
    len: Option<usize>,
}

struct Matcher<'a> {
    src: &'a [u8],
    /// The pattern without its leading `^`.
    pat: &'a [u8],
    captures: Vec<Capture>,
    /// Work done so far, against [`WORK_BUDGET`].
    work: u64,
    depth: usize,
}

type Step<T> = Result<T, PatternError>;

impl Matcher<'_> {
    /// Charges `n` units of work, before doing it.
    fn tick(&mut self, n: u64) -> Step<()> {
        self.work = self.work.saturating_add(n);
        if self.work > WORK_BUDGET {
            return Err(PatternError::TooComplex(self.work));
        }
        Ok(())
    }

    /// The end of the single-character class at `p` (see [`class_end`]), charging the bytes
    /// walked to find it.
    fn class_at(&mut self, p: usize) -> Step<usize> {
        let ep = class_end(self.pat, p)?;
        self.tick(class_cost(p, ep))?;
        Ok(ep)
    }

    /// [`Matcher::single_matches`], charged: testing one byte against the class `pat[p..ep]` walks
    /// at most the whole class.
    fn single(&mut self, s: usize, p: usize, ep: usize) -> Step<bool> {
        self.tick(class_cost(p, ep))?;
        Ok(self.single_matches(s, p, ep))
    }

    fn pat_at(&self, p: usize) -> Option<u8> {
        self.pat.get(p).copied()
    }

    /// Matches the pattern from `p` against the subject from `s`; the end of the match, if any.
    fn do_match(&mut self, s: usize, p: usize) -> Step<Option<usize>> {
        if self.depth >= MAX_DEPTH {
            return Err(PatternError::TooComplex(self.work));
        }
        self.depth += 1;
        let result = self.match_here(s, p);
        self.depth -= 1;
        result
    }

    fn match_here(&mut self, mut s: usize, mut p: usize) -> Step<Option<usize>> {
        loop {
            self.tick(1)?;
            let Some(pc) = self.pat_at(p) else {
                return Ok(Some(s));
            };
            match pc {
                b'(' => return self.start_capture(s, p + 1),
                b')' => return self.end_capture(s, p + 1),
                b'$' if p + 1 == self.pat.len() => {
                    return Ok((s == self.src.len()).then_some(s));
                }
                ESC if self.pat_at(p + 1) == Some(b'b') => match self.match_balance(s, p + 2)? {
                    Some(end) => {
                        s = end;
                        p += 4;
                        continue;
                    }
                    None => return Ok(None),
                },
                ESC if self.pat_at(p + 1) == Some(b'f') => {
                    p += 2;
                    let ep = self.class_at(p)?;
                    // Two bytes tested against the set.
                    self.tick(2 * class_cost(p, ep))?;
                    let previous = if s == 0 {
                        0
                    } else {
                        self.src.get(s - 1).copied().unwrap_or(0)
                    };
                    let current = self.src.get(s).copied().unwrap_or(0);
                    if !self.set_matches(previous, p, ep - 1) && self.set_matches(current, p, ep - 1) {
                        p = ep;
                        continue;
                    }
                    return Ok(None);
                }
                ESC if self.pat_at(p + 1).is_some_and(|d| d.is_ascii_digit()) => {
                    let digit = self.pat_at(p + 1).unwrap_or(b'0');
                    match self.match_backref(s, digit)? {
                        Some(end) => {
                            s = end;
                            p += 2;
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
                _ => {}
            }

            let ep = self.class_at(p)?;
            let quantifier = self.pat_at(ep);
            if !self.single(s, p, ep)? {
                if matches!(quantifier, Some(b'*' | b'?' | b'-')) {
                    // Zero repetitions are fine: go on after the quantifier.
                    p = ep + 1;
                    continue;
                }
                return Ok(None);
            }
            match quantifier {
                Some(b'?') => {
                    if let Some(end) = self.do_match(s + 1, ep + 1)? {
                        return Ok(Some(end));
                    }
                    p = ep + 1;
                }
                Some(b'+') => return self.max_expand(s + 1, p, ep),
                Some(b'*') => return self.max_expand(s, p, ep),
                Some(b'-') => return self.min_expand(s, p, ep),
                _ => {
                    s += 1;
                    p = ep;
                }
            }
        }
    }

    /// Whether the subject byte at `s` is in the class `pat[p..ep]`.
    fn single_matches(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else {
            return false;
        };
        match self.pat_at(p) {
            Some(b'.') => true,
            Some(ESC) => self.pat_at(p + 1).is_some_and(|class| class_matches(c, class)),
            Some(b'[') => self.set_matches(c, p, ep.saturating_sub(1)),
            Some(literal) => literal == c,
            None => false,
        }
    }

    /// Whether `c` is in the set that opens at `pat[p]` (`[`) and closes at `pat[close]` (`]`).
    fn set_matches(&self, c: u8, p: usize, close: usize) -> bool {
        let mut i = p + 1;
        let mut inside = true;
        if self.pat_at(i) == Some(b'^') {
            inside = false;
            i += 1;
        }
        while i < close {
            let Some(member) = self.pat_at(i) else {
                break;
            };
            if member == ESC {
                i += 1;
                if self.pat_at(i).is_some_and(|class| class_matches(c, class)) {
                    return inside;
                }
                i += 1;
            } else if self.pat_at(i + 1) == Some(b'-') && i + 2 < close {
                let high = self.pat_at(i + 2).unwrap_or(0);
                if member <= c && c <= high {
                    return inside;
                }
                i += 3;
            } else {
                if member == c {
                    return inside;
                }
                i += 1;
            }
        }
        !inside
    }

    /// Greedy `*` / `+`: take as many as possible, then give back one at a time.
    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Step<Option<usize>> {
        let mut count = 0;
        while self.single(s + count, p, ep)? {
            count += 1;
        }
        loop {
            if let Some(end) = self.do_match(s + count, ep + 1)? {
                return Ok(Some(end));
            }
            if count == 0 {
                return Ok(None);
            }
            count -= 1;
        }
    }

    /// Lazy `-`: take as few as possible, one more at a time.
    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Step<Option<usize>> {
        loop {
            if let Some(end) = self.do_match(s, ep + 1)? {
                return Ok(Some(end));
            }
            if !self.single(s, p, ep)? {
                return Ok(None);
            }
            s += 1;
        }
    }

    fn start_capture(&mut self, s: usize, p: usize) -> Step<Option<usize>> {
        if self.captures.len() >= MAX_CAPTURES {
            return Err(malformed("too many captures"));
        }
        self.captures.push(Capture { start: s, len: None });
        let result = self.do_match(s, p)?;
        if result.is_none() {
            self.captures.pop();
        }
        Ok(result)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Step<Option<usize>> {
        let Some(i) = self.captures.iter().rposition(|c| c.len.is_none()) else {
            return Err(malformed("invalid pattern capture"));
        };
        self.captures[i].len = Some(s.saturating_sub(self.captures[i].start));
        let result = self.do_match(s, p)?;
        if result.is_none() {
            self.captures[i].len = None;
        }
        Ok(result)
    }

    /// `%b xy`: a balanced run from `x` to the matching `y`.
    fn match_balance(&mut self, s: usize, p: usize) -> Step<Option<usize>> {
        let (Some(open), Some(close)) = (self.pat_at(p), self.pat_at(p + 1)) else {
            return Err(malformed("missing arguments to '%b'"));
        };
        if self.src.get(s) != Some(&open) {
            return Ok(None);
        }
        let mut depth = 1usize;
        let mut i = s + 1;
        while let Some(&c) = self.src.get(i) {
            if c == close {
                depth -= 1;
                if depth == 0 {
                    self.tick((i - s) as u64)?;
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
            i += 1;
        }
        self.tick((i - s) as u64)?;
        Ok(None)
    }

    /// `%1`..`%9`: the same bytes as an earlier, closed capture.
    fn match_backref(&mut self, s: usize, digit: u8) -> Step<Option<usize>> {
        let index = usize::from(digit.wrapping_sub(b'1'));
        let Some(&Capture { start, len: Some(len) }) = self.captures.get(index) else {
            return Err(malformed(&format!("invalid capture index %{}", char::from(digit))));
        };
        self.tick(len as u64)?;
        let earlier = self.src.get(start..start + len);
        let here = self.src.get(s..s + len);
        Ok(match (earlier, here) {
            (Some(a), Some(b)) if a == b => Some(s + len),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(subject: &str, pattern: &str) -> Option<String> {
        match lua_match(subject, pattern) {
            Ok(found) => found,
            Err(e) => panic!("{subject:?} ~ {pattern:?}: {e}"),
        }
    }

    /// Each row was checked with `lua5.4 -e 'print(string.match(SUBJECT, PATTERN))'`.
    #[test]
    fn matches_like_lua() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("room42", "^room%d+$", Some("room42")),
            ("roomx", "^room%d+$", None),
            ("hello world", "(o)(r)", Some("o")),
            ("hello world", "o", Some("o")),
            ("hello world", "o.", Some("o ")),
            ("THE (quick) fox", "%((%a+)%)", Some("quick")),
            ("THE (quick) fox", "%b()", Some("(quick)")),
            ("f(a(b)c)d", "%b()", Some("(a(b)c)")),
            ("f(a(b c", "%b()", None),
            ("abc", "", Some("")),
            ("", "", Some("")),
            ("", "^$", Some("")),
            ("", "a*", Some("")),
            ("abc", "$", Some("")),
            ("abc", "^", Some("")),
            ("a$b", "a$b", Some("a$b")),
            ("a^b", "a^b", Some("a^b")),
            ("xa^b", "^a", None),
            ("aaa", "a-", Some("")),
            ("aaab", "a-b", Some("aaab")),
            ("<a><b>", "<(.-)>", Some("a")),
            ("<a><b>", "<(.*)>", Some("a><b")),
            ("aaa", "^a?a?a?a?$", Some("aaa")),
            ("ab", "a?b", Some("ab")),
            ("b", "a?b", Some("b")),
            ("aaa", "a+", Some("aaa")),
            ("bbb", "a+", None),
            ("x123y", "%d+", Some("123")),
            ("x123y", "%D+", Some("x")),
            ("abc123", "%A+", Some("123")),
            ("ab_c", "%W", Some("_")),
            ("a b", "%s", Some(" ")),
            ("a b", "%S+$", Some("b")),
            ("Hello", "%u%l+", Some("Hello")),
            ("hello", "%u", None),
            ("a.b", "%.", Some(".")),
            ("a.b", "%p", Some(".")),
            ("0xBEEFz", "%x+", Some("0")),
            ("zBEEF", "%x+", Some("BEEF")),
            ("a\tb", "%c", Some("\t")),
            ("  x", "%g", Some("x")),
            ("room-1", "^[%w-]+$", Some("room-1")),
            ("room_1", "^[%w-]+$", None),
            ("abc", "[b-c]+", Some("bc")),
            ("a-c", "[a%-]+", Some("a-")),
            ("a-c", "[c-]+", Some("-c")),
            ("abc", "[^a]+", Some("bc")),
            ("a]b", "[]]", Some("]")),
            ("a]b", "[^]]+", Some("a")),
            ("a^b", "[%^]", Some("^")),
            ("a^b", "[b^]+", Some("^b")),
            ("xyz", "[%a]+", Some("xyz")),
            ("x1z", "[^%d]+$", Some("z")),
            ("hello", "(l)%1", Some("l")),
            ("hello", "((l)%2)", Some("ll")),
            ("abab", "^(ab)%1$", Some("ab")),
            ("abac", "^(ab)%1$", None),
            ("THE (quick) fox", "%f[%a]%a+", Some("THE")),
            ("THE (quick) fox", "%f[%a]%l+", Some("quick")),
            ("hello world", "%f[%w]%w+$", Some("world")),
            ("foo", "%f[%z]", Some("")),
            ("abc", "c%f[%z]", Some("c")),
            ("abc", "%f[%Z]%a", Some("a")),
            ("abc", "c%f[^%w]", Some("c")),
            ("aaa", "%z", None),
            ("az", "%z", None),
            ("az", "%Z+", Some("az")),
            ("a\0b", "[%z]", Some("\0")),
            ("a%b", "%%", Some("%")),
            ("key=val", "(%w+)=(%w+)", Some("key")),
            ("[acme]room1", "^%[([^%]]+)%](.+)$", Some("acme")),
            ("room1", "^%[([^%]]+)%](.+)$", None),
            ("тест", "^тест$", Some("тест")),
            ("тест42", "^тест(%d+)$", Some("42")),
            ("тест", "^(.-)$", Some("тест")),
            ("a.b.c", "^(.-)%.", Some("a")),
            ("aXb", "a.b", Some("aXb")),
            ("(x)", "^(%b())$", Some("(x)")),
        ];
        for (subject, pattern, want) in cases {
            assert_eq!(m(subject, pattern).as_deref(), *want, "{subject:?} ~ {pattern:?}");
        }
    }

    #[test]
    fn malformed_patterns_are_refused_with_lua_wording() {
        let cases: &[(&str, &str)] = &[
            ("(a", "unfinished capture"),
            ("a)", "invalid pattern capture"),
            ("a)(", "invalid pattern capture"),
            ("%", "ends with '%'"),
            ("ab%", "ends with '%'"),
            ("[a", "missing ']'"),
            ("[a%]", "missing ']'"),
            ("[", "missing ']'"),
            ("[^", "missing ']'"),
            ("%f", "missing '[' after '%f' in pattern"),
            ("%fa", "missing '[' after '%f' in pattern"),
            ("%f[a", "missing ']'"),
            ("%b", "missing arguments to '%b'"),
            ("%ba", "missing arguments to '%b'"),
            ("%1", "invalid capture index %1"),
            ("%0", "invalid capture index %0"),
            ("(a)%2", "invalid capture index %2"),
            ("(a%1)", "invalid capture index %1"),
            // Lua would only notice these on the path it takes; we always refuse them.
            ("x[a", "missing ']'"),
            ("zzz(", "unfinished capture"),
        ];
        for (pattern, want) in cases {
            assert_eq!(
                lua_match("aaa", pattern),
                Err(PatternError::Malformed((*want).to_owned())),
                "{pattern:?}"
            );
        }
        let many = "(a)".repeat(MAX_CAPTURES + 1);
        assert_eq!(lua_match("a", &many), Err(malformed("too many captures")));
        assert!(lua_match("a", &"(a)".repeat(MAX_CAPTURES)).is_ok());
    }

    #[test]
    fn position_captures_are_unsupported() {
        for pattern in ["()", "a()", "^(a)()$", "[x]()"] {
            assert_eq!(
                lua_match("a", pattern),
                Err(PatternError::Unsupported("position capture ()".to_owned())),
                "{pattern:?}"
            );
        }
        // Escaped or inside a set, `()` is two literal bytes.
        assert_eq!(m("f()", "%(%)"), Some("()".to_owned()));
        assert_eq!(m("f()", "[()]+"), Some("()".to_owned()));
    }

    #[test]
    fn runaway_patterns_stop_at_the_budget() {
        // Backtracking over cheap classes: each unit of work is a step of the matcher, the most
        // expensive kind of unit.
        for (subject, pattern) in [
            ("a".repeat(60), format!("{}b", "a*".repeat(20))),
            ("a".repeat(1000), format!("{}b", "(.-)".repeat(30))),
            ("a".repeat(1000), format!("{}b", "a?".repeat(150))),
            ("(".repeat(1000), "%b()".repeat(100)),
        ] {
            let started = std::time::Instant::now();
            let result = lua_match(&subject, &pattern);
            let took = started.elapsed();
            println!("{pattern:.12}… over {} bytes: {result:?} in {took:?}", subject.len());
            assert!(
                matches!(result, Err(PatternError::TooComplex(n)) if n > WORK_BUDGET),
                "{pattern}"
            );
            assert!(took < std::time::Duration::from_millis(500), "took {took:?}");
        }

        // Deep recursion: each `a?` nests one level; Lua says "pattern too complex" here too.
        let deep = "a?".repeat(MAX_DEPTH + 10);
        let subject = "a".repeat(MAX_DEPTH + 50);
        assert!(matches!(lua_match(&subject, &deep), Err(PatternError::TooComplex(_))));
        let shallow = "a?".repeat(MAX_DEPTH - 10);
        assert_eq!(m(&subject, &shallow), Some("a".repeat(MAX_DEPTH - 10)));

        // Long but ordinary work stays well inside the budget.
        let long = "x".repeat(1000);
        assert_eq!(m(&long, "^x+$"), Some(long.clone()));
    }

    /// The members of a wide set: 5,000 bytes without `a` (and without `]`, `%`, `-` or `^`).
    fn wide_set() -> String {
        "bcdefghijklmnopqrstuvwxyz0123456789"
            .chars()
            .cycle()
            .take(5000)
            .collect()
    }

    /// Issue 10, item 4: a step over a 5 KB set is 5,000 comparisons, and is charged as such.
    #[test]
    fn wide_sets_are_charged_by_their_width() {
        let set = wide_set();
        let room = "a".repeat(1000);
        let cases = [
            // 12 repeats: about 60 KB, what fits in one request line of the socket.
            (room.clone(), format!("[{set}a]*").repeat(12)),
            // 3 repeats: what fits in a 16 KiB token.
            (room.clone(), format!("[{set}a]*").repeat(3)),
            (room.clone(), format!("^{}$", format!("[{set}a]*").repeat(12))),
            // Before work was counted, this one took 13 s on a debug build (1.2 s on release),
            // and the next one 2.4 s.
            (format!("{room}!"), format!("{}$", format!("[{set}a]*").repeat(12))),
            ("!".repeat(1000), format!("[{set}a]*").repeat(12) + "a"),
            (room.clone(), format!("[{set}a]-").repeat(12) + "$"),
            (room.clone(), format!("[{set}a]+").repeat(12)),
            (room.clone(), format!("[^{set}]?").repeat(12) + "!"),
            (room.clone(), format!("%f[{set}a]").repeat(12)),
            (room.clone(), format!("([{set}a]*)%1").repeat(12)),
        ];
        for (subject, pattern) in &cases {
            let started = std::time::Instant::now();
            let result = lua_match(subject, pattern);
            let took = started.elapsed();
            println!(
                "{}-byte room, {}-byte pattern {:?}…: {:?} in {took:?}",
                subject.len(),
                pattern.len(),
                &pattern[..12],
                result.as_ref().map(|_| "a match")
            );
            assert!(
                matches!(result, Err(PatternError::TooComplex(n)) if n > WORK_BUDGET),
                "{:?}…: {result:?}",
                &pattern[..12]
            );
            // The goal is well under 50 ms (a debug build takes a few); generous for slow CI machines.
            assert!(took < std::time::Duration::from_millis(500), "took {took:?}");
        }

        // Sensible sets over long names stay inside the budget.
        assert_eq!(m(&room, "^[%w_-]+$"), Some(room.clone()));
        let hundred: String = set.chars().take(99).collect();
        let name = "b".repeat(200);
        assert_eq!(m(&name, &format!("^[{hundred}]+$")), Some(name.clone()));
    }

    #[test]
    fn captures_that_split_a_character_are_refused() {
        // "т" is two bytes; `.` takes one.
        assert!(matches!(lua_match("тест", "^(.)"), Err(PatternError::Malformed(_))));
        assert!(matches!(lua_match("тест", "^."), Err(PatternError::Malformed(_))));
        assert_eq!(m("тест", "^.."), Some("т".to_owned()));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let alphabet: Vec<char> = "%()[]^$.*+-?abdfz019AD]-\\т".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let plen = (next() % 12) as usize;
            let slen = (next() % 12) as usize;
            let pattern: String = (0..plen)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let subject: String = (0..slen)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = lua_match(&subject, &pattern);
        }
    }
}
