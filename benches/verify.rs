//! In-process costs: full HS256 and RS256 verification (key cached) and HS256 minting, beside the
//! primitives they are measured against (HMAC-SHA256 over the token, one RSA-2048 verify), so
//! docs/PERFORMANCE.md can give ratios from one run.
//!
//! cargo bench --bench verify

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::TcpListener;

use aws_lc_rs::{hmac, signature};
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use serde_json::json;
use token_sidecar::config::Config;
use token_sidecar::keys::SigningKey;
use token_sidecar::token::{Accepted, AuthRequest, Minter, Verifier};

const NOW: i64 = 1_800_000_000;

fn claims() -> serde_json::Value {
    json!({
        "iss": "myapp", "aud": "jitsi", "sub": "meet.example.com", "room": "room1",
        "iat": NOW, "exp": NOW + 3600,
        "context": {"user": {"id": "4f2a9c", "name": "Alice Example", "email": "alice@example.com",
                             "avatar": "https://example.com/a.png"}, "group": "team-1"},
    })
}

fn verify_ok(verifier: &Verifier, token: &str) -> bool {
    let request = AuthRequest {
        token: Some(token),
        ..AuthRequest::default()
    };
    matches!(
        futures::executor::block_on(verifier.verify(&request, NOW)),
        Ok(Accepted::Token(_))
    )
}

/// Serves `body` with 200 to every request, on 127.0.0.1, from a background thread.
fn serve_forever(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    format!("http://{addr}/asap")
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn bench(c: &mut Criterion) {
    // The first RS256 verification fetches the key with reqwest, whose I/O and timers need a
    // running tokio runtime: a worker thread drives them while the bench thread blocks.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let hs_config = "[hosts.\"meet.example.com\"]\napp_id = \"myapp\"\napp_secret = \"s3cret-s3cret-s3cret\"\n";
    let hs = Config::from_toml(hs_config).expect("config").hosts["meet.example.com"].clone();
    let minter = Minter::with_secret(&hs).expect("minter");
    let claims_map = claims().as_object().cloned().expect("object");
    let hs_token = minter.sign(&claims_map).expect("sign");
    let hs_verifier = Verifier::new(hs.clone()).expect("verifier");
    assert!(verify_ok(&hs_verifier, &hs_token));

    let mut group = c.benchmark_group("hs256");
    group.bench_function("verify (full pipeline)", |b| {
        b.iter(|| verify_ok(&hs_verifier, black_box(&hs_token)))
    });
    let signed = &hs_token[..hs_token.rfind('.').expect("dot")];
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"s3cret-s3cret-s3cret");
    group.bench_function("baseline: 2x HMAC-SHA256 over the token", |b| {
        b.iter(|| {
            black_box(hmac::sign(&key, black_box(signed.as_bytes())));
            black_box(hmac::sign(&key, black_box(signed.as_bytes())));
        })
    });
    group.bench_function("mint", |b| {
        b.iter(|| minter.sign(black_box(&claims_map)).expect("sign"))
    });
    let payload = &signed[signed.find('.').expect("dot") + 1..];
    group.bench_function("component: base64 + JSON parse of the payload", |b| {
        b.iter(|| {
            let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, black_box(payload))
                .expect("b64");
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes).expect("json")
        })
    });
    group.bench_function("component: SHA-256 fingerprint", |b| {
        b.iter(|| token_sidecar::digest::fingerprint(black_box(hs_token.as_bytes())))
    });
    let minimal = json!({"iss": "myapp", "aud": "jitsi", "room": "room1", "exp": NOW + 3600});
    let minimal_token = minter.sign(minimal.as_object().expect("object")).expect("sign");
    assert!(verify_ok(&hs_verifier, &minimal_token));
    group.bench_function("verify (minimal claims)", |b| {
        b.iter(|| verify_ok(&hs_verifier, black_box(&minimal_token)))
    });
    let minimal_signed = &minimal_token[..minimal_token.rfind('.').expect("dot")];
    group.bench_function("baseline: 2x HMAC-SHA256 over the minimal token", |b| {
        b.iter(|| {
            black_box(hmac::sign(&key, black_box(minimal_signed.as_bytes())));
            black_box(hmac::sign(&key, black_box(minimal_signed.as_bytes())));
        })
    });
    group.finish();

    let key = SigningKey::generate_rsa().expect("rsa keygen");
    let spki = key.public_key_der().expect("spki");
    let base = serve_forever(pem("PUBLIC KEY", &spki));
    let rs_config = format!("[hosts.\"meet.example.com\"]\napp_id = \"myapp\"\nasap_key_server = \"{base}\"\n");
    let rs = Config::from_toml(&rs_config).expect("config").hosts["meet.example.com"].clone();
    let rs_minter = Minter::new(key, Algorithm::RS256, Some("jitsi/key1".into())).expect("minter");
    let rs_token = rs_minter.sign(&claims()).expect("rsa sign");
    let (input, sig) = rs_token.rsplit_once('.').expect("dot");
    let sig = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).expect("b64");
    let rs_verifier = Verifier::new(rs).expect("verifier");
    assert!(verify_ok(&rs_verifier, &rs_token), "RS256 token refused");

    let mut group = c.benchmark_group("rs256");
    group.bench_function("verify (full pipeline, key cached)", |b| {
        b.iter(|| verify_ok(&rs_verifier, black_box(&rs_token)))
    });
    let parsed = signature::ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &spki).expect("parse");
    group.bench_function("baseline: one RSA-2048 verify", |b| {
        b.iter(|| {
            parsed
                .verify_sig(black_box(input.as_bytes()), black_box(&sig))
                .expect("valid")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
