//! A stable-Rust smoke run of the fuzz targets: the same bodies as `fuzz/fuzz_targets/` (`fuzz/bodies.rs`), over
//! a deterministic corpus of frames from the sample capture, random bytes, and mutations of both (bit flips,
//! interesting bytes, truncations, insertions, splices). A few seconds; CI runs it with the other tests.
//! `FUZZ_SMOKE_SCALE=n` multiplies the iterations (e.g. 20 for a longer local run); deeper fuzzing is
//! `cd dataplane/fuzz && cargo +nightly fuzz run <target>`.

mod common;

#[path = "../fuzz/bodies.rs"]
mod bodies;

use anyhow::Result;
use flowlog_dataplane::flow::MeterCounters;

/// SplitMix64: a deterministic stream of pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Bytes that steer parsers into their branches: EtherTypes and TPIDs, IP versions and IHLs, protocols,
/// the VXLAN port and flag, extension-header numbers, lengths at the edges.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x04, 0x06, 0x08, 0x11, 0x12, 0x2b, 0x2c, 0x33, 0x3a, 0x3c, 0x40, 0x45, 0x46, 0x4f,
    0x60, 0x7f, 0x80, 0x81, 0x84, 0x86, 0x88, 0x91, 0xa8, 0xb5, 0xdd, 0xfe, 0xff,
];

fn scale() -> usize {
    std::env::var("FUZZ_SMOKE_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The sample capture's frames (every parser path it holds: VLAN, QinQ, IPv6, fragments, malformed, ...).
fn seeds() -> Result<Vec<Vec<u8>>> {
    let frames = common::read_pcap(&common::testdata().join("sample").join("sample.pcap"))?;
    Ok(frames.into_iter().map(|f| f.data).collect())
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut f = if rng.below(10) == 0 {
        (0..rng.below(200)).map(|_| rng.byte()).collect()
    } else {
        seeds[rng.below(seeds.len())].clone()
    };
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !f.is_empty() => {
                let i = rng.below(f.len());
                f[i] ^= 1 << rng.below(8);
            }
            1 if !f.is_empty() => {
                let i = rng.below(f.len());
                f[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => f.truncate(rng.below(f.len() + 1)),
            3 => {
                let i = rng.below(f.len() + 1);
                let n = rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
                f.splice(i..i, bytes);
            }
            4 if f.len() > 1 => {
                let i = rng.below(f.len());
                let n = rng.below(f.len() - i);
                f.drain(i..i + n);
            }
            _ => {
                // Splice: the head of this frame, the tail of another (e.g. an outer header + an inner frame).
                let other = &seeds[rng.below(seeds.len())];
                let at = rng.below(f.len() + 1);
                let from = rng.below(other.len() + 1);
                f.truncate(at);
                f.extend_from_slice(&other[from..]);
            }
        }
    }
    f
}

/// A stream input for the meter bodies: a config byte, then records `[control, len, frame]`.
fn stream(rng: &mut Rng, seeds: &[Vec<u8>], frames: usize) -> Vec<u8> {
    let mut input = vec![rng.byte()];
    for _ in 0..frames {
        let mut frame = if rng.below(3) == 0 {
            mutate(rng, seeds)
        } else {
            seeds[rng.below(seeds.len())].clone()
        };
        // Often aim the frame at one of the bodies' ENIs (02:00:00:00:00:0n) as source or destination.
        if frame.len() >= 12 && rng.below(2) == 0 {
            let at = if rng.below(2) == 0 { 0 } else { 6 };
            frame[at..at + 6].copy_from_slice(&[2, 0, 0, 0, 0, rng.below(5) as u8]);
        }
        frame.truncate(255);
        // Mostly small time steps, sometimes a refusal toggle or a burst end.
        let control =
            (rng.byte() & 0xf8) | rng.below(3) as u8 | if rng.below(4) == 0 { 0x08 } else { 0 };
        let control = if rng.below(6) != 0 {
            control & 0x7f
        } else {
            control
        };
        input.push(control);
        input.push(frame.len() as u8);
        input.extend_from_slice(&frame);
    }
    input
}

#[test]
fn parse_survives_mutated_frames() -> Result<()> {
    let seeds = seeds()?;
    let mut rng = Rng(1);
    for seed in &seeds {
        let mut input = vec![0, 0];
        input.extend_from_slice(seed);
        bodies::parse(&input);
    }
    for _ in 0..200_000 * scale() {
        let frame = mutate(&mut rng, &seeds);
        let extra = if rng.below(4) == 0 {
            rng.below(3000)
        } else {
            0
        } as u16;
        let mut input = extra.to_le_bytes().to_vec();
        input.extend_from_slice(&frame);
        bodies::parse(&input);
    }
    Ok(())
}

/// Runs `body` over structured streams and random byte streams; checks the corpus reached every path that
/// matters for conservation (so the run cannot pass by exercising nothing).
fn run_streams(seed: u64, body: fn(&[u8]) -> Option<MeterCounters>) -> Result<()> {
    let seeds = seeds()?;
    let mut rng = Rng(seed);
    let mut total = MeterCounters::default();
    for _ in 0..1_500 * scale() {
        let frames = rng.below(200);
        if let Some(c) = body(&stream(&mut rng, &seeds, frames)) {
            total.add(&c);
        }
    }
    for _ in 0..500 * scale() {
        let input: Vec<u8> = (0..rng.below(2000)).map(|_| rng.byte()).collect();
        if let Some(c) = body(&input) {
            total.add(&c);
        }
    }
    for (name, value) in [
        ("attributed", total.attributed),
        ("malformed", total.malformed),
        ("non_ip", total.non_ip),
        ("table_full_packets", total.table_full_packets),
        ("windows_sealed", total.windows_sealed),
        ("windows_refused", total.windows_refused),
        ("seals_swapped", total.seals_swapped),
        ("seals_copied", total.seals_copied),
        ("seals_without_table", total.seals_without_table),
        ("fragments_first", total.fragments_first),
    ] {
        assert!(value > 0, "the corpus never reached {name}: {total:?}");
    }
    Ok(())
}

#[test]
fn meter_survives_mutated_streams() -> Result<()> {
    run_streams(2, bodies::meter)
}

#[test]
fn bursts_match_single_frames_on_mutated_streams() -> Result<()> {
    run_streams(3, bodies::bursts)
}

#[test]
fn mac_text_round_trips() {
    let mut rng = Rng(4);
    let alphabet = b"0123456789abcdefABCDEF:-xg ";
    for _ in 0..50_000 * scale() {
        let text: Vec<u8> = if rng.below(2) == 0 {
            let mut t = format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                rng.byte(),
                rng.byte(),
                rng.byte(),
                rng.byte(),
                rng.byte(),
                rng.byte()
            )
            .into_bytes();
            let i = rng.below(t.len());
            t[i] = alphabet[rng.below(alphabet.len())];
            t
        } else {
            (0..rng.below(20))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect()
        };
        bodies::mac(&text);
    }
}
