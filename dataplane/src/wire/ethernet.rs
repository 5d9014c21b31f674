//! Ethernet II framing: MAC addresses and the L2 header walk through 802.1Q / QinQ tags.
//!
//! Guarantees: [`parse_l2`] reads only through fixed-size array views obtained with checked splits, so it cannot
//! panic on any input; it follows at most [`MAX_VLAN_TAGS`] tags.

use std::fmt;
use std::str::FromStr;

use super::MalformedReason;

/// Most VLAN tags (802.1Q 0x8100, 802.1ad 0x88a8, legacy QinQ 0x9100) followed before the EtherType.
pub const MAX_VLAN_TAGS: usize = 4;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

pub(crate) const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
const TPID_QINQ_LEGACY: u16 = 0x9100;

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Whether the group (multicast / broadcast) bit is set.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
}

/// Error of [`MacAddr::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacParseError {
    /// The text is not six groups of two hexadecimal digits separated by `:` (or `-`).
    #[error("invalid MAC address {0:?}: expected six hex octets like 02:00:00:e1:00:0a")]
    Invalid(String),
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || MacParseError::Invalid(s.to_owned());
        let separator = if s.contains('-') { '-' } else { ':' };
        let mut octets = [0u8; 6];
        let mut parts = s.split(separator);
        for octet in &mut octets {
            let part = parts.next().ok_or_else(invalid)?;
            if part.len() != 2 {
                return Err(invalid());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(MacAddr(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The L2 header of a frame after walking its VLAN tags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct L2 {
    pub dst: MacAddr,
    pub src: MacAddr,
    /// EtherType after the last tag.
    pub ethertype: u16,
    /// Offset of the L3 header in the frame (14 + 4 per tag).
    pub len: usize,
}

/// Whether `ethertype` opens a VLAN tag the parser follows: 802.1Q, 802.1ad or the legacy QinQ 0x9100.
#[inline]
pub(crate) fn is_tpid(ethertype: u16) -> bool {
    matches!(ethertype, TPID_8021Q | TPID_8021AD | TPID_QINQ_LEGACY)
}

/// Walks the Ethernet header and any VLAN tags of `frame`.
#[inline]
pub(crate) fn parse_l2(frame: &[u8]) -> Result<L2, MalformedReason> {
    let (header, mut rest) = frame
        .split_first_chunk::<14>()
        .ok_or(MalformedReason::TruncatedEthernet)?;
    // Whole-array copies (not byte by byte), so later wide reads of the MACs forward from single stores.
    let [macs @ .., e0, e1] = *header;
    let [dst @ .., _, _, _, _, _, _] = macs;
    let [_, _, _, _, _, _, src @ ..] = macs;
    let (dst, src) = (MacAddr(dst), MacAddr(src));
    let mut ethertype = u16::from_be_bytes([e0, e1]);
    let mut len = 14;
    let mut tags = 0;
    while is_tpid(ethertype) {
        if tags == MAX_VLAN_TAGS {
            return Err(MalformedReason::TooManyVlanTags);
        }
        let (tag, after) = rest
            .split_first_chunk::<4>()
            .ok_or(MalformedReason::TruncatedVlanTag)?;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        rest = after;
        len += 4;
        tags += 1;
    }
    Ok(L2 {
        dst,
        src,
        ethertype,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac: MacAddr = "02:00:00:e1:00:0a".parse().unwrap();
        assert_eq!(mac.0, [2, 0, 0, 0xe1, 0, 0x0a]);
        assert_eq!(mac.to_string(), "02:00:00:e1:00:0a");
        assert_eq!("02-00-00-E1-00-0A".parse::<MacAddr>().unwrap(), mac);
    }

    #[test]
    fn mac_rejects_bad_text() {
        for bad in [
            "",
            "02:00:00:e1:00",
            "02:00:00:e1:00:0a:01",
            "2:00:00:e1:00:0a",
            "zz:00:00:e1:00:0a",
            "020000e1000a",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn walks_tags() {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00]);
        let l2 = parse_l2(&frame).unwrap();
        assert_eq!(l2.ethertype, ETHERTYPE_IPV4);
        assert_eq!(l2.len, 22);
    }

    #[test]
    fn too_many_tags() {
        let mut frame = vec![0u8; 12];
        for _ in 0..5 {
            frame.extend_from_slice(&[0x81, 0x00, 0, 1]);
        }
        frame.extend_from_slice(&[0x08, 0x00]);
        assert_eq!(
            parse_l2(&frame).unwrap_err(),
            MalformedReason::TooManyVlanTags
        );
    }

    #[test]
    fn cut_tag_and_runt() {
        assert_eq!(
            parse_l2(&[0u8; 13]).unwrap_err(),
            MalformedReason::TruncatedEthernet
        );
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x81, 0x00, 0, 1, 0x08]);
        assert_eq!(
            parse_l2(&frame).unwrap_err(),
            MalformedReason::TruncatedVlanTag
        );
    }
}
