//! Any bytes as a token: verification must return a verdict, never panic or hang, and never
//! accept (the fuzzer cannot forge an HMAC with the secret below).
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_sidecar::config::Config;
use token_sidecar::token::{Accepted, AuthRequest, Verifier};

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let config = Config::from_toml(
        "[hosts.\"h\"]\napp_id = \"a\"\napp_secret = \"fuzz-secret\"\nasap_accepted_issuers = \"*\"",
    )
    .expect("config");
    let verifier = Verifier::new(config.hosts["h"].clone()).expect("verifier");
    let request = AuthRequest { token: Some(token), ..AuthRequest::default() };
    let verdict = futures::executor::block_on(verifier.verify(&request, 1_800_000_000));
    assert!(!matches!(verdict, Ok(Accepted::Token(_))), "accepted a forged token");
});
