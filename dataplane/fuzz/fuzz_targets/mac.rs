//! Fuzzes the MAC address text parser (ENI files, the C ABI) (see `bodies::mac`).

#![no_main]

#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|input: &[u8]| bodies::mac(input));
