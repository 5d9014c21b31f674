//! The web view: one page (plain HTML, JavaScript and SVG, no build step) showing a logstore's traffic over time,
//! top talkers, rejected flows and per-ENI traffic with filters, and the JSON API it reads.
//!
//! ```text
//! GET /                      the page (query parameters preset the filters: project, logstore, from, to, eni,
//!                            addr, port, action)
//! GET /api/logstores         {"logstores":[{"project","name","retention_hours","parquet_records","wal_bytes"}]}
//! GET /api/analysis?kind=talkers|traffic|rejected|enis&project=P&logstore=L[&from=T&to=T&eni=ID&addr=A&port=N
//!                   &action=ACCEPT|REJECT&limit=N&step=S]
//! GET /api/sql?project=P&logstore=L&q=SELECT...[&from=T&to=T]
//!     -> {"sql": "...", "columns": [...], "rows": [{column: value}], "truncated": bool}
//! ```
//!
//! # Guarantees
//! - The analyses are run by [`SqlEngine::analyze`], as for `flowlog talkers` (and friends) and gRPC `Analyze`,
//!   so the page shows what they print for the same filters.
//! - Bad parameters are `400` with `{"error": ...}`; an unknown logstore `404`; nothing a client sends panics the
//!   server. The SQL endpoint has the engine's limits (queries only, memory, rows).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use datafusion::arrow::array::RecordBatch;
use serde::Deserialize;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::net::TcpListener;

use crate::analysis::{ActionFilter, Analysis, Filters, Measure};
use crate::sql::{AnalysisQuery, SqlEngine, SqlError, SqlQuery};
use crate::store::StoreError;

/// The page.
const INDEX_HTML: &str = include_str!("../web/index.html");

/// Errors starting the web server.
#[derive(Debug, Error)]
pub enum WebError {
    /// The address could not be bound.
    #[error("cannot listen for HTTP on {address}: {error}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The underlying error.
        error: std::io::Error,
    },
}

/// A bound web server, ready to serve.
#[derive(Debug)]
pub struct WebServer {
    listener: TcpListener,
    router: Router,
}

impl WebServer {
    /// Binds `address` for the view over `engine`'s store.
    pub async fn bind(address: SocketAddr, engine: SqlEngine) -> Result<WebServer, WebError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|error| WebError::Bind { address, error })?;
        Ok(WebServer {
            listener,
            router: router(engine),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// The routes over `engine`.
pub fn router(engine: SqlEngine) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/logstores", get(logstores))
        .route("/api/analysis", get(analysis))
        .route("/api/sql", get(sql))
        .with_state(Arc::new(engine))
}

async fn index() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(INDEX_HTML)).into_response()
}

async fn logstores(State(engine): State<Arc<SqlEngine>>) -> Response {
    let store = engine.store().clone();
    let listed = tokio::task::spawn_blocking(move || store.logstores(None)).await;
    match listed {
        Ok(Ok(infos)) => Json(json!({
            "logstores": infos.iter().map(|i| json!({
                "project": i.project,
                "name": i.name,
                "retention_hours": i.meta.retention_hours,
                "parquet_records": i.parquet_records,
                "parquet_files": i.parquet_files,
                "wal_bytes": i.wal_bytes,
                "problems": i.problems,
            })).collect::<Vec<_>>()
        }))
        .into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Query parameters of the analysis endpoint.
#[derive(Debug, Default, Deserialize)]
struct AnalysisParams {
    kind: String,
    project: String,
    logstore: String,
    from: Option<String>,
    to: Option<String>,
    eni: Option<String>,
    addr: Option<String>,
    port: Option<String>,
    action: Option<String>,
    limit: Option<String>,
    step: Option<String>,
    by: Option<String>,
}

async fn analysis(
    State(engine): State<Arc<SqlEngine>>,
    Query(params): Query<AnalysisParams>,
) -> Response {
    let parsed = (|| -> Result<AnalysisQuery, String> {
        let filters = Filters {
            eni_id: non_empty(params.eni),
            address: match non_empty(params.addr) {
                Some(a) => Some(
                    a.parse::<std::net::IpAddr>()
                        .map_err(|_| format!("addr {a:?} is not an IP address"))?
                        .to_string(),
                ),
                None => None,
            },
            port: number::<u16>("port", params.port)?,
            action: match non_empty(params.action).as_deref() {
                None => None,
                Some("ACCEPT") | Some("accept") => Some(ActionFilter::Accept),
                Some("REJECT") | Some("reject") => Some(ActionFilter::Reject),
                Some(other) => return Err(format!("action {other:?} is not ACCEPT or REJECT")),
            },
        };
        let limit = number::<u64>("limit", params.limit)?
            .unwrap_or(10)
            .clamp(1, 10_000);
        let from = number::<i64>("from", params.from)?;
        let to = number::<i64>("to", params.to)?;
        let by = match non_empty(params.by).as_deref() {
            None | Some("bytes") => Measure::Bytes,
            Some("packets") => Measure::Packets,
            Some(other) => return Err(format!("by {other:?} is not bytes or packets")),
        };
        let analysis = match params.kind.as_str() {
            "talkers" => Analysis::Talkers { by, limit },
            "traffic" => Analysis::Traffic {
                step_seconds: number::<u64>("step", params.step)?.unwrap_or(60).max(1),
            },
            "rejected" => Analysis::Rejected { limit },
            "enis" => Analysis::EniTraffic { limit },
            other => {
                return Err(format!(
                    "kind {other:?} is not talkers, traffic, rejected or enis"
                ));
            }
        };
        Ok(AnalysisQuery {
            project: params.project,
            logstore: params.logstore,
            from,
            to,
            analysis,
            filters,
        })
    })();
    let query = match parsed {
        Ok(query) => query,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let sql = query.analysis.sql(&query.filters);
    respond(
        engine.analyze(&query).await.map(|(s, b)| (s, b, false)),
        sql,
    )
}

/// Query parameters of the SQL endpoint.
#[derive(Debug, Default, Deserialize)]
struct SqlParams {
    project: String,
    logstore: String,
    q: String,
    from: Option<String>,
    to: Option<String>,
}

async fn sql(State(engine): State<Arc<SqlEngine>>, Query(params): Query<SqlParams>) -> Response {
    let range = (|| -> Result<(Option<i64>, Option<i64>), String> {
        Ok((
            number::<i64>("from", params.from)?,
            number::<i64>("to", params.to)?,
        ))
    })();
    match range {
        Ok((from, to)) => {
            let query = SqlQuery {
                project: params.project,
                logstore: params.logstore,
                from,
                to,
                sql: params.q.clone(),
                max_rows: 0,
            };
            run(&engine, query, params.q).await
        }
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

async fn run(engine: &SqlEngine, query: SqlQuery, sql: String) -> Response {
    let result = match engine.run(&query).await {
        Ok(result) => result.collect().await,
        Err(e) => Err(e),
    };
    respond(result, sql)
}

/// The JSON answer for a result (or the error's status).
fn respond(
    result: Result<
        (
            datafusion::arrow::datatypes::SchemaRef,
            Vec<RecordBatch>,
            bool,
        ),
        SqlError,
    >,
    sql: String,
) -> Response {
    match result {
        Ok((schema, batches, truncated)) => {
            let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            match rows_json(&batches) {
                Ok(rows) => Json(json!({
                    "sql": sql,
                    "columns": columns,
                    "rows": rows,
                    "truncated": truncated,
                }))
                .into_response(),
                Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
            }
        }
        Err(e) => {
            let status = match &e {
                SqlError::Invalid(_) | SqlError::Store(StoreError::InvalidName(_)) => {
                    StatusCode::BAD_REQUEST
                }
                SqlError::Store(StoreError::NotFound { .. } | StoreError::ProjectNotFound(_)) => {
                    StatusCode::NOT_FOUND
                }
                SqlError::Resources(_) => StatusCode::INSUFFICIENT_STORAGE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, e.to_string())
        }
    }
}

/// The rows as JSON objects (nulls included).
fn rows_json(batches: &[RecordBatch]) -> Result<Vec<Value>, String> {
    let mut buffer = Vec::new();
    {
        let mut writer = datafusion::arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, datafusion::arrow::json::writer::JsonArray>(&mut buffer);
        for batch in batches {
            writer.write(batch).map_err(|e| e.to_string())?;
        }
        writer.finish().map_err(|e| e.to_string())?;
    }
    if buffer.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buffer).map_err(|e| e.to_string())
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn number<T: std::str::FromStr>(name: &str, value: Option<String>) -> Result<Option<T>, String> {
    match non_empty(value) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} {text:?} is not a valid number")),
    }
}
