//! One logstore on disk: its segment files, and the writer thread that appends batches to them with group commit.
//!
//! # Design
//! Each logstore has one writer thread fed by a channel. The writer takes every append request waiting (up to
//! `group_commit_bytes`, and no further than the room left in the segment), writes their frames to the newest
//! segment, fsyncs once, then marks the batches stored in [`Dedup`] and answers each request. Requests that arrive
//! during an fsync form the next group. A segment that has reached `segment_bytes` is closed (it is already
//! fsync'd) before the next group, and a new one is created and its directory fsync'd.
//!
//! # Guarantees
//! - A request is answered `Ok` only after its frame is fsync'd; readers see only fsync'd bytes (the committed
//!   length of each segment).
//! - A failed write is truncated away before its requests are answered with an error; after a failed fsync or
//!   truncation the logstore refuses every further write (the state of the file is unknown) until a restart, whose
//!   recovery scan decides what is there.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use prost::Message;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::dedup::{BatchId, Dedup};
use super::segment::{self, SegmentError};

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
    /// The writer thread could not be started.
    #[error("cannot start the writer thread of {dir}: {error}")]
    Spawn {
        /// The logstore directory.
        dir: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The logstore is closed (the collector is shutting down).
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

/// A segment as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentView {
    /// The segment file.
    pub path: PathBuf,
    /// Bytes known durable: readers must not read past them.
    pub committed: u64,
}

/// One open logstore.
#[derive(Debug)]
pub struct Logstore {
    label: String,
    segments: Arc<Mutex<Vec<SegmentView>>>,
    sender: Mutex<Option<mpsc::UnboundedSender<Append>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// A batch found on disk at open: its identity, for rebuilding [`Dedup`].
pub type Restored = HashMap<Arc<str>, Vec<u64>>;

impl Logstore {
    /// Opens the logstore in `dir` (which must exist): recovers its segments, adds the batches found to
    /// `restored`, and starts its writer.
    pub fn open(
        dir: &Path,
        label: String,
        config: WriterConfig,
        dedup: Arc<Dedup>,
        restored: &mut Restored,
    ) -> Result<Logstore, LogstoreError> {
        let mut views = Vec::new();
        let listed = segment::list(dir)?;
        let newest_id = listed.last().map(|(id, _)| *id);
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
            tracing::debug!(file = %path.display(), ?recovered, "segment recovered");
            views.push(SegmentView {
                path: path.clone(),
                committed: recovered.len,
            });
        }
        let (active_id, active_len) = match listed.last() {
            Some((id, _)) => (*id, views.last().map_or(0, |v| v.committed)),
            None => {
                let path = dir.join(segment::file_name(0));
                create_segment(dir, &path)?;
                views.push(SegmentView { path, committed: 0 });
                (0, 0)
            }
        };
        let active_path = dir.join(segment::file_name(active_id));
        let file = open_for_append(&active_path)?;
        let segments = Arc::new(Mutex::new(views));
        let (sender, receiver) = mpsc::unbounded_channel();
        let writer = Writer {
            dir: dir.to_owned(),
            label: label.clone(),
            config,
            dedup,
            segments: segments.clone(),
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
            segments,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// `project/logstore`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Queues a framed batch for writing. The receiver yields the outcome once the batch is durable (and marked
    /// stored in [`Dedup`]) or has failed (and has been aborted there).
    pub fn append(
        &self,
        id: BatchId,
        frame: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<(), WriteFailed>>, LogstoreError> {
        let (reply, outcome) = oneshot::channel();
        let sender = lock(&self.sender);
        let sender = sender
            .as_ref()
            .ok_or_else(|| LogstoreError::Closed(self.label.clone()))?;
        sender
            .send(Append { id, frame, reply })
            .map_err(|_| LogstoreError::Closed(self.label.clone()))?;
        Ok(outcome)
    }

    /// The segments and their committed lengths, oldest first, as of now.
    pub fn segments(&self) -> Vec<SegmentView> {
        lock(&self.segments).clone()
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
    segments: Arc<Mutex<Vec<SegmentView>>>,
    file: File,
    active_id: u64,
    active_len: u64,
    /// Set after a failure that leaves the file in an unknown state; every later write is refused.
    broken: Option<String>,
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::UnboundedReceiver<Append>) {
        let mut group = Vec::new();
        let mut carried = None;
        while let Some(first) = carried.take().or_else(|| receiver.blocking_recv()) {
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
                    Ok(next) if bytes + next.frame.len() > limit => {
                        carried = Some(next);
                        break;
                    }
                    Ok(next) => {
                        bytes += next.frame.len();
                        group.push(next);
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
                if let Some(view) = lock(&self.segments).last_mut() {
                    view.committed = self.active_len;
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
        lock(&self.segments).push(SegmentView { path, committed: 0 });
        tracing::debug!(logstore = %self.label, segment = id, "rolled to a new segment");
        Ok(())
    }
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

/// Creates `root/project/logstore` if missing, fsyncing each directory whose entry was added.
pub fn create_dir(root: &Path, project: &str, logstore: &str) -> Result<PathBuf, SegmentError> {
    let project_dir = root.join(project);
    if !project_dir.is_dir() {
        fs::create_dir(&project_dir)
            .or_else(exists_ok)
            .map_err(SegmentError::io("create", &project_dir))?;
        segment::sync_dir(root)?;
    }
    let dir = project_dir.join(logstore);
    if !dir.is_dir() {
        fs::create_dir(&dir)
            .or_else(exists_ok)
            .map_err(SegmentError::io("create", &dir))?;
        segment::sync_dir(&project_dir)?;
    }
    Ok(dir)
}

fn exists_ok(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        Ok(())
    } else {
        Err(e)
    }
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

    #[test]
    fn appends_roll_and_restore() {
        let root = tempfile::tempdir().unwrap();
        let dir = create_dir(root.path(), "proj", "store").unwrap();
        let dedup = Arc::new(Dedup::new(64));
        let mut restored = Restored::new();
        let logstore = Logstore::open(
            &dir,
            "proj/store".into(),
            CONFIG,
            dedup.clone(),
            &mut restored,
        )
        .unwrap();
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
        let reopened = Logstore::open(
            &dir,
            "proj/store".into(),
            CONFIG,
            Arc::new(Dedup::new(64)),
            &mut restored,
        );
        let mut sequences = restored.remove("exp").unwrap();
        sequences.sort_unstable();
        assert_eq!(sequences, (1..=10).collect::<Vec<_>>());
        assert_eq!(reopened.unwrap().segments(), views);
    }
}
