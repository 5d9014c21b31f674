//! The ENIs a worker captures: an immutable, shareable snapshot with stable slots and an O(1) MAC lookup.
//!
//! # Guarantees
//! - An ENI keeps its [`EniSlot`] across successive tables built with [`EniTable::to_builder`].
//! - A removed ENI leaves a tombstone: its identity stays readable through [`EniTable::eni`] (so records of the
//!   window it was removed in can still be rendered) but it is not captured: [`EniTable::lookup`] does not find
//!   its MAC and it gets no NODATA. Its slot is never handed to another ENI until the tombstone is reclaimed
//!   explicitly with [`EniTableBuilder::reclaim`], which the caller does only once every window that could
//!   reference the slot has been sealed and rendered (e.g. removed more than two intervals plus the export
//!   delay ago).
//! - [`EniTable::lookup`] is the per-packet path: one multiply, a few probes in an open-addressing array of
//!   `(u64, u32)` pairs kept at most a quarter full (a MAC that is no captured ENI's, such as a gateway's, ends
//!   its probe at the first empty cell: 1.4 probes on average, against 2.5 at half full), no hashing of
//!   strings, no allocation.
//! - Among the captured ENIs, ids and MACs are unique (else [`EniTableError`]).
//!
//! # Design
//! Tables form a lineage: [`EniTable::builder`] starts a new one, [`EniTable::to_builder`] continues it with a
//! higher [`EniTable::generation`]. A meter accepts only tables of its lineage, so slots never change meaning.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::wire::MacAddr;

/// Stable index of an ENI in its table lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct EniSlot(pub u32);

impl EniSlot {
    /// The slot as an index.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Identity of an elastic network interface, as records report it. Cheap to clone (shared strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eni {
    /// ENI id, e.g. `eni-00010`.
    pub id: Arc<str>,
    /// The ENI's MAC address: frames from it are `out`, frames to it are `in`.
    pub mac: MacAddr,
    /// Id of the VM the ENI is attached to.
    pub vm_id: Arc<str>,
    /// Id of the vSwitch (subnet) of the ENI.
    pub vswitch_id: Arc<str>,
    /// Id of the VPC of the ENI.
    pub vpc_id: Arc<str>,
    /// Id of the account owning the ENI.
    pub account_id: Arc<str>,
}

impl Eni {
    /// Builds an ENI identity.
    pub fn new(
        id: impl Into<Arc<str>>,
        mac: MacAddr,
        vm_id: impl Into<Arc<str>>,
        vswitch_id: impl Into<Arc<str>>,
        vpc_id: impl Into<Arc<str>>,
        account_id: impl Into<Arc<str>>,
    ) -> Self {
        Eni {
            id: id.into(),
            mac,
            vm_id: vm_id.into(),
            vswitch_id: vswitch_id.into(),
            vpc_id: vpc_id.into(),
            account_id: account_id.into(),
        }
    }
}

/// Errors of building an [`EniTable`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EniTableError {
    /// A captured ENI already has this id.
    #[error("duplicate ENI id {0}")]
    DuplicateId(Arc<str>),
    /// A captured ENI (named) already has this MAC address.
    #[error("MAC {mac} of ENI {id} is already used by ENI {existing}")]
    DuplicateMac {
        /// The contested MAC.
        mac: MacAddr,
        /// The ENI being inserted.
        id: Arc<str>,
        /// The captured ENI that has the MAC.
        existing: Arc<str>,
    },
    /// No captured ENI has this id.
    #[error("no captured ENI with id {0}")]
    UnknownId(String),
    /// More ENI slots than a `u32` can index.
    #[error("too many ENI slots")]
    TooManySlots,
}

#[derive(Debug, Clone)]
enum Entry {
    /// Captured: in the MAC index, gets NODATA.
    Captured(Eni),
    /// Removed at `removed_at` (caller's clock, seconds): identity kept, not captured, slot not reused.
    Tombstone { eni: Eni, removed_at: u64 },
    /// Reclaimed: reusable by the next insert.
    Free,
}

/// An immutable snapshot of the ENIs to capture. Share it as `Arc<EniTable>`.
#[derive(Debug, Clone)]
pub struct EniTable {
    lineage: u64,
    generation: u64,
    entries: Vec<Entry>,
    captured: usize,
    macs: MacIndex,
}

#[expect(
    clippy::disallowed_types,
    reason = "one increment per ENI table built (the control path), never per packet"
)]
static NEXT_LINEAGE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl EniTable {
    /// Starts a new, empty table lineage.
    pub fn builder() -> EniTableBuilder {
        EniTableBuilder {
            lineage: NEXT_LINEAGE.fetch_add(1, Ordering::Relaxed),
            generation: 0,
            entries: Vec::new(),
            ids: HashMap::new(),
            macs: HashMap::new(),
            free: Vec::new(),
        }
    }

    /// A table capturing exactly `enis` (a new lineage).
    pub fn from_enis(enis: impl IntoIterator<Item = Eni>) -> Result<EniTable, EniTableError> {
        let mut builder = EniTable::builder();
        for eni in enis {
            builder.insert(eni)?;
        }
        Ok(builder.build())
    }

    /// A builder that continues this table's lineage: every ENI keeps its slot, tombstones stay.
    pub fn to_builder(&self) -> EniTableBuilder {
        let mut ids = HashMap::new();
        let mut macs = HashMap::new();
        let mut free = Vec::new();
        for (index, entry) in self.entries.iter().enumerate() {
            // Slots fit in u32: the builder refuses more.
            let slot = index as u32;
            match entry {
                Entry::Captured(eni) => {
                    ids.insert(eni.id.clone(), slot);
                    macs.insert(eni.mac, slot);
                }
                Entry::Tombstone { eni, .. } => {
                    ids.insert(eni.id.clone(), slot);
                }
                Entry::Free => free.push(slot),
            }
        }
        free.reverse();
        EniTableBuilder {
            lineage: self.lineage,
            generation: self.generation,
            entries: self.entries.clone(),
            ids,
            macs,
            free,
        }
    }

    /// The captured ENI whose MAC is `mac`. The per-packet lookup.
    #[inline]
    pub fn lookup(&self, mac: MacAddr) -> Option<EniSlot> {
        self.macs.view().lookup(mac)
    }

    /// The MAC lookup as a value, for a loop over many packets.
    #[inline]
    pub(crate) fn macs(&self) -> MacLookup<'_> {
        self.macs.view()
    }

    /// Identity in `slot`: a captured ENI or a tombstone.
    pub fn eni(&self, slot: EniSlot) -> Option<&Eni> {
        match self.entries.get(slot.index())? {
            Entry::Captured(eni) | Entry::Tombstone { eni, .. } => Some(eni),
            Entry::Free => None,
        }
    }

    /// Whether `slot` holds a captured ENI (not a tombstone).
    pub fn is_captured(&self, slot: EniSlot) -> bool {
        matches!(self.entries.get(slot.index()), Some(Entry::Captured(_)))
    }

    /// The captured ENIs with their slots, in slot order.
    pub fn captured(&self) -> impl Iterator<Item = (EniSlot, &Eni)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| match entry {
                // Slots fit in u32: the builder refuses more.
                Entry::Captured(eni) => Some((EniSlot(index as u32), eni)),
                _ => None,
            })
    }

    /// The slot of the captured ENI or tombstone with this id.
    pub fn slot_of(&self, id: &str) -> Option<EniSlot> {
        self.entries
            .iter()
            .position(|entry| match entry {
                Entry::Captured(eni) | Entry::Tombstone { eni, .. } => &*eni.id == id,
                Entry::Free => false,
            })
            // Slots fit in u32: the builder refuses more.
            .map(|index| EniSlot(index as u32))
    }

    /// One past the highest slot in use: every slot of this table is below it.
    pub fn slot_count(&self) -> usize {
        self.entries.len()
    }

    /// Number of captured ENIs.
    pub fn len(&self) -> usize {
        self.captured
    }

    /// Whether no ENI is captured.
    pub fn is_empty(&self) -> bool {
        self.captured == 0
    }

    /// Identifies the lineage (see the module docs).
    pub fn lineage(&self) -> u64 {
        self.lineage
    }

    /// Rises by one with every table built in a lineage.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// Builds an [`EniTable`]; see [`EniTable::builder`] and [`EniTable::to_builder`].
#[derive(Debug, Clone)]
pub struct EniTableBuilder {
    lineage: u64,
    generation: u64,
    entries: Vec<Entry>,
    ids: HashMap<Arc<str>, u32>,
    macs: HashMap<MacAddr, u32>,
    /// Reclaimed slots, the lowest last.
    free: Vec<u32>,
}

impl EniTableBuilder {
    /// Captures `eni`. A tombstoned ENI with the same id comes back in its old slot (with the new identity);
    /// a new ENI takes the lowest reclaimed slot or a new one.
    pub fn insert(&mut self, eni: Eni) -> Result<EniSlot, EniTableError> {
        let existing = self.ids.get(&eni.id).copied();
        if let Some(slot) = existing
            && matches!(self.entries.get(slot as usize), Some(Entry::Captured(_)))
        {
            return Err(EniTableError::DuplicateId(eni.id));
        }
        if let Some(&other) = self.macs.get(&eni.mac) {
            let existing = match self.entries.get(other as usize) {
                Some(Entry::Captured(e)) => e.id.clone(),
                _ => Arc::from(""),
            };
            return Err(EniTableError::DuplicateMac {
                mac: eni.mac,
                id: eni.id,
                existing,
            });
        }
        let slot = match existing {
            Some(slot) => slot,
            None => match self.free.pop() {
                Some(slot) => slot,
                None => {
                    let slot = u32::try_from(self.entries.len())
                        .map_err(|_| EniTableError::TooManySlots)?;
                    self.entries.push(Entry::Free);
                    slot
                }
            },
        };
        self.ids.insert(eni.id.clone(), slot);
        self.macs.insert(eni.mac, slot);
        if let Some(entry) = self.entries.get_mut(slot as usize) {
            *entry = Entry::Captured(eni);
        }
        Ok(EniSlot(slot))
    }

    /// Stops capturing the ENI `id` at `now_secs` (the caller's clock): it becomes a tombstone.
    pub fn remove(&mut self, id: &str, now_secs: u64) -> Result<EniSlot, EniTableError> {
        let unknown = || EniTableError::UnknownId(id.to_owned());
        let slot = *self.ids.get(id).ok_or_else(unknown)?;
        let entry = self.entries.get_mut(slot as usize).ok_or_else(unknown)?;
        let Entry::Captured(eni) = entry else {
            return Err(unknown());
        };
        self.macs.remove(&eni.mac);
        *entry = Entry::Tombstone {
            eni: eni.clone(),
            removed_at: now_secs,
        };
        Ok(EniSlot(slot))
    }

    /// Makes the captured set exactly `enis`, at `now_secs`: ENIs not listed become tombstones, listed ones are
    /// inserted, and a listed ENI whose identity changed is updated in place (same slot).
    pub fn sync(
        &mut self,
        enis: impl IntoIterator<Item = Eni>,
        now_secs: u64,
    ) -> Result<(), EniTableError> {
        let wanted: Vec<Eni> = enis.into_iter().collect();
        let mut keep: HashMap<&str, &Eni> = HashMap::with_capacity(wanted.len());
        for eni in &wanted {
            if keep.insert(&eni.id, eni).is_some() {
                return Err(EniTableError::DuplicateId(eni.id.clone()));
            }
        }
        let stale: Vec<Arc<str>> = self
            .entries
            .iter()
            .filter_map(|entry| match entry {
                Entry::Captured(eni) if keep.get(&*eni.id).is_none_or(|want| *want != eni) => {
                    Some(eni.id.clone())
                }
                _ => None,
            })
            .collect();
        for id in &stale {
            self.remove(id, now_secs)?;
        }
        for eni in wanted {
            let captured = self.ids.get(&eni.id).is_some_and(|&slot| {
                matches!(self.entries.get(slot as usize), Some(Entry::Captured(_)))
            });
            if !captured {
                self.insert(eni)?;
            }
        }
        Ok(())
    }

    /// Frees the slots of tombstones removed before `removed_before_secs`, so new ENIs may reuse them. Returns
    /// how many were freed. Call it only once no open or unrendered window can reference them.
    pub fn reclaim(&mut self, removed_before_secs: u64) -> usize {
        let mut freed = 0;
        for (index, entry) in self.entries.iter_mut().enumerate() {
            if let Entry::Tombstone { eni, removed_at } = entry
                && *removed_at < removed_before_secs
            {
                self.ids.remove(&eni.id);
                *entry = Entry::Free;
                // Slots fit in u32: insert refuses more.
                self.free.push(index as u32);
                freed += 1;
            }
        }
        self.free.sort_unstable_by(|a, b| b.cmp(a));
        freed
    }

    /// Builds the immutable table.
    pub fn build(self) -> EniTable {
        let captured: Vec<(MacAddr, u32)> = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| match entry {
                // Slots fit in u32: insert refuses more.
                Entry::Captured(eni) => Some((eni.mac, index as u32)),
                _ => None,
            })
            .collect();
        EniTable {
            lineage: self.lineage,
            generation: self.generation + 1,
            captured: captured.len(),
            macs: MacIndex::new(&captured),
            entries: self.entries,
        }
    }
}

/// Open-addressing MAC -> slot map; keys are the MAC's bytes as a little-endian u64 shifted up by 16 bits, with a
/// marker bit, 0 meaning empty; at most a quarter full, so a probe sequence always meets an empty cell, and soon.
#[derive(Debug, Clone)]
struct MacIndex {
    cells: Vec<(u64, u32)>,
    shift: u32,
}

/// The marker bit of a key: no key is 0 (an empty cell), not even the all-zero MAC's.
const MAC_PRESENT: u64 = 1;
const MAC_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// A MAC as the [`MacLookup`] keys it: its six bytes read little-endian into the top 48 bits (what one 8-byte load
/// of the two bytes before a frame's MAC and the MAC gives, shifted by 16 bits), with [`MAC_PRESENT`] set.
#[inline]
fn mac_key(mac: MacAddr) -> u64 {
    let [a, b, c, d, e, f] = mac.0;
    u64::from_le_bytes([0, 0, a, b, c, d, e, f]) | MAC_PRESENT
}

/// The MAC at `offset` of `frame` as [`MacLookup::lookup_raw`] takes it, with one 8-byte load: `None` unless the
/// frame holds 8 bytes there.
#[inline]
pub(crate) fn raw_mac_at(frame: &[u8], offset: usize) -> Option<u64> {
    let bytes = frame.get(offset..)?.first_chunk::<8>()?;
    // The shift drops the two bytes after the MAC: no mask constant to load.
    Some(u64::from_le_bytes(*bytes) << 16)
}

impl MacIndex {
    fn new(entries: &[(MacAddr, u32)]) -> Self {
        // At least four cells per MAC, so at least three quarters of the cells stay empty: every probe, here and
        // in `MacLookup::find` (which has no other bound), meets an empty cell.
        let size = (entries.len() * 4).next_power_of_two().max(16);
        let mut index = MacIndex {
            cells: vec![(0, 0); size],
            shift: 64 - size.trailing_zeros(),
        };
        let mask = size - 1;
        for &(mac, slot) in entries {
            let key = mac_key(mac);
            let mut i = index.view().home(key);
            while let Some(cell) = index.cells.get_mut(i) {
                if cell.0 == 0 {
                    *cell = (key, slot);
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        index
    }

    #[inline]
    fn view(&self) -> MacLookup<'_> {
        MacLookup {
            cells: &self.cells,
            shift: self.shift,
        }
    }
}

/// The MAC lookup of an [`EniTable`] as a value ([`EniTable::macs`]): a slice and a shift that a loop keeps in
/// registers, instead of reloading them through the table for every packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MacLookup<'a> {
    cells: &'a [(u64, u32)],
    shift: u32,
}

impl MacLookup<'_> {
    /// The cell where the probe for `key` starts.
    #[inline]
    fn home(self, key: u64) -> usize {
        (key.wrapping_mul(MAC_MULTIPLIER) >> self.shift) as usize
    }

    /// The captured ENI whose MAC is `mac` (see [`EniTable::lookup`]).
    #[inline]
    pub(crate) fn lookup(self, mac: MacAddr) -> Option<EniSlot> {
        self.find(mac_key(mac))
    }

    /// [`MacLookup::lookup`] of a MAC read by [`raw_mac_at`].
    #[inline]
    pub(crate) fn lookup_raw(self, raw: u64) -> Option<EniSlot> {
        self.find(raw | MAC_PRESENT)
    }

    #[inline]
    fn find(self, key: u64) -> Option<EniSlot> {
        let mask = self.cells.len().wrapping_sub(1);
        let mut i = self.home(key);
        // Ends: the index is at most a quarter full (`MacIndex::new`), so the probe meets an empty cell. No
        // counter bounds it: the loop is the packet path's, and a counter cost each lookup instructions.
        loop {
            let &(k, slot) = self.cells.get(i)?;
            if k == key {
                return Some(EniSlot(slot));
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eni(n: u32) -> Eni {
        let mac = MacAddr([2, 0, 0, 0xe1, (n >> 8) as u8, n as u8]);
        Eni::new(
            format!("eni-{n:05}"),
            mac,
            format!("i-{n}"),
            "vsw-0",
            "vpc-0",
            "100",
        )
    }

    #[test]
    fn lookup_finds_every_captured_mac() {
        let table = EniTable::from_enis((0..1000).map(eni)).unwrap();
        assert_eq!(table.len(), 1000);
        for n in 0..1000 {
            let slot = table.lookup(eni(n).mac).unwrap();
            assert_eq!(table.eni(slot).unwrap().id, eni(n).id);
        }
        assert_eq!(table.lookup(MacAddr([2, 0, 0, 0xe2, 0, 0])), None);
        assert_eq!(table.lookup(MacAddr([0; 6])), None);
    }

    /// A frame's MAC read with the two bytes after it ([`raw_mac_at`]) finds what [`EniTable::lookup`] finds, for
    /// captured MACs (most of them away from their home cell: 1000 of them in 4096 cells), MACs that share their
    /// prefix and miss, the all-zero and broadcast MACs, and random ones, whatever the two bytes after the MAC.
    #[test]
    fn raw_lookups_agree_with_lookups_whatever_follows_the_mac() {
        let table = EniTable::from_enis((0..1000).map(eni)).unwrap();
        let captured: HashMap<MacAddr, Arc<str>> = table
            .captured()
            .map(|(_, e)| (e.mac, e.id.clone()))
            .collect();
        let macs = table.macs();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut hits, mut misses) = (0, 0);
        for n in 0..30_000u32 {
            let mac = match n % 4 {
                0 => eni(n % 1000).mac,
                1 => eni(1000 + n % 64_000).mac,
                2 => MacAddr(if n % 8 == 2 { [0; 6] } else { [0xff; 6] }),
                _ => {
                    let r = next().to_le_bytes();
                    MacAddr([r[0], r[1], r[2], r[3], r[4], r[5]])
                }
            };
            let mut frame = [0u8; 10];
            frame[1..7].copy_from_slice(&mac.0);
            frame[7..9].copy_from_slice(&next().to_le_bytes()[..2]);
            let slot = table.lookup(mac);
            assert_eq!(
                macs.lookup_raw(raw_mac_at(&frame, 1).unwrap()),
                slot,
                "{mac:?}"
            );
            assert_eq!(
                slot.and_then(|s| table.eni(s)).map(|e| e.id.clone()),
                captured.get(&mac).cloned(),
                "{mac:?}"
            );
            if slot.is_some() {
                hits += 1
            } else {
                misses += 1
            }
        }
        assert_eq!(hits, 7_500);
        assert!(misses > 20_000, "{misses}");
        assert_eq!(raw_mac_at(&[0; 7], 0), None);
    }

    /// Six captured MACs with the same home cell (and a seventh, not captured) in a table of 64 cells: each is
    /// found at the end of its probe, raw or not, and the seventh's probe ends at the first empty cell after them.
    #[test]
    fn long_probe_chains_are_followed() {
        // 16 ENIs take 64 cells: the home is the top 6 bits of the product.
        let home = |n: u32| mac_key(eni(n).mac).wrapping_mul(MAC_MULTIPLIER) >> 58;
        let same: Vec<u32> = (0..100_000).filter(|&n| home(n) == 5).take(7).collect();
        let others: Vec<u32> = (0..100_000)
            .filter(|&n| !(5..=12).contains(&home(n)))
            .take(10)
            .collect();
        let (absent, captured) = same.split_last().unwrap();
        let table = EniTable::from_enis(captured.iter().chain(&others).map(|&n| eni(n))).unwrap();
        assert_eq!(table.macs().cells.len(), 64);
        for &n in captured.iter().chain(&others) {
            let mac = eni(n).mac;
            let slot = table.lookup(mac).unwrap();
            assert_eq!(table.eni(slot).unwrap().id, eni(n).id);
            let mut frame = [0xa5u8; 8];
            frame[..6].copy_from_slice(&mac.0);
            assert_eq!(
                table.macs().lookup_raw(raw_mac_at(&frame, 0).unwrap()),
                Some(slot)
            );
        }
        assert_eq!(table.lookup(eni(*absent).mac), None);
    }

    #[test]
    fn empty_table_finds_nothing() {
        let table = EniTable::builder().build();
        assert!(table.is_empty());
        assert_eq!(table.lookup(MacAddr([0xff; 6])), None);
    }

    #[test]
    fn duplicates_are_refused() {
        let mut b = EniTable::builder();
        b.insert(eni(1)).unwrap();
        assert_eq!(
            b.insert(eni(1)),
            Err(EniTableError::DuplicateId("eni-00001".into()))
        );
        let mut other = eni(2);
        other.mac = eni(1).mac;
        assert!(matches!(
            b.insert(other),
            Err(EniTableError::DuplicateMac { .. })
        ));
    }

    #[test]
    fn slots_are_stable_and_tombstones_are_not_reused() {
        let t1 = EniTable::from_enis((0..3).map(eni)).unwrap();
        let s1 = t1.lookup(eni(1).mac).unwrap();
        let mut b = t1.to_builder();
        assert_eq!(b.remove("eni-00001", 100).unwrap(), s1);
        let s3 = b.insert(eni(3)).unwrap();
        let t2 = b.build();
        assert_ne!(s3, s1);
        assert_eq!(t2.lineage(), t1.lineage());
        assert_eq!(t2.generation(), t1.generation() + 1);
        assert_eq!(t2.lookup(eni(1).mac), None);
        assert!(!t2.is_captured(s1));
        assert_eq!(t2.eni(s1).unwrap().id, eni(1).id);
        assert_eq!(t2.lookup(eni(0).mac), t1.lookup(eni(0).mac));
        assert_eq!(t2.captured().count(), 3);

        // Reclaim only tombstones older than the cut-off; then the slot is reused.
        let mut b = t2.to_builder();
        assert_eq!(b.reclaim(100), 0);
        assert_eq!(b.reclaim(101), 1);
        assert_eq!(b.insert(eni(4)).unwrap(), s1);
        let t3 = b.build();
        assert_eq!(t3.eni(s1).unwrap().id, eni(4).id);
    }

    #[test]
    fn tombstone_revives_in_its_slot() {
        let t1 = EniTable::from_enis((0..2).map(eni)).unwrap();
        let mut b = t1.to_builder();
        let slot = b.remove("eni-00000", 5).unwrap();
        assert_eq!(b.insert(eni(0)).unwrap(), slot);
        assert!(b.remove("nope", 5).is_err());
    }

    #[test]
    fn sync_sets_the_captured_set() {
        let t1 = EniTable::from_enis((0..4).map(eni)).unwrap();
        let mut b = t1.to_builder();
        let mut changed = eni(2);
        changed.vm_id = "i-moved".into();
        b.sync([eni(0), changed.clone(), eni(7)], 50).unwrap();
        let t2 = b.build();
        assert_eq!(t2.len(), 3);
        assert_eq!(t2.lookup(eni(0).mac), t1.lookup(eni(0).mac));
        assert_eq!(t2.lookup(eni(2).mac), t1.lookup(eni(2).mac));
        assert_eq!(
            t2.eni(t2.lookup(eni(2).mac).unwrap()).unwrap().vm_id,
            changed.vm_id
        );
        assert_eq!(t2.lookup(eni(1).mac), None);
        assert!(t2.eni(t1.lookup(eni(1).mac).unwrap()).is_some());
        assert!(t2.lookup(eni(7).mac).is_some());
        assert_eq!(t2.slot_of("eni-00003"), t1.lookup(eni(3).mac));
    }
}
