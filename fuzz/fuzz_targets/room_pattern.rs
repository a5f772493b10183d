//! Any subject and pattern (`subject\npattern`): `room::pattern::lua_match`, as a token's
//! `context.room.regex` room claim reaches it.
//!
//! Must hold: it answers or refuses (malformed, unsupported, too complex), never panics or hangs
//! (libFuzzer's `-timeout` catches a hang; the work budget should keep every call near a
//! millisecond); what it returns is a piece of the subject (a capture or the whole match).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (subject, pattern) = text.split_once('\n').unwrap_or((text, ""));
    match token_sidecar::room::pattern::lua_match(subject, pattern) {
        Ok(Some(found)) => assert!(subject.contains(found.as_str()), "{found:?} is not part of the subject"),
        Ok(None) => {}
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
