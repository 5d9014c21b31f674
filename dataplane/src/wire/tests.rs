//! Byte-array fixtures for every parser path and every malformed reason, and property tests (no panic; the fast
//! path agrees with the full parser).

use super::*;

pub(crate) const MAC_A: [u8; 6] = [2, 0, 0, 0xe1, 0, 1];
pub(crate) const MAC_B: [u8; 6] = [2, 0, 0, 0xe1, 0, 2];

/// Ethernet header with optional tags (TPID, VLAN id) and an EtherType.
pub(crate) fn eth(dst: [u8; 6], src: [u8; 6], tags: &[(u16, u16)], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for &(tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// IPv4 header (no options unless `options` is non-empty) + `payload`; total length computed.
pub(crate) fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    protocol: u8,
    id: u16,
    frag: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let ihl = 5 + options.len() / 4;
    let total = (ihl * 4 + payload.len()) as u16;
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, protocol, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(options);
    h.extend_from_slice(payload);
    h
}

/// IPv6 header + `payload` (extension headers included in it); payload length computed.
pub(crate) fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// A 20-byte TCP header with `flags` and `data` bytes of payload.
pub(crate) fn tcp(sport: u16, dport: u16, flags: u8, data: usize) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    h.extend(std::iter::repeat_n(0xab, data));
    h
}

/// An 8-byte UDP header + `payload`.
pub(crate) fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

pub(crate) fn frame(l2: Vec<u8>, l3: Vec<u8>) -> Vec<u8> {
    let mut f = l2;
    f.extend_from_slice(&l3);
    f
}

/// Parses with the frame's own length as wire length.
fn p(f: &[u8]) -> Result<Packet, Discard> {
    parse(f, f.len())
}

fn malformed(f: &[u8], wire: usize) -> MalformedReason {
    match parse(f, wire) {
        Err(Discard::Malformed(r)) => r,
        other => panic!("expected malformed, got {other:?}"),
    }
}

const A4: [u8; 4] = [10, 0, 0, 1];
const B4: [u8; 4] = [10, 0, 0, 2];
const A6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0x10];
const B6: [u8; 16] = [0x26, 0x04, 0x5d, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

#[test]
fn ipv4_tcp_untagged() {
    let f = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, 6, 1, 0, &[], &tcp(443, 50000, 0x18 | 0xc0, 100)),
    );
    let pk = p(&f).unwrap();
    assert_eq!(pk.src_mac, MacAddr(MAC_A));
    assert_eq!(pk.dst_mac, MacAddr(MAC_B));
    assert_eq!(pk.family, Family::V4);
    assert_eq!(pk.src, v4_mapped(A4));
    assert_eq!(to_ip_addr(pk.family, &pk.dst).to_string(), "10.0.0.2");
    assert_eq!((pk.protocol, pk.src_port, pk.dst_port), (6, 443, 50000));
    assert_eq!(pk.tcp_flags, 0x18, "ECE/CWR are masked out");
    assert_eq!(pk.ip_len, 140);
    assert_eq!(pk.fragment, None);
    assert_eq!(pk.vni, None);
}

#[test]
fn vlan_qinq_and_legacy_tags() {
    let l3 = ipv4(A4, B4, 17, 1, 0, &[], &udp(53, 5353, &[1, 2, 3]));
    for tags in [
        vec![(0x8100, 10)],
        vec![(0x88a8, 100), (0x8100, 10)],
        vec![(0x9100, 100), (0x8100, 10)],
        vec![(0x88a8, 1), (0x8100, 2), (0x8100, 3), (0x8100, 4)],
    ] {
        let f = frame(eth(MAC_B, MAC_A, &tags, 0x0800), l3.clone());
        let pk = p(&f).unwrap();
        assert_eq!(
            (pk.protocol, pk.src_port, pk.dst_port, pk.ip_len),
            (17, 53, 5353, 31),
            "{tags:?}"
        );
    }
}

#[test]
fn ipv4_options_and_portless_protocols() {
    let f = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, 6, 1, 0, &[1, 1, 1, 0], &tcp(1, 2, 2, 0)),
    );
    let pk = p(&f).unwrap();
    assert_eq!(
        (pk.src_port, pk.dst_port, pk.tcp_flags, pk.ip_len),
        (1, 2, 2, 44)
    );

    for proto in [PROTO_ICMP, 47, 50] {
        let f = frame(
            eth(MAC_B, MAC_A, &[], 0x0800),
            ipv4(A4, B4, proto, 1, 0, &[], &[8, 0, 0, 0]),
        );
        let pk = p(&f).unwrap();
        assert_eq!(
            (pk.protocol, pk.src_port, pk.dst_port, pk.tcp_flags),
            (proto, 0, 0, 0)
        );
    }
    // A portless protocol needs no L4 bytes at all.
    let f = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, PROTO_ICMP, 1, 0, &[], &[]),
    );
    assert_eq!(p(&f).unwrap().ip_len, 20);
}

#[test]
fn sctp_ports() {
    let f = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, PROTO_SCTP, 1, 0, &[], &[0, 9, 0, 10, 0, 0, 0, 0]),
    );
    let pk = p(&f).unwrap();
    assert_eq!((pk.protocol, pk.src_port, pk.dst_port), (132, 9, 10));
}

#[test]
fn ethernet_padding_and_short_capture() {
    // 40-byte IP packet padded to a 60-byte frame: padding ignored.
    let mut f = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, 6, 1, 0, &[], &tcp(1, 2, 0x10, 0)),
    );
    f.resize(60, 0);
    assert_eq!(p(&f).unwrap().ip_len, 40);
    // Capture cut after the TCP header (snaplen): the wire length vouches for the IP length.
    let f = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, 6, 1, 0, &[], &tcp(1, 2, 0x10, 1000)),
    );
    let pk = parse(&f[..60], f.len()).unwrap();
    assert_eq!((pk.ip_len, pk.src_port), (1040, 1));
    // A wire length below the captured length is taken as the captured length.
    assert_eq!(parse(&f, 10).unwrap().ip_len, 1040);
}

#[test]
fn ipv6_tcp_and_icmpv6() {
    let f = frame(
        eth(MAC_B, MAC_A, &[], 0x86dd),
        ipv6(A6, B6, 6, &tcp(17363, 33281, 0x11, 0)),
    );
    let pk = p(&f).unwrap();
    assert_eq!(pk.family, Family::V6);
    assert_eq!(to_ip_addr(pk.family, &pk.src).to_string(), "fd00:0:0:9::10");
    assert_eq!(
        (
            pk.protocol,
            pk.src_port,
            pk.dst_port,
            pk.tcp_flags,
            pk.ip_len
        ),
        (6, 17363, 33281, 0x11, 60)
    );

    let f = frame(
        eth(MAC_B, MAC_A, &[], 0x86dd),
        ipv6(A6, B6, PROTO_ICMPV6, &[128, 0, 0, 0, 0, 1, 0, 1]),
    );
    let pk = p(&f).unwrap();
    assert_eq!(
        (pk.protocol, pk.src_port, pk.dst_port, pk.ip_len),
        (58, 0, 0, 48)
    );
}

/// An extension header of `len8` 8-byte units naming `next`.
fn ext(next: u8, len8: usize) -> Vec<u8> {
    let mut h = vec![next, (len8 - 1) as u8];
    h.resize(len8 * 8, 0);
    h
}

#[test]
fn ipv6_extension_headers() {
    // hop-by-hop -> routing -> destination options -> AH -> UDP
    let mut payload = ext(43, 1);
    payload.extend(ext(60, 2));
    payload.extend(ext(51, 1));
    let mut ah = vec![17, 2, 0, 0]; // AH: payload len 2 => (2 + 2) * 4 = 16 bytes
    ah.resize(16, 0);
    payload.extend(ah);
    payload.extend(udp(500, 4500, &[0; 10]));
    let f = frame(eth(MAC_B, MAC_A, &[], 0x86dd), ipv6(A6, B6, 0, &payload));
    let pk = p(&f).unwrap();
    assert_eq!((pk.protocol, pk.src_port, pk.dst_port), (17, 500, 4500));
    assert_eq!(pk.ip_len as usize, f.len() - 14);
}

#[test]
fn ipv6_extension_chain_limits() {
    // Nine destination-options headers: one too many.
    let mut payload = Vec::new();
    for _ in 0..8 {
        payload.extend(ext(60, 1));
    }
    payload.extend(ext(6, 1));
    payload.extend(tcp(1, 2, 2, 0));
    let f = frame(eth(MAC_B, MAC_A, &[], 0x86dd), ipv6(A6, B6, 60, &payload));
    assert_eq!(malformed(&f, f.len()), MalformedReason::Ipv6ExtensionChain);

    // Exactly eight is fine.
    let mut payload = Vec::new();
    for _ in 0..7 {
        payload.extend(ext(60, 1));
    }
    payload.extend(ext(6, 1));
    payload.extend(tcp(1, 2, 2, 0));
    let f = frame(eth(MAC_B, MAC_A, &[], 0x86dd), ipv6(A6, B6, 60, &payload));
    assert_eq!(p(&f).unwrap().src_port, 1);

    // A header longer than the payload length says: cut short, even though the frame has the bytes.
    let mut l3 = ipv6(A6, B6, 0, &ext(6, 2));
    l3[4..6].copy_from_slice(&8u16.to_be_bytes());
    let f = frame(eth(MAC_B, MAC_A, &[], 0x86dd), l3);
    assert_eq!(
        malformed(&f, f.len()),
        MalformedReason::TruncatedIpv6Extension
    );
    // Captured bytes end inside the header.
    let f = frame(eth(MAC_B, MAC_A, &[], 0x86dd), ipv6(A6, B6, 0, &ext(6, 2)));
    assert_eq!(
        malformed(&f[..14 + 41], f.len()),
        MalformedReason::TruncatedIpv6Extension
    );
}

fn frag_header(next: u8, offset8: u16, more: bool, id: u32) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((offset8 << 3) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h
}

#[test]
fn ipv6_fragments() {
    let mut first = frag_header(17, 0, true, 0xdead_beef);
    first.extend(udp(53, 5353, &[0; 100]));
    let f = frame(eth(MAC_B, MAC_A, &[], 0x86dd), ipv6(A6, B6, 44, &first));
    let pk = p(&f).unwrap();
    assert_eq!(
        pk.fragment,
        Some(Fragment {
            id: 0xdead_beef,
            first: true,
            protocol: 17
        })
    );
    assert_eq!((pk.protocol, pk.src_port, pk.dst_port), (17, 53, 5353));

    let mut rest = frag_header(17, 14, false, 0xdead_beef);
    rest.extend([0u8; 50]);
    let f = frame(eth(MAC_B, MAC_A, &[], 0x86dd), ipv6(A6, B6, 44, &rest));
    let pk = p(&f).unwrap();
    assert_eq!(
        pk.fragment,
        Some(Fragment {
            id: 0xdead_beef,
            first: false,
            protocol: 17
        })
    );
    assert_eq!(
        (pk.protocol, pk.src_port, pk.dst_port, pk.ip_len),
        (17, 0, 0, 98)
    );

    // Atomic fragment (offset 0, M clear): not a fragment.
    let mut atomic = frag_header(6, 0, false, 7);
    atomic.extend(tcp(1, 2, 2, 0));
    let f = frame(eth(MAC_B, MAC_A, &[], 0x86dd), ipv6(A6, B6, 44, &atomic));
    let pk = p(&f).unwrap();
    assert_eq!((pk.fragment, pk.src_port), (None, 1));
}

#[test]
fn ipv4_fragments() {
    let first = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, 17, 77, 0x2000, &[], &udp(53, 99, &[0; 32])),
    );
    let pk = p(&first).unwrap();
    assert_eq!(
        pk.fragment,
        Some(Fragment {
            id: 77,
            first: true,
            protocol: 17
        })
    );
    assert_eq!((pk.src_port, pk.dst_port), (53, 99));

    // Non-first: its payload is not parsed as UDP, even if too short for one.
    let rest = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, 17, 77, 5, &[], &[1, 2]),
    );
    let pk = p(&rest).unwrap();
    assert_eq!(
        pk.fragment,
        Some(Fragment {
            id: 77,
            first: false,
            protocol: 17
        })
    );
    assert_eq!((pk.src_port, pk.dst_port, pk.ip_len), (0, 0, 22));
}

pub(crate) fn vxlan_payload(flags: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
    let v = vni.to_be_bytes();
    let mut h = vec![flags, 0, 0, 0, v[1], v[2], v[3], 0];
    h.extend_from_slice(inner);
    h
}

#[test]
fn vxlan_is_decapsulated_once() {
    let inner = frame(
        eth(MAC_A, MAC_B, &[(0x8100, 5)], 0x86dd),
        ipv6(A6, B6, 6, &tcp(80, 1234, 0x12, 7)),
    );
    let outer_udp = udp(40000, VXLAN_PORT, &vxlan_payload(0x08, 0x12_3456, &inner));
    let f = frame(
        eth([9; 6], [8; 6], &[], 0x0800),
        ipv4(
            [192, 168, 0, 1],
            [192, 168, 0, 2],
            17,
            1,
            0,
            &[],
            &outer_udp,
        ),
    );
    let pk = p(&f).unwrap();
    assert_eq!(pk.vni, Some(0x12_3456));
    assert_eq!((pk.src_mac, pk.dst_mac), (MacAddr(MAC_B), MacAddr(MAC_A)));
    assert_eq!(
        (
            pk.family,
            pk.protocol,
            pk.src_port,
            pk.dst_port,
            pk.tcp_flags
        ),
        (Family::V6, 6, 80, 1234, 0x12)
    );
    assert_eq!(pk.ip_len, 67, "inner IP length only");

    // VXLAN inside VXLAN: the inner one stays an ordinary UDP flow.
    let inner_udp = udp(1, VXLAN_PORT, &vxlan_payload(0x08, 1, &inner));
    let inner2 = frame(
        eth(MAC_A, MAC_B, &[], 0x0800),
        ipv4(A4, B4, 17, 1, 0, &[], &inner_udp),
    );
    let outer_udp = udp(40000, VXLAN_PORT, &vxlan_payload(0x08, 2, &inner2));
    let f = frame(
        eth([9; 6], [8; 6], &[], 0x0800),
        ipv4(
            [192, 168, 0, 1],
            [192, 168, 0, 2],
            17,
            1,
            0,
            &[],
            &outer_udp,
        ),
    );
    let pk = p(&f).unwrap();
    assert_eq!(
        (pk.vni, pk.protocol, pk.dst_port, pk.src),
        (Some(2), 17, VXLAN_PORT, v4_mapped(A4))
    );
}

#[test]
fn udp_4789_without_i_flag_is_ordinary() {
    for payload in [vxlan_payload(0x00, 5, &[0; 20]), vec![], vec![0x08]] {
        let f = frame(
            eth(MAC_B, MAC_A, &[], 0x0800),
            ipv4(A4, B4, 17, 1, 0, &[], &udp(51811, VXLAN_PORT, &payload)),
        );
        let pk = match p(&f) {
            Ok(pk) => pk,
            Err(e) => {
                assert_eq!(payload, vec![0x08], "only a cut VXLAN header may fail: {e}");
                assert_eq!(e, Discard::Malformed(MalformedReason::TruncatedVxlan));
                continue;
            }
        };
        assert_eq!(
            (pk.vni, pk.src_port, pk.dst_port, pk.src_mac),
            (None, 51811, VXLAN_PORT, MacAddr(MAC_A))
        );
    }
    // Source port 4789 is not VXLAN either.
    let f = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(
            A4,
            B4,
            17,
            1,
            0,
            &[],
            &udp(VXLAN_PORT, 1, &vxlan_payload(8, 1, &[0; 20])),
        ),
    );
    assert_eq!(p(&f).unwrap().vni, None);
    // A fragmented outer datagram is not decapsulated.
    let f = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(
            A4,
            B4,
            17,
            9,
            0x2000,
            &[],
            &udp(1, VXLAN_PORT, &vxlan_payload(8, 1, &[0; 20])),
        ),
    );
    assert_eq!(p(&f).unwrap().vni, None);
}

#[test]
fn vxlan_inner_faults_are_the_frames_faults() {
    let inner = frame(eth(MAC_A, MAC_B, &[], 0x0806), vec![0; 28]);
    let outer_udp = udp(1, VXLAN_PORT, &vxlan_payload(0x08, 1, &inner));
    let f = frame(
        eth([9; 6], [8; 6], &[], 0x0800),
        ipv4(A4, B4, 17, 1, 0, &[], &outer_udp),
    );
    assert_eq!(p(&f), Err(Discard::NonIp));

    let outer_udp = udp(1, VXLAN_PORT, &vxlan_payload(0x08, 1, &[1, 2, 3]));
    let f = frame(
        eth([9; 6], [8; 6], &[], 0x0800),
        ipv4(A4, B4, 17, 1, 0, &[], &outer_udp),
    );
    assert_eq!(malformed(&f, f.len()), MalformedReason::TruncatedEthernet);
}

#[test]
fn non_ip_frames() {
    for ethertype in [0x0806, 0x88cc, 0x0042, 0x8847] {
        let f = frame(eth(MAC_B, MAC_A, &[], ethertype), vec![0; 46]);
        assert_eq!(p(&f), Err(Discard::NonIp), "{ethertype:#x}");
    }
    let f = frame(eth(MAC_B, MAC_A, &[(0x8100, 1)], 0x0806), vec![0; 46]);
    assert_eq!(p(&f), Err(Discard::NonIp));
}

#[test]
fn every_malformed_reason() {
    use MalformedReason::*;
    let good4 = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, 6, 1, 0, &[], &tcp(1, 2, 2, 20)),
    );
    let good6 = frame(
        eth(MAC_B, MAC_A, &[], 0x86dd),
        ipv6(A6, B6, 6, &tcp(1, 2, 2, 20)),
    );
    let mut seen = std::collections::HashSet::new();
    let mut check = |f: &[u8], wire: usize, want: MalformedReason| {
        assert_eq!(malformed(f, wire), want);
        seen.insert(want);
    };

    check(&good4[..13], 13, TruncatedEthernet);
    check(&[], 0, TruncatedEthernet);
    let tagged = frame(eth(MAC_B, MAC_A, &[(0x8100, 1)], 0x0800), vec![]);
    check(&tagged[..16], 16, TruncatedVlanTag);
    let deep = frame(
        eth(MAC_B, MAC_A, &[(0x8100, 1); 5], 0x0800),
        ipv4(A4, B4, 1, 1, 0, &[], &[]),
    );
    check(&deep, deep.len(), TooManyVlanTags);

    // Version nibble against EtherType, both ways.
    let mut f = good4.clone();
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    check(&f, f.len(), IpVersionMismatch);
    let mut f = good6.clone();
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    check(&f, f.len(), IpVersionMismatch);

    check(&good4[..14], 14, TruncatedIpv4Header);
    check(&good4[..33], good4.len(), TruncatedIpv4Header);
    let opts = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, 1, 1, 0, &[0; 8], &[]),
    );
    check(&opts[..14 + 24], opts.len(), TruncatedIpv4Header);
    let mut f = good4.clone();
    f[14] = 0x44;
    check(&f, f.len(), Ipv4HeaderLength);
    let mut f = good4.clone();
    f[16..18].copy_from_slice(&19u16.to_be_bytes());
    check(&f, f.len(), IpLengthBelowHeader);
    let mut f = good4.clone();
    let too_long = (f.len() - 14 + 1) as u16;
    f[16..18].copy_from_slice(&too_long.to_be_bytes());
    check(&f, f.len(), IpLengthBeyondWire);
    // A cut capture is fine, but not when the wire length itself is too short for the IP length.
    check(&good4[..60], good4.len() - 1, IpLengthBeyondWire);

    check(&good6[..14], 14, TruncatedIpv6Header);
    check(&good6[..14 + 39], good6.len(), TruncatedIpv6Header);
    let mut f = good6.clone();
    let too_long = (f.len() - 14 - 40 + 1) as u16;
    f[18..20].copy_from_slice(&too_long.to_be_bytes());
    check(&f, f.len(), IpLengthBeyondWire);
    let f = frame(eth(MAC_B, MAC_A, &[], 0x86dd), ipv6(A6, B6, 0, &[6]));
    check(&f, f.len(), TruncatedIpv6Extension);
    let mut chain = Vec::new();
    for _ in 0..9 {
        chain.extend(ext(0, 1));
    }
    let f = frame(eth(MAC_B, MAC_A, &[], 0x86dd), ipv6(A6, B6, 0, &chain));
    check(&f, f.len(), Ipv6ExtensionChain);

    // L4 too short: within the IP length (frame has more bytes as padding) and cut by the capture.
    let mut f = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, 6, 1, 0, &[], &tcp(1, 2, 2, 0)[..13]),
    );
    f.resize(80, 0);
    check(&f, f.len(), TruncatedTcp);
    check(&good4[..14 + 20 + 13], good4.len(), TruncatedTcp);
    let f = frame(eth(MAC_B, MAC_A, &[], 0x86dd), ipv6(A6, B6, 6, &[0; 10]));
    check(&f, f.len(), TruncatedTcp);
    let f = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, 17, 1, 0, &[], &[0, 53, 0]),
    );
    check(&f, f.len(), TruncatedUdp);
    let f = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, PROTO_SCTP, 1, 0, &[], &[0, 53]),
    );
    check(&f, f.len(), TruncatedSctp);
    let f = frame(
        eth(MAC_B, MAC_A, &[], 0x0800),
        ipv4(A4, B4, 17, 1, 0, &[], &udp(1, VXLAN_PORT, &[0x08, 0, 0])),
    );
    check(&f, f.len(), TruncatedVxlan);

    for reason in MalformedReason::ALL {
        assert!(seen.contains(reason), "no fixture for {reason:?}");
        assert!(!reason.name().is_empty() && !reason.description().is_empty());
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// `f` with the byte at `flip.0` set to `flip.1`, cut to `cut` bytes, and its wire length: the full length
    /// plus `wire_extra`, or 0 (taken as the captured length) when `wire_extra` is 7.
    fn flip_and_cut(
        mut f: Vec<u8>,
        flip: Option<(usize, u8)>,
        cut: usize,
        wire_extra: usize,
    ) -> (Vec<u8>, usize) {
        if let Some((at, v)) = flip
            && let Some(b) = f.get_mut(at)
        {
            *b = v;
        }
        let wire = if wire_extra == 7 {
            0
        } else {
            f.len() + wire_extra
        };
        f.truncate(cut);
        (f, wire)
    }

    /// An L4 header and payload for the fast-path properties: TCP or UDP from port 1234 to `dport`, or `payload`
    /// zero bytes.
    fn l4_of(protocol: u8, dport: u16, payload: usize) -> Vec<u8> {
        match protocol {
            PROTO_TCP => tcp(1234, dport, 0xff, payload),
            PROTO_UDP => udp(1234, dport, &vec![0; payload]),
            _ => vec![0; payload],
        }
    }

    /// `f` with the IPv4 total length or IPv6 payload length at `at` a little off (by `delta`).
    fn nudge_length(f: &mut [u8], at: usize, delta: i16) {
        if let Some(field) = f.get_mut(at..at + 2) {
            let length = u16::from_be_bytes([field[0], field[1]]).wrapping_add_signed(delta);
            field.copy_from_slice(&length.to_be_bytes());
        }
    }

    /// VLAN tag stacks (TPID, VLAN) for the fast-path properties: none, one of each TPID, QinQ, a legacy double
    /// tag, and three tags (which no fast path takes).
    const TAG_STACKS: &[&[(u16, u16)]] = &[
        &[],
        &[(0x8100, 5)],
        &[(0x88a8, 5)],
        &[(0x9100, 5)],
        &[(0x88a8, 1), (0x8100, 2)],
        &[(0x9100, 1), (0x9100, 2)],
        &[(0x88a8, 1), (0x8100, 2), (0x8100, 3)],
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Arbitrary bytes and wire lengths never panic.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), extra in 0usize..3000) {
            let _ = parse(&bytes, bytes.len() + extra);
            let _ = parse(&bytes, 0);
        }

        /// Valid frames with random corruption and truncation never panic, and a parsed packet's IP length fits
        /// the wire.
        #[test]
        fn mutated_frames_never_panic(
            kind in 0u8..6,
            cut in 0usize..200,
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..6),
            wire_extra in 0usize..64,
        ) {
            let mut f = match kind {
                0 => frame(eth(MAC_B, MAC_A, &[], 0x0800), ipv4(A4, B4, 6, 1, 0, &[], &tcp(1, 2, 2, 30))),
                1 => frame(eth(MAC_B, MAC_A, &[(0x88a8, 1), (0x8100, 2)], 0x86dd), ipv6(A6, B6, 0, &[ext(44, 1), frag_header(17, 0, true, 5), udp(1, 2, &[0; 9])].concat())),
                2 => {
                    let inner = frame(eth(MAC_A, MAC_B, &[], 0x0800), ipv4(A4, B4, 17, 1, 0, &[], &udp(3, 4, &[0; 12])));
                    frame(eth([9; 6], [8; 6], &[], 0x0800), ipv4(A4, B4, 17, 1, 0, &[], &udp(1, VXLAN_PORT, &vxlan_payload(8, 3, &inner))))
                }
                3 => frame(eth(MAC_B, MAC_A, &[], 0x86dd), ipv6(A6, B6, 51, &[vec![6, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], tcp(5, 6, 1, 4)].concat())),
                4 => frame(eth(MAC_B, MAC_A, &[], 0x0800), ipv4(A4, B4, 17, 3, 0x2003, &[7; 4], &[0; 40])),
                _ => frame(eth(MAC_B, MAC_A, &[(0x8100, 1)], 0x0800), ipv4(A4, B4, PROTO_SCTP, 1, 0, &[], &[0; 12])),
            };
            for (at, v) in flips {
                if let Some(b) = f.get_mut(at) {
                    *b = v;
                }
            }
            let wire = f.len() + wire_extra;
            f.truncate(cut.max(1));
            if let Ok(pk) = parse(&f, wire) {
                prop_assert!(pk.ip_len as usize <= wire);
            }
        }

        /// Where a fast path reads an IPv4 frame, the full parser reads the same packet. The frames are of the
        /// common shape, under one of the tag stacks of `TAG_STACKS`, or one byte away from it (each header field
        /// the fast paths check), cut anywhere. `parse_common` reads every common one without a tag or with one
        /// 802.1Q tag, `parse_common_tagged` every one with up to two tags of any TPID.
        #[test]
        fn parse_common_agrees_with_parse(
            stack in 0..TAG_STACKS.len(),
            protocol in prop::sample::select(vec![PROTO_TCP, PROTO_UDP, PROTO_SCTP, PROTO_ICMP, 47]),
            dport in prop::sample::select(vec![80u16, VXLAN_PORT]),
            flags_offset in prop::sample::select(vec![0u16, 0x4000, 0x2000, 0x0001, 0x8000]),
            payload in 0usize..40,
            cut in 30usize..120,
            flip in proptest::option::of((0usize..60, any::<u8>())),
            wire_extra in 0usize..8,
        ) {
            let l4 = l4_of(protocol, dport, payload);
            let vlans = TAG_STACKS[stack];
            let f = frame(eth(MAC_B, MAC_A, vlans, 0x0800), ipv4(A4, B4, protocol, 9, flags_offset, &[], &l4));
            let (f, wire) = flip_and_cut(f, flip, cut, wire_extra);
            let full = parse(&f, wire);
            let refusable = f.len() < COMMON_FRAME_MIN + 4 * vlans.len()
                || flip.is_some()
                || flags_offset & 0x3fff != 0
                || (protocol == PROTO_UDP && dport == VXLAN_PORT)
                || full.is_err();
            match parse_common(&f, wire) {
                Some(common) => prop_assert_eq!(&full, &Ok(common.to_packet())),
                None => prop_assert!(
                    refusable || !(vlans.is_empty() || vlans == [(0x8100, 5)]),
                    "the fast path refused a common frame: {:?}", full
                ),
            }
            match parse_common_tagged(&f, wire) {
                Some(common) => prop_assert_eq!(&full, &Ok(common.to_packet())),
                None => prop_assert!(
                    refusable || vlans.len() > 2,
                    "the tagged fast path refused a common frame: {:?}", full
                ),
            }
            prop_assert_eq!(parse_common_v6(&f, wire), None);
        }

        /// The same for IPv6: where the IPv6 fast path reads a frame, the full parser reads the same packet. The
        /// frames are of the common IPv6 shape under one of the tag stacks, or carry an extension header or a
        /// protocol the fast path leaves alone, or are one byte away from it, cut anywhere; the fast path reads
        /// every common one with up to two tags.
        #[test]
        fn parse_common_v6_agrees_with_parse(
            stack in 0..TAG_STACKS.len(),
            next in prop::sample::select(vec![PROTO_TCP, PROTO_UDP, PROTO_SCTP, PROTO_ICMPV6, 0, 44, 60, 47]),
            dport in prop::sample::select(vec![80u16, VXLAN_PORT]),
            payload in 0usize..40,
            cut in 40usize..140,
            flip in proptest::option::of((0usize..80, any::<u8>())),
            wire_extra in 0usize..8,
        ) {
            let l4 = match next {
                PROTO_TCP => tcp(1234, dport, 0xff, payload),
                PROTO_UDP => udp(1234, dport, &vec![0; payload]),
                // An extension header in front of a TCP header.
                0 | 60 => [ext(PROTO_TCP, 1), tcp(1234, dport, 0x12, payload)].concat(),
                44 => [frag_header(PROTO_TCP, 0, false, 7), tcp(1234, dport, 0x12, payload)].concat(),
                _ => vec![0; payload],
            };
            let vlans = TAG_STACKS[stack];
            let f = frame(eth(MAC_B, MAC_A, vlans, 0x86dd), ipv6(A6, B6, next, &l4));
            let (f, wire) = flip_and_cut(f, flip, cut, wire_extra);
            let full = parse(&f, wire);
            match parse_common_v6(&f, wire) {
                Some(packet) => prop_assert_eq!(full, Ok(packet)),
                None => prop_assert!(
                    f.len() < COMMON_V6_FRAME_MIN + 4 * vlans.len()
                        || vlans.len() > 2
                        || flip.is_some()
                        || ![PROTO_TCP, PROTO_UDP, PROTO_SCTP, PROTO_ICMPV6].contains(&next)
                        || (next == PROTO_UDP && dport == VXLAN_PORT)
                        || full.is_err(),
                    "the fast path refused a common frame: {:?}", full
                ),
            }
            // Neither IPv4 fast path reads the IPv6 frames.
            prop_assert_eq!(parse_common(&f, wire), None);
            prop_assert_eq!(parse_common_tagged(&f, wire), None);
        }

        /// The same for VXLAN: where its fast path reads a frame, the full parser reads the same inner packet
        /// with the same VNI. The frames carry an inner frame of a common shape (or a protocol the IPv6 fast
        /// path leaves alone, or VXLAN's port inside, or an inner IP length a little off) under one of the tag
        /// stacks, in VXLAN over IPv4 or IPv6 (or a UDP port next to it, the I flag clear, an IPv4 fragment, an
        /// IPv6 extension header, an outer IP length a little off) under one of the tag stacks, with Ethernet padding after the outer IP packet,
        /// or are one byte away from that, cut anywhere. The fast path reads every such frame of common shapes
        /// with up to two tags at each level; no other fast path reads UDP to VXLAN's port.
        #[test]
        fn parse_common_vxlan_agrees_with_parse(
            outer_stack in 0..TAG_STACKS.len(),
            outer_v6 in any::<bool>(),
            outer_protocol in prop::sample::select(vec![PROTO_UDP, PROTO_UDP, PROTO_TCP]),
            inner_stack in 0..TAG_STACKS.len(),
            v6 in any::<bool>(),
            protocol in prop::sample::select(vec![PROTO_TCP, PROTO_UDP, PROTO_ICMP, 47]),
            dport in prop::sample::select(vec![80u16, VXLAN_PORT]),
            outer_dport in prop::sample::select(vec![VXLAN_PORT, VXLAN_PORT, 4790]),
            vxlan_flags in prop::sample::select(vec![0x08u8, 0x0c, 0x00]),
            outer_flags_offset in prop::sample::select(vec![0u16, 0x4000, 0x2000, 0x0001]),
            payload in 0usize..30,
            inner_len_delta in prop::sample::select(vec![0i16, 0, 0, -1, 1, 2]),
            outer_len_delta in prop::sample::select(vec![0i16, 0, 0, -1, 1, 2]),
            padding in prop::sample::select(vec![0usize, 0, 2, 6]),
            cut in 40usize..200,
            flip in proptest::option::of((0usize..140, any::<u8>())),
            wire_extra in 0usize..8,
        ) {
            let l4 = l4_of(protocol, dport, payload);
            let (outer_vlans, inner_vlans) = (TAG_STACKS[outer_stack], TAG_STACKS[inner_stack]);
            let (mut inner, inner_min, length_at) = if v6 {
                let next = if protocol == PROTO_ICMP { PROTO_ICMPV6 } else { protocol };
                (frame(eth(MAC_B, MAC_A, inner_vlans, 0x86dd), ipv6(A6, B6, next, &l4)), COMMON_V6_FRAME_MIN, 18)
            } else {
                (frame(eth(MAC_B, MAC_A, inner_vlans, 0x0800), ipv4(A4, B4, protocol, 9, 0, &[], &l4)), COMMON_FRAME_MIN, 16)
            };
            nudge_length(&mut inner, length_at + 4 * inner_vlans.len(), inner_len_delta);
            let outer_udp = udp(40000, outer_dport, &vxlan_payload(vxlan_flags, 0xab_cdef, &inner));
            // Over IPv6, `outer_flags_offset` other than 0 puts a destination-options header in front. Over TCP,
            // the same bytes are a TCP segment that only looks like VXLAN.
            let (mut f, outer_header) = if outer_v6 {
                let l4 = if outer_flags_offset == 0 {
                    (outer_protocol, outer_udp)
                } else {
                    (60, [ext(outer_protocol, 1), outer_udp].concat())
                };
                (frame(eth([9; 6], [8; 6], outer_vlans, 0x86dd), ipv6([0x30; 16], [0x31; 16], l4.0, &l4.1)), 58)
            } else {
                (frame(
                    eth([9; 6], [8; 6], outer_vlans, 0x0800),
                    ipv4([192, 168, 0, 1], [192, 168, 0, 2], outer_protocol, 1, outer_flags_offset, &[], &outer_udp),
                ), 38)
            };
            nudge_length(&mut f, if outer_v6 { 18 } else { 16 } + 4 * outer_vlans.len(), outer_len_delta);
            // What the inner frame can hold is bounded by the outer IP packet, padding excluded, as its length
            // field says (one byte short of the frame when nudged down).
            let unpadded = f.len().saturating_add_signed(isize::from(outer_len_delta.min(0)));
            f.resize(f.len() + padding, 0);
            let (f, wire) = flip_and_cut(f, flip, cut, wire_extra);
            let full = parse(&f, wire);
            match parse_common_vxlan(&f, wire) {
                Some(packet) => {
                    prop_assert!(flip.is_some() || packet.vni == Some(0xab_cdef));
                    prop_assert_eq!(full, Ok(packet));
                }
                None => prop_assert!(
                    f.len().min(unpadded) < 12 + 4 * outer_vlans.len() + outer_header + inner_min + 4 * inner_vlans.len()
                        || outer_vlans.len() > 2
                        || inner_vlans.len() > 2
                        || flip.is_some()
                        || outer_dport != VXLAN_PORT
                        || outer_protocol != PROTO_UDP
                        || vxlan_flags & 0x08 == 0
                        || outer_flags_offset & if outer_v6 { 0xffff } else { 0x3fff } != 0
                        || (protocol == PROTO_UDP && dport == VXLAN_PORT)
                        || (v6 && protocol == 47)
                        || full.is_err(),
                    "the fast path refused a common frame in VXLAN: {:?}", full
                ),
            }
            if outer_dport == VXLAN_PORT && outer_protocol == PROTO_UDP && flip.is_none() {
                prop_assert_eq!(parse_common(&f, wire), None);
                prop_assert_eq!(parse_common_tagged(&f, wire), None);
                prop_assert_eq!(parse_common_v6(&f, wire), None);
            }
        }
    }
}
