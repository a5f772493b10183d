//! A daemon with an HTTP listener, started from its real binary for a test: `[server]` on a socket in
//! a fresh directory, `[http]` on a free loopback port with an introspection secret, then whatever
//! the test adds. Stopped (killed) when dropped. Plus [`Conn`], one socket connection that sends a
//! request line and reads its reply.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a test waits for the daemon to start or to answer.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `token-sidecar serve`.
pub struct HttpDaemon {
    child: Child,
    /// The directory holding its config and socket (and whatever the test put there).
    pub dir: tempfile::TempDir,
    /// Its socket.
    pub socket: PathBuf,
    /// Its HTTP listener, `127.0.0.1:PORT`.
    pub http: String,
}

impl Drop for HttpDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (as far as anyone can tell before binding it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl HttpDaemon {
    /// Starts the daemon in `dir` with `introspect_secret`, then `http` more `[http]` lines, then
    /// `rest` (tables), and waits until both its socket and its HTTP port accept connections.
    pub fn start(dir: tempfile::TempDir, introspect_secret: &str, http: &str, rest: &str) -> HttpDaemon {
        let socket = dir.path().join("ts.sock");
        let port = free_port();
        let config = dir.path().join("c.toml");
        let text = format!(
            "[server]\nsocket = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\nintrospect_secret = \"{introspect_secret}\"\n{http}\n{rest}",
            socket.display().to_string(),
        );
        std::fs::write(&config, text).expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start daemon");
        let daemon = HttpDaemon {
            child,
            dir,
            socket,
            http: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + WAIT;
        while UnixStream::connect(&daemon.socket).is_err() || TcpStream::connect(&daemon.http).is_err() {
            assert!(Instant::now() < deadline, "daemon did not start");
            thread::sleep(Duration::from_millis(20));
        }
        daemon
    }
}

/// One connection to the daemon's socket.
pub struct Conn {
    write: UnixStream,
    read: BufReader<UnixStream>,
}

impl Conn {
    /// Connects, with [`WAIT`] as the read timeout.
    pub fn open(path: &Path) -> Conn {
        let s = UnixStream::connect(path).expect("connect");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        Conn {
            read: BufReader::new(s.try_clone().expect("clone")),
            write: s,
        }
    }

    /// Sends `request` as one line and returns the next reply, which must carry its id.
    pub fn call(&mut self, request: Value) -> Value {
        writeln!(self.write, "{request}").expect("write");
        let mut line = String::new();
        self.read.read_line(&mut line).expect("a reply");
        let reply: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(reply["id"], request["id"], "{reply}");
        reply
    }
}

/// One HTTP/1.1 request to the daemon; the status, the headers and the body.
pub fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    let status = response[9..12].parse().expect("status");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_owned(), body.to_owned())
}
