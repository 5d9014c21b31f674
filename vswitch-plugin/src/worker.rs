//! A worker's state outside any packet source: its [`Meter`] and its link to the exporter. The DPDK poll loop,
//! the C ABI and replay all drive the same `Worker`, so every path meters and seals identically.
//!
//! # Hot path
//! Per burst: one read of the command ring and one of the table-return ring ([`Worker::poll_commands`]), then
//! [`Worker::account_burst`] (the meter parses the whole burst, looks every flow up, then updates). A seal swaps
//! in a spare table and pushes the full one to the SPSC ring; it never waits.

use std::time::Duration;

use flowlog_dataplane::flow::{Action, Burst, Meter, MeterCounters};

use crate::export::{WorkerCommand, WorkerEnd};

/// One worker: a meter and the rings to the exporter.
pub struct Worker {
    meter: Meter,
    end: WorkerEnd,
}

impl Worker {
    /// A worker metering with `meter` and sealing into `end`.
    pub fn new(meter: Meter, end: WorkerEnd) -> Self {
        Self { meter, end }
    }

    /// Applies the exporter's pending commands (a new ENI table) and takes back the flow tables it returned.
    /// Call once per burst, before its packets.
    #[inline]
    pub fn poll_commands(&mut self) {
        while let Some(table) = self.end.next_returned_table() {
            // A table of another shape, or one more than the pool holds, is simply dropped (freed) here.
            let _ = self.meter.recycle_table(table);
        }
        while let Some(command) = self.end.next_command() {
            match command {
                WorkerCommand::SetEnis(table) => {
                    if let Err(error) = self.meter.set_enis(table) {
                        // Tables come from the exporter's one lineage; a refusal is a bug worth seeing, not a crash.
                        tracing::error!(%error, "ENI table refused by the meter");
                    }
                }
            }
        }
    }

    /// Meters one frame at `now_secs`.
    #[inline]
    pub fn account(&mut self, now_secs: u64, frame: &[u8], wire_len: usize, action: Action) {
        let mut sink = self.end.sink();
        self.meter
            .account(now_secs, frame, wire_len, action, &mut sink);
    }

    /// Meters a burst of frames, all at `now_secs` (the burst-pipelined path: parse all, look all up, update).
    #[inline]
    pub fn account_burst(&mut self, now_secs: u64, burst: &Burst<'_>) {
        let mut sink = self.end.sink();
        self.meter.account_burst(now_secs, burst, &mut sink);
    }

    /// Meters frames one at a time through the burst path: each run of consecutive frames with the same second
    /// (at most [`MAX_BURST`](flowlog_dataplane::flow::MAX_BURST)) goes to one [`Worker::account_burst`] call.
    /// Call [`SecondRuns::push`] per frame, then [`SecondRuns::finish`].
    pub fn runs<'a>(&mut self) -> SecondRuns<'a, '_> {
        SecondRuns {
            worker: self,
            frames: Burst::new(),
            secs: None,
        }
    }

    /// Adds the TSC cycles a burst of `frames` took to the meter's counters (cycles per packet).
    #[inline]
    pub fn record_cycles(&mut self, cycles: u64, frames: u64) {
        self.meter.record_cycles(cycles, frames);
    }

    /// Starts the capture clock at `now_secs` (live capture: windows run from here even without traffic).
    pub fn start(&mut self, now_secs: u64) {
        self.meter.start(now_secs);
    }

    /// Clock tick without a packet: seals every window that ended by `now_secs`.
    #[inline]
    pub fn advance(&mut self, now_secs: u64) {
        let mut sink = self.end.sink();
        self.meter.advance(now_secs, &mut sink);
    }

    /// Seals the open window now and offers every sealed window to the exporter, without waiting: what the ring
    /// refuses stays with the meter (as exact SKIPDATA summaries) and is offered again at the next seal or tick.
    /// The worker stays usable; later packets of the flushed window are metered into the next window, so no
    /// window is sealed twice.
    pub fn flush(&mut self) {
        let mut sink = self.end.sink();
        self.meter.flush(&mut sink);
    }

    /// The meter's counters.
    pub fn counters(&self) -> &MeterCounters {
        self.meter.counters()
    }

    /// Seals the open window, hands every sealed window to the exporter (waiting for ring space, since the
    /// capture is over), and tells the exporter this worker is finished. Returns the final counters.
    pub fn finish(mut self) -> MeterCounters {
        loop {
            let mut sink = self.end.sink();
            self.meter.flush(&mut sink);
            if self.meter.pending_windows() == 0 {
                break;
            }
            if self.end.exporter_gone() {
                tracing::error!(
                    windows = self.meter.pending_windows(),
                    "exporter gone: sealed windows of this worker cannot be delivered"
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.end.mark_finished();
        self.meter.counters().clone()
    }
}

/// Frames gathered for [`Worker::account_burst`] by runs of the same second (see [`Worker::runs`]).
pub struct SecondRuns<'a, 'w> {
    worker: &'w mut Worker,
    frames: Burst<'a>,
    secs: Option<u64>,
}

impl<'a> SecondRuns<'a, '_> {
    /// Adds a frame metered at `secs`; meters the run so far first when the second changes or the run is full.
    #[inline]
    pub fn push(&mut self, secs: u64, frame: &'a [u8], wire_len: usize, action: Action) {
        if let Some(run_secs) = self.secs
            && (run_secs != secs || self.frames.is_full())
        {
            self.worker.account_burst(run_secs, &self.frames);
            self.frames.clear();
        }
        self.secs = Some(secs);
        // Not full: metered just above.
        let _ = self.frames.push(frame, wire_len, action);
    }

    /// Meters the last run.
    #[inline]
    pub fn finish(self) {
        if let Some(secs) = self.secs {
            self.worker.account_burst(secs, &self.frames);
        }
    }
}
