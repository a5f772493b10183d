//! Room rules: whether a session's token lets it into a MUC room (REFERENCE §4 `verify_room`).
//! Pure functions: the caller says what it knows of the session and the room.

use serde_json::Value;

/// The host settings the room rules use.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomPolicy {
    pub enable_domain_verification: bool,
    pub require_room_claim: bool,
    pub allow_empty_token: bool,
    /// `muc_mapper_domain_base`.
    pub muc_domain_base: Option<String>,
    /// `muc_mapper_domain_prefix` (default `conference`).
    pub muc_domain_prefix: String,
    /// The real MUC domain: `muc_mapper_domain`, else `<prefix>.<base>`; `None` without a base.
    pub muc_domain: Option<String>,
}

/// What the session holds from its token. All `None` for a session without a token.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoomSession<'a> {
    pub has_token: bool,
    /// The `room` claim (`jitsi_meet_room`), any JSON type.
    pub room: Option<&'a Value>,
    /// The `sub` claim (`jitsi_meet_domain`).
    pub sub: Option<&'a Value>,
    /// `context.room` (`jitsi_meet_context_room`), e.g. `{"regex": true}`.
    pub context_room: Option<&'a Value>,
    /// `context.tenant` (`jitsi_meet_str_tenant`).
    pub tenant: Option<&'a Value>,
    /// The URL tenant the client connected with (`prefix` query parameter, `""` when none).
    pub query_prefix: &'a str,
}

/// The room being joined or created.
#[derive(Debug, Clone, Copy)]
pub struct RoomTarget<'a> {
    /// The room's JID as the MUC sees it (a full or bare JID), e.g. `[acme]room1@conference.example.com`.
    pub jid: &'a str,
    /// The room's `_data.allowUnauthenticatedAccess`, when the room exists and has it set.
    pub allow_unauthenticated_access: Option<bool>,
}

/// Why a join is refused. `text()` and `jitmeet()` are what the client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomDenial {
    InvalidRoomAddress,
    AuthenticationRequired,
    RoomMismatch,
    RoomNameDoesNotMatch,
    /// The reference's plain `false`: "Room and token mismatched", no jitmeet child.
    Mismatched,
    ServerMissingConfig,
}

impl RoomDenial {
    pub fn text(&self) -> &'static str {
        todo!()
    }
    /// The element name of the `http://jitsi.org/jitmeet` child, when the reference sends one.
    pub fn jitmeet(&self) -> Option<&'static str> {
        todo!()
    }
}

/// The outcome of a room check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomDecision {
    /// Let in. `tenant_mismatch` is what the reference stores as `jitsi_meet_tenant_mismatch`.
    Allow { tenant_mismatch: bool },
    /// Refused; `detail` says why in words for logs and `verify --explain` (never shown to clients).
    Deny { denial: RoomDenial, detail: String },
}

pub fn verify_room(policy: &RoomPolicy, session: &RoomSession<'_>, target: &RoomTarget<'_>) -> RoomDecision {
    todo!("{policy:?} {session:?} {target:?}")
}
