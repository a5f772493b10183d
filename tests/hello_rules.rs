//! What a `hello` may and may not do to a host (docs/PROTOCOL.md, "Hosts: `hello` and the TOML
//! file"), and every request line getting its reply under its own `id` (issue 10, items 1, 5, 6):
//!
//! - a line broken after its `id` (bytes that are not UTF-8 in a later string) is answered under
//!   that `id`, at once;
//! - a host whose new settings are refused refuses logins and room checks (`settings-refused`)
//!   until a `hello` brings valid settings — neither the old secret nor the new one works;
//! - one connection cannot replace the settings of a host another open connection holds; once
//!   that connection is gone, it can.
//!
//! The daemon runs as the `token-sidecar serve` binary on a temporary socket; every wait is
//! bounded.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::keys::hs_jwt;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};
use token_sidecar::access::Reporter;
use token_sidecar::clock::unix_now as now;
use token_sidecar::config::HostSettings;
use token_sidecar::daemon::hosts::{HelloRefusal, Registry, Unavailable};

const HOST: &str = "meet.example.com";
const WAIT: Duration = Duration::from_secs(20);

/// A token for `HOST`, room1, signed HS256 with `secret`.
fn token(secret: &str) -> String {
    let claims = json!({"iss": "myapp", "aud": "jitsi", "sub": HOST, "room": "room1", "exp": now() + 3600});
    hs_jwt(Algorithm::HS256, secret.as_bytes(), None, &claims)
}

/// `HOST`'s options as the shim sends them, with `secret` and `extra` options.
fn options(secret: &str, extra: Value) -> Value {
    let mut options = json!({"app_id": "myapp", "app_secret": secret, "muc_mapper_domain_base": HOST});
    if let (Some(o), Some(e)) = (options.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    options
}

struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Daemon {
    /// `serve` on a fresh socket, with `toml` after its `[server]` table.
    fn start(toml: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("sidecar.sock");
        let config = dir.path().join("sidecar.toml");
        let text = format!("[server]\nsocket = {:?}\n{toml}", socket.display().to_string());
        std::fs::write(&config, text).expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start daemon");
        let deadline = Instant::now() + WAIT;
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "daemon did not listen within {WAIT:?}");
            thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            _dir: dir,
            socket,
        }
    }

    fn connect(&self) -> Conn {
        let stream = UnixStream::connect(&self.socket).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        Conn {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            stream,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection, one request at a time.
struct Conn {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Conn {
    fn send_raw(&mut self, line: &[u8]) -> Value {
        self.stream.write_all(line).expect("write");
        self.stream.write_all(b"\n").expect("write");
        let mut reply = String::new();
        self.reader.read_line(&mut reply).expect("a reply within the wait");
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {reply:?}"))
    }

    fn call(&mut self, request: Value) -> Value {
        let reply = self.send_raw(request.to_string().as_bytes());
        assert_eq!(reply["id"], request["id"], "{reply}");
        reply
    }

    fn hello(&mut self, id: u64, instance: &str, options: Value) -> Value {
        self.call(json!({"id": id, "op": "hello", "version": 1, "instance": instance, "hosts": {HOST: options}}))
    }

    fn auth(&mut self, id: u64, token: &str) -> Value {
        self.call(json!({"id": id, "op": "auth", "host": HOST, "token": token}))
    }
}

#[test]
fn a_line_broken_after_its_id_is_answered_under_that_id_at_once() {
    let daemon = Daemon::start("");
    let mut c = daemon.connect();
    // What a shim forwarded raw before it cleaned its lines: `?room=%ff`, a User-Agent in Latin-1.
    let lines: [&[u8]; 3] = [
        b"{\"id\":7,\"op\":\"auth\",\"host\":\"meet.example.com\",\"token\":\"t\",\"room\":\"\xff\"}",
        b"{\"id\":\"ua\",\"op\":\"auth\",\"host\":\"meet.example.com\",\"user_agent\":\"Mozilla \xe9t\xe9\"}",
        // The id after the damage: skipped over unread, still found.
        b"{\"op\":\"auth\",\"room\":\"\xff\xfe\",\"id\":8,\"host\":\"meet.example.com\"}",
    ];
    let ids = [json!(7), json!("ua"), json!(8)];
    for (line, id) in lines.into_iter().zip(ids) {
        let t0 = Instant::now();
        let reply = c.send_raw(line);
        assert_eq!(reply["id"], id, "{reply}");
        assert_eq!(reply["error"], "bad-request", "{reply}");
        assert!(
            reply["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("the line is not JSON")),
            "{reply}"
        );
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    }
    // Damage that cannot be skipped before the id (in a name): null, as before; the connection
    // stays usable.
    let reply = c.send_raw(b"{\"\xff\":1,\"id\":9}");
    assert_eq!(reply["id"], Value::Null, "{reply}");
    let reply = c.call(json!({"id": 10, "op": "ping"}));
    assert_eq!(reply["ok"], true, "{reply}");
}

/// Issue 10, item 6: a rotated secret plus a typo in another option. Keeping the old settings
/// would keep the old (maybe leaked) secret valid; the host refuses everything instead.
#[test]
fn a_host_whose_new_settings_are_refused_refuses_logins_and_room_checks_until_valid_ones_come() {
    // A TOML table of the same host, with the old secret: a refused hello must not fall back to it.
    let daemon = Daemon::start(&format!(
        "[hosts.\"{HOST}\"]\napp_id = \"myapp\"\napp_secret = \"old-secret\"\nmuc_mapper_domain_base = \"{HOST}\"\n"
    ));
    let mut c = daemon.connect();
    let reply = c.hello(1, "prosody-a", options("old-secret", json!({})));
    assert_eq!(reply["accepted"], json!([HOST]), "{reply}");
    let (old, new) = (token("old-secret"), token("new-secret"));
    let reply = c.auth(2, &old);
    assert_eq!(reply["ok"], true, "{reply}");
    let sha = reply["token_sha256"].as_str().expect("token_sha256").to_owned();

    let reply = c.hello(
        3,
        "prosody-a",
        options("new-secret", json!({"allow_empty_token": "yes"})),
    );
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["accepted"], json!([]), "{reply}");
    let error = reply["errors"][HOST].as_str().unwrap_or_default();
    assert!(
        error.contains("`allow_empty_token`"),
        "the error names the option: {reply}"
    );

    let room = format!("room1@conference.{HOST}");
    let requests = [
        json!({"id": 4, "op": "auth", "host": HOST, "token": old}),
        json!({"id": 5, "op": "auth", "host": HOST, "token": new}),
        json!({"id": 6, "op": "auth", "host": HOST, "token": null}),
        json!({"id": 7, "op": "room", "host": HOST, "room": room, "token_sha256": sha}),
        json!({"id": 8, "op": "room", "host": HOST, "room": room, "session": {"jitsi_meet_room": "room1"}}),
    ];
    // The refusal is the host's, whichever connection asks.
    let mut other = daemon.connect();
    for request in requests {
        for conn in [&mut c, &mut other] {
            let reply = conn.call(request.clone());
            assert_eq!(reply["ok"], false, "{request}: {reply}");
            assert_eq!(reply["error"], "settings-refused", "{request}: {reply}");
            let text = reply["text"].as_str().unwrap_or_default();
            assert!(
                text.contains("`allow_empty_token`") && text.contains("until a hello brings valid settings"),
                "{text}"
            );
        }
    }
    // The same bad settings again: still refused (not mistaken for "unchanged").
    let reply = c.hello(
        9,
        "prosody-a",
        options("new-secret", json!({"allow_empty_token": "yes"})),
    );
    assert!(reply["errors"][HOST].is_string(), "{reply}");
    assert_eq!(c.auth(10, &new)["error"], "settings-refused");

    // Valid settings: the new secret works, the old one is gone.
    let reply = c.hello(11, "prosody-a", options("new-secret", json!({})));
    assert_eq!(reply["accepted"], json!([HOST]), "{reply}");
    let reply = c.auth(12, &new);
    assert_eq!(reply["ok"], true, "{reply}");
    let reply = c.auth(13, &old);
    assert_eq!(reply["text"], "Invalid signature", "{reply}");
    let reply = c.call(json!({"id": 14, "op": "room", "host": HOST, "room": room, "token": new}));
    assert_eq!(reply["ok"], true, "{reply}");
}

#[test]
fn a_host_first_registered_with_bad_settings_is_refused_not_unknown() {
    let daemon = Daemon::start("");
    let mut c = daemon.connect();
    let reply = c.hello(1, "prosody-a", json!({"app_id": "myapp"}));
    assert!(
        reply["errors"][HOST]
            .as_str()
            .is_some_and(|e| e.contains("no key source")),
        "{reply}"
    );
    let reply = c.auth(2, &token("s"));
    assert_eq!(reply["error"], "settings-refused", "{reply}");
    let reply = c.call(json!({"id": 3, "op": "auth", "host": "other.example.com", "token": null}));
    assert_eq!(reply["error"], "unknown-host", "{reply}");
}

/// Issue 10, item 5, in the registry: connections 1 and 2 stand for two Prosody processes on one
/// daemon. (The socket version is below.)
#[test]
fn the_registry_keeps_one_connection_from_replacing_what_another_live_one_holds() {
    let registry = Registry::default();
    let (a, b) = (Reporter(1), Reporter(2));
    let set = |options: Value, from: Option<Reporter>, instance: &str| {
        let options: Map<String, Value> = serde_json::from_value(options).expect("an object");
        let settings = HostSettings::from_options(HOST, &options, false);
        registry.set_hello(HOST, &options, settings, from, Some(instance))
    };
    let secret_in_effect = |registry: &Registry| {
        registry
            .get(HOST)
            .expect("a host in effect")
            .verifier
            .settings()
            .app_secret
            .clone()
    };

    assert!(matches!(set(options("s1", json!({})), Some(a), "A"), Ok(true)));
    // The same settings from another Prosody: fine, both hold them.
    assert!(matches!(set(options("s1", json!({})), Some(b), "B"), Ok(false)));

    // B changes the secret and an option while A holds the settings: refused, naming both.
    let refused = set(
        options("s2", json!({"enable_domain_verification": false})),
        Some(b),
        "B",
    );
    let Err(conflict @ HelloRefusal::Conflict { .. }) = refused else {
        panic!("expected a conflict, got {refused:?}")
    };
    let text = conflict.to_string();
    assert!(text.contains("instance \"A\""), "{text}");
    assert!(text.contains("`app_secret`, `enable_domain_verification`"), "{text}");
    assert!(
        !text.contains("s1") && !text.contains("s2"),
        "no secret in the text: {text}"
    );
    assert_eq!(secret_in_effect(&registry).as_deref(), Some("s1"));

    // A changes to what B asked for: nobody else holds s1 any more (B wants the new settings),
    // so it takes effect — Prosody processes changing a host one after the other agree.
    assert!(matches!(
        set(
            options("s2", json!({"enable_domain_verification": false})),
            Some(a),
            "A"
        ),
        Ok(true)
    ));
    assert_eq!(secret_in_effect(&registry).as_deref(), Some("s2"));

    // Invalid settings from A while B holds the ones in effect: a conflict, and they say so.
    let refused = set(options("s3", json!({"allow_empty_token": "yes"})), Some(a), "A");
    let text = refused.expect_err("a conflict").to_string();
    assert!(
        text.contains("instance \"B\"") && text.contains("not valid either"),
        "{text}"
    );
    assert_eq!(secret_in_effect(&registry).as_deref(), Some("s2"));

    // B goes away: A's next hello takes effect (a restarted Prosody is a new connection too).
    registry.release(b);
    assert!(matches!(set(options("s3", json!({})), Some(a), "A"), Ok(true)));
    assert_eq!(secret_in_effect(&registry).as_deref(), Some("s3"));
    registry.release(a);
    assert!(matches!(
        set(options("s4", json!({})), Some(Reporter(3)), "A2"),
        Ok(true)
    ));

    // Invalid settings with nobody else holding the host: the host is refused (item 6).
    let refused = set(
        options("s5", json!({"allow_empty_token": "yes"})),
        Some(Reporter(3)),
        "A2",
    );
    assert!(matches!(refused, Err(HelloRefusal::Invalid(_))), "{refused:?}");
    assert!(matches!(registry.get(HOST), Err(Unavailable::Refused(_))));
    assert_eq!(registry.refused().len(), 1);
    assert!(registry.all().is_empty());
    // Refused settings protect nothing: another connection's valid ones take effect.
    assert!(matches!(
        set(options("s6", json!({})), Some(Reporter(4)), "C"),
        Ok(true)
    ));
    assert_eq!(secret_in_effect(&registry).as_deref(), Some("s6"));

    // A caller that cannot tell connections apart: its hello takes effect, and holds nothing.
    assert!(set(options("s7", json!({})), None, "D").is_err());
    registry.release(Reporter(4));
    assert!(matches!(set(options("s7", json!({})), None, "D"), Ok(true)));
    assert!(matches!(
        set(options("s8", json!({})), Some(Reporter(5)), "E"),
        Ok(true)
    ));
}

/// Issue 10, item 5, over the socket: two Prosody processes (two connections) on one daemon.
/// Needs the listener to hand each `hello` its connection and to release the connection when
/// it closes (see `src/daemon/hosts.rs`).
#[test]
fn two_connections_cannot_overwrite_each_others_host_and_a_closed_one_no_longer_counts() {
    let daemon = Daemon::start("");
    let (mut a, mut b) = (daemon.connect(), daemon.connect());
    let reply = a.hello(1, "prosody-a", options("secret-a", json!({})));
    assert_eq!(reply["accepted"], json!([HOST]), "{reply}");
    let reply = b.hello(1, "prosody-b", options("secret-b", json!({})));
    assert_eq!(reply["accepted"], json!([]), "{reply}");
    let error = reply["errors"][HOST].as_str().unwrap_or_default();
    assert!(
        error.contains("instance \"prosody-a\"") && error.contains("`app_secret`"),
        "{reply}"
    );
    // A's settings stay in effect, for both.
    for conn in [&mut a, &mut b] {
        assert_eq!(conn.auth(2, &token("secret-a"))["ok"], true);
        assert_eq!(conn.auth(3, &token("secret-b"))["text"], "Invalid signature");
    }
    // A re-hello with its own settings changed is fine: nobody else holds them.
    let reply = a.hello(4, "prosody-a", options("secret-a2", json!({})));
    assert_eq!(reply["accepted"], json!([HOST]), "{reply}");
    // A closes (its Prosody stopped): B registers.
    drop(a);
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = b.hello(5, "prosody-b", options("secret-b", json!({})));
        if reply["accepted"] == json!([HOST]) {
            break;
        }
        assert!(Instant::now() < deadline, "A's close never counted: {reply}");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.auth(6, &token("secret-b"))["ok"], true);
}
