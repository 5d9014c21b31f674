//! Fuzzes `Meter::account_burst` against frame-by-frame `Meter::account` (see `bodies::bursts`).

#![no_main]

#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let _ = bodies::bursts(input);
});
