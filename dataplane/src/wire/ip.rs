//! IPv4 and IPv6 headers (with IPv6 extension headers), L4 ports and TCP flags, and the VXLAN header test.
//!
//! Guarantees: fixed headers are read through array views from checked splits, variable parts through `get`;
//! nothing here can panic, and the IPv6 extension header walk stops after [`MAX_IPV6_EXTENSION_HEADERS`].

use super::{
    Family, Fragment, MalformedReason, PROTO_SCTP, PROTO_TCP, PROTO_UDP, Packet, TCP_FLAGS_MASK,
    v4_mapped,
};

/// Most IPv6 extension headers followed before the L4 header.
pub const MAX_IPV6_EXTENSION_HEADERS: usize = 8;

/// Bytes between the start of the UDP header and the inner Ethernet frame of VXLAN (UDP 8 + VXLAN 8).
pub(crate) const VXLAN_OVERHEAD: usize = 16;

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;

/// The L4 part of an IP packet, as far as it was captured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct L4<'a> {
    /// Captured L4 bytes inside the IP packet (bounded by the IP length and the capture).
    pub bytes: &'a [u8],
    /// Length of the L4 part on the wire (IP length minus the IP headers).
    pub wire_len: usize,
}

/// Parses an IPv4 packet at the start of `buf` (captured bytes); `wire_avail` is its room on the wire. Writes the
/// L3 and L4 facts into `out` (family, addresses, protocol, ports, TCP flags, IP length, fragment).
#[inline]
pub(crate) fn parse_ipv4<'a>(
    buf: &'a [u8],
    wire_avail: usize,
    out: &mut Packet,
) -> Result<L4<'a>, MalformedReason> {
    let first = *buf.first().ok_or(MalformedReason::TruncatedIpv4Header)?;
    if first >> 4 != 4 {
        return Err(MalformedReason::IpVersionMismatch);
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 {
        return Err(MalformedReason::Ipv4HeaderLength);
    }
    let header = buf
        .first_chunk::<20>()
        .ok_or(MalformedReason::TruncatedIpv4Header)?;
    if buf.len() < header_len {
        return Err(MalformedReason::TruncatedIpv4Header);
    }
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if total_len < header_len {
        return Err(MalformedReason::IpLengthBelowHeader);
    }
    if total_len > wire_avail {
        return Err(MalformedReason::IpLengthBeyondWire);
    }
    let id = u16::from_be_bytes([header[4], header[5]]);
    let flags_offset = u16::from_be_bytes([header[6], header[7]]);
    let more_fragments = flags_offset & 0x2000 != 0;
    let offset = flags_offset & 0x1fff;
    let protocol = header[9];
    let l4 = buf
        .get(header_len..total_len.min(buf.len()))
        .unwrap_or_default();
    let packed = if offset == 0 {
        transport(protocol, l4)?
    } else {
        0
    };
    out.family = Family::V4;
    out.src = v4_mapped([header[12], header[13], header[14], header[15]]);
    out.dst = v4_mapped([header[16], header[17], header[18], header[19]]);
    out.protocol = protocol;
    // total_len came from a u16.
    out.ip_len = total_len as u32;
    out.fragment = (more_fragments || offset != 0).then_some(Fragment {
        id: u32::from(id),
        first: offset == 0,
        protocol,
    });
    set_l4(out, packed);
    Ok(L4 {
        bytes: l4,
        wire_len: total_len - header_len,
    })
}

/// Parses an IPv6 packet and its extension headers at the start of `buf`; `wire_avail` is its room on the wire.
/// Writes the L3 and L4 facts into `out`, as [`parse_ipv4`] does.
pub(crate) fn parse_ipv6<'a>(
    buf: &'a [u8],
    wire_avail: usize,
    out: &mut Packet,
) -> Result<L4<'a>, MalformedReason> {
    let first = *buf.first().ok_or(MalformedReason::TruncatedIpv6Header)?;
    if first >> 4 != 6 {
        return Err(MalformedReason::IpVersionMismatch);
    }
    let (header, _) = buf
        .split_first_chunk::<40>()
        .ok_or(MalformedReason::TruncatedIpv6Header)?;
    let ip_len = 40 + usize::from(u16::from_be_bytes([header[4], header[5]]));
    if ip_len > wire_avail {
        return Err(MalformedReason::IpLengthBeyondWire);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&header[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&header[24..40]);
    // Everything after the fixed header that is both captured and inside the IP packet.
    let mut rest = buf.get(40..ip_len.min(buf.len())).unwrap_or_default();
    let mut next = header[6];
    let mut headers_len = 40;
    let mut fragment = None;
    let mut extensions = 0;
    loop {
        let len = match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                let [nh, ext_len] = *rest
                    .first_chunk::<2>()
                    .ok_or(MalformedReason::TruncatedIpv6Extension)?;
                let len = (usize::from(ext_len) + 1) * 8;
                next = nh;
                len
            }
            IPV6_AUTH => {
                let [nh, payload_len] = *rest
                    .first_chunk::<2>()
                    .ok_or(MalformedReason::TruncatedIpv6Extension)?;
                next = nh;
                (usize::from(payload_len) + 2) * 4
            }
            IPV6_FRAGMENT => {
                let fh = rest
                    .first_chunk::<8>()
                    .ok_or(MalformedReason::TruncatedIpv6Extension)?;
                let offset_flags = u16::from_be_bytes([fh[2], fh[3]]);
                let offset = offset_flags >> 3;
                let more = offset_flags & 1 == 1;
                next = fh[0];
                if offset != 0 || more {
                    fragment = Some(Fragment {
                        id: u32::from_be_bytes([fh[4], fh[5], fh[6], fh[7]]),
                        first: offset == 0,
                        protocol: fh[0],
                    });
                }
                8
            }
            _ => break,
        };
        extensions += 1;
        if extensions > MAX_IPV6_EXTENSION_HEADERS {
            return Err(MalformedReason::Ipv6ExtensionChain);
        }
        rest = rest
            .get(len..)
            .ok_or(MalformedReason::TruncatedIpv6Extension)?;
        headers_len += len;
        if fragment.is_some_and(|f| !f.first) {
            // A non-first fragment has no further headers of its own: the rest is the datagram's payload.
            break;
        }
    }
    let packed = if fragment.is_none_or(|f| f.first) {
        transport(next, rest)?
    } else {
        0
    };
    out.family = Family::V6;
    out.src = src;
    out.dst = dst;
    out.protocol = next;
    // ip_len <= 40 + u16::MAX.
    out.ip_len = ip_len as u32;
    out.fragment = fragment;
    set_l4(out, packed);
    Ok(L4 {
        bytes: rest,
        wire_len: ip_len.saturating_sub(headers_len),
    })
}

/// Reads the ports and TCP flags of the L4 header at the start of `l4`, packed as `src_port | dst_port << 16 |
/// tcp_flags << 32` (one register: no odd-sized tuple goes through memory on the hot path).
#[inline]
fn transport(protocol: u8, l4: &[u8]) -> Result<u64, MalformedReason> {
    match protocol {
        PROTO_TCP => {
            let h = l4
                .first_chunk::<14>()
                .ok_or(MalformedReason::TruncatedTcp)?;
            Ok(ports(h[0], h[1], h[2], h[3]) | u64::from(h[13] & TCP_FLAGS_MASK) << 32)
        }
        PROTO_UDP => {
            let h = l4.first_chunk::<4>().ok_or(MalformedReason::TruncatedUdp)?;
            Ok(ports(h[0], h[1], h[2], h[3]))
        }
        PROTO_SCTP => {
            let h = l4
                .first_chunk::<4>()
                .ok_or(MalformedReason::TruncatedSctp)?;
            Ok(ports(h[0], h[1], h[2], h[3]))
        }
        _ => Ok(0),
    }
}

#[inline]
fn ports(a: u8, b: u8, c: u8, d: u8) -> u64 {
    u64::from(u16::from_be_bytes([a, b])) | u64::from(u16::from_be_bytes([c, d])) << 16
}

/// Stores [`transport`]'s packed value into the packet's ports and TCP flags.
#[inline]
fn set_l4(out: &mut Packet, packed: u64) {
    out.src_port = packed as u16;
    out.dst_port = (packed >> 16) as u16;
    out.tcp_flags = (packed >> 32) as u8;
}

/// A VXLAN header found behind a UDP header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vxlan<'a> {
    pub vni: u32,
    pub inner: &'a [u8],
}

/// Tests the UDP datagram `udp` (starting at its UDP header) for VXLAN: `Ok(None)` when the I flag is not set
/// (or there is no VXLAN byte to read), an error when the flag is set but the VXLAN header is cut short.
pub(crate) fn vxlan(udp: &[u8]) -> Result<Option<Vxlan<'_>>, MalformedReason> {
    let Some((_, payload)) = udp.split_first_chunk::<8>() else {
        return Ok(None);
    };
    match payload.first() {
        Some(flags) if flags & 0x08 != 0 => {}
        _ => return Ok(None),
    }
    let (header, inner) = payload
        .split_first_chunk::<8>()
        .ok_or(MalformedReason::TruncatedVxlan)?;
    let vni = u32::from_be_bytes([0, header[4], header[5], header[6]]);
    Ok(Some(Vxlan { vni, inner }))
}
