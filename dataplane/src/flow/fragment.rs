//! The per-worker fragment table: gives a non-first IP fragment the ports of its datagram's first fragment.
//!
//! # Guarantees
//! Bounded and allocation-free after creation: a direct-mapped array of `capacity` entries keyed by
//! (family, addresses, datagram protocol, IP id). A first fragment overwrites whatever shared its cell (counted
//! as an eviction when that entry was still live); an entry older than the timeout is never matched, so a
//! recycled IP id does not inherit stale ports.
//!
//! # Limitations
//! Per worker: with RSS spreading one datagram's fragments over several queues, a non-first fragment may miss
//! its first fragment and is recorded with ports 0 (as SPEC.md prescribes when the first was not seen).

use crate::wire::{AddrBytes, Family, Packet};

#[derive(Debug, Clone, Copy)]
struct Entry {
    src: AddrBytes,
    dst: AddrBytes,
    id: u32,
    datagram_protocol: u8,
    family: Family,
    /// 0 = empty.
    seen_at_plus_one: u64,
    l4_protocol: u8,
    src_port: u16,
    dst_port: u16,
}

/// What a lookup or insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FragmentOutcome {
    /// Not a fragment.
    NotFragment,
    /// A first fragment; `evicted` when it replaced a live entry of another datagram.
    First { evicted: bool },
    /// A non-first fragment that got its first fragment's ports.
    Matched,
    /// A non-first fragment whose first fragment was not seen (or expired): ports 0.
    Unmatched,
}

/// Direct-mapped (datagram -> ports) table.
#[derive(Debug)]
pub(crate) struct FragmentTable {
    entries: Vec<Entry>,
    timeout_secs: u64,
}

impl FragmentTable {
    /// A table of `capacity` (at least 1) cells; entries expire `timeout_secs` after their first fragment.
    pub(crate) fn new(capacity: usize, timeout_secs: u64) -> Self {
        let empty = Entry {
            src: [0; 16],
            dst: [0; 16],
            id: 0,
            datagram_protocol: 0,
            family: Family::V4,
            seen_at_plus_one: 0,
            l4_protocol: 0,
            src_port: 0,
            dst_port: 0,
        };
        FragmentTable {
            entries: vec![empty; capacity.max(1)],
            timeout_secs,
        }
    }

    /// Records a first fragment's ports, or gives a non-first fragment its datagram's protocol and ports.
    #[inline]
    pub(crate) fn resolve(&mut self, packet: &mut Packet, now_secs: u64) -> FragmentOutcome {
        let Some(fragment) = packet.fragment else {
            return FragmentOutcome::NotFragment;
        };
        let index = self.index(packet, fragment.id, fragment.protocol);
        let timeout = self.timeout_secs;
        let Some(entry) = self.entries.get_mut(index) else {
            return FragmentOutcome::Unmatched;
        };
        let live = entry.seen_at_plus_one != 0
            && now_secs.saturating_sub(entry.seen_at_plus_one - 1) <= timeout;
        let same = entry.id == fragment.id
            && entry.datagram_protocol == fragment.protocol
            && entry.family == packet.family
            && entry.src == packet.src
            && entry.dst == packet.dst;
        if fragment.first {
            *entry = Entry {
                src: packet.src,
                dst: packet.dst,
                id: fragment.id,
                datagram_protocol: fragment.protocol,
                family: packet.family,
                seen_at_plus_one: now_secs.saturating_add(1),
                l4_protocol: packet.protocol,
                src_port: packet.src_port,
                dst_port: packet.dst_port,
            };
            FragmentOutcome::First {
                evicted: live && !same,
            }
        } else if live && same {
            packet.protocol = entry.l4_protocol;
            packet.src_port = entry.src_port;
            packet.dst_port = entry.dst_port;
            FragmentOutcome::Matched
        } else {
            FragmentOutcome::Unmatched
        }
    }

    fn index(&self, packet: &Packet, id: u32, protocol: u8) -> usize {
        let mut h = u64::from(id) << 8 | u64::from(protocol);
        for chunk in packet.src.chunks_exact(8).chain(packet.dst.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
        ((u128::from(h) * self.entries.len() as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Fragment, MacAddr, v4_mapped};

    fn packet(first: bool, id: u32, ports: (u16, u16)) -> Packet {
        Packet {
            src_mac: MacAddr::default(),
            dst_mac: MacAddr::default(),
            vni: None,
            family: Family::V4,
            src: v4_mapped([10, 0, 0, 1]),
            dst: v4_mapped([10, 0, 0, 2]),
            protocol: 17,
            src_port: ports.0,
            dst_port: ports.1,
            tcp_flags: 0,
            ip_len: 100,
            fragment: Some(Fragment {
                id,
                first,
                protocol: 17,
            }),
        }
    }

    #[test]
    fn non_first_takes_first_ports() {
        let mut t = FragmentTable::new(64, 30);
        assert_eq!(
            t.resolve(&mut packet(true, 7, (53, 5353)), 100),
            FragmentOutcome::First { evicted: false }
        );
        let mut p = packet(false, 7, (0, 0));
        assert_eq!(t.resolve(&mut p, 110), FragmentOutcome::Matched);
        assert_eq!((p.src_port, p.dst_port), (53, 5353));
        // Another id, or too late: ports 0.
        let mut p = packet(false, 8, (0, 0));
        assert_eq!(t.resolve(&mut p, 110), FragmentOutcome::Unmatched);
        assert_eq!((p.src_port, p.dst_port), (0, 0));
        let mut p = packet(false, 7, (0, 0));
        assert_eq!(t.resolve(&mut p, 131), FragmentOutcome::Unmatched);
    }

    #[test]
    fn collisions_evict() {
        let mut t = FragmentTable::new(1, 30);
        t.resolve(&mut packet(true, 1, (1, 1)), 0);
        assert_eq!(
            t.resolve(&mut packet(true, 2, (2, 2)), 0),
            FragmentOutcome::First { evicted: true }
        );
        let mut p = packet(false, 1, (0, 0));
        assert_eq!(t.resolve(&mut p, 0), FragmentOutcome::Unmatched);
        let mut p = packet(false, 2, (0, 0));
        assert_eq!(t.resolve(&mut p, 0), FragmentOutcome::Matched);
        let mut plain = packet(true, 3, (1, 1));
        plain.fragment = None;
        assert_eq!(t.resolve(&mut plain, 0), FragmentOutcome::NotFragment);
    }
}
