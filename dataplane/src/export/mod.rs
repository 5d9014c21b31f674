//! Sealed windows -> flow-log records: the [`Record`], its JSON line, and merging the windows of several workers.
//!
//! The exporter's path: per-worker [`crate::flow::SealedWindow`]s -> [`WindowMerger`] (one window per interval
//! once every worker has sealed it) -> [`records`] (OK, NODATA, SKIPDATA, canonical order) -> JSON lines
//! ([`write_jsonl`]) or another encoding built from [`Record`]'s fields.

mod merge;
mod record;
mod records;

pub use merge::{MergeError, WindowMerger};
pub use record::{LogStatus, RECORD_VERSION, Record};
pub use records::{records, sort_canonical, write_jsonl};

#[cfg(test)]
mod tests;
