//! The `token-sidecar` command: `serve`, `verify`, `mint` and `bench-socket`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use token_sidecar::config::{Config, HostSettings};
use token_sidecar::room::{RoomDecision, RoomTarget, verify_room};
use token_sidecar::token::{self, Accepted, AuthRequest, Check, Minter, Rejection, Verifier};

/// mimalloc rather than glibc's malloc: the daemon builds each token's claims on one worker thread
/// and frees them on whichever thread evicts the cache entry; glibc's `free` of those was a fifth
/// of the daemon's CPU under load (docs/PERFORMANCE.md). The in-process figures of `bench-socket`
/// run in this binary, so they use the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "token-sidecar",
    version,
    about = "Jitsi/Prosody JWT token verification",
    long_about = "Verifies Jitsi Meet JWTs exactly as Prosody's token plugins do (mod_auth_token, \
                  mod_token_verification), with their option names and error texts.\n\n\
                  Exit status: 0 accepted / done, 1 refused, 2 usage or configuration error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a token as a login (and optionally a room join) on HOST would, and print the verdict as JSON.
    ///
    /// Prints one line: {"ok":true,"claims":{…},"session":{…}} or
    /// {"ok":false,"condition":"not-allowed","text":"…","jitmeet":null|"…"}.
    /// Exits 0 when accepted, 1 when refused, 2 on a usage or config error.
    Verify(VerifyArgs),
    /// Print a token signed with HOST's app_secret, or with --key, that passes HOST's checks.
    ///
    /// Default claims: iss = app_id, aud = "jitsi" (or the first accepted audience), sub =
    /// muc_mapper_domain_base (or HOST), room = "*", iat = now, exp = now + --ttl.
    Mint(MintArgs),
    /// Run the daemon: answer the Prosody shim on a Unix socket (protocol: docs/PROTOCOL.md).
    ///
    /// Hosts come from the shim's `hello` and from [hosts."…"] tables of --config (hello wins).
    /// SIGTERM/SIGINT: stop accepting, finish requests in flight, remove the socket, exit 0.
    /// SIGHUP: reload --config; a bad file keeps the old config and logs why.
    /// Log level: RUST_LOG (default info).
    Serve(ServeArgs),
    /// Load-test a running daemon over its socket and print throughput and latency percentiles.
    BenchSocket(token_sidecar::server::bench::BenchArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML file: [server] (socket, socket_mode, socket_group, limits) and optional [hosts."…"] tables.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Socket path; overrides [server] socket. Default /run/token-sidecar/token-sidecar.sock.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Validate the config (and build every host's verifier), then exit: 0 valid, 2 not.
    #[arg(long)]
    check_config: bool,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Args)]
struct HostArgs {
    /// TOML file with a [hosts."HOST"] table (see docs/CONFIG.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The Prosody VirtualHost whose settings apply, e.g. meet.example.com.
    #[arg(long, value_name = "HOST")]
    host: String,
}

#[derive(Args)]
struct VerifyArgs {
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

#[derive(Args)]
struct MintArgs {
    #[command(flatten)]
    target: HostArgs,
    /// Set a claim; VALUE is parsed as JSON when it can be (numbers, true, {…}), else taken as a
    /// string. Dotted names nest: --claim context.user.name=Alice. Repeatable.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    claims: Vec<String>,
    /// Remove a default claim, e.g. --unset room. Repeatable.
    #[arg(long = "unset", value_name = "NAME")]
    unset: Vec<String>,
    /// Lifetime in seconds (exp = now + TTL); negative for an already expired token.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS", allow_negative_numbers = true)]
    ttl: i64,
    /// Sign with this PEM private key (RSA, EC or Ed25519) instead of app_secret.
    #[arg(long, value_name = "PRIVATE_KEY.pem", requires = "kid")]
    key: Option<PathBuf>,
    /// The kid to put in the header (with --key).
    #[arg(long, value_name = "KID")]
    kid: Option<String>,
}

/// A failure that is the caller's, not the token's: exit status 2.
struct UsageError(String);

impl<E: std::fmt::Display> From<E> for UsageError {
    fn from(e: E) -> Self {
        UsageError(e.to_string())
    }
}

fn init_logging(default_level: &str, format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.to_owned().into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Verify(args) => {
            init_logging("warn", LogFormat::Text);
            verify(args)
        }
        Command::Mint(args) => {
            init_logging("warn", LogFormat::Text);
            mint(args)
        }
        Command::Serve(args) => {
            init_logging("info", args.log_format);
            serve(args)
        }
        Command::BenchSocket(args) => {
            init_logging("warn", LogFormat::Text);
            token_sidecar::server::bench::run(args)
                .map(|()| ExitCode::SUCCESS)
                .map_err(UsageError)
        }
    };
    match result {
        Ok(code) => code,
        Err(UsageError(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> Result<ExitCode, UsageError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    // docker-jitsi-meet's JWT_* variables describe XMPP_DOMAIN's host (a file table of that name wins).
    config.add_env_host(|name| std::env::var(name).ok())?;
    if let Some(socket) = args.socket {
        config.server.socket = socket;
    }
    if args.check_config {
        let warnings = token_sidecar::server::check(&config)?;
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
        println!(
            "config OK: {} host(s), socket {}",
            config.hosts.len(),
            config.server.socket.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(token_sidecar::server::serve(config, args.config))?;
    // Tasks stuck past the shutdown grace must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}

fn host_settings(args: &HostArgs) -> Result<HostSettings, UsageError> {
    let config = Config::load(&args.config)?;
    Ok(config.host(&args.host)?.clone())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn read_token(arg: Option<String>) -> Result<Option<String>, UsageError> {
    match arg.as_deref() {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .take(1 << 20)
                .read_to_string(&mut text)
                .map_err(|e| UsageError(format!("cannot read the token from stdin: {e}")))?;
            Ok(Some(text.trim().to_owned()))
        }
        _ => Ok(arg),
    }
}

fn verify(args: VerifyArgs) -> Result<ExitCode, UsageError> {
    let settings = host_settings(&args.target)?;
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    let token = read_token(args.token)?;
    let verifier = Verifier::new(settings)?;
    let now = args.at.unwrap_or_else(now);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
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
            print_refusal(
                "auth",
                rejection.reason.condition(),
                &rejection.reason.to_string(),
                None,
                rejection.detail,
            );
            return Ok(ExitCode::from(1));
        }
    };

    let mut out = Map::new();
    out.insert("ok".into(), Value::Bool(true));
    let session = match &accepted {
        Accepted::Anonymous => {
            out.insert("anonymous".into(), Value::Bool(true));
            out.insert("claims".into(), Value::Null);
            token_sidecar::room::RoomSession {
                query_prefix: &args.prefix,
                ..Default::default()
            }
        }
        Accepted::Token(verified) => {
            out.insert("claims".into(), Value::Object(verified.claims.clone()));
            out.insert("session".into(), serde_json::to_value(verified.session_fields())?);
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
                    eprintln!(
                        "  pass  room join      {room} allowed{}",
                        if tenant_mismatch {
                            " (tenant mismatch noted)"
                        } else {
                            ""
                        }
                    );
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
                print_refusal("room", "not-allowed", denial.text(), denial.jitmeet(), Some(detail));
                return Ok(ExitCode::from(1));
            }
        }
    }
    println!("{}", Value::Object(out));
    Ok(ExitCode::SUCCESS)
}

fn print_refusal(stage: &str, condition: &str, text: &str, jitmeet: Option<&str>, detail: Option<String>) {
    let mut out = json!({ "ok": false, "stage": stage, "condition": condition, "text": text, "jitmeet": jitmeet });
    if let (Some(detail), Some(map)) = (detail, out.as_object_mut()) {
        map.insert("detail".into(), Value::String(detail));
    }
    println!("{out}");
}

/// Prints what the token says and how each check went, for `--explain`.
fn explain_token(token: Option<&str>, checks: &[Check], rejection: Option<&Rejection>) {
    match token {
        None => eprintln!("token: none"),
        Some(token) => {
            eprintln!(
                "token: {} bytes, fingerprint {}",
                token.len(),
                token_sidecar::fingerprint(token)
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

fn mint(args: MintArgs) -> Result<ExitCode, UsageError> {
    let settings = host_settings(&args.target)?;
    let minter = match &args.key {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
            Minter::with_private_key(&settings, &pem, args.kid.clone())?
        }
        None => Minter::with_secret(&settings)?,
    };
    let mut claims = token::default_claims(&settings, now(), args.ttl);
    for name in &args.unset {
        token::unset_claim(&mut claims, name);
    }
    for assignment in &args.claims {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--claim {assignment:?}: expected NAME=VALUE")))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        token::set_claim(&mut claims, name, value)?;
    }
    println!("{}", minter.sign(&claims)?);
    Ok(ExitCode::SUCCESS)
}
