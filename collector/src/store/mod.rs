//! Durable storage of flow-log records per Project / Logstore, with exactly-once ingest.
//!
//! This module is the storage boundary: the gRPC service talks only to [`Store`] ([`Store::submit`],
//! [`Store::query`]), so the on-disk format can change (a later issue adds Parquet) without touching the service.
//!
//! # Layout
//! `DIR/LOCK` (held while a collector uses `DIR`), and per logstore `DIR/<project>/<logstore>/<id>.seg`:
//! append-only segment files of frames ([`frame`]), each holding one prost-encoded `IngestBatch`.
//!
//! # Guarantees
//! - A batch is acknowledged only once its frame is fsync'd (group commit; new files' and directories' entries are
//!   fsync'd too).
//! - A batch whose `(exporter_id, sequence)` is already stored is acknowledged as a duplicate and not stored again;
//!   that state is rebuilt from the files at [`Store::open`], so it survives restarts and crashes.
//! - At open, a torn tail is truncated away and corrupt frames are reported (file and offset) and skipped.
//! - Queries see only acknowledged-durable bytes, in storage order.
//!
//! # Limitations
//! Opening reads every segment once (to rebuild the exactly-once state), and a query reads the logstore's segments
//! from the start: both are linear in the data stored. One writer thread per logstore.

pub mod dedup;
pub mod frame;
pub mod logstore;
pub mod query;
pub mod segment;

use std::collections::HashMap;
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
use dedup::{Admission, BatchId, Dedup, FirstCopyFailed};
use frame::FrameError;
use logstore::{Logstore, LogstoreError, Restored, WriteFailed, WriterConfig};
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
}

/// Errors of the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The project or logstore name is not valid.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The batch is malformed (no records, no exporter id, sequence 0, ...).
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
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
    /// A logstore could not be opened or is closed.
    #[error(transparent)]
    Logstore(#[from] LogstoreError),
    /// Writing the batch failed; it was not stored and may be sent again.
    #[error(transparent)]
    WriteFailed(#[from] WriteFailed),
    /// An earlier copy of the batch, in flight when this one arrived, failed; this one may be sent again.
    #[error(transparent)]
    FirstCopyFailed(#[from] FirstCopyFailed),
    /// The writer went away without answering (the collector is shutting down).
    #[error("the collector is shutting down")]
    ShuttingDown,
}

/// The store: every logstore under one data directory, and the exactly-once state.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    config: StoreConfig,
    dedup: Arc<Dedup>,
    logstores: Mutex<HashMap<(String, String), Arc<Logstore>>>,
    _lock: File,
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
    /// Opens (creating it if needed) the data directory `root`: takes its lock, recovers every logstore and
    /// rebuilds the exactly-once state.
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

        let dedup = Arc::new(Dedup::new(config.dedup_window));
        let writer = writer_config(&config);
        let mut restored = Restored::new();
        let mut logstores = HashMap::new();
        for (project, logstore, dir) in list_logstores(root)? {
            let label = format!("{project}/{logstore}");
            let opened = Logstore::open(&dir, label, writer, dedup.clone(), &mut restored)?;
            logstores.insert((project, logstore), Arc::new(opened));
        }
        let mut batches = 0;
        for (exporter_id, sequences) in restored {
            batches += sequences.len();
            let twice = dedup.restore(exporter_id.clone(), sequences);
            if twice > 0 {
                tracing::warn!(%exporter_id, batches = twice, "batches found stored more than once");
            }
        }
        tracing::info!(
            root = %root.display(),
            logstores = logstores.len(),
            batches,
            exporters = dedup.exporters(),
            "store opened"
        );
        Ok(Store {
            root: root.to_owned(),
            config,
            dedup,
            logstores: Mutex::new(logstores),
            _lock: lock_file,
        })
    }

    /// Checks a batch, and either recognises it as already stored or queues it for writing (creating its logstore
    /// on first use). Batches submitted one after another to the same logstore are stored in that order.
    pub fn submit(&self, batch: &IngestBatch) -> Result<Pending, StoreError> {
        names::validate_project(&batch.project)?;
        names::validate_logstore(&batch.logstore)?;
        if batch.records.is_empty() {
            return Err(StoreError::InvalidBatch(
                "a batch must hold at least one record".into(),
            ));
        }
        if batch.exporter_id.is_empty() || batch.exporter_id.len() > MAX_EXPORTER_ID_LEN {
            return Err(StoreError::InvalidBatch(format!(
                "exporter_id must be 1-{MAX_EXPORTER_ID_LEN} bytes long, not {}",
                batch.exporter_id.len()
            )));
        }
        if batch.sequence == 0 {
            return Err(StoreError::InvalidBatch(
                "sequence numbers start at 1".into(),
            ));
        }
        for (index, record) in batch.records.iter().enumerate() {
            if let Err(e) = flowlog_proto::convert::from_proto(record) {
                return Err(StoreError::InvalidBatch(format!("record {index}: {e}")));
            }
        }
        let id = BatchId {
            exporter_id: batch.exporter_id.as_str().into(),
            sequence: batch.sequence,
        };
        match self.dedup.admit(&id) {
            Admission::Stored => return Ok(Pending::Duplicate),
            Admission::InFlight(outcome) => return Ok(Pending::AwaitingFirstCopy(outcome)),
            Admission::New => {}
        }
        let queued = self
            .logstore_or_create(&batch.project, &batch.logstore)
            .and_then(|logstore| {
                let mut frame = Vec::new();
                frame::encode_into(&batch.encode_to_vec(), &mut frame)?;
                Ok(logstore.append(id.clone(), frame)?)
            });
        match queued {
            Ok(outcome) => Ok(Pending::Written(outcome)),
            Err(e) => {
                self.dedup.abort(&id, &e.to_string());
                Err(e)
            }
        }
    }

    /// Whether the logstore exists.
    pub fn contains(&self, project: &str, logstore: &str) -> bool {
        self.lock()
            .contains_key(&(project.to_owned(), logstore.to_owned()))
    }

    /// Reads the records of a logstore matching `filter`, in storage order, handing them to `page` in pages of at
    /// most `page_records` (at least 1); stops after `limit` records (0 = no limit) or when `page` breaks.
    /// Blocking: run it off the async runtime.
    pub fn query(
        &self,
        project: &str,
        logstore: &str,
        filter: &RecordFilter,
        limit: u64,
        page_records: usize,
        page: impl FnMut(Vec<Record>) -> ControlFlow<()>,
    ) -> Result<QueryStats, StoreError> {
        names::validate_project(project)?;
        names::validate_logstore(logstore)?;
        let found = self
            .lock()
            .get(&(project.to_owned(), logstore.to_owned()))
            .cloned();
        let logstore = found.ok_or_else(|| StoreError::NotFound {
            project: project.to_owned(),
            logstore: logstore.to_owned(),
        })?;
        Ok(query::run(
            &logstore.segments(),
            filter,
            limit,
            page_records,
            page,
        )?)
    }

    /// Stops every writer after it has written what is queued.
    pub fn close(&self) {
        let logstores: Vec<Arc<Logstore>> = self.lock().values().cloned().collect();
        for logstore in logstores {
            logstore.close();
        }
    }

    fn logstore_or_create(
        &self,
        project: &str,
        logstore: &str,
    ) -> Result<Arc<Logstore>, StoreError> {
        let key = (project.to_owned(), logstore.to_owned());
        let mut logstores = self.lock();
        if let Some(found) = logstores.get(&key) {
            return Ok(found.clone());
        }
        let dir = logstore::create_dir(&self.root, project, logstore)?;
        let label = format!("{project}/{logstore}");
        let mut restored = Restored::new();
        let opened = Logstore::open(
            &dir,
            label.clone(),
            writer_config(&self.config),
            self.dedup.clone(),
            &mut restored,
        )?;
        if !restored.is_empty() {
            // Only possible if the directory appeared behind our back, despite the LOCK: keep its batches unique.
            for (exporter_id, sequences) in restored {
                self.dedup.restore(exporter_id, sequences);
            }
        }
        tracing::info!(logstore = %label, "logstore created");
        let opened = Arc::new(opened);
        logstores.insert(key, opened.clone());
        Ok(opened)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Arc<Logstore>>> {
        // No code panics while holding this lock; a poisoned map is still a consistent map.
        self.logstores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
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

/// Every `root/<project>/<logstore>` directory with valid names; anything else is logged and ignored.
fn list_logstores(root: &Path) -> Result<Vec<(String, String, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for (project, project_dir) in subdirectories(root)? {
        if let Err(e) = names::validate_project(&project) {
            tracing::warn!(path = %project_dir.display(), error = %e, "ignoring a directory that is not a project");
            continue;
        }
        for (logstore, dir) in subdirectories(&project_dir)? {
            match names::validate_logstore(&logstore) {
                Ok(()) => found.push((project.clone(), logstore, dir)),
                Err(e) => {
                    tracing::warn!(path = %dir.display(), error = %e, "ignoring a directory that is not a logstore")
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

fn subdirectories(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(data_dir(dir))? {
        let entry = entry.map_err(data_dir(dir))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        match entry.file_name().into_string() {
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
}
