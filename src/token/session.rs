//! A verified token and what a login takes from it: the session fields the shim writes onto the
//! Prosody session, and the claims the room rules read.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::room::RoomSession;

/// A verified token: its header and claims as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// First 8 hex digits of the token's SHA-256: the only way a token appears in logs.
    pub fingerprint: String,
    /// The token's whole SHA-256, for callers that key caches by token.
    pub sha256: [u8; 32],
}

/// The session fields a login sets (docs/COMPATIBILITY.md, "Session fields"), borrowed from the
/// claims. Fields are declared in name order, so it serialises to the same bytes as a
/// `serde_json::Map` of them (whose keys are sorted).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SessionView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `iss`.
    pub jitsi_meet_auth_issuer: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `context.features`.
    pub jitsi_meet_context_features: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `context.group`.
    pub jitsi_meet_context_group: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `context.room`.
    pub jitsi_meet_context_room: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `context.user`, or `{"id": user_id}`.
    pub jitsi_meet_context_user: Option<ContextUser<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `sub`.
    pub jitsi_meet_domain: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `room`.
    pub jitsi_meet_room: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `context.tenant`.
    pub jitsi_meet_str_tenant: Option<&'a Value>,
}

/// `jitsi_meet_context_user`: the `context.user` claim, or `{"id": user_id}` for a token without
/// `context` that has a top-level `user_id`.
#[derive(Debug, Clone, Copy)]
pub enum ContextUser<'a> {
    /// The `context.user` claim.
    Claim(&'a Value),
    /// A Firebase-style top-level `user_id`.
    UserId(&'a Value),
}

impl Serialize for ContextUser<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            ContextUser::Claim(user) => user.serialize(serializer),
            ContextUser::UserId(id) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("id", id)?;
                map.end()
            }
        }
    }
}

impl VerifiedToken {
    fn context(&self) -> Option<&Map<String, Value>> {
        self.claims.get("context").and_then(Value::as_object)
    }

    fn context_field(&self, name: &str) -> Option<&Value> {
        self.context().and_then(|c| c.get(name)).filter(|v| !v.is_null())
    }

    fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// `exp` as whole seconds, when it is a number.
    pub fn exp(&self) -> Option<i64> {
        self.claims.get("exp").and_then(Value::as_f64).map(|f| f as i64)
    }

    /// The session fields borrowed from the claims, for writing a reply without copying them.
    pub fn session_view(&self) -> SessionView<'_> {
        let user = match self.context_field("user") {
            Some(user) => Some(ContextUser::Claim(user)),
            // Firebase-style tokens carry the user id at the top level.
            None if self.claims.get("context").is_none() => self
                .claims
                .get("user_id")
                .filter(|v| !v.is_null())
                .map(ContextUser::UserId),
            None => None,
        };
        SessionView {
            jitsi_meet_auth_issuer: self.claim("iss"),
            jitsi_meet_context_features: self.context_field("features"),
            jitsi_meet_context_group: self.context_field("group"),
            jitsi_meet_context_room: self.context_field("room"),
            jitsi_meet_context_user: user,
            jitsi_meet_domain: self.claim("sub"),
            jitsi_meet_room: self.claim("room"),
            jitsi_meet_str_tenant: self.context_field("tenant"),
        }
    }

    /// What the room rules need from this token, for a client that connected with URL tenant `prefix`.
    pub fn room_session<'a>(&'a self, query_prefix: &'a str) -> RoomSession<'a> {
        RoomSession {
            has_token: true,
            room: self.claim("room"),
            sub: self.claim("sub"),
            context_room: self.context_field("room"),
            tenant: self.context_field("tenant"),
            query_prefix,
        }
    }
}
