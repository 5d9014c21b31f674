//! `flowlog-vswitch`: the standalone poll-mode program. It initialises EAL from its configuration, configures
//! the ports (a real NIC or a virtual device such as `net_pcap`), runs one worker per worker lcore polling its
//! RX queues in bursts, and streams the records through the exporter thread to the collector.
//!
//! # Threads
//! - Worker lcores: each runs [`poll_loop`] over its RX queues (queues are dealt round-robin to workers).
//! - The exporter thread: created after EAL init, so it first takes itself off the main lcore's CPU, onto the
//!   CPUs the process had minus the worker lcores' ([`exporter_cpus`]; all of them when that leaves none), or on
//!   those `export.cpus` names.
//! - The main thread (main lcore): waits for a signal or for the idle condition, then stops the workers, waits
//!   for the exporter to deliver everything, and prints the counters.
//!
//! # Shutdown
//! SIGINT / SIGTERM, or (`run.stop-when-idle-ms`) every queue idle that long after traffic was seen, which is
//! how a played capture ends. Workers then seal their open window, hand everything to the exporter and finish;
//! the exporter renders and delivers the rest (within `export.shutdown-grace-ms`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flowlog_dataplane::flow::{Action, MeterCounters};

use crate::config::{Capture, Clock, Config};
use crate::dpdk::{
    self, Burst, Eal, Mempool, Port, PortConfig, RxQueue, RxTimestamp, Socket, TscClock,
};
use crate::export::ExportReport;
use crate::instance;
use crate::stats::{CounterBoard, LoopCounters, render_json};
use crate::worker::Worker;

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    /// The workers' counters, summed.
    pub counters: MeterCounters,
    /// The exporter's report.
    pub export: ExportReport,
    /// Packets the ports dropped for lack of descriptors or mbufs (imissed + rx_nombuf).
    pub port_drops: u64,
}

/// Per-worker liveness and counters, written by the worker, read by the main thread.
#[derive(Default)]
#[repr(align(64))]
struct Activity {
    /// TSC reading of the worker's last poll that received frames; 0 = none yet. Published with the counters,
    /// about once a millisecond (not per burst).
    last_rx_tsc: AtomicU64,
    /// The worker's counters, published about once a millisecond.
    board: CounterBoard,
}

/// Runs the program until a signal or the idle condition; returns what it did.
pub fn run(config: Config) -> anyhow::Result<RunReport> {
    if config.ports.is_empty() {
        bail!("no [[ports]] configured");
    }
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())
        .context("installing SIGINT")?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())
        .context("installing SIGTERM")?;

    let eal = Eal::init(&config.eal_args).context("initialising DPDK EAL")?;
    let worker_lcores: Vec<u32> = eal.worker_lcores().collect();
    if worker_lcores.is_empty() {
        bail!(
            "EAL has no worker lcore: give at least two lcores (e.g. `-l 0-1`, or `--lcores=0@(0-1),1@(0-1)`)"
        );
    }
    let pool = Mempool::new(
        &eal,
        "flowlog_rx",
        config.mbufs,
        256,
        Mempool::DEFAULT_DATA_ROOM,
        Socket::Any,
    )
    .context("creating the mbuf pool (under --no-huge each mbuf needs ~4 KiB of -m)")?;

    let mut ports = Vec::with_capacity(config.ports.len());
    let mut queues: Vec<RxQueue> = Vec::new();
    for port_config in &config.ports {
        let mut port = Port::by_name(&eal, &port_config.name)
            .with_context(|| format!("port {}", port_config.name))?;
        let setup = port
            .configure(
                &PortConfig {
                    rx_queues: port_config.rx_queues,
                    rx_descriptors: port_config.rx_descriptors,
                    ..PortConfig::default()
                },
                &pool,
            )
            .with_context(|| format!("configuring port {}", port_config.name))?;
        tracing::info!(port = %port_config.name, ?setup, "port configured");
        ports.push(port);
    }
    let timestamps = match config.clock {
        Clock::Tsc => None,
        Clock::RxTimestamp => Some(ports[0].rx_timestamp().context(
            "clock = \"rx-timestamp\" needs a port that stamps packets (net_pcap does; a NIC needs the offload)",
        )?),
    };

    let workers = worker_lcores
        .len()
        .min(config.ports.iter().map(|p| usize::from(p.rx_queues)).sum());
    let exporter_cpus = exporter_cpus(
        &eal,
        worker_lcores.get(..workers).unwrap_or_default(),
        config.exporter_cpus.as_deref(),
    )?;
    let pipeline = instance::start(&config, workers, exporter_cpus)?;
    if let Capture::Control {
        initial_wait,
        endpoints,
        ..
    } = &config.capture
    {
        if pipeline.exporter.wait_ready(*initial_wait) {
            tracing::info!(?endpoints, "first capture set applied");
        } else {
            tracing::warn!(
                ?endpoints,
                ?initial_wait,
                "no capture set from the control plane yet; capturing nothing until one arrives"
            );
        }
    }

    for port in &mut ports {
        port.start()
            .with_context(|| format!("starting port {}", port.name()))?;
    }
    for port in &ports {
        for queue in 0..config
            .ports
            .iter()
            .find(|p| p.name == port.name())
            .map_or(1, |p| p.rx_queues)
        {
            queues.push(port.rx_queue(queue)?);
        }
    }
    let mut per_worker: Vec<Vec<RxQueue>> = (0..workers).map(|_| Vec::new()).collect();
    for (index, queue) in queues.into_iter().enumerate() {
        per_worker[index % workers].push(queue);
    }

    let tsc_clock = TscClock::calibrate().context("EAL gave no TSC frequency")?;
    let activity: Arc<Vec<Activity>> =
        Arc::new((0..workers).map(|_| Activity::default()).collect());
    let results = Arc::new(parking_lot::Mutex::new(Vec::<MeterCounters>::new()));
    for (index, ((worker, rx), lcore)) in pipeline
        .workers
        .into_iter()
        .zip(per_worker)
        .zip(worker_lcores.iter().copied())
        .enumerate()
    {
        let ctx = LoopContext {
            stop: stop.clone(),
            activity: activity.clone(),
            index,
            clock: tsc_clock,
            timestamps,
        };
        let results = results.clone();
        eal.launch(lcore, move || {
            let (counters, _) = poll_loop(worker, rx, ctx);
            results.lock().push(counters);
            0
        })
        .with_context(|| format!("launching worker {index} on lcore {lcore}"))?;
    }
    tracing::info!(workers, "capturing");

    supervise(&config, &stop, &activity, &ports);
    stop.store(true, Ordering::Release);
    for (lcore, result) in eal.wait_all() {
        if let Err(error) = result {
            tracing::error!(lcore, %error, "worker failed");
        }
    }
    let export = pipeline.exporter.join()?;
    let mut counters = MeterCounters::default();
    for c in results.lock().iter() {
        counters.add(c);
    }
    let mut port_drops = 0;
    for port in &mut ports {
        if let Ok(stats) = port.stats() {
            port_drops += stats.imissed + stats.rx_nombuf;
        }
        if let Err(error) = port.stop() {
            tracing::warn!(port = %port.name(), %error, "stopping port");
        }
    }
    drop(ports);
    drop(pool);
    if let Err(error) = eal.cleanup() {
        tracing::warn!(%error, "EAL cleanup");
    }
    Ok(RunReport {
        counters,
        export,
        port_drops,
    })
}

/// Waits on the main thread until a signal arrives or, with `stop-when-idle`, every worker has seen traffic and
/// then none for that long. Meanwhile it logs the live counters and writes them to the stats file.
fn supervise(config: &Config, stop: &AtomicBool, activity: &[Activity], ports: &[Port]) {
    let mut next_stats = Instant::now() + config.stats_interval;
    let mut last_frames = 0u64;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(20));
        if Instant::now() >= next_stats {
            next_stats += config.stats_interval;
            last_frames = report_stats(config, activity, ports, last_frames);
        }
        if let Some(idle) = config.stop_when_idle {
            // The TSC is the same on every core (DPDK's assumption too).
            let newest = activity
                .iter()
                .map(|a| a.last_rx_tsc.load(Ordering::Relaxed))
                .max()
                .unwrap_or(0);
            let idle_ticks = dpdk::tsc_hz().saturating_mul(idle.as_millis() as u64) / 1000;
            if newest > 0 && dpdk::tsc().saturating_sub(newest) >= idle_ticks {
                tracing::info!(?idle, "every queue idle: stopping");
                return;
            }
        }
    }
    tracing::info!("signal received: stopping");
}

/// Logs one line of live counters and, when configured, rewrites the stats file; returns the frames so far.
fn report_stats(config: &Config, activity: &[Activity], ports: &[Port], last_frames: u64) -> u64 {
    let workers: Vec<_> = activity.iter().map(|a| a.board.snapshot()).collect();
    let total = |name: &str| -> u64 {
        workers
            .iter()
            .flat_map(|w| w.iter())
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .sum()
    };
    let (frames, cycles, cycle_frames) = (total("frames"), total("cycles"), total("cycle_frames"));
    let mut port_counters = [0u64; 3];
    for port in ports {
        if let Ok(s) = port.stats() {
            port_counters[0] += s.ipackets;
            port_counters[1] += s.imissed;
            port_counters[2] += s.rx_nombuf;
        }
    }
    tracing::info!(
        frames,
        rate_pps = (frames - last_frames) as f64 / config.stats_interval.as_secs_f64(),
        cycles_per_packet = cycles.checked_div(cycle_frames).unwrap_or(0),
        attributed = total("attributed"),
        malformed = total("malformed"),
        skipped = total("table_full_packets") + total("refused_packets"),
        port_imissed = port_counters[1],
        "counters"
    );
    if let Some(path) = &config.stats_file {
        let json = render_json(
            &workers,
            &[
                ("port_ipackets", port_counters[0]),
                ("port_imissed", port_counters[1]),
                ("port_rx_nombuf", port_counters[2]),
            ],
        );
        let tmp = path.with_extension("tmp");
        if let Err(error) =
            std::fs::write(&tmp, json + "\n").and_then(|()| std::fs::rename(&tmp, path))
        {
            tracing::warn!(path = %path.display(), %error, "writing the stats file");
        }
    }
    frames
}

/// What a worker's poll loop needs besides its worker and queues.
struct LoopContext {
    stop: Arc<AtomicBool>,
    activity: Arc<Vec<Activity>>,
    index: usize,
    clock: TscClock,
    timestamps: Option<RxTimestamp>,
}

/// The CPUs for the exporter (and the threads it starts). `configured` (`export.cpus`) when given: checked
/// usable, with a warning when a worker lcore runs on one of them. Otherwise those the process had before EAL,
/// minus the CPUs of the worker lcores, so that rendering and sending a window never preempts a worker on a host
/// whose worker cores are not isolated; `None` (every CPU the process had) when that leaves none, e.g. floating
/// lcores `--lcores=0@(0-1),1@(0-1)` on a two-CPU machine, or when a worker lcore's CPUs cannot be read.
fn exporter_cpus(
    eal: &Eal,
    workers: &[u32],
    configured: Option<&[usize]>,
) -> anyhow::Result<Option<Vec<usize>>> {
    let mut taken = std::collections::BTreeSet::new();
    let mut unknown = false;
    for &lcore in workers {
        match eal.lcore_cpus(lcore) {
            Ok(cpus) => taken.extend(cpus),
            Err(error) => {
                tracing::warn!(lcore, %error, "cannot read a worker lcore's CPUs; the exporter may run on them");
                unknown = true;
            }
        }
    }
    if let Some(cpus) = configured {
        dpdk::check_cpus_usable(cpus)
            .with_context(|| format!("export.cpus: the exporter cannot run on CPUs {cpus:?}"))?;
        let shared: Vec<&usize> = cpus.iter().filter(|cpu| taken.contains(cpu)).collect();
        if shared.is_empty() {
            tracing::info!(?cpus, worker_cpus = ?taken, "exporter placed on the configured CPUs");
        } else {
            tracing::warn!(
                ?cpus,
                ?shared,
                "export.cpus names CPUs of worker lcores: the exporter may preempt a worker there"
            );
        }
        return Ok(Some(cpus.to_vec()));
    }
    if unknown {
        return Ok(None);
    }
    let free: Vec<usize> = dpdk::cpus_before_eal()
        .into_iter()
        .filter(|cpu| !taken.contains(cpu))
        .collect();
    if free.is_empty() {
        tracing::warn!(
            worker_cpus = ?taken,
            "every CPU runs a worker lcore: the exporter shares them and may preempt a worker"
        );
        return Ok(None);
    }
    tracing::info!(cpus = ?free, worker_cpus = ?taken, "exporter placed off the worker lcores' CPUs");
    Ok(Some(free))
}

/// A worker lcore's loop. Per poll: one TSC read (the time of its bursts, the end of the previous poll's cost,
/// and the publication deadline), one command-ring and one table-return-ring read, then per RX queue a burst
/// through the meter. About once a millisecond it publishes the counters and the time of its last traffic. The
/// cycles it records for a poll's frames run from that poll's TSC read to the next one's: receiving, metering
/// and freeing them.
fn poll_loop(
    mut worker: Worker,
    mut queues: Vec<RxQueue>,
    ctx: LoopContext,
) -> (MeterCounters, LoopCounters) {
    let mut rx = Burst::new();
    if ctx.timestamps.is_none() {
        worker.start(ctx.clock.now_secs());
    }
    let activity = &ctx.activity[ctx.index];
    let publish_every = (dpdk::tsc_hz() / 1000).max(1);
    let mut poll_tsc = dpdk::tsc();
    let mut next_publish = poll_tsc + publish_every;
    // Frames of the previous poll, and the TSC of the last poll that received any.
    let mut previous = 0u64;
    let mut last_rx_tsc = 0u64;
    let mut looped = LoopCounters::default();
    while !ctx.stop.load(Ordering::Relaxed) {
        let now_tsc = dpdk::tsc();
        if previous > 0 {
            worker.record_cycles(now_tsc.wrapping_sub(poll_tsc), previous);
        }
        poll_tsc = now_tsc;
        let now = ctx.clock.ns_at(now_tsc) / 1_000_000_000;
        worker.poll_commands();
        let mut received = 0;
        for queue in &mut queues {
            let n = queue.rx_burst(&mut rx);
            if n == 0 {
                continue;
            }
            received += n;
            {
                // One meter call per run of frames with the same second (all of them on the TSC clock).
                let mut runs = worker.runs();
                for mbuf in rx.iter() {
                    let secs = match &ctx.timestamps {
                        Some(ts) => mbuf
                            .rx_timestamp_ns(ts)
                            .map_or(now, |ns| ns / 1_000_000_000),
                        None => now,
                    };
                    runs.push(secs, mbuf.data(), mbuf.pkt_len() as usize, Action::Accept);
                }
                runs.finish();
            }
            rx.free_all();
            looped.bursts += 1;
        }
        previous = received as u64;
        if received > 0 {
            last_rx_tsc = now_tsc;
        } else {
            looped.idle_polls += 1;
            // Idle: let the clock seal ended windows (live clock only; a packet clock advances with packets).
            if ctx.timestamps.is_none() && looped.idle_polls.is_multiple_of(64) {
                worker.advance(now);
            }
            std::hint::spin_loop();
        }
        if now_tsc >= next_publish {
            activity.board.publish(worker.counters(), &looped);
            activity.last_rx_tsc.store(last_rx_tsc, Ordering::Relaxed);
            next_publish = now_tsc + publish_every;
        }
    }
    drop(rx);
    let counters = worker.finish();
    activity.board.publish(&counters, &looped);
    activity.last_rx_tsc.store(last_rx_tsc, Ordering::Relaxed);
    (counters, looped)
}

/// One worker's poll loop, the body of each worker lcore of [`run`], for a host that runs it on a thread of its
/// own, and for the tests that watch what the loop does per poll: build it (which allocates its context), then
/// [`PollLoop::run`] it on the thread that polls.
pub struct PollLoop {
    worker: Worker,
    queues: Vec<RxQueue>,
    ctx: LoopContext,
}

impl PollLoop {
    /// A loop of `worker` over `queues` on the live TSC clock, until `stop` is set.
    pub fn new(
        worker: Worker,
        queues: Vec<RxQueue>,
        stop: Arc<AtomicBool>,
        clock: TscClock,
    ) -> PollLoop {
        PollLoop {
            worker,
            queues,
            ctx: LoopContext {
                stop,
                activity: Arc::new(vec![Activity::default()]),
                index: 0,
                clock,
                timestamps: None,
            },
        }
    }

    /// Polls until `stop` is set, then finishes the worker (its sealed windows handed to the exporter). Returns
    /// the meter's and the loop's final counters.
    pub fn run(self) -> (MeterCounters, LoopCounters) {
        poll_loop(self.worker, self.queues, self.ctx)
    }
}
