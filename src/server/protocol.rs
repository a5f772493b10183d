//! The wire protocol: one JSON object per line each way (docs/PROTOCOL.md).
//!
//! A request line is parsed in two steps so that every error can name what is wrong: first into a
//! JSON object (to find `id` and `op`), then the object into the op's typed arguments.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

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

/// A reply being built: a JSON object that always carries the request's `id`.
#[derive(Debug)]
pub struct Reply(Map<String, Value>);

impl Reply {
    pub fn new(id: Value, ok: bool) -> Reply {
        let mut map = Map::new();
        map.insert("id".into(), id);
        map.insert("ok".into(), Value::Bool(ok));
        Reply(map)
    }

    pub fn error(id: Value, code: ErrorCode, text: impl Into<String>) -> Reply {
        Reply::new(id, false)
            .with("error", code.as_str())
            .with("text", text.into())
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Reply {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    pub fn is_ok(&self) -> bool {
        self.0.get("ok") == Some(&Value::Bool(true))
    }

    pub fn is_error(&self) -> bool {
        self.0.contains_key("error")
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
        // Serialising a map of JSON values into memory cannot fail; if it somehow did, send `{}`.
        if serde_json::to_writer(&mut *out, &self.0).is_err() {
            out.truncate(start);
            out.extend_from_slice(b"{}");
        }
        out.push(b'\n');
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
