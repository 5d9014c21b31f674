//! One logstore on disk: its write-ahead log (segment files) with the writer thread that appends batches to it
//! with group commit, its Parquet files, and the state readers take consistent snapshots of.
//!
//! # Design
//! Each logstore has one writer thread fed by a channel. The writer takes every append request waiting (up to
//! `group_commit_bytes`, and no further than the room left in the segment), writes their frames to the newest
//! segment, fsyncs once, then marks the batches stored in [`Dedup`] and answers each request. Requests that arrive
//! during an fsync form the next group. A segment that has reached `segment_bytes` is closed (it is already
//! fsync'd) before the next group, and a new one is created and its directory fsync'd. The maintenance task
//! ([`super::maintenance`]) may ask the writer to close the active segment early ([`Logstore::roll`]) so that
//! its records can be converted.
//!
//! The segments not yet converted and the live Parquet files form one [`State`] under one lock: a conversion
//! removes segments and adds files in one step, so a [`Snapshot`] holds every record exactly once. Files that a
//! change made obsolete are deleted when the last snapshot using them is dropped ([`FileHandle`]).
//!
//! # Guarantees
//! - A request is answered `Ok` only after its frame is fsync'd; readers see only fsync'd bytes (the committed
//!   length of each segment).
//! - A failed write is truncated away before its requests are answered with an error; after a failed fsync or
//!   truncation the logstore refuses every further write (the state of the file is unknown) until a restart, whose
//!   recovery scan decides what is there.
//! - At open: segments the manifest says are converted are deleted, Parquet files it does not name (an
//!   interrupted conversion) are deleted, and every file it names is checked (size, footer); a damaged one is
//!   moved to `quarantine/`, reported, and dropped from the manifest so that it spoils nothing else.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use prost::Message;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::catalog::LogstoreMeta;
use super::dedup::{BatchId, Dedup};
use super::manifest::{self, FileEntry, Manifest, ManifestError};
use super::parquet;
use super::segment::{self, SegmentError};

/// Directory (within a logstore) where damaged Parquet files are moved.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Settings of a logstore's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// A segment at or above this size (bytes) is closed before the next group is written.
    pub segment_bytes: u64,
    /// Most bytes of frames written per fsync (a single larger frame still forms a group of its own).
    pub group_commit_bytes: usize,
}

/// Errors of a logstore.
#[derive(Debug, Error)]
pub enum LogstoreError {
    /// A segment could not be listed, recovered, created or read.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The manifest could not be read or written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The writer thread could not be started.
    #[error("cannot start the writer thread of {dir}: {error}")]
    Spawn {
        /// The logstore directory.
        dir: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The logstore is closed (the collector is shutting down, or the logstore was deleted).
    #[error("logstore {0} is closed")]
    Closed(String),
}

/// Why an append did not become durable.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("write to logstore {logstore} failed: {reason}")]
pub struct WriteFailed {
    /// `project/logstore`.
    pub logstore: String,
    /// What went wrong.
    pub reason: String,
}

/// A file that is deleted once it is obsolete and nobody reads it any more.
#[derive(Debug)]
pub struct FileHandle {
    path: PathBuf,
    obsolete: AtomicBool,
}

impl FileHandle {
    fn new(path: PathBuf) -> Arc<FileHandle> {
        Arc::new(FileHandle {
            path,
            obsolete: AtomicBool::new(false),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Marks the file for deletion when the last reference goes.
    pub fn make_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }
}

impl Drop for FileHandle {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire)
            && let Err(e) = fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot delete an obsolete file");
        }
    }
}

/// A segment as readers see it.
#[derive(Debug, Clone)]
pub struct SegmentView {
    /// The segment's id.
    pub id: u64,
    /// The segment file.
    pub path: PathBuf,
    /// Bytes known durable: readers must not read past them.
    pub committed: u64,
    /// When its first byte was committed (or when it was found at open); `None` while empty.
    pub first_write: Option<Instant>,
    handle: Arc<FileHandle>,
}

impl SegmentView {
    /// A view of segment `id` at `path` with `committed` durable bytes, as readers take it.
    pub fn new(id: u64, path: PathBuf, committed: u64) -> SegmentView {
        SegmentView {
            id,
            handle: FileHandle::new(path.clone()),
            path,
            committed,
            first_write: None,
        }
    }
}

impl PartialEq for SegmentView {
    fn eq(&self, other: &Self) -> bool {
        (self.id, &self.path, self.committed) == (other.id, &other.path, other.committed)
    }
}

/// A live Parquet file.
#[derive(Debug)]
pub struct DataFile {
    /// What the manifest says of it.
    pub entry: FileEntry,
    handle: Arc<FileHandle>,
}

impl DataFile {
    /// The file's absolute path.
    pub fn path(&self) -> &Path {
        self.handle.path()
    }

    /// Marks the file for deletion once no snapshot holds it.
    pub fn make_obsolete(&self) {
        self.handle.make_obsolete();
    }
}

/// What a logstore holds: live Parquet files and the segments not yet converted (oldest first; the last one is
/// the one being appended to).
#[derive(Debug, Default)]
pub struct State {
    /// Segments not yet converted.
    pub segments: Vec<SegmentView>,
    /// Live Parquet files, in manifest order.
    pub files: Vec<Arc<DataFile>>,
    /// Problems found in the logstore's files, for operators (oldest first, at most 100 kept).
    pub problems: Vec<String>,
}

/// A consistent view for one reader: every stored record is in exactly one of its files or segments. Files it
/// holds are not deleted before it is dropped.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Segments and their committed lengths, oldest first.
    pub segments: Vec<SegmentView>,
    /// Parquet files.
    pub files: Vec<Arc<DataFile>>,
}

/// The manifest, changed only by the maintenance task (and deletion), one step at a time.
#[derive(Debug)]
pub struct Maintained {
    /// The manifest in force.
    pub manifest: Manifest,
    /// Set once the logstore is deleted: maintenance must not touch its (renamed) directory any more.
    pub deleted: bool,
}

/// One open logstore.
#[derive(Debug)]
pub struct Logstore {
    label: String,
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    maintained: Mutex<Maintained>,
    meta: Mutex<LogstoreMeta>,
    sender: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// Batches found on disk at open: their identities, for rebuilding [`Dedup`].
pub type Restored = HashMap<Arc<str>, Vec<u64>>;

impl Logstore {
    /// Opens the logstore in `dir` (which must exist): applies its manifest (removing what an interrupted
    /// conversion left), checks its Parquet files, recovers its segments, adds the batches found to `restored`,
    /// and starts its writer.
    pub fn open(
        dir: &Path,
        label: String,
        config: WriterConfig,
        meta: LogstoreMeta,
        dedup: Arc<Dedup>,
        restored: &mut Restored,
    ) -> Result<Logstore, LogstoreError> {
        let mut manifest = Manifest::load(dir)?;
        let mut problems = Vec::new();
        let files = open_files(dir, &label, &mut manifest, &mut problems)?;

        let mut views = Vec::new();
        let mut listed = segment::list(dir)?;
        if let Some(through) = manifest.converted_through {
            listed.retain(|(id, path)| {
                if *id > through {
                    return true;
                }
                tracing::info!(logstore = %label, file = %path.display(), "removing a segment already converted");
                if let Err(e) = fs::remove_file(path) {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a converted segment");
                }
                false
            });
        }
        let newest_id = listed.last().map(|(id, _)| *id);
        let opened_at = Instant::now();
        for (id, path) in &listed {
            let recovered = segment::recover(path, Some(*id) == newest_id, |payload, offset| {
                match StoredBatchId::decode(payload) {
                    Ok(stored) if !stored.exporter_id.is_empty() => {
                        restored
                            .entry(stored.exporter_id.into())
                            .or_default()
                            .push(stored.sequence);
                    }
                    Ok(_) | Err(_) => tracing::warn!(
                        file = %path.display(),
                        offset,
                        "frame does not hold a batch with an exporter id; skipped"
                    ),
                }
            })?;
            if recovered.corrupt > 0 {
                push_problem(
                    &mut problems,
                    format!(
                        "{}: {} corrupt stretch(es) skipped",
                        path.display(),
                        recovered.corrupt
                    ),
                );
            }
            tracing::debug!(file = %path.display(), ?recovered, "segment recovered");
            views.push(SegmentView {
                id: *id,
                path: path.clone(),
                committed: recovered.len,
                first_write: (recovered.len > 0).then_some(opened_at),
                handle: FileHandle::new(path.clone()),
            });
        }
        let (active_id, active_len) = match views.last() {
            Some(view) => (view.id, view.committed),
            None => {
                // Never reuse an id the manifest counts as converted: such a segment would be deleted at open.
                let id = manifest.converted_through.map_or(0, |t| t + 1);
                let path = dir.join(segment::file_name(id));
                create_segment(dir, &path)?;
                views.push(SegmentView {
                    id,
                    path: path.clone(),
                    committed: 0,
                    first_write: None,
                    handle: FileHandle::new(path),
                });
                (id, 0)
            }
        };
        let active_path = dir.join(segment::file_name(active_id));
        let file = open_for_append(&active_path)?;
        let state = Arc::new(Mutex::new(State {
            segments: views,
            files,
            problems,
        }));
        let (sender, receiver) = mpsc::unbounded_channel();
        let writer = Writer {
            dir: dir.to_owned(),
            label: label.clone(),
            config,
            dedup,
            state: state.clone(),
            file,
            active_id,
            active_len,
            broken: None,
        };
        let handle = std::thread::Builder::new()
            .name(format!("write {label}"))
            .spawn(move || writer.run(receiver))
            .map_err(|error| LogstoreError::Spawn {
                dir: dir.to_owned(),
                error,
            })?;
        Ok(Logstore {
            label,
            dir: dir.to_owned(),
            state,
            maintained: Mutex::new(Maintained {
                manifest,
                deleted: false,
            }),
            meta: Mutex::new(meta),
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// `project/logstore`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The logstore's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues a framed batch for writing. The receiver yields the outcome once the batch is durable (and marked
    /// stored in [`Dedup`]) or has failed (and has been aborted there).
    pub fn append(
        &self,
        id: BatchId,
        frame: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<(), WriteFailed>>, LogstoreError> {
        let (reply, outcome) = oneshot::channel();
        self.send(Request::Append(Append { id, frame, reply }))?;
        Ok(outcome)
    }

    /// Asks the writer to close the active segment if it holds any data, so that it can be converted. The
    /// receiver yields once that is done (or was not needed).
    pub fn roll(&self) -> Result<oneshot::Receiver<()>, LogstoreError> {
        let (reply, done) = oneshot::channel();
        self.send(Request::Roll(reply))?;
        Ok(done)
    }

    /// A consistent view of the files and segments, as of now.
    pub fn snapshot(&self) -> Snapshot {
        let state = lock(&self.state);
        Snapshot {
            segments: state.segments.clone(),
            files: state.files.clone(),
        }
    }

    /// The segments and their committed lengths, oldest first, as of now.
    pub fn segments(&self) -> Vec<SegmentView> {
        lock(&self.state).segments.clone()
    }

    /// Problems found in the logstore's files.
    pub fn problems(&self) -> Vec<String> {
        lock(&self.state).problems.clone()
    }

    /// Records a problem for operators (and logs it).
    pub fn report_problem(&self, problem: String) {
        tracing::error!(logstore = %self.label, %problem, "storage problem");
        push_problem(&mut lock(&self.state).problems, problem);
    }

    /// The manifest; holding the guard keeps maintenance (and deletion) of this logstore out. Held for whole
    /// maintenance steps: do not take it for reading figures.
    pub fn maintained(&self) -> MutexGuard<'_, Maintained> {
        lock(&self.maintained)
    }

    /// The logstore's settings.
    pub fn meta(&self) -> LogstoreMeta {
        *lock(&self.meta)
    }

    /// Changes the settings: writes `logstore.json` (atomically), then applies them.
    pub fn set_meta(&self, meta: LogstoreMeta) -> Result<(), super::catalog::CatalogError> {
        let mut current = lock(&self.meta);
        super::catalog::store(&self.dir, super::catalog::LOGSTORE_FILE, &meta)?;
        *current = meta;
        Ok(())
    }

    /// Applies a committed change of the Parquet side: drops the segments up to `converted_through` and the
    /// files in `removed` (marking them obsolete: deleted once unread), adds `added`. One step for readers.
    pub fn apply(&self, converted_through: Option<u64>, removed: &[String], added: Vec<FileEntry>) {
        let added: Vec<Arc<DataFile>> = added
            .into_iter()
            .map(|entry| {
                let handle = FileHandle::new(self.dir.join(&entry.path));
                Arc::new(DataFile { entry, handle })
            })
            .collect();
        let mut dropped_segments = Vec::new();
        let mut dropped_files = Vec::new();
        {
            let mut state = lock(&self.state);
            if let Some(through) = converted_through {
                let (gone, kept): (Vec<SegmentView>, Vec<SegmentView>) =
                    std::mem::take(&mut state.segments)
                        .into_iter()
                        .partition(|s| s.id <= through);
                state.segments = kept;
                dropped_segments = gone;
            }
            if !removed.is_empty() {
                let (gone, kept): (Vec<Arc<DataFile>>, Vec<Arc<DataFile>>) =
                    std::mem::take(&mut state.files)
                        .into_iter()
                        .partition(|f| removed.contains(&f.entry.path));
                state.files = kept;
                dropped_files = gone;
            }
            state.files.extend(added);
        }
        // Outside the lock: the last reference may delete the file now.
        for segment in dropped_segments {
            segment.handle.make_obsolete();
        }
        for file in dropped_files {
            file.make_obsolete();
        }
    }

    /// Stops accepting appends, lets the writer finish what is queued, and waits for it.
    pub fn close(&self) {
        drop(lock(&self.sender).take());
        if let Some(handle) = lock(&self.writer).take()
            && handle.join().is_err()
        {
            tracing::error!(logstore = %self.label, "writer thread panicked");
        }
    }

    fn send(&self, request: Request) -> Result<(), LogstoreError> {
        let sender = lock(&self.sender);
        sender
            .as_ref()
            .ok_or_else(|| LogstoreError::Closed(self.label.clone()))?
            .send(request)
            .map_err(|_| LogstoreError::Closed(self.label.clone()))
    }
}

impl Drop for Logstore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Just the identity fields of a stored `IngestBatch` (same field numbers): decoding it skips the records.
#[derive(Clone, PartialEq, Message)]
struct StoredBatchId {
    #[prost(string, tag = "1")]
    exporter_id: String,
    #[prost(uint64, tag = "2")]
    sequence: u64,
}

/// One request to the writer.
#[derive(Debug)]
enum Request {
    Append(Append),
    Roll(oneshot::Sender<()>),
}

/// A batch to append.
#[derive(Debug)]
struct Append {
    id: BatchId,
    frame: Vec<u8>,
    reply: oneshot::Sender<Result<(), WriteFailed>>,
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    label: String,
    config: WriterConfig,
    dedup: Arc<Dedup>,
    state: Arc<Mutex<State>>,
    file: File,
    active_id: u64,
    active_len: u64,
    /// Set after a failure that leaves the file in an unknown state; every later write is refused.
    broken: Option<String>,
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::UnboundedReceiver<Request>) {
        let mut group = Vec::new();
        let mut carried = None;
        while let Some(request) = carried.take().or_else(|| receiver.blocking_recv()) {
            let first = match request {
                Request::Append(append) => append,
                Request::Roll(reply) => {
                    if self.active_len > 0
                        && self.broken.is_none()
                        && let Err(e) = self.roll()
                    {
                        tracing::warn!(logstore = %self.label, error = %e, "cannot roll the segment");
                    }
                    // The maintenance task may have given up waiting.
                    let _ = reply.send(());
                    continue;
                }
            };
            // A group ends at the segment boundary (a segment at its limit is rolled before the group), so a segment
            // outgrows its limit only by a single frame larger than the room left.
            let room = match self.config.segment_bytes.checked_sub(self.active_len) {
                Some(room) if room > 0 => room,
                _ => self.config.segment_bytes,
            };
            let limit = self
                .config
                .group_commit_bytes
                .min(usize::try_from(room).unwrap_or(usize::MAX));
            let mut bytes = first.frame.len();
            group.push(first);
            while bytes < limit {
                match receiver.try_recv() {
                    Ok(Request::Append(next)) if bytes + next.frame.len() > limit => {
                        carried = Some(Request::Append(next));
                        break;
                    }
                    Ok(Request::Append(next)) => {
                        bytes += next.frame.len();
                        group.push(next);
                    }
                    Ok(roll @ Request::Roll(_)) => {
                        carried = Some(roll);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let outcome = self.write_group(&group);
            for append in group.drain(..) {
                match &outcome {
                    Ok(()) => self.dedup.commit(&append.id),
                    Err(reason) => self.dedup.abort(&append.id, reason),
                }
                let result = outcome.clone().map_err(|reason| WriteFailed {
                    logstore: self.label.clone(),
                    reason,
                });
                // The requester may have gone away (its stream closed); the batch's fate is recorded in Dedup.
                let _ = append.reply.send(result);
            }
        }
        tracing::debug!(logstore = %self.label, "writer stopped");
    }

    /// Writes and fsyncs one group; on error returns the reason.
    fn write_group(&mut self, group: &[Append]) -> Result<(), String> {
        if let Some(reason) = &self.broken {
            return Err(format!(
                "logstore is out of service after an earlier failure: {reason}"
            ));
        }
        if self.active_len >= self.config.segment_bytes {
            self.roll().map_err(|e| e.to_string())?;
        }
        let start = self.active_len;
        let mut written = 0u64;
        let mut result = Ok(());
        for append in group {
            if let Err(e) = self.file.write_all(&append.frame) {
                result = Err(format!("write: {e}"));
                break;
            }
            written += append.frame.len() as u64;
        }
        if result.is_ok()
            && let Err(e) = self.file.sync_data()
        {
            // After a failed fsync the page cache may or may not hold the data: do not trust this file again.
            let reason = format!("fsync: {e}");
            self.broken = Some(reason.clone());
            result = Err(reason);
        }
        match result {
            Ok(()) => {
                self.active_len = start + written;
                let mut state = lock(&self.state);
                if let Some(view) = state.segments.last_mut()
                    && view.id == self.active_id
                {
                    view.committed = self.active_len;
                    view.first_write.get_or_insert_with(Instant::now);
                }
                Ok(())
            }
            Err(reason) => {
                tracing::error!(logstore = %self.label, %reason, "write failed; truncating the group away");
                if let Err(e) = self.file.set_len(start).and_then(|()| self.file.sync_all()) {
                    self.broken = Some(format!("truncate after a failed write: {e}"));
                    tracing::error!(logstore = %self.label, error = %e, "cannot truncate; logstore out of service");
                }
                Err(reason)
            }
        }
    }

    /// Starts the next segment.
    fn roll(&mut self) -> Result<(), SegmentError> {
        let id = self.active_id + 1;
        let path = self.dir.join(segment::file_name(id));
        create_segment(&self.dir, &path)?;
        self.file = open_for_append(&path)?;
        self.active_id = id;
        self.active_len = 0;
        lock(&self.state).segments.push(SegmentView {
            id,
            path: path.clone(),
            committed: 0,
            first_write: None,
            handle: FileHandle::new(path),
        });
        tracing::debug!(logstore = %self.label, segment = id, "rolled to a new segment");
        Ok(())
    }
}

/// Applies the manifest to the Parquet side at open: removes files it does not name (and temporary files),
/// checks those it names, and quarantines damaged ones (rewriting the manifest without them).
fn open_files(
    dir: &Path,
    label: &str,
    manifest: &mut Manifest,
    problems: &mut Vec<String>,
) -> Result<Vec<Arc<DataFile>>, LogstoreError> {
    let named: std::collections::HashSet<&str> =
        manifest.files.iter().map(|f| f.path.as_str()).collect();
    for (relative, path) in partition_files(dir) {
        if !named.contains(relative.as_str()) {
            tracing::info!(logstore = %label, file = %path.display(), "removing a file no manifest names (interrupted conversion)");
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove a stray file");
            }
        }
    }
    let mut files = Vec::with_capacity(manifest.files.len());
    let mut damaged = Vec::new();
    for entry in &manifest.files {
        match parquet::verify(dir, entry) {
            Ok(()) => files.push(Arc::new(DataFile {
                handle: FileHandle::new(dir.join(&entry.path)),
                entry: entry.clone(),
            })),
            Err(e) => {
                let moved = quarantine(dir, &entry.path);
                let problem = format!(
                    "{e}; {} records of hour {} dropped from the logstore{moved}",
                    entry.records,
                    manifest::partition_dir(entry.hour)
                );
                tracing::error!(logstore = %label, %problem, "damaged parquet file");
                push_problem(problems, problem);
                damaged.push(entry.path.clone());
            }
        }
    }
    if !damaged.is_empty() {
        manifest.files.retain(|f| !damaged.contains(&f.path));
        manifest.store(dir)?;
    }
    Ok(files)
}

/// Moves a damaged file into the quarantine directory; says where it went.
fn quarantine(dir: &Path, relative: &str) -> String {
    let from = dir.join(relative);
    if !from.exists() {
        return " (the file is missing)".into();
    }
    let to_dir = dir.join(QUARANTINE_DIR);
    let to = to_dir.join(relative.replace('/', "_"));
    match fs::create_dir_all(&to_dir).and_then(|()| fs::rename(&from, &to)) {
        Ok(()) => format!(" (moved to {})", to.display()),
        Err(e) => format!(" (could not be moved aside: {e})"),
    }
}

/// Every file under `dir/date=*/hour=*/`, as (relative path, path). Empty partition directories are removed.
fn partition_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let subdirs = |d: &Path, prefix: &str| -> Vec<(String, PathBuf)> {
        let Ok(entries) = fs::read_dir(d) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.starts_with(prefix).then(|| (name, e.path()))
            })
            .collect()
    };
    for (date, date_dir) in subdirs(dir, "date=") {
        for (hour, hour_dir) in subdirs(&date_dir, "hour=") {
            if let Ok(entries) = fs::read_dir(&hour_dir) {
                for entry in entries.flatten() {
                    if let Ok(name) = entry.file_name().into_string() {
                        found.push((format!("{date}/{hour}/{name}"), entry.path()));
                    }
                }
            }
        }
    }
    found
}

/// Removes the partition directory of `relative` (a file path) and its date directory if they are empty.
pub fn remove_empty_partition(dir: &Path, relative: &str) {
    let file = dir.join(relative);
    for parent in file.ancestors().skip(1).take(2) {
        // Fails (harmlessly) when not empty.
        if fs::remove_dir(parent).is_err() {
            break;
        }
    }
}

fn push_problem(problems: &mut Vec<String>, problem: String) {
    if problems.len() >= 100 {
        problems.remove(0);
    }
    problems.push(problem);
}

/// Creates an empty segment file and makes its directory entry durable.
fn create_segment(dir: &Path, path: &Path) -> Result<(), SegmentError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(SegmentError::io("create", path))?;
    file.sync_all().map_err(SegmentError::io("fsync", path))?;
    segment::sync_dir(dir)
}

fn open_for_append(path: &Path) -> Result<File, SegmentError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(SegmentError::io("open", path))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; should it happen, the data is still consistent (plain values).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dedup::Admission;
    use flowlog_proto::v1::IngestBatch;

    fn batch_frame(exporter: &str, sequence: u64) -> Vec<u8> {
        let batch = IngestBatch {
            exporter_id: exporter.into(),
            sequence,
            project: "proj".into(),
            logstore: "store".into(),
            records: Vec::new(),
        };
        let mut frame = Vec::new();
        crate::store::frame::encode_into(&batch.encode_to_vec(), &mut frame).unwrap();
        frame
    }

    fn id(sequence: u64) -> BatchId {
        BatchId {
            exporter_id: "exp".into(),
            sequence,
        }
    }

    const CONFIG: WriterConfig = WriterConfig {
        segment_bytes: 100,
        group_commit_bytes: 1 << 20,
    };

    fn open(dir: &Path, dedup: Arc<Dedup>, restored: &mut Restored) -> Logstore {
        Logstore::open(
            dir,
            "proj/store".into(),
            CONFIG,
            LogstoreMeta::default(),
            dedup,
            restored,
        )
        .unwrap()
    }

    #[test]
    fn appends_roll_and_restore() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        fs::create_dir(&dir).unwrap();
        let dedup = Arc::new(Dedup::new(64));
        let mut restored = Restored::new();
        let logstore = open(&dir, dedup.clone(), &mut restored);
        assert!(restored.is_empty());
        let mut outcomes = Vec::new();
        for s in 1..=10 {
            assert!(matches!(dedup.admit(&id(s)), Admission::New));
            outcomes.push(logstore.append(id(s), batch_frame("exp", s)).unwrap());
        }
        for outcome in outcomes {
            assert_eq!(outcome.blocking_recv().unwrap(), Ok(()));
        }
        assert!(matches!(dedup.admit(&id(10)), Admission::Stored));
        let views = logstore.segments();
        assert!(
            views.len() > 1,
            "segments of 100 bytes must roll: {views:?}"
        );
        for view in &views {
            assert_eq!(fs::metadata(&view.path).unwrap().len(), view.committed);
        }
        logstore.close();
        assert!(logstore.append(id(11), batch_frame("exp", 11)).is_err());

        let mut restored = Restored::new();
        let reopened = open(&dir, Arc::new(Dedup::new(64)), &mut restored);
        let mut sequences = restored.remove("exp").unwrap();
        sequences.sort_unstable();
        assert_eq!(sequences, (1..=10).collect::<Vec<_>>());
        assert_eq!(reopened.segments(), views);
    }

    #[test]
    fn roll_on_request_and_obsolete_files_wait_for_readers() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        fs::create_dir(&dir).unwrap();
        let dedup = Arc::new(Dedup::new(64));
        let logstore = open(&dir, dedup.clone(), &mut Restored::new());
        // Nothing written: no roll.
        logstore.roll().unwrap().blocking_recv().unwrap();
        assert_eq!(logstore.segments().len(), 1);
        assert!(matches!(dedup.admit(&id(1)), Admission::New));
        let small = batch_frame("exp", 1);
        assert!(small.len() < 100);
        logstore
            .append(id(1), small)
            .unwrap()
            .blocking_recv()
            .unwrap()
            .unwrap();
        logstore.roll().unwrap().blocking_recv().unwrap();
        let segments = logstore.segments();
        assert_eq!(segments.len(), 2);
        assert!(segments[0].first_write.is_some() && segments[1].first_write.is_none());

        // A reader holds the first segment; dropping it from the state does not delete it until the reader goes.
        let reader = logstore.snapshot();
        logstore.apply(Some(segments[0].id), &[], Vec::new());
        assert_eq!(logstore.segments().len(), 1);
        assert!(segments[0].path.exists());
        drop(segments);
        drop(reader);
        let first = dir.join(segment::file_name(0));
        assert!(!first.exists(), "deleted with its last reader");
    }
}
