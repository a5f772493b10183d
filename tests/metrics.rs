//! `GET /metrics` over the daemon's real socket and HTTP listener: after known traffic (logins
//! accepted and refused for known reasons, room checks, key fetches, access tokens,
//! introspections) every series moved by exactly what was sent, `stats` reports the same counters,
//! and no label value comes from a request: a refused token's kid, room and user, a host, a tenant
//! and a user agent never show. The Prosody side is tested end to end in tests/e2e/run.mjs.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::daemon::{Conn, HttpDaemon, http};
use common::http::{Response, TestServer};
use common::keys::{TestKey, hs_jwt};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use token_sidecar::clock::unix_now as now;
use token_sidecar::room::RoomDenial;
use token_sidecar::token::Reason;

const HOST: &str = "meet.example.com";
const ASAP: &str = "asap.example.com";
const MUC: &str = "conference.meet.example.com";
const ROOM: &str = "room1@conference.meet.example.com";
const USER: &str = "u1@meet.example.com/res1";
const SECRET: &str = "introspection-secret-0123456789";
/// Put in every value a request controls; it must never reach `/metrics`.
const MARK: &str = "Zq7mark";

type Daemon = HttpDaemon;

/// Starts `serve` with an `[http]` listener on a free loopback port (plus `http`, more `[http]`
/// options) and `body`, and waits until both listen.
fn start(http: &str, body: &str) -> Daemon {
    HttpDaemon::start(tempfile::tempdir().expect("tempdir"), SECRET, http, body)
}

fn introspect(d: &Daemon, secret: &str, token: &str) -> (u16, String) {
    let (status, _, body) = http(
        &d.http,
        "POST",
        "/v1/introspect",
        &format!("Authorization: Bearer {secret}\r\n"),
        &format!("token={token}"),
    );
    (status, body)
}

/// Scrapes `/metrics` (the Prometheus text format): every sample by its name and labels as
/// written, and the text.
fn scrape(d: &Daemon) -> (BTreeMap<String, f64>, String) {
    let (status, head, text) = http(&d.http, "GET", "/metrics", "", "");
    assert_eq!(status, 200, "{text}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let value = value.parse().unwrap_or_else(|_| panic!("a number in {line:?}"));
        assert!(samples.insert(series.to_owned(), value).is_none(), "{series} twice");
    }
    (samples, text)
}

/// A key server on 127.0.0.1 (`common::http::TestServer`, on a runtime of its own that the caller
/// keeps): `/asap/<sha256(kid)>.pem` answers `pem` for `kid`, anything else 404.
fn key_server(kid: &str, pem: String) -> (tokio::runtime::Runtime, TestServer) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime.block_on(TestServer::start());
    let hash = token_sidecar::digest::hex(&token_sidecar::digest::sha256(kid.as_bytes()));
    server.set(&format!("/asap/{hash}.pem"), Response::ok(pem));
    (runtime, server)
}

fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({"iss": "myapp", "aud": "jitsi", "sub": sub, "room": "room1", "exp": now() + 3600});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    claims
}

fn hs(extra: Value, secret: &str) -> String {
    hs_jwt(Algorithm::HS256, secret.as_bytes(), None, &claims(HOST, extra))
}

fn hosts_toml(key_server: &str) -> String {
    format!(
        "[hosts.\"{HOST}\"]\napp_id = \"myapp\"\napp_secret = \"s3cret\"\nmuc_mapper_domain_base = \"{HOST}\"\n\
         [hosts.\"{ASAP}\"]\napp_id = \"myapp\"\nasap_key_server = \"{key_server}\"\nmuc_mapper_domain_base = \"{ASAP}\"\n"
    )
}

fn auth(c: &mut Conn, id: u64, host: &str, token: Option<&str>) -> Value {
    let mut request = json!({"id": id, "op": "auth", "host": host, "prefix": format!("{MARK}-tenant"),
        "room": format!("{MARK}-urlroom"), "user_agent": format!("{MARK}-agent")});
    if let Some(token) = token {
        request["token"] = json!(token);
    }
    c.call(request)
}

fn room(c: &mut Conn, id: u64, host: &str, fields: Value) -> Value {
    let mut request = json!({"id": id, "op": "room", "host": host, "prefix": "", "room_exists": true});
    if let (Some(r), Some(f)) = (request.as_object_mut(), fields.as_object()) {
        r.extend(f.clone());
    }
    c.call(request)
}

fn access_iq(to: &str) -> String {
    format!(
        "<iq type='get' id='at1' from='{USER}' to='{to}'><query xmlns='http://jabber.org/protocol/muc#access-token'/></iq>"
    )
}

fn access(c: &mut Conn, id: u64, issuer: &str, room: &str, occupant: bool, exists: bool) -> Value {
    let mut request = json!({"id": id, "op": "access_token", "issuer": issuer, "door": "muc",
        "stanza": access_iq(&format!("{room}/focus")), "room": room, "room_exists": exists});
    if occupant {
        request["occupant"] = json!({"nick": format!("{room}/alice"), "role": "moderator", "affiliation": "owner"});
    }
    c.call(request)
}

/// Every label value `/metrics` may show: fixed names, never a request's.
fn allowed_label_values() -> BTreeSet<String> {
    let fixed = [
        // results
        "accepted",
        "anonymous",
        "refused",
        "error",
        "allowed",
        "issued",
        "passed",
        "active",
        "inactive",
        "unauthorized",
        "bad_request",
        "ok",
        "hit",
        "miss",
        // reasons that are not a token's or a room's
        "unknown_host",
        "settings_refused",
        "unknown_token",
        "not_occupant",
        "no_room",
        "rate_limited",
        "issuer_unavailable",
        "no_iss",
        "unknown_iss",
        "expired",
        "invalid",
        "no_occupant",
        "left",
        "store_error",
        "revoked",
        // revocations: where one is in force, what it names, and a 503
        "shared",
        "local",
        "unavailable",
        "jti",
        "user",
        // shared-store operations (token_sidecar_store_errors_total)
        "publish",
        "refresh",
        "lookup",
        "revoke",
        "read_revocations",
        // ops, doors, key sources, fetch outcomes, key lookups
        "hello",
        "auth",
        "room",
        "ping",
        "stats",
        "access_token",
        "occupant",
        "occupants",
        "muc",
        "extdisco",
        "key_server",
        "key_set",
        "not_found",
        "http_error",
        "timeout",
        "connect_error",
        "bad_key",
        "negative_hit",
        "busy",
        "stale_served",
        env!("CARGO_PKG_VERSION"),
    ];
    let buckets = [
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "7.5", "10", "+Inf",
    ];
    fixed
        .iter()
        .chain(&buckets)
        .chain(Reason::IDS.iter())
        .chain(RoomDenial::IDS.iter())
        .map(|s| (*s).to_owned())
        .collect()
}

/// The label values of a sample written as `name{a="x",b="y"}`.
fn label_values(series: &str) -> Vec<String> {
    let Some((_, labels)) = series.split_once('{') else {
        return Vec::new();
    };
    labels
        .trim_end_matches('}')
        .split("\",")
        .map(|pair| {
            let (_, value) = pair.split_once("=\"").expect("name=\"value\"");
            value.trim_end_matches('"').to_owned()
        })
        .collect()
}

#[test]
fn counts_move_by_exactly_the_traffic_and_no_label_comes_from_a_request() {
    let started = now();
    let rsa = TestKey::rsa();
    let (_runtime, keys) = key_server("good-kid", rsa.public_pem());
    let d = start("", &hosts_toml(&keys.url("/asap")));
    let mut c = Conn::open(&d.socket);

    // Before any traffic, every series is there at 0.
    let (before, _) = scrape(&d);
    assert_eq!(before[r#"token_sidecar_logins_total{result="accepted"}"#], 0.0);
    assert_eq!(
        before[r#"token_sidecar_logins_total{result="refused",reason="key_busy"}"#],
        0.0
    );
    assert_eq!(
        before[r#"token_sidecar_key_fetches_total{source="key_server",result="timeout"}"#],
        0.0
    );

    // Logins.
    let t1 = hs(json!({}), "s3cret");
    let first = auth(&mut c, 1, HOST, Some(&t1));
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(auth(&mut c, 2, HOST, Some(&t1))["ok"], true, "remembered");
    let expired = auth(&mut c, 3, HOST, Some(&hs(json!({"exp": now() - 100}), "s3cret")));
    assert_eq!(expired["condition"], "not-allowed", "{expired}");
    let forged = hs(json!({"room": format!("{MARK}-forged")}), "not-the-secret");
    assert_eq!(auth(&mut c, 4, HOST, Some(&forged))["text"], "Invalid signature");
    assert_eq!(auth(&mut c, 5, HOST, None)["text"], "token required");
    let unknown_host = format!("{MARK}-host.example.com");
    assert_eq!(auth(&mut c, 6, &unknown_host, Some(&t1))["error"], "unknown-host");
    let weird = rsa.jwt(
        Some(&format!("{MARK}-kid")),
        &claims(
            ASAP,
            json!({"room": format!("{MARK}-room"), "context": {"user": {"name": format!("{MARK}-user")}}}),
        ),
    );
    let no_key = auth(&mut c, 7, ASAP, Some(&weird));
    assert_eq!(no_key["text"], "could not obtain public key", "{no_key}");
    assert_eq!(
        auth(
            &mut c,
            8,
            ASAP,
            Some(&rsa.jwt(Some("good-kid"), &claims(ASAP, json!({}))))
        )["ok"],
        true
    );
    let again = rsa.jwt(Some("good-kid"), &claims(ASAP, json!({"user_id": "u2"})));
    assert_eq!(auth(&mut c, 9, ASAP, Some(&again))["ok"], true, "key from the cache");

    // Room checks.
    let sha = first["token_sha256"].as_str().expect("token_sha256").to_owned();
    let ok = room(&mut c, 10, HOST, json!({"room": ROOM, "token_sha256": sha}));
    assert_eq!(ok["ok"], true, "{ok}");
    let other = format!("{}room@conference.{HOST}", MARK.to_lowercase());
    let denied = room(&mut c, 11, HOST, json!({"room": other, "token_sha256": sha}));
    assert_eq!(denied["text"], "Room and token mismatched", "{denied}");
    let unverified = room(&mut c, 12, HOST, json!({"room": ROOM, "token": forged}));
    assert_eq!(unverified["text"], "Invalid signature", "{unverified}");
    let bad = room(&mut c, 13, HOST, json!({"room": ROOM, "token_sha256": "zz"}));
    assert_eq!(bad["error"], "bad-request", "{bad}");
    let unknown = room(&mut c, 14, HOST, json!({"room": ROOM, "token_sha256": "0".repeat(64)}));
    assert_eq!(unknown["error"], "unknown-token", "{unknown}");
    let session = json!({"jitsi_meet_room": "room1", "jitsi_meet_domain": HOST});
    let by_fields = room(&mut c, 15, HOST, json!({"room": ROOM, "session": session}));
    assert_eq!(by_fields["ok"], true, "{by_fields}");
    assert_eq!(
        room(&mut c, 16, &unknown_host, json!({"room": ROOM}))["error"],
        "unknown-host"
    );

    // Access tokens.
    let hello = c.call(json!({"id": 17, "op": "hello", "version": 1, "instance": "test",
        "issuers": {MUC: {"module": "access_token", "options": {
            "access_token_key": "0123456789abcdef0123456789abcdef", "access_token_rate_limit": 0}}}}));
    assert_eq!(hello["issuers_accepted"], json!([MUC]), "{hello}");
    let joined = c.call(
        json!({"id": 18, "op": "occupant", "event": "join", "room": ROOM, "jid": USER,
        "nick": format!("{ROOM}/alice")}),
    );
    assert_eq!(joined["ok"], true, "{joined}");
    let issued = access(&mut c, 19, MUC, ROOM, true, true);
    let stanza = issued["stanza"].as_str().expect("a stanza");
    let token = stanza
        .split("data='")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("a token")
        .to_owned();
    assert_eq!(access(&mut c, 20, MUC, ROOM, false, true)["condition"], "forbidden");
    assert_eq!(
        access(&mut c, 21, MUC, ROOM, true, false)["condition"],
        "item-not-found"
    );
    let weird_muc = format!("conference.{}.example.com", MARK.to_lowercase());
    let weird_room = format!("room1@{weird_muc}");
    assert_eq!(
        access(&mut c, 22, &weird_muc, &weird_room, true, true)["condition"],
        "service-unavailable"
    );
    let garbage = c.call(json!({"id": 23, "op": "access_token", "issuer": MUC, "door": "muc",
        "stanza": format!("<iq {MARK}"), "room": ROOM, "room_exists": true}));
    assert_eq!(garbage["error"], "bad-request", "{garbage}");

    // Introspections.
    let (status, body) = introspect(&d, SECRET, &token);
    assert!(status == 200 && body.contains("\"active\":true"), "{status} {body}");
    assert_eq!(introspect(&d, &format!("{MARK}-wrong-secret"), &token).0, 401);
    let (status, body) = introspect(&d, SECRET, &format!("{MARK}.{MARK}.{MARK}"));
    assert!(status == 200 && body.contains("\"active\":false"), "{status} {body}");
    assert_eq!(introspect(&d, SECRET, "").0, 400);

    let stats = c.call(json!({"id": 24, "op": "stats"}));
    let (after, text) = scrape(&d);

    let expected: &[(&str, f64)] = &[
        (r#"token_sidecar_logins_total{result="accepted"}"#, 4.0),
        (r#"token_sidecar_logins_total{result="anonymous"}"#, 0.0),
        (r#"token_sidecar_logins_total{result="refused",reason="exp"}"#, 1.0),
        (
            r#"token_sidecar_logins_total{result="refused",reason="signature"}"#,
            1.0,
        ),
        (
            r#"token_sidecar_logins_total{result="refused",reason="token_required"}"#,
            1.0,
        ),
        (
            r#"token_sidecar_logins_total{result="refused",reason="key_unavailable"}"#,
            1.0,
        ),
        (r#"token_sidecar_logins_total{result="refused",reason="key_busy"}"#, 0.0),
        (
            r#"token_sidecar_logins_total{result="error",reason="unknown_host"}"#,
            1.0,
        ),
        (r#"token_sidecar_room_checks_total{result="allowed"}"#, 2.0),
        (
            r#"token_sidecar_room_checks_total{result="refused",reason="mismatched"}"#,
            1.0,
        ),
        (
            r#"token_sidecar_room_checks_total{result="refused",reason="signature"}"#,
            1.0,
        ),
        (
            r#"token_sidecar_room_checks_total{result="error",reason="bad_request"}"#,
            1.0,
        ),
        (
            r#"token_sidecar_room_checks_total{result="error",reason="unknown_token"}"#,
            1.0,
        ),
        (
            r#"token_sidecar_room_checks_total{result="error",reason="unknown_host"}"#,
            1.0,
        ),
        (r#"token_sidecar_requests_total{op="auth",result="ok"}"#, 4.0),
        (r#"token_sidecar_requests_total{op="auth",result="refused"}"#, 4.0),
        (r#"token_sidecar_requests_total{op="auth",result="error"}"#, 1.0),
        (r#"token_sidecar_requests_total{op="room",result="ok"}"#, 2.0),
        (r#"token_sidecar_requests_total{op="room",result="refused"}"#, 2.0),
        (r#"token_sidecar_requests_total{op="room",result="error"}"#, 3.0),
        (r#"token_sidecar_requests_total{op="hello",result="ok"}"#, 1.0),
        (r#"token_sidecar_requests_total{op="stats",result="ok"}"#, 1.0),
        (r#"token_sidecar_requests_total{op="access_token",result="ok"}"#, 1.0),
        (
            r#"token_sidecar_requests_total{op="access_token",result="refused"}"#,
            3.0,
        ),
        (r#"token_sidecar_requests_total{op="access_token",result="error"}"#, 1.0),
        (
            r#"token_sidecar_verify_cache_lookups_total{op="auth",result="hit"}"#,
            1.0,
        ),
        (
            r#"token_sidecar_verify_cache_lookups_total{op="auth",result="miss"}"#,
            6.0,
        ),
        (
            r#"token_sidecar_verify_cache_lookups_total{op="room",result="hit"}"#,
            2.0,
        ),
        (
            r#"token_sidecar_verify_cache_lookups_total{op="room",result="miss"}"#,
            1.0,
        ),
        (
            r#"token_sidecar_key_fetches_total{source="key_server",result="ok"}"#,
            1.0,
        ),
        (
            r#"token_sidecar_key_fetches_total{source="key_server",result="not_found"}"#,
            1.0,
        ),
        (r#"token_sidecar_key_fetches_total{source="key_set",result="ok"}"#, 0.0),
        (
            r#"token_sidecar_key_fetch_duration_seconds_count{source="key_server"}"#,
            2.0,
        ),
        (
            r#"token_sidecar_key_fetch_duration_seconds_bucket{source="key_server",le="10"}"#,
            2.0,
        ),
        (
            r#"token_sidecar_key_cache_lookups_total{source="key_server",result="miss"}"#,
            2.0,
        ),
        (
            r#"token_sidecar_key_cache_lookups_total{source="key_server",result="hit"}"#,
            1.0,
        ),
        (r#"token_sidecar_access_tokens_total{door="muc",result="issued"}"#, 1.0),
        (
            r#"token_sidecar_access_tokens_total{door="muc",result="refused",reason="not_occupant"}"#,
            1.0,
        ),
        (
            r#"token_sidecar_access_tokens_total{door="muc",result="refused",reason="no_room"}"#,
            1.0,
        ),
        (
            r#"token_sidecar_access_tokens_total{door="muc",result="refused",reason="issuer_unavailable"}"#,
            1.0,
        ),
        (r#"token_sidecar_access_tokens_total{door="muc",result="error"}"#, 1.0),
        (
            r#"token_sidecar_access_tokens_total{door="extdisco",result="issued"}"#,
            0.0,
        ),
        (r#"token_sidecar_introspections_total{result="active"}"#, 1.0),
        (r#"token_sidecar_introspections_total{result="unauthorized"}"#, 1.0),
        (
            r#"token_sidecar_introspections_total{result="inactive",reason="no_iss"}"#,
            1.0,
        ),
        (r#"token_sidecar_introspections_total{result="bad_request"}"#, 1.0),
        (r#"token_sidecar_connections_open"#, 1.0),
        // The start's readiness probe, and this test's connection.
        (r#"token_sidecar_connections_accepted_total"#, 2.0),
        (r#"token_sidecar_inflight_requests"#, 0.0),
        (r#"token_sidecar_inflight_requests_limit"#, 1024.0),
        (r#"token_sidecar_connections_limit"#, 1024.0),
        (r#"token_sidecar_occupancy_occupants"#, 1.0),
        (r#"token_sidecar_occupancy_rooms"#, 1.0),
        (
            &format!("token_sidecar_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
            1.0,
        ),
    ];
    let mut wrong = Vec::new();
    for (series, value) in expected {
        match after.get(*series) {
            Some(got) if got == value => {}
            got => wrong.push(format!("{series}: expected {value}, got {got:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}\n{text}", wrong.join("\n"));

    // Every other login, room check, access-token and introspection series is still 0, so the
    // table above is the whole traffic.
    let families = [
        "token_sidecar_logins_total",
        "token_sidecar_room_checks_total",
        "token_sidecar_access_tokens_total",
        "token_sidecar_introspections_total",
        "token_sidecar_key_fetches_total",
    ];
    for (series, value) in &after {
        let counted = families.iter().any(|f| series.starts_with(&format!("{f}{{")));
        if counted && *value != 0.0 {
            assert!(
                expected.iter().any(|(s, _)| s == series),
                "{series} = {value}, not in the traffic"
            );
        }
    }

    let start_time = after["token_sidecar_start_time_seconds"];
    assert!(
        start_time >= (started - 5) as f64 && start_time <= (now() + 5) as f64,
        "{start_time}"
    );
    assert!(after[r#"token_sidecar_verify_cache_entries"#] >= 1.0);

    // `stats` reports the same counters.
    assert_eq!(stats["verify_cache"]["hits"], 3, "{stats}");
    assert_eq!(stats["verify_cache"]["misses"], 7, "{stats}");
    assert_eq!(stats["ops"]["auth"], json!({"ok": 4, "refused": 4, "error": 1}));
    assert_eq!(stats["ops"]["room"], json!({"ok": 2, "refused": 2, "error": 3}));
    assert_eq!(stats["connections"]["accepted"], 2);

    // No label value comes from a request.
    assert!(!text.to_lowercase().contains(&MARK.to_lowercase()), "{text}");
    assert!(!text.contains(HOST) && !text.contains("good-kid") && !text.contains(USER));
    let allowed = allowed_label_values();
    for series in after.keys() {
        for value in label_values(series) {
            assert!(allowed.contains(&value), "label value {value:?} in {series}");
        }
    }
}

#[test]
fn openmetrics_when_asked_and_none_when_switched_off() {
    let d = start("", "");
    let (status, head, body) = http(
        &d.http,
        "GET",
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3\r\n",
        "",
    );
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE token_sidecar_logins counter\n"), "{body}");
    assert!(
        body.contains("# UNIT token_sidecar_start_time_seconds seconds\n"),
        "{body}"
    );

    let off = start("metrics = false", "");
    let (status, _, _) = http(&off.http, "GET", "/metrics", "", "");
    assert_eq!(status, 404);
    let (status, _, _) = http(&off.http, "GET", "/healthz", "", "");
    assert_eq!(status, 200, "the rest of the listener is unchanged");
}

#[test]
fn check_config_warns_of_metrics_off_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.toml");
    let socket = dir.path().join("ts.sock");
    let write = |http: &str| {
        let text = format!(
            "[server]\nsocket = {:?}\n[http]\nlisten = \"0.0.0.0:5290\"\nintrospect_secret = \"{SECRET}\"\n{http}\n",
            socket.display().to_string()
        );
        std::fs::write(&config, text).expect("config");
    };
    let path = config.display().to_string();
    let args = ["serve", "--config", &path, "--check-config"];
    write("");
    let out = common::cli::run(&args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("GET /metrics answers anyone who can connect, without a secret"),
        "{stderr}"
    );
    write("metrics = false");
    let out = common::cli::run(&args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("/metrics"), "{stderr}");
}
