//! The `verify` and `mint` commands as an admin runs them: JSON on stdout, exit status 0/1/2,
//! errors on stderr naming the problem.

mod common;

use std::io::Write;
use std::process::Output;

use common::http::{Response, TestServer};
use common::keys::TestKey;
use serde_json::{Value, json};

use common::cli::run;

fn config_file(body: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(body.as_bytes()).expect("write config");
    file
}

const HS_CONFIG: &str = "[hosts.\"meet.example.com\"]\napp_id = \"myapp\"\napp_secret = \"s3cret\"\n\
                         muc_mapper_domain_base = \"meet.example.com\"\n";

fn mint(config: &str, extra: &[&str]) -> String {
    let mut args = vec!["mint", "--config", config, "--host", "meet.example.com"];
    args.extend_from_slice(extra);
    let out = run(&args, None);
    assert!(
        out.status.success(),
        "mint failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
}

fn verdict(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", out.stdout))
}

#[test]
fn mint_then_verify_from_stdin() {
    let config = config_file(HS_CONFIG);
    let path = config.path().to_str().unwrap();
    let token = mint(
        path,
        &[
            "--claim",
            "room=room1",
            "--claim",
            "context.user.name=Alice",
            "--claim",
            "context.user.moderator=true",
        ],
    );
    let out = run(
        &[
            "verify",
            "--config",
            path,
            "--host",
            "meet.example.com",
            "--room",
            "room1@conference.meet.example.com",
            "-",
        ],
        Some(&token),
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v = verdict(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["claims"]["iss"], "myapp");
    assert_eq!(v["claims"]["sub"], "meet.example.com");
    assert_eq!(
        v["claims"]["context"]["user"],
        json!({"name": "Alice", "moderator": true})
    );
    assert_eq!(v["session"]["jitsi_meet_room"], "room1");
    assert_eq!(v["room"]["allowed"], true);
    assert_eq!(v["fingerprint"].as_str().map(str::len), Some(8));
    // The token itself is not echoed.
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&token));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&token));
}

#[test]
fn refusals_exit_1_with_jitsis_texts() {
    let config = config_file(HS_CONFIG);
    let path = config.path().to_str().unwrap();
    let expired = mint(path, &["--ttl", "-121"]);
    let out = run(
        &["verify", "--config", path, "--host", "meet.example.com", &expired],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let v = verdict(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["condition"], "not-allowed");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .starts_with("Not acceptable by exp (121 sec since expired, valid for:"),
        "{v}"
    );
    assert_eq!(v["jitmeet"], Value::Null);

    let token = mint(path, &["--claim", "room=room1"]);
    let out = run(
        &[
            "verify",
            "--config",
            path,
            "--host",
            "meet.example.com",
            "--room",
            "room2@conference.meet.example.com",
            &token,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&out)["text"], "Room and token mismatched");

    let token = mint(
        path,
        &["--claim", "room=^room%d+$", "--claim", "context.room.regex=true"],
    );
    let out = run(
        &[
            "verify",
            "--config",
            path,
            "--host",
            "meet.example.com",
            "--room",
            "roomx@conference.meet.example.com",
            &token,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let v = verdict(&out);
    assert_eq!(v["text"], "Room name cannot be matched to the one from token.");
    assert_eq!(v["jitmeet"], "room-name-does-not-match");

    let out = run(&["verify", "--config", path, "--host", "meet.example.com"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&out)["text"], "token required");
}

#[test]
fn explain_says_what_to_change() {
    let config = config_file(HS_CONFIG);
    let path = config.path().to_str().unwrap();
    let token = mint(path, &["--claim", "exp=\"9999999999\""]);
    let out = run(
        &[
            "verify",
            "--config",
            path,
            "--host",
            "meet.example.com",
            "--explain",
            "-",
        ],
        Some(&token),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&out)["text"], "exp must be number");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"exp\": \"9999999999\""),
        "decoded claims shown: {stderr}"
    );
    assert!(stderr.contains("pass  signature"), "{stderr}");
    assert!(stderr.contains("FAIL  exp/nbf"), "{stderr}");
    assert!(stderr.contains("exp is the string \"9999999999\""), "{stderr}");
    assert!(stderr.contains("not a string"), "a hint: {stderr}");
    assert!(!stderr.contains(&token), "the token itself is never printed");
}

#[test]
fn usage_and_config_errors_exit_2() {
    let config = config_file(HS_CONFIG);
    let path = config.path().to_str().unwrap();
    let out = run(&["verify", "--config", path, "--host", "other.example.com", "x"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [hosts.\"other.example.com\"]"));

    let bad =
        config_file("[hosts.\"meet.example.com\"]\napp_id = \"a\"\napp_secret = \"s\"\nallow_empty_token = \"yes\"\n");
    let out = run(
        &[
            "verify",
            "--config",
            bad.path().to_str().unwrap(),
            "--host",
            "meet.example.com",
            "x",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("allow_empty_token") && stderr.contains("boolean"),
        "{stderr}"
    );

    let out = run(
        &["verify", "--config", "/nonexistent/config.toml", "--host", "h", "x"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.toml"));

    let out = run(&["verify", "--bogus"], None);
    assert_eq!(out.status.code(), Some(2));

    let out = run(
        &[
            "mint",
            "--config",
            path,
            "--host",
            "meet.example.com",
            "--claim",
            "novalue",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_is_complete() {
    for (command, flags) in [
        (
            "verify",
            &["--config", "--host", "--room", "--prefix", "--explain", "--at", "TOKEN"][..],
        ),
        (
            "mint",
            &["--config", "--host", "--claim", "--unset", "--ttl", "--key", "--kid"][..],
        ),
    ] {
        let out = run(&[command, "--help"], None);
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in flags {
            assert!(help.contains(flag), "{command} --help lacks {flag}");
        }
    }
}

#[tokio::test]
async fn mint_with_a_private_key_verifies_through_a_key_set() {
    let key = TestKey::rsa();
    let server = TestServer::start().await;
    server.set("/jwks", Response::ok(json!({"keys": [key.jwk("k1")]}).to_string()));
    let config = config_file(&format!(
        "[hosts.\"meet.example.com\"]\napp_id = \"myapp\"\ncache_keys_url = \"{}\"\n",
        server.url("/jwks")
    ));
    let mut key_file = tempfile::NamedTempFile::new().unwrap();
    key_file.write_all(key.private_pkcs8_pem().as_bytes()).unwrap();
    let path = config.path().to_str().unwrap().to_owned();
    let key_path = key_file.path().to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let token = mint(&path, &["--key", &key_path, "--kid", "k1"]);
        run(
            &["verify", "--config", &path, "--host", "meet.example.com", "-"],
            Some(&token),
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(server.requests("/jwks"), 1);
}
