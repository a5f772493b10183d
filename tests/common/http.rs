//! A tiny real HTTP/1.1 server for tests: one response per path, programmable while running.
//!
//! ```ignore
//! let server = TestServer::start().await;
//! server.set("/k.pem", Response::ok(pem).header("Cache-Control", "max-age=60"));
//! server.set("/slow", Response::ok("late").delay(Duration::from_secs(2)));
//! server.set("/moved", Response::redirect("/elsewhere"));
//! server.set("/dead", Response::hang());
//! let url = server.url("/k.pem");
//! assert_eq!(server.requests("/k.pem"), 1);
//! ```
//!
//! Every answer carries `Connection: close`, so each request is a new connection. A path with
//! no response set answers 404. Requests are counted per path (without the query) whatever the
//! answer, including ones that are never answered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server answers on one path.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Read the request and then never answer (nor close).
    pub never_answer: bool,
}

impl Response {
    /// 200 with `body`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Response::status(200).body(body)
    }

    /// `status` with an empty body.
    pub fn status(status: u16) -> Self {
        Response {
            status,
            body: Vec::new(),
            headers: Vec::new(),
            delay: Duration::ZERO,
            never_answer: false,
        }
    }

    /// 302 to `location`.
    pub fn redirect(location: &str) -> Self {
        Response::status(302).header("Location", location)
    }

    /// Never answers.
    pub fn hang() -> Self {
        Response {
            never_answer: true,
            ..Response::status(200)
        }
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Response>>,
    counts: Mutex<HashMap<String, Arc<AtomicU64>>>,
    total: AtomicU64,
    user_agents: Mutex<Vec<String>>,
}

impl State {
    fn counter(&self, path: &str) -> Arc<AtomicU64> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(counts.entry(path.to_string()).or_default())
    }
}

/// The server. It stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Listens on 127.0.0.1 on a free port.
    pub async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind test server");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State::default());
        let accept_state = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&accept_state);
                tokio::spawn(async move {
                    serve(stream, state).await;
                });
            }
        });
        TestServer { addr, state, task }
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base()` followed by `path` (which should start with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }

    /// Answer `path` with `response` from now on.
    pub fn set(&self, path: &str, response: Response) {
        self.state
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_string(), response);
    }

    /// Forget `path` (it answers 404 again).
    pub fn remove(&self, path: &str) {
        self.state.routes.lock().unwrap_or_else(|p| p.into_inner()).remove(path);
    }

    /// Requests received for `path` so far.
    pub fn requests(&self, path: &str) -> u64 {
        self.state.counter(path).load(Ordering::SeqCst)
    }

    /// Requests received for any path so far.
    pub fn total_requests(&self) -> u64 {
        self.state.total.load(Ordering::SeqCst)
    }

    /// The User-Agent of the most recent request that had one.
    pub fn last_user_agent(&self) -> Option<String> {
        self.state
            .user_agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > 16 * 1024 {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let target = request_line.split(' ').nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").to_string();
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("user-agent")
        {
            state
                .user_agents
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(value.trim().to_string());
        }
    }
    state.counter(&path).fetch_add(1, Ordering::SeqCst);
    state.total.fetch_add(1, Ordering::SeqCst);

    let response = state
        .routes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&path)
        .cloned()
        .unwrap_or_else(|| Response::status(404).body("not found"));
    if response.never_answer {
        // Keep the connection open and silent until the client gives up.
        while let Ok(n) = stream.read(&mut chunk).await {
            if n == 0 {
                break;
            }
        }
        return;
    }
    if !response.delay.is_zero() {
        tokio::time::sleep(response.delay).await;
    }
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        reason(response.status),
        response.body.len()
    );
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&response.body);
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
