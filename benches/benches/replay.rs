//! Replay throughput next to the time it takes merely to read the same pcap (the floor any replay pays), and
//! the meter alone on frames already in memory. One run measures all three on the same generated capture.
//!
//! `cargo bench -p flowlog-benches --bench replay` (env `REPLAY_PACKETS`, default 2,000,000).

use std::sync::Arc;

use flowlog_benches::{measure, print_machine, report_line};
use flowlog_dataplane::flow::{Action, Meter, MeterConfig, SealedWindow};
use flowlog_vswitch::config::load_enis;
use flowlog_vswitch::pcap::PcapReader;
use flowlog_vswitch::replay::{ReplayArgs, run};

fn main() -> anyhow::Result<()> {
    let packets: u64 = std::env::var("REPLAY_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir()?;
    let config = flowlog_trafficgen::GenConfig::new(42, packets, 60);
    let summary = flowlog_trafficgen::generate(&config, dir.path())?;
    let pcap = dir.path().join("capture.pcap");
    let size = std::fs::metadata(&pcap)?.len();
    print_machine();
    println!(
        "capture: {} frames, {:.1} MB, {} expected records (seed 42, interval 60)",
        summary.frames,
        size as f64 / 1e6,
        summary.records.ok + summary.records.nodata
    );

    // Baseline: read every record of the pcap (page cache warm after the first run) and touch its bytes.
    let (read_best, read_median) = measure(5, || {
        let mut reader = PcapReader::open(&pcap).expect("open capture");
        let mut sum = 0u64;
        while let Some(p) = reader.next_packet().expect("read capture") {
            sum = sum.wrapping_add(u64::from(p.data[p.data.len() / 2]));
        }
        sum
    });

    // The whole replay: read, meter, seal, render JSON, write (to /dev/null).
    let args = ReplayArgs {
        pcap: pcap.clone(),
        enis: dir.path().join("enis.toml"),
        interval: 60,
        collector: None,
        project: None,
        logstore: None,
        output: Some("/dev/null".into()),
        region: None,
        flow_capacity: 1 << 20,
        stats: false,
    };
    let (replay_best, replay_median) = measure(5, || run(&args).expect("replay"));

    // The meter alone, on frames already in memory (one contiguous buffer, as a NIC's RX ring would be).
    let mut bytes = Vec::with_capacity(size as usize);
    let mut frames = Vec::with_capacity(packets as usize);
    let mut reader = PcapReader::open(&pcap)?;
    while let Some(p) = reader.next_packet()? {
        frames.push((
            p.timestamp_ns / 1_000_000_000,
            bytes.len(),
            p.data.len(),
            p.wire_len as usize,
        ));
        bytes.extend_from_slice(p.data);
    }
    let table = Arc::new(flowlog_dataplane::flow::EniTable::from_enis(load_enis(
        &args.enis,
    )?)?);
    let (meter_best, meter_median) = measure(5, || {
        let mut meter = Meter::new(MeterConfig::new(60, 1 << 20), table.clone()).expect("meter");
        let mut sealed: Vec<SealedWindow> = Vec::new();
        for &(secs, at, len, wire_len) in &frames {
            meter.account(
                secs,
                &bytes[at..at + len],
                wire_len,
                Action::Accept,
                &mut sealed,
            );
        }
        meter.flush(&mut sealed);
        sealed.len()
    });

    println!("best of 5 (median in brackets):");
    report_line("read pcap only (baseline)", packets, read_best);
    report_line(
        "flowlog replay (read + meter + export)",
        packets,
        replay_best,
    );
    report_line("meter only (frames in memory)", packets, meter_best);
    println!(
        "  medians: read {:.3} s, replay {:.3} s, meter {:.3} s; replay costs {:.2}x the bare read",
        read_median.as_secs_f64(),
        replay_median.as_secs_f64(),
        meter_median.as_secs_f64(),
        replay_best.as_secs_f64() / read_best.as_secs_f64()
    );
    Ok(())
}
