//! Meter behaviour: attribution, windows (open, seal, gaps, late, flush, live ticks), SKIPDATA when the table
//! is full, refused seals, ENI table changes, fragments; and a conservation property test.

use std::sync::Arc;

use super::*;
use crate::export::{LogStatus, records};
use crate::wire::tests::{MAC_A, MAC_B, eth, frame, ipv4, tcp, udp};

const GW: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const STRANGER: [u8; 6] = [2, 0, 0, 0, 0, 0xfd];

fn eni(n: u8, mac: [u8; 6]) -> Eni {
    Eni::new(
        format!("eni-{n:05}"),
        MacAddr(mac),
        format!("i-{n}"),
        "vsw-0",
        "vpc-0",
        "1",
    )
}

fn table() -> Arc<EniTable> {
    Arc::new(
        EniTable::from_enis([eni(1, MAC_A), eni(2, MAC_B), eni(3, [2, 0, 0, 0xe1, 0, 3])]).unwrap(),
    )
}

fn meter(interval: u32, capacity: usize) -> Meter {
    Meter::new(MeterConfig::new(interval, capacity), table()).unwrap()
}

/// A TCP frame from `src` to `dst` MAC with source port `sport` and `data` payload bytes (IP length 40 + data).
fn tcp_frame(src: [u8; 6], dst: [u8; 6], sport: u16, data: usize) -> Vec<u8> {
    frame(
        eth(dst, src, &[], 0x0800),
        ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            6,
            1,
            0,
            &[],
            &tcp(sport, 80, 0x18, data),
        ),
    )
}

fn status_counts(windows: &[SealedWindow]) -> Vec<(u64, String, LogStatus, u64, u64)> {
    windows
        .iter()
        .flat_map(records)
        .map(|r| {
            (
                r.start,
                r.eni.id.to_string(),
                r.log_status,
                r.packets,
                r.bytes,
            )
        })
        .collect()
}

#[test]
fn meters_and_windows_move_between_threads() {
    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send::<Meter>();
    assert_send::<SealedWindow>();
    assert_send_sync::<EniTable>();
}

#[test]
fn config_is_checked() {
    assert_eq!(
        Meter::new(MeterConfig::new(0, 10), table()).unwrap_err(),
        MeterError::ZeroInterval
    );
    assert_eq!(
        Meter::new(MeterConfig::new(60, 0), table()).unwrap_err(),
        MeterError::FlowCapacity(0)
    );
    assert!(Meter::new(MeterConfig::new(60, MAX_FLOW_CAPACITY + 1), table()).is_err());
}

#[test]
fn attribution_by_mac() {
    let mut m = meter(60, 100);
    let mut out = Vec::new();
    m.account(
        100,
        &tcp_frame(MAC_A, GW, 1, 0),
        54,
        Action::Accept,
        &mut out,
    ); // out for 1
    m.account(
        100,
        &tcp_frame(GW, MAC_B, 2, 10),
        64,
        Action::Reject,
        &mut out,
    ); // in for 2
    m.account(
        100,
        &tcp_frame(MAC_A, MAC_B, 3, 0),
        54,
        Action::Accept,
        &mut out,
    ); // out for 1, in for 2
    m.account(
        100,
        &tcp_frame(GW, STRANGER, 4, 0),
        54,
        Action::Accept,
        &mut out,
    ); // nobody
    m.flush(&mut out);
    assert_eq!(out.len(), 1);
    let c = m.counters();
    assert_eq!(
        (
            c.frames,
            c.ip_packets,
            c.unattributed,
            c.attributed,
            c.attributed_bytes
        ),
        (4, 4, 1, 4, 170)
    );

    let recs = records(&out[0]);
    let ok: Vec<_> = recs
        .iter()
        .filter(|r| r.log_status == LogStatus::Ok)
        .map(|r| {
            (
                &*r.eni.id,
                r.direction.unwrap().as_str(),
                r.srcport.unwrap(),
                r.action.unwrap().as_str(),
                r.bytes,
            )
        })
        .collect();
    assert_eq!(
        ok,
        vec![
            ("eni-00001", "out", 1, "ACCEPT", 40),
            ("eni-00001", "out", 3, "ACCEPT", 40),
            ("eni-00002", "in", 2, "REJECT", 50),
            ("eni-00002", "in", 3, "ACCEPT", 40),
        ]
    );
    let nodata: Vec<_> = recs
        .iter()
        .filter(|r| r.log_status == LogStatus::NoData)
        .map(|r| &*r.eni.id)
        .collect();
    assert_eq!(nodata, vec!["eni-00003"]);
    assert!(recs.iter().all(|r| (r.start, r.end) == (60, 120)));
}

#[test]
fn same_flow_sums_and_ors_flags() {
    let mut m = meter(60, 100);
    let mut out = Vec::new();
    let syn = frame(
        eth(GW, MAC_A, &[], 0x0800),
        ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            6,
            1,
            0,
            &[],
            &tcp(5, 80, 0x02, 0),
        ),
    );
    let fin = frame(
        eth(GW, MAC_A, &[], 0x0800),
        ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            6,
            1,
            0,
            &[],
            &tcp(5, 80, 0x11, 100),
        ),
    );
    m.account(0, &syn, syn.len(), Action::Accept, &mut out);
    m.account(1, &fin, fin.len(), Action::Accept, &mut out);
    m.flush(&mut out);
    let flows = out[0].flows();
    assert_eq!(flows.len(), 1);
    assert_eq!(
        flows[0].counts,
        FlowCounts {
            packets: 2,
            bytes: 180,
            tcp_flags: 0x13
        }
    );
}

#[test]
fn windows_open_on_first_frame_and_seal_with_gaps() {
    let mut m = meter(60, 100);
    let mut out = Vec::new();
    assert_eq!(m.open_window(), None);
    // Even a malformed frame opens the first window.
    m.account(1_700_000_000, &[1, 2, 3], 3, Action::Accept, &mut out);
    assert_eq!(m.open_window(), Some(1_699_999_980));
    m.account(
        1_700_000_001,
        &tcp_frame(MAC_A, GW, 1, 0),
        54,
        Action::Accept,
        &mut out,
    );
    // Three windows later: seals the open one and two empty ones.
    m.account(
        1_700_000_200,
        &tcp_frame(MAC_B, GW, 1, 0),
        54,
        Action::Accept,
        &mut out,
    );
    assert_eq!(
        out.iter().map(|w| w.start()).collect::<Vec<_>>(),
        vec![1_699_999_980, 1_700_000_040, 1_700_000_100]
    );
    // An older frame goes into the open window and is counted late.
    m.account(
        1_700_000_000,
        &tcp_frame(MAC_B, GW, 9, 0),
        54,
        Action::Accept,
        &mut out,
    );
    assert_eq!(m.counters().late, 1);
    m.flush(&mut out);
    assert_eq!(out.len(), 4);
    assert_eq!(out[3].start(), 1_700_000_160);
    assert_eq!(out[3].flows().len(), 2);

    let got = status_counts(&out);
    let nodata_per_window: Vec<usize> = out
        .iter()
        .map(|w| {
            got.iter()
                .filter(|r| r.0 == w.start() && r.2 == LogStatus::NoData)
                .count()
        })
        .collect();
    assert_eq!(nodata_per_window, vec![2, 3, 3, 2]);
    assert_eq!(m.counters().windows_sealed, 4);
}

#[test]
fn flush_stops_and_a_later_frame_resumes_without_resealing() {
    let mut m = meter(10, 100);
    let mut out = Vec::new();
    m.account(5, &tcp_frame(MAC_A, GW, 1, 0), 54, Action::Accept, &mut out);
    m.flush(&mut out);
    assert_eq!(m.open_window(), None);
    m.flush(&mut out); // nothing open: no window
    assert_eq!(out.len(), 1);
    // A frame of the flushed window goes (late) into the next one.
    m.account(7, &tcp_frame(MAC_A, GW, 1, 0), 54, Action::Accept, &mut out);
    assert_eq!(m.open_window(), Some(10));
    assert_eq!(m.counters().late, 1);
    // Later: the stopped time is not sealed; the jump from 10 to 50 seals 10..40.
    m.account(
        55,
        &tcp_frame(MAC_A, GW, 1, 0),
        54,
        Action::Accept,
        &mut out,
    );
    assert_eq!(
        out.iter().map(|w| w.start()).collect::<Vec<_>>(),
        vec![0, 10, 20, 30, 40]
    );
    m.flush(&mut out);
    m.start(0);
    assert_eq!(
        m.open_window(),
        Some(60),
        "start never reopens a sealed window"
    );
}

#[test]
fn live_mode_ticks_seal_empty_windows() {
    let mut m = meter(60, 100);
    let mut out = Vec::new();
    m.advance(1000, &mut out);
    assert!(
        out.is_empty() && m.open_window().is_none(),
        "stopped: advance opens nothing"
    );
    m.start(1000);
    assert_eq!(m.open_window(), Some(960));
    m.advance(1019, &mut out);
    assert!(out.is_empty());
    m.advance(1020, &mut out);
    assert_eq!(out.len(), 1);
    m.advance(1200, &mut out);
    assert_eq!(
        out.iter().map(|w| w.start()).collect::<Vec<_>>(),
        vec![960, 1020, 1080, 1140]
    );
    assert_eq!(m.open_window(), Some(1200));
    let nodata = status_counts(&out)
        .iter()
        .filter(|r| r.2 == LogStatus::NoData)
        .count();
    assert_eq!(nodata, 4 * 3);
}

#[test]
fn huge_time_jump_is_bounded() {
    let mut config = MeterConfig::new(1, 10);
    config.max_gap_windows = 100;
    let mut m = Meter::new(config, table()).unwrap();
    let mut out = Vec::new();
    m.account(0, &tcp_frame(MAC_A, GW, 1, 0), 54, Action::Accept, &mut out);
    m.account(
        1_000_000,
        &tcp_frame(MAC_A, GW, 1, 0),
        54,
        Action::Accept,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(m.counters().gap_windows_skipped, 999_999);
    m.account(
        1_000_050,
        &tcp_frame(MAC_A, GW, 1, 0),
        54,
        Action::Accept,
        &mut out,
    );
    assert_eq!(out.len(), 51);
}

#[test]
fn full_table_gives_exact_skipdata() {
    let mut m = meter(60, 2);
    let mut out = Vec::new();
    for port in 0..5u16 {
        for _ in 0..3 {
            m.account(
                0,
                &tcp_frame(MAC_A, MAC_B, port, usize::from(port)),
                54,
                Action::Accept,
                &mut out,
            );
        }
    }
    m.flush(&mut out);
    let w = &out[0];
    assert_eq!(w.flows().len(), 2);
    // Port 0 (out of eni 1, into eni 2) fills the table; every attribution of another port is skipped.
    let c = m.counters();
    assert_eq!(c.attributed, 30);
    assert_eq!(c.table_full_packets, 24);
    let got = status_counts(&out);
    let skip: Vec<_> = got
        .iter()
        .filter(|r| r.2 == LogStatus::SkipData)
        .map(|r| (r.1.as_str(), r.3, r.4))
        .collect();
    assert_eq!(
        skip,
        vec![
            ("eni-00001", 12, 3 * (41 + 42 + 43 + 44)),
            ("eni-00002", 12, 3 * (41 + 42 + 43 + 44))
        ]
    );
    assert_eq!(c.table_full_bytes, skip.iter().map(|s| s.2).sum::<u64>());
    // An ENI with only skipped traffic is not NODATA.
    assert!(
        !got.iter()
            .any(|r| r.1 == "eni-00002" && r.2 == LogStatus::NoData)
    );
}

/// A sink that refuses while `open` is false.
struct Gate {
    open: bool,
    got: Vec<SealedWindow>,
}

impl SealSink for Gate {
    fn seal(&mut self, window: SealedWindow) -> Result<(), SealedWindow> {
        if self.open {
            self.got.push(window);
            Ok(())
        } else {
            Err(window)
        }
    }
}

#[test]
fn refused_windows_become_summaries_delivered_in_order() {
    let mut m = meter(10, 100);
    let mut sink = Gate {
        open: false,
        got: Vec::new(),
    };
    m.account(
        0,
        &tcp_frame(MAC_A, GW, 1, 10),
        64,
        Action::Accept,
        &mut sink,
    );
    m.account(
        1,
        &tcp_frame(MAC_A, MAC_B, 2, 20),
        74,
        Action::Accept,
        &mut sink,
    );
    m.account(
        15,
        &tcp_frame(MAC_B, GW, 3, 0),
        54,
        Action::Accept,
        &mut sink,
    ); // seals window 0: refused
    assert_eq!(m.pending_windows(), 1);
    m.account(
        25,
        &tcp_frame(MAC_B, GW, 3, 0),
        54,
        Action::Accept,
        &mut sink,
    ); // seals 10: refused too
    assert_eq!(m.pending_windows(), 2);
    sink.open = true;
    m.advance(31, &mut sink); // seals 20, after delivering 0 and 10
    assert_eq!(m.pending_windows(), 0);
    assert_eq!(
        sink.got
            .iter()
            .map(|w| (w.start(), w.is_summary()))
            .collect::<Vec<_>>(),
        vec![(0, true), (10, true), (20, false)]
    );
    let got = status_counts(&sink.got);
    let w0: Vec<_> = got
        .iter()
        .filter(|r| r.0 == 0)
        .map(|r| (r.1.as_str(), r.2, r.3, r.4))
        .collect();
    assert_eq!(
        w0,
        vec![
            ("eni-00001", LogStatus::SkipData, 2, 50 + 60),
            ("eni-00002", LogStatus::SkipData, 1, 60),
            ("eni-00003", LogStatus::NoData, 0, 0),
        ]
    );
    let c = m.counters();
    assert_eq!(
        (
            c.windows_refused,
            c.refused_packets,
            c.refused_bytes,
            c.windows_sealed
        ),
        (2, 4, 210, 3)
    );
}

#[test]
fn pending_summaries_are_bounded() {
    let mut config = MeterConfig::new(1, 10);
    config.max_pending_windows = 3;
    let mut m = Meter::new(config, table()).unwrap();
    let mut sink = Gate {
        open: false,
        got: Vec::new(),
    };
    for t in 0..6 {
        m.account(
            t,
            &tcp_frame(MAC_A, GW, 1, 0),
            54,
            Action::Accept,
            &mut sink,
        );
    }
    m.flush(&mut sink);
    assert_eq!(m.pending_windows(), 3);
    let c = m.counters();
    assert_eq!(
        (
            c.pending_dropped_windows,
            c.pending_dropped_packets,
            c.pending_dropped_bytes
        ),
        (3, 3, 120)
    );
    sink.open = true;
    m.flush(&mut sink);
    assert_eq!(
        sink.got.iter().map(|w| w.start()).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
}

#[test]
fn eni_changes_take_effect_for_the_next_frames() {
    let t1 = table();
    let mut m = Meter::new(MeterConfig::new(60, 100), t1.clone()).unwrap();
    let mut out = Vec::new();
    let new_mac = [2, 0, 0, 0xe1, 0, 9];
    m.account(
        0,
        &tcp_frame(new_mac, GW, 1, 0),
        54,
        Action::Accept,
        &mut out,
    );
    assert_eq!(m.counters().unattributed, 1);
    m.account(0, &tcp_frame(MAC_B, GW, 1, 0), 54, Action::Accept, &mut out);

    let mut b = t1.to_builder();
    b.insert(eni(9, new_mac)).unwrap();
    b.remove("eni-00002", 0).unwrap();
    let t2 = Arc::new(b.build());
    m.set_enis(t2.clone()).unwrap();
    m.account(
        1,
        &tcp_frame(new_mac, GW, 1, 0),
        54,
        Action::Accept,
        &mut out,
    );
    m.account(1, &tcp_frame(MAC_B, GW, 1, 0), 54, Action::Accept, &mut out);
    assert_eq!(m.counters().unattributed, 2);
    m.flush(&mut out);

    let got = status_counts(&out);
    let summary: Vec<_> = got.iter().map(|r| (r.1.as_str(), r.2, r.3)).collect();
    // eni-00002 was removed mid-window: its earlier flow is still reported (tombstone), but it gets no NODATA.
    assert_eq!(
        summary,
        vec![
            ("eni-00001", LogStatus::NoData, 0),
            ("eni-00002", LogStatus::Ok, 1),
            ("eni-00003", LogStatus::NoData, 0),
            ("eni-00009", LogStatus::Ok, 1),
        ]
    );

    // A table of another lineage, or one that reclaimed a slot with traffic in the open window, is refused.
    assert!(matches!(
        m.set_enis(table()),
        Err(MeterError::UnrelatedTable { .. })
    ));
    m.account(
        100,
        &tcp_frame(MAC_A, GW, 1, 0),
        54,
        Action::Accept,
        &mut out,
    );
    let mut b = t2.to_builder();
    b.remove("eni-00001", 100).unwrap();
    b.reclaim(101);
    let reclaimed = b.build();
    // Reused by another ENI: refused, the meter keeps its table.
    let mut b = reclaimed.to_builder();
    assert_eq!(b.insert(eni(7, [2, 0, 0, 0xe1, 0, 7])).unwrap(), EniSlot(0));
    assert!(matches!(
        m.set_enis(Arc::new(b.build())),
        Err(MeterError::SlotReclaimed(EniSlot(0)))
    ));
    assert!(Arc::ptr_eq(m.enis(), &t2));
    // Freed, not reused: accepted; the open window still names eni 1 through the table it replaced.
    m.set_enis(Arc::new(reclaimed)).unwrap();
    m.account(
        101,
        &tcp_frame(MAC_A, GW, 1, 0),
        54,
        Action::Accept,
        &mut out,
    );
    assert_eq!(m.counters().unattributed, 3);
    let before = out.len();
    m.flush(&mut out);
    let last = &out[before..];
    let rows: Vec<_> = status_counts(last)
        .iter()
        .map(|r| (r.1.clone(), r.2, r.3))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("eni-00001".to_string(), LogStatus::Ok, 1),
            ("eni-00003".to_string(), LogStatus::NoData, 0),
            ("eni-00009".to_string(), LogStatus::NoData, 0),
        ]
    );
}

#[test]
fn fragments_take_their_first_fragments_ports() {
    let mut m = meter(60, 100);
    let mut out = Vec::new();
    let l2 = eth(GW, MAC_A, &[], 0x0800);
    let first = frame(
        l2.clone(),
        ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            17,
            42,
            0x2000,
            &[],
            &udp(5000, 53, &[0; 100]),
        ),
    );
    let rest = frame(
        l2.clone(),
        ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, 42, 14, &[], &[0; 60]),
    );
    let orphan = frame(
        l2,
        ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, 43, 14, &[], &[0; 60]),
    );
    for f in [&first, &rest, &orphan] {
        m.account(0, f, f.len(), Action::Accept, &mut out);
    }
    m.flush(&mut out);
    let mut flows: Vec<_> = out[0]
        .flows()
        .iter()
        .map(|f| {
            (
                f.key.src_port,
                f.key.dst_port,
                f.counts.packets,
                f.counts.bytes,
            )
        })
        .collect();
    flows.sort();
    assert_eq!(flows, vec![(0, 0, 1, 80), (5000, 53, 2, 128 + 80)]);
    let c = m.counters();
    assert_eq!(
        (
            c.fragments_first,
            c.fragments_non_first,
            c.fragments_unmatched
        ),
        (1, 2, 1)
    );
}

#[test]
fn recycled_storage_is_reused() {
    let mut m = meter(10, 100);
    let mut out = Vec::new();
    for p in 0..50 {
        m.account(0, &tcp_frame(MAC_A, GW, p, 0), 54, Action::Accept, &mut out);
    }
    m.flush(&mut out);
    let batch = out.pop().unwrap().into_flows();
    assert_eq!(batch.len(), 50);
    m.recycle(batch);
    m.account(
        10,
        &tcp_frame(MAC_A, GW, 1, 0),
        54,
        Action::Accept,
        &mut out,
    );
    m.flush(&mut out);
    assert_eq!(out[0].flows().len(), 1);
}

/// An IPv6 UDP frame from `src` to `dst` MAC with source port `sport` (IP length 40 + 8).
fn udp6_frame(src: [u8; 6], dst: [u8; 6], sport: u16) -> Vec<u8> {
    frame(
        eth(dst, src, &[], 0x86dd),
        crate::wire::tests::ipv6([0x20; 16], [0xfe; 16], 17, &udp(sport, 53, &[])),
    )
}

/// Frames of the common shapes under up to two VLAN tags (the fast paths: IPv4 in line or out of line, IPv6 out
/// of line), bare and inside VXLAN over IPv4 or IPv6 under up to two tags, meter exactly as the same packets under
/// three (outer) tags, which take the full parser: same records, same counters.
#[test]
fn fast_paths_meter_as_the_full_parser() {
    use crate::wire::tests::{ipv6, vxlan_payload};
    use crate::wire::{
        VXLAN_PORT, parse_common, parse_common_tagged, parse_common_v6, parse_common_vxlan,
    };
    let (a6, b6) = ([0x20; 16], [0xfe; 16]);
    let (a4, b4) = ([10, 0, 0, 1], [192, 0, 2, 9]);
    // (source MAC, destination MAC, EtherType, IP packet)
    let packets = [
        (
            MAC_A,
            MAC_B,
            0x86dd,
            ipv6(a6, b6, 6, &tcp(40_000, 443, 0x1b, 10)),
        ),
        (
            GW,
            MAC_A,
            0x86dd,
            ipv6(b6, a6, 17, &udp(53, 40_001, &[7; 20])),
        ),
        (
            MAC_B,
            GW,
            0x86dd,
            ipv6(
                a6,
                b6,
                58,
                &[128, 0, 0, 0, 0, 1, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9],
            ),
        ),
        (
            MAC_A,
            STRANGER,
            0x86dd,
            ipv6(
                a6,
                b6,
                132,
                &[0, 9, 0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            ),
        ),
        (
            MAC_B,
            MAC_A,
            0x0800,
            ipv4(a4, b4, 6, 1, 0x4000, &[], &tcp(40_002, 80, 0x02, 30)),
        ),
        (
            STRANGER,
            MAC_B,
            0x0800,
            ipv4(b4, a4, 17, 2, 0, &[], &udp(123, 123, &[1; 48])),
        ),
        (
            MAC_A,
            GW,
            0x0800,
            ipv4(
                a4,
                b4,
                1,
                3,
                0,
                &[],
                &[8, 0, 0, 0, 0, 1, 0, 1, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5],
            ),
        ),
    ];
    let stacks: [&[(u16, u16)]; 4] = [
        &[],
        &[(0x8100, 7)],
        &[(0x88a8, 7)],
        &[(0x88a8, 1), (0x8100, 7)],
    ];
    let three_tags = [(0x88a8, 1), (0x8100, 2), (0x8100, 7)];
    let (mut fast, mut slow) = (meter(10, 100), meter(10, 100));
    let (mut fast_out, mut slow_out) = (Vec::new(), Vec::new());
    let mut extra_bytes = 0u64;
    // The packets bare, then inside VXLAN (the inner frame under the next stack, the outer one under this stack
    // or three tags, over IPv4 or IPv6 by turns), in the same windows.
    let vxlan = |outer: &[(u16, u16)], inner: Vec<u8>, over_v6: bool| {
        let udp = udp(40_000, VXLAN_PORT, &vxlan_payload(0x08, 77, &inner));
        let (dst, src) = ([0x02, 9, 9, 9, 9, 9], [0x02, 8, 8, 8, 8, 8]);
        if over_v6 {
            frame(
                eth(dst, src, outer, 0x86dd),
                ipv6([0x30; 16], [0x31; 16], 17, &udp),
            )
        } else {
            frame(
                eth(dst, src, outer, 0x0800),
                ipv4([172, 16, 0, 1], [172, 16, 0, 2], 17, 5, 0x4000, &[], &udp),
            )
        }
    };
    let rounds = [false, true].into_iter().flat_map(|in_vxlan| {
        (0u64..)
            .zip(stacks)
            .map(move |(secs, stack)| (secs, stack, in_vxlan))
    });
    for (secs, stack, in_vxlan) in rounds {
        let frames: Vec<(Vec<u8>, Vec<u8>)> = packets
            .iter()
            .map(|(src, dst, ethertype, l3)| {
                if in_vxlan {
                    let inner_stack = stacks[(secs as usize + 1) % stacks.len()];
                    let inner = frame(eth(*dst, *src, inner_stack, *ethertype), l3.clone());
                    let over_v6 = secs % 2 == 1;
                    (
                        vxlan(stack, inner.clone(), over_v6),
                        vxlan(&three_tags, inner, over_v6),
                    )
                } else {
                    (
                        frame(eth(*dst, *src, stack, *ethertype), l3.clone()),
                        frame(eth(*dst, *src, &three_tags, *ethertype), l3.clone()),
                    )
                }
            })
            .collect();
        let (mut fast_burst, mut slow_burst) = (Burst::new(), Burst::new());
        for (f, q) in &frames {
            let read = |f: &[u8]| {
                parse_common(f, f.len()).is_some()
                    || parse_common_tagged(f, f.len()).is_some()
                    || parse_common_v6(f, f.len()).is_some()
                    || parse_common_vxlan(f, f.len()).is_some()
            };
            assert!(read(f), "not of a common shape");
            assert!(!read(q));
            extra_bytes += 2 * (q.len() - f.len()) as u64;
            fast_burst.push(f, f.len(), Action::Accept).unwrap();
            slow_burst.push(q, q.len(), Action::Accept).unwrap();
        }
        fast.account_burst(secs, &fast_burst, &mut fast_out);
        slow.account_burst(secs, &slow_burst, &mut slow_out);
        // And one frame at a time.
        for (f, q) in &frames {
            fast.account(secs, f, f.len(), Action::Reject, &mut fast_out);
            slow.account(secs, q, q.len(), Action::Reject, &mut slow_out);
        }
    }
    fast.flush(&mut fast_out);
    slow.flush(&mut slow_out);
    let lines = record_lines(&fast_out);
    // Seven packets, nine attributions (two are between two ENIs), under four stacks, bare and in VXLAN,
    // accepted and rejected.
    assert_eq!(fast.counters().attributed, 9 * 4 * 2 * 2);
    assert_eq!(fast.counters().vxlan_decapsulated, 7 * 4 * 2);
    assert_eq!(
        lines.iter().filter(|l| l.contains("\"OK\"")).count(),
        9 * 2,
        "{lines:#?}"
    );
    assert_eq!(lines, record_lines(&slow_out));
    let (mut f, s) = (fast.counters().clone(), slow.counters().clone());
    f.frame_bytes += extra_bytes;
    assert_eq!(f, s);
}

/// Windows' records as (start, eni, status, packets, bytes, key text) lines, to compare two meters.
fn record_lines(windows: &[SealedWindow]) -> Vec<String> {
    windows
        .iter()
        .flat_map(records)
        .map(|r| r.to_json(None))
        .collect()
}

#[test]
fn seal_swaps_in_a_spare_table_and_takes_it_back() {
    let mut m = meter(10, 100);
    assert_eq!(m.spare_tables(), 2);
    let mut out = Vec::new();
    for p in 0..20 {
        m.account(0, &tcp_frame(MAC_A, GW, p, 0), 54, Action::Accept, &mut out);
    }
    m.account(0, &udp6_frame(MAC_B, GW, 9), 62, Action::Accept, &mut out);
    assert_eq!(m.counters().table_occupancy, 21);
    m.advance(10, &mut out);
    assert_eq!((out.len(), m.spare_tables()), (1, 1));
    assert!(out[0].holds_table());
    assert_eq!(m.counters().seals_swapped, 1);
    assert_eq!(m.counters().table_occupancy, 0);
    assert_eq!(
        out[0].recorded(),
        &[
            (
                EniSlot(0),
                SkipCounts {
                    packets: 20,
                    bytes: 800
                }
            ),
            (
                EniSlot(1),
                SkipCounts {
                    packets: 1,
                    bytes: 48
                }
            )
        ]
    );
    // The exporter reads the flows, then returns the table.
    let table = out[0].take_table().unwrap();
    assert!(!out[0].holds_table() && table.is_empty());
    assert_eq!(out[0].flows().len(), 21);
    m.recycle_table(table).unwrap();
    assert_eq!(m.spare_tables(), 2);
    assert_eq!(m.counters().tables_recycled, 1);
    // A third table does not fit the pool; a table of another shape is refused.
    let extra = FlowTable::with_seed(100, m.config().hash_seed).unwrap();
    assert!(m.recycle_table(extra).is_err());
    m.account(
        10,
        &tcp_frame(MAC_A, GW, 1, 0),
        54,
        Action::Accept,
        &mut out,
    );
    m.advance(20, &mut out);
    let mut w = out.pop().unwrap();
    let t = w.take_table().unwrap();
    assert!(m.recycle_table(FlowTable::with_capacity(99)).is_err());
    m.recycle_table(t).unwrap();
    // Records read from a window that still holds its table are the same as after taking it.
    m.account(
        20,
        &tcp_frame(MAC_A, GW, 2, 0),
        54,
        Action::Accept,
        &mut out,
    );
    m.flush(&mut out);
    let held = record_lines(&out[1..]);
    let mut taken = out[1].clone();
    assert!(!taken.holds_table());
    assert!(taken.take_table().is_none());
    assert_eq!(record_lines(std::slice::from_ref(&taken)), held);
}

#[test]
fn empty_windows_take_no_table() {
    let mut config = MeterConfig::new(1, 10);
    config.spare_tables = 1;
    config.when_no_spare_table = SpareTableFallback::SkipData;
    let mut m = Meter::new(config, table()).unwrap();
    let mut out = Vec::new();
    m.start(0);
    m.advance(50, &mut out);
    assert_eq!(out.len(), 50);
    assert!(out.iter().all(|w| !w.holds_table() && !w.is_summary()));
    assert_eq!(m.spare_tables(), 1);
}

#[test]
fn without_a_spare_table_the_copy_fallback_keeps_records_exact() {
    let mut reference = meter(10, 50);
    let mut config = MeterConfig::new(10, 50);
    config.spare_tables = 0;
    let mut m = Meter::new(config, table()).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for t in 0..40u64 {
        let f = tcp_frame(MAC_A, MAC_B, (t % 7) as u16, t as usize);
        reference.account(t, &f, f.len(), Action::Accept, &mut a);
        m.account(t, &f, f.len(), Action::Accept, &mut b);
    }
    reference.flush(&mut a);
    m.flush(&mut b);
    assert_eq!(record_lines(&a), record_lines(&b));
    assert!(b.iter().all(|w| !w.holds_table()));
    assert_eq!(m.counters().seals_copied, 4);
    assert_eq!(m.counters().seals_swapped, 0);
}

#[test]
fn without_a_spare_table_the_skipdata_fallback_is_exact() {
    let mut config = MeterConfig::new(10, 50);
    config.spare_tables = 1;
    config.when_no_spare_table = SpareTableFallback::SkipData;
    let mut m = Meter::new(config, table()).unwrap();
    let mut out = Vec::new();
    for t in [0u64, 1, 10, 11, 12, 20] {
        m.account(
            t,
            &tcp_frame(MAC_A, MAC_B, t as u16, 10),
            64,
            Action::Accept,
            &mut out,
        );
    }
    m.flush(&mut out);
    // Window 0 swaps the one spare table out (never returned); windows 10 and 20 find none.
    assert_eq!(
        out.iter()
            .map(|w| (w.start(), w.holds_table(), w.is_summary()))
            .collect::<Vec<_>>(),
        vec![(0, true, false), (10, false, true), (20, false, true)]
    );
    let got = status_counts(&out);
    let w10: Vec<_> = got
        .iter()
        .filter(|r| r.0 == 10)
        .map(|r| (r.1.as_str(), r.2, r.3, r.4))
        .collect();
    assert_eq!(
        w10,
        vec![
            ("eni-00001", LogStatus::SkipData, 3, 150),
            ("eni-00002", LogStatus::SkipData, 3, 150),
            ("eni-00003", LogStatus::NoData, 0, 0),
        ]
    );
    let c = m.counters();
    assert_eq!(
        (c.seals_without_table, c.no_table_packets, c.no_table_bytes),
        (2, 8, 400)
    );
    // The table was cleared and kept: the next window records flows again once a table comes back.
    let t = out[0].take_table().unwrap();
    m.recycle_table(t).unwrap();
    m.account(
        30,
        &tcp_frame(MAC_A, GW, 1, 10),
        64,
        Action::Accept,
        &mut out,
    );
    m.flush(&mut out);
    let last = out.last().unwrap();
    assert!(!last.is_summary());
    assert_eq!(last.flows().len(), 1);
}

#[test]
fn a_refused_window_gives_its_table_back_to_the_pool() {
    let mut config = MeterConfig::new(10, 100);
    config.spare_tables = 1;
    config.when_no_spare_table = SpareTableFallback::SkipData;
    let mut m = Meter::new(config, table()).unwrap();
    let mut sink = Gate {
        open: false,
        got: Vec::new(),
    };
    for t in [0u64, 10, 20] {
        m.account(
            t,
            &tcp_frame(MAC_A, GW, 1, 0),
            54,
            Action::Accept,
            &mut sink,
        );
        assert_eq!(m.spare_tables(), 1, "at {t}");
    }
    assert_eq!(m.pending_windows(), 2);
    assert_eq!(m.counters().seals_without_table, 0);
    sink.open = true;
    m.flush(&mut sink);
    assert_eq!(
        sink.got
            .iter()
            .map(|w| (w.start(), w.is_summary(), w.holds_table()))
            .collect::<Vec<_>>(),
        vec![(0, true, false), (10, true, false), (20, false, true)]
    );
}

#[test]
fn bursts_equal_single_frames() {
    let frames: Vec<(Vec<u8>, Action)> = (0..200u16)
        .map(|i| {
            let (s, d) = match i % 5 {
                0 => (MAC_A, MAC_B),
                1 => (GW, MAC_A),
                2 => (MAC_B, GW),
                3 => (STRANGER, GW),
                _ => ([2, 0, 0, 0xe1, 0, 3], MAC_A),
            };
            let f = match i % 7 {
                0 => udp6_frame(s, d, i % 13),
                1 => frame(eth(d, s, &[], 0x0806), vec![0; 28]),
                2 => tcp_frame(s, d, i % 11, 3)[..30].to_vec(),
                _ => tcp_frame(s, d, i % 17, usize::from(i % 9)),
            };
            let action = if i % 3 == 0 {
                Action::Reject
            } else {
                Action::Accept
            };
            (f, action)
        })
        .collect();
    for capacity in [4, 30, 1000] {
        let mut single = meter(5, capacity);
        let mut bursty = meter(5, capacity);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (n, chunk) in frames.chunks(MAX_BURST - 3).enumerate() {
            let now = n as u64 * 2;
            let mut burst = Burst::new();
            for (f, action) in chunk {
                single.account(now, f, f.len(), *action, &mut a);
                burst.push(f, f.len(), *action).unwrap();
            }
            bursty.account_burst(now, &burst, &mut b);
        }
        bursty.account_burst(1_000, &Burst::new(), &mut b);
        single.flush(&mut a);
        bursty.flush(&mut b);
        assert_eq!(record_lines(&a), record_lines(&b), "capacity {capacity}");
        assert_eq!(single.counters(), bursty.counters(), "capacity {capacity}");
    }
}

#[test]
fn seal_rehearsals_change_nothing_but_their_counter() {
    let frames: Vec<Vec<u8>> = (0..64u16)
        .map(|i| tcp_frame(if i % 2 == 0 { MAC_A } else { GW }, MAC_B, i, 10))
        .collect();
    let mut single = meter(5, 1000);
    let mut bursty = meter(5, 1000);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    // 700 bursts over 14 seconds: windows seal at 5 and 10 while rehearsals run every 256 bursts.
    for n in 0..700u64 {
        let now = n / 50;
        let mut burst = Burst::new();
        for f in frames.iter().skip((n % 32) as usize).take(MAX_BURST) {
            single.account(now, f, f.len(), Action::Accept, &mut a);
            burst.push(f, f.len(), Action::Accept).unwrap();
        }
        bursty.account_burst(now, &burst, &mut b);
    }
    single.flush(&mut a);
    bursty.flush(&mut b);
    assert_eq!(a.len(), 3);
    assert_eq!(record_lines(&a), record_lines(&b));
    assert_eq!(bursty.counters().seal_rehearsals, 2);
    let mut counters = bursty.counters().clone();
    counters.seal_rehearsals = 0;
    assert_eq!(single.counters(), &counters);
}

#[test]
fn cycles_are_accumulated() {
    let mut m = meter(60, 10);
    m.record_cycles(3_200, 32);
    m.record_cycles(1_000, 10);
    assert_eq!(
        (m.counters().cycles, m.counters().cycle_frames),
        (4_200, 42)
    );
}

mod props {
    use super::*;
    use crate::export::WindowMerger;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Frame {
            dt: u64,
            src: usize,
            dst: usize,
            port: u16,
            data: usize,
            reject: bool,
            kind: u8,
        },
        Advance {
            dt: u64,
        },
        Flush,
        Gate(bool),
        /// The exporter takes the tables out of the windows it holds and returns them to the meter.
        ReturnTables,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            20 => (0u64..8, 0usize..5, 0usize..5, 0u16..12, 0usize..300, any::<bool>(), 0u8..11).prop_map(
                |(dt, src, dst, port, data, reject, kind)| Op::Frame { dt, src, dst, port, data, reject, kind }
            ),
            2 => (0u64..40).prop_map(|dt| Op::Advance { dt }),
            1 => Just(Op::Flush),
            2 => any::<bool>().prop_map(Op::Gate),
            2 => Just(Op::ReturnTables),
        ]
    }

    const MACS: [[u8; 6]; 5] = [MAC_A, MAC_B, [2, 0, 0, 0xe1, 0, 3], GW, STRANGER];

    /// What a run of ops produced.
    struct Run {
        windows: Vec<SealedWindow>,
        counters: MeterCounters,
        want_packets: u64,
        want_bytes: u64,
        pending: usize,
    }

    /// Runs `ops` through a meter, one frame at a time or in bursts of consecutive frames with the same time.
    fn run(ops: &[Op], config: &MeterConfig, bursty: bool) -> Run {
        let mut m = Meter::new(config.clone(), table()).unwrap();
        let mut sink = Gate {
            open: true,
            got: Vec::new(),
        };
        let (mut now, mut want_packets, mut want_bytes) = (1_000u64, 0u64, 0u64);
        // Frames of the burst being gathered, with their time.
        let mut gathered: Vec<(u64, Vec<u8>, Action)> = Vec::new();
        fn send(m: &mut Meter, sink: &mut Gate, gathered: &mut Vec<(u64, Vec<u8>, Action)>) {
            let mut burst = Burst::new();
            let Some(&(t, _, _)) = gathered.first() else {
                return;
            };
            for (_, f, action) in gathered.iter() {
                burst.push(f, f.len(), *action).unwrap();
            }
            m.account_burst(t, &burst, sink);
            gathered.clear();
        }
        for op in ops {
            if bursty && !matches!(op, Op::Frame { .. }) {
                send(&mut m, &mut sink, &mut gathered);
            }
            match *op {
                Op::Frame {
                    dt,
                    src,
                    dst,
                    port,
                    data,
                    reject,
                    kind,
                } => {
                    now += dt;
                    let (s, d) = (MACS[src], MACS[dst]);
                    let f = match kind {
                        0 => frame(eth(d, s, &[], 0x0806), vec![0; 28]),
                        1 => tcp_frame(s, d, port, data)[..30].to_vec(),
                        2 => frame(
                            eth(d, s, &[(0x8100, 7)], 0x0800),
                            ipv4(
                                [10, 0, 0, 1],
                                [10, 0, 0, 2],
                                17,
                                port,
                                0,
                                &[],
                                &udp(port, 53, &vec![0; data]),
                            ),
                        ),
                        3 => frame(
                            eth(d, s, &[], 0x0800),
                            ipv4(
                                [10, 0, 0, 1],
                                [10, 0, 0, 2],
                                17,
                                port,
                                0x2000,
                                &[],
                                &udp(port, 53, &vec![0; data]),
                            ),
                        ),
                        4 => frame(
                            eth(d, s, &[], 0x0800),
                            ipv4(
                                [10, 0, 0, 1],
                                [10, 0, 0, 2],
                                17,
                                port,
                                20,
                                &[],
                                &vec![0; data],
                            ),
                        ),
                        5 => udp6_frame(s, d, port),
                        _ => tcp_frame(s, d, port, data),
                    };
                    let attributions = if kind == 0 || kind == 1 {
                        0
                    } else {
                        u64::from(src < 3) + u64::from(dst < 3)
                    };
                    let ip_len = (f.len() - if kind == 2 { 18 } else { 14 }) as u64;
                    want_packets += attributions;
                    want_bytes += attributions * ip_len;
                    let action = if reject {
                        Action::Reject
                    } else {
                        Action::Accept
                    };
                    // Occasionally a frame from the past.
                    let t = if port == 11 {
                        now.saturating_sub(30)
                    } else {
                        now
                    };
                    if bursty {
                        if gathered.len() == MAX_BURST || gathered.first().is_some_and(|g| g.0 != t)
                        {
                            send(&mut m, &mut sink, &mut gathered);
                        }
                        gathered.push((t, f, action));
                    } else {
                        m.account(t, &f, f.len(), action, &mut sink);
                    }
                }
                Op::Advance { dt } => {
                    now += dt;
                    m.advance(now, &mut sink);
                }
                Op::Flush => m.flush(&mut sink),
                Op::Gate(open) => sink.open = open,
                Op::ReturnTables => {
                    for w in &mut sink.got {
                        if let Some(t) = w.take_table() {
                            // A full pool refuses: the exporter frees the table.
                            let _ = m.recycle_table(t);
                        }
                    }
                }
            }
        }
        send(&mut m, &mut sink, &mut gathered);
        sink.open = true;
        m.flush(&mut sink);
        Run {
            windows: sink.got,
            counters: m.counters().clone(),
            want_packets,
            want_bytes,
            pending: m.pending_windows(),
        }
    }

    fn config_strategy() -> impl Strategy<Value = MeterConfig> {
        (1usize..12, 1u32..20, 0usize..3, any::<bool>()).prop_map(
            |(capacity, interval, spares, skip)| {
                let mut config = MeterConfig::new(interval, capacity);
                config.max_pending_windows = 10_000;
                config.spare_tables = spares;
                config.when_no_spare_table = if skip {
                    SpareTableFallback::SkipData
                } else {
                    SpareTableFallback::Copy
                };
                config
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Every attributed packet is counted exactly once across OK and SKIPDATA records (packets and bytes),
        /// whatever the table capacity, seal points, sink refusals, table returns and spare-table fallback; the
        /// frame counters add up; and bursts give exactly what single frames give.
        #[test]
        fn conservation(ops in proptest::collection::vec(op(), 1..300), config in config_strategy()) {
            let single = run(&ops, &config, false);
            let bursty = run(&ops, &config, true);
            for r in [&single, &bursty] {
                prop_assert_eq!(r.pending, 0);
                let c = &r.counters;
                prop_assert_eq!(c.frames, c.non_ip + c.malformed + c.ip_packets);
                prop_assert_eq!(c.attributed, r.want_packets);
                prop_assert_eq!(c.attributed_bytes, r.want_bytes);
                prop_assert_eq!(c.pending_dropped_packets, 0);
                prop_assert_eq!(
                    c.table_full_packets + c.refused_packets + c.no_table_packets
                        + r.windows.iter().map(|w| w.flows().iter().map(|f| f.counts.packets).sum::<u64>()).sum::<u64>(),
                    c.attributed
                );

                // Windows strictly increase; OK + SKIPDATA equals the attributions.
                prop_assert!(r.windows.windows(2).all(|w| w[0].start() < w[1].start()));
                let (mut packets, mut bytes) = (0, 0);
                for w in &r.windows {
                    for rec in records(w) {
                        if rec.log_status != LogStatus::NoData {
                            packets += rec.packets;
                            bytes += rec.bytes;
                        } else {
                            prop_assert_eq!((rec.packets, rec.bytes), (0, 0));
                        }
                    }
                }
                prop_assert_eq!(packets, r.want_packets);
                prop_assert_eq!(bytes, r.want_bytes);
            }
            prop_assert_eq!(record_lines(&single.windows), record_lines(&bursty.windows));
            prop_assert_eq!(&single.counters, &bursty.counters);

            // A one-worker merger passes everything through unchanged.
            let mut merger = WindowMerger::new(1);
            let starts: Vec<u64> = single.windows.iter().map(SealedWindow::start).collect();
            for w in single.windows {
                merger.push(0, w).unwrap();
            }
            merger.finish(0).unwrap();
            let mut merged = Vec::new();
            while let Some(w) = merger.pop() {
                merged.push(w.start());
            }
            prop_assert_eq!(merged, starts);
        }
    }
}
