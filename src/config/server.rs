//! `[server]`: the daemon's own settings.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::error::ServerProblem;
use super::options::type_name;

/// Default socket path of the daemon.
pub const DEFAULT_SOCKET: &str = "/run/token-sidecar/token-sidecar.sock";

/// The daemon's own settings (`[server]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Path of the Unix socket the shim connects to (`socket`).
    pub socket: PathBuf,
    /// File mode of the socket, e.g. 0o660 (`socket_mode`, an octal string in TOML).
    pub socket_mode: u32,
    /// Group (name or numeric id) given to the socket, so Prosody's group can connect (`socket_group`).
    pub socket_group: Option<String>,
    /// Most connections served at once; further clients wait in the kernel's backlog (`max_connections`).
    pub max_connections: usize,
    /// Most requests being worked on for all connections together (`max_inflight`).
    pub max_inflight: usize,
    /// Most requests in flight on one connection; past it the daemon stops reading that
    /// connection until replies have been written (`max_inflight_per_connection`).
    pub max_inflight_per_connection: usize,
    /// Longest request line in bytes, newline excluded (`max_line_bytes`).
    pub max_line_bytes: usize,
    /// A connection whose peer accepts no reply bytes for this long is closed (`write_timeout`, seconds).
    pub write_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take before the daemon exits anyway
    /// (`shutdown_grace`, seconds).
    pub shutdown_grace: Duration,
    /// Most logins remembered for the room check and repeated logins (`verify_cache_size`).
    pub verify_cache_size: u64,
    /// Longest time a login is remembered (`verify_cache_ttl`, seconds).
    pub verify_cache_ttl: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            socket: PathBuf::from(DEFAULT_SOCKET),
            socket_mode: 0o660,
            socket_group: None,
            max_connections: 1024,
            max_inflight: 1024,
            max_inflight_per_connection: 128,
            max_line_bytes: 64 * 1024,
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            verify_cache_size: 10_000,
            verify_cache_ttl: Duration::from_secs(600),
        }
    }
}

impl ServerSettings {
    /// Reads `[server]`; options it does not set keep their defaults.
    pub(super) fn from_table(value: &Value) -> Result<ServerSettings, ServerProblem> {
        let Value::Object(map) = value else {
            return Err(ServerProblem::NotATable);
        };
        let mut server = ServerSettings::default();
        for (key, v) in map {
            let wrong = |expected: &'static str| ServerProblem::WrongType {
                option: key.clone(),
                expected,
                found: type_name(v),
            };
            let limit = |min: u64, max: u64| {
                v.as_u64()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| ServerProblem::OutOfRange {
                        option: key.clone(),
                        min,
                        max,
                        found: v.to_string(),
                    })
            };
            let count = |min, max| limit(min, max).map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            match key.as_str() {
                "socket" => server.socket = PathBuf::from(v.as_str().ok_or_else(|| wrong("a path string"))?),
                "socket_mode" => {
                    let text = v.as_str().ok_or_else(|| wrong("an octal string such as \"0660\""))?;
                    server.socket_mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .ok_or_else(|| ServerProblem::SocketMode(text.to_owned()))?;
                }
                "socket_group" => {
                    server.socket_group = Some(v.as_str().ok_or_else(|| wrong("a group name"))?.to_owned());
                }
                "max_connections" => server.max_connections = count(1, 1 << 20)?,
                "max_inflight" => server.max_inflight = count(1, 1 << 20)?,
                "max_inflight_per_connection" => server.max_inflight_per_connection = count(1, 1 << 16)?,
                "max_line_bytes" => server.max_line_bytes = count(1024, 16 << 20)?,
                "write_timeout" => server.write_timeout = Duration::from_secs(limit(1, 3600)?),
                "shutdown_grace" => server.shutdown_grace = Duration::from_secs(limit(0, 3600)?),
                "verify_cache_size" => server.verify_cache_size = limit(0, 100_000_000)?,
                "verify_cache_ttl" => server.verify_cache_ttl = Duration::from_secs(limit(0, 86_400)?),
                other => return Err(ServerProblem::UnknownOption(other.to_owned())),
            }
        }
        Ok(server)
    }
}
