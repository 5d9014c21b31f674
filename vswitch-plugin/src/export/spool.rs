//! The exporter's spool: every batch not yet acknowledged by the collector waits here, in memory first, then on
//! disk, and only what overflows both becomes SKIPDATA records with exact counts.
//!
//! # Design
//! Batches enter with their final identity (exporter id + sequence), so a batch re-sent after a reconnect — or
//! after a restart of the exporter, from the disk spool — is recognised by the collector and stored once.
//! - Memory: a FIFO bounded by encoded bytes.
//! - Disk: once memory is full, new batches go to append-only segment files in the spool directory (frames of
//!   length, CRC-32 and the protobuf batch), read back oldest first once memory has drained. Segments are synced
//!   when they are closed; a segment is deleted once every batch in it has been read back. Leftover segments from
//!   an earlier run are read at start and delivered first, with their original ids.
//! - Overflow: when neither memory nor disk has room, the batch is summarised into the SKIPDATA ledger: per
//!   (logstore, ENI, window) the exact packets and bytes of its OK and SKIPDATA records (NODATA records carry no
//!   counts and are counted as dropped). The ledger is delivered as SKIPDATA batches as soon as the collector
//!   takes data again, before anything newer.
//!
//! # Guarantees
//! - Nothing is lost silently: every record is in memory, on disk, in the ledger's sums, or counted in
//!   [`SpoolStats`] (`nodata_dropped`, and `ledger_overflow_records` if even the ledger is full).
//! - Memory stays under `memory_bytes` plus one batch, disk under `disk_bytes` plus one batch, the ledger under
//!   `max_ledger_entries` entries.
//!
//! # Limitations
//! A batch read back from disk and in flight when the exporter crashes is gone from the spool (its segment was
//! deleted once read): a crash of the exporter can lose up to the in-flight window; an outage of the collector
//! loses nothing.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flowlog_proto::v1::{IngestBatch, LogStatus, Record};
use prost::Message;

const FRAME_MAGIC: u32 = 0x4653_504c; // "LPSF"
const FRAME_HEADER: usize = 12;
/// Largest batch frame accepted when reading a spool file back (64 MiB).
const MAX_FRAME: usize = 64 << 20;

/// Errors of the disk spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A spool file or directory could not be used.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Limits of a spool.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Most encoded bytes of batches kept in memory.
    pub memory_bytes: usize,
    /// Directory of the disk spool; none = memory only.
    pub disk_dir: Option<PathBuf>,
    /// Most bytes of batches on disk.
    pub disk_bytes: u64,
    /// Size at which a disk segment is closed and a new one started.
    pub segment_bytes: u64,
    /// Most (logstore, ENI, window) entries in the SKIPDATA ledger.
    pub max_ledger_entries: usize,
}

/// What the spool did, over its life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Batches that went to disk because memory was full.
    pub batches_to_disk: u64,
    /// Batches read back from disk (including leftovers of an earlier run).
    pub batches_from_disk: u64,
    /// Batches summarised into SKIPDATA because memory and disk were full.
    pub batches_skipped: u64,
    /// Records of those batches (OK, SKIPDATA and NODATA).
    pub records_skipped: u64,
    /// Packets in the SKIPDATA ledger, over its life (the sum of what was summarised).
    pub skipped_packets: u64,
    /// Bytes in the SKIPDATA ledger, over its life.
    pub skipped_bytes: u64,
    /// NODATA records dropped with a summarised batch (they carry no counts).
    pub nodata_dropped: u64,
    /// Records that fitted nowhere, not even the ledger: counted and logged, the only loss.
    pub ledger_overflow_records: u64,
    /// Corrupt or torn frames found in spool files at start (reported, skipped).
    pub corrupt_frames: u64,
}

/// A (logstore, ENI, window) whose dropped counts the ledger sums.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LedgerKey {
    project: String,
    logstore: String,
    eni_id: String,
    start: i64,
    end: i64,
}

/// The bounded FIFO of unacknowledged batches.
pub struct Spool {
    config: SpoolConfig,
    memory: VecDeque<IngestBatch>,
    memory_bytes: usize,
    disk: Option<DiskQueue>,
    ledger: BTreeMap<LedgerKey, Record>,
    stats: SpoolStats,
}

impl Spool {
    /// A spool; with a disk directory, leftover segments of an earlier run are queued first.
    pub fn open(config: SpoolConfig) -> Result<Self, SpoolError> {
        let mut stats = SpoolStats::default();
        let disk = match &config.disk_dir {
            Some(dir) => Some(DiskQueue::open(dir, config.segment_bytes, &mut stats)?),
            None => None,
        };
        Ok(Self {
            config,
            memory: VecDeque::new(),
            memory_bytes: 0,
            disk,
            ledger: BTreeMap::new(),
            stats,
        })
    }

    /// Queues a batch (already carrying its exporter id and sequence). Never blocks; what fits nowhere is
    /// summarised into SKIPDATA.
    pub fn push(&mut self, batch: IngestBatch) -> Result<(), SpoolError> {
        let size = batch.encoded_len();
        let disk_busy = self.disk.as_ref().is_some_and(|d| !d.is_empty());
        // An empty memory part takes any one batch, so a batch larger than the whole budget still flows while
        // the collector keeps up.
        let fits = self.memory.is_empty() || self.memory_bytes + size <= self.config.memory_bytes;
        if !disk_busy && fits {
            self.memory_bytes += size;
            self.memory.push_back(batch);
            return Ok(());
        }
        if let Some(disk) = &mut self.disk
            && disk.bytes + size as u64 <= self.config.disk_bytes
        {
            disk.append(&batch)?;
            self.stats.batches_to_disk += 1;
            return Ok(());
        }
        self.summarise(&batch);
        Ok(())
    }

    /// The next batch to send, oldest first: memory, then disk. SKIPDATA ledger batches come out through
    /// [`Spool::take_ledger`].
    pub fn pop(&mut self) -> Result<Option<IngestBatch>, SpoolError> {
        if let Some(batch) = self.memory.pop_front() {
            self.memory_bytes -= batch.encoded_len();
            return Ok(Some(batch));
        }
        match &mut self.disk {
            Some(disk) => {
                let batch = disk.pop(&mut self.stats)?;
                if batch.is_some() {
                    self.stats.batches_from_disk += 1;
                }
                Ok(batch)
            }
            None => Ok(None),
        }
    }

    /// Takes the SKIPDATA ledger as record lists per (project, logstore), emptying it.
    pub fn take_ledger(&mut self) -> Vec<(String, String, Vec<Record>)> {
        let mut out: Vec<(String, String, Vec<Record>)> = Vec::new();
        for (key, record) in std::mem::take(&mut self.ledger) {
            match out.last_mut() {
                Some((p, l, records)) if *p == key.project && *l == key.logstore => {
                    records.push(record)
                }
                _ => out.push((key.project, key.logstore, vec![record])),
            }
        }
        out
    }

    /// Whether the ledger holds SKIPDATA sums waiting to be sent.
    pub fn has_ledger(&self) -> bool {
        !self.ledger.is_empty()
    }

    /// Whether nothing waits (memory, disk and ledger empty).
    pub fn is_empty(&self) -> bool {
        self.memory.is_empty()
            && self.disk.as_ref().is_none_or(DiskQueue::is_empty)
            && self.ledger.is_empty()
    }

    /// Batches waiting in memory and on disk.
    pub fn len(&self) -> usize {
        self.memory.len() + self.disk.as_ref().map_or(0, |d| d.batches)
    }

    /// Records waiting in memory (the disk's are counted when read back).
    pub fn memory_records(&self) -> u64 {
        self.memory.iter().map(|b| b.records.len() as u64).sum()
    }

    /// Whether a disk spool is configured.
    pub fn has_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// Moves `extra` (batches in flight) and every batch still in memory to disk, so that a later run delivers
    /// them (shutdown with the collector away); the disk limit does not apply here. Returns how many batches were
    /// written; without a disk spool, none.
    pub fn persist(
        &mut self,
        extra: impl IntoIterator<Item = IngestBatch>,
    ) -> Result<u64, SpoolError> {
        let Some(disk) = &mut self.disk else {
            return Ok(0);
        };
        let mut written = 0;
        for batch in extra.into_iter().chain(self.memory.drain(..)) {
            disk.append(&batch)?;
            written += 1;
        }
        self.memory_bytes = 0;
        disk.sync()?;
        Ok(written)
    }

    /// The spool's counters.
    pub fn stats(&self) -> &SpoolStats {
        &self.stats
    }

    /// Adds a batch's counts to the SKIPDATA ledger.
    fn summarise(&mut self, batch: &IngestBatch) {
        self.stats.batches_skipped += 1;
        self.stats.records_skipped += batch.records.len() as u64;
        for record in &batch.records {
            if record.log_status == LogStatus::Nodata as i32 {
                self.stats.nodata_dropped += 1;
                continue;
            }
            let key = LedgerKey {
                project: batch.project.clone(),
                logstore: batch.logstore.clone(),
                eni_id: record.eni_id.clone(),
                start: record.start,
                end: record.end,
            };
            if !self.ledger.contains_key(&key)
                && self.ledger.len() >= self.config.max_ledger_entries
            {
                self.stats.ledger_overflow_records += 1;
                tracing::error!(eni = %record.eni_id, packets = record.packets, bytes = record.bytes,
                    "SKIPDATA ledger full: these counts are lost");
                continue;
            }
            self.stats.skipped_packets += record.packets;
            self.stats.skipped_bytes += record.bytes;
            let entry = self.ledger.entry(key).or_insert_with(|| Record {
                version: 1,
                account_id: record.account_id.clone(),
                vpc_id: record.vpc_id.clone(),
                vswitch_id: record.vswitch_id.clone(),
                vm_id: record.vm_id.clone(),
                eni_id: record.eni_id.clone(),
                start: record.start,
                end: record.end,
                log_status: LogStatus::Skipdata as i32,
                region: record.region.clone(),
                ..Record::default()
            });
            entry.packets += record.packets;
            entry.bytes += record.bytes;
        }
    }
}

/// The disk part of the spool: a FIFO of batches in segment files.
struct DiskQueue {
    dir: PathBuf,
    segment_bytes: u64,
    /// Closed or open segments, oldest first, with the read offset of the oldest.
    segments: VecDeque<PathBuf>,
    read_offset: u64,
    writer: Option<(PathBuf, BufWriter<File>, u64)>,
    next_segment: u64,
    bytes: u64,
    batches: usize,
}

impl DiskQueue {
    fn open(dir: &Path, segment_bytes: u64, stats: &mut SpoolStats) -> Result<Self, SpoolError> {
        let io = |source| SpoolError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .map_err(io)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let path = e.path();
                let number = path
                    .file_name()?
                    .to_str()?
                    .strip_prefix("spool-")?
                    .strip_suffix(".seg")?
                    .parse()
                    .ok()?;
                Some((number, path))
            })
            .collect();
        names.sort();
        let mut queue = DiskQueue {
            dir: dir.to_path_buf(),
            segment_bytes,
            segments: VecDeque::new(),
            read_offset: 0,
            writer: None,
            next_segment: names.last().map_or(0, |(n, _)| n + 1),
            bytes: 0,
            batches: 0,
        };
        for (_, path) in names {
            // Count what an earlier run left, validating every frame.
            let data = fs::read(&path).map_err(|source| SpoolError::Io {
                path: path.clone(),
                source,
            })?;
            let (frames, valid_end) = scan(&data);
            if valid_end < data.len() {
                stats.corrupt_frames += 1;
                tracing::warn!(path = %path.display(), valid_end, len = data.len(),
                    "spool segment has a torn or corrupt tail; the rest of it is ignored");
            }
            queue.bytes += valid_end as u64;
            queue.batches += frames;
            queue.segments.push_back(path);
        }
        if queue.batches > 0 {
            tracing::info!(
                batches = queue.batches,
                bytes = queue.bytes,
                "spooled batches of an earlier run found"
            );
        }
        Ok(queue)
    }

    fn is_empty(&self) -> bool {
        self.batches == 0
    }

    fn append(&mut self, batch: &IngestBatch) -> Result<(), SpoolError> {
        if self
            .writer
            .as_ref()
            .is_some_and(|(_, _, len)| *len >= self.segment_bytes)
        {
            self.close_writer()?;
        }
        if self.writer.is_none() {
            let path = self
                .dir
                .join(format!("spool-{:020}.seg", self.next_segment));
            self.next_segment += 1;
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|source| SpoolError::Io {
                    path: path.clone(),
                    source,
                })?;
            self.segments.push_back(path.clone());
            self.writer = Some((path, BufWriter::new(file), 0));
        }
        let payload = batch.encode_to_vec();
        let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
        frame.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        if let Some((path, writer, len)) = &mut self.writer {
            writer.write_all(&frame).map_err(|source| SpoolError::Io {
                path: path.clone(),
                source,
            })?;
            *len += frame.len() as u64;
        }
        self.bytes += frame.len() as u64;
        self.batches += 1;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), SpoolError> {
        if let Some((path, writer, _)) = &mut self.writer {
            let io = |source| SpoolError::Io {
                path: path.clone(),
                source,
            };
            writer.flush().map_err(io)?;
            writer.get_ref().sync_data().map_err(io)?;
        }
        Ok(())
    }

    fn close_writer(&mut self) -> Result<(), SpoolError> {
        self.sync()?;
        self.writer = None;
        Ok(())
    }

    /// Reads the oldest batch; deletes a segment once it is read to its end (unless it is still being written).
    fn pop(&mut self, stats: &mut SpoolStats) -> Result<Option<IngestBatch>, SpoolError> {
        while let Some(path) = self.segments.front().cloned() {
            let io = |source| SpoolError::Io {
                path: path.clone(),
                source,
            };
            let writing = self.writer.as_ref().is_some_and(|(p, _, _)| *p == path);
            if let Some((_, writer, _)) = self.writer.as_mut().filter(|_| writing) {
                // Make what was appended readable.
                writer.flush().map_err(io)?;
            }
            let mut file = File::open(&path).map_err(io)?;
            io::Seek::seek(&mut file, io::SeekFrom::Start(self.read_offset)).map_err(io)?;
            let mut header = [0u8; FRAME_HEADER];
            let got = read_up_to(&mut file, &mut header).map_err(io)?;
            let payload_len =
                u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if got == FRAME_HEADER && payload_len <= MAX_FRAME {
                let mut frame = header.to_vec();
                frame.resize(FRAME_HEADER + payload_len, 0);
                let got = read_up_to(&mut file, &mut frame[FRAME_HEADER..]).map_err(io)?;
                if got == payload_len
                    && let Some((payload, used)) = next_frame(&frame)
                {
                    self.read_offset += used as u64;
                    self.bytes = self.bytes.saturating_sub(used as u64);
                    self.batches = self.batches.saturating_sub(1);
                    match IngestBatch::decode(payload) {
                        Ok(batch) => return Ok(Some(batch)),
                        Err(error) => {
                            stats.corrupt_frames += 1;
                            tracing::warn!(path = %path.display(), %error, "undecodable spooled batch skipped");
                            continue;
                        }
                    }
                }
            }
            if writing {
                if self.batches > 0 {
                    // Read up to what has been written so far; more is coming.
                    return Ok(None);
                }
                // Caught up with the writer: close the segment, so new batches use memory again.
                self.writer = None;
            }
            // The end of a closed segment, or its torn tail (counted when it was opened): done with it.
            self.segments.pop_front();
            self.read_offset = 0;
            fs::remove_file(&path).map_err(io)?;
        }
        self.batches = 0;
        self.bytes = 0;
        Ok(None)
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The first complete, valid frame of `data`: its payload and the bytes it used.
fn next_frame(data: &[u8]) -> Option<(&[u8], usize)> {
    let header = data.get(..FRAME_HEADER)?;
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    if word(0) != FRAME_MAGIC {
        return None;
    }
    let len = word(4) as usize;
    if len > MAX_FRAME {
        return None;
    }
    let payload = data.get(FRAME_HEADER..FRAME_HEADER + len)?;
    (crc32fast::hash(payload) == word(8)).then_some((payload, FRAME_HEADER + len))
}

/// Counts the valid frames at the start of `data`; returns (frames, end of the last valid frame).
fn scan(data: &[u8]) -> (usize, usize) {
    let (mut frames, mut at) = (0, 0);
    while let Some((_, used)) = data.get(at..).and_then(next_frame) {
        frames += 1;
        at += used;
    }
    (frames, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(sequence: u64, records: &[(&str, u64, u64, i32)]) -> IngestBatch {
        IngestBatch {
            exporter_id: "x".into(),
            sequence,
            project: "p".into(),
            logstore: "l".into(),
            records: records
                .iter()
                .map(|&(eni, packets, bytes, status)| Record {
                    version: 1,
                    eni_id: eni.into(),
                    packets,
                    bytes,
                    start: 60,
                    end: 120,
                    log_status: status,
                    srcaddr: vec![10, 0, 0, 1],
                    ..Record::default()
                })
                .collect(),
        }
    }

    fn config(dir: Option<&Path>, memory: usize, disk: u64) -> SpoolConfig {
        SpoolConfig {
            memory_bytes: memory,
            disk_dir: dir.map(Path::to_path_buf),
            disk_bytes: disk,
            segment_bytes: 300,
            max_ledger_entries: 100,
        }
    }

    const OK: i32 = LogStatus::Ok as i32;
    const NODATA: i32 = LogStatus::Nodata as i32;

    #[test]
    fn memory_then_disk_then_skipdata_with_exact_counts() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(1, &[("eni-a", 5, 500, OK)]).encoded_len();
        let mut spool =
            Spool::open(config(Some(dir.path()), 2 * one, 4 * (one as u64 + 12))).unwrap();
        for seq in 1..=10 {
            spool
                .push(batch(
                    seq,
                    &[
                        ("eni-a", seq, 100 * seq, OK),
                        ("eni-b", 1, 40, OK),
                        ("eni-c", 0, 0, NODATA),
                    ],
                ))
                .unwrap();
        }
        let stats = spool.stats().clone();
        assert!(
            stats.batches_to_disk > 0 && stats.batches_skipped > 0,
            "{stats:?}"
        );
        // Everything comes back in order, except what was summarised.
        let mut sequences = Vec::new();
        while let Some(b) = spool.pop().unwrap() {
            sequences.push(b.sequence);
        }
        let kept: u64 = sequences.len() as u64;
        assert_eq!(kept + stats.batches_skipped, 10);
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
        let skipped: Vec<u64> = (1..=10).filter(|s| !sequences.contains(s)).collect();
        let ledger = spool.take_ledger();
        assert_eq!(ledger.len(), 1);
        let records = &ledger[0].2;
        let sum = |eni: &str| {
            records
                .iter()
                .find(|r| r.eni_id == eni)
                .map(|r| (r.packets, r.bytes))
        };
        assert_eq!(
            sum("eni-a"),
            Some((skipped.iter().sum(), skipped.iter().map(|s| 100 * s).sum()))
        );
        assert_eq!(
            sum("eni-b"),
            Some((skipped.len() as u64, 40 * skipped.len() as u64))
        );
        assert_eq!(sum("eni-c"), None, "NODATA carries no counts");
        assert!(
            records
                .iter()
                .all(|r| r.log_status == LogStatus::Skipdata as i32 && r.srcaddr.is_empty())
        );
        assert_eq!(spool.stats().nodata_dropped, skipped.len() as u64);
        assert!(spool.is_empty());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "read segments are deleted"
        );
    }

    #[test]
    fn persisted_batches_survive_a_restart_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(config(Some(dir.path()), 1 << 20, 1 << 20)).unwrap();
            for seq in 1..=3 {
                spool.push(batch(seq, &[("eni-a", seq, 1, OK)])).unwrap();
            }
            let in_flight = [batch(7, &[("eni-z", 1, 1, OK)])];
            assert_eq!(spool.persist(in_flight).unwrap(), 4);
        }
        // A crash in the middle of an append leaves half a frame.
        let segment = fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(&FRAME_MAGIC.to_le_bytes()).unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(file);

        let mut spool = Spool::open(config(Some(dir.path()), 1 << 20, 1 << 20)).unwrap();
        assert_eq!(spool.stats().corrupt_frames, 1);
        assert_eq!(spool.len(), 4);
        let mut sequences = Vec::new();
        while let Some(b) = spool.pop().unwrap() {
            sequences.push(b.sequence);
        }
        assert_eq!(
            sequences,
            vec![7, 1, 2, 3],
            "in-flight batches first, then the queue, with their ids"
        );
        assert!(spool.is_empty());
    }

    #[test]
    fn without_disk_overflow_goes_straight_to_the_ledger_and_the_ledger_is_bounded() {
        let mut config = config(None, 0, 0);
        config.max_ledger_entries = 2;
        let mut spool = Spool::open(config).unwrap();
        // An empty memory part takes one batch whatever its size; the next one overflows.
        let first = batch(0, &[("eni-z", 1, 10, OK)]);
        spool.push(first.clone()).unwrap();
        spool
            .push(batch(
                1,
                &[
                    ("eni-a", 3, 30, OK),
                    ("eni-b", 4, 40, OK),
                    ("eni-c", 5, 50, OK),
                ],
            ))
            .unwrap();
        assert_eq!(spool.pop().unwrap(), Some(first));
        assert_eq!(spool.pop().unwrap(), None);
        assert_eq!(spool.stats().ledger_overflow_records, 1);
        let ledger = spool.take_ledger();
        assert_eq!(ledger[0].2.iter().map(|r| r.packets).sum::<u64>(), 7);
    }

    #[test]
    fn frames_refuse_bad_magic_length_and_crc() {
        let payload = b"hello";
        let mut frame = FRAME_MAGIC.to_le_bytes().to_vec();
        frame.extend_from_slice(&5u32.to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        assert_eq!(next_frame(&frame), Some((&payload[..], 17)));
        let mut bad = frame.clone();
        bad[16] ^= 1;
        assert_eq!(next_frame(&bad), None);
        assert_eq!(next_frame(&frame[..16]), None);
        let mut huge = frame.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(next_frame(&huge), None);
        assert_eq!(scan(&[frame.clone(), frame].concat()), (2, 34));
    }
}
