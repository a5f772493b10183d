//! docs/TROUBLESHOOTING.md is tested in two ways:
//!
//! - every refusal and error text the code can produce is in it: the texts are rendered by the
//!   code itself (`Display`, `text()`, `as_str()`) from a list of every variant of each enum, which
//!   an exhaustive `match` keeps complete (a new variant stops this file compiling until it is
//!   listed); the few texts written as literals (the access-token refusals, the Prosody shim's own
//!   texts) are read from the sources;
//! - every ```console block in it runs, and prints what the doc shows.
//!
//! The console blocks: a line starting with `$ ` is a command (continued on the next line while
//! a line ends with `\`); the lines after it, up to the next command, are its output, stdout and
//! stderr together. A block runs as one `sh` script, in a fresh directory holding the files of the
//! doc's ```toml blocks whose first line is `# NAME.toml`, with the binary under test first in
//! PATH. Compared line by line, without trailing spaces; a log line's timestamp (one with a
//! fraction of a second) and the version after `token-sidecar ` may differ.
//!
//! After a deliberate change of output, `TROUBLESHOOTING_BLESS=1 cargo test --test
//! troubleshooting` writes the outputs into the doc; review the diff.

mod common;

use std::fmt::Display;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use token_sidecar::access::verify::AccessRefusal;
use token_sidecar::keys::KeyError;
use token_sidecar::protocol::{BadRequest, ErrorCode, Reply};
use token_sidecar::room::RoomDenial;
use token_sidecar::token::Reason;

const DOC: &str = "docs/TROUBLESHOOTING.md";
/// How long one block may run.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);
const BLESS: &str = "TROUBLESHOOTING_BLESS";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Every text is explained.

/// Stands for a string value in a rendered text; the text around it is what the doc must show.
const S: &str = "XSENTINELX";
/// Stands for a number.
const N: u16 = 4242;

/// The variants of an enum, each given by a value; the exhaustive `match` makes a variant missing
/// here a compile error.
macro_rules! every {
    ($ty:ident { $($variant:ident => $value:expr),* $(,)? }) => {{
        fn exhaustive(value: &$ty) {
            match value {
                $($ty::$variant { .. } => {})*
            }
        }
        let values: Vec<$ty> = vec![$($value),*];
        values.iter().for_each(exhaustive);
        values
    }};
}

/// One text the code can produce, with the value placeholders cut out.
struct Text {
    /// Where it comes from, for the failure message.
    source: String,
    /// The fixed parts, in order; a doc line must hold them all, in this order.
    pieces: Vec<String>,
}

impl Text {
    fn rendered(source: impl Display, text: &str) -> Text {
        let n = N.to_string();
        let pieces = text
            .split(S)
            .flat_map(|part| part.split(n.as_str()))
            .filter(|p| !p.trim().is_empty())
            .map(str::to_owned)
            .collect();
        Text {
            source: source.to_string(),
            pieces,
        }
    }

    fn shown(&self) -> String {
        self.pieces.join("…")
    }
}

fn reasons() -> Vec<Reason> {
    let n = i64::from(N);
    every!(Reason {
        TokenRequired => Reason::TokenRequired,
        TokenTooLarge => Reason::TokenTooLarge,
        InvalidToken => Reason::InvalidToken,
        InvalidHeader => Reason::InvalidHeader,
        InvalidBody => Reason::InvalidBody,
        InvalidTyp => Reason::InvalidTyp,
        InvalidAlg => Reason::InvalidAlg,
        InvalidSignature => Reason::InvalidSignature,
        ExpNotNumber => Reason::ExpNotNumber,
        NbfNotNumber => Reason::NbfNotNumber,
        Expired => Reason::Expired { since: n, valid_for: Some(n) },
        NotYetValid => Reason::NotYetValid,
        ExpMissing => Reason::ExpMissing,
        IssMissing => Reason::IssMissing,
        IssInvalid => Reason::IssInvalid,
        AudMissing => Reason::AudMissing,
        AudInvalid => Reason::AudInvalid,
        RoomMissing => Reason::RoomMissing,
        KidMissing => Reason::KidMissing,
        AlgMissing => Reason::AlgMissing,
        KidNeedsAsymmetricAlg => Reason::KidNeedsAsymmetricAlg,
        BadTokenFormat => Reason::BadTokenFormat,
        NoPublicKey => Reason::NoPublicKey,
        KeyBusy => Reason::KeyBusy,
        NoVerificationKey => Reason::NoVerificationKey,
        ContextRequired => Reason::ContextRequired,
        Revoked => Reason::Revoked,
    })
}

fn room_denials() -> Vec<RoomDenial> {
    every!(RoomDenial {
        InvalidRoomAddress => RoomDenial::InvalidRoomAddress,
        AuthenticationRequired => RoomDenial::AuthenticationRequired,
        RoomMismatch => RoomDenial::RoomMismatch,
        RoomNameDoesNotMatch => RoomDenial::RoomNameDoesNotMatch,
        Mismatched => RoomDenial::Mismatched,
        ServerMissingConfig => RoomDenial::ServerMissingConfig,
    })
}

fn error_codes() -> Vec<ErrorCode> {
    every!(ErrorCode {
        BadRequest => ErrorCode::BadRequest,
        LineTooLong => ErrorCode::LineTooLong,
        UnsupportedVersion => ErrorCode::UnsupportedVersion,
        UnknownHost => ErrorCode::UnknownHost,
        SettingsRefused => ErrorCode::SettingsRefused,
        UnknownToken => ErrorCode::UnknownToken,
        StoreUnavailable => ErrorCode::StoreUnavailable,
    })
}

fn key_errors() -> Vec<KeyError> {
    let url = || S.to_owned();
    every!(KeyError {
        Status => KeyError::Status { url: url(), status: N },
        Timeout => KeyError::Timeout { url: url(), timeout_ms: N.into(), tries: N.into() },
        Connect => KeyError::Connect { url: url(), detail: S.into() },
        BadBody => KeyError::BadBody { url: url(), detail: S.into() },
        BadKey => KeyError::BadKey(S.into()),
        WeakKey => KeyError::WeakKey { bits: N.into() },
        RateLimited => KeyError::RateLimited { kid: S.into() },
        Busy => KeyError::Busy { limit: N.into() },
    })
}

fn bad_requests() -> Vec<BadRequest> {
    every!(BadRequest {
        NotJson => BadRequest::NotJson(S.into()),
        NotObject => BadRequest::NotObject(S),
        MissingId => BadRequest::MissingId,
        MissingOp => BadRequest::MissingOp,
        OpNotString => BadRequest::OpNotString,
        UnknownOp => BadRequest::UnknownOp(S.into()),
        Fields => BadRequest::Fields { op: S, detail: S.into() },
    })
}

fn access_refusals() -> Vec<AccessRefusal> {
    every!(AccessRefusal {
        TooLarge => AccessRefusal::TooLarge,
        Malformed => AccessRefusal::Malformed(S),
        AlgNotAccepted => AccessRefusal::AlgNotAccepted { alg: S.into(), accepted: Arc::from(S) },
        NoKey => AccessRefusal::NoKey { kid: S.into() },
        KeyRejectsAlg => AccessRefusal::KeyRejectsAlg { kid: S.into(), alg: S.into() },
        BadSignature => AccessRefusal::BadSignature,
        NoExp => AccessRefusal::NoExp,
        NotANumber => AccessRefusal::NotANumber(S),
        Expired => AccessRefusal::Expired,
        NotYetValid => AccessRefusal::NotYetValid,
        IssuedInFuture => AccessRefusal::IssuedInFuture,
        AudienceMismatch => AccessRefusal::AudienceMismatch,
    })
}

/// The last argument of each call `call(…)` in `source` when it is a string literal: the text of
/// the refusal the call builds. `lua`: strings may be in single quotes too.
fn last_literal_arguments(source: &str, call: &str, lua: bool) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in source.match_indices(call) {
        let args = &source[at + call.len()..];
        // The call's arguments, up to its closing parenthesis (outside strings).
        let (mut depth, mut in_string, mut escaped, mut end) = (1, None::<char>, false, None);
        for (i, c) in args.char_indices() {
            match in_string {
                Some(quote) => {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == quote {
                        in_string = None;
                    }
                }
                None => match c {
                    '"' => in_string = Some(c),
                    '\'' if lua => in_string = Some(c),
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                },
            }
        }
        let Some(end) = end else { continue };
        let args = args[..end].trim_end().trim_end_matches(',').trim_end();
        if let Some(body) = args.strip_suffix('"')
            && let Some(start) = body.rfind('"')
        {
            found.push(body[start + 1..].to_owned());
        }
    }
    found
}

/// `NAME = "text"` (Lua) or `const NAME: &str = "text";` (Rust) in `source`.
fn assigned_literal(source: &str, name: &str) -> Option<String> {
    source.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix("const ").unwrap_or(line.trim_start());
        let rest = rest.strip_prefix(name)?;
        let rest = rest.strip_prefix(": &str").unwrap_or(rest);
        let text = rest.trim_start().strip_prefix("=")?.trim_start().strip_prefix('"')?;
        Some(text[..text.find('"')?].to_owned())
    })
}

/// Every text a client, the shim's log or the daemon's log can show for a refusal or an error.
fn every_text() -> Vec<Text> {
    let mut texts = Vec::new();
    for reason in reasons() {
        texts.push(Text::rendered(format!("Reason::{reason:?}"), &reason.to_string()));
        texts.push(Text::rendered(
            format!("the condition of Reason::{reason:?}"),
            reason.condition(),
        ));
    }
    // Without iat, the expiry text has no "valid for".
    let expired = Reason::Expired {
        since: N.into(),
        valid_for: None,
    };
    texts.push(Text::rendered("Reason::Expired without iat", &expired.to_string()));
    for denial in room_denials() {
        texts.push(Text::rendered(format!("RoomDenial::{denial:?}"), denial.text()));
        if let Some(element) = denial.jitmeet() {
            texts.push(Text::rendered(
                format!("the jitmeet element of RoomDenial::{denial:?}"),
                element,
            ));
        }
    }
    for code in error_codes() {
        texts.push(Text::rendered(format!("ErrorCode::{code:?}"), code.as_str()));
    }
    let unknown_host: serde_json::Value = serde_json::from_slice(&Reply::unknown_host(1.into(), S).to_line()).unwrap();
    texts.push(Text::rendered(
        "the text of an unknown-host error",
        unknown_host["text"].as_str().unwrap(),
    ));
    for error in key_errors() {
        texts.push(Text::rendered(format!("KeyError::{error:?}"), &error.to_string()));
    }
    for bad in bad_requests() {
        texts.push(Text::rendered(format!("BadRequest::{bad:?}"), &bad.to_string()));
    }
    for refusal in access_refusals() {
        texts.push(Text::rendered(
            format!("AccessRefusal::{refusal:?}"),
            &refusal.to_string(),
        ));
    }

    // Literals: the access-token refusals, and what the shim says itself.
    let issuer = "src/access/issuer.rs";
    let refusals = last_literal_arguments(&read(issuer), "Self::refuse(", false);
    assert!(
        refusals.len() >= 4,
        "found only {refusals:?} in {issuer}: update last_literal_arguments in tests/troubleshooting.rs"
    );
    for text in refusals {
        texts.push(Text::rendered(format!("a refusal in {issuer}"), &text));
    }
    let ops = "src/daemon/socket/ops/access_token.rs";
    let unavailable = assigned_literal(&read(ops), "UNAVAILABLE")
        .unwrap_or_else(|| panic!("no UNAVAILABLE text in {ops}: update tests/troubleshooting.rs"));
    texts.push(Text::rendered(format!("UNAVAILABLE in {ops}"), &unavailable));

    let mut shim_texts = 0;
    let mut shim: Vec<_> = std::fs::read_dir(repo().join("prosody-shim"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "lua"))
        .collect();
    shim.sort();
    for path in shim {
        let source = std::fs::read_to_string(&path).unwrap();
        let name = format!("prosody-shim/{}", path.file_name().unwrap().to_string_lossy());
        let mut found = Vec::new();
        for call in ["error_reply(", "refuse("] {
            found.extend(last_literal_arguments(&source, call, true));
        }
        for line in source.lines() {
            // `return false, "condition", "text";`: a SASL failure.
            if let Some(rest) = line.trim().strip_prefix("return false, \"")
                && let Some(text) = rest.strip_suffix("\";")
                && let Some((_, text)) = text.split_once("\", \"")
            {
                found.push(text.to_owned());
            }
        }
        found.extend(assigned_literal(&source, "UNAVAILABLE"));
        shim_texts += found.len();
        for text in found {
            texts.push(Text::rendered(format!("a text in {name}"), &text));
        }
    }
    assert!(
        shim_texts >= 4,
        "found only {shim_texts} texts in prosody-shim/: update the scan in tests/troubleshooting.rs"
    );
    texts
}

fn has_in_order(line: &str, pieces: &[String]) -> bool {
    let mut rest = line;
    for piece in pieces {
        match rest.find(piece.as_str()) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn every_refusal_text_is_explained() {
    let doc = read(DOC);
    let texts = every_text();
    let missing: Vec<String> = texts
        .iter()
        .filter(|t| !doc.lines().any(|line| has_in_order(line, &t.pieces)))
        .map(|t| format!("  {:?}  ({})", t.shown(), t.source))
        .collect();
    assert!(
        missing.is_empty(),
        "{DOC} does not explain these texts the code can produce (each must appear on one line, \
         its values may differ):\n{}\nAdd an entry for each (what it means, the usual cause, what to \
         change), or update the entry whose text changed.",
        missing.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Every command shows what it prints.

/// A command of a console block and the output the doc shows for it.
struct Shown {
    /// The line of the doc (1-based) where the command starts.
    line: usize,
    command: String,
    /// The doc's lines (0-based, end excluded) that hold the output.
    output_lines: std::ops::Range<usize>,
    output: Vec<String>,
}

struct Block {
    line: usize,
    commands: Vec<Shown>,
}

/// The files of the doc's ```toml blocks that start with `# NAME.toml`, and its console blocks.
fn parse(doc: &str) -> (Vec<(String, String)>, Vec<Block>) {
    let lines: Vec<&str> = doc.lines().collect();
    let mut files = Vec::new();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_end();
        i += 1;
        if fence == "```toml" {
            let start = i;
            while i < lines.len() && lines[i].trim_end() != "```" {
                i += 1;
            }
            let body = &lines[start..i];
            if let Some(name) = body.first().and_then(|l| l.strip_prefix("# "))
                && let Some(name) = name.split([':', ' ']).next().filter(|n| n.ends_with(".toml"))
            {
                files.push((name.to_owned(), body.join("\n") + "\n"));
            }
            i += 1;
        } else if fence == "```console" {
            let mut block = Block {
                line: i,
                commands: Vec::new(),
            };
            while i < lines.len() && lines[i].trim_end() != "```" {
                let line = lines[i];
                match line.strip_prefix("$ ") {
                    Some(first) => {
                        let start = i + 1;
                        let mut command = first.to_owned();
                        while command.ends_with('\\') && i + 1 < lines.len() {
                            i += 1;
                            command.push('\n');
                            command.push_str(lines[i]);
                        }
                        block.commands.push(Shown {
                            line: start,
                            command,
                            output_lines: i + 1..i + 1,
                            output: Vec::new(),
                        });
                    }
                    None => {
                        let shown = block
                            .commands
                            .last_mut()
                            .unwrap_or_else(|| panic!("{DOC}:{}: output before the first `$ ` command", i + 1));
                        shown.output.push(line.to_owned());
                        shown.output_lines.end = i + 1;
                    }
                }
                i += 1;
            }
            i += 1;
            blocks.push(block);
        }
    }
    (files, blocks)
}

const MARK: &str = "@@troubleshooting-test@@";

/// Runs a block as one script in `dir`; the output of each command.
fn run_block(block: &Block, dir: &Path) -> Result<Vec<String>, String> {
    let mut script = String::from("exec 2>&1\n");
    for (n, shown) in block.commands.iter().enumerate() {
        script.push_str(&format!("printf '\\n{MARK}{n}\\n'\n{}\n", shown.command));
    }
    let bin_dir = Path::new(common::cli::BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // The doc shows what a plain environment prints: default log levels, no proxy between the
    // commands and 127.0.0.1.
    for var in [
        "RUST_LOG",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        command.env_remove(var);
    }
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().map_err(|e| format!("cannot run sh: {e}"))?;
    let mut stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        let _ = sender.send(out);
    });
    let out = match receiver.recv_timeout(BLOCK_TIMEOUT) {
        Ok(out) => out,
        Err(_) => {
            // The script and whatever it started in the background.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            return Err(format!(
                "did not finish within {} s (a daemon left running?)",
                BLOCK_TIMEOUT.as_secs()
            ));
        }
    };
    let _ = child.wait();
    let out = String::from_utf8_lossy(&out).into_owned();
    let mut outputs = Vec::new();
    for n in 0..block.commands.len() {
        let mark = format!("\n{MARK}{n}\n");
        let from = out
            .find(&mark)
            .ok_or_else(|| format!("the script stopped before command {n}"))?
            + mark.len();
        let to = out[from..]
            .find(&format!("\n{MARK}{}\n", n + 1))
            .map_or(out.len(), |at| from + at);
        outputs.push(out[from..to].to_owned());
    }
    Ok(outputs)
}

/// A line as compared: without trailing spaces, a log timestamp or the version number.
fn normal(line: &str) -> String {
    let mut line = line.trim_end().to_owned();
    // A log line's timestamp: 2026-12-01T04:38:45.481471Z.
    let bytes = line.as_bytes();
    let mut at = 0;
    while at + 20 <= bytes.len() {
        let shape = b"dddd-dd-ddTdd:dd:dd.";
        let matches = shape
            .iter()
            .zip(&bytes[at..])
            .all(|(s, b)| if *s == b'd' { b.is_ascii_digit() } else { s == b });
        if matches {
            let digits = bytes[at + 20..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits > 0 && bytes.get(at + 20 + digits) == Some(&b'Z') {
                line.replace_range(at..at + 21 + digits, "<time>");
                return normal_version(&line);
            }
        }
        at += 1;
    }
    normal_version(&line)
}

fn normal_version(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("token-sidecar ") {
        let after = &rest[at + "token-sidecar ".len()..];
        let version = after
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(after.len());
        out.push_str(&rest[..at + "token-sidecar ".len()]);
        if version > 0 && after[..version].contains('.') {
            out.push_str("<version>");
        } else {
            out.push_str(&after[..version]);
        }
        rest = &after[version..];
    }
    out.push_str(rest);
    out
}

fn output_lines(text: &str) -> Vec<String> {
    let text = text.trim_end_matches('\n');
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\n').map(|l| l.trim_end().to_owned()).collect()
}

#[test]
fn every_shown_command_prints_what_the_doc_shows() {
    let doc = read(DOC);
    let (files, blocks) = parse(&doc);
    assert!(
        files.iter().any(|(name, _)| name == "troubleshooting.toml"),
        "{DOC} has no ```toml block starting with `# troubleshooting.toml`"
    );
    assert!(
        blocks.len() >= 20,
        "only {} console blocks found in {DOC}",
        blocks.len()
    );
    let needs_socat = blocks
        .iter()
        .any(|b| b.commands.iter().any(|c| c.command.contains("socat ")));
    let has_socat = Command::new("sh")
        .args(["-c", "command -v socat"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        !needs_socat || has_socat,
        "{DOC} talks to the daemon with socat, which is not installed (scripts/install-prosody \
         installs it; on Debian: apt-get install socat)"
    );
    let bless = std::env::var_os(BLESS).is_some();
    let mut failures = Vec::new();
    let mut replacements = Vec::new();
    for block in &blocks {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in &files {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        let outputs = match run_block(block, dir.path()) {
            Ok(outputs) => outputs,
            Err(e) => {
                failures.push(format!("{DOC}:{}: the block {e}", block.line));
                continue;
            }
        };
        for (shown, actual) in block.commands.iter().zip(outputs) {
            let actual = output_lines(&actual);
            let same = actual.len() == shown.output.len()
                && actual.iter().zip(&shown.output).all(|(a, e)| normal(a) == normal(e));
            if !same {
                let at = (0..actual.len().max(shown.output.len()))
                    .find(|&n| actual.get(n).map(|l| normal(l)) != shown.output.get(n).map(|l| normal(l)))
                    .unwrap_or(0);
                failures.push(format!(
                    "{DOC}:{}: `{}`\nfirst difference, output line {}: the doc shows {:?}, it prints {:?}\n\
                     --- the doc shows:\n{}\n--- it prints:\n{}\n---",
                    shown.line,
                    shown.command,
                    at + 1,
                    shown.output.get(at).map_or("(nothing)", String::as_str),
                    actual.get(at).map_or("(nothing)", String::as_str),
                    shown.output.join("\n"),
                    actual.join("\n")
                ));
                replacements.push((shown.output_lines.clone(), actual));
            }
        }
    }
    if bless && !replacements.is_empty() {
        let mut lines: Vec<String> = doc.lines().map(str::to_owned).collect();
        replacements.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
        for (range, actual) in replacements {
            lines.splice(range, actual);
        }
        std::fs::write(repo().join(DOC), lines.join("\n") + "\n").unwrap();
        eprintln!("{BLESS}: wrote the outputs into {DOC}; review the diff");
        return;
    }
    assert!(
        failures.is_empty(),
        "{} command(s) of {DOC} print something else than the doc shows:\n\n{}\n\nIf the code is \
         right, update the doc's output (and its explanation): `{BLESS}=1 cargo test --test \
         troubleshooting` writes the outputs into the doc for review.",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn only_what_legitimately_varies_is_normalised() {
    assert_eq!(
        normal("2026-12-01T04:46:44.261747Z  INFO token_sidecar::daemon: listening   "),
        "<time>  INFO token_sidecar::daemon: listening"
    );
    // The times `--explain` prints are fixed by --at: compared as they are.
    assert_eq!(
        normal("clock: 1800000000 = 2027-01-15T08:00:00Z (--at)"),
        "clock: 1800000000 = 2027-01-15T08:00:00Z (--at)"
    );
    assert_eq!(
        normal(r#"{"daemon":"token-sidecar 12.3.4","id":1}"#),
        r#"{"daemon":"token-sidecar <version>","id":1}"#
    );
    assert_eq!(normal("token-sidecar verify --at 1"), "token-sidecar verify --at 1");
}
