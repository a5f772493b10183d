//! Accepting connections and serving each one.
//!
//! The [`Listener`] accepts under a semaphore of `max_connections`. Each connection gets a
//! [`Handler`]: a reader loop that takes one per-connection permit before reading each line and a
//! global permit before working on it, answers it, and a writer task fed by a bounded channel.
//! A full per-connection or global budget therefore stops reading (backpressure); a client that
//! never reads its replies fills its channel, its work waits to hand over replies while holding its
//! per-connection permits, and its reader stops. Nothing queues without bound.
//!
//! A request that cannot be answered at once waits on I/O (a key server, a key set): it is handed
//! to its own task and gives both permits back, so that requests waiting for a slow key source never
//! hold up the ones behind them on the connection (the shim sends every login of a Prosody down
//! one connection). Such tasks are bounded by [`WAITING_PER_CONNECTION`] on each connection, and the
//! key waits among them also by their host's key-wait budget (`keys::KEY_WAITS_PER_HOST`), past
//! which a login is refused at once; a request beyond [`WAITING_PER_CONNECTION`] keeps its
//! permits, as every request did before.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use tokio::net::UnixListener;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Semaphore, broadcast, mpsc};

use super::connection::{Frame, FrameReader, FrameWriter};
use super::ops;
use crate::access::Reporter;
use crate::daemon::state::Shared;
use crate::protocol::{ErrorCode, Op, Reply};

/// Tells a task that the daemon is shutting down; once told, stays told.
pub struct Shutdown {
    is_shutdown: bool,
    notify: broadcast::Receiver<()>,
}

impl Shutdown {
    pub fn new(notify: broadcast::Receiver<()>) -> Shutdown {
        Shutdown {
            is_shutdown: false,
            notify,
        }
    }

    /// Whether shutdown has begun, without waiting (cheap: no future, no registration).
    pub fn is_shutdown(&mut self) -> bool {
        if !self.is_shutdown && !matches!(self.notify.try_recv(), Err(broadcast::error::TryRecvError::Empty)) {
            self.is_shutdown = true;
        }
        self.is_shutdown
    }

    /// Resolves when shutdown begins (the sender sends or is dropped).
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}

pub struct Listener {
    pub listener: UnixListener,
    pub shared: Arc<Shared>,
    pub limit_connections: Arc<Semaphore>,
    pub notify_shutdown: broadcast::Sender<()>,
    /// Cloned into every handler; the daemon knows all handlers are done when every clone is dropped.
    pub shutdown_complete: mpsc::Sender<()>,
}

impl Listener {
    /// Accepts until the task is dropped (the caller races this against the shutdown signal).
    pub async fn run(&self) {
        // `[server] allowed_peers`: a peer not listed is closed before anything is read from it.
        let peers = super::PeerPolicy::for_accepting(&self.shared.settings);
        loop {
            let Ok(permit) = self.limit_connections.clone().acquire_owned().await else {
                return;
            };
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends pass; do not spin on them.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if peers.as_ref().is_some_and(|peers| !peers.admits(&stream)) {
                continue;
            }
            let handler = Handler {
                shared: self.shared.clone(),
                shutdown: Shutdown::new(self.notify_shutdown.subscribe()),
                _shutdown_complete: self.shutdown_complete.clone(),
            };
            tokio::spawn(async move {
                handler.run(stream).await;
                drop(permit);
            });
        }
    }
}

/// Serves one connection.
struct Handler {
    shared: Arc<Shared>,
    shutdown: Shutdown,
    _shutdown_complete: mpsc::Sender<()>,
}

/// However the handler ends: decrements the open-connection gauge, and drops the occupancy the
/// connection reported (its shim re-sends it when it connects again).
struct ConnectionGuard(Arc<Shared>, Reporter);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        // The hosts this connection registered are no longer held by it (docs/PROTOCOL.md).
        self.0.registry.release(self.1);
        self.0
            .stats
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let (shared, reporter) = (self.0.clone(), self.1);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = shared.occupancy.forget(reporter).await {
                    tracing::warn!("{e}");
                }
            });
        }
    }
}

impl Handler {
    async fn run(mut self, stream: tokio::net::UnixStream) {
        let shared = self.shared.clone();
        shared
            .stats
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shared.stats.accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reporter = Reporter(
            shared
                .next_connection
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        let _guard = ConnectionGuard(shared.clone(), reporter);
        let settings = &shared.settings;
        let (read, write) = stream.into_split();
        let mut frames = FrameReader::new(read, settings.max_line_bytes);
        let per_connection = settings.max_inflight_per_connection;
        let (replies, queue) = mpsc::channel::<Vec<u8>>(per_connection);
        let writer = tokio::spawn(write_replies(write, queue, settings.write_timeout));
        let budget = Arc::new(Semaphore::new(per_connection));
        let waiting = Arc::new(Semaphore::new(WAITING_PER_CONNECTION));
        // Replies answered inline, handed to the writer as one chunk when the reader runs out of
        // buffered lines (or the chunk is large), so that a burst of requests costs one write.
        let mut batch: Vec<u8> = Vec::new();
        let mut spare = None;

        loop {
            if self.shutdown.is_shutdown() {
                break;
            }
            // Before anything that may wait, hand over what is batched. Awaiting the send is
            // backpressure: a full writer queue stops the reader.
            macro_rules! flush {
                () => {
                    if !batch.is_empty() && replies.send(std::mem::take(&mut batch)).await.is_err() {
                        break;
                    }
                };
            }
            if batch.len() >= BATCH_BYTES {
                flush!();
            }
            let permit = match budget.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    flush!();
                    tokio::select! {
                    permit = budget.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    _ = self.shutdown.recv() => break,
                    _ = replies.closed() => break,
                    }
                }
            };
            // `read_frame` is cancel-safe: try it without waiting, and wait (for the socket or for
            // shutdown) only if the buffer holds no whole line.
            let frame = match frames.read_frame().now_or_never() {
                Some(frame) => frame,
                None => {
                    flush!();
                    tokio::select! {
                        frame = frames.read_frame() => frame,
                        _ = self.shutdown.recv() => break,
                        _ = replies.closed() => break,
                    }
                }
            };
            let line = match frame {
                Ok(Frame::Line(line)) => line,
                Ok(Frame::TooLong) => {
                    let reply = Reply::error(
                        serde_json::Value::Null,
                        ErrorCode::LineTooLong,
                        format!(
                            "request line longer than the limit of {} bytes; discarded up to the next newline",
                            settings.max_line_bytes
                        ),
                    );
                    shared.stats.count(Op::Invalid, reply.outcome());
                    reply.write_line(&mut batch);
                    drop(permit);
                    continue;
                }
                Ok(Frame::Eof) => break,
                Err(e) => {
                    tracing::debug!("read failed: {e}");
                    break;
                }
            };
            let global = match shared.global.clone().try_acquire_owned() {
                Ok(global) => global,
                Err(_) => {
                    flush!();
                    tokio::select! {
                    global = shared.global.clone().acquire_owned() => match global {
                        Ok(global) => global,
                        Err(_) => break,
                    },
                    _ = self.shutdown.recv() => break,
                    }
                }
            };
            // Most requests (HS256, cached tokens, ping) finish without waiting: answer those here,
            // and hand only the ones that wait (a key fetch) to their own task, so that they never
            // stall the rest of the connection: that task gives the connection's permit and the
            // global one back while it waits, within the connection's waiting budget.
            let owned = shared.clone();
            let work = async move { ops::answer(&owned, reporter, &line).await };
            // The future is over a KiB, too large for malloc's fast bins: reuse the box of the
            // last inline answer instead of allocating one per request.
            let mut answer = match spare.take() {
                Some(mut answer) => {
                    Pin::set(&mut answer, work);
                    answer
                }
                None => Box::pin(work),
            };
            match answer.as_mut().now_or_never() {
                Some(reply) => {
                    drop(global);
                    reply.write_line(&mut batch);
                    drop(permit);
                    spare = Some(answer);
                }
                None => {
                    let replies = replies.clone();
                    match waiting.clone().try_acquire_owned() {
                        Ok(place) => {
                            drop(global);
                            drop(permit);
                            tokio::spawn(async move {
                                let reply = answer.await;
                                // An error here means the peer is gone; the reply has nowhere to go.
                                let _ = replies.send(reply.to_line()).await;
                                drop(place);
                            });
                        }
                        Err(_) => {
                            tokio::spawn(async move {
                                let reply = answer.await;
                                drop(global);
                                let _ = replies.send(reply.to_line()).await;
                                drop(permit);
                            });
                        }
                    }
                }
            }
        }
        if !batch.is_empty() {
            let _ = replies.send(batch).await;
        }
        // The writer ends once every task holding a sender has handed over its reply.
        drop(replies);
        let _ = writer.await;
    }
}

/// Requests of one connection that may wait on I/O without holding its in-flight permits. Enough
/// for four hosts' whole key-wait budgets (`keys::KEY_WAITS_PER_HOST`, 256). Each is a task holding
/// its request line and a future of about a KiB: a few MiB for a connection's waiting logins with
/// Jitsi's 1 KiB tokens, about 17 MiB with 16 KiB ones (the largest a login verifies).
const WAITING_PER_CONNECTION: usize = 1024;

/// Inline replies are handed to the writer in chunks of about this size at most.
const BATCH_BYTES: usize = 16 * 1024;

async fn write_replies(write: OwnedWriteHalf, mut queue: mpsc::Receiver<Vec<u8>>, timeout: Duration) {
    let mut writer = FrameWriter::new(write);
    while let Some(line) = queue.recv().await {
        writer.queue(&line);
        // Gather the replies already waiting into one write; never wait for more (that only adds
        // latency: the reader already hands over inline replies a read's worth at a time).
        while writer.has_room() {
            match queue.try_recv() {
                Ok(line) => writer.queue(&line),
                Err(_) => break,
            }
        }
        match tokio::time::timeout(timeout, writer.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!("write failed: {e}");
                return;
            }
            Err(_) => {
                tracing::warn!(
                    "closing a connection that accepted no reply bytes for {} s",
                    timeout.as_secs()
                );
                return;
            }
        }
    }
    let _ = writer.shutdown().await;
}
