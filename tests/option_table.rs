//! The host-option table (src/config/options.rs) is the one source of truth: the shim's forwarded
//! list is generated from it, and docs/CONFIG.md's tables say what it says. These tests fail when
//! either drifts. `GOLDEN_UPDATE=1 cargo test --test option_table` rewrites the shim's list.

use std::collections::BTreeMap;
use std::path::Path;

use token_sidecar::config::options::{HOST_OPTIONS, shim_option_list};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_shim_forwards_exactly_the_options_of_the_table() {
    let path = repo("prosody-shim/token_sidecar_options.lib.lua");
    let expected = shim_option_list();
    if std::env::var_os("GOLDEN_UPDATE").is_some() {
        std::fs::write(&path, &expected).expect("write the shim's option list");
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} differs from the option table; it must read:\n{expected}\n(GOLDEN_UPDATE=1 cargo test --test option_table writes it)",
        path.display()
    );
}

/// The rows of the tables under a `## ` heading of docs/CONFIG.md: option name → (type, default).
fn doc_rows(doc: &str, heading: &str) -> BTreeMap<String, (String, String)> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/CONFIG.md has no {heading:?}"));
    let section = &doc[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert!(cells.len() >= 4, "a row with fewer than 4 cells: {line}");
        let name = cells[0].trim_matches('`').to_owned();
        assert!(!cells[3].is_empty(), "{name}: no meaning given");
        assert!(
            rows.insert(name.clone(), (cells[1].to_owned(), cells[2].to_owned()))
                .is_none(),
            "{name} listed twice"
        );
    }
    rows
}

#[test]
fn docs_config_lists_every_option_with_its_type_and_default() {
    let doc = std::fs::read_to_string(repo("docs/CONFIG.md")).expect("docs/CONFIG.md");
    for (heading, jitsi) in [("## Host options (Jitsi's names)", true), ("## Our options", false)] {
        let rows = doc_rows(&doc, heading);
        let expected: BTreeMap<String, (String, String)> = HOST_OPTIONS
            .iter()
            .filter(|o| o.jitsi == jitsi)
            .map(|o| (o.name.to_owned(), (o.kind.doc(), o.default.to_string())))
            .collect();
        for (name, (kind, default)) in &expected {
            let Some((doc_kind, doc_default)) = rows.get(name) else {
                panic!("docs/CONFIG.md {heading:?} lacks `{name}` (type {kind}, default {default})");
            };
            assert_eq!(doc_kind, kind, "docs/CONFIG.md: the type of `{name}`");
            assert_eq!(doc_default, default, "docs/CONFIG.md: the default of `{name}`");
        }
        for name in rows.keys() {
            assert!(
                expected.contains_key(name),
                "docs/CONFIG.md {heading:?} lists `{name}`, which the table has not"
            );
        }
    }
}

/// The option names in a Lua list such as `local OPTIONS = { "a", "b", … };`.
fn lua_list(source: &str, name: &str) -> Vec<String> {
    let start = source
        .find(&format!("local {name} = {{"))
        .unwrap_or_else(|| panic!("no `local {name} = {{` in the module"));
    let body = &source[start..];
    let body = &body[..body.find('}').expect("the list ends")];
    body.split('"').skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn mod_access_token_forwards_exactly_the_options_the_daemon_reads_and_docs_config_lists_them() {
    use token_sidecar::access::settings::ACCESS_TOKEN_OPTIONS;
    let shim = std::fs::read_to_string(repo("prosody-shim/mod_access_token.lua")).expect("read the module");
    assert_eq!(
        lua_list(&shim, "OPTIONS"),
        ACCESS_TOKEN_OPTIONS,
        "mod_access_token.lua's OPTIONS"
    );
    let doc = std::fs::read_to_string(repo("docs/CONFIG.md")).expect("read docs/CONFIG.md");
    let documented = doc_rows(&doc, "## Access tokens: mod_access_token options");
    let documented: Vec<&str> = documented.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = ACCESS_TOKEN_OPTIONS.to_vec();
    expected.sort_unstable();
    assert_eq!(documented, expected, "docs/CONFIG.md's mod_access_token table");
}
