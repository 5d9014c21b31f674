//! The flow key: what makes two packets the same flow within a window (SPEC.md, "Flow identity").
//!
//! # Guarantees
//! [`FlowKey`] has a fixed `repr(C)` layout of 44 bytes with no padding (checked at compile time), so equality
//! and hashing see every byte that matters and nothing else. [`FlowKey::hash64`] is a fixed, seedless mix of
//! its 44 bytes: the same key hashes the same in every worker and every run.

use std::fmt;

use super::eni::EniSlot;
use crate::wire::{AddrBytes, Family};

/// Direction of a flow relative to the ENI that owns the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Direction {
    /// Towards the ENI: the frame's destination MAC is the ENI's.
    In = 0,
    /// Sent by the ENI: the frame's source MAC is the ENI's.
    Out = 1,
}

impl Direction {
    /// The record text: `in` or `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The security-group verdict for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum Action {
    /// Allowed, or no verdict known (a replayed capture).
    #[default]
    Accept = 0,
    /// Denied by the ENI's security group.
    Reject = 1,
}

impl Action {
    /// The record text: `ACCEPT` or `REJECT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "ACCEPT",
            Action::Reject => "REJECT",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of a flow within one window: (ENI, direction, addresses, ports, protocol, action, family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C)]
pub struct FlowKey {
    /// Source address ([`AddrBytes`] form: IPv4 as `::ffff:a.b.c.d`).
    pub src: AddrBytes,
    /// Destination address ([`AddrBytes`] form).
    pub dst: AddrBytes,
    /// The ENI the record belongs to.
    pub eni: EniSlot,
    /// Source port (0 when portless).
    pub src_port: u16,
    /// Destination port (0 when portless).
    pub dst_port: u16,
    /// IANA protocol number.
    pub protocol: u8,
    /// Direction relative to the ENI.
    pub direction: Direction,
    /// Security-group verdict.
    pub action: Action,
    /// Address family.
    pub family: Family,
}

/// Size of a [`FlowKey`]: the sum of its fields, i.e. no padding.
pub const FLOW_KEY_SIZE: usize = 16 + 16 + 4 + 2 + 2 + 1 + 1 + 1 + 1;
const _: () = assert!(size_of::<FlowKey>() == FLOW_KEY_SIZE);
const _: () = assert!(FLOW_KEY_SIZE == 44);

impl FlowKey {
    /// A fixed 64-bit hash of the key (multiply-rotate over its words, then a murmur3 finaliser).
    #[inline]
    pub fn hash64(&self) -> u64 {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let words = [
            word(&self.src, 0),
            word(&self.src, 8),
            word(&self.dst, 0),
            word(&self.dst, 8),
            u64::from(self.eni.0) | u64::from(self.src_port) << 32 | u64::from(self.dst_port) << 48,
            u64::from(self.protocol)
                | u64::from(self.direction as u8) << 8
                | u64::from(self.action as u8) << 16
                | u64::from(self.family as u8) << 24,
        ];
        let mut h = 0u64;
        for w in words {
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[inline]
fn word(bytes: &AddrBytes, at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(part) = bytes.get(at..at + 8) {
        w.copy_from_slice(part);
    }
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            src: [1; 16],
            dst: [2; 16],
            eni: EniSlot(3),
            src_port: port,
            dst_port: 80,
            protocol: 6,
            direction: Direction::Out,
            action: Action::Accept,
            family: Family::V6,
        }
    }

    #[test]
    fn hash_depends_on_every_field() {
        let base = key(1000);
        let mut variants = vec![base];
        let mut k = base;
        k.src[15] = 9;
        variants.push(k);
        let mut k = base;
        k.dst[0] = 9;
        variants.push(k);
        let mut k = base;
        k.eni = EniSlot(4);
        variants.push(k);
        variants.push(key(1001));
        let mut k = base;
        k.dst_port = 81;
        variants.push(k);
        let mut k = base;
        k.protocol = 17;
        variants.push(k);
        let mut k = base;
        k.direction = Direction::In;
        variants.push(k);
        let mut k = base;
        k.action = Action::Reject;
        variants.push(k);
        let mut k = base;
        k.family = Family::V4;
        variants.push(k);
        let hashes: std::collections::HashSet<u64> = variants.iter().map(FlowKey::hash64).collect();
        assert_eq!(hashes.len(), variants.len());
        assert_eq!(base.hash64(), key(1000).hash64());
    }

    #[test]
    fn texts() {
        assert_eq!(Direction::In.to_string(), "in");
        assert_eq!(Action::Reject.to_string(), "REJECT");
    }
}
