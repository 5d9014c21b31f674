//! The CPU's time-stamp counter, for cheap per-burst time (`rte_rdtsc`, `rte_get_tsc_hz`).
//!
//! # Guarantees
//! `tsc()` never fails and works without EAL; `tsc_hz()` is EAL's calibrated frequency, 0 before EAL init.

/// The time-stamp counter now (`rte_rdtsc`): CPU cycles, monotonic on a machine with an invariant TSC.
#[inline]
pub fn tsc() -> u64 {
    // SAFETY: reads the TSC register; no preconditions.
    unsafe { dpdk_sys::fl_rdtsc() }
}

/// TSC ticks per second as calibrated by EAL (`rte_get_tsc_hz`); 0 before EAL is initialised.
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value EAL set at init (0 before); no preconditions.
    unsafe { dpdk_sys::fl_get_tsc_hz() }
}
