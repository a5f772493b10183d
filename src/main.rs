//! The `token-sidecar` command: `serve`, `verify`, `mint` and `bench-socket` (src/cli/).

#![forbid(unsafe_code)]

mod cli;

/// mimalloc rather than glibc's malloc: every request allocates and frees a token's claims tree, its
/// request and reply buffers on whichever tokio worker runs it, and remembered logins are freed by
/// whichever worker evicts them; glibc's arenas made those frees a large part of the daemon's CPU
/// under load (docs/PERFORMANCE.md, "mimalloc"). `bench-socket --in-process` runs in this binary
/// too, so its figures use the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::run()
}
