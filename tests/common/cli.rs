//! Running the `token-sidecar` binary as a user would: arguments, optional stdin, its output.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// The binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_token-sidecar");

/// Runs `token-sidecar ARGS`, writing `stdin` (if any) and closing it, and waits for it.
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn token-sidecar");
    if let Some(input) = stdin {
        // A usage error may end the process before it reads stdin.
        match child.stdin.take().expect("stdin").write_all(input.as_bytes()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => panic!("write stdin: {e}"),
        }
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}
