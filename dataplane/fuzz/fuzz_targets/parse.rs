//! Fuzzes `wire::parse` / `parse_into` on any bytes and wire length (see `bodies::parse`).

#![no_main]

#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|input: &[u8]| bodies::parse(input));
