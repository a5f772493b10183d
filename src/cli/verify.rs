//! `token-sidecar verify`: a login (and optionally a room join) checked as the daemon would, with
//! `--explain` saying what each check found and what to change.

use std::io::Read;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Map, Value, json};
use token_sidecar::clock::unix_now;
use token_sidecar::digest;
use token_sidecar::protocol::Refusal;
use token_sidecar::room::{RoomDecision, RoomSession, RoomTarget, verify_room};
use token_sidecar::token::{Accepted, AuthRequest, Check, Rejection, Verifier};

use super::failure::Failure;
use super::host::HostArgs;

#[derive(Args)]
pub(super) struct VerifyArgs {
    #[command(flatten)]
    target: HostArgs,
    /// Also check a join of this room, e.g. room1@conference.meet.example.com or
    /// [tenant]room1@conference.meet.example.com.
    #[arg(long, value_name = "ROOM_JID")]
    room: Option<String>,
    /// The URL tenant the client connected with (the `prefix` query parameter).
    #[arg(long, value_name = "TENANT", default_value = "")]
    prefix: String,
    /// Check as if the clock said this (seconds since 1970) instead of now.
    #[arg(long, value_name = "UNIX_TIME")]
    at: Option<i64>,
    /// Explain on stderr: decoded header and claims, each check, and what to change on failure.
    #[arg(long)]
    explain: bool,
    /// The token, or `-` to read it from stdin (safer: arguments show in the process list).
    /// Leave it out to check a login without a token.
    #[arg(value_name = "TOKEN")]
    token: Option<String>,
}

fn read_token(arg: Option<String>) -> Result<Option<String>, Failure> {
    match arg.as_deref() {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .take(1 << 20)
                .read_to_string(&mut text)
                .map_err(|e| Failure::usage(format!("cannot read the token from stdin: {e}")))?;
            Ok(Some(text.trim().to_owned()))
        }
        _ => Ok(arg),
    }
}

/// Prints a refusal as one JSON line: the protocol's refusal fields, `ok: false`, the stage, and
/// `jitmeet` (null when the refusal has none).
fn print_refusal(stage: &str, refusal: Refusal<'_>) {
    let mut out = refusal.at_join().to_map();
    out.insert("ok".into(), Value::Bool(false));
    out.insert("stage".into(), Value::from(stage));
    println!("{}", Value::Object(out));
}

pub(super) fn run(args: VerifyArgs) -> Result<ExitCode, Failure> {
    let settings = args.target.settings()?;
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    let token = read_token(args.token)?;
    let verifier = Verifier::new(settings).map_err(Failure::usage)?;
    let now = args.at.unwrap_or_else(unix_now);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::runtime)?;
    let mut checks = Vec::new();
    let request = AuthRequest {
        token: token.as_deref(),
        ..AuthRequest::default()
    };
    let verdict = runtime.block_on(verifier.verify_traced(&request, now, args.explain.then_some(&mut checks)));

    if args.explain {
        explain_token(token.as_deref(), &checks, verdict.as_ref().err());
    }
    let accepted = match verdict {
        Ok(accepted) => accepted,
        Err(rejection) => {
            print_refusal("auth", Refusal::token(&rejection));
            return Ok(ExitCode::from(1));
        }
    };

    let mut out = Map::new();
    out.insert("ok".into(), Value::Bool(true));
    let session = match &accepted {
        Accepted::Anonymous => {
            out.insert("anonymous".into(), Value::Bool(true));
            out.insert("claims".into(), Value::Null);
            RoomSession {
                query_prefix: &args.prefix,
                ..Default::default()
            }
        }
        Accepted::Token(verified) => {
            out.insert("claims".into(), Value::Object(verified.claims.clone()));
            out.insert(
                "session".into(),
                serde_json::to_value(verified.session_view()).map_err(Failure::runtime)?,
            );
            out.insert("fingerprint".into(), Value::String(verified.fingerprint.clone()));
            verified.room_session(&args.prefix)
        }
    };
    if let Some(room) = &args.room {
        let target = RoomTarget {
            jid: room,
            allow_unauthenticated_access: None,
        };
        match verify_room(&verifier.settings().room_policy(), &session, &target) {
            RoomDecision::Allow { tenant_mismatch } => {
                if args.explain {
                    let noted = if tenant_mismatch {
                        " (tenant mismatch noted)"
                    } else {
                        ""
                    };
                    eprintln!("  pass  room join      {room} allowed{noted}");
                }
                out.insert(
                    "room".into(),
                    json!({ "jid": room, "allowed": true, "tenant_mismatch": tenant_mismatch }),
                );
            }
            RoomDecision::Deny { denial, detail } => {
                if args.explain {
                    eprintln!("  FAIL  room join      {}: {detail}", denial.text());
                }
                print_refusal("room", Refusal::room(&denial, &detail));
                return Ok(ExitCode::from(1));
            }
        }
    }
    println!("{}", Value::Object(out));
    Ok(ExitCode::SUCCESS)
}

/// Prints what the token says and how each check went, for `--explain`.
fn explain_token(token: Option<&str>, checks: &[Check], rejection: Option<&Rejection>) {
    match token {
        None => eprintln!("token: none"),
        Some(token) => {
            eprintln!(
                "token: {} bytes, fingerprint {}",
                token.len(),
                digest::fingerprint(token.as_bytes())
            );
            let mut parts = token.split('.');
            for name in ["header", "claims"] {
                let decoded = parts.next().and_then(|p| {
                    let bytes = base64::Engine::decode(
                        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                        p.trim_end_matches('='),
                    )
                    .ok()?;
                    serde_json::from_slice::<Value>(&bytes).ok()
                });
                match decoded {
                    Some(v) => eprintln!("{name}: {}", serde_json::to_string_pretty(&v).unwrap_or_default()),
                    None => eprintln!("{name}: (not decodable)"),
                }
            }
        }
    }
    eprintln!("checks:");
    for check in checks {
        eprintln!(
            "  {}  {:<18} {}",
            if check.passed { "pass" } else { "FAIL" },
            check.step,
            check.note
        );
    }
    if let Some(rejection) = rejection {
        eprintln!("refused: {}", rejection.reason);
        eprintln!("to fix: {}", rejection.reason.hint());
    }
}
