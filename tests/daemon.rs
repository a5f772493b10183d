//! The daemon over its real socket: the `token-sidecar serve` binary on a temporary socket, driven
//! the way the Prosody shim drives it. Every wait is bounded, so a broken daemon fails a test
//! instead of hanging it; no test depends on how fast this machine is.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::keys::hs_jwt;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use token_sidecar::clock::unix_now as now;

const HOST: &str = "meet.example.com";
const WAIT: Duration = Duration::from_secs(20);

fn hs256(claims: &Value, secret: &str) -> String {
    hs_jwt(Algorithm::HS256, secret.as_bytes(), None, claims)
}

/// Base token T of docs/COMPATIBILITY.md's cases, with `extra` claims merged in.
fn token(extra: Value) -> String {
    let mut claims = json!({"iss": "myapp", "aud": "jitsi", "sub": HOST, "room": "room1", "exp": now() + 3600});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    hs256(&claims, "s3cret")
}

fn base_host_toml(name: &str) -> String {
    format!("[hosts.\"{name}\"]\napp_id = \"myapp\"\napp_secret = \"s3cret\"\nmuc_mapper_domain_base = \"{HOST}\"\n")
}

struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    socket: PathBuf,
    config: PathBuf,
}

impl Daemon {
    /// Starts `serve` with `[server]` pointing at a fresh socket plus `body`, and waits until it answers.
    fn start(body: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("run/sidecar.sock");
        Daemon::start_at(dir, socket, body)
    }

    fn start_at(dir: tempfile::TempDir, socket: PathBuf, body: &str) -> Daemon {
        let config = dir.path().join("sidecar.toml");
        std::fs::write(&config, Daemon::config_text(&socket, body)).expect("write config");
        let child = Daemon::spawn(&config, &[]).spawn().expect("start daemon");
        let daemon = Daemon {
            child: Some(child),
            dir,
            socket,
            config,
        };
        daemon.wait_ready();
        daemon
    }

    fn config_text(socket: &Path, body: &str) -> String {
        format!("[server]\nsocket = {:?}\n{body}", socket.display().to_string())
    }

    fn spawn(config: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_token-sidecar"));
        cmd.arg("serve").arg("--config").arg(config).args(extra);
        cmd.env("RUST_LOG", "info").stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not listen on {} within {WAIT:?}", self.socket.display());
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn client(&self) -> Client {
        Client::connect(&self.socket)
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Waits for the process to exit (bounded) and returns its status and stderr.
    fn wait_exit(&mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut err);
                }
                return (status, err);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("daemon did not exit within {WAIT:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The tests' client: the library's protocol client, driven from these synchronous tests on one
/// shared runtime, with every wait bounded.
struct Client {
    inner: token_sidecar::protocol::client::Client,
}

static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
});

fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    RUNTIME
        .block_on(async { tokio::time::timeout(WAIT, future).await })
        .unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
}

impl Client {
    fn connect(path: &Path) -> Client {
        let inner = bounded("connect", token_sidecar::protocol::client::Client::connect(path)).expect("connect");
        Client { inner }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        bounded("write", self.inner.send_raw(bytes)).expect("write");
    }

    fn send(&mut self, request: &Value) {
        let mut line = request.to_string().into_bytes();
        line.push(b'\n');
        self.send_raw(&line);
    }

    /// The next reply line, as sent.
    fn recv_line(&mut self) -> String {
        let line = bounded("read a reply", self.inner.recv_line()).expect("a reply line");
        String::from_utf8(line).expect("UTF-8")
    }

    fn recv(&mut self) -> Value {
        let line = self.recv_line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {line:?}"))
    }

    fn call(&mut self, request: Value) -> Value {
        self.send(&request);
        let reply = self.recv();
        assert_eq!(reply["id"], request["id"], "{reply}");
        reply
    }

    fn ping(&mut self, id: u64) {
        let reply = self.call(json!({"id": id, "op": "ping"}));
        assert_eq!(reply["ok"], true, "{reply}");
    }
}

/// A key server on 127.0.0.1 that answers every GET with `pem`, after `gate` lets it (one
/// message per request).
fn slow_key_server(pem: String) -> (String, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let (gate, wait) = mpsc::channel::<()>();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            if wait.recv_timeout(WAIT).is_err() {
                return;
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-pem-file\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{pem}",
                pem.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (url, gate)
}

/// An RSA-2048 key pair: the public key as PEM, and a function signing RS256 tokens with `kid`.
fn rsa_key() -> (String, impl Fn(&Value, &str) -> String) {
    let key = common::keys::TestKey::rsa();
    let pem = key.public_pem();
    let sign = move |claims: &Value, kid: &str| key.jwt(Some(kid), claims);
    (pem, sign)
}

#[test]
fn every_op_answers_over_the_socket() {
    let daemon = Daemon::start(&base_host_toml(HOST));
    let mut c = daemon.client();

    let reply = c.call(json!({"id": 1, "op": "hello", "version": 1, "hosts": {
        "hello.example.com": {"app_id": "myapp", "app_secret": "s3cret", "muc_mapper_domain_base": HOST, "some_lua_option": true},
        "bad.example.com": {"app_id": "myapp", "app_secret": "s3cret", "allow_empty_token": "yes"},
    }}));
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["version"], 1);
    assert_eq!(reply["accepted"], json!(["hello.example.com"]));
    let error = reply["errors"]["bad.example.com"]
        .as_str()
        .expect("error for the bad host");
    assert!(error.contains("allow_empty_token"), "{error}");
    assert!(reply["warnings"].to_string().contains("some_lua_option"), "{reply}");
    assert!(
        reply["daemon"]
            .as_str()
            .is_some_and(|d| d.starts_with("token-sidecar "))
    );

    let reply = c.call(json!({"id": 2, "op": "hello", "version": 99}));
    assert_eq!(reply["error"], "unsupported-version", "{reply}");

    // auth: accepted, with claims and the session fields (docs/COMPATIBILITY.md, "Session fields").
    let t = token(json!({"context": {"user": {"name": "Alice"}, "tenant": "acme"}}));
    let reply = c.call(
        json!({"id": "a", "op": "auth", "host": HOST, "token": t, "prefix": "", "room": "room1",
        "user_agent": "test", "public_key": null, "context_required": false}),
    );
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["anonymous"], false);
    assert_eq!(reply["claims"]["room"], "room1");
    assert_eq!(reply["session"]["jitsi_meet_room"], "room1");
    assert_eq!(reply["session"]["jitsi_meet_domain"], HOST);
    assert_eq!(reply["session"]["jitsi_meet_auth_issuer"], "myapp");
    assert_eq!(reply["session"]["jitsi_meet_context_user"]["name"], "Alice");
    assert_eq!(reply["session"]["jitsi_meet_str_tenant"], "acme");
    assert_eq!(reply["fingerprint"], token_sidecar::digest::fingerprint(t.as_bytes()));
    assert!(reply["exp"].is_i64());
    let sha = reply["token_sha256"].as_str().expect("token_sha256").to_owned();
    assert_eq!(sha.len(), 64);

    // auth: refused with Jitsi's texts.
    let reply = c.call(json!({"id": 3, "op": "auth", "host": HOST, "token": hs256(&json!({"iss": "myapp"}), "wrong")}));
    assert_eq!(
        (reply["ok"].clone(), reply["condition"].clone(), reply["text"].clone()),
        (json!(false), json!("not-allowed"), json!("Invalid signature")),
        "{reply}"
    );
    let reply = c.call(json!({"id": 4, "op": "auth", "host": HOST, "token": null}));
    assert_eq!(reply["text"], "token required", "{reply}");
    let reply = c.call(json!({"id": 5, "op": "auth", "host": "hello.example.com", "token": token(json!({}))}));
    assert_eq!(reply["ok"], true, "a host registered by hello verifies: {reply}");
    let reply = c.call(json!({"id": 6, "op": "auth", "host": "nowhere.example.com", "token": t}));
    assert_eq!(reply["error"], "unknown-host", "{reply}");
    let reply = c.call(json!({"id": 7, "op": "auth", "host": HOST, "token": t, "context_required": true}));
    assert_eq!(reply["ok"], true, "{reply}");
    let reply =
        c.call(json!({"id": 8, "op": "auth", "host": HOST, "token": token(json!({})), "context_required": true}));
    assert_eq!(reply["ok"], false, "{reply}");

    // room: by token hash after auth, by token, and refused.
    let room = format!("room1@conference.{HOST}");
    let reply = c.call(
        json!({"id": 10, "op": "room", "host": HOST, "token_sha256": sha, "room": room,
        "prefix": "", "room_exists": true, "allow_unauthenticated_access": null}),
    );
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        reply["tenant_mismatch"], true,
        "context.tenant acme, URL prefix none: {reply}"
    );
    let reply = c.call(
        json!({"id": 15, "op": "room", "host": HOST, "token_sha256": sha, "room": room,
        "prefix": "acme", "room_exists": true}),
    );
    assert_eq!(
        (reply["ok"].clone(), reply["tenant_mismatch"].clone()),
        (json!(true), json!(false)),
        "{reply}"
    );
    let reply = c.call(json!({"id": 11, "op": "room", "host": HOST, "token": token(json!({})), "room": room}));
    assert_eq!(reply["ok"], true, "{reply}");
    let reply = c.call(json!({"id": 12, "op": "room", "host": HOST, "token": token(json!({})),
        "room": format!("other@conference.{HOST}"), "room_exists": true}));
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["condition"], "not-allowed", "{reply}");
    assert!(reply["text"].as_str().is_some_and(|t| !t.is_empty()), "{reply}");
    assert!(reply.get("jitmeet").is_some(), "{reply}");
    let reply = c.call(json!({"id": 13, "op": "room", "host": HOST, "token_sha256": "00".repeat(32), "room": room}));
    assert_eq!(reply["error"], "unknown-token", "{reply}");
    let reply = c.call(json!({"id": 14, "op": "room", "host": HOST, "token": hs256(&json!({}), "x"), "room": room}));
    assert_eq!(reply["text"], "Invalid signature", "{reply}");

    c.ping(20);
    let reply = c.call(json!({"id": 21, "op": "access_token"}));
    assert_eq!(reply["error"], "bad-request", "{reply}");
    assert_eq!(reply["text"], "access_token: missing field `issuer`", "{reply}");

    let reply = c.call(json!({"id": 22, "op": "stats"}));
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["ops"]["auth"]["ok"], 3, "{reply}");
    assert_eq!(reply["ops"]["auth"]["refused"], 3, "{reply}");
    assert_eq!(reply["ops"]["auth"]["error"], 1, "{reply}");
    assert_eq!(reply["hosts"][HOST]["origin"], "toml", "{reply}");
    assert_eq!(reply["hosts"]["hello.example.com"]["origin"], "hello", "{reply}");
    assert!(
        reply["verify_cache"]["entries"].as_u64().is_some_and(|n| n >= 2),
        "{reply}"
    );
    assert!(
        reply["verify_cache"]["hits"].as_u64().is_some_and(|n| n >= 2),
        "{reply}"
    );
    assert_eq!(reply["inflight"]["limit"], 1024, "{reply}");
}

#[test]
fn hello_wins_over_the_toml_table_of_the_same_host() {
    let daemon = Daemon::start(&base_host_toml(HOST));
    let mut c = daemon.client();
    let reply = c.call(json!({"id": 1, "op": "hello", "version": 1, "hosts": {
        HOST: {"app_id": "myapp", "app_secret": "other-secret", "muc_mapper_domain_base": HOST}}}));
    assert_eq!(reply["accepted"], json!([HOST]), "{reply}");
    let reply = c.call(json!({"id": 2, "op": "auth", "host": HOST, "token": token(json!({}))}));
    assert_eq!(
        reply["text"], "Invalid signature",
        "the TOML secret no longer applies: {reply}"
    );
    let reply = c.call(json!({"id": 3, "op": "auth", "host": HOST,
        "token": hs256(&json!({"iss": "myapp", "aud": "jitsi", "room": "*", "exp": now() + 60}), "other-secret")}));
    assert_eq!(reply["ok"], true, "{reply}");
}

#[test]
fn docker_environment_defines_a_host() {
    // The docker-jitsi-meet variables alone: XMPP_DOMAIN's host, origin "env".
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("env.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
        .args(["serve", "--socket"])
        .arg(&socket)
        .envs([
            ("XMPP_DOMAIN", "meet.jitsi"),
            ("ENABLE_AUTH", "1"),
            ("AUTH_TYPE", "jwt"),
            ("JWT_APP_ID", "myapp"),
            ("JWT_APP_SECRET", "s3cret"),
            ("JWT_ACCEPTED_AUDIENCES", "jitsi, other"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start daemon");
    let deadline = Instant::now() + WAIT;
    let mut c = loop {
        if let Ok(stream) = UnixStream::connect(&socket) {
            drop(stream);
            break Client::connect(&socket);
        }
        assert!(Instant::now() < deadline, "daemon did not listen");
        thread::sleep(Duration::from_millis(20));
    };
    let stats = c.call(json!({"id": 1, "op": "stats"}));
    assert_eq!(stats["hosts"]["meet.jitsi"]["origin"], "env", "{stats}");
    let t = hs256(
        &json!({"iss": "myapp", "aud": "other", "room": "*", "exp": now() + 60}),
        "s3cret",
    );
    let reply = c.call(json!({"id": 2, "op": "auth", "host": "meet.jitsi", "token": t}));
    assert_eq!(reply["ok"], true, "trimmed audience list: {reply}");
    // Docker writes enable_domain_verification = false: a token for another sub still joins.
    let reply = c.call(json!({"id": 3, "op": "room", "host": "meet.jitsi", "token": t,
        "room": "room1@muc.meet.jitsi", "prefix": "", "room_exists": true}));
    assert_eq!(reply["ok"], true, "{reply}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn replies_come_back_as_each_finishes() {
    let (pem, sign) = rsa_key();
    let (url, gate) = slow_key_server(pem);
    let config = format!(
        "{}[hosts.\"rs.example.com\"]\napp_id = \"myapp\"\nasap_key_server = \"{url}\"\nasap_key_fetch_timeout = 60\n",
        base_host_toml(HOST)
    );
    let daemon = Daemon::start(&config);
    let mut c = daemon.client();
    let claims = json!({"iss": "myapp", "aud": "jitsi", "sub": HOST, "room": "room1", "exp": now() + 3600});
    c.send(&json!({"id": "slow", "op": "auth", "host": "rs.example.com", "token": sign(&claims, "kid1")}));
    for id in 1..=5 {
        c.send(&json!({"id": id, "op": "auth", "host": HOST, "token": token(json!({"n": id}))}));
    }
    let mut fast = Vec::new();
    for _ in 1..=5 {
        let reply = c.recv();
        assert_eq!(reply["ok"], true, "{reply}");
        fast.push(
            reply["id"]
                .as_u64()
                .expect("a fast reply first, while the key server holds the slow one"),
        );
    }
    fast.sort_unstable();
    assert_eq!(fast, vec![1, 2, 3, 4, 5]);
    gate.send(()).expect("release the key server");
    let reply = c.recv();
    assert_eq!(reply["id"], "slow");
    assert_eq!(reply["ok"], true, "{reply}");
}

#[test]
fn bad_requests_get_error_replies_and_the_connection_stays_usable() {
    let daemon = Daemon::start(&base_host_toml(HOST));
    let mut c = daemon.client();
    let cases: &[(&[u8], Value, &str)] = &[
        (b"{\"id\":1,\"op\":\n", json!(1), "not JSON"),
        (b"[1,2]\n", Value::Null, "must be a JSON object"),
        (b"{\"op\":\"ping\"}\n", Value::Null, "missing field `id`"),
        (b"{\"id\":2}\n", json!(2), "missing field `op`"),
        (b"{\"id\":3,\"op\":7}\n", json!(3), "`op` must be a string"),
        (b"{\"id\":4,\"op\":\"fly\"}\n", json!(4), "unknown op \"fly\""),
        (b"{\"id\":5,\"op\":\"auth\"}\n", json!(5), "auth: missing field `host`"),
        (
            b"{\"id\":6,\"op\":\"auth\",\"host\":7}\n",
            json!(6),
            "auth: invalid type: integer `7`",
        ),
        (
            b"{\"id\":7,\"op\":\"room\",\"host\":\"h\",\"room\":[]}\n",
            json!(7),
            "room: invalid type",
        ),
        (
            b"{\"id\":8,\"op\":\"hello\",\"version\":\"1\"}\n",
            json!(8),
            "hello: invalid type",
        ),
        (b"\xff\xfe\x00garbage\x01\x02\n", Value::Null, "not JSON"),
    ];
    for (line, id, text) in cases {
        c.send_raw(line);
        let reply = c.recv();
        assert_eq!(reply["ok"], false, "{reply}");
        assert_eq!(reply["error"], "bad-request", "{reply}");
        assert_eq!(&reply["id"], id, "{reply}");
        let got = reply["text"].as_str().unwrap_or_default();
        assert!(
            got.contains(text),
            "{:?}: {got:?} lacks {text:?}",
            String::from_utf8_lossy(line)
        );
        c.ping(100);
    }

    // A line over 64 KiB: refused naming the limit, the rest discarded, then business as usual.
    let mut long = b"{\"id\":9,\"op\":\"auth\",\"host\":\"".to_vec();
    long.extend(std::iter::repeat_n(b'x', 200 * 1024));
    long.extend_from_slice(b"\"}\n");
    c.send_raw(&long);
    let reply = c.recv();
    assert_eq!(reply["error"], "line-too-long", "{reply}");
    assert!(reply["text"].as_str().unwrap_or_default().contains("65536"), "{reply}");
    c.ping(101);

    // Binary garbage with no newline for longer than the limit, then a newline: one error, then usable.
    let garbage: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .filter(|b| *b != b'\n')
        .collect();
    c.send_raw(&garbage);
    c.send_raw(b"\n");
    let reply = c.recv();
    assert_eq!(reply["error"], "line-too-long", "{reply}");
    c.ping(102);
}

#[test]
fn half_a_line_then_silence_blocks_nobody() {
    let daemon = Daemon::start(&base_host_toml(HOST));
    let mut stalled = daemon.client();
    stalled.send_raw(b"{\"id\":1,\"op\":\"pi");
    let mut other = daemon.client();
    for id in 0..20 {
        other.ping(id);
    }
    stalled.send_raw(b"ng\"}\n");
    assert_eq!(stalled.recv()["id"], 1);
}

#[test]
fn disconnecting_with_requests_in_flight_harms_nobody() {
    let (pem, sign) = rsa_key();
    let (url, gate) = slow_key_server(pem);
    let config = format!(
        "{}[hosts.\"rs.example.com\"]\napp_id = \"myapp\"\nasap_key_server = \"{url}\"\nasap_key_fetch_timeout = 60\n",
        base_host_toml(HOST)
    );
    let daemon = Daemon::start(&config);
    {
        let mut c = daemon.client();
        let claims = json!({"iss": "myapp", "aud": "jitsi", "room": "*", "exp": now() + 3600});
        c.send(&json!({"id": 0, "op": "auth", "host": "rs.example.com", "token": sign(&claims, "k")}));
        for id in 1..200 {
            c.send(&json!({"id": id, "op": "auth", "host": HOST, "token": token(json!({"n": id}))}));
        }
    }
    let mut other = daemon.client();
    other.ping(1);
    gate.send(()).expect("release");
    let reply = other.call(json!({"id": 2, "op": "stats"}));
    assert_eq!(reply["ok"], true);
    other.ping(3);
}

#[test]
fn a_thousand_connections_at_once() {
    let daemon = Daemon::start(&base_host_toml(HOST));
    let mut clients: Vec<Client> = (0..1000).map(|_| daemon.client()).collect();
    let t = token(json!({}));
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&json!({"id": i, "op": "auth", "host": HOST, "token": t}));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let reply = c.recv();
        assert_eq!(reply["id"], i);
        assert_eq!(reply["ok"], true, "{reply}");
    }
    let reply = clients[0].call(json!({"id": "s", "op": "stats"}));
    assert_eq!(reply["connections"]["open"], 1000, "{reply}");
}

#[test]
fn a_client_that_never_reads_does_not_grow_the_daemon() {
    let daemon = Daemon::start(&base_host_toml(HOST));
    let mut probe = daemon.client();
    probe.ping(0);
    let rss_before = daemon.rss_kib();

    // Write requests without ever reading replies, until the daemon stops reading us (the write
    // blocks and times out) or 50 MB have gone out.
    let stream = UnixStream::connect(&daemon.socket).expect("connect");
    stream.set_write_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let writer = thread::spawn(move || {
        let mut stream = stream;
        let line = format!(
            "{}\n",
            json!({"id": 1, "op": "auth", "host": HOST, "token": token(json!({}))})
        );
        let mut sent = 0usize;
        while sent < 50 << 20 {
            if stream.write_all(line.as_bytes()).is_err() {
                return (sent, true, stream);
            }
            sent += line.len();
        }
        (sent, false, stream)
    });
    let (sent, blocked, _keep_open) = writer.join().expect("writer");
    assert!(
        blocked,
        "the daemon read {sent} bytes from a client that reads no replies"
    );

    for id in 1..=50 {
        probe.ping(id);
    }
    let rss_after = daemon.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[test]
fn sighup_reloads_and_a_bad_file_keeps_the_old_config() {
    let daemon = Daemon::start(&base_host_toml(HOST));
    let mut c = daemon.client();
    let t = token(json!({}));
    assert_eq!(
        c.call(json!({"id": 1, "op": "auth", "host": "new.example.com", "token": t}))["error"],
        "unknown-host"
    );

    let good = format!("{}{}", base_host_toml(HOST), base_host_toml("new.example.com"));
    std::fs::write(&daemon.config, Daemon::config_text(&daemon.socket, &good)).expect("write");
    daemon.signal("HUP");
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = c.call(json!({"id": 2, "op": "auth", "host": "new.example.com", "token": t}));
        if reply["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "reload did not take effect: {reply}");
        thread::sleep(Duration::from_millis(50));
    }

    std::fs::write(&daemon.config, "this is [not toml").expect("write");
    daemon.signal("HUP");
    thread::sleep(Duration::from_millis(300));
    for (id, host) in [(3, HOST), (4, "new.example.com")] {
        let reply = c.call(json!({"id": id, "op": "auth", "host": host, "token": t}));
        assert_eq!(reply["ok"], true, "{host} after a bad reload: {reply}");
    }
}

#[test]
fn sigterm_finishes_requests_in_flight_removes_the_socket_and_exits_0() {
    let (pem, sign) = rsa_key();
    let (url, gate) = slow_key_server(pem);
    let config = format!(
        "{}[hosts.\"rs.example.com\"]\napp_id = \"myapp\"\nasap_key_server = \"{url}\"\nasap_key_fetch_timeout = 60\n",
        base_host_toml(HOST)
    );
    let mut daemon = Daemon::start(&config);
    let mut c = daemon.client();
    let claims = json!({"iss": "myapp", "aud": "jitsi", "room": "*", "exp": now() + 3600});
    c.send(&json!({"id": "in-flight", "op": "auth", "host": "rs.example.com", "token": sign(&claims, "k")}));
    c.ping(1); // the slow request has been read
    daemon.signal("TERM");
    let deadline = Instant::now() + WAIT;
    while daemon.socket.exists() {
        assert!(Instant::now() < deadline, "socket still there after SIGTERM");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        UnixStream::connect(&daemon.socket).is_err(),
        "still accepting after SIGTERM"
    );
    gate.send(()).expect("release");
    let reply = c.recv();
    assert_eq!(reply["id"], "in-flight");
    assert_eq!(reply["ok"], true, "{reply}");
    let (status, stderr) = daemon.wait_exit();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(!stderr.contains(&sign(&claims, "k")[..40]), "a token in the log");
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("sidecar.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    assert!(socket.exists());
    let daemon = Daemon::start_at(dir, socket, &base_host_toml(HOST));
    daemon.client().ping(1);

    let config = daemon.dir.path().join("second.toml");
    std::fs::write(&config, Daemon::config_text(&daemon.socket, "")).expect("write");
    let out = Daemon::spawn(&config, &[]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "a run-time failure, not a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another daemon is listening"), "{stderr}");
    daemon.client().ping(2);
}

#[test]
fn a_socket_that_cannot_be_bound_exits_1_with_the_cause_and_a_bad_config_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, "").expect("write");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, Daemon::config_text(&blocker.join("ts.sock"), "")).expect("write");
    let out = Daemon::spawn(&config, &[]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let cause = format!(
        "error: {}: create directory: File exists (os error 17)",
        blocker.display()
    );
    assert!(stderr.contains(&cause), "the cause chain on one line: {stderr}");

    std::fs::write(&config, "[server]\nmax_inflight = 0\n").expect("write");
    let out = Daemon::spawn(&config, &[]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("[server] max_inflight: expected a whole number"),
        "{stderr}"
    );
}

#[test]
fn sighup_with_a_socket_flag_warns_only_when_server_settings_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("flag.sock");
    let config = dir.path().join("c.toml");
    let log = dir.path().join("daemon.log");
    // The file names another socket: the flag wins at start and must win at every reload too.
    let file = |extra: &str| {
        let text = format!(
            "{}{extra}{}",
            Daemon::config_text(&dir.path().join("file.sock"), ""),
            base_host_toml(HOST)
        );
        std::fs::write(&config, text).expect("write");
    };
    file("");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_token-sidecar"));
    cmd.args(["serve", "--config"])
        .arg(&config)
        .arg("--socket")
        .arg(&socket);
    cmd.env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    let mut child = cmd.spawn().expect("start");
    let pid = child.id();
    let guard = scopeguard(move || {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    });
    let deadline = Instant::now() + WAIT;
    while UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "daemon did not listen on {}",
            socket.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let reloads = || {
        std::fs::read_to_string(&log)
            .expect("log")
            .matches("SIGHUP: config reloaded")
            .count()
    };
    let hup = |expected: usize| {
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()
                .expect("kill")
                .success()
        );
        let deadline = Instant::now() + WAIT;
        while reloads() < expected {
            assert!(Instant::now() < deadline, "no reload logged");
            thread::sleep(Duration::from_millis(20));
        }
    };
    hup(1);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains("[server] changes"), "an unchanged file warned: {text}");

    file("max_inflight = 8\n");
    hup(2);
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        text.matches("[server] changes take effect at the next restart").count(),
        1,
        "{text}"
    );
    let mut c = Client::connect(&socket);
    c.ping(1);
    let _ = child.kill();
    let _ = child.wait();
    drop(guard);
}

/// Runs `f` when dropped (so a failed assertion does not leave a daemon behind).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// A room join uses the verdict of the login: not the token's age (docs/COMPATIBILITY.md).
#[test]
fn a_join_after_the_token_expired_uses_the_login() {
    let daemon = Daemon::start(&base_host_toml(HOST));
    let mut c = daemon.client();
    let t = token(json!({"exp": now() + 2}));
    let login = c.call(json!({"id": 1, "op": "auth", "host": HOST, "token": t}));
    assert_eq!(login["ok"], true, "{login}");
    let sha = login["token_sha256"].as_str().expect("token_sha256").to_owned();
    thread::sleep(Duration::from_secs(3));
    let room = |c: &mut Client, id: u64, extra: Value| {
        let mut request = json!({"id": id, "op": "room", "host": HOST, "room": "room1@conference.meet.example.com"});
        for (k, v) in extra.as_object().expect("object") {
            request[k] = v.clone();
        }
        c.call(request)
    };
    // The same token: remembered, so its claims decide and its exp does not.
    let joined = room(&mut c, 2, json!({"token": t}));
    assert_eq!(joined["ok"], true, "{joined}");
    let joined = room(&mut c, 3, json!({"token_sha256": sha}));
    assert_eq!(joined["ok"], true, "{joined}");
    let other = c.call(json!({"id": 4, "op": "room", "host": HOST, "token_sha256": sha,
        "room": "room2@conference.meet.example.com"}));
    assert_eq!(other["text"], "Room and token mismatched", "{other}");
    // A login is not re-used once the token expired.
    let again = c.call(json!({"id": 5, "op": "auth", "host": HOST, "token": t}));
    assert!(
        again["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Not acceptable by exp")),
        "{again}"
    );
}

#[test]
fn a_join_the_daemon_does_not_remember_uses_the_session_fields_or_the_token_without_its_times() {
    let daemon = Daemon::start(&base_host_toml(HOST));
    let mut c = daemon.client();
    let unknown = "ab".repeat(32);
    let session = json!({"jitsi_meet_room": "room1", "jitsi_meet_domain": HOST});
    let room = "room1@conference.meet.example.com";
    // After a restart: the shim's copy of what the login set.
    let r =
        c.call(json!({"id": 1, "op": "room", "host": HOST, "room": room, "token_sha256": unknown, "session": session}));
    assert_eq!(r["ok"], true, "{r}");
    let r = c.call(
        json!({"id": 2, "op": "room", "host": HOST, "token_sha256": unknown, "session": session,
        "room": "room2@conference.meet.example.com"}),
    );
    assert_eq!(r["text"], "Room and token mismatched", "{r}");
    // A session that had a token but no claims (a guest that sent ?token= to an anonymous host).
    let r = c.call(json!({"id": 3, "op": "room", "host": HOST, "room": room, "session": {}}));
    assert_eq!(r["jitmeet"], "room-name-does-not-match", "{r}");
    // Only a token, expired an hour ago, never seen: verified again, but not its times.
    let expired = token(json!({"exp": now() - 3600}));
    let r = c.call(json!({"id": 4, "op": "room", "host": HOST, "room": room, "token": expired}));
    assert_eq!(r["ok"], true, "{r}");
    let forged = hs256(
        &json!({"iss": "myapp", "aud": "jitsi", "sub": HOST, "room": "room1"}),
        "wrong",
    );
    let r = c.call(json!({"id": 5, "op": "room", "host": HOST, "room": room, "token": forged}));
    assert_eq!(r["text"], "Invalid signature", "{r}");
    // A token_sha256 alone that nobody remembers: the shim must send what it has.
    let r = c.call(json!({"id": 6, "op": "room", "host": HOST, "room": room, "token_sha256": unknown}));
    assert_eq!(r["error"], "unknown-token", "{r}");
}

#[test]
fn a_login_on_one_host_joins_rooms_under_another_hosts_rules() {
    let other = "[hosts.\"other.example.com\"]\napp_id = \"otherapp\"\napp_secret = \"another secret\"\nmuc_mapper_domain_base = \"meet.example.com\"\n";
    let daemon = Daemon::start(&format!("{}{other}", base_host_toml(HOST)));
    let mut c = daemon.client();
    let login = c.call(json!({"id": 1, "op": "auth", "host": HOST, "token": token(json!({}))}));
    let sha = login["token_sha256"].as_str().expect("token_sha256").to_owned();
    // other.example.com could not verify this token (another secret), but the session logged in.
    let r = c.call(
        json!({"id": 2, "op": "room", "host": "other.example.com", "token_sha256": sha,
        "room": "room1@conference.meet.example.com"}),
    );
    assert_eq!(r["ok"], true, "{r}");
}

#[test]
fn check_config_validates_and_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, base_host_toml(HOST)).expect("write");
    let out = Daemon::spawn(&good, &["--check-config"]).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[hosts.\"x\"]\napp_id = 5\n").expect("write");
    let out = Daemon::spawn(&bad, &["--check-config"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("app_id"));
}

/// The daemon's replies, byte for byte, for requests covering every op, refusal and error
/// (tests/golden/replies.txt). Refactors must not change what goes over the wire.
#[test]
fn golden_replies_are_byte_for_byte_the_recorded_ones() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/replies.txt");
    let text = std::fs::read_to_string(&golden).expect("read tests/golden/replies.txt");
    let hosts = "\
[hosts.\"meet.example.com\"]\napp_id = \"myapp\"\napp_secret = \"s3cret\"\nmuc_mapper_domain_base = \"meet.example.com\"\n\
[hosts.\"empty.example.com\"]\napp_id = \"myapp\"\napp_secret = \"s3cret\"\nallow_empty_token = true\nmuc_mapper_domain_base = \"empty.example.com\"\n\
[hosts.\"nodv.example.com\"]\napp_id = \"myapp\"\napp_secret = \"s3cret\"\nenable_domain_verification = false\n\
[hosts.\"nomuc.example.com\"]\napp_id = \"myapp\"\napp_secret = \"s3cret\"\n\
[hosts.\"asap.example.com\"]\napp_id = \"myapp\"\nasap_key_server = \"http://127.0.0.1:9/asap\"\n";
    let daemon = Daemon::start(hosts);
    let mut client = daemon.client();
    let update = std::env::var_os("GOLDEN_UPDATE").is_some();
    let mut out = String::new();
    let mut mismatches = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(request) = line.strip_prefix("> ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let expected = lines
            .next()
            .and_then(|l| l.strip_prefix("< "))
            .expect("a '< ' line after each '> ' line");
        client.send_raw(format!("{request}\n").as_bytes());
        let reply = client.recv_line();
        if reply != expected {
            mismatches.push(format!("request {request}\n  expected {expected}\n  got      {reply}"));
        }
        out.push_str(&format!("> {request}\n< {reply}\n"));
    }
    if update {
        std::fs::write(&golden, out).expect("write tests/golden/replies.txt");
        return;
    }
    assert!(
        mismatches.is_empty(),
        "{} replies changed:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn ping_says_whether_a_daemon_answers_on_the_socket() {
    let bin = env!("CARGO_BIN_EXE_token-sidecar");
    let daemon = Daemon::start("");
    let out = Command::new(bin)
        .args(["ping", "--socket"])
        .arg(&daemon.socket)
        .output()
        .expect("ping");
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.starts_with("token-sidecar "), "{printed}");

    // Nothing there: exit 1, naming the socket.
    let missing = daemon.dir.path().join("no.sock");
    let out = Command::new(bin)
        .args(["ping", "--socket"])
        .arg(&missing)
        .output()
        .expect("ping");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect to"),
        "{out:?}"
    );

    // Something that accepts and never answers: exit 1 after --timeout, not a hang.
    let silent = daemon.dir.path().join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&silent).expect("bind");
    let held = thread::spawn(move || listener.accept().map(|(stream, _)| stream));
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["ping", "--timeout", "0.3", "--socket"])
        .arg(&silent)
        .output()
        .expect("ping");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no answer on"), "{out:?}");
    assert!(started.elapsed() < WAIT, "ping waited {:?}", started.elapsed());
    drop(held.join());
}
