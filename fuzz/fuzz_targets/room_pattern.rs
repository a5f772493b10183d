//! Any subject and pattern: Lua pattern matching must answer or refuse, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (subject, pattern) = text.split_once('\n').unwrap_or((text, ""));
    let _ = token_sidecar::room::pattern::lua_match(subject, pattern);
});
