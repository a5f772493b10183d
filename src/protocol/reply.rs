//! Replies as the daemon writes them: a JSON object per line that always carries the request's
//! `id`. Keys are written in sorted order (a `serde_json::Map`), and the replies prepared in
//! advance ([`Prepared`]) keep to the same order, so a reply's bytes do not depend on how it was
//! built.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

/// Error codes of error replies (`"error"`): the request could not be answered, as opposed to a
/// refusal (`"condition"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not a request, or fields missing or mistyped.
    BadRequest,
    /// A line over `max_line_bytes`.
    LineTooLong,
    /// `hello` with another protocol version.
    UnsupportedVersion,
    /// A host neither registered by `hello` nor in the TOML file.
    UnknownHost,
    /// A host whose settings from `hello` were refused: it answers no login or room check until
    /// a `hello` brings valid settings.
    SettingsRefused,
    /// A `token_sha256` the daemon does not remember.
    UnknownToken,
    /// The occupancy store could not be reached.
    StoreUnavailable,
}

impl ErrorCode {
    /// The code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::LineTooLong => "line-too-long",
            ErrorCode::UnsupportedVersion => "unsupported-version",
            ErrorCode::UnknownHost => "unknown-host",
            ErrorCode::SettingsRefused => "settings-refused",
            ErrorCode::UnknownToken => "unknown-token",
            ErrorCode::StoreUnavailable => "store-unavailable",
        }
    }
}

/// A reply whose text was built in advance, with the request's `id` written in when it is sent.
pub trait Prepared: Send + Sync + fmt::Debug {
    /// Appends the reply for request `id`, newline included, to `out`.
    fn write_line(&self, id: &Value, out: &mut Vec<u8>);
}

/// What kind of reply this is, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `ok: true`.
    Ok,
    /// A refusal (`condition` and `text`).
    Refused,
    /// An error (`error` and `text`).
    Error,
}

/// A refusal, as replies and `token-sidecar verify` write it: the condition and text the client
/// sees, the jitmeet element of a room refusal, and details for logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal<'a> {
    /// The SASL or stanza error condition (`not-allowed`).
    pub condition: &'a str,
    /// More words for logs, never shown to clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    /// For a room refusal, the `http://jitsi.org/jitmeet` element's name, or null for none;
    /// absent in a login refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitmeet: Option<Option<&'a str>>,
    /// The text the client sees.
    pub text: Cow<'a, str>,
}

impl<'a> Refusal<'a> {
    /// A refused token: at login, or at a room join whose token does not verify.
    pub fn token(rejection: &'a crate::token::Rejection) -> Refusal<'a> {
        Refusal {
            condition: rejection.reason.condition(),
            detail: rejection.detail.as_deref(),
            jitmeet: None,
            text: Cow::Owned(rejection.reason.to_string()),
        }
    }

    /// A refused room join.
    pub fn room(denial: &crate::room::RoomDenial, detail: &'a str) -> Refusal<'a> {
        Refusal {
            condition: denial.condition(),
            detail: Some(detail),
            jitmeet: Some(denial.jitmeet()),
            text: Cow::Borrowed(denial.text()),
        }
    }

    /// As a room refusal: with `jitmeet` (null when there is none).
    pub fn at_join(mut self) -> Self {
        self.jitmeet.get_or_insert(None);
        self
    }

    /// The refusal's fields as a JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(), // not reached: a struct of strings serialises to an object
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
    /// Written from text prepared in advance.
    Prepared { id: Value, reply: Arc<dyn Prepared> },
}

impl Reply {
    /// `{"id": id, "ok": ok}`, to add fields to with [`Reply::with`].
    pub fn new(id: Value, ok: bool) -> Reply {
        let mut map = Map::new();
        map.insert("id".into(), id);
        map.insert("ok".into(), Value::Bool(ok));
        Reply(Body::Map(map))
    }

    /// A reply prepared in advance (an accepted login's).
    pub fn prepared(id: Value, reply: Arc<dyn Prepared>) -> Reply {
        Reply(Body::Prepared { id, reply })
    }

    /// An error reply: `ok: false` with `error` and `text`.
    pub fn error(id: Value, code: ErrorCode, text: impl Into<String>) -> Reply {
        Reply::new(id, false)
            .with("error", code.as_str())
            .with("text", text.into())
    }

    /// The error reply for a host neither `hello` nor the TOML file registered.
    pub fn unknown_host(id: Value, host: &str) -> Reply {
        Reply::error(
            id,
            ErrorCode::UnknownHost,
            format!("host {host:?} is not registered: send it in `hello` or add [hosts.{host:?}] to the TOML file"),
        )
    }

    /// A refusal: `ok: false` with the refusal's fields.
    pub fn refused(id: Value, refusal: &Refusal<'_>) -> Reply {
        let mut map = refusal.to_map();
        map.insert("id".into(), id);
        map.insert("ok".into(), Value::Bool(false));
        Reply(Body::Map(map))
    }

    /// Adds a field.
    pub fn with(self, key: &str, value: impl Into<Value>) -> Reply {
        let mut map = self.into_map();
        map.insert(key.to_owned(), value.into());
        Reply(Body::Map(map))
    }

    fn into_map(self) -> Map<String, Value> {
        match self.0 {
            Body::Map(map) => map,
            Body::Prepared { id, reply } => {
                let mut line = Vec::new();
                reply.write_line(&id, &mut line);
                // Not reached: a prepared reply is a JSON object.
                serde_json::from_slice(&line).unwrap_or_default()
            }
        }
    }

    /// Whether this is a success, a refusal or an error.
    pub fn outcome(&self) -> Outcome {
        match &self.0 {
            Body::Prepared { .. } => Outcome::Ok,
            Body::Map(map) if map.get("ok") == Some(&Value::Bool(true)) => Outcome::Ok,
            Body::Map(map) if map.contains_key("error") => Outcome::Error,
            Body::Map(_) => Outcome::Refused,
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
            Body::Prepared { id, reply } => {
                reply.write_line(id, out);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_one_line() {
        let line = Reply::error(Value::from(9), ErrorCode::BadRequest, "x").to_line();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"id": 9, "ok": false, "error": "bad-request", "text": "x"})
        );
        assert_eq!(
            Reply::error(Value::Null, ErrorCode::BadRequest, "x").outcome(),
            Outcome::Error
        );
        assert_eq!(Reply::new(Value::Null, true).outcome(), Outcome::Ok);
    }

    #[test]
    fn refusals_at_login_and_at_join() {
        let rejection = crate::token::Rejection::with(crate::token::Reason::InvalidSignature, "d");
        let login = Reply::refused(Value::from(1), &Refusal::token(&rejection));
        assert_eq!(
            String::from_utf8(login.to_line()).unwrap(),
            "{\"condition\":\"not-allowed\",\"detail\":\"d\",\"id\":1,\"ok\":false,\"text\":\"Invalid signature\"}\n"
        );
        assert_eq!(login.outcome(), Outcome::Refused);
        let join = Reply::refused(Value::from(2), &Refusal::token(&rejection).at_join());
        assert!(String::from_utf8(join.to_line()).unwrap().contains("\"jitmeet\":null"));
    }
}
