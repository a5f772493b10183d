//! Lua 5.4 string patterns (`string.match`), for `context.room.regex` room claims.

/// Why a pattern could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("malformed pattern: {0}")]
    Malformed(String),
    #[error("unsupported in room patterns: {0}")]
    Unsupported(String),
    #[error("pattern too complex: gave up after {0} steps")]
    TooComplex(u64),
}

/// Like Lua's `subject:match(pattern)`: the first capture (or the whole match when the pattern
/// has no captures) of the first match, or `None` when nothing matches.
pub fn lua_match(subject: &str, pattern: &str) -> Result<Option<String>, PatternError> {
    todo!("{subject} {pattern}")
}
