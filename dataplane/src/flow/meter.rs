//! The per-worker flow meter: frames and their times in, sealed windows out.
//!
//! A [`Meter`] owns one worker's flow tables, fragment table, open window, counters and current ENI table. The
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
//! flow, or, when the flow table is full (or the flow's counters would overflow), to that ENI's SKIPDATA counts
//! for the window: so every attributed packet is counted exactly once, as OK or SKIPDATA. A full table never
//! evicts: exact SKIPDATA keeps every flow already recorded intact and costs nothing extra per packet. The meter
//! also keeps, per ENI, the packets and bytes recorded in the open window, so every summary below is O(ENIs).
//! Non-IP, malformed and unattributed frames are counted only.
//!
//! # Seal by swap
//! The meter holds the open window's [`FlowTable`] and a pool of `spare_tables` empty ones, all allocated and
//! pre-faulted by [`Meter::new`]. Sealing a window with flows swaps a spare table in (O(1)) and hands the full
//! one to the sink inside the [`SealedWindow`]; the worker's pause is O(ENIs): the per-ENI totals, a few small
//! vectors, the swap. The exporter reads the flows out ([`SealedWindow::flows`]) and returns the table
//! ([`SealedWindow::take_table`], then [`Meter::recycle_table`] on the worker; clearing is O(1)). An empty
//! window takes no table. A window of a million flows evicts the seal's code from every cache level, which
//! alone made the pause about a microsecond; so every 256 bursts the meter rehearses: it cuts a one-flow window
//! in a private meter of its own and takes the table back, running the same code (counted in
//! `seal_rehearsals`); it takes the window's `Arc<EniTable>` back too, so a rehearsal changes no reference
//! count. When no spare table is free, [`MeterConfig::when_no_spare_table`] decides:
//! - [`SpareTableFallback::Copy`] (default, for callers that never return tables): the flows are copied out into
//!   a [`FlowBatch`] on the worker (O(flows) pause) and the table is cleared and kept; no record changes.
//! - [`SpareTableFallback::SkipData`] (for a plugin that returns tables): the window is sealed as a summary, its
//!   recorded packets and bytes becoming exact per-ENI SKIPDATA (O(ENIs) pause), and the table is cleared (O(1))
//!   and kept. Counted in `seals_without_table`, `no_table_packets`, `no_table_bytes`.
//!
//! # Refused seals
//! When the [`SealSink`] refuses a window, the meter turns it into a summary in O(ENIs) (its recorded packets
//! and bytes become its ENIs' SKIPDATA, see [`SealedWindow::is_summary`]), puts its table back into the pool and
//! keeps the summary; summaries are offered again, in order and before any newer window, at the next seal,
//! `advance` or `flush`. At most `max_pending_windows` summaries are kept; beyond that the oldest is dropped and
//! counted (`pending_dropped_*`).
//!
//! # Hot path
//! [`Meter::account_burst`] handles a [`Burst`] of up to [`MAX_BURST`] frames at one time, in passes, so that the
//! cache misses of different packets overlap instead of queuing up:
//! 1. it prefetches every frame's first cache line, and the next one of a frame longer than 64 bytes (VXLAN's
//!    inner headers reach into it) (a prefetch retires at once: the misses of a NIC's frames overlap, and none
//!    is waited on here);
//! 2. it attributes each frame in order. A frame of the common shape (IPv4 without options, untagged or with
//!    one 802.1Q tag, not a fragment, not VXLAN) is read at fixed offsets without a loop
//!    ([`crate::wire::parse_common`]), its two MACs looked up with one 8-byte load each; any other frame goes
//!    out of line, where IPv4 and IPv6 (without extension headers) with up to two VLAN tags of any TPID are read
//!    at fixed offsets too ([`crate::wire::parse_common_tagged`], [`crate::wire::parse_common_v6`]), as is VXLAN
//!    over such IPv4 or IPv6 carrying an inner frame of either shape ([`crate::wire::parse_common_vxlan`], the inner
//!    frame's MACs), and the rest takes the full parser and the fragment table. Each attribution (one or two per
//!    packet) is staged as a hashed table key into a preallocated scratch array, writing only the words its key
//!    uses, and its home bucket starts loading at once (the table's first pass, one update at a time), so the
//!    rest of the burst's parsing hides that load: after a seal, when the fresh table is cold, this matters.
//!    The MAC lookup, the table's hashing secrets and the per-frame counters stay in a `Stager` split off the
//!    meter for the burst, not reloaded through the meter per packet; the out-of-line slow path is a function
//!    given only what it needs (not the stager), so the compiler can keep the stager in registers;
//! 3. [`FlowTable::load_entries`] finds each candidate entry and prefetches it, then
//!    [`FlowTable::apply_loaded`] updates in order (and, when the burst inserted flows, prefetches the arena's
//!    next lines for the next burst's inserts);
//! 4. it counts what the table refused (only when the table says it refused any), and touches the few lines a
//!    seal needs (so the seal finds them cached).
//!
//! Nothing per packet allocates, locks, touches a shared atomic, calls the system, logs or reads a clock.
//! [`Meter::account`] is the same path for one frame, without the passes (replay, the C ABI). Allocation happens
//! only at a seal that cannot swap (the copy fallback's flow batch, a refused window's summary) and in
//! `set_enis`.

use std::collections::VecDeque;
use std::sync::Arc;

use super::burst::{Burst, MAX_BURST};
use super::counters::MeterCounters;
use super::eni::{EniSlot, EniTable, MacLookup, raw_mac_at};
use super::fragment::{FragmentOutcome, FragmentTable};
use super::hint::prefetch;
use super::key::{Action, Direction};
use super::table::{
    AddOutcome, BucketLoader, DEFAULT_SEED, FlowBatch, FlowTable, FlowUpdate, Keyer,
    MAX_FLOW_CAPACITY, SharedKey, TableError,
};
use super::window::{Contents, SealSink, SealedWindow, window_start};
use crate::wire::{
    CommonIpv4, Discard, Packet, dot1q_tag_len, parse_common, parse_common_at, parse_common_v6_at,
    parse_into, vlan_tag_len, vxlan_at,
};

/// Counts what the table could not record (the table keeps the per-ENI totals itself).
#[inline]
fn count_outcomes(counters: &mut MeterCounters, updates: &[FlowUpdate]) {
    for update in updates {
        match update.outcome() {
            AddOutcome::Updated | AddOutcome::Inserted => {}
            AddOutcome::Full | AddOutcome::Pending => {
                counters.table_full_packets += 1;
                counters.table_full_bytes += update.bytes();
            }
            AddOutcome::Saturated => {
                counters.saturated_packets += 1;
                counters.saturated_bytes += update.bytes();
            }
        }
    }
}

/// What attributing a burst's packets needs, split off the [`Meter`]: the MAC lookup and the table's hashing as
/// values (a loop keeps them in registers instead of reloading them through the meter for every packet), the
/// scratch of updates, the fragment table, and the hot counters summed in registers until [`Stager::finish`].
struct Stager<'m> {
    macs: MacLookup<'m>,
    keyer: Keyer,
    buckets: BucketLoader<'m>,
    /// The burst's attributions, `staged` of them so far: a store and an increment each, with no capacity to
    /// check (a frame makes at most two).
    updates: &'m mut [FlowUpdate; 2 * MAX_BURST],
    staged: usize,
    fragments: &'m mut FragmentTable,
    counters: &'m mut MeterCounters,
    tally: Tally,
}

/// The counters every frame adds to, for one burst (frames and attributions are counted at its end).
#[derive(Default)]
struct Tally {
    frame_bytes: u64,
    ip_packets: u64,
    attributed_bytes: u64,
    unattributed: u64,
}

/// The ENIs of the source and destination MACs of the Ethernet frame at `at` in `frame` (the inner frame of
/// VXLAN, or the frame itself), with one 8-byte load each: a frame of a common shape holds at least
/// COMMON_FRAME_MIN (48) bytes from `at`, so both loads succeed.
#[inline(always)]
fn ends_at(macs: MacLookup<'_>, frame: &[u8], at: usize) -> (Option<EniSlot>, Option<EniSlot>) {
    (
        raw_mac_at(frame, at + 6).and_then(|mac| macs.lookup_raw(mac)),
        raw_mac_at(frame, at).and_then(|mac| macs.lookup_raw(mac)),
    )
}

/// The shared part of the keys of the IPv4 packet `c`.
#[inline(always)]
fn v4_key(c: &CommonIpv4) -> SharedKey {
    SharedKey::v4(
        u32::from_le_bytes(c.src),
        u32::from_le_bytes(c.dst),
        c.src_port,
        c.dst_port,
        c.protocol,
    )
}

/// What [`read_uncommon`] read of an IP packet: its attributions' shared key, ENIs and counts.
struct Uncommon {
    shared: SharedKey,
    src: Option<EniSlot>,
    dst: Option<EniSlot>,
    bytes: u64,
    tcp_flags: u8,
}

impl Uncommon {
    /// What the IPv4 packet `c` attributes to the ENIs `src` and `dst` (as [`Stager::common`] keys it).
    #[inline]
    fn v4(c: &CommonIpv4, src: Option<EniSlot>, dst: Option<EniSlot>) -> Uncommon {
        Uncommon {
            shared: v4_key(c),
            src,
            dst,
            bytes: u64::from(c.ip_len),
            tcp_flags: c.tcp_flags,
        }
    }

    /// What `packet` attributes to the ENIs `src` and `dst`.
    #[inline]
    fn of(packet: &Packet, src: Option<EniSlot>, dst: Option<EniSlot>) -> Uncommon {
        Uncommon {
            shared: SharedKey::new(
                packet.family,
                &packet.src,
                &packet.dst,
                packet.src_port,
                packet.dst_port,
                packet.protocol,
            ),
            src,
            dst,
            bytes: u64::from(packet.ip_len),
            tcp_flags: packet.tcp_flags,
        }
    }
}

/// Reads a frame that [`parse_common`] did not: IPv4 and IPv6 of the common shapes with up to two VLAN tags of any
/// TPID, and VXLAN over IPv4 or IPv6 carrying either, at fixed offsets; anything else with the full parser (discards,
/// fragments, other VXLAN, IPv4 options, IPv6 extension headers, more tags), counting what is not an
/// attribution's; `None` for a frame that is not an IP packet.
#[inline(never)]
fn read_uncommon(
    now: u64,
    frame: &[u8],
    wire_len: usize,
    macs: MacLookup<'_>,
    fragments: &mut FragmentTable,
    counters: &mut MeterCounters,
) -> Option<Uncommon> {
    // The common shapes at fixed offsets, with up to two VLAN tags of any TPID (QinQ), in this frame or in the
    // inner frame of VXLAN (whose MACs then count): IPv4 (unless `parse_common` already tried the same
    // tags on this frame), then IPv6; the full parser for the rest.
    let tags = vlan_tag_len(frame);
    let vxlan = vxlan_at(frame, wire_len, tags);
    let (l2_at, l2, l2_wire, l2_tags, tried) = match &vxlan {
        Some(v) => (
            v.inner_at,
            v.inner,
            v.inner_wire,
            vlan_tag_len(v.inner),
            false,
        ),
        None => (0, frame, wire_len, tags, tags == dot1q_tag_len(frame)),
    };
    let ends = || ends_at(macs, frame, l2_at);
    let fast = if tried {
        None
    } else {
        parse_common_at(l2, l2_wire, l2_tags).map(|c| {
            let (src, dst) = ends();
            Uncommon::v4(&c, src, dst)
        })
    }
    .or_else(|| {
        parse_common_v6_at(l2, l2_wire, l2_tags).map(|packet| {
            let (src, dst) = ends();
            Uncommon::of(&packet, src, dst)
        })
    });
    if let Some(u) = fast {
        if vxlan.is_some() {
            counters.vxlan_decapsulated += 1;
        }
        return Some(u);
    }
    let mut packet = Packet::default();
    match parse_into(frame, wire_len, &mut packet) {
        Ok(()) => {}
        Err(Discard::NonIp) => {
            counters.non_ip += 1;
            return None;
        }
        Err(Discard::Malformed(reason)) => {
            counters.count_malformed(reason);
            return None;
        }
    };
    if packet.vni.is_some() {
        counters.vxlan_decapsulated += 1;
    }
    if packet.fragment.is_some() {
        resolve_fragment(fragments, counters, &mut packet, now);
    }
    // The (inner, for VXLAN) frame's MACs.
    Some(Uncommon::of(
        &packet,
        macs.lookup(packet.src_mac),
        macs.lookup(packet.dst_mac),
    ))
}

fn resolve_fragment(
    fragments: &mut FragmentTable,
    counters: &mut MeterCounters,
    packet: &mut Packet,
    now: u64,
) {
    match fragments.resolve(packet, now) {
        FragmentOutcome::NotFragment => {}
        FragmentOutcome::First { evicted } => {
            counters.fragments_first += 1;
            counters.fragment_evictions += u64::from(evicted);
        }
        FragmentOutcome::Matched => counters.fragments_non_first += 1,
        FragmentOutcome::Unmatched => {
            counters.fragments_non_first += 1;
            counters.fragments_unmatched += 1;
        }
    }
}

impl Stager<'_> {
    /// Counts one frame and stages its attributions in the scratch array: a frame of the common shape from
    /// [`parse_common`]'s reading, any other out of line ([`read_uncommon`]).
    #[inline(always)]
    fn frame(&mut self, now: u64, frame: &[u8], wire_len: usize, action: Action) {
        self.tally.frame_bytes += wire_len.max(frame.len()) as u64;
        match parse_common(frame, wire_len) {
            Some(c) => self.common(frame, &c, action),
            None => {
                // Out of line, and given only what it needs: the stager itself stays in registers.
                if let Some(u) = read_uncommon(
                    now,
                    frame,
                    wire_len,
                    self.macs,
                    self.fragments,
                    self.counters,
                ) {
                    self.tally.ip_packets += 1;
                    self.attribute(&u.shared, u.src, u.dst, u.bytes, u.tcp_flags, action);
                }
            }
        }
    }

    /// Attributes a frame of the common shape.
    #[inline(always)]
    fn common(&mut self, frame: &[u8], c: &CommonIpv4, action: Action) {
        self.tally.ip_packets += 1;
        let (src, dst) = ends_at(self.macs, frame, 0);
        self.attribute(
            &v4_key(c),
            src,
            dst,
            u64::from(c.ip_len),
            c.tcp_flags,
            action,
        );
    }

    /// Stages the packet's attributions: `out` for the source ENI, `in` for the destination ENI.
    #[inline(always)]
    fn attribute(
        &mut self,
        shared: &SharedKey,
        src: Option<EniSlot>,
        dst: Option<EniSlot>,
        bytes: u64,
        tcp_flags: u8,
        action: Action,
    ) {
        if src.is_none() && dst.is_none() {
            self.tally.unattributed += 1;
            return;
        }
        for (slot, direction) in [(src, Direction::Out), (dst, Direction::In)] {
            if let Some(slot) = slot {
                self.tally.attributed_bytes += bytes;
                // At most 2 * MAX_BURST attributions are staged before they are applied.
                if let Some(update) = self.updates.get_mut(self.staged) {
                    self.keyer
                        .stage(shared, slot, direction, action, bytes, tcp_flags, update);
                    self.buckets.load(update);
                    self.staged += 1;
                }
            }
        }
    }

    /// Adds the sums of a burst of `frames` frames to the meter's counters; returns how many attributions it
    /// staged (each one counted in `attributed`).
    #[inline]
    fn finish(self, frames: usize) -> usize {
        let (c, t) = (self.counters, self.tally);
        c.frames += frames as u64;
        c.frame_bytes += t.frame_bytes;
        c.ip_packets += t.ip_packets;
        c.attributed += self.staged as u64;
        c.attributed_bytes += t.attributed_bytes;
        c.unattributed += t.unattributed;
        self.staged
    }
}

/// What a seal does when the window has flows and no spare table is free (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpareTableFallback {
    /// Copy the flows out on the worker (O(flows) pause), keep the table: records stay exact.
    #[default]
    Copy,
    /// Seal a summary (exact per-ENI SKIPDATA, O(ENIs) pause), clear and keep the table.
    SkipData,
}

/// Configuration of a [`Meter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterConfig {
    /// Capture window length in seconds (> 0); windows are aligned to multiples of it.
    pub interval_secs: u32,
    /// Size of each flow table in units (1..=2^30): that many IPv4 flows per window, an IPv6 flow taking two
    /// units. Each table takes about 43.4 bytes per unit ([`crate::flow::IPV4_BYTES_PER_FLOW`]).
    pub flow_capacity: usize,
    /// Empty flow tables kept for seal-by-swap (default 2); the meter allocates `1 + spare_tables` tables.
    pub spare_tables: usize,
    /// What a seal does when no spare table is free (default [`SpareTableFallback::Copy`]).
    pub when_no_spare_table: SpareTableFallback,
    /// Seed of the flow tables' hash (default a fixed constant); give each worker a random one.
    pub hash_seed: u64,
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
            spare_tables: 2,
            when_no_spare_table: SpareTableFallback::Copy,
            hash_seed: DEFAULT_SEED,
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
    /// The flow tables could not be allocated.
    #[error("cannot allocate the flow tables: {0}")]
    TableAllocation(TableError),
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
    spare_tables: Vec<FlowTable>,
    fragments: FragmentTable,
    /// Start of the open window while running.
    open: Option<u64>,
    /// While stopped after a flush: the earliest window a restart may open.
    resume_at: Option<u64>,
    /// Tables replaced during the open window that still name slots it references.
    window_older_enis: Vec<Arc<EniTable>>,
    pending: VecDeque<SealedWindow>,
    spare_batches: Vec<FlowBatch>,
    /// Scratch of the burst being accounted (capacity `2 * MAX_BURST`: two attributions per frame).
    updates: Box<[FlowUpdate; 2 * MAX_BURST]>,
    /// `enis`, cloned ahead for the next seal (the clone's atomic increment stays out of the seal's pause).
    seal_enis: Option<Arc<EniTable>>,
    counters: MeterCounters,
    /// A one-flow meter of no ENI whose windows [`Meter::rehearse_seal`] cuts, so that the seal's code stays in
    /// cache; `None` in the rehearsal meter itself.
    rehearsal: Option<Box<Meter>>,
    /// Bursts since the last rehearsal.
    bursts_unrehearsed: u32,
}

/// Bursts between two seal rehearsals ([`Meter::rehearse_seal`]): about every half millisecond at 15 Mpps.
const REHEARSAL_BURSTS: u32 = 256;

impl Meter {
    /// A stopped meter capturing the ENIs of `enis`; allocates and pre-faults its `1 + spare_tables` flow
    /// tables and its fragment table now.
    pub fn new(config: MeterConfig, enis: Arc<EniTable>) -> Result<Meter, MeterError> {
        let mut meter = Meter::without_rehearsal(config, enis)?;
        let mut small = MeterConfig::new(1, 1);
        small.spare_tables = 1;
        small.fragment_capacity = 1;
        let nobody = Arc::new(EniTable::builder().build());
        let mut rehearsal = Meter::without_rehearsal(small, nobody)?;
        // The rehearsal's flow is on slot 0: its totals are reserved now, so no rehearsal allocates.
        rehearsal.table.reserve_enis(1);
        // Its cuts take the reference prepared here and rehearse_seal puts it back, so no rehearsal clones or
        // drops one.
        rehearsal.prepare_seal();
        for table in &mut rehearsal.spare_tables {
            table.reserve_enis(1);
        }
        meter.rehearsal = Some(Box::new(rehearsal));
        Ok(meter)
    }

    fn without_rehearsal(config: MeterConfig, enis: Arc<EniTable>) -> Result<Meter, MeterError> {
        if config.interval_secs == 0 {
            return Err(MeterError::ZeroInterval);
        }
        if config.flow_capacity == 0 || config.flow_capacity > MAX_FLOW_CAPACITY {
            return Err(MeterError::FlowCapacity(config.flow_capacity));
        }
        let slots = enis.slot_count();
        let table = |c: &MeterConfig| {
            let mut t = FlowTable::with_seed(c.flow_capacity, c.hash_seed)
                .map_err(MeterError::TableAllocation)?;
            t.reserve_enis(slots);
            Ok::<_, MeterError>(t)
        };
        let mut spare_tables = Vec::with_capacity(config.spare_tables + 1);
        for _ in 0..config.spare_tables {
            spare_tables.push(table(&config)?);
        }
        Ok(Meter {
            interval: u64::from(config.interval_secs),
            table: table(&config)?,
            spare_tables,
            fragments: FragmentTable::new(
                config.fragment_capacity,
                u64::from(config.fragment_timeout_secs),
            ),
            config,
            enis,
            open: None,
            resume_at: None,
            window_older_enis: Vec::new(),
            pending: VecDeque::new(),
            spare_batches: Vec::new(),
            updates: Box::new([FlowUpdate::UNUSED; 2 * MAX_BURST]),
            seal_enis: None,
            counters: MeterCounters::default(),
            rehearsal: None,
            bursts_unrehearsed: 0,
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
        for (index, totals) in self.table.totals().iter().enumerate() {
            if totals.is_zero() {
                continue;
            }
            // Slots fit in u32 (EniTable refuses more).
            let slot = EniSlot(index as u32);
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
        self.seal_enis = None;
        let slots = enis.slot_count();
        self.table.reserve_enis(slots);
        for table in &mut self.spare_tables {
            table.reserve_enis(slots);
        }
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
        if self.roll_to(now_secs, out) {
            self.counters.late += 1;
        }
        let mut stager = self.stager();
        stager.frame(now_secs, frame, wire_len, action);
        let staged = stager.finish(1);
        self.apply_now(staged);
    }

    /// Accounts a burst of frames received at `now_secs` (one clock read per burst): the same result as
    /// [`Meter::account`] for each frame in order at that time, with the frame and flow-table accesses of the
    /// whole burst overlapped (see "Hot path" in the module docs). Windows `now_secs` closes are sealed into
    /// `out` first. An empty burst does nothing.
    pub fn account_burst(&mut self, now_secs: u64, burst: &Burst<'_>, out: &mut impl SealSink) {
        if burst.is_empty() {
            return;
        }
        if self.roll_to(now_secs, out) {
            self.counters.late += burst.len() as u64;
        }
        // Start loading every frame's first line, so that their cache misses overlap, and the next one of a
        // longer frame (VXLAN's inner headers lie at bytes 50 to about 100); then attribute each frame in order.
        for frame in burst.frames() {
            if let Some(first) = frame.first() {
                prefetch(first);
            }
            if let Some(second) = frame.get(64) {
                prefetch(second);
            }
        }
        let mut stager = self.stager();
        for (frame, wire_len, action) in burst.iter() {
            stager.frame(now_secs, frame, wire_len, action);
        }
        let staged = stager.finish(burst.len());
        let updates = self.updates.get_mut(..staged).unwrap_or_default();
        let refused = self.table.refused();
        // Each update's home bucket was loaded as it was staged.
        self.table.load_entries(updates);
        self.table.apply_loaded(updates);
        if self.table.refused() != refused {
            count_outcomes(&mut self.counters, updates);
        }
        self.counters.table_occupancy = self.table.len() as u64;
        self.prepare_seal();
        self.bursts_unrehearsed += 1;
        if self.bursts_unrehearsed >= REHEARSAL_BURSTS {
            self.bursts_unrehearsed = 0;
            self.rehearse_seal();
        }
    }

    /// Adds a caller-measured cost: `cycles` (e.g. a TSC delta around a receive-and-account loop) spent on
    /// `frames` frames. Counted in `cycles` and `cycle_frames`, whose ratio is the cycles per packet.
    #[inline]
    pub fn record_cycles(&mut self, cycles: u64, frames: u64) {
        self.counters.cycles += cycles;
        self.counters.cycle_frames += frames;
    }

    /// Clock tick without a frame (live mode): seals the open window and every later one that has ended by
    /// `now_secs`, and opens the window holding `now_secs`. Also retries refused windows. Does nothing else
    /// while stopped.
    pub fn advance(&mut self, now_secs: u64, out: &mut impl SealSink) {
        match self.open {
            Some(open) if now_secs >= open.saturating_add(self.interval) => {
                self.roll_to(now_secs, out);
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

    /// Hands back the flow storage of a rendered window, so a later copy-out seal does not allocate.
    pub fn recycle(&mut self, mut flows: FlowBatch) {
        if self.spare_batches.len() < 4 {
            flows.clear();
            self.spare_batches.push(flows);
        }
    }

    /// Takes back a sealed window's flow table ([`SealedWindow::take_table`]) into the spare pool, clearing it
    /// in O(1). Gives it back when it is not of this meter's shape (capacity and seed) or the pool already
    /// holds `spare_tables` tables: drop it off the worker's thread.
    #[allow(
        clippy::result_large_err,
        reason = "the table must come back to the caller, who frees it off the worker's thread"
    )]
    pub fn recycle_table(&mut self, mut table: FlowTable) -> Result<(), FlowTable> {
        if !table.same_shape(&self.table) || self.spare_tables.len() >= self.config.spare_tables {
            return Err(table);
        }
        table.clear();
        table.reserve_enis(self.enis.slot_count());
        self.spare_tables.push(table);
        self.counters.tables_recycled += 1;
        Ok(())
    }

    /// Empty flow tables in the pool, ready for the next seal.
    pub fn spare_tables(&self) -> usize {
        self.spare_tables.len()
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

    /// Keeps the seal's path warm, once per burst (a handful of loads that hit the L1 cache): the next seal then
    /// finds the spare table, the pending queue, its counters and configuration in cache instead of paying a
    /// miss for each, and the ENI table already cloned for its window.
    #[inline]
    fn prepare_seal(&mut self) {
        if self.seal_enis.is_none() {
            self.seal_enis = Some(Arc::clone(&self.enis));
        }
        let warm = self.spare_tables.last().map_or(0, FlowTable::capacity)
            ^ self.pending.len()
            ^ self.window_older_enis.len()
            ^ self.spare_batches.len()
            ^ self.config.max_gap_windows as usize
            ^ self.counters.seals_swapped as usize
            ^ self.counters.windows_sealed as usize;
        std::hint::black_box(warm);
    }

    /// Makes the window holding `now` the open one, sealing what it closes. Returns whether `now` is older than
    /// the open window (its frames are `late`).
    #[inline]
    fn roll_to(&mut self, now: u64, out: &mut impl SealSink) -> bool {
        if let Some(open) = self.open
            && now >= open
            && now - open < self.interval
        {
            // The common case: the frame belongs to the open window (no division).
            return false;
        }
        self.roll_slow(now, out)
    }

    #[inline(never)]
    fn roll_slow(&mut self, now: u64, out: &mut impl SealSink) -> bool {
        let target = window_start(now, self.interval);
        let Some(open) = self.open else {
            let (start, late) = match self.resume_at.take() {
                Some(resume) if target < resume => (resume, true),
                _ => (target, false),
            };
            self.open = Some(start);
            return late;
        };
        if target == open {
            return false;
        }
        if target < open {
            return true;
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
        false
    }

    /// What attributing this burst's packets needs, split off the meter.
    #[inline]
    fn stager(&mut self) -> Stager<'_> {
        Stager {
            macs: self.enis.macs(),
            keyer: self.table.keyer(),
            buckets: self.table.bucket_loader(),
            updates: &mut self.updates,
            staged: 0,
            fragments: &mut self.fragments,
            counters: &mut self.counters,
            tally: Tally::default(),
        }
    }

    /// Applies the staged attributions of one frame to the flow table at once (no pipeline).
    #[inline]
    fn apply_now(&mut self, staged: usize) {
        let updates = self.updates.get_mut(..staged).unwrap_or_default();
        for update in updates.iter_mut() {
            *update = FlowUpdate::applied(
                update,
                self.table
                    .add_key(update.key(), update.bytes(), update.tcp_flags()),
            );
        }
        count_outcomes(&mut self.counters, updates);
        self.counters.table_occupancy = self.table.len() as u64;
    }

    /// Seals the window starting at `start` with the open window's contents (empty after the first call). With
    /// a spare table free this allocates nothing and does O(1) work besides the sink.
    fn seal(&mut self, start: u64, out: &mut impl SealSink) {
        let window = self.cut(start);
        if self.deliver_pending(out) {
            self.offer(window, out);
        } else {
            self.refused(window);
        }
    }

    /// The window starting at `start`, cut from the open window's contents (empty after the first call): the
    /// part of a seal that does not depend on the sink, so that [`Meter::rehearse_seal`] runs the same code.
    #[inline(never)]
    fn cut(&mut self, start: u64) -> SealedWindow {
        let enis = match self.seal_enis.take() {
            Some(enis) if Arc::ptr_eq(&enis, &self.enis) => enis,
            _ => Arc::clone(&self.enis),
        };
        let mut window = SealedWindow {
            start,
            end: start.saturating_add(self.interval),
            enis,
            older_enis: std::mem::take(&mut self.window_older_enis),
            table: None,
            contents: Default::default(),
            summarised: false,
        };
        if self.table.has_traffic() {
            if let Some(spare) = self.spare_tables.pop() {
                window.table = Some(std::mem::replace(&mut self.table, spare));
                self.counters.seals_swapped += 1;
            } else {
                self.seal_without_table(&mut window);
            }
        }
        self.counters.table_occupancy = 0;
        window
    }

    /// Cuts a window of one flow in the rehearsal meter and takes its table back, as a seal and the exporter's
    /// return do: a seal after a window of 1 M flows otherwise finds none of its code in cache, the table having
    /// evicted it, and pays about a microsecond of misses (see `benches/README.md`). Touches nothing of this
    /// meter but its counter; about a hundred nanoseconds every [`REHEARSAL_BURSTS`] bursts.
    #[cold]
    #[inline(never)]
    fn rehearse_seal(&mut self) {
        let Some(small) = self.rehearsal.as_deref_mut() else {
            return;
        };
        let key = small.table.keyer().key(
            &SharedKey::v4(0, 0, 0, 0, 0),
            EniSlot(0),
            Direction::Out,
            Action::Accept,
        );
        small.table.add_key(&key, 64, 0);
        // The table goes straight back, unread: reading a window's flows is the exporter's work, and allocates.
        let mut window = small.cut(0);
        if let Some(table) = window.table.take() {
            // The rehearsal meter's own table: it always fits its pool.
            let _ = small.recycle_table(table);
        }
        // So does the window's ENI table, for the next rehearsal's cut: a rehearsal changes no reference count
        // (an atomic read-modify-write).
        small.seal_enis = Some(window.enis);
        self.counters.seal_rehearsals += 1;
    }

    /// The open window's contents into `window` when no spare table is free (see
    /// [`MeterConfig::when_no_spare_table`]); out of line, so the swap path stays a few cache lines.
    #[cold]
    #[inline(never)]
    fn seal_without_table(&mut self, window: &mut SealedWindow) {
        match self.config.when_no_spare_table {
            SpareTableFallback::Copy => {
                let mut contents = Contents::of(&self.table, false);
                contents.flows = self.spare_batches.pop().unwrap_or_default();
                self.table.drain_into(&mut contents.flows);
                window.contents = contents.into();
                self.counters.seals_copied += 1;
            }
            SpareTableFallback::SkipData => {
                window.contents = Contents::of(&self.table, false).into();
                self.table.clear();
                let (_, _, moved) = window.summarise();
                self.counters.no_table_packets += moved.packets;
                self.counters.no_table_bytes += moved.bytes;
                self.counters.seals_without_table += 1;
            }
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
        let (table, flows, moved) = window.summarise();
        self.counters.refused_packets += moved.packets;
        self.counters.refused_bytes += moved.bytes;
        if let Some(table) = table {
            // Our own table, back from the window: it always fits the pool it came from.
            self.spare_tables.push(table);
        }
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
