//! Who can reach the daemon's socket (issue 10, item 7): the socket appears at its path only with
//! its final mode and group, whatever the umask; with `[server] allowed_peers`, only the listed users
//! and groups are served (SO_PEERCRED), and a name that is no user or group stops the start.
//!
//! The `token-sidecar serve` binary on a temporary socket. Every wait is bounded.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const HOST_TOML: &str = "[hosts.\"meet.example.com\"]\napp_id = \"myapp\"\napp_secret = \"s3cret\"\n";

struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config with `[server]` pointing at `<dir>/run/sidecar.sock` plus `server_extra`, and one host.
fn config(dir: &Path, server_extra: &str) -> (PathBuf, PathBuf) {
    let socket = dir.join("run/sidecar.sock");
    let config = dir.join("sidecar.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nsocket = {:?}\n{server_extra}\n{HOST_TOML}",
            socket.display().to_string()
        ),
    )
    .expect("write config");
    (config, socket)
}

/// `token-sidecar serve --config <config>` under `umask`, stderr to `<dir>/daemon.log`.
fn serve(dir: &Path, config: &Path, umask: &str) -> (Command, PathBuf) {
    let log = dir.join("daemon.log");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" serve --config \"$1\""))
        .arg(env!("CARGO_BIN_EXE_token-sidecar"))
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(File::create(&log).expect("log file")));
    (cmd, log)
}

impl Daemon {
    fn start(server_extra: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, socket) = config(dir.path(), server_extra);
        let (mut cmd, log) = serve(dir.path(), &config, "022");
        let child = cmd.spawn().expect("start daemon");
        let daemon = Daemon {
            child,
            _dir: dir,
            socket,
            log,
        };
        daemon.wait_listening();
        daemon
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.socket.exists() && UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "daemon did not listen on {} within {WAIT:?}: {}",
            self.socket.display(),
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A ping's reply, or `None` when the daemon closes the connection without one.
fn ping(socket: &Path) -> Option<String> {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    if stream.write_all(b"{\"id\":1,\"op\":\"ping\"}\n").is_err() {
        return None;
    }
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line),
    }
}

/// The uid and gid this test runs as (the owner of a file it creates).
fn me() -> (u32, u32) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let meta = file.as_file().metadata().expect("metadata");
    (meta.uid(), meta.gid())
}

/// The name of `id` in `/etc/passwd` or `/etc/group`, if it has one.
fn name_of(database: &str, id: u32) -> Option<String> {
    std::fs::read_to_string(database).ok()?.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == id).then(|| name.to_owned())
    })
}

#[test]
fn the_socket_never_has_a_wider_mode_than_socket_mode() {
    let (_, gid) = me();
    // The window a watcher could catch is short: several starts of each, so that a regression
    // shows (binding at the path and then changing the mode was caught in about one run in three).
    let starts = [(0o600, "000"), (0o660, "000"), (0o600, "077"), (0o666, "022")].repeat(3);
    for (mode, umask) in starts {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, socket) = config(
            dir.path(),
            &format!("socket_mode = \"{mode:04o}\"\nsocket_group = \"{gid}\""),
        );
        let (mut cmd, log) = serve(dir.path(), &config, umask);
        let mut child = cmd.spawn().expect("start daemon");
        // Watch the path from before it exists until the daemon answers there: every look must
        // find nothing or the finished socket.
        let deadline = Instant::now() + WAIT;
        let mut looks = 0u64;
        let mut seen = std::collections::BTreeSet::new();
        loop {
            if let Ok(meta) = std::fs::symlink_metadata(&socket) {
                looks += 1;
                seen.insert((
                    meta.file_type().is_socket(),
                    meta.permissions().mode() & 0o7777,
                    meta.gid(),
                ));
                if looks.is_multiple_of(64) && UnixStream::connect(&socket).is_ok() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no daemon on {}: {}",
                socket.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        // Nothing is left of the private directory it was bound in: the daemon removes it right
        // after linking the socket into place, so it may still be there for a moment after the
        // socket answers (a kill in that moment would leave it: look before killing).
        let entries = || -> Vec<_> {
            std::fs::read_dir(socket.parent().expect("parent"))
                .expect("read dir")
                .map(|e| e.expect("entry").file_name())
                .collect()
        };
        let deadline = Instant::now() + WAIT;
        while entries() != [std::ffi::OsString::from("sidecar.sock")] && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let left = entries();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            [(true, mode, gid)],
            "socket_mode {mode:04o} under umask {umask}"
        );
        assert_eq!(left, [std::ffi::OsString::from("sidecar.sock")], "{mode:04o} {umask}");
    }
}

#[test]
fn allowed_peers_serve_listed_users_and_groups_and_close_others() {
    let (uid, gid) = me();
    let mut admitted = vec![format!("\"user:{uid}\""), format!("\"group:{gid}\"")];
    if let Some(user) = name_of("/etc/passwd", uid) {
        admitted.push(format!("\"user:{user}\""));
    }
    if let Some(group) = name_of("/etc/group", gid) {
        admitted.push(format!("\"group:{group}\""));
    }
    admitted.push(format!("\"user:{}\", \"group:{gid}\"", uid.wrapping_add(1)));
    for list in &admitted {
        let daemon = Daemon::start(&format!("allowed_peers = [{list}]"));
        let reply = ping(&daemon.socket).unwrap_or_else(|| panic!("[{list}]: no reply; {}", daemon.log()));
        assert!(reply.contains("\"ok\":true"), "[{list}]: {reply}");
    }

    // Nobody listed is this test's user or group: the connection is closed without a reply, and
    // the daemon says why.
    let other = format!("\"user:{}\", \"group:{}\"", uid.wrapping_add(1), gid.wrapping_add(1));
    let daemon = Daemon::start(&format!("allowed_peers = [{other}]"));
    for _ in 0..3 {
        assert_eq!(ping(&daemon.socket), None, "[{other}]");
    }
    let deadline = Instant::now() + WAIT;
    while !daemon.log().contains("not in [server] allowed_peers") {
        assert!(Instant::now() < deadline, "no log line: {}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(daemon.log().contains(&format!("uid={uid}")), "{}", daemon.log());

    // Without allowed_peers, any peer that can open the socket is served.
    let daemon = Daemon::start("");
    assert!(ping(&daemon.socket).is_some_and(|r| r.contains("\"ok\":true")));
}

/// Runs `serve` with `server_extra` until it exits (it must not start).
fn failed_start(server_extra: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, socket) = config(dir.path(), server_extra);
    let out: Output = Command::new(env!("CARGO_BIN_EXE_token-sidecar"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!socket.exists(), "{server_extra}: a socket was created");
    let mut stderr = String::new();
    let _ = out.stderr.as_slice().read_to_string(&mut stderr);
    (out.status.code(), stderr)
}

#[test]
fn unknown_peers_and_bad_entries_stop_the_start() {
    let (code, stderr) = failed_start("allowed_peers = [\"user:no-such-user-tsc\"]");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("user \"no-such-user-tsc\" (allowed_peers): no such user in /etc/passwd"),
        "{stderr}"
    );
    let (code, stderr) = failed_start("allowed_peers = [\"group:no-such-group-tsc\"]");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("group \"no-such-group-tsc\" (socket_group or allowed_peers): no such group in /etc/group"),
        "{stderr}"
    );
    let (code, stderr) = failed_start("allowed_peers = [\"prosody\"]");
    assert_eq!(code, Some(2), "a configuration error: {stderr}");
    assert!(
        stderr.contains("[server] allowed_peers: expected a non-empty list of"),
        "{stderr}"
    );
    let (code, stderr) = failed_start("allowed_peers = []");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("an empty list"), "{stderr}");
}
