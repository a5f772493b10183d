//! What a verification is asked: the token and what the session knows besides.

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
    /// verified and fails, as in Jitsi's plugins, even with `allow_empty_token`).
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
