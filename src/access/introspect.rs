//! RFC 7662 introspection of access tokens: active only when an issuer of ours signed it, its
//! times are valid, neither its `jti` nor its holder's user is revoked, and its holder is in that
//! room now.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::issuer::Issuer;
use super::occupancy::{OccupancyStore, StoreError};
use super::revocation::{Revocations, Revoked};
use super::verify::AccessRefusal;

/// The answer to an introspection.
#[derive(Debug, Clone, PartialEq)]
pub enum Introspection {
    /// Valid, and the holder is present: the claims.
    Active(Map<String, Value>),
    /// Not active, and why (for logs; the caller is told `active: false`, and a `reason` only
    /// where [`Inactive::reason`] gives one).
    Inactive(Inactive),
}

/// Why a token is not active.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Inactive {
    /// The payload is not a JSON object with a string `iss`.
    #[error("no readable iss")]
    NoIssuer,
    /// No issuer of ours has that `iss`.
    #[error("iss {0:?} is not an issuer of this daemon")]
    UnknownIssuer(String),
    /// The signature or times do not hold.
    #[error("{0}")]
    Refused(AccessRefusal),
    /// No `occupant` claim with `room` and `jid`.
    #[error("no occupant claim")]
    NoOccupant,
    /// The holder is not in the room now.
    #[error("{jid} is not in {room} now")]
    Left {
        /// The room.
        room: String,
        /// The holder.
        jid: String,
    },
    /// Its `jti`, or its holder's user (`occupant.user_id`), is revoked.
    #[error("its {0} is revoked")]
    Revoked(RevokedPart),
    /// The store could not say.
    #[error("{0}")]
    Store(String),
}

/// Which part of an access token is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedPart {
    /// Its `jti`.
    TokenId,
    /// Its holder's user, `occupant.user_id`.
    User,
}

impl std::fmt::Display for RevokedPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RevokedPart::TokenId => "jti",
            RevokedPart::User => "user (occupant.user_id)",
        })
    }
}

impl Inactive {
    /// The `reason` an inactive answer carries, when it may say one: `revoked` (told only for a
    /// token that is ours and in date), `store_unreachable` (ask again, or another shard). Every
    /// other reason stays unsaid, as RFC 7662 advises: a caller learns nothing about a token that
    /// is not ours, or about whether its holder left.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Inactive::Revoked(_) => Some("revoked"),
            Inactive::Store(_) => Some("store_unreachable"),
            _ => None,
        }
    }
}

impl Introspection {
    /// The response body: `{"active":true, …claims}`, `{"active":false}`, or
    /// `{"active":false,"reason":…}` ([`Inactive::reason`]).
    pub fn to_json(&self) -> Value {
        match self {
            Introspection::Active(claims) => {
                let mut body = Map::with_capacity(claims.len() + 2);
                body.insert("active".into(), Value::Bool(true));
                body.insert("token_type".into(), Value::from("access_token"));
                body.extend(claims.iter().map(|(k, v)| (k.clone(), v.clone())));
                Value::Object(body)
            }
            Introspection::Inactive(why) => match why.reason() {
                Some(reason) => serde_json::json!({"active": false, "reason": reason}),
                None => serde_json::json!({"active": false}),
            },
        }
    }
}

/// The `iss` of a token, read without verifying anything (to pick the issuer that can).
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    serde_json::from_slice::<Iss>(&bytes).ok().map(|c| c.iss)
}

/// The claims of `token` if an issuer with its `iss` signed it and its times are valid.
fn verified(issuers: &[Arc<Issuer>], token: &str, now: i64) -> Result<Map<String, Value>, Inactive> {
    let iss = unverified_issuer(token).ok_or(Inactive::NoIssuer)?;
    let mut last = None;
    for issuer in issuers.iter().filter(|i| i.policy().issuer == iss) {
        match issuer.verify(token, now) {
            Ok(claims) => return Ok(claims),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or(Inactive::UnknownIssuer(iss), Inactive::Refused))
}

/// Which part of a token with these claims is revoked at `now`: its `jti`, else its
/// `occupant.user_id` (asking a shared store itself, [`Revocations::first_revoked`]).
async fn revoked(claims: &Map<String, Value>, revocations: &dyn Revocations, now: i64) -> Option<RevokedPart> {
    let string = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let mut what = Vec::with_capacity(2);
    let mut parts = Vec::with_capacity(2);
    if let Some(jti) = string(claims.get("jti")) {
        what.push(Revoked::TokenId(jti));
        parts.push(RevokedPart::TokenId);
    }
    if let Some(user) = string(claims.get("occupant").and_then(|o| o.get("user_id"))) {
        what.push(Revoked::User(user));
        parts.push(RevokedPart::User);
    }
    let i = revocations.first_revoked(&what, now).await?;
    parts.get(i).copied()
}

/// Introspects `token` at `now` against `issuers`, `revocations` and the occupancy in `store`.
pub async fn introspect(
    issuers: &[Arc<Issuer>],
    revocations: &dyn Revocations,
    store: &dyn OccupancyStore,
    token: &str,
    now: i64,
) -> Introspection {
    let inactive = Introspection::Inactive;
    let claims = match verified(issuers, token, now) {
        Ok(claims) => claims,
        Err(why) => return inactive(why),
    };
    // After the signature and times: a reason is told only for a token of ours.
    if let Some(part) = revoked(&claims, revocations, now).await {
        return inactive(Inactive::Revoked(part));
    }
    let occupant = claims.get("occupant").and_then(Value::as_object);
    let field = |name| occupant.and_then(|o| o.get(name)).and_then(Value::as_str);
    let (Some(room), Some(jid)) = (field("room"), field("jid")) else {
        return inactive(Inactive::NoOccupant);
    };
    match store.is_present(room, jid).await {
        Ok(true) => Introspection::Active(claims),
        Ok(false) => inactive(Inactive::Left {
            room: room.to_owned(),
            jid: jid.to_owned(),
        }),
        Err(StoreError(e)) => inactive(Inactive::Store(e)),
    }
}
