//! Frame builders: Ethernet (untagged, 802.1Q, QinQ), IPv4 (options, fragments), IPv6 (extension headers), TCP,
//! UDP, ICMP, ICMPv6, GRE, SCTP and VXLAN, with correct lengths and checksums.
//!
//! # Design
//! A packet is built inside out into reusable buffers, so nothing is allocated per frame: the L4 segment first
//! (header + payload, checksum included), then the IP packet around it, then the Ethernet header, then the padding
//! to the 60-byte Ethernet minimum. Payload bytes are copied from a [`Pattern`] of seeded random bytes whose 16-bit
//! prefix sums make any payload's checksum contribution O(1) (payloads start at even offsets of the pattern).
//!
//! # Guarantees
//! Every builder writes a well-formed header whose length fields describe exactly the bytes that follow; the
//! function that returns the IP packet length returns what SPEC.md calls `bytes` (IPv4 total length, IPv6 40 +
//! payload length). Malformed frames are built elsewhere ([`crate::malformed`]) on purpose.

use std::net::IpAddr;

use crate::eni::MacAddr;
use crate::rng::Rng;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of LLDP.
pub const ETHERTYPE_LLDP: u16 = 0x88CC;
/// EtherType (TPID) of an 802.1Q tag.
pub const ETHERTYPE_DOT1Q: u16 = 0x8100;
/// EtherType (TPID) of an 802.1ad (QinQ) service tag.
pub const ETHERTYPE_QINQ: u16 = 0x88A8;
/// Smallest Ethernet frame without FCS: shorter frames are padded with zeros.
pub const MIN_FRAME: usize = 60;
/// Largest IP packet the generator sends (standard Ethernet MTU).
pub const MTU: usize = 1500;
/// UDP port of VXLAN.
pub const VXLAN_PORT: u16 = 4789;

/// IANA protocol numbers used here.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// IPv6 hop-by-hop options.
    pub const HOP_BY_HOP: u8 = 0;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 destination options.
    pub const DEST_OPTS: u8 = 60;
}

/// TCP flag bits.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// VLAN tags of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vlan {
    /// No tag.
    Untagged,
    /// One 802.1Q tag with this TCI.
    Dot1q(u16),
    /// An 802.1ad service tag (outer TCI) and an 802.1Q customer tag (inner TCI).
    QinQ {
        /// TCI of the 0x88a8 tag.
        outer: u16,
        /// TCI of the 0x8100 tag.
        inner: u16,
    },
}

/// Ethernet addressing and tags of a frame.
#[derive(Debug, Clone, Copy)]
pub struct L2 {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// Tags between the addresses and the EtherType.
    pub vlan: Vlan,
}

/// Appends the Ethernet header (and tags) of `l2` carrying `ethertype`.
pub fn push_l2(buf: &mut Vec<u8>, l2: &L2, ethertype: u16) {
    buf.extend_from_slice(&l2.dst.0);
    buf.extend_from_slice(&l2.src.0);
    match l2.vlan {
        Vlan::Untagged => {}
        Vlan::Dot1q(tci) => {
            buf.extend_from_slice(&ETHERTYPE_DOT1Q.to_be_bytes());
            buf.extend_from_slice(&tci.to_be_bytes());
        }
        Vlan::QinQ { outer, inner } => {
            buf.extend_from_slice(&ETHERTYPE_QINQ.to_be_bytes());
            buf.extend_from_slice(&outer.to_be_bytes());
            buf.extend_from_slice(&ETHERTYPE_DOT1Q.to_be_bytes());
            buf.extend_from_slice(&inner.to_be_bytes());
        }
    }
    buf.extend_from_slice(&ethertype.to_be_bytes());
}

/// Pads a frame with zeros to [`MIN_FRAME`] bytes, as an Ethernet sender does.
pub fn pad_frame(buf: &mut Vec<u8>) {
    if buf.len() < MIN_FRAME {
        buf.resize(MIN_FRAME, 0);
    }
}

/// Bytes of the payload pattern; payloads are windows into it.
const PATTERN_LEN: usize = 1 << 16;

/// Seeded random bytes that payloads are copied from, with 16-bit prefix sums for O(1) checksums.
#[derive(Debug, Clone)]
pub struct Pattern {
    bytes: Vec<u8>,
    /// `prefix[i]` = sum of the big-endian 16-bit words `0..i` of `bytes`.
    prefix: Vec<u64>,
}

/// A payload: `len` bytes of the [`Pattern`] starting at the even offset `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    offset: usize,
    len: usize,
}

impl Payload {
    /// Length in bytes.
    pub fn len(self) -> usize {
        self.len
    }
}

impl Pattern {
    /// A pattern drawn from `rng`.
    pub fn new(rng: &mut Rng) -> Self {
        let mut bytes = Vec::with_capacity(PATTERN_LEN);
        while bytes.len() < PATTERN_LEN {
            bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        let mut prefix = Vec::with_capacity(PATTERN_LEN / 2 + 1);
        let mut sum = 0u64;
        prefix.push(sum);
        for word in bytes.chunks_exact(2) {
            sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
            prefix.push(sum);
        }
        Self { bytes, prefix }
    }

    /// A payload of `len` bytes (at most 16 KiB) at a random even offset.
    pub fn pick(&self, rng: &mut Rng, len: usize) -> Payload {
        let len = len.min(PATTERN_LEN / 4);
        let slots = (PATTERN_LEN - len) / 2;
        Payload {
            offset: rng.index(slots.max(1)) * 2,
            len,
        }
    }

    /// The payload's bytes.
    pub fn bytes(&self, payload: Payload) -> &[u8] {
        &self.bytes[payload.offset..payload.offset + payload.len]
    }

    /// The payload's contribution to an Internet checksum that starts it at an even position.
    pub fn sum(&self, payload: Payload) -> u64 {
        let first = payload.offset / 2;
        let words = payload.len / 2;
        let mut sum = self.prefix[first + words] - self.prefix[first];
        if payload.len % 2 == 1 {
            sum += u64::from(self.bytes[payload.offset + payload.len - 1]) << 8;
        }
        sum
    }
}

/// Sum of `bytes` as big-endian 16-bit words (a trailing odd byte is the high byte of a last word).
pub fn sum_words(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(2);
    let mut sum: u64 = (&mut chunks)
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a 64-bit word sum into the 16-bit ones' complement checksum field.
pub fn checksum(mut sum: u64) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    // The loop leaves sum <= 0xFFFF.
    !(sum as u16)
}

/// The sum of the TCP/UDP/ICMPv6 pseudo-header.
fn pseudo_sum(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u64 {
    let addresses = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum_words(&s.octets()) + sum_words(&d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum_words(&s.octets()) + sum_words(&d.octets()),
        // Mixed families never occur: every flow has one family. Sum what is there.
        (s, d) => sum_words(&ip_octets(s)) + sum_words(&ip_octets(d)),
    };
    addresses + u64::from(protocol) + len as u64
}

fn ip_octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Source and destination of an IP packet: what pseudo-headers need.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
}

/// Writes a TCP segment into `seg` (cleared first). `mss` adds the MSS option (data offset 6).
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    seg: &mut Vec<u8>,
    pattern: &Pattern,
    addrs: Addresses,
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    mss: Option<u16>,
    payload: Payload,
) {
    seg.clear();
    seg.extend_from_slice(&ports.0.to_be_bytes());
    seg.extend_from_slice(&ports.1.to_be_bytes());
    seg.extend_from_slice(&seq.to_be_bytes());
    seg.extend_from_slice(&ack.to_be_bytes());
    let words: u8 = if mss.is_some() { 6 } else { 5 };
    seg.push(words << 4);
    seg.push(flags);
    seg.extend_from_slice(&65_535u16.to_be_bytes());
    seg.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    if let Some(mss) = mss {
        seg.extend_from_slice(&[2, 4]);
        seg.extend_from_slice(&mss.to_be_bytes());
    }
    let total = seg.len() + payload.len();
    let sum =
        pseudo_sum(addrs.src, addrs.dst, proto::TCP, total) + sum_words(seg) + pattern.sum(payload);
    seg.extend_from_slice(pattern.bytes(payload));
    seg[16..18].copy_from_slice(&checksum(sum).to_be_bytes());
}

/// Writes a UDP datagram with a pattern payload into `seg` (cleared first).
pub fn udp(
    seg: &mut Vec<u8>,
    pattern: &Pattern,
    addrs: Addresses,
    ports: (u16, u16),
    payload: Payload,
) {
    seg.clear();
    let total = 8 + payload.len();
    push_udp_header(seg, ports, total);
    let sum =
        pseudo_sum(addrs.src, addrs.dst, proto::UDP, total) + sum_words(seg) + pattern.sum(payload);
    seg.extend_from_slice(pattern.bytes(payload));
    let mut field = checksum(sum);
    if field == 0 {
        field = 0xFFFF;
    }
    seg[6..8].copy_from_slice(&field.to_be_bytes());
}

/// Writes a VXLAN datagram (UDP to port 4789, I flag set, `vni`) carrying `inner_frame` into `seg` (cleared first).
/// The UDP checksum is 0, as VXLAN senders over IPv4 usually leave it.
pub fn vxlan(seg: &mut Vec<u8>, source_port: u16, vni: u32, inner_frame: &[u8]) {
    seg.clear();
    push_udp_header(seg, (source_port, VXLAN_PORT), 8 + 8 + inner_frame.len());
    let vni = vni.to_be_bytes();
    seg.extend_from_slice(&[0x08, 0, 0, 0, vni[1], vni[2], vni[3], 0]);
    seg.extend_from_slice(inner_frame);
}

fn push_udp_header(seg: &mut Vec<u8>, ports: (u16, u16), total: usize) {
    seg.extend_from_slice(&ports.0.to_be_bytes());
    seg.extend_from_slice(&ports.1.to_be_bytes());
    // Datagrams are at most MTU + a few bytes (fragmented ones at most a few KiB): the length fits in u16.
    seg.extend_from_slice(&(total as u16).to_be_bytes());
    seg.extend_from_slice(&[0, 0]);
}

/// Writes an ICMP (IPv4 addresses) or ICMPv6 (IPv6 addresses) echo-style message into `seg` (cleared first).
pub fn icmp(
    seg: &mut Vec<u8>,
    pattern: &Pattern,
    addrs: Addresses,
    kind: (u8, u8),
    ident: u16,
    seqno: u16,
    payload: Payload,
) {
    seg.clear();
    seg.extend_from_slice(&[kind.0, kind.1, 0, 0]);
    seg.extend_from_slice(&ident.to_be_bytes());
    seg.extend_from_slice(&seqno.to_be_bytes());
    let mut sum = sum_words(seg) + pattern.sum(payload);
    if addrs.src.is_ipv6() {
        sum += pseudo_sum(
            addrs.src,
            addrs.dst,
            proto::ICMPV6,
            seg.len() + payload.len(),
        );
    }
    seg.extend_from_slice(pattern.bytes(payload));
    seg[2..4].copy_from_slice(&checksum(sum).to_be_bytes());
}

/// Writes a GRE packet (no checksum, key or sequence; transparent Ethernet bridging) into `seg` (cleared first).
pub fn gre(seg: &mut Vec<u8>, pattern: &Pattern, payload: Payload) {
    seg.clear();
    seg.extend_from_slice(&[0, 0, 0x65, 0x58]);
    seg.extend_from_slice(pattern.bytes(payload));
}

/// Writes an SCTP packet with one DATA chunk into `seg` (cleared first); CRC32c included.
pub fn sctp(
    seg: &mut Vec<u8>,
    pattern: &Pattern,
    ports: (u16, u16),
    vtag: u32,
    tsn: u32,
    payload: Payload,
) {
    seg.clear();
    seg.extend_from_slice(&ports.0.to_be_bytes());
    seg.extend_from_slice(&ports.1.to_be_bytes());
    seg.extend_from_slice(&vtag.to_be_bytes());
    seg.extend_from_slice(&[0, 0, 0, 0]);
    // DATA chunk: type 0, flags B|E, length, TSN, stream 0, stream sequence 0, payload protocol 0.
    seg.extend_from_slice(&[0, 0x03]);
    // Payloads are at most 16 KiB: the chunk length fits in u16.
    seg.extend_from_slice(&((16 + payload.len()) as u16).to_be_bytes());
    seg.extend_from_slice(&tsn.to_be_bytes());
    seg.extend_from_slice(&[0; 8]);
    seg.extend_from_slice(pattern.bytes(payload));
    while !seg.len().is_multiple_of(4) {
        seg.push(0);
    }
    let crc = crc32c(seg);
    seg[8..12].copy_from_slice(&crc.to_le_bytes());
}

const CRC32C_TABLE: [u32; 256] = crc32c_table();

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// CRC32c (Castagnoli), as SCTP uses it.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// IPv6 extension headers placed before the upper-layer header, in RFC 8200 order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtHeaders {
    /// A hop-by-hop options header (8 bytes, PadN).
    pub hop_by_hop: bool,
    /// A destination options header (8 bytes, PadN).
    pub dest_opts: bool,
    /// A segment routing header with segments left 0 (24 bytes).
    pub routing: bool,
}

impl ExtHeaders {
    /// Total bytes of the extension headers.
    pub fn len(self) -> usize {
        usize::from(self.hop_by_hop) * 8
            + usize::from(self.dest_opts) * 8
            + usize::from(self.routing) * 24
    }

    /// True when there is no extension header.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// The IP header of a packet.
#[derive(Debug, Clone, Copy)]
pub enum IpHeader {
    /// IPv4.
    V4 {
        /// Source and destination (IPv4 addresses).
        addrs: (std::net::Ipv4Addr, std::net::Ipv4Addr),
        /// Upper-layer protocol.
        protocol: u8,
        /// Identification.
        id: u16,
        /// Time to live.
        ttl: u8,
        /// Don't-fragment flag.
        dont_fragment: bool,
        /// Four bytes of options (NOP, NOP, NOP, EOL): IHL 6.
        options: bool,
        /// Fragment offset in 8-byte units.
        fragment_offset: u16,
        /// More-fragments flag.
        more_fragments: bool,
    },
    /// IPv6.
    V6 {
        /// Source and destination (IPv6 addresses).
        addrs: (std::net::Ipv6Addr, std::net::Ipv6Addr),
        /// Upper-layer protocol (after the extension headers).
        protocol: u8,
        /// Hop limit.
        hop_limit: u8,
        /// Flow label (20 bits).
        flow_label: u32,
        /// Extension headers.
        ext: ExtHeaders,
    },
}

impl IpHeader {
    /// EtherType that announces this header.
    pub fn ethertype(&self) -> u16 {
        match self {
            IpHeader::V4 { .. } => ETHERTYPE_IPV4,
            IpHeader::V6 { .. } => ETHERTYPE_IPV6,
        }
    }

    /// Bytes of the header (IPv6: with extension headers).
    pub fn len(&self) -> usize {
        match self {
            IpHeader::V4 { options, .. } => 20 + if *options { 4 } else { 0 },
            IpHeader::V6 { ext, .. } => 40 + ext.len(),
        }
    }
}

/// Appends the IP header and `payload` (an L4 segment or a fragment of one) and returns the IP packet length.
pub fn push_ip(buf: &mut Vec<u8>, ip: &IpHeader, payload: &[u8]) -> u32 {
    let total = ip.len() + payload.len();
    match *ip {
        IpHeader::V4 {
            addrs,
            protocol,
            id,
            ttl,
            dont_fragment,
            options,
            fragment_offset,
            more_fragments,
        } => {
            let start = buf.len();
            let ihl: u8 = if options { 6 } else { 5 };
            buf.push(0x40 | ihl);
            buf.push(0);
            // IP packets are at most MTU bytes: the length fits in u16.
            buf.extend_from_slice(&(total as u16).to_be_bytes());
            buf.extend_from_slice(&id.to_be_bytes());
            let flags = (u16::from(dont_fragment) << 14)
                | (u16::from(more_fragments) << 13)
                | (fragment_offset & 0x1FFF);
            buf.extend_from_slice(&flags.to_be_bytes());
            buf.push(ttl);
            buf.push(protocol);
            buf.extend_from_slice(&[0, 0]);
            buf.extend_from_slice(&addrs.0.octets());
            buf.extend_from_slice(&addrs.1.octets());
            if options {
                buf.extend_from_slice(&[1, 1, 1, 0]);
            }
            let field = checksum(sum_words(&buf[start..]));
            buf[start + 10..start + 12].copy_from_slice(&field.to_be_bytes());
        }
        IpHeader::V6 {
            addrs,
            protocol,
            hop_limit,
            flow_label,
            ext,
        } => {
            let mut chain: [u8; 3] = [0; 3];
            let mut n = 0;
            for (present, code) in [
                (ext.hop_by_hop, proto::HOP_BY_HOP),
                (ext.dest_opts, proto::DEST_OPTS),
                (ext.routing, proto::ROUTING),
            ] {
                if present {
                    chain[n] = code;
                    n += 1;
                }
            }
            let first_next = if n > 0 { chain[0] } else { protocol };
            let word = (6u32 << 28) | (flow_label & 0xF_FFFF);
            buf.extend_from_slice(&word.to_be_bytes());
            // total - 40 <= MTU: fits in u16.
            buf.extend_from_slice(&((total - 40) as u16).to_be_bytes());
            buf.push(first_next);
            buf.push(hop_limit);
            buf.extend_from_slice(&addrs.0.octets());
            buf.extend_from_slice(&addrs.1.octets());
            for i in 0..n {
                let next = if i + 1 < n { chain[i + 1] } else { protocol };
                match chain[i] {
                    proto::ROUTING => {
                        // Segment routing header: 24 bytes, routing type 4, segments left 0, last entry 0, one
                        // segment (the destination, which with segments left 0 is also the header's).
                        buf.extend_from_slice(&[next, 2, 4, 0, 0, 0, 0, 0]);
                        buf.extend_from_slice(&addrs.1.octets());
                    }
                    _ => {
                        // Hop-by-hop or destination options: 8 bytes, one PadN option of 4 bytes of padding.
                        buf.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
                    }
                }
            }
        }
    }
    buf.extend_from_slice(payload);
    // total <= MTU + extension headers: fits in u32.
    total as u32
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn ipv4_header_checksum_matches_a_known_packet() {
        // The classic example header from RFC 1071 discussions: 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
        let mut buf = Vec::new();
        let ip = IpHeader::V4 {
            addrs: (
                Ipv4Addr::new(192, 168, 0, 1),
                Ipv4Addr::new(192, 168, 0, 199),
            ),
            protocol: proto::UDP,
            id: 0,
            ttl: 64,
            dont_fragment: true,
            options: false,
            fragment_offset: 0,
            more_fragments: false,
        };
        let len = push_ip(&mut buf, &ip, &[0u8; 0x73 - 20]);
        assert_eq!(len, 0x73);
        assert_eq!(&buf[10..12], &[0xB8, 0x61]);
    }

    #[test]
    fn pattern_sums_match_direct_sums() {
        let mut rng = Rng::new(5);
        let pattern = Pattern::new(&mut rng);
        for len in [0usize, 1, 2, 3, 57, 1460, 1461] {
            let p = pattern.pick(&mut rng, len);
            assert_eq!(pattern.sum(p), sum_words(pattern.bytes(p)), "len {len}");
        }
    }

    #[test]
    fn udp_checksum_verifies() {
        let mut rng = Rng::new(9);
        let pattern = Pattern::new(&mut rng);
        let addrs = Addresses {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
        };
        let mut seg = Vec::new();
        udp(
            &mut seg,
            &pattern,
            addrs,
            (1000, 53),
            pattern.pick(&mut rng, 33),
        );
        let total = pseudo_sum(addrs.src, addrs.dst, proto::UDP, seg.len()) + sum_words(&seg);
        assert_eq!(checksum(total), 0);
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn ipv6_extension_chain_links_to_the_protocol() {
        let mut buf = Vec::new();
        let ip = IpHeader::V6 {
            addrs: ("fd00::1".parse().unwrap(), "2001:db8::2".parse().unwrap()),
            protocol: proto::TCP,
            hop_limit: 64,
            flow_label: 7,
            ext: ExtHeaders {
                hop_by_hop: true,
                dest_opts: true,
                routing: true,
            },
        };
        let len = push_ip(&mut buf, &ip, &[0; 20]);
        assert_eq!(len, 40 + 8 + 8 + 24 + 20);
        assert_eq!(buf[6], proto::HOP_BY_HOP);
        assert_eq!(buf[40], proto::DEST_OPTS);
        assert_eq!(buf[48], proto::ROUTING);
        assert_eq!(buf[56], proto::TCP);
        assert_eq!(u16::from_be_bytes([buf[4], buf[5]]), 60);
    }

    #[test]
    fn frames_are_padded_to_the_ethernet_minimum() {
        let mut buf = Vec::new();
        let l2 = L2 {
            dst: MacAddr::BROADCAST,
            src: MacAddr::GATEWAY,
            vlan: Vlan::QinQ { outer: 1, inner: 2 },
        };
        push_l2(&mut buf, &l2, ETHERTYPE_ARP);
        assert_eq!(buf.len(), 22);
        assert_eq!(&buf[12..14], &[0x88, 0xA8]);
        assert_eq!(&buf[16..18], &[0x81, 0x00]);
        pad_frame(&mut buf);
        assert_eq!(buf.len(), MIN_FRAME);
    }
}
