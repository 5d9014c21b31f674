//! Running the controller: open the store (an embedded database file, or etcd shared with other replicas), bind the
//! listener, serve gRPC until a shutdown signal, then end every watch stream and return.
//!
//! # Guarantees
//! - Embedded store: [`Server::bind`] fails, without serving, when the database cannot be opened (missing
//!   directory, another controller has it open, not a database), holds another region's state, or is
//!   inconsistent; a fresh database gets its first records at once, so a bad path is found at start.
//! - etcd: [`Server::bind`] serves at once; the replica answers `NotLeader` until it is elected. A stored state of
//!   another region stops the server with an error.
//! - [`Server::local_addr`] is the bound address, so `127.0.0.1:0` works.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flowlog_proto::v1::control_server::ControlServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;

use crate::core::{Core, CoreConfig};
use crate::ha::{self, EtcdConfig, HaError, LoadFailure};
use crate::service::{ControlService, ServiceConfig};
use crate::state::{StateError, check_region_id};
use crate::store::embedded::EmbeddedStore;
use crate::store::{Store, StoreError};

/// Where the state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A redb database file, created when missing.
    Embedded {
        /// The file.
        path: PathBuf,
    },
    /// etcd, shared by replicas.
    Etcd(EtcdConfig),
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0 = any free port).
    pub listen: SocketAddr,
    /// The region served, e.g. `cn-hangzhou`.
    pub region_id: String,
    /// Where the state lives.
    pub store: StoreConfig,
    /// Access policy and quota.
    pub service: ServiceConfig,
    /// How long a host that stopped watching still counts as alive (holds up Activating / Deleting flow logs).
    pub host_timeout: Duration,
}

/// An error starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The region id is not valid.
    #[error("invalid region: {0}")]
    Region(#[source] StateError),
    /// The embedded store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored state could not be loaded.
    #[error("cannot load the state: {0}")]
    Load(#[from] LoadFailure),
    /// The replica cannot serve its etcd state.
    #[error(transparent)]
    Replica(#[from] HaError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A bound, not yet serving, control server.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    service: ControlService,
    shutdown: watch::Sender<bool>,
    replica: Option<(EtcdConfig, String, CoreConfig)>,
}

impl Server {
    /// Opens the store, loads (or creates) the state, and binds the listener.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        check_region_id(&config.region_id).map_err(ServerError::Region)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let service = ControlService::new(config.service, shutdown_rx);
        let core_config = CoreConfig {
            host_timeout: config.host_timeout,
        };
        let replica = match config.store {
            StoreConfig::Embedded { path } => {
                let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&path))
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))??;
                let store = Store::Embedded(store);
                let state = ha::load_or_create(&store, &config.region_id).await?;
                tracing::info!(
                    version = state.version(),
                    state_id = state.state_id(),
                    "state loaded"
                );
                service.install(Core::start(state, store, core_config));
                None
            }
            StoreConfig::Etcd(etcd) => Some((etcd, config.region_id.clone(), core_config)),
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    address: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            address: config.listen,
            source,
        })?;
        Ok(Server {
            listener,
            local_addr,
            service,
            shutdown,
            replica,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `signal` completes, then ends every watch stream, lets in-flight calls finish, and returns.
    pub async fn serve(self, signal: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let Server {
            listener,
            local_addr,
            service,
            shutdown,
            replica,
        } = self;
        tracing::info!(%local_addr, "serving flowlog.v1.Control");
        let replica_task = replica.map(|(etcd, region_id, core_config)| {
            tokio::spawn(ha::run(
                etcd,
                region_id,
                service.clone(),
                core_config,
                shutdown.subscribe(),
            ))
        });
        let incoming = TcpListenerStream::new(listener).map(|stream| {
            if let Ok(stream) = &stream {
                // Capture-set updates are small writes that must not wait for Nagle's algorithm.
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "could not set TCP_NODELAY");
                }
            }
            stream
        });
        let ending = shutdown.clone();
        let mut stopped = shutdown.subscribe();
        let grpc = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(ControlServer::new(service.clone()))
            .serve_with_incoming_shutdown(incoming, async move {
                tokio::select! {
                    () = signal => {}
                    // The replica failed for good: stop serving too.
                    _ = stopped.wait_for(|stop| *stop) => {}
                }
                tracing::info!("shutting down: ending watch streams");
                ending.send_replace(true);
            });
        let result = match replica_task {
            None => grpc.await.map_err(ServerError::from),
            Some(mut task) => {
                tokio::pin!(grpc);
                tokio::select! {
                    served = &mut grpc => {
                        // Let the replica resign before returning.
                        shutdown.send_replace(true);
                        if let Ok(Err(error)) = task.await {
                            tracing::warn!(%error, "the replica failed while stopping");
                        }
                        served.map_err(ServerError::from)
                    }
                    replica = &mut task => {
                        shutdown.send_replace(true);
                        match replica {
                            Ok(Err(error)) => Err(ServerError::Replica(error)),
                            _ => grpc.await.map_err(ServerError::from),
                        }
                    }
                }
            }
        };
        service.retire();
        tracing::info!("stopped");
        result
    }
}
