//! The daemon, `token-sidecar serve`: a Unix socket speaking the protocol of [`crate::protocol`]
//! (docs/PROTOCOL.md), many requests in flight per connection, bounded everywhere; SIGHUP reloads,
//! SIGTERM and SIGINT stop it gracefully.
//!
//! - [`socket`]: binding, accepting, framing, and what each op does;
//! - [`hosts`]: the hosts (TOML, environment, `hello`) and their verifiers;
//! - [`issuers`]: the access-token issuers (TOML, `hello`);
//! - [`http`]: the optional HTTP listener (JWKS, introspection, health, metrics);
//! - [`login`]: accepted logins remembered by token, for repeated logins and room checks;
//! - [`limited_cache`]: the bounded cache those live in;
//! - [`state`]: what connections share, and the counters `stats` reports;
//! - [`metrics`]: the other counters of `GET /metrics`, and `scrape`, which encodes them all.

pub mod hosts;
pub mod http;
pub mod issuers;
mod limited_cache;
pub mod login;
pub mod metrics;
mod scrape;
pub mod socket;
pub mod state;

use std::io;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::config::{Config, ConfigError, ConfigSource, ServerSettings};
use hosts::Registry;
pub use socket::BindError;
use socket::listener::Listener;
pub use state::DAEMON_VERSION;
use state::Shared;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The socket could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// An access-token issuer of the TOML file is refused.
    #[error(transparent)]
    Issuer(#[from] issuers::RefusedTable),
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr} ([http] listen)")]
    Http {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The shared store's settings cannot be used (`[store]`).
    #[error(transparent)]
    Store(#[from] crate::store::OpenError),
    /// A signal handler could not be installed.
    #[error("installing the {0} handler")]
    Signal(&'static str, #[source] io::Error),
}

impl StartError {
    /// Whether the cause is the configuration (a usage error) rather than the system.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            StartError::Config(_) | StartError::Issuer(_) | StartError::Store(_)
        )
    }
}

/// Builds every host's verifier, as the daemon would at start (for `--check-config`), and returns
/// the warnings.
pub fn check(config: &Config) -> Result<Vec<String>, StartError> {
    let registry = Registry::default();
    registry.set_config(config)?;
    issuers::Issuers::default().set_config(&config.issuers)?;
    let mut warnings: Vec<String> = config.hosts.values().flat_map(|h| h.warnings()).collect();
    warnings.extend(http_warnings(&config.http));
    Ok(warnings)
}

/// Reads the environment, for [`ConfigSource::load`].
fn environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Runs the daemon until SIGTERM or SIGINT. The configuration is loaded from `source` at start
/// and again on every SIGHUP.
pub async fn serve(source: ConfigSource) -> Result<(), StartError> {
    let config = source.load(environment)?;
    let settings = config.server.clone();
    let mut state = Shared::new(settings.clone());
    state.http = config.http.clone();
    let store = crate::store::Store::open(&config.store)?;
    state.occupancy = store.occupancy.clone();
    state.revocations = store.revocations.clone();
    state.store = store.status.clone();
    let shared = Arc::new(state);
    shared.registry.set_config(&config)?;
    shared.issuers.set_config(&config.issuers)?;
    for warning in config
        .hosts
        .values()
        .flat_map(|h| h.warnings())
        .chain(http_warnings(&config.http))
    {
        tracing::warn!("{warning}");
    }
    let http = match config.http.listen {
        Some(addr) => Some(
            http::bind(addr)
                .await
                .map_err(|source| StartError::Http { addr, source })?,
        ),
        None => None,
    };
    let (listener, inode) = socket::bind(&settings)?;
    let handler = |name: &'static str| move |e| StartError::Signal(name, e);
    let mut sigterm = signal(SignalKind::terminate()).map_err(handler("SIGTERM"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(handler("SIGINT"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(handler("SIGHUP"))?;
    tracing::info!(
        socket = %settings.socket.display(),
        hosts = config.hosts.len(),
        store = config.store.kind.name(),
        shard = store.status.shard(),
        version = DAEMON_VERSION,
        "listening"
    );

    let (notify_shutdown, _) = broadcast::channel(1);
    if let Some(listener) = http {
        let addr = listener.local_addr().ok();
        let mut stop = notify_shutdown.subscribe();
        let router = http::router(shared.clone(), &config.http);
        tokio::spawn(http::serve(listener, router, async move {
            let _ = stop.recv().await;
        }));
        tracing::info!(addr = ?addr, metrics = config.http.metrics, "HTTP listening (JWKS, introspection, health, metrics)");
    }
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
                _ = sighup.recv() => reload(&shared, &source, &config.store),
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
    socket::remove(&settings.socket, inode);
    drop(notify_shutdown);
    drop(shutdown_complete);
    match tokio::time::timeout(settings.shutdown_grace, all_done.recv()).await {
        Ok(_) => tracing::info!("all connections finished; bye"),
        Err(_) => tracing::warn!(
            "requests still in flight after {} s (shutdown_grace); exiting anyway",
            settings.shutdown_grace.as_secs()
        ),
    }
    // The leaves of the connections that ended, so that other shards see them now.
    if !store.flush(std::time::Duration::from_secs(1)).await {
        tracing::warn!("shared store: leaves not published at exit; they expire with the lease");
    }
    Ok(())
}

/// SIGHUP: loads the configuration again, as at start. One that does not load keeps the
/// configuration in effect.
fn reload(shared: &Shared, source: &ConfigSource, store: &crate::config::StoreSettings) {
    let Some(path) = &source.path else {
        tracing::warn!("SIGHUP: no --config file to reload");
        return;
    };
    let config = match source.load(environment) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("SIGHUP: keeping the old config: {e}");
            return;
        }
    };
    // Issuers are checked before anything is replaced, so that a bad file changes nothing.
    if let Err(e) = issuers::Issuers::default().set_config(&config.issuers) {
        tracing::error!("SIGHUP: keeping the old config: {e}");
        return;
    }
    if let Err(e) = shared.registry.set_config(&config) {
        tracing::error!("SIGHUP: keeping the old config: {e}");
        return;
    }
    if let Err(e) = shared.issuers.set_config(&config.issuers) {
        tracing::error!("SIGHUP: {e}");
    }
    for warning in config.hosts.values().flat_map(|h| h.warnings()) {
        tracing::warn!("{warning}");
    }
    warn_if_server_changed(&shared.settings, &config.server);
    if config.http != shared.http {
        tracing::warn!("SIGHUP: [http] changes take effect at the next restart");
    }
    if config.store != *store {
        tracing::warn!("SIGHUP: [store] changes take effect at the next restart");
    }
    tracing::info!(path = %path.display(), hosts = config.hosts.len(), "SIGHUP: config reloaded");
}

/// What an admin should know about `[http]` that is not an error.
fn http_warnings(http: &crate::config::HttpSettings) -> Vec<String> {
    let mut out = Vec::new();
    if http.listen.is_some() && http.introspect_secret.is_none() && !http.introspect_without_secret {
        out.push("[http]: no introspect_secret: POST /v1/introspect answers 403 to everyone".to_owned());
    }
    if http.listen.is_some_and(|a| !a.ip().is_loopback()) {
        out.push("[http] listen is not a loopback address: put TLS in front of it".to_owned());
        if http.metrics {
            out.push(
                "[http]: GET /metrics answers anyone who can connect, without a secret: keep the port on a private \
                 network, or set metrics = false"
                    .to_owned(),
            );
        }
    }
    out
}

fn warn_if_server_changed(running: &ServerSettings, loaded: &ServerSettings) {
    if running != loaded {
        tracing::warn!("SIGHUP: [server] changes take effect at the next restart");
    }
}
