//! The maintenance task: converts the write-ahead log to hourly Parquet files, compacts closed hours, and applies
//! retention. One thread per store, waking every `interval` (or when asked), one logstore at a time.
//!
//! # Conversion (crash-safe, exactly once)
//! When a logstore's log holds data older than `convert_after`, or its closed segments reach `convert_bytes`, the
//! task asks the writer to close the active segment (if it holds data old enough), then converts the closed
//! segments, oldest first:
//! 1. reads their frames, splits the records by hour of window start, and writes one new Parquet file per hour
//!    (`NAME.tmp`, fsync, rename, fsync directory);
//! 2. saves the exactly-once state (`DIR/DEDUP`), which includes every batch of those segments;
//! 3. writes the new manifest — the commit point — naming the new files and `converted-through` = the last
//!    segment converted;
//! 4. swaps segments for files in the logstore's state in one step (readers see either), and deletes the
//!    segments (once no reader holds them).
//!
//! A crash before 3 leaves files no manifest names (removed at open; the segments are converted again); a crash
//! after 3 leaves segments the manifest counts as converted (removed at open). Either way each record is in
//! exactly one place, and every converted batch's identity is in `DEDUP` or in a remaining segment.
//!
//! # Compaction and retention
//! Once an hour ended more than `compact_after` ago, its files smaller than `file_records` records are merged
//! into as few files as possible (streamed, one row group in memory at a time). Retention removes every file of
//! an hour whose end is more than the logstore's retention in the past: whole partitions, never parts of one.
//! Both commit through the manifest like conversion does.
//!
//! # Guarantees
//! A failure (disk full, damaged segment) is logged and reported on the logstore, and retried at the next pass;
//! the files already written for the failed step are removed, the manifest in force is untouched.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use flowlog_proto::v1::IngestBatch;
use prost::Message;
use thiserror::Error;

use super::Inner;
use super::catalog;
use super::columnar::BatchBuilder;
use super::dedup::SnapshotError;
use super::frame::{self, Scanned};
use super::logstore::{self, Logstore, Maintained};
use super::manifest::{self, FileEntry, ManifestError};
use super::parquet::{self, ParquetFileError};
use super::segment::{self, SegmentError};

/// Rows per Arrow batch built during conversion.
const BATCH_ROWS: usize = 65_536;

/// Points of a conversion where a test can make it stop as if the process died there (the files on disk are left
/// exactly as a crash would leave them).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// After the new Parquet files are written; nothing else is.
    Files,
    /// After the exactly-once state is saved too.
    Dedup,
    /// After the new manifest is written too; the segments are not deleted.
    Manifest,
}

#[cfg(test)]
thread_local! {
    /// Where the conversions of this thread stop.
    pub(crate) static CRASH_AT: std::cell::Cell<Option<CrashPoint>> = const { std::cell::Cell::new(None) };
}

/// Whether a test asked the conversion to stop here.
#[cfg(test)]
fn crash_here(point: CrashPoint) -> bool {
    CRASH_AT.with(|c| c.get()) == Some(point)
}

/// When the maintenance task converts, compacts and expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceConfig {
    /// How often the task looks at every logstore.
    pub interval: Duration,
    /// Log data older than this is converted to Parquet.
    pub convert_after: Duration,
    /// Closed segments holding at least this many bytes are converted without waiting.
    pub convert_bytes: u64,
    /// An hour's files are merged once the hour ended this long ago.
    pub compact_after: Duration,
    /// Most records per file written by compaction; files this large are left alone.
    pub file_records: u64,
}

/// Errors of one maintenance step.
#[derive(Debug, Error)]
pub enum MaintenanceError {
    /// A segment could not be read, or a directory synced.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A Parquet file could not be written or read.
    #[error(transparent)]
    Parquet(#[from] ParquetFileError),
    /// The manifest could not be written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The exactly-once state could not be saved.
    #[error(transparent)]
    Dedup(#[from] SnapshotError),
    /// The writer is gone (the logstore is closing).
    #[error(transparent)]
    Logstore(#[from] logstore::LogstoreError),
}

/// Wakes and stops the task.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    flags: Mutex<Flags>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Flags {
    wake: bool,
    stop: bool,
}

impl Signal {
    /// Asks for a pass now.
    pub(crate) fn wake(&self) {
        self.flags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .wake = true;
        self.changed.notify_all();
    }

    fn stop(&self) {
        self.flags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.changed.notify_all();
    }

    /// Waits up to `interval` for a wake-up; returns false once stopped.
    fn wait(&self, interval: Duration) -> bool {
        let flags = self.flags.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut flags, _) = self
            .changed
            .wait_timeout_while(flags, interval, |f| !f.wake && !f.stop)
            .unwrap_or_else(PoisonError::into_inner);
        flags.wake = false;
        !flags.stop
    }
}

/// The running task.
#[derive(Debug)]
pub(crate) struct Handle {
    inner: Arc<Inner>,
    thread: JoinHandle<()>,
}

impl Handle {
    /// Stops the task after its current step and waits for it.
    pub(crate) fn stop(self) {
        self.inner.signal.stop();
        if self.thread.join().is_err() {
            tracing::error!("maintenance thread panicked");
        }
    }
}

/// Starts the task.
pub(crate) fn start(inner: Arc<Inner>) -> std::io::Result<Handle> {
    let shared = inner.clone();
    let thread = std::thread::Builder::new()
        .name("maintenance".into())
        .spawn(move || {
            let interval = shared.config().maintenance.interval;
            while shared.signal.wait(interval) {
                pass(&shared, false);
            }
        })?;
    Ok(Handle { inner, thread })
}

/// One maintenance step of one logstore.
type Step = fn(&Inner, &Logstore, &mut Maintained, bool) -> Result<(), MaintenanceError>;

/// One pass over every open logstore: conversion (every segment holding data when `force`), compaction,
/// retention.
pub(crate) fn pass(inner: &Inner, force: bool) {
    for logstore in inner.open_logstores() {
        let mut maintained = logstore.maintained();
        if maintained.deleted {
            continue;
        }
        let steps: [(&str, Step); 3] = [
            ("conversion", convert),
            ("compaction", compact),
            ("retention", expire),
        ];
        for (step, run) in steps {
            if let Err(e) = run(inner, &logstore, &mut maintained, force) {
                logstore.report_problem(format!("{step} failed (retried at the next pass): {e}"));
            }
        }
    }
}

/// Converts the closed segments, if due.
fn convert(
    inner: &Inner,
    logstore: &Logstore,
    maintained: &mut Maintained,
    force: bool,
) -> Result<(), MaintenanceError> {
    let config = inner.config().maintenance;
    let now = Instant::now();
    let old = |first_write: Option<Instant>| {
        first_write.is_some_and(|t| now.saturating_duration_since(t) >= config.convert_after)
    };
    let segments = logstore.segments();
    let Some((active, closed)) = segments.split_last() else {
        return Ok(());
    };
    let closed_bytes: u64 = closed.iter().map(|s| s.committed).sum();
    let due = force
        || closed_bytes >= config.convert_bytes
        || segments.iter().any(|s| old(s.first_write));
    if !due {
        return Ok(());
    }
    if active.committed > 0 && (force || old(active.first_write)) {
        // Wait for the writer to close it; if it is gone, convert what is closed.
        let _ = logstore.roll()?.blocking_recv();
    }
    let segments = logstore.segments();
    let closed = segments.split_last().map_or(&[][..], |(_, closed)| closed);
    // Bound the work (and memory) of one step; the rest follows at the next pass.
    let budget = config.convert_bytes.max(1).saturating_mul(2);
    let mut taken = 0u64;
    let batch: Vec<_> = closed
        .iter()
        .take_while(|s| {
            let take = taken < budget;
            taken += s.committed;
            take
        })
        .collect();
    let Some(last) = batch.last() else {
        return Ok(());
    };
    let through = last.id;

    let mut hours: BTreeMap<i64, (BatchBuilder, Vec<RecordBatch>)> = BTreeMap::new();
    let mut records = 0u64;
    for view in &batch {
        let bytes = segment::read_committed(&view.path, view.committed)?;
        for item in frame::scan(&bytes) {
            // Damaged stretches were reported when the segment was recovered at open.
            let Scanned::Frame { payload, .. } = item else {
                continue;
            };
            let Ok(decoded) = IngestBatch::decode(payload) else {
                continue;
            };
            for record in &decoded.records {
                let (builder, done) = hours
                    .entry(manifest::hour_of(record.start))
                    .or_insert_with(|| (BatchBuilder::new(1024), Vec::new()));
                builder.push(record);
                records += 1;
                if builder.len() >= BATCH_ROWS {
                    done.push(builder.finish());
                }
            }
        }
    }
    let dir = logstore.dir().to_owned();
    let mut manifest = maintained.manifest.clone();
    let mut added: Vec<FileEntry> = Vec::new();
    for (hour, (mut builder, mut done)) in hours {
        if !builder.is_empty() {
            done.push(builder.finish());
        }
        let relative = manifest::file_path(hour, manifest.allocate_file());
        match parquet::write(&dir, &relative, &done) {
            Ok(written) => added.push(entry(relative, hour, &written)),
            Err(e) => {
                remove_files(&dir, &added);
                return Err(e.into());
            }
        }
    }
    #[cfg(test)]
    if crash_here(CrashPoint::Files) {
        return Ok(());
    }
    let mut commit = || -> Result<(), MaintenanceError> {
        inner.dedup().save(inner.root())?;
        #[cfg(test)]
        if crash_here(CrashPoint::Dedup) {
            return Ok(());
        }
        manifest.converted_through = Some(through);
        manifest.files.extend(added.iter().cloned());
        manifest.store(&dir)?;
        Ok(())
    };
    if let Err(e) = commit() {
        remove_files(&dir, &added);
        return Err(e);
    }
    #[cfg(test)]
    if crash_here(CrashPoint::Dedup) || crash_here(CrashPoint::Manifest) {
        return Ok(());
    }
    maintained.manifest = manifest;
    tracing::info!(
        logstore = %logstore.label(),
        segments = batch.len(),
        through,
        records,
        files = added.len(),
        "log converted to parquet"
    );
    logstore.apply(Some(through), &[], added);
    Ok(())
}

/// Merges the small files of hours that ended more than `compact_after` ago.
fn compact(
    inner: &Inner,
    logstore: &Logstore,
    maintained: &mut Maintained,
    _force: bool,
) -> Result<(), MaintenanceError> {
    let config = inner.config().maintenance;
    let now = catalog::now();
    let settle = i64::try_from(config.compact_after.as_secs()).unwrap_or(i64::MAX);
    let mut by_hour: BTreeMap<i64, Vec<FileEntry>> = BTreeMap::new();
    for file in &maintained.manifest.files {
        if file.records < config.file_records
            && file.hour.saturating_add(3600).saturating_add(settle) <= now
        {
            by_hour.entry(file.hour).or_default().push(file.clone());
        }
    }
    let dir = logstore.dir().to_owned();
    for (hour, small) in by_hour {
        if small.len() < 2 {
            continue;
        }
        let mut manifest = maintained.manifest.clone();
        let mut added: Vec<FileEntry> = Vec::new();
        let mut writer: Option<(String, parquet::Writer)> = None;
        let mut step = || -> Result<(), MaintenanceError> {
            for file in &small {
                for batch in parquet::reader(&dir.join(&file.path), BATCH_ROWS)? {
                    let batch = batch?;
                    if writer
                        .as_ref()
                        .is_some_and(|(_, w)| w.records() >= config.file_records)
                        && let Some((relative, full)) = writer.take()
                    {
                        let written = full.finish()?;
                        added.push(entry(relative, hour, &written));
                    }
                    if writer.is_none() {
                        let relative = manifest::file_path(hour, manifest.allocate_file());
                        let created = parquet::Writer::create(&dir, &relative)?;
                        writer = Some((relative, created));
                    }
                    if let Some((_, w)) = writer.as_mut() {
                        w.write(&batch)?;
                    }
                }
            }
            if let Some((relative, last)) = writer.take() {
                let written = last.finish()?;
                added.push(entry(relative, hour, &written));
            }
            let removed: Vec<String> = small.iter().map(|f| f.path.clone()).collect();
            manifest.files.retain(|f| !removed.contains(&f.path));
            manifest.files.extend(added.iter().cloned());
            manifest.store(&dir)?;
            Ok(())
        };
        if let Err(e) = step() {
            remove_files(&dir, &added);
            return Err(e);
        }
        let removed: Vec<String> = small.iter().map(|f| f.path.clone()).collect();
        maintained.manifest = manifest;
        tracing::info!(
            logstore = %logstore.label(),
            hour = %manifest::partition_dir(hour),
            merged = removed.len(),
            into = added.len(),
            "hour compacted"
        );
        logstore.apply(None, &removed, added);
    }
    Ok(())
}

/// Removes the hours past the logstore's retention.
fn expire(
    _inner: &Inner,
    logstore: &Logstore,
    maintained: &mut Maintained,
    _force: bool,
) -> Result<(), MaintenanceError> {
    let hours = logstore.meta().retention_hours;
    if hours == 0 {
        return Ok(());
    }
    let cutoff = catalog::now().saturating_sub(i64::from(hours) * 3600);
    let expired: Vec<FileEntry> = maintained
        .manifest
        .files
        .iter()
        .filter(|f| f.hour.saturating_add(3600) <= cutoff)
        .cloned()
        .collect();
    if expired.is_empty() {
        return Ok(());
    }
    let dir = logstore.dir().to_owned();
    let removed: Vec<String> = expired.iter().map(|f| f.path.clone()).collect();
    let mut manifest = maintained.manifest.clone();
    manifest.files.retain(|f| !removed.contains(&f.path));
    manifest.store(&dir)?;
    maintained.manifest = manifest;
    let partitions: std::collections::BTreeSet<i64> = expired.iter().map(|f| f.hour).collect();
    tracing::info!(
        logstore = %logstore.label(),
        partitions = partitions.len(),
        files = removed.len(),
        records = expired.iter().map(|f| f.records).sum::<u64>(),
        retention_hours = hours,
        "expired partitions removed"
    );
    logstore.apply(None, &removed, Vec::new());
    for relative in &removed {
        logstore::remove_empty_partition(&dir, relative);
    }
    Ok(())
}

fn entry(path: String, hour: i64, written: &parquet::Written) -> FileEntry {
    FileEntry {
        path,
        hour,
        records: written.records,
        bytes: written.bytes,
        min_start: written.min_start,
        max_start: written.max_start,
    }
}

/// Removes files written by a step that then failed (they are not in any manifest).
fn remove_files(dir: &std::path::Path, files: &[FileEntry]) {
    for file in files {
        let _ = std::fs::remove_file(dir.join(&file.path));
    }
}
