//! Room rules: whether a session's token lets it into a MUC room (docs/COMPATIBILITY.md, "Room
//! joins"; Jitsi's `verify_room`).
//! Pure functions: the caller says what it knows of the session and the room.
//!
//! The order of checks is Jitsi's. Where we differ on purpose (differences 2, 8, 9 and the
//! regex case folding), the difference is named at the place it happens.
//!
//! Names are compared in one normal form ([`normal_form`]): percent-decoded when that gives
//! UTF-8, then lowercased. Domains are compared ASCII-case-insensitively.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;

pub mod pattern;

use pattern::{PatternError, lua_match};

use crate::json::kind as json_kind;

/// The host settings the room rules use.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomPolicy {
    /// `enable_domain_verification`.
    pub enable_domain_verification: bool,
    /// `asap_require_room_claim`.
    pub require_room_claim: bool,
    /// `allow_empty_token`.
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
    /// Whether the session logged in with a token (Jitsi: `session.auth_token` is set).
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
    /// `Room address is invalid` (`invalid-room-address`).
    InvalidRoomAddress,
    /// `Authentication required` (`authentication-required`).
    AuthenticationRequired,
    /// `Room does not match the room from token` (`room-mismatch`).
    RoomMismatch,
    /// `Room name cannot be matched to the one from token.` (`room-name-does-not-match`).
    RoomNameDoesNotMatch,
    /// Jitsi's plain `false`: "Room and token mismatched", no jitmeet child.
    Mismatched,
    /// `Misconfiguration of server` (`server-missing-config`).
    ServerMissingConfig,
}

impl RoomDenial {
    /// The identifier of every kind of denial, in the order of [`RoomDenial::index`], for metrics
    /// labels (docs/METRICS.md).
    pub const IDS: [&'static str; 6] = [
        "invalid_room_address",
        "authentication_required",
        "room_mismatch",
        "room_name_does_not_match",
        "mismatched",
        "server_missing_config",
    ];

    /// The kind of denial as a number below `RoomDenial::IDS.len()`.
    pub fn index(&self) -> usize {
        match self {
            RoomDenial::InvalidRoomAddress => 0,
            RoomDenial::AuthenticationRequired => 1,
            RoomDenial::RoomMismatch => 2,
            RoomDenial::RoomNameDoesNotMatch => 3,
            RoomDenial::Mismatched => 4,
            RoomDenial::ServerMissingConfig => 5,
        }
    }

    /// A stable identifier of the denial: its jitmeet element in snake case, or `mismatched` for
    /// Jitsi's plain "Room and token mismatched".
    pub fn id(&self) -> &'static str {
        RoomDenial::IDS[self.index()]
    }

    /// The stanza error condition of every room refusal, as in Jitsi's plugins.
    pub fn condition(&self) -> &'static str {
        "not-allowed"
    }

    /// The text the client sees in the presence error.
    pub fn text(&self) -> &'static str {
        match self {
            RoomDenial::InvalidRoomAddress => "Room address is invalid",
            RoomDenial::AuthenticationRequired => "Authentication required",
            RoomDenial::RoomMismatch => "Room does not match the room from token",
            RoomDenial::RoomNameDoesNotMatch => "Room name cannot be matched to the one from token.",
            RoomDenial::Mismatched => "Room and token mismatched",
            RoomDenial::ServerMissingConfig => "Misconfiguration of server",
        }
    }
    /// The element name of the `http://jitsi.org/jitmeet` child, when Jitsi's plugins send one.
    pub fn jitmeet(&self) -> Option<&'static str> {
        match self {
            RoomDenial::InvalidRoomAddress => Some("invalid-room-address"),
            RoomDenial::AuthenticationRequired => Some("authentication-required"),
            RoomDenial::RoomMismatch => Some("room-mismatch"),
            RoomDenial::RoomNameDoesNotMatch => Some("room-name-does-not-match"),
            RoomDenial::Mismatched => None,
            RoomDenial::ServerMissingConfig => Some("server-missing-config"),
        }
    }
}

impl std::fmt::Display for RoomDenial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

/// The outcome of a room check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomDecision {
    /// Let in. `tenant_mismatch` is what Jitsi stores as `jitsi_meet_tenant_mismatch`.
    Allow {
        /// Whether the token's tenant differs from the URL's.
        tenant_mismatch: bool,
    },
    /// Refused; `detail` says why in words for logs and `verify --explain` (never shown to clients).
    Deny {
        /// What the client is told.
        denial: RoomDenial,
        /// Why, for logs.
        detail: String,
    },
}

/// Whether the session may join (or create) the room, in Jitsi's order: the address, the
/// empty-token path, then either the room name alone (domain verification off) or the room name,
/// the token tenant and `sub` against the room's `[tenant]name@domain` (on).
pub fn verify_room(policy: &RoomPolicy, session: &RoomSession<'_>, target: &RoomTarget<'_>) -> RoomDecision {
    let Some(address) = RoomAddress::parse(target.jid) else {
        return deny(
            RoomDenial::InvalidRoomAddress,
            format!("{} is not a room address: expected room@muc-domain", shown(target.jid)),
        );
    };

    // Difference 9: the room need not exist; only a room that says so refuses guests.
    if policy.allow_empty_token && !session.has_token {
        if target.allow_unauthenticated_access == Some(false) {
            return deny(
                RoomDenial::AuthenticationRequired,
                format!(
                    "no token, and room {} does not allow unauthenticated access",
                    shown(address.node)
                ),
            );
        }
        return allow(false);
    }

    let claim = RoomClaim::from_json(session.room);

    if !policy.enable_domain_verification {
        return match &claim {
            RoomClaim::Missing | RoomClaim::Any => allow(false),
            RoomClaim::NotString(kind) => deny(
                RoomDenial::RoomMismatch,
                format!("room claim is not a string ({kind}), so it matches no room"),
            ),
            RoomClaim::Named { raw, normal } => {
                if node_matches_claim(address.node, normal) {
                    allow(false)
                } else {
                    deny(
                        RoomDenial::RoomMismatch,
                        format!("token room {} does not match room {}", shown(raw), shown(address.node)),
                    )
                }
            }
        };
    }

    let (room_tenant, room_name) = match split_tenant(address.node) {
        Some((tenant, name)) => (Some(normal_form(tenant)), normal_form(name)),
        None => (None, normal_form(address.node)),
    };

    let room_to_check = match &claim {
        RoomClaim::Any => Some(Check::Name(room_name.clone())),
        RoomClaim::Named { raw, .. } if is_regex(session.context_room) => {
            let pattern = lowercase_pattern_literals(raw);
            match lua_match(&room_name, &pattern) {
                Ok(found) => found.map(Check::Name),
                Err(e) => return pattern_refused(raw, &e),
            }
        }
        RoomClaim::Named { normal, .. } => Some(Check::Name(normal.clone())),
        RoomClaim::NotString(kind) => Some(Check::NotString(kind)),
        RoomClaim::Missing => None,
    };
    let Some(room_to_check) = room_to_check else {
        if !policy.require_room_claim {
            return allow(false);
        }
        let detail = match &claim {
            RoomClaim::Named { raw, .. } => {
                format!(
                    "room {} does not match the token's room pattern {}",
                    shown(&room_name),
                    shown(raw)
                )
            }
            _ => "the token has no room claim and asap_require_room_claim is on".to_owned(),
        };
        return deny(RoomDenial::RoomNameDoesNotMatch, detail);
    };

    let mut tenant_mismatch = false;
    if let Some(token_tenant) = session.tenant {
        // Jitsi lowercases only the token's tenant; we lowercase both sides.
        let same = token_tenant
            .as_str()
            .is_some_and(|t| t.to_lowercase() == session.query_prefix.to_lowercase());
        if !same {
            tenant_mismatch = true;
            if target.allow_unauthenticated_access == Some(false) {
                return deny(
                    RoomDenial::Mismatched,
                    format!(
                        "token tenant {} differs from the URL tenant {}, and room {} does not allow \
                         unauthenticated access",
                        shown_json(token_tenant),
                        shown(session.query_prefix),
                        shown(address.node)
                    ),
                );
            }
        }
    }

    // Difference 2: Jitsi's plugin raises a Lua error here (no reply at all); we refuse.
    let sub = match session.sub {
        Some(Value::String(sub)) => sub.as_str(),
        Some(other) => {
            return deny(
                RoomDenial::Mismatched,
                format!(
                    "sub claim is not a string ({}); domain verification needs it",
                    json_kind(other)
                ),
            );
        }
        None => {
            return deny(
                RoomDenial::Mismatched,
                "the token has no sub claim; domain verification needs it".to_owned(),
            );
        }
    };
    let any_domain = sub == "*";
    let bare = format!("{}@{}", address.node, address.domain);

    let decided = |matches: bool, expected: String| {
        if matches {
            return allow(tenant_mismatch);
        }
        let detail = match &room_to_check {
            Check::NotString(kind) => {
                format!("room claim is not a string ({kind}), so it matches no room")
            }
            Check::Name(_) => {
                format!(
                    "token sub {} expects {}, joining {}",
                    shown(sub),
                    shown(&expected),
                    shown(&bare)
                )
            }
        };
        deny(RoomDenial::Mismatched, detail)
    };

    match room_tenant {
        Some(room_tenant) => {
            let (Some(_), Some(muc_domain)) = (&policy.muc_domain_base, &policy.muc_domain) else {
                return deny(
                    RoomDenial::ServerMissingConfig,
                    format!(
                        "room {} has a tenant, and tenant rooms need muc_mapper_domain_base, which is not set",
                        shown(address.node)
                    ),
                );
            };
            let tenant = if any_domain {
                room_tenant.clone()
            } else {
                normal_form(sub)
            };
            let matches = tenant == room_tenant
                && room_to_check.is(&room_name)
                && address.domain.eq_ignore_ascii_case(muc_domain);
            decided(matches, format!("[{tenant}]{}@{muc_domain}", room_to_check.shown()))
        }
        None => {
            let domain = if any_domain {
                match &policy.muc_domain {
                    Some(muc_domain) => muc_domain.clone(),
                    None => {
                        return deny(
                            RoomDenial::ServerMissingConfig,
                            "token sub is \"*\" and the MUC domain is unknown: set muc_mapper_domain_base".to_owned(),
                        );
                    }
                }
            } else {
                format!("{}.{sub}", policy.muc_domain_prefix)
            };
            let matches = room_to_check.is(&room_name) && address.domain.eq_ignore_ascii_case(&domain);
            decided(matches, format!("{}@{domain}", room_to_check.shown()))
        }
    }
}

fn allow(tenant_mismatch: bool) -> RoomDecision {
    RoomDecision::Allow { tenant_mismatch }
}

fn deny(denial: RoomDenial, detail: String) -> RoomDecision {
    RoomDecision::Deny { denial, detail }
}

fn pattern_refused(raw: &str, error: &PatternError) -> RoomDecision {
    deny(
        RoomDenial::RoomNameDoesNotMatch,
        format!("room pattern {} was refused: {error}", shown(raw)),
    )
}

/// The one form in which room names, claims and tenants are compared (difference 8): percent-decoded
/// when the decoded bytes are UTF-8 (else as given), then lowercased (Unicode).
///
/// Prosody JIDs carry non-ASCII room names percent-encoded (`%d1%82…`), tokens usually carry
/// them as text (`Тест`); both become `тест`.
pub fn normal_form(s: &str) -> String {
    percent_decode(s).to_lowercase()
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16)).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if let (b'%', Some(high), Some(low)) = (b, hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            out.push((high << 4) | low);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(decoded) => Cow::Owned(decoded),
        Err(_) => Cow::Borrowed(s),
    }
}

/// A room JID split as Prosody's `jid.split` does: `node@domain[/resource]`, node and domain
/// non-empty, no second `@` in the domain, a `/` followed by a non-empty resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RoomAddress<'a> {
    node: &'a str,
    domain: &'a str,
}

impl<'a> RoomAddress<'a> {
    fn parse(jid: &'a str) -> Option<Self> {
        let (bare, resource) = match jid.split_once('/') {
            Some((bare, resource)) => (bare, Some(resource)),
            None => (jid, None),
        };
        let (node, domain) = bare.split_once('@')?;
        if node.is_empty() || domain.is_empty() || domain.contains('@') || resource == Some("") {
            return None;
        }
        Some(RoomAddress { node, domain })
    }
}

/// `[tenant]name` split as Jitsi's `^%[([^%]]+)%](.+)$`: a non-empty tenant up to the
/// first `]`, then a non-empty name. Only literal brackets count (`%5b` is part of a name).
fn split_tenant(node: &str) -> Option<(&str, &str)> {
    let rest = node.strip_prefix('[')?;
    let (tenant, name) = rest.split_once(']')?;
    (!tenant.is_empty() && !name.is_empty()).then_some((tenant, name))
}

/// Domain verification off: the node equals the claim, or ends with `]` + the claim.
fn node_matches_claim(node: &str, claim: &str) -> bool {
    normal_form(node) == claim
        || node
            .match_indices(']')
            .any(|(i, _)| node.get(i + 1..).is_some_and(|after| normal_form(after) == claim))
}

/// `context.room.regex` is `true` or `"true"`.
fn is_regex(context_room: Option<&Value>) -> bool {
    match context_room.and_then(|c| c.get("regex")) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

/// Lowercases the literal characters of a Lua pattern and leaves what follows `%` as written,
/// so `%D` stays "not a digit" (Jitsi lowercases it into `%d`). The two delimiters of
/// `%bxy` are literals and are lowercased.
fn lowercase_pattern_literals(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c.is_ascii() && c != '%' {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        if c != '%' {
            out.extend(c.to_lowercase());
            continue;
        }
        out.push('%');
        match chars.next() {
            Some('b') => {
                out.push('b');
                for delimiter in chars.by_ref().take(2) {
                    out.extend(delimiter.to_lowercase());
                }
            }
            Some(next) if next.is_ascii() => out.push(next),
            Some(next) => out.extend(next.to_lowercase()),
            None => {}
        }
    }
    out
}

/// The `room` claim as the rules see it.
#[derive(Debug)]
enum RoomClaim<'a> {
    Missing,
    /// `"*"`: any room.
    Any,
    Named {
        raw: &'a str,
        normal: String,
    },
    /// A claim of another JSON type (including `null`): it matches no room.
    NotString(&'static str),
}

impl<'a> RoomClaim<'a> {
    fn from_json(value: Option<&'a Value>) -> Self {
        match value {
            None => RoomClaim::Missing,
            Some(Value::String(s)) if s == "*" => RoomClaim::Any,
            Some(Value::String(s)) => RoomClaim::Named {
                raw: s,
                normal: normal_form(s),
            },
            Some(other) => RoomClaim::NotString(json_kind(other)),
        }
    }
}

/// The room name the token grants, once resolved.
enum Check {
    Name(String),
    NotString(&'static str),
}

impl Check {
    fn is(&self, room_name: &str) -> bool {
        matches!(self, Check::Name(name) if name == room_name)
    }

    fn shown(&self) -> String {
        match self {
            Check::Name(name) => name.clone(),
            Check::NotString(kind) => format!("<{kind}>"),
        }
    }
}

/// Longest value quoted whole in a detail; names come from tokens and may be long.
const SHOWN_MAX: usize = 120;

/// `s` quoted for a detail text, cut at [`SHOWN_MAX`] characters.
fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(SHOWN_MAX) + 8);
    match s.char_indices().nth(SHOWN_MAX) {
        Some((cut, _)) => {
            let _ = write!(out, "{:?}…", &s[..cut]);
        }
        None => {
            let _ = write!(out, "{s:?}");
        }
    }
    out
}

fn shown_json(value: &Value) -> String {
    match value {
        Value::String(s) => shown(s),
        other => format!("<{}>", json_kind(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_ids_are_the_jitmeet_names() {
        let all = [
            RoomDenial::InvalidRoomAddress,
            RoomDenial::AuthenticationRequired,
            RoomDenial::RoomMismatch,
            RoomDenial::RoomNameDoesNotMatch,
            RoomDenial::Mismatched,
            RoomDenial::ServerMissingConfig,
        ];
        assert_eq!(all.len(), RoomDenial::IDS.len());
        for (n, denial) in all.iter().enumerate() {
            assert_eq!(denial.index(), n);
            let expected = denial
                .jitmeet()
                .map_or("mismatched".to_owned(), |j| j.replace('-', "_"));
            assert_eq!(denial.id(), expected);
        }
    }

    #[test]
    fn normal_form_decodes_and_lowercases() {
        let cases = [
            ("Room1", "room1"),
            ("%d1%82%d0%b5%d1%81%d1%82", "тест"),
            ("%D1%82%D0%B5%D1%81%D1%82", "тест"),
            ("Тест", "тест"),
            ("100%", "100%"),
            ("a%zzb", "a%zzb"),
            ("%ff", "%ff"),
            ("a%20B", "a b"),
            ("%+1", "%+1"),
            ("%", "%"),
            ("%4", "%4"),
        ];
        for (given, want) in cases {
            assert_eq!(normal_form(given), want, "{given:?}");
        }
    }

    #[test]
    fn addresses_split_like_prosody() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            (
                "room1@conference.meet.example.com",
                Some(("room1", "conference.meet.example.com")),
            ),
            (
                "room1@conference.meet.example.com/nick",
                Some(("room1", "conference.meet.example.com")),
            ),
            (
                "[acme]room1@c.example.com/a/b@c",
                Some(("[acme]room1", "c.example.com")),
            ),
            ("@conference.meet.example.com", None),
            ("conference.meet.example.com", None),
            ("room1@", None),
            ("room1@c.example.com/", None),
            ("a@b@c", None),
            ("a/b@c", None),
            ("", None),
        ];
        for (jid, want) in cases {
            let got = RoomAddress::parse(jid).map(|a| (a.node, a.domain));
            assert_eq!(got, *want, "{jid:?}");
        }
    }

    #[test]
    fn tenant_split_agrees_with_jitsis_pattern() {
        for node in [
            "[acme]room1",
            "room1",
            "[]room1",
            "[acme]",
            "[a]b]c",
            "[[a]b",
            "[ac me]r",
            "x[a]b",
            "[тест]комната",
        ] {
            let reference = lua_match(node, "^%[([^%]]+)%](.+)$").ok().flatten();
            assert_eq!(split_tenant(node).map(|(t, _)| t.to_owned()), reference, "{node:?}");
        }
    }

    /// Issue 10, item 4: a 1,000-character room against `[` + 5,000 characters + `a]*`, repeated,
    /// is refused as too complex, quickly.
    #[test]
    fn a_room_pattern_over_wide_sets_is_refused_quickly() {
        let policy = RoomPolicy {
            enable_domain_verification: true,
            require_room_claim: true,
            allow_empty_token: false,
            muc_domain_base: Some("meet.example.com".to_owned()),
            muc_domain_prefix: "conference".to_owned(),
            muc_domain: Some("conference.meet.example.com".to_owned()),
        };
        let set: String = "BCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            .chars()
            .cycle()
            .take(5000)
            .collect();
        let context = serde_json::json!({"regex": true});
        let jid = format!("{}@conference.meet.example.com", "a".repeat(1000));
        // 3 repeats fit a 16 KiB token; 12 fit a socket request line (session fields).
        for repeats in [3, 12] {
            let claim = Value::String(format!("[{set}a]*").repeat(repeats) + "$");
            let sub = Value::String("meet.example.com".to_owned());
            let session = RoomSession {
                has_token: true,
                room: Some(&claim),
                sub: Some(&sub),
                context_room: Some(&context),
                tenant: None,
                query_prefix: "",
            };
            let target = RoomTarget {
                jid: &jid,
                allow_unauthenticated_access: None,
            };
            let started = std::time::Instant::now();
            let decision = verify_room(&policy, &session, &target);
            let took = started.elapsed();
            println!("1000-character room, {repeats} wide sets: {took:?}");
            match decision {
                RoomDecision::Deny { denial, detail } => {
                    assert_eq!(denial, RoomDenial::RoomNameDoesNotMatch);
                    assert!(detail.contains("pattern too complex"), "{detail}");
                }
                other => panic!("{other:?}"),
            }
            // The goal is well under 50 ms; generous for slow CI machines.
            assert!(took < std::time::Duration::from_millis(500), "took {took:?}");
        }
    }

    #[test]
    fn pattern_literals_are_lowercased_and_classes_kept() {
        let cases = [
            ("^Room%D+$", "^room%D+$"),
            ("^ROOM%d+$", "^room%d+$"),
            ("[A-Z%W]", "[a-z%W]"),
            ("%bAB", "%bab"),
            ("%B", "%B"),
            ("%%A", "%%a"),
            ("ТЕСТ%Т", "тест%т"),
            ("%", "%"),
        ];
        for (given, want) in cases {
            assert_eq!(lowercase_pattern_literals(given), want, "{given:?}");
        }
    }
}
