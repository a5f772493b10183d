//! `token-sidecar mint`: a token that passes a host's checks, for testing a setup.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;
use token_sidecar::clock::unix_now;
use token_sidecar::token::{self, Minter};

use super::failure::Failure;
use super::host::HostArgs;

#[derive(Args)]
pub(super) struct MintArgs {
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

pub(super) fn run(args: MintArgs) -> Result<ExitCode, Failure> {
    let settings = args.target.settings()?;
    let minter = match &args.key {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
            Minter::with_private_key(&settings, &pem, args.kid.clone())
        }
        None => Minter::with_secret(&settings),
    }
    .map_err(Failure::usage)?;
    let mut claims = token::default_claims(&settings, unix_now(), args.ttl);
    for name in &args.unset {
        token::unset_claim(&mut claims, name);
    }
    for assignment in &args.claims {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--claim {assignment:?}: expected NAME=VALUE")))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        token::set_claim(&mut claims, name, value).map_err(Failure::usage)?;
    }
    println!("{}", minter.sign(&claims).map_err(Failure::usage)?);
    Ok(ExitCode::SUCCESS)
}
