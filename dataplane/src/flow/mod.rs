//! Flow metering: ENI attribution, flow keys, the per-worker flow table, capture windows and the [`Meter`].
//!
//! The packet path inside a worker: [`crate::wire::parse`] -> [`EniTable::lookup`] by MAC -> [`FlowKey`] ->
//! [`FlowTable`] of the open window (a [`Burst`] at a time through [`Meter::account_burst`]) -> at the window's
//! end a [`SealedWindow`] holding that table, pushed to a [`SealSink`] (the exporter's ring), while a spare
//! table takes its place. Everything here is owned by one worker and shared with no other, except the immutable
//! `Arc<EniTable>` snapshots and the sealed windows, which move to the exporter.

mod burst;
mod counters;
mod eni;
mod fragment;
mod hint;
mod key;
mod meter;
mod table;
mod window;

pub use crate::wire::MacAddr;
pub use burst::{Burst, BurstFull, MAX_BURST};
pub use counters::MeterCounters;
pub use eni::{Eni, EniSlot, EniTable, EniTableBuilder, EniTableError};
pub use key::{Action, Direction, FLOW_KEY_SIZE, FlowKey};
pub use meter::{Meter, MeterConfig, MeterError, SpareTableFallback};
pub use table::{
    AddOutcome, DEFAULT_SEED, EniTotals, FlowBatch, FlowCounts, FlowEntry, FlowTable, FlowUpdate,
    INDEX_BYTES_PER_UNIT, IPV4_BYTES_PER_FLOW, IPV4_ENTRY_BYTES, IPV4_MAX_PACKETS,
    IPV6_BYTES_PER_FLOW, IPV6_ENTRY_BYTES, MAX_FLOW_CAPACITY, SLOTS_PER_BUCKET, TableError,
    TableKey,
};
pub(crate) use window::merge_skips;
pub use window::{EniSet, SealSink, SealedWindow, SkipCounts, window_start};

#[cfg(test)]
mod tests;
