//! Why a token is refused: one variant per failure, with the exact text of Jitsi's plugins (and
//! two of ours: [`Reason::KeyBusy`], for a key that may be had if the login is tried again, and
//! [`Reason::Revoked`], for a token or user shut out with `POST /v1/revoke`).

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
    /// `token revoked` (ours): the token's `jti`, or its user (`context.user.id`, else `sub`), was
    /// revoked with `POST /v1/revoke` and the revocation is still in force. Jitsi's plugins have no
    /// revocation (docs/COMPATIBILITY.md, difference 37).
    Revoked,
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
            Reason::Revoked => "token revoked",
        };
        f.write_str(text)
    }
}

impl Reason {
    /// The identifier of every kind of refusal, in the order of [`Reason::index`]: what
    /// [`Reason::id`] gives, for metrics labels (docs/METRICS.md).
    pub const IDS: [&'static str; 27] = [
        "token_required",
        "token_too_large",
        "invalid_token",
        "invalid_header",
        "invalid_body",
        "invalid_typ",
        "invalid_alg",
        "signature",
        "exp_not_number",
        "nbf_not_number",
        "exp",
        "nbf",
        "exp_missing",
        "iss_missing",
        "iss",
        "aud_missing",
        "aud",
        "room_missing",
        "kid_missing",
        "alg_missing",
        "kid_needs_asymmetric_alg",
        "bad_token_format",
        "key_unavailable",
        "key_busy",
        "no_verification_key",
        "context_required",
        "revoked",
    ];

    /// The kind of refusal as a number below `Reason::IDS.len()`, the same for every refusal of
    /// the kind (an expired token's seconds do not change it).
    pub fn index(&self) -> usize {
        match self {
            Reason::TokenRequired => 0,
            Reason::TokenTooLarge => 1,
            Reason::InvalidToken => 2,
            Reason::InvalidHeader => 3,
            Reason::InvalidBody => 4,
            Reason::InvalidTyp => 5,
            Reason::InvalidAlg => 6,
            Reason::InvalidSignature => 7,
            Reason::ExpNotNumber => 8,
            Reason::NbfNotNumber => 9,
            Reason::Expired { .. } => 10,
            Reason::NotYetValid => 11,
            Reason::ExpMissing => 12,
            Reason::IssMissing => 13,
            Reason::IssInvalid => 14,
            Reason::AudMissing => 15,
            Reason::AudInvalid => 16,
            Reason::RoomMissing => 17,
            Reason::KidMissing => 18,
            Reason::AlgMissing => 19,
            Reason::KidNeedsAsymmetricAlg => 20,
            Reason::BadTokenFormat => 21,
            Reason::NoPublicKey => 22,
            Reason::KeyBusy => 23,
            Reason::NoVerificationKey => 24,
            Reason::ContextRequired => 25,
            Reason::Revoked => 26,
        }
    }

    /// A stable identifier of the kind of refusal (`exp`, `signature`, `key_busy`…): one of
    /// [`Reason::IDS`]. Unlike the text, it never holds a value from the token.
    pub fn id(&self) -> &'static str {
        Reason::IDS[self.index()]
    }

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
            Reason::Revoked => {
                "the token's jti, or its user (context.user.id, else sub), was revoked with POST /v1/revoke: a new token with another jti logs in; a revoked user is refused until the revocation's until"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_stable_id() {
        let all = [
            Reason::TokenRequired,
            Reason::TokenTooLarge,
            Reason::InvalidToken,
            Reason::InvalidHeader,
            Reason::InvalidBody,
            Reason::InvalidTyp,
            Reason::InvalidAlg,
            Reason::InvalidSignature,
            Reason::ExpNotNumber,
            Reason::NbfNotNumber,
            Reason::Expired {
                since: 5,
                valid_for: Some(60),
            },
            Reason::NotYetValid,
            Reason::ExpMissing,
            Reason::IssMissing,
            Reason::IssInvalid,
            Reason::AudMissing,
            Reason::AudInvalid,
            Reason::RoomMissing,
            Reason::KidMissing,
            Reason::AlgMissing,
            Reason::KidNeedsAsymmetricAlg,
            Reason::BadTokenFormat,
            Reason::NoPublicKey,
            Reason::KeyBusy,
            Reason::NoVerificationKey,
            Reason::ContextRequired,
            Reason::Revoked,
        ];
        assert_eq!(all.len(), Reason::IDS.len());
        for (n, reason) in all.iter().enumerate() {
            assert_eq!(reason.index(), n, "{reason:?}");
        }
        let ids: std::collections::BTreeSet<_> = all.iter().map(Reason::id).collect();
        assert_eq!(ids.len(), all.len(), "ids are distinct");
        assert!(
            ids.iter()
                .all(|id| id.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
        let expired = Reason::Expired {
            since: 1,
            valid_for: None,
        };
        assert_eq!(expired.id(), "exp");
        assert_eq!(Reason::KeyBusy.id(), "key_busy");
        assert_eq!(Reason::NoPublicKey.id(), "key_unavailable");
        assert_eq!(Reason::Revoked.id(), "revoked");
        assert_eq!(Reason::Revoked.condition(), "not-allowed");
    }
}
