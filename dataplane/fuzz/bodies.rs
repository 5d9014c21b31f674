//! Fuzz bodies shared by the cargo-fuzz targets (`fuzz_targets/`, nightly) and the stable smoke test
//! (`tests/fuzz_smoke.rs`), so both exercise exactly the same checks. Each body takes arbitrary bytes and panics
//! only when an invariant of the dataplane is violated: that panic is the finding.
//!
//! - [`parse`]: any frame and wire length give a packet or a discard; `parse` and `parse_into` agree; a packet's
//!   IP length fits the wire; where a fast path (`parse_common`, `parse_common_tagged`,
//!   `parse_common_v6`, `parse_common_vxlan`) reads a frame, it agrees.
//! - [`meter`]: a stream of frames with times, a small flow table, sink refusals, tables returned or not, both
//!   spare-table fallbacks: every frame is counted once, every attribution once across OK and SKIPDATA.
//! - [`bursts`]: the same stream metered frame by frame and in bursts gives the same records and counters.
//! - [`mac`]: MAC address text that parses prints back to text that parses to the same address.

#![allow(dead_code)]

use std::sync::Arc;

use flowlog_dataplane::export::{LogStatus, records};
use flowlog_dataplane::flow::{
    Action, Burst, Eni, EniTable, MAX_BURST, MacAddr, Meter, MeterConfig, MeterCounters, SealSink,
    SealedWindow, SpareTableFallback,
};
use flowlog_dataplane::wire;

/// `[extra wire length: u16 LE][frame bytes]`.
pub fn parse(input: &[u8]) {
    let (extra, frame) = match input {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => (0, input),
    };
    let wire_len = frame.len() + extra;
    let parsed = wire::parse(frame, wire_len);
    let mut slot = wire::Packet::default();
    let into = wire::parse_into(frame, wire_len, &mut slot);
    match (parsed, into) {
        (Ok(packet), Ok(())) => {
            assert_eq!(packet, slot, "parse and parse_into disagree");
            assert!(
                packet.ip_len as usize <= wire_len,
                "IP length beyond the wire"
            );
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "parse and parse_into disagree"),
        (a, b) => panic!("parse gave {a:?}, parse_into {b:?}"),
    }
    if let Some(common) = wire::parse_common(frame, wire_len) {
        assert_eq!(
            parsed,
            Ok(common.to_packet()),
            "parse_common disagrees with parse"
        );
    }
    if let Some(common) = wire::parse_common_tagged(frame, wire_len) {
        assert_eq!(
            parsed,
            Ok(common.to_packet()),
            "parse_common_tagged disagrees with parse"
        );
    }
    if let Some(packet) = wire::parse_common_v6(frame, wire_len) {
        assert_eq!(parsed, Ok(packet), "parse_common_v6 disagrees with parse");
    }
    if let Some(packet) = wire::parse_common_vxlan(frame, wire_len) {
        assert_eq!(
            parsed,
            Ok(packet),
            "parse_common_vxlan disagrees with parse"
        );
    }
}

/// Any text: a MAC that parses round-trips through its display form.
pub fn mac(input: &[u8]) {
    if let Ok(text) = std::str::from_utf8(input)
        && let Ok(mac) = text.parse::<MacAddr>()
    {
        assert_eq!(mac.to_string().parse::<MacAddr>(), Ok(mac));
    }
}

/// A sink that refuses while `refuse` is set, and keeps what it takes.
struct Flaky {
    refuse: bool,
    got: Vec<SealedWindow>,
}

impl SealSink for Flaky {
    fn seal(&mut self, window: SealedWindow) -> Result<(), SealedWindow> {
        if self.refuse {
            Err(window)
        } else {
            self.got.push(window);
            Ok(())
        }
    }
}

/// Four ENIs with MACs 02:00:00:00:00:0n: frames whose first bytes pick those MACs attribute.
fn enis() -> Arc<EniTable> {
    let enis = (0u8..4).map(|n| {
        Eni::new(
            format!("eni-{n}"),
            MacAddr([2, 0, 0, 0, 0, n]),
            "i",
            "vsw",
            "vpc",
            "acct",
        )
    });
    match EniTable::from_enis(enis) {
        Ok(table) => Arc::new(table),
        Err(error) => panic!("fixed ENI table refused: {error}"),
    }
}

/// A meter configuration chosen by the first input byte: spare tables, fallback, table capacity.
fn config(byte: u8) -> MeterConfig {
    let mut config = MeterConfig::new(5, 1 + usize::from(byte >> 4));
    config.max_pending_windows = usize::MAX;
    // Small: fast to create for every input, and its collisions (evictions) get exercised.
    config.fragment_capacity = 16;
    config.spare_tables = usize::from(byte & 3);
    config.when_no_spare_table = if byte & 4 != 0 {
        SpareTableFallback::SkipData
    } else {
        SpareTableFallback::Copy
    };
    config
}

/// Checks the frame and attribution conservation of a finished run.
fn check_conservation(counters: &MeterCounters, windows: &[SealedWindow]) {
    let c = counters;
    assert_eq!(c.frames, c.non_ip + c.malformed + c.ip_packets);
    assert_eq!(c.pending_dropped_packets, 0);
    let (mut packets, mut bytes) = (0, 0);
    for window in windows {
        for r in records(window) {
            if r.log_status == LogStatus::NoData {
                assert_eq!((r.packets, r.bytes), (0, 0));
            } else {
                packets += r.packets;
                bytes += r.bytes;
            }
        }
    }
    assert_eq!((packets, bytes), (c.attributed, c.attributed_bytes));
    assert!(windows.windows(2).all(|w| w[0].start() < w[1].start()));
}

/// Returns every held table to the meter (a full pool refuses: the table is dropped).
fn return_tables(meter: &mut Meter, windows: &mut [SealedWindow]) {
    for window in windows {
        if let Some(table) = window.take_table() {
            let _ = meter.recycle_table(table);
        }
    }
}

/// `[config][control, len, frame...]*`: control's low 4 bits advance the clock (15: the exporter returns the
/// tables it holds instead), bits 4-5 add wire length, bit 6 is REJECT, bit 7 toggles sink refusal. Returns the
/// meter's final counters (for the smoke test's coverage checks).
pub fn meter(input: &[u8]) -> Option<MeterCounters> {
    let (&first, mut rest) = input.split_first()?;
    let mut meter = Meter::new(config(first), enis()).ok()?;
    let mut sink = Flaky {
        refuse: false,
        got: Vec::new(),
    };
    let mut now = 1_000u64;
    while let [control, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (frame, after) = tail.split_at(len);
        rest = after;
        if control & 0x0f == 0x0f {
            return_tables(&mut meter, &mut sink.got);
        } else {
            now += u64::from(control & 0x0f);
        }
        if control & 0x80 != 0 {
            sink.refuse = !sink.refuse;
        }
        let action = if control & 0x40 != 0 {
            Action::Reject
        } else {
            Action::Accept
        };
        let wire = frame.len() + usize::from(control & 0x30);
        meter.account(now, frame, wire, action, &mut sink);
    }
    sink.refuse = false;
    meter.flush(&mut sink);
    assert_eq!(meter.pending_windows(), 0);
    check_conservation(meter.counters(), &sink.got);
    Some(meter.counters().clone())
}

/// `[config][control, len, frame...]*`: frames join the current burst; control bit 3 (or a full burst) ends it,
/// and only then does the clock advance by bits 0-2; bits 4-5 add wire length, bit 6 is REJECT, bit 7 toggles
/// sink refusal. One meter takes each burst frame by frame, another as a burst: same records, same counters.
/// Returns the counters.
pub fn bursts(input: &[u8]) -> Option<MeterCounters> {
    let (&first, mut rest) = input.split_first()?;
    let mut single = Meter::new(config(first), enis()).ok()?;
    let mut bursty = Meter::new(config(first), enis()).ok()?;
    let mut a = Flaky {
        refuse: false,
        got: Vec::new(),
    };
    let mut b = Flaky {
        refuse: false,
        got: Vec::new(),
    };
    let mut now = 1_000u64;
    let mut burst = Burst::new();
    while let [control, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (frame, after) = tail.split_at(len);
        rest = after;
        if control & 0x80 != 0 && burst.is_empty() {
            a.refuse = !a.refuse;
            b.refuse = a.refuse;
        }
        let action = if control & 0x40 != 0 {
            Action::Reject
        } else {
            Action::Accept
        };
        let wire = frame.len() + usize::from(control & 0x30);
        single.account(now, frame, wire, action, &mut a);
        if burst.push(frame, wire, action).is_err() {
            panic!("a burst is sent before it exceeds {MAX_BURST} frames");
        }
        if control & 0x08 != 0 || burst.is_full() {
            bursty.account_burst(now, &burst, &mut b);
            burst.clear();
            now += u64::from(control & 0x07);
        }
    }
    bursty.account_burst(now, &burst, &mut b);
    a.refuse = false;
    b.refuse = false;
    single.flush(&mut a);
    bursty.flush(&mut b);
    let lines = |windows: &[SealedWindow]| -> Vec<String> {
        windows
            .iter()
            .flat_map(records)
            .map(|r| r.to_json(None))
            .collect()
    };
    assert_eq!(
        lines(&a.got),
        lines(&b.got),
        "bursts and single frames differ"
    );
    assert_eq!(single.counters(), bursty.counters());
    check_conservation(bursty.counters(), &b.got);
    Some(bursty.counters().clone())
}
