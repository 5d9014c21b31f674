//! Shared helpers of the throughput benchmarks: timing with repetitions, and the machine description every
//! report starts with. The benchmarks themselves are under `benches/benches/`; `scripts/bench` runs them all.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowlog_dataplane::flow::{Eni, EniTable, MacAddr};

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

/// On-CPU time of the calling thread so far (`CLOCK_THREAD_CPUTIME_ID`, to the nanosecond; `/proc/thread-self/sched`
/// moved only at the scheduler's 4 ms tick here), if the kernel gives it. On a machine other processes share,
/// per-core throughput is packets / on-CPU time.
pub fn thread_cpu() -> Option<Duration> {
    flowlog_vswitch::dpdk::thread_cpu_time().filter(|t| !t.is_zero())
}

/// The scheduler's view of the calling thread so far: time on a CPU, time runnable but waiting for one (the guest
/// scheduler ran something else), and the involuntary context switches.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadSched {
    /// On a CPU (`/proc/thread-self/schedstat`, first field).
    pub on_cpu: Duration,
    /// Runnable but waiting on a run queue (second field).
    pub waiting: Duration,
    /// `nonvoluntary_ctxt_switches` of `/proc/thread-self/status`.
    pub preemptions: u64,
}

impl ThreadSched {
    /// The calling thread's figures, if the kernel shows them.
    pub fn now() -> Option<ThreadSched> {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().ok());
        let (on_cpu, waiting) = (fields.next()??, fields.next()??);
        let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
        let preemptions = status
            .lines()
            .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))?
            .trim()
            .parse()
            .ok()?;
        Some(ThreadSched {
            on_cpu: Duration::from_nanos(on_cpu),
            waiting: Duration::from_nanos(waiting),
            preemptions,
        })
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &ThreadSched) -> ThreadSched {
        ThreadSched {
            on_cpu: self.on_cpu.saturating_sub(earlier.on_cpu),
            waiting: self.waiting.saturating_sub(earlier.waiting),
            preemptions: self.preemptions.saturating_sub(earlier.preemptions),
        }
    }
}

/// Time one CPU spent in interrupts, soft interrupts and stolen by the hypervisor (`/proc/stat`, in the kernel's
/// clock ticks, converted at 100 per second: coarse, 10 ms steps).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    /// Hard interrupts.
    pub irq: Duration,
    /// Soft interrupts.
    pub softirq: Duration,
    /// Stolen: the vCPU was runnable and the hypervisor ran something else.
    pub steal: Duration,
}

impl CpuTime {
    /// CPU `cpu`'s figures so far, if `/proc/stat` shows them.
    pub fn of(cpu: usize) -> Option<CpuTime> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let name = format!("cpu{cpu}");
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let at = |i: usize| ticks.get(i).map(|&t| Duration::from_millis(t * 10));
        // user nice system idle iowait irq softirq steal
        Some(CpuTime {
            irq: at(5)?,
            softirq: at(6)?,
            steal: at(7)?,
        })
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            irq: self.irq.saturating_sub(earlier.irq),
            softirq: self.softirq.saturating_sub(earlier.softirq),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }
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

/// Bytes of the outer headers [`vxlan_header`] writes: Ethernet 14, IPv4 20, UDP 8, VXLAN 8.
pub const VXLAN_HEADERS: usize = 50;

/// The outer headers that put a frame of `inner_wire_len` bytes on the wire inside VXLAN over IPv4 (UDP to 4789,
/// I flag, VNI 7) between two hypervisors' MACs.
pub fn vxlan_header(inner_wire_len: usize) -> anyhow::Result<[u8; VXLAN_HEADERS]> {
    let ip_len = u16::try_from(20 + 8 + 8 + inner_wire_len)?;
    let mut h = [0u8; VXLAN_HEADERS];
    h[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xa1]);
    h[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa2]);
    h[12..14].copy_from_slice(&[0x08, 0x00]);
    h[14] = 0x45;
    h[16..18].copy_from_slice(&ip_len.to_be_bytes());
    h[22] = 64;
    h[23] = 17;
    h[26..30].copy_from_slice(&[192, 168, 0, 1]);
    h[30..34].copy_from_slice(&[192, 168, 0, 2]);
    h[34..36].copy_from_slice(&49_152u16.to_be_bytes());
    h[36..38].copy_from_slice(&4789u16.to_be_bytes());
    h[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    h[42] = 0x08;
    h[48] = 7;
    Ok(h)
}

/// ENIs of the synthetic traffic the table, worker and instruction benchmarks meter.
pub const SYNTHETIC_ENIS: u32 = 16;

/// The MAC of synthetic ENI `i` (below 256).
pub fn synthetic_eni_mac(i: u32) -> MacAddr {
    MacAddr([2, 0, 0, 0xe1, 0, i as u8])
}

/// The [`SYNTHETIC_ENIS`] ENIs, `eni-00000` on, in one VPC.
pub fn synthetic_enis() -> Vec<Eni> {
    (0..SYNTHETIC_ENIS)
        .map(|i| {
            Eni::new(
                format!("eni-{i:05}"),
                synthetic_eni_mac(i),
                format!("i-{i}"),
                "vsw-1",
                "vpc-1",
                "100000000001",
            )
        })
        .collect()
}

/// [`synthetic_enis`] as a meter's ENI table.
pub fn synthetic_eni_table() -> anyhow::Result<Arc<EniTable>> {
    Ok(Arc::new(EniTable::from_enis(synthetic_enis())?))
}

/// The MAC the synthetic frames are sent to: a gateway's, no ENI's.
pub const SYNTHETIC_GATEWAY_MAC: [u8; 6] = [0x02, 0xff, 0xff, 0, 0, 1];

/// Writes the Ethernet header of a synthetic frame from ENI `eni % SYNTHETIC_ENIS` to the gateway, carrying
/// `ethertype`, into the first 14 bytes of `frame`.
pub fn synthetic_ethernet(frame: &mut [u8], eni: u32, ethertype: u16) {
    if let Some(h) = frame.get_mut(..14) {
        h[0..6].copy_from_slice(&SYNTHETIC_GATEWAY_MAC);
        h[6..12].copy_from_slice(&synthetic_eni_mac(eni % SYNTHETIC_ENIS).0);
        h[12..14].copy_from_slice(&ethertype.to_be_bytes());
    }
}

/// A 64-byte IPv4/TCP frame (ACK) from synthetic ENI `eni % SYNTHETIC_ENIS` to the internet, of flow 0:
/// [`set_flow`] writes another flow into it.
pub fn ipv4_tcp_template(eni: u32) -> [u8; 64] {
    let mut f = [0u8; 64];
    synthetic_ethernet(&mut f, eni, 0x0800);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, (eni % SYNTHETIC_ENIS) as u8, 10]);
    f[30] = 52;
    f[36..38].copy_from_slice(&443u16.to_be_bytes());
    f[46] = 0x50;
    f[47] = 0x10;
    f
}

/// Writes flow `id` into a frame made by [`ipv4_tcp_template`]: the low three bytes of the destination address
/// (bytes 31..34) and the source port (34..36).
#[inline]
pub fn set_flow(frame: &mut [u8], id: u32) {
    if let Some(bytes) = frame.get_mut(31..36) {
        bytes[0] = (id >> 24) as u8;
        bytes[1] = (id >> 16) as u8;
        bytes[2] = (id >> 8) as u8;
        bytes[3] = 0x80 | (id as u8 >> 1);
        bytes[4] = id as u8;
    }
}
