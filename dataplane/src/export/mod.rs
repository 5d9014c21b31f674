//! Sealed windows -> flow-log records: the [`Record`], its JSON line, and merging the windows of several workers.
//!
//! The exporter's path: per-worker [`crate::flow::SealedWindow`]s -> [`WindowMerger`] (one window per interval
//! once every worker has sealed it) -> [`records`] (OK, NODATA, SKIPDATA, canonical order) -> JSON lines
//! ([`write_jsonl`]) or another encoding built from [`Record`]'s fields. A flow log aggregating at a longer
//! interval than the workers' gets its records through a [`Rollup`] (base windows -> its coarse windows).

mod merge;
mod record;
mod records;
mod rollup;

pub use merge::{MergeError, WindowMerger};
pub use record::{LogStatus, RECORD_VERSION, Record};
pub use records::{records, sort_canonical, write_jsonl};
pub use rollup::{CoarseWindow, Rollup, RollupError};

#[cfg(test)]
mod tests;
