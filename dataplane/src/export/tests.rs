//! Records of windows and the merger with 1, 2 and 3 workers.

use std::sync::Arc;

use super::*;
use crate::flow::{Action, Eni, EniTable, MacAddr, Meter, MeterConfig, SealedWindow};
use crate::wire::tests::{eth, frame, ipv4, tcp};

const GW: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0xe1, 0, n]
}

fn eni(n: u8) -> Eni {
    Eni::new(
        format!("eni-{n:05}"),
        MacAddr(mac(n)),
        format!("i-{n}"),
        "vsw-0",
        "vpc-0",
        "1",
    )
}

fn table(n: u8) -> Arc<EniTable> {
    Arc::new(EniTable::from_enis((1..=n).map(eni)).unwrap())
}

fn tcp_frame(from_eni: u8, sport: u16, data: usize) -> Vec<u8> {
    frame(
        eth(GW, mac(from_eni), &[], 0x0800),
        ipv4(
            [10, 0, 0, from_eni],
            [10, 9, 9, 9],
            6,
            1,
            0,
            &[],
            &tcp(sport, 443, 0x10, data),
        ),
    )
}

/// Runs `frames` (time, eni, port, data) through a fresh meter on `enis`, interval 60, and flushes.
fn worker(enis: &Arc<EniTable>, frames: &[(u64, u8, u16, usize)]) -> Vec<SealedWindow> {
    let mut m = Meter::new(MeterConfig::new(60, 1000), enis.clone()).unwrap();
    let mut out = Vec::new();
    for &(t, e, port, data) in frames {
        let f = tcp_frame(e, port, data);
        m.account(t, &f, f.len(), Action::Accept, &mut out);
    }
    m.flush(&mut out);
    out
}

fn lines(windows: &[SealedWindow]) -> Vec<String> {
    windows
        .iter()
        .flat_map(records)
        .map(|r| r.to_json(None))
        .collect()
}

fn drain(merger: &mut WindowMerger) -> Vec<SealedWindow> {
    std::iter::from_fn(|| merger.pop()).collect()
}

fn summary(windows: &[SealedWindow]) -> Vec<(u64, String, LogStatus, Option<u16>, u64, u64)> {
    windows
        .iter()
        .flat_map(records)
        .map(|r| {
            (
                r.start,
                r.eni.id.to_string(),
                r.log_status,
                r.srcport,
                r.packets,
                r.bytes,
            )
        })
        .collect()
}

#[test]
fn one_worker_passes_through() {
    let enis = table(2);
    let frames = [(0, 1, 1, 0), (70, 2, 1, 0), (200, 1, 1, 0)];
    let expected = lines(&worker(&enis, &frames));
    let mut merger = WindowMerger::new(1);
    for w in worker(&enis, &frames) {
        merger.push(0, w).unwrap();
    }
    // Every window is complete, the last one too: the worker pushed a window starting at or after it.
    let merged = drain(&mut merger);
    assert_eq!(
        merged.iter().map(SealedWindow::start).collect::<Vec<_>>(),
        vec![0, 60, 120, 180]
    );
    assert_eq!(lines(&merged), expected);
    assert!(!merger.is_done());
    merger.finish(0).unwrap();
    assert!(merger.is_done());
}

#[test]
fn two_workers_merge_flows_and_nodata() {
    let enis = table(3);
    // Both see eni 1's port-1 flow; only worker 1 sees eni 2; nobody sees eni 3.
    let a = worker(&enis, &[(10, 1, 1, 10), (20, 1, 2, 0)]);
    let b = worker(&enis, &[(30, 1, 1, 5), (40, 2, 7, 0)]);
    let mut merger = WindowMerger::new(2);
    for w in a {
        merger.push(0, w).unwrap();
    }
    assert!(
        merger.pop().is_none(),
        "worker 1 has not sealed window 0 yet"
    );
    for w in b {
        merger.push(1, w).unwrap();
    }
    let merged = drain(&mut merger);
    assert_eq!(merged.len(), 1);
    assert_eq!(
        summary(&merged),
        vec![
            (0, "eni-00001".into(), LogStatus::Ok, Some(1), 2, 50 + 45),
            (0, "eni-00001".into(), LogStatus::Ok, Some(2), 1, 40),
            (0, "eni-00002".into(), LogStatus::Ok, Some(7), 1, 40),
            (0, "eni-00003".into(), LogStatus::NoData, None, 0, 0),
        ]
    );
    let flow = merged[0]
        .flows()
        .iter()
        .find(|f| f.key.src_port == 1)
        .unwrap();
    assert_eq!(flow.counts.tcp_flags, 0x10);
}

#[test]
fn completion_waits_for_every_worker() {
    let enis = table(1);
    let a = worker(&enis, &[(0, 1, 1, 0), (60, 1, 1, 0), (120, 1, 1, 0)]);
    let b = worker(&enis, &[(0, 1, 2, 0), (60, 1, 2, 0)]);
    let mut merger = WindowMerger::new(2);
    let mut b = b.into_iter();
    for w in a {
        merger.push(0, w).unwrap();
    }
    merger.push(1, b.next().unwrap()).unwrap();
    assert_eq!(
        drain(&mut merger)
            .iter()
            .map(SealedWindow::start)
            .collect::<Vec<_>>(),
        vec![0]
    );
    merger.push(1, b.next().unwrap()).unwrap();
    assert_eq!(
        drain(&mut merger)
            .iter()
            .map(SealedWindow::start)
            .collect::<Vec<_>>(),
        vec![60]
    );
    // Window 120 waits for worker 1 until it is finished.
    assert!(merger.pop().is_none());
    merger.finish(1).unwrap();
    let last = drain(&mut merger);
    assert_eq!(
        last.iter().map(SealedWindow::start).collect::<Vec<_>>(),
        vec![120]
    );
    assert_eq!(last[0].flows().len(), 1);
}

#[test]
fn three_workers_one_starting_late_one_idle() {
    let enis = table(3);
    let a = worker(&enis, &[(0, 1, 1, 0), (60, 1, 1, 0), (130, 1, 1, 0)]);
    let b = worker(&enis, &[(125, 2, 1, 0), (190, 2, 1, 0)]); // first frame in window 120
    let mut merger = WindowMerger::new(3);
    for w in a {
        merger.push(0, w).unwrap();
    }
    assert!(
        merger.pop().is_none(),
        "worker 1 may still start at window 0"
    );
    let mut b = b.into_iter();
    merger.push(1, b.next().unwrap()).unwrap();
    assert!(
        merger.pop().is_none(),
        "worker 2 has pushed nothing and is not finished"
    );
    merger.finish(2).unwrap(); // idle worker: saw nothing
    let first = drain(&mut merger);
    assert_eq!(
        first.iter().map(SealedWindow::start).collect::<Vec<_>>(),
        vec![0, 60, 120]
    );
    merger.push(1, b.next().unwrap()).unwrap();
    merger.finish(0).unwrap();
    merger.finish(1).unwrap();
    let rest = drain(&mut merger);
    assert!(merger.is_done());
    let all: Vec<_> = first.into_iter().chain(rest).collect();
    let got = summary(&all);
    // Window 0 and 60: only eni 1 (worker 0); 120: eni 1 and 2 from two workers; 180: eni 2.
    let ok: Vec<_> = got
        .iter()
        .filter(|r| r.2 == LogStatus::Ok)
        .map(|r| (r.0, r.1.as_str()))
        .collect();
    assert_eq!(
        ok,
        vec![
            (0, "eni-00001"),
            (60, "eni-00001"),
            (120, "eni-00001"),
            (120, "eni-00002"),
            (180, "eni-00002")
        ]
    );
    let nodata = got.iter().filter(|r| r.2 == LogStatus::NoData).count();
    assert_eq!(nodata, 2 + 2 + 1 + 2);
}

#[test]
fn merge_uses_the_newest_table_and_falls_back_to_older_ones() {
    // t2 removed eni 2 and reclaimed its slot (free, not reused); worker 0 runs on t2, worker 1 still on t1
    // and saw eni 2: the merged window takes NODATA from t2 and eni 2's identity from t1.
    let t1 = table(3);
    let mut b = t1.to_builder();
    b.remove("eni-00002", 0).unwrap();
    b.reclaim(1);
    let t2 = Arc::new(b.build());
    let a = worker(&t2, &[(0, 1, 1, 0)]);
    let bw = worker(&t1, &[(0, 2, 1, 0)]);
    let mut merger = WindowMerger::new(2);
    merger.push(0, a.into_iter().next().unwrap()).unwrap();
    merger.push(1, bw.into_iter().next().unwrap()).unwrap();
    let merged = drain(&mut merger);
    assert!(Arc::ptr_eq(merged[0].enis(), &t2));
    let got = summary(&merged);
    let rows: Vec<_> = got.iter().map(|r| (r.1.as_str(), r.2)).collect();
    assert_eq!(
        rows,
        vec![
            ("eni-00001", LogStatus::Ok),
            ("eni-00002", LogStatus::Ok),
            ("eni-00003", LogStatus::NoData)
        ]
    );
}

#[test]
fn merger_refuses_misuse() {
    let enis = table(1);
    let w = worker(&enis, &[(0, 1, 1, 0), (60, 1, 1, 0)]);
    let mut merger = WindowMerger::new(2);
    assert!(matches!(
        merger.push(2, w[0].clone()),
        Err(MergeError::UnknownWorker {
            worker: 2,
            workers: 2
        })
    ));
    merger.push(0, w[1].clone()).unwrap();
    assert!(matches!(
        merger.push(0, w[0].clone()),
        Err(MergeError::OutOfOrder { .. })
    ));
    assert!(matches!(
        merger.push(1, worker(&table(1), &[(70, 1, 1, 0)])[0].clone()),
        Err(MergeError::UnrelatedTables)
    ));
    let mut m = Meter::new(MeterConfig::new(30, 10), enis.clone()).unwrap();
    let mut out = Vec::new();
    m.start(60);
    m.flush(&mut out);
    assert!(matches!(
        merger.push(1, out[0].clone()),
        Err(MergeError::IntervalMismatch {
            start: 60,
            end: 90,
            other: 120
        })
    ));
    merger.finish(1).unwrap();
    assert!(matches!(
        merger.push(1, w[1].clone()),
        Err(MergeError::Finished(1))
    ));
    merger.finish(0).unwrap();
    assert_eq!(drain(&mut merger).len(), 1);
    let mut merger2 = WindowMerger::new(1);
    merger2.push(0, w[1].clone()).unwrap();
    drain(&mut merger2);
    assert!(merger.finish(5).is_err());
}

#[test]
fn records_of_summary_and_order() {
    let enis = table(2);
    let mut windows = worker(&enis, &[(0, 2, 9, 0), (1, 1, 3, 0), (2, 1, 20, 0)]);
    assert!(windows[0].holds_table());
    let (table, flows, moved) = windows[0].summarise();
    assert!(table.is_some_and(|t| t.is_empty()));
    assert!(!windows[0].holds_table());
    assert_eq!((flows.len(), moved.packets, moved.bytes), (0, 3, 120));
    let got = summary(&windows);
    assert_eq!(
        got,
        vec![
            (0, "eni-00001".into(), LogStatus::SkipData, None, 2, 80),
            (0, "eni-00002".into(), LogStatus::SkipData, None, 1, 40),
        ]
    );
    let mut out = String::new();
    write_jsonl(&records(&windows[0]), Some("r1"), &mut out);
    assert_eq!(out.lines().count(), 2);
    assert!(
        out.lines()
            .all(|l| l.contains(r#""region":"r1","type":null}"#))
    );
}
