//! Any text as an access-token IQ (`access::stanza::read`), as the shim forwards Prosody's
//! serialisation of it, for the issuer hosts of both doors (`meet.example.com` for XEP-0215
//! credentials, `conference.meet.example.com` for `muc#access-token`).
//!
//! Must hold: no panic; a stanza read is addressed to the issuer's host and has a sender; the
//! replies built for it (a token result, a credentials result, every error) are well-formed IQs
//! that swap `from` and `to` and keep the request's `id`, whatever bytes the id holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minidom::Element;
use token_sidecar::access::stanza::{Ask, Credential, ErrorKind, read};
use xmpp_parsers::iq::Iq;

const HOSTS: [&str; 2] = ["meet.example.com", "conference.meet.example.com"];

fn check_reply(xml: &str, request: &token_sidecar::access::stanza::Request) {
    let element: Element = xml
        .parse()
        .unwrap_or_else(|e| panic!("a reply that is not XML ({e}): {xml}"));
    let iq = Iq::try_from(element).unwrap_or_else(|e| panic!("a reply that is not an IQ ({e}): {xml}"));
    let (from, to, id) = match iq {
        Iq::Result { from, to, id, .. } | Iq::Error { from, to, id, .. } => (from, to, id),
        _ => panic!("a reply that is neither result nor error: {xml}"),
    };
    assert_eq!(id, request.id, "the reply's id is not the request's");
    assert_eq!(from.as_ref(), Some(&request.to), "the reply is not from the addressee");
    assert_eq!(to.as_ref(), Some(&request.from), "the reply is not to the sender");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for host in HOSTS {
        if let Ok(request) = read(text, host) {
            assert_eq!(request.to.domain().as_str(), host, "read an IQ addressed elsewhere");
            replies(&request);
        }
    }
});

fn replies(request: &token_sidecar::access::stanza::Request) {
    if let Ask::Credentials(hosts) = &request.ask {
        let services: Vec<Credential> = hosts
            .iter()
            .map(|host| Credential {
                audience: host.clone(),
                token: "eyJ.eyJ.sig".into(),
                expires: 1_800_000_000,
            })
            .collect();
        check_reply(&request.credentials_result(&services), request);
    }
    check_reply(&request.token_result("EdDSA", "eyJ.eyJ.sig"), request);
    for kind in [
        ErrorKind::Forbidden,
        ErrorKind::NotAllowed,
        ErrorKind::ItemNotFound,
        ErrorKind::ResourceConstraint,
        ErrorKind::Misconfigured,
        ErrorKind::BadRequest,
    ] {
        check_reply(&request.error(kind, "not an occupant <&>\""), request);
    }
}
