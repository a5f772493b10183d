//! Room rules against docs/COMPATIBILITY.md cases 28–39 and the deliberate differences 2, 8 and 9.
//!
//! Base config C: domain verification on, `muc_mapper_domain_base = meet.example.com`, prefix
//! `conference`, MUC domain `conference.meet.example.com`, room claim required, no empty tokens.
//! Base token T: `sub = meet.example.com`, `room = room1`.

use serde_json::{Value, json};
use token_sidecar::room::{RoomDecision, RoomDenial, RoomPolicy, RoomSession, RoomTarget, verify_room};

const MUC: &str = "conference.meet.example.com";

fn base_policy() -> RoomPolicy {
    RoomPolicy {
        enable_domain_verification: true,
        require_room_claim: true,
        allow_empty_token: false,
        muc_domain_base: Some("meet.example.com".to_owned()),
        muc_domain_prefix: "conference".to_owned(),
        muc_domain: Some(MUC.to_owned()),
    }
}

/// T with `changes` merged in; a `null` value removes the claim.
fn token(changes: Value) -> Option<Value> {
    let mut claims = json!({"iss": "myapp", "aud": "jitsi", "sub": "meet.example.com", "room": "room1"});
    if let (Some(claims), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
        for (k, v) in changes {
            if v.is_null() {
                claims.remove(k);
            } else {
                claims.insert(k.clone(), v.clone());
            }
        }
    }
    Some(claims)
}

fn jid(node: &str) -> String {
    format!("{node}@{MUC}")
}

#[derive(Debug)]
enum Want {
    Allow,
    /// Allowed, with `jitsi_meet_tenant_mismatch` set.
    AllowMismatchedTenant,
    /// Refused with this denial; the detail contains the text.
    Deny(RoomDenial, &'static str),
}

struct Case {
    name: &'static str,
    policy: RoomPolicy,
    /// The token's claims; `None` for a session without a token.
    token: Option<Value>,
    prefix: &'static str,
    jid: String,
    unauth: Option<bool>,
    want: Want,
}

fn case(name: &'static str, token: Option<Value>, jid: String, want: Want) -> Case {
    Case {
        name,
        policy: base_policy(),
        token,
        prefix: "",
        jid,
        unauth: None,
        want,
    }
}

impl Case {
    fn policy(mut self, change: impl FnOnce(&mut RoomPolicy)) -> Self {
        change(&mut self.policy);
        self
    }
    fn prefix(mut self, prefix: &'static str) -> Self {
        self.prefix = prefix;
        self
    }
    fn unauth(mut self, flag: bool) -> Self {
        self.unauth = Some(flag);
        self
    }

    fn run(&self) -> RoomDecision {
        let claims = self.token.as_ref();
        let session = RoomSession {
            has_token: claims.is_some(),
            room: claims.and_then(|c| c.get("room")),
            sub: claims.and_then(|c| c.get("sub")),
            context_room: claims.and_then(|c| c.pointer("/context/room")),
            tenant: claims.and_then(|c| c.pointer("/context/tenant")),
            query_prefix: self.prefix,
        };
        let target = RoomTarget {
            jid: &self.jid,
            allow_unauthenticated_access: self.unauth,
        };
        verify_room(&self.policy, &session, &target)
    }

    fn check(&self) {
        let got = self.run();
        let ok = match (&self.want, &got) {
            (Want::Allow, RoomDecision::Allow { tenant_mismatch: false }) => true,
            (Want::AllowMismatchedTenant, RoomDecision::Allow { tenant_mismatch: true }) => true,
            (Want::Deny(want, text), RoomDecision::Deny { denial, detail }) => want == denial && detail.contains(text),
            _ => false,
        };
        assert!(ok, "{}: want {:?}, got {got:?}", self.name, self.want);
    }
}

fn off(p: &mut RoomPolicy) {
    p.enable_domain_verification = false;
}

fn regex(room: &str) -> Option<Value> {
    token(json!({"room": room, "context": {"room": {"regex": true}}}))
}

use RoomDenial::*;
use Want::{Allow, AllowMismatchedTenant, Deny};

#[test]
fn cases_28_to_39() {
    let cases = vec![
        case(
            "28 claim case differs",
            token(json!({"room": "Room1"})),
            jid("room1"),
            Allow,
        ),
        case(
            "29 other room",
            token(json!({})),
            jid("room2"),
            Deny(
                Mismatched,
                "expects \"room1@conference.meet.example.com\", joining \"room2@",
            ),
        ),
        case("30 room *", token(json!({"room": "*"})), jid("room2"), Allow),
        case(
            "30 room * with other sub",
            token(json!({"room": "*", "sub": "other.com"})),
            jid("room2"),
            Deny(
                Mismatched,
                "token sub \"other.com\" expects \"room2@conference.other.com\", joining \"room2@conference.meet.example.com\"",
            ),
        ),
        case(
            "31 tenant sub ACME",
            token(json!({"sub": "ACME"})),
            jid("[acme]room1"),
            Allow,
        ),
        case(
            "31 tenant sub other",
            token(json!({"sub": "other"})),
            jid("[acme]room1"),
            Deny(Mismatched, "[other]room1@"),
        ),
        case("31 tenant sub *", token(json!({"sub": "*"})), jid("[acme]room1"), Allow),
        case("32 regex matches", regex("^room%d+$"), jid("room42"), Allow),
        case(
            "32 regex does not match",
            regex("^room%d+$"),
            jid("roomx"),
            Deny(RoomNameDoesNotMatch, "\"roomx\""),
        ),
        case(
            "33 off, tenant room",
            token(json!({"sub": "nonsense"})),
            jid("[acme]room1"),
            Allow,
        )
        .policy(off),
        case(
            "33 off, other room",
            token(json!({"sub": "nonsense"})),
            jid("room2"),
            Deny(RoomMismatch, "\"room2\""),
        )
        .policy(off),
        // Difference 2: Jitsi's plugin raises a Lua error and sends no reply.
        case(
            "34 no sub",
            token(json!({"sub": null})),
            jid("room1"),
            Deny(Mismatched, "no sub claim"),
        ),
        case(
            "36 guest, verification on",
            None,
            jid("room1"),
            Deny(RoomNameDoesNotMatch, "no room claim"),
        ),
        case("36 guest, verification off", None, jid("room1"), Allow).policy(off),
        case(
            "37 empty token, room locked",
            None,
            jid("room1"),
            Deny(AuthenticationRequired, "no token"),
        )
        .policy(|p| p.allow_empty_token = true)
        .unauth(false),
        case("37 empty token, flag unset", None, jid("room1"), Allow).policy(|p| p.allow_empty_token = true),
        // Difference 9: no `room-does-not-exist`; the room need not exist.
        case("38 new room", token(json!({"room": "newroom"})), jid("newroom"), Allow),
        case(
            "39 tenant equals prefix",
            token(json!({"context": {"tenant": "Acme"}})),
            jid("room1"),
            Allow,
        )
        .prefix("acme"),
        case(
            "39 tenant differs",
            token(json!({"context": {"tenant": "Acme"}})),
            jid("room1"),
            AllowMismatchedTenant,
        )
        .prefix("other"),
        case(
            "39 tenant differs, room locked",
            token(json!({"context": {"tenant": "Acme"}})),
            jid("room1"),
            Deny(
                Mismatched,
                "token tenant \"Acme\" differs from the URL tenant \"other\"",
            ),
        )
        .prefix("other")
        .unauth(false),
    ];
    for c in &cases {
        c.check();
    }
}

#[test]
fn sub_domain_forms() {
    let cases = vec![
        case("sub is the base domain", token(json!({})), jid("room1"), Allow),
        case(
            "sub in capitals",
            token(json!({"sub": "MEET.Example.COM"})),
            jid("room1"),
            Allow,
        ),
        // Jitsi prepends muc_mapper_domain_prefix to sub, so a sub naming the MUC domain
        // itself looks for conference.conference.meet.example.com.
        case(
            "sub is the MUC domain",
            token(json!({"sub": MUC})),
            jid("room1"),
            Deny(Mismatched, "expects \"room1@conference.conference.meet.example.com\""),
        ),
        case("sub * without tenant", token(json!({"sub": "*"})), jid("room1"), Allow),
        case(
            "sub * with tenant",
            token(json!({"sub": "*", "room": "*"})),
            jid("[anyone]whatever"),
            Allow,
        ),
        case(
            "sub * and no MUC domain",
            token(json!({"sub": "*"})),
            jid("room1"),
            Deny(ServerMissingConfig, "muc_mapper_domain_base"),
        )
        .policy(|p| {
            p.muc_domain_base = None;
            p.muc_domain = None;
        }),
        case(
            "tenant room without base",
            token(json!({"sub": "acme"})),
            jid("[acme]room1"),
            Deny(ServerMissingConfig, "tenant"),
        )
        .policy(|p| {
            p.muc_domain_base = None;
            p.muc_domain = None;
        }),
        case("no base, plain sub still works", token(json!({})), jid("room1"), Allow).policy(|p| {
            p.muc_domain_base = None;
            p.muc_domain = None;
        }),
        case(
            "tenant room, wrong domain",
            token(json!({"sub": "acme"})),
            "[acme]room1@conference.other.com".into(),
            Deny(Mismatched, ""),
        ),
        case(
            "other MUC domain",
            token(json!({})),
            "room1@conference.other.com".into(),
            Deny(Mismatched, ""),
        ),
        case(
            "docker prefix muc",
            token(json!({})),
            "room1@muc.meet.example.com".into(),
            Allow,
        )
        .policy(|p| {
            p.muc_domain_prefix = "muc".into();
            p.muc_domain = Some("muc.meet.example.com".into());
        }),
        case(
            "domain in capitals, full JID",
            token(json!({})),
            "Room1@Conference.Meet.Example.COM/nick".into(),
            Allow,
        ),
        case(
            "sub is a number",
            token(json!({"sub": 7})),
            jid("room1"),
            Deny(Mismatched, "sub claim is not a string"),
        ),
        case(
            "sub is null",
            token(json!({})).map(|mut t| {
                t["sub"] = Value::Null;
                t
            }),
            jid("room1"),
            Deny(Mismatched, "sub claim is not a string"),
        ),
        case(
            "no sub, verification off",
            token(json!({"sub": null})),
            jid("room1"),
            Allow,
        )
        .policy(off),
    ];
    for c in &cases {
        c.check();
    }
}

#[test]
fn room_names_in_one_normal_form() {
    let cyrillic = "%d1%82%d0%b5%d1%81%d1%82";
    let cases = vec![
        // Difference 8: Jitsi compares the ASCII-lowercased claim with the encoded node.
        case(
            "Cyrillic claim, encoded node",
            token(json!({"room": "Тест"})),
            jid(cyrillic),
            Allow,
        ),
        case(
            "Cyrillic claim, verification off",
            token(json!({"room": "Тест"})),
            jid(cyrillic),
            Allow,
        )
        .policy(off),
        case(
            "encoded claim",
            token(json!({"room": "%D1%82%D0%B5%D1%81%D1%82"})),
            jid(cyrillic),
            Allow,
        ),
        case(
            "Cyrillic tenant",
            token(json!({"sub": "Ясно", "room": "Тест"})),
            jid(&format!("[ясно]{cyrillic}")),
            Allow,
        ),
        case(
            "other Cyrillic room",
            token(json!({"room": "Тост"})),
            jid(cyrillic),
            Deny(Mismatched, "тост"),
        ),
        // Only literal brackets split a tenant off.
        case(
            "encoded bracket, off",
            token(json!({})),
            jid("foo%5droom1"),
            Deny(RoomMismatch, ""),
        )
        .policy(off),
        case("tenant bracket, off", token(json!({})), jid("[Acme]Room1"), Allow).policy(off),
        case(
            "room claim is a number",
            token(json!({"room": 1})),
            jid("1"),
            Deny(Mismatched, "room claim is not a string"),
        ),
        case(
            "room claim is an array",
            token(json!({"room": ["room1"]})),
            jid("room1"),
            Deny(RoomMismatch, "room claim is not a string"),
        )
        .policy(off),
        case(
            "room claim is null",
            token(json!({})).map(|mut t| {
                t["room"] = Value::Null;
                t
            }),
            jid("room1"),
            Deny(Mismatched, "room claim is not a string"),
        ),
    ];
    for c in &cases {
        c.check();
    }
}

#[test]
fn regex_rooms() {
    let cases = vec![
        case(
            "regex \"true\" string",
            token(json!({"room": "^room%d+$", "context": {"room": {"regex": "true"}}})),
            jid("room7"),
            Allow,
        ),
        case(
            "regex false is a plain claim",
            token(json!({"room": "^room%d+$", "context": {"room": {"regex": false}}})),
            jid("room7"),
            Deny(Mismatched, ""),
        ),
        case(
            "regex with tenant room",
            token(json!({"sub": "acme", "room": "^room%d+$", "context": {"room": {"regex": true}}})),
            jid("[acme]room7"),
            Allow,
        ),
        case(
            "regex with tenant room, no match",
            token(json!({"sub": "acme", "room": "^room%d+$", "context": {"room": {"regex": true}}})),
            jid("[acme]roomx"),
            Deny(RoomNameDoesNotMatch, ""),
        ),
        case("regex literals fold case", regex("^ROOM%d+$"), jid("Room42"), Allow),
        // Jitsi lowercases %D into %d and so inverts the class.
        case("regex %D stays non-digit", regex("^%D+$"), jid("room"), Allow),
        case(
            "regex %D refuses digits",
            regex("^%D+$"),
            jid("room1"),
            Deny(RoomNameDoesNotMatch, ""),
        ),
        case(
            "regex over a decoded name",
            regex("^тест%d*$"),
            jid("%d1%82%d0%b5%d1%81%d1%82"),
            Allow,
        ),
        // A capture is what gets compared, as in Jitsi's plugins: here "room" against "room42".
        case(
            "regex capture is the room",
            regex("^(room)%d+$"),
            jid("room42"),
            Deny(Mismatched, "room@"),
        ),
        case(
            "regex unanchored whole match",
            regex("room%d"),
            jid("myroom42"),
            Deny(Mismatched, ""),
        ),
        case(
            "regex malformed",
            regex("room("),
            jid("room1"),
            Deny(
                RoomNameDoesNotMatch,
                "was refused: malformed pattern: unfinished capture",
            ),
        ),
        case(
            "regex malformed, claim optional",
            regex("[room"),
            jid("room1"),
            Deny(RoomNameDoesNotMatch, "missing ']'"),
        )
        .policy(|p| p.require_room_claim = false),
        case(
            "regex position capture",
            regex("()room"),
            jid("room1"),
            Deny(RoomNameDoesNotMatch, "position capture"),
        ),
        case(
            "regex too complex",
            regex(&format!("{}b", "a*".repeat(20))),
            jid(&"a".repeat(60)),
            Deny(RoomNameDoesNotMatch, "too complex"),
        ),
        case("regex no match, claim optional", regex("^x$"), jid("room1"), Allow)
            .policy(|p| p.require_room_claim = false),
        case(
            "regex ignored when verification off",
            regex("^room%d+$"),
            jid("room42"),
            Deny(RoomMismatch, ""),
        )
        .policy(off),
    ];
    for c in &cases {
        c.check();
    }
}

#[test]
fn empty_tokens_claims_and_addresses() {
    let empty_ok = |p: &mut RoomPolicy| p.allow_empty_token = true;
    let cases = vec![
        case(
            "empty tokens, token present, checked",
            token(json!({})),
            jid("room2"),
            Deny(Mismatched, ""),
        )
        .policy(empty_ok),
        case("empty tokens, token present, ok", token(json!({})), jid("room1"), Allow)
            .policy(empty_ok)
            .unauth(false),
        case("empty tokens, room allows guests", None, jid("room1"), Allow)
            .policy(empty_ok)
            .unauth(true),
        case(
            "claim optional, none given",
            token(json!({"room": null})),
            jid("anyroom"),
            Allow,
        )
        .policy(|p| p.require_room_claim = false),
        case(
            "claim required, none given",
            token(json!({"room": null})),
            jid("anyroom"),
            Deny(RoomNameDoesNotMatch, "no room claim"),
        ),
        case("off, tenant room, guest", None, jid("[acme]room1"), Allow).policy(off),
        case("off, room *", token(json!({"room": "*"})), jid("[acme]anything"), Allow).policy(off),
        case(
            "tenant case differs from prefix",
            token(json!({"context": {"tenant": "acme"}})),
            jid("room1"),
            Allow,
        )
        .prefix("ACME"),
        case(
            "tenant not a string",
            token(json!({"context": {"tenant": 5}})),
            jid("room1"),
            AllowMismatchedTenant,
        )
        .prefix("5"),
        case(
            "tenant mismatch before sub check",
            token(json!({"sub": null, "context": {"tenant": "a"}})),
            jid("room1"),
            Deny(Mismatched, "tenant"),
        )
        .unauth(false),
        case(
            "tenant mismatch, then wrong room",
            token(json!({"context": {"tenant": "a"}})),
            jid("room2"),
            Deny(Mismatched, "expects"),
        ),
        case(
            "no node",
            token(json!({})),
            "@conference.meet.example.com".into(),
            Deny(InvalidRoomAddress, "@conference"),
        ),
        case(
            "domain only",
            token(json!({})),
            MUC.into(),
            Deny(InvalidRoomAddress, ""),
        ),
        case(
            "address checked before empty tokens",
            None,
            MUC.into(),
            Deny(InvalidRoomAddress, ""),
        )
        .policy(empty_ok),
        case(
            "empty resource",
            token(json!({})),
            format!("room1@{MUC}/"),
            Deny(InvalidRoomAddress, ""),
        ),
    ];
    for c in &cases {
        c.check();
    }
}

#[test]
fn denial_texts_match_jitsis() {
    let table = [
        (
            InvalidRoomAddress,
            "Room address is invalid",
            Some("invalid-room-address"),
        ),
        (
            AuthenticationRequired,
            "Authentication required",
            Some("authentication-required"),
        ),
        (
            RoomMismatch,
            "Room does not match the room from token",
            Some("room-mismatch"),
        ),
        (
            RoomNameDoesNotMatch,
            "Room name cannot be matched to the one from token.",
            Some("room-name-does-not-match"),
        ),
        (Mismatched, "Room and token mismatched", None),
        (
            ServerMissingConfig,
            "Misconfiguration of server",
            Some("server-missing-config"),
        ),
    ];
    for (denial, text, jitmeet) in table {
        assert_eq!(denial.text(), text);
        assert_eq!(denial.jitmeet(), jitmeet);
    }
}

/// Random addresses and claims, built from the characters the rules care about, never panic
/// and every refusal says why.
#[test]
fn arbitrary_input_never_panics() {
    let pieces = [
        "a",
        "R",
        "1",
        "[",
        "]",
        "@",
        "/",
        "%",
        "%d",
        "%d1",
        "%82",
        "*",
        "(",
        ")",
        "т",
        "Т",
        ".",
        "^",
        "$",
        "-",
        "conference.meet.example.com",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let text = |next: &mut dyn FnMut() -> u64| -> String {
        let len = next() % 8;
        (0..len)
            .map(|_| pieces[(next() % pieces.len() as u64) as usize])
            .collect()
    };
    for round in 0..20_000u64 {
        let jid = text(&mut next);
        let claim = text(&mut next);
        let sub = text(&mut next);
        let tenant = text(&mut next);
        let bits = next();
        let policy = RoomPolicy {
            enable_domain_verification: bits & 1 == 0,
            require_room_claim: bits & 2 == 0,
            allow_empty_token: bits & 4 == 0,
            muc_domain_base: (bits & 8 == 0).then(|| "meet.example.com".to_owned()),
            muc_domain_prefix: "conference".to_owned(),
            muc_domain: (bits & 16 == 0).then(|| MUC.to_owned()),
        };
        let room = Value::String(claim);
        let sub = if bits & 32 == 0 {
            Value::String(sub)
        } else {
            json!(round)
        };
        let tenant = Value::String(tenant);
        let context = json!({"regex": bits & 64 == 0});
        let session = RoomSession {
            has_token: bits & 128 == 0,
            room: (bits & 256 == 0).then_some(&room),
            sub: (bits & 512 == 0).then_some(&sub),
            context_room: Some(&context),
            tenant: (bits & 1024 == 0).then_some(&tenant),
            query_prefix: "acme",
        };
        let target = RoomTarget {
            jid: &jid,
            allow_unauthenticated_access: [None, Some(true), Some(false)][(bits >> 11) as usize % 3],
        };
        if let RoomDecision::Deny { detail, .. } = verify_room(&policy, &session, &target) {
            assert!(!detail.is_empty(), "{jid:?}");
        }
    }
}
