//! RFC 7662 introspection of access tokens: active only when an issuer of ours signed it, its
//! times are valid, and its holder is in that room now.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::issuer::Issuer;
use super::occupancy::{OccupancyStore, StoreError};
use super::verify::AccessRefusal;

/// The answer to an introspection.
#[derive(Debug, Clone, PartialEq)]
pub enum Introspection {
    /// Valid, and the holder is present: the claims.
    Active(Map<String, Value>),
    /// Not active, and why (for logs; the caller is told only `active: false`).
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
    /// The store could not say.
    #[error("{0}")]
    Store(String),
}

impl Introspection {
    /// The response body: `{"active":true, …claims}` or `{"active":false}`.
    pub fn to_json(&self) -> Value {
        match self {
            Introspection::Active(claims) => {
                let mut body = Map::with_capacity(claims.len() + 2);
                body.insert("active".into(), Value::Bool(true));
                body.insert("token_type".into(), Value::from("access_token"));
                body.extend(claims.iter().map(|(k, v)| (k.clone(), v.clone())));
                Value::Object(body)
            }
            Introspection::Inactive(_) => serde_json::json!({"active": false}),
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

/// Introspects `token` at `now` against `issuers` and the occupancy in `store`.
pub async fn introspect(issuers: &[Arc<Issuer>], store: &dyn OccupancyStore, token: &str, now: i64) -> Introspection {
    let inactive = Introspection::Inactive;
    let claims = match verified(issuers, token, now) {
        Ok(claims) => claims,
        Err(why) => return inactive(why),
    };
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
