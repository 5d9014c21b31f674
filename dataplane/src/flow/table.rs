//! The per-worker flow table of the open window: bucketized, burst-pipelined, pre-faulted, cleared in O(1);
//! and the batch a sealed window's flows are read from.
//!
//! # Layout
//! - **Index**: an array of 64-byte buckets, one cache line each: an epoch (`u32`), a fill count (`u32`),
//!   [`SLOTS_PER_BUCKET`] = 7 tags (`u32`, the low half of the flow's hash) and 7 references (`u32`) into the
//!   entry arena. A lookup reads one bucket line, compares the tags, and reads the entry only on a tag match
//!   (a false match costs one extra compare once in 2^32). A full bucket overflows into the next one (linear
//!   probing over buckets); flows are never removed within a window, so a bucket with a free slot ends a search.
//! - **Entries**: a dense arena of 64-byte lines. Compact IPv4 entries (32 bytes: addresses, ENI slot, ports,
//!   protocol, direction, action, 40-bit packet count, 64-bit byte count, flags) are allocated upwards from the
//!   first line, two per line; IPv6 entries (64 bytes, one line) downwards from the last line. Both regions
//!   stay dense, so reading the flows out is a sequential scan of the used lines.
//!
//! # Capacity and memory
//! The capacity is counted in *units*: an IPv4 flow takes one unit, an IPv6 flow two (a key that is not a
//! plain IPv4 key, e.g. family V4 with unmapped addresses, takes the IPv6 form). A table of capacity `C` holds
//! `C` IPv4 flows, `C / 2` IPv6 flows, or any mix with `ipv4 + 2 * ipv6 <= C`. It allocates `C / 2` entry lines
//! (32 bytes per unit) and `ceil(C * 5 / 28)` buckets (1.25 index slots per unit, at most 80% of the slots
//! used), so per flow, at full capacity ([`IPV4_BYTES_PER_FLOW`], [`IPV6_BYTES_PER_FLOW`]):
//! - IPv4: 32 bytes of entry + 11.4 bytes of index = **43.4 bytes**;
//! - IPv6: 64 bytes of entry + 22.9 bytes of index (two units) = **86.9 bytes**.
//!
//! # Hash, and independence from RSS
//! Each table hashes the flow key with its own seeded 64-bit hash ([`FlowTable::with_seed`], folded 64x64->128
//! multiplications over the key's words, with four secrets derived from the seed by SplitMix64). Bits 32..64
//! of that hash pick the bucket (multiply-shift range reduction, so any bucket count works), bits 0..32 are the
//! tag. The NIC's RSS hash (symmetric Toeplitz over the addresses and ports) chooses the worker's queue; it is
//! never read here, and the seeded multiply hash is statistically independent of it, so the flows one queue
//! receives spread over all buckets. Give each worker a random seed to deny hash flooding (the dataplane has no
//! entropy source: the caller provides it).
//!
//! # Clearing
//! [`FlowTable::clear`] is O(1): it bumps the table's epoch and resets the two arena fill counts. A bucket whose
//! epoch is not the table's is empty and is reset by the first insert into it. When the 32-bit epoch wraps
//! (after 4 billion clears) every bucket is rewritten once.
//!
//! # Burst pipeline
//! [`FlowTable::update_burst`] takes a burst of hashed keys ([`FlowUpdate`]) and works in three passes: (1) it
//! prefetches every key's home bucket, so the CPU overlaps their cache and TLB misses; (2) in the now-cached
//! buckets it finds each key's first tag match (the seven tags compared at once, SSE2 on x86-64) and prefetches
//! that candidate entry (or the overflow bucket of a full bucket without one); (3) it updates or inserts, in
//! order: a candidate that holds the key is updated directly; anything else takes the probe of
//! [`FlowTable::add_key`]. The probe stores a key without a tag in its home bucket, when that has a free slot,
//! straight there (the key is new: flows are never removed within a window; the common case of the window's first
//! packets after a seal), and searches bucket after bucket otherwise (a tag collision, an overflowed key, a flow
//! inserted earlier in the same burst). The first two passes only warm the cache, so the result always equals one
//! [`FlowTable::add_key`] per update in order. The first pass also exists one update at a time for a caller that
//! stages updates one by one (the meter): each home bucket then starts loading while the next packets are parsed,
//! which leaves more time for a cold one to arrive. A burst that inserted `k` compact entries ends by prefetching
//! the `k / 2 + 1` arena lines past the frontier, where the next burst's inserts will go (after a seal every packet
//! inserts, into a recycled table's lines, which in a large table come from memory); a burst that inserted none
//! prefetches nothing. The prefetches are `safe_arch`'s safe wrapper of `_mm_prefetch` (this crate forbids
//! `unsafe`): unlike a load, a prefetch retires at once, so no pass waits on a miss.
//!
//! # Per-ENI totals
//! The table also keeps, per ENI slot, the packets and bytes it recorded and the ones it refused (full,
//! saturated) in the window ([`FlowTable::totals`]). They travel with the table at a seal, so the worker computes
//! nothing per window: the exporter derives the window's per-ENI SKIPDATA and traffic set from them, and a
//! refused window is summarised in O(ENIs). [`FlowTable::reserve_enis`] sizes them ahead (the meter does), so
//! updates never allocate.
//!
//! # Guarantees
//! - Every byte of the index and arena is written at creation ([`FlowTable::with_seed`]), so the pages are
//!   resident before the first packet; nothing is allocated afterwards.
//! - A known key is always updated, unless its counters would overflow ([`AddOutcome::Saturated`]: 2^40 - 1
//!   packets for a compact IPv4 entry, 2^64 - 1 bytes for any): the caller counts that packet as SKIPDATA. A new
//!   key is inserted while units remain, else refused ([`AddOutcome::Full`]), changing nothing.

use std::fmt;

use super::eni::EniSlot;
use super::hint::prefetch;
use super::key::{Action, Direction, FlowKey};
use super::window::SkipCounts;
use crate::wire::{AddrBytes, Family};

/// Counts of one flow in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowCounts {
    /// Packets.
    pub packets: u64,
    /// Sum of IP lengths.
    pub bytes: u64,
    /// OR of the TCP flags.
    pub tcp_flags: u8,
}

impl FlowCounts {
    /// Adds `other` (sums, OR of flags).
    #[inline]
    pub fn merge(&mut self, other: &FlowCounts) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.tcp_flags |= other.tcp_flags;
    }
}

/// A flow and its counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowEntry {
    /// The flow.
    pub key: FlowKey,
    /// Its counts in the window.
    pub counts: FlowCounts,
}

/// The flows of a sealed window. Reusable storage: hand it back to [`crate::flow::Meter::recycle`] after use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowBatch {
    entries: Vec<FlowEntry>,
}

impl FlowBatch {
    /// An empty batch.
    pub fn new() -> Self {
        FlowBatch::default()
    }

    /// The flows, in no particular order (sorted by key after a merge).
    pub fn entries(&self) -> &[FlowEntry] {
        &self.entries
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no flows.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Empties the batch, keeping its storage.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    #[cfg(test)]
    pub(crate) fn push(&mut self, entry: FlowEntry) {
        self.entries.push(entry);
    }

    pub(crate) fn append(&mut self, other: &mut FlowBatch) {
        self.entries.append(&mut other.entries);
    }

    /// Sorts by key and merges entries with equal keys (sums, OR of flags).
    pub(crate) fn sort_and_merge(&mut self) {
        self.entries.sort_unstable_by_key(|e| e.key);
        self.entries.dedup_by(|later, kept| {
            if later.key == kept.key {
                kept.counts.merge(&later.counts);
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
    }
}

/// Largest supported capacity in units (entry references are 31-bit).
pub const MAX_FLOW_CAPACITY: usize = 1 << 30;

/// Flow slots per 64-byte bucket.
pub const SLOTS_PER_BUCKET: usize = 7;

/// Bytes of a compact IPv4 entry.
pub const IPV4_ENTRY_BYTES: usize = 32;

/// Bytes of an IPv6 (long) entry.
pub const IPV6_ENTRY_BYTES: usize = 64;

/// Index bytes per unit of capacity: 64-byte buckets of 7 slots, 1.25 slots per unit.
pub const INDEX_BYTES_PER_UNIT: f64 = 64.0 * 5.0 / (4.0 * SLOTS_PER_BUCKET as f64);

/// Table bytes per IPv4 flow at full capacity: entry plus its share of the index (43.4).
pub const IPV4_BYTES_PER_FLOW: f64 = IPV4_ENTRY_BYTES as f64 + INDEX_BYTES_PER_UNIT;

/// Table bytes per IPv6 flow at full capacity: entry plus the index share of its two units (86.9).
pub const IPV6_BYTES_PER_FLOW: f64 = IPV6_ENTRY_BYTES as f64 + 2.0 * INDEX_BYTES_PER_UNIT;

// The target: at most 64 bytes per IPv4 flow, entry and index together.
const _: () = assert!(IPV4_BYTES_PER_FLOW <= 64.0);

/// Most packets a compact IPv4 entry counts (40 bits); one more is [`AddOutcome::Saturated`].
pub const IPV4_MAX_PACKETS: u64 = (1 << 40) - 1;

/// Errors of creating a [`FlowTable`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The capacity is 0 or above [`MAX_FLOW_CAPACITY`].
    #[error("flow capacity {0} is outside 1..=2^30")]
    Capacity(usize),
    /// The allocator refused the table's memory.
    #[error("cannot allocate {bytes} bytes for a flow table")]
    Allocation {
        /// Bytes requested.
        bytes: usize,
    },
}

/// What [`FlowTable::add_key`] did with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddOutcome {
    /// Not applied yet (the state of a [`FlowUpdate`] before [`FlowTable::update_burst`]).
    #[default]
    Pending,
    /// Added to an existing flow.
    Updated,
    /// A new flow was inserted.
    Inserted,
    /// New flow, no unit left: nothing changed.
    Full,
    /// The flow's packet or byte count would overflow: nothing changed.
    Saturated,
}

impl AddOutcome {
    /// Whether the packet was counted in the table.
    #[inline]
    pub fn is_counted(self) -> bool {
        matches!(self, AddOutcome::Updated | AddOutcome::Inserted)
    }
}

/// A flow key in a table's internal form, with its hash: build it with [`FlowTable::key`].
#[derive(Clone, Copy)]
pub struct TableKey {
    /// Compact: `[addresses, eni|ports, protocol|meta]`, the other three words not part of the key (a staged
    /// update does not write them); long: `[src, src, dst, dst, eni|ports, protocol|meta]`.
    words: [u64; 6],
    long: bool,
    hash: u64,
}

impl PartialEq for TableKey {
    fn eq(&self, other: &TableKey) -> bool {
        self.long == other.long && self.hash == other.hash && self.used() == other.used()
    }
}

impl Eq for TableKey {}

impl fmt::Debug for TableKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableKey")
            .field("words", &self.used())
            .field("long", &self.long)
            .field("hash", &self.hash)
            .finish()
    }
}

impl TableKey {
    /// The words that make the key.
    fn used(&self) -> &[u64] {
        let n = if self.long { 6 } else { 3 };
        self.words.get(..n).unwrap_or(&self.words)
    }

    /// The key's hash under the table's seed.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Whether the key takes the long (IPv6, two-unit) form.
    pub fn is_long(&self) -> bool {
        self.long
    }

    /// The ENI slot of the flow.
    #[inline]
    pub fn eni(&self) -> EniSlot {
        EniSlot(if self.long {
            self.words[4]
        } else {
            self.words[1]
        } as u32)
    }
}

/// The part of a flow key that a packet's attributions share: addresses, ports, protocol, family.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SharedKey {
    /// Compact: `[src | dst << 32, 0, 0, 0]`; long: the two addresses as little-endian words.
    addresses: [u64; 4],
    /// `src_port << 32 | dst_port << 48`.
    ports: u64,
    /// Protocol, and the IPv6 family bit of the long form's meta byte.
    tail: u64,
    long: bool,
}

impl SharedKey {
    /// The shared part of the keys of a packet with these fields.
    #[inline]
    pub(crate) fn new(
        family: Family,
        src: &AddrBytes,
        dst: &AddrBytes,
        src_port: u16,
        dst_port: u16,
        protocol: u8,
    ) -> SharedKey {
        let (src_head, src_v4) = split_address(src);
        let (dst_head, dst_v4) = split_address(dst);
        if family == Family::V4 && src_head == V4_MAPPED_HEAD && dst_head == V4_MAPPED_HEAD {
            SharedKey::v4(src_v4, dst_v4, src_port, dst_port, protocol)
        } else {
            let ports = ports(src_port, dst_port);
            let src = u128::from_le_bytes(*src);
            let dst = u128::from_le_bytes(*dst);
            let v6 = if family == Family::V6 {
                META_V6 << 8
            } else {
                0
            };
            SharedKey {
                addresses: [
                    src as u64,
                    (src >> 64) as u64,
                    dst as u64,
                    (dst >> 64) as u64,
                ],
                ports,
                tail: u64::from(protocol) | v6,
                long: true,
            }
        }
    }

    /// The shared part of the keys of an IPv4 packet; `src` and `dst` are the addresses' network-order bytes
    /// read as little-endian `u32`s (as [`split_address`] returns them).
    #[inline]
    pub(crate) fn v4(src: u32, dst: u32, src_port: u16, dst_port: u16, protocol: u8) -> SharedKey {
        SharedKey {
            addresses: [u64::from(src) | u64::from(dst) << 32, 0, 0, 0],
            ports: ports(src_port, dst_port),
            tail: u64::from(protocol),
            long: false,
        }
    }
}

/// [`FlowTable::load_buckets`] for one update at a time ([`FlowTable::bucket_loader`]).
pub(crate) struct BucketLoader<'t> {
    buckets: &'t [Bucket],
}

impl BucketLoader<'_> {
    /// Sets `update`'s home bucket and prefetches it, as [`FlowTable::load_buckets`] does.
    #[inline(always)]
    pub(crate) fn load(&self, update: &mut FlowUpdate) {
        let home = bucket_index(update.key.hash, self.buckets.len());
        // buckets.len() <= MAX_FLOW_CAPACITY < 2^32.
        update.bucket = home as u32;
        if let Some(bucket) = self.buckets.get(home) {
            prefetch(bucket);
        }
    }
}

/// A table's hashing, copied out of it ([`FlowTable::keyer`]): keys made with it are the table's keys.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keyer {
    secrets: [u64; 4],
}

impl Keyer {
    /// The key of one attribution of a packet: `shared` completed with the ENI, direction and action.
    #[inline]
    pub(crate) fn key(
        &self,
        shared: &SharedKey,
        eni: EniSlot,
        direction: Direction,
        action: Action,
    ) -> TableKey {
        let meta = if direction == Direction::Out {
            META_OUT
        } else {
            0
        } | if action == Action::Reject {
            META_REJECT
        } else {
            0
        };
        let eni_ports = u64::from(eni.0) | shared.ports;
        let tail = shared.tail | meta << 8;
        let s = &self.secrets;
        let w = &shared.addresses;
        if shared.long {
            let words = [w[0], w[1], w[2], w[3], eni_ports, tail];
            let a = fold(w[0] ^ s[0], w[1] ^ s[1]);
            let b = fold(w[2] ^ s[2], w[3] ^ s[3]);
            let c = fold(a ^ eni_ports, b ^ tail ^ s[1]);
            let hash = fold(c ^ s[2], s[3] | 1);
            TableKey {
                words,
                long: true,
                hash,
            }
        } else {
            let h = fold(w[0] ^ s[0], eni_ports ^ s[1]);
            let hash = fold(h ^ tail ^ s[2], s[3] | 1);
            TableKey {
                words: [w[0], eni_ports, tail, 0, 0, 0],
                long: false,
                hash,
            }
        }
    }
}

impl Keyer {
    /// Stages one attribution into `update`, as `*update = FlowUpdate::new(self.key(..), bytes, tcp_flags)`
    /// does, writing only what the burst's passes read before they write it: a compact key's three unused words
    /// are left as they were, the home bucket is [`FlowTable::load_buckets`]' to set, the candidate
    /// [`FlowTable::load_entries`]' and the outcome [`FlowTable::apply_loaded`]'.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn stage(
        &self,
        shared: &SharedKey,
        eni: EniSlot,
        direction: Direction,
        action: Action,
        bytes: u64,
        tcp_flags: u8,
        update: &mut FlowUpdate,
    ) {
        let key = self.key(shared, eni, direction, action);
        if key.long {
            update.key.words = key.words;
        } else if let (Some(to), Some(from)) = (
            update.key.words.first_chunk_mut::<3>(),
            key.words.first_chunk::<3>(),
        ) {
            *to = *from;
        }
        update.key.long = key.long;
        update.key.hash = key.hash;
        update.bytes = bytes;
        update.tcp_flags = tcp_flags;
    }
}

/// The ports' word of a key.
#[inline]
fn ports(src_port: u16, dst_port: u16) -> u64 {
    u64::from(src_port) << 32 | u64::from(dst_port) << 48
}

/// The first 12 bytes of `::ffff:a.b.c.d`, as [`split_address`] reads them.
const V4_MAPPED_HEAD: u128 = 0xffff_u128 << 80;

/// An address as (its first 12 bytes, its last 4 bytes), read little-endian with two loads of its own bytes.
#[inline]
fn split_address(addr: &AddrBytes) -> (u128, u32) {
    let [head @ .., a, b, c, d] = *addr;
    let mut wide = [0u8; 16];
    if let Some(w) = wide.first_chunk_mut::<12>() {
        *w = head;
    }
    (u128::from_le_bytes(wide), u32::from_le_bytes([a, b, c, d]))
}

/// Packets and bytes of one ENI in a table's window: recorded in flows, or skipped (SKIPDATA).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EniTotals {
    /// Counted in the ENI's flows (OK records).
    pub recorded: SkipCounts,
    /// Not recorded: table full or counters saturated (SKIPDATA).
    pub skipped: SkipCounts,
}

impl EniTotals {
    /// Whether the ENI had no traffic.
    pub fn is_zero(&self) -> bool {
        self.recorded.is_zero() && self.skipped.is_zero()
    }
}

/// One packet's update of a burst: see [`FlowTable::update_burst`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowUpdate {
    key: TableKey,
    bytes: u64,
    tcp_flags: u8,
    outcome: AddOutcome,
    /// Home bucket (pass 1).
    bucket: u32,
    /// Reference of the first tag match in the home bucket, or [`NO_ENTRY`] (pass 2).
    candidate: u32,
}

impl FlowUpdate {
    /// A placeholder for a scratch array of updates: overwritten before any is read.
    pub(crate) const UNUSED: FlowUpdate = FlowUpdate {
        key: TableKey {
            words: [0; 6],
            long: false,
            hash: 0,
        },
        bytes: 0,
        tcp_flags: 0,
        outcome: AddOutcome::Pending,
        bucket: 0,
        candidate: NO_ENTRY,
    };

    /// One packet of `bytes` with `tcp_flags` for the flow `key`.
    #[inline]
    pub fn new(key: TableKey, bytes: u64, tcp_flags: u8) -> Self {
        FlowUpdate {
            key,
            bytes,
            tcp_flags,
            outcome: AddOutcome::Pending,
            bucket: 0,
            candidate: NO_ENTRY,
        }
    }

    /// The flow.
    pub fn key(&self) -> &TableKey {
        &self.key
    }

    /// IP bytes of the packet.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// TCP flags of the packet.
    pub fn tcp_flags(&self) -> u8 {
        self.tcp_flags
    }

    /// What [`FlowTable::update_burst`] did ([`AddOutcome::Pending`] before).
    pub fn outcome(&self) -> AddOutcome {
        self.outcome
    }

    /// `update` with `outcome` set (applied one at a time with [`FlowTable::add_key`]).
    #[inline]
    pub(crate) fn applied(update: &FlowUpdate, outcome: AddOutcome) -> FlowUpdate {
        FlowUpdate { outcome, ..*update }
    }
}

#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    epoch: u32,
    len: u32,
    tags: [u32; SLOTS_PER_BUCKET],
    refs: [u32; SLOTS_PER_BUCKET],
}

const _: () = assert!(size_of::<Bucket>() == 64);

impl Bucket {
    /// Slots in use in `epoch`: a bucket last written before the table's latest clear is empty.
    #[inline(always)]
    fn live_len(&self, epoch: u32) -> u32 {
        if self.epoch == epoch { self.len } else { 0 }
    }
}

const EMPTY_BUCKET: Bucket = Bucket {
    epoch: 0,
    len: 0,
    tags: [0; SLOTS_PER_BUCKET],
    refs: [0; SLOTS_PER_BUCKET],
};

#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Line([u64; 8]);

const _: () = assert!(size_of::<Line>() == 64);

/// A reference's bit marking a long entry (its index is a line); otherwise the index is a compact half-line.
const LONG: u32 = 1 << 31;

/// No entry: a long reference beyond any arena (lines < 2^30).
const NO_ENTRY: u32 = u32::MAX;

// Meta byte: direction, action and (long form) family.
const META_OUT: u64 = 1;
const META_REJECT: u64 = 2;
const META_V6: u64 = 4;

/// Packets field of a compact entry: bits 24..64 of word 3.
const SHORT_PACKET_SHIFT: u32 = 24;

/// A fixed-capacity, bucketized flow table (see the module docs). The handle is one pointer: a seal moves it
/// between the meter, its pool and the exporter without touching the table's memory.
pub struct FlowTable {
    t: Box<Tables>,
}

/// The table's state behind its handle.
struct Tables {
    buckets: Vec<Bucket>,
    lines: Vec<Line>,
    epoch: u32,
    /// Compact entries in use (half-lines from the start).
    short_len: u32,
    /// Long entries in use (lines from the end).
    long_len: u32,
    capacity: usize,
    seed: u64,
    secrets: [u64; 4],
    /// Per-ENI packets and bytes of the window, by slot.
    totals: Vec<EniTotals>,
    /// Updates refused (table full, counters saturated) since the last clear.
    refused: u64,
}

/// The seed of [`FlowTable::with_capacity`].
pub const DEFAULT_SEED: u64 = 0x243f_6a88_85a3_08d3;

impl FlowTable {
    /// A table of `capacity` units (clamped to 1..=[`MAX_FLOW_CAPACITY`]) with the [`DEFAULT_SEED`], fully
    /// allocated and pre-faulted now. Aborts if memory is short, like `Vec`; see [`FlowTable::with_seed`].
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_FLOW_CAPACITY);
        match FlowTable::with_seed(capacity, DEFAULT_SEED) {
            Ok(table) => table,
            Err(error) => panic!("{error}"),
        }
    }

    /// A table of `capacity` units hashing with `seed`, fully allocated and pre-faulted now (every page written).
    pub fn with_seed(capacity: usize, seed: u64) -> Result<Self, TableError> {
        if capacity == 0 || capacity > MAX_FLOW_CAPACITY {
            return Err(TableError::Capacity(capacity));
        }
        let buckets = (capacity * 5).div_ceil(4 * SLOTS_PER_BUCKET).max(1);
        let lines = capacity.div_ceil(2);
        Ok(FlowTable {
            t: Box::new(Tables {
                buckets: prefaulted(buckets, EMPTY_BUCKET)?,
                lines: prefaulted(lines, Line([0; 8]))?,
                epoch: 1,
                short_len: 0,
                long_len: 0,
                capacity,
                seed,
                secrets: secrets(seed),
                totals: Vec::new(),
                refused: 0,
            }),
        })
    }

    /// Makes room for the per-ENI totals of slots below `slots`, so that updates never allocate.
    pub fn reserve_enis(&mut self, slots: usize) {
        if self.t.totals.len() < slots {
            self.t.totals.resize(slots, EniTotals::default());
        }
    }

    /// The table's form of `key`, hashed with its seed.
    #[inline]
    pub fn key(&self, key: &FlowKey) -> TableKey {
        let shared = SharedKey::new(
            key.family,
            &key.src,
            &key.dst,
            key.src_port,
            key.dst_port,
            key.protocol,
        );
        self.keyer()
            .key(&shared, key.eni, key.direction, key.action)
    }

    /// The table's hashing as a value, for a loop over many packets.
    #[inline]
    pub(crate) fn keyer(&self) -> Keyer {
        Keyer {
            secrets: self.t.secrets,
        }
    }

    /// Adds one packet of `bytes` with `tcp_flags` to the flow `key`. Returns `false`, changing no flow, when the
    /// key is new and no unit is left, or when the flow's counters would overflow (the packet is then counted
    /// as skipped in its ENI's totals).
    #[inline]
    pub fn add(&mut self, key: &FlowKey, bytes: u64, tcp_flags: u8) -> bool {
        let key = self.key(key);
        self.add_key(&key, bytes, tcp_flags).is_counted()
    }

    /// Adds one packet to the flow `key` (made by this table's [`FlowTable::key`] or a table of the same seed),
    /// and to its ENI's totals (recorded or skipped).
    #[inline]
    pub fn add_key(&mut self, key: &TableKey, bytes: u64, tcp_flags: u8) -> AddOutcome {
        let home = bucket_index(key.hash, self.t.buckets.len());
        let outcome = self.probe(home, key, bytes, tcp_flags);
        self.count(key.eni(), bytes, outcome);
        outcome
    }

    /// Applies a burst of updates in order, setting each [`FlowUpdate::outcome`]; the same result as one
    /// [`FlowTable::add_key`] per update, with the buckets and entries of the whole burst prefetched first (see
    /// the module docs). The same as [`FlowTable::load_buckets`], [`FlowTable::load_entries`] and
    /// [`FlowTable::apply_loaded`] in a row.
    pub fn update_burst(&mut self, updates: &mut [FlowUpdate]) {
        self.load_buckets(updates);
        self.load_entries(updates);
        self.apply_loaded(updates);
    }

    /// Pass 1 one update at a time, for a caller that stages updates one by one (the meter): each staged update's
    /// home bucket starts loading while the next ones are staged.
    #[inline]
    pub(crate) fn bucket_loader(&self) -> BucketLoader<'_> {
        BucketLoader {
            buckets: &self.t.buckets,
        }
    }

    /// Pipeline pass 1: computes each update's home bucket and prefetches it. Changes no flow. A caller that does
    /// other work before [`FlowTable::load_entries`] hides the buckets' latency.
    pub fn load_buckets(&self, updates: &mut [FlowUpdate]) {
        let loader = self.bucket_loader();
        for update in updates.iter_mut() {
            loader.load(update);
        }
    }

    /// Pipeline pass 2, after [`FlowTable::load_buckets`] on the same updates: finds each update's first
    /// tag match in its (now cached) home bucket and prefetches that candidate entry, or prefetches the overflow
    /// bucket of a full bucket without a match. Changes no flow.
    pub fn load_entries(&self, updates: &mut [FlowUpdate]) {
        let n = self.t.buckets.len();
        let epoch = self.t.epoch;
        for update in updates.iter_mut() {
            let mut candidate = NO_ENTRY;
            if let Some(bucket) = self.t.buckets.get(update.bucket as usize) {
                let matches = tag_matches(bucket, epoch, update.key.hash as u32);
                if matches != 0
                    && let Some(&reference) = bucket.refs.get(matches.trailing_zeros() as usize)
                {
                    candidate = reference;
                    prefetch_entry(&self.t.lines, reference);
                } else if bucket.live_len(epoch) as usize == SLOTS_PER_BUCKET {
                    let next = update.bucket as usize + 1;
                    if let Some(b) = self.t.buckets.get(if next == n { 0 } else { next }) {
                        prefetch(b);
                    }
                }
            }
            update.candidate = candidate;
        }
    }

    /// Pipeline pass 3, after [`FlowTable::load_buckets`] (and usually [`FlowTable::load_entries`]) on the same
    /// updates, with no [`FlowTable::clear`] in between: applies them in order, setting each outcome. A
    /// candidate entry holding the key is updated directly; anything else (a new flow, a tag collision, an
    /// overflowed key, a flow inserted since the candidate was found) takes the probe, so the result is always
    /// that of one [`FlowTable::add_key`] per update.
    pub fn apply_loaded(&mut self, updates: &mut [FlowUpdate]) {
        let n = self.t.buckets.len();
        let before = self.t.short_len;
        for update in updates.iter_mut() {
            // A candidate found before a clear may point at a dead entry: only live ones are updated directly.
            let direct = if update.candidate == NO_ENTRY || !self.is_live(update.candidate) {
                None
            } else {
                update_entry(
                    &mut self.t.lines,
                    update.candidate,
                    &update.key,
                    update.bytes,
                    update.tcp_flags,
                )
            };
            let outcome = match direct {
                Some(outcome) => outcome,
                None => self.probe(
                    bucket_index(update.key.hash, n),
                    &update.key,
                    update.bytes,
                    update.tcp_flags,
                ),
            };
            update.outcome = outcome;
            self.count(update.key.eni(), update.bytes, outcome);
        }
        self.prefetch_frontier(self.t.short_len.wrapping_sub(before) as usize);
    }

    /// After a burst that inserted `inserted` compact entries, starts loading the lines as many inserts would
    /// fill next: in the first pass after a seal every packet inserts, into a recycled table's lines, which in a
    /// large table come from memory, and a burst's stores would otherwise wait for them. Nothing when the burst
    /// inserted nothing (a few instructions per burst).
    #[inline]
    fn prefetch_frontier(&self, inserted: usize) {
        if inserted > 0 {
            let first = self.t.short_len as usize / 2;
            for line in self.t.lines.iter().skip(first).take(inserted / 2 + 1) {
                prefetch(line);
            }
        }
    }

    /// Whether `reference` is an entry in use (inside the compact or the long region).
    #[inline]
    fn is_live(&self, reference: u32) -> bool {
        if reference & LONG != 0 {
            let line = (reference & !LONG) as usize;
            line < self.t.lines.len() && line + self.t.long_len as usize >= self.t.lines.len()
        } else {
            reference < self.t.short_len
        }
    }

    /// Looks `key` up from bucket `home` on and updates or inserts it: first [`FlowTable::insert_home`], the
    /// short way of a new key, then [`FlowTable::search`].
    #[inline(always)]
    fn probe(&mut self, home: usize, key: &TableKey, bytes: u64, tcp_flags: u8) -> AddOutcome {
        match self.insert_home(home, key, bytes, tcp_flags) {
            Some(outcome) => outcome,
            None => self.search(home, key, bytes, tcp_flags),
        }
    }

    /// A new key's short way in: stores `key` in its home bucket `home` when that bucket has a free slot and no
    /// tag of the key. Flows are never removed within a window, so such a key is in no other bucket either: the
    /// same result as [`FlowTable::search`], without its loop (the window's first packets after a seal, when
    /// every flow is new). `None`, changing nothing, otherwise.
    #[inline(always)]
    fn insert_home(
        &mut self,
        home: usize,
        key: &TableKey,
        bytes: u64,
        tcp_flags: u8,
    ) -> Option<AddOutcome> {
        let t = &mut *self.t;
        let tag = key.hash as u32;
        let bucket = t.buckets.get_mut(home)?;
        if tag_matches(bucket, t.epoch, tag) != 0 {
            return None;
        }
        let len = bucket.live_len(t.epoch) as usize;
        let (Some(slot_tag), Some(slot_ref)) = (bucket.tags.get_mut(len), bucket.refs.get_mut(len))
        else {
            // A full bucket: the key may be in a later one.
            return None;
        };
        bucket.epoch = t.epoch;
        bucket.len = len as u32;
        let Some(reference) = allocate(
            &mut t.lines,
            &mut t.short_len,
            &mut t.long_len,
            t.capacity,
            key,
            bytes,
            tcp_flags,
        ) else {
            return Some(AddOutcome::Full);
        };
        *slot_tag = tag;
        *slot_ref = reference;
        bucket.len += 1;
        Some(AddOutcome::Inserted)
    }

    /// Looks `key` up from bucket `home` on, bucket after bucket, and updates it or inserts it into the first free
    /// slot.
    #[inline]
    fn search(&mut self, home: usize, key: &TableKey, bytes: u64, tcp_flags: u8) -> AddOutcome {
        let epoch = self.t.epoch;
        let n = self.t.buckets.len();
        let tag = key.hash as u32;
        let mut index = home;
        // At most `capacity` flows live in the `>= 1.25 * capacity` slots, so some bucket has a free slot and
        // the probe ends within `n` buckets.
        for _ in 0..n {
            let Some(bucket) = self.t.buckets.get_mut(index) else {
                break;
            };
            if bucket.epoch != epoch {
                bucket.epoch = epoch;
                bucket.len = 0;
            }
            let mut matches = tag_matches(bucket, epoch, tag);
            while matches != 0 {
                if let Some(&reference) = bucket.refs.get(matches.trailing_zeros() as usize)
                    && let Some(outcome) =
                        update_entry(&mut self.t.lines, reference, key, bytes, tcp_flags)
                {
                    return outcome;
                }
                matches &= matches - 1;
            }
            let len = bucket.len as usize;
            if len < SLOTS_PER_BUCKET {
                let Some(reference) = allocate(
                    &mut self.t.lines,
                    &mut self.t.short_len,
                    &mut self.t.long_len,
                    self.t.capacity,
                    key,
                    bytes,
                    tcp_flags,
                ) else {
                    return AddOutcome::Full;
                };
                if let (Some(t), Some(r)) = (bucket.tags.get_mut(len), bucket.refs.get_mut(len)) {
                    *t = tag;
                    *r = reference;
                    bucket.len += 1;
                }
                return AddOutcome::Inserted;
            }
            index += 1;
            if index == n {
                index = 0;
            }
        }
        AddOutcome::Full
    }

    /// [`FlowTable::reserve_enis`] out of line, for [`FlowTable::count`].
    #[cold]
    #[inline(never)]
    fn reserve_more(&mut self, slots: usize) {
        self.reserve_enis(slots);
    }

    /// Adds one packet's outcome to its ENI's totals.
    #[inline]
    fn count(&mut self, eni: EniSlot, bytes: u64, outcome: AddOutcome) {
        if eni.index() >= self.t.totals.len() {
            // Only when the caller did not reserve the slot (the meter always does).
            self.reserve_more(eni.index() + 1);
        }
        let Some(totals) = self.t.totals.get_mut(eni.index()) else {
            return;
        };
        let counts = SkipCounts { packets: 1, bytes };
        if outcome.is_counted() {
            totals.recorded.add(counts);
        } else {
            totals.skipped.add(counts);
            self.t.refused += 1;
        }
    }

    /// Per-ENI totals of the window, by slot (see [`FlowTable::reserve_enis`]).
    pub fn totals(&self) -> &[EniTotals] {
        &self.t.totals
    }

    /// Whether any packet was applied since the last clear (recorded or skipped): a recorded packet is in a
    /// flow.
    pub fn has_traffic(&self) -> bool {
        !self.is_empty() || self.t.refused != 0
    }

    /// Updates refused since the last clear ([`AddOutcome::Full`] or [`AddOutcome::Saturated`]): a caller that
    /// sees it unchanged across [`FlowTable::update_burst`] knows every update of the burst was counted.
    pub fn refused(&self) -> u64 {
        self.t.refused
    }

    /// Appends every flow to `out` (O(flows), a sequential scan of the arena); the table is unchanged.
    pub fn append_to(&self, out: &mut FlowBatch) {
        out.reserve(self.len());
        out.entries.extend(self.iter());
    }

    /// Moves every flow into `out` and empties the table.
    pub fn drain_into(&mut self, out: &mut FlowBatch) {
        self.append_to(out);
        self.clear();
    }

    /// The flows with their counts: compact entries first, then long ones, each in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = FlowEntry> + '_ {
        let short = self
            .t
            .lines
            .iter()
            .flat_map(|line| line.0.as_chunks::<4>().0.iter())
            .take(self.t.short_len as usize)
            .map(decode_short);
        let long = self
            .t
            .lines
            .iter()
            .rev()
            .take(self.t.long_len as usize)
            .map(|line| decode_long(&line.0));
        short.chain(long)
    }

    /// Empties the table: O(1) for the flows (see the module docs), O(ENIs) for the per-ENI totals when there
    /// was traffic.
    pub fn clear(&mut self) {
        if self.has_traffic() {
            self.t.totals.fill(EniTotals::default());
            self.t.refused = 0;
        }
        self.t.short_len = 0;
        self.t.long_len = 0;
        self.t.epoch = self.t.epoch.wrapping_add(1);
        if self.t.epoch == 0 {
            // Wrapped: buckets of an old epoch 1 would look current. Rewrite them all, once per 2^32 clears.
            self.t.buckets.fill(EMPTY_BUCKET);
            self.t.epoch = 1;
        }
    }

    /// Number of flows present.
    pub fn len(&self) -> usize {
        self.t.short_len as usize + self.t.long_len as usize
    }

    /// Whether no flow is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity in units (an IPv4 flow takes one, an IPv6 flow two).
    pub fn capacity(&self) -> usize {
        self.t.capacity
    }

    /// Units in use.
    pub fn units_used(&self) -> usize {
        self.t.short_len as usize + 2 * self.t.long_len as usize
    }

    /// The hash seed.
    pub fn seed(&self) -> u64 {
        self.t.seed
    }

    /// Number of 64-byte buckets of the index.
    pub fn bucket_count(&self) -> usize {
        self.t.buckets.len()
    }

    /// Bytes of the index and the entry arena.
    pub fn memory_bytes(&self) -> usize {
        (self.t.buckets.len() + self.t.lines.len()) * 64
    }

    /// Whether `other` has the same capacity and seed (so it can replace this table).
    pub fn same_shape(&self, other: &FlowTable) -> bool {
        self.t.capacity == other.t.capacity && self.t.seed == other.t.seed
    }

    #[cfg(test)]
    pub(crate) fn set_epoch(&mut self, epoch: u32) {
        self.t.epoch = epoch;
    }
}

impl fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("capacity", &self.t.capacity)
            .field("flows", &self.len())
            .field("units_used", &self.units_used())
            .field("buckets", &self.t.buckets.len())
            .field("epoch", &self.t.epoch)
            .finish_non_exhaustive()
    }
}

/// A vector of `n` copies of `value`, every element written now (so every page is faulted in).
fn prefaulted<T: Copy>(n: usize, value: T) -> Result<Vec<T>, TableError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| TableError::Allocation {
        bytes: n.saturating_mul(size_of::<T>()),
    })?;
    // `resize` writes every element (unlike `vec![0; n]`, which may map lazily zeroed pages).
    v.resize(n, value);
    Ok(v)
}

/// Bit `i` set when slot `i` of `bucket` is in use in `epoch` and carries `tag` (branch-free).
#[inline]
fn tag_matches(bucket: &Bucket, epoch: u32, tag: u32) -> u32 {
    // The length is at most SLOTS_PER_BUCKET (every insert checks it), so the shift needs no clamp.
    tag_bits(&bucket.tags, tag) & 1u32.wrapping_shl(bucket.live_len(epoch)).wrapping_sub(1)
}

/// Bit `i` set when `tags[i] == tag`: two 4-lane compares (lanes 0-3 and 3-6).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn tag_bits(tags: &[u32; SLOTS_PER_BUCKET], tag: u32) -> u32 {
    use safe_arch::{cast_to_m128_from_m128i, cmp_eq_mask_i32_m128i, m128i, move_mask_m128};
    // Both chunks always exist (7 tags): one 16-byte load each.
    let (Some(&low), Some(&high)) = (tags.first_chunk::<4>(), tags.last_chunk::<4>()) else {
        return 0;
    };
    let splat = safe_arch::set_splat_i32_m128i(tag as i32);
    let low = cmp_eq_mask_i32_m128i(m128i::from(low), splat);
    let high = cmp_eq_mask_i32_m128i(m128i::from(high), splat);
    let low = move_mask_m128(cast_to_m128_from_m128i(low)) as u32;
    let high = move_mask_m128(cast_to_m128_from_m128i(high)) as u32;
    low | high << 3
}

/// Bit `i` set when `tags[i] == tag`.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn tag_bits(tags: &[u32; SLOTS_PER_BUCKET], tag: u32) -> u32 {
    tag_bits_portable(tags, tag)
}

/// [`tag_bits`] one tag at a time: the other targets' version, and the SSE2 version's reference in the tests.
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse2", not(test)),
    allow(dead_code)
)]
#[inline(always)]
fn tag_bits_portable(tags: &[u32; SLOTS_PER_BUCKET], tag: u32) -> u32 {
    let mut matches = 0u32;
    for (i, &t) in tags.iter().enumerate() {
        matches |= u32::from(t == tag) << i;
    }
    matches
}

/// Bucket of `hash`: its high 32 bits scaled to `0..n` (n < 2^32).
#[inline]
fn bucket_index(hash: u64, n: usize) -> usize {
    (((hash >> 32) * n as u64) >> 32) as usize
}

/// 64x64 -> 128-bit multiply, folded to 64 bits.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

fn secrets(seed: u64) -> [u64; 4] {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    [next(), next(), next(), next()]
}

/// Updates the entry behind `reference` if it holds `key`; `None` when it holds another key.
#[inline(always)]
fn update_entry(
    lines: &mut [Line],
    reference: u32,
    key: &TableKey,
    bytes: u64,
    tcp_flags: u8,
) -> Option<AddOutcome> {
    if reference & LONG != 0 {
        if !key.long {
            return None;
        }
        let e = &mut lines.get_mut((reference & !LONG) as usize)?.0;
        let [w0, w1, w2, w3, w4, w5, packets, total] = e;
        let k = &key.words;
        // One OR of XORs: comparing the five words as arrays compiled to a call of memcmp.
        let differ = (*w0 ^ k[0])
            | (*w1 ^ k[1])
            | (*w2 ^ k[2])
            | (*w3 ^ k[3])
            | (*w4 ^ k[4])
            | ((*w5 & 0xff_ffff) ^ k[5]);
        if differ != 0 {
            return None;
        }
        let (Some(p), Some(b)) = (packets.checked_add(1), total.checked_add(bytes)) else {
            return Some(AddOutcome::Saturated);
        };
        *packets = p;
        *total = b;
        *w5 |= u64::from(tcp_flags) << 24;
        Some(AddOutcome::Updated)
    } else {
        if key.long {
            return None;
        }
        let e = short_mut(lines, reference)?;
        let [addresses, eni_ports, total, tail] = e;
        if *addresses != key.words[0]
            || *eni_ports != key.words[1]
            || *tail & 0xffff != key.words[2]
        {
            return None;
        }
        let packets = *tail >> SHORT_PACKET_SHIFT;
        let Some(b) = total.checked_add(bytes) else {
            return Some(AddOutcome::Saturated);
        };
        if packets >= IPV4_MAX_PACKETS {
            return Some(AddOutcome::Saturated);
        }
        *total = b;
        *tail = (*tail + (1 << SHORT_PACKET_SHIFT)) | u64::from(tcp_flags) << 16;
        Some(AddOutcome::Updated)
    }
}

/// Allocates and fills an entry for a new flow; its reference, or `None` when no unit is left.
#[inline]
fn allocate(
    lines: &mut [Line],
    short_len: &mut u32,
    long_len: &mut u32,
    capacity: usize,
    key: &TableKey,
    bytes: u64,
    tcp_flags: u8,
) -> Option<u32> {
    let units = *short_len as usize + 2 * *long_len as usize;
    let line_count = lines.len();
    if key.long {
        // Long entries grow down from the last line; the compact region must not reach the new line.
        let line = line_count.checked_sub(*long_len as usize + 1)?;
        if units + 2 > capacity || (*short_len as usize).div_ceil(2) > line {
            return None;
        }
        let k = &key.words;
        let e = &mut lines.get_mut(line)?.0;
        *e = [
            k[0],
            k[1],
            k[2],
            k[3],
            k[4],
            k[5] | u64::from(tcp_flags) << 24,
            1,
            bytes,
        ];
        *long_len += 1;
        // line < lines.len() <= MAX_FLOW_CAPACITY / 2 < 2^31.
        Some(line as u32 | LONG)
    } else {
        let index = *short_len as usize;
        if units + 1 > capacity || index / 2 + *long_len as usize >= line_count {
            return None;
        }
        // index < 2 * lines.len() <= MAX_FLOW_CAPACITY + 1 < 2^31.
        let reference = index as u32;
        let e = short_mut(lines, reference)?;
        *e = [
            key.words[0],
            key.words[1],
            bytes,
            key.words[2] | u64::from(tcp_flags) << 16 | 1 << SHORT_PACKET_SHIFT,
        ];
        *short_len += 1;
        Some(reference)
    }
}

#[inline]
fn short_mut(lines: &mut [Line], reference: u32) -> Option<&mut [u64; 4]> {
    let line = lines.get_mut((reference / 2) as usize)?;
    line.0
        .as_chunks_mut::<4>()
        .0
        .get_mut((reference % 2) as usize)
}

/// Prefetches the line of the entry behind `reference` (nothing if out of range).
#[inline]
fn prefetch_entry(lines: &[Line], reference: u32) {
    let line = if reference & LONG != 0 {
        (reference & !LONG) as usize
    } else {
        (reference / 2) as usize
    };
    if let Some(l) = lines.get(line) {
        prefetch(l);
    }
}

fn decode_meta(meta: u64) -> (Direction, Action) {
    let direction = if meta & META_OUT != 0 {
        Direction::Out
    } else {
        Direction::In
    };
    let action = if meta & META_REJECT != 0 {
        Action::Reject
    } else {
        Action::Accept
    };
    (direction, action)
}

fn decode_short(e: &[u64; 4]) -> FlowEntry {
    let [addresses, eni_ports, bytes, tail] = *e;
    let mapped = |v4: u64| -> AddrBytes {
        let a = (v4 as u32).to_le_bytes();
        [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
        ]
    };
    let (direction, action) = decode_meta(tail >> 8);
    FlowEntry {
        key: FlowKey {
            src: mapped(addresses),
            dst: mapped(addresses >> 32),
            eni: EniSlot(eni_ports as u32),
            src_port: (eni_ports >> 32) as u16,
            dst_port: (eni_ports >> 48) as u16,
            protocol: tail as u8,
            direction,
            action,
            family: Family::V4,
        },
        counts: FlowCounts {
            packets: tail >> SHORT_PACKET_SHIFT,
            bytes,
            tcp_flags: (tail >> 16) as u8,
        },
    }
}

fn decode_long(e: &[u64; 8]) -> FlowEntry {
    let [s0, s1, d0, d1, eni_ports, tail, packets, bytes] = *e;
    let meta = tail >> 8;
    let (direction, action) = decode_meta(meta);
    FlowEntry {
        key: FlowKey {
            src: (u128::from(s1) << 64 | u128::from(s0)).to_le_bytes(),
            dst: (u128::from(d1) << 64 | u128::from(d0)).to_le_bytes(),
            eni: EniSlot(eni_ports as u32),
            src_port: (eni_ports >> 32) as u16,
            dst_port: (eni_ports >> 48) as u16,
            protocol: tail as u8,
            direction,
            action,
            family: if meta & META_V6 != 0 {
                Family::V6
            } else {
                Family::V4
            },
        },
        counts: FlowCounts {
            packets,
            bytes,
            tcp_flags: (tail >> 24) as u8,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Action, Direction, EniSlot};
    use crate::wire::{Family, v4_mapped};

    #[test]
    fn tag_bits_matches_the_portable_version() {
        // Every tag of every slot, a tag in several slots, and no match.
        let tags: [u32; SLOTS_PER_BUCKET] = [7, 1, 7, 3, 7, 5, 0xffff_ffff];
        for tag in [0, 1, 3, 5, 7, 9, 0xffff_ffff] {
            assert_eq!(
                tag_bits(&tags, tag),
                tag_bits_portable(&tags, tag),
                "tag {tag}"
            );
        }
        for slot in 0..SLOTS_PER_BUCKET {
            let mut one = [0u32; SLOTS_PER_BUCKET];
            one[slot] = 42;
            assert_eq!(tag_bits(&one, 42), 1 << slot);
            assert_eq!(tag_bits_portable(&one, 42), 1 << slot);
        }
        assert_eq!(tag_bits(&tags, 7), 0b10101);
    }

    fn key(n: u32) -> FlowKey {
        FlowKey {
            src: v4_mapped(n.to_be_bytes()),
            dst: v4_mapped([10, 0, 0, 7]),
            eni: EniSlot(n % 3),
            src_port: n as u16,
            dst_port: 443,
            protocol: 6,
            direction: if n.is_multiple_of(2) {
                Direction::In
            } else {
                Direction::Out
            },
            action: if n.is_multiple_of(5) {
                Action::Reject
            } else {
                Action::Accept
            },
            family: Family::V4,
        }
    }

    fn key6(n: u32) -> FlowKey {
        let mut src = [0x20; 16];
        src[12..].copy_from_slice(&n.to_be_bytes());
        FlowKey {
            src,
            dst: [0xfe; 16],
            family: Family::V6,
            protocol: 17,
            ..key(n)
        }
    }

    fn counts(t: &FlowTable) -> Vec<FlowEntry> {
        let mut v: Vec<FlowEntry> = t.iter().collect();
        v.sort_by_key(|e| e.key);
        v
    }

    #[test]
    fn counts_and_drains() {
        let mut t = FlowTable::with_capacity(100);
        for n in 0..100 {
            assert!(t.add(&key(n), 100, 2));
            assert!(t.add(&key(n), 50, 16));
        }
        assert_eq!(t.len(), 100);
        let mut batch = FlowBatch::new();
        t.drain_into(&mut batch);
        assert!(t.is_empty());
        assert_eq!(batch.len(), 100);
        for e in batch.entries() {
            assert_eq!(
                e.counts,
                FlowCounts {
                    packets: 2,
                    bytes: 150,
                    tcp_flags: 18
                }
            );
        }
        let mut keys: Vec<FlowKey> = batch.entries().iter().map(|e| e.key).collect();
        keys.sort();
        let mut want: Vec<FlowKey> = (0..100).map(key).collect();
        want.sort();
        assert_eq!(keys, want, "keys survive the compact form");
        // Reusable after draining.
        assert!(t.add(&key(5), 1, 0));
        assert_eq!(t.len(), 1);
        assert_eq!(t.iter().next().map(|e| e.counts.packets), Some(1));
    }

    #[test]
    fn long_keys_round_trip() {
        let mut t = FlowTable::with_capacity(64);
        let mut odd = key(9);
        odd.src = [1; 16]; // family V4 but not IPv4-mapped: stored in the long form, exactly.
        for k in [key6(1), key6(2), odd] {
            assert!(t.add(&k, 1000, 1));
            assert!(t.add(&k, 1, 4));
        }
        assert!(t.add(&key(3), 7, 0));
        assert_eq!(t.units_used(), 7);
        let got = counts(&t);
        let mut want = vec![key6(1), key6(2), odd, key(3)];
        want.sort();
        assert_eq!(got.iter().map(|e| e.key).collect::<Vec<_>>(), want);
        for e in &got {
            let expected = if e.key == key(3) {
                FlowCounts {
                    packets: 1,
                    bytes: 7,
                    tcp_flags: 0,
                }
            } else {
                FlowCounts {
                    packets: 2,
                    bytes: 1001,
                    tcp_flags: 5,
                }
            };
            assert_eq!(e.counts, expected);
        }
    }

    #[test]
    fn full_table_refuses_new_keys_only() {
        let mut t = FlowTable::with_capacity(10);
        for n in 0..10 {
            assert!(t.add(&key(n), 1, 0));
        }
        assert!(!t.add(&key(10), 1, 0));
        assert!(!t.add(&key6(10), 1, 0));
        assert!(t.add(&key(3), 1, 0));
        assert_eq!(t.len(), 10);
        let mut batch = FlowBatch::new();
        t.drain_into(&mut batch);
        assert_eq!(
            batch
                .entries()
                .iter()
                .map(|e| e.counts.packets)
                .sum::<u64>(),
            11
        );
    }

    #[test]
    fn ipv6_flows_take_two_units_in_any_mix() {
        for capacity in 1..24 {
            for pattern in 0u32..4 {
                let mut t = FlowTable::with_capacity(capacity);
                let (mut v4, mut v6, mut n) = (0usize, 0usize, 0u32);
                loop {
                    let long = (n + pattern) % (pattern + 2) == 0;
                    let added = if long {
                        t.add(&key6(n), 1, 0)
                    } else {
                        t.add(&key(n), 1, 0)
                    };
                    let fits = v4 + 2 * v6 + if long { 2 } else { 1 } <= capacity;
                    assert_eq!(added, fits, "capacity {capacity} pattern {pattern} n {n}");
                    if !added {
                        break;
                    }
                    if long {
                        v6 += 1;
                    } else {
                        v4 += 1;
                    }
                    n += 1;
                }
                assert_eq!(t.units_used(), v4 + 2 * v6);
                assert_eq!(t.iter().count(), v4 + v6);
                // The remaining units still take what fits.
                while t.add(&key(n + 1000), 1, 0) {
                    n += 1;
                }
                assert_eq!(t.units_used(), capacity);
            }
        }
    }

    #[test]
    fn zero_capacity_is_clamped() {
        let mut t = FlowTable::with_capacity(0);
        assert_eq!(t.capacity(), 1);
        assert!(t.add(&key(1), 1, 0));
        assert!(!t.add(&key(2), 1, 0));
        assert_eq!(
            FlowTable::with_seed(0, 1).unwrap_err(),
            TableError::Capacity(0)
        );
        assert_eq!(
            FlowTable::with_seed(MAX_FLOW_CAPACITY + 1, 1).unwrap_err(),
            TableError::Capacity(MAX_FLOW_CAPACITY + 1)
        );
    }

    #[test]
    fn clear_is_lazy_and_survives_epoch_wrap() {
        let mut t = FlowTable::with_capacity(50);
        t.set_epoch(u32::MAX - 2);
        for round in 0..6u32 {
            for n in 0..50 {
                assert!(t.add(&key(n + round), 3, 0), "round {round}");
            }
            assert!(!t.add(&key(999), 1, 0));
            let got = counts(&t);
            assert_eq!(got.len(), 50);
            assert!(
                got.iter()
                    .all(|e| e.counts.packets == 1 && e.counts.bytes == 3)
            );
            t.clear();
            assert!(t.is_empty());
            assert_eq!(t.iter().count(), 0);
        }
        assert!(t.t.epoch >= 1);
    }

    #[test]
    fn saturation_is_reported_not_wrapped() {
        let mut t = FlowTable::with_capacity(4);
        assert!(t.add(&key(1), u64::MAX - 10, 0));
        let k = t.key(&key(1));
        assert_eq!(t.add_key(&k, 11, 0), AddOutcome::Saturated);
        assert_eq!(t.add_key(&k, 10, 0), AddOutcome::Updated);
        assert_eq!(t.iter().next().unwrap().counts.bytes, u64::MAX);
        // The compact packet counter: push it to its limit through the entry itself.
        let k2 = t.key(&key(2));
        assert_eq!(t.add_key(&k2, 1, 0), AddOutcome::Inserted);
        if let Some(e) = short_mut(&mut t.t.lines, 1) {
            e[3] = e[3] & 0xff_ffff | (IPV4_MAX_PACKETS - 1) << SHORT_PACKET_SHIFT;
        }
        assert_eq!(t.add_key(&k2, 1, 0), AddOutcome::Updated);
        assert_eq!(t.add_key(&k2, 1, 0), AddOutcome::Saturated);
        let e = t.iter().find(|e| e.key == key(2)).unwrap();
        assert_eq!((e.counts.packets, e.counts.bytes), (IPV4_MAX_PACKETS, 2));
    }

    #[test]
    fn burst_equals_single_updates() {
        let mut a = FlowTable::with_capacity(300);
        let mut b = FlowTable::with_capacity(300);
        let mut updates = Vec::new();
        let mut singles = Vec::new();
        for i in 0u32..2000 {
            let n = i.wrapping_mul(2_654_435_761) % 400;
            let k = if n % 7 == 0 { key6(n) } else { key(n) };
            updates.push(FlowUpdate::new(a.key(&k), u64::from(n), (n % 64) as u8));
            singles.push(b.add_key(&b.key(&k), u64::from(n), (n % 64) as u8));
        }
        for chunk in updates.chunks_mut(32) {
            a.update_burst(chunk);
        }
        let outcomes: Vec<AddOutcome> = updates.iter().map(FlowUpdate::outcome).collect();
        assert_eq!(outcomes, singles);
        assert!(outcomes.contains(&AddOutcome::Full));
        assert_eq!(counts(&a), counts(&b));
        assert_eq!(a.totals(), b.totals());
        // The totals are exact: recorded = the flows' counts, skipped = the refused packets, per ENI.
        for slot in 0..3u32 {
            let flows = counts(&a)
                .iter()
                .filter(|e| e.key.eni == EniSlot(slot))
                .fold(SkipCounts::default(), |mut c, e| {
                    c.add(SkipCounts {
                        packets: e.counts.packets,
                        bytes: e.counts.bytes,
                    });
                    c
                });
            assert_eq!(a.totals()[slot as usize].recorded, flows);
        }
        let skipped: u64 = a.totals().iter().map(|t| t.skipped.packets).sum();
        let full = outcomes.iter().filter(|o| !o.is_counted()).count() as u64;
        assert_eq!(skipped, full);
        a.clear();
        assert!(a.totals().iter().all(EniTotals::is_zero) && !a.has_traffic());
    }

    #[test]
    fn bursts_after_a_clear_equal_single_updates() {
        // A window after a seal: a used table cleared (stale buckets, old entries in the arena) takes every flow
        // again as new, each new flow often twice in one burst (the second finds no candidate: the first was
        // not stored when the burst's entries were loaded), with IPv6 keys among them and 500 keys in 108
        // buckets, so that some home buckets fill up.
        let (mut a, mut b) = (FlowTable::with_capacity(600), FlowTable::with_capacity(600));
        let mut homes = vec![0usize; a.bucket_count()];
        for n in 0u32..500 {
            let k = if n % 5 == 0 { key6(n) } else { key(n) };
            homes[bucket_index(a.key(&k).hash, a.bucket_count())] += 1;
        }
        assert!(homes.iter().any(|&keys| keys > SLOTS_PER_BUCKET));
        for round in 0u32..3 {
            a.clear();
            b.clear();
            let mut updates = Vec::new();
            let mut singles = Vec::new();
            for i in 0u32..1200 {
                let n = (i / 2).wrapping_mul(2_654_435_761).wrapping_add(round) % 500;
                let k = if n % 5 == 0 { key6(n) } else { key(n) };
                updates.push(FlowUpdate::new(a.key(&k), u64::from(i), 0x10));
                singles.push(b.add_key(&b.key(&k), u64::from(i), 0x10));
            }
            for chunk in updates.chunks_mut(32) {
                a.update_burst(chunk);
            }
            let outcomes: Vec<AddOutcome> = updates.iter().map(FlowUpdate::outcome).collect();
            assert_eq!(outcomes, singles, "round {round}");
            assert!(
                outcomes.contains(&AddOutcome::Inserted) && outcomes.contains(&AddOutcome::Updated)
            );
            assert_eq!(counts(&a), counts(&b));
            assert_eq!(a.totals(), b.totals());
        }
    }

    #[test]
    fn hash_spreads_keys_that_share_rss_inputs() {
        // Keys that differ only in one address byte and the ENI (what one RSS queue might see): the buckets
        // stay evenly loaded, and different seeds give different layouts.
        let t = FlowTable::with_seed(1 << 16, 7).unwrap();
        let u = FlowTable::with_seed(1 << 16, 8).unwrap();
        let n = t.bucket_count();
        let mut load = vec![0u32; n];
        let mut same = 0;
        for i in 0..(1u32 << 16) {
            let mut k = key(i << 8);
            k.src_port = 40000;
            let (h, g) = (t.key(&k).hash(), u.key(&k).hash());
            load[bucket_index(h, n)] += 1;
            same += u32::from(bucket_index(h, n) == bucket_index(g, n));
        }
        let max = load.iter().copied().max().unwrap_or(0);
        // Mean 5.6 per bucket: a maximum far above ~20 would mean clustering.
        assert!(max <= 22, "max bucket load {max}");
        assert!(same < 100, "seeds do not change the layout: {same}");
    }

    #[test]
    fn figures_are_within_target() {
        let t = FlowTable::with_capacity(1 << 20);
        let per_unit = t.memory_bytes() as f64 / t.capacity() as f64;
        assert!((per_unit - IPV4_BYTES_PER_FLOW).abs() < 0.1, "{per_unit}");
        assert!((IPV4_BYTES_PER_FLOW - 43.43).abs() < 0.01);
        assert!((IPV6_BYTES_PER_FLOW - 86.86).abs() < 0.01);
    }

    #[test]
    fn sort_and_merge_sums_equal_keys() {
        let mut b = FlowBatch::new();
        for n in [3, 1, 3, 2, 1] {
            b.push(FlowEntry {
                key: key(n),
                counts: FlowCounts {
                    packets: 1,
                    bytes: 10,
                    tcp_flags: 1 << (n % 3),
                },
            });
        }
        b.sort_and_merge();
        assert_eq!(b.len(), 3);
        assert_eq!(b.entries()[0].counts.packets, 2);
        assert!(b.entries().windows(2).all(|w| w[0].key < w[1].key));
    }
}
