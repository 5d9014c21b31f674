//! Fuzzes `wire::parse`: any bytes and any wire length must give a packet or a discard, never a panic, and a
//! packet's IP length must fit the wire.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The first two bytes pick extra wire length beyond the captured bytes (a cut capture).
    let (extra, frame) = match input {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => (0, input),
    };
    let wire_len = frame.len() + extra;
    if let Ok(packet) = flowlog_dataplane::wire::parse(frame, wire_len) {
        assert!(packet.ip_len as usize <= wire_len);
    }
});
