//! The host a subcommand works for: `--config FILE --host HOST`.

use std::path::PathBuf;

use clap::Args;
use token_sidecar::config::{Config, HostSettings};

use super::failure::Failure;

/// The host a token is checked or minted for.
#[derive(Args)]
pub(super) struct HostArgs {
    /// TOML file with a [hosts."HOST"] table (see docs/CONFIG.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The Prosody VirtualHost whose settings apply, e.g. meet.example.com.
    #[arg(long, value_name = "HOST")]
    host: String,
}

impl HostArgs {
    /// The host's settings from the file.
    pub(super) fn settings(&self) -> Result<HostSettings, Failure> {
        let config = Config::load(&self.config).map_err(Failure::usage)?;
        Ok(config.host(&self.host).map_err(Failure::usage)?.clone())
    }
}
