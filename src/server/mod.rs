//! The daemon: `token-sidecar serve`. A Unix socket speaking newline-delimited JSON
//! (docs/PROTOCOL.md), many requests in flight per connection, bounded everywhere.
//!
//! - [`protocol`]: request and reply types;
//! - [`connection`]: framing (bounded line reader, batching writer);
//! - [`listener`]: accepting, one handler per connection, backpressure;
//! - [`ops`]: what each op does;
//! - [`registry`]: hosts (TOML and `hello`) and the cache of verified tokens.

pub mod bench;
pub mod connection;
pub mod listener;
pub mod ops;
pub mod protocol;
pub mod registry;

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::config::{Config, ServerSettings};
use listener::Listener;
use protocol::{Op, Reply};
use registry::{Registry, TokenCache};

/// State every connection shares.
pub struct Shared {
    pub settings: ServerSettings,
    pub registry: Registry,
    pub tokens: TokenCache,
    pub stats: Stats,
    /// In-flight requests across all connections.
    pub global: Arc<Semaphore>,
}

/// Counters for `stats`.
#[derive(Default)]
pub struct Stats {
    /// Per op: ok, refused, error.
    outcomes: [[AtomicU64; 3]; Op::ALL.len()],
    pub connections: AtomicUsize,
    pub accepted: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
}

impl Stats {
    pub fn count(&self, op: Op, reply: &Reply) {
        let outcome = if reply.is_ok() {
            0
        } else if reply.is_error() {
            2
        } else {
            1
        };
        self.outcomes[op.index()][outcome].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, op: Op) -> [u64; 3] {
        let counters = &self.outcomes[op.index()];
        [0, 1, 2].map(|i| counters[i].load(Ordering::Relaxed))
    }
}

impl Shared {
    pub fn new(settings: ServerSettings) -> Shared {
        Shared {
            tokens: TokenCache::new(&settings),
            global: Arc::new(Semaphore::new(settings.max_inflight)),
            registry: Registry::default(),
            stats: Stats::default(),
            settings,
        }
    }
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("another daemon is listening on {0}: stop it first, or pass --socket with another path")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; not removing it (pass --socket with another path)")]
    NotASocket(PathBuf),
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("socket_group {0:?}: no such group in /etc/group")]
    NoSuchGroup(String),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> StartError + use<> {
    let path = path.to_owned();
    move |source| StartError::Io { path, action, source }
}

/// Group id of `group`: a number, or a name looked up in /etc/group.
fn group_id(group: &str) -> Result<u32, StartError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group").map_err(io_error(Path::new("/etc/group"), "read"))?;
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| StartError::NoSuchGroup(group.to_owned()))
}

/// Binds the socket: creates the parent directory, refuses a path a live daemon holds, removes
/// a stale socket, then sets mode and group.
pub fn bind(settings: &ServerSettings) -> Result<(UnixListener, u64), StartError> {
    let path = &settings.socket;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error(parent, "create directory"))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(StartError::InUse(path.clone())),
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing a stale socket");
                std::fs::remove_file(path).map_err(io_error(path, "remove stale socket"))?;
            }
        },
        Ok(_) => return Err(StartError::NotASocket(path.clone())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(path, "inspect")(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_error(path, "bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(settings.socket_mode))
        .map_err(io_error(path, "set mode"))?;
    if let Some(group) = &settings.socket_group {
        let gid = group_id(group)?;
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_error(path, "change group"))?;
    }
    let inode = std::fs::metadata(path).map_err(io_error(path, "inspect"))?.ino();
    Ok((listener, inode))
}

/// Builds every host's verifier, as the daemon would at start (for `--check-config`).
pub fn check(config: &Config) -> Result<Vec<String>, StartError> {
    let registry = Registry::default();
    registry.set_toml(config)?;
    Ok(config.hosts.values().flat_map(|h| h.warnings()).collect())
}

/// Runs the daemon until SIGTERM or SIGINT. `config_path` is reloaded on SIGHUP.
pub async fn serve(config: Config, config_path: Option<PathBuf>) -> Result<(), StartError> {
    let settings = config.server.clone();
    let shared = Arc::new(Shared::new(settings.clone()));
    shared.registry.set_toml(&config)?;
    for warning in config.hosts.values().flat_map(|h| h.warnings()) {
        tracing::warn!("{warning}");
    }
    let (listener, inode) = bind(&settings)?;
    let io_err = |action| io_error(Path::new("signal"), action);
    let mut sigterm = signal(SignalKind::terminate()).map_err(io_err("install SIGTERM handler"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(io_err("install SIGINT handler"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(io_err("install SIGHUP handler"))?;
    tracing::info!(
        socket = %settings.socket.display(),
        hosts = config.hosts.len(),
        version = ops::DAEMON_VERSION,
        "listening"
    );

    let (notify_shutdown, _) = broadcast::channel(1);
    let (shutdown_complete, mut all_done) = mpsc::channel::<()>(1);
    let server = Listener {
        listener,
        shared: shared.clone(),
        limit_connections: Arc::new(Semaphore::new(settings.max_connections)),
        notify_shutdown,
        shutdown_complete,
    };
    {
        let accepting = server.run();
        tokio::pin!(accepting);
        loop {
            tokio::select! {
                _ = &mut accepting => break,
                _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break }
                _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break }
                _ = sighup.recv() => reload(&shared, config_path.as_deref()),
            }
        }
    }
    let Listener {
        listener,
        notify_shutdown,
        shutdown_complete,
        ..
    } = server;
    drop(listener);
    remove_socket(&settings.socket, inode);
    drop(notify_shutdown);
    drop(shutdown_complete);
    match tokio::time::timeout(settings.shutdown_grace, all_done.recv()).await {
        Ok(_) => tracing::info!("all connections finished; bye"),
        Err(_) => tracing::warn!(
            "requests still in flight after {} s (shutdown_grace); exiting anyway",
            settings.shutdown_grace.as_secs()
        ),
    }
    Ok(())
}

/// Removes the socket if it is still the one this daemon bound.
fn remove_socket(path: &Path, inode: u64) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.ino() == inode => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(socket = %path.display(), "could not remove the socket: {e}");
            }
        }
        _ => {}
    }
}

/// SIGHUP: reloads the TOML file. A bad file keeps the config in effect.
fn reload(shared: &Shared, path: Option<&Path>) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: no --config file to reload");
        return;
    };
    let config = match Config::load(path).and_then(|mut config| {
        config.add_env_host(|name| std::env::var(name).ok())?;
        Ok(config)
    }) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("SIGHUP: keeping the old config: {e}");
            return;
        }
    };
    if let Err(e) = shared.registry.set_toml(&config) {
        tracing::error!("SIGHUP: keeping the old config: {e}");
        return;
    }
    for warning in config.hosts.values().flat_map(|h| h.warnings()) {
        tracing::warn!("{warning}");
    }
    if config.server != shared.settings {
        tracing::warn!("SIGHUP: [server] changes take effect at the next restart");
    }
    tracing::info!(path = %path.display(), hosts = config.hosts.len(), "SIGHUP: config reloaded");
}
