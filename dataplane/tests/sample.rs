//! The independent sample capture (`testdata/sample/`) must give `sample.expected-60s.jsonl` byte for byte.

mod common;

use std::sync::Arc;

use anyhow::Result;
use flowlog_dataplane::export::{records, write_jsonl};
use flowlog_dataplane::flow::{Action, Meter, MeterConfig};

#[test]
fn sample_capture_reproduces_expected_records() -> Result<()> {
    let dir = common::testdata().join("sample");
    let frames = common::read_pcap(&dir.join("sample.pcap"))?;
    let enis = common::read_enis(&dir.join("sample.enis.toml"))?;
    let expected = std::fs::read_to_string(dir.join("sample.expected-60s.jsonl"))?;

    let mut meter = Meter::new(MeterConfig::new(60, 1 << 16), Arc::new(enis))?;
    let mut sealed = Vec::new();
    for frame in &frames {
        meter.account(
            frame.secs,
            &frame.data,
            frame.orig_len,
            Action::Accept,
            &mut sealed,
        );
    }
    meter.flush(&mut sealed);

    let mut actual = String::new();
    for window in &sealed {
        write_jsonl(&records(window), None, &mut actual);
    }
    if actual != expected {
        let (a, e): (Vec<_>, Vec<_>) = (actual.lines().collect(), expected.lines().collect());
        let first = a
            .iter()
            .zip(&e)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(e.len()));
        panic!(
            "records differ: {} lines vs {} expected; first difference at line {}:\n  got:      {}\n  expected: {}\ncounters: {:?}",
            a.len(),
            e.len(),
            first + 1,
            a.get(first).unwrap_or(&"<none>"),
            e.get(first).unwrap_or(&"<none>"),
            meter.counters()
        );
    }

    let c = meter.counters();
    assert_eq!(c.frames, 20_013);
    assert_eq!(c.malformed, 9, "{c:?}");
    assert_eq!(c.non_ip, 4, "{c:?}");
    assert_eq!(c.late, 0);
    assert_eq!(c.table_full_packets, 0);
    assert_eq!(c.frames, c.non_ip + c.malformed + c.ip_packets);
    Ok(())
}
