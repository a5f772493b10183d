//! What a verification answers: accepted (and how), or refused (and why), with the steps it took
//! for `verify --explain`.

use super::reason::Reason;
use super::session::VerifiedToken;

/// A successful check.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// No token and `allow_empty_token`: an anonymous login with no token fields.
    Anonymous,
    /// A verified token.
    Token(Box<VerifiedToken>),
}

/// A refused token: the reason the client sees, and for logs and `--explain` what went wrong in
/// more words (never the token itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The reason, whose text the client sees.
    pub reason: Reason,
    /// More words for logs and `--explain`.
    pub detail: Option<String>,
}

impl Rejection {
    /// A rejection without details.
    pub fn new(reason: Reason) -> Self {
        Rejection { reason, detail: None }
    }

    /// A rejection with details for logs.
    pub fn with(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: Some(detail.into()),
        }
    }
}

/// The outcome of a verification.
pub type Verdict = Result<Accepted, Rejection>;

/// One step of a check, recorded for `verify --explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The step's name.
    pub step: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What it found.
    pub note: String,
}

/// Where a traced verification records its steps; `None` costs nothing.
pub type Trace<'a> = Option<&'a mut Vec<Check>>;
