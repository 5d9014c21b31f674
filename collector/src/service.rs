//! The gRPC service `flowlog.v1.Collector`: ingest streams and queries, on top of [`Store`].
//!
//! # Guarantees
//! - Ingest: acknowledgements go out in the order the batches came in, each only once its batch is durable (or
//!   was already stored: `duplicate = true`). Up to `max_in_flight_batches` batches of a stream are written
//!   concurrently, so that batches arriving together share an fsync. A bad batch (names, no records, no exporter
//!   id, sequence 0) ends the stream with `InvalidArgument` after the acknowledgements of the batches before it; a
//!   failed write ends it with `Unavailable` (the exporter re-sends what was not acknowledged).
//! - Query: `InvalidArgument` for bad names or an unknown action, `NotFound` for an unknown logstore, otherwise the
//!   matching records in storage order, in pages of `query_page_records`.

use std::ops::ControlFlow;
use std::sync::Arc;

use flowlog_proto::v1::collector_server::Collector;
use flowlog_proto::v1::{Action, IngestAck, IngestBatch, QueryRequest, QueryResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::config::Config;
use crate::names;
use crate::store::logstore::LogstoreError;
use crate::store::{Pending, RecordFilter, Store, StoreError};

/// The collector service.
#[derive(Debug, Clone)]
pub struct CollectorService {
    store: Arc<Store>,
    config: Config,
}

impl CollectorService {
    /// A service over `store`.
    pub fn new(store: Arc<Store>, config: Config) -> Self {
        CollectorService { store, config }
    }
}

/// One received batch on its way to an acknowledgement, or the error that ends the stream.
enum InFlight {
    Batch {
        exporter_id: String,
        sequence: u64,
        pending: Pending,
    },
    Refused(Status),
}

#[tonic::async_trait]
impl Collector for CollectorService {
    type IngestStream = ReceiverStream<Result<IngestAck, Status>>;
    type QueryStream = ReceiverStream<Result<QueryResponse, Status>>;

    async fn ingest(
        &self,
        request: Request<Streaming<IngestBatch>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let depth = self.config.max_in_flight_batches;
        let (in_flight_tx, mut in_flight_rx) = mpsc::channel::<InFlight>(depth);
        let (ack_tx, ack_rx) = mpsc::channel(depth);

        // Receives batches and submits them in arrival order; the bounded channel limits how many are in flight.
        let store = self.store.clone();
        tokio::spawn(async move {
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(?peer, %status, "ingest stream ended by the client side");
                        break;
                    }
                };
                let item = match store.submit(&batch) {
                    Ok(pending) => InFlight::Batch {
                        exporter_id: batch.exporter_id,
                        sequence: batch.sequence,
                        pending,
                    },
                    Err(e) => InFlight::Refused(status_of(&e)),
                };
                let refused = matches!(item, InFlight::Refused(_));
                if in_flight_tx.send(item).await.is_err() || refused {
                    break;
                }
            }
        });

        // Waits for each batch in order and acknowledges it.
        tokio::spawn(async move {
            while let Some(item) = in_flight_rx.recv().await {
                let reply = match item {
                    InFlight::Batch {
                        exporter_id,
                        sequence,
                        pending,
                    } => match pending.durable().await {
                        Ok(duplicate) => Ok(IngestAck {
                            exporter_id,
                            sequence,
                            duplicate,
                        }),
                        Err(e) => Err(status_of(&e)),
                    },
                    InFlight::Refused(status) => Err(status),
                };
                let last = reply.is_err();
                if let Err(status) = &reply {
                    tracing::info!(?peer, %status, "ingest stream ended with an error");
                }
                if ack_tx.send(reply).await.is_err() || last {
                    break;
                }
            }
        });

        Ok(Response::new(ReceiverStream::new(ack_rx)))
    }

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        let request = request.into_inner();
        names::validate_project(&request.project)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        names::validate_logstore(&request.logstore)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let action = match Action::try_from(request.action) {
            Ok(Action::Unspecified) => None,
            Ok(action) => Some(action),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown action {}",
                    request.action
                )));
            }
        };
        if !self.store.contains(&request.project, &request.logstore) {
            return Err(Status::not_found(format!(
                "logstore {}/{} does not exist",
                request.project, request.logstore
            )));
        }
        let filter = RecordFilter {
            from: request.from,
            to: request.to,
            eni_id: request.eni_id,
            action,
        };
        let (tx, rx) = mpsc::channel(4);
        let store = self.store.clone();
        let page_records = self.config.query_page_records;
        tokio::task::spawn_blocking(move || {
            let result = store.query(
                &request.project,
                &request.logstore,
                &filter,
                request.limit,
                page_records,
                |page| match tx.blocking_send(Ok(QueryResponse { records: page })) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                },
            );
            match result {
                Ok(stats) => tracing::debug!(
                    logstore = %format!("{}/{}", request.project, request.logstore),
                    ?stats,
                    "query served"
                ),
                Err(e) => {
                    // The client may have gone away already; nothing else to tell.
                    let _ = tx.blocking_send(Err(status_of(&e)));
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The gRPC status for a store error.
fn status_of(e: &StoreError) -> Status {
    let message = e.to_string();
    match e {
        StoreError::InvalidName(_) | StoreError::InvalidBatch(_) => {
            Status::invalid_argument(message)
        }
        StoreError::TooLarge(_) => Status::resource_exhausted(message),
        StoreError::NotFound { .. } => Status::not_found(message),
        StoreError::WriteFailed(_)
        | StoreError::FirstCopyFailed(_)
        | StoreError::ShuttingDown
        | StoreError::Logstore(LogstoreError::Closed(_)) => Status::unavailable(message),
        StoreError::Logstore(_)
        | StoreError::Segment(_)
        | StoreError::DataDir { .. }
        | StoreError::Locked(_) => Status::internal(message),
    }
}
