//! `token-sidecar bench-socket`: a load generator for a running daemon.

#[derive(clap::Args)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs) -> Result<(), String> {
    Err("not yet".into())
}
