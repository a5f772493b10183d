//! The wire protocol: one JSON object per line each way (docs/PROTOCOL.md).
//!
//! A request line is parsed in two steps so that every error can name what is wrong: first into a
//! JSON object (to find `id` and `op`), then the object into the op's typed arguments.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::registry::CachedToken;
use crate::token::{SessionView, VerifiedToken};

/// The protocol version this daemon speaks; `hello` must name it.
pub const PROTOCOL_VERSION: u64 = 1;

/// A request, parsed and typed.
#[derive(Debug)]
pub enum Request {
    Hello(Hello),
    Auth(Auth),
    Room(Room),
    Ping,
    Stats,
    AccessToken,
}

/// The ops, for counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Hello,
    Auth,
    Room,
    Ping,
    Stats,
    AccessToken,
    /// A line that could not be parsed into a request.
    Invalid,
}

impl Op {
    pub const ALL: [Op; 7] = [
        Op::Hello,
        Op::Auth,
        Op::Room,
        Op::Ping,
        Op::Stats,
        Op::AccessToken,
        Op::Invalid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Hello => "hello",
            Op::Auth => "auth",
            Op::Room => "room",
            Op::Ping => "ping",
            Op::Stats => "stats",
            Op::AccessToken => "access_token",
            Op::Invalid => "invalid",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl Request {
    pub fn op(&self) -> Op {
        match self {
            Request::Hello(_) => Op::Hello,
            Request::Auth(_) => Op::Auth,
            Request::Room(_) => Op::Room,
            Request::Ping => Op::Ping,
            Request::Stats => Op::Stats,
            Request::AccessToken => Op::AccessToken,
        }
    }
}

/// `hello`: the protocol version and the host options the shim read from Prosody's config.
#[derive(Debug, Deserialize)]
pub struct Hello {
    pub version: u64,
    #[serde(default)]
    pub hosts: BTreeMap<String, Map<String, Value>>,
}

/// `auth`: a login attempt on `host`.
#[derive(Debug, Deserialize)]
pub struct Auth {
    pub host: String,
    /// The token; `null` or absent when the client sent none.
    #[serde(default)]
    pub token: Option<String>,
    /// The URL tenant (`prefix` query parameter). Accepted for the shim's logs; the login itself
    /// does not depend on it.
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub room: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    /// A PEM public key set on the session by a `pre-jitsi-authentication-fetch-key` handler.
    #[serde(default)]
    pub public_key: Option<String>,
    /// `session.contextRequired`.
    #[serde(default)]
    pub context_required: bool,
}

/// `room`: may this session join (or create) this room?
#[derive(Debug, Deserialize)]
pub struct Room {
    pub host: String,
    /// The session's token (`session.auth_token`); `null` or absent for a session without one.
    #[serde(default)]
    pub token: Option<String>,
    /// Instead of `token`: the `token_sha256` an earlier `auth` reply gave.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// The room JID as the MUC sees it, e.g. `[acme]room1@conference.meet.example.com`.
    pub room: String,
    /// The URL tenant the client connected with (`jitsi_web_query_prefix`).
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub room_exists: bool,
    /// The room's `_data.allowUnauthenticatedAccess`, when set.
    #[serde(default)]
    pub allow_unauthenticated_access: Option<bool>,
}

/// Why a line is not a request. `Display` is the reply's `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRequest {
    NotJson(String),
    NotObject(&'static str),
    MissingId,
    MissingOp,
    OpNotString,
    UnknownOp(String),
    Fields { op: &'static str, detail: String },
}

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRequest::NotJson(e) => write!(f, "the line is not JSON: {e}"),
            BadRequest::NotObject(kind) => write!(f, "a request must be a JSON object, found {kind}"),
            BadRequest::MissingId => f.write_str("missing field `id`"),
            BadRequest::MissingOp => f.write_str("missing field `op`"),
            BadRequest::OpNotString => f.write_str("field `op` must be a string"),
            BadRequest::UnknownOp(op) => write!(
                f,
                "unknown op {op:?} (known: hello, auth, room, ping, stats, access_token)"
            ),
            BadRequest::Fields { op, detail } => write!(f, "{op}: {detail}"),
        }
    }
}

/// Parses one request line. The `id` is returned whenever it could be read, so that even a bad
/// request's error reply can carry it.
pub fn parse(line: &[u8]) -> (Value, Result<Request, BadRequest>) {
    if let Some(fast) = parse_fast(line) {
        return fast;
    }
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return (Value::Null, Err(BadRequest::NotJson(e.to_string()))),
    };
    let Value::Object(mut object) = value else {
        return (Value::Null, Err(BadRequest::NotObject(crate::json_kind(&value))));
    };
    let Some(id) = object.remove("id") else {
        return (Value::Null, Err(BadRequest::MissingId));
    };
    let op = match object.remove("op") {
        None => return (id, Err(BadRequest::MissingOp)),
        Some(Value::String(op)) => op,
        Some(_) => return (id, Err(BadRequest::OpNotString)),
    };
    let args = Value::Object(object);
    let request = match op.as_str() {
        "hello" => typed("hello", args).map(Request::Hello),
        "auth" => typed("auth", args).map(Request::Auth),
        "room" => typed("room", args).map(Request::Room),
        "ping" => Ok(Request::Ping),
        "stats" => Ok(Request::Stats),
        "access_token" => Ok(Request::AccessToken),
        _ => Err(BadRequest::UnknownOp(op)),
    };
    (id, request)
}

/// The common requests (`auth`, `ping`) read straight into a typed struct, without a `Value` tree.
/// Anything this does not accept exactly (another op, a missing `id`, a mistyped or duplicated
/// field) returns `None` and goes through the general path, which names the problem.
#[derive(Deserialize)]
struct FastRequest<'a> {
    id: Option<Value>,
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(default, borrow)]
    host: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    token: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    prefix: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    room: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    public_key: Option<Cow<'a, str>>,
    #[serde(default)]
    context_required: bool,
}

fn parse_fast(line: &[u8]) -> Option<(Value, Result<Request, BadRequest>)> {
    let fast: FastRequest = serde_json::from_slice(line).ok()?;
    let id = fast.id?;
    match &*fast.op {
        "auth" => {
            let own = |s: Option<Cow<str>>| s.map(Cow::into_owned);
            let auth = Auth {
                host: fast.host?.into_owned(),
                token: own(fast.token),
                prefix: own(fast.prefix),
                room: own(fast.room),
                user_agent: own(fast.user_agent),
                public_key: own(fast.public_key),
                context_required: fast.context_required,
            };
            Some((id, Ok(Request::Auth(auth))))
        }
        "ping" => Some((id, Ok(Request::Ping))),
        _ => None,
    }
}

fn typed<T: serde::de::DeserializeOwned>(op: &'static str, args: Value) -> Result<T, BadRequest> {
    serde_json::from_value(args).map_err(|e| BadRequest::Fields {
        op,
        detail: e.to_string(),
    })
}

/// Error codes of error replies (`"error"`): the request could not be answered, as opposed to a
/// refusal (`"condition"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    LineTooLong,
    UnsupportedVersion,
    UnknownHost,
    UnknownToken,
    NotImplemented,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::LineTooLong => "line-too-long",
            ErrorCode::UnsupportedVersion => "unsupported-version",
            ErrorCode::UnknownHost => "unknown-host",
            ErrorCode::UnknownToken => "unknown-token",
            ErrorCode::NotImplemented => "not-implemented",
        }
    }
}

/// A reply: a JSON object that always carries the request's `id`.
#[derive(Debug)]
pub struct Reply(Body);

#[derive(Debug)]
enum Body {
    /// Built field by field.
    Map(Map<String, Value>),
    /// An accepted login, written straight from the verified token when the reply is serialised:
    /// the claims are neither cloned nor collected into a map.
    Accepted { id: Value, token: Arc<CachedToken> },
}

impl Reply {
    pub fn new(id: Value, ok: bool) -> Reply {
        let mut map = Map::new();
        map.insert("id".into(), id);
        map.insert("ok".into(), Value::Bool(ok));
        Reply(Body::Map(map))
    }

    /// `ok: true` with `anonymous: false`, the token's `claims`, `session`, `fingerprint`,
    /// `token_sha256` and `exp`.
    pub fn accepted(id: Value, token: Arc<CachedToken>) -> Reply {
        Reply(Body::Accepted { id, token })
    }

    pub fn error(id: Value, code: ErrorCode, text: impl Into<String>) -> Reply {
        Reply::new(id, false)
            .with("error", code.as_str())
            .with("text", text.into())
    }

    pub fn with(self, key: &str, value: impl Into<Value>) -> Reply {
        let mut map = self.into_map();
        map.insert(key.to_owned(), value.into());
        Reply(Body::Map(map))
    }

    fn into_map(self) -> Map<String, Value> {
        match self.0 {
            Body::Map(map) => map,
            Body::Accepted { id, token } => {
                let mut line = Vec::new();
                token.write_reply(&id, &mut line);
                // Not reached: the text is a JSON object.
                serde_json::from_slice(&line).unwrap_or_default()
            }
        }
    }

    pub fn is_ok(&self) -> bool {
        match &self.0 {
            Body::Map(map) => map.get("ok") == Some(&Value::Bool(true)),
            Body::Accepted { .. } => true,
        }
    }

    pub fn is_error(&self) -> bool {
        match &self.0 {
            Body::Map(map) => map.contains_key("error"),
            Body::Accepted { .. } => false,
        }
    }

    /// The reply as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = Vec::with_capacity(256);
        self.write_line(&mut line);
        line
    }

    /// Appends the reply as one line, newline included, to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let written = match &self.0 {
            Body::Map(map) => serde_json::to_writer(&mut *out, map),
            Body::Accepted { id, token } => {
                token.write_reply(id, out);
                return;
            }
        };
        // Serialising JSON values into memory cannot fail; if it somehow did, send `{}`.
        if written.is_err() {
            out.truncate(start);
            out.extend_from_slice(b"{}");
        }
        out.push(b'\n');
    }
}

/// The accepted-login reply, in two parts around its `id` so that a cached token's text can be
/// reused for any request. Fields are declared in name order, so the bytes are those of the same
/// reply built as a `serde_json::Map` (whose keys are sorted): `anonymous`, `claims`, `exp`,
/// `fingerprint` | `id` | `ok`, `session`, `token_sha256`.
#[derive(Serialize)]
struct AcceptedHead<'a> {
    anonymous: bool,
    claims: &'a Map<String, Value>,
    exp: Option<i64>,
    fingerprint: &'a str,
}

#[derive(Serialize)]
struct AcceptedTail<'a> {
    ok: bool,
    session: SessionView<'a>,
    token_sha256: Sha256Hex<'a>,
}

/// The accepted reply for `token` without `id` and newline, and where the `id` goes: the text
/// is `{head}` with its closing brace dropped, then (at the split) `{tail}` without its opening
/// one; `CachedToken::write_reply` puts `,"id":<id>,` between them.
pub(super) fn accepted_text(token: &VerifiedToken) -> (String, usize) {
    let head = AcceptedHead {
        anonymous: false,
        claims: &token.claims,
        exp: token.exp(),
        fingerprint: &token.fingerprint,
    };
    let tail = AcceptedTail {
        ok: true,
        session: token.session_view(),
        token_sha256: Sha256Hex(&token.sha256),
    };
    // Serialising JSON values into memory cannot fail; if it did, the fallbacks still make a
    // valid (if bare) accepted reply.
    let mut text = serde_json::to_string(&head).unwrap_or_else(|_| r#"{"anonymous":false}"#.into());
    text.pop(); // `}`
    let split = text.len();
    let tail = serde_json::to_string(&tail).unwrap_or_else(|_| r#"{"ok":true}"#.into());
    text.push_str(&tail[1..]); // without `{`
    (text, split)
}

/// A SHA-256 as 64 lowercase hex digits, formatted on the stack.
struct Sha256Hex<'a>(&'a [u8; 32]);

impl Serialize for Sha256Hex<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            text[2 * i] = DIGITS[usize::from(b >> 4)];
            text[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        // Hex digits are ASCII.
        serializer.serialize_str(std::str::from_utf8(&text).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(line: &str) -> (Value, String) {
        let (id, result) = parse(line.as_bytes());
        (id, result.expect_err(line).to_string())
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(bad("{").1.starts_with("the line is not JSON"));
        assert_eq!(bad("[1]").1, "a request must be a JSON object, found an array");
        assert_eq!(bad(r#"{"op":"ping"}"#).1, "missing field `id`");
        assert_eq!(bad(r#"{"id":3}"#), (Value::from(3), "missing field `op`".into()));
        assert!(bad(r#"{"id":3,"op":"fly"}"#).1.starts_with("unknown op \"fly\""));
        assert_eq!(bad(r#"{"id":"a","op":"auth"}"#).1, "auth: missing field `host`");
        assert!(
            bad(r#"{"id":1,"op":"auth","host":5}"#)
                .1
                .starts_with("auth: invalid type: integer `5`, expected a string")
        );
        assert!(bad(r#"{"id":1,"op":"hello"}"#).1.contains("missing field `version`"));
    }

    #[test]
    fn requests_parse() {
        let (id, r) = parse(br#"{"id":7,"op":"auth","host":"h","token":null,"extra":1}"#);
        assert_eq!(id, Value::from(7));
        assert!(matches!(r, Ok(Request::Auth(Auth { token: None, .. }))));
        let (_, r) = parse(br#"{"id":1,"op":"room","host":"h","room":"r@c","room_exists":true}"#);
        assert!(matches!(r, Ok(Request::Room(Room { room_exists: true, .. }))));
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_one() {
        let (id, r) = parse(br#"{"id":"x","op":"auth","host":"h\u0041","token":"t","context_required":true}"#);
        assert_eq!(id, Value::from("x"));
        let Ok(Request::Auth(auth)) = r else { panic!() };
        assert_eq!((auth.host.as_str(), auth.token.as_deref()), ("hA", Some("t")));
        assert!(auth.context_required);
        // A duplicated field falls back to the general path (last one wins there).
        let (_, r) = parse(br#"{"id":1,"op":"auth","host":"a","host":"b"}"#);
        assert!(matches!(r, Ok(Request::Auth(Auth { ref host, .. })) if host == "b"));
        let (_, r) = parse(br#"{"id":1,"op":"ping","host":5}"#);
        assert!(matches!(r, Ok(Request::Ping)));
    }

    /// The accepted reply as it was built before it was written straight from the token.
    fn accepted_as_map(id: Value, token: &VerifiedToken) -> Vec<u8> {
        Reply::new(id, true)
            .with("anonymous", false)
            .with("claims", Value::Object(token.claims.clone()))
            .with("session", serde_json::to_value(token.session_fields()).unwrap())
            .with("fingerprint", token.fingerprint.clone())
            .with("exp", token.exp())
            .with("token_sha256", crate::hex(&token.sha256))
            .to_line()
    }

    #[test]
    fn accepted_replies_are_the_bytes_of_the_map_built_ones() {
        let claims = [
            serde_json::json!({"iss": "app", "aud": "jitsi", "sub": "meet.example.com", "room": "*",
                "exp": 1_800_003_600,
                "context": {"user": {"id": "1", "name": "Ådam \"quoted\"\n"}, "group": "g", "tenant": "acme",
                    "features": {"recording": true}, "room": {"lobby_bypass": true}}}),
            serde_json::json!({"iss": "app", "user_id": "u-1", "exp": 1.5e9, "zz": [1, null, {"b": 1, "a": 2}]}),
            serde_json::json!({"context": null, "user_id": "u-2", "room": null}),
            serde_json::json!({"context": {"user": null}, "user_id": "u-3", "exp": "soon"}),
            serde_json::json!({}),
        ];
        for (n, claims) in claims.into_iter().enumerate() {
            let Value::Object(claims) = claims else { panic!() };
            let token = VerifiedToken {
                header: Map::new(),
                claims,
                fingerprint: "1a2b3c4d".into(),
                sha256: crate::sha256(n.to_string().as_bytes()),
            };
            for id in [Value::from(n), Value::from("id-x"), Value::Null] {
                let expected = accepted_as_map(id.clone(), &token);
                let reply = Reply::accepted(id, Arc::new(CachedToken::transient(token.clone())));
                assert!(reply.is_ok() && !reply.is_error());
                assert_eq!(
                    String::from_utf8(reply.to_line()).unwrap(),
                    String::from_utf8(expected).unwrap()
                );
            }
        }
    }

    #[test]
    fn replies_are_one_line() {
        let line = Reply::error(Value::from(9), ErrorCode::BadRequest, "x").to_line();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"id": 9, "ok": false, "error": "bad-request", "text": "x"})
        );
    }
}
