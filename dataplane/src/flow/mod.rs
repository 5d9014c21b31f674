//! Flow metering: ENI attribution, flow keys, the per-worker flow table, capture windows and the [`Meter`].
//!
//! The packet path inside a worker: [`crate::wire::parse`] -> [`EniTable::lookup`] by MAC -> [`FlowKey`] ->
//! [`FlowTable`] of the open window -> at the window's end a [`SealedWindow`] pushed to a [`SealSink`] (the
//! exporter's ring). Everything here is owned by one worker and shared with no other, except the immutable
//! `Arc<EniTable>` snapshots and the sealed windows, which move to the exporter.

mod counters;
mod eni;
mod fragment;
mod key;
mod meter;
mod table;
mod window;

pub use crate::wire::MacAddr;
pub use counters::MeterCounters;
pub use eni::{Eni, EniSlot, EniTable, EniTableBuilder, EniTableError};
pub use key::{Action, Direction, FLOW_KEY_SIZE, FlowKey};
pub use meter::{Meter, MeterConfig, MeterError};
pub use table::{FlowBatch, FlowCounts, FlowEntry, FlowTable, MAX_FLOW_CAPACITY};
pub(crate) use window::merge_skips;
pub use window::{EniSet, SealSink, SealedWindow, SkipCounts, window_start};

#[cfg(test)]
mod tests;
