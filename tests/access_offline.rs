//! Access tokens checked without the daemon: `token-sidecar keygen` and `verify-access` as an
//! admin or API developer runs them, and `examples/api_service.rs` against a stand-in for the
//! daemon's HTTP side (a JWKS and an introspection answer this test controls).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use token_sidecar::clock::unix_now;
use token_sidecar::keys::{PublicJwk, SigningKey, generate, jwk_set};
use token_sidecar::token::encode;

use common::cli::run;
const ALGS: [(&str, Algorithm); 3] = [
    ("ES256", Algorithm::ES256),
    ("EdDSA", Algorithm::EdDSA),
    ("RS256", Algorithm::RS256),
];
const INTROSPECT_SECRET: &str = "introspect-s3cret";

// ---- running the CLI ----

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit status")
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {:?}; stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs keygen and returns its summary.
fn keygen(dir: &Path, alg: &str, kid: &str) -> Value {
    let out = run(
        &[
            "keygen",
            "--alg",
            alg,
            "--kid",
            kid,
            "--out",
            dir.to_str().expect("utf8 path"),
        ],
        None,
    );
    assert_eq!(code(&out), 0, "keygen: {}", String::from_utf8_lossy(&out.stderr));
    stdout_json(&out)
}

fn private_key(summary: &Value) -> SigningKey {
    let path = summary["private_key"].as_str().expect("private_key");
    SigningKey::from_pem(&std::fs::read(path).expect("read private key")).expect("private key")
}

/// An access-token-like JWT: header {alg, typ, kid?}, the claims the daemon puts in.
fn access_token(key: &SigningKey, alg: Algorithm, kid: Option<&str>, exp_in: i64, aud: Option<&str>) -> String {
    let now = unix_now();
    let mut header = json!({"alg": format!("{alg:?}"), "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    let mut claims = json!({
        "iss": "conference.meet.example.com", "iat": now, "exp": now + exp_in, "jti": "j1",
        "userJid": "alice@meet.example.com/res1", "host": "meet.example.com", "room": "room1",
        "occupant": {"room": "room1@conference.meet.example.com", "jid": "alice@meet.example.com/res1",
                     "nick": "abcd", "role": "moderator", "affiliation": "owner"},
    });
    if let Some(aud) = aud {
        claims["aud"] = aud.into();
    }
    encode(&header, &claims, key, alg).expect("sign")
}

// ---- a stand-in for the daemon's HTTP side ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Introspection {
    Active,
    Inactive,
    Broken,
}

struct StandInState {
    jwks: Value,
    introspection: Introspection,
    jwks_fetches: usize,
    /// (Authorization header, body) of each introspection request.
    introspected: Vec<(String, String)>,
}

/// A tiny HTTP server on 127.0.0.1: `GET /.well-known/jwks.json`, `POST /v1/introspect`. It runs
/// on its own thread and stops when dropped.
struct StandIn {
    addr: SocketAddr,
    state: Arc<Mutex<StandInState>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StandIn {
    fn start(jwks: Value) -> StandIn {
        let state = Arc::new(Mutex::new(StandInState {
            jwks,
            introspection: Introspection::Active,
            jwks_fetches: 0,
            introspected: Vec::new(),
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let shared = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                ready_tx.send(listener.local_addr().expect("addr")).expect("ready");
                let router = Router::new()
                    .route("/.well-known/jwks.json", get(serve_jwks))
                    .route("/v1/introspect", post(serve_introspect))
                    .with_state(shared);
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let addr = ready.recv_timeout(Duration::from_secs(10)).expect("stand-in started");
        StandIn {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, StandInState> {
        self.state.lock().expect("state")
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve_jwks(State(state): State<Arc<Mutex<StandInState>>>) -> Json<Value> {
    let mut state = state.lock().expect("state");
    state.jwks_fetches += 1;
    Json(state.jwks.clone())
}

async fn serve_introspect(State(state): State<Arc<Mutex<StandInState>>>, headers: HeaderMap, body: String) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut state = state.lock().expect("state");
    state.introspected.push((auth.clone(), body));
    if auth != format!("Bearer {INTROSPECT_SECRET}") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad secret"}))).into_response();
    }
    match state.introspection {
        Introspection::Active => Json(json!({"active": true, "iss": "conference.meet.example.com"})).into_response(),
        Introspection::Inactive => Json(json!({"active": false})).into_response(),
        Introspection::Broken => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

// ---- keygen ----

#[test]
fn keygen_writes_a_key_pair_for_each_algorithm() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, alg) in ALGS {
        let kid = format!("k-{name}");
        let summary = keygen(dir.path(), name, &kid);
        let private_path = dir.path().join(format!("{kid}.pem"));
        let public_path = dir.path().join(format!("{kid}.pub.pem"));
        assert_eq!(summary["kid"], kid.as_str());
        assert_eq!(summary["alg"], name);
        assert_eq!(summary["private_key"], private_path.to_str().expect("utf8"));
        assert_eq!(summary["public_key"], public_path.to_str().expect("utf8"));
        assert_eq!(summary["jwk"]["kid"], kid.as_str());
        assert_eq!(summary["jwk"]["alg"], name);
        assert_eq!(summary["jwk"]["use"], "sig");
        assert!(summary["jwk"].get("d").is_none(), "no private member in the JWK");

        let private = std::fs::read_to_string(&private_path).expect("private key");
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        let public = std::fs::read_to_string(&public_path).expect("public key");
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&private_path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}: private key mode");
        }
        // The JWK and the public file are the private key's public half.
        let key = SigningKey::from_pem(private.as_bytes()).expect("loads");
        let jwk = PublicJwk::from_signing_key(&key, &kid, alg).expect("jwk").to_value();
        assert_eq!(summary["jwk"], jwk);
        assert_eq!(
            PublicJwk::from_pem(public.as_bytes(), &kid, alg)
                .expect("public")
                .to_value(),
            jwk
        );
    }
}

#[test]
fn keygen_refuses_bad_kids_and_existing_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().to_str().expect("utf8");
    for kid in ["../escape", "a/b", "..", ""] {
        let out = run(&["keygen", "--alg", "ES256", "--kid", kid, "--out", out_dir], None);
        assert_eq!(code(&out), 2, "kid {kid:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--kid"), "{kid:?}");
    }
    assert!(!dir.path().parent().expect("parent").join("escape.pem").exists());
    assert_eq!(
        code(&run(
            &["keygen", "--alg", "HS256", "--kid", "h", "--out", out_dir],
            None
        )),
        2
    );

    let first = keygen(dir.path(), "EdDSA", "k1");
    let out = run(&["keygen", "--alg", "EdDSA", "--kid", "k1", "--out", out_dir], None);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    // The refused run left the first key alone.
    let key = private_key(&first);
    assert_eq!(
        PublicJwk::from_signing_key(&key, "k1", Algorithm::EdDSA)
            .expect("jwk")
            .to_value(),
        first["jwk"]
    );

    // Only the public file left over still blocks a new key.
    std::fs::remove_file(dir.path().join("k1.pem")).expect("remove");
    assert_eq!(
        code(&run(
            &["keygen", "--alg", "EdDSA", "--kid", "k1", "--out", out_dir],
            None
        )),
        2
    );

    let out = run(
        &["keygen", "--alg", "ES256", "--kid", "k1", "--out", out_dir, "--force"],
        None,
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(stdout_json(&out)["jwk"], first["jwk"]);
    assert_eq!(stdout_json(&out)["jwk"]["crv"], "P-256");

    // A missing --out directory is made.
    let nested = dir.path().join("a/b");
    keygen(&nested, "ES256", "k2");
    assert!(nested.join("k2.pem").exists());
}

#[test]
fn help_lists_every_flag() {
    for (command, flags) in [
        (
            "keygen",
            &["--alg", "--kid", "--out", "--force", "ES256", "EdDSA", "RS256"][..],
        ),
        (
            "verify-access",
            &[
                "--jwks",
                "--key",
                "--secret-file",
                "--aud",
                "--at",
                "--timeout",
                "TOKEN",
            ][..],
        ),
    ] {
        let out = run(&[command, "--help"], None);
        assert_eq!(code(&out), 0);
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in flags {
            assert!(help.contains(flag), "{command} --help lacks {flag}");
        }
    }
}

// ---- verify-access ----

#[test]
fn verify_access_with_a_key_file_and_a_jwks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stand_in = StandIn::start(json!({"keys": []}));
    let jwks_url = stand_in.url("/.well-known/jwks.json");
    let other = keygen(dir.path(), "ES256", "other");
    let other_key = private_key(&other);
    for (name, alg) in ALGS {
        let kid = format!("k-{name}");
        let summary = keygen(dir.path(), name, &kid);
        let key = private_key(&summary);
        let public = summary["public_key"].as_str().expect("public_key");
        let private = summary["private_key"].as_str().expect("private_key");
        stand_in.state().jwks = json!({"keys": [other["jwk"].clone(), summary["jwk"].clone()]});

        let good = access_token(&key, alg, Some(&kid), 60, Some("api"));
        for verifier in [["--key", public], ["--key", private], ["--jwks", jwks_url.as_str()]] {
            let what = format!("{name} {verifier:?}");
            let args = |extra: &[&'static str]| {
                let mut args = vec!["verify-access", verifier[0], verifier[1]];
                args.extend_from_slice(extra);
                args
            };
            // Accepted, the token from stdin (with `-` and without, trailing newline trimmed).
            for stdin_args in [&["-"][..], &[][..]] {
                let out = run(&args(stdin_args), Some(&format!("{good}\n")));
                assert_eq!(code(&out), 0, "{what}: {}", String::from_utf8_lossy(&out.stdout));
                let verdict = stdout_json(&out);
                assert_eq!(verdict["ok"], true, "{what}");
                assert_eq!(verdict["claims"]["occupant"]["nick"], "abcd", "{what}");
            }
            let out = run(&args(&["--aud", "api", "-"]), Some(&good));
            assert_eq!(code(&out), 0, "{what}: aud");

            let refusals: [(&str, String, &[&'static str], &str); 5] = [
                (
                    "expired",
                    access_token(&key, alg, Some(&kid), -5, None),
                    &[],
                    "the token has expired",
                ),
                (
                    "wrong key",
                    access_token(&other_key, Algorithm::ES256, Some(&kid), 60, None),
                    &[],
                    "",
                ),
                (
                    "HS256",
                    access_token(&SigningKey::hmac(b"s3cret"), Algorithm::HS256, Some(&kid), 60, None),
                    &[],
                    "alg HS256 is not accepted by this verifier",
                ),
                (
                    "aud mismatch",
                    good.clone(),
                    &["--aud", "another-api"],
                    "audience does not match",
                ),
                (
                    "not a JWS",
                    "abc.def".to_owned(),
                    &[],
                    "the token is not a well-formed JWS",
                ),
            ];
            for (case, token, extra, text) in refusals {
                let mut all = args(extra);
                all.push("-");
                let out = run(&all, Some(&token));
                assert_eq!(
                    code(&out),
                    1,
                    "{what}: {case}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let verdict = stdout_json(&out);
                assert_eq!(verdict["ok"], false, "{what}: {case}");
                let got = verdict["text"].as_str().expect("text");
                assert!(got.starts_with(text), "{what}: {case}: {got}");
                assert!(verdict.get("claims").is_none(), "{what}: {case}");
            }
        }
        // With the JWKS, the wrong key under its own kid is refused for its signature.
        let forged = access_token(&other_key, Algorithm::ES256, Some(&kid), 60, None);
        let out = run(&["verify-access", "--jwks", &jwks_url, "-"], Some(&forged));
        let text = stdout_json(&out)["text"].as_str().unwrap_or_default().to_owned();
        assert!(
            text == "signature does not match" || text.starts_with("the key with kid"),
            "{name}: {text}"
        );
        let unknown = access_token(&key, alg, Some("k9"), 60, None);
        let out = run(&["verify-access", "--jwks", &jwks_url, &unknown], None);
        assert_eq!(stdout_json(&out)["text"], "no key with kid \"k9\"");
    }
    // Each run fetched the JWKS once: 8 per algorithm in the loop, and 2 after it.
    assert_eq!(stand_in.state().jwks_fetches, 3 * 10);
}

#[test]
fn verify_access_with_a_secret_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_path = dir.path().join("secret");
    // The whole file is the secret, its trailing newline included (as access_token_key_file).
    std::fs::write(&secret_path, "s3cret\n").expect("write secret");
    let secret = secret_path.to_str().expect("utf8");
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = access_token(&SigningKey::hmac(b"s3cret\n"), alg, None, 60, Some("api"));
        let out = run(
            &["verify-access", "--secret-file", secret, "--aud", "api", "-"],
            Some(&token),
        );
        assert_eq!(code(&out), 0, "{alg:?}: {}", String::from_utf8_lossy(&out.stdout));
    }
    let without_newline = access_token(&SigningKey::hmac(b"s3cret"), Algorithm::HS256, None, 60, None);
    let out = run(&["verify-access", "--secret-file", secret, "-"], Some(&without_newline));
    assert_eq!(code(&out), 1);
    assert_eq!(stdout_json(&out)["text"], "signature does not match");

    let summary = keygen(dir.path(), "ES256", "k1");
    let es256 = access_token(&private_key(&summary), Algorithm::ES256, Some("k1"), 60, None);
    let out = run(&["verify-access", "--secret-file", secret, "-"], Some(&es256));
    assert_eq!(code(&out), 1);
    assert_eq!(
        stdout_json(&out)["text"],
        "alg ES256 is not accepted by this verifier (HS256, HS384, HS512 with a shared secret only)"
    );
}

#[test]
fn verify_access_usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = keygen(dir.path(), "ES256", "k1");
    let token = access_token(&private_key(&summary), Algorithm::ES256, Some("k1"), 60, None);
    let stand_in = StandIn::start(json!({"keys": []}));
    let private = summary["private_key"].as_str().expect("private");
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "not a key").expect("write");
    let garbage = garbage.to_str().expect("utf8");
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        format!("http://{addr}/.well-known/jwks.json")
    };
    let (missing, empty_jwks) = (stand_in.url("/missing"), stand_in.url("/.well-known/jwks.json"));
    let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        (vec!["--key", "/nonexistent/key.pem", "-"], Some(&token), "cannot read"),
        (vec!["--key", garbage, "-"], Some(&token), "not a PEM"),
        (vec!["--secret-file", private, "-"], Some(&token), "use --key"),
        (vec!["--jwks", &closed, "-"], Some(&token), "--jwks"),
        (vec!["--jwks", "file:///etc/passwd", "-"], Some(&token), "--jwks"),
        (vec!["--jwks", &missing, "-"], Some(&token), "HTTP 404"),
        (vec!["--jwks", &empty_jwks, "-"], Some(&token), "no keys"),
        (vec!["--key", private, "-"], Some("  \n"), "no token"),
        (
            vec!["--key", private, "--secret-file", private, "-"],
            Some(&token),
            "cannot be used with",
        ),
        (vec!["-"], Some(&token), "required"),
    ];
    for (args, stdin, text) in cases {
        let mut all = vec!["verify-access"];
        all.extend_from_slice(&args);
        let out = run(&all, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 2, "{args:?}: {stderr}");
        assert!(stderr.contains(text), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!stderr.contains("BEGIN"), "{args:?}: no key text in errors");
    }
}

// ---- the example API service ----

/// `target/<profile>/examples/api_service`, built now so a `cargo test --test access_offline`
/// does not run a stale or missing binary (cargo builds examples only for a whole `cargo test`).
fn api_service_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/deps/access_offline-<hash>
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        let target_dir = profile_dir.parent().expect("target dir");
        let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        build
            .args(["build", "--quiet", "--example", "api_service"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", target_dir);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some(profile) => {
                build.args(["--profile", profile]);
            }
        }
        let status = build.status().expect("run cargo build --example api_service");
        assert!(status.success(), "cargo build --example api_service failed");
        profile_dir.join("examples").join("api_service")
    })
}

/// A running api_service; killed when dropped.
struct ApiService {
    child: Child,
    addr: SocketAddr,
}

impl ApiService {
    fn start(jwks_url: &str, introspect_url: &str, secret_file: &Path, aud: Option<&str>) -> ApiService {
        let mut command = Command::new(api_service_binary());
        command.args([
            "--listen",
            "127.0.0.1:0",
            "--jwks",
            jwks_url,
            "--introspect",
            introspect_url,
            "--introspect-secret-file",
            secret_file.to_str().expect("utf8"),
        ]);
        if let Some(aud) = aud {
            command.args(["--aud", aud]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn api_service");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("api_service said {line:?}"));
        ApiService { child, addr }
    }

    /// `GET /whoami` with `Authorization: Bearer <token>`.
    fn get(&self, token: &str) -> (u16, Value) {
        self.whoami(Some(&format!("Bearer {token}")))
    }

    /// `GET /whoami` with this Authorization header: the status and the JSON body.
    fn whoami(&self, authorization: Option<&str>) -> (u16, Value) {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET /whoami HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
            self.addr
        )
        .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read answer");
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not HTTP: {answer:?}"));
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("body not JSON ({e}): {answer:?}"));
        (status, body)
    }
}

impl Drop for ApiService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn api_service_serves_current_participants_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("introspect.secret");
    std::fs::write(&secret_file, format!("{INTROSPECT_SECRET}\n")).expect("write secret");
    let key = SigningKey::from_pem(generate(Algorithm::ES256).expect("key").private_pem().as_bytes()).expect("key");
    let jwk = PublicJwk::from_signing_key(&key, "k1", Algorithm::ES256).expect("jwk");
    let stand_in = StandIn::start(jwk_set([&jwk]));
    let api = ApiService::start(
        &stand_in.url("/.well-known/jwks.json"),
        &stand_in.url("/v1/introspect"),
        &secret_file,
        Some("api"),
    );

    let token = access_token(&key, Algorithm::ES256, Some("k1"), 60, Some("api"));
    let (status, body) = api.get(&token);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"user": "alice@meet.example.com/res1", "room": "room1",
               "occupant": {"room": "room1@conference.meet.example.com", "jid": "alice@meet.example.com/res1",
                            "nick": "abcd", "role": "moderator", "affiliation": "owner"}})
    );
    {
        let state = stand_in.state();
        let (auth, form) = state.introspected.last().expect("introspected");
        assert_eq!(
            auth,
            &format!("Bearer {INTROSPECT_SECRET}"),
            "the secret file's newline is not sent"
        );
        assert_eq!(form, &format!("token={token}"));
    }

    // The holder left the room: the token is still valid, introspection says no.
    stand_in.state().introspection = Introspection::Inactive;
    assert_eq!(api.get(&token), (403, json!({"error": "not a current participant"})));
    stand_in.state().introspection = Introspection::Broken;
    assert_eq!(api.get(&token).0, 502);
    stand_in.state().introspection = Introspection::Active;

    // Refused offline, before introspection is asked.
    let asked = stand_in.state().introspected.len();
    let other = SigningKey::from_pem(generate(Algorithm::ES256).expect("key").private_pem().as_bytes()).expect("key");
    let hs256 = access_token(&SigningKey::hmac(b"x"), Algorithm::HS256, Some("k1"), 60, Some("api"));
    let bearer = |token: &str| Some(format!("Bearer {token}"));
    let unauthorized: [(Option<String>, &str); 7] = [
        (None, "missing bearer token"),
        (Some("Basic abc".into()), "missing bearer token"),
        (bearer("not-a-token"), "malformed token"),
        (
            bearer(&access_token(&key, Algorithm::ES256, Some("k1"), -1, Some("api"))),
            "token expired",
        ),
        (
            bearer(&access_token(&other, Algorithm::ES256, Some("k1"), 60, Some("api"))),
            "bad signature",
        ),
        (
            bearer(&access_token(&key, Algorithm::ES256, Some("k1"), 60, Some("other"))),
            "wrong audience",
        ),
        (bearer(&hs256), "algorithm not accepted"),
    ];
    for (auth, error) in unauthorized {
        assert_eq!(api.whoami(auth.as_deref()), (401, json!({"error": error})), "{error}");
    }
    assert_eq!(
        stand_in.state().introspected.len(),
        asked,
        "no introspection for refused tokens"
    );

    // A new key: the unknown kid makes the service fetch the JWKS again.
    let fetches = stand_in.state().jwks_fetches;
    let new_jwk = PublicJwk::from_signing_key(&other, "k2", Algorithm::ES256).expect("jwk");
    stand_in.state().jwks = jwk_set([&jwk, &new_jwk]);
    let rotated = access_token(&other, Algorithm::ES256, Some("k2"), 60, Some("api"));
    assert_eq!(api.get(&rotated).0, 200);
    assert_eq!(stand_in.state().jwks_fetches, fetches + 1);
    // Unknown kids right after do not fetch again (at most one fetch per 10 s).
    let unknown = access_token(&other, Algorithm::ES256, Some("k3"), 60, Some("api"));
    assert_eq!(api.get(&unknown), (401, json!({"error": "unknown signing key"})));
    assert_eq!(stand_in.state().jwks_fetches, fetches + 1);
}

#[test]
fn api_service_answers_502_when_introspection_is_unreachable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("introspect.secret");
    std::fs::write(&secret_file, INTROSPECT_SECRET).expect("write secret");
    let key = SigningKey::from_pem(generate(Algorithm::EdDSA).expect("key").private_pem().as_bytes()).expect("key");
    let jwk = PublicJwk::from_signing_key(&key, "ed", Algorithm::EdDSA).expect("jwk");
    let stand_in = StandIn::start(jwk_set([&jwk]));
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        format!("http://{addr}/v1/introspect")
    };
    let api = ApiService::start(&stand_in.url("/.well-known/jwks.json"), &closed, &secret_file, None);
    let token = access_token(&key, Algorithm::EdDSA, Some("ed"), 60, None);
    assert_eq!(api.get(&token), (502, json!({"error": "introspection unavailable"})));
    // A wrong secret is the service's misconfiguration, not the caller's fault: 502 as well.
    std::fs::write(&secret_file, "wrong").expect("write secret");
    let misconfigured = ApiService::start(
        &stand_in.url("/.well-known/jwks.json"),
        &stand_in.url("/v1/introspect"),
        &secret_file,
        None,
    );
    assert_eq!(misconfigured.get(&token).0, 502);
}
