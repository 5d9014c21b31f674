//! The worker's per-packet path is quiet: from its first frame, metering a generated mix of frames (VLAN and QinQ
//! tags, IPv4 and IPv6, fragments, VXLAN, malformed and non-IP frames) in bursts, across window boundaries that
//! seal by swapping in a spare table and push the sealed window into the exporter's ring, with the meter's seal
//! rehearsals, the worker's thread makes
//! - no call to the allocator (a counting global allocator);
//! - no system call, so no blocking lock, sleep, log line (a subscriber writing every level to stderr is
//!   installed) or other I/O: a seccomp filter on that thread alone hands each of its system calls to a supervisor
//!   thread, which records it and lets it run;
//! - no clock read: with `PR_SET_TSC` the thread's `rdtsc` and `rdtscp` fault, and a handler counts and emulates
//!   them (the vDSO's clocks read the TSC; a clock source without it takes a system call, seen above).
//!
//! The time comes from the caller, one second per burst, as the poll loop takes it from one TSC read per burst.
//! A control step on the same thread first reads the clock, makes a system call and allocates, and must be seen
//! doing all three, so a watch that sees nothing fails. The watchers are in `quiet/`; `hot_path_poll_loop.rs`
//! watches the DPDK poll loop around this path the same way.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::sync::atomic::Ordering;

use quiet::{BURSTS, CONTROL, IDLE, PHASE, Seen, WATCHED, clock, syscalls};

mod quiet;

#[test]
fn metering_and_sealing_allocate_nothing_make_no_system_call_and_read_no_clock() {
    quiet::log_everything();
    let (frames, enis) = quiet::generated_mix().unwrap();
    let (mut worker, _exporter_end) = quiet::sealing_worker(enis, 4).unwrap();

    worker.start(0);
    let before = worker.counters().clone();

    let supervisor = syscalls::Supervisor::start();
    let worker = std::thread::scope(|s| {
        s.spawn(|| {
            supervisor.watch_this_thread().unwrap();
            clock::trap_this_thread(true, 1_000).unwrap();
            WATCHED.with(|w| w.set(true));

            PHASE.store(CONTROL, Ordering::SeqCst);
            std::hint::black_box(std::time::Instant::now());
            std::thread::yield_now();
            drop(std::hint::black_box(Vec::<u8>::with_capacity(64)));

            PHASE.store(BURSTS, Ordering::SeqCst);
            for secs in 0..=4 {
                // One pass over the frames per second; each later second seals the one before.
                quiet::meter(&mut worker, &frames, secs);
            }
            PHASE.store(IDLE, Ordering::SeqCst);

            WATCHED.with(|w| w.set(false));
            clock::trap_this_thread(false, 0).unwrap();
            worker
        })
        .join()
        .unwrap()
    });
    let syscalls = supervisor.finish().unwrap();
    let control = Seen::of(CONTROL, &syscalls);
    let bursts = Seen::of(BURSTS, &syscalls);

    assert!(
        control.allocations > 0 && control.clock_reads > 0 && !control.syscalls.is_empty(),
        "the watch must see the control step's allocation, clock read and system call: {control:?}"
    );
    let after = worker.counters();
    assert_eq!(after.frames - before.frames, 5 * frames.len() as u64);
    assert!(after.ip_packets - before.ip_packets > 0);
    assert!(
        after.malformed + after.non_ip > before.malformed + before.non_ip,
        "the mix holds frames that yield no packet"
    );
    assert!(
        after.fragments_first > before.fragments_first
            && after.vxlan_decapsulated > before.vxlan_decapsulated
    );
    assert_eq!(
        after.seals_swapped - before.seals_swapped,
        4,
        "four seals by swap"
    );
    assert_eq!(after.windows_sealed - before.windows_sealed, 4);
    assert!(after.seal_rehearsals - before.seal_rehearsals >= 4);
    assert!(
        bursts.allocations == 0 && bursts.clock_reads == 0 && bursts.syscalls.is_empty(),
        "the worker's thread allocated, read the clock or made system calls (number: calls): {bursts:?}"
    );
}
