//! `token-sidecar verify`: a login (and optionally a room join) checked as the daemon would, with
//! `--explain` saying what each check found and what to change.

use std::io::Read;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Map, Value, json};
use token_sidecar::access::stanza::xep0082;
use token_sidecar::clock::unix_now;
use token_sidecar::protocol::Refusal;
use token_sidecar::room::{RoomDecision, RoomDenial, RoomSession, RoomTarget, verify_room};
use token_sidecar::token::{Accepted, AuthRequest, Check, Rejection, Verifier};
use token_sidecar::{digest, json};

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
    // Plain lines, not log records: they belong with the verdict, which they often explain
    // ("the key server wins and HS tokens are refused").
    for warning in settings.warnings() {
        eprintln!("warning: {warning}");
    }
    let leeway = settings.leeway;
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
        let clock = Clock {
            now,
            given: args.at.is_some(),
            leeway,
        };
        explain_token(token.as_deref(), &clock, &checks, verdict.as_ref().err());
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
                    eprintln!("  pass  {:<18} {room} allowed{noted}", "room join");
                }
                out.insert(
                    "room".into(),
                    json!({ "jid": room, "allowed": true, "tenant_mismatch": tenant_mismatch }),
                );
            }
            RoomDecision::Deny { denial, detail } => {
                if args.explain {
                    eprintln!("  FAIL  {:<18} {}: {detail}", "room join", denial.text());
                    eprintln!("refused: {}", denial.text());
                    eprintln!("to fix: {}", room_hint(&denial));
                }
                print_refusal("room", Refusal::room(&denial, &detail));
                return Ok(ExitCode::from(1));
            }
        }
    }
    println!("{}", Value::Object(out));
    Ok(ExitCode::SUCCESS)
}

/// The clock a check ran at, for `--explain`.
struct Clock {
    /// Seconds since 1970.
    now: i64,
    /// Whether `--at` set it.
    given: bool,
    /// The host's `token_leeway`.
    leeway: u64,
}

/// A time claim past this (the year 5138, in seconds) is in milliseconds by mistake: today in
/// milliseconds is about 1.8e12. Jitsi's plugins read it as seconds: an `exp` in milliseconds
/// never expires, an `nbf` in milliseconds is never reached.
const SURELY_MILLISECONDS: f64 = 1e11;

/// Prints what the token says and how each check went, for `--explain`.
fn explain_token(token: Option<&str>, clock: &Clock, checks: &[Check], rejection: Option<&Rejection>) {
    match token {
        None => eprintln!("token: none"),
        Some(token) => {
            eprintln!(
                "token: {} bytes, fingerprint {}",
                token.len(),
                digest::fingerprint(token.as_bytes())
            );
            let mut parts = token.split('.');
            // After the loop: the second part, the claims.
            let mut claims = None;
            for name in ["header", "claims"] {
                let decoded = parts.next().and_then(|p| {
                    let bytes = base64::Engine::decode(
                        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                        p.trim_end_matches('='),
                    )
                    .ok()?;
                    serde_json::from_slice::<Value>(&bytes).ok()
                });
                match &decoded {
                    Some(v) => eprintln!("{name}: {}", serde_json::to_string_pretty(v).unwrap_or_default()),
                    None => eprintln!("{name}: (not decodable)"),
                }
                claims = decoded;
            }
            if let Some(Value::Object(claims)) = &claims {
                explain_times(claims, clock);
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

/// The clock the checks used and the token's times against it, so that a clock running ahead or
/// behind, or times in milliseconds, show at a glance.
fn explain_times(claims: &Map<String, Value>, clock: &Clock) {
    eprintln!(
        "clock: {} = {} ({}), token_leeway {} s",
        clock.now,
        xep0082(clock.now),
        if clock.given { "--at" } else { "this machine's clock" },
        clock.leeway
    );
    for name in ["iat", "nbf", "exp"] {
        let Some(value) = claims.get(name) else {
            continue;
        };
        let Some(time) = value.as_f64().filter(|_| value.is_number()) else {
            eprintln!("  {name:<4} {value}: {}, not a number of seconds", json::kind(value));
            continue;
        };
        if time.abs() >= SURELY_MILLISECONDS {
            let as_millis = (time / 1000.0).floor() as i64;
            eprintln!(
                "  {name:<4} {value} looks like milliseconds ({}): JWT times are seconds since 1970",
                xep0082(as_millis)
            );
            continue;
        }
        let ahead = (time - clock.now as f64).round() as i64;
        let when = match ahead {
            0 => "now".to_owned(),
            a if a > 0 => format!("in {a} s"),
            a => format!("{} s ago", -a),
        };
        let note = if name == "iat" && ahead > clock.leeway as i64 {
            " (in the future: the clock that made the token runs ahead of this one)"
        } else {
            ""
        };
        eprintln!("  {name:<4} {value} = {}, {when}{note}", xep0082(time.floor() as i64));
    }
}

/// What to change when a room join is refused, for `--explain`.
fn room_hint(denial: &RoomDenial) -> &'static str {
    match denial {
        RoomDenial::InvalidRoomAddress => {
            "give the room's full address, name@muc-domain, e.g. room1@conference.meet.example.com"
        }
        RoomDenial::AuthenticationRequired => {
            "the room does not let guests in: log in with a token, or let the room allow unauthenticated access"
        }
        RoomDenial::RoomMismatch => {
            "enable_domain_verification is off, so only the room claim counts: set it to the room's name, or \"*\" for any room"
        }
        RoomDenial::RoomNameDoesNotMatch => {
            "the token names no room that matches: set the room claim to the room's name or \"*\" (or fix its context.room.regex pattern); to let tokens without a room claim in, set asap_require_room_claim = false"
        }
        RoomDenial::Mismatched => {
            "with enable_domain_verification on, room must be the room's name or \"*\", and sub the base domain (muc_mapper_domain_base, e.g. meet.example.com), the tenant of a [tenant]room, or \"*\""
        }
        RoomDenial::ServerMissingConfig => {
            "set muc_mapper_domain_base (the base domain, e.g. meet.example.com): rooms with a tenant and sub \"*\" need it"
        }
    }
}
