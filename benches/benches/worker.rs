//! One worker on mbuf bursts in memory, next to the floor: a loop that only receives the same mbufs and hands them
//! on. Then the seal under load, with windows of 1 s: a producer lcore on the other CPU hands the worker mbufs
//! through a ring port (`Port::loopback_ring`) and takes them back through another, touching neither frame nor mbuf,
//! so it costs a few cycles per packet and the worker is the bottleneck; the worker writes each frame whole as it
//! arrives (as the `net_null` loop does), flows in turn, so that the circuit's mbufs carry every flow. The producer
//! first goes flat out (the worker's metered rate is the peak of the setup), then paces 80% of that peak by the TSC.
//! Each packet of a due burst it cannot hand over (the worker's ring full) is a loss, put down to a seal when it
//! happens during a sealing burst or in its aftermath (2 ms, or as long as metering every flow twice takes at that
//! rate if longer: the first pass after a seal inserts every flow again), and counted apart when a stall of the
//! worker came within 2 ms before it too; to a stall when the worker was off its CPU (a gap of over 50 µs between two
//! polls) up to 2 ms before. Beside the losses, which on this VM come mostly from its CPU being taken away, the bench
//! computes the queue the worker's own work builds (`OwnQueue`): how far a seal raises it, against points half a
//! window later, is what a seal asks of the NIC's ring. That runs through a ring of 1,023 mbufs (a NIC queue of 1,024
//! descriptors; 2,047 mbufs circulate), then through one of 262,143 (`WORKER_DEEP_SLOTS`, 2^18 by default), deep
//! enough for this VM's stalls of the worker's CPU (up to about 10 ms; 263,167 mbufs circulate, 100 MB, so the worker
//! reads every frame from memory), where the producer also catches up on up to 10 ms of traffic after it was
//! preempted itself; both at the first flow count.
//!
//! `cargo bench -p flowlog-benches --bench worker` (env `WORKER_FLOWS`, default `10000,1000000`; `WORKER_SECONDS`,
//! default 2; `WORKER_SEAL_FLOWS`, the flow counts of the seal-under-load runs on the shallow ring, default the first
//! of `WORKER_FLOWS`). Real EAL (`--no-huge`) and a `net_ring` vdev, whose TX loops back to its RX: the worker lcore
//! receives a burst, rewrites each frame's flow id (so that a few hundred mbufs carry any number of flows), meters it
//! (or, for the floor, does not), and transmits it back. Both loops do the same receive, rewrite and transmit, so the
//! difference is the worker's own cost. Then the floor literally, at the first flow count: a `net_null` vdev,
//! whose receive allocates fresh mbufs and whose transmit frees them, each frame written whole (a 64-byte copy of a
//! prebuilt template and the flow id), without and with the worker, in `WORKER_PAIRS` (default 3) alternating pairs
//! of runs, summed up as the ratio of each loop's least cycles per packet and as the median of the pairs' ratios.
//! Figures are per core from the worker thread's on-CPU time, since other processes share this machine's two CPUs;
//! wall-clock figures are printed beside them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use flowlog_benches::{
    CpuTime, SYNTHETIC_ENIS, ThreadSched, cpu, ipv4_tcp_template, print_machine, set_flow,
    synthetic_enis, thread_cpu,
};
use flowlog_dataplane::flow::{
    Action, Burst as FrameBurst, Meter, MeterConfig, SpareTableFallback,
};
use flowlog_vswitch::capture::CaptureState;
use flowlog_vswitch::dpdk::{
    Burst, Eal, Mempool, Port, PortConfig, Socket, TscClock, TxQueue, tsc,
};
use flowlog_vswitch::export::{ExportSink, Exporter, ExporterConfig, link};
use flowlog_vswitch::worker::Worker;

/// Mbufs circulating through the ring port.
const IN_FLIGHT: usize = 768;
/// Slots of the deep ring for the second seal-under-load run: 17 ms at 15 Mpps.
const DEEP_SLOTS: usize = 1 << 18;
/// How far behind its schedule the producer catches up on the deep ring.
const DEEP_CATCH_UP: Duration = Duration::from_millis(10);

fn main() -> anyhow::Result<()> {
    let flows = env_list("WORKER_FLOWS", &[10_000, 1_000_000]);
    let seconds: f64 = std::env::var("WORKER_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let args: Vec<String> = [
        "--lcores=0@0,1@1,2@0",
        "--no-huge",
        "-m",
        "1024",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "--log-level=lib.eal:warning",
        "--vdev=net_ring0",
        "--vdev=net_null0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).context("EAL")?;
    let pool = Mempool::new(
        &eal,
        "bench",
        16_383,
        256,
        Mempool::DEFAULT_DATA_ROOM,
        Socket::Any,
    )?;
    // One queue each way, 1,024 descriptors (the defaults).
    let started = |name: &str| -> anyhow::Result<Port> {
        let mut port = Port::by_name(&eal, name)?;
        port.configure(&PortConfig::default(), &pool)?;
        port.start()?;
        Ok(port)
    };
    let port = started("net_ring0")?;
    let null_port = started("net_null0")?;
    print_machine();
    let ghz = cpu().1.unwrap_or(2.6);
    println!(
        "worker on lcore 1 (CPU 1), net_ring0 loopback, {IN_FLIGHT} mbufs circulating, 64-byte IPv4/TCP frames, {SYNTHETIC_ENIS} ENIs, {seconds} s per run"
    );

    // The wall-clock peak of the worker at each flow count, on mbufs in its cache.
    let mut peaks = Vec::new();
    for &n in &flows {
        let floor = run_loop(&eal, &port, &pool, Source::Ring, n, seconds, None)?;
        let worker = run_loop(&eal, &port, &pool, Source::Ring, n, seconds, Some(60))?;
        println!("{n:>9} flows:");
        floor.print("receive + rewrite + transmit (floor)", ghz);
        worker.print("... + the worker (burst meter, 60 s windows)", ghz);
        println!(
            "{:>11} worker / floor: {:.2}x the cycles per packet",
            "",
            worker.cycles_per_packet(ghz) / floor.cycles_per_packet(ghz)
        );
        // Wall-clock peak: the producer paces in wall time, on a CPU this machine may share.
        peaks.push((n, worker.packets as f64 / worker.wall.as_secs_f64() / 1e6));
    }

    // The floor literally: a loop that receives fresh mbufs and frees them (net_null), each frame
    // written whole; the same loop with the worker, at the first flow count. Pairs of runs, alternating, as
    // noise here (the hypervisor, this machine's other threads) only ever adds cycles: the ratio of the least
    // cycles of each is the steadiest figure, the median of the pairs' ratios the plainest.
    let null_flows = flows.first().copied().unwrap_or(10_000);
    let pairs = env_list("WORKER_PAIRS", &[3])[0].max(1);
    println!(
        "{null_flows:>9} flows, net_null0 (receive allocates, transmit frees, 64-byte frames written whole), {pairs} pairs of runs:"
    );
    let null_run = |windows| {
        run_loop(
            &eal,
            &null_port,
            &pool,
            Source::Null,
            null_flows,
            seconds,
            windows,
        )
    };
    let (mut floors, mut workers, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..pairs {
        let floor = null_run(None)?;
        let worker = null_run(Some(60))?;
        floor.print("receive + write + free (floor)", ghz);
        worker.print("... + the worker (burst meter, 60 s windows)", ghz);
        let (f, w) = (floor.cycles_per_packet(ghz), worker.cycles_per_packet(ghz));
        println!(
            "{:>11} worker / floor: {:.2}x the cycles per packet",
            "",
            w / f
        );
        floors.push(f);
        workers.push(w);
        ratios.push(w / f);
    }
    let least = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    ratios.sort_by(f64::total_cmp);
    println!(
        "{:>11} least cycles: floor {:.0}, worker {:.0}: {:.2}x the floor; median of the pairs' ratios {:.2}x",
        "",
        least(&floors),
        least(&workers),
        least(&workers) / least(&floors),
        ratios[ratios.len() / 2]
    );

    // Seals under load: windows of 1 s, first through a ring of 1,023 mbufs (a NIC queue of 1,024 descriptors),
    // then through one deep enough to hold this VM's stalls of the worker's CPU. Not at 1 M flows by default: the
    // exporter would render 1 M records a second on the producer's CPU, and the producer, not the worker, would
    // set the peak.
    let peak = |n| peaks.iter().find(|&&(f, _)| f == n).map(|&(_, p)| p);
    for (i, &n) in env_list("WORKER_SEAL_FLOWS", &[null_flows])
        .iter()
        .enumerate()
    {
        let shallow = Circuit::new(&eal, &format!("shallow{i}"), 1 << 10, n)?;
        seals_under_load(&eal, &shallow, Duration::ZERO, peak(n))?;
        shallow.empty();
    }
    let slots = env_list("WORKER_DEEP_SLOTS", &[DEEP_SLOTS])[0].max(1024) as u32;
    let deep = Circuit::new(&eal, "deep", slots, null_flows)?;
    seals_under_load(&eal, &deep, DEEP_CATCH_UP, peak(null_flows))?;
    deep.empty();
    drop(port);
    drop(null_port);
    Ok(())
}

/// Mbufs that circulate between a producer and the worker through two ring ports: the producer moves them from
/// `back` to `to_worker` at its pace without touching them; the worker receives them from `to_worker`, meters
/// them and transmits them to `back`. Each carries one 64-byte frame written once at the start, flow
/// `index % flows`. `to_worker` holds `slots - 1`; `mbufs` is 1,024 more, so the producer can offer more than the
/// worker takes, and `back` (twice as deep) always has room for every one of them.
struct Circuit {
    to_worker: Port,
    back: Port,
    slots: u32,
    mbufs: u32,
    flows: usize,
    pool: Mempool,
}

impl Circuit {
    fn new(eal: &Eal, name: &str, slots: u32, flows: usize) -> anyhow::Result<Circuit> {
        let mbufs = slots - 1 + 1024;
        let pool = Mempool::new(
            eal,
            name,
            mbufs + 1024,
            0,
            Mempool::HEADROOM + 64,
            Socket::Any,
        )?;
        let ring = |ring_name: &str, slots| -> anyhow::Result<Port> {
            let mut port = Port::loopback_ring(eal, ring_name, slots)?;
            port.configure(&PortConfig::default(), &pool)?;
            port.start()?;
            Ok(port)
        };
        let to_worker = ring(name, slots)?;
        let back = ring(&format!("{name}_back"), 2 * slots)?;
        let mut tx = back.tx_queue(0)?;
        let mut burst = Burst::new();
        for i in 0..mbufs {
            let mut mbuf = pool.alloc()?;
            let mut frame = ipv4_tcp_template(i);
            set_flow(&mut frame, i % flows as u32);
            mbuf.append(&frame)?;
            if let Err(_full) = burst.push(mbuf) {
                anyhow::bail!("burst full");
            }
            if burst.len() == 32 || i + 1 == mbufs {
                tx.tx_burst(&mut burst);
                anyhow::ensure!(burst.is_empty(), "the return ring refused frames");
            }
        }
        Ok(Circuit {
            to_worker,
            back,
            slots,
            mbufs,
            flows,
            pool,
        })
    }

    /// Frees every mbuf of the circuit.
    fn empty(self) {
        for port in [&self.to_worker, &self.back] {
            if let Ok(mut rx) = port.rx_queue(0) {
                let mut burst = Burst::new();
                while rx.rx_burst(&mut burst) > 0 {
                    burst.free_all();
                }
            }
        }
        if self.pool.in_use() != 0 {
            eprintln!(
                "{} mbufs of {} not returned",
                self.pool.in_use(),
                self.pool.name()
            );
        }
    }
}

/// The peak of the worker fed by a producer on the other CPU through `circuit` flat out, then 80% of it paced
/// across window boundaries, printed.
fn seals_under_load(
    eal: &Eal,
    circuit: &Circuit,
    catch_up: Duration,
    cached_peak: Option<f64>,
) -> anyhow::Result<()> {
    println!(
        "seal under load at {} flows, through a ring of {} mbufs ({} circulating), the producer catching up on up to {} ms after it was preempted:",
        circuit.flows,
        circuit.slots - 1,
        circuit.mbufs,
        catch_up.as_millis()
    );
    // Windows of 1 s. The peak is the worker's metered rate when the producer moves mbufs to it as fast as it
    // can (a few cycles each, so the worker is the bottleneck). Then 80% of it, paced.
    let flat_out = seal_under_load(eal, circuit, None, catch_up, 2.0)?;
    let peak = flat_out.metered as f64 / flat_out.seconds;
    println!(
        "  producer on the other CPU flat out: the worker metered {:.2} Mpps (the peak of this setup; the wall-clock peak on mbufs in its cache above was {} Mpps)",
        peak / 1e6,
        cached_peak.map_or_else(|| "not measured".to_string(), |p| format!("{p:.2}"))
    );
    // The 80%; WORKER_SEAL_LOAD (percent) sets another, e.g. over 100 to see the queue measures grow.
    let load = env_list("WORKER_SEAL_LOAD", &[80])[0] as f64 / 100.0;
    let rate = load * peak;
    let report = seal_under_load(eal, circuit, Some(rate), catch_up, 4.5)?;
    let aftermath = report.aftermath.as_secs_f64() * 1e3;
    println!(
        "  at {:.0}%: asked {:.2} Mpps, offered {:.2} Mpps for {:.1} s across {} window boundaries: {} packets offered, {} metered, {} refused by a full ring (lost)",
        load * 100.0,
        rate / 1e6,
        report.offered as f64 / report.seconds / 1e6,
        report.seconds,
        report.seals,
        report.offered,
        report.metered,
        report.refused,
    );
    println!(
        "  refused during a sealing burst or within {aftermath:.1} ms after it: {} (of them within {SEAL_GRACE_MS} ms after the worker was off its CPU too: {}); within {SEAL_GRACE_MS} ms after the worker was off its CPU ({} gaps over 50 µs between polls, longest {:.1} ms): {}; otherwise: {}",
        report.near_seal,
        report.near_seal_and_stall,
        report.stalls,
        report.longest_stall.as_secs_f64() * 1e3,
        report.after_stall,
        report.other,
    );
    println!(
        "  the worker's CPU was away {:.2} ms in gaps over 50 µs and {:.2} ms in {} gaps of 10-50 µs; its thread waited {:.2} ms for a CPU (guest scheduler, {} preemptions); its CPU's interrupts {} ms, soft interrupts {} ms, steal {} ms (/proc/stat, 10 ms steps)",
        report.stalled.as_secs_f64() * 1e3,
        report.short_gapped.as_secs_f64() * 1e3,
        report.short_gaps,
        report.sched.waiting.as_secs_f64() * 1e3,
        report.sched.preemptions,
        report.cpu.irq.as_millis(),
        report.cpu.softirq.as_millis(),
        report.cpu.steal.as_millis(),
    );
    println!(
        "  the worker's longest burst that sealed a window: {:.2} µs; longest burst of all: {:.1} µs (on a shared CPU this includes preemption)",
        report.longest_seal.as_secs_f64() * 1e6,
        report.longest_burst.as_secs_f64() * 1e6
    );
    println!(
        "  the worker's TSC cycles per packet within {aftermath:.1} ms after a seal: {:.0}, elsewhere: {:.0} ({:.2}x; at {:.0}% of the peak it has {:.2}x to catch up with)",
        report.after_seal_cycles,
        report.steady_cycles,
        report.after_seal_cycles / report.steady_cycles,
        load * 100.0,
        1.0 / load
    );
    let q = &report.own_queue;
    let most = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "  the queue the worker's own work builds at {:.0}% (its CPU's gaps over 10 µs left out): within {aftermath:.1} ms after a seal it rose at most {:.0} packets ({} seals: {}), within {aftermath:.1} ms from points half a window later at most {:.0} ({} points); deepest over the run {:.0}, against a ring of {}",
        load * 100.0,
        most(&q.seal_rises),
        q.seal_rises.len(),
        q.seal_rises
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        most(&q.baseline_rises),
        q.baseline_rises.len(),
        q.deepest,
        circuit.slots - 1
    );
    Ok(())
}

/// What one run measured.
struct Run {
    packets: u64,
    wall: Duration,
    on_cpu: Duration,
    tsc_cycles: u64,
}

impl Run {
    fn mpps_on_cpu(&self) -> f64 {
        self.packets as f64 / self.on_cpu.as_secs_f64() / 1e6
    }

    fn cycles_per_packet(&self, ghz: f64) -> f64 {
        self.on_cpu.as_secs_f64() * ghz * 1e9 / self.packets as f64
    }

    fn print(&self, name: &str, ghz: f64) {
        println!(
            "{:>11} {name:<48} {:>7.2} Mpps/core {:>6.0} cycles/pkt on CPU   ({:.2} Mpps wall, {:.0} TSC cycles/pkt, {:.0}% of the run on CPU)",
            "",
            self.mpps_on_cpu(),
            self.cycles_per_packet(ghz),
            self.packets as f64 / self.wall.as_secs_f64() / 1e6,
            self.tsc_cycles as f64 / self.packets as f64,
            100.0 * self.on_cpu.as_secs_f64() / self.wall.as_secs_f64()
        );
    }
}

/// Gives frames flow ids in turn, `0..flows` round and round. A frame differs by flow only in its ENI (the flow
/// modulo SYNTHETIC_ENIS) and flow id: the templates are built ahead, so writing a frame whole is a 64-byte copy.
struct FlowWriter {
    templates: Vec<[u8; 64]>,
    flows: usize,
    next: u32,
}

impl FlowWriter {
    fn new(flows: usize) -> FlowWriter {
        FlowWriter {
            templates: (0..SYNTHETIC_ENIS).map(ipv4_tcp_template).collect(),
            flows,
            next: 0,
        }
    }

    /// Writes the next flow into `frame` (its flow id, and first its ENI's whole 64-byte template when `whole`);
    /// the flow is used up even without a frame.
    #[inline]
    fn write(&mut self, frame: Option<&mut [u8]>, whole: bool) {
        if let Some(frame) = frame {
            if whole
                && let (Some(w), Some(t)) = (
                    frame.get_mut(..64),
                    self.templates
                        .get(self.next as usize % self.templates.len()),
                )
            {
                w.copy_from_slice(t);
            }
            set_flow(frame, self.next);
        }
        self.next = if self.next as usize + 1 >= self.flows {
            0
        } else {
            self.next + 1
        };
    }
}

/// Puts `IN_FLIGHT` frames into the ring port.
fn fill(port: &Port, pool: &Mempool) -> anyhow::Result<()> {
    let mut tx = port.tx_queue(0)?;
    let mut burst = Burst::new();
    for i in 0..IN_FLIGHT as u32 {
        let mut mbuf = pool.alloc()?;
        mbuf.append(&ipv4_tcp_template(i))?;
        if let Err(_full) = burst.push(mbuf) {
            anyhow::bail!("burst full");
        }
        if burst.len() == 32 {
            tx.tx_burst(&mut burst);
            anyhow::ensure!(burst.is_empty(), "the ring port refused frames");
        }
    }
    tx.tx_burst(&mut burst);
    Ok(())
}

/// Where the loop's mbufs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `net_ring0`: `IN_FLIGHT` frames circulate, transmitted back to the port's own receive ring; each frame
    /// keeps its template and gets a new flow id.
    Ring,
    /// `net_null0`: every receive allocates fresh mbufs from the pool and every transmit frees them (the
    /// issue's receive-and-free); each frame is written whole from the template.
    Null,
}

/// Runs lcore 1 for `seconds` on `port`: receive, write the flow ids, optionally meter (with windows of
/// `interval` seconds), transmit. Returns what it measured.
fn run_loop(
    eal: &Eal,
    port: &Port,
    pool: &Mempool,
    source: Source,
    flows: usize,
    seconds: f64,
    interval: Option<u32>,
) -> anyhow::Result<Run> {
    if source == Source::Ring {
        fill(port, pool)?;
    }
    let mut rx = port.rx_queue(0)?;
    let mut tx = port.tx_queue(0)?;
    let (worker, exporter) = match interval {
        Some(interval) => {
            let (worker, exporter) = worker(interval, flows)?;
            (Some(worker), Some(exporter))
        }
        None => (None, None),
    };
    let result = Arc::new(std::sync::Mutex::new(None));
    let out = result.clone();
    let clock = TscClock::calibrate().context("TSC")?;
    eal.launch(1, move || {
        let mut worker = worker;
        let mut burst = Burst::new();
        let mut writer = FlowWriter::new(flows);
        let mut packets = 0u64;
        let began = Instant::now();
        let cpu0 = thread_cpu().unwrap_or_default();
        let tsc0 = tsc();
        let deadline = tsc0 + (seconds * flowlog_vswitch::dpdk::tsc_hz() as f64) as u64;
        if let Some(w) = worker.as_mut() {
            w.start(clock.now_secs());
        }
        // As flowlog-vswitch's poll loop: one TSC read per poll, and the cycles from one poll to the next are the
        // previous poll's.
        let (mut poll_tsc, mut previous) = (tsc0, 0u64);
        loop {
            let now_tsc = tsc();
            if now_tsc >= deadline {
                break;
            }
            if let Some(w) = worker.as_mut()
                && previous > 0
            {
                w.record_cycles(now_tsc.wrapping_sub(poll_tsc), previous);
            }
            poll_tsc = now_tsc;
            let n = rx.rx_burst(&mut burst);
            previous = n as u64;
            for i in 0..n {
                writer.write(burst.data_mut(i), source == Source::Null);
            }
            if let Some(w) = worker.as_mut() {
                w.poll_commands();
                let secs = clock.ns_at(now_tsc) / 1_000_000_000;
                let mut frames = FrameBurst::new();
                for mbuf in burst.iter() {
                    let _ = frames.push(mbuf.data(), mbuf.pkt_len() as usize, Action::Accept);
                }
                w.account_burst(secs, &frames);
            }
            packets += n as u64;
            while !burst.is_empty() {
                tx.tx_burst(&mut burst);
            }
        }
        let run = Run {
            packets,
            wall: began.elapsed(),
            on_cpu: thread_cpu().unwrap_or_default().saturating_sub(cpu0),
            tsc_cycles: tsc().wrapping_sub(tsc0),
        };
        // Drain the ring port so the next run starts from a known set of mbufs (net_null never runs dry).
        let mut idle = if source == Source::Ring { 0 } else { 1000 };
        while idle < 1000 {
            if rx.rx_burst(&mut burst) == 0 {
                idle += 1;
            }
            burst.free_all();
        }
        if let Some(w) = worker {
            w.finish();
        }
        *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(run);
        0
    })?;
    eal.wait(1)?;
    if let Some(exporter) = exporter {
        exporter.join()?;
    }
    let run = result
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .context("the worker lcore reported nothing")?;
    Ok(run)
}

/// A worker whose exporter renders records into /dev/null.
fn worker(interval: u32, flows: usize) -> anyhow::Result<(Worker, Exporter)> {
    let capture = CaptureState::fixed(synthetic_enis(), None)?;
    let meter = Meter::new(
        MeterConfig {
            when_no_spare_table: SpareTableFallback::SkipData,
            ..MeterConfig::new(interval, (flows + flows / 4).next_power_of_two())
        },
        capture.table().clone(),
    )?;
    let (end, link) = link(64, meter.spare_tables() + 1);
    let exporter = Exporter::spawn(
        ExporterConfig {
            region: None,
            sink: ExportSink::File("/dev/null".into()),
            max_batch_records: 4096,
            interval_secs: interval,
            // CPU 0, with the main and producer lcores, as flowlog-vswitch places it: an exporter on the worker's
            // CPU could preempt it while it renders a window.
            thread_init: Some(Arc::new(|| {
                let _ = flowlog_vswitch::dpdk::pin_current_thread(&[0]);
            })),
        },
        capture,
        vec![link],
        None,
    )?;
    Ok((Worker::new(meter, end), exporter))
}

/// What the worker lcore of a seal-under-load run measured.
struct WorkerSide {
    metered: u64,
    seals: u64,
    longest: u64,
    longest_seal: u64,
    /// (start, end) TSC of each burst that sealed a window.
    seal_spans: Vec<(u64, u64)>,
    /// (start, end) TSC of each gap between two polls over 50 µs.
    stalls: Vec<(u64, u64)>,
    short_gaps: usize,
    short_gapped: u64,
    sched: ThreadSched,
    /// TSC cycles and packets of the bursts (none stalled, none sealing) in a seal's aftermath.
    after_seal: (u64, u64),
    /// The same for every other burst.
    steady: (u64, u64),
    own_queue: OwnQueue,
}

/// What the seal-under-load run measured.
struct SealReport {
    seconds: f64,
    seals: u64,
    offered: u64,
    metered: u64,
    refused: u64,
    /// Refused during a sealing burst or in its aftermath.
    near_seal: u64,
    /// Of `near_seal`, refused within SEAL_GRACE_MS after the worker was off its CPU too (a stall that
    /// coincided with the seal, which this bench cannot tell apart from it).
    near_seal_and_stall: u64,
    /// Refused within SEAL_GRACE_MS after the worker was off its CPU (and not near a seal).
    after_stall: u64,
    /// Refused otherwise.
    other: u64,
    /// Gaps between two polls of the worker longer than 50 µs, and the longest.
    stalls: usize,
    longest_stall: Duration,
    /// All the time in those gaps.
    stalled: Duration,
    /// Gaps between two polls of 10-50 µs: how many, and their time.
    short_gaps: usize,
    short_gapped: Duration,
    /// The worker thread's scheduler figures over the run, and its CPU's interrupt and steal time.
    sched: ThreadSched,
    cpu: CpuTime,
    longest_burst: Duration,
    longest_seal: Duration,
    /// TSC cycles per packet of the worker in a seal's aftermath, and elsewhere (bursts over 50 µs,
    /// preempted, left out of both).
    after_seal_cycles: f64,
    steady_cycles: f64,
    own_queue: OwnQueue,
    /// How long after a sealing burst a refusal is put down to it: SEAL_GRACE_MS, or as long as metering every
    /// flow twice takes at the offered rate.
    aftermath: Duration,
}

/// The queue the worker's own work builds at the offered rate, apart from the time its CPU is taken away: a
/// Lindley recursion over its bursts, in which packets arrive at the offered rate while the worker works (each
/// burst's time and the poll before it) and each burst takes what it received. Idle polls add nothing: with a
/// backlog there would be none. A burst of over 10 µs was interrupted, and counts as its packets at the worker's
/// recent cost per packet, a sealing one as 10 µs (more than any uninterrupted seal measured here), so the seal's
/// share is over-counted rather than under-counted. What a sealing burst and the slower bursts after it add to
/// this queue is the queue the seal itself builds, which the NIC's ring must hold; the same from points half a
/// window after each seal, where nothing seals, is the worker's own jitter to compare it with.
struct OwnQueue {
    /// Packets offered per TSC tick.
    rate: f64,
    /// Ticks from a seal to its baseline point; how long after a seal (or a baseline point) to watch; the
    /// longest uninterrupted burst.
    half_window: u64,
    grace: u64,
    interrupted: u64,
    /// The recent ticks per packet of uninterrupted bursts.
    cost: f64,
    depth: f64,
    deepest: f64,
    watch: Option<Watch>,
    baseline_due: Option<u64>,
    /// The rise of the queue within the grace after each seal, and after each baseline point.
    seal_rises: Vec<f64>,
    baseline_rises: Vec<f64>,
}

/// A stretch of bursts during which `OwnQueue` records how far its queue rises.
struct Watch {
    seal: bool,
    from: f64,
    peak: f64,
    until: u64,
}

impl OwnQueue {
    fn new(rate: f64, half_window: u64, grace: u64, interrupted: u64) -> OwnQueue {
        OwnQueue {
            rate,
            half_window,
            grace,
            interrupted,
            cost: 0.0,
            depth: 0.0,
            deepest: 0.0,
            watch: None,
            baseline_due: None,
            seal_rises: Vec::with_capacity(64),
            baseline_rises: Vec::with_capacity(64),
        }
    }

    /// A poll at `now` that received `received` packets and took `took` ticks to handle them (sealing a window
    /// or not), `overhead` ticks of the worker's own time after its last burst.
    fn burst(&mut self, overhead: u64, took: u64, received: u64, sealing: bool, now: u64) {
        if sealing {
            // Watch from the depth before the sealing burst; a baseline watch still open is dropped, a seal
            // came into it.
            self.watch = Some(Watch {
                seal: true,
                from: self.depth,
                peak: self.depth,
                until: now + took.min(self.interrupted) + self.grace,
            });
            self.baseline_due = Some(now + self.half_window);
        }
        if received > 0 {
            let work = if took <= self.interrupted {
                self.cost += (took as f64 / received as f64 - self.cost) / 16.0;
                took as f64
            } else if sealing {
                self.interrupted as f64
            } else {
                self.cost * received as f64
            };
            self.depth =
                (self.depth + self.rate * (overhead as f64 + work) - received as f64).max(0.0);
            self.deepest = self.deepest.max(self.depth);
        }
        if let Some(w) = &mut self.watch {
            w.peak = w.peak.max(self.depth);
            if now > w.until {
                let rises = if w.seal {
                    &mut self.seal_rises
                } else {
                    &mut self.baseline_rises
                };
                if rises.len() < MAX_EVENTS {
                    rises.push(w.peak - w.from);
                }
                self.watch = None;
            }
        } else if self.baseline_due.is_some_and(|due| now >= due) {
            self.baseline_due = None;
            self.watch = Some(Watch {
                seal: false,
                from: self.depth,
                peak: self.depth,
                until: now + self.grace,
            });
        }
    }
}

/// Most refusal, seal and stall events kept by the seal-under-load run.
const MAX_EVENTS: usize = 1 << 20;

/// Milliseconds after a sealing burst (or a stall) during which a refusal is put down to it.
const SEAL_GRACE_MS: u64 = 2;

/// A producer on lcore 2 offers `rate` packets per second (bursts of 32, paced by the TSC; as fast as it can
/// without a rate): it moves mbufs from the circuit's return ring to the worker's. The worker on lcore 1 meters
/// them with 1-second windows and transmits them back. Each packet of a due burst that the producer does not
/// hand over is a loss: the worker's ring refused it, or it had no mbuf back yet (the worker holds them all, the
/// ring nearly full), as a NIC misses a packet when its queue has no free descriptor.
fn seal_under_load(
    eal: &Eal,
    circuit: &Circuit,
    rate: Option<f64>,
    catch_up: Duration,
    seconds: f64,
) -> anyhow::Result<SealReport> {
    let mut rx = circuit.to_worker.rx_queue(0)?;
    let mut tx = circuit.to_worker.tx_queue(0)?;
    let mut back_rx = circuit.back.rx_queue(0)?;
    let mut back_tx = circuit.back.tx_queue(0)?;
    let (mut worker, exporter) = worker(1, circuit.flows)?;
    let stop = Arc::new(AtomicBool::new(false));
    // Set by the producer once it sent its last burst, so that the worker's last drain takes everything.
    let produced = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let offered = Arc::new(AtomicU64::new(0));
    let hz = flowlog_vswitch::dpdk::tsc_hz();
    // Ticks after a stall during which a refusal is put down to it; after a sealing burst, as long as metering
    // every flow twice takes at the offered rate if that is longer (the first pass after a seal inserts each flow
    // again).
    let grace = hz / 1_000 * SEAL_GRACE_MS;
    let aftermath = rate.map_or(grace, |r| {
        grace.max((2.0 * circuit.flows as f64 / r * hz as f64) as u64)
    });
    let flows = circuit.flows;
    let clock = TscClock::calibrate().context("TSC")?;

    let (producer_stop, producer_done, producer_refused, producer_offered) = (
        stop.clone(),
        produced.clone(),
        refused.clone(),
        offered.clone(),
    );
    let refusals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let producer_refusals = refusals.clone();
    eal.launch(2, move || {
        // (TSC, packets) of each refused transmit; bounded, so a pathological run cannot grow it without end.
        let mut refusals: Vec<(u64, u64)> = Vec::with_capacity(MAX_EVENTS);
        // Unpaced without a rate.
        let ticks_per_burst = rate.map_or(0, |rate| (32.0 * hz as f64 / rate) as u64);
        let catch_up_ticks = (catch_up.as_secs_f64() * hz as f64) as u64;
        let mut next = tsc();
        let mut burst = Burst::new();
        while !producer_stop.load(Ordering::Relaxed) {
            let now = tsc();
            if now < next {
                std::hint::spin_loop();
                continue;
            }
            // After the producer was preempted, catch up on at most `catch_up` of traffic, as a wire does not
            // stop when this CPU is taken away; a longer flood would overflow the ring whatever the worker does.
            // What was not offered then is not counted.
            next = (next + ticks_per_burst).max(now.saturating_sub(catch_up_ticks));
            // What the last transmit refused is offered again, as new packets: the frames are alike.
            if burst.is_empty() {
                back_rx.rx_burst(&mut burst);
            }
            let sent = tx.tx_burst(&mut burst) as u64;
            producer_offered.fetch_add(32, Ordering::Relaxed);
            producer_refused.fetch_add(32 - sent, Ordering::Relaxed);
            if sent < 32 && refusals.len() < MAX_EVENTS {
                refusals.push((tsc(), 32 - sent));
            }
        }
        // What the last transmit refused leaves the circuit (at most 32 of its 1,024 spare mbufs).
        burst.free_all();
        *producer_refusals.lock().unwrap_or_else(|e| e.into_inner()) = refusals;
        producer_done.store(true, Ordering::Release);
        0
    })?;

    let (worker_stop, worker_produced) = (stop.clone(), produced.clone());
    let result = Arc::new(std::sync::Mutex::new(None));
    let out = result.clone();
    eal.launch(1, move || {
        let mut burst = Burst::new();
        let mut metered = 0u64;
        let mut longest = 0u64;
        let mut longest_seal = 0u64;
        let mut sealed = 0u64;
        // (start, end) TSC of each burst that sealed a window, and of each gap between two polls longer than
        // `stall_ticks` (50 µs: the worker's CPU was taken away).
        let mut seal_spans: Vec<(u64, u64)> = Vec::with_capacity(MAX_EVENTS);
        let mut stalls: Vec<(u64, u64)> = Vec::with_capacity(MAX_EVENTS);
        let stall_ticks = hz / 20_000;
        let short_gap_ticks = hz / 100_000;
        let (mut short_gaps, mut short_gapped) = (0usize, 0u64);
        let sched_before = ThreadSched::now();
        let (mut after_seal, mut steady) = ((0u64, 0u64), (0u64, 0u64));
        let mut last_seal_end = 0u64;
        let mut last_poll = tsc();
        let mut last_took = 0u64;
        let mut own_queue = OwnQueue::new(
            rate.unwrap_or(0.0) / hz as f64,
            hz / 2,
            aftermath,
            short_gap_ticks,
        );
        // Frames are written whole, flows in turn, as they arrive: the circuit has fewer mbufs than flows, and an
        // mbuf's ENI must follow its flow.
        let mut writer = FlowWriter::new(flows);
        worker.start(clock.now_secs());
        while !worker_stop.load(Ordering::Relaxed) {
            worker.poll_commands();
            let n = rx.rx_burst(&mut burst);
            let now = tsc();
            let gap = now.wrapping_sub(last_poll);
            if gap > stall_ticks {
                if stalls.len() < MAX_EVENTS {
                    stalls.push((last_poll, now));
                }
            } else if gap > short_gap_ticks {
                short_gaps += 1;
                short_gapped += gap;
            }
            // The worker's own time between its last burst and this poll, unless its CPU was away.
            let overhead = if gap > short_gap_ticks {
                0
            } else {
                gap.saturating_sub(last_took)
            };
            last_poll = now;
            let secs = clock.ns_at(now) / 1_000_000_000;
            if n == 0 {
                worker.advance(secs);
            } else {
                for i in 0..n {
                    writer.write(burst.data_mut(i), true);
                }
                let mut frames = FrameBurst::new();
                for mbuf in burst.iter() {
                    let _ = frames.push(mbuf.data(), mbuf.pkt_len() as usize, Action::Accept);
                }
                worker.account_burst(secs, &frames);
                metered += n as u64;
                back(&mut back_tx, &mut burst);
            }
            let took = tsc().wrapping_sub(now);
            last_took = took;
            longest = longest.max(took);
            let sealing = worker.counters().windows_sealed != sealed;
            own_queue.burst(overhead, took, n as u64, sealing, now);
            if sealing {
                sealed = worker.counters().windows_sealed;
                longest_seal = longest_seal.max(took);
                last_seal_end = now + took;
                if seal_spans.len() < MAX_EVENTS {
                    seal_spans.push((now, now + took));
                }
            } else if n > 0 && took <= stall_ticks {
                let sums = if sealed > 0 && now <= last_seal_end + aftermath {
                    &mut after_seal
                } else {
                    &mut steady
                };
                sums.0 += took;
                sums.1 += n as u64;
            }
        }
        // Take what is still in the ring once the producer stopped (or within a second, should it have died).
        let deadline = tsc() + hz;
        while !worker_produced.load(Ordering::Acquire) && tsc() < deadline {
            std::hint::spin_loop();
        }
        while rx.rx_burst(&mut burst) > 0 {
            metered += burst.len() as u64;
            back(&mut back_tx, &mut burst);
        }
        let sched = ThreadSched::now()
            .zip(sched_before)
            .map_or_else(ThreadSched::default, |(after, before)| after.since(&before));
        let seals = worker.counters().windows_sealed;
        worker.finish();
        *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(WorkerSide {
            metered,
            seals,
            longest,
            longest_seal,
            seal_spans,
            stalls,
            short_gaps,
            short_gapped,
            sched,
            after_seal,
            steady,
            own_queue,
        });
        0
    })?;
    let began = Instant::now();
    let cpu_before = CpuTime::of(1);
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    eal.wait(2)?;
    eal.wait(1)?;
    exporter.join()?;
    let cpu = CpuTime::of(1)
        .zip(cpu_before)
        .map_or_else(CpuTime::default, |(after, before)| after.since(&before));
    let side = result
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .context("the worker reported nothing")?;
    let refusals = std::mem::take(&mut *refusals.lock().unwrap_or_else(|e| e.into_inner()));
    // A refusal is the seal's when it happens during a sealing burst or in its aftermath (the ring
    // refills while the worker catches up); otherwise a stall's when the worker was off its CPU up to
    // SEAL_GRACE_MS before; anything else is unexplained.
    let within = |spans: &[(u64, u64)], t: u64, after: u64| {
        spans.iter().any(|&(a, b)| t >= a && t <= b + after)
    };
    let (mut near_seal, mut near_seal_and_stall, mut after_stall, mut other) = (0, 0, 0, 0);
    for &(t, n) in &refusals {
        if within(&side.seal_spans, t, aftermath) {
            near_seal += n;
            if within(&side.stalls, t, grace) {
                near_seal_and_stall += n;
            }
        } else if within(&side.stalls, t, grace) {
            after_stall += n;
        } else {
            other += n;
        }
    }
    let gaps = side.stalls.iter().map(|&(a, b)| b - a);
    let ticks = |t: u64| Duration::from_secs_f64(t as f64 / hz as f64);
    let per_packet = |(cycles, packets): (u64, u64)| cycles as f64 / packets.max(1) as f64;
    Ok(SealReport {
        seconds: began.elapsed().as_secs_f64(),
        seals: side.seals,
        offered: offered.load(Ordering::Relaxed),
        metered: side.metered,
        refused: refused.load(Ordering::Relaxed),
        near_seal,
        near_seal_and_stall,
        after_stall,
        other,
        stalls: side.stalls.len(),
        longest_stall: ticks(gaps.clone().max().unwrap_or(0)),
        stalled: ticks(gaps.sum()),
        short_gaps: side.short_gaps,
        short_gapped: ticks(side.short_gapped),
        sched: side.sched,
        cpu,
        longest_burst: ticks(side.longest),
        longest_seal: ticks(side.longest_seal),
        after_seal_cycles: per_packet(side.after_seal),
        steady_cycles: per_packet(side.steady),
        own_queue: side.own_queue,
        aftermath: ticks(aftermath),
    })
}

/// Transmits the worker's burst to the circuit's return ring, which has room for every mbuf of the circuit; frees
/// whatever it still refused.
fn back(tx: &mut TxQueue, burst: &mut Burst) {
    tx.tx_burst(burst);
    burst.free_all();
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
