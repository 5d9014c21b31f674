//! Capture windows: the window arithmetic, a sealed window as it leaves a worker, and the sink it goes to.
//!
//! # Guarantees
//! - A window starts at a multiple of the interval: `floor(t / interval) * interval` (SPEC.md, "Window timing").
//! - A [`SealedWindow`] is self-contained and `Send`: its flows, the set of ENI slots that had traffic (OK or
//!   SKIPDATA) in it, the exact per-ENI SKIPDATA counts, and the ENI table(s) that name every slot it references
//!   (the meter refuses a table that drops a slot the open window references; see
//!   [`crate::flow::Meter::set_enis`]).

use std::sync::Arc;

use super::eni::{Eni, EniSlot, EniTable};
use super::table::{FlowBatch, FlowEntry};

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
#[derive(Debug, Clone)]
pub struct SealedWindow {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) enis: Arc<EniTable>,
    pub(crate) older_enis: Vec<Arc<EniTable>>,
    pub(crate) flows: FlowBatch,
    pub(crate) active: EniSet,
    pub(crate) skipped: Vec<(EniSlot, SkipCounts)>,
    pub(crate) summarised: bool,
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
        self.flows.entries()
    }

    /// Whether `slot` had traffic (recorded or skipped) in the window.
    pub fn had_traffic(&self, slot: EniSlot) -> bool {
        self.active.contains(slot)
    }

    /// The slots that had traffic (recorded or skipped) in the window.
    pub fn active(&self) -> &EniSet {
        &self.active
    }

    /// Per-ENI SKIPDATA counts, ascending by slot, no zero entries.
    pub fn skipped(&self) -> &[(EniSlot, SkipCounts)] {
        &self.skipped
    }

    /// Whether the window is a summary: the seal sink refused it, so its flows were turned into SKIPDATA.
    pub fn is_summary(&self) -> bool {
        self.summarised
    }

    /// Gives the flow storage back (e.g. to [`crate::flow::Meter::recycle`]).
    pub fn into_flows(self) -> FlowBatch {
        self.flows
    }

    /// Turns the window into a summary: every flow's packets and bytes become SKIPDATA of its ENI. Returns the
    /// emptied flow storage and the (packets, bytes) moved.
    pub(crate) fn summarise(&mut self) -> (FlowBatch, SkipCounts) {
        let mut moved = SkipCounts::default();
        let mut skipped = std::mem::take(&mut self.skipped);
        for entry in self.flows.entries() {
            let counts = SkipCounts {
                packets: entry.counts.packets,
                bytes: entry.counts.bytes,
            };
            moved.add(counts);
            skipped.push((entry.key.eni, counts));
        }
        self.skipped = merge_skips(skipped);
        self.summarised = true;
        let mut flows = std::mem::take(&mut self.flows);
        flows.clear();
        (flows, moved)
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
