//! A key source's answer, end to end: an HTTP server on loopback answers with the fuzzer's status,
//! `Cache-Control`, `Age` and body, and the daemon's own `KeyServer` (`asap_key_server`: one PEM
//! per kid) or `JwksSource` (`cache_keys_url`: JWKS or a Firebase `{kid: certificate}` map)
//! fetches it. This is the only way to reach the private body parsers (`parse_key_set`, the
//! `Cache-Control` reader and the body limits in `keys::fetch`) without editing `src/`.
//!
//! Input: byte 0 (bit 0: key server or key set; bits 1-2: status 200, 200, 204 or 503), then the
//! `Cache-Control` value up to the first newline, the `Age` value up to the next, then the body.
//!
//! Must hold: no panic, no hang; a key server's key is exactly `VerifyingKey::from_pem` of a 200
//! body (same fingerprint), and such a body is never refused; a key set loads exactly the keys a
//! JWKS lists with a kid and a usable JWK (the first of a kid wins), or a map's usable PEM
//! values, each found by its kid with the fingerprint `from_jwk`/`from_pem` gives; it refuses
//! a set that lists keys none of which is usable, and anything but a 200.
#![no_main]

#[path = "common/http.rs"]
mod http;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use token_sidecar::config::Config;
use token_sidecar::keys::{JwksSource, JwksTiming, KeyError, KeyServer, VerifyingKey};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

struct Answer {
    status: u16,
    cache_control: Vec<u8>,
    age: Vec<u8>,
    body: Vec<u8>,
}

static ANSWER: Mutex<Option<Answer>> = Mutex::new(None);
static KIDS: AtomicU64 = AtomicU64::new(0);

struct World {
    runtime: Runtime,
    key_server: KeyServer,
    key_set: JwksSource,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        runtime.spawn(serve(listener));
        let base = format!("http://127.0.0.1:{port}");
        // The fetch settings a host gets from its options, without retries.
        let config = Config::from_toml(&format!(
            "[hosts.\"h\"]\napp_id = \"a\"\nasap_key_server = \"{base}/keys\"\n\
             asap_key_fetch_retries = 0\nasap_key_fetch_timeout = 10\n"
        ))
        .expect("config");
        let mut fetch = config.hosts["h"].fetch.clone();
        fetch.unknown_kid_rate = 0; // every exec asks for a new kid: no limit (not settable by option)
        let key_server = KeyServer::new(&format!("{base}/keys"), fetch.clone()).expect("key server");
        let timing = JwksTiming {
            grace: Duration::ZERO,
            ..JwksTiming::default()
        };
        let key_set = JwksSource::with_timing(&format!("{base}/jwks.json"), fetch, timing).expect("key set");
        World {
            runtime,
            key_server,
            key_set,
        }
    })
}

/// One answer per connection, whatever was asked.
async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        http::read_request_head(&mut stream).await;
        let response = {
            let answer = ANSWER.lock().unwrap_or_else(|p| p.into_inner());
            let Some(answer) = answer.as_ref() else { continue };
            let mut out = format!(
                "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
                answer.status,
                answer.body.len()
            )
            .into_bytes();
            for (name, value) in [(&b"Cache-Control"[..], &answer.cache_control), (b"Age", &answer.age)] {
                if !value.is_empty() {
                    out.extend_from_slice(name);
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value);
                    out.extend_from_slice(b"\r\n");
                }
            }
            out.extend_from_slice(b"Connection: close\r\n\r\n");
            out.extend_from_slice(&answer.body);
            out
        };
        let _ = stream.write_all(&response).await;
        let _ = stream.shutdown().await;
    }
}

/// A header value a server could send: visible ASCII, spaces and tabs.
fn header_value(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .copied()
        .filter(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .take(200)
        .collect()
}

fn transient(error: &KeyError) -> bool {
    matches!(error, KeyError::Timeout { .. } | KeyError::Connect { .. })
}

/// The keys a set body should give, by kid: what `from_jwk`/`from_pem` make of each entry.
fn expected_set(body: &[u8]) -> Option<(HashMap<String, String>, usize)> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    let object = doc.as_object()?;
    let mut keys = HashMap::new();
    let mut listed = 0;
    if let Some(list) = object.get("keys") {
        for jwk in list.as_array()? {
            listed += 1;
            if let Some(kid) = jwk.get("kid").and_then(Value::as_str).filter(|k| !k.is_empty())
                && let Ok(key) = VerifyingKey::from_jwk(jwk)
            {
                keys.entry(kid.to_owned())
                    .or_insert_with(|| key.fingerprint().to_owned());
            }
        }
    } else {
        for (kid, value) in object {
            listed += 1;
            if let Some(pem) = value.as_str()
                && let Ok(key) = VerifyingKey::from_pem(pem.as_bytes())
            {
                keys.insert(kid.clone(), key.fingerprint().to_owned());
            }
        }
    }
    Some((keys, listed))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (cache_control, rest) = split_line(rest);
    let (age, body) = split_line(rest);
    let status = [200, 200, 204, 503][usize::from(mode >> 1) % 4];
    let world = world();
    *ANSWER.lock().unwrap_or_else(|p| p.into_inner()) = Some(Answer {
        status,
        cache_control: header_value(cache_control),
        age: header_value(age),
        body: body.to_vec(),
    });
    let served_ok = status == 200 && !body.is_empty();

    if mode & 1 == 0 {
        let kid = format!("kid-{}", KIDS.fetch_add(1, Ordering::Relaxed));
        let got = world.runtime.block_on(world.key_server.key(&kid));
        let direct = VerifyingKey::from_pem(body);
        match (&got, &direct) {
            (Ok(key), Ok(direct)) => {
                assert!(served_ok, "a key from an HTTP {status} answer");
                assert_eq!(key.fingerprint(), direct.fingerprint(), "another key than the body's");
            }
            (Ok(_), Err(e)) => panic!("the key server took a body from_pem refuses ({e})"),
            (Err(e), Ok(_)) if served_ok => assert!(transient(e), "a usable 200 body refused: {e}"),
            (Err(e), _) => {
                let _ = e.to_string();
            }
        }
    } else {
        let loaded = world.runtime.block_on(world.key_set.refresh());
        let expected = expected_set(body);
        match (&loaded, &expected) {
            (Ok(count), Some((keys, listed))) => {
                assert!(served_ok, "a key set from an HTTP {status} answer");
                assert!(
                    !keys.is_empty() || *listed == 0,
                    "a set none of whose {listed} keys is usable loaded"
                );
                assert_eq!(
                    *count,
                    keys.len(),
                    "the set holds another number of keys than it lists usable"
                );
                for (kid, fingerprint) in keys {
                    let key = world
                        .runtime
                        .block_on(world.key_set.key(kid))
                        .expect("lookup in a loaded set")
                        .unwrap_or_else(|| panic!("kid {kid:?} is usable but not in the loaded set"));
                    assert_eq!(key.fingerprint(), fingerprint, "kid {kid:?} holds another key");
                }
            }
            (Ok(_), None) => {
                panic!("a key set loaded from a body that is not a JSON object (or whose keys is not an array)")
            }
            (Err(e), Some((keys, _))) if served_ok && !keys.is_empty() => {
                assert!(transient(e), "a key set with usable keys refused: {e}")
            }
            (Err(e), _) => {
                let _ = e.to_string();
            }
        }
    }
});

fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}
