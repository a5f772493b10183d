//! The connection to the store: one server through redis' `ConnectionManager`, or a cluster through
//! its async `ClusterConnection`. Both reconnect by themselves; both are made lazily, so a daemon
//! starts while its store is away. Every command is bounded by `timeout_ms` here, whatever the
//! client's own retries do.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Client, Cmd, FromRedisValue, IntoConnectionInfo, Pipeline, TlsCertificates};

use crate::config::{StoreAddress, StoreSettings};

/// Most commands in one pipeline.
const PIPELINE_MAX: usize = 1000;

/// Why a command got no answer: the store's or the client's text, or the timeout.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LinkError(pub String);

/// A connection to the store.
#[derive(Clone)]
pub(super) enum Link {
    /// One server.
    Server(ConnectionManager),
    /// A cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Link::Server(_) => "Link::Server",
            Link::Cluster(_) => "Link::Cluster",
        })
    }
}

/// Why the connection could not be set up (a bad URL or CA file; never "unreachable").
#[derive(Debug, thiserror::Error)]
#[error("[store]: {0}")]
pub struct OpenError(String);

impl OpenError {
    pub(super) fn new(why: &str) -> OpenError {
        OpenError(why.to_owned())
    }
}

impl Link {
    /// A lazy connection per `settings` (which must name an address).
    pub(super) fn open(settings: &StoreSettings) -> Result<Link, OpenError> {
        let bad = |e: redis::RedisError| OpenError(e.to_string());
        let certs = || TlsCertificates {
            client_tls: None,
            root_cert: settings.tls_ca.clone(),
        };
        match &settings.address {
            None => Err(OpenError("no url or cluster_nodes".to_owned())),
            Some(StoreAddress::Server(url)) => {
                let mut info = url.as_str().into_connection_info().map_err(bad)?;
                let mut redis_info = info.redis_settings().clone();
                if let Some(user) = &settings.username {
                    redis_info = redis_info.set_username(user);
                }
                if let Some(password) = &settings.password {
                    redis_info = redis_info.set_password(password);
                }
                info = info.set_redis_settings(redis_info);
                let client = if settings.tls_ca.is_some() {
                    Client::build_with_tls(info, certs()).map_err(bad)?
                } else {
                    Client::open(info).map_err(bad)?
                };
                // Few quick retries: a command waits at most timeout_ms anyway, and the next
                // command starts a new round of reconnecting.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500))
                    .set_connection_timeout(Some(settings.timeout))
                    .set_response_timeout(Some(settings.timeout));
                let manager = ConnectionManager::new_lazy_with_config(client, config).map_err(bad)?;
                Ok(Link::Server(manager))
            }
            Some(StoreAddress::Cluster(nodes)) => {
                let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .retries(1)
                    .connection_timeout(settings.timeout)
                    .response_timeout(settings.timeout);
                if let Some(user) = &settings.username {
                    builder = builder.username(user);
                }
                if let Some(password) = &settings.password {
                    builder = builder.password(password);
                }
                if settings.tls_ca.is_some() {
                    builder = builder.certs(certs());
                }
                let client = builder.build().map_err(bad)?;
                let config = ClusterConfig::new()
                    .set_connection_timeout(settings.timeout)
                    .set_response_timeout(settings.timeout);
                Ok(Link::Cluster(client.get_pending_async_connection_with_config(config)))
            }
        }
    }

    /// Whether keys must be grouped by slot in pipelines.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Link::Cluster(_))
    }

    /// Runs one command, within `timeout`.
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &Cmd, timeout: Duration) -> Result<T, LinkError> {
        let run = async {
            match self {
                Link::Server(c) => cmd.query_async(&mut c.clone()).await,
                Link::Cluster(c) => cmd.query_async(&mut c.clone()).await,
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result.map_err(|e| LinkError(e.to_string())),
            Err(_) => Err(LinkError(format!("no answer within {} ms", timeout.as_millis()))),
        }
    }

    /// Runs `commands` (whose replies are not needed), pipelined: by slot on a cluster, at most
    /// [`PIPELINE_MAX`] per pipeline, each pipeline within `timeout`. Stops at the first failure.
    pub(super) async fn run_all(&self, commands: Vec<(String, Cmd)>, timeout: Duration) -> Result<(), LinkError> {
        let groups: Vec<Vec<Cmd>> = if self.is_cluster() {
            let mut by_slot: HashMap<Slot, Vec<Cmd>> = HashMap::new();
            for (key, cmd) in commands {
                by_slot.entry(Slot::for_key(key.as_bytes())).or_default().push(cmd);
            }
            by_slot.into_values().collect()
        } else {
            vec![commands.into_iter().map(|(_, cmd)| cmd).collect()]
        };
        let pipelines = groups.into_iter().flat_map(|group| {
            group
                .chunks(PIPELINE_MAX)
                .map(|chunk| {
                    let mut pipe = Pipeline::with_capacity(chunk.len());
                    for cmd in chunk {
                        pipe.add_command(cmd.clone()).ignore();
                    }
                    pipe
                })
                .collect::<Vec<_>>()
        });
        // A cluster's slots are on several nodes: some pipelines at once.
        let mut runs = futures::stream::iter(pipelines.map(|pipe| self.pipeline(pipe, timeout))).buffer_unordered(16);
        while let Some(result) = runs.next().await {
            result?;
        }
        Ok(())
    }

    async fn pipeline(&self, pipe: Pipeline, timeout: Duration) -> Result<(), LinkError> {
        let run = async {
            match self {
                Link::Server(c) => pipe.query_async::<()>(&mut c.clone()).await,
                Link::Cluster(c) => pipe.query_async::<()>(&mut c.clone()).await,
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result.map_err(|e| LinkError(e.to_string())),
            Err(_) => Err(LinkError(format!("no answer within {} ms", timeout.as_millis()))),
        }
    }
}
