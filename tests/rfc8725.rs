//! RFC 8725 (JSON Web Token Best Current Practices) and the known JWT library CVEs, as ordinary
//! tests: every attack a token can carry, each with the exact verdict a client would see (the text
//! of Jitsi's plugins, docs/COMPATIBILITY.md "Logins", `src/token/reason.rs`).
//!
//! Through the library's `Verifier` (and, for a few, `token-sidecar verify`), on the base setup of
//! docs/COMPATIBILITY.md: host `meet.example.com`, `app_id = myapp`, `app_secret = s3cret` (or a key
//! server on 127.0.0.1 / a session `public_key`), and a base token with `iss = myapp`, `aud = jitsi`,
//! `sub = meet.example.com`, `room = room1`, `exp` an hour ahead.

mod common;

use std::process::Output;

use common::http::{Response, TestServer};
use common::keys::{TestKey, hs_jwt, hs_jwt_with_header};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use token_sidecar::config::{Config, HostSettings};
use token_sidecar::keys::SigningKey;
use token_sidecar::room::{RoomDecision, RoomTarget, verify_room};
use token_sidecar::token::{Accepted, AuthRequest, VerifiedToken, Verifier, base64url};

const NOW: i64 = 1_800_000_000;
const HOST: &str = "meet.example.com";
const KID: &str = "jitsi/key1";
const SECRET: &str = "s3cret";

/// Config C with `extra` lines: an HS256 host with `app_secret = s3cret`.
fn hs_settings(extra: &str) -> HostSettings {
    settings(&format!("app_secret = \"{SECRET}\"\n{extra}"))
}

/// A host with `app_id = myapp`, `muc_mapper_domain_base`, and `extra` (its key source).
fn settings(extra: &str) -> HostSettings {
    let text = format!("[hosts.\"{HOST}\"]\napp_id = \"myapp\"\nmuc_mapper_domain_base = \"{HOST}\"\n{extra}");
    Config::from_toml(&text).expect("config").hosts[HOST].clone()
}

/// A host whose keys come from the key server at `server`'s `/asap` (unknown kids not rate-limited,
/// so that many odd kids can be tried in one second).
fn key_server_settings(server: &TestServer, extra: &str) -> HostSettings {
    settings(&format!(
        "asap_key_server = \"{}\"\nasap_key_fetch_rate = 10000\n{extra}",
        server.url("/asap")
    ))
}

fn key_path(kid: &str) -> String {
    format!(
        "/asap/{}.pem",
        token_sidecar::digest::hex(&token_sidecar::digest::sha256(kid.as_bytes()))
    )
}

fn claims() -> Value {
    json!({"iss": "myapp", "aud": "jitsi", "sub": HOST, "room": "room1", "exp": NOW + 3600})
}

/// The base claims with `changes` merged in (`null` removes a claim).
fn claims_with(changes: Value) -> Value {
    let mut claims = claims();
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            claims.as_object_mut().expect("object").remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

/// The base token T, HS256 with `s3cret`.
fn hs_token(claims: &Value) -> String {
    hs_jwt(Algorithm::HS256, SECRET.as_bytes(), None, claims)
}

/// A token of exactly these header and payload texts (duplicate keys, odd numbers and all),
/// HMAC-signed with `secret` by `alg`.
fn raw_hs(header: &str, payload: &str, alg: Algorithm, secret: &[u8]) -> String {
    let input = format!("{}.{}", base64url(header.as_bytes()), base64url(payload.as_bytes()));
    let mac = SigningKey::hmac(secret).sign(alg, input.as_bytes()).expect("HMAC");
    format!("{input}.{}", base64url(&mac))
}

/// `header.payload` as given, then the signature of that input by `secret` (HS256).
fn sign_input(input: &str, secret: &[u8]) -> String {
    let mac = SigningKey::hmac(secret)
        .sign(Algorithm::HS256, input.as_bytes())
        .expect("HMAC");
    format!("{input}.{}", base64url(&mac))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The verdict: `Ok(token)` or the refusal text the client sees.
async fn check(verifier: &Verifier, token: &str, public_key: Option<&str>) -> Result<Box<VerifiedToken>, String> {
    let request = AuthRequest {
        token: Some(token),
        public_key,
        ..AuthRequest::default()
    };
    match verifier.verify(&request, NOW).await {
        Ok(Accepted::Token(token)) => Ok(token),
        Ok(Accepted::Anonymous) => Err("anonymous".into()),
        Err(rejection) => Err(rejection.reason.to_string()),
    }
}

/// `Ok(())` for accepted, else the refusal text.
async fn verdict(verifier: &Verifier, token: &str) -> Result<(), String> {
    check(verifier, token, None).await.map(|_| ())
}

/// Runs table rows `(name, token, expected)` on an HS256 host with `extra` settings: `None` expects
/// acceptance, `Some(text)` exactly that refusal.
fn table(extra: &str, rows: &[(&str, String, Option<&str>)]) {
    let verifier = Verifier::new(hs_settings(extra)).expect("verifier");
    let runtime = runtime();
    for (name, token, expected) in rows {
        let got = runtime.block_on(verdict(&verifier, token));
        let want = match expected {
            None => Ok(()),
            Some(text) => Err((*text).to_owned()),
        };
        assert_eq!(got, want, "{name}");
    }
}

/// Every upper/lower-case spelling of `word`.
fn spellings(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    (0..1u32 << chars.len())
        .map(|mask| {
            chars
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if mask & (1 << i) != 0 {
                        c.to_ascii_uppercase()
                    } else {
                        *c
                    }
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// RFC 8725 3.1, CVE-2015-9235 and friends: "alg": "none"

#[test]
fn alg_none_in_every_spelling_is_refused() {
    let payload = claims().to_string();
    let mut rows = Vec::new();
    for none in spellings("none") {
        let header = json!({"alg": none, "typ": "JWT"}).to_string();
        let input = format!("{}.{}", base64url(header.as_bytes()), base64url(payload.as_bytes()));
        // The unsecured JWS of RFC 7515: an empty signature. A JWT has three non-empty parts.
        rows.push((none.clone(), format!("{input}."), Some("Invalid token")));
        rows.push((none.clone(), format!("{input}.c2ln"), Some("Invalid or incorrect alg")));
        // Even a signature that is the right HMAC of the input under the host's secret.
        rows.push((
            none.clone(),
            sign_input(&input, SECRET.as_bytes()),
            Some("Invalid or incorrect alg"),
        ));
    }
    // Other names that are not the host's algorithm, spelled as Jitsi's plugins compare them: exactly.
    for alg in ["hs256", "Hs256", "HS256 ", " HS256", "HS256\u{0}", "HS-256", "", "null"] {
        let header = json!({"alg": alg, "typ": "JWT"});
        rows.push((
            format!("alg {alg:?}"),
            hs_jwt_with_header(Algorithm::HS256, SECRET.as_bytes(), &header, &claims()),
            Some("Invalid or incorrect alg"),
        ));
    }
    for alg in [Value::Null, json!(["HS256"]), json!({"HS256": true}), json!(256)] {
        let header = json!({"alg": alg, "typ": "JWT"});
        rows.push((
            format!("alg {alg}"),
            hs_jwt_with_header(Algorithm::HS256, SECRET.as_bytes(), &header, &claims()),
            Some("Invalid or incorrect alg"),
        ));
    }
    let rows: Vec<(&str, String, Option<&str>)> = rows.iter().map(|(n, t, e)| (n.as_str(), t.clone(), *e)).collect();
    table("", &rows);

    // `none` cannot be configured either.
    for none in ["none", "None", "NONE"] {
        let text = format!(
            "[hosts.\"{HOST}\"]\napp_id = \"myapp\"\napp_secret = \"{SECRET}\"\nsignature_algorithm = \"{none}\"\n"
        );
        assert!(
            Config::from_toml(&text).is_err(),
            "signature_algorithm = {none:?} must not load"
        );
    }
}

#[tokio::test]
async fn alg_none_on_a_public_key_host_is_refused_before_any_fetch() {
    let key = TestKey::p256();
    let server = TestServer::start().await;
    server.set(&key_path(KID), Response::ok(key.public_pem()));
    let verifier = Verifier::new(key_server_settings(&server, "")).expect("verifier");
    let payload = base64url(claims().to_string().as_bytes());
    for none in spellings("none") {
        let with_kid = base64url(json!({"alg": none, "kid": KID}).to_string().as_bytes());
        let without = base64url(json!({"alg": none}).to_string().as_bytes());
        assert_eq!(
            verdict(&verifier, &format!("{with_kid}.{payload}.c2ln")).await,
            Err("'kid' claim only support with RS family".into()),
            "{none}"
        );
        assert_eq!(
            verdict(&verifier, &format!("{without}.{payload}.c2ln")).await,
            Err("'kid' claim is missing".into()),
            "{none}"
        );
    }
    // And with a session public_key (a pre-jitsi-authentication-fetch-key handler's).
    let hs_host = Verifier::new(hs_settings("signature_algorithm = [\"HS256\", \"ES256\"]")).expect("verifier");
    let pem = key.public_pem();
    for none in spellings("none") {
        let header = base64url(json!({"alg": none}).to_string().as_bytes());
        assert_eq!(
            check(&hs_host, &format!("{header}.{payload}.c2ln"), Some(&pem))
                .await
                .map(|_| ()),
            Err("Invalid or incorrect alg".into()),
            "{none}"
        );
    }
    assert_eq!(server.total_requests(), 0);
}

// ---------------------------------------------------------------------------------------------
// RFC 8725 2.1 / 3.1, CVE-2016-10555, CVE-2022-29217: HMAC with a public key as the secret

#[tokio::test]
async fn hmac_with_a_public_key_as_the_secret_is_refused() {
    for key in [TestKey::rsa(), TestKey::p256(), TestKey::ed25519()] {
        let alg = format!("{:?}", key.alg());
        let pem = key.public_pem();
        let mut secrets: Vec<(&str, Vec<u8>)> = vec![
            ("SPKI PEM", pem.clone().into_bytes()),
            ("SPKI PEM without the last newline", pem.trim_end().as_bytes().to_vec()),
            ("SPKI DER", key.public_der()),
            ("certificate PEM", key.certificate_pem("test").into_bytes()),
            ("certificate DER", key.certificate_der("test")),
            ("JWK", key.jwk(KID).to_string().into_bytes()),
        ];
        if key.alg() == Algorithm::RS256 {
            secrets.push(("PKCS#1 PEM", key.rsa_public_pkcs1_pem().into_bytes()));
        }

        // A host with a key server that holds the key, and HS256 allowed beside the key's own
        // algorithm: the forged token never reaches a signature check, nor the key server.
        let server = TestServer::start().await;
        server.set(&key_path(KID), Response::ok(pem.clone()));
        let verifier = Verifier::new(key_server_settings(
            &server,
            &format!("signature_algorithm = [\"{alg}\", \"HS256\", \"HS384\", \"HS512\"]"),
        ))
        .expect("verifier");
        // A JWKS host (cache_keys_url) likewise.
        server.set("/jwks.json", Response::ok(json!({"keys": [key.jwk(KID)]}).to_string()));
        let jwks_host = Verifier::new(settings(&format!(
            "cache_keys_url = \"{}\"\nsignature_algorithm = [\"{alg}\", \"HS256\"]",
            server.url("/jwks.json")
        )))
        .expect("verifier");
        // A host whose key is the session's public_key.
        let hs_host = Verifier::new(hs_settings(&format!(
            "signature_algorithm = [\"{alg}\", \"HS256\", \"HS384\", \"HS512\"]"
        )))
        .expect("verifier");

        for (what, secret) in &secrets {
            for hs in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let forged = hs_jwt(hs, secret, Some(KID), &claims());
                let forged_no_kid = hs_jwt(hs, secret, None, &claims());
                let case = format!("{alg} key, {what}, {hs:?}");
                assert_eq!(
                    verdict(&verifier, &forged).await,
                    Err("'kid' claim only support with RS family".into()),
                    "key server: {case}"
                );
                assert_eq!(
                    verdict(&verifier, &forged_no_kid).await,
                    Err("'kid' claim is missing".into()),
                    "key server: {case}"
                );
                assert_eq!(
                    verdict(&jwks_host, &forged).await,
                    Err("'kid' claim only support with RS family".into()),
                    "key set: {case}"
                );
                assert_eq!(
                    check(&hs_host, &forged_no_kid, Some(&pem)).await.map(|_| ()),
                    Err("Invalid or incorrect alg".into()),
                    "public_key: {case}"
                );
            }
        }
        assert_eq!(server.total_requests(), 0, "{alg}: a forged token fetched a key");

        // The key's own tokens pass on all three.
        let good = key.jwt(Some(KID), &claims());
        assert_eq!(verdict(&verifier, &good).await, Ok(()), "{alg}");
        assert_eq!(verdict(&jwks_host, &good).await, Ok(()), "{alg}");
        assert_eq!(check(&hs_host, &good, Some(&pem)).await.map(|_| ()), Ok(()), "{alg}");
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 8725 3.10, CVE-2018-0114 (jwk), jku/x5u server-side requests: key-bearing headers are ignored

#[tokio::test]
async fn key_bearing_headers_are_ignored() {
    let real = TestKey::rsa();
    let attacker = TestKey::rsa();
    let server = TestServer::start().await;
    server.set(&key_path(KID), Response::ok(real.public_pem()));
    server.set(
        "/attacker/jwks.json",
        Response::ok(json!({"keys": [attacker.jwk(KID), attacker.jwk("attacker")]}).to_string()),
    );
    server.set("/attacker/key.pem", Response::ok(attacker.certificate_pem("attacker")));
    let verifier = Verifier::new(key_server_settings(&server, "")).expect("verifier");

    let std_b64 = |der: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(der)
    };
    let header = |kid: &str| {
        json!({
            "alg": "RS256", "typ": "JWT", "kid": kid,
            "jku": server.url("/attacker/jwks.json"),
            "x5u": server.url("/attacker/key.pem"),
            "jwk": attacker.jwk(kid),
            "x5c": [std_b64(&attacker.certificate_der("attacker"))],
            "x5t": "AAAA", "x5t#S256": "AAAA",
        })
    };

    // Signed by the attacker, naming the real kid: verified with the key server's key.
    assert_eq!(
        verdict(&verifier, &attacker.jwt_with_header(&header(KID), &claims())).await,
        Err("Invalid signature".into())
    );
    // Naming a kid of its own: the key server has none.
    assert_eq!(
        verdict(&verifier, &attacker.jwt_with_header(&header("attacker"), &claims())).await,
        Err("could not obtain public key".into())
    );
    // The real key's token with the same headers: accepted, the headers play no part.
    assert_eq!(
        verdict(&verifier, &real.jwt_with_header(&header(KID), &claims())).await,
        Ok(())
    );
    assert_eq!(server.requests("/attacker/jwks.json"), 0, "jku was fetched");
    assert_eq!(server.requests("/attacker/key.pem"), 0, "x5u was fetched");
    assert_eq!(server.requests(&key_path(KID)), 1);
    assert_eq!(server.requests(&key_path("attacker")), 1);
    assert_eq!(server.total_requests(), 2);

    // An HS256 host: an embedded key (RSA or a symmetric `oct` JWK) is not the host's secret.
    let hs_host = Verifier::new(hs_settings("")).expect("verifier");
    assert_eq!(
        verdict(&hs_host, &attacker.jwt_with_header(&header(KID), &claims())).await,
        Err("Invalid or incorrect alg".into())
    );
    let oct = json!({"alg": "HS256", "typ": "JWT", "jwk": {"kty": "oct", "k": base64url(b"attacker")}});
    assert_eq!(
        verdict(
            &hs_host,
            &hs_jwt_with_header(Algorithm::HS256, b"attacker", &oct, &claims())
        )
        .await,
        Err("Invalid signature".into())
    );
    assert_eq!(
        verdict(
            &hs_host,
            &hs_jwt_with_header(Algorithm::HS256, SECRET.as_bytes(), &oct, &claims())
        )
        .await,
        Ok(())
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 7515 4.1.11: `crit` names extensions the recipient must understand; this verifier
// understands none, so a token that has it is refused (Jitsi's plugins ignore it).

#[test]
fn crit_is_refused() {
    let with = |crit: Value, extra: Value| {
        let mut header = json!({"alg": "HS256", "typ": "JWT", "crit": crit});
        for (k, v) in extra.as_object().expect("object") {
            header[k] = v.clone();
        }
        hs_jwt_with_header(Algorithm::HS256, SECRET.as_bytes(), &header, &claims())
    };
    table(
        "",
        &[
            ("crit exp", with(json!(["exp"]), json!({})), Some("Invalid header")),
            (
                "crit b64 (RFC 7797)",
                with(json!(["b64"]), json!({"b64": false})),
                Some("Invalid header"),
            ),
            (
                "crit unknown",
                with(
                    json!(["http://example.invalid/ext"]),
                    json!({"http://example.invalid/ext": 1}),
                ),
                Some("Invalid header"),
            ),
            ("crit empty", with(json!([]), json!({})), Some("Invalid header")),
            ("crit string", with(json!("exp"), json!({})), Some("Invalid header")),
            ("crit null", with(Value::Null, json!({})), Some("Invalid header")),
            // The signature is checked first: a forged token is refused as forged.
            (
                "crit, bad signature",
                hs_jwt_with_header(
                    Algorithm::HS256,
                    b"wrong",
                    &json!({"alg": "HS256", "crit": ["exp"]}),
                    &claims(),
                ),
                Some("Invalid signature"),
            ),
            // `b64: false` without `crit` is no extension: the payload is read as base64url, as always.
            (
                "b64 false alone",
                hs_jwt_with_header(
                    Algorithm::HS256,
                    SECRET.as_bytes(),
                    &json!({"alg": "HS256", "b64": false}),
                    &claims(),
                ),
                None,
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 8725 3.10: `kid` is data, never a path. The key server sees only sha256(kid) in hex.

#[tokio::test]
async fn kid_path_traversal_and_odd_bytes_reach_the_key_server_only_as_sha256_hex() {
    let real = TestKey::rsa();
    let attacker = TestKey::rsa();
    let server = TestServer::start().await;
    // The real key is published under an odd kid too: the name is hashed, so it still works.
    server.set(&key_path("../k1"), Response::ok(real.public_pem()));
    // Files a naive server would serve for a path in the kid.
    server.set("/etc/passwd", Response::ok(attacker.public_pem()));
    server.set("/asap/../attacker.pem", Response::ok(attacker.public_pem()));
    server.set("/attacker.pem", Response::ok(attacker.public_pem()));
    let verifier = Verifier::new(key_server_settings(&server, "")).expect("verifier");

    let long = "k".repeat(4000);
    let kids = [
        "../../../../etc/passwd",
        "../attacker",
        "..%2f..%2fattacker",
        "/etc/passwd",
        "..\\..\\attacker",
        "attacker.pem?x=",
        "attacker#",
        "http://evil.example/attacker.pem",
        "//evil.example/attacker",
        "a\u{0}b",
        "%00",
        "line\r\nHost: evil.example",
        " ",
        "",
        "\u{202e}mep.rekcatta",
        "ключ",
        "💥",
        "\u{feff}jitsi/key1",
        long.as_str(),
    ];
    for (n, kid) in kids.iter().enumerate() {
        let before = server.total_requests();
        let token = attacker.jwt(Some(kid), &claims());
        assert_eq!(
            verdict(&verifier, &token).await,
            Err("could not obtain public key".into()),
            "kid {kid:.40?}"
        );
        assert_eq!(server.requests(&key_path(kid)), 1, "kid {kid:.40?}");
        assert_eq!(
            server.total_requests(),
            before + 1,
            "kid {kid:.40?}: another path was asked"
        );
        assert!(n < 100);
    }
    assert_eq!(server.requests("/etc/passwd"), 0);
    assert_eq!(server.requests("/attacker.pem"), 0);

    // The odd kid that holds the real key: accepted; the attacker's token under it is not.
    assert_eq!(verdict(&verifier, &real.jwt(Some("../k1"), &claims())).await, Ok(()));
    assert_eq!(
        verdict(&verifier, &attacker.jwt(Some("../k1"), &claims())).await,
        Err("Invalid signature".into())
    );

    // A kid that is not a string is no kid.
    for kid in [json!(1), json!(null), json!(["k"]), json!({"k": 1}), json!(true)] {
        let header = json!({"alg": "RS256", "kid": kid});
        assert_eq!(
            verdict(&verifier, &real.jwt_with_header(&header, &claims())).await,
            Err("'kid' claim is missing".into()),
            "kid {kid}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 8725 2.6, RFC 7515 5.2, RFC 8259 4: duplicate member names. The lexically last one wins, in the header
// and the payload, as with Jitsi's lua-cjson; there is one reading of the claims, used throughout.

#[test]
fn duplicate_json_keys_take_the_last_value() {
    let payload = claims().to_string();
    let hs = |header: &str, payload: &str| raw_hs(header, payload, Algorithm::HS256, SECRET.as_bytes());
    let body = |inner: &str| format!(r#"{{"aud":"jitsi","sub":"{HOST}","room":"room1",{inner}}}"#);
    let exp = NOW + 3600;
    table(
        "",
        &[
            (
                "alg none then HS256",
                hs(r#"{"alg":"none","alg":"HS256"}"#, &payload),
                None,
            ),
            (
                "alg HS256 then none",
                hs(r#"{"alg":"HS256","alg":"none"}"#, &payload),
                Some("Invalid or incorrect alg"),
            ),
            (
                "alg HS256 then HS512",
                hs(r#"{"alg":"HS256","alg":"HS512"}"#, &payload),
                Some("Invalid or incorrect alg"),
            ),
            (
                "typ JWT then JOSE",
                hs(r#"{"alg":"HS256","typ":"JWT","typ":"JOSE"}"#, &payload),
                Some("Invalid typ"),
            ),
            (
                "alg through an escaped name",
                hs(r#"{"alg":"HS256","\u0061lg":"none"}"#, &payload),
                Some("Invalid or incorrect alg"),
            ),
            (
                "iss other then myapp",
                hs(
                    r#"{"alg":"HS256"}"#,
                    &body(&format!(r#""iss":"other","iss":"myapp","exp":{exp}"#)),
                ),
                None,
            ),
            (
                "iss myapp then other",
                hs(
                    r#"{"alg":"HS256"}"#,
                    &body(&format!(r#""iss":"myapp","iss":"other","exp":{exp}"#)),
                ),
                Some("invalid 'iss' claim"),
            ),
            (
                "iss through an escaped name",
                hs(
                    r#"{"alg":"HS256"}"#,
                    &body(&format!(r#""iss":"myapp","\u0069ss":"other","exp":{exp}"#)),
                ),
                Some("invalid 'iss' claim"),
            ),
            (
                "exp later then expired",
                hs(
                    r#"{"alg":"HS256"}"#,
                    &body(&format!(r#""iss":"myapp","exp":{exp},"exp":{}"#, NOW - 10)),
                ),
                Some("Not acceptable by exp (10 sec since expired)"),
            ),
            (
                "exp expired then later",
                hs(
                    r#"{"alg":"HS256"}"#,
                    &body(&format!(r#""iss":"myapp","exp":{},"exp":{exp}"#, NOW - 10)),
                ),
                None,
            ),
        ],
    );

    // The claims the session gets are the ones that were checked.
    let token = hs(
        r#"{"alg":"HS256"}"#,
        &format!(r#"{{"iss":"myapp","aud":"jitsi","sub":"{HOST}","room":"room1","room":"*","exp":{exp}}}"#),
    );
    let verifier = Verifier::new(hs_settings("")).expect("verifier");
    let verified = runtime().block_on(check(&verifier, &token, None)).expect("accepted");
    assert_eq!(verified.claims["room"], json!("*"));
    assert_eq!(
        serde_json::to_value(verified.session_view()).expect("view")["jitsi_meet_room"],
        json!("*")
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 7519 4.1.4-4.1.6: `exp`, `nbf` and `iat` of every type and size. lua-cjson, as Jitsi's library
// uses it, reads `nan`, `inf` and `1e400` by default (decode_invalid_numbers), and `now >= exp` is
// never true for NaN or infinity; here they are not JSON, and the body is refused.

#[test]
fn times_of_every_type_and_size() {
    let hs = |times: &str| {
        raw_hs(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &format!(r#"{{"iss":"myapp","aud":"jitsi","sub":"{HOST}","room":"room1"{times}}}"#),
            Algorithm::HS256,
            SECRET.as_bytes(),
        )
    };
    let exp_ok = format!(r#","exp":{}"#, NOW + 3600);
    let expired = format!(r#","exp":{}"#, NOW - 10);
    table(
        "",
        &[
            // exp
            ("exp huge", hs(r#","exp":1e300"#), None),
            ("exp beyond u64", hs(r#","exp":99999999999999999999"#), None),
            (
                "exp beyond f64 (lua-cjson: inf)",
                hs(r#","exp":1e400"#),
                Some("Invalid body"),
            ),
            ("exp NaN", hs(r#","exp":NaN"#), Some("Invalid body")),
            ("exp nan", hs(r#","exp":nan"#), Some("Invalid body")),
            ("exp Infinity", hs(r#","exp":Infinity"#), Some("Invalid body")),
            ("exp -Infinity", hs(r#","exp":-Infinity"#), Some("Invalid body")),
            ("exp hex", hs(r#","exp":0x7fffffff"#), Some("Invalid body")),
            ("exp leading +", hs(r#","exp":+1900000000"#), Some("Invalid body")),
            (
                "exp negative",
                hs(r#","exp":-1"#),
                Some("Not acceptable by exp (1800000001 sec since expired)"),
            ),
            (
                "exp -0",
                hs(r#","exp":-0"#),
                Some("Not acceptable by exp (1800000000 sec since expired)"),
            ),
            (
                "exp hugely negative",
                hs(r#","exp":-1e300"#),
                Some("Not acceptable by exp (9223372036854775807 sec since expired)"),
            ),
            (
                "exp zero",
                hs(r#","exp":0"#),
                Some("Not acceptable by exp (1800000000 sec since expired)"),
            ),
            (
                "exp float, half a second ago",
                hs(&format!(r#","exp":{}.5"#, NOW - 1)),
                Some("Not acceptable by exp (0 sec since expired)"),
            ),
            (
                "exp float, half a second ahead",
                hs(&format!(r#","exp":{}.5"#, NOW)),
                None,
            ),
            ("exp float with exponent", hs(r#","exp":1.9e9"#), None),
            (
                "exp float, 121.7 s ago",
                hs(&format!(r#","exp":{}.3"#, NOW - 122)),
                Some("Not acceptable by exp (121 sec since expired)"),
            ),
            ("exp string", hs(r#","exp":"1900000000""#), Some("exp must be number")),
            ("exp string NaN", hs(r#","exp":"NaN""#), Some("exp must be number")),
            ("exp null", hs(r#","exp":null"#), Some("exp must be number")),
            ("exp true", hs(r#","exp":true"#), Some("exp must be number")),
            ("exp array", hs(r#","exp":[1900000000]"#), Some("exp must be number")),
            (
                "exp object",
                hs(r#","exp":{"v":1900000000}"#),
                Some("exp must be number"),
            ),
            // nbf
            (
                "nbf huge",
                hs(&format!(r#"{exp_ok},"nbf":1e300"#)),
                Some("Not acceptable by nbf"),
            ),
            ("nbf hugely negative", hs(&format!(r#"{exp_ok},"nbf":-1e300"#)), None),
            ("nbf negative", hs(&format!(r#"{exp_ok},"nbf":-1"#)), None),
            (
                "nbf half a second ahead",
                hs(&format!(r#"{exp_ok},"nbf":{}.5"#, NOW)),
                Some("Not acceptable by nbf"),
            ),
            ("nbf NaN", hs(&format!(r#"{exp_ok},"nbf":NaN"#)), Some("Invalid body")),
            (
                "nbf string",
                hs(&format!(r#"{exp_ok},"nbf":"0""#)),
                Some("nbf must be number"),
            ),
            (
                "nbf null",
                hs(&format!(r#"{exp_ok},"nbf":null"#)),
                Some("nbf must be number"),
            ),
            (
                "exp and nbf strings: exp first",
                hs(r#","exp":"x","nbf":"y""#),
                Some("exp must be number"),
            ),
            // iat: only in the expiry text (differences 27 and 28); never a reason to refuse.
            ("iat in the future", hs(&format!(r#"{exp_ok},"iat":1e300"#)), None),
            ("iat string", hs(&format!(r#"{exp_ok},"iat":"yesterday""#)), None),
            ("iat null", hs(&format!(r#"{exp_ok},"iat":null"#)), None),
            ("iat NaN", hs(&format!(r#"{exp_ok},"iat":NaN"#)), Some("Invalid body")),
            (
                "expired, iat string",
                hs(&format!(r#"{expired},"iat":"x""#)),
                Some("Not acceptable by exp (10 sec since expired)"),
            ),
            (
                "expired, iat huge",
                hs(&format!(r#"{expired},"iat":1e300"#)),
                Some("Not acceptable by exp (10 sec since expired, valid for:-9223372036854775808 sec)"),
            ),
            (
                "expired, iat hugely negative",
                hs(&format!(r#"{expired},"iat":-1e300"#)),
                Some("Not acceptable by exp (10 sec since expired, valid for:9223372036854775807 sec)"),
            ),
            (
                "expired, iat float",
                hs(&format!(r#"{expired},"iat":{}.5"#, NOW - 3611)),
                Some("Not acceptable by exp (10 sec since expired, valid for:3600 sec)"),
            ),
        ],
    );
    // A huge leeway does not overflow into acceptance of an expired token's neighbours.
    table(
        "token_leeway = 10",
        &[
            (
                "leeway, exp -1e300",
                hs(r#","exp":-1e300"#),
                Some("Not acceptable by exp (9223372036854775807 sec since expired)"),
            ),
            (
                "leeway, exp 10 s ago",
                hs(&expired),
                Some("Not acceptable by exp (10 sec since expired)"),
            ),
            ("leeway, exp 9 s ago", hs(&format!(r#","exp":{}"#, NOW - 9)), None),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 8725 3.3, RFC 7519 5.2: nested JWTs (`cty: JWT`) are not unwrapped

#[test]
fn nested_jwts_are_not_unwrapped() {
    let inner = hs_token(&claims());
    let nested_header = r#"{"alg":"HS256","typ":"JWT","cty":"JWT"}"#;
    table(
        "",
        &[
            // RFC 7519's nested form: the payload is the inner JWT itself, not a JSON object.
            (
                "nested, signed by the host",
                raw_hs(nested_header, &inner, Algorithm::HS256, SECRET.as_bytes()),
                Some("Invalid body"),
            ),
            (
                "nested, signed by someone else around a valid inner token",
                raw_hs(nested_header, &inner, Algorithm::HS256, b"attacker"),
                Some("Invalid body"),
            ),
            (
                "nested as a JSON string",
                raw_hs(
                    nested_header,
                    &Value::String(inner.clone()).to_string(),
                    Algorithm::HS256,
                    SECRET.as_bytes(),
                ),
                Some("Invalid body"),
            ),
            // `cty` is not looked at: a JSON payload is an ordinary token.
            (
                "cty JWT over claims",
                raw_hs(
                    nested_header,
                    &claims().to_string(),
                    Algorithm::HS256,
                    SECRET.as_bytes(),
                ),
                None,
            ),
            // A token in a claim is just a string.
            (
                "inner token in a claim",
                hs_token(&claims_with(json!({"jwt": inner}))),
                None,
            ),
            (
                "inner token in a claim, outer forged",
                hs_jwt(Algorithm::HS256, b"attacker", None, &claims_with(json!({"jwt": inner}))),
                Some("Invalid signature"),
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 8725 3.4: alternative encodings of one signature (malleability), CVE-2022-21449 (psychic
// ECDSA signatures)

/// The same token with its signature part replaced.
fn with_signature(token: &str, signature: &str) -> String {
    let cut = token.rfind('.').expect("three parts");
    format!("{}.{signature}", &token[..cut])
}

fn signature_part(token: &str) -> &str {
    &token[token.rfind('.').expect("three parts") + 1..]
}

/// base64url → standard alphabet.
fn standard_alphabet(s: &str) -> String {
    s.replace('-', "+").replace('_', "/")
}

/// The base token T with a `jti` chosen so that `pick` holds for it (`?` is 0x3f: six one-bits,
/// which base64 writes as `_` or, next to other bits, often as `-`).
fn token_where(pick: impl Fn(&str) -> bool) -> String {
    (0..1_000)
        .map(|n| hs_token(&claims_with(json!({"jti": format!("{}{n}", "?".repeat(n % 4))}))))
        .find(|t| pick(t))
        .expect("a token that fits")
}

#[test]
fn alternative_forms_of_a_signature_are_refused() {
    let t = hs_token(&claims());
    let sig = signature_part(&t).to_owned();
    assert_eq!(sig.len(), 43, "an HS256 signature is 43 base64url characters");

    // The last character holds 4 bits of the signature and 2 bits that must be zero.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = alphabet.find(sig.chars().last().expect("char")).expect("base64url");
    assert_eq!(last & 0b11, 0);
    let trailing = format!("{}{}", &sig[..42], &alphabet[last | 1..=last | 1]);

    let with_minus_or_underscore = token_where(|t| signature_part(t).contains(['-', '_']));
    let std_sig = standard_alphabet(signature_part(&with_minus_or_underscore));
    let payload_with_minus_or_underscore = token_where(|t| t.split('.').nth(1).is_some_and(|p| p.contains(['-', '_'])));
    let mut parts: Vec<String> = payload_with_minus_or_underscore.split('.').map(str::to_owned).collect();
    parts[1] = standard_alphabet(&parts[1]);
    let std_payload = parts.join(".");

    let input = &t[..t.rfind('.').expect("dot")];
    let (header, payload) = input.split_once('.').expect("dot");
    table(
        "",
        &[
            ("T", t.clone(), None),
            // As Lua's base64 decoder, `=` padding is accepted: the same bytes, the same signature.
            ("signature padded", with_signature(&t, &format!("{sig}=")), None),
            (
                "signature over-padded",
                with_signature(&t, &format!("{sig}==")),
                Some("Invalid signature"),
            ),
            (
                "signature with non-zero trailing bits",
                with_signature(&t, &trailing),
                Some("Invalid signature"),
            ),
            (
                "signature in the standard alphabet",
                with_signature(&with_minus_or_underscore, &std_sig),
                Some("Invalid signature"),
            ),
            ("payload in the standard alphabet", std_payload, Some("Invalid body")),
            (
                "signature with a newline",
                with_signature(&t, &format!("{}\n{}", &sig[..20], &sig[20..])),
                Some("Invalid signature"),
            ),
            (
                "signature with a space",
                with_signature(&t, &format!("{sig} ")),
                Some("Invalid signature"),
            ),
            (
                "token with a trailing newline",
                format!("{t}\n"),
                Some("Invalid signature"),
            ),
            (
                "signature with an extra byte",
                with_signature(&t, &format!("{sig}AA")),
                Some("Invalid signature"),
            ),
            (
                "signature cut short",
                with_signature(&t, &sig[..42]),
                Some("Invalid signature"),
            ),
            ("signature empty", with_signature(&t, ""), Some("Invalid token")),
            // Padding on header or payload changes the signed input: only a signature over the padded
            // form passes, as in Jitsi's plugins.
            (
                "payload padded, old signature",
                format!("{header}.{payload}=.{sig}"),
                Some("Invalid signature"),
            ),
            (
                "payload padded and signed",
                sign_input(&format!("{header}.{payload}="), SECRET.as_bytes()),
                None,
            ),
            // HS256 as a truncated HS512, or the other way round.
            (
                "HS512 signature under alg HS256",
                with_signature(&t, &signature_part(&raw_hs_from(input, Algorithm::HS512))[..43]),
                Some("Invalid signature"),
            ),
        ],
    );
}

/// `input` (header.payload) signed with the host's secret by `alg`.
fn raw_hs_from(input: &str, alg: Algorithm) -> String {
    let mac = SigningKey::hmac(SECRET.as_bytes())
        .sign(alg, input.as_bytes())
        .expect("HMAC");
    format!("{input}.{}", base64url(&mac))
}

/// The order of P-256, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// `a - b` for 32-byte big-endian numbers, `a >= b`.
fn sub_be(a: &[u8; 32], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    out
}

/// An ASN.1 DER `Ecdsa-Sig-Value` from fixed-size r‖s.
fn ecdsa_der(fixed: &[u8]) -> Vec<u8> {
    let int = |bytes: &[u8]| {
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        let mut value = if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
            vec![0]
        } else {
            vec![]
        };
        value.extend(trimmed);
        let mut out = vec![0x02, value.len() as u8];
        out.extend(value);
        out
    };
    let half = fixed.len() / 2;
    let body = [int(&fixed[..half]), int(&fixed[half..])].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

#[tokio::test]
async fn public_key_signature_forms() {
    let ec = TestKey::p256();
    let rsa = TestKey::rsa();
    let ed = TestKey::ed25519();
    let hs_host =
        Verifier::new(hs_settings("signature_algorithm = [\"RS256\", \"ES256\", \"EdDSA\"]")).expect("verifier");
    let run = |key: &TestKey, token: String| {
        let pem = key.public_pem();
        let hs_host = &hs_host;
        async move { check(hs_host, &token, Some(&pem)).await.map(|_| ()) }
    };

    // ES256.
    let t = ec.jwt(None, &claims());
    let input = &t[..t.rfind('.').expect("dot")];
    let fixed = ec.sign(Algorithm::ES256, input.as_bytes());
    assert_eq!(run(&ec, t.clone()).await, Ok(()));
    let cases: Vec<(&str, Vec<u8>, Result<(), String>)> = vec![
        // CVE-2022-21449: r = s = 0 verifies any message in some ECDSA implementations.
        (
            "psychic signature, r = s = 0",
            vec![0; 64],
            Err("Invalid signature".into()),
        ),
        ("r = s = n", [P256_N, P256_N].concat(), Err("Invalid signature".into())),
        (
            "ASN.1 DER instead of r‖s",
            ecdsa_der(&fixed),
            Err("Invalid signature".into()),
        ),
        (
            "r‖s with a leading zero",
            [vec![0], fixed.clone()].concat(),
            Err("Invalid signature".into()),
        ),
        ("r‖s cut short", fixed[..63].to_vec(), Err("Invalid signature".into())),
        // (r, n - s) is the other valid signature of the same message (ECDSA malleability): it
        // verifies, for exactly the same header and claims, as it does in Jitsi's plugins. Nothing
        // keys on the signature alone: remembered logins key on the whole token's SHA-256.
        (
            "r‖(n - s)",
            [fixed[..32].to_vec(), sub_be(&P256_N, &fixed[32..])].concat(),
            Ok(()),
        ),
    ];
    for (what, signature, want) in cases {
        assert_eq!(
            run(&ec, with_signature(&t, &base64url(&signature))).await,
            want,
            "ES256 {what}"
        );
    }

    // RS256.
    let t = rsa.jwt(None, &claims());
    let input = &t[..t.rfind('.').expect("dot")];
    let signature = rsa.sign(Algorithm::RS256, input.as_bytes());
    assert_eq!(signature.len(), 256);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a leading zero byte added", [vec![0], signature.clone()].concat()),
        ("the last byte dropped", signature[..255].to_vec()),
        ("all zeros", vec![0; 256]),
        ("all ones", vec![0xff; 256]),
        ("empty-ish", vec![0]),
    ];
    for (what, bytes) in cases {
        assert_eq!(
            run(&rsa, with_signature(&t, &base64url(&bytes))).await,
            Err("Invalid signature".into()),
            "RS256 {what}"
        );
    }
    // PS256 (RSA-PSS) with the same key: not an accepted algorithm.
    let ps = rsa.jwt_with_header(&json!({"alg": "PS256", "typ": "JWT"}), &claims());
    assert_eq!(run(&rsa, ps).await, Err("Invalid or incorrect alg".into()));
    // RS384 signature bytes under alg RS256.
    let rs384 = rsa.sign(Algorithm::RS384, input.as_bytes());
    assert_eq!(
        run(&rsa, with_signature(&t, &base64url(&rs384))).await,
        Err("Invalid signature".into())
    );

    // EdDSA.
    let t = ed.jwt(None, &claims());
    let input = &t[..t.rfind('.').expect("dot")];
    let signature = ed.sign(Algorithm::EdDSA, input.as_bytes());
    assert_eq!(run(&ed, t.clone()).await, Ok(()));
    // S + L: the non-canonical twin of a valid Ed25519 signature (RFC 8032 requires S < L).
    const ED25519_L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
    ];
    let mut s_plus_l = signature[32..].to_vec();
    let mut carry = 0u16;
    for (i, byte) in s_plus_l.iter_mut().enumerate() {
        let sum = u16::from(*byte) + u16::from(ED25519_L[i]) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("all zeros", vec![0; 64]),
        ("S + L", [signature[..32].to_vec(), s_plus_l].concat()),
        ("cut short", signature[..63].to_vec()),
        ("a byte added", [signature.clone(), vec![0]].concat()),
    ];
    for (what, bytes) in cases {
        assert_eq!(
            run(&ed, with_signature(&t, &base64url(&bytes))).await,
            Err("Invalid signature".into()),
            "EdDSA {what}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 8725 3.8, RFC 7519 4.1.1: `iss` is one string; only `aud` may be an array

#[test]
fn an_array_iss_is_refused() {
    let t = |iss: Value| hs_token(&claims_with(json!({"iss": iss})));
    let rows = [
        ("iss [myapp]", t(json!(["myapp"])), Some("invalid 'iss' claim")),
        (
            "iss [other, myapp]",
            t(json!(["other", "myapp"])),
            Some("invalid 'iss' claim"),
        ),
        ("iss []", t(json!([])), Some("invalid 'iss' claim")),
        ("iss [[myapp]]", t(json!([["myapp"]])), Some("invalid 'iss' claim")),
        ("iss myapp", t(json!("myapp")), None),
        ("iss object", t(json!({"myapp": true})), Some("invalid 'iss' claim")),
        ("iss number", t(json!(1)), Some("invalid 'iss' claim")),
        ("iss null", t(Value::Null), Some("'iss' claim is missing")),
    ];
    table("", &rows);
    table("asap_accepted_issuers = [\"myapp\", \"other\"]", &rows[..5]);
    // With any issuer accepted, an array is still not an issuer.
    table(
        "asap_accepted_issuers = [\"*\"]",
        &[
            ("* and iss [myapp]", t(json!(["myapp"])), Some("invalid 'iss' claim")),
            ("* and iss []", t(json!([])), Some("invalid 'iss' claim")),
            ("* and iss other", t(json!("other")), None),
        ],
    );
    // aud stays an array (difference 7).
    table(
        "asap_accepted_audiences = [\"jitsi\"]",
        &[(
            "aud [x, jitsi]",
            hs_token(&claims_with(json!({"aud": ["x", "jitsi"]}))),
            None,
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Unicode look-alikes in room names and tenants: one normal form (percent-decoded, lowercased;
// difference 8), and nothing more. A look-alike is another name.

/// Percent-encodes the non-ASCII bytes of `s` in lower case, as Prosody holds room nodes.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii() {
                char::from(b).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

#[test]
fn unicode_look_alikes_in_rooms_and_tenants_do_not_match() {
    let c = hs_settings("");
    let verifier = Verifier::new(c.clone()).expect("verifier");
    let runtime = runtime();
    let mismatched = Err("Room and token mismatched".to_owned());
    let no_match = Err("Room name cannot be matched to the one from token.".to_owned());

    let join = |changes: Value, jid: &str, prefix: &str, unauth: Option<bool>| {
        let token = hs_token(&claims_with(changes));
        let verified = runtime
            .block_on(check(&verifier, &token, None))
            .expect("login accepted");
        let session = verified.room_session(prefix);
        let target = RoomTarget {
            jid,
            allow_unauthenticated_access: unauth,
        };
        match verify_room(&c.room_policy(), &session, &target) {
            RoomDecision::Allow { tenant_mismatch } => Ok(tenant_mismatch),
            RoomDecision::Deny { denial, .. } => Err(denial.text().to_owned()),
        }
    };
    let conf = |node: &str| format!("{node}@conference.{HOST}");

    // Room names, against the claim "room1".
    let rooms: &[(&str, String, Result<bool, String>)] = &[
        ("the room", conf("room1"), Ok(false)),
        ("ASCII case", conf("ROOM1"), Ok(false)),
        ("Cyrillic о, encoded", conf(&pct("rоom1")), mismatched.clone()),
        ("Cyrillic о, raw", conf("rоom1"), mismatched.clone()),
        ("Greek ο", conf(&pct("roοm1")), mismatched.clone()),
        ("fullwidth", conf(&pct("ｒｏｏｍ１")), mismatched.clone()),
        ("zero-width space", conf(&pct("room\u{200b}1")), mismatched.clone()),
        ("soft hyphen", conf(&pct("ro\u{ad}om1")), mismatched.clone()),
        (
            "right-to-left override",
            conf(&pct("\u{202e}room1")),
            mismatched.clone(),
        ),
        ("combining dot", conf(&pct("room1\u{307}")), mismatched.clone()),
        ("Arabic-Indic one", conf(&pct("room١")), mismatched.clone()),
        ("superscript one", conf(&pct("room¹")), mismatched.clone()),
        ("NUL", conf("room1%00"), mismatched.clone()),
        ("dotless ı", conf(&pct("room1ı")), mismatched.clone()),
    ];
    for (what, jid, want) in rooms {
        assert_eq!(&join(json!({}), jid, "", None), want, "room: {what}");
    }

    // Non-ASCII claims: compared decoded and lowercased, precomposed and decomposed forms differ.
    assert_eq!(join(json!({"room": "Тест"}), &conf(&pct("тест")), "", None), Ok(false));
    assert_eq!(join(json!({"room": "Тест"}), &conf(&pct("Тест")), "", None), Ok(false));
    assert_eq!(
        join(json!({"room": "Tест"}), &conf(&pct("тест")), "", None),
        mismatched,
        "Latin T"
    );
    assert_eq!(join(json!({"room": "café"}), &conf(&pct("café")), "", None), Ok(false));
    assert_eq!(
        join(json!({"room": "café"}), &conf(&pct("cafe\u{301}")), "", None),
        mismatched,
        "NFD"
    );

    // Tenants in the room name, against sub.
    let tenants: &[(&str, &str, Result<bool, String>)] = &[
        ("acme", "[acme]room1", Ok(false)),
        ("ACME", "[acme]room1", Ok(false)),
        ("acme", "[аcme]room1", mismatched.clone()),
        ("acme", "[%d0%b0cme]room1", mismatched.clone()),
        ("аcme", "[acme]room1", mismatched.clone()),
        ("acme", "[acme%e2%80%8b]room1", mismatched.clone()),
        ("acme", "[ａｃｍｅ]room1", mismatched.clone()),
    ];
    for (sub, node, want) in tenants {
        assert_eq!(
            &join(json!({"sub": sub}), &conf(node), "", None),
            want,
            "tenant: sub {sub:?}, room {node:?}"
        );
    }

    // context.tenant against the URL tenant: a look-alike is a mismatch.
    assert_eq!(
        join(
            json!({"context": {"tenant": "acme"}}),
            &conf("room1"),
            "ACME",
            Some(false)
        ),
        Ok(false)
    );
    assert_eq!(
        join(json!({"context": {"tenant": "acme"}}), &conf("room1"), "аcme", None),
        Ok(true),
        "let in, flagged"
    );
    assert_eq!(
        join(
            json!({"context": {"tenant": "acme"}}),
            &conf("room1"),
            "аcme",
            Some(false)
        ),
        mismatched
    );

    // The MUC domain: ASCII case only.
    assert_eq!(
        join(json!({}), "room1@CONFERENCE.meet.example.com", "", None),
        Ok(false)
    );
    assert_eq!(
        join(json!({}), "room1@conference.meet.exаmple.com", "", None),
        mismatched
    );
    assert_eq!(
        join(json!({"sub": "meet.exаmple.com"}), &conf("room1"), "", None),
        mismatched
    );

    // Patterns: classes are ASCII, as in Lua's C locale.
    let regex = |pattern: &str| json!({"room": pattern, "context": {"room": {"regex": true}}});
    assert_eq!(join(regex("^room%d+$"), &conf("room42"), "", None), Ok(false));
    assert_eq!(join(regex("^room%d+$"), &conf(&pct("room١")), "", None), no_match);
    assert_eq!(join(regex("^room%d+$"), &conf(&pct("room４２")), "", None), no_match);
    assert_eq!(join(regex("^room%w+$"), &conf(&pct("roomé")), "", None), no_match);
    assert_eq!(
        join(regex("^rоom%d+$"), &conf("room42"), "", None),
        no_match,
        "Cyrillic о in the pattern"
    );
}

// ---------------------------------------------------------------------------------------------
// The same verdicts from `token-sidecar verify`, as an admin checks a suspicious token.

fn cli_verdict(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", out))
}

#[test]
fn the_cli_gives_the_same_verdicts() {
    let mut config = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(
        &mut config,
        format!(
            "[hosts.\"{HOST}\"]\napp_id = \"myapp\"\napp_secret = \"{SECRET}\"\nmuc_mapper_domain_base = \"{HOST}\"\n"
        )
        .as_bytes(),
    )
    .expect("write config");
    let path = config.path().to_str().expect("path");
    let payload = base64url(claims().to_string().as_bytes());
    let none = format!("{}.{payload}.c2ln", base64url(br#"{"alg":"NoNe"}"#));
    let cases = [
        (none, "Invalid or incorrect alg"),
        (
            hs_jwt_with_header(
                Algorithm::HS256,
                SECRET.as_bytes(),
                &json!({"alg": "HS256", "crit": ["exp"]}),
                &claims(),
            ),
            "Invalid header",
        ),
        (hs_token(&claims_with(json!({"iss": ["myapp"]}))), "invalid 'iss' claim"),
        (
            raw_hs(
                r#"{"alg":"HS256","alg":"none"}"#,
                &claims().to_string(),
                Algorithm::HS256,
                SECRET.as_bytes(),
            ),
            "Invalid or incorrect alg",
        ),
        (
            raw_hs(
                r#"{"alg":"HS256"}"#,
                r#"{"iss":"myapp","aud":"jitsi","room":"room1","exp":NaN}"#,
                Algorithm::HS256,
                SECRET.as_bytes(),
            ),
            "Invalid body",
        ),
    ];
    let now = NOW.to_string();
    for (token, text) in cases {
        let out = common::cli::run(
            &["verify", "--config", path, "--host", HOST, "--at", &now, "-"],
            Some(&token),
        );
        assert_eq!(out.status.code(), Some(1), "{text}: {out:?}");
        let verdict = cli_verdict(&out);
        assert_eq!(verdict["ok"], json!(false), "{text}");
        assert_eq!(verdict["condition"], json!("not-allowed"), "{text}");
        assert_eq!(verdict["text"], json!(text), "{verdict}");
    }
    let out = common::cli::run(
        &["verify", "--config", path, "--host", HOST, "--at", &now, "-"],
        Some(&hs_token(&claims())),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
