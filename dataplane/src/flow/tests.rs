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
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            20 => (0u64..8, 0usize..5, 0usize..5, 0u16..12, 0usize..300, any::<bool>(), 0u8..10).prop_map(
                |(dt, src, dst, port, data, reject, kind)| Op::Frame { dt, src, dst, port, data, reject, kind }
            ),
            2 => (0u64..40).prop_map(|dt| Op::Advance { dt }),
            1 => Just(Op::Flush),
            2 => any::<bool>().prop_map(Op::Gate),
        ]
    }

    const MACS: [[u8; 6]; 5] = [MAC_A, MAC_B, [2, 0, 0, 0xe1, 0, 3], GW, STRANGER];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Every attributed packet is counted exactly once across OK and SKIPDATA records (packets and bytes),
        /// whatever the table capacity, seal points and sink refusals; and the frame counters add up.
        #[test]
        fn conservation(ops in proptest::collection::vec(op(), 1..300), capacity in 1usize..12, interval in 1u32..20) {
            let mut config = MeterConfig::new(interval, capacity);
            config.max_pending_windows = 10_000;
            let mut m = Meter::new(config, table()).unwrap();
            let mut sink = Gate { open: true, got: Vec::new() };
            let (mut now, mut want_packets, mut want_bytes) = (1_000u64, 0u64, 0u64);
            for op in ops {
                match op {
                    Op::Frame { dt, src, dst, port, data, reject, kind } => {
                        now += dt;
                        let (s, d) = (MACS[src], MACS[dst]);
                        let f = match kind {
                            0 => frame(eth(d, s, &[], 0x0806), vec![0; 28]),
                            1 => tcp_frame(s, d, port, data)[..30].to_vec(),
                            2 => frame(eth(d, s, &[(0x8100, 7)], 0x0800), ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, port, 0, &[], &udp(port, 53, &vec![0; data]))),
                            3 => frame(eth(d, s, &[], 0x0800), ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, port, 0x2000, &[], &udp(port, 53, &vec![0; data]))),
                            4 => frame(eth(d, s, &[], 0x0800), ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, port, 20, &[], &vec![0; data])),
                            _ => tcp_frame(s, d, port, data),
                        };
                        let attributions = if kind == 0 || kind == 1 { 0 } else {
                            u64::from(src < 3) + u64::from(dst < 3)
                        };
                        let ip_len = (f.len() - if kind == 2 { 18 } else { 14 }) as u64;
                        want_packets += attributions;
                        want_bytes += attributions * ip_len;
                        let action = if reject { Action::Reject } else { Action::Accept };
                        // Occasionally a frame from the past.
                        let t = if port == 11 { now.saturating_sub(30) } else { now };
                        m.account(t, &f, f.len(), action, &mut sink);
                    }
                    Op::Advance { dt } => {
                        now += dt;
                        m.advance(now, &mut sink);
                    }
                    Op::Flush => m.flush(&mut sink),
                    Op::Gate(open) => sink.open = open,
                }
            }
            sink.open = true;
            m.flush(&mut sink);
            prop_assert_eq!(m.pending_windows(), 0);

            let c = m.counters().clone();
            prop_assert_eq!(c.frames, c.non_ip + c.malformed + c.ip_packets);
            prop_assert_eq!(c.attributed, want_packets);
            prop_assert_eq!(c.attributed_bytes, want_bytes);
            prop_assert_eq!(c.pending_dropped_packets, 0);

            // Windows strictly increase; OK + SKIPDATA equals the attributions.
            prop_assert!(sink.got.windows(2).all(|w| w[0].start() < w[1].start()));
            let (mut packets, mut bytes) = (0, 0);
            for w in &sink.got {
                for r in records(w) {
                    if r.log_status != LogStatus::NoData {
                        packets += r.packets;
                        bytes += r.bytes;
                    } else {
                        prop_assert_eq!((r.packets, r.bytes), (0, 0));
                    }
                }
            }
            prop_assert_eq!(packets, want_packets);
            prop_assert_eq!(bytes, want_bytes);

            // A one-worker merger passes everything through unchanged.
            let mut merger = WindowMerger::new(1);
            let starts: Vec<u64> = sink.got.iter().map(SealedWindow::start).collect();
            for w in sink.got {
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
