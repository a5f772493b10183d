//! The requests and the replies clients read, as typed structs. Requests deserialise on the
//! daemon's side (with owned strings) and serialise on a client's (borrowing its strings).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn is_false(b: &bool) -> bool {
    !b
}

/// `hello`: the protocol version and the host options the shim read from Prosody's config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the client speaks.
    pub version: u64,
    /// Options by VirtualHost, under Prosody's names.
    #[serde(default)]
    pub hosts: BTreeMap<String, Map<String, Value>>,
    /// Access-token issuers by the Prosody host their module is on: `{"module", "options",
    /// "files"}` (see [`crate::access::read_issuer`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub issuers: BTreeMap<String, Map<String, Value>>,
    /// The shim's id for its Prosody process, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// `occupant`: one occupant joined or left a room.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OccupantReport {
    /// `join` or `leave`.
    pub event: OccupantEvent,
    /// The room's bare JID.
    pub room: String,
    /// The occupant's real full JID.
    pub jid: String,
    /// The occupant JID (`room@muc/nick`); needed for `join`.
    #[serde(default)]
    pub nick: Option<String>,
}

/// What happened to an occupant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OccupantEvent {
    /// Joined.
    #[default]
    Join,
    /// Left.
    Leave,
}

/// `occupants`: every occupant of one MUC component's rooms, replacing what was reported for it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OccupancySync {
    /// The MUC component.
    pub muc: String,
    /// Occupants by room bare JID. (An empty Lua table arrives as `{}`.)
    #[serde(default)]
    pub rooms: BTreeMap<String, OccupantList>,
}

/// A room's occupants: a list, or `{}` for none (how Prosody's JSON writes an empty table).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OccupantList {
    /// The occupants.
    List(Vec<SyncedOccupant>),
    /// `{}`.
    #[default]
    Empty,
    /// An empty table written as an object.
    EmptyObject(Map<String, Value>),
}

/// One occupant in an [`OccupancySync`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncedOccupant {
    /// The real full JID.
    pub jid: String,
    /// The occupant JID.
    pub nick: String,
}

/// `auth`: a login attempt on `host`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Auth<'a> {
    /// The VirtualHost.
    pub host: Cow<'a, str>,
    /// The token; `null` or absent when the client sent none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Cow<'a, str>>,
    /// The URL tenant (`prefix` query parameter). For the shim's logs; the verdict does not
    /// depend on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Cow<'a, str>>,
    /// The URL's `room` query parameter, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<Cow<'a, str>>,
    /// The client's User-Agent, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<Cow<'a, str>>,
    /// A PEM public key set on the session by a `pre-jitsi-authentication-fetch-key` handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<Cow<'a, str>>,
    /// `session.contextRequired`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub context_required: bool,
}

/// `room`: may this session join (or create) this room?
///
/// What the session got at login is found, in this order: the login the daemon remembers by
/// `token_sha256` (or by the hash of `token`); else the `session` fields the shim sends; else
/// `token`, verified again without the time checks. None of them: a session without a token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Room<'a> {
    /// The VirtualHost whose rules apply.
    pub host: Cow<'a, str>,
    /// The room JID as the MUC sees it, e.g. `[acme]room1@conference.meet.example.com`.
    pub room: Cow<'a, str>,
    /// The `token_sha256` of the session's `auth` reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<Cow<'a, str>>,
    /// The session's token fields as its login set them (the session logged in with a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<RoomSessionFields>,
    /// The session's token (`session.auth_token`), for clients that keep no login result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Cow<'a, str>>,
    /// The URL tenant the client connected with (`jitsi_web_query_prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Cow<'a, str>>,
    /// Whether the room exists now.
    #[serde(default, skip_serializing_if = "is_false")]
    pub room_exists: bool,
    /// The room's `_data.allowUnauthenticatedAccess`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unauthenticated_access: Option<bool>,
}

/// The session fields a room check reads, as the login set them on the Prosody session. Other
/// fields are ignored; JSON null is the same as absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomSessionFields {
    /// `jitsi_meet_room`: the `room` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_room: Option<Value>,
    /// `jitsi_meet_domain`: the `sub` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_domain: Option<Value>,
    /// `jitsi_meet_context_room`: `context.room`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_context_room: Option<Value>,
    /// `jitsi_meet_str_tenant`: `context.tenant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_str_tenant: Option<Value>,
    /// `jitsi_meet_context_user`: `context.user`; only its `id` is read, to apply a revoked user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitsi_meet_context_user: Option<Value>,
}

/// The part of every reply a client needs first: its `id` and whether it is a success. Other
/// fields are skipped, not built.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplyHead<Id = Value> {
    /// The request's id.
    pub id: Id,
    /// Success, or a refusal or error.
    pub ok: bool,
}

/// The reply to `hello`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HelloReply {
    /// `ok` is false for an error reply.
    pub ok: bool,
    /// The protocol version the daemon speaks.
    #[serde(default)]
    pub version: Option<u64>,
    /// The daemon's name and version.
    #[serde(default)]
    pub daemon: Option<String>,
    /// The hosts registered.
    #[serde(default)]
    pub accepted: Vec<String>,
    /// Why the other hosts were not, by host.
    #[serde(default)]
    pub errors: BTreeMap<String, String>,
    /// Warnings about the settings.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The access-token issuers registered.
    #[serde(default)]
    pub issuers_accepted: Vec<String>,
    /// Why the other issuers were not, by name.
    #[serde(default)]
    pub issuer_errors: BTreeMap<String, String>,
    /// The error code of an error reply.
    #[serde(default)]
    pub error: Option<String>,
    /// The error text of an error reply.
    #[serde(default)]
    pub text: Option<String>,
}
