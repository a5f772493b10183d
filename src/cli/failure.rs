//! How a subcommand failed, and the exit status that says so: 2 for the caller's mistake, 1 for a
//! failure while running.

use std::error::Error;

/// How a command failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The caller's mistake (flags, config, input): exit 2.
    Usage(Box<dyn Error + Send + Sync>),
    /// Something failed while running (binding the socket, permissions, the daemon gone): exit 1.
    Runtime(Box<dyn Error + Send + Sync>),
}

impl Failure {
    pub(super) fn usage(e: impl Into<Box<dyn Error + Send + Sync>>) -> Failure {
        Failure::Usage(e.into())
    }

    pub(super) fn runtime(e: impl Into<Box<dyn Error + Send + Sync>>) -> Failure {
        Failure::Runtime(e.into())
    }
}

/// The error and every cause under it, on one line: `a: b: c`.
pub(super) fn cause_chain(error: &dyn Error) -> String {
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
