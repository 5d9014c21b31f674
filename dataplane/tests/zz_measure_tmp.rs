mod common;
use flowlog_dataplane::export::{records, write_jsonl};
use flowlog_dataplane::flow::{Action, Meter, MeterConfig};
use std::sync::Arc;
use std::time::Instant;
#[test]
fn measure() {
    let dir = common::testdata().join("sample");
    let frames = common::read_pcap(&dir.join("sample.pcap")).unwrap();
    let enis = Arc::new(common::read_enis(&dir.join("sample.enis.toml")).unwrap());
    let passes = 50u64;
    let t = Instant::now();
    let mut n = 0u64;
    for pass in 0..passes {
        for f in &frames {
            if flowlog_dataplane::wire::parse(&f.data, f.orig_len + (pass as usize & 0)).is_ok() {
                n += 1;
            }
        }
    }
    let d = t.elapsed();
    println!(
        "parse only: {:.1} Mpps ({} ok)",
        (passes * frames.len() as u64) as f64 / d.as_secs_f64() / 1e6,
        n
    );
    let mut meter = Meter::new(MeterConfig::new(60, 1 << 20), enis).unwrap();
    let mut sealed = Vec::new();
    let t = Instant::now();
    for pass in 0..passes {
        for f in &frames {
            meter.account(
                f.secs + pass * 240,
                &f.data,
                f.orig_len,
                Action::Accept,
                &mut sealed,
            );
        }
    }
    meter.flush(&mut sealed);
    let d = t.elapsed();
    println!(
        "account: {:.1} Mpps, {:.0} ns/pkt, windows {}",
        (passes * frames.len() as u64) as f64 / d.as_secs_f64() / 1e6,
        d.as_nanos() as f64 / (passes * frames.len() as u64) as f64,
        sealed.len()
    );
    let t = Instant::now();
    let mut out = String::new();
    let mut nrec = 0;
    for w in &sealed {
        let r = records(w);
        nrec += r.len();
        write_jsonl(&r, None, &mut out);
    }
    let d = t.elapsed();
    println!(
        "render: {} records in {:?} ({:.0} ns/record)",
        nrec,
        d,
        d.as_nanos() as f64 / nrec as f64
    );
}
#[test]
fn measure_hot() {
    let dir = common::testdata().join("sample");
    let frames = common::read_pcap(&dir.join("sample.pcap")).unwrap();
    // contiguous copy of the first 256 frames: fits in cache
    let hot: Vec<&common::PcapFrame> = frames.iter().take(256).collect();
    let n = 4_000_000u64;
    let t = Instant::now();
    let mut ok = 0u64;
    for i in 0..n {
        let f = hot[(i % 256) as usize];
        if let Ok(p) = flowlog_dataplane::wire::parse(std::hint::black_box(&f.data), f.orig_len) {
            ok += p.ip_len as u64;
        }
    }
    let d = t.elapsed();
    println!(
        "hot parse: {:.1} ns/pkt ({ok})",
        d.as_nanos() as f64 / n as f64
    );
    let enis = Arc::new(common::read_enis(&dir.join("sample.enis.toml")).unwrap());
    let mut meter = Meter::new(MeterConfig::new(60, 1 << 20), enis).unwrap();
    let mut sealed = Vec::new();
    let t = Instant::now();
    for i in 0..n {
        let f = hot[(i % 256) as usize];
        meter.account(
            1_700_000_000,
            &f.data,
            f.orig_len,
            Action::Accept,
            &mut sealed,
        );
    }
    let d = t.elapsed();
    println!(
        "hot account: {:.1} ns/pkt, flows {}",
        d.as_nanos() as f64 / n as f64,
        meter.open_flows()
    );
}
#[test]
fn sample_counters() {
    let dir = common::testdata().join("sample");
    let frames = common::read_pcap(&dir.join("sample.pcap")).unwrap();
    let enis = Arc::new(common::read_enis(&dir.join("sample.enis.toml")).unwrap());
    let mut meter = Meter::new(MeterConfig::new(60, 1 << 20), enis).unwrap();
    let mut sealed = Vec::new();
    for f in &frames {
        if f.data.len() != f.orig_len { println!("cut capture: {} of {} -> {:?}", f.data.len(), f.orig_len, flowlog_dataplane::wire::parse(&f.data, f.orig_len).map(|p| (p.protocol, p.ip_len))); }
        meter.account(f.secs, &f.data, f.orig_len, Action::Accept, &mut sealed);
    }
    for (n, v) in meter.counters().iter() { if v > 0 { println!("{n} = {v}"); } }
}
