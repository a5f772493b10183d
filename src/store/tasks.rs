//! A background task that ends when its owner is dropped.

use std::future::Future;

use tokio::task::JoinHandle;

/// Aborts the task when dropped.
#[derive(Debug)]
pub(super) struct Task(JoinHandle<()>);

impl Task {
    /// Spawns `future` on the current tokio runtime.
    pub(super) fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Task {
        Task(tokio::spawn(future))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}
