//! Tokens: verifying a login's token ([`Verifier`]), what a verified token gives the session
//! ([`VerifiedToken`]), why a token is refused ([`Reason`]), and minting tokens ([`Minter`]).
//!
//! No socket I/O: fetching keys (through [`crate::keys`]) is the only I/O a verification does.

mod mint;
mod reason;
mod session;
mod verify;

pub use mint::{MintError, Minter, base64url, default_claims, encode, set_claim, unset_claim};
pub use reason::Reason;
pub use session::{ContextUser, SessionView, VerifiedToken};
pub use verify::Verifier;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What a verification is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Purpose {
    /// A login: every check, times included.
    #[default]
    Login,
    /// A room join of a session that logged in with this token before: every check but `exp` and
    /// `nbf`, which the login judged (a session outlives its token, as in Jitsi).
    RoomJoin,
}

/// What the caller knows of the login attempt.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthRequest<'a> {
    /// The token from `?token=` or `Authorization: Bearer`; `Some("")` for `?token=` (which is
    /// verified and fails, as in the reference, even with `allow_empty_token`).
    pub token: Option<&'a str>,
    /// A PEM public key a `pre-jitsi-authentication-fetch-key` handler put on the session.
    pub public_key: Option<&'a str>,
    /// `session.contextRequired`: refuse tokens without a `context` claim.
    pub context_required: bool,
    /// The token's SHA-256 when the caller has it already (the daemon keys its cache by it).
    pub sha256: Option<[u8; 32]>,
    /// A login or a room join.
    pub purpose: Purpose,
}

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
