//! SQL over a logstore, with DataFusion: the table `flows` is the logstore's Parquet files plus the records of its
//! write-ahead log not yet converted, restricted to a window-start range.
//!
//! # Design
//! Each query takes a [`Snapshot`] of the logstore (so it sees every record once, whatever conversion does
//! meanwhile, and the files it reads are not deleted under it), decodes the snapshot's segments into an in-memory
//! table (only records in the range), lists the Parquet files whose `start` range overlaps the query's, and
//! registers `flows` as the union of both, filtered by the range. Parquet row groups are skipped by their `start`
//! statistics. Text columns are string views (`Utf8View`) in `flows`: DataFusion reads them from Parquet without
//! copying short strings, and groups by them fastest; results carry them as such.
//!
//! # Guarantees
//! - Only queries run: DDL (`CREATE EXTERNAL TABLE` could read any file of the server), DML and statements like
//!   `SET` are refused with [`SqlError::Invalid`]; URL tables are off. The only table is `flows`.
//! - A query uses at most `memory_bytes` for its operators; past that it fails with [`SqlError::Resources`] (the
//!   server stays up).
//! - At most `max_rows` rows come out; [`SqlResult::truncated`] says whether more were cut.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext, col, lit};
use flowlog_proto::v1::IngestBatch;
use prost::Message;
use thiserror::Error;
use tokio_stream::StreamExt as _;

use crate::analysis::{Analysis, Filters};
use crate::store::columnar::{self, BatchBuilder};
use crate::store::frame::{self, Scanned};
use crate::store::logstore::Snapshot;
use crate::store::{RecordFilter, Store, StoreError, segment};

/// Rows per in-memory batch of log records.
const BATCH_ROWS: usize = 65_536;

/// Why a query failed.
#[derive(Debug, Error)]
pub enum SqlError {
    /// The logstore cannot be read (unknown, bad name, out of service).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The SQL does not parse or plan, or is not a query.
    #[error("invalid query: {0}")]
    Invalid(String),
    /// The query needs more memory than it may use.
    #[error("query exceeds its memory limit: {0}")]
    Resources(String),
    /// The query failed while running (an unreadable file, ...).
    #[error("query failed: {0}")]
    Execution(String),
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        let message = e.to_string();
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => SqlError::Invalid(message),
            DataFusionError::ResourcesExhausted(_) => SqlError::Resources(message),
            _ => SqlError::Execution(message),
        }
    }
}

/// One query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqlQuery {
    /// The project.
    pub project: String,
    /// The logstore.
    pub logstore: String,
    /// Only records whose window starts at or after this Unix second.
    pub from: Option<i64>,
    /// Only records whose window starts before this Unix second.
    pub to: Option<i64>,
    /// One SELECT over `flows`.
    pub sql: String,
    /// At most this many rows (0 = the engine's limit; never more than it).
    pub max_rows: u64,
}

/// One built-in analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisQuery {
    /// The project.
    pub project: String,
    /// The logstore.
    pub logstore: String,
    /// Only records whose window starts at or after this Unix second.
    pub from: Option<i64>,
    /// Only records whose window starts before this Unix second.
    pub to: Option<i64>,
    /// Which analysis.
    pub analysis: Analysis,
    /// Its filters.
    pub filters: Filters,
}

/// Runs queries against a store.
#[derive(Debug, Clone)]
pub struct SqlEngine {
    store: Arc<Store>,
    memory_bytes: usize,
    max_rows: u64,
}

/// A running query: its schema and a stream of result batches.
pub struct SqlResult {
    /// The result's schema.
    pub schema: SchemaRef,
    stream: SendableRecordBatchStream,
    remaining: u64,
    truncated: bool,
    // Keeps the files the query reads from being deleted until it is done.
    _snapshot: Snapshot,
}

impl std::fmt::Debug for SqlResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlResult")
            .field("schema", &self.schema)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl SqlResult {
    /// The next batch of rows, `None` at the end (or once `max_rows` rows came out).
    pub async fn next(&mut self) -> Option<Result<RecordBatch, SqlError>> {
        if self.remaining == 0 {
            if !self.truncated {
                // Find out whether rows were cut, without reading more than one batch.
                self.truncated =
                    matches!(self.stream.next().await, Some(Ok(b)) if b.num_rows() > 0);
            }
            return None;
        }
        loop {
            return match self.stream.next().await? {
                Err(e) => Some(Err(e.into())),
                Ok(batch) if batch.num_rows() == 0 => continue,
                Ok(batch) => {
                    let rows = batch.num_rows() as u64;
                    if rows > self.remaining {
                        let keep = usize::try_from(self.remaining).unwrap_or(usize::MAX);
                        self.remaining = 0;
                        self.truncated = true;
                        Some(Ok(batch.slice(0, keep)))
                    } else {
                        self.remaining -= rows;
                        Some(Ok(batch))
                    }
                }
            };
        }
    }

    /// Whether rows past `max_rows` were cut (known once [`SqlResult::next`] returned `None`).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Every remaining batch.
    pub async fn collect(mut self) -> Result<(SchemaRef, Vec<RecordBatch>, bool), SqlError> {
        let mut batches = Vec::new();
        while let Some(batch) = self.next().await {
            batches.push(batch?);
        }
        Ok((self.schema, batches, self.truncated))
    }
}

impl SqlEngine {
    /// An engine over `store`; each query may use `memory_bytes` and return at most `max_rows` rows.
    pub fn new(store: Arc<Store>, memory_bytes: usize, max_rows: u64) -> Self {
        SqlEngine {
            store,
            memory_bytes,
            max_rows: max_rows.max(1),
        }
    }

    /// The store queried.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Runs a built-in analysis: its SQL ([`Analysis::sql`]).
    pub async fn analyze(
        &self,
        query: &AnalysisQuery,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
        let (schema, batches, _) = self
            .run(&SqlQuery {
                project: query.project.clone(),
                logstore: query.logstore.clone(),
                from: query.from,
                to: query.to,
                sql: query.analysis.sql(&query.filters),
                max_rows: 0,
            })
            .await?
            .collect()
            .await?;
        Ok((schema, batches))
    }

    /// Plans a query and starts it.
    pub async fn run(&self, query: &SqlQuery) -> Result<SqlResult, SqlError> {
        let snapshot = self.store.snapshot(&query.project, &query.logstore)?;
        let range = RecordFilter {
            from: query.from,
            to: query.to,
            ..RecordFilter::default()
        };
        let wal = {
            let segments = snapshot.clone();
            let range = range.clone();
            tokio::task::spawn_blocking(move || log_batches(&segments, &range))
                .await
                .map_err(|e| SqlError::Execution(format!("reading the log: {e}")))??
        };
        let files: Vec<String> = snapshot
            .files
            .iter()
            .filter(|f| range.may_match_range(f.entry.min_start, f.entry.max_start))
            .map(|f| f.path().display().to_string())
            .collect();

        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.memory_bytes, 1.0)
            .build_arc()?;
        // Operators may tune the engine with DataFusion's DATAFUSION_* environment variables.
        let config = SessionConfig::from_env()?.with_information_schema(false);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let schema = columnar::view_schema();
        let mut table = ctx.read_table(Arc::new(MemTable::try_new(schema.clone(), vec![wal])?))?;
        if !files.is_empty() {
            let urls = files
                .iter()
                .map(ListingTableUrl::parse)
                .collect::<Result<Vec<_>, _>>()?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let listing = ListingTable::try_new(
                ListingTableConfig::new_with_multi_paths(urls)
                    .with_listing_options(options)
                    .with_schema(schema.clone()),
            )?;
            table = ctx.read_table(Arc::new(listing))?.union(table)?;
        }
        if let Some(from) = query.from {
            table = table.filter(col("start").gt_eq(lit(from)))?;
        }
        if let Some(to) = query.to {
            table = table.filter(col("start").lt(lit(to)))?;
        }
        ctx.register_table("flows", table.into_view())?;

        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = ctx.sql_with_options(&query.sql, options).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let stream = frame.execute_stream().await?;
        let max_rows = match query.max_rows {
            0 => self.max_rows,
            asked => asked.min(self.max_rows),
        };
        Ok(SqlResult {
            schema,
            stream,
            remaining: max_rows,
            truncated: false,
            _snapshot: snapshot,
        })
    }
}

/// The snapshot's log records within `range`, as Arrow batches.
fn log_batches(snapshot: &Snapshot, range: &RecordFilter) -> Result<Vec<RecordBatch>, SqlError> {
    let mut batches = Vec::new();
    let mut builder = BatchBuilder::new(1024);
    for view in &snapshot.segments {
        if view.committed == 0 {
            continue;
        }
        let bytes = segment::read_committed(&view.path, view.committed)
            .map_err(|e| SqlError::Execution(e.to_string()))?;
        for item in frame::scan(&bytes) {
            // Damaged stretches are reported at open and by record queries; SQL skips them likewise.
            let Scanned::Frame { payload, .. } = item else {
                continue;
            };
            let Ok(batch) = IngestBatch::decode(payload) else {
                continue;
            };
            for record in batch.records.iter().filter(|r| range.matches(r)) {
                builder.push(record);
                if builder.len() >= BATCH_ROWS {
                    batches.push(builder.finish());
                }
            }
        }
    }
    if !builder.is_empty() {
        batches.push(builder.finish());
    }
    batches
        .iter()
        .map(columnar::to_view_batch)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SqlError::Execution(format!("reading the log: {e}")))
}
