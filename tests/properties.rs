//! Property tests: whatever a client sends, verification never panics, and nothing is accepted
//! without a valid signature.

use proptest::prelude::*;
use serde_json::json;
use token_sidecar::config::{Config, HostSettings};
use token_sidecar::token::{Accepted, AuthRequest, Minter, Verifier};

const NOW: i64 = 1_800_000_000;

fn settings() -> HostSettings {
    let text = "[hosts.\"h\"]\napp_id = \"myapp\"\napp_secret = \"s3cret\"\nasap_require_room_claim = false\n\
                asap_accepted_issuers = \"*\"";
    Config::from_toml(text).unwrap().hosts["h"].clone()
}

fn verify(verifier: &Verifier, token: &str) -> bool {
    let request = AuthRequest {
        token: Some(token),
        ..AuthRequest::default()
    };
    matches!(
        futures::executor::block_on(verifier.verify(&request, NOW)),
        Ok(Accepted::Token(_))
    )
}

fn valid_token() -> String {
    let claims = json!({"iss": "myapp", "aud": "jitsi", "room": "r", "exp": NOW + 60});
    Minter::with_secret(&settings())
        .unwrap()
        .sign(claims.as_object().unwrap())
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_text_is_never_accepted(token in "\\PC{0,400}") {
        let verifier = Verifier::new(settings()).unwrap();
        prop_assert!(!verify(&verifier, &token));
    }

    #[test]
    fn jwt_shaped_noise_is_never_accepted(h in "[A-Za-z0-9_=-]{0,60}", p in "[A-Za-z0-9_=-]{0,120}", s in "[A-Za-z0-9_=-]{0,60}") {
        let verifier = Verifier::new(settings()).unwrap();
        let token = format!("{h}.{p}.{s}");
        prop_assert!(!verify(&verifier, &token));
    }

    #[test]
    fn any_change_to_a_valid_token_is_refused(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4)) {
        let verifier = Verifier::new(settings()).unwrap();
        let original = valid_token();
        prop_assert!(verify(&verifier, &original));
        let mut bytes = original.clone().into_bytes();
        for (index, byte, kind) in edits {
            let at = index.index(bytes.len().max(1));
            let printable = b'!' + byte % 94;
            match kind {
                0 if at < bytes.len() => bytes[at] = printable,
                1 => bytes.insert(at.min(bytes.len()), printable),
                _ if !bytes.is_empty() => { bytes.remove(at.min(bytes.len() - 1)); }
                _ => {}
            }
        }
        let mutated = String::from_utf8(bytes).unwrap();
        prop_assume!(mutated != original);
        prop_assert!(!verify(&verifier, &mutated), "accepted a changed token: {}", mutated);
    }

    #[test]
    fn correctly_signed_arbitrary_claims_never_panic(claims in arbitrary_json(3)) {
        let verifier = Verifier::new(settings()).unwrap();
        let mut map = serde_json::Map::new();
        map.insert("x".into(), claims);
        let token = Minter::with_secret(&settings()).unwrap().sign(&map).unwrap();
        let _ = verify(&verifier, &token);
    }
}

fn arbitrary_json(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,20}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(depth, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn claims_with_every_type_never_panic() {
    let verifier = Verifier::new(settings()).unwrap();
    let minter = Minter::with_secret(&settings()).unwrap();
    let values = [
        json!(null),
        json!(true),
        json!(1),
        json!(1.5),
        json!(-1e300),
        json!("s"),
        json!([]),
        json!({}),
    ];
    for name in ["iss", "aud", "exp", "nbf", "iat", "room", "sub", "context", "user_id"] {
        for value in &values {
            let mut claims = json!({"iss": "myapp", "aud": "jitsi", "room": "r", "exp": NOW + 60});
            claims[name] = value.clone();
            let token = minter.sign(claims.as_object().unwrap()).unwrap();
            let request = AuthRequest {
                token: Some(&token),
                ..AuthRequest::default()
            };
            if let Ok(Accepted::Token(t)) = futures::executor::block_on(verifier.verify(&request, NOW)) {
                let _ = serde_json::to_value(t.session_view()).unwrap();
                let _ = t.room_session("");
            }
        }
    }
}
