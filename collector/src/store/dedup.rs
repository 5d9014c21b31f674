//! Exactly-once bookkeeping: which `(exporter_id, sequence)` batches are stored, which are being stored, and who
//! waits for them.
//!
//! Sequences are per exporter, across all logstores (an exporter numbers its batches 1, 2, 3, ... whatever their
//! destination), so this state is global to the store.
//!
//! # Guarantees
//! - A batch is reported [`Admission::Stored`] only after [`Dedup::commit`] for it, which the writer calls once the
//!   batch is fsync'd; a batch whose write failed ([`Dedup::abort`]) may be sent again and is then admitted anew.
//! - A copy arriving while the first copy is being written is neither written again nor acknowledged early: it
//!   waits for the first copy's outcome ([`Admission::InFlight`]).
//! - Memory per exporter is bounded: a contiguous watermark (every sequence up to it is stored) plus the set of
//!   stored sequences above it, at most `window` of them.
//!
//! - [`Dedup::save`] writes the state to `DIR/DEDUP` (atomically); [`Dedup::load`] merges it back at open. The
//!   maintenance task saves it before it deletes write-ahead-log segments, so the identities of converted batches
//!   outlive their segments.
//!
//! # Limitations
//! When the set above the watermark outgrows `window` (an exporter gave up on some batches for good), the
//! watermark is advanced past the oldest gap, and the missing sequences are logged and from then on treated as
//! stored. Exporter state is kept for every exporter ever seen; exporter ids are expected to be per instance.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::oneshot;

use super::frame::{self, Scanned};
use super::segment::{self, SegmentError};

/// File name of the saved state, in the data directory.
pub const FILE_NAME: &str = "DEDUP";

/// Errors saving or loading the saved state.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] SegmentError),
    /// The file is damaged (bad frame or not this JSON).
    #[error("exactly-once state {path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The saved form of the state.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SavedState {
    exporters: Vec<SavedExporter>,
}

/// One exporter's saved state.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SavedExporter {
    id: String,
    watermark: u64,
    above: Vec<u64>,
}

/// Identity of one batch: the exporter that sent it and its sequence number there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchId {
    /// The exporter instance.
    pub exporter_id: Arc<str>,
    /// Per-exporter batch number, from 1.
    pub sequence: u64,
}

/// Why a batch that was in flight did not become durable.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("the first copy of this batch was not stored: {reason}")]
pub struct FirstCopyFailed {
    /// What went wrong with the first copy.
    pub reason: String,
}

/// Outcome of [`Dedup::admit`].
#[derive(Debug)]
pub enum Admission {
    /// The batch is new; the caller must store it and then call [`Dedup::commit`] or [`Dedup::abort`].
    New,
    /// The batch is already stored.
    Stored,
    /// Another copy is being stored; the receiver yields its outcome.
    InFlight(oneshot::Receiver<Result<(), FirstCopyFailed>>),
}

/// The exactly-once state of every exporter.
#[derive(Debug)]
pub struct Dedup {
    window: usize,
    exporters: Mutex<HashMap<Arc<str>, Exporter>>,
}

impl Dedup {
    /// Empty state; `window` bounds the stored sequences kept above each exporter's watermark (at least 1).
    pub fn new(window: usize) -> Self {
        Dedup {
            window: window.max(1),
            exporters: Mutex::new(HashMap::new()),
        }
    }

    /// Decides what to do with an arriving batch, and marks a new one as in flight.
    pub fn admit(&self, id: &BatchId) -> Admission {
        let mut exporters = self.lock();
        let exporter = exporters.entry(id.exporter_id.clone()).or_default();
        if exporter.is_stored(id.sequence) {
            return Admission::Stored;
        }
        if let Some(waiters) = exporter.in_flight.get_mut(&id.sequence) {
            let (tx, rx) = oneshot::channel();
            waiters.push(tx);
            return Admission::InFlight(rx);
        }
        exporter.in_flight.insert(id.sequence, Vec::new());
        Admission::New
    }

    /// Records the sequences of one exporter found on disk while rebuilding the state at start, in any order.
    /// Returns how many of them were already known (the same batch stored twice, which this store never does).
    ///
    /// Sequences are sorted first, so that the window only skips gaps that are really missing from the files.
    pub fn restore(&self, exporter_id: Arc<str>, mut sequences: Vec<u64>) -> usize {
        sequences.sort_unstable();
        let mut exporters = self.lock();
        let exporter = exporters.entry(exporter_id.clone()).or_default();
        let mut already = 0;
        for sequence in sequences {
            if exporter.is_stored(sequence) {
                already += 1;
            } else {
                exporter.mark_stored(&exporter_id, sequence, self.window);
            }
        }
        already
    }

    /// The in-flight batch `id` is durable: marks it stored and tells the copies waiting for it.
    pub fn commit(&self, id: &BatchId) {
        let waiters = {
            let mut exporters = self.lock();
            let exporter = exporters.entry(id.exporter_id.clone()).or_default();
            let waiters = exporter.in_flight.remove(&id.sequence).unwrap_or_default();
            exporter.mark_stored(&id.exporter_id, id.sequence, self.window);
            waiters
        };
        for waiter in waiters {
            // A waiter whose stream has gone away no longer needs the answer.
            let _ = waiter.send(Ok(()));
        }
    }

    /// The in-flight batch `id` was not stored: forgets it, so that it can be sent again, and tells the copies
    /// waiting for it.
    pub fn abort(&self, id: &BatchId, reason: &str) {
        let waiters = {
            let mut exporters = self.lock();
            exporters
                .get_mut(&id.exporter_id)
                .and_then(|exporter| exporter.in_flight.remove(&id.sequence))
                .unwrap_or_default()
        };
        for waiter in waiters {
            // A waiter whose stream has gone away no longer needs the answer.
            let _ = waiter.send(Err(FirstCopyFailed {
                reason: reason.to_owned(),
            }));
        }
    }

    /// Writes the stored state (not the in-flight batches) to `dir/DEDUP`, atomically and durably.
    pub fn save(&self, dir: &Path) -> Result<(), SnapshotError> {
        let saved = {
            let exporters = self.lock();
            SavedState {
                exporters: exporters
                    .iter()
                    .map(|(id, e)| SavedExporter {
                        id: id.to_string(),
                        watermark: e.watermark,
                        above: e.above.iter().copied().collect(),
                    })
                    .collect(),
            }
        };
        // Plain numbers and strings always serialise.
        let json = serde_json::to_vec(&saved).unwrap_or_default();
        let mut bytes = Vec::with_capacity(json.len() + frame::HEADER_LEN);
        frame::encode_into(&json, &mut bytes).map_err(|e| SnapshotError::Damaged {
            path: dir.join(FILE_NAME).display().to_string(),
            reason: e.to_string(),
        })?;
        segment::write_atomic(dir, FILE_NAME, &bytes)?;
        Ok(())
    }

    /// Merges the state saved in `dir/DEDUP` (if any) into this one; returns the number of exporters in it.
    pub fn load(&self, dir: &Path) -> Result<usize, SnapshotError> {
        let path = dir.join(FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(SegmentError::io("read", &path)(e).into()),
        };
        let damaged = |reason: String| SnapshotError::Damaged {
            path: path.display().to_string(),
            reason,
        };
        let mut items = frame::scan(&bytes);
        let payload = match (items.next(), items.next()) {
            (Some(Scanned::Frame { payload, .. }), None) => payload,
            _ => return Err(damaged("not one whole frame (torn or corrupt)".into())),
        };
        let saved: SavedState =
            serde_json::from_slice(payload).map_err(|e| damaged(e.to_string()))?;
        let count = saved.exporters.len();
        let mut exporters = self.lock();
        for saved in saved.exporters {
            let exporter = exporters.entry(saved.id.as_str().into()).or_default();
            if saved.watermark > exporter.watermark {
                exporter.watermark = saved.watermark;
                let watermark = exporter.watermark;
                exporter.above.retain(|&s| s > watermark);
            }
            let id = saved.id;
            for sequence in saved.above {
                exporter.mark_stored(&id, sequence, self.window);
            }
            exporter.absorb();
        }
        Ok(count)
    }

    /// Number of exporters known.
    pub fn exporters(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Exporter>> {
        // A panic while holding this lock cannot leave the map half-updated in a way that matters more than
        // losing the whole service, and no code path panics under it; recover the data rather than propagate.
        self.exporters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Per-exporter state.
#[derive(Debug, Default)]
struct Exporter {
    /// Every sequence in 1..=watermark is stored (or was given up, see the module's limitations).
    watermark: u64,
    /// Stored sequences above `watermark + 1`.
    above: BTreeSet<u64>,
    /// Sequences being written, with the copies waiting for their outcome.
    in_flight: HashMap<u64, Vec<oneshot::Sender<Result<(), FirstCopyFailed>>>>,
}

impl Exporter {
    fn is_stored(&self, sequence: u64) -> bool {
        sequence <= self.watermark || self.above.contains(&sequence)
    }

    fn mark_stored(&mut self, exporter_id: &str, sequence: u64, window: usize) {
        if sequence <= self.watermark {
            return;
        }
        self.above.insert(sequence);
        self.absorb();
        while self.above.len() > window {
            let Some(lowest) = self.above.pop_first() else {
                break;
            };
            tracing::warn!(
                exporter_id,
                missing_from = self.watermark + 1,
                missing_to = lowest - 1,
                "exporter never sent these batches and is {window}+ batches past them; treating them as stored"
            );
            self.watermark = lowest;
            self.absorb();
        }
    }

    /// Moves the contiguous run above the watermark into it.
    fn absorb(&mut self) {
        while self.above.first() == Some(&(self.watermark + 1)) {
            self.above.pop_first();
            self.watermark += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(exporter: &str, sequence: u64) -> BatchId {
        BatchId {
            exporter_id: exporter.into(),
            sequence,
        }
    }

    #[test]
    fn new_then_stored() {
        let dedup = Dedup::new(16);
        assert!(matches!(dedup.admit(&id("a", 1)), Admission::New));
        dedup.commit(&id("a", 1));
        assert!(matches!(dedup.admit(&id("a", 1)), Admission::Stored));
        // Other exporters have their own sequences.
        assert!(matches!(dedup.admit(&id("b", 1)), Admission::New));
    }

    #[test]
    fn aborted_batch_can_be_sent_again() {
        let dedup = Dedup::new(16);
        assert!(matches!(dedup.admit(&id("a", 1)), Admission::New));
        dedup.abort(&id("a", 1), "disk full");
        assert!(matches!(dedup.admit(&id("a", 1)), Admission::New));
    }

    #[test]
    fn second_copy_waits_for_the_first() {
        let dedup = Dedup::new(16);
        assert!(matches!(dedup.admit(&id("a", 7)), Admission::New));
        let Admission::InFlight(mut ok) = dedup.admit(&id("a", 7)) else {
            panic!("expected in flight")
        };
        assert!(ok.try_recv().is_err());
        dedup.commit(&id("a", 7));
        assert_eq!(ok.try_recv().unwrap(), Ok(()));

        assert!(matches!(dedup.admit(&id("a", 8)), Admission::New));
        let Admission::InFlight(mut failed) = dedup.admit(&id("a", 8)) else {
            panic!("expected in flight")
        };
        dedup.abort(&id("a", 8), "io error");
        assert!(failed.try_recv().unwrap().is_err());
    }

    #[test]
    fn watermark_absorbs_out_of_order_sequences() {
        let dedup = Dedup::new(16);
        assert_eq!(dedup.restore("a".into(), vec![3, 1, 2, 5, 2]), 1);
        {
            let exporters = dedup.lock();
            let a = &exporters[&Arc::<str>::from("a")];
            assert_eq!(a.watermark, 3);
            assert_eq!(a.above.iter().copied().collect::<Vec<_>>(), vec![5]);
        }
        assert!(matches!(dedup.admit(&id("a", 4)), Admission::New));
        assert!(matches!(dedup.admit(&id("a", 5)), Admission::Stored));
        assert!(matches!(dedup.admit(&id("a", 2)), Admission::Stored));
        dedup.commit(&id("a", 4));
        assert_eq!(dedup.lock()[&Arc::<str>::from("a")].watermark, 5);
    }

    #[test]
    fn saved_state_round_trips_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let dedup = Dedup::new(16);
        assert_eq!(dedup.load(dir.path()).unwrap(), 0, "no file yet");
        for s in [1, 2, 3, 7] {
            assert!(matches!(dedup.admit(&id("a", s)), Admission::New));
            dedup.commit(&id("a", s));
        }
        assert!(matches!(dedup.admit(&id("b", 9)), Admission::New));
        dedup.commit(&id("b", 9));
        // In flight: not saved.
        assert!(matches!(dedup.admit(&id("b", 10)), Admission::New));
        dedup.save(dir.path()).unwrap();

        let back = Dedup::new(16);
        back.restore("a".into(), vec![4]);
        assert_eq!(back.load(dir.path()).unwrap(), 2);
        for (e, s, stored) in [
            ("a", 1, true),
            ("a", 4, true),
            ("a", 5, false),
            ("a", 7, true),
            ("b", 9, true),
            ("b", 10, false),
            ("b", 1, false),
        ] {
            assert_eq!(
                matches!(back.admit(&id(e, s)), Admission::Stored),
                stored,
                "{e} {s}"
            );
        }
        assert_eq!(back.lock()[&Arc::<str>::from("a")].watermark, 4);

        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = Dedup::new(4).load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("DEDUP") && err.contains("damaged"), "{err}");
    }

    #[test]
    fn memory_stays_bounded_past_a_permanent_gap() {
        let dedup = Dedup::new(8);
        // Sequence 1 never arrives.
        for s in 2..=1000 {
            assert!(matches!(dedup.admit(&id("a", s)), Admission::New));
            dedup.commit(&id("a", s));
        }
        let exporters = dedup.lock();
        let a = &exporters[&Arc::<str>::from("a")];
        assert!(a.above.len() <= 8);
        assert_eq!(a.watermark, 1000);
    }
}
