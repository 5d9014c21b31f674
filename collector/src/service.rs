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
//! - Projects and logstores: `InvalidArgument` for bad names, `AlreadyExists`, `NotFound`; a deleted logstore's
//!   data is gone when the call returns.
//! - Sql: `InvalidArgument` for SQL that does not plan or is not a query, `ResourceExhausted` past the memory
//!   limit; otherwise the result as Arrow IPC, the schema always in the first message.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::writer::StreamWriter;
use flowlog_proto::v1::collector_server::Collector;
use flowlog_proto::v1::{
    Action, AnalysisKind, AnalyzeRequest, CreateLogstoreRequest, CreateProjectRequest,
    DeleteLogstoreRequest, DeleteLogstoreResponse, DeleteProjectRequest, DeleteProjectResponse,
    IngestAck, IngestBatch, ListLogstoresRequest, ListLogstoresResponse, ListProjectsRequest,
    ListProjectsResponse, Logstore, LogstoreStats, Project, QueryRequest, QueryResponse, RankBy,
    SqlRequest, SqlResponse, UpdateLogstoreRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::analysis::{ActionFilter, Analysis, Filters, Measure};
use crate::config::Config;
use crate::names;
use crate::sql::{AnalysisQuery, SqlEngine, SqlError, SqlQuery};
use crate::store::logstore::LogstoreError;
use crate::store::wire::{RawBatch, WireError};
use crate::store::{LogstoreInfo, Pending, ProjectInfo, RecordFilter, Store, StoreError};

/// The collector service.
#[derive(Debug, Clone)]
pub struct CollectorService {
    store: Arc<Store>,
    config: Config,
    engine: SqlEngine,
}

impl CollectorService {
    /// A service over `store`.
    pub fn new(store: Arc<Store>, config: Config) -> Self {
        let engine = SqlEngine::new(store.clone(), config.sql_memory_bytes, config.sql_max_rows);
        CollectorService {
            store,
            config,
            engine,
        }
    }

    /// Runs a blocking store call off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || call(&store))
            .await
            .map_err(|e| Status::internal(format!("store call failed: {e}")))?
            .map_err(|e| status_of(&e))
    }

    /// Serves one ingest stream: submits its batches in arrival order (at most `max_in_flight_batches` waiting
    /// for durability) and answers each, in order, once durable; a refused batch ends the stream with its status
    /// after the acknowledgements of the batches before it.
    pub fn ingest_stream<T: Submit + Send + 'static>(
        &self,
        mut inbound: Streaming<T>,
        peer: Option<std::net::SocketAddr>,
    ) -> ReceiverStream<Result<IngestAck, Status>> {
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
                let item = match batch.submit(&store) {
                    Ok((exporter_id, sequence, pending)) => InFlight::Batch {
                        exporter_id,
                        sequence,
                        pending,
                    },
                    Err(status) => InFlight::Refused(status),
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
        ReceiverStream::new(ack_rx)
    }
}

/// A batch as an ingest stream delivers it: decoded, or as received (the fast path, [`crate::ingest`]).
pub trait Submit {
    /// Checks and submits the batch; returns its identity and the pending acknowledgement, or the status that
    /// refuses it.
    fn submit(self, store: &Store) -> Result<(String, u64, Pending), Status>;
}

impl Submit for IngestBatch {
    fn submit(self, store: &Store) -> Result<(String, u64, Pending), Status> {
        let pending = store.submit(&self).map_err(|e| status_of(&e))?;
        Ok((self.exporter_id, self.sequence, pending))
    }
}

impl Submit for Result<RawBatch, WireError> {
    fn submit(self, store: &Store) -> Result<(String, u64, Pending), Status> {
        let batch = self.map_err(|e| Status::invalid_argument(format!("invalid batch: {e}")))?;
        let pending = store.submit_raw(&batch).map_err(|e| status_of(&e))?;
        Ok((batch.exporter_id, batch.sequence, pending))
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
    type SqlStream = ReceiverStream<Result<SqlResponse, Status>>;
    type AnalyzeStream = ReceiverStream<Result<SqlResponse, Status>>;

    async fn ingest(
        &self,
        request: Request<Streaming<IngestBatch>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        let peer = request.remote_addr();
        Ok(Response::new(
            self.ingest_stream(request.into_inner(), peer),
        ))
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
        let action = action_of(request.action)?;
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

    async fn create_project(
        &self,
        request: Request<CreateProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        let request = request.into_inner();
        let info = self
            .blocking(move |store| store.create_project(&request.name, &request.description))
            .await?;
        Ok(Response::new(project_of(info)))
    }

    async fn list_projects(
        &self,
        _request: Request<ListProjectsRequest>,
    ) -> Result<Response<ListProjectsResponse>, Status> {
        let projects = self.store.projects().into_iter().map(project_of).collect();
        Ok(Response::new(ListProjectsResponse { projects }))
    }

    async fn delete_project(
        &self,
        request: Request<DeleteProjectRequest>,
    ) -> Result<Response<DeleteProjectResponse>, Status> {
        let request = request.into_inner();
        self.blocking(move |store| store.delete_project(&request.name))
            .await?;
        Ok(Response::new(DeleteProjectResponse {}))
    }

    async fn create_logstore(
        &self,
        request: Request<CreateLogstoreRequest>,
    ) -> Result<Response<Logstore>, Status> {
        let r = request.into_inner();
        let info = self
            .blocking(move |store| store.create_logstore(&r.project, &r.name, r.retention_hours))
            .await?;
        Ok(Response::new(logstore_of(info)))
    }

    async fn list_logstores(
        &self,
        request: Request<ListLogstoresRequest>,
    ) -> Result<Response<ListLogstoresResponse>, Status> {
        let r = request.into_inner();
        let infos = self
            .blocking(move |store| {
                store.logstores((!r.project.is_empty()).then_some(r.project.as_str()))
            })
            .await?;
        Ok(Response::new(ListLogstoresResponse {
            logstores: infos.into_iter().map(logstore_of).collect(),
        }))
    }

    async fn update_logstore(
        &self,
        request: Request<UpdateLogstoreRequest>,
    ) -> Result<Response<Logstore>, Status> {
        let r = request.into_inner();
        let info = self
            .blocking(move |store| store.update_logstore(&r.project, &r.name, r.retention_hours))
            .await?;
        Ok(Response::new(logstore_of(info)))
    }

    async fn delete_logstore(
        &self,
        request: Request<DeleteLogstoreRequest>,
    ) -> Result<Response<DeleteLogstoreResponse>, Status> {
        let r = request.into_inner();
        self.blocking(move |store| store.delete_logstore(&r.project, &r.name))
            .await?;
        Ok(Response::new(DeleteLogstoreResponse {}))
    }

    async fn sql(&self, request: Request<SqlRequest>) -> Result<Response<Self::SqlStream>, Status> {
        let r = request.into_inner();
        let query = SqlQuery {
            project: r.project,
            logstore: r.logstore,
            from: r.from,
            to: r.to,
            sql: r.sql,
            max_rows: r.max_rows,
        };
        let mut result = self.engine.run(&query).await.map_err(|e| sql_status(&e))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let schema = result.schema.clone();
            let mut sent = false;
            let mut pending: Option<RecordBatch> = None;
            loop {
                let next = result.next().await;
                // Send the batch before this one, so that the last message can say whether rows were cut.
                let last = next.is_none();
                if let Some(batch) = pending.take() {
                    let truncated = last && result.truncated();
                    if tx
                        .send(ipc_message(&schema, &batch, truncated))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    sent = true;
                }
                match next {
                    None => break,
                    Some(Ok(batch)) => pending = Some(batch),
                    Some(Err(e)) => {
                        // The client may be gone already.
                        let _ = tx.send(Err(sql_status(&e))).await;
                        return;
                    }
                }
            }
            if !sent {
                let empty = RecordBatch::new_empty(schema.clone());
                let _ = tx.send(ipc_message(&schema, &empty, false)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn analyze(
        &self,
        request: Request<AnalyzeRequest>,
    ) -> Result<Response<Self::AnalyzeStream>, Status> {
        let query = analysis_query(request.into_inner())?;
        let (schema, batches) = self
            .engine
            .analyze(&query)
            .await
            .map_err(|e| sql_status(&e))?;
        let (tx, rx) = mpsc::channel(batches.len().max(1));
        if batches.is_empty() {
            let empty = RecordBatch::new_empty(schema.clone());
            // The receiver is here: the channel has room for one message.
            let _ = tx.try_send(ipc_message(&schema, &empty, false));
        }
        for batch in &batches {
            let _ = tx.try_send(ipc_message(&schema, batch, false));
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A request's action filter: `None` for unspecified; unknown values are INVALID_ARGUMENT.
fn action_of(value: i32) -> Result<Option<Action>, Status> {
    match Action::try_from(value) {
        Ok(Action::Unspecified) => Ok(None),
        Ok(action) => Ok(Some(action)),
        Err(_) => Err(Status::invalid_argument(format!("unknown action {value}"))),
    }
}

/// The analysis an `AnalyzeRequest` asks for.
fn analysis_query(r: AnalyzeRequest) -> Result<AnalysisQuery, Status> {
    let limit = if r.limit == 0 { 10 } else { r.limit };
    let analysis = match AnalysisKind::try_from(r.kind) {
        Ok(AnalysisKind::Talkers) => Analysis::Talkers {
            by: match RankBy::try_from(r.by) {
                Ok(RankBy::Bytes) => Measure::Bytes,
                Ok(RankBy::Packets) => Measure::Packets,
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unknown ranking {}",
                        r.by
                    )));
                }
            },
            limit,
        },
        Ok(AnalysisKind::Traffic) => Analysis::Traffic {
            step_seconds: if r.step_seconds == 0 {
                60
            } else {
                r.step_seconds
            },
        },
        Ok(AnalysisKind::Rejected) => Analysis::Rejected { limit },
        Ok(AnalysisKind::EniTraffic) => Analysis::EniTraffic { limit },
        Ok(AnalysisKind::Unspecified) | Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown analysis kind {}",
                r.kind
            )));
        }
    };
    let address = match r.address {
        Some(text) => Some(
            text.parse::<std::net::IpAddr>()
                .map_err(|_| Status::invalid_argument(format!("{text:?} is not an IP address")))?
                .to_string(),
        ),
        None => None,
    };
    let port = match r.port {
        Some(port) => Some(
            u16::try_from(port)
                .map_err(|_| Status::invalid_argument(format!("port {port} is out of range")))?,
        ),
        None => None,
    };
    let action = action_of(r.action)?.map(|action| match action {
        Action::Reject => ActionFilter::Reject,
        // action_of never returns Unspecified.
        Action::Accept | Action::Unspecified => ActionFilter::Accept,
    });
    Ok(AnalysisQuery {
        project: r.project,
        logstore: r.logstore,
        from: r.from,
        to: r.to,
        analysis,
        filters: Filters {
            eni_id: r.eni_id,
            address,
            port,
            action,
        },
    })
}

/// One Arrow IPC stream holding `batch`.
fn ipc_message(
    schema: &SchemaRef,
    batch: &RecordBatch,
    truncated: bool,
) -> Result<SqlResponse, Status> {
    let encode = || -> Result<Vec<u8>, datafusion::arrow::error::ArrowError> {
        let mut writer = StreamWriter::try_new(Vec::new(), schema)?;
        writer.write(batch)?;
        writer.finish()?;
        writer.into_inner()
    };
    encode()
        .map(|arrow_ipc| SqlResponse {
            arrow_ipc,
            truncated,
        })
        .map_err(|e| Status::internal(format!("encoding the result: {e}")))
}

fn project_of(info: ProjectInfo) -> Project {
    Project {
        name: info.name,
        description: info.meta.description,
        created: info.meta.created,
    }
}

fn logstore_of(info: LogstoreInfo) -> Logstore {
    Logstore {
        project: info.project,
        name: info.name,
        retention_hours: info.meta.retention_hours,
        created: info.meta.created,
        stats: Some(LogstoreStats {
            wal_segments: info.wal_segments,
            wal_bytes: info.wal_bytes,
            parquet_files: info.parquet_files,
            parquet_bytes: info.parquet_bytes,
            parquet_records: info.parquet_records,
            oldest_hour: info.hours.map(|h| h.0),
            newest_hour: info.hours.map(|h| h.1),
            problems: info.problems,
        }),
    }
}

/// The gRPC status for a query error.
pub fn sql_status(e: &SqlError) -> Status {
    match e {
        SqlError::Store(e) => status_of(e),
        SqlError::Invalid(m) => Status::invalid_argument(m.clone()),
        SqlError::Resources(m) => Status::resource_exhausted(m.clone()),
        SqlError::Execution(m) => Status::internal(m.clone()),
    }
}

/// The gRPC status for a store error.
pub fn status_of(e: &StoreError) -> Status {
    let message = e.to_string();
    match e {
        StoreError::InvalidName(_)
        | StoreError::InvalidBatch(_)
        | StoreError::InvalidArgument(_) => Status::invalid_argument(message),
        StoreError::TooLarge(_) => Status::resource_exhausted(message),
        StoreError::NotFound { .. } | StoreError::ProjectNotFound(_) => Status::not_found(message),
        StoreError::AlreadyExists(_) => Status::already_exists(message),
        StoreError::WriteFailed(_)
        | StoreError::FirstCopyFailed(_)
        | StoreError::ShuttingDown
        | StoreError::OutOfService { .. }
        | StoreError::Logstore(LogstoreError::Closed(_)) => Status::unavailable(message),
        StoreError::Logstore(_)
        | StoreError::Segment(_)
        | StoreError::Catalog(_)
        | StoreError::Spawn(_)
        | StoreError::DataDir { .. }
        | StoreError::Locked(_) => Status::internal(message),
    }
}
