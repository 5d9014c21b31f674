//! Malformed frames, one builder per reason SPEC.md lists; none of them may ever produce a record.
//!
//! # Guarantees
//! Each frame is malformed for exactly the reason it is built for, whether a reader takes the length on the wire
//! from the pcap record or from the captured bytes (they are equal: these frames are written whole, never cut by
//! the snapshot length). Frames whose defect is a header cut short are runts (shorter than the Ethernet minimum,
//! as a capture on the sending host sees them); the others are padded to 60 bytes like any Ethernet frame, and the
//! padding never completes the defective header: a reader must bound the L4 header by the IP length.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::packet::{
    self, ETHERTYPE_DOT1Q, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ExtHeaders, IpHeader,
    L2, Vlan, proto,
};
use crate::rng::Rng;

/// Why a frame is malformed (SPEC.md's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MalformedReason {
    /// Fewer than 14 bytes: the Ethernet header is cut short.
    EthernetCut,
    /// The frame ends inside an 802.1Q or QinQ tag.
    VlanCut,
    /// The frame ends inside the 20-byte IPv4 header.
    Ipv4HeaderCut,
    /// The frame ends inside the 40-byte IPv6 header.
    Ipv6HeaderCut,
    /// IPv4 IHL below 5.
    Ipv4IhlTooSmall,
    /// IPv4 total length smaller than the IPv4 header.
    IpLengthBelowHeader,
    /// The IP packet length exceeds the bytes the frame carries after the L2 header.
    IpLengthBeyondFrame,
    /// The IP version field does not match the EtherType.
    IpVersionMismatch,
    /// TCP header too short to hold the flags (fewer than 14 bytes within the IP packet).
    TcpHeaderCut,
    /// UDP header too short to hold the ports (fewer than 4 bytes within the IP packet).
    UdpHeaderCut,
}

impl MalformedReason {
    /// Every reason, in the order the generator cycles through them.
    pub const ALL: [MalformedReason; 10] = [
        MalformedReason::EthernetCut,
        MalformedReason::VlanCut,
        MalformedReason::Ipv4HeaderCut,
        MalformedReason::Ipv6HeaderCut,
        MalformedReason::Ipv4IhlTooSmall,
        MalformedReason::IpLengthBelowHeader,
        MalformedReason::IpLengthBeyondFrame,
        MalformedReason::IpVersionMismatch,
        MalformedReason::TcpHeaderCut,
        MalformedReason::UdpHeaderCut,
    ];

    /// The name used in `summary.json`.
    pub fn name(self) -> &'static str {
        match self {
            MalformedReason::EthernetCut => "ethernet-cut",
            MalformedReason::VlanCut => "vlan-cut",
            MalformedReason::Ipv4HeaderCut => "ipv4-header-cut",
            MalformedReason::Ipv6HeaderCut => "ipv6-header-cut",
            MalformedReason::Ipv4IhlTooSmall => "ipv4-ihl-too-small",
            MalformedReason::IpLengthBelowHeader => "ip-length-below-header",
            MalformedReason::IpLengthBeyondFrame => "ip-length-beyond-frame",
            MalformedReason::IpVersionMismatch => "ip-version-mismatch",
            MalformedReason::TcpHeaderCut => "tcp-header-cut",
            MalformedReason::UdpHeaderCut => "udp-header-cut",
        }
    }
}

/// Writes into `frame` (cleared first) a frame malformed for `reason`, addressed with `l2` (whose tags are used
/// where the reason allows). `variant` alternates between IPv4 and IPv6 forms where both exist.
pub fn build(frame: &mut Vec<u8>, rng: &mut Rng, reason: MalformedReason, l2: &L2, variant: u64) {
    frame.clear();
    let v6 = variant % 2 == 1;
    let src4 = Ipv4Addr::from(rng.range_u32(0x0B00_0000, 0xDF00_0000));
    let dst4 = Ipv4Addr::new(10, 0, 0, 10);
    let src6 = Ipv6Addr::new(0x2001, 0xDB8, 0, 0, 0, 0, 0, rng.range_u16(1, 0xFFFF));
    let dst6 = Ipv6Addr::new(0xFD00, 0, 0, 0, 0, 0, 0, 0x10);
    let v4_header = |protocol: u8| IpHeader::V4 {
        addrs: (src4, dst4),
        protocol,
        id: 0x4D41,
        ttl: 61,
        dont_fragment: true,
        options: false,
        fragment_offset: 0,
        more_fragments: false,
    };
    let v6_header = |protocol: u8| IpHeader::V6 {
        addrs: (src6, dst6),
        protocol,
        hop_limit: 61,
        flow_label: 0,
        ext: ExtHeaders::default(),
    };
    match reason {
        MalformedReason::EthernetCut => {
            // Destination MAC and part of the source: 1 to 13 bytes.
            let len = rng.range(1, 13) as usize;
            frame.extend_from_slice(&l2.dst.0);
            frame.extend_from_slice(&l2.src.0);
            frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            frame.truncate(len);
        }
        MalformedReason::VlanCut => {
            frame.extend_from_slice(&l2.dst.0);
            frame.extend_from_slice(&l2.src.0);
            if v6 {
                // A complete service tag, then a customer tag cut after its TCI.
                frame.extend_from_slice(&ETHERTYPE_QINQ.to_be_bytes());
                frame.extend_from_slice(&0x07D0u16.to_be_bytes());
            }
            frame.extend_from_slice(&ETHERTYPE_DOT1Q.to_be_bytes());
            frame.extend_from_slice(&0x0064u16.to_be_bytes());
            // The tag's EtherType is missing, or half of it is there.
            if rng.chance(500_000) {
                frame.push(0x08);
            }
        }
        MalformedReason::Ipv4HeaderCut => {
            packet::push_l2(frame, &untagged(l2), ETHERTYPE_IPV4);
            let start = frame.len();
            packet::push_ip(frame, &v4_header(proto::UDP), &[0; 8]);
            frame.truncate(start + rng.range(1, 19) as usize);
        }
        MalformedReason::Ipv6HeaderCut => {
            packet::push_l2(frame, &untagged(l2), ETHERTYPE_IPV6);
            let start = frame.len();
            packet::push_ip(frame, &v6_header(proto::UDP), &[0; 8]);
            // At most 45 bytes in all: a runt, so no padding can complete the header.
            frame.truncate(start + rng.range(1, 31) as usize);
        }
        MalformedReason::Ipv4IhlTooSmall => {
            packet::push_l2(frame, l2, ETHERTYPE_IPV4);
            let start = frame.len();
            packet::push_ip(
                frame,
                &v4_header(proto::UDP),
                &[0x13, 0x88, 0x00, 0x35, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
            );
            frame[start] = 0x40 | rng.range(0, 4) as u8;
            packet::pad_frame(frame);
        }
        MalformedReason::IpLengthBelowHeader => {
            packet::push_l2(frame, l2, ETHERTYPE_IPV4);
            let start = frame.len();
            packet::push_ip(frame, &v4_header(proto::TCP), &[0; 20]);
            let bad = rng.range(0, 19) as u16;
            frame[start + 2..start + 4].copy_from_slice(&bad.to_be_bytes());
            packet::pad_frame(frame);
        }
        MalformedReason::IpLengthBeyondFrame => {
            packet::push_l2(frame, l2, if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 });
            let start = frame.len();
            let carried = 60 + rng.range(0, 400) as usize;
            let header = if v6 {
                v6_header(proto::UDP)
            } else {
                v4_header(proto::UDP)
            };
            let payload = vec![0u8; carried];
            packet::push_ip(frame, &header, &payload);
            let ip_len = header.len() + carried;
            let claimed = ip_len + rng.range(1, 1000) as usize;
            // claimed <= 40 + 460 + 1000: fits in u16.
            if v6 {
                frame[start + 4..start + 6].copy_from_slice(&((claimed - 40) as u16).to_be_bytes());
            } else {
                frame[start + 2..start + 4].copy_from_slice(&(claimed as u16).to_be_bytes());
            }
            packet::pad_frame(frame);
        }
        MalformedReason::IpVersionMismatch => {
            // A well-formed IPv6 packet announced as IPv4, or the other way round.
            let (ethertype, header) = if v6 {
                (ETHERTYPE_IPV4, v6_header(proto::UDP))
            } else {
                (ETHERTYPE_IPV6, v4_header(proto::UDP))
            };
            packet::push_l2(frame, l2, ethertype);
            packet::push_ip(
                frame,
                &header,
                &[0x13, 0x88, 0x00, 0x35, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
            );
            packet::pad_frame(frame);
        }
        MalformedReason::TcpHeaderCut => {
            let header = if v6 {
                v6_header(proto::TCP)
            } else {
                v4_header(proto::TCP)
            };
            packet::push_l2(frame, l2, header.ethertype());
            let cut = rng.range(0, 13) as usize;
            let tcp = [0x9C, 0x40, 0x01, 0xBB, 0, 0, 0, 1, 0, 0, 0, 0, 0x50];
            packet::push_ip(frame, &header, &tcp[..cut]);
            packet::pad_frame(frame);
        }
        MalformedReason::UdpHeaderCut => {
            let header = if v6 {
                v6_header(proto::UDP)
            } else {
                v4_header(proto::UDP)
            };
            packet::push_l2(frame, l2, header.ethertype());
            let cut = rng.range(0, 3) as usize;
            packet::push_ip(frame, &header, &[0x9C, 0x40, 0x00][..cut]);
            packet::pad_frame(frame);
        }
    }
}

fn untagged(l2: &L2) -> L2 {
    L2 {
        vlan: Vlan::Untagged,
        ..*l2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eni::MacAddr;

    fn l2() -> L2 {
        L2 {
            dst: MacAddr::GATEWAY,
            src: MacAddr::local(0xE1, 0),
            vlan: Vlan::Dot1q(100),
        }
    }

    #[test]
    fn cut_headers_are_runts() {
        let mut rng = Rng::new(1);
        let mut frame = Vec::new();
        for variant in 0..20 {
            for reason in [
                MalformedReason::EthernetCut,
                MalformedReason::VlanCut,
                MalformedReason::Ipv4HeaderCut,
                MalformedReason::Ipv6HeaderCut,
            ] {
                build(&mut frame, &mut rng, reason, &l2(), variant);
                assert!(
                    frame.len() < packet::MIN_FRAME,
                    "{reason:?} {}",
                    frame.len()
                );
            }
        }
    }

    #[test]
    fn l4_cuts_stay_cut_within_the_ip_length() {
        let mut rng = Rng::new(2);
        let mut frame = Vec::new();
        for variant in 0..20 {
            build(
                &mut frame,
                &mut rng,
                MalformedReason::TcpHeaderCut,
                &l2(),
                variant,
            );
            let ip = &frame[18..];
            let (header, l4) = if variant % 2 == 1 {
                (40, usize::from(u16::from_be_bytes([ip[4], ip[5]])))
            } else {
                (20, usize::from(u16::from_be_bytes([ip[2], ip[3]])) - 20)
            };
            assert!(l4 < 14);
            // Whatever follows the IP packet is Ethernet padding.
            assert_eq!(frame.len(), (18 + header + l4).max(packet::MIN_FRAME));
        }
    }

    #[test]
    fn every_reason_has_a_distinct_name() {
        let mut names: Vec<_> = MalformedReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MalformedReason::ALL.len());
    }
}
