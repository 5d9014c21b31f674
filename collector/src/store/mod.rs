//! Durable storage of flow-log records per Project / Logstore, with exactly-once ingest, a columnar (Parquet)
//! form for analysis, and retention.
//!
//! This module is the storage boundary: the gRPC service, the SQL engine and the web view talk only to [`Store`],
//! so the on-disk format can change without touching them.
//!
//! # Layout
//! ```text
//! DIR/LOCK                                   held while a collector uses DIR
//! DIR/DEDUP                                  exactly-once state of converted batches (dedup.rs)
//! DIR/<project>/project.json                 project settings (catalog.rs)
//! DIR/<project>/<logstore>/logstore.json     logstore settings: retention
//! DIR/<project>/<logstore>/<id>.seg          write-ahead log: framed IngestBatch messages (frame.rs)
//! DIR/<project>/<logstore>/MANIFEST          live Parquet files, and how far the log is converted (manifest.rs)
//! DIR/<project>/<logstore>/date=YYYY-MM-DD/hour=HH/part-NNNNNNNN.parquet   records by hour of window start
//! DIR/<project>/<logstore>/quarantine/       damaged Parquet files moved aside at open
//! ```
//!
//! # Guarantees
//! - A batch is acknowledged only once its frame is fsync'd in the write-ahead log (group commit; new files' and
//!   directories' entries are fsync'd too).
//! - A batch whose `(exporter_id, sequence)` is already stored is acknowledged as a duplicate and not stored again;
//!   that state is rebuilt at [`Store::open`] from the saved state and the remaining segments, so it survives
//!   restarts, crashes and the conversion of segments to Parquet.
//! - Every acknowledged record is, at every moment, in exactly one place readers see: a segment not yet converted
//!   or a live Parquet file (the manifest is the commit point; see [`maintenance`]). Kill -9 at any point loses
//!   none and doubles none.
//! - At open, a torn log tail is truncated away, corrupt frames are reported (file and offset) and skipped, and
//!   damaged Parquet files are reported and quarantined; a logstore whose manifest or settings are damaged is
//!   reported and kept out of service, the others work.
//! - Queries see only acknowledged-durable records.
//!
//! # Limitations
//! Opening reads every remaining segment once (to rebuild the exactly-once state) and the footer of every Parquet
//! file. One writer thread per logstore; one maintenance thread for the store.

pub mod catalog;
pub mod columnar;
pub mod dedup;
pub mod frame;
pub mod logstore;
pub mod maintenance;
pub mod manifest;
pub mod parquet;
pub mod query;
pub mod segment;
pub mod wire;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use flowlog_proto::v1::{IngestBatch, Record};
use prost::Message;
use thiserror::Error;
use tokio::sync::oneshot;

use crate::names::{self, NameError};
use catalog::{CatalogError, LogstoreMeta, ProjectMeta};
use dedup::{Admission, BatchId, Dedup, FirstCopyFailed};
use frame::FrameError;
use logstore::{Logstore, LogstoreError, Restored, Snapshot, WriteFailed, WriterConfig};
pub use maintenance::MaintenanceConfig;
pub use query::{QueryStats, RecordFilter};
use segment::SegmentError;

/// Longest exporter id accepted, in bytes.
pub const MAX_EXPORTER_ID_LEN: usize = 256;

/// Settings of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Segment files are rolled once they reach this size, in bytes.
    pub segment_bytes: u64,
    /// Most bytes of frames written per fsync.
    pub group_commit_bytes: usize,
    /// Most stored sequences kept above each exporter's contiguous watermark.
    pub dedup_window: usize,
    /// Whether a batch for an unknown project or logstore creates it (else it is refused with `NotFound`).
    pub auto_create_logstores: bool,
    /// Retention of logstores created by ingest, in hours; 0 = forever.
    pub default_retention_hours: u32,
    /// When the log is converted to Parquet, compacted, and expired.
    pub maintenance: MaintenanceConfig,
}

/// Errors of the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The project or logstore name is not valid.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The batch is malformed (no records, no exporter id, sequence 0, a record out of range, ...).
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// A request parameter is out of range (a description too long, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The batch is too large to be stored as one frame.
    #[error(transparent)]
    TooLarge(#[from] FrameError),
    /// No such logstore.
    #[error("logstore {project}/{logstore} does not exist")]
    NotFound {
        /// The project asked for.
        project: String,
        /// The logstore asked for.
        logstore: String,
    },
    /// No such project.
    #[error("project {0} does not exist")]
    ProjectNotFound(String),
    /// The project or logstore to create exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The logstore could not be opened (damaged manifest or settings); it is kept out of service.
    #[error("logstore {logstore} is out of service: {reason}")]
    OutOfService {
        /// `project/logstore`.
        logstore: String,
        /// Why.
        reason: String,
    },
    /// The data directory is in use by another collector.
    #[error("data directory {} is in use by another collector", .0.display())]
    Locked(PathBuf),
    /// A file or directory of the data directory could not be used.
    #[error("data directory {}: {error}", path.display())]
    DataDir {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },
    /// A segment operation failed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A settings file could not be read or written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A logstore could not be opened or is closed.
    #[error(transparent)]
    Logstore(#[from] LogstoreError),
    /// Writing the batch failed; it was not stored and may be sent again.
    #[error(transparent)]
    WriteFailed(#[from] WriteFailed),
    /// An earlier copy of the batch, in flight when this one arrived, failed; this one may be sent again.
    #[error(transparent)]
    FirstCopyFailed(#[from] FirstCopyFailed),
    /// The maintenance thread could not be started.
    #[error("cannot start the maintenance thread: {0}")]
    Spawn(io::Error),
    /// The writer went away without answering (the collector is shutting down).
    #[error("the collector is shutting down")]
    ShuttingDown,
}

/// The store: every project and logstore under one data directory, and the exactly-once state.
#[derive(Debug)]
pub struct Store {
    inner: Arc<Inner>,
    maintenance: Mutex<Option<maintenance::Handle>>,
}

/// What the store and its maintenance thread share.
#[derive(Debug)]
pub(crate) struct Inner {
    root: PathBuf,
    config: StoreConfig,
    dedup: Arc<Dedup>,
    catalog: Mutex<Catalog>,
    signal: maintenance::Signal,
    _lock: File,
}

/// Projects and logstores.
#[derive(Debug, Default)]
struct Catalog {
    projects: BTreeMap<String, ProjectMeta>,
    logstores: BTreeMap<(String, String), Slot>,
}

/// A logstore in the catalog: open, or kept out of service.
#[derive(Debug, Clone)]
enum Slot {
    Open(Arc<Logstore>),
    OutOfService(String),
}

/// A project, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectInfo {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub meta: ProjectMeta,
}

/// A logstore, as listed: settings and storage figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogstoreInfo {
    /// Its project.
    pub project: String,
    /// Its name.
    pub name: String,
    /// Its settings.
    pub meta: LogstoreMeta,
    /// Segments not yet converted.
    pub wal_segments: u64,
    /// Their committed bytes.
    pub wal_bytes: u64,
    /// Live Parquet files.
    pub parquet_files: u64,
    /// Their bytes.
    pub parquet_bytes: u64,
    /// Their records.
    pub parquet_records: u64,
    /// Oldest and newest hour held in Parquet.
    pub hours: Option<(i64, i64)>,
    /// Problems found (damaged files, out of service).
    pub problems: Vec<String>,
}

/// A submitted batch, whose acknowledgement is pending.
#[derive(Debug)]
pub enum Pending {
    /// Already stored: acknowledge as a duplicate at once.
    Duplicate,
    /// Being written; acknowledge when the write is durable.
    Written(oneshot::Receiver<Result<(), WriteFailed>>),
    /// Another copy is being written; acknowledge as a duplicate once that one is durable.
    AwaitingFirstCopy(oneshot::Receiver<Result<(), FirstCopyFailed>>),
}

impl Pending {
    /// Waits until the batch is durable; returns whether it was a duplicate.
    pub async fn durable(self) -> Result<bool, StoreError> {
        match self {
            Pending::Duplicate => Ok(true),
            Pending::Written(outcome) => {
                outcome.await.map_err(|_| StoreError::ShuttingDown)??;
                Ok(false)
            }
            Pending::AwaitingFirstCopy(outcome) => {
                outcome.await.map_err(|_| StoreError::ShuttingDown)??;
                Ok(true)
            }
        }
    }
}

impl Store {
    /// Opens (creating it if needed) the data directory `root`: takes its lock, opens every project and
    /// logstore (recovering their files), rebuilds the exactly-once state, and starts the maintenance thread.
    pub fn open(root: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        if !root.is_dir() {
            fs::create_dir_all(root).map_err(data_dir(root))?;
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                segment::sync_dir(parent)?;
            }
        }
        let lock_path = root.join("LOCK");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(data_dir(&lock_path))?;
        lock_file.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => StoreError::Locked(root.to_owned()),
            fs::TryLockError::Error(error) => StoreError::DataDir {
                path: lock_path.clone(),
                error,
            },
        })?;
        catalog::clean_hidden(root, root);

        let dedup = Arc::new(Dedup::new(config.dedup_window));
        let writer = writer_config(&config);
        let mut restored = Restored::new();
        let mut catalog = Catalog::default();
        for (project, project_dir) in list_projects(root)? {
            catalog::clean_hidden(root, &project_dir);
            let meta = match catalog::load::<ProjectMeta>(&project_dir.join(catalog::PROJECT_FILE))
            {
                Ok(meta) => meta.unwrap_or_default(),
                Err(e) => {
                    tracing::error!(project, error = %e, "project settings damaged; using defaults");
                    ProjectMeta::default()
                }
            };
            for (logstore, dir) in list_logstores(&project_dir)? {
                let label = format!("{project}/{logstore}");
                let slot = open_logstore(&dir, &label, writer, &config, &dedup, &mut restored);
                catalog.logstores.insert((project.clone(), logstore), slot);
            }
            catalog.projects.insert(project, meta);
        }
        let mut batches = 0;
        for (exporter_id, sequences) in restored {
            batches += sequences.len();
            let twice = dedup.restore(exporter_id.clone(), sequences);
            if twice > 0 {
                tracing::warn!(%exporter_id, batches = twice, "batches found stored more than once");
            }
        }
        // After the segments: the saved state covers them too, and merging it counts nothing twice.
        if let Err(e) = dedup.load(root) {
            tracing::error!(error = %e, "exactly-once state of converted batches lost: re-sent old batches may be stored again");
        }
        tracing::info!(
            root = %root.display(),
            projects = catalog.projects.len(),
            logstores = catalog.logstores.len(),
            batches,
            exporters = dedup.exporters(),
            "store opened"
        );
        let inner = Arc::new(Inner {
            root: root.to_owned(),
            config,
            dedup,
            catalog: Mutex::new(catalog),
            signal: maintenance::Signal::default(),
            _lock: lock_file,
        });
        let handle = maintenance::start(inner.clone()).map_err(StoreError::Spawn)?;
        Ok(Store {
            inner,
            maintenance: Mutex::new(Some(handle)),
        })
    }

    /// Checks a batch, and either recognises it as already stored or queues it for writing (creating its logstore
    /// on first use when so configured). Batches submitted one after another to the same logstore are stored in
    /// that order.
    pub fn submit(&self, batch: &IngestBatch) -> Result<Pending, StoreError> {
        check_identity(
            &batch.project,
            &batch.logstore,
            &batch.exporter_id,
            batch.sequence,
            batch.records.len(),
        )?;
        for (index, record) in batch.records.iter().enumerate() {
            if let Err(e) = columnar::check_record(record) {
                return Err(StoreError::InvalidBatch(format!("record {index}: {e}")));
            }
        }
        self.admit(
            &batch.exporter_id,
            batch.sequence,
            &batch.project,
            &batch.logstore,
            || framed(&batch.encode_to_vec()),
        )
    }

    /// [`Store::submit`] for a batch as received ([`wire::RawBatch`]: records already checked); its bytes are
    /// stored as they are.
    pub fn submit_raw(&self, batch: &wire::RawBatch) -> Result<Pending, StoreError> {
        check_identity(
            &batch.project,
            &batch.logstore,
            &batch.exporter_id,
            batch.sequence,
            batch.records,
        )?;
        self.admit(
            &batch.exporter_id,
            batch.sequence,
            &batch.project,
            &batch.logstore,
            || framed(&batch.bytes),
        )
    }

    /// Recognises a checked batch as already stored, or queues its frame (made by `frame`) for writing.
    fn admit(
        &self,
        exporter_id: &str,
        sequence: u64,
        project: &str,
        logstore: &str,
        frame: impl FnOnce() -> Result<Vec<u8>, FrameError>,
    ) -> Result<Pending, StoreError> {
        let id = BatchId {
            exporter_id: exporter_id.into(),
            sequence,
        };
        match self.inner.dedup.admit(&id) {
            Admission::Stored => return Ok(Pending::Duplicate),
            Admission::InFlight(outcome) => return Ok(Pending::AwaitingFirstCopy(outcome)),
            Admission::New => {}
        }
        let queued = self
            .logstore_for_ingest(project, logstore)
            .and_then(|logstore| Ok(logstore.append(id.clone(), frame()?)?));
        match queued {
            Ok(outcome) => Ok(Pending::Written(outcome)),
            Err(e) => {
                self.inner.dedup.abort(&id, &e.to_string());
                Err(e)
            }
        }
    }

    /// Whether the logstore exists.
    pub fn contains(&self, project: &str, logstore: &str) -> bool {
        self.inner
            .catalog()
            .logstores
            .contains_key(&(project.to_owned(), logstore.to_owned()))
    }

    /// Creates a project.
    pub fn create_project(&self, name: &str, description: &str) -> Result<ProjectInfo, StoreError> {
        names::validate_project(name)?;
        if description.len() > catalog::MAX_DESCRIPTION_LEN {
            return Err(StoreError::InvalidArgument(format!(
                "a description may hold at most {} bytes, not {}",
                catalog::MAX_DESCRIPTION_LEN,
                description.len()
            )));
        }
        let mut catalog = self.inner.catalog();
        if catalog.projects.contains_key(name) {
            return Err(StoreError::AlreadyExists(format!("project {name}")));
        }
        let meta = ProjectMeta {
            description: description.to_owned(),
            created: catalog::now(),
        };
        catalog::create_dir_with(&self.inner.root, name, catalog::PROJECT_FILE, &meta)?;
        catalog.projects.insert(name.to_owned(), meta.clone());
        tracing::info!(project = name, "project created");
        Ok(ProjectInfo {
            name: name.to_owned(),
            meta,
        })
    }

    /// Every project, by name.
    pub fn projects(&self) -> Vec<ProjectInfo> {
        self.inner
            .catalog()
            .projects
            .iter()
            .map(|(name, meta)| ProjectInfo {
                name: name.clone(),
                meta: meta.clone(),
            })
            .collect()
    }

    /// Deletes a project with its logstores and their data.
    pub fn delete_project(&self, name: &str) -> Result<(), StoreError> {
        names::validate_project(name)?;
        let mut catalog = self.inner.catalog();
        if !catalog.projects.contains_key(name) {
            return Err(StoreError::ProjectNotFound(name.to_owned()));
        }
        let keys: Vec<(String, String)> = catalog
            .logstores
            .keys()
            .filter(|(p, _)| p == name)
            .cloned()
            .collect();
        for key in keys {
            if let Some(Slot::Open(logstore)) = catalog.logstores.remove(&key) {
                retire(&logstore);
            }
        }
        let grave = catalog::move_to_trash(&self.inner.root, &self.inner.root.join(name))?;
        catalog.projects.remove(name);
        drop(catalog);
        catalog::remove_from_trash(&grave);
        tracing::info!(project = name, "project deleted");
        Ok(())
    }

    /// Creates a logstore in an existing project; `retention_hours` 0 keeps data forever.
    pub fn create_logstore(
        &self,
        project: &str,
        name: &str,
        retention_hours: u32,
    ) -> Result<LogstoreInfo, StoreError> {
        names::validate_project(project)?;
        names::validate_logstore(name)?;
        let mut catalog = self.inner.catalog();
        if !catalog.projects.contains_key(project) {
            return Err(StoreError::ProjectNotFound(project.to_owned()));
        }
        let key = (project.to_owned(), name.to_owned());
        if catalog.logstores.contains_key(&key) {
            return Err(StoreError::AlreadyExists(format!(
                "logstore {project}/{name}"
            )));
        }
        let logstore = self
            .inner
            .create_logstore(&mut catalog, project, name, retention_hours)?;
        Ok(info_of(project, name, &Slot::Open(logstore)))
    }

    /// The logstores of `project` (every project's when `None`), by project then name, with storage figures.
    pub fn logstores(&self, project: Option<&str>) -> Result<Vec<LogstoreInfo>, StoreError> {
        let catalog = self.inner.catalog();
        if let Some(project) = project
            && !catalog.projects.contains_key(project)
        {
            return Err(StoreError::ProjectNotFound(project.to_owned()));
        }
        Ok(catalog
            .logstores
            .iter()
            .filter(|((p, _), _)| project.is_none_or(|want| want == p))
            .map(|((p, l), slot)| info_of(p, l, slot))
            .collect())
    }

    /// Changes a logstore's retention (hours; 0 = forever). Partitions past it go at the next maintenance pass.
    pub fn update_logstore(
        &self,
        project: &str,
        name: &str,
        retention_hours: u32,
    ) -> Result<LogstoreInfo, StoreError> {
        let logstore = self.logstore(project, name)?;
        logstore.set_meta(LogstoreMeta {
            retention_hours,
            ..logstore.meta()
        })?;
        tracing::info!(logstore = %logstore.label(), retention_hours, "logstore updated");
        self.inner.wake_maintenance();
        Ok(info_of(project, name, &Slot::Open(logstore)))
    }

    /// Deletes a logstore and its data.
    pub fn delete_logstore(&self, project: &str, name: &str) -> Result<(), StoreError> {
        names::validate_project(project)?;
        names::validate_logstore(name)?;
        let mut catalog = self.inner.catalog();
        let key = (project.to_owned(), name.to_owned());
        let Some(slot) = catalog.logstores.remove(&key) else {
            return Err(StoreError::NotFound {
                project: project.to_owned(),
                logstore: name.to_owned(),
            });
        };
        if let Slot::Open(logstore) = &slot {
            retire(logstore);
        }
        let dir = self.inner.root.join(project).join(name);
        let grave = match catalog::move_to_trash(&self.inner.root, &dir) {
            Ok(grave) => grave,
            Err(e) => {
                catalog.logstores.insert(key, slot);
                return Err(e.into());
            }
        };
        drop(catalog);
        catalog::remove_from_trash(&grave);
        tracing::info!(logstore = %format!("{project}/{name}"), "logstore deleted");
        Ok(())
    }

    /// A consistent view of a logstore's files and segments for one reader.
    pub fn snapshot(&self, project: &str, logstore: &str) -> Result<Snapshot, StoreError> {
        Ok(self.logstore(project, logstore)?.snapshot())
    }

    /// Reads the records of a logstore matching `filter` — Parquet files in manifest order, then the segments not
    /// yet converted in storage order — handing them to `page` in pages of at most `page_records` (at least 1);
    /// stops after `limit` records (0 = no limit) or when `page` breaks. Blocking: run it off the async runtime.
    pub fn query(
        &self,
        project: &str,
        logstore: &str,
        filter: &RecordFilter,
        limit: u64,
        page_records: usize,
        page: impl FnMut(Vec<Record>) -> ControlFlow<()>,
    ) -> Result<QueryStats, StoreError> {
        let logstore = self.logstore(project, logstore)?;
        let snapshot = logstore.snapshot();
        let stats = query::run(&snapshot, filter, limit, page_records, page)?;
        for problem in &stats.problems {
            logstore.report_problem(problem.clone());
        }
        Ok(stats)
    }

    /// Runs one maintenance pass now (conversion, compaction, retention of every logstore), in the calling
    /// thread; `force` converts every segment holding data regardless of age. For tests and tools.
    pub fn maintain_now(&self, force: bool) {
        maintenance::pass(&self.inner, force);
    }

    /// Stops the maintenance thread, then every writer after it has written what is queued.
    pub fn close(&self) {
        if let Some(handle) = lock(&self.maintenance).take() {
            handle.stop();
        }
        let logstores: Vec<Arc<Logstore>> = self.inner.open_logstores();
        for logstore in logstores {
            logstore.close();
        }
    }

    fn logstore(&self, project: &str, logstore: &str) -> Result<Arc<Logstore>, StoreError> {
        names::validate_project(project)?;
        names::validate_logstore(logstore)?;
        match self
            .inner
            .catalog()
            .logstores
            .get(&(project.to_owned(), logstore.to_owned()))
        {
            Some(Slot::Open(found)) => Ok(found.clone()),
            Some(Slot::OutOfService(reason)) => Err(StoreError::OutOfService {
                logstore: format!("{project}/{logstore}"),
                reason: reason.clone(),
            }),
            None => Err(StoreError::NotFound {
                project: project.to_owned(),
                logstore: logstore.to_owned(),
            }),
        }
    }

    fn logstore_for_ingest(
        &self,
        project: &str,
        logstore: &str,
    ) -> Result<Arc<Logstore>, StoreError> {
        let mut catalog = self.inner.catalog();
        let key = (project.to_owned(), logstore.to_owned());
        match catalog.logstores.get(&key) {
            Some(Slot::Open(found)) => return Ok(found.clone()),
            Some(Slot::OutOfService(reason)) => {
                return Err(StoreError::OutOfService {
                    logstore: format!("{project}/{logstore}"),
                    reason: reason.clone(),
                });
            }
            None if !self.inner.config.auto_create_logstores => {
                return Err(StoreError::NotFound {
                    project: project.to_owned(),
                    logstore: logstore.to_owned(),
                });
            }
            None => {}
        }
        if !catalog.projects.contains_key(project) {
            let meta = ProjectMeta {
                description: "created by ingest".into(),
                created: catalog::now(),
            };
            if !self.inner.root.join(project).is_dir() {
                catalog::create_dir_with(&self.inner.root, project, catalog::PROJECT_FILE, &meta)?;
            }
            catalog.projects.insert(project.to_owned(), meta);
            tracing::info!(project, "project created by ingest");
        }
        let retention = self.inner.config.default_retention_hours;
        self.inner
            .create_logstore(&mut catalog, project, logstore, retention)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    fn catalog(&self) -> MutexGuard<'_, Catalog> {
        lock(&self.catalog)
    }

    /// The open logstores, as of now.
    pub(crate) fn open_logstores(&self) -> Vec<Arc<Logstore>> {
        self.catalog()
            .logstores
            .values()
            .filter_map(|slot| match slot {
                Slot::Open(logstore) => Some(logstore.clone()),
                Slot::OutOfService(_) => None,
            })
            .collect()
    }

    /// The data directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The settings.
    pub(crate) fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The exactly-once state.
    pub(crate) fn dedup(&self) -> &Dedup {
        &self.dedup
    }

    fn wake_maintenance(&self) {
        self.signal.wake();
    }

    /// Creates the directory and settings of a new logstore in an existing project and opens it.
    fn create_logstore(
        &self,
        catalog: &mut Catalog,
        project: &str,
        name: &str,
        retention_hours: u32,
    ) -> Result<Arc<Logstore>, StoreError> {
        let meta = LogstoreMeta {
            retention_hours,
            created: catalog::now(),
        };
        let project_dir = self.root.join(project);
        let dir = catalog::create_dir_with(&project_dir, name, catalog::LOGSTORE_FILE, &meta)?;
        let label = format!("{project}/{name}");
        let mut restored = Restored::new();
        let opened = Logstore::open(
            &dir,
            label.clone(),
            writer_config(&self.config),
            meta,
            self.dedup.clone(),
            &mut restored,
        )?;
        tracing::info!(logstore = %label, retention_hours, "logstore created");
        let opened = Arc::new(opened);
        catalog.logstores.insert(
            (project.to_owned(), name.to_owned()),
            Slot::Open(opened.clone()),
        );
        Ok(opened)
    }
}

/// One frame holding `payload`.
fn framed(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut frame = Vec::with_capacity(payload.len() + frame::HEADER_LEN);
    frame::encode_into(payload, &mut frame)?;
    Ok(frame)
}

/// Checks a batch's names, identity and size.
fn check_identity(
    project: &str,
    logstore: &str,
    exporter_id: &str,
    sequence: u64,
    records: usize,
) -> Result<(), StoreError> {
    names::validate_project(project)?;
    names::validate_logstore(logstore)?;
    if records == 0 {
        return Err(StoreError::InvalidBatch(
            "a batch must hold at least one record".into(),
        ));
    }
    if exporter_id.is_empty() || exporter_id.len() > MAX_EXPORTER_ID_LEN {
        return Err(StoreError::InvalidBatch(format!(
            "exporter_id must be 1-{MAX_EXPORTER_ID_LEN} bytes long, not {}",
            exporter_id.len()
        )));
    }
    if sequence == 0 {
        return Err(StoreError::InvalidBatch(
            "sequence numbers start at 1".into(),
        ));
    }
    Ok(())
}

/// Stops a logstore that is being deleted: no more appends, no more maintenance.
fn retire(logstore: &Logstore) {
    logstore.close();
    logstore.maintained().deleted = true;
}

/// Opens one logstore found at start; a failure keeps it out of service (reported) instead of failing the store.
fn open_logstore(
    dir: &Path,
    label: &str,
    writer: WriterConfig,
    config: &StoreConfig,
    dedup: &Arc<Dedup>,
    restored: &mut Restored,
) -> Slot {
    let meta = match catalog::load::<LogstoreMeta>(&dir.join(catalog::LOGSTORE_FILE)) {
        Ok(Some(meta)) => meta,
        Ok(None) => LogstoreMeta {
            retention_hours: config.default_retention_hours,
            created: 0,
        },
        Err(e) => {
            tracing::error!(logstore = label, error = %e, "logstore kept out of service");
            return Slot::OutOfService(e.to_string());
        }
    };
    match Logstore::open(dir, label.to_owned(), writer, meta, dedup.clone(), restored) {
        Ok(opened) => Slot::Open(Arc::new(opened)),
        Err(e) => {
            tracing::error!(logstore = label, error = %e, "logstore kept out of service");
            Slot::OutOfService(e.to_string())
        }
    }
}

fn info_of(project: &str, name: &str, slot: &Slot) -> LogstoreInfo {
    let mut info = LogstoreInfo {
        project: project.to_owned(),
        name: name.to_owned(),
        ..LogstoreInfo::default()
    };
    match slot {
        Slot::OutOfService(reason) => info.problems.push(format!("out of service: {reason}")),
        Slot::Open(logstore) => {
            info.meta = logstore.meta();
            let snapshot = logstore.snapshot();
            info.wal_segments = snapshot.segments.len() as u64;
            info.wal_bytes = snapshot.segments.iter().map(|s| s.committed).sum();
            info.parquet_files = snapshot.files.len() as u64;
            info.parquet_bytes = snapshot.files.iter().map(|f| f.entry.bytes).sum();
            info.parquet_records = snapshot.files.iter().map(|f| f.entry.records).sum();
            let hours = snapshot.files.iter().map(|f| f.entry.hour);
            info.hours = hours.clone().min().zip(hours.max());
            info.problems = logstore.problems();
        }
    }
    info
}

fn writer_config(config: &StoreConfig) -> WriterConfig {
    WriterConfig {
        segment_bytes: config.segment_bytes,
        group_commit_bytes: config.group_commit_bytes,
    }
}

fn data_dir(path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |error| StoreError::DataDir { path, error }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; a poisoned value is still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every `root/<project>` directory with a valid name; anything else (but hidden entries) is logged and ignored.
fn list_projects(root: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for (project, dir) in subdirectories(root)? {
        match names::validate_project(&project) {
            Ok(()) => found.push((project, dir)),
            Err(e) => {
                tracing::warn!(path = %dir.display(), error = %e, "ignoring a directory that is not a project")
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Every `project_dir/<logstore>` directory with a valid name.
fn list_logstores(project_dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for (logstore, dir) in subdirectories(project_dir)? {
        match names::validate_logstore(&logstore) {
            Ok(()) => found.push((logstore, dir)),
            Err(e) => {
                tracing::warn!(path = %dir.display(), error = %e, "ignoring a directory that is not a logstore")
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Subdirectories of `dir`, hidden ones (`.trash`, `.creating-*`) left out.
fn subdirectories(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(data_dir(dir))? {
        let entry = entry.map_err(data_dir(dir))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) if name.starts_with('.') => {}
            Ok(name) => found.push((name, path)),
            Err(name) => tracing::warn!(?name, "ignoring a directory whose name is not UTF-8"),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowlog_proto::v1::{Action, LogStatus};

    const CONFIG: StoreConfig = StoreConfig {
        segment_bytes: 4096,
        group_commit_bytes: 1 << 20,
        dedup_window: 1024,
        auto_create_logstores: true,
        default_retention_hours: 0,
        maintenance: MaintenanceConfig {
            // Tests run passes themselves.
            interval: std::time::Duration::from_secs(3600),
            convert_after: std::time::Duration::from_secs(3600),
            convert_bytes: u64::MAX,
            compact_after: std::time::Duration::ZERO,
            file_records: 1_000_000,
        },
    };

    fn record(eni: &str, start: i64, packets: u64) -> Record {
        Record {
            version: 1,
            eni_id: eni.into(),
            srcaddr: vec![10, 0, 0, 1],
            dstaddr: vec![10, 0, 0, 2],
            srcport: Some(1234),
            dstport: Some(80),
            protocol: Some(6),
            packets,
            bytes: packets * 100,
            start,
            end: start + 60,
            log_status: LogStatus::Ok as i32,
            action: Action::Accept as i32,
            ..Record::default()
        }
    }

    fn batch(exporter: &str, sequence: u64, records: Vec<Record>) -> IngestBatch {
        IngestBatch {
            exporter_id: exporter.into(),
            sequence,
            project: "proj".into(),
            logstore: "flows".into(),
            records,
        }
    }

    fn ingest(store: &Store, b: &IngestBatch) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(store.submit(b).unwrap().durable()).unwrap()
    }

    fn all(store: &Store) -> Vec<Record> {
        let mut out = Vec::new();
        store
            .query("proj", "flows", &RecordFilter::default(), 0, 7, |page| {
                assert!(page.len() <= 7);
                out.extend(page);
                ControlFlow::Continue(())
            })
            .unwrap();
        out
    }

    #[test]
    fn dedup_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<IngestBatch> = (1..=20)
            .map(|s| batch("exp-1", s, vec![record("eni-1", 60 * s as i64, s)]))
            .collect();
        {
            let store = Store::open(dir.path(), CONFIG).unwrap();
            for b in &batches[..12] {
                assert!(!ingest(&store, b));
            }
            assert!(ingest(&store, &batches[3]));
        }
        let store = Store::open(dir.path(), CONFIG).unwrap();
        for b in &batches {
            assert_eq!(
                ingest(&store, b),
                b.sequence <= 12,
                "sequence {}",
                b.sequence
            );
        }
        let packets: Vec<u64> = all(&store).iter().map(|r| r.packets).collect();
        assert_eq!(packets, (1..=20).collect::<Vec<_>>());
    }

    #[test]
    fn second_open_of_a_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _store = Store::open(dir.path(), CONFIG).unwrap();
        assert!(matches!(
            Store::open(dir.path(), CONFIG),
            Err(StoreError::Locked(_))
        ));
    }

    #[test]
    fn bad_batches_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), CONFIG).unwrap();
        let mut bad_name = batch("exp", 1, vec![record("eni-1", 0, 1)]);
        bad_name.project = "No_Such".into();
        assert!(matches!(
            store.submit(&bad_name),
            Err(StoreError::InvalidName(_))
        ));
        assert!(matches!(
            store.submit(&batch("exp", 1, vec![])),
            Err(StoreError::InvalidBatch(_))
        ));
        assert!(matches!(
            store.submit(&batch("", 1, vec![record("e", 0, 1)])),
            Err(StoreError::InvalidBatch(_))
        ));
        assert!(matches!(
            store.submit(&batch("exp", 0, vec![record("e", 0, 1)])),
            Err(StoreError::InvalidBatch(_))
        ));
        // Nothing of that created a logstore, and a refused batch can still be sent properly.
        assert!(!store.contains("proj", "flows"));
        assert!(!ingest(
            &store,
            &batch("exp", 1, vec![record("eni-1", 0, 1)])
        ));
        assert!(matches!(
            store.query("proj", "other", &RecordFilter::default(), 0, 10, |_| {
                ControlFlow::Continue(())
            }),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn corrupt_middle_frame_does_not_spoil_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), CONFIG).unwrap();
            for s in 1..=3 {
                ingest(&store, &batch("exp", s, vec![record("eni-1", 0, s)]));
            }
        }
        let segment = dir.path().join("proj/flows").join(segment::file_name(0));
        let mut bytes = fs::read(&segment).unwrap();
        let first = frame::scan(&bytes).next().unwrap();
        let frame::Scanned::Frame { payload, .. } = first else {
            panic!("{first:?}")
        };
        // Damage the second frame's payload.
        let second_payload = 2 * frame::HEADER_LEN + payload.len() + 3;
        bytes[second_payload] ^= 0xff;
        fs::write(&segment, &bytes).unwrap();

        let store = Store::open(dir.path(), CONFIG).unwrap();
        let packets: Vec<u64> = all(&store).iter().map(|r| r.packets).collect();
        assert_eq!(packets, vec![1, 3]);
        // The damaged batch was acknowledged once but is gone: its re-send is stored again rather than lost.
        assert!(!ingest(
            &store,
            &batch("exp", 2, vec![record("eni-1", 0, 2)])
        ));
        assert!(ingest(
            &store,
            &batch("exp", 3, vec![record("eni-1", 0, 3)])
        ));
    }

    fn hours_batch(exporter: &str, sequence: u64) -> IngestBatch {
        // Three records in three different hours.
        let records = (0..3)
            .map(|h| {
                record(
                    &format!("eni-{h}"),
                    3600 * h + 60 * sequence as i64,
                    sequence,
                )
            })
            .collect();
        batch(exporter, sequence, records)
    }

    /// (eni, start, packets) of every record, sorted: a multiset to compare.
    fn census(store: &Store) -> Vec<(String, i64, u64)> {
        let mut all: Vec<(String, i64, u64)> = all(store)
            .into_iter()
            .map(|r| (r.eni_id, r.start, r.packets))
            .collect();
        all.sort();
        all
    }

    fn expected(sequences: std::ops::RangeInclusive<u64>) -> Vec<(String, i64, u64)> {
        let mut want: Vec<(String, i64, u64)> = sequences
            .flat_map(|s| (0..3).map(move |h| (format!("eni-{h}"), 3600 * h + 60 * s as i64, s)))
            .collect();
        want.sort();
        want
    }

    fn parquet_files(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for date in fs::read_dir(dir).unwrap().flatten() {
            if !date.file_name().to_string_lossy().starts_with("date=") {
                continue;
            }
            for hour in fs::read_dir(date.path()).unwrap().flatten() {
                for file in fs::read_dir(hour.path()).unwrap().flatten() {
                    found.push(file.path().strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn conversion_moves_records_to_parquet_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let logstore_dir = dir.path().join("proj/flows");
        {
            let store = Store::open(dir.path(), CONFIG).unwrap();
            for s in 1..=30 {
                assert!(!ingest(&store, &hours_batch("exp", s)));
            }
            assert!(
                store.logstores(None).unwrap()[0].wal_segments > 1,
                "4 KiB segments rolled"
            );
            store.maintain_now(true);
            let info = &store.logstores(Some("proj")).unwrap()[0];
            assert_eq!(info.parquet_records, 90);
            assert_eq!(info.parquet_files, 3, "one file per hour");
            assert_eq!(
                (info.wal_segments, info.wal_bytes),
                (1, 0),
                "only the new, empty segment"
            );
            assert_eq!(info.hours, Some((0, 7200)));
            assert_eq!(census(&store), expected(1..=30));
            assert_eq!(
                parquet_files(&logstore_dir),
                vec![
                    "date=1970-01-01/hour=00/part-00000000.parquet",
                    "date=1970-01-01/hour=01/part-00000001.parquet",
                    "date=1970-01-01/hour=02/part-00000002.parquet",
                ]
            );
            // More records, then another conversion: a second file per hour, compacted into one.
            for s in 31..=40 {
                assert!(!ingest(&store, &hours_batch("exp", s)));
            }
            store.maintain_now(true);
            assert_eq!(census(&store), expected(1..=40));
            let info = &store.logstores(None).unwrap()[0];
            assert_eq!(
                (info.parquet_files, info.parquet_records),
                (3, 120),
                "compacted"
            );
        }
        // The segments are gone; the exactly-once state of their batches is not.
        let segments = segment::list(&logstore_dir).unwrap();
        assert_eq!(segments.len(), 1);
        let store = Store::open(dir.path(), CONFIG).unwrap();
        assert_eq!(census(&store), expected(1..=40));
        assert!(
            ingest(&store, &hours_batch("exp", 7)),
            "converted batch re-sent: duplicate"
        );
        assert!(!ingest(&store, &hours_batch("exp", 41)));
        assert_eq!(census(&store), expected(1..=41));
    }

    #[test]
    fn a_crash_at_any_step_of_a_conversion_loses_and_doubles_nothing() {
        use maintenance::{CRASH_AT, CrashPoint};
        for point in [CrashPoint::Files, CrashPoint::Dedup, CrashPoint::Manifest] {
            let dir = tempfile::tempdir().unwrap();
            {
                let store = Store::open(dir.path(), CONFIG).unwrap();
                for s in 1..=20 {
                    ingest(&store, &hours_batch("exp", s));
                }
                CRASH_AT.with(|c| c.set(Some(point)));
                store.maintain_now(true);
                CRASH_AT.with(|c| c.set(None));
                // Dropped here as if killed: nothing else runs on its files.
            }
            let store = Store::open(dir.path(), CONFIG).unwrap();
            assert_eq!(
                census(&store),
                expected(1..=20),
                "{point:?}: every record once"
            );
            assert!(
                ingest(&store, &hours_batch("exp", 20)),
                "{point:?}: still a duplicate"
            );
            assert!(
                ingest(&store, &hours_batch("exp", 1)),
                "{point:?}: still a duplicate"
            );
            store.maintain_now(true);
            assert_eq!(
                census(&store),
                expected(1..=20),
                "{point:?}: after a full conversion"
            );
            let info = &store.logstores(None).unwrap()[0];
            assert_eq!(info.parquet_records, 60, "{point:?}");
            assert!(info.problems.is_empty(), "{point:?}: {:?}", info.problems);
            let stray: Vec<String> = parquet_files(&dir.path().join("proj/flows"))
                .into_iter()
                .filter(|f| !f.ends_with(".parquet") || f.contains(".tmp"))
                .collect();
            assert!(stray.is_empty(), "{point:?}: {stray:?}");
        }
    }

    #[test]
    fn retention_deletes_whole_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), CONFIG).unwrap();
        store.create_project("proj", "").unwrap();
        store.create_logstore("proj", "flows", 0).unwrap();
        let now = catalog::now();
        let hour = manifest::hour_of(now);
        // Records from 3 hours ago, 2 hours ago, and now.
        let records = vec![
            record("eni-old", hour - 3 * 3600, 1),
            record("eni-older", hour - 2 * 3600 + 5, 2),
            record("eni-new", now, 3),
        ];
        assert!(!ingest(&store, &batch("exp", 1, records)));
        store.maintain_now(true);
        assert_eq!(store.logstores(None).unwrap()[0].parquet_files, 3);
        // Keep 1 hour: the partitions ending more than an hour ago go, whole.
        store.update_logstore("proj", "flows", 1).unwrap();
        store.maintain_now(false);
        let left: Vec<String> = all(&store).into_iter().map(|r| r.eni_id).collect();
        assert_eq!(left, vec!["eni-new"]);
        let info = &store.logstores(None).unwrap()[0];
        assert_eq!((info.parquet_files, info.meta.retention_hours), (1, 1));
        assert_eq!(parquet_files(&dir.path().join("proj/flows")).len(), 1);
        // The setting survives a restart.
        drop(store);
        let store = Store::open(dir.path(), CONFIG).unwrap();
        assert_eq!(store.logstores(None).unwrap()[0].meta.retention_hours, 1);
    }

    #[test]
    fn projects_and_logstores_are_created_listed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), CONFIG).unwrap();
        store.create_project("team-a", "flows of team a").unwrap();
        assert!(matches!(
            store.create_project("team-a", ""),
            Err(StoreError::AlreadyExists(_))
        ));
        assert!(matches!(
            store.create_project("Bad", ""),
            Err(StoreError::InvalidName(_))
        ));
        assert!(matches!(
            store.create_logstore("nobody", "flows", 0),
            Err(StoreError::ProjectNotFound(_))
        ));
        store.create_logstore("team-a", "flows", 168).unwrap();
        store.create_logstore("team-a", "audit_1", 0).unwrap();
        assert!(matches!(
            store.create_logstore("team-a", "flows", 1),
            Err(StoreError::AlreadyExists(_))
        ));
        let names: Vec<(String, u32)> = store
            .logstores(Some("team-a"))
            .unwrap()
            .into_iter()
            .map(|l| (l.name, l.meta.retention_hours))
            .collect();
        assert_eq!(names, vec![("audit_1".into(), 0), ("flows".into(), 168)]);
        let mut b = batch("exp", 1, vec![record("eni-1", 0, 1)]);
        b.project = "team-a".into();
        assert!(!ingest(&store, &b));
        drop(store);

        // Everything survives a restart; deletes are durable.
        let store = Store::open(dir.path(), CONFIG).unwrap();
        assert_eq!(store.projects()[0].meta.description, "flows of team a");
        assert_eq!(store.logstores(None).unwrap().len(), 2);
        store.delete_logstore("team-a", "audit_1").unwrap();
        assert!(matches!(
            store.delete_logstore("team-a", "audit_1"),
            Err(StoreError::NotFound { .. })
        ));
        store.delete_project("team-a").unwrap();
        assert!(store.projects().is_empty());
        assert!(!dir.path().join("team-a").exists());
        assert!(!dir.path().join(catalog::TRASH_DIR).join("team-a").exists());
        drop(store);
        let store = Store::open(dir.path(), CONFIG).unwrap();
        assert!(store.projects().is_empty() && store.logstores(None).unwrap().is_empty());
    }

    #[test]
    fn without_auto_create_unknown_logstores_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            auto_create_logstores: false,
            ..CONFIG
        };
        let store = Store::open(dir.path(), config).unwrap();
        let b = batch("exp", 1, vec![record("eni-1", 0, 1)]);
        assert!(matches!(store.submit(&b), Err(StoreError::NotFound { .. })));
        store.create_project("proj", "").unwrap();
        store.create_logstore("proj", "flows", 0).unwrap();
        assert!(
            !ingest(&store, &b),
            "the refused batch can be sent again once it exists"
        );
    }

    #[test]
    fn damaged_parquet_files_and_manifests_spoil_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), CONFIG).unwrap();
            for s in 1..=10 {
                ingest(&store, &hours_batch("exp", s));
                let mut other = hours_batch("exp", 100 + s);
                other.logstore = "other".into();
                ingest(&store, &other);
            }
            store.maintain_now(true);
        }
        // Truncate the hour-1 file of flows; garble the manifest of other.
        let flows = dir.path().join("proj/flows");
        let victim = flows.join("date=1970-01-01/hour=01/part-00000001.parquet");
        let bytes = fs::read(&victim).unwrap();
        fs::write(&victim, &bytes[..bytes.len() / 3]).unwrap();
        let manifest_path = dir.path().join("proj/other").join(manifest::FILE_NAME);
        let mut garbled = fs::read(&manifest_path).unwrap();
        garbled[20] ^= 0x40;
        fs::write(&manifest_path, &garbled).unwrap();

        let store = Store::open(dir.path(), CONFIG).unwrap();
        let want: Vec<(String, i64, u64)> = expected(1..=10)
            .into_iter()
            .filter(|(eni, _, _)| eni != "eni-1")
            .collect();
        assert_eq!(census(&store), want, "the other hours are intact");
        let infos = store.logstores(None).unwrap();
        let flows_info = infos.iter().find(|l| l.name == "flows").unwrap();
        assert_eq!(flows_info.problems.len(), 1, "{:?}", flows_info.problems);
        assert!(
            flows_info.problems[0].contains("part-00000001"),
            "{:?}",
            flows_info.problems
        );
        assert!(
            flows
                .join(logstore::QUARANTINE_DIR)
                .read_dir()
                .unwrap()
                .count()
                == 1
        );
        let other = infos.iter().find(|l| l.name == "other").unwrap();
        assert!(
            other.problems[0].contains("out of service") && other.problems[0].contains("MANIFEST")
        );
        assert!(matches!(
            store.query("proj", "other", &RecordFilter::default(), 0, 10, |_| {
                ControlFlow::Continue(())
            }),
            Err(StoreError::OutOfService { .. })
        ));
        // The damaged logstore refuses ingest (retryable); the healthy one takes it.
        let mut to_other = hours_batch("exp", 500);
        to_other.logstore = "other".into();
        assert!(matches!(
            store.submit(&to_other),
            Err(StoreError::OutOfService { .. })
        ));
        assert!(!ingest(&store, &hours_batch("exp", 11)));
        // A damaged exactly-once file is reported, not fatal.
        drop(store);
        fs::write(dir.path().join(dedup::FILE_NAME), b"garbage").unwrap();
        let store = Store::open(dir.path(), CONFIG).unwrap();
        assert_eq!(census(&store).len(), want.len() + 3);
    }
}
