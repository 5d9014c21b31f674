//! A tiny, independent reader for the tests: reads a classic pcap back, parses each frame as SPEC.md describes and
//! computes the flow-log records (JSON values, in `expected.jsonl` order). It shares no code with the generator, so
//! agreement between the two is evidence that both read SPEC.md the same way.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde_json::{Value, json};

/// One pcap record.
pub struct Frame {
    pub micros: u64,
    pub data: Vec<u8>,
    pub wire: usize,
}

/// Reads every record of a little-endian microsecond pcap with Ethernet link type.
pub fn read_pcap(path: &Path) -> Vec<Frame> {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() >= 24, "no pcap header");
    assert_eq!(
        u32::from_le_bytes(bytes[0..4].try_into().unwrap()),
        0xA1B2_C3D4,
        "magic"
    );
    assert_eq!(
        u16::from_le_bytes(bytes[4..6].try_into().unwrap()),
        2,
        "major version"
    );
    assert_eq!(
        u16::from_le_bytes(bytes[6..8].try_into().unwrap()),
        4,
        "minor version"
    );
    let snaplen = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
    assert_eq!(
        u32::from_le_bytes(bytes[20..24].try_into().unwrap()),
        1,
        "LINKTYPE_ETHERNET"
    );
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        assert!(at + 16 <= bytes.len(), "record header cut at {at}");
        let word = |o: usize| u32::from_le_bytes(bytes[at + o..at + o + 4].try_into().unwrap());
        let (secs, usecs, caplen, wire) = (word(0), word(4), word(8) as usize, word(12) as usize);
        assert!(usecs < 1_000_000, "microseconds field {usecs}");
        assert!(
            caplen <= wire && caplen <= snaplen,
            "caplen {caplen} wire {wire}"
        );
        assert!(at + 16 + caplen <= bytes.len(), "record data cut at {at}");
        frames.push(Frame {
            micros: u64::from(secs) * 1_000_000 + u64::from(usecs),
            data: bytes[at + 16..at + 16 + caplen].to_vec(),
            wire,
        });
        at += 16 + caplen;
    }
    frames
}

/// An ENI of the ENI file.
#[derive(Clone, Debug)]
pub struct EniEntry {
    pub id: String,
    pub mac: [u8; 6],
    pub vm_id: String,
    pub vswitch_id: String,
    pub vpc_id: String,
    pub account_id: String,
}

/// Parses the ENI file with the `toml` crate.
pub fn read_enis(path: &Path) -> Vec<EniEntry> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let list = doc["eni"].as_array().unwrap();
    list.iter()
        .map(|t| {
            let t = t.as_table().unwrap();
            assert_eq!(t.len(), 6, "unexpected keys in {t:?}");
            let s = |k: &str| t[k].as_str().unwrap().to_owned();
            let mac_text = s("mac");
            let mut mac = [0u8; 6];
            for (i, part) in mac_text.split(':').enumerate() {
                mac[i] = u8::from_str_radix(part, 16).unwrap();
            }
            EniEntry {
                id: s("id"),
                mac,
                vm_id: s("vm-id"),
                vswitch_id: s("vswitch-id"),
                vpc_id: s("vpc-id"),
                account_id: s("account-id"),
            }
        })
        .collect()
}

/// What a frame is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Malformed(&'static str),
    NonIp,
    Packet(Packet),
}

/// A well-formed IP packet (the inner one for VXLAN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub ports: (u16, u16),
    pub flags: u8,
    pub ip_len: u32,
    /// (first fragment?, IP id) for IPv4 fragments.
    pub fragment: Option<(bool, u16)>,
    pub vxlan: bool,
    /// A checksum that did not verify (names the header).
    pub bad_checksum: Option<&'static str>,
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}

fn sum16(bytes: &[u8]) -> u32 {
    let mut sum = 0u32;
    for c in bytes.chunks(2) {
        sum += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
    }
    sum
}

fn folds_to_zero(mut sum: u32) -> bool {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum == 0xFFFF
}

fn pseudo(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u32 {
    let octets = |ip: IpAddr| match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    sum16(&octets(src)) + sum16(&octets(dst)) + u32::from(protocol) + len as u32
}

fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Parses one frame; `depth` 0 for the outer frame (VXLAN is decapsulated once).
pub fn parse(frame: &[u8], wire: usize, depth: u8) -> Outcome {
    use Outcome::Malformed;
    if frame.len() < 14 {
        return Malformed("ethernet-cut");
    }
    let dst_mac: [u8; 6] = frame[0..6].try_into().unwrap();
    let src_mac: [u8; 6] = frame[6..12].try_into().unwrap();
    let mut ethertype = be16(frame, 12);
    let mut off = 14;
    while matches!(ethertype, 0x8100 | 0x88A8 | 0x9100) {
        if frame.len() < off + 4 {
            return Malformed("vlan-cut");
        }
        ethertype = be16(frame, off + 2);
        off += 4;
    }
    let l3 = &frame[off..];
    let room = wire - off;
    let (src, dst, protocol, ip_len, header_len, fragment) = match ethertype {
        0x0800 => {
            if l3.len() < 20 {
                return Malformed("ipv4-header-cut");
            }
            if l3[0] >> 4 != 4 {
                return Malformed("ip-version-mismatch");
            }
            let ihl = usize::from(l3[0] & 0x0F) * 4;
            if ihl < 20 {
                return Malformed("ipv4-ihl-too-small");
            }
            if l3.len() < ihl {
                return Malformed("ipv4-header-cut");
            }
            let total = usize::from(be16(l3, 2));
            if total < ihl {
                return Malformed("ip-length-below-header");
            }
            if total > room || total > l3.len() {
                return Malformed("ip-length-beyond-frame");
            }
            let flags = be16(l3, 6);
            let offset = flags & 0x1FFF;
            let more = flags & 0x2000 != 0;
            let fragment = (offset != 0 || more).then_some((offset == 0, be16(l3, 4)));
            let src = IpAddr::V4(Ipv4Addr::new(l3[12], l3[13], l3[14], l3[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(l3[16], l3[17], l3[18], l3[19]));
            (src, dst, l3[9], total, ihl, fragment)
        }
        0x86DD => {
            if l3.len() < 40 {
                return Malformed("ipv6-header-cut");
            }
            if l3[0] >> 4 != 6 {
                return Malformed("ip-version-mismatch");
            }
            let total = 40 + usize::from(be16(l3, 4));
            if total > room || total > l3.len() {
                return Malformed("ip-length-beyond-frame");
            }
            let mut next = l3[6];
            let mut at = 40;
            while matches!(next, 0 | 43 | 60) {
                if at + 8 > total {
                    return Malformed("ipv6-extension-cut");
                }
                let len = (usize::from(l3[at + 1]) + 1) * 8;
                next = l3[at];
                at += len;
            }
            if at > total {
                return Malformed("ipv6-extension-cut");
            }
            let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&l3[8..24]).unwrap()));
            let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&l3[24..40]).unwrap()));
            (src, dst, next, total, at, None)
        }
        _ => return Outcome::NonIp,
    };
    let mut bad_checksum = None;
    if let IpAddr::V4(_) = src
        && !folds_to_zero(sum16(&l3[..header_len]))
    {
        bad_checksum = Some("ipv4");
    }
    let l4 = &l3[header_len..ip_len];
    let mut packet = Packet {
        src_mac,
        dst_mac,
        src,
        dst,
        protocol,
        ports: (0, 0),
        flags: 0,
        // ip_len <= 65535 + 40.
        ip_len: ip_len as u32,
        fragment,
        vxlan: false,
        bad_checksum,
    };
    if matches!(fragment, Some((false, _))) {
        return Outcome::Packet(packet);
    }
    let whole = fragment.is_none();
    match protocol {
        6 => {
            if l4.len() < 14 {
                return Malformed("tcp-header-cut");
            }
            packet.ports = (be16(l4, 0), be16(l4, 2));
            packet.flags = l4[13] & 0x3F;
            if whole && !folds_to_zero(pseudo(src, dst, 6, l4.len()) + sum16(l4)) {
                packet.bad_checksum = Some("tcp");
            }
        }
        17 => {
            if l4.len() < 4 {
                return Malformed("udp-header-cut");
            }
            packet.ports = (be16(l4, 0), be16(l4, 2));
            if whole
                && l4.len() >= 8
                && be16(l4, 6) != 0
                && !folds_to_zero(pseudo(src, dst, 17, l4.len()) + sum16(l4))
            {
                packet.bad_checksum = Some("udp");
            }
            if depth == 0 && packet.ports.1 == 4789 && l4.len() >= 16 && l4[8] & 0x08 != 0 {
                let inner = &l4[16..];
                return match parse(inner, inner.len(), 1) {
                    Outcome::Packet(mut p) => {
                        p.vxlan = true;
                        Outcome::Packet(p)
                    }
                    other => other,
                };
            }
        }
        132 => {
            if l4.len() < 4 {
                return Malformed("sctp-header-cut");
            }
            packet.ports = (be16(l4, 0), be16(l4, 2));
            if whole && l4.len() >= 12 {
                let mut copy = l4.to_vec();
                copy[8..12].fill(0);
                if crc32c(&copy).to_le_bytes() != l4[8..12] {
                    packet.bad_checksum = Some("sctp");
                }
            }
        }
        1 if whole && !folds_to_zero(sum16(l4)) => packet.bad_checksum = Some("icmp"),
        58 if whole && !folds_to_zero(pseudo(src, dst, 58, l4.len()) + sum16(l4)) => {
            packet.bad_checksum = Some("icmpv6");
        }
        _ => {}
    }
    Outcome::Packet(packet)
}

/// Counters of a read capture.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadCounts {
    pub frames: u64,
    pub malformed: BTreeMap<String, u64>,
    pub non_ip: u64,
    pub unattributed: u64,
    pub attributed: u64,
    pub vxlan: u64,
    pub fragments: u64,
    pub bad_checksums: u64,
    pub short_good_frames: u64,
}

/// The records a capture must produce at `interval` seconds, as JSON values in the expected order.
pub fn records(frames: &[Frame], enis: &[EniEntry], interval: u64) -> (Vec<Value>, ReadCounts) {
    let by_mac: HashMap<[u8; 6], usize> =
        enis.iter().enumerate().map(|(i, e)| (e.mac, i)).collect();
    type Key = (u64, String, String, String, String, u16, String, u16, u8);
    let mut rows: BTreeMap<Key, (u64, u64, u8, bool)> = BTreeMap::new();
    let mut first_fragments: HashMap<(IpAddr, IpAddr, u8, u16), (u16, u16)> = HashMap::new();
    let mut counts = ReadCounts::default();
    let mut windows = Vec::<u64>::new();
    let mut active: BTreeMap<u64, Vec<bool>> = BTreeMap::new();
    for frame in frames {
        counts.frames += 1;
        let window = frame.micros / 1_000_000 / interval * interval;
        if windows.last() != Some(&window) {
            windows.push(window);
        }
        let mut packet = match parse(&frame.data, frame.wire, 0) {
            Outcome::Malformed(reason) => {
                *counts.malformed.entry(reason.to_owned()).or_default() += 1;
                continue;
            }
            Outcome::NonIp => {
                counts.non_ip += 1;
                continue;
            }
            Outcome::Packet(p) => p,
        };
        if frame.data.len() < 60 {
            counts.short_good_frames += 1;
        }
        if packet.bad_checksum.is_some() {
            counts.bad_checksums += 1;
        }
        if let Some((first, id)) = packet.fragment {
            counts.fragments += 1;
            let key = (packet.src, packet.dst, packet.protocol, id);
            if first {
                first_fragments.insert(key, packet.ports);
            } else {
                packet.ports = first_fragments.get(&key).copied().unwrap_or((0, 0));
            }
        }
        let src_eni = by_mac.get(&packet.src_mac).copied();
        let dst_eni = by_mac.get(&packet.dst_mac).copied();
        if src_eni.is_none() && dst_eni.is_none() {
            counts.unattributed += 1;
            continue;
        }
        counts.attributed += 1;
        if packet.vxlan {
            counts.vxlan += 1;
        }
        let ports = match packet.protocol {
            6 | 17 | 132 => packet.ports,
            _ => (0, 0),
        };
        for (eni, direction) in [(src_eni, "out"), (dst_eni, "in")] {
            let Some(eni) = eni else { continue };
            active
                .entry(window)
                .or_insert_with(|| vec![false; enis.len()])[eni] = true;
            let key = (
                window,
                enis[eni].id.clone(),
                "OK".to_owned(),
                direction.to_owned(),
                packet.src.to_string(),
                ports.0,
                packet.dst.to_string(),
                ports.1,
                packet.protocol,
            );
            let row = rows.entry(key).or_insert((0, 0, 0, packet.src.is_ipv6()));
            row.0 += 1;
            row.1 += u64::from(packet.ip_len);
            row.2 |= packet.flags;
        }
    }
    if let (Some(&first), Some(&last)) = (windows.first(), windows.last()) {
        let mut w = first;
        while w <= last {
            let seen = active.get(&w);
            for (i, eni) in enis.iter().enumerate() {
                if !seen.is_some_and(|s| s[i]) {
                    let key = (
                        w,
                        eni.id.clone(),
                        "NODATA".to_owned(),
                        String::new(),
                        String::new(),
                        0,
                        String::new(),
                        0,
                        0,
                    );
                    rows.insert(key, (0, 0, 0, false));
                }
            }
            w += interval;
        }
    }
    let by_id: HashMap<&str, &EniEntry> = enis.iter().map(|e| (e.id.as_str(), e)).collect();
    let values = rows
        .into_iter()
        .map(
            |(
                (window, id, status, direction, src, sport, dst, dport, protocol),
                (packets, bytes, flags, v6),
            )| {
                let e = by_id[id.as_str()];
                let ok = status == "OK";
                json!({
                    "version": 1,
                    "account-id": e.account_id,
                    "vpc-id": e.vpc_id,
                    "vswitch-id": e.vswitch_id,
                    "vm-id": e.vm_id,
                    "eni-id": e.id,
                    "srcaddr": if ok { json!(src) } else { Value::Null },
                    "srcport": if ok { json!(sport) } else { Value::Null },
                    "dstaddr": if ok { json!(dst) } else { Value::Null },
                    "dstport": if ok { json!(dport) } else { Value::Null },
                    "protocol": if ok { json!(protocol) } else { Value::Null },
                    "direction": if ok { json!(direction) } else { Value::Null },
                    "packets": packets,
                    "bytes": bytes,
                    "start": window,
                    "end": window + interval,
                    "log-status": status,
                    "action": if ok { json!("ACCEPT") } else { Value::Null },
                    "tcp-flags": flags,
                    "type": if ok { json!(if v6 { "IPv6" } else { "IPv4" }) } else { Value::Null },
                })
            },
        )
        .collect();
    (values, counts)
}

/// The field order of every line of the sample file.
pub const FIELD_ORDER: [&str; 20] = [
    "version",
    "account-id",
    "vpc-id",
    "vswitch-id",
    "vm-id",
    "eni-id",
    "srcaddr",
    "srcport",
    "dstaddr",
    "dstport",
    "protocol",
    "direction",
    "packets",
    "bytes",
    "start",
    "end",
    "log-status",
    "action",
    "tcp-flags",
    "type",
];

/// Parses JSON lines, checking that every line has exactly the fields of [`FIELD_ORDER`] in that order.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'), "last line not terminated");
    text.lines()
        .map(|line| {
            let mut at = 0;
            for field in FIELD_ORDER {
                let needle = format!("\"{field}\":");
                let found = line[at..]
                    .find(&needle)
                    .unwrap_or_else(|| panic!("{field} missing or out of order: {line}"));
                at += found + needle.len();
            }
            let value: Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                value.as_object().unwrap().len(),
                FIELD_ORDER.len(),
                "extra fields: {line}"
            );
            value
        })
        .collect()
}
