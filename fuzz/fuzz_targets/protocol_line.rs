//! Any bytes as one socket request line (`protocol::parse`), as the daemon reads them.
//!
//! Must hold:
//! - `parse` never panics;
//! - the `id` it returns is the line's own `id` when the line is a JSON object that has one, and
//!   `null` when the line is JSON but not an object; when the line is not JSON it is whatever
//!   `id` could be recovered before the damage (issue 10 item 1), or `null`;
//! - the error reply built from it (`Reply::error`) is exactly one line of JSON carrying that id,
//!   so every reply can reach its request;
//! - a parsed request agrees with the line: its op is the line's `op`, and an `auth` read by the
//!   fast path has exactly the fields the general path would read;
//! - the host options of a parsed `hello` load or are refused (`HostSettings::from_options`),
//!   never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;
use token_sidecar::config::HostSettings;
use token_sidecar::protocol::{ErrorCode, Reply, Request, parse};

/// Finding 3 in docs/FUZZING.md: serde_json (without its `float_roundtrip` or
/// `arbitrary_precision` feature) may read a long number one ulp off, so a float `id` (say 65
/// digits) is echoed as a slightly different number. Set to true to hold replies to exact ids.
const STRICT_NUMERIC_IDS: bool = false;

/// Equal, except that (finding 3) a float may come back a few ulps off.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if !STRICT_NUMERIC_IDS && (x.is_f64() || y.is_f64()) => {
            let (x, y) = (x.as_f64().unwrap_or_default(), y.as_f64().unwrap_or_default());
            (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[derive(Deserialize)]
struct Fields {
    op: String,
    host: Option<String>,
    token: Option<String>,
    prefix: Option<String>,
    room: Option<String>,
    user_agent: Option<String>,
    public_key: Option<String>,
    context_required: Option<bool>,
}

fuzz_target!(|data: &[u8]| {
    let (id, result) = parse(data);
    // The line as JSON. A line with bytes that are not UTF-8 inside a string is not JSON, but the
    // fast path skips fields it does not read without checking their bytes, so `auth` and `ping`
    // lines with such a field still parse (finding 1 in docs/FUZZING.md): compare those with the
    // line read with the bad bytes replaced.
    let json: Option<Value> = serde_json::from_slice(data)
        .ok()
        .or_else(|| serde_json::from_str(&String::from_utf8_lossy(data)).ok());
    let object = json.as_ref().and_then(Value::as_object);

    match (&json, object) {
        (Some(_), Some(object)) => {
            let own = object.get("id").unwrap_or(&Value::Null);
            let strict = std::str::from_utf8(data).is_ok();
            assert!(!strict || &id == own, "parse returned id {id}, the line has {own}");
        }
        (Some(_), None) => assert!(id.is_null(), "an id from a line that is not an object: {id}"),
        // Not JSON: the id is recovered when the damage comes after it (issue 10 item 1), else
        // null; either way the reply below must carry it.
        (None, _) => {}
    }

    // The reply the daemon writes for this line: one line of JSON, with the same id.
    let reply = match &result {
        Ok(_) => Reply::new(id.clone(), true),
        Err(bad) => Reply::error(id.clone(), ErrorCode::BadRequest, bad.to_string()),
    };
    let line = reply.to_line();
    assert_eq!(line.last(), Some(&b'\n'), "a reply must end with a newline");
    assert_eq!(
        line.iter().filter(|&&b| b == b'\n').count(),
        1,
        "a reply must be one line"
    );
    let back: Value = serde_json::from_slice(&line).expect("a reply is JSON");
    let echoed = back.get("id").expect("a reply has an id");
    assert!(same(echoed, &id), "the reply's id {echoed} is not the request's {id}");

    let Ok(request) = result else { return };
    // The fields a request line has, read by serde's derive (unknown fields skipped, as the fast
    // path skips them): the reference when the line is JSON serde_json will not make a `Value`
    // of (a number out of range, bytes that are not UTF-8 in a field nobody reads).
    let fields: Option<Fields> = serde_json::from_slice(data).ok();
    let op = match object {
        Some(object) => object.get("op").and_then(Value::as_str).map(str::to_owned),
        None => {
            assert!(
                matches!(request, Request::Auth(_) | Request::Ping),
                "a {} request from a line that is not a JSON object",
                request.op().name()
            );
            fields.as_ref().map(|f| f.op.clone())
        }
    };
    assert_eq!(
        op.as_deref(),
        Some(request.op().name()),
        "the request's op is not the line's"
    );
    match &request {
        Request::Auth(auth) => {
            let field = |name: &str| -> Option<String> {
                match object {
                    Some(object) => match object.get(name) {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(other) => panic!("auth accepted a non-string {name}: {other}"),
                    },
                    None => {
                        let f = fields.as_ref().expect("an auth line serde cannot read");
                        match name {
                            "host" => f.host.clone(),
                            "token" => f.token.clone(),
                            "prefix" => f.prefix.clone(),
                            "room" => f.room.clone(),
                            "user_agent" => f.user_agent.clone(),
                            _ => f.public_key.clone(),
                        }
                    }
                }
            };
            assert_eq!(Some(auth.host.to_string()), field("host"));
            assert_eq!(auth.token.as_deref(), field("token").as_deref());
            assert_eq!(auth.prefix.as_deref(), field("prefix").as_deref());
            assert_eq!(auth.room.as_deref(), field("room").as_deref());
            assert_eq!(auth.user_agent.as_deref(), field("user_agent").as_deref());
            assert_eq!(auth.public_key.as_deref(), field("public_key").as_deref());
            let context_required = match object.map(|o| o.get("context_required")) {
                Some(None) => false,
                Some(Some(Value::Bool(b))) => *b,
                Some(Some(other)) => panic!("auth accepted a non-boolean context_required: {other}"),
                None => fields.as_ref().and_then(|f| f.context_required).unwrap_or(false),
            };
            assert_eq!(auth.context_required, context_required);
        }
        Request::Hello(hello) => {
            for (host, options) in &hello.hosts {
                for strict in [false, true] {
                    if let Ok(settings) = HostSettings::from_options(host, options, strict) {
                        let _ = settings.warnings();
                        let _ = settings.muc_domain();
                        let _ = settings.room_policy();
                    }
                }
            }
        }
        _ => {}
    }
});
