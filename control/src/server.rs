//! Running the control service: load (or create) the state file, bind the listener, serve gRPC until a shutdown
//! signal, then end every watch stream and return.
//!
//! # Guarantees
//! - [`Server::bind`] fails, without serving, when the state file is corrupt, belongs to another region, or cannot
//!   be written (it writes the initial snapshot of a fresh state at once, so a bad path is found at start, not at
//!   the first change).
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

use crate::persist::{self, PersistError};
use crate::service::ControlService;
use crate::state::{State, StateError};

/// How the server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to listen on (port 0 = any free port).
    pub listen: SocketAddr,
    /// The state file (JSON snapshot), created when missing.
    pub state_file: PathBuf,
    /// The region served, e.g. `cn-hangzhou`.
    pub region_id: String,
}

/// An error starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The region id is not valid.
    #[error("invalid region: {0}")]
    Region(#[source] StateError),
    /// The state file could not be loaded or written.
    #[error(transparent)]
    State(#[from] PersistError),
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
}

impl Server {
    /// Loads the state (an empty one, stored at once, if the file does not exist) and binds the listener.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        let state = match persist::load(&config.state_file, &config.region_id)? {
            Some(state) => {
                tracing::info!(
                    path = %config.state_file.display(),
                    version = state.version(),
                    "loaded state"
                );
                state
            }
            None => {
                let state = State::new(&config.region_id).map_err(ServerError::Region)?;
                let bytes = persist::encode(&config.state_file, &state)?;
                persist::store(&config.state_file, &bytes)?;
                tracing::info!(path = %config.state_file.display(), "created a new state file");
                state
            }
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
        let (shutdown, shutdown_rx) = watch::channel(false);
        let service = ControlService::new(state, config.state_file, shutdown_rx);
        Ok(Server {
            listener,
            local_addr,
            service,
            shutdown,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The service (for callers that embed the controller and want to read its state).
    pub fn service(&self) -> &ControlService {
        &self.service
    }

    /// Serves until `signal` completes, then ends every watch stream, lets in-flight calls finish, and returns.
    pub async fn serve(self, signal: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let Server {
            listener,
            local_addr,
            service,
            shutdown,
        } = self;
        tracing::info!(%local_addr, "serving flowlog.v1.Control");
        let incoming = TcpListenerStream::new(listener).map(|stream| {
            if let Ok(stream) = &stream {
                // Capture-set updates are small writes that must not wait for Nagle's algorithm.
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "could not set TCP_NODELAY");
                }
            }
            stream
        });
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(ControlServer::new(service))
            .serve_with_incoming_shutdown(incoming, async move {
                signal.await;
                tracing::info!("shutting down: ending watch streams");
                shutdown.send_replace(true);
            })
            .await?;
        tracing::info!("stopped");
        Ok(())
    }
}
