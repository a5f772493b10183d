//! Revocation over the daemon's real socket and HTTP listener: `POST /v1/revoke` with a `jti` or
//! a user, and what it shuts out from then on: logins with the token (remembered or not) and the
//! room joins of its sessions (also those judged from the session's fields), a revoked user's
//! logins and new access tokens (also when `sub` names the user), introspection of revoked access
//! tokens (`"reason":"revoked"`). The endpoint's authentication is introspection's; bad input gets a
//! 400 that says what is wrong; a revocation ends at its `until`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::daemon::{Conn, HttpDaemon, WAIT, free_port};
use common::keys::hs_jwt;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use token_sidecar::clock::unix_now as now;

const HOST: &str = "meet.example.com";
const MUC: &str = "conference.meet.example.com";
const ROOM: &str = "room1@conference.meet.example.com";
const SECRET: &str = "introspection-secret-0123456789";
const APP_SECRET: &str = "s3cret";
const KEY: &str = "0123456789abcdef0123456789abcdef";

/// A daemon with a token host, a short-lived-token issuer for the host and the HTTP listener; the
/// muc door's issuer comes with [`hello`].
fn start() -> HttpDaemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = token_sidecar::keys::generate(Algorithm::ES256).expect("key");
    let key_path = dir.path().join("es.pem");
    std::fs::write(&key_path, key.private_pem()).expect("write key");
    let rest = format!(
        "[hosts.\"{HOST}\"]\napp_id = \"myapp\"\napp_secret = \"{APP_SECRET}\"\nmuc_mapper_domain_base = \"{HOST}\"\n\
         [issuers.\"{HOST}\"]\nmodule = \"short_lived_token\"\nmain_muc = \"{MUC}\"\n\
         short_lived_token = {{ issuer = \"jitsi\", accepted_audiences = [\"file-sharing\"], key_path = {:?}, key_id = \"es1\", ttl_seconds = 30, rate_limit = 0 }}\n",
        key_path.display().to_string()
    );
    HttpDaemon::start(dir, SECRET, "", &rest)
}

fn hello(c: &mut Conn) {
    let reply = c.call(json!({"id": 1, "op": "hello", "version": 1, "instance": "test",
        "issuers": {MUC: {"module": "access_token", "options": {"access_token_key": KEY, "access_token_rate_limit": 0}}}}));
    assert_eq!(reply["issuers_accepted"], json!([MUC]), "{reply}");
}

/// A login token for room1 with `extra` claims.
fn token(extra: Value) -> String {
    let mut claims = json!({"iss": "myapp", "aud": "jitsi", "sub": HOST, "room": "room1", "exp": now() + 3600});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    hs_jwt(Algorithm::HS256, APP_SECRET.as_bytes(), None, &claims)
}

fn login(c: &mut Conn, id: u64, token: &str) -> Value {
    c.call(json!({"id": id, "op": "auth", "host": HOST, "token": token}))
}

/// Asserts a login refused as revoked, with the detail naming `what` ("jti", "user").
fn assert_revoked(reply: &Value, what: &str) {
    assert_eq!(
        (reply["ok"].clone(), reply["condition"].clone(), reply["text"].clone()),
        (json!(false), json!("not-allowed"), json!("token revoked")),
        "{reply}"
    );
    let detail = reply["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("token's {what}")), "{reply}");
}

/// `POST path` with `auth` as the bearer secret: the status, the headers and the body as JSON.
fn post(d: &HttpDaemon, path: &str, auth: Option<&str>, body: &str) -> (u16, String, Value) {
    let auth = auth
        .map(|a| format!("Authorization: Bearer {a}\r\n"))
        .unwrap_or_default();
    let (status, head, body) = common::daemon::http(&d.http, "POST", path, &auth, body);
    (status, head, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn revoke(d: &HttpDaemon, body: &str) -> Value {
    let (status, _, reply) = post(d, "/v1/revoke", Some(SECRET), body);
    assert_eq!(status, 200, "{body}: {reply}");
    reply
}

fn introspect(d: &HttpDaemon, token: &str) -> Value {
    let (status, _, reply) = post(d, "/v1/introspect", Some(SECRET), &format!("token={token}"));
    assert_eq!(status, 200, "{reply}");
    reply
}

/// `jid` joins room1 as `nick` (reported as the shim would).
fn join(c: &mut Conn, id: u64, jid: &str, nick: &str) {
    let reply = c.call(
        json!({"id": id, "op": "occupant", "event": "join", "room": ROOM, "jid": jid,
        "nick": format!("{ROOM}/{nick}")}),
    );
    assert_eq!(reply["ok"], true, "{reply}");
}

/// The muc door's request of occupant `jid` whose login's `context.user` is `user`.
fn ask_muc(c: &mut Conn, id: u64, jid: &str, nick: &str, user: Value) -> Value {
    ask_muc_with(c, id, jid, nick, json!({"jitsi_meet_context_user": user}))
}

/// The muc door's request of occupant `jid` whose session has the fields `session`.
fn ask_muc_with(c: &mut Conn, id: u64, jid: &str, nick: &str, session: Value) -> Value {
    let stanza = format!(
        "<iq type='get' id='at{id}' from='{jid}' to='{ROOM}/focus'><query xmlns='http://jabber.org/protocol/muc#access-token'/></iq>"
    );
    c.call(
        json!({"id": id, "op": "access_token", "issuer": MUC, "door": "muc", "stanza": stanza,
        "room": ROOM, "room_exists": true,
        "occupant": {"nick": format!("{ROOM}/{nick}"), "role": "participant", "affiliation": "none"},
        "session": session}),
    )
}

/// The extdisco door's request of occupant `jid` whose login's `context.user` is `user`.
fn ask_extdisco(c: &mut Conn, id: u64, jid: &str, nick: &str, user: Value) -> Value {
    let stanza = format!(
        "<iq type='get' id='cr{id}' from='{jid}' to='{HOST}'><credentials xmlns='urn:xmpp:extdisco:2'>\
         <service type='short-lived-token' host='file-sharing'/></credentials></iq>"
    );
    c.call(
        json!({"id": id, "op": "access_token", "issuer": HOST, "door": "extdisco", "stanza": stanza,
        "room": ROOM, "room_exists": true, "occupant": {"nick": format!("{ROOM}/{nick}")},
        "session": {"jitsi_meet_context_user": user, "jitsi_web_query_room": "room1"}}),
    )
}

/// The token in an access-token reply (either door).
fn access_token(reply: &Value) -> String {
    let stanza = reply["stanza"].as_str().unwrap_or_else(|| panic!("no stanza: {reply}"));
    let attr = if stanza.contains("<token ") { "data" } else { "password" };
    let start = stanza
        .find(&format!("{attr}='"))
        .unwrap_or_else(|| panic!("no token: {stanza}"))
        + attr.len()
        + 2;
    stanza[start..].split('\'').next().expect("a quoted token").to_owned()
}

fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

/// The value of one sample of `GET /metrics`, written as the text shows it.
fn metric(d: &HttpDaemon, series: &str) -> f64 {
    let (status, _, text) = common::daemon::http(&d.http, "GET", "/metrics", "", "");
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn a_revoked_jti_refuses_the_tokens_next_login_also_when_remembered() {
    let d = start();
    let mut c = Conn::open(&d.socket);
    let leaked = token(json!({"jti": "leaked-1"}));
    let other = token(json!({"jti": "other-1"}));
    // Both log in; the daemon remembers the logins.
    let first = login(&mut c, 1, &leaked);
    assert_eq!(first["ok"], true, "{first}");
    let sha256 = first["token_sha256"].as_str().expect("token_sha256").to_owned();
    assert_eq!(login(&mut c, 2, &other)["ok"], true);
    assert_eq!(login(&mut c, 3, &leaked)["ok"], true, "remembered");

    let until = now() + 600;
    let reply = revoke(&d, &format!("jti=leaked-1&until={until}"));
    assert_eq!(
        reply,
        json!({"revoked": {"jti": "leaked-1"}, "until": until, "shared": false})
    );

    // The remembered login no longer answers; another token with the same jti is refused too.
    assert_revoked(&login(&mut c, 4, &leaked), "jti");
    let same_jti = token(json!({"jti": "leaked-1", "room": "*"}));
    assert_revoked(&login(&mut c, 5, &same_jti), "jti");
    assert_eq!(login(&mut c, 6, &other)["ok"], true, "another token is fine");
    // A session that logged in with it before joins no more rooms.
    let join = c.call(
        json!({"id": 7, "op": "room", "host": HOST, "room": ROOM, "token_sha256": sha256,
        "room_exists": true}),
    );
    assert_eq!(
        (join["ok"].clone(), join["text"].clone(), join["jitmeet"].clone()),
        (json!(false), json!("token revoked"), Value::Null),
        "{join}"
    );
    // Revoking again is fine (the later time is kept); the default `until` is 24 h ahead.
    let again = revoke(&d, "jti=leaked-1");
    let default_until = again["until"].as_i64().expect("until");
    assert!((now() + 86_400 - default_until).abs() <= 5, "{again}");

    assert_eq!(
        metric(&d, r#"token_sidecar_logins_total{result="refused",reason="revoked"}"#),
        2.0
    );
    assert_eq!(
        metric(
            &d,
            r#"token_sidecar_room_checks_total{result="refused",reason="revoked"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&d, r#"token_sidecar_revocations_total{result="local",kind="jti"}"#),
        2.0
    );
    assert_eq!(
        metric(&d, r#"token_sidecar_revocations_total{result="shared",kind="jti"}"#),
        0.0,
        "the in-memory list is this daemon's only"
    );
}

#[test]
fn a_revoked_user_logs_in_no_more_and_gets_no_new_access_token() {
    let d = start();
    let mut c = Conn::open(&d.socket);
    hello(&mut c);
    let (alice, bob) = ("a1@meet.example.com/web", "b1@meet.example.com/web");
    join(&mut c, 2, alice, "alice");
    join(&mut c, 3, bob, "bob");
    let alice_user = json!({"id": "alice@example.com", "name": "Alice"});
    let bob_user = json!({"id": "bob@example.com"});
    let alice_muc = access_token(&ask_muc(&mut c, 4, alice, "alice", alice_user.clone()));
    let alice_ext = access_token(&ask_extdisco(&mut c, 5, alice, "alice", alice_user.clone()));
    let bob_muc = access_token(&ask_muc(&mut c, 6, bob, "bob", bob_user.clone()));
    assert_eq!(claims(&alice_muc)["occupant"]["user_id"], "alice@example.com");
    assert_eq!(claims(&alice_ext)["occupant"]["user_id"], "alice@example.com");
    for t in [&alice_muc, &alice_ext, &bob_muc] {
        assert_eq!(introspect(&d, t)["active"], true);
    }
    let alice_login = token(json!({"context": {"user": alice_user}}));
    assert_eq!(login(&mut c, 7, &alice_login)["ok"], true);

    let reply = revoke(&d, "user=alice%40example.com");
    assert_eq!(reply["revoked"], json!({"user": "alice@example.com"}), "{reply}");

    // Her tokens are inactive, and say why; bob's stay active.
    for t in [&alice_muc, &alice_ext] {
        assert_eq!(introspect(&d, t), json!({"active": false, "reason": "revoked"}));
    }
    assert_eq!(introspect(&d, &bob_muc)["active"], true);
    // She gets no new one, at either door: the error a non-occupant gets.
    let refused = ask_muc(&mut c, 8, alice, "alice", alice_user.clone());
    assert_eq!(
        (
            refused["ok"].clone(),
            refused["condition"].clone(),
            refused["text"].clone()
        ),
        (
            json!(false),
            json!("forbidden"),
            json!("access tokens are revoked for this user")
        ),
        "{refused}"
    );
    assert!(
        refused["stanza"]
            .as_str()
            .is_some_and(|s| s.contains("type='error'") && !s.contains("<token")),
        "{refused}"
    );
    let refused = ask_extdisco(&mut c, 9, alice, "alice", alice_user.clone());
    assert_eq!(refused["condition"], "not-allowed", "{refused}");
    assert_eq!(ask_muc(&mut c, 10, bob, "bob", bob_user)["ok"], true, "bob is fine");
    // Her login is refused, remembered or not.
    assert_revoked(&login(&mut c, 11, &alice_login), "user");
    let firebase = token(json!({"user_id": "alice@example.com"}));
    assert_revoked(&login(&mut c, 12, &firebase), "user");

    // Without context.user.id, the user is `sub`.
    let carol = token(json!({"sub": "carol.example.com", "jti": "c-1"}));
    let dave = token(json!({"sub": "carol.example.com", "context": {"user": {"id": "dave"}}}));
    revoke(&d, "user=carol.example.com");
    assert_revoked(&login(&mut c, 13, &carol), "user");
    assert_eq!(
        login(&mut c, 14, &dave)["ok"],
        true,
        "dave's user is his context.user.id"
    );

    for (series, value) in [
        (
            r#"token_sidecar_access_tokens_total{door="muc",result="refused",reason="revoked"}"#,
            1.0,
        ),
        (
            r#"token_sidecar_access_tokens_total{door="extdisco",result="refused",reason="revoked"}"#,
            1.0,
        ),
        (
            r#"token_sidecar_introspections_total{result="inactive",reason="revoked"}"#,
            2.0,
        ),
        (r#"token_sidecar_logins_total{result="refused",reason="revoked"}"#, 3.0),
        (r#"token_sidecar_revocations_total{result="local",kind="user"}"#, 2.0),
    ] {
        assert_eq!(metric(&d, series), value, "{series}");
    }
}

/// A room join the daemon judges from the session's fields (it was restarted, or forgot the login):
/// those fields name the user (`jitsi_meet_context_user`'s id, else `jitsi_meet_domain`, the
/// token's `sub`), so a revoked user is refused there too; and a user named by `sub` alone gets no
/// new access token.
#[test]
fn a_revoked_user_is_refused_at_joins_judged_from_session_fields_and_by_sub_at_both_doors() {
    let d = start();
    let mut c = Conn::open(&d.socket);
    hello(&mut c);
    // Sessions with `sub` tenant-x join the tenant's room (domain verification is on).
    let room = |c: &mut Conn, id: u64, session: &Value| {
        let target = if session["jitsi_meet_domain"] == "tenant-x" {
            "[tenant-x]room1@conference.meet.example.com"
        } else {
            ROOM
        };
        c.call(
            json!({"id": id, "op": "room", "host": HOST, "room": target, "room_exists": true,
            "session": session}),
        )
    };
    let erin = json!({"jitsi_meet_room": "room1", "jitsi_meet_domain": HOST,
        "jitsi_meet_context_user": {"id": "erin"}});
    let by_sub = json!({"jitsi_meet_room": "room1", "jitsi_meet_domain": "tenant-x"});
    let frank = json!({"jitsi_meet_room": "room1", "jitsi_meet_domain": "tenant-x",
        "jitsi_meet_context_user": {"id": "frank"}});
    for (id, session) in [(2, &erin), (3, &by_sub), (4, &frank)] {
        let reply = room(&mut c, id, session);
        assert_eq!(reply["ok"], true, "before: {session}: {reply}");
    }
    let subject = "s1@meet.example.com/web";
    join(&mut c, 5, subject, "subject");
    let ask = |c: &mut Conn, id: u64, session: Value| ask_muc_with(c, id, subject, "subject", session);
    let before = ask(&mut c, 6, json!({"jitsi_meet_domain": "tenant-x"}));
    let before = access_token(&before);
    assert_eq!(
        claims(&before)["occupant"]["user_id"],
        "tenant-x",
        "the user is the login's sub"
    );

    revoke(&d, "user=erin");
    revoke(&d, "user=tenant-x");
    for (id, session) in [(7, &erin), (8, &by_sub)] {
        let reply = room(&mut c, id, session);
        assert_eq!(
            (reply["ok"].clone(), reply["text"].clone(), reply["jitmeet"].clone()),
            (json!(false), json!("token revoked"), Value::Null),
            "{session}: {reply}"
        );
        assert!(
            reply["detail"].as_str().is_some_and(|d| d.contains("token's user")),
            "{reply}"
        );
    }
    assert_eq!(
        room(&mut c, 9, &frank)["ok"],
        true,
        "frank's user is his context.user.id, not his token's sub"
    );
    assert_eq!(
        room(
            &mut c,
            10,
            &json!({"jitsi_meet_room": "room1", "jitsi_meet_domain": HOST})
        )["ok"],
        true,
        "a session that names no user"
    );
    let refused = ask(&mut c, 11, json!({"jitsi_meet_domain": "tenant-x"}));
    assert_eq!(
        (refused["ok"].clone(), refused["text"].clone()),
        (json!(false), json!("access tokens are revoked for this user")),
        "{refused}"
    );
    assert_eq!(introspect(&d, &before), json!({"active": false, "reason": "revoked"}));
    assert_eq!(
        metric(
            &d,
            r#"token_sidecar_room_checks_total{result="refused",reason="revoked"}"#
        ),
        2.0
    );
}

#[test]
fn a_revoked_access_token_jti_introspects_inactive() {
    let d = start();
    let mut c = Conn::open(&d.socket);
    hello(&mut c);
    let alice = "a1@meet.example.com/web";
    join(&mut c, 2, alice, "alice");
    let first = access_token(&ask_muc(&mut c, 3, alice, "alice", Value::Null));
    let second = access_token(&ask_muc(&mut c, 4, alice, "alice", Value::Null));
    assert!(
        claims(&first)["occupant"].get("user_id").is_none(),
        "no user without context.user"
    );
    let jti = claims(&first)["jti"].as_str().expect("jti").to_owned();
    revoke(&d, &format!("jti={jti}"));
    assert_eq!(introspect(&d, &first), json!({"active": false, "reason": "revoked"}));
    assert_eq!(introspect(&d, &second)["active"], true, "the holder's other token");
    // A forged token with that jti says nothing about why.
    let mut forged = first.clone();
    forged.pop();
    forged.push(if first.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(introspect(&d, &forged), json!({"active": false}));
    // Once the holder leaves, the other token is inactive without a reason.
    let reply = c.call(json!({"id": 5, "op": "occupant", "event": "leave", "room": ROOM, "jid": alice}));
    assert_eq!(reply["ok"], true);
    assert_eq!(introspect(&d, &second), json!({"active": false}));
}

#[test]
fn revocation_is_authenticated_like_introspection() {
    let d = start();
    for auth in [None, Some("wrong-secret-0123456789")] {
        let (status, head, reply) = post(&d, "/v1/revoke", auth, "jti=x");
        assert_eq!(status, 401, "{reply}");
        assert_eq!(
            reply,
            json!({"error": "invalid_client",
                   "error_description": "revocation needs Authorization: Bearer <introspect_secret>"})
        );
        assert!(head.to_ascii_lowercase().contains("www-authenticate: bearer"), "{head}");
    }
    assert_eq!(
        metric(&d, r#"token_sidecar_revocations_total{result="unauthorized"}"#),
        2.0
    );
    // Nothing was revoked.
    let mut c = Conn::open(&d.socket);
    assert_eq!(login(&mut c, 1, &token(json!({"jti": "x"})))["ok"], true);

    // Without a secret: refused, unless introspect_without_secret (loopback only) opens both.
    let closed = Plain::start("");
    let (status, _, reply) = closed.post("/v1/revoke", "jti=x");
    assert_eq!(
        (status, reply["error_description"].clone()),
        (403, json!("revocation is disabled: set [http] introspect_secret"))
    );
    let open = Plain::start("introspect_without_secret = true");
    let (status, _, reply) = open.post("/v1/revoke", "jti=x");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["revoked"], json!({"jti": "x"}));
}

#[test]
fn bad_input_is_refused_with_a_text_that_says_what_is_wrong() {
    let d = start();
    let t = now();
    let long = "x".repeat(1025);
    let cases = [
        (String::new(), "give exactly one of jti=<token id> or user=<user id>"),
        (
            "jti=a&user=b".into(),
            "give exactly one of jti=<token id> or user=<user id>",
        ),
        ("jti=a&jti=b".into(), "jti is given twice"),
        ("jti=".into(), "jti is empty"),
        ("user=a%0Ab".into(), "user holds a control character"),
        (format!("jti={long}"), "jti is longer than 1024 bytes"),
        (
            "token=abc".into(),
            "unknown field \"token\": expected jti or user, and optionally until",
        ),
        (
            "jti=a&until=tomorrow".into(),
            "until must be whole seconds since 1970 (digits only)",
        ),
        (format!("jti=a&until={}", t - 10), "is not in the future"),
        (
            format!("jti=a&until={}", t + 367 * 86_400),
            "is more than 366 days ahead",
        ),
    ];
    for (body, text) in &cases {
        let (status, _, reply) = post(&d, "/v1/revoke", Some(SECRET), body);
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["error"], "invalid_request", "{body}: {reply}");
        let description = reply["error_description"].as_str().unwrap_or_default();
        assert!(description.contains(text), "{body}: {reply}");
    }
    assert_eq!(
        metric(&d, r#"token_sidecar_revocations_total{result="bad_request"}"#),
        cases.len() as f64
    );
    // GET is not a revocation.
    let (status, _, _) = common::daemon::http(&d.http, "GET", "/v1/revoke", "", "");
    assert_eq!(status, 405);
    // Nothing was revoked: an `until` in the past revokes nothing.
    let mut c = Conn::open(&d.socket);
    assert_eq!(login(&mut c, 1, &token(json!({"jti": "a"})))["ok"], true);
}

#[test]
fn a_revocation_ends_at_its_until() {
    let d = start();
    let mut c = Conn::open(&d.socket);
    let t = token(json!({"jti": "short-1", "context": {"user": {"id": "erin"}}}));
    assert_eq!(login(&mut c, 1, &t)["ok"], true);
    let until = now() + 2;
    revoke(&d, &format!("jti=short-1&until={until}"));
    assert_revoked(&login(&mut c, 2, &t), "jti");
    // In force until, not at, its time.
    let deadline = Instant::now() + WAIT;
    while now() < until {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(login(&mut c, 3, &t)["ok"], true, "the revocation has ended");
}

/// A daemon whose `[http]` has no secret (what [`HttpDaemon`] cannot start), plus `http` lines.
struct Plain {
    child: Child,
    http: String,
    _dir: tempfile::TempDir,
}

impl Drop for Plain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Plain {
    fn start(http: &str) -> Plain {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("c.toml");
        let text = format!(
            "[server]\nsocket = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\n{http}\n",
            dir.path().join("ts.sock").display().to_string()
        );
        std::fs::write(&config, text).expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start daemon");
        // Listening once it says so.
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "daemon did not start");
            match lines.next() {
                Some(Ok(line)) if line.contains("HTTP listening") => break,
                Some(_) => {}
                None => panic!("daemon exited"),
            }
        }
        thread::spawn(move || lines.for_each(drop));
        Plain {
            child,
            http: format!("127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    fn post(&self, path: &str, body: &str) -> (u16, String, Value) {
        let (status, head, body) = common::daemon::http(&self.http, "POST", path, "", body);
        (status, head, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}
