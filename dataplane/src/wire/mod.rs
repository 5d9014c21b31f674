//! Frame parsing: captured Ethernet bytes in, the flow-relevant facts of one packet out.
//!
//! [`parse`] walks Ethernet, 802.1Q / QinQ tags, IPv4 (with options) or IPv6 (with extension headers), the L4
//! ports and TCP flags, and decapsulates one level of VXLAN. It either returns a [`Packet`] or a [`Discard`]
//! saying why the frame yields no record: [`Discard::NonIp`] (ARP, LLDP, ...) or
//! [`Discard::Malformed`] with a [`MalformedReason`] (SPEC.md, "Malformed").
//! [`parse_common`] is the meter's fast path for the common frame (IPv4 without options, untagged or with one
//! 802.1Q tag, not a fragment, not VXLAN): fixed offsets, no loop, the same answer as [`parse`] or `None`.
//! [`parse_common_tagged`] is the same with up to two VLAN tags of any TPID (QinQ), and [`parse_common_v6`] the
//! same for IPv6 without extension headers (TCP, UDP, SCTP or ICMPv6), with up to two tags.
//! [`parse_common_vxlan`] reads VXLAN over such IPv4 or IPv6 whose inner frame is of one of those shapes.
//!
//! # Guarantees
//! - Never panics, never allocates, reads each byte at most a bounded number of times: headers are read through
//!   fixed-size array views obtained by checked splits (`split_first_chunk`) or `get`, the smoltcp way; no
//!   indexing can fail. Loops are bounded ([`MAX_VLAN_TAGS`], [`MAX_IPV6_EXTENSION_HEADERS`], one VXLAN level).
//! - "A header cut short" is judged on the captured bytes; "larger than what the frame carries on the wire"
//!   compares the IP length with `wire_len` minus the L2 headers. Ethernet padding after the IP packet is ignored.
//!
//! # Design
//! - Precedence when a frame has several faults: the outermost header is judged first; within the IPv4 header
//!   the order is version, IHL, captured length, then total length (below header, beyond wire); within IPv6:
//!   version, captured length, payload length (beyond wire), extension headers, then L4.
//! - The L4 header must lie inside the IP packet (bounded by the IP length and by the capture): TCP needs 14
//!   bytes (ports and flags), UDP and SCTP 4 bytes (ports). Other protocols, ICMP and ICMPv6 included, are
//!   portless (ports 0) and need no L4 bytes.
//! - Fragments: a first fragment (offset 0, more-fragments set) carries its ports; a non-first fragment has no L4
//!   header: it is reported with ports 0 and its [`Fragment`] identity so the flow layer can give it its first
//!   fragment's ports. An IPv6 atomic fragment (offset 0, M clear) is not a fragment.
//! - VXLAN: UDP destination port 4789, an unfragmented outer packet and the I flag (0x08 in the first VXLAN byte)
//!   set: the inner Ethernet frame is parsed instead (its MACs, addresses, ports and IP length), with
//!   [`Packet::vni`] set. The inner frame is never decapsulated again. Any other UDP 4789 traffic is an ordinary
//!   flow.
//!
//! # Limitations
//! - IPv6 jumbograms (payload length 0 with a hop-by-hop jumbo option) are reported malformed.
//! - The 32-bit IPv6 fragment id and the 16-bit IPv4 id share one `u32` field.

mod ethernet;
mod ip;

use ethernet::TPID_8021Q;
pub use ethernet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, MAX_VLAN_TAGS, MacAddr, MacParseError};
pub use ip::MAX_IPV6_EXTENSION_HEADERS;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// UDP destination port of VXLAN (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;

/// IANA protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IANA protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IANA protocol number of SCTP.
pub const PROTO_SCTP: u8 = 132;
/// IANA protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IANA protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

/// The TCP flags a record reports: FIN 1, SYN 2, RST 4, PSH 8, ACK 16, URG 32.
pub const TCP_FLAGS_MASK: u8 = 0x3f;

/// Address family of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum Family {
    /// IPv4: the address occupies the last 4 of 16 bytes, IPv4-mapped (`::ffff:a.b.c.d`).
    #[default]
    V4 = 4,
    /// IPv6: all 16 bytes.
    V6 = 6,
}

/// A packet's addresses as 16 bytes in network order; IPv4 in the IPv4-mapped form `::ffff:a.b.c.d`.
pub type AddrBytes = [u8; 16];

/// Converts a 4-byte IPv4 address to the 16-byte [`AddrBytes`] form.
#[inline]
pub fn v4_mapped(a: [u8; 4]) -> AddrBytes {
    // One 16-byte value (not sixteen byte stores), so that wide reads of it forward from a single store.
    (u128::from(u32::from_le_bytes(a)) << 96 | 0xffff_u128 << 80).to_le_bytes()
}

/// Converts 16 address bytes of `family` to a std [`IpAddr`].
#[inline]
pub fn to_ip_addr(family: Family, bytes: &AddrBytes) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15])),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(*bytes)),
    }
}

/// Identity of an IP fragment (SPEC.md, "Fragments").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// IP identification (IPv4: 16 bits; IPv6 fragment header: 32 bits).
    pub id: u32,
    /// Whether this is the first fragment (offset 0), which carries the L4 header.
    pub first: bool,
    /// The datagram's protocol as named by the IPv4 header or the IPv6 fragment header's next header; part of
    /// the datagram's identity together with the addresses and `id`.
    pub protocol: u8,
}

/// The flow-relevant facts of one parsed packet (the inner packet for VXLAN). The default is a placeholder for
/// [`parse_into`] to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Packet {
    /// Source MAC of the (inner) Ethernet frame: the ENI it belongs to sent the packet (`out`).
    pub src_mac: MacAddr,
    /// Destination MAC of the (inner) Ethernet frame: the ENI it belongs to receives the packet (`in`).
    pub dst_mac: MacAddr,
    /// VXLAN network identifier when the frame was decapsulated.
    pub vni: Option<u32>,
    /// Address family.
    pub family: Family,
    /// Source address ([`AddrBytes`] form).
    pub src: AddrBytes,
    /// Destination address ([`AddrBytes`] form).
    pub dst: AddrBytes,
    /// IANA number of the innermost L4 header (after IPv6 extension headers); for a non-first fragment, the
    /// datagram's protocol from the IP or fragment header.
    pub protocol: u8,
    /// TCP/UDP/SCTP source port; 0 for portless protocols and non-first fragments.
    pub src_port: u16,
    /// TCP/UDP/SCTP destination port; 0 for portless protocols and non-first fragments.
    pub dst_port: u16,
    /// TCP flags masked with [`TCP_FLAGS_MASK`]; 0 for anything else.
    pub tcp_flags: u8,
    /// The IP packet length (IPv4 total length, IPv6 40 + payload length): the record's `bytes`.
    pub ip_len: u32,
    /// Fragment identity when the packet is an IP fragment.
    pub fragment: Option<Fragment>,
}

/// Why a frame yields no packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    /// The frame is not IPv4 or IPv6 (ARP, LLDP, 802.3 length frames, ...): counted, no record.
    #[error("not an IP frame")]
    NonIp,
    /// The frame is malformed (SPEC.md, "Malformed"): counted by reason, no record.
    #[error("malformed frame: {0}")]
    Malformed(MalformedReason),
}

impl From<MalformedReason> for Discard {
    fn from(reason: MalformedReason) -> Self {
        Discard::Malformed(reason)
    }
}

macro_rules! malformed_reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal, $description:literal;)*) => {
        /// Why a frame is malformed. Each reason has its own counter ([`MalformedReason::name`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
        #[repr(u8)]
        pub enum MalformedReason {
            $($(#[$doc])* #[error($description)] $variant,)*
        }

        impl MalformedReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [MalformedReason] = &[$(MalformedReason::$variant,)*];

            /// Stable snake_case name of the reason (used in counter names).
            pub fn name(self) -> &'static str {
                match self {
                    $(MalformedReason::$variant => $name,)*
                }
            }

            /// One-line description of the reason.
            pub fn description(self) -> &'static str {
                match self {
                    $(MalformedReason::$variant => $description,)*
                }
            }
        }
    };
}

malformed_reasons! {
    /// Fewer than the 14 bytes of an Ethernet header were captured.
    TruncatedEthernet => "truncated_ethernet", "frame shorter than an Ethernet header";
    /// The frame ends inside an 802.1Q / QinQ tag.
    TruncatedVlanTag => "truncated_vlan_tag", "frame ends inside a VLAN tag";
    /// More than [`MAX_VLAN_TAGS`] VLAN tags.
    TooManyVlanTags => "too_many_vlan_tags", "more VLAN tags than the parser follows";
    /// The IP version nibble does not match the EtherType.
    IpVersionMismatch => "ip_version_mismatch", "IP version does not match the EtherType";
    /// The frame or capture ends inside the IPv4 header (20 bytes plus options).
    TruncatedIpv4Header => "truncated_ipv4_header", "frame or capture ends inside the IPv4 header";
    /// IPv4 IHL below 5.
    Ipv4HeaderLength => "ipv4_ihl_below_5", "IPv4 IHL below 5";
    /// The frame or capture ends inside the 40-byte IPv6 header.
    TruncatedIpv6Header => "truncated_ipv6_header", "frame or capture ends inside the IPv6 header";
    /// An IPv6 extension header is cut short by the capture, the frame or the payload length.
    TruncatedIpv6Extension => "truncated_ipv6_extension", "IPv6 extension header cut short";
    /// More than [`MAX_IPV6_EXTENSION_HEADERS`] IPv6 extension headers.
    Ipv6ExtensionChain => "ipv6_extension_chain_too_long", "more IPv6 extension headers than the parser follows";
    /// The IP packet length is smaller than its header (IPv4 total length < IHL * 4).
    IpLengthBelowHeader => "ip_length_below_header", "IP packet length smaller than its header";
    /// The IP packet length is larger than what the frame carries on the wire.
    IpLengthBeyondWire => "ip_length_beyond_wire", "IP packet length larger than the frame on the wire";
    /// The TCP header is too short to hold the ports and flags (14 bytes).
    TruncatedTcp => "truncated_tcp", "TCP header too short for ports and flags";
    /// The UDP header is too short to hold the ports (4 bytes).
    TruncatedUdp => "truncated_udp", "UDP header too short for the ports";
    /// The SCTP common header is too short to hold the ports (4 bytes).
    TruncatedSctp => "truncated_sctp", "SCTP header too short for the ports";
    /// A VXLAN header with the I flag set is cut short (8 bytes).
    TruncatedVxlan => "truncated_vxlan", "VXLAN header cut short";
}

/// Parses one frame: `frame` is the captured bytes, `wire_len` the frame's length on the wire (pcap `orig_len`,
/// mbuf `pkt_len`). A `wire_len` below `frame.len()` is taken as `frame.len()`.
#[inline]
pub fn parse(frame: &[u8], wire_len: usize) -> Result<Packet, Discard> {
    let mut packet = Packet::default();
    parse_into(frame, wire_len, &mut packet)?;
    Ok(packet)
}

/// [`parse`] into a caller-owned packet (e.g. a slot of a burst's array), without moving it: on `Ok` every field
/// of `out` is set; on `Err` its fields are unspecified.
#[inline]
pub fn parse_into(frame: &[u8], wire_len: usize, out: &mut Packet) -> Result<(), Discard> {
    parse_frame::<true>(frame, wire_len.max(frame.len()), out)
}

/// Parses an Ethernet frame into `out`; `DECAP` allows one VXLAN decapsulation (the inner frame is parsed with
/// `false`, so the nesting is bounded by the types, and the outer level can be inlined).
#[inline]
fn parse_frame<const DECAP: bool>(
    frame: &[u8],
    wire_len: usize,
    out: &mut Packet,
) -> Result<(), Discard> {
    let l2 = ethernet::parse_l2(frame)?;
    let l3 = frame.get(l2.len..).unwrap_or_default();
    let wire_avail = wire_len.saturating_sub(l2.len);
    let l4 = match l2.ethertype {
        ETHERTYPE_IPV4 => ip::parse_ipv4(l3, wire_avail, out)?,
        ETHERTYPE_IPV6 => ip::parse_ipv6(l3, wire_avail, out)?,
        _ => return Err(Discard::NonIp),
    };
    if DECAP
        && out.protocol == PROTO_UDP
        && out.fragment.is_none()
        && out.dst_port == VXLAN_PORT
        && let Some(vxlan) = ip::vxlan(l4.bytes)?
    {
        let inner_wire = l4.wire_len.saturating_sub(ip::VXLAN_OVERHEAD);
        parse_inner(vxlan.inner, inner_wire, out)?;
        out.vni = Some(vxlan.vni);
        return Ok(());
    }
    out.src_mac = l2.src;
    out.dst_mac = l2.dst;
    out.vni = None;
    Ok(())
}

/// The inner frame of VXLAN, out of line (the rare path).
#[inline(never)]
fn parse_inner(frame: &[u8], wire_len: usize, out: &mut Packet) -> Result<(), Discard> {
    parse_frame::<false>(frame, wire_len, out)
}

/// The fields of a frame of the common shape: Ethernet untagged or with one 802.1Q tag, IPv4 without options,
/// not a fragment, not VXLAN (see [`parse_common`]). The addresses are the four IPv4 bytes in network order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonIpv4 {
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// IANA protocol number.
    pub protocol: u8,
    /// TCP/UDP/SCTP source port; 0 for other protocols.
    pub src_port: u16,
    /// TCP/UDP/SCTP destination port; 0 for other protocols.
    pub dst_port: u16,
    /// TCP flags masked with [`TCP_FLAGS_MASK`]; 0 for anything else.
    pub tcp_flags: u8,
    /// IPv4 total length.
    pub ip_len: u16,
}

impl CommonIpv4 {
    /// The [`Packet`] that [`parse`] returns for the same frame.
    pub fn to_packet(&self) -> Packet {
        Packet {
            src_mac: self.src_mac,
            dst_mac: self.dst_mac,
            vni: None,
            family: Family::V4,
            src: v4_mapped(self.src),
            dst: v4_mapped(self.dst),
            protocol: self.protocol,
            src_port: self.src_port,
            dst_port: self.dst_port,
            tcp_flags: self.tcp_flags,
            ip_len: u32::from(self.ip_len),
            fragment: None,
        }
    }
}

/// Bytes [`parse_common`] needs captured after the MACs (and the tag): EtherType 2, IPv4 20, TCP up to the
/// flags 14.
const COMMON_AFTER_MACS: usize = 36;

/// Bytes [`parse_common`] needs captured in an untagged frame: MACs 12, then 36 (EtherType 2, IPv4 20, TCP up to
/// the flags 14).
pub const COMMON_FRAME_MIN: usize = 12 + COMMON_AFTER_MACS;

/// The fast path of the meter: reads a frame of the common shape at fixed offsets, with two bounds checks and
/// no loop. `None` for anything else (QinQ or several tags, IPv4 options, IPv6, fragments, UDP to the VXLAN
/// port, frames shorter than [`COMMON_FRAME_MIN`] captured bytes (4 more with a tag), and every frame [`parse`]
/// finds malformed or non-IP): the caller then takes [`parse`], which handles every frame. Where it returns
/// `Some(c)`, [`parse`] returns `Ok(c.to_packet())` (a property test holds the two to it).
#[inline]
pub fn parse_common(frame: &[u8], wire_len: usize) -> Option<CommonIpv4> {
    parse_common_at(frame, wire_len, dot1q_tag_len(frame))
}

/// The tag bytes [`parse_common`] skips: 4 when an 802.1Q tag follows the MACs (the VLAN is not part of a flow),
/// else 0.
#[inline(always)]
pub(crate) fn dot1q_tag_len(frame: &[u8]) -> usize {
    if frame.get(12..14) == Some(&TPID_8021Q.to_be_bytes()) {
        4
    } else {
        0
    }
}

/// Bytes of VLAN tags after the MACs, counting at most two tags of any of the TPIDs [`parse`] follows (802.1Q,
/// 802.1ad, the legacy 0x9100), in any order: 0, 4 or 8. A frame with more tags also gives 8; what follows there
/// is a TPID, which no fast path takes for an EtherType.
#[inline]
pub(crate) fn vlan_tag_len(frame: &[u8]) -> usize {
    let is_tag = |at: usize| {
        frame
            .get(at..)
            .and_then(<[u8]>::first_chunk::<2>)
            .is_some_and(|t| ethernet::is_tpid(u16::from_be_bytes(*t)))
    };
    match (is_tag(12), is_tag(16)) {
        (true, true) => 8,
        (true, false) => 4,
        _ => 0,
    }
}

/// [`parse_common`] for a frame with up to two VLAN tags of any TPID [`parse`] follows (QinQ among them): the
/// same reading, the same agreement with [`parse`]. Out of the meter's hot path, which takes the untagged and
/// 802.1Q frames through [`parse_common`].
#[inline]
pub fn parse_common_tagged(frame: &[u8], wire_len: usize) -> Option<CommonIpv4> {
    parse_common_at(frame, wire_len, vlan_tag_len(frame))
}

/// [`parse_common`] for a frame with `tag` bytes of VLAN tags after the MACs, from [`vlan_tag_len`] (any other
/// value reads nonsense, though never out of bounds).
#[inline(always)]
pub(crate) fn parse_common_at(frame: &[u8], wire_len: usize, tag: usize) -> Option<CommonIpv4> {
    let (macs, rest) = frame.split_first_chunk::<12>()?;
    let h = rest.get(tag..)?.first_chunk::<COMMON_AFTER_MACS>()?;
    // From here `h` starts at the EtherType: IPv4, version 4 with IHL 5, neither more-fragments nor an offset
    // (DF may be set).
    if [h[0], h[1]] != ETHERTYPE_IPV4.to_be_bytes() || h[2] != 0x45 || h[8] & 0x3f != 0 || h[9] != 0
    {
        return None;
    }
    let ip_len = u16::from_be_bytes([h[4], h[5]]);
    // No underflow: the frame holds the MACs, the tag and COMMON_AFTER_MACS bytes.
    if usize::from(ip_len) > wire_len.max(frame.len()) - 14 - tag {
        return None;
    }
    let protocol = h[11];
    let (l4_min, tcp_flags) = match protocol {
        PROTO_TCP => (14, h[35] & TCP_FLAGS_MASK),
        PROTO_UDP | PROTO_SCTP => (4, 0),
        _ => (0, 0),
    };
    if ip_len < 20 + l4_min {
        return None;
    }
    let (src_port, dst_port) = if l4_min == 0 {
        (0, 0)
    } else {
        (
            u16::from_be_bytes([h[22], h[23]]),
            u16::from_be_bytes([h[24], h[25]]),
        )
    };
    if protocol == PROTO_UDP && dst_port == VXLAN_PORT {
        return None;
    }
    let [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5] = *macs;
    Some(CommonIpv4 {
        dst_mac: MacAddr([d0, d1, d2, d3, d4, d5]),
        src_mac: MacAddr([s0, s1, s2, s3, s4, s5]),
        src: [h[14], h[15], h[16], h[17]],
        dst: [h[18], h[19], h[20], h[21]],
        protocol,
        src_port,
        dst_port,
        tcp_flags,
        ip_len,
    })
}

/// Bytes [`parse_common_v6`] needs captured after the MACs (and the tag): EtherType 2, IPv6 40, TCP up to the
/// flags 14.
const COMMON_V6_AFTER_MACS: usize = 56;

/// Bytes [`parse_common_v6`] needs captured in an untagged frame: MACs 12, then 56 (EtherType 2, IPv6 40, TCP up
/// to the flags 14).
pub const COMMON_V6_FRAME_MIN: usize = 12 + COMMON_V6_AFTER_MACS;

/// [`parse_common`] for IPv6 without extension headers: reads a frame of the common IPv6 shape (TCP, UDP, SCTP or
/// ICMPv6 next, not VXLAN) at fixed offsets, without a loop; up to two VLAN tags of any TPID [`parse`] follows.
/// `None` for anything else (extension headers, fragments, more tags, UDP to the VXLAN port, other next headers,
/// frames shorter than [`COMMON_V6_FRAME_MIN`] captured bytes (4 more per tag), and every frame [`parse`] finds
/// malformed or non-IP). Where it returns `Some(p)`, [`parse`] returns `Ok(p)` (a property test holds the two to
/// it).
#[inline]
pub fn parse_common_v6(frame: &[u8], wire_len: usize) -> Option<Packet> {
    parse_common_v6_at(frame, wire_len, vlan_tag_len(frame))
}

/// [`parse_common_v6`] for a frame with `tag` bytes of VLAN tags after the MACs, from [`vlan_tag_len`] (any
/// other value reads nonsense, though never out of bounds).
#[inline]
pub(crate) fn parse_common_v6_at(frame: &[u8], wire_len: usize, tag: usize) -> Option<Packet> {
    let (macs, rest) = frame.split_first_chunk::<12>()?;
    let h = rest.get(tag..)?.first_chunk::<COMMON_V6_AFTER_MACS>()?;
    // From here `h` starts at the EtherType, the IPv6 header at h[2].
    if [h[0], h[1]] != ETHERTYPE_IPV6.to_be_bytes() || h[2] >> 4 != 6 {
        return None;
    }
    let ip_len = 40 + usize::from(u16::from_be_bytes([h[6], h[7]]));
    // No underflow: the frame holds the MACs, the tag and COMMON_V6_AFTER_MACS bytes.
    if ip_len > wire_len.max(frame.len()) - 14 - tag {
        return None;
    }
    let protocol = h[8];
    let (l4_min, tcp_flags) = match protocol {
        PROTO_TCP => (14, h[55] & TCP_FLAGS_MASK),
        PROTO_UDP | PROTO_SCTP => (4, 0),
        PROTO_ICMPV6 => (0, 0),
        // Extension headers (hop-by-hop is 0), and every protocol the full parser may treat otherwise.
        _ => return None,
    };
    if ip_len < 40 + l4_min {
        return None;
    }
    let (src_port, dst_port) = if l4_min == 0 {
        (0, 0)
    } else {
        (
            u16::from_be_bytes([h[42], h[43]]),
            u16::from_be_bytes([h[44], h[45]]),
        )
    };
    if protocol == PROTO_UDP && dst_port == VXLAN_PORT {
        return None;
    }
    let (src, dst) = (h.get(10..26)?, h.get(26..42)?);
    let (Ok(src), Ok(dst)) = (AddrBytes::try_from(src), AddrBytes::try_from(dst)) else {
        return None;
    };
    let [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5] = *macs;
    Some(Packet {
        src_mac: MacAddr([s0, s1, s2, s3, s4, s5]),
        dst_mac: MacAddr([d0, d1, d2, d3, d4, d5]),
        vni: None,
        family: Family::V6,
        src,
        dst,
        protocol,
        src_port,
        dst_port,
        tcp_flags,
        // ip_len <= 40 + u16::MAX.
        ip_len: ip_len as u32,
        fragment: None,
    })
}

/// The meter's fast path for VXLAN: an outer frame with up to two VLAN tags of any TPID [`parse`] follows, IPv4
/// without options and not a fragment or IPv6 without extension headers, UDP to [`VXLAN_PORT`] with the I flag
/// set, whose inner frame is of a common shape (what [`parse_common_tagged`] or [`parse_common_v6`] reads), read
/// at fixed offsets without a loop. `None` for anything else: the caller then takes [`parse`]. Where it returns
/// `Some(p)`, [`parse`] returns `Ok(p)` (a property test holds the two to it): the inner packet, with
/// [`Packet::vni`] set.
#[inline]
pub fn parse_common_vxlan(frame: &[u8], wire_len: usize) -> Option<Packet> {
    let v = vxlan_at(frame, wire_len, vlan_tag_len(frame))?;
    let tags = vlan_tag_len(v.inner);
    let mut packet = match parse_common_at(v.inner, v.inner_wire, tags) {
        Some(common) => common.to_packet(),
        None => parse_common_v6_at(v.inner, v.inner_wire, tags)?,
    };
    packet.vni = Some(v.vni);
    Some(packet)
}

/// The inner frame of VXLAN, as [`vxlan_at`] finds it.
pub(crate) struct VxlanInner<'a> {
    /// VXLAN network identifier.
    pub vni: u32,
    /// Where the inner frame starts in the outer one.
    pub inner_at: usize,
    /// What was captured of the inner frame: the outer UDP payload after the VXLAN header, within the IP packet.
    pub inner: &'a [u8],
    /// The inner frame's length on the wire (the outer IP length minus the IP, UDP and VXLAN headers).
    pub inner_wire: usize,
}

/// The outer headers of VXLAN at fixed offsets: a frame with `tag` bytes of VLAN tags after the MACs (from
/// [`vlan_tag_len`]), IPv4 without options and not a fragment or IPv6 without extension headers, UDP to
/// [`VXLAN_PORT`], the IP length within the wire length, and the VXLAN header as [`parse`] reads it
/// (`ip::vxlan`: the I flag set, the header captured inside the IP packet). Where it returns the inner frame,
/// [`parse`] decapsulates it too (and takes it through its own parser); `None` for anything else, which
/// [`parse`] may still decapsulate (IPv4 options, IPv6 extension headers, more tags).
#[inline]
pub(crate) fn vxlan_at(frame: &[u8], wire_len: usize, tag: usize) -> Option<VxlanInner<'_>> {
    let ip_start = 14 + tag;
    let after_macs = frame.get(12 + tag..)?;
    // The IP header's length and the IP length: IPv4 with IHL 5, neither more-fragments nor an offset, UDP; or
    // IPv6 with UDP next.
    let (header, ip_len) = if let Some(h) = after_macs.first_chunk::<{ 2 + 20 }>()
        && [h[0], h[1]] == ETHERTYPE_IPV4.to_be_bytes()
    {
        if h[2] != 0x45 || h[8] & 0x3f != 0 || h[9] != 0 || h[11] != PROTO_UDP {
            return None;
        }
        (20, usize::from(u16::from_be_bytes([h[4], h[5]])))
    } else if let Some(h) = after_macs.first_chunk::<{ 2 + 40 }>()
        && [h[0], h[1]] == ETHERTYPE_IPV6.to_be_bytes()
    {
        if h[2] >> 4 != 6 || h[8] != PROTO_UDP {
            return None;
        }
        (40, 40 + usize::from(u16::from_be_bytes([h[6], h[7]])))
    } else {
        return None;
    };
    // No underflow: the frame holds more than ip_start bytes.
    if ip_len > wire_len.max(frame.len()) - ip_start {
        return None;
    }
    // The UDP datagram as far as it was captured inside the IP packet, as the full parser bounds it.
    let l4_at = ip_start + header;
    let udp = frame.get(l4_at..frame.len().min(ip_start + ip_len))?;
    if udp.get(2..4)? != VXLAN_PORT.to_be_bytes() {
        return None;
    }
    let vxlan = ip::vxlan(udp).ok()??;
    Some(VxlanInner {
        vni: vxlan.vni,
        inner_at: l4_at + ip::VXLAN_OVERHEAD,
        inner: vxlan.inner,
        // The VXLAN header lies inside the IP packet, so no underflow.
        inner_wire: ip_len - header - ip::VXLAN_OVERHEAD,
    })
}

#[cfg(test)]
pub(crate) mod tests;
