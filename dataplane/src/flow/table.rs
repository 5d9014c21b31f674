//! The per-worker flow table of the open window, and the batch a sealed window carries its flows in.
//!
//! # Guarantees
//! - All memory is allocated by [`FlowTable::with_capacity`]; [`FlowTable::add`] never allocates. When
//!   [`FlowTable::capacity`] flows are present, `add` of a new key returns `false` (the caller accounts the
//!   packet as SKIPDATA); a known key is always updated.
//! - [`FlowTable::drain_into`] moves every flow out in O(flows) and leaves the table empty for the next window.
//!
//! # Design
//! Open addressing with linear probing over 64-byte buckets (key, flags, packets, bytes: one cache line),
//! about 4/3 buckets per flow of capacity, indexed by the high bits of [`FlowKey::hash64`] with a
//! multiply-shift range reduction (no power-of-two rounding). An empty bucket has `packets == 0`. A list of
//! occupied bucket indices (preallocated) makes draining proportional to the flows, not to the table.
//! The API (`add`, `drain_into`) is what a later bucketized, burst-pipelined table keeps.

use super::key::FlowKey;

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

#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    key: FlowKey,
    tcp_flags: u8,
    packets: u64,
    bytes: u64,
}

const _: () = assert!(size_of::<Bucket>() == 64);

/// A fixed-capacity open-addressing flow table (see the module docs).
#[derive(Debug)]
pub struct FlowTable {
    buckets: Vec<Bucket>,
    occupied: Vec<u32>,
    capacity: usize,
}

/// Largest supported capacity (bucket indices are u32).
pub const MAX_FLOW_CAPACITY: usize = 1 << 30;

impl FlowTable {
    /// A table for up to `capacity` flows (clamped to 1..=[`MAX_FLOW_CAPACITY`]), fully allocated now.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_FLOW_CAPACITY);
        let buckets = capacity + capacity / 3 + 1;
        let empty = Bucket {
            key: FlowKey {
                src: [0; 16],
                dst: [0; 16],
                eni: super::EniSlot(0),
                src_port: 0,
                dst_port: 0,
                protocol: 0,
                direction: super::Direction::In,
                action: super::Action::Accept,
                family: crate::wire::Family::V4,
            },
            tcp_flags: 0,
            packets: 0,
            bytes: 0,
        };
        FlowTable {
            buckets: vec![empty; buckets],
            occupied: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds one packet of `bytes` with `tcp_flags` to the flow `key`. Returns `false`, changing nothing, when the
    /// key is new and the table already holds [`FlowTable::capacity`] flows.
    #[inline]
    pub fn add(&mut self, key: &FlowKey, bytes: u64, tcp_flags: u8) -> bool {
        let n = self.buckets.len();
        let mut i = ((u128::from(key.hash64()) * n as u128) >> 64) as usize;
        // At most `capacity` of the `n > capacity` buckets are used, so the probe meets the key or an empty
        // bucket within `n` steps.
        for _ in 0..n {
            let Some(bucket) = self.buckets.get_mut(i) else {
                break;
            };
            if bucket.packets == 0 {
                if self.occupied.len() >= self.capacity {
                    return false;
                }
                bucket.key = *key;
                bucket.packets = 1;
                bucket.bytes = bytes;
                bucket.tcp_flags = tcp_flags;
                // i < n <= MAX_FLOW_CAPACITY * 4 / 3 + 1 < u32::MAX.
                self.occupied.push(i as u32);
                return true;
            }
            if bucket.key == *key {
                bucket.packets += 1;
                bucket.bytes += bytes;
                bucket.tcp_flags |= tcp_flags;
                return true;
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        false
    }

    /// Moves every flow into `out` and empties the table.
    pub fn drain_into(&mut self, out: &mut FlowBatch) {
        out.reserve(self.occupied.len());
        for &i in &self.occupied {
            if let Some(bucket) = self.buckets.get_mut(i as usize) {
                out.push(FlowEntry {
                    key: bucket.key,
                    counts: FlowCounts {
                        packets: bucket.packets,
                        bytes: bucket.bytes,
                        tcp_flags: bucket.tcp_flags,
                    },
                });
                bucket.packets = 0;
            }
        }
        self.occupied.clear();
    }

    /// Number of flows present.
    pub fn len(&self) -> usize {
        self.occupied.len()
    }

    /// Whether no flow is present.
    pub fn is_empty(&self) -> bool {
        self.occupied.is_empty()
    }

    /// Most flows the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Action, Direction, EniSlot};
    use crate::wire::Family;

    fn key(n: u32) -> FlowKey {
        let mut src = [0u8; 16];
        src[12..].copy_from_slice(&n.to_be_bytes());
        FlowKey {
            src,
            dst: [7; 16],
            eni: EniSlot(n % 3),
            src_port: n as u16,
            dst_port: 443,
            protocol: 6,
            direction: Direction::In,
            action: Action::Accept,
            family: Family::V4,
        }
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
        // Reusable after draining.
        assert!(t.add(&key(5), 1, 0));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn full_table_refuses_new_keys_only() {
        let mut t = FlowTable::with_capacity(10);
        for n in 0..10 {
            assert!(t.add(&key(n), 1, 0));
        }
        assert!(!t.add(&key(10), 1, 0));
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
    fn zero_capacity_is_clamped() {
        let mut t = FlowTable::with_capacity(0);
        assert_eq!(t.capacity(), 1);
        assert!(t.add(&key(1), 1, 0));
        assert!(!t.add(&key(2), 1, 0));
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
