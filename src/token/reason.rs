//! Why a token is refused: one variant per failure, with the exact text of Jitsi's plugins (and
//! one of ours, [`Reason::KeyBusy`], for a key that may be had if the login is tried again).

use std::fmt;

/// A refusal reason. `Display` is the text the client sees in `<failure><not-allowed/><text>…`;
/// it matches the Lua plugins word for word so that admins can search for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// `token required`
    TokenRequired,
    /// `token too large`
    TokenTooLarge,
    /// `Invalid token`
    InvalidToken,
    /// `Invalid header`
    InvalidHeader,
    /// `Invalid body`
    InvalidBody,
    /// `Invalid typ`
    InvalidTyp,
    /// `Invalid or incorrect alg`
    InvalidAlg,
    /// `Invalid signature`
    InvalidSignature,
    /// `exp must be number`
    ExpNotNumber,
    /// `nbf must be number`
    NbfNotNumber,
    /// `now - exp` seconds since expiry, and `exp - iat` when the token has a numeric `iat`.
    Expired {
        /// Seconds since `exp`.
        since: i64,
        /// `exp - iat`, when `iat` is a number.
        valid_for: Option<i64>,
    },
    /// `Not acceptable by nbf`
    NotYetValid,
    /// `'exp' claim is missing`
    ExpMissing,
    /// `'iss' claim is missing`
    IssMissing,
    /// `invalid 'iss' claim`
    IssInvalid,
    /// `'aud' claim is missing`
    AudMissing,
    /// `invalid 'aud' claim`
    AudInvalid,
    /// `'room' claim is missing`
    RoomMissing,
    /// `'kid' claim is missing`
    KidMissing,
    /// `'alg' claim is missing`
    AlgMissing,
    /// `'kid' claim only support with RS family`
    KidNeedsAsymmetricAlg,
    /// `bad token format`
    BadTokenFormat,
    /// `could not obtain public key`
    NoPublicKey,
    /// `could not obtain public key; try again` (ours, with the condition
    /// `temporary-auth-failure`): the key was not looked for, or not waited for, because a budget
    /// was spent — the unknown-kid fetch rate (`asap_key_fetch_rate`), the host's key fetches under
    /// way, or the longest a login waits for keys. The same login may succeed a moment later;
    /// Jitsi's plugins have no such limits, and `could not obtain public key` would look final.
    KeyBusy,
    /// `signature verification key is missing`
    NoVerificationKey,
    /// `jwt missing required context claim`
    ContextRequired,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Reason::TokenRequired => "token required",
            Reason::TokenTooLarge => "token too large",
            Reason::InvalidToken => "Invalid token",
            Reason::InvalidHeader => "Invalid header",
            Reason::InvalidBody => "Invalid body",
            Reason::InvalidTyp => "Invalid typ",
            Reason::InvalidAlg => "Invalid or incorrect alg",
            Reason::InvalidSignature => "Invalid signature",
            Reason::ExpNotNumber => "exp must be number",
            Reason::NbfNotNumber => "nbf must be number",
            Reason::Expired { since, valid_for } => {
                write!(f, "Not acceptable by exp ({since} sec since expired")?;
                if let Some(valid_for) = valid_for {
                    write!(f, ", valid for:{valid_for} sec")?;
                }
                return f.write_str(")");
            }
            Reason::NotYetValid => "Not acceptable by nbf",
            Reason::ExpMissing => "'exp' claim is missing",
            Reason::IssMissing => "'iss' claim is missing",
            Reason::IssInvalid => "invalid 'iss' claim",
            Reason::AudMissing => "'aud' claim is missing",
            Reason::AudInvalid => "invalid 'aud' claim",
            Reason::RoomMissing => "'room' claim is missing",
            Reason::KidMissing => "'kid' claim is missing",
            Reason::AlgMissing => "'alg' claim is missing",
            Reason::KidNeedsAsymmetricAlg => "'kid' claim only support with RS family",
            Reason::BadTokenFormat => "bad token format",
            Reason::NoPublicKey => "could not obtain public key",
            Reason::KeyBusy => "could not obtain public key; try again",
            Reason::NoVerificationKey => "signature verification key is missing",
            Reason::ContextRequired => "jwt missing required context claim",
        };
        f.write_str(text)
    }
}

impl Reason {
    /// The SASL condition. Every token failure is `not-allowed`, as in Jitsi's plugins, but for
    /// [`Reason::KeyBusy`]: `temporary-auth-failure` (RFC 6120 6.5.12), the condition the shim also
    /// gives when the daemon cannot answer, which tells the client to try again.
    pub fn condition(&self) -> &'static str {
        match self {
            Reason::KeyBusy => "temporary-auth-failure",
            _ => "not-allowed",
        }
    }

    /// What to change, in plain words, for `verify --explain`.
    pub fn hint(&self) -> &'static str {
        match self {
            Reason::TokenRequired => {
                "no token reached the server: pass ?token=<jwt> on the BOSH/WebSocket URL (jitsi-meet does this from ?jwt=)"
            }
            Reason::TokenTooLarge => "tokens over 16 KiB are refused before decoding: keep the claims small",
            Reason::InvalidToken => "a JWT is three non-empty base64url parts joined by '.': header.payload.signature",
            Reason::InvalidHeader => "the first part must be base64url of a JSON object",
            Reason::InvalidBody => "the second part must be base64url of a JSON object",
            Reason::InvalidTyp => "set the header's typ to \"JWT\" or leave it out",
            Reason::InvalidAlg => {
                "the header's alg must be one of this host's signature_algorithm values and fit the key (HS* for app_secret, RS* for RSA keys, ES256/ES384/EdDSA for EC/Ed25519 keys)"
            }
            Reason::InvalidSignature => {
                "the token was not signed with this host's key: check app_secret (used as raw bytes, not base64) or the key published for the kid"
            }
            Reason::ExpNotNumber => "exp is not a number: send seconds since 1970 as a JSON number, not a string",
            Reason::NbfNotNumber => "nbf is not a number: send seconds since 1970 as a JSON number, not a string",
            Reason::Expired { .. } => "the token has expired: mint a new one (or allow clock skew with token_leeway)",
            Reason::NotYetValid => {
                "nbf is in the future: the minting clock runs ahead of this one (allow skew with token_leeway)"
            }
            Reason::ExpMissing => "this host sets token_require_exp: add an exp claim",
            Reason::IssMissing => "add an iss claim (by default it must equal app_id)",
            Reason::IssInvalid => "iss must equal app_id or be listed in asap_accepted_issuers",
            Reason::AudMissing => "add an aud claim (any value is accepted unless asap_accepted_audiences is set)",
            Reason::AudInvalid => "aud must be listed in asap_accepted_audiences",
            Reason::RoomMissing => {
                "add a room claim (a room name, or \"*\" for any room), or set asap_require_room_claim = false"
            }
            Reason::KidMissing => {
                "this host verifies with public keys (asap_key_server / cache_keys_url): put the key's id in the header's kid"
            }
            Reason::AlgMissing => "put the signing algorithm in the header's alg",
            Reason::KidNeedsAsymmetricAlg => {
                "public-key hosts accept RS256/384/512, ES256/384 and EdDSA tokens, not HS*: sign with the private key"
            }
            Reason::BadTokenFormat => "the header (before the first '.') must be base64url of a JSON object",
            Reason::NoPublicKey => {
                "the key for this kid could not be fetched: check asap_key_server / cache_keys_url and that <sha256(kid)>.pem exists"
            }
            Reason::KeyBusy => {
                "the key was not fetched now (too many new kids a second for asap_key_fetch_rate, too many key fetches of this host already under way, or no answer within the time a login waits): the same login may succeed in a moment; if it keeps happening, check the key server's speed and asap_key_fetch_rate"
            }
            Reason::NoVerificationKey => "configure app_secret, asap_key_server or cache_keys_url for this host",
            Reason::ContextRequired => "this session requires a context claim: add context{user,…}",
        }
    }
}
