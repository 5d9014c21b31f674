//! The per-worker flow meter: frames and their times in, sealed windows out.
//!
//! A [`Meter`] owns one worker's flow table, fragment table, open window, counters and current ENI table. The
//! caller passes the clock in (`now_secs`: the packet's or the burst's time); the meter never reads one.
//!
//! # Window lifecycle
//! - The meter is *stopped* until [`Meter::start`] or the first frame (even a malformed one), which opens the
//!   window holding that time. From then on it is *running*: there is always an open window.
//! - A frame whose time lies in a later window seals the open window and every window in between (empty ones
//!   carry NODATA for every captured ENI), then opens its own: while running, the sealed windows are contiguous.
//! - A frame older than the open window is counted into the open window and counted as `late` (packet clocks
//!   of different ports or queues interleave slightly; windows already sealed are never reopened).
//! - [`Meter::advance`] is the clock tick of live mode: once `now` reaches the open window's end it seals it and
//!   every window up to the one holding `now` (NODATA for windows without traffic), and opens that one. It
//!   opens nothing while stopped: live mode calls [`Meter::start`] when capture begins.
//! - [`Meter::flush`] seals the open window now (end of capture, shutdown) and stops the meter. A later frame or
//!   `start` resumes it at the window after the flushed one at the earliest (an older frame is `late` into it),
//!   so a worker never seals the same window twice; windows while stopped are not sealed.
//! - A time jump of more than `max_gap_windows` empty windows seals none of them (counted in
//!   `gap_windows_skipped`): a bounded answer to a corrupt timestamp.
//!
//! # Accounting
//! A parsed packet is attributed by MAC ([`EniTable::lookup`]): source MAC -> `out` for that ENI, destination
//! MAC -> `in`; both when both are captured ENIs. Each attribution adds one packet and the IP length to its
//! flow, or, when the flow table is full, to that ENI's SKIPDATA counts for the window: so every attributed
//! packet is counted exactly once, as OK or SKIPDATA. Non-IP, malformed and unattributed frames are counted only.
//!
//! # Refused seals
//! When the [`SealSink`] refuses a window, the meter turns it into a summary (every flow's packets and bytes
//! become its ENI's SKIPDATA, see [`SealedWindow::is_summary`]) and keeps it; summaries are offered again, in
//! order and before any newer window, at the next seal, `advance` or `flush`. At most `max_pending_windows`
//! summaries are kept; beyond that the oldest is dropped and counted (`pending_dropped_*`).
//!
//! # Hot path
//! `account` allocates nothing and hashes no string: one parse, one or two MAC lookups, one flow-table probe per
//! attribution. Allocation happens only when a window is sealed (its flow batch, unless recycled with
//! [`Meter::recycle`], and its ENI set) and in `set_enis`.

use std::collections::VecDeque;
use std::sync::Arc;

use super::counters::MeterCounters;
use super::eni::{EniSlot, EniTable};
use super::fragment::{FragmentOutcome, FragmentTable};
use super::key::{Action, Direction, FlowKey};
use super::table::{FlowBatch, FlowTable, MAX_FLOW_CAPACITY};
use super::window::{EniSet, SealSink, SealedWindow, SkipCounts, window_start};
use crate::wire::{Discard, Packet, parse};

/// Configuration of a [`Meter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterConfig {
    /// Capture window length in seconds (> 0); windows are aligned to multiples of it.
    pub interval_secs: u32,
    /// Most flows per window (1..=2^30); the flow table is allocated for them at creation.
    pub flow_capacity: usize,
    /// Cells of the fragment table (default 4096).
    pub fragment_capacity: usize,
    /// Seconds a first fragment's ports stay available to its non-first fragments (default 30).
    pub fragment_timeout_secs: u32,
    /// Most empty windows sealed for one time jump (default 10,000); a longer jump seals none of them.
    pub max_gap_windows: u64,
    /// Most refused-window summaries kept for later delivery (default 1024).
    pub max_pending_windows: usize,
}

impl MeterConfig {
    /// A configuration with the given interval and flow capacity and the defaults for the rest.
    pub fn new(interval_secs: u32, flow_capacity: usize) -> Self {
        MeterConfig {
            interval_secs,
            flow_capacity,
            fragment_capacity: 4096,
            fragment_timeout_secs: 30,
            max_gap_windows: 10_000,
            max_pending_windows: 1024,
        }
    }
}

/// Errors of creating a [`Meter`] or changing its ENI table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeterError {
    /// `interval_secs` is 0.
    #[error("the capture interval must be at least one second")]
    ZeroInterval,
    /// `flow_capacity` is 0 or above 2^30.
    #[error("flow capacity {0} is outside 1..=2^30")]
    FlowCapacity(usize),
    /// The new ENI table is not of the meter's table lineage, so its slots mean other ENIs.
    #[error(
        "the ENI table is not derived from the meter's table (lineage {got}, expected {expected})"
    )]
    UnrelatedTable {
        /// The meter's lineage.
        expected: u64,
        /// The new table's lineage.
        got: u64,
    },
    /// The new ENI table gives a slot that has traffic in the open window to another ENI (its tombstone was
    /// reclaimed and reused too early); the meter keeps its current table.
    #[error("ENI slot {0:?} has traffic in the open window but is missing from the new table")]
    SlotReclaimed(EniSlot),
}

/// One worker's flow meter (see the module docs).
#[derive(Debug)]
pub struct Meter {
    interval: u64,
    config: MeterConfig,
    enis: Arc<EniTable>,
    table: FlowTable,
    fragments: FragmentTable,
    /// Start of the open window while running.
    open: Option<u64>,
    /// While stopped after a flush: the earliest window a restart may open.
    resume_at: Option<u64>,
    active: EniSet,
    /// Tables replaced during the open window that still name slots it references.
    window_older_enis: Vec<Arc<EniTable>>,
    /// SKIPDATA counts of the open window, by slot.
    skipped: Vec<SkipCounts>,
    any_skipped: bool,
    pending: VecDeque<SealedWindow>,
    spare: Vec<FlowBatch>,
    counters: MeterCounters,
}

impl Meter {
    /// A stopped meter capturing the ENIs of `enis`; allocates its flow and fragment tables now.
    pub fn new(config: MeterConfig, enis: Arc<EniTable>) -> Result<Meter, MeterError> {
        if config.interval_secs == 0 {
            return Err(MeterError::ZeroInterval);
        }
        if config.flow_capacity == 0 || config.flow_capacity > MAX_FLOW_CAPACITY {
            return Err(MeterError::FlowCapacity(config.flow_capacity));
        }
        let slots = enis.slot_count();
        Ok(Meter {
            interval: u64::from(config.interval_secs),
            table: FlowTable::with_capacity(config.flow_capacity),
            fragments: FragmentTable::new(
                config.fragment_capacity,
                u64::from(config.fragment_timeout_secs),
            ),
            config,
            enis,
            open: None,
            resume_at: None,
            active: EniSet::with_slots(slots),
            window_older_enis: Vec::new(),
            skipped: vec![SkipCounts::default(); slots],
            any_skipped: false,
            pending: VecDeque::new(),
            spare: Vec::new(),
            counters: MeterCounters::default(),
        })
    }

    /// Replaces the ENI table for the next frames, without pausing. `enis` must continue the current table's
    /// lineage ([`EniTable::to_builder`]) and must not give a slot with traffic in the open window to another
    /// ENI; otherwise the meter keeps its table and returns an error. If it freed such a slot (reclaimed
    /// tombstone, not reused), the open window keeps the current table too, to name the slot in its records.
    pub fn set_enis(&mut self, enis: Arc<EniTable>) -> Result<(), MeterError> {
        if enis.lineage() != self.enis.lineage() {
            return Err(MeterError::UnrelatedTable {
                expected: self.enis.lineage(),
                got: enis.lineage(),
            });
        }
        let mut keep_old = false;
        for slot in self.active.iter() {
            match (self.enis.eni(slot), enis.eni(slot)) {
                (Some(old), Some(new)) if old.id != new.id => {
                    return Err(MeterError::SlotReclaimed(slot));
                }
                // Freed but not reused: the open window keeps the current table to name the slot.
                (Some(_), None) => keep_old = true,
                _ => {}
            }
        }
        if keep_old {
            self.window_older_enis.push(Arc::clone(&self.enis));
        }
        let slots = enis.slot_count();
        if self.skipped.len() < slots {
            self.skipped.resize(slots, SkipCounts::default());
        }
        self.active.reserve_slots(slots);
        self.enis = enis;
        Ok(())
    }

    /// Starts capturing at `now_secs` if stopped: opens the window holding it (live mode). No-op when running.
    pub fn start(&mut self, now_secs: u64) {
        if self.open.is_none() {
            let mut start = window_start(now_secs, self.interval);
            if let Some(resume) = self.resume_at.take() {
                start = start.max(resume);
            }
            self.open = Some(start);
        }
    }

    /// Accounts one frame: `frame` is the captured bytes, `wire_len` its length on the wire, `now_secs` its
    /// time, `action` the security-group verdict. Windows this frame closes are sealed into `out` first.
    #[inline]
    pub fn account(
        &mut self,
        now_secs: u64,
        frame: &[u8],
        wire_len: usize,
        action: Action,
        out: &mut impl SealSink,
    ) {
        self.counters.frames += 1;
        self.counters.frame_bytes += wire_len.max(frame.len()) as u64;
        self.roll_to(now_secs, out);
        match parse(frame, wire_len) {
            Ok(packet) => self.account_packet(now_secs, packet, action),
            Err(Discard::NonIp) => self.counters.non_ip += 1,
            Err(Discard::Malformed(reason)) => self.counters.count_malformed(reason),
        }
    }

    /// Clock tick without a frame (live mode): seals the open window and every later one that has ended by
    /// `now_secs`, and opens the window holding `now_secs`. Also retries refused windows. Does nothing else
    /// while stopped.
    pub fn advance(&mut self, now_secs: u64, out: &mut impl SealSink) {
        match self.open {
            Some(open) if now_secs >= open.saturating_add(self.interval) => {
                self.roll_to(now_secs, out)
            }
            _ => {
                self.deliver_pending(out);
            }
        }
    }

    /// Seals the open window now and stops the meter (end of capture, shutdown). Also retries refused windows;
    /// call it again to retry if [`Meter::pending_windows`] is not 0.
    pub fn flush(&mut self, out: &mut impl SealSink) {
        if let Some(open) = self.open.take() {
            self.seal(open, out);
            self.resume_at = Some(open.saturating_add(self.interval));
        } else {
            self.deliver_pending(out);
        }
    }

    /// Hands back the flow storage of a rendered window, so the next seal does not allocate.
    pub fn recycle(&mut self, mut flows: FlowBatch) {
        if self.spare.len() < 4 {
            flows.clear();
            self.spare.push(flows);
        }
    }

    /// The counters.
    pub fn counters(&self) -> &MeterCounters {
        &self.counters
    }

    /// Start of the open window, `None` while stopped.
    pub fn open_window(&self) -> Option<u64> {
        self.open
    }

    /// Refused windows (summaries) waiting for delivery.
    pub fn pending_windows(&self) -> usize {
        self.pending.len()
    }

    /// The ENI table in effect.
    pub fn enis(&self) -> &Arc<EniTable> {
        &self.enis
    }

    /// The configuration.
    pub fn config(&self) -> &MeterConfig {
        &self.config
    }

    /// Flows in the open window.
    pub fn open_flows(&self) -> usize {
        self.table.len()
    }

    /// Makes the window holding `now` the open one, sealing what it closes; counts `late` frames.
    #[inline]
    fn roll_to(&mut self, now: u64, out: &mut impl SealSink) {
        if let Some(open) = self.open
            && now >= open
            && now - open < self.interval
        {
            // The common case: the frame belongs to the open window (no division).
            return;
        }
        let target = window_start(now, self.interval);
        let Some(open) = self.open else {
            let start = match self.resume_at.take() {
                Some(resume) if target < resume => {
                    self.counters.late += 1;
                    resume
                }
                _ => target,
            };
            self.open = Some(start);
            return;
        };
        if target == open {
            return;
        }
        if target < open {
            self.counters.late += 1;
            return;
        }
        self.seal(open, out);
        let empty = (target - open) / self.interval - 1;
        if empty > self.config.max_gap_windows {
            self.counters.gap_windows_skipped += empty;
        } else {
            let mut start = open + self.interval;
            while start < target {
                self.seal(start, out);
                start += self.interval;
            }
        }
        self.open = Some(target);
    }

    #[inline]
    fn account_packet(&mut self, now: u64, mut packet: Packet, action: Action) {
        self.counters.ip_packets += 1;
        if packet.vni.is_some() {
            self.counters.vxlan_decapsulated += 1;
        }
        match self.fragments.resolve(&mut packet, now) {
            FragmentOutcome::NotFragment => {}
            FragmentOutcome::First { evicted } => {
                self.counters.fragments_first += 1;
                self.counters.fragment_evictions += u64::from(evicted);
            }
            FragmentOutcome::Matched => self.counters.fragments_non_first += 1,
            FragmentOutcome::Unmatched => {
                self.counters.fragments_non_first += 1;
                self.counters.fragments_unmatched += 1;
            }
        }
        let src = self.enis.lookup(packet.src_mac);
        let dst = self.enis.lookup(packet.dst_mac);
        if src.is_none() && dst.is_none() {
            self.counters.unattributed += 1;
            return;
        }
        if let Some(slot) = src {
            self.attribute(slot, Direction::Out, &packet, action);
        }
        if let Some(slot) = dst {
            self.attribute(slot, Direction::In, &packet, action);
        }
    }

    #[inline]
    fn attribute(&mut self, slot: EniSlot, direction: Direction, packet: &Packet, action: Action) {
        let key = FlowKey {
            src: packet.src,
            dst: packet.dst,
            eni: slot,
            src_port: packet.src_port,
            dst_port: packet.dst_port,
            protocol: packet.protocol,
            direction,
            action,
            family: packet.family,
        };
        let bytes = u64::from(packet.ip_len);
        self.counters.attributed += 1;
        self.counters.attributed_bytes += bytes;
        self.active.insert(slot);
        if !self.table.add(&key, bytes, packet.tcp_flags) {
            self.counters.table_full_packets += 1;
            self.counters.table_full_bytes += bytes;
            if let Some(skip) = self.skipped.get_mut(slot.index()) {
                skip.add(SkipCounts { packets: 1, bytes });
                self.any_skipped = true;
            }
        }
    }

    /// Seals the window starting at `start` with the open window's contents (empty after the first call).
    fn seal(&mut self, start: u64, out: &mut impl SealSink) {
        let mut flows = self.spare.pop().unwrap_or_default();
        self.table.drain_into(&mut flows);
        let mut skipped = Vec::new();
        if self.any_skipped {
            for (index, skip) in self.skipped.iter_mut().enumerate() {
                if !skip.is_zero() {
                    // Slots fit in u32 (EniTable refuses more).
                    skipped.push((EniSlot(index as u32), std::mem::take(skip)));
                }
            }
            self.any_skipped = false;
        }
        let active =
            std::mem::replace(&mut self.active, EniSet::with_slots(self.enis.slot_count()));
        let window = SealedWindow {
            start,
            end: start.saturating_add(self.interval),
            enis: self.enis.clone(),
            older_enis: std::mem::take(&mut self.window_older_enis),
            flows,
            active,
            skipped,
            summarised: false,
        };
        if self.deliver_pending(out) {
            self.offer(window, out);
        } else {
            self.refused(window);
        }
    }

    /// Offers the pending summaries in order; true when none is left.
    fn deliver_pending(&mut self, out: &mut impl SealSink) -> bool {
        while let Some(window) = self.pending.pop_front() {
            match out.seal(window) {
                Ok(()) => self.counters.windows_sealed += 1,
                Err(window) => {
                    self.pending.push_front(window);
                    return false;
                }
            }
        }
        true
    }

    fn offer(&mut self, window: SealedWindow, out: &mut impl SealSink) {
        match out.seal(window) {
            Ok(()) => self.counters.windows_sealed += 1,
            Err(window) => self.refused(window),
        }
    }

    fn refused(&mut self, mut window: SealedWindow) {
        self.counters.windows_refused += 1;
        let (flows, moved) = window.summarise();
        self.counters.refused_packets += moved.packets;
        self.counters.refused_bytes += moved.bytes;
        self.recycle(flows);
        self.pending.push_back(window);
        while self.pending.len() > self.config.max_pending_windows.max(1) {
            if let Some(dropped) = self.pending.pop_front() {
                self.counters.pending_dropped_windows += 1;
                for (_, skip) in dropped.skipped() {
                    self.counters.pending_dropped_packets += skip.packets;
                    self.counters.pending_dropped_bytes += skip.bytes;
                }
            }
        }
    }
}
