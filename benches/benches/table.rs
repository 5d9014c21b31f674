//! The per-worker flow table alone next to std `HashMap` on the same keys (updates, a new-flow storm into an empty
//! table, and the same storm once the table is full, every key refused), the meter on frame bursts in memory
//! (bare and inside VXLAN), the worker's pause at a seal, and what a seal leaves behind (the window's first
//! packets, each flow inserted again, against the later ones). Every figure has its baseline measured in the same
//! run.
//!
//! `cargo bench -p flowlog-benches --bench table`. Environment (all optional):
//! - `TABLE_SIZES`: active flows of the table runs, comma-separated (default `1000,100000,1000000,4000000`);
//! - `TABLE_PACKETS`: packets per timed run (default 2,000,000);
//! - `TABLE_RUNS`: timed runs, the best is reported (default 3);
//! - `METER_FLOWS`: flows of the meter runs (default `10000,1000000`).
//!
//! Cycles are ns x the nominal clock from /proc/cpuinfo, as in the other benchmarks. Times are the bench thread's
//! on-CPU time (`CLOCK_THREAD_CPUTIME_ID`, where the kernel provides it; wall time otherwise), best of the runs:
//! on a machine shared with other work, wall time mostly measures the neighbours.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use flowlog_benches::{
    SYNTHETIC_ENIS, VXLAN_HEADERS, cpu, measure_on_cpu as measure, print_machine, report_line,
    synthetic_eni_mac, synthetic_eni_table, vxlan_header,
};
use flowlog_dataplane::flow::{
    Action, Burst, Direction, EniSlot, FlowCounts, FlowKey, FlowTable, FlowUpdate,
    IPV4_BYTES_PER_FLOW, IPV4_ENTRY_BYTES, IPV6_BYTES_PER_FLOW, IPV6_ENTRY_BYTES, MAX_BURST, Meter,
    MeterConfig, SealedWindow,
};
use flowlog_dataplane::wire::{Family, v4_mapped};
use flowlog_vswitch::dpdk::{pin_current_thread, unpin_current_thread};

fn main() -> anyhow::Result<()> {
    let sizes = env_list("TABLE_SIZES", &[1_000, 100_000, 1_000_000, 4_000_000]);
    let packets = env_list("TABLE_PACKETS", &[2_000_000])[0];
    let runs = env_list("TABLE_RUNS", &[3])[0];
    let meter_flows = env_list("METER_FLOWS", &[10_000, 1_000_000]);
    let ghz = cpu().1.unwrap_or(2.6);
    print_machine();
    memory_figures();

    println!(
        "\n(a) the table alone: {packets} packets per run, best of {runs}; 'ours' = FlowTable::update_burst in \
         bursts of {MAX_BURST} (hashing included); 'std' = HashMap<FlowKey, FlowCounts> (SipHash-1-3); \
         'std+fold' = the same HashMap with a multiply-fold hasher"
    );
    for &n in &sizes {
        table_runs(n, packets, runs, ghz);
    }

    println!(
        "\n(b) the meter on 64-byte IPv4 TCP frames in memory ({SYNTHETIC_ENIS} ENIs, one attribution per packet), \
         {packets} packets, best of {runs}, and on the same frames inside VXLAN over IPv4 (114 bytes) (the \
         whole worker against its receive-and-free floor, both measured in one run, is benches/worker.rs)"
    );
    for &n in &meter_flows {
        meter_runs(n, packets, runs)?;
    }

    println!(
        "\n(c) the worker's pause at a seal (Meter::advance across a window boundary), {SYNTHETIC_ENIS} ENIs"
    );
    for &n in &meter_flows {
        seal_pause(n)?;
    }

    println!(
        "\n(d) what a seal leaves behind: the meter's first pass over every flow after a seal (each flow inserted \
         again into a recycled table) against its later passes (updates), {AFTER_SEAL_PASSES} passes per window, \
         an exporter thread on the other CPU reading each sealed window and handing its table back; each pass \
         timed by the wall clock"
    );
    for &n in &meter_flows {
        after_seal(n, ghz)?;
    }
    Ok(())
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|x| x.trim().parse().ok())
                .collect::<Vec<usize>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn memory_figures() {
    let t = FlowTable::with_capacity(1 << 20);
    println!(
        "table memory: IPv4 flow {IPV4_ENTRY_BYTES} B entry + {:.1} B index = {IPV4_BYTES_PER_FLOW:.1} B; \
         IPv6 flow {IPV6_ENTRY_BYTES} B entry + {:.1} B index = {IPV6_BYTES_PER_FLOW:.1} B; measured: a table of \
         2^20 units takes {:.1} MB = {:.1} B per IPv4 flow",
        IPV4_BYTES_PER_FLOW - IPV4_ENTRY_BYTES as f64,
        IPV6_BYTES_PER_FLOW - IPV6_ENTRY_BYTES as f64,
        t.memory_bytes() as f64 / 1e6,
        t.memory_bytes() as f64 / t.capacity() as f64
    );
    println!(
        "std HashMap<FlowKey, FlowCounts> of 2^20 flows: {} B per slot x 2^21 slots (7/8 load) + control bytes \
         = {:.1} B per flow",
        size_of::<(FlowKey, FlowCounts)>(),
        ((size_of::<(FlowKey, FlowCounts)>() + 1) << 21) as f64 / (1u64 << 20) as f64
    );
}

/// A small deterministic generator (SplitMix64).
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
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` distinct IPv4 TCP flow keys of ENI slots 0..SYNTHETIC_ENIS.
fn flow_keys(n: usize, seed: u64) -> Vec<FlowKey> {
    let mut rng = Rng(seed);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    while keys.len() < n {
        let r = rng.next();
        let key = FlowKey {
            src: v4_mapped([10, (r >> 8) as u8, (r >> 16) as u8, (r >> 24) as u8]),
            dst: v4_mapped([172, 16, (r >> 32) as u8, (r >> 40) as u8]),
            eni: EniSlot((keys.len() % SYNTHETIC_ENIS as usize) as u32),
            src_port: (r >> 48) as u16,
            dst_port: 443,
            protocol: 6,
            direction: Direction::Out,
            action: Action::Accept,
            family: Family::V4,
        };
        if seen.insert(key) {
            keys.push(key);
        }
    }
    keys
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Popularity {
    Uniform,
    Zipf,
}

/// Indices into `n` flows for `packets` packets: uniform, or Zipf (s = 1) over a random ranking of the flows.
fn popularity(n: usize, packets: usize, p: Popularity, seed: u64) -> Vec<u32> {
    let mut rng = Rng(seed);
    match p {
        Popularity::Uniform => (0..packets).map(|_| rng.below(n) as u32).collect(),
        Popularity::Zipf => {
            let mut cumulative = Vec::with_capacity(n);
            let mut sum = 0.0;
            for rank in 1..=n {
                sum += 1.0 / rank as f64;
                cumulative.push(sum);
            }
            let mut ranking: Vec<u32> = (0..n as u32).collect();
            for i in (1..n).rev() {
                ranking.swap(i, rng.below(i + 1));
            }
            (0..packets)
                .map(|_| {
                    let x = rng.unit() * sum;
                    let rank = cumulative.partition_point(|&c| c < x).min(n - 1);
                    ranking[rank]
                })
                .collect()
        }
    }
}

/// A multiply-fold hasher for the std HashMap comparison (what hashbrown's default foldhash does).
#[derive(Clone, Copy, Default)]
struct Fold;

struct FoldHasher(u64);

impl BuildHasher for Fold {
    type Hasher = FoldHasher;
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher(0x243f_6a88_85a3_08d3)
    }
}

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        let p = u128::from(self.0 ^ i) * 0x5851_f42d_4c95_7f2d_u128;
        self.0 = (p as u64) ^ ((p >> 64) as u64);
    }
}

/// Updates the flows of `stream` in bursts: hash, then `update_burst`.
fn ours_burst(table: &mut FlowTable, stream: &[FlowKey]) -> u64 {
    let mut counted = 0u64;
    let mut updates = [FlowUpdate::new(table.key(&stream[0]), 0, 0); MAX_BURST];
    for chunk in stream.chunks(MAX_BURST) {
        for (u, k) in updates.iter_mut().zip(chunk) {
            *u = FlowUpdate::new(table.key(k), 64, 0x10);
        }
        let burst = &mut updates[..chunk.len()];
        table.update_burst(burst);
        counted += burst.iter().filter(|u| u.outcome().is_counted()).count() as u64;
    }
    counted
}

fn ours_single(table: &mut FlowTable, stream: &[FlowKey]) -> u64 {
    stream
        .iter()
        .map(|k| u64::from(table.add(k, 64, 0x10)))
        .sum()
}

fn std_update<S: BuildHasher>(
    map: &mut HashMap<FlowKey, FlowCounts, S>,
    stream: &[FlowKey],
) -> u64 {
    for k in stream {
        let c = map.entry(*k).or_default();
        c.packets += 1;
        c.bytes += 64;
        c.tcp_flags |= 0x10;
    }
    map.len() as u64
}

fn table_runs(n: usize, packets: usize, runs: usize, ghz: f64) {
    let keys = flow_keys(n, n as u64);
    let packets_u64 = packets as u64;
    println!("  {n} flows:");
    for p in [Popularity::Uniform, Popularity::Zipf] {
        let name = if p == Popularity::Uniform {
            "uniform"
        } else {
            "zipf"
        };
        let stream: Vec<FlowKey> = popularity(n, packets, p, 7)
            .into_iter()
            .map(|i| keys[i as usize])
            .collect();
        let mut table = FlowTable::with_capacity(n);
        ours_burst(&mut table, &keys);
        let (ours, _) = measure(runs, || ours_burst(&mut table, &stream));
        let (single, _) = measure(runs, || ours_single(&mut table, &stream));
        drop(table);
        let mut map: HashMap<FlowKey, FlowCounts> = HashMap::with_capacity(n);
        std_update(&mut map, &keys);
        let (sip, _) = measure(runs, || std_update(&mut map, &stream));
        drop(map);
        let mut map: HashMap<FlowKey, FlowCounts, Fold> =
            HashMap::with_capacity_and_hasher(n, Fold);
        std_update(&mut map, &keys);
        let (fold, _) = measure(runs, || std_update(&mut map, &stream));
        drop(map);
        report_line(&format!("{name} updates, ours (burst)"), packets_u64, ours);
        report_line(
            &format!("{name} updates, ours (one at a time)"),
            packets_u64,
            single,
        );
        report_line(&format!("{name} updates, std"), packets_u64, sip);
        report_line(&format!("{name} updates, std+fold"), packets_u64, fold);
        println!(
            "    -> ours (burst) does {:.1}x the updates/s of std, {:.1}x std+fold ({:.0} vs {:.0} cycles/packet)",
            sip.as_secs_f64() / ours.as_secs_f64(),
            fold.as_secs_f64() / ours.as_secs_f64(),
            ns_per(ours, packets_u64) * ghz,
            ns_per(sip, packets_u64) * ghz,
        );
    }
    // New-flow storm: every packet a new flow into an empty table (capacity n), a pre-sized HashMap likewise.
    let storm = keys.len() as u64;
    let mut table = FlowTable::with_capacity(n);
    let (ours, _) = measure(runs, || {
        table.clear();
        ours_burst(&mut table, &keys)
    });
    drop(table);
    let mut map: HashMap<FlowKey, FlowCounts> = HashMap::with_capacity(n);
    let (sip, _) = measure(runs, || {
        map.clear();
        std_update(&mut map, &keys)
    });
    drop(map);
    let mut map: HashMap<FlowKey, FlowCounts, Fold> = HashMap::with_capacity_and_hasher(n, Fold);
    let (fold, _) = measure(runs, || {
        map.clear();
        std_update(&mut map, &keys)
    });
    drop(map);
    report_line("new-flow storm, ours (burst)", storm, ours);
    report_line("new-flow storm, std (pre-sized)", storm, sip);
    report_line("new-flow storm, std+fold (pre-sized)", storm, fold);
    println!(
        "    -> storm: ours {:.1}x std, {:.1}x std+fold",
        sip.as_secs_f64() / ours.as_secs_f64(),
        fold.as_secs_f64() / ours.as_secs_f64()
    );
    // The storm once the table is full (a scan or a flood after a window's table filled up): every key is
    // looked up and refused (the meter counts it as SKIPDATA), changing nothing. Next to it, std's lookups of
    // the same absent keys. The keys go round until a run has `packets` of them: a full table stays full, and a
    // run of a few milliseconds would measure the scheduler's tick.
    let strangers = flow_keys(n, n as u64 + 1);
    let rounds = packets.div_ceil(n).max(1);
    let refusals = (rounds * n) as u64;
    let mut table = FlowTable::with_capacity(n);
    ours_burst(&mut table, &keys);
    let mut counted = 0;
    let (full, _) = measure(runs, || {
        counted = (0..rounds)
            .map(|_| ours_burst(&mut table, &strangers))
            .sum::<u64>();
        counted
    });
    drop(table);
    let mut map: HashMap<FlowKey, FlowCounts> = HashMap::with_capacity(n);
    std_update(&mut map, &keys);
    let (absent, _) = measure(runs, || {
        (0..rounds)
            .map(|_| strangers.iter().filter(|k| map.contains_key(k)).count())
            .sum::<usize>()
    });
    drop(map);
    report_line("new-flow storm into a full table, ours", refusals, full);
    report_line("the same keys looked up in std (absent)", refusals, absent);
    println!(
        "    -> full: {} of {refusals} new flows refused, {:.0} cycles/packet against {:.0} for inserting them \
         into an empty table",
        refusals - counted,
        ns_per(full, refusals) * ghz,
        ns_per(ours, storm) * ghz,
    );
}

fn ns_per(time: Duration, packets: u64) -> f64 {
    time.as_secs_f64() * 1e9 / packets as f64
}

/// 64-byte Ethernet + IPv4 + TCP frames of `n` flows (each flow from its ENI to the gateway): every flow once in
/// a random order, then uniformly random flows up to `packets`.
fn frames(n: usize, packets: usize) -> Vec<u8> {
    let keys = flow_keys(n, 99);
    let mut rng = Rng(5);
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order.extend(popularity(
        n,
        packets.saturating_sub(n),
        Popularity::Uniform,
        3,
    ));
    let mut bytes = Vec::with_capacity(packets * 64);
    for i in order {
        let k = &keys[i as usize];
        let mut f = [0u8; 64];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xfe]);
        f[6..12].copy_from_slice(&synthetic_eni_mac(k.eni.0).0);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&46u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&k.src[12..]);
        ip[16..20].copy_from_slice(&k.dst[12..]);
        let tcp = &mut f[34..54];
        tcp[0..2].copy_from_slice(&k.src_port.to_be_bytes());
        tcp[2..4].copy_from_slice(&k.dst_port.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x10;
        bytes.extend_from_slice(&f);
    }
    bytes
}

/// The 64-byte frames of [`frames`], each inside VXLAN over IPv4 (114 bytes).
fn vxlan_frames(bare: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(bare.len() / 64 * (64 + VXLAN_HEADERS));
    for inner in bare.chunks(64) {
        bytes.extend_from_slice(&vxlan_header(inner.len())?);
        bytes.extend_from_slice(inner);
    }
    Ok(bytes)
}

fn meter_config(flows: usize) -> MeterConfig {
    // Table capacity: the flows plus 1/8 headroom (a table sized for its peak, as a deployment would).
    MeterConfig::new(60, flows + flows / 8)
}

fn meter_runs(n: usize, packets: usize, runs: usize) -> anyhow::Result<()> {
    let enis = synthetic_eni_table()?;
    let bytes = frames(n, packets);
    let count = packets as u64;
    let mut meter = Meter::new(meter_config(n), enis.clone())?;
    let mut sealed: Vec<SealedWindow> = Vec::new();
    let burst_run =
        |meter: &mut Meter, sealed: &mut Vec<SealedWindow>, bytes: &[u8], size: usize| {
            for chunk in bytes.chunks(size * MAX_BURST) {
                let mut burst = Burst::new();
                for f in chunk.chunks(size) {
                    // At most MAX_BURST frames per chunk.
                    let _ = burst.push(f, size, Action::Accept);
                }
                meter.account_burst(1_000, &burst, sealed);
            }
        };
    // Warm-up fills the table with every flow of the run, so the timed runs are updates at n active flows.
    burst_run(&mut meter, &mut sealed, &bytes, 64);
    let (burst, _) = measure(runs, || burst_run(&mut meter, &mut sealed, &bytes, 64));
    // The same packets inside VXLAN: the same flows (the inner frames'), so still updates.
    let overlay = vxlan_frames(&bytes)?;
    let size = 64 + VXLAN_HEADERS;
    let bare_frames = meter.counters().frames;
    let (vxlan, _) = measure(runs, || burst_run(&mut meter, &mut sealed, &overlay, size));
    assert_eq!(meter.open_flows(), n, "the inner frames are the same flows");
    let c = meter.counters();
    assert_eq!(
        c.vxlan_decapsulated,
        c.frames - bare_frames,
        "every VXLAN frame decapsulated"
    );
    let (single, _) = measure(runs, || {
        for f in bytes.chunks(64) {
            meter.account(1_000, f, 64, Action::Accept, &mut sealed);
        }
    });
    let c = meter.counters();
    assert_eq!(c.table_full_packets, 0, "the table must hold every flow");
    assert_eq!(c.attributed, c.frames, "one attribution per frame");
    assert_eq!(meter.open_flows(), n);
    // The floor: read each frame's first byte, in bursts, as a receive-and-free loop that touches the data.
    let (floor, _) = measure(runs, || {
        let mut sum = 0u64;
        for chunk in bytes.chunks(64 * MAX_BURST) {
            for f in chunk.chunks(64) {
                sum = sum.wrapping_add(u64::from(f[0]));
            }
        }
        sum
    });
    println!("  {n} flows:");
    report_line("meter, account_burst", count, burst);
    report_line(
        "meter, account_burst, the frames inside VXLAN",
        count,
        vxlan,
    );
    report_line("meter, account (one frame at a time)", count, single);
    report_line("touch each frame only (in-memory floor)", count, floor);
    Ok(())
}

fn seal_pause(n: usize) -> anyhow::Result<()> {
    let enis = synthetic_eni_table()?;
    let bytes = frames(n, n);
    let bursts = bursts_of(&bytes);
    let reps = if n >= 1_000_000 { 24 } else { 200 };
    let mut sealed: Vec<SealedWindow> = Vec::with_capacity(4);
    let mut pauses = Vec::with_capacity(reps);
    let mut warm_pauses = Vec::with_capacity(reps);
    let mut code_warm_pauses = Vec::with_capacity(reps);
    let mut copies = Vec::new();
    let mut summaries = Vec::new();
    for mode in 0..3 {
        let mut config = meter_config(n);
        if mode > 0 {
            // No spare table: the fallbacks.
            config.spare_tables = 0;
            config.when_no_spare_table = if mode == 1 {
                flowlog_dataplane::flow::SpareTableFallback::Copy
            } else {
                flowlog_dataplane::flow::SpareTableFallback::SkipData
            };
        }
        let mut meter = Meter::new(config, enis.clone())?;
        let mut now = 60_000u64;
        meter.start(now);
        for rep in 0..if mode == 0 { reps } else { reps.min(5) } {
            for burst in &bursts {
                meter.account_burst(now, burst, &mut sealed);
            }
            let flows = meter.open_flows();
            now += 60;
            // Every other swap seal, a one-flow meter seals a window first: the seal's code is then in cache
            // (the big meter's data is not), which splits the cold seal's cost into code and data misses.
            let code_warm = mode == 0 && rep % 2 == 1;
            if code_warm {
                let mut small = Meter::new(MeterConfig::new(60, 16), enis.clone())?;
                let mut small_sealed: Vec<SealedWindow> = Vec::with_capacity(4);
                let mut one = Burst::new();
                let _ = one.push(bytes.get(..64).unwrap_or_default(), 64, Action::Accept);
                small.account_burst(now - 60, &one, &mut small_sealed);
                small.advance(now, &mut small_sealed);
            }
            let start = Instant::now();
            meter.advance(now, &mut sealed);
            let pause = start.elapsed();
            // The next window at once (empty: no table to swap), with the seal's code and data now warm.
            now += 60;
            let start = Instant::now();
            meter.advance(now, &mut sealed);
            let warm = start.elapsed();
            if mode == 0 && rep > 0 {
                warm_pauses.push(warm);
            }
            // Off the worker: the exporter reads the flows and returns the table.
            for (i, mut w) in sealed.drain(..).enumerate() {
                let want = if mode == 2 || i == 1 { 0 } else { flows };
                assert_eq!(w.flows().len(), want);
                if let Some(table) = w.take_table() {
                    let _ = meter.recycle_table(table);
                }
            }
            if rep > 0 || mode > 0 {
                match mode {
                    0 if code_warm => code_warm_pauses.push(pause),
                    0 => pauses.push(pause),
                    1 => copies.push(pause),
                    _ => summaries.push(pause),
                }
            }
        }
    }
    pauses.sort();
    warm_pauses.sort();
    code_warm_pauses.sort();
    copies.sort();
    summaries.sort();
    let show = |v: &[Duration]| {
        format!(
            "best {:.0} ns, median {:.0} ns",
            v.first().map_or(0.0, |d| d.as_secs_f64() * 1e9),
            v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e9)
        )
    };
    println!(
        "  {n} flows: swap {} ({} seals); the next (empty) window right after, code and data warm: {}",
        show(&pauses),
        pauses.len(),
        show(&warm_pauses)
    );
    println!(
        "  {n} flows: swap with the seal's code in cache (a small meter sealed just before) {} ({} seals)",
        show(&code_warm_pauses),
        code_warm_pauses.len()
    );
    println!(
        "  {n} flows, fallbacks without a spare table: copy-out {}, SKIPDATA summary {}",
        show(&copies),
        show(&summaries)
    );
    Ok(())
}

/// Passes over every flow per window in [`after_seal`].
const AFTER_SEAL_PASSES: usize = 8;

/// The meter's first pass over all `n` flows after a seal against the window's later passes, as a worker sees
/// them: the bench thread meters on CPU 1, an exporter thread on CPU 0 reads each sealed window out and hands its
/// table back, which the meter recycles before the next seal. Each pass is timed by the wall clock (a pass at
/// 10 K flows is shorter than the kernel's on-CPU accounting resolves), and the least time of each kind stands
/// for the passes the machine did not disturb. The ratio `r` of the two costs is what a seal leaves behind: at 80%
/// of the worker's peak, the first pass ends with `n * (0.8 r - 1)` packets queued (none if `r` is at most 1.25),
/// which the receive queue must hold.
fn after_seal(n: usize, ghz: f64) -> anyhow::Result<()> {
    let windows = if n >= 1_000_000 { 8 } else { 40 };
    let enis = synthetic_eni_table()?;
    let bytes = frames(n, n);
    let bursts = bursts_of(&bytes);
    let (to_exporter, sealed_windows) = std::sync::mpsc::channel::<SealedWindow>();
    let (hand_back, returned) = std::sync::mpsc::channel::<FlowTable>();
    let exporter = std::thread::spawn(move || {
        // Best effort: on a machine with one CPU both threads share it.
        let _ = pin_current_thread(&[0]);
        let mut flows = 0;
        for mut window in sealed_windows {
            flows += window.flows().len();
            if let Some(table) = window.take_table()
                && hand_back.send(table).is_err()
            {
                break;
            }
        }
        flows
    });
    let _ = pin_current_thread(&[1]);
    let mut meter = Meter::new(
        MeterConfig {
            spare_tables: 1,
            ..meter_config(n)
        },
        enis,
    )?;
    let mut sealed: Vec<SealedWindow> = Vec::with_capacity(4);
    let (mut first, mut later) = (Vec::new(), Vec::new());
    for window in 0..windows {
        let now = 60 * window as u64;
        for pass in 0..AFTER_SEAL_PASSES {
            while let Ok(table) = returned.try_recv() {
                let _ = meter.recycle_table(table);
            }
            if pass == AFTER_SEAL_PASSES - 1 && window > 0 && meter.spare_tables() == 0 {
                // The next seal must find a spare table: wait for the exporter (untimed).
                let table = returned.recv()?;
                let _ = meter.recycle_table(table);
            }
            let start = Instant::now();
            for burst in &bursts {
                meter.account_burst(now, burst, &mut sealed);
                // As the worker does: a sealed window goes to the exporter at once.
                for window in sealed.drain(..) {
                    to_exporter.send(window)?;
                }
            }
            let elapsed = start.elapsed();
            // The first two windows warm both tables up.
            if window >= 2 {
                let cycles = elapsed.as_secs_f64() * 1e9 * ghz / n as f64;
                match pass {
                    0 => first.push(cycles),
                    // The exporter reads the sealed window during the first passes; later ones are alone.
                    p if p >= 2 => later.push(cycles),
                    _ => {}
                }
            }
        }
    }
    drop(to_exporter);
    let exported = exporter
        .join()
        .map_err(|_| anyhow::anyhow!("the exporter thread panicked"))?;
    let _ = unpin_current_thread();
    let c = meter.counters();
    anyhow::ensure!(
        c.seals_swapped == windows as u64 - 1 && exported == (windows - 1) * n,
        "every seal must swap in a spare table and carry every flow: {} swaps, {exported} flows",
        c.seals_swapped
    );
    anyhow::ensure!(c.table_full_packets == 0, "the table must hold every flow");
    first.sort_by(f64::total_cmp);
    later.sort_by(f64::total_cmp);
    // Noise here only ever adds time: the least of each is the steadiest figure, and their ratio the cost of
    // the seal's aftermath; the medians show how much the machine disturbed the passes.
    let least = |v: &[f64]| v.first().copied().unwrap_or(f64::NAN);
    let r = least(&first) / least(&later);
    println!(
        "  {n} flows: first pass after a seal least {:.1} cycles per packet (median {:.1}, {} seals); later \
         passes least {:.1} (median {:.1}, {} passes): {r:.2}x. At 80% of the peak a seal leaves about {:.0} \
         packets queued",
        least(&first),
        median(&first),
        first.len(),
        least(&later),
        median(&later),
        later.len(),
        n as f64 * (0.8 * r - 1.0).max(0.0),
    );
    Ok(())
}

/// 64-byte frames laid end to end in `bytes`, in bursts of [`MAX_BURST`].
fn bursts_of(bytes: &[u8]) -> Vec<Burst<'_>> {
    bytes
        .chunks(64 * MAX_BURST)
        .map(|chunk| {
            let mut burst = Burst::new();
            for f in chunk.chunks(64) {
                // At most MAX_BURST frames per chunk.
                let _ = burst.push(f, 64, Action::Accept);
            }
            burst
        })
        .collect()
}

fn median(sorted: &[f64]) -> f64 {
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}
