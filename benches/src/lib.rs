//! Shared helpers of the throughput benchmarks: timing with repetitions, and the machine description every
//! report starts with. The benchmarks themselves are under `benches/benches/`; `scripts/bench` runs them all.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

/// The best and median wall time of `runs` executions of `work`, after one warm-up run.
pub fn measure<T>(runs: usize, mut work: impl FnMut() -> T) -> (Duration, Duration) {
    std::hint::black_box(work());
    let mut times: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(work());
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[0], times[times.len() / 2])
}

/// On-CPU time of the calling thread so far (`se.sum_exec_runtime` of /proc/thread-self/sched, ns precision), if
/// the kernel shows it. On a machine other processes share, per-core throughput is packets / on-CPU time.
pub fn thread_cpu() -> Option<Duration> {
    let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
    let line = sched
        .lines()
        .find(|l| l.starts_with("se.sum_exec_runtime"))?;
    let ms: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    (ms > 0.0).then(|| Duration::from_secs_f64(ms / 1e3))
}

/// The best on-CPU time (wall time where the kernel does not expose it) of `runs` executions of `work`, after
/// one warm-up run.
pub fn measure_on_cpu<T>(runs: usize, mut work: impl FnMut() -> T) -> (Duration, Duration) {
    std::hint::black_box(work());
    let mut times: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let (wall, cpu) = (Instant::now(), thread_cpu());
            std::hint::black_box(work());
            match (cpu, thread_cpu()) {
                (Some(a), Some(b)) if b > a => b - a,
                _ => wall.elapsed(),
            }
        })
        .collect();
    times.sort();
    (times[0], times[times.len() / 2])
}

/// The CPU model and its nominal frequency in GHz, from /proc/cpuinfo (`None` when unknown).
pub fn cpu() -> (String, Option<f64>) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let model = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let ghz = field("cpu MHz")
        .and_then(|v| v.parse::<f64>().ok())
        .map(|mhz| mhz / 1000.0);
    (model, ghz)
}

/// Prints the machine a report was measured on.
pub fn print_machine() {
    let (model, ghz) = cpu();
    // Online CPUs of the machine (not of this thread's affinity, which EAL narrows).
    let cores = std::fs::read_to_string("/proc/cpuinfo")
        .map(|info| info.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    println!(
        "machine: {model}, {cores} cores, {} GHz",
        ghz.map_or("?".to_string(), |g| format!("{g:.2}"))
    );
}

/// One line of a report: packets per second, ns and cycles per packet.
pub fn report_line(name: &str, packets: u64, time: Duration) {
    let secs = time.as_secs_f64();
    let ns = secs * 1e9 / packets as f64;
    let cycles = cpu()
        .1
        .map_or("?".to_string(), |ghz| format!("{:.0}", ns * ghz));
    println!(
        "  {name:<44} {:>8.2} Mpps {:>9.1} ns/pkt {:>7} cycles/pkt  ({:.3} s)",
        packets as f64 / secs / 1e6,
        ns,
        cycles,
        secs
    );
}
