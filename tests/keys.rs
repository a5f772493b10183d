//! Key sources against a real HTTP server on loopback: the ASAP key server (`KeyServer`) and
//! the pre-fetched key set (`JwksSource`), plus PEM/JWK parsing through the public API.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::{Response, TestServer};
use common::keys::{TestKey, WEAK_RSA_1024_PEM};
use serde_json::json;
use token_sidecar::keys::{
    FetchSettings, JwksSource, JwksTiming, KeyError, KeyKind, KeyServer, KeySourceError, VerifyingKey,
};

const MSG: &[u8] = b"header.payload";

fn settings() -> FetchSettings {
    FetchSettings {
        ttl: Duration::from_secs(3600),
        stale_if_error: Duration::from_secs(3600),
        negative_ttl: Duration::from_secs(10),
        timeout: Duration::from_millis(500),
        retries: 2,
        cache_size: 128,
        unknown_kid_rate: 1000,
    }
}

/// The path part of the key server URL for `kid`.
fn path_of(server: &KeyServer, http: &TestServer, kid: &str) -> String {
    server
        .url_for(kid)
        .strip_prefix(&http.base())
        .expect("URL under the test server")
        .to_string()
}

/// Whether `key` verifies a fresh signature by `signer`.
fn verifies(key: &VerifyingKey, signer: &TestKey) -> bool {
    key.verify(signer.alg(), MSG, &signer.sign(signer.alg(), MSG))
}

/// Waits (up to 5 s) until `cond` holds.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

// ---------------------------------------------------------------------------------------------
// Parsing through the public API

#[test]
fn pem_kinds_and_certificates() {
    let rsa = TestKey::rsa();
    let p256 = TestKey::p256();
    let p384 = TestKey::p384();
    let ed = TestKey::ed25519();
    for (key, kind) in [
        (&rsa, KeyKind::Rsa { bits: 2048 }),
        (&p256, KeyKind::EcP256),
        (&p384, KeyKind::EcP384),
        (&ed, KeyKind::Ed25519),
    ] {
        let padded = format!("\n  {}\n\n", key.public_pem());
        let from_pem = VerifyingKey::from_pem(padded.as_bytes()).expect("public PEM");
        assert_eq!(from_pem.kind(), kind);
        assert!(verifies(&from_pem, key), "{kind:?}");

        let cert = key.certificate_pem("keys test");
        let from_cert = VerifyingKey::from_pem(cert.as_bytes()).expect("certificate PEM");
        assert_eq!(from_cert.kind(), kind);
        assert_eq!(from_cert.fingerprint(), from_pem.fingerprint());
        assert!(verifies(&from_cert, key), "{kind:?} from certificate");

        let from_jwk = VerifyingKey::from_jwk(&key.jwk("k")).expect("JWK");
        assert_eq!(from_jwk.fingerprint(), from_pem.fingerprint());
        assert!(verifies(&from_jwk, key), "{kind:?} from JWK");

        let private =
            VerifyingKey::from_pem(key.private_pkcs8_pem().as_bytes()).expect_err("a private key is not accepted");
        assert!(matches!(private, KeyError::BadKey(_)), "{private:?}");
    }
    let pkcs1 = VerifyingKey::from_pem(rsa.rsa_public_pkcs1_pem().as_bytes()).expect("PKCS#1");
    assert!(verifies(&pkcs1, &rsa));
    // Another key's signature does not verify.
    let other = TestKey::p256();
    let key = VerifyingKey::from_pem(p256.public_pem().as_bytes()).expect("pem");
    assert!(!verifies(&key, &other));
}

#[test]
fn damaged_certificates_are_errors_not_panics() {
    let der = TestKey::p256().certificate_der("damaged");
    for len in 0..der.len() {
        let pem = common::keys::pem_encode("CERTIFICATE", &der[..len]);
        let err = VerifyingKey::from_pem(pem.as_bytes()).expect_err("truncated certificate");
        assert!(matches!(err, KeyError::BadKey(_)), "{len}: {err:?}");
    }
    for i in 0..der.len() {
        let mut flipped = der.clone();
        flipped[i] ^= 0xff;
        let pem = common::keys::pem_encode("CERTIFICATE", &flipped);
        // Any answer will do, as long as there is one.
        let _ = VerifyingKey::from_pem(pem.as_bytes());
    }
}

#[test]
fn weak_rsa_key_is_refused() {
    assert_eq!(
        VerifyingKey::from_pem(WEAK_RSA_1024_PEM.as_bytes()).expect_err("weak"),
        KeyError::WeakKey { bits: 1024 }
    );
}

// ---------------------------------------------------------------------------------------------
// KeyServer

#[test]
fn url_building() {
    // sha256("abc")
    let hash = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    for base in [
        "https://keys.example.com/asap",
        "https://keys.example.com/asap/",
        "https://keys.example.com/asap///",
    ] {
        let server = KeyServer::new(base, settings()).expect("valid base");
        assert_eq!(
            server.url_for("abc"),
            format!("https://keys.example.com/asap/{hash}.pem")
        );
    }
    let server = KeyServer::new("http://127.0.0.1:9/", settings()).expect("valid base");
    let kid = "vpaas-magic-cookie-1234/abcdef";
    let expected = token_sidecar::digest::hex(&token_sidecar::digest::sha256(kid.as_bytes()));
    assert_eq!(server.url_for(kid), format!("http://127.0.0.1:9/{expected}.pem"));

    let file = KeyServer::new("file:///etc/prosody/keys", settings()).err();
    assert_eq!(file, Some(KeySourceError::Scheme { scheme: "file".into() }));
    let query = KeyServer::new("https://keys.example.com/asap?x=1", settings()).err();
    assert!(matches!(query, Some(KeySourceError::Query { .. })), "{query:?}");
    for bad in ["", "keys.example.com/asap", "ftp://keys.example.com/", "http://"] {
        assert!(KeyServer::new(bad, settings()).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn fetched_once_then_cached() {
    let http = TestServer::start().await;
    let server = KeyServer::new(&format!("{}/keys/", http.base()), settings()).expect("server");
    let signer = TestKey::rsa();
    let path = path_of(&server, &http, "jitsi/key1");
    assert!(path.starts_with("/keys/") && !path.starts_with("/keys//"), "{path}");
    http.set(&path, Response::ok(signer.public_pem()));

    let first = server.key("jitsi/key1").await.expect("key");
    let second = server.key("jitsi/key1").await.expect("key");
    assert!(Arc::ptr_eq(&first, &second));
    assert!(verifies(&first, &signer));
    assert_eq!(http.requests(&path), 1);
    let stats = server.stats();
    assert_eq!((stats.http_requests, stats.misses, stats.hits), (1, 1, 1));
    let agent = http.last_user_agent().expect("user agent sent");
    assert_eq!(agent, format!("token-sidecar/{}", env!("CARGO_PKG_VERSION")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fetch_for_a_thousand_concurrent_lookups() {
    let http = TestServer::start().await;
    let server = Arc::new(KeyServer::new(&http.base(), settings()).expect("server"));
    let signer = TestKey::p256();
    let path = path_of(&server, &http, "burst");
    http.set(
        &path,
        Response::ok(signer.public_pem()).delay(Duration::from_millis(200)),
    );
    let lookups: Vec<_> = (0..1000)
        .map(|_| {
            let server = Arc::clone(&server);
            tokio::spawn(async move { server.key("burst").await })
        })
        .collect();
    for lookup in futures::future::join_all(lookups).await {
        let key = lookup.expect("task").expect("key");
        assert_eq!(key.kind(), KeyKind::EcP256);
    }
    assert_eq!(http.requests(&path), 1);
    let stats = server.stats();
    assert_eq!((stats.http_requests, stats.misses, stats.hits), (1, 1, 999));
}

#[tokio::test]
async fn not_found_is_negative_cached() {
    let http = TestServer::start().await;
    let server = KeyServer::new(
        &http.base(),
        FetchSettings {
            negative_ttl: Duration::from_millis(600),
            ..settings()
        },
    )
    .expect("server");
    let path = path_of(&server, &http, "missing");
    let url = server.url_for("missing");
    let expected = KeyError::Status { url, status: 404 };

    assert_eq!(server.key("missing").await.expect_err("404"), expected);
    assert_eq!(server.key("missing").await.expect_err("404"), expected);
    assert_eq!(http.requests(&path), 1, "404 is not retried, then remembered");
    assert_eq!(server.stats().negative_hits, 1);
    assert!(expected.to_string().contains("HTTP 404"));

    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(server.key("missing").await.expect_err("404"), expected);
    assert_eq!(http.requests(&path), 2, "asked again after negative_ttl");

    // Once the key appears (and the negative entry has expired) it is found.
    let signer = TestKey::ed25519();
    http.set(&path, Response::ok(signer.public_pem()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(verifies(&server.key("missing").await.expect("key"), &signer));
}

#[tokio::test]
async fn server_error_is_retried() {
    let http = TestServer::start().await;
    let server = KeyServer::new(&http.base(), settings()).expect("server");
    let path = path_of(&server, &http, "k");
    http.set(&path, Response::status(500));
    let err = server.key("k").await.expect_err("500");
    assert!(matches!(err, KeyError::Status { status: 500, .. }), "{err:?}");
    assert_eq!(http.requests(&path), 3, "one try and two retries");
    assert_eq!(server.stats().http_requests, 3);
    // Remembered: no more requests within negative_ttl.
    assert!(server.key("k").await.is_err());
    assert_eq!(http.requests(&path), 3);
}

#[tokio::test]
async fn forbidden_is_not_retried() {
    let http = TestServer::start().await;
    let server = KeyServer::new(&http.base(), settings()).expect("server");
    let path = path_of(&server, &http, "k");
    http.set(&path, Response::status(403));
    let err = server.key("k").await.expect_err("403");
    assert!(matches!(err, KeyError::Status { status: 403, .. }), "{err:?}");
    assert_eq!(http.requests(&path), 1);
}

#[tokio::test]
async fn slow_answers_time_out_with_retries() {
    let http = TestServer::start().await;
    let timeout = Duration::from_millis(300);
    let server = KeyServer::new(
        &http.base(),
        FetchSettings {
            timeout,
            retries: 1,
            ..settings()
        },
    )
    .expect("server");
    let signer = TestKey::p256();
    let slow = path_of(&server, &http, "slow");
    http.set(&slow, Response::ok(signer.public_pem()).delay(Duration::from_secs(5)));
    let hung = path_of(&server, &http, "hung");
    http.set(&hung, Response::hang());

    for (kid, path) in [("slow", &slow), ("hung", &hung)] {
        let started = Instant::now();
        let err = server.key(kid).await.expect_err("timeout");
        let elapsed = started.elapsed();
        assert!(
            matches!(
                err,
                KeyError::Timeout {
                    tries: 2,
                    timeout_ms: 300,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(http.requests(path), 2, "{kid}: one try and one retry");
        assert!(elapsed < timeout * 2 * 10, "{kid}: took {elapsed:?}");
    }
}

#[tokio::test]
async fn unreachable_server_is_a_connection_error() {
    // Bind and drop a listener to find a port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let server = KeyServer::new(
        &format!("http://127.0.0.1:{port}"),
        FetchSettings {
            retries: 1,
            ..settings()
        },
    )
    .expect("server");
    let err = server.key("k").await.expect_err("refused");
    assert!(matches!(err, KeyError::Connect { .. }), "{err:?}");
    assert_eq!(server.stats().http_requests, 2);
}

#[tokio::test]
async fn garbage_body_is_an_error_and_not_cached_as_a_key() {
    let http = TestServer::start().await;
    let server = KeyServer::new(
        &http.base(),
        FetchSettings {
            negative_ttl: Duration::from_millis(300),
            ..settings()
        },
    )
    .expect("server");
    let path = path_of(&server, &http, "k");
    for body in [
        &b"<html>it works</html>"[..],
        b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
        WEAK_RSA_1024_PEM.as_bytes(),
    ] {
        http.set(&path, Response::ok(body));
        tokio::time::sleep(Duration::from_millis(350)).await;
        let before = http.requests(&path);
        let err = server.key("k").await.expect_err("bad body");
        assert!(matches!(err, KeyError::BadBody { .. }), "{err:?}");
        assert_eq!(http.requests(&path), before + 1, "a bad body is not retried");
    }
    let weak = server.key("k").await.expect_err("still refused");
    assert!(weak.to_string().contains("1024 bits"), "{weak}");

    for response in [Response::status(204), Response::ok(Vec::new())] {
        http.set(&path, response);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let err = server.key("k").await.expect_err("no body");
        assert!(matches!(err, KeyError::BadBody { .. }), "{err:?}");
    }

    // A real key is used as soon as the failure has expired.
    let signer = TestKey::rsa();
    http.set(&path, Response::ok(signer.public_pem()));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(verifies(&server.key("k").await.expect("key"), &signer));
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let http = TestServer::start().await;
    let server = KeyServer::new(&http.base(), settings()).expect("server");
    let path = path_of(&server, &http, "big");
    http.set(&path, Response::ok(vec![b'A'; 65 * 1024]));
    let err = server.key("big").await.expect_err("too big");
    assert!(matches!(err, KeyError::BadBody { .. }), "{err:?}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let http = TestServer::start().await;
    let server = KeyServer::new(&http.base(), settings()).expect("server");
    let path = path_of(&server, &http, "moved");
    let signer = TestKey::rsa();
    http.set("/elsewhere.pem", Response::ok(signer.public_pem()));
    http.set(&path, Response::redirect(&http.url("/elsewhere.pem")));
    let err = server.key("moved").await.expect_err("redirect");
    assert!(matches!(err, KeyError::Status { status: 302, .. }), "{err:?}");
    assert_eq!(http.requests(&path), 1);
    assert_eq!(http.requests("/elsewhere.pem"), 0);
}

#[tokio::test]
async fn expired_key_is_refetched_after_ttl() {
    let http = TestServer::start().await;
    let server = KeyServer::new(
        &http.base(),
        FetchSettings {
            ttl: Duration::from_secs(1),
            ..settings()
        },
    )
    .expect("server");
    let path = path_of(&server, &http, "rotating");
    let old = TestKey::rsa();
    let new = TestKey::rsa();
    http.set(&path, Response::ok(old.public_pem()));
    assert!(verifies(&server.key("rotating").await.expect("key"), &old));

    http.set(&path, Response::ok(new.public_pem()));
    let cached = server.key("rotating").await.expect("key");
    assert!(verifies(&cached, &old), "still the cached key within ttl");
    assert_eq!(http.requests(&path), 1);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refreshed = server.key("rotating").await.expect("key");
    assert!(verifies(&refreshed, &new));
    assert!(!verifies(&refreshed, &old));
    assert_eq!(http.requests(&path), 2);
}

#[tokio::test]
async fn stale_key_is_served_while_the_server_fails() {
    let http = TestServer::start().await;
    let server = KeyServer::new(
        &http.base(),
        FetchSettings {
            ttl: Duration::from_secs(1),
            stale_if_error: Duration::from_secs(60),
            ..settings()
        },
    )
    .expect("server");
    let path = path_of(&server, &http, "k");
    let signer = TestKey::p384();
    http.set(&path, Response::ok(signer.public_pem()));
    server.key("k").await.expect("key");

    http.set(&path, Response::status(503));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = server.key("k").await.expect("stale key served");
    assert!(verifies(&stale, &signer));
    assert_eq!(http.requests(&path), 1 + 3, "refetch tried with retries");
    assert_eq!(server.stats().stale_served, 1);

    // Within negative_ttl the stale key is served without asking again.
    assert!(server.key("k").await.is_ok());
    assert_eq!(http.requests(&path), 4);
    assert_eq!(server.stats().stale_served, 2);
}

#[tokio::test]
async fn stale_window_ends() {
    let http = TestServer::start().await;
    let server = KeyServer::new(
        &http.base(),
        FetchSettings {
            ttl: Duration::from_millis(500),
            stale_if_error: Duration::from_millis(500),
            negative_ttl: Duration::from_millis(100),
            retries: 0,
            ..settings()
        },
    )
    .expect("server");
    let path = path_of(&server, &http, "k");
    http.set(&path, Response::ok(TestKey::p256().public_pem()));
    server.key("k").await.expect("key");
    http.set(&path, Response::status(500));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = server.key("k").await.expect_err("past ttl + stale_if_error");
    assert!(matches!(err, KeyError::Status { status: 500, .. }), "{err:?}");
}

#[tokio::test]
async fn key_removed_from_server_is_dropped_after_ttl() {
    let http = TestServer::start().await;
    let server = KeyServer::new(
        &http.base(),
        FetchSettings {
            ttl: Duration::from_secs(1),
            stale_if_error: Duration::from_secs(60),
            ..settings()
        },
    )
    .expect("server");
    let path = path_of(&server, &http, "revoked");
    http.set(&path, Response::ok(TestKey::p256().public_pem()));
    server.key("revoked").await.expect("key");
    http.remove(&path);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = server.key("revoked").await.expect_err("404 drops the key");
    assert!(matches!(err, KeyError::Status { status: 404, .. }), "{err:?}");
    assert_eq!(server.stats().stale_served, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_is_rate_limited() {
    let http = TestServer::start().await;
    let rate = 10u32;
    let server = Arc::new(
        KeyServer::new(
            &http.base(),
            FetchSettings {
                unknown_kid_rate: rate,
                ..settings()
            },
        )
        .expect("server"),
    );
    // A known kid, fetched before the flood, stays usable during it.
    let signer = TestKey::ed25519();
    http.set(&path_of(&server, &http, "known"), Response::ok(signer.public_pem()));
    server.key("known").await.expect("known key");

    let started = Instant::now();
    let lookups: Vec<_> = (0..500)
        .map(|i| {
            let server = Arc::clone(&server);
            tokio::spawn(async move { server.key(&format!("random-{i}")).await })
        })
        .collect();
    let mut limited = 0;
    for lookup in futures::future::join_all(lookups).await {
        match lookup.expect("task") {
            Err(KeyError::RateLimited { .. }) => limited += 1,
            Err(KeyError::Status { status: 404, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let flood_requests = http.total_requests() - 1;
    let allowed = f64::from(rate) + f64::from(rate) * elapsed.ceil();
    assert!(
        (flood_requests as f64) <= allowed,
        "{flood_requests} requests in {elapsed:.2} s"
    );
    assert!(flood_requests >= 1);
    assert_eq!(limited, 500 - flood_requests);
    assert_eq!(server.stats().rate_limited, limited);
    assert!(verifies(&server.key("known").await.expect("known key"), &signer));
}

// ---------------------------------------------------------------------------------------------
// JwksSource

fn fast_timing() -> JwksTiming {
    JwksTiming {
        grace: Duration::from_secs(3600),
        min_refresh: Duration::from_millis(500),
        unknown_kid_interval: Duration::from_secs(3600),
        default_max_age: Duration::from_secs(3600),
        retry_after_failure: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn jwks_loads_all_key_types_and_skips_bad_ones() {
    let http = TestServer::start().await;
    let rsa = TestKey::rsa();
    let p256 = TestKey::p256();
    let p384 = TestKey::p384();
    let ed = TestKey::ed25519();
    let mut no_kid = rsa.jwk("x");
    no_kid.as_object_mut().expect("object").remove("kid");
    let mut enc = p256.jwk("enc-key");
    enc["use"] = "enc".into();
    let doc = json!({"keys": [
        rsa.jwk("rsa"),
        no_kid,
        {"kid": "broken", "kty": "RSA", "n": "!!", "e": "AQAB"},
        enc,
        {"kid": "weak", "kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
        p256.jwk("p256"),
        p384.jwk("p384"),
        ed.jwk("ed"),
    ]});
    http.set("/jwks.json", Response::ok(doc.to_string()));
    let source = JwksSource::new(&http.url("/jwks.json"), settings()).expect("source");
    assert_eq!(http.requests("/jwks.json"), 0, "nothing fetched before use");
    assert_eq!(source.refresh().await.expect("loads"), 4);
    for (kid, signer) in [("rsa", &rsa), ("p256", &p256), ("p384", &p384), ("ed", &ed)] {
        let key = source.key(kid).await.expect("set loaded").expect(kid);
        assert!(verifies(&key, signer), "{kid}");
    }
    for kid in ["broken", "enc-key", "weak"] {
        assert!(source.key(kid).await.expect("set loaded").is_none(), "{kid}");
    }
    assert!(
        http.last_user_agent()
            .is_some_and(|ua| ua.starts_with("token-sidecar/"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_loads_lazily_once() {
    let http = TestServer::start().await;
    let signer = TestKey::rsa();
    http.set(
        "/jwks",
        Response::ok(json!({"keys": [signer.jwk("k1")]}).to_string()).delay(Duration::from_millis(200)),
    );
    let source = Arc::new(JwksSource::new(&http.url("/jwks"), settings()).expect("source"));
    let lookups: Vec<_> = (0..200)
        .map(|_| {
            let source = Arc::clone(&source);
            tokio::spawn(async move { source.key("k1").await })
        })
        .collect();
    for lookup in futures::future::join_all(lookups).await {
        let key = lookup.expect("task").expect("loaded").expect("k1");
        assert!(verifies(&key, &signer));
    }
    assert_eq!(http.requests("/jwks"), 1);
}

#[tokio::test]
async fn firebase_style_map() {
    let http = TestServer::start().await;
    let rsa = TestKey::rsa();
    let ec = TestKey::p256();
    let doc = json!({
        "a1b2": rsa.certificate_pem("securetoken.system.gserviceaccount.com"),
        "c3d4": ec.public_pem(),
        "bad": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "num": 5,
    });
    http.set("/certs", Response::ok(doc.to_string()));
    let source = JwksSource::new(&http.url("/certs"), settings()).expect("source");
    assert_eq!(source.refresh().await.expect("loads"), 2);
    assert!(verifies(&source.key("a1b2").await.expect("ok").expect("a1b2"), &rsa));
    assert!(verifies(&source.key("c3d4").await.expect("ok").expect("c3d4"), &ec));
}

#[tokio::test]
async fn jwks_bad_documents() {
    let http = TestServer::start().await;
    let source = JwksSource::new(&http.url("/set"), settings()).expect("source");
    for body in [
        "not json",
        "[1, 2]",
        r#"{"keys": "nope"}"#,
        r#"{"keys": [{"kid": "a", "kty": "RSA"}]}"#,
    ] {
        http.set("/set", Response::ok(body));
        let err = source.refresh().await.expect_err(body);
        assert!(matches!(err, KeyError::BadBody { .. }), "{body}: {err:?}");
    }
    assert!(JwksSource::new("file:///etc/jwks.json", settings()).is_err());
}

#[tokio::test]
async fn jwks_never_loaded_is_an_error_remembered_for_negative_ttl() {
    let http = TestServer::start().await;
    let source = JwksSource::new(&http.url("/missing"), settings()).expect("source");
    let err = source.key("k").await.expect_err("never loaded");
    assert!(matches!(err, KeyError::Status { status: 404, .. }), "{err:?}");
    assert!(source.key("k").await.is_err());
    assert_eq!(http.requests("/missing"), 1);
}

#[tokio::test]
async fn jwks_refreshes_after_max_age_and_keeps_old_set_on_failure() {
    let http = TestServer::start().await;
    let first = TestKey::p256();
    let second = TestKey::p256();
    http.set(
        "/jwks",
        Response::ok(json!({"keys": [first.jwk("k1")]}).to_string()).header("Cache-Control", "public, max-age=1"),
    );
    let source = JwksSource::with_timing(&http.url("/jwks"), settings(), fast_timing()).expect("source");
    assert!(source.key("k1").await.expect("loaded").is_some());
    assert!(source.key("k1").await.expect("loaded").is_some());
    assert_eq!(http.requests("/jwks"), 1, "fresh for max-age");

    // Rotation on the server: k1 now holds a new key and k2 appears.
    http.set(
        "/jwks",
        Response::ok(json!({"keys": [second.jwk("k1"), second.jwk("k2")]}).to_string())
            .header("Cache-Control", "max-age=1"),
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The lookup after max-age answers from the current set and refreshes in the background.
    let during = source.key("k1").await.expect("ok").expect("k1");
    assert!(verifies(&during, &first));
    assert!(eventually(|| http.requests("/jwks") == 2).await);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let key = source.key("k1").await.expect("ok").expect("k1");
        if verifies(&key, &second) {
            break;
        }
        assert!(Instant::now() < deadline, "the refreshed set was never used");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(source.key("k2").await.expect("ok").is_some());

    // The server fails: the set in hand stays.
    http.set("/jwks", Response::status(500));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(source.refresh().await.is_err());
    let kept = source.key("k2").await.expect("still loaded").expect("k2");
    assert!(verifies(&kept, &second));
}

#[tokio::test]
async fn jwks_minimum_refresh_interval() {
    let http = TestServer::start().await;
    http.set(
        "/jwks",
        Response::ok(json!({"keys": [TestKey::p256().jwk("k1")]}).to_string()).header("Cache-Control", "max-age=0"),
    );
    let source = JwksSource::with_timing(
        &http.url("/jwks"),
        settings(),
        JwksTiming {
            min_refresh: Duration::from_secs(3600),
            ..fast_timing()
        },
    )
    .expect("source");
    for _ in 0..20 {
        assert!(source.key("k1").await.expect("ok").is_some());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(http.requests("/jwks"), 1, "max-age=0 does not mean every lookup");
}

#[tokio::test]
async fn jwks_rotation_keeps_removed_kids_for_the_grace_period() {
    let http = TestServer::start().await;
    let old = TestKey::rsa();
    let new = TestKey::p384();
    http.set("/jwks", Response::ok(json!({"keys": [old.jwk("old")]}).to_string()));
    let source = JwksSource::with_timing(
        &http.url("/jwks"),
        settings(),
        JwksTiming {
            grace: Duration::from_millis(800),
            ..fast_timing()
        },
    )
    .expect("source");
    assert_eq!(source.refresh().await.expect("loads"), 1);
    http.set("/jwks", Response::ok(json!({"keys": [new.jwk("new")]}).to_string()));
    assert_eq!(source.refresh().await.expect("loads"), 1);

    let kept = source.key("old").await.expect("ok").expect("old kept during grace");
    assert!(verifies(&kept, &old));
    assert!(source.key("new").await.expect("ok").is_some());

    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(source.refresh().await.expect("loads"), 1);
    assert!(source.key("old").await.expect("ok").is_none(), "gone after grace");
    assert!(source.key("new").await.expect("ok").is_some());
}

#[tokio::test]
async fn jwks_unknown_kid_refreshes_at_most_once_per_interval() {
    let http = TestServer::start().await;
    let signer = TestKey::ed25519();
    http.set("/jwks", Response::ok(json!({"keys": [signer.jwk("k1")]}).to_string()));
    let source = JwksSource::with_timing(
        &http.url("/jwks"),
        settings(),
        JwksTiming {
            unknown_kid_interval: Duration::from_millis(800),
            ..fast_timing()
        },
    )
    .expect("source");
    source.refresh().await.expect("loads");
    assert_eq!(http.requests("/jwks"), 1);

    // The first unknown kid refreshes once; the new key is there.
    http.set(
        "/jwks",
        Response::ok(json!({"keys": [signer.jwk("k1"), signer.jwk("k2")]}).to_string()),
    );
    assert!(source.key("k2").await.expect("ok").is_some());
    assert_eq!(http.requests("/jwks"), 2);

    // Within the interval, unknown kids do not refresh.
    assert!(source.key("nope").await.expect("ok").is_none());
    for i in 0..50 {
        assert!(source.key(&format!("random-{i}")).await.expect("ok").is_none());
    }
    assert_eq!(http.requests("/jwks"), 2);
    assert!(source.stats().rate_limited >= 51);

    // After it, one more refresh.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(source.key("nope").await.expect("ok").is_none());
    assert!(source.key("nope").await.expect("ok").is_none());
    assert_eq!(http.requests("/jwks"), 3);
}
