//! Cache hints for the hot path.
//!
//! A prefetch starts loading a cache line and lets the CPU go on: unlike a load, it retires at once, so a loop
//! can issue one per packet of a burst and overlap their misses without waiting on any. `core::arch`'s
//! `_mm_prefetch` takes a raw pointer and is `unsafe` to call, and this crate forbids `unsafe`; `safe_arch`
//! wraps it as a safe function of a reference (a prefetch cannot fault and changes no result). Elsewhere than
//! x86-64 the hint is a no-op.

/// Starts loading the cache line holding `value` into every cache level, without waiting for it.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    safe_arch::prefetch_t0(value);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = value;
}
