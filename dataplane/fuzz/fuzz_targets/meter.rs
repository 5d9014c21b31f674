//! Fuzzes the meter end to end: a stream of frames with times, small flow table, sink refusals. Checks the
//! invariants: no panic; every frame counted once (non-IP + malformed + IP); every attribution counted once
//! across OK and SKIPDATA records.

#![no_main]

use std::sync::Arc;

use flowlog_dataplane::export::{LogStatus, records};
use flowlog_dataplane::flow::{
    Action, Eni, EniTable, MacAddr, Meter, MeterConfig, SealSink, SealedWindow,
};
use libfuzzer_sys::fuzz_target;

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

fuzz_target!(|input: &[u8]| {
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
    let Ok(table) = EniTable::from_enis(enis) else {
        return;
    };
    let mut config = MeterConfig::new(5, 8);
    config.max_pending_windows = usize::MAX;
    let Ok(mut meter) = Meter::new(config, Arc::new(table)) else {
        return;
    };
    let mut sink = Flaky {
        refuse: false,
        got: Vec::new(),
    };
    let mut now = 1_000u64;
    let mut rest = input;
    // Each record: [control, len, frame bytes...]: control's low bits advance the clock, bit 7 toggles refusal.
    while let [control, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (frame, after) = tail.split_at(len);
        rest = after;
        now += u64::from(control & 0x0f);
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
    let c = meter.counters();
    assert_eq!(c.frames, c.non_ip + c.malformed + c.ip_packets);
    let (mut packets, mut bytes) = (0, 0);
    for window in &sink.got {
        for r in records(window) {
            if r.log_status != LogStatus::NoData {
                packets += r.packets;
                bytes += r.bytes;
            }
        }
    }
    assert_eq!((packets, bytes), (c.attributed, c.attributed_bytes));
});
