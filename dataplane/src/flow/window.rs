//! Capture windows: the window arithmetic, a sealed window as it leaves a worker, and the sink it goes to.
//!
//! # Guarantees
//! - A window starts at a multiple of the interval: `floor(t / interval) * interval` (SPEC.md, "Window timing").
//! - A [`SealedWindow`] is self-contained and `Send`: its flows (or the sealed flow table they are read from),
//!   the set of ENI slots that had traffic (OK or SKIPDATA) in it, the exact per-ENI recorded and SKIPDATA
//!   counts, and the ENI table(s) that name every slot it references (the meter refuses a table that drops a
//!   slot the open window references; see [`crate::flow::Meter::set_enis`]).

use std::sync::{Arc, OnceLock};

use super::eni::{Eni, EniSlot, EniTable};
use super::table::{FlowBatch, FlowEntry, FlowTable};

/// Start of the window holding `t`: `t - t % interval`. `interval` must be non-zero.
#[inline]
pub fn window_start(t: u64, interval: u64) -> u64 {
    t - t.checked_rem(interval).unwrap_or(0)
}

/// Packets and bytes that were not recorded as flows (SKIPDATA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SkipCounts {
    /// Packets not recorded.
    pub packets: u64,
    /// IP bytes not recorded.
    pub bytes: u64,
}

impl SkipCounts {
    /// Adds `other`.
    pub fn add(&mut self, other: SkipCounts) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }

    /// Whether nothing was skipped.
    pub fn is_zero(&self) -> bool {
        self.packets == 0 && self.bytes == 0
    }
}

/// A set of ENI slots (a bitset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EniSet {
    words: Vec<u64>,
}

impl EniSet {
    /// An empty set with room for slots below `slots` (it grows beyond on demand, off the hot path).
    pub fn with_slots(slots: usize) -> Self {
        EniSet {
            words: vec![0; slots.div_ceil(64)],
        }
    }

    /// Makes room for slots below `slots` without adding any.
    pub fn reserve_slots(&mut self, slots: usize) {
        let words = slots.div_ceil(64);
        if words > self.words.len() {
            self.words.resize(words, 0);
        }
    }

    /// Adds `slot`.
    #[inline]
    pub fn insert(&mut self, slot: EniSlot) {
        let word = slot.index() / 64;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        if let Some(w) = self.words.get_mut(word) {
            *w |= 1 << (slot.index() % 64);
        }
    }

    /// Whether `slot` is in the set.
    #[inline]
    pub fn contains(&self, slot: EniSlot) -> bool {
        self.words
            .get(slot.index() / 64)
            .is_some_and(|w| w & (1 << (slot.index() % 64)) != 0)
    }

    /// Adds every slot of `other`.
    pub fn union_with(&mut self, other: &EniSet) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w |= o;
        }
    }

    /// The slots, ascending.
    pub fn iter(&self) -> impl Iterator<Item = EniSlot> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            (0..64u32)
                .filter(move |b| w & (1 << b) != 0)
                // i < words.len() <= u32::MAX / 64 + 1: slots are u32.
                .map(move |b| EniSlot(i as u32 * 64 + b))
        })
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Empties the set, keeping its storage.
    pub fn clear(&mut self) {
        self.words.fill(0);
    }
}

/// A window sealed by a worker (or merged from several by [`crate::export::WindowMerger`]).
///
/// # Flows and the sealed table
/// A worker seals by swapping tables: the window then carries the worker's whole [`FlowTable`], with its
/// per-ENI totals, and nothing else is computed on the worker. The flows and the per-ENI counts are read out of
/// the table on the first call of an accessor ([`SealedWindow::flows`], [`SealedWindow::skipped`], ...: on the
/// exporter's thread, O(flows + ENIs), allocates). Give the table back to its meter with
/// [`SealedWindow::take_table`] and [`crate::flow::Meter::recycle_table`]; a window dropped with its table frees
/// it. A window without a table (merged, copied out, summarised, empty) carries its contents directly.
#[derive(Debug)]
pub struct SealedWindow {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) enis: Arc<EniTable>,
    pub(crate) older_enis: Vec<Arc<EniTable>>,
    /// The sealed flow table, while the window holds it.
    pub(crate) table: Option<FlowTable>,
    /// Flows and per-ENI counts: read out of `table` on first use, or set when sealed without a table.
    pub(crate) contents: OnceLock<Contents>,
    pub(crate) summarised: bool,
}

/// What a window holds once read out of its table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Contents {
    pub(crate) flows: FlowBatch,
    /// Per-ENI packets and bytes recorded in the flows (ascending by slot, no zero entries): what a summary
    /// turns into SKIPDATA in O(ENIs).
    pub(crate) recorded: Vec<(EniSlot, SkipCounts)>,
    pub(crate) skipped: Vec<(EniSlot, SkipCounts)>,
    pub(crate) active: EniSet,
}

impl Contents {
    /// The contents of `table`: its flows (when `with_flows`) and its per-ENI totals.
    pub(crate) fn of(table: &FlowTable, with_flows: bool) -> Contents {
        let mut contents = Contents::default();
        if with_flows {
            table.append_to(&mut contents.flows);
        }
        let totals = table.totals();
        contents.active = EniSet::with_slots(totals.len());
        for (index, t) in totals.iter().enumerate() {
            if t.is_zero() {
                continue;
            }
            // Slots fit in u32 (EniTable refuses more).
            let slot = EniSlot(index as u32);
            contents.active.insert(slot);
            if !t.recorded.is_zero() {
                contents.recorded.push((slot, t.recorded));
            }
            if !t.skipped.is_zero() {
                contents.skipped.push((slot, t.skipped));
            }
        }
        contents
    }
}

impl SealedWindow {
    /// Window start, Unix seconds (a multiple of the interval).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Window end, Unix seconds (start + interval).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The ENI table in effect when the window was sealed (the newest one, for a merged window): its captured
    /// ENIs are the ones that get NODATA.
    pub fn enis(&self) -> &Arc<EniTable> {
        &self.enis
    }

    /// Identity of `slot` as known to this window (the newest table first, then older tables of a merge).
    pub fn eni(&self, slot: EniSlot) -> Option<&Eni> {
        self.enis
            .eni(slot)
            .or_else(|| self.older_enis.iter().find_map(|t| t.eni(slot)))
    }

    /// The flows with their counts.
    pub fn flows(&self) -> &[FlowEntry] {
        self.contents().flows.entries()
    }

    /// Whether the window still holds its worker's sealed flow table (see [`SealedWindow::take_table`]).
    pub fn holds_table(&self) -> bool {
        self.table.is_some()
    }

    /// Takes the sealed flow table out, emptied, for [`crate::flow::Meter::recycle_table`]; the window's
    /// contents stay readable (they are read out of the table first, O(flows)). Call it off the worker's thread
    /// (the exporter), before handing the window to a [`crate::export::WindowMerger`] (which frees the tables of
    /// the windows it merges). `None` when the window holds no table.
    pub fn take_table(&mut self) -> Option<FlowTable> {
        let _ = self.contents();
        let mut table = self.table.take()?;
        table.clear();
        Some(table)
    }

    /// Whether `slot` had traffic (recorded or skipped) in the window.
    pub fn had_traffic(&self, slot: EniSlot) -> bool {
        self.contents().active.contains(slot)
    }

    /// The slots that had traffic (recorded or skipped) in the window.
    pub fn active(&self) -> &EniSet {
        &self.contents().active
    }

    /// Per-ENI SKIPDATA counts, ascending by slot, no zero entries.
    pub fn skipped(&self) -> &[(EniSlot, SkipCounts)] {
        &self.contents().skipped
    }

    /// Per-ENI packets and bytes of the flows (OK records), ascending by slot, no zero entries.
    pub fn recorded(&self) -> &[(EniSlot, SkipCounts)] {
        &self.contents().recorded
    }

    /// Whether the window is a summary: its flows were turned into SKIPDATA (the seal sink refused it, or no
    /// spare table was free under [`crate::flow::SpareTableFallback::SkipData`]).
    pub fn is_summary(&self) -> bool {
        self.summarised
    }

    /// Gives the flow storage back (e.g. to [`crate::flow::Meter::recycle`]); a sealed table still held is
    /// freed.
    pub fn into_flows(mut self) -> FlowBatch {
        self.take_contents().flows
    }

    /// The contents, read out of the table on first use.
    pub(crate) fn contents(&self) -> &Contents {
        self.contents.get_or_init(|| match &self.table {
            Some(table) => Contents::of(table, true),
            None => Contents::default(),
        })
    }

    /// Reads the contents out (if still in the table) and takes them; the table stays.
    pub(crate) fn take_contents(&mut self) -> Contents {
        let _ = self.contents();
        self.contents.take().unwrap_or_default()
    }

    /// Turns the window into a summary in O(ENIs) once its contents are read (O(flows) if they are still in
    /// the table): every recorded packet and byte becomes SKIPDATA of its ENI. Returns the sealed table (emptied)
    /// and the flow storage, both for reuse, and the (packets, bytes) moved.
    pub(crate) fn summarise(&mut self) -> (Option<FlowTable>, FlowBatch, SkipCounts) {
        let mut contents = match self.table.take() {
            // Only the totals are needed: the flows are not read out.
            Some(table) if self.contents.get().is_none() => {
                let contents = Contents::of(&table, false);
                self.table = Some(table);
                contents
            }
            table => {
                self.table = table;
                self.take_contents()
            }
        };
        let mut moved = SkipCounts::default();
        let mut skipped = std::mem::take(&mut contents.skipped);
        for &(slot, counts) in &contents.recorded {
            moved.add(counts);
            skipped.push((slot, counts));
        }
        contents.recorded.clear();
        contents.skipped = merge_skips(skipped);
        let mut flows = std::mem::take(&mut contents.flows);
        flows.clear();
        self.contents = OnceLock::from(contents);
        self.summarised = true;
        let mut table = self.table.take();
        if let Some(t) = &mut table {
            t.clear();
        }
        (table, flows, moved)
    }
}

/// A copy with the contents read out and without the sealed table (tables are not duplicated).
impl Clone for SealedWindow {
    fn clone(&self) -> Self {
        SealedWindow {
            start: self.start,
            end: self.end,
            enis: Arc::clone(&self.enis),
            older_enis: self.older_enis.clone(),
            table: None,
            contents: OnceLock::from(self.contents().clone()),
            summarised: self.summarised,
        }
    }
}

/// Sorts by slot and sums entries of the same slot; drops zero entries.
pub(crate) fn merge_skips(mut skips: Vec<(EniSlot, SkipCounts)>) -> Vec<(EniSlot, SkipCounts)> {
    skips.sort_unstable_by_key(|(slot, _)| *slot);
    skips.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1.add(later.1);
            true
        } else {
            false
        }
    });
    skips.retain(|(_, c)| !c.is_zero());
    skips
}

/// Where a meter delivers sealed windows (e.g. an SPSC ring to the exporter).
pub trait SealSink {
    /// Takes `window`, or gives it back when it cannot (ring full). The meter then keeps a small SKIPDATA
    /// summary of it and delivers that before the next window that the sink accepts.
    #[allow(
        clippy::result_large_err,
        reason = "the refused window must come back whole; it moves once per window, off the hot path"
    )]
    fn seal(&mut self, window: SealedWindow) -> Result<(), SealedWindow>;
}

/// Collects every window (tests, replay).
impl SealSink for Vec<SealedWindow> {
    fn seal(&mut self, window: SealedWindow) -> Result<(), SealedWindow> {
        self.push(window);
        Ok(())
    }
}

impl<S: SealSink + ?Sized> SealSink for &mut S {
    fn seal(&mut self, window: SealedWindow) -> Result<(), SealedWindow> {
        (**self).seal(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_alignment() {
        assert_eq!(window_start(1_700_000_000, 60), 1_699_999_980);
        assert_eq!(window_start(1_700_000_040, 60), 1_700_000_040);
        assert_eq!(window_start(59, 60), 0);
        assert_eq!(window_start(5, 0), 5);
    }

    #[test]
    fn eni_set() {
        let mut s = EniSet::with_slots(10);
        assert!(s.is_empty());
        s.insert(EniSlot(3));
        s.insert(EniSlot(200));
        assert!(s.contains(EniSlot(3)) && s.contains(EniSlot(200)) && !s.contains(EniSlot(4)));
        let mut t = EniSet::default();
        t.insert(EniSlot(64));
        t.union_with(&s);
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            vec![EniSlot(3), EniSlot(64), EniSlot(200)]
        );
        t.clear();
        assert!(t.is_empty());
    }

    #[test]
    fn skips_merge() {
        let c = |p| SkipCounts {
            packets: p,
            bytes: p * 10,
        };
        let merged = merge_skips(vec![
            (EniSlot(2), c(1)),
            (EniSlot(1), c(2)),
            (EniSlot(2), c(3)),
            (EniSlot(5), c(0)),
        ]);
        assert_eq!(merged, vec![(EniSlot(1), c(2)), (EniSlot(2), c(4))]);
    }
}
