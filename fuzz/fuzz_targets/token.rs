//! Tokens against `token::Verifier`, and the room rules of what they let in. Three hosts: two with
//! an `app_secret` (HS), one with a key set (`cache_keys_url`, served on loopback: an ES256 key
//! with kid `es` and an Ed25519 key with kid `ed`), so that the kid and key-choice path runs too.
//!
//! Input: byte 0 holds flags (bits 0-1: mode, 0 = raw, else signed; bits 2-3: the host and key:
//! HS host a, HS host b, key-set host c signing with `es`, host c signing with `ed`; bit 4:
//! `context_required`; bit 5: a room join instead of a login). Raw: the rest is the token text.
//! Signed: the rest is `header JSON \n claims JSON \n room JID \n tamper bytes`; the target signs
//! header and claims (as given, byte for byte) with the host's secret (HS256) or the chosen key.
//!
//! Must hold:
//! - no panic, no hang, whatever the input;
//! - raw text is never accepted (the fuzzer cannot forge an HMAC with the secret below);
//! - an accepted signed token meets every rule of docs/COMPATIBILITY.md for its host: `alg` one of
//!   the host's and the one it was signed with, on host c a `kid` naming the key that signed,
//!   `typ` absent or JWT, `exp` a number not past (with the leeway) and present when
//!   `token_require_exp`, `nbf` a number not in the future, `iss`/`aud` present and listed (unless
//!   `*`), `room` present when required, `context` when the request requires it; its claims and
//!   header are exactly what was signed;
//! - the signed token with one character changed, inserted or removed (anywhere: header, claims,
//!   signature, dots) is never accepted — no malleable base64, no second form of a signature;
//! - an accepted token's session fields serialise and its room rules answer for any room JID.
#![no_main]

#[path = "common/http.rs"]
mod http;
#[path = "common/tamper.rs"]
mod tamper;

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use token_sidecar::config::Config;
use token_sidecar::keys::{PublicJwk, SigningKey, generate, jwk_set};
use token_sidecar::room::{RoomTarget, verify_room};
use token_sidecar::token::{Accepted, AuthRequest, Purpose, VerifiedToken, Verifier};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

const NOW: i64 = 1_800_000_000;
const SECRET: &[u8] = b"fuzz-secret";
/// Issue 10 item 7: an array `iss` is refused (only `aud` may be an array), even under `*`.
const STRICT_ISS: bool = true;

struct Host {
    verifier: Verifier,
    issuers: &'static [&'static str],
    audiences: &'static [&'static str],
    algs: &'static [&'static str],
    leeway: f64,
    require_exp: bool,
    require_room: bool,
}

struct World {
    runtime: Runtime,
    hosts: [Host; 3],
    es256: SigningKey,
    eddsa: SigningKey,
}

/// Serves `body` to every request, one answer per connection.
async fn serve(listener: TcpListener, body: String) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        http::read_request_head(&mut stream).await;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let private = |alg| {
            let generated = generate(alg).expect("generate");
            SigningKey::from_pem(generated.private_pem().as_bytes()).expect("load")
        };
        let (es256, eddsa) = (private(Algorithm::ES256), private(Algorithm::EdDSA));
        let set = jwk_set(&[
            PublicJwk::from_signing_key(&es256, "es", Algorithm::ES256).expect("jwk"),
            PublicJwk::from_signing_key(&eddsa, "ed", Algorithm::EdDSA).expect("jwk"),
        ]);
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        runtime.spawn(serve(listener, set.to_string()));
        let config = Config::from_toml(&format!(
            "[hosts.\"a.example\"]\napp_id = \"a\"\napp_secret = \"fuzz-secret\"\n\
             asap_accepted_issuers = [\"iss1\", \"iss2\"]\nasap_accepted_audiences = [\"aud1\"]\n\
             token_leeway = 30\ntoken_require_exp = true\nasap_require_room_claim = true\n\
             enable_domain_verification = true\nmuc_mapper_domain_base = \"a.example\"\n\
             [hosts.\"b.example\"]\napp_id = \"b\"\napp_secret = \"fuzz-secret\"\n\
             asap_accepted_issuers = \"*\"\nsignature_algorithm = [\"HS256\", \"HS512\"]\n\
             token_leeway = 0\nasap_require_room_claim = false\nenable_domain_verification = false\n\
             [hosts.\"c.example\"]\napp_id = \"c\"\ncache_keys_url = \"http://127.0.0.1:{port}/jwks.json\"\n\
             asap_accepted_issuers = \"*\"\nsignature_algorithm = [\"RS256\", \"ES256\", \"EdDSA\"]\n\
             token_leeway = 0\nasap_require_room_claim = false\nmuc_mapper_domain_base = \"c.example\"\n"
        ))
        .expect("config");
        let verifier = |name: &str| Verifier::new(config.hosts[name].clone()).expect("verifier");
        let hosts = [
            Host {
                verifier: verifier("a.example"),
                issuers: &["iss1", "iss2"],
                audiences: &["aud1"],
                algs: &["HS256"],
                leeway: 30.0,
                require_exp: true,
                require_room: true,
            },
            Host {
                verifier: verifier("b.example"),
                issuers: &["*"],
                audiences: &["*"],
                algs: &["HS256", "HS512"],
                leeway: 0.0,
                require_exp: false,
                require_room: false,
            },
            Host {
                verifier: verifier("c.example"),
                issuers: &["*"],
                audiences: &["*"],
                algs: &["RS256", "ES256", "EdDSA"],
                leeway: 0.0,
                require_exp: false,
                require_room: false,
            },
        ];
        World {
            runtime,
            hosts,
            es256,
            eddsa,
        }
    })
}

fn verify(host: &Host, token: &str, context_required: bool, purpose: Purpose) -> Option<Box<VerifiedToken>> {
    let request = AuthRequest {
        token: Some(token),
        context_required,
        purpose,
        ..AuthRequest::default()
    };
    match world().runtime.block_on(host.verifier.verify(&request, NOW)) {
        Ok(Accepted::Token(verified)) => Some(verified),
        Ok(Accepted::Anonymous) => panic!("a token was taken as an anonymous login"),
        Err(rejection) => {
            let _ = (rejection.reason.to_string(), rejection.reason.condition());
            None
        }
    }
}

fn listed(value: Option<&Value>, accepted: &[&str], arrays: bool) -> bool {
    let Some(value) = value else { return false };
    if value.is_array() && !arrays {
        return false;
    }
    if accepted.contains(&"*") {
        return true;
    }
    let one = |v: &Value| v.as_str().is_some_and(|s| accepted.contains(&s));
    match value {
        Value::Array(items) if arrays => items.iter().any(one),
        other => one(other),
    }
}

/// Every rule an accepted token must meet. `signer` is the alg and kid it was signed with.
fn check_accepted(
    host: &Host,
    signer: (&str, Option<&str>),
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    context_required: bool,
    purpose: Purpose,
) {
    let alg = header.get("alg").and_then(Value::as_str);
    assert!(alg.is_some_and(|a| host.algs.contains(&a)), "accepted alg {alg:?}");
    assert_eq!(
        alg,
        Some(signer.0),
        "accepted a token signed {} whose header says {alg:?}",
        signer.0
    );
    if let Some(kid) = signer.1 {
        assert_eq!(
            header.get("kid").and_then(Value::as_str),
            Some(kid),
            "accepted a token signed by {kid} under another kid"
        );
    }
    if let Some(typ) = header.get("typ") {
        assert!(
            typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT")),
            "accepted typ {typ}"
        );
    }
    if purpose == Purpose::Login {
        let now = NOW as f64;
        match claims.get("exp") {
            Some(exp) => {
                let exp = exp
                    .as_f64()
                    .unwrap_or_else(|| panic!("accepted a non-numeric exp {exp}"));
                assert!(now < exp + host.leeway, "accepted an expired token (exp {exp})");
            }
            None => assert!(!host.require_exp, "accepted a token without exp"),
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf
                .as_f64()
                .unwrap_or_else(|| panic!("accepted a non-numeric nbf {nbf}"));
            assert!(now + host.leeway >= nbf, "accepted a token not valid yet (nbf {nbf})");
        }
    }
    assert!(
        listed(claims.get("iss"), host.issuers, !STRICT_ISS),
        "accepted iss {:?}",
        claims.get("iss")
    );
    assert!(
        listed(claims.get("aud"), host.audiences, true),
        "accepted aud {:?}",
        claims.get("aud")
    );
    if host.require_room {
        assert!(claims.contains_key("room"), "accepted a token without a room claim");
    }
    if context_required {
        assert!(claims.contains_key("context"), "accepted a token without context");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let world = world();
    let choice = usize::from(flags >> 2) & 3;
    let host = &world.hosts[choice.min(2)];
    let context_required = flags & 16 != 0;
    let purpose = if flags & 32 != 0 {
        Purpose::RoomJoin
    } else {
        Purpose::Login
    };

    if flags & 3 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else { return };
        assert!(
            verify(host, token, context_required, purpose).is_none(),
            "accepted a forged token"
        );
        return;
    }

    let mut parts = rest.splitn(4, |&b| b == b'\n');
    let (header, claims) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let room = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let tamper = parts.next().unwrap_or_default();
    let signed = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let hmac = SigningKey::hmac(SECRET);
    let (key, alg, signer) = match choice {
        0 | 1 => (&hmac, Algorithm::HS256, ("HS256", None)),
        2 => (&world.es256, Algorithm::ES256, ("ES256", Some("es"))),
        _ => (&world.eddsa, Algorithm::EdDSA, ("EdDSA", Some("ed"))),
    };
    let signature = key.sign(alg, signed.as_bytes()).expect("sign");
    let token = format!("{signed}.{}", B64.encode(signature));

    if let Some(verified) = verify(host, &token, context_required, purpose) {
        let header: Map<String, Value> =
            serde_json::from_slice(header).expect("accepted a header that is not an object");
        let claims: Map<String, Value> =
            serde_json::from_slice(claims).expect("accepted claims that are not an object");
        assert_eq!(verified.header, header, "the verified header is not the one signed");
        assert_eq!(verified.claims, claims, "the verified claims are not the ones signed");
        check_accepted(host, signer, &header, &claims, context_required, purpose);

        let _ = serde_json::to_string(&verified.session_view()).expect("session fields serialise");
        let policy = host.verifier.settings().room_policy();
        for prefix in ["", "tenant"] {
            let session = verified.room_session(prefix);
            for allow in [None, Some(false), Some(true)] {
                let _ = verify_room(
                    &policy,
                    &session,
                    &RoomTarget {
                        jid: &room,
                        allow_unauthenticated_access: allow,
                    },
                );
            }
        }
    }

    if let Some(changed) = tamper::tampered(&token, tamper)
        && changed != token
    {
        assert!(
            verify(host, &changed, context_required, purpose).is_none(),
            "accepted a changed token: {changed:?} (signed: {token:?})"
        );
    }
});
