//! Real Valkey (or Redis) servers for tests: one server, or a cluster of masters, on free loopback
//! ports, in a temporary directory, without persistence (`--save "" --appendonly no`), killed by
//! PID when dropped. `valkey-server` is preferred, `redis-server` taken when it is missing; without
//! either the test fails and says what to install (`scripts/install-valkey`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server and its command-line client: valkey's, else redis'.
pub fn binaries() -> (PathBuf, PathBuf) {
    for (server, cli) in [("valkey-server", "valkey-cli"), ("redis-server", "redis-cli")] {
        if let (Some(server), Some(cli)) = (which(server), which(cli)) {
            return (server, cli);
        }
    }
    panic!(
        "no valkey-server/valkey-cli nor redis-server/redis-cli on PATH: run scripts/install-valkey as root \
         (apt-get install -t bookworm-backports valkey-server valkey-tools), or apt-get install redis-server redis-tools"
    );
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A loopback port nobody listens on now (nor on port + 10000, a cluster node's bus port).
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Sends one inline command and reads what comes back first (enough for PING and CLUSTER INFO).
pub fn ask(port: u16, command: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0; 4096];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// One server process.
pub struct Valkey {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    cluster: bool,
    /// More arguments (TLS, a password); with `--tls-port`, the port is the TLS one.
    extra: Vec<String>,
}

impl Valkey {
    /// A server on a free port.
    pub fn start() -> Valkey {
        Valkey::start_on(free_port(), false)
    }

    /// A server on `port`; a cluster node when `cluster`.
    pub fn start_on(port: u16, cluster: bool) -> Valkey {
        Valkey::start_with(port, cluster, Vec::new())
    }

    /// A server on `port` with more arguments: `--requirepass …`, or TLS only (`tls_only` gives
    /// `--port 0 --tls-port <port>` and the files' arguments).
    pub fn start_with(port: u16, cluster: bool, extra: Vec<String>) -> Valkey {
        let mut server = Valkey {
            port,
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            cluster,
            extra,
        };
        server.spawn();
        server
    }

    /// The arguments of a TLS-only server on `port` with this certificate, key and CA (PEM files).
    pub fn tls_only(port: u16, cert: &Path, key: &Path, ca: &Path) -> Vec<String> {
        let mut args: Vec<String> = ["--port", "0", "--tls-port"].map(String::from).to_vec();
        args.push(port.to_string());
        for (option, file) in [
            ("--tls-cert-file", cert),
            ("--tls-key-file", key),
            ("--tls-ca-cert-file", ca),
        ] {
            args.push(option.to_owned());
            args.push(file.display().to_string());
        }
        args.extend(["--tls-auth-clients", "no"].map(String::from));
        args
    }

    fn tls(&self) -> bool {
        self.extra.iter().any(|a| a == "--tls-port")
    }

    /// Whether it answers: PING (`-NOAUTH` counts, with a password), or a TCP connection for TLS.
    fn answers(&self) -> bool {
        if self.tls() {
            return TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        }
        ask(self.port, "PING").is_some_and(|r| r.starts_with("+PONG") || r.starts_with("-NOAUTH"))
    }

    fn spawn(&mut self) {
        let (bin, _) = binaries();
        let mut cmd = Command::new(&bin);
        cmd.current_dir(self.dir.path())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(&self.extra)
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .args(["--logfile", "server.log"]);
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "2000"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "{} did not answer PING on port {} within 10 s; its log:\n{}",
                bin.display(),
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` for TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Its directory (a cluster node's `nodes.conf` is there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills it (SIGKILL to its PID) and waits until the port is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same port, empty (no persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Valkey {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A cluster of masters without replicas, made with `--cluster create`.
pub struct Cluster {
    /// Its nodes.
    pub nodes: Vec<Valkey>,
}

impl Cluster {
    /// `masters` nodes on free ports, the slots shared out among them, every node saying
    /// `cluster_state:ok`.
    pub fn start(masters: usize) -> Cluster {
        let nodes: Vec<Valkey> = (0..masters).map(|_| Valkey::start_on(free_port(), true)).collect();
        let (_, cli) = binaries();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli.display()));
        assert!(
            out.status.success(),
            "{} --cluster create failed:\n{}{}",
            cli.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            while ask(node.port, "CLUSTER INFO").is_none_or(|r| !r.contains("cluster_state:ok")) {
                assert!(Instant::now() < deadline, "cluster not ok within 20 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Cluster { nodes }
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Valkey::url).collect()
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with the `openssl` command in
/// `dir`: (CA certificate, server certificate, server key), PEM files.
pub fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let file = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl (apt-get install openssl): {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        ]
        .concat(),
    );
    std::fs::write(file("ext"), "subjectAltName=IP:127.0.0.1\n").expect("write ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    (file("ca.pem"), file("server.pem"), file("server.key"))
}
