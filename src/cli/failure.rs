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
