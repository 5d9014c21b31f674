//! The CPU's time-stamp counter, for cheap per-burst time (`rte_rdtsc`, `rte_get_tsc_hz`).
//!
//! # Guarantees
//! `tsc()` never fails and works without EAL; `tsc_hz()` is EAL's calibrated frequency, 0 before EAL init.
//! `thread_cpu_time()` (a system call) is the calling thread's CPU time, for benchmarks and tests.

/// The time-stamp counter now (`rte_rdtsc`): CPU cycles, monotonic on a machine with an invariant TSC.
#[inline]
pub fn tsc() -> u64 {
    // The instruction itself where Rust has it, as rte_rdtsc is inline in DPDK's headers: the C shim cost a call
    // per read (0.5% of a worker's samples).
    #[cfg(target_arch = "x86_64")]
    // SAFETY: rdtsc reads the TSC register; no preconditions.
    return unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: reads the TSC register; no preconditions.
    return unsafe { dpdk_sys::fl_rdtsc() };
}

/// TSC ticks per second as calibrated by EAL (`rte_get_tsc_hz`); 0 before EAL is initialised.
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value EAL set at init (0 before); no preconditions.
    unsafe { dpdk_sys::fl_get_tsc_hz() }
}

/// CPU time the calling thread has used (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`), to the nanosecond: the kernel
/// brings a running thread's figure up to date when it is read, unlike `/proc/thread-self/sched`, which moves at
/// the scheduler's tick. A system call: for benchmarks and tests, not for a poll loop. `None` if the call fails.
pub fn thread_cpu_time() -> Option<std::time::Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, initialised out-pointer for the duration of the call.
    let ret = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if ret != 0 {
        return None;
    }
    Some(std::time::Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    ))
}

/// Wall-clock time derived from the TSC: one `rdtsc` and a multiply per reading, no system call, so a worker can
/// read it once per burst. Calibrated once against the system clock; drift over a run is the TSC's (invariant
/// TSCs drift by parts per million).
#[derive(Debug, Clone, Copy)]
pub struct TscClock {
    tsc0: u64,
    wall0_ns: u64,
    /// Nanoseconds per tick, as a 32.32 fixed-point number.
    ns_per_tick_q32: u128,
}

impl TscClock {
    /// Calibrates against the system clock now; `None` before EAL is initialised (no TSC frequency known).
    pub fn calibrate() -> Option<Self> {
        let hz = tsc_hz();
        if hz == 0 {
            return None;
        }
        let wall0_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Some(Self {
            tsc0: tsc(),
            wall0_ns,
            ns_per_tick_q32: (1_000_000_000u128 << 32) / u128::from(hz),
        })
    }

    /// Unix time now, nanoseconds.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.ns_at(tsc())
    }

    /// Unix time, nanoseconds, when the TSC read `tsc_value` (a reading the caller already took).
    #[inline]
    pub fn ns_at(&self, tsc_value: u64) -> u64 {
        let ticks = u128::from(tsc_value.wrapping_sub(self.tsc0));
        self.wall0_ns
            .saturating_add(u64::try_from((ticks * self.ns_per_tick_q32) >> 32).unwrap_or(u64::MAX))
    }

    /// Unix time now, seconds.
    #[inline]
    pub fn now_secs(&self) -> u64 {
        self.now_ns() / 1_000_000_000
    }
}
