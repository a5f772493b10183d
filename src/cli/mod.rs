//! The command line: one file per subcommand. Exit status 0 on success (a token accepted), 1 when
//! a token or join is refused or the daemon fails at run time (binding the socket, say), 2 on a
//! usage or configuration error.

mod bench_socket;
mod failure;
mod host;
mod keygen;
mod logging;
mod mint;
mod ping;
mod serve;
mod verify;
mod verify_access;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use failure::Failure;
use logging::{LogFormat, init_logging};
use token_sidecar::cause_chain::cause_chain;

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
    /// Make an access-token signing key: DIR/KID.pem (private, mode 0600) and DIR/KID.pub.pem.
    ///
    /// Prints one line: {"kid":…,"alg":…,"private_key":…,"public_key":…,"jwk":{…public JWK…}}.
    /// Refuses to replace existing files unless --force. Exits 0 when written, 2 on a usage error.
    Keygen(keygen::KeygenArgs),
    /// Check an access token offline (signature, exp/nbf/iat, --aud) and print the verdict as JSON.
    ///
    /// Keys from --jwks URL, --key FILE (PEM) or --secret-file FILE (HS256/384/512).
    /// Prints one line: {"ok":true,"claims":{…}} or {"ok":false,"text":"…"}.
    /// Exits 0 when accepted, 1 when refused, 2 on a usage error (bad file, unreachable JWKS).
    VerifyAccess(verify_access::VerifyAccessArgs),
    /// Ask a running daemon whether it answers: prints its name and version, exits 0; exits 1
    /// when nothing answers on the socket within --timeout (for health checks).
    Ping(ping::PingArgs),
}

/// Parses the command line, runs the subcommand, and says how it ended.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Verify(args) => {
            // A failed key fetch is in the verdict's `detail` already; its log record would only
            // repeat it.
            init_logging("warn,token_sidecar::keys::server=error", LogFormat::Text);
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
        Command::Keygen(args) => {
            init_logging("warn", LogFormat::Text);
            keygen::run(args)
        }
        Command::VerifyAccess(args) => {
            init_logging("warn", LogFormat::Text);
            verify_access::run(args)
        }
        Command::Ping(args) => {
            init_logging("warn", LogFormat::Text);
            ping::run(args)
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
