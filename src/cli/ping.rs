//! `token-sidecar ping`: is a daemon answering on this socket? For container health checks, a
//! systemd `ExecStartPost`, and an admin's first question.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use token_sidecar::protocol::client::{Client, Ping};

use super::failure::Failure;

#[derive(Args)]
pub(super) struct PingArgs {
    /// The daemon's socket.
    #[arg(long, value_name = "PATH", default_value = "/run/token-sidecar/token-sidecar.sock")]
    socket: PathBuf,
    /// How long to wait for the answer, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    timeout: f64,
}

pub(super) fn run(args: PingArgs) -> Result<ExitCode, Failure> {
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
        return Err(Failure::usage(
            "--timeout must be a number of seconds between 0 and 3600",
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::runtime)?;
    let socket = args.socket.display().to_string();
    let reply = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs_f64(args.timeout), async {
            let mut client = Client::connect(&args.socket)
                .await
                .map_err(|e| format!("cannot connect to {socket}: {e}"))?;
            client
                .call(&Ping {})
                .await
                .map_err(|e| format!("no answer on {socket}: {e}"))
        })
        .await
        .map_err(|_| format!("no answer on {socket} within {} s", args.timeout))?
    });
    match reply {
        Ok(reply) if reply["ok"] == true => {
            println!("{}", reply["daemon"].as_str().unwrap_or("ok"));
            Ok(ExitCode::SUCCESS)
        }
        Ok(reply) => Err(Failure::runtime(format!("unexpected answer on {socket}: {reply}"))),
        Err(e) => Err(Failure::runtime(e)),
    }
}
