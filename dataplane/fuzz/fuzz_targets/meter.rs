//! Fuzzes the meter end to end: frames with times, refusals, returned tables, spare-table fallbacks (see `bodies::meter`).

#![no_main]

#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let _ = bodies::meter(input);
});
