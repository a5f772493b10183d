//! docs/COMPATIBILITY.md's cases that need no Prosody, table-driven. Each asserts the verdict and the
//! exact text a client would see.

mod common;

use common::keys::hs_jwt_with_header;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use token_sidecar::config::{Config, HostSettings};
use token_sidecar::room::{RoomDecision, RoomSession, RoomTarget, verify_room};
use token_sidecar::token::{Accepted, AuthRequest, Verifier, base64url};

const NOW: i64 = 1_800_000_000;
const HOST: &str = "meet.example.com";

/// Base config C: app_id myapp, app_secret s3cret, muc_mapper_domain_base meet.example.com.
fn config(extra: &str) -> HostSettings {
    let text = format!(
        "[hosts.\"{HOST}\"]\napp_id = \"myapp\"\napp_secret = \"s3cret\"\nmuc_mapper_domain_base = \"{HOST}\"\n{extra}"
    );
    Config::from_toml(&text).expect("config").hosts[HOST].clone()
}

fn base_claims() -> Value {
    json!({"iss": "myapp", "aud": "jitsi", "sub": HOST, "room": "room1", "exp": NOW + 3600})
}

/// A token with exactly this header and payload, HMAC-signed with `secret` by `alg`.
fn sign(header: &Value, claims: &Value, alg: &str, secret: &str) -> String {
    let alg = alg.parse::<Algorithm>().expect("an HS algorithm");
    hs_jwt_with_header(alg, secret.as_bytes(), header, claims)
}

/// Base token T with some claims changed (`null` removes a claim).
fn token_with(changes: Value) -> String {
    let mut claims = base_claims();
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    sign(&json!({"alg": "HS256", "typ": "JWT"}), &claims, "HS256", "s3cret")
}

fn run(settings: &HostSettings, token: Option<&str>) -> Result<Accepted, String> {
    let verifier = Verifier::new(settings.clone()).expect("verifier");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let request = AuthRequest {
        token,
        ..AuthRequest::default()
    };
    runtime.block_on(verifier.verify(&request, NOW)).map_err(|r| {
        assert_eq!(r.reason.condition(), "not-allowed");
        r.reason.to_string()
    })
}

/// `None` expects success; `Some(text)` expects exactly that failure text.
fn expect(case: &str, settings: &HostSettings, token: Option<&str>, expected: Option<&str>) {
    let got = run(settings, token);
    match (expected, &got) {
        (None, Ok(_)) => {}
        (Some(text), Err(got_text)) if text == got_text => {}
        _ => panic!("case {case}: expected {expected:?}, got {got:?}"),
    }
}

#[test]
fn sasl_cases_1_to_17() {
    let c = config("");
    let t = token_with(json!({}));
    let header_hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let cases: Vec<(&str, HostSettings, Option<String>, Option<&str>)> = vec![
        ("1", c.clone(), Some(t.clone()), None),
        ("2", c.clone(), None, Some("token required")),
        ("3", config("allow_empty_token = true"), None, None),
        (
            "4",
            config("allow_empty_token = true"),
            Some(String::new()),
            Some("Invalid token"),
        ),
        ("5", c.clone(), Some("abc.def".into()), Some("Invalid token")),
        // Difference 7: typ absent or JWT in any case passes; another typ does not.
        (
            "6 no typ",
            c.clone(),
            Some(sign(&json!({"alg": "HS256"}), &base_claims(), "HS256", "s3cret")),
            None,
        ),
        (
            "6 jwt",
            c.clone(),
            Some(sign(
                &json!({"alg": "HS256", "typ": "jwt"}),
                &base_claims(),
                "HS256",
                "s3cret",
            )),
            None,
        ),
        (
            "6 JOSE",
            c.clone(),
            Some(sign(
                &json!({"alg": "HS256", "typ": "JOSE"}),
                &base_claims(),
                "HS256",
                "s3cret",
            )),
            Some("Invalid typ"),
        ),
        (
            "6 typ number",
            c.clone(),
            Some(sign(
                &json!({"alg": "HS256", "typ": 1}),
                &base_claims(),
                "HS256",
                "s3cret",
            )),
            Some("Invalid typ"),
        ),
        (
            "7",
            c.clone(),
            Some(sign(
                &json!({"alg": "HS512", "typ": "JWT"}),
                &base_claims(),
                "HS512",
                "s3cret",
            )),
            Some("Invalid or incorrect alg"),
        ),
        (
            "7 HS512 configured",
            config("signature_algorithm = \"HS512\""),
            Some(sign(
                &json!({"alg": "HS512", "typ": "JWT"}),
                &base_claims(),
                "HS512",
                "s3cret",
            )),
            None,
        ),
        (
            "8 empty signature",
            c.clone(),
            Some(format!(
                "{}.{}.",
                base64url(br#"{"alg":"none","typ":"JWT"}"#),
                base64url(base_claims().to_string().as_bytes())
            )),
            Some("Invalid token"),
        ),
        (
            "8 signature",
            c.clone(),
            Some(format!(
                "{}.{}.c2ln",
                base64url(br#"{"alg":"none","typ":"JWT"}"#),
                base64url(base_claims().to_string().as_bytes())
            )),
            Some("Invalid or incorrect alg"),
        ),
        (
            "9",
            c.clone(),
            Some(sign(&header_hs256, &base_claims(), "HS256", "wrong")),
            Some("Invalid signature"),
        ),
        (
            "10",
            c.clone(),
            Some(token_with(json!({"exp": NOW - 121, "iat": NOW - 121 - 3600}))),
            Some("Not acceptable by exp (121 sec since expired, valid for:3600 sec)"),
        ),
        (
            "10 no iat",
            c.clone(),
            Some(token_with(json!({"exp": NOW - 5}))),
            Some("Not acceptable by exp (5 sec since expired)"),
        ),
        (
            "10 exp == now",
            c.clone(),
            Some(token_with(json!({"exp": NOW}))),
            Some("Not acceptable by exp (0 sec since expired)"),
        ),
        (
            "11",
            c.clone(),
            Some(token_with(json!({"exp": "9999999999"}))),
            Some("exp must be number"),
        ),
        (
            "11 bad signature first",
            c.clone(),
            Some(sign(
                &header_hs256,
                &json!({"iss": "myapp", "aud": "jitsi", "room": "r", "exp": "9"}),
                "HS256",
                "x",
            )),
            Some("Invalid signature"),
        ),
        (
            "11 nbf",
            c.clone(),
            Some(token_with(json!({"nbf": "1"}))),
            Some("nbf must be number"),
        ),
        (
            "12",
            c.clone(),
            Some(token_with(json!({"nbf": NOW + 5}))),
            Some("Not acceptable by nbf"),
        ),
        (
            "12 leeway",
            config("token_leeway = 10"),
            Some(token_with(json!({"nbf": NOW + 5}))),
            None,
        ),
        (
            "12 leeway exp",
            config("token_leeway = 10"),
            Some(token_with(json!({"exp": NOW - 5}))),
            None,
        ),
        ("13", c.clone(), Some(token_with(json!({"exp": null}))), None),
        (
            "13 require exp",
            config("token_require_exp = true"),
            Some(token_with(json!({"exp": null}))),
            Some("'exp' claim is missing"),
        ),
        (
            "14",
            c.clone(),
            Some(token_with(json!({"iss": "other"}))),
            Some("invalid 'iss' claim"),
        ),
        (
            "14 missing",
            c.clone(),
            Some(token_with(json!({"iss": null}))),
            Some("'iss' claim is missing"),
        ),
        (
            "14 wildcard",
            config("asap_accepted_issuers = [\"*\"]"),
            Some(token_with(json!({"iss": "other"}))),
            None,
        ),
        (
            "14 numeric iss",
            c.clone(),
            Some(token_with(json!({"iss": 5}))),
            Some("invalid 'iss' claim"),
        ),
        (
            "15",
            c.clone(),
            Some(token_with(json!({"aud": null}))),
            Some("'aud' claim is missing"),
        ),
        // Difference 7: an array aud passes when one member is accepted.
        (
            "16",
            config("asap_accepted_audiences = [\"jitsi\"]"),
            Some(token_with(json!({"aud": ["x", "jitsi"]}))),
            None,
        ),
        (
            "16 no member",
            config("asap_accepted_audiences = [\"jitsi\"]"),
            Some(token_with(json!({"aud": ["x"]}))),
            Some("invalid 'aud' claim"),
        ),
        (
            "16 string",
            config("asap_accepted_audiences = [\"jitsi\"]"),
            Some(token_with(json!({"aud": "other"}))),
            Some("invalid 'aud' claim"),
        ),
        // Difference 1: a proper failure instead of no reply.
        (
            "17",
            c.clone(),
            Some(token_with(json!({"room": null}))),
            Some("'room' claim is missing"),
        ),
        (
            "17 not required",
            config("asap_require_room_claim = false"),
            Some(token_with(json!({"room": null}))),
            None,
        ),
        (
            "size",
            c.clone(),
            Some("a".repeat(16 * 1024 + 1)),
            Some("token too large"),
        ),
        (
            "two dots in a row",
            c.clone(),
            Some(t.replacen('.', "..", 1)),
            Some("Invalid token"),
        ),
        ("four parts", c.clone(), Some(format!("{t}.x")), Some("Invalid token")),
        (
            "header not JSON",
            c.clone(),
            Some(format!("e30x.{}", &t[t.find('.').unwrap() + 1..])),
            Some("Invalid header"),
        ),
        (
            "header array",
            c.clone(),
            Some(format!("{}.{}", base64url(b"[1]"), &t[t.find('.').unwrap() + 1..])),
            Some("Invalid header"),
        ),
        (
            "body not JSON",
            c.clone(),
            Some(format!("{}.bm9wZQ.c2ln", base64url(br#"{"alg":"HS256"}"#))),
            Some("Invalid body"),
        ),
        (
            "signature not base64",
            c.clone(),
            Some(format!("{}!!", t)),
            Some("Invalid signature"),
        ),
        (
            "iss checked before aud",
            c.clone(),
            Some(token_with(json!({"iss": "other", "aud": null}))),
            Some("invalid 'iss' claim"),
        ),
        (
            "exp before iss",
            c.clone(),
            Some(token_with(json!({"iss": null, "exp": NOW - 1}))),
            Some("Not acceptable by exp (1 sec since expired)"),
        ),
    ];
    for (case, settings, token, expected) in cases {
        expect(case, &settings, token.as_deref(), expected);
    }
}

#[test]
fn case_1_session_fields() {
    let t = token_with(
        json!({"context": {"user": {"id": "u1", "name": "Alice"}, "group": "g", "tenant": "acme",
                              "features": {"recording": true}, "room": {"regex": false}}}),
    );
    let Ok(Accepted::Token(verified)) = run(&config(""), Some(&t)) else {
        panic!("not accepted")
    };
    let fields = serde_json::to_value(verified.session_view()).unwrap();
    assert_eq!(
        fields,
        json!({
            "jitsi_meet_room": "room1", "jitsi_meet_domain": HOST, "jitsi_meet_auth_issuer": "myapp",
            "jitsi_meet_str_tenant": "acme", "jitsi_meet_context_user": {"id": "u1", "name": "Alice"},
            "jitsi_meet_context_group": "g", "jitsi_meet_context_features": {"recording": true},
            "jitsi_meet_context_room": {"regex": false},
        })
    );
    assert_eq!(verified.fingerprint.len(), 8);

    // Firebase style: a top-level user_id and no context.
    let t = token_with(json!({"user_id": "abc"}));
    let Ok(Accepted::Token(verified)) = run(&config(""), Some(&t)) else {
        panic!("not accepted")
    };
    assert_eq!(
        serde_json::to_value(verified.session_view()).unwrap()["jitsi_meet_context_user"],
        json!({"id": "abc"})
    );
}

#[test]
fn case_3_anonymous_has_no_fields() {
    assert_eq!(run(&config("allow_empty_token = true"), None), Ok(Accepted::Anonymous));
}

#[test]
fn context_required() {
    let verifier = Verifier::new(config("")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let t = token_with(json!({}));
    let request = AuthRequest {
        token: Some(&t),
        context_required: true,
        sha256: None,
        ..AuthRequest::default()
    };
    let err = runtime.block_on(verifier.verify(&request, NOW)).unwrap_err();
    assert_eq!(err.reason.to_string(), "jwt missing required context claim");
}

/// Room joins (cases 28–34) after a successful login with the given claim changes.
fn join(settings: &HostSettings, changes: Value, room: &str, prefix: &str) -> Result<bool, (String, Option<String>)> {
    let t = token_with(changes);
    let Ok(Accepted::Token(verified)) = run(settings, Some(&t)) else {
        panic!("token refused")
    };
    let session: RoomSession<'_> = verified.room_session(prefix);
    let target = RoomTarget {
        jid: room,
        allow_unauthenticated_access: None,
    };
    match verify_room(&settings.room_policy(), &session, &target) {
        RoomDecision::Allow { .. } => Ok(true),
        RoomDecision::Deny { denial, .. } => Err((denial.text().to_owned(), denial.jitmeet().map(str::to_owned))),
    }
}

#[test]
fn room_cases_28_to_34() {
    let c = config("");
    let mismatched = Err(("Room and token mismatched".to_owned(), None));
    let conf = |node: &str| format!("{node}@conference.{HOST}");
    assert_eq!(join(&c, json!({"room": "Room1"}), &conf("room1"), ""), Ok(true), "28");
    assert_eq!(join(&c, json!({}), &conf("room2"), ""), mismatched, "29");
    assert_eq!(join(&c, json!({"room": "*"}), &conf("room2"), ""), Ok(true), "30");
    assert_eq!(
        join(&c, json!({"room": "*", "sub": "other.com"}), &conf("room2"), ""),
        mismatched,
        "30 other sub"
    );
    assert_eq!(
        join(&c, json!({"sub": "ACME"}), &conf("[acme]room1"), ""),
        Ok(true),
        "31"
    );
    assert_eq!(
        join(&c, json!({"sub": "other"}), &conf("[acme]room1"), ""),
        mismatched,
        "31 other"
    );
    assert_eq!(
        join(&c, json!({"sub": "*"}), &conf("[acme]room1"), ""),
        Ok(true),
        "31 *"
    );
    let regex = json!({"room": "^room%d+$", "context": {"room": {"regex": true}}});
    assert_eq!(join(&c, regex.clone(), &conf("room42"), ""), Ok(true), "32");
    assert_eq!(
        join(&c, regex, &conf("roomx"), ""),
        Err((
            "Room name cannot be matched to the one from token.".to_owned(),
            Some("room-name-does-not-match".to_owned())
        )),
        "32 no match"
    );
    let off = config("enable_domain_verification = false");
    assert_eq!(
        join(&off, json!({"sub": "nonsense"}), &conf("[acme]room1"), ""),
        Ok(true),
        "33"
    );
    assert_eq!(
        join(&off, json!({"sub": "nonsense"}), &conf("room2"), ""),
        Err((
            "Room does not match the room from token".to_owned(),
            Some("room-mismatch".to_owned())
        )),
        "33 other room"
    );
    // Difference 2: no sub with domain verification on is a refusal, not a Lua error.
    assert_eq!(join(&c, json!({"sub": null}), &conf("room1"), ""), mismatched, "34");
}
