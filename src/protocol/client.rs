//! A typed client of the socket protocol, on tokio: the load tool (`token-sidecar bench-socket`)
//! and the tests drive the daemon through it.
//!
//! [`Client::call`] sends one request and reads its reply; for many requests in flight, split the
//! client into a [`RequestWriter`] (requests are queued into a buffer and written in batches) and a
//! [`ReplyReader`] (reply lines, matched to requests by `id`).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::{Auth, Hello, HelloReply, PROTOCOL_VERSION, Room};

/// A request body and its op's name.
pub trait RequestBody: Serialize {
    /// The `op`.
    const OP: &'static str;
}

impl RequestBody for Hello {
    const OP: &'static str = "hello";
}
impl RequestBody for Auth<'_> {
    const OP: &'static str = "auth";
}
impl RequestBody for Room<'_> {
    const OP: &'static str = "room";
}
impl RequestBody for crate::access::IssueRequest {
    const OP: &'static str = "access_token";
}

/// `ping`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ping {}
impl RequestBody for Ping {
    const OP: &'static str = "ping";
}

/// `stats`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stats {}
impl RequestBody for Stats {
    const OP: &'static str = "stats";
}

/// One request line: `id`, `op`, then the body's fields.
#[derive(Serialize)]
struct Line<'a, I, B> {
    id: I,
    op: &'static str,
    #[serde(flatten)]
    body: &'a B,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The daemon closed the connection.
    #[error("the daemon closed the connection")]
    Closed,
    /// A reply line that is not what the protocol says.
    #[error("unexpected reply ({error}): {line}")]
    BadReply {
        /// The line, lossily decoded.
        line: String,
        /// What is wrong with it.
        error: String,
    },
}

/// Writes request lines.
#[derive(Debug)]
pub struct RequestWriter {
    half: OwnedWriteHalf,
    buf: Vec<u8>,
}

impl RequestWriter {
    /// Adds a request to the buffer (written by [`RequestWriter::flush`]).
    pub fn queue<B: RequestBody>(&mut self, id: impl Serialize, body: &B) {
        let line = Line { id, op: B::OP, body };
        // Serialising into memory fails only for maps with non-string keys, which requests have none of.
        if serde_json::to_writer(&mut self.buf, &line).is_ok() {
            self.buf.push(b'\n');
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.buf.len()
    }

    /// Writes what is queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.half.write_all(&self.buf).await?;
        self.buf.clear();
        Ok(())
    }

    /// Writes bytes as they are (for tests of malformed input).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.half.write_all(bytes).await
    }
}

/// Reads reply lines.
#[derive(Debug)]
pub struct ReplyReader {
    half: OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReplyReader {
    /// The next reply line without its newline, or `None` when the daemon closed the connection.
    pub async fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            if let Some(at) = self.buf[self.start..self.end].iter().position(|b| *b == b'\n') {
                let line = self.start..self.start + at;
                self.start += at + 1;
                return Ok(Some(&self.buf[line]));
            }
            // Keep the unfinished line at the front; grow only for a line longer than the buffer.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.half.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Ok(None);
            }
            self.end += n;
        }
    }

    /// The next reply, parsed as `T`.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<T, ClientError> {
        let line = self.next_line().await?.ok_or(ClientError::Closed)?;
        serde_json::from_slice(line).map_err(|e| ClientError::BadReply {
            line: String::from_utf8_lossy(line).into_owned(),
            error: e.to_string(),
        })
    }
}

/// A connection to the daemon.
#[derive(Debug)]
pub struct Client {
    writer: RequestWriter,
    reader: ReplyReader,
    next_id: u64,
}

impl Client {
    /// Connects to the daemon's socket.
    pub async fn connect(path: &Path) -> io::Result<Client> {
        let (read, write) = UnixStream::connect(path).await?.into_split();
        Ok(Client {
            writer: RequestWriter {
                half: write,
                buf: Vec::with_capacity(64 * 1024),
            },
            reader: ReplyReader {
                half: read,
                buf: vec![0; 64 * 1024],
                start: 0,
                end: 0,
            },
            next_id: 0,
        })
    }

    /// The two halves, for many requests in flight.
    pub fn split(self) -> (RequestWriter, ReplyReader) {
        (self.writer, self.reader)
    }

    /// Sends one request with the next id, and returns the id.
    pub async fn send<B: RequestBody>(&mut self, body: &B) -> io::Result<u64> {
        self.next_id += 1;
        self.writer.queue(self.next_id, body);
        self.writer.flush().await?;
        Ok(self.next_id)
    }

    /// Writes bytes as they are (for tests of malformed input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_raw(bytes).await
    }

    /// The next reply line, as JSON.
    pub async fn recv(&mut self) -> Result<Value, ClientError> {
        self.reader.next().await
    }

    /// The next reply line, as sent.
    pub async fn recv_line(&mut self) -> Result<Vec<u8>, ClientError> {
        Ok(self.reader.next_line().await?.ok_or(ClientError::Closed)?.to_vec())
    }

    /// Sends one request and reads its reply (the next line, which must carry its id).
    pub async fn call<B: RequestBody>(&mut self, body: &B) -> Result<Value, ClientError> {
        let id = self.send(body).await?;
        let reply = self.recv().await?;
        if reply["id"] != id {
            return Err(ClientError::BadReply {
                line: reply.to_string(),
                error: format!("expected the reply to request {id}"),
            });
        }
        Ok(reply)
    }

    /// `hello` with this crate's protocol version, registering `hosts` (options by VirtualHost).
    pub async fn hello(&mut self, hosts: BTreeMap<String, Map<String, Value>>) -> Result<HelloReply, ClientError> {
        self.register(Hello {
            version: PROTOCOL_VERSION,
            hosts,
            ..Hello::default()
        })
        .await
    }

    /// Sends `hello` as given (hosts and access-token issuers) and reads its reply.
    pub async fn register(&mut self, hello: Hello) -> Result<HelloReply, ClientError> {
        let reply = self.call(&hello).await?;
        serde_json::from_value(reply.clone()).map_err(|e| ClientError::BadReply {
            line: reply.to_string(),
            error: e.to_string(),
        })
    }
}
