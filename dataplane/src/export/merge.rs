//! Merging the windows that several workers seal into one window per interval.
//!
//! Each worker's meter seals its own windows; the exporter pushes them here with the worker's index and pops
//! merged windows in start order.
//!
//! # When window W is complete
//! W is emitted once **every** worker either is finished ([`WindowMerger::finish`]) or has pushed a window
//! starting at or after W. This is sound because a worker's windows arrive in strictly increasing start order
//! (a running meter seals contiguous windows, empty ones included; see [`crate::flow::Meter`]): once a worker
//! has pushed W' >= W, it will never push W. A worker that has pushed nothing and is not finished holds every
//! window back (it may yet start at W): in live mode all workers are started together and tick with
//! `advance`, so each pushes every window; in replay, an idle worker is finished at the end. A worker whose
//! first window is later than W simply contributes nothing to W.
//!
//! # Merging
//! Flows with equal keys are merged (packets and bytes summed, TCP flags OR-ed), the traffic sets are united
//! (so an ENI is NODATA only if no worker saw it), SKIPDATA counts are summed per ENI. The merged window uses
//! the newest ENI table (highest generation) for NODATA and keeps the others to name slots only they know.
//! A single contribution is passed through unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::flow::SealedWindow;

/// Errors of [`WindowMerger::push`] and [`WindowMerger::finish`]: all are caller bugs, the window is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The worker index is not below the number of workers.
    #[error("unknown worker {worker} (merger of {workers})")]
    UnknownWorker {
        /// The index given.
        worker: usize,
        /// Number of workers.
        workers: usize,
    },
    /// The worker was already finished.
    #[error("worker {0} is finished")]
    Finished(usize),
    /// The worker pushed a window not after its previous one.
    #[error("worker {worker} pushed window {start} after window {previous}")]
    OutOfOrder {
        /// The worker.
        worker: usize,
        /// Start of the window pushed.
        start: u64,
        /// Start of the worker's previous window.
        previous: u64,
    },
    /// The window was already emitted.
    #[error("window {0} was already emitted")]
    AlreadyEmitted(u64),
    /// A window of the same start but another end (interval) is pending.
    #[error("window {start} has end {end}, another worker's has {other}")]
    IntervalMismatch {
        /// Window start.
        start: u64,
        /// This window's end.
        end: u64,
        /// The pending window's end.
        other: u64,
    },
    /// The window's ENI table is of another lineage than the other workers' tables.
    #[error("the window's ENI table is of another lineage")]
    UnrelatedTables,
}

#[derive(Debug, Clone, Default)]
struct Worker {
    last_start: Option<u64>,
    finished: bool,
}

/// Merges per-worker sealed windows (see the module docs).
#[derive(Debug)]
pub struct WindowMerger {
    workers: Vec<Worker>,
    pending: BTreeMap<u64, Vec<SealedWindow>>,
    /// Windows starting before this were emitted.
    emitted_before: u64,
    lineage: Option<u64>,
}

impl WindowMerger {
    /// A merger for `workers` workers, indexed `0..workers`.
    pub fn new(workers: usize) -> Self {
        WindowMerger {
            workers: vec![Worker::default(); workers],
            pending: BTreeMap::new(),
            emitted_before: 0,
            lineage: None,
        }
    }

    /// Takes a window sealed by `worker`.
    pub fn push(&mut self, worker: usize, window: SealedWindow) -> Result<(), MergeError> {
        let workers = self.workers.len();
        let state = self
            .workers
            .get(worker)
            .ok_or(MergeError::UnknownWorker { worker, workers })?;
        if state.finished {
            return Err(MergeError::Finished(worker));
        }
        if let Some(previous) = state.last_start
            && window.start() <= previous
        {
            return Err(MergeError::OutOfOrder {
                worker,
                start: window.start(),
                previous,
            });
        }
        if window.start() < self.emitted_before {
            return Err(MergeError::AlreadyEmitted(window.start()));
        }
        if self.lineage.is_some_and(|l| l != window.enis().lineage()) {
            return Err(MergeError::UnrelatedTables);
        }
        if let Some(other) = self
            .pending
            .get(&window.start())
            .and_then(|parts| parts.first())
            && other.end() != window.end()
        {
            return Err(MergeError::IntervalMismatch {
                start: window.start(),
                end: window.end(),
                other: other.end(),
            });
        }
        self.lineage = Some(window.enis().lineage());
        if let Some(state) = self.workers.get_mut(worker) {
            state.last_start = Some(window.start());
        }
        self.pending.entry(window.start()).or_default().push(window);
        Ok(())
    }

    /// Marks `worker` finished: it will push nothing more and holds no window back.
    pub fn finish(&mut self, worker: usize) -> Result<(), MergeError> {
        let workers = self.workers.len();
        let state = self
            .workers
            .get_mut(worker)
            .ok_or(MergeError::UnknownWorker { worker, workers })?;
        state.finished = true;
        Ok(())
    }

    /// The oldest complete window, merged; `None` when the oldest pending window is not complete yet.
    pub fn pop(&mut self) -> Option<SealedWindow> {
        let (&start, _) = self.pending.first_key_value()?;
        let complete = self
            .workers
            .iter()
            .all(|w| w.finished || w.last_start.is_some_and(|last| last >= start));
        if !complete {
            return None;
        }
        let (_, parts) = self.pending.pop_first()?;
        self.emitted_before = start.saturating_add(1);
        merge(parts)
    }

    /// Windows pushed and not yet emitted.
    pub fn pending_windows(&self) -> usize {
        self.pending.len()
    }

    /// Whether every worker is finished and every window emitted.
    pub fn is_done(&self) -> bool {
        self.pending.is_empty() && self.workers.iter().all(|w| w.finished)
    }
}

fn merge(mut parts: Vec<SealedWindow>) -> Option<SealedWindow> {
    if parts.len() <= 1 {
        return parts.pop();
    }
    let newest = parts
        .iter()
        .enumerate()
        .max_by_key(|(_, w)| w.enis().generation())
        .map_or(0, |(i, _)| i);
    let mut merged = parts.swap_remove(newest);
    let mut contents = merged.take_contents();
    let mut flows = std::mem::take(&mut contents.flows);
    let mut recorded = std::mem::take(&mut contents.recorded);
    let mut skipped = std::mem::take(&mut contents.skipped);
    for mut part in parts {
        if !Arc::ptr_eq(&part.enis, &merged.enis)
            && !merged.older_enis.iter().any(|t| Arc::ptr_eq(t, &part.enis))
        {
            merged.older_enis.push(Arc::clone(&part.enis));
        }
        for table in part.older_enis.drain(..) {
            if !merged.older_enis.iter().any(|t| Arc::ptr_eq(t, &table)) {
                merged.older_enis.push(table);
            }
        }
        let mut part_contents = part.take_contents();
        flows.append(&mut part_contents.flows);
        recorded.append(&mut part_contents.recorded);
        contents.active.union_with(&part_contents.active);
        skipped.append(&mut part_contents.skipped);
        merged.summarised |= part.summarised;
    }
    merged
        .older_enis
        .sort_by_key(|t| std::cmp::Reverse(t.generation()));
    flows.sort_and_merge();
    contents.flows = flows;
    contents.recorded = crate::flow::merge_skips(recorded);
    contents.skipped = crate::flow::merge_skips(skipped);
    merged.table = None;
    merged.contents = contents.into();
    Some(merged)
}
