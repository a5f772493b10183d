//! The command line: one file per subcommand. Exit status 0 on success (a token accepted), 1 when
//! a token or join is refused or the daemon fails at run time (binding the socket, say), 2 on a
//! usage or configuration error.

mod bench_socket;
mod mint;
mod serve;
mod verify;

use std::error::Error;
use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use token_sidecar::config::{Config, HostSettings};

#[derive(Parser)]
#[command(
    name = "token-sidecar",
    version,
    about = "Jitsi/Prosody JWT token verification",
    long_about = "Verifies Jitsi Meet JWTs exactly as Prosody's token plugins do (mod_auth_token, \
                  mod_token_verification), with their option names and error texts.\n\n\
                  Exit status: 0 accepted / done, 1 refused or a run-time failure, 2 usage or configuration error."
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
    Verify(verify::VerifyArgs),
    /// Print a token signed with HOST's app_secret, or with --key, that passes HOST's checks.
    ///
    /// Default claims: iss = app_id, aud = "jitsi" (or the first accepted audience), sub =
    /// muc_mapper_domain_base (or HOST), room = "*", iat = now, exp = now + --ttl.
    Mint(mint::MintArgs),
    /// Run the daemon: answer the Prosody shim on a Unix socket (protocol: docs/PROTOCOL.md).
    ///
    /// Hosts come from the shim's `hello`, from [hosts."…"] tables of --config and from
    /// docker-jitsi-meet's JWT_* variables (hello wins, then the file).
    /// SIGTERM/SIGINT: stop accepting, finish requests in flight, remove the socket, exit 0.
    /// SIGHUP: reload --config; a bad file keeps the old config and logs why.
    /// Exits 1 when it cannot run (the socket cannot be bound, say), 2 on a configuration error.
    /// Log level: RUST_LOG (default info).
    Serve(serve::ServeArgs),
    /// Load-test a running daemon over its socket and print throughput and latency percentiles.
    BenchSocket(bench_socket::BenchArgs),
}

/// The host a token is checked or minted for.
#[derive(Args)]
struct HostArgs {
    /// TOML file with a [hosts."HOST"] table (see docs/CONFIG.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The Prosody VirtualHost whose settings apply, e.g. meet.example.com.
    #[arg(long, value_name = "HOST")]
    host: String,
}

impl HostArgs {
    /// The host's settings from the file.
    fn settings(&self) -> Result<HostSettings, Failure> {
        let config = Config::load(&self.config).map_err(Failure::usage)?;
        Ok(config.host(&self.host).map_err(Failure::usage)?.clone())
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How a command failed.
#[derive(Debug)]
enum Failure {
    /// The caller's mistake (flags, config, input): exit 2.
    Usage(Box<dyn Error + Send + Sync>),
    /// Something failed while running (binding the socket, permissions, the daemon gone): exit 1.
    Runtime(Box<dyn Error + Send + Sync>),
}

impl Failure {
    fn usage(e: impl Into<Box<dyn Error + Send + Sync>>) -> Failure {
        Failure::Usage(e.into())
    }

    fn runtime(e: impl Into<Box<dyn Error + Send + Sync>>) -> Failure {
        Failure::Runtime(e.into())
    }
}

/// The error and every cause under it, on one line: `a: b: c`.
fn cause_chain(error: &dyn Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
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

/// Parses the command line, runs the subcommand, and says how it ended.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Verify(args) => {
            init_logging("warn", LogFormat::Text);
            verify::run(args)
        }
        Command::Mint(args) => {
            init_logging("warn", LogFormat::Text);
            mint::run(args)
        }
        Command::Serve(args) => {
            init_logging("info", args.log_format);
            serve::run(args)
        }
        Command::BenchSocket(args) => {
            init_logging("warn", LogFormat::Text);
            bench_socket::run(args)
        }
    };
    match result {
        Ok(code) => code,
        Err(Failure::Usage(e)) => {
            eprintln!("error: {}", cause_chain(e.as_ref()));
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {}", cause_chain(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_chain_is_one_line() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied");
        let e = token_sidecar::daemon::BindError::Io {
            path: "/run/x.sock".into(),
            action: "bind",
            source: io,
        };
        assert_eq!(cause_chain(&e), "/run/x.sock: bind: Permission denied");
    }
}
