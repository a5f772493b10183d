//! The daemon over its real socket: the `token-sidecar serve` binary on a temporary socket, driven
//! the way the Prosody shim drives it. Every wait is bounded, so a broken daemon fails a test
//! instead of hanging it; no test depends on how fast this machine is.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
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
use token_sidecar::token::base64url;

const HOST: &str = "meet.example.com";
const WAIT: Duration = Duration::from_secs(20);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn hs256(claims: &Value, secret: &str) -> String {
    hs_jwt(Algorithm::HS256, secret.as_bytes(), None, claims)
}

/// Base token T of REFERENCE §10, with `extra` claims merged in.
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

struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream.set_write_timeout(Some(WAIT)).expect("timeout");
        Client {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    fn send(&mut self, request: &Value) {
        let mut line = request.to_string().into_bytes();
        line.push(b'\n');
        self.send_raw(&line);
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read a reply in time");
        assert!(n > 0, "connection closed while waiting for a reply");
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
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let der = pair.public_key().as_der().expect("der");
    let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", der.as_ref().to_vec()));
    let sign = move |claims: &Value, kid: &str| {
        let input = format!(
            "{}.{}",
            base64url(json!({"alg": "RS256", "typ": "JWT", "kid": kid}).to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .expect("sign");
        format!("{input}.{}", base64url(&sig))
    };
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

    // auth: accepted, with claims and the session fields of REFERENCE §5.
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
    assert_eq!(reply["fingerprint"], token_sidecar::fingerprint(&t));
    assert!(reply["exp"].is_i64());
    let sha = reply["token_sha256"].as_str().expect("token_sha256").to_owned();
    assert_eq!(sha.len(), 64);

    // auth: refused with the reference's texts.
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
    assert_eq!(reply["error"], "not-implemented", "{reply}");

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
        (b"{\"id\":1,\"op\":\n", Value::Null, "not JSON"),
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
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another daemon is listening"), "{stderr}");
    daemon.client().ping(2);
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
        let mut reply = String::new();
        client.reader.read_line(&mut reply).expect("a reply");
        let reply = reply.strip_suffix('\n').expect("a whole line");
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
