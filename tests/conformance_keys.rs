//! docs/COMPATIBILITY.md cases 18–25 (public keys) and the algorithm-confusion guarantees, against a real
//! HTTP key server on 127.0.0.1.

mod common;

use std::time::Duration;

use common::http::{Response, TestServer};
use common::keys::{TestKey, hs_jwt};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use token_sidecar::config::{Config, HostSettings};
use token_sidecar::token::{Accepted, AuthRequest, Verifier};

const NOW: i64 = 1_800_000_000;
const KID: &str = "jitsi/key1";

fn settings(extra: &str) -> HostSettings {
    let text = format!(
        "[hosts.\"meet.example.com\"]\napp_id = \"myapp\"\nmuc_mapper_domain_base = \"meet.example.com\"\n{extra}"
    );
    Config::from_toml(&text).expect("config").hosts["meet.example.com"].clone()
}

fn claims() -> Value {
    json!({"iss": "myapp", "aud": "jitsi", "sub": "meet.example.com", "room": "room1", "exp": NOW + 3600})
}

fn key_path(kid: &str) -> String {
    format!(
        "/asap/{}.pem",
        token_sidecar::digest::hex(&token_sidecar::digest::sha256(kid.as_bytes()))
    )
}

async fn verify(verifier: &Verifier, token: &str) -> Result<(), String> {
    let request = AuthRequest {
        token: Some(token),
        ..AuthRequest::default()
    };
    match verifier.verify(&request, NOW).await {
        Ok(Accepted::Token(_)) => Ok(()),
        Ok(Accepted::Anonymous) => Err("anonymous".into()),
        Err(rejection) => Err(rejection.reason.to_string()),
    }
}

#[tokio::test]
async fn case_18_key_server_fetch_once() {
    let key = TestKey::rsa();
    let server = TestServer::start().await;
    server.set(&key_path(KID), Response::ok(key.public_pem()));
    let verifier = Verifier::new(settings(&format!("asap_key_server = \"{}\"", server.url("/asap")))).unwrap();
    let token = key.jwt(Some(KID), &claims());
    assert_eq!(verify(&verifier, &token).await, Ok(()));
    assert_eq!(server.requests(&key_path(KID)), 1);
    assert!(
        server
            .last_user_agent()
            .unwrap_or_default()
            .starts_with("token-sidecar/")
    );
    assert_eq!(verify(&verifier, &token).await, Ok(()), "second login");
    assert_eq!(server.total_requests(), 1, "the second login must not fetch");
}

#[tokio::test]
async fn case_19_trailing_slash_gives_one_slash() {
    // Difference 3: Jitsi's plugin requests asap//<hex>.pem.
    let key = TestKey::rsa();
    let server = TestServer::start().await;
    server.set(&key_path(KID), Response::ok(key.public_pem()));
    let verifier = Verifier::new(settings(&format!("asap_key_server = \"{}/\"", server.url("/asap")))).unwrap();
    assert_eq!(verify(&verifier, &key.jwt(Some(KID), &claims())).await, Ok(()));
    assert_eq!(server.requests(&key_path(KID)), 1);
}

#[tokio::test]
async fn case_20_header_problems() {
    let key = TestKey::rsa();
    let server = TestServer::start().await;
    server.set(&key_path(KID), Response::ok(key.public_pem()));
    let verifier = Verifier::new(settings(&format!("asap_key_server = \"{}\"", server.url("/asap")))).unwrap();
    let cases = [
        (key.jwt(None, &claims()), "'kid' claim is missing"),
        (
            hs_jwt(Algorithm::HS256, b"s3cret", Some(KID), &claims()),
            "'kid' claim only support with RS family",
        ),
        (
            key.jwt_with_header(&json!({"typ": "JWT", "kid": KID}), &claims()),
            "'alg' claim is missing",
        ),
        ("bm90IGpzb24.e30.c2ln".to_owned(), "bad token format"),
        ("%%%.e30.c2ln".to_owned(), "bad token format"),
        ("nodot".to_owned(), "Invalid token"),
    ];
    for (token, expected) in cases {
        assert_eq!(verify(&verifier, &token).await, Err(expected.to_owned()), "{expected}");
    }
    assert_eq!(
        server.total_requests(),
        0,
        "no fetch for a token refused before the key"
    );
}

#[tokio::test]
async fn case_21_not_found_is_cached_briefly() {
    // Difference 3: Jitsi's plugin fetches again for every login (2 requests).
    let key = TestKey::rsa();
    let server = TestServer::start().await;
    let verifier = Verifier::new(settings(&format!("asap_key_server = \"{}\"", server.url("/asap")))).unwrap();
    let token = key.jwt(Some(KID), &claims());
    for _ in 0..2 {
        assert_eq!(
            verify(&verifier, &token).await,
            Err("could not obtain public key".into())
        );
    }
    assert_eq!(server.requests(&key_path(KID)), 1);
}

#[tokio::test]
async fn case_22_a_slow_first_try_is_retried() {
    // Deliberate choice: a per-try timeout with retries, so a server that answers the retry wins.
    let key = TestKey::rsa();
    let server = TestServer::start().await;
    server.set(&key_path(KID), Response::hang());
    let verifier = Verifier::new(settings(&format!(
        "asap_key_server = \"{}\"\nasap_key_fetch_timeout = 0.5\nasap_key_fetch_retries = 2",
        server.url("/asap")
    )))
    .unwrap();
    let token = key.jwt(Some(KID), &claims());
    let login = verify(&verifier, &token);
    let fix = async {
        while server.requests(&key_path(KID)) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.set(&key_path(KID), Response::ok(key.public_pem()));
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(login, fix) })
        .await
        .expect("bounded");
    assert_eq!(result, Ok(()));
    assert_eq!(server.requests(&key_path(KID)), 2);
}

#[tokio::test]
async fn case_23_wrong_rs_variant() {
    let key = TestKey::rsa();
    let server = TestServer::start().await;
    server.set(&key_path(KID), Response::ok(key.public_pem()));
    let verifier = Verifier::new(settings(&format!("asap_key_server = \"{}\"", server.url("/asap")))).unwrap();
    let token = key.jwt_with_header(&json!({"alg": "RS384", "typ": "JWT", "kid": KID}), &claims());
    assert_eq!(verify(&verifier, &token).await, Err("Invalid or incorrect alg".into()));
    let verifier = Verifier::new(settings(&format!(
        "asap_key_server = \"{}\"\nsignature_algorithm = \"RS384\"",
        server.url("/asap")
    )))
    .unwrap();
    assert_eq!(verify(&verifier, &token).await, Ok(()));
}

#[tokio::test]
async fn case_24_secret_ignored_when_a_key_server_is_set() {
    let server = TestServer::start().await;
    let verifier = Verifier::new(settings(&format!(
        "app_secret = \"s3cret\"\nasap_key_server = \"{}\"",
        server.url("/asap")
    )))
    .unwrap();
    let token = hs_jwt(Algorithm::HS256, b"s3cret", None, &claims());
    assert_eq!(verify(&verifier, &token).await, Err("'kid' claim is missing".into()));
}

#[tokio::test]
async fn case_25_key_set_before_key_server() {
    let key = TestKey::rsa();
    let server = TestServer::start().await;
    server.set("/jwks", Response::ok(json!({"keys": [key.jwk("k1")]}).to_string()));
    let verifier = Verifier::new(settings(&format!(
        "cache_keys_url = \"{}\"\nasap_key_server = \"{}\"",
        server.url("/jwks"),
        server.url("/asap")
    )))
    .unwrap();
    assert_eq!(verify(&verifier, &key.jwt(Some("k1"), &claims())).await, Ok(()));
    assert_eq!(verify(&verifier, &key.jwt(Some("k1"), &claims())).await, Ok(()));
    assert_eq!(server.requests("/jwks"), 1);
    assert_eq!(server.requests(&key_path("k1")), 0, "no per-kid fetch");
}

#[tokio::test]
async fn key_set_alone_unknown_kid_is_a_clean_failure() {
    // Jitsi's plugin raises a Lua error (no SASL reply) when only cache_keys_url is set.
    let key = TestKey::rsa();
    let server = TestServer::start().await;
    server.set("/jwks", Response::ok(json!({"keys": [key.jwk("k1")]}).to_string()));
    let verifier = Verifier::new(settings(&format!("cache_keys_url = \"{}\"", server.url("/jwks")))).unwrap();
    assert_eq!(
        verify(&verifier, &key.jwt(Some("k2"), &claims())).await,
        Err("could not obtain public key".into())
    );
}

#[tokio::test]
async fn ec_and_eddsa_keys_from_a_key_set() {
    let p256 = TestKey::p256();
    let p384 = TestKey::p384();
    let ed = TestKey::ed25519();
    let server = TestServer::start().await;
    let set = json!({"keys": [p256.jwk("ec256"), p384.jwk("ec384"), ed.jwk("ed")]});
    server.set("/jwks", Response::ok(set.to_string()));
    let verifier = Verifier::new(settings(&format!(
        "cache_keys_url = \"{}\"\nsignature_algorithm = [\"ES256\", \"ES384\", \"EdDSA\"]",
        server.url("/jwks")
    )))
    .unwrap();
    for (key, kid) in [(&p256, "ec256"), (&p384, "ec384"), (&ed, "ed")] {
        assert_eq!(verify(&verifier, &key.jwt(Some(kid), &claims())).await, Ok(()), "{kid}");
    }
    // A P-256 key cannot verify an ES384 token even though ES384 is configured.
    let forged = p384.jwt(Some("ec256"), &claims());
    assert_eq!(verify(&verifier, &forged).await, Err("Invalid or incorrect alg".into()));
    // The default signature_algorithm (RS256) refuses an ES256 token.
    let rs_only = Verifier::new(settings(&format!("cache_keys_url = \"{}\"", server.url("/jwks")))).unwrap();
    assert_eq!(
        verify(&rs_only, &p256.jwt(Some("ec256"), &claims())).await,
        Err("Invalid or incorrect alg".into())
    );
}

#[tokio::test]
async fn a_public_key_never_becomes_an_hmac_secret() {
    // The classic confusion attack: HMAC-sign with the public key's PEM text as the secret.
    let key = TestKey::rsa();
    let server = TestServer::start().await;
    server.set(&key_path(KID), Response::ok(key.public_pem()));
    let verifier = Verifier::new(settings(&format!(
        "asap_key_server = \"{}\"\nsignature_algorithm = [\"RS256\", \"HS256\"]",
        server.url("/asap")
    )))
    .unwrap();
    let forged = hs_jwt(Algorithm::HS256, key.public_pem().as_bytes(), Some(KID), &claims());
    assert_eq!(
        verify(&verifier, &forged).await,
        Err("'kid' claim only support with RS family".into())
    );

    // Through the session's public_key path as well.
    let hs_host = Verifier::new(settings(
        "app_secret = \"s3cret\"\nsignature_algorithm = [\"RS256\", \"HS256\"]",
    ))
    .unwrap();
    let pem = key.public_pem();
    let request = AuthRequest {
        token: Some(&forged),
        public_key: Some(&pem),
        ..AuthRequest::default()
    };
    let err = hs_host.verify(&request, NOW).await.unwrap_err();
    assert_eq!(err.reason.to_string(), "Invalid or incorrect alg");
    // ... while an RS256 token signed by that key passes with the session key.
    let good = key.jwt(None, &claims());
    let request = AuthRequest {
        token: Some(&good),
        public_key: Some(&pem),
        ..AuthRequest::default()
    };
    assert!(hs_host.verify(&request, NOW).await.is_ok());
}

#[tokio::test]
async fn session_public_key_that_is_not_a_key() {
    let verifier = Verifier::new(settings("app_secret = \"s3cret\"")).unwrap();
    let token = hs_jwt(Algorithm::HS256, b"s3cret", None, &claims());
    let request = AuthRequest {
        token: Some(&token),
        public_key: Some("garbage"),
        ..AuthRequest::default()
    };
    let err = verifier.verify(&request, NOW).await.unwrap_err();
    assert_eq!(err.reason.to_string(), "Invalid signature");
    assert!(err.detail.unwrap_or_default().contains("public_key"));
}

#[tokio::test]
async fn a_thousand_logins_with_a_new_kid_make_one_request() {
    let key = TestKey::rsa();
    let server = TestServer::start().await;
    server.set(
        &key_path(KID),
        Response::ok(key.public_pem()).delay(Duration::from_millis(200)),
    );
    let verifier = std::sync::Arc::new(
        Verifier::new(settings(&format!("asap_key_server = \"{}\"", server.url("/asap")))).unwrap(),
    );
    let token = std::sync::Arc::new(key.jwt(Some(KID), &claims()));
    let logins: Vec<_> = (0..1000)
        .map(|_| {
            let (verifier, token) = (verifier.clone(), token.clone());
            tokio::spawn(async move { verify(&verifier, &token).await })
        })
        .collect();
    for login in logins {
        assert_eq!(login.await.unwrap(), Ok(()));
    }
    assert_eq!(server.total_requests(), 1);
}
