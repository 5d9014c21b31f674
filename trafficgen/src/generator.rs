//! The generator proper: walks the frame schedule, decides what each frame is, writes it, and accounts the records
//! it must produce.
//!
//! # Design
//! Frame `i` of the [`Timeline`] is, in this order of precedence: a malformed frame (at evenly spread, seeded
//! positions, reasons cycling), a non-IP frame, an unattributed frame, an orphan fragment (each at its configured
//! rate), or the next packet of a flow. The first and the last frame are always flow packets, so the range of
//! windows does not depend on how a reader treats other frames. A flow packet belongs to a random flow in progress
//! (up to `concurrent_flows` of them; a finished flow is replaced by a new one; half of the picks go to the
//! elephants, so they also send at a higher rate), skipping flows of ENIs that are silent in the current window; a datagram too large for the MTU is sent as consecutive IPv4 fragments in
//! consecutive frames of the same window (or shrunk to fit when that is not possible).
//!
//! # Guarantees
//! Accounting follows the frames written and nothing else: each attributed frame counts once for its source ENI
//! (`out`) and once for its destination ENI (`in`), with its IP length (inner for VXLAN) and TCP flags. Non-IP and
//! malformed frames carry only MACs of an ENI that already had a packet in the same window, or of no ENI, so they
//! cannot change which ENIs are NODATA whichever way a reader counts them. Memory: the flows in progress, one window
//! of records and a few frame buffers.

use std::fs::File;
use std::io::BufWriter;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::GenError;
use crate::config::GenConfig;
use crate::eni::{Enis, FOREIGN_MAC_PREFIX, MacAddr};
use crate::flow::{Endpoint, Flow, FlowFactory, Kind, LOCAL_VTEP_MAC, UNDERLAY_ROUTER_MAC};
use crate::ledger::{Ledger, RecordKey};
use crate::malformed::{self, MalformedReason};
use crate::packet::{
    self, Addresses, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_LLDP, ExtHeaders, IpHeader, L2,
    Pattern, Payload, VXLAN_PORT, Vlan, proto,
};
use crate::pcap::PcapWriter;
use crate::rng::Rng;
use crate::summary::{RecordCounts, Summary};
use crate::timeline::{MICROS, Timeline};

/// Largest fragment payload: 1500-byte MTU less a 20-byte IPv4 header, a multiple of 8.
const FRAGMENT_PAYLOAD: usize = 1480;
/// Random picks among flows in progress before scanning for one that may send.
const PICK_TRIES: usize = 8;

/// Counters the summary is built from.
#[derive(Debug, Default)]
struct Counters {
    flow_frames: u64,
    eni_to_eni_frames: u64,
    vxlan_frames: u64,
    fragment_frames: u64,
    fragmented_datagrams: u64,
    orphan_fragments: u64,
    dot1q_frames: u64,
    qinq_frames: u64,
    ipv6_frames: u64,
    ipv6_extension_header_frames: u64,
    ipv4_option_frames: u64,
    udp_4789_not_vxlan_frames: u64,
    by_protocol: [u64; 6],
    malformed: [u64; 10],
    non_ip_frames: u64,
    unattributed_frames: u64,
    flows: u64,
    first_micros: Option<u64>,
    last_micros: u64,
}

/// Reusable frame buffers.
#[derive(Debug, Default)]
struct Buffers {
    /// The frame being written.
    frame: Vec<u8>,
    /// An L4 segment.
    seg: Vec<u8>,
    /// The inner frame of a VXLAN packet.
    inner: Vec<u8>,
    /// The outer UDP/VXLAN segment.
    outer_seg: Vec<u8>,
}

/// One generation run.
pub(crate) struct Generator<'a> {
    cfg: &'a GenConfig,
    enis: &'a Enis,
    rng: Rng,
    timeline: Timeline,
    pattern: Pattern,
    factory: FlowFactory,
    /// Flows in progress: mice (fewer than [`crate::flow::ELEPHANT_PACKETS`] packets) and elephants.
    flows: [Vec<Flow>; 2],
    pcap: PcapWriter<BufWriter<File>>,
    ledger: Ledger<'a, BufWriter<File>>,
    bufs: Buffers,
    malformed_at: Vec<u64>,
    malformed_done: usize,
    /// Start of the window of the current frame.
    window: Option<u64>,
    /// Per ENI: silent in the current window.
    silent: Vec<bool>,
    /// ENIs that may send in the current window. Never empty once a window is entered: ENI 0 is neither quiet nor
    /// intermittent (there are at least 6 ENIs), so indexing it with `rng.index(len)` cannot fail.
    talkers: Vec<u16>,
    /// An ENI that already had an attributed packet in the current window.
    last_eni: Option<u16>,
    /// Next IPv4 identification of a fragmented datagram or an orphan fragment. It wraps after 65,536 datagrams,
    /// which is harmless: a datagram's fragments are consecutive frames, and orphans use addresses (198.18.0.0/15)
    /// that no first fragment ever has.
    next_fragment_id: u16,
    /// Next IPv4 identification of an outer (VXLAN) or unattributed packet.
    next_other_id: u16,
    counters: Counters,
}

/// Which kind of L4 header a flow frame's protocol counts as in the summary.
fn protocol_slot(kind: Kind, v6: bool) -> usize {
    match (kind, v6) {
        (Kind::Tcp, _) => 0,
        (Kind::Udp, _) => 1,
        (Kind::Icmp, false) => 2,
        (Kind::Icmp, true) => 3,
        (Kind::Gre, _) => 4,
        (Kind::Sctp, _) => 5,
    }
}

const PROTOCOL_NAMES: [&str; 6] = ["tcp", "udp", "icmp", "icmpv6", "gre", "sctp"];

impl<'a> Generator<'a> {
    /// A run of `cfg` (validated) writing to `pcap` and `ledger`.
    pub(crate) fn new(
        cfg: &'a GenConfig,
        enis: &'a Enis,
        pcap: PcapWriter<BufWriter<File>>,
        ledger: Ledger<'a, BufWriter<File>>,
    ) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let pattern = Pattern::new(&mut rng);
        let timeline = Timeline::new(
            cfg.seed,
            cfg.packets,
            cfg.start_epoch,
            cfg.duration_secs,
            cfg.interval_secs,
        );
        // Elephants grow with the capture: up to 1/50 of it, between 16 and 100,000 packets.
        let max_size = (cfg.packets / 50).clamp(16, 100_000);
        // max_size <= 100_000 fits in u32.
        let factory = FlowFactory::new(max_size as u32);
        let malformed_at = spread(&mut rng, cfg.packets, cfg.malformed_per_million);
        Self {
            cfg,
            enis,
            rng,
            timeline,
            pattern,
            factory,
            flows: [Vec::new(), Vec::new()],
            pcap,
            ledger,
            bufs: Buffers::default(),
            malformed_at,
            malformed_done: 0,
            window: None,
            silent: vec![false; enis.list().len()],
            talkers: Vec::with_capacity(enis.list().len()),
            last_eni: None,
            next_fragment_id: 0x1000,
            next_other_id: 0,
            counters: Counters::default(),
        }
    }

    /// Writes every frame.
    pub(crate) fn run(&mut self) -> Result<(), GenError> {
        let n = self.cfg.packets;
        let mut i = 0;
        while i < n {
            let micros = self.timeline.at(i);
            self.enter(micros);
            let edge = i == 0 || i + 1 == n;
            let used = if !edge && self.malformed_due(i) {
                self.malformed(micros)?;
                1
            } else if !edge && self.rng.chance(self.cfg.non_ip_per_million) {
                self.non_ip(micros)?;
                1
            } else if !edge && self.rng.chance(self.cfg.unattributed_per_million) {
                self.unattributed(micros)?;
                1
            } else if !edge && self.rng.chance(self.cfg.orphan_fragments_per_million) {
                self.orphan_fragment(micros)?;
                1
            } else {
                self.flow_packet(i)?
            };
            i += used;
        }
        Ok(())
    }

    /// Closes the files and returns the summary.
    pub(crate) fn finish(self) -> Result<Summary, GenError> {
        let frames = self.pcap.frames();
        self.pcap.finish().map_err(GenError::pcap)?;
        let (_, totals) = self.ledger.finish().map_err(GenError::expected)?;
        let c = &self.counters;
        let summary = Summary {
            seed: self.cfg.seed,
            interval_secs: self.cfg.interval_secs,
            enis: self.enis.list().len(),
            enis_without_traffic: self
                .enis
                .list()
                .iter()
                .filter(|e| !e.sees_traffic)
                .map(|e| e.id.clone())
                .collect(),
            frames,
            first_frame_micros: c.first_micros.unwrap_or(0),
            last_frame_micros: c.last_micros,
            flow_frames: c.flow_frames,
            eni_to_eni_frames: c.eni_to_eni_frames,
            vxlan_frames: c.vxlan_frames,
            fragment_frames: c.fragment_frames,
            fragmented_datagrams: c.fragmented_datagrams,
            orphan_fragments: c.orphan_fragments,
            dot1q_frames: c.dot1q_frames,
            qinq_frames: c.qinq_frames,
            ipv6_frames: c.ipv6_frames,
            ipv6_extension_header_frames: c.ipv6_extension_header_frames,
            ipv4_option_frames: c.ipv4_option_frames,
            udp_4789_not_vxlan_frames: c.udp_4789_not_vxlan_frames,
            frames_by_protocol: PROTOCOL_NAMES
                .iter()
                .zip(c.by_protocol)
                .map(|(name, n)| ((*name).to_owned(), n))
                .collect(),
            malformed_frames: c.malformed.iter().sum(),
            malformed: MalformedReason::ALL
                .iter()
                .zip(c.malformed)
                .map(|(r, n)| (r.name().to_owned(), n))
                .collect(),
            non_ip_frames: c.non_ip_frames,
            unattributed_frames: c.unattributed_frames,
            flows: c.flows,
            records: RecordCounts {
                ok: totals.ok_records,
                nodata: totals.nodata_records,
                skipdata: 0,
            },
            record_packets: totals.packets,
            record_bytes: totals.bytes,
            windows: totals.windows,
            first_window_start: totals.first_window.unwrap_or(0),
            last_window_start: totals.last_window.unwrap_or(0),
            quiet_windows: totals.empty_windows,
        };
        Ok(summary)
    }

    /// Updates the per-window state for a frame at `micros`.
    fn enter(&mut self, micros: u64) {
        let window = self.ledger.window_of(micros / MICROS);
        if self.window == Some(window) {
            return;
        }
        self.window = Some(window);
        self.last_eni = None;
        self.talkers.clear();
        for (n, silent) in self.silent.iter_mut().enumerate() {
            // n < MAX_ENIS fits in u16.
            let n = n as u16;
            *silent = self.enis.is_silent(n, window);
            if !*silent {
                self.talkers.push(n);
            }
        }
    }

    /// Writes `bufs.frame` at `micros`.
    fn put(&mut self, micros: u64) -> Result<(), GenError> {
        self.ledger
            .frame(micros / MICROS)
            .map_err(GenError::expected)?;
        let frame = &self.bufs.frame;
        self.pcap
            .write_frame(micros, frame, frame.len())
            .map_err(GenError::pcap)?;
        self.counters.first_micros.get_or_insert(micros);
        self.counters.last_micros = micros;
        Ok(())
    }

    /// Counts an attributed packet for its ENIs.
    fn account(
        &mut self,
        src: &Endpoint,
        dst: &Endpoint,
        protocol: u8,
        ports: (u16, u16),
        ip_len: u32,
        flags: u8,
    ) {
        let mut key = RecordKey {
            eni: 0,
            out: true,
            src: src.ip,
            src_port: ports.0,
            dst: dst.ip,
            dst_port: ports.1,
            protocol,
        };
        if let Some(eni) = src.eni {
            key.eni = eni;
            key.out = true;
            self.ledger.count(key, ip_len, flags);
            self.last_eni = Some(eni);
        }
        if let Some(eni) = dst.eni {
            key.eni = eni;
            key.out = false;
            self.ledger.count(key, ip_len, flags);
            self.last_eni = Some(eni);
        }
        self.counters.flow_frames += 1;
        if src.eni.is_some() && dst.eni.is_some() {
            self.counters.eni_to_eni_frames += 1;
        }
    }

    fn malformed_due(&mut self, i: u64) -> bool {
        matches!(self.malformed_at.get(self.malformed_done), Some(&at) if at <= i)
    }

    /// An L2 header for a frame that must not make any ENI look active: the MAC of an ENI that already sent or
    /// received in this window, or a foreign one.
    fn harmless_l2(&mut self, dst: MacAddr) -> L2 {
        let src = match self.last_eni {
            Some(eni) => self.enis.get(eni).mac,
            None => foreign_mac(&mut self.rng),
        };
        L2 {
            dst,
            src,
            vlan: if self.rng.chance(200_000) {
                Vlan::Dot1q(100)
            } else {
                Vlan::Untagged
            },
        }
    }

    fn malformed(&mut self, micros: u64) -> Result<(), GenError> {
        let j = self.malformed_done as u64;
        self.malformed_done += 1;
        let reason_index = (j % MalformedReason::ALL.len() as u64) as usize;
        let reason = MalformedReason::ALL[reason_index];
        let l2 = self.harmless_l2(MacAddr::GATEWAY);
        malformed::build(
            &mut self.bufs.frame,
            &mut self.rng,
            reason,
            &l2,
            j / MalformedReason::ALL.len() as u64,
        );
        self.put(micros)?;
        self.counters.malformed[reason_index] += 1;
        Ok(())
    }

    fn non_ip(&mut self, micros: u64) -> Result<(), GenError> {
        let variant = self.rng.below(4);
        let frame = &mut self.bufs.frame;
        frame.clear();
        let eni = self.last_eni.map(|n| self.enis.get(n));
        let (mac, ip) = match eni {
            Some(e) => (e.mac, e.ipv4(0)),
            None => (
                foreign_mac(&mut self.rng),
                Ipv4Addr::new(10, 200, 0, self.rng.range(2, 250) as u8),
            ),
        };
        let gateway_ip = Ipv4Addr::new(ip.octets()[0], ip.octets()[1], ip.octets()[2], 1);
        match variant {
            0 | 3 => {
                let l2 = L2 {
                    dst: MacAddr::BROADCAST,
                    src: mac,
                    vlan: if variant == 3 {
                        Vlan::Dot1q(100)
                    } else {
                        Vlan::Untagged
                    },
                };
                packet::push_l2(frame, &l2, ETHERTYPE_ARP);
                push_arp(frame, 1, (mac, ip), (MacAddr([0; 6]), gateway_ip));
            }
            1 => {
                let l2 = L2 {
                    dst: mac,
                    src: MacAddr::GATEWAY,
                    vlan: Vlan::Untagged,
                };
                packet::push_l2(frame, &l2, ETHERTYPE_ARP);
                push_arp(frame, 2, (MacAddr::GATEWAY, gateway_ip), (mac, ip));
            }
            _ => {
                let switch = MacAddr([0x02, 0x00, 0x00, 0xFE, 0x00, 0x10]);
                let l2 = L2 {
                    dst: MacAddr::LLDP,
                    src: switch,
                    vlan: Vlan::Untagged,
                };
                packet::push_l2(frame, &l2, ETHERTYPE_LLDP);
                // Chassis ID (MAC), port ID (name "p0"), TTL 120 s, end of LLDPDU.
                frame.extend_from_slice(&[0x02, 0x07, 0x04]);
                frame.extend_from_slice(&switch.0);
                frame.extend_from_slice(&[0x04, 0x03, 0x05, b'p', b'0']);
                frame.extend_from_slice(&[0x06, 0x02, 0x00, 0x78]);
                frame.extend_from_slice(&[0x00, 0x00]);
            }
        }
        packet::pad_frame(frame);
        self.put(micros)?;
        self.counters.non_ip_frames += 1;
        Ok(())
    }

    fn unattributed(&mut self, micros: u64) -> Result<(), GenError> {
        let rng = &mut self.rng;
        let src_mac = foreign_mac(rng);
        let mut dst_mac = foreign_mac(rng);
        if dst_mac == src_mac {
            dst_mac.0[5] ^= 1;
        }
        let variant = rng.below(4);
        let v6 = variant == 1;
        let (src, dst) = if v6 {
            let s = Ipv6Addr::new(0xFD00, 0xC8, 0, 0, 0, 0, 0, rng.range_u16(1, 0xFFFF));
            let d = Ipv6Addr::new(0xFD00, 0xC8, 0, 0, 0, 0, 0, rng.range_u16(1, 0xFFFF));
            (IpAddr::V6(s), IpAddr::V6(d))
        } else {
            let s = Ipv4Addr::new(10, 200, rng.range(0, 255) as u8, rng.range(2, 250) as u8);
            let d = Ipv4Addr::new(10, 200, rng.range(0, 255) as u8, rng.range(2, 250) as u8);
            (IpAddr::V4(s), IpAddr::V4(d))
        };
        let ports = (
            rng.range_u16(32_768, 60_999),
            [53u16, 80, 443, 8080][rng.index(4)],
        );
        let len = rng_len(rng, 20, 800);
        let payload = self.pattern.pick(rng, len);
        let addrs = Addresses { src, dst };
        packet::udp(&mut self.bufs.seg, &self.pattern, addrs, ports, payload);
        let ip = ip_header(
            addrs,
            proto::UDP,
            self.next_other_id,
            64,
            ExtHeaders::default(),
        );
        self.next_other_id = self.next_other_id.wrapping_add(1);
        let l2 = L2 {
            dst: dst_mac,
            src: src_mac,
            vlan: Vlan::Untagged,
        };
        if variant == 3 {
            // A VXLAN packet whose inner MACs are no ENI's either.
            self.bufs.inner.clear();
            packet::push_l2(&mut self.bufs.inner, &l2, ip.ethertype());
            packet::push_ip(&mut self.bufs.inner, &ip, &self.bufs.seg);
            let source_port = self.rng.range_u16(49_152, 65_535);
            packet::vxlan(
                &mut self.bufs.outer_seg,
                source_port,
                1099,
                &self.bufs.inner,
            );
            let outer = ip_header(
                Addresses {
                    src: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 77)),
                    dst: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)),
                },
                proto::UDP,
                self.next_other_id,
                64,
                ExtHeaders::default(),
            );
            let outer_l2 = L2 {
                dst: LOCAL_VTEP_MAC,
                src: UNDERLAY_ROUTER_MAC,
                vlan: Vlan::Untagged,
            };
            let frame = &mut self.bufs.frame;
            frame.clear();
            packet::push_l2(frame, &outer_l2, ETHERTYPE_IPV4);
            packet::push_ip(frame, &outer, &self.bufs.outer_seg);
        } else {
            let frame = &mut self.bufs.frame;
            frame.clear();
            packet::push_l2(frame, &l2, ip.ethertype());
            packet::push_ip(frame, &ip, &self.bufs.seg);
        }
        packet::pad_frame(&mut self.bufs.frame);
        self.put(micros)?;
        self.counters.unattributed_frames += 1;
        Ok(())
    }

    /// A non-first IPv4 fragment of a datagram whose first fragment is never sent: recorded with ports 0.
    fn orphan_fragment(&mut self, micros: u64) -> Result<(), GenError> {
        // `talkers` is never empty (see its doc).
        let eni = self.talkers[self.rng.index(self.talkers.len())];
        let me = self.enis.get(eni);
        // 198.18.0.0/15 is used by nothing else, so no first fragment ever had these addresses.
        let remote = Ipv4Addr::from(0xC612_0000 | (self.rng.next_u64() as u32 & 0x1_FFFF));
        let mine = Endpoint {
            mac: me.mac,
            ip: IpAddr::V4(me.ipv4(self.rng.below(4) as u8)),
            port: 0,
            eni: Some(eni),
            ttl: 64,
        };
        let theirs = Endpoint {
            mac: MacAddr::GATEWAY,
            ip: IpAddr::V4(remote),
            port: 0,
            eni: None,
            ttl: 51,
        };
        let (src, dst) = if self.rng.chance(700_000) {
            (theirs, mine)
        } else {
            (mine, theirs)
        };
        let more = self.rng.chance(500_000);
        let len = if more {
            8 * self.rng.range(1, 185) as usize
        } else {
            self.rng.range(1, FRAGMENT_PAYLOAD as u64) as usize
        };
        let payload = self.pattern.pick(&mut self.rng, len);
        let ip = IpHeader::V4 {
            addrs: (v4(src.ip), v4(dst.ip)),
            protocol: proto::UDP,
            id: self.take_fragment_id(),
            ttl: src.ttl,
            dont_fragment: false,
            options: false,
            fragment_offset: self.rng.range_u16(1, 1000),
            more_fragments: more,
        };
        let l2 = L2 {
            dst: dst.mac,
            src: src.mac,
            vlan: Vlan::Untagged,
        };
        let frame = &mut self.bufs.frame;
        frame.clear();
        packet::push_l2(frame, &l2, ETHERTYPE_IPV4);
        let ip_len = packet::push_ip(frame, &ip, self.pattern.bytes(payload));
        packet::pad_frame(frame);
        self.put(micros)?;
        self.account(&src, &dst, proto::UDP, (0, 0), ip_len, 0);
        self.counters.orphan_fragments += 1;
        self.counters.by_protocol[protocol_slot(Kind::Udp, false)] += 1;
        Ok(())
    }

    fn take_fragment_id(&mut self) -> u16 {
        let id = self.next_fragment_id;
        self.next_fragment_id = self.next_fragment_id.wrapping_add(1);
        id
    }

    /// The tier (0 mice, 1 elephants) and index of a flow in progress that may send now, starting a new flow when
    /// fewer than `concurrent_flows` are in progress or none may send.
    fn choose_flow(&mut self) -> (usize, usize) {
        let target = self.cfg.concurrent_flows as usize;
        if self.flows[0].len() + self.flows[1].len() >= target {
            // Elephants send at a far higher rate than mice: half of the picks go to them.
            let first = usize::from(!self.flows[1].is_empty() && self.rng.chance(500_000));
            for tier in [first, 1 - first] {
                let len = self.flows[tier].len();
                for _ in 0..if len == 0 { 0 } else { PICK_TRIES } {
                    let idx = self.rng.index(len);
                    if self.may_send(&self.flows[tier][idx]) {
                        return (tier, idx);
                    }
                }
            }
            for tier in [first, 1 - first] {
                let len = self.flows[tier].len();
                let start = self.rng.index(len.max(1));
                for k in 0..len {
                    let idx = (start + k) % len;
                    if self.may_send(&self.flows[tier][idx]) {
                        return (tier, idx);
                    }
                }
            }
        }
        // `talkers` is never empty (see its doc).
        let eni = self.talkers[self.rng.index(self.talkers.len())];
        let vpc = self.enis.get(eni).vpc;
        let mut peer = None;
        for _ in 0..4 {
            let candidate = self.talkers[self.rng.index(self.talkers.len())];
            if candidate != eni && self.enis.get(candidate).vpc == vpc {
                peer = Some(candidate);
                break;
            }
        }
        let flow = self.factory.create(&mut self.rng, self.enis, eni, peer);
        self.counters.flows += 1;
        let tier = usize::from(flow.is_elephant());
        self.flows[tier].push(flow);
        (tier, self.flows[tier].len() - 1)
    }

    fn may_send(&self, flow: &Flow) -> bool {
        let (a, b) = flow.enis();
        let quiet = |eni: Option<u16>| eni.is_some_and(|n| self.silent[usize::from(n)]);
        !quiet(a) && !quiet(b)
    }

    /// Writes the next packet of a flow at frame `i`; returns the frames used (more than one for fragments).
    fn flow_packet(&mut self, i: u64) -> Result<u64, GenError> {
        let (tier, idx) = self.choose_flow();
        let mut flow = self.flows[tier].swap_remove(idx);
        let mut step = flow.step(&mut self.rng);
        let mut used = 1;
        if step.oversized {
            let frames = (8 + step.payload).div_ceil(FRAGMENT_PAYLOAD) as u64;
            let last = i + frames - 1;
            let fits = last < self.cfg.packets
                && self.ledger.window_of(self.timeline.at(last) / MICROS)
                    == self.ledger.window_of(self.timeline.at(i) / MICROS);
            if fits {
                self.fragmented_datagram(&mut flow, &step, i)?;
                used = frames;
            } else {
                step.payload = flow.max_payload();
                self.single_packet(&mut flow, &step, self.timeline.at(i))?;
            }
        } else {
            self.single_packet(&mut flow, &step, self.timeline.at(i))?;
        }
        if !flow.is_done() {
            self.flows[tier].push(flow);
        }
        Ok(used)
    }

    fn single_packet(
        &mut self,
        flow: &mut Flow,
        step: &crate::flow::Step,
        micros: u64,
    ) -> Result<(), GenError> {
        let (src, dst) = if step.from_a {
            (flow.a, flow.b)
        } else {
            (flow.b, flow.a)
        };
        let addrs = Addresses {
            src: src.ip,
            dst: dst.ip,
        };
        let ports = (src.port, dst.port);
        let rng = &mut self.rng;
        let mut payload = self.pattern.pick(rng, step.payload);
        let protocol = match flow.kind {
            Kind::Tcp => {
                packet::tcp(
                    &mut self.bufs.seg,
                    &self.pattern,
                    addrs,
                    ports,
                    step.seq_ack.0,
                    step.seq_ack.1,
                    step.flags,
                    step.mss.then_some(if flow.v6 { 1440 } else { 1460 }),
                    payload,
                );
                proto::TCP
            }
            Kind::Udp => {
                if dst.port == VXLAN_PORT {
                    // Ordinary UDP to 4789: the first payload byte must not carry VXLAN's I flag.
                    while self
                        .pattern
                        .bytes(payload)
                        .first()
                        .is_none_or(|b| b & 0x08 != 0)
                    {
                        payload = self.pattern.pick(rng, step.payload.max(8));
                    }
                    self.counters.udp_4789_not_vxlan_frames += 1;
                }
                packet::udp(&mut self.bufs.seg, &self.pattern, addrs, ports, payload);
                proto::UDP
            }
            Kind::Icmp => {
                let kind = match (flow.v6, step.from_a) {
                    (false, true) => (8, 0),
                    (false, false) => (0, 0),
                    (true, true) => (128, 0),
                    (true, false) => (129, 0),
                };
                packet::icmp(
                    &mut self.bufs.seg,
                    &self.pattern,
                    addrs,
                    kind,
                    step.ident_seq.0,
                    step.ident_seq.1,
                    payload,
                );
                if flow.v6 { proto::ICMPV6 } else { proto::ICMP }
            }
            Kind::Gre => {
                packet::gre(&mut self.bufs.seg, &self.pattern, payload);
                proto::GRE
            }
            Kind::Sctp => {
                let vtag = u32::from(step.ident_seq.0) << 16 | u32::from(!step.from_a);
                packet::sctp(
                    &mut self.bufs.seg,
                    &self.pattern,
                    ports,
                    vtag,
                    u32::from(step.ident_seq.1),
                    payload,
                );
                proto::SCTP
            }
        };
        let id = if step.from_a {
            &mut flow.ip_id.0
        } else {
            &mut flow.ip_id.1
        };
        let ip_id = *id;
        *id = id.wrapping_add(1);
        let ip = match (src.ip, dst.ip) {
            (IpAddr::V6(s), IpAddr::V6(d)) => IpHeader::V6 {
                addrs: (s, d),
                protocol,
                hop_limit: src.ttl,
                flow_label: flow.flow_label,
                ext: flow.ext,
            },
            _ => IpHeader::V4 {
                addrs: (v4(src.ip), v4(dst.ip)),
                protocol,
                id: ip_id,
                ttl: src.ttl,
                dont_fragment: flow.kind == Kind::Tcp,
                options: flow.ip_options,
                fragment_offset: 0,
                more_fragments: false,
            },
        };
        let l2 = L2 {
            dst: dst.mac,
            src: src.mac,
            vlan: flow.vlan,
        };
        let ip_len;
        let frame = &mut self.bufs.frame;
        frame.clear();
        if let Some(tunnel) = flow.tunnel {
            let inner = &mut self.bufs.inner;
            inner.clear();
            packet::push_l2(
                inner,
                &L2 {
                    vlan: Vlan::Untagged,
                    ..l2
                },
                ip.ethertype(),
            );
            ip_len = packet::push_ip(inner, &ip, &self.bufs.seg);
            packet::vxlan(
                &mut self.bufs.outer_seg,
                tunnel.source_port,
                tunnel.vni,
                inner,
            );
            // The ENI's side is local: frames it sends leave towards the remote VTEP.
            let (outer_src, outer_dst, mac_src, mac_dst) = if src.eni.is_some() {
                (
                    tunnel.local_vtep,
                    tunnel.remote_vtep,
                    LOCAL_VTEP_MAC,
                    UNDERLAY_ROUTER_MAC,
                )
            } else {
                (
                    tunnel.remote_vtep,
                    tunnel.local_vtep,
                    UNDERLAY_ROUTER_MAC,
                    LOCAL_VTEP_MAC,
                )
            };
            let outer = IpHeader::V4 {
                addrs: (outer_src, outer_dst),
                protocol: proto::UDP,
                id: self.next_other_id,
                ttl: 64,
                dont_fragment: true,
                options: false,
                fragment_offset: 0,
                more_fragments: false,
            };
            self.next_other_id = self.next_other_id.wrapping_add(1);
            let outer_l2 = L2 {
                dst: mac_dst,
                src: mac_src,
                vlan: flow.vlan,
            };
            packet::push_l2(frame, &outer_l2, ETHERTYPE_IPV4);
            packet::push_ip(frame, &outer, &self.bufs.outer_seg);
            self.counters.vxlan_frames += 1;
        } else {
            packet::push_l2(frame, &l2, ip.ethertype());
            ip_len = packet::push_ip(frame, &ip, &self.bufs.seg);
        }
        packet::pad_frame(frame);
        self.put(micros)?;
        let ports = match flow.kind {
            Kind::Tcp | Kind::Udp | Kind::Sctp => ports,
            Kind::Icmp | Kind::Gre => (0, 0),
        };
        self.account(&src, &dst, protocol, ports, ip_len, step.flags);
        self.count_shape(flow);
        Ok(())
    }

    /// Sends one oversized UDP datagram of `flow` as IPv4 fragments in frames `i..`.
    fn fragmented_datagram(
        &mut self,
        flow: &mut Flow,
        step: &crate::flow::Step,
        i: u64,
    ) -> Result<(), GenError> {
        let (src, dst) = if step.from_a {
            (flow.a, flow.b)
        } else {
            (flow.b, flow.a)
        };
        let addrs = Addresses {
            src: src.ip,
            dst: dst.ip,
        };
        let ports = (src.port, dst.port);
        let payload: Payload = self.pattern.pick(&mut self.rng, step.payload);
        packet::udp(&mut self.bufs.seg, &self.pattern, addrs, ports, payload);
        let id = self.take_fragment_id();
        let l2 = L2 {
            dst: dst.mac,
            src: src.mac,
            vlan: flow.vlan,
        };
        let total = self.bufs.seg.len();
        let mut offset = 0;
        let mut k = 0;
        while offset < total {
            let end = (offset + FRAGMENT_PAYLOAD).min(total);
            let ip = IpHeader::V4 {
                addrs: (v4(src.ip), v4(dst.ip)),
                protocol: proto::UDP,
                id,
                ttl: src.ttl,
                dont_fragment: false,
                options: false,
                // offset < 64 KiB, so offset / 8 fits in 13 bits.
                fragment_offset: (offset / 8) as u16,
                more_fragments: end < total,
            };
            let frame = &mut self.bufs.frame;
            frame.clear();
            packet::push_l2(frame, &l2, ETHERTYPE_IPV4);
            let ip_len = packet::push_ip(frame, &ip, &self.bufs.seg[offset..end]);
            packet::pad_frame(frame);
            self.put(self.timeline.at(i + k))?;
            self.account(&src, &dst, proto::UDP, ports, ip_len, 0);
            self.count_shape(flow);
            self.counters.fragment_frames += 1;
            offset = end;
            k += 1;
        }
        self.counters.fragmented_datagrams += 1;
        Ok(())
    }

    /// Counts the tags, family and extension headers of a flow frame.
    fn count_shape(&mut self, flow: &Flow) {
        let c = &mut self.counters;
        match flow.vlan {
            Vlan::Untagged => {}
            Vlan::Dot1q(_) => c.dot1q_frames += 1,
            Vlan::QinQ { .. } => c.qinq_frames += 1,
        }
        if flow.v6 {
            c.ipv6_frames += 1;
            if !flow.ext.is_empty() {
                c.ipv6_extension_header_frames += 1;
            }
        } else if flow.ip_options {
            c.ipv4_option_frames += 1;
        }
        c.by_protocol[protocol_slot(flow.kind, flow.v6)] += 1;
    }
}

/// `count * per_million / 1e6` positions spread evenly over `1..=packets - 6` (one in each equal stride, at a random
/// place in it), sorted. None for captures of fewer than 8 frames.
fn spread(rng: &mut Rng, packets: u64, per_million: u32) -> Vec<u64> {
    if packets < 8 {
        return Vec::new();
    }
    let span = packets - 6;
    let wanted = (u128::from(packets) * u128::from(per_million)).div_ceil(1_000_000);
    // wanted <= packets / 10 + 1 (rates are at most 100,000 per million): fits in u64.
    let count = (wanted as u64).min(span);
    (0..count)
        .map(|j| {
            let lo = 1 + (u128::from(j) * u128::from(span) / u128::from(count)) as u64;
            let hi = (u128::from(j + 1) * u128::from(span) / u128::from(count)) as u64;
            rng.range(lo, hi.max(lo))
        })
        .collect()
}

fn foreign_mac(rng: &mut Rng) -> MacAddr {
    MacAddr::local(FOREIGN_MAC_PREFIX, rng.range_u16(0, 0xFFFF))
}

fn rng_len(rng: &mut Rng, lo: u64, hi: u64) -> usize {
    // hi is a small constant, far below usize::MAX.
    rng.range(lo, hi) as usize
}

fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(a) => a,
        // Only called on IPv4 flows; an IPv6 address maps to its IPv4-mapped tail, never reached.
        IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

fn ip_header(addrs: Addresses, protocol: u8, id: u16, ttl: u8, ext: ExtHeaders) -> IpHeader {
    match (addrs.src, addrs.dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => IpHeader::V6 {
            addrs: (s, d),
            protocol,
            hop_limit: ttl,
            flow_label: 0,
            ext,
        },
        (s, d) => IpHeader::V4 {
            addrs: (v4(s), v4(d)),
            protocol,
            id,
            ttl,
            dont_fragment: true,
            options: false,
            fragment_offset: 0,
            more_fragments: false,
        },
    }
}

fn push_arp(
    frame: &mut Vec<u8>,
    op: u16,
    sender: (MacAddr, Ipv4Addr),
    target: (MacAddr, Ipv4Addr),
) {
    frame.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4]);
    frame.extend_from_slice(&op.to_be_bytes());
    frame.extend_from_slice(&sender.0.0);
    frame.extend_from_slice(&sender.1.octets());
    frame.extend_from_slice(&target.0.0);
    frame.extend_from_slice(&target.1.octets());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_sorted_inside_the_bounds_and_exact() {
        let mut rng = Rng::new(1);
        let at = spread(&mut rng, 20_000, 1_000);
        assert_eq!(at.len(), 20);
        assert!(at.windows(2).all(|w| w[0] < w[1]));
        assert!(at.iter().all(|&p| (1..=19_994).contains(&p)));
        assert!(spread(&mut rng, 7, 100_000).is_empty());
        assert_eq!(spread(&mut rng, 100, 100_000).len(), 10);
        assert!(spread(&mut rng, 1_000_000, 0).is_empty());
    }
}
