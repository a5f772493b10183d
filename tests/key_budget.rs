//! Key waits against the real daemon binary over its socket, driven as the shim drives it (one
//! connection, many requests in flight): a slow key server or key set holds up no login that needs
//! no fetch, fetches are bounded per host and a login over the bound is refused at once as a
//! temporary failure, random kids do not starve a real new kid, and kids are shown short.
//!
//! Every wait is bounded, and time limits are generous (a loaded 2-core machine must pass); the
//! measured times are printed (`cargo test --test key_budget -- --nocapture`).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{Response, TestServer};
use common::keys::{TestKey, hs_jwt};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use token_sidecar::clock::unix_now as now;
use token_sidecar::digest;
use token_sidecar::protocol::client::Client;

const WAIT: Duration = Duration::from_secs(20);
/// How long the slow key server and key set take to answer.
const SLOW: Duration = Duration::from_secs(3);
/// Fetch options under which a 3 s answer arrives: one try of 4 s and one retry, 8.1 s at worst,
/// within the 9.5 s a login through the shim may wait for keys.
const PATIENT: [(&str, u64); 2] = [("asap_key_fetch_timeout", 4), ("asap_key_fetch_retries", 1)];

/// Host options for a key source at `url` (`option` is `asap_key_server` or `cache_keys_url`),
/// patient enough for [`SLOW`], with `extra` options.
fn key_host(option: &str, url: &str, extra: Value) -> Value {
    let mut options = json!({"app_id": "myapp", option: url});
    for (name, value) in PATIENT {
        options[name] = value.into();
    }
    for (name, value) in extra.as_object().cloned().unwrap_or_default() {
        options[name] = value;
    }
    options
}
const HS_HOST: &str = "meet.example.com";
const RS_HOST: &str = "rs.example.com";
const SET_HOST: &str = "jwks.example.com";

/// `token-sidecar serve` on a socket in a temporary directory, its log in `log`.
struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    async fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("sidecar.sock");
        let config = dir.path().join("sidecar.toml");
        let log = dir.path().join("daemon.log");
        std::fs::write(
            &config,
            format!("[server]\nsocket = {:?}\n", socket.display().to_string()),
        )
        .expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start the daemon");
        let deadline = Instant::now() + WAIT;
        while tokio::net::UnixStream::connect(&socket).await.is_err() {
            assert!(Instant::now() < deadline, "the daemon did not listen within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Daemon {
            child,
            socket,
            log,
            _dir: dir,
        }
    }

    async fn client(&self) -> Conn {
        Conn(
            bounded("connect", Client::connect(&self.socket))
                .await
                .expect("connect"),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
}

/// One connection, as the shim keeps it.
struct Conn(Client);

impl Conn {
    async fn send_all(&mut self, requests: &[Value]) {
        let mut bytes = Vec::new();
        for request in requests {
            bytes.extend_from_slice(request.to_string().as_bytes());
            bytes.push(b'\n');
        }
        bounded("write", self.0.send_raw(&bytes)).await.expect("write");
    }

    async fn recv(&mut self) -> Value {
        bounded("read a reply", self.0.recv()).await.expect("a reply")
    }

    async fn call(&mut self, request: Value) -> Value {
        self.send_all(std::slice::from_ref(&request)).await;
        let reply = self.recv().await;
        assert_eq!(reply["id"], request["id"], "{reply}");
        reply
    }

    /// Registers the hosts, as the shim's `hello` does, and checks that all are accepted.
    async fn hello(&mut self, hosts: Value) {
        let reply = self
            .call(json!({"id": "hello", "op": "hello", "version": 1, "hosts": hosts}))
            .await;
        let names: Vec<&String> = hosts.as_object().expect("hosts").keys().collect();
        assert_eq!(reply["accepted"].as_array().map(Vec::len), Some(names.len()), "{reply}");
    }
}

fn claims(host: &str) -> Value {
    json!({"iss": "myapp", "aud": "jitsi", "sub": host, "room": "*", "exp": now() + 3600})
}

fn hs_token() -> String {
    hs_jwt(Algorithm::HS256, b"s3cret", None, &claims(HS_HOST))
}

fn auth(id: impl Into<Value>, host: &str, token: &str) -> Value {
    json!({"id": id.into(), "op": "auth", "host": host, "token": token, "prefix": "", "room": "room1", "user_agent": "test"})
}

/// The key server's path for `kid` under `/asap`.
fn key_path(kid: &str) -> String {
    format!("/asap/{}.pem", digest::hex(&digest::sha256(kid.as_bytes())))
}

fn hs_host_options() -> Value {
    json!({"app_id": "myapp", "app_secret": "s3cret", "muc_mapper_domain_base": HS_HOST})
}

/// A login that must wait for a key because a budget was spent: refused as a temporary failure.
fn is_temporary(reply: &Value) -> bool {
    reply["ok"] == false
        && reply["condition"] == "temporary-auth-failure"
        && reply["text"] == "could not obtain public key; try again"
}

fn is_refused_for_no_key(reply: &Value) -> bool {
    reply["ok"] == false && reply["condition"] == "not-allowed" && reply["text"] == "could not obtain public key"
}

/// Issue 10, item 2: a key server and a key set that take 3 s; 200 logins with distinct kids and
/// 100 for the key set on one connection; then an HS256 login and a room check on another host,
/// on the same connection, are answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_key_source_holds_up_no_login_that_needs_no_fetch() {
    let http = TestServer::start().await;
    let key = TestKey::rsa();
    let kids: Vec<String> = (0..200).map(|i| format!("slow-{i}")).collect();
    for kid in &kids {
        http.set(&key_path(kid), Response::ok(key.public_pem()).delay(SLOW));
    }
    http.set(
        "/jwks.json",
        Response::ok(json!({"keys": [key.jwk("set-k1")]}).to_string()).delay(SLOW),
    );
    let daemon = Daemon::start().await;
    let mut c = daemon.client().await;
    c.hello(json!({
        RS_HOST: key_host("asap_key_server", &http.url("/asap"), json!({})),
        SET_HOST: key_host("cache_keys_url", &http.url("/jwks.json"), json!({})),
        HS_HOST: hs_host_options(),
    }))
    .await;

    let mut slow = Vec::new();
    for (i, kid) in kids.iter().enumerate() {
        slow.push(auth(i, RS_HOST, &key.jwt(Some(kid), &claims(RS_HOST))));
    }
    for i in 0..100 {
        let kid = if i == 0 {
            "set-k1".to_owned()
        } else {
            format!("set-{i}")
        };
        slow.push(auth(1000 + i, SET_HOST, &key.jwt(Some(&kid), &claims(SET_HOST))));
    }
    let started = Instant::now();
    c.send_all(&slow).await;

    let sent = Instant::now();
    c.send_all(&[
        auth("hs", HS_HOST, &hs_token()),
        json!({"id": "room", "op": "room", "host": HS_HOST, "room": format!("room1@conference.{HS_HOST}"),
               "session": {"jitsi_meet_room": "*", "jitsi_meet_domain": HS_HOST}}),
    ])
    .await;
    let mut replies: HashMap<String, Value> = HashMap::new();
    let mut fast = None;
    while fast.is_none() {
        let reply = c.recv().await;
        let id = reply["id"].to_string().trim_matches('"').to_owned();
        replies.insert(id, reply);
        if replies.contains_key("hs") && replies.contains_key("room") {
            fast = Some(sent.elapsed());
        }
    }
    let fast = fast.expect("measured");
    println!(
        "HS256 login and room check behind 300 logins waiting for 3 s key sources: answered in {:.1} ms",
        fast.as_secs_f64() * 1000.0
    );
    assert_eq!(replies["hs"]["ok"], true, "{}", replies["hs"]);
    assert_eq!(replies["room"]["ok"], true, "{}", replies["room"]);
    // The goal is 50 ms (measured well under it); 1 s keeps a loaded machine from failing the test,
    // and is still a third of the key server's 3 s.
    assert!(fast < Duration::from_secs(1), "answered in {fast:?}");

    // The waiting logins are all answered: those the unknown-kid rate let fetch (10 at once, 10 a
    // second) with the key after 3 s, the others as a temporary failure after waiting up to 1 s
    // for the rate; the key set's after its one load.
    while replies.len() < 302 {
        let reply = c.recv().await;
        let id = reply["id"].to_string().trim_matches('"').to_owned();
        replies.insert(id, reply);
    }
    let all = started.elapsed();
    let rs: Vec<&Value> = (0..200).map(|i| &replies[&i.to_string()]).collect();
    let accepted = rs.iter().filter(|r| r["ok"] == true).count();
    assert!(
        rs.iter().all(|r| r["ok"] == true || is_temporary(r)),
        "{:?}",
        rs.iter().find(|r| !(r["ok"] == true || is_temporary(r)))
    );
    assert!(accepted >= 10, "only {accepted} of 200 fetched");
    assert_eq!(replies["1000"]["ok"], true, "{}", replies["1000"]);
    for i in 1001..1100 {
        let reply = &replies[&i.to_string()];
        assert!(is_refused_for_no_key(reply), "{reply}");
    }
    assert_eq!(http.requests("/jwks.json"), 1, "one load of the key set for 100 logins");
    println!(
        "the 300 slow logins: all answered after {:.2} s ({accepted} of the key server's 200 accepted, the rest a temporary failure)",
        all.as_secs_f64()
    );
}

/// Issue 10, item 2: at most 256 fetches per host; the login that would start one more is
/// refused at once with `temporary-auth-failure`, and the others still get their keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_fetch_budget_a_login_is_refused_at_once_as_a_temporary_failure() {
    let http = TestServer::start().await;
    let key = TestKey::rsa();
    let budget = token_sidecar::keys::KEY_WAITS_PER_HOST;
    let total = budget + 44;
    let kids: Vec<String> = (0..total).map(|i| format!("budget-{i}")).collect();
    for kid in &kids {
        http.set(&key_path(kid), Response::ok(key.public_pem()).delay(SLOW));
    }
    let daemon = Daemon::start().await;
    let mut c = daemon.client().await;
    // No unknown-kid limit to speak of: every kid gets a fetch, and the fetch budget binds.
    c.hello(json!({RS_HOST: key_host("asap_key_server", &http.url("/asap"), json!({"asap_key_fetch_rate": 10_000}))}))
        .await;
    let requests: Vec<Value> = kids
        .iter()
        .enumerate()
        .map(|(i, kid)| auth(i, RS_HOST, &key.jwt(Some(kid), &claims(RS_HOST))))
        .collect();
    let started = Instant::now();
    c.send_all(&requests).await;

    let mut refused = Vec::new();
    while refused.len() < total - budget {
        let reply = c.recv().await;
        assert!(is_temporary(&reply), "the first replies are the refusals: {reply}");
        assert!(
            reply["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&format!("{budget} key fetches of this host are already under way"))),
            "{reply}"
        );
        refused.push(reply);
    }
    let refused_after = started.elapsed();
    println!(
        "{} logins past the budget of {budget} fetches: refused within {:.1} ms",
        refused.len(),
        refused_after.as_secs_f64() * 1000.0
    );
    assert!(refused_after < SLOW, "refused after {refused_after:?}, not at once");

    for _ in 0..budget {
        let reply = c.recv().await;
        assert_eq!(reply["ok"], true, "{reply}");
    }
    let stats = c.call(json!({"id": "stats", "op": "stats"})).await;
    let counters = &stats["hosts"][RS_HOST]["key_server"];
    assert_eq!(counters["busy"], total - budget, "{stats}");
    assert_eq!(counters["misses"], budget, "{stats}");
}

/// Issue 10, item 3: random kids spend the unknown-kid budget, but a real new kid right after them
/// still logs in (it waits a moment for the rate), and a lookup the rate refuses is a temporary
/// failure, not the permanent-looking `could not obtain public key`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kids_do_not_starve_a_real_new_kid() {
    let http = TestServer::start().await;
    let key = TestKey::rsa();
    for kid in ["real-1", "real-2"] {
        http.set(&key_path(kid), Response::ok(key.public_pem()));
    }
    let daemon = Daemon::start().await;
    let mut c = daemon.client().await;
    // asap_key_fetch_rate is left at its default: 10 a second, bursts of 10.
    c.hello(json!({RS_HOST: {"app_id": "myapp", "asap_key_server": http.url("/asap")}}))
        .await;
    let random = |from: usize, n: usize| -> Vec<Value> {
        (from..from + n)
            .map(|i| auth(i, RS_HOST, &key.jwt(Some(&format!("random-{i}")), &claims(RS_HOST))))
            .collect()
    };

    // Ten random kids in one burst: every one is fetched (404), and the burst is spent.
    c.send_all(&random(0, 10)).await;
    for _ in 0..10 {
        let reply = c.recv().await;
        assert!(is_refused_for_no_key(&reply), "{reply}");
    }
    let started = Instant::now();
    let reply = c
        .call(auth("real-1", RS_HOST, &key.jwt(Some("real-1"), &claims(RS_HOST))))
        .await;
    println!(
        "a real new kid after 10 random ones: accepted in {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(reply["ok"], true, "{reply}");

    // Forty more at once: the rate lets about 10 to 20 fetch within the second each may wait;
    // the others are refused as a temporary failure.
    c.send_all(&random(100, 40)).await;
    let mut temporary = 0;
    for _ in 0..40 {
        let reply = c.recv().await;
        if is_temporary(&reply) {
            assert!(
                reply["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("asap_key_fetch_rate")),
                "{reply}"
            );
            temporary += 1;
        } else {
            assert!(is_refused_for_no_key(&reply), "{reply}");
        }
    }
    println!("40 random kids at once: {temporary} refused as temporary failures, the others fetched (404)");
    assert!(temporary >= 10, "only {temporary} of 40 refused by the rate");
    let reply = c
        .call(auth("real-2", RS_HOST, &key.jwt(Some("real-2"), &claims(RS_HOST))))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
}

/// Issue 10, item 7: a kid is shown cut to 16 characters in the refusal's detail and in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_kid_is_shown_short_in_refusals_and_logs() {
    let http = TestServer::start().await;
    let key = TestKey::rsa();
    let daemon = Daemon::start().await;
    let mut c = daemon.client().await;
    c.hello(json!({RS_HOST: {"app_id": "myapp", "asap_key_server": http.url("/asap")}}))
        .await;
    let kid = "k".repeat(5000);
    let reply = c
        .call(auth("long", RS_HOST, &key.jwt(Some(&kid), &claims(RS_HOST))))
        .await;
    assert!(is_refused_for_no_key(&reply), "{reply}");
    let detail = reply["detail"].as_str().expect("detail");
    let shown = format!("\"{}\"…", "k".repeat(16));
    assert!(detail.contains(&shown), "{detail}");
    assert!(!detail.contains(&"k".repeat(17)), "{detail}");

    let deadline = Instant::now() + WAIT;
    while !daemon.log().contains("login refused") {
        assert!(Instant::now() < deadline, "no refusal logged: {}", daemon.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = daemon.log();
    assert!(log.contains(&"k".repeat(16)), "{log}");
    assert!(!log.contains(&"k".repeat(17)), "the whole kid in the log: {log}");
}

/// Issue 10, item 2: a host whose key fetch may outlast the shim's timeout is refused in `hello`,
/// naming the options.
#[tokio::test]
async fn a_key_fetch_longer_than_the_shim_waits_is_refused() {
    let daemon = Daemon::start().await;
    let mut c = daemon.client().await;
    let reply = c
        .call(json!({"id": 1, "op": "hello", "version": 1, "hosts": {
            RS_HOST: {"app_id": "myapp", "asap_key_server": "https://keys.example.com/asap", "asap_key_fetch_timeout": 5},
            HS_HOST: hs_host_options(),
        }}))
        .await;
    assert_eq!(reply["accepted"], json!([HS_HOST]), "{reply}");
    let error = reply["errors"][RS_HOST].as_str().expect("an error");
    for needle in [
        "`asap_key_fetch_timeout` (5 s)",
        "`asap_key_fetch_retries` (2)",
        "15.3 s",
        "`token_sidecar_timeout`",
    ] {
        assert!(error.contains(needle), "{needle:?} not in {error}");
    }
}
