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
    /// `allowed_peers` entries `"user:NAME"` / `"user:UID"`. When this or
    /// [`ServerSettings::allowed_peer_groups`] is not empty, only peers running as one of these
    /// users or groups may use the socket (checked with `SO_PEERCRED` right after accepting);
    /// others are closed at once. Both empty (the default): any peer that can open the socket.
    pub allowed_peer_users: Vec<String>,
    /// `allowed_peers` entries `"group:NAME"` / `"group:GID"`: a peer process whose group is one of
    /// these (its effective primary group, the one `SO_PEERCRED` reports; not its supplementary
    /// groups).
    pub allowed_peer_groups: Vec<String>,
}

/// An `allowed_peers` entry: `user:…` (`true`) or `group:…` (`false`), and the name or number, which
/// is non-empty and has no `:` or white space.
fn parse_peer(text: &str) -> Option<(bool, &str)> {
    let (user, name) = match text.strip_prefix("user:") {
        Some(name) => (true, name),
        None => (false, text.strip_prefix("group:")?),
    };
    let ok = !name.is_empty() && !name.contains(|c: char| c == ':' || c.is_whitespace());
    ok.then_some((user, name))
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
            allowed_peer_users: Vec::new(),
            allowed_peer_groups: Vec::new(),
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
                "allowed_peers" => {
                    const EXPECTED: &str =
                        "a non-empty list of \"user:NAME\", \"user:UID\", \"group:NAME\" or \"group:GID\"";
                    let entry = |found| ServerProblem::WrongType {
                        option: key.clone(),
                        expected: EXPECTED,
                        found,
                    };
                    let items = v.as_array().ok_or_else(|| wrong(EXPECTED))?;
                    if items.is_empty() {
                        return Err(entry("an empty list (that would refuse every client)"));
                    }
                    for item in items {
                        let text = item.as_str().ok_or_else(|| entry(type_name(item)))?;
                        match parse_peer(text) {
                            Some((true, name)) => server.allowed_peer_users.push(name.to_owned()),
                            Some((false, name)) => server.allowed_peer_groups.push(name.to_owned()),
                            None => return Err(entry("a string that is not user:… or group:… with a name")),
                        }
                    }
                }
                other => return Err(ServerProblem::UnknownOption(other.to_owned())),
            }
        }
        Ok(server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<ServerSettings, ServerProblem> {
        let value: toml::Table = text.parse().expect("TOML");
        ServerSettings::from_table(&serde_json::to_value(value).expect("JSON"))
    }

    #[test]
    fn allowed_peers_are_users_and_groups() {
        let none = read("").unwrap();
        assert!(none.allowed_peer_users.is_empty() && none.allowed_peer_groups.is_empty());
        let some = read(r#"allowed_peers = ["user:prosody", "group:prosody", "user:0", "group:110"]"#).unwrap();
        assert_eq!(some.allowed_peer_users, ["prosody", "0"]);
        assert_eq!(some.allowed_peer_groups, ["prosody", "110"]);
        for (text, found) in [
            (r#"allowed_peers = "user:prosody""#, "a string"),
            ("allowed_peers = []", "an empty list (that would refuse every client)"),
            ("allowed_peers = [110]", "an integer"),
            (
                r#"allowed_peers = ["prosody"]"#,
                "a string that is not user:… or group:… with a name",
            ),
            (
                r#"allowed_peers = ["user:"]"#,
                "a string that is not user:… or group:… with a name",
            ),
            (
                r#"allowed_peers = ["uid:0"]"#,
                "a string that is not user:… or group:… with a name",
            ),
            (
                r#"allowed_peers = ["group:a b"]"#,
                "a string that is not user:… or group:… with a name",
            ),
        ] {
            match read(text) {
                Err(ServerProblem::WrongType { option, found: f, .. }) => {
                    assert_eq!(option, "allowed_peers", "{text}");
                    assert_eq!(f, found, "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let message = read(r#"allowed_peers = ["prosody"]"#).unwrap_err().to_string();
        assert!(
            message.starts_with("[server] allowed_peers: expected a non-empty list of \"user:NAME\""),
            "{message}"
        );
    }
}
