//! `token-sidecar serve`: the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use token_sidecar::config::ConfigSource;
use token_sidecar::daemon;

use super::failure::Failure;
use super::logging::LogFormat;

#[derive(Args)]
pub(super) struct ServeArgs {
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
    pub(super) log_format: LogFormat,
}

pub(super) fn run(args: ServeArgs) -> Result<ExitCode, Failure> {
    let source = ConfigSource {
        path: args.config,
        socket: args.socket,
    };
    if args.check_config {
        let config = source.load(|name| std::env::var(name).ok()).map_err(Failure::usage)?;
        let warnings = daemon::check(&config).map_err(Failure::usage)?;
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
        println!(
            "config OK: {} host(s), {} access-token issuer(s), socket {}{}",
            config.hosts.len(),
            config.issuers.len(),
            config.server.socket.display(),
            config.http.listen.map(|a| format!(", HTTP on {a}")).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Failure::runtime)?;
    runtime.block_on(daemon::serve(source)).map_err(|e| {
        if e.is_config() {
            Failure::usage(e)
        } else {
            Failure::runtime(e)
        }
    })?;
    // Tasks stuck past the shutdown grace must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}
