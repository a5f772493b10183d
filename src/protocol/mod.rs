//! The socket protocol (docs/PROTOCOL.md): one JSON object per line each way, shared by the daemon
//! (which parses requests and writes replies) and clients (which write requests and read replies:
//! the load tool, the tests, [`client::Client`]).
//!
//! A request line is parsed in two steps so that every error can name what is wrong: first into a
//! JSON object (to find `id` and `op`), then the object into the op's typed arguments. The common
//! requests (`auth`, `ping`) are read straight into their types when they are exactly as expected.
//! A line that is not JSON at all still gets its `id` back when the damage comes after it
//! ([`parse`]), so that the client's request does not wait out its timeout.

pub mod client;
mod messages;
mod reply;

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

pub use messages::{
    Auth, Hello, HelloReply, OccupancySync, OccupantEvent, OccupantList, OccupantReport, ReplyHead, Room,
    RoomSessionFields, SyncedOccupant,
};
pub use reply::{ErrorCode, Outcome, Prepared, Refusal, Reply};

/// The protocol version this crate speaks; `hello` must name it.
pub const PROTOCOL_VERSION: u64 = 1;

/// A request, parsed and typed.
#[derive(Debug)]
pub enum Request {
    /// `hello`: the version and the shim's hosts.
    Hello(Hello),
    /// `auth`: a login.
    Auth(Auth<'static>),
    /// `room`: a room join.
    Room(Room<'static>),
    /// `ping`.
    Ping,
    /// `stats`.
    Stats,
    /// `access_token`: an access-token IQ for an issuer.
    AccessToken(Box<crate::access::IssueRequest>),
    /// `occupant`: a join or a leave.
    Occupant(OccupantReport),
    /// `occupants`: a MUC's whole occupancy.
    Occupants(OccupancySync),
}

/// The ops, for counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `hello`.
    Hello,
    /// `auth`.
    Auth,
    /// `room`.
    Room,
    /// `ping`.
    Ping,
    /// `stats`.
    Stats,
    /// `access_token`.
    AccessToken,
    /// `occupant`.
    Occupant,
    /// `occupants`.
    Occupants,
    /// A line that could not be parsed into a request.
    Invalid,
}

impl Op {
    /// Every op, in the order `stats` lists them.
    pub const ALL: [Op; 9] = [
        Op::Hello,
        Op::Auth,
        Op::Room,
        Op::Ping,
        Op::Stats,
        Op::AccessToken,
        Op::Occupant,
        Op::Occupants,
        Op::Invalid,
    ];

    /// The op's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Op::Hello => "hello",
            Op::Auth => "auth",
            Op::Room => "room",
            Op::Ping => "ping",
            Op::Stats => "stats",
            Op::AccessToken => "access_token",
            Op::Occupant => "occupant",
            Op::Occupants => "occupants",
            Op::Invalid => "invalid",
        }
    }
}

impl Request {
    /// Which op this is.
    pub fn op(&self) -> Op {
        match self {
            Request::Hello(_) => Op::Hello,
            Request::Auth(_) => Op::Auth,
            Request::Room(_) => Op::Room,
            Request::Ping => Op::Ping,
            Request::Stats => Op::Stats,
            Request::AccessToken(_) => Op::AccessToken,
            Request::Occupant(_) => Op::Occupant,
            Request::Occupants(_) => Op::Occupants,
        }
    }
}

/// Why a line is not a request. `Display` is the reply's `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRequest {
    /// Not JSON.
    NotJson(String),
    /// JSON, but not an object.
    NotObject(&'static str),
    /// No `id`.
    MissingId,
    /// No `op`.
    MissingOp,
    /// `op` is not a string.
    OpNotString,
    /// An op this daemon does not know.
    UnknownOp(String),
    /// The op's fields are missing or mistyped.
    Fields {
        /// The op.
        op: &'static str,
        /// What serde said.
        detail: String,
    },
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
                "unknown op {op:?} (known: hello, auth, room, ping, stats, access_token, occupant, occupants)"
            ),
            BadRequest::Fields { op, detail } => write!(f, "{op}: {detail}"),
        }
    }
}

/// Parses one request line. The `id` is returned whenever it could be read, so that even a bad
/// request's error reply can carry it: also from a line that is not JSON, when the damage comes
/// after the `id`.
pub fn parse(line: &[u8]) -> (Value, Result<Request, BadRequest>) {
    if let Some(fast) = parse_fast(line) {
        return fast;
    }
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return (recover_id(line), Err(BadRequest::NotJson(e.to_string()))),
    };
    let Value::Object(mut object) = value else {
        return (Value::Null, Err(BadRequest::NotObject(crate::json::kind(&value))));
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
        "access_token" => typed("access_token", args).map(|r| Request::AccessToken(Box::new(r))),
        "occupant" => typed("occupant", args).map(Request::Occupant),
        "occupants" => typed("occupants", args).map(Request::Occupants),
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
            let own = |s: Option<Cow<str>>| s.map(|s| Cow::Owned(s.into_owned()));
            let auth = Auth {
                host: Cow::Owned(fast.host?.into_owned()),
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

/// The `id` of a line that is not valid JSON, or null. The members of the top-level object are
/// read in order up to `id` (the other values are skipped, not decoded, so bytes that are not
/// UTF-8 in a string before it do not stop the walk); whatever comes after `id` may be broken —
/// bytes that are not UTF-8, a line cut short, a stray character. A request whose error reply
/// carries its id is answered at once; with a null id the client waits out its timeout, holding
/// one of its pending slots (issue 10, item 1). The shim writes `id` first for this reason.
fn recover_id(line: &[u8]) -> Value {
    let Some(mut at) = punct(line, 0, b'{') else {
        return Value::Null;
    };
    loop {
        let Some((key, next)) = json_value::<String>(line, at) else {
            return Value::Null;
        };
        let Some(next) = punct(line, next, b':') else {
            return Value::Null;
        };
        if key == "id" {
            return json_value::<Value>(line, next).map_or(Value::Null, |(id, _)| id);
        }
        let Some((IgnoredAny, next)) = json_value::<IgnoredAny>(line, next) else {
            return Value::Null;
        };
        match punct(line, next, b',') {
            Some(next) => at = next,
            None => return Value::Null,
        }
    }
}

/// The position after `byte` when it is the next character after whitespace at `at`.
fn punct(line: &[u8], at: usize, byte: u8) -> Option<usize> {
    let at = at + line.get(at..)?.iter().take_while(|b| b.is_ascii_whitespace()).count();
    (line.get(at) == Some(&byte)).then_some(at + 1)
}

/// One JSON value at `at` (after whitespace), and the position after it.
fn json_value<T: DeserializeOwned>(line: &[u8], at: usize) -> Option<(T, usize)> {
    let mut values = serde_json::Deserializer::from_slice(line.get(at..)?).into_iter::<T>();
    let value = values.next()?.ok()?;
    Some((value, at + values.byte_offset()))
}

fn typed<T: DeserializeOwned>(op: &'static str, args: Value) -> Result<T, BadRequest> {
    serde_json::from_value(args).map_err(|e| BadRequest::Fields {
        op,
        detail: e.to_string(),
    })
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
        let (_, r) = parse(
            br#"{"id":1,"op":"room","host":"h","room":"r@c","token_sha256":"ab","session":{"jitsi_meet_room":"r","other":1}}"#,
        );
        let Ok(Request::Room(room)) = r else { panic!("{r:?}") };
        let session = room.session.expect("session fields");
        assert_eq!(session.jitsi_meet_room, Some(Value::from("r")));
        assert_eq!(room.token_sha256.as_deref(), Some("ab"));
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_one() {
        let (id, r) = parse(br#"{"id":"x","op":"auth","host":"h\u0041","token":"t","context_required":true}"#);
        assert_eq!(id, Value::from("x"));
        let Ok(Request::Auth(auth)) = r else { panic!() };
        assert_eq!((&*auth.host, auth.token.as_deref()), ("hA", Some("t")));
        assert!(auth.context_required);
        // A duplicated field falls back to the general path (last one wins there).
        let (_, r) = parse(br#"{"id":1,"op":"auth","host":"a","host":"b"}"#);
        assert!(matches!(r, Ok(Request::Auth(Auth { ref host, .. })) if host == "b"));
        let (_, r) = parse(br#"{"id":1,"op":"ping","host":5}"#);
        assert!(matches!(r, Ok(Request::Ping)));
    }

    #[test]
    fn the_id_of_a_line_broken_after_it_is_recovered() {
        let recovered = |line: &[u8]| {
            let (id, result) = parse(line);
            assert!(
                matches!(result, Err(BadRequest::NotJson(_))),
                "{:?}",
                String::from_utf8_lossy(line)
            );
            id
        };
        // What a shim sent before it cleaned its lines: bytes that are not UTF-8 in `room`.
        assert_eq!(
            recovered(b"{\"id\":7,\"op\":\"auth\",\"host\":\"h\",\"room\":\"\xff\",\"token\":\"t\"}"),
            Value::from(7)
        );
        assert_eq!(recovered(br#"{"id":7,"op":"auth",...broken"#), Value::from(7));
        assert_eq!(recovered(br#" { "id" : "a-1" , "op""#), Value::from("a-1"));
        assert_eq!(recovered(br#"{"id":{"n":[1,2]},"#), serde_json::json!({"n": [1, 2]}));
        assert_eq!(recovered(b"{\"id\":1,\"op\":"), Value::from(1));
        // Members before the id are skipped unread, bytes that are not UTF-8 included.
        assert_eq!(
            recovered(
                b"{\"op\":\"auth\",\"user_agent\":\"\xfe\xff\",\"n\":[1,{\"a\":null}],\"id\":9,\"room\":\"\xff\"}"
            ),
            Value::from(9)
        );
        // Escaped key names are keys like any other.
        assert_eq!(recovered(br#"{"\u0069d":3,"x":tru"#), Value::from(3));
        // Nothing to recover: the damage comes first, or there is no id, or the id itself is broken.
        for line in [
            &b"not json"[..],
            b"",
            b"{",
            b"{\"op\":\"\xff\"",
            b"{\"\xff\":1,\"id\":2,",
            b"{\"op\":\"auth\" \"id\":2,",
            b"{\"id\":7x,",
            b"{\"id\":\"\xff\",",
            b"{\"id\":",
            b"[{\"id\":1},",
        ] {
            assert_eq!(recovered(line), Value::Null, "{:?}", String::from_utf8_lossy(line));
        }
    }
}
