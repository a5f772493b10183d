//! Participant access tokens over the daemon's real socket and HTTP listener: the `access_token`,
//! `occupant` and `occupants` ops, issuers in `hello` and in the TOML file, the JWKS and RFC 7662
//! introspection. The Prosody side is tested end to end in tests/e2e/run.mjs.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

mod common;

use base64::Engine;
use common::daemon::{Conn, HttpDaemon};
use serde_json::{Map, Value, json};

const MUC: &str = "conference.meet.example.com";
const ROOM: &str = "room1@conference.meet.example.com";
const USER: &str = "u1@meet.example.com/res1";
const SECRET: &str = "introspection-secret-0123456789";
const KEY: &str = "0123456789abcdef0123456789abcdef";

type Daemon = HttpDaemon;

/// Starts `serve` with an `[http]` listener, a short-lived-token issuer for meet.example.com (an
/// ES256 key written beside the config), and `body`.
fn start(body: &str) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = token_sidecar::keys::generate(jsonwebtoken::Algorithm::ES256).expect("key");
    let key_path = dir.path().join("es.pem");
    std::fs::write(&key_path, key.private_pem()).expect("write key");
    let issuer = format!(
        "[issuers.\"meet.example.com\"]\nmodule = \"short_lived_token\"\nmain_muc = \"{MUC}\"\n\
         short_lived_token = {{ issuer = \"jitsi\", accepted_audiences = [\"file-sharing\"], key_path = {:?}, key_id = \"es1\", ttl_seconds = 30 }}\n{body}",
        key_path.display().to_string()
    );
    HttpDaemon::start(dir, SECRET, "", &issuer)
}

/// A POST or GET over HTTP/1.1 to the daemon; returns the status and the body as JSON.
fn http(addr: &str, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
    let auth = auth
        .map(|a| format!("Authorization: Bearer {a}\r\n"))
        .unwrap_or_default();
    let (status, _, body) = common::daemon::http(addr, method, path, &auth, body);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn introspect(d: &Daemon, token: &str) -> Value {
    let (status, body) = http(
        &d.http,
        "POST",
        "/v1/introspect",
        Some(SECRET),
        &format!("token={token}"),
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn contrib_iq(to: &str, kind: &str) -> String {
    format!(
        "<iq type='{kind}' id='at1' from='{USER}' to='{to}'><query xmlns='http://jabber.org/protocol/muc#access-token'/></iq>"
    )
}

fn ask(conn: &mut Conn, id: u64, issuer: &str, occupant: bool, exists: bool) -> Value {
    let mut req = json!({"id": id, "op": "access_token", "issuer": issuer, "door": "muc",
        "stanza": contrib_iq(&format!("{ROOM}/focus"), "get"), "room": ROOM, "room_exists": exists});
    if occupant {
        req["occupant"] = json!({"nick": format!("{ROOM}/alice"), "role": "moderator", "affiliation": "owner"});
    }
    conn.call(req)
}

fn attr(stanza: &str, name: &str) -> Option<String> {
    let start = stanza.find(&format!("{name}='"))? + name.len() + 2;
    Some(stanza[start..].split('\'').next()?.to_owned())
}

fn claims(token: &str) -> Map<String, Value> {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

fn hello(conn: &mut Conn, key: &str) -> Value {
    conn.call(json!({"id": 1, "op": "hello", "version": 1, "instance": "test",
        "issuers": {MUC: {"module": "access_token", "options": {"access_token_key": key, "access_token_rate_limit": 0}}}}))
}

#[test]
fn an_occupant_gets_a_token_that_introspects_active_until_they_leave() {
    let d = start("");
    let mut c = Conn::open(&d.socket);
    let reply = hello(&mut c, KEY);
    assert_eq!(reply["issuers_accepted"], json!([MUC]), "{reply}");
    let reply = c.call(
        json!({"id": 9, "op": "occupant", "event": "join", "room": ROOM, "jid": USER,
        "nick": format!("{ROOM}/alice")}),
    );
    assert_eq!(reply["ok"], true, "{reply}");

    let reply = ask(&mut c, 2, MUC, true, true);
    assert_eq!(reply["ok"], true, "{reply}");
    let stanza = reply["stanza"].as_str().expect("a stanza");
    assert!(
        stanza.contains("type='result'") && stanza.contains("<token alg='HS256'"),
        "{stanza}"
    );
    let token = attr(stanza, "data").expect("data");
    let c2 = claims(&token);
    assert_eq!(
        (c2["userJid"].clone(), c2["room"].clone()),
        (json!(USER), json!("room1"))
    );
    assert_eq!(c2["occupant"]["role"], "moderator");
    assert_eq!(introspect(&d, &token)["active"], true);

    // A leave makes it inactive at once; a re-sent occupancy brings the holder back.
    let reply = c.call(json!({"id": 3, "op": "occupant", "event": "leave", "room": ROOM, "jid": USER}));
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(introspect(&d, &token), json!({"active": false}));
    let reply = c.call(json!({"id": 4, "op": "occupants", "muc": MUC,
        "rooms": {ROOM: [{"jid": USER, "nick": format!("{ROOM}/alice")}], "empty@conference.meet.example.com": {}}}));
    assert_eq!(reply["occupants"], 1, "{reply}");
    assert_eq!(introspect(&d, &token)["active"], true);

    // The shim's connection ends: what it reported goes (it re-sends on reconnect).
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while introspect(&d, &token)["active"] == true {
        assert!(Instant::now() < deadline, "still active after the connection closed");
        thread::sleep(Duration::from_millis(20));
    }

    // A token whose signature or times do not hold is inactive; the caller must authenticate.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(introspect(&d, &forged), json!({"active": false}));
    let (status, _) = http(&d.http, "POST", "/v1/introspect", None, &format!("token={token}"));
    assert_eq!(status, 401);
    let (status, _) = http(
        &d.http,
        "POST",
        "/v1/introspect",
        Some("wrong-secret-0123456789"),
        "token=x",
    );
    assert_eq!(status, 401);
    let (status, _) = http(&d.http, "POST", "/v1/introspect", Some(SECRET), "");
    assert_eq!(status, 400);
}

#[test]
fn only_occupants_of_an_existing_room_within_the_rate_get_one() {
    let d = start("");
    let mut c = Conn::open(&d.socket);
    hello(&mut c, KEY);
    let reply = ask(&mut c, 2, MUC, false, true);
    assert_eq!(
        (reply["ok"].clone(), reply["condition"].clone()),
        (json!(false), json!("forbidden"))
    );
    let stanza = reply["stanza"].as_str().expect("an error stanza");
    assert!(
        stanza.contains("type='error'") && stanza.contains("<forbidden "),
        "{stanza}"
    );
    let reply = ask(&mut c, 3, MUC, true, false);
    assert_eq!(reply["condition"], "item-not-found", "{reply}");

    // type='set' and other payloads are not ours.
    let reply = c.call(json!({"id": 4, "op": "access_token", "issuer": MUC, "door": "muc",
        "stanza": contrib_iq(&format!("{ROOM}/focus"), "set"), "room": ROOM, "room_exists": true}));
    assert_eq!(reply["pass"], true, "{reply}");

    // The rate limit.
    let reply = c.call(json!({"id": 5, "op": "hello", "version": 1,
        "issuers": {MUC: {"module": "access_token", "options": {"access_token_key": KEY, "access_token_rate_limit": 2}}}}));
    assert_eq!(reply["issuers_accepted"], json!([MUC]), "{reply}");
    let conditions: Vec<Value> = (10..13)
        .map(|id| ask(&mut c, id, MUC, true, true)["condition"].clone())
        .collect();
    assert_eq!(conditions, [Value::Null, Value::Null, json!("resource-constraint")]);
}

#[test]
fn no_default_key_and_refused_settings_answer_every_request_with_an_error() {
    let d = start("");
    let mut c = Conn::open(&d.socket);
    for (options, names) in [
        (json!({}), "access_token_key"),
        (json!({"access_token_key": "mysecretkey"}), "mysecretkey"),
        (json!({"access_token_key": "too short"}), "at least 32 bytes"),
    ] {
        let reply = c.call(json!({"id": 1, "op": "hello", "version": 1,
            "issuers": {MUC: {"module": "access_token", "options": options}}}));
        let error = reply["issuer_errors"][MUC].as_str().unwrap_or_default();
        assert!(error.contains(names), "{reply}");
        let reply = ask(&mut c, 2, MUC, true, true);
        assert_eq!(reply["condition"], "service-unavailable", "{reply}");
        assert!(reply["detail"].as_str().is_some_and(|d| d.contains(names)), "{reply}");
        assert!(!reply["stanza"].as_str().unwrap_or_default().contains("<token"));
    }
    // An issuer nobody registered.
    let reply = ask(&mut c, 3, "conference.other.example.com", true, true);
    assert_eq!(reply["error"], "bad-request", "{reply}");
}

#[test]
fn short_lived_credentials_verify_with_the_published_jwks() {
    let d = start("");
    let mut c = Conn::open(&d.socket);
    let iq = format!(
        "<iq type='get' id='c1' from='{USER}' to='meet.example.com'><credentials xmlns='urn:xmpp:extdisco:2'>\
         <service type='short-lived-token' host='file-sharing'/><service type='short-lived-token' host='other'/></credentials></iq>"
    );
    let reply = c.call(
        json!({"id": 2, "op": "access_token", "issuer": "meet.example.com", "door": "extdisco",
        "stanza": iq, "room": ROOM, "room_exists": true, "meeting_id": "m-1",
        "occupant": {"nick": format!("{ROOM}/alice")},
        "session": {"jitsi_web_query_room": "room1", "presence_nick": "Alice"}}),
    );
    let stanza = reply["stanza"].as_str().expect("stanza");
    assert_eq!(
        stanza.matches("<service ").count(),
        1,
        "only accepted audiences: {stanza}"
    );
    let token = attr(stanza, "password").expect("password");
    let cl = claims(&token);
    assert_eq!(
        (cl["aud"].clone(), cl["iss"].clone()),
        (json!("file-sharing"), json!("jitsi"))
    );
    assert_eq!(cl["context"]["user"]["name"], "Alice");
    assert_eq!(cl["meeting_id"], "m-1");
    assert_eq!(cl["sub"], "meet.example.com");

    let (status, jwks) = http(&d.http, "GET", "/.well-known/jwks.json", None, "");
    assert_eq!(status, 200);
    assert_eq!(jwks["keys"][0]["kid"], "es1", "{jwks}");
    assert_eq!(jwks["keys"][0]["alg"], "ES256", "{jwks}");
    let verifier = token_sidecar::access::verify::AccessVerifier::from_jwks(&jwks).expect("jwks");
    assert!(verifier.verify(&token, token_sidecar::clock::unix_now()).is_ok());
    // Issuing records nobody: the holder is present once the shim reports the join.
    assert_eq!(introspect(&d, &token)["active"], false);
    c.call(
        json!({"id": 9, "op": "occupant", "event": "join", "room": ROOM, "jid": USER, "nick": format!("{ROOM}/alice")}),
    );
    assert_eq!(introspect(&d, &token)["active"], true);

    // A non-occupant: one refusal, `not-allowed`.
    let reply = c.call(
        json!({"id": 3, "op": "access_token", "issuer": "meet.example.com", "door": "extdisco",
        "stanza": iq, "room": ROOM, "room_exists": true}),
    );
    assert_eq!(reply["condition"], "not-allowed", "{reply}");
    let (status, health) = http(&d.http, "GET", "/healthz", None, "");
    assert_eq!((status, health["status"].clone()), (200, json!("ok")));
}

#[test]
fn a_toml_issuer_without_a_key_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.toml");
    let socket = format!(
        "[server]\nsocket = {:?}\n",
        dir.path().join("s.sock").display().to_string()
    );
    let issuer = format!("[issuers.\"{MUC}\"]\nmodule = \"access_token\"\n");
    for (text, named) in [
        // No key: refused, naming what to set.
        (format!("{socket}{issuer}"), "access_token_key"),
        // A typo is refused too, naming the option.
        (
            format!("{issuer}access_token_key = \"{KEY}\"\naccess_token_expiry = 30\n"),
            "unknown option `access_token_expiry`",
        ),
    ] {
        std::fs::write(&config, text).expect("config");
        let out = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
            .args(["serve", "--check-config", "--config"])
            .arg(&config)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{err}");
    }
}
