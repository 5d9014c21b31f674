//! The DPDK poll loop around the worker's path is quiet too. `standalone::PollLoop`, the body of every
//! worker lcore of `flowlog-vswitch`, runs on a real EAL lcore over a `net_ring` port that the test's thread keeps
//! fed with a generated mix of frames, in 1-second windows on a TSC that the trap moves 100 µs per read, so it
//! seals several windows by swap. On the lcore's thread, from its first poll until the test stops it:
//! - no allocator call and no system call (the watchers of `quiet/`, as in `hot_path.rs`);
//! - **one TSC read per poll**: at most the loop's polls plus the two reads before its first poll.
//!
//! This loop once also read the wall clock (a vDSO `clock_gettime`) on every poll with traffic, for the idle
//! stop; a profile found it, and this test would have.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod dpdk_common;
mod quiet;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use flowlog_vswitch::dpdk::TscClock;
use flowlog_vswitch::standalone::PollLoop;
use quiet::{BURSTS, IDLE, PHASE, Seen, WATCHED, clock, syscalls};

/// TSC ticks the trap adds per read: about 100 µs at a few GHz, so a 1-second window is some 10,000 polls.
const STEP: u64 = 260_000;
/// TSC reads of the loop after which the test stops it: some 4 windows.
const READS: u64 = 45_000;

#[test]
fn the_poll_loop_reads_the_tsc_once_per_poll_and_makes_no_system_call() -> anyhow::Result<()> {
    quiet::log_everything();
    let (frames, enis) = quiet::generated_mix()?;

    let mut ring = dpdk_common::ring_loop("quiet")?;

    let (worker, _exporter_end) = quiet::sealing_worker(enis, 8)?;
    let clock_now = TscClock::calibrate().context("TSC")?;
    let stop = Arc::new(AtomicBool::new(false));
    let supervisor = Arc::new(syscalls::Supervisor::start());
    let result = Arc::new(Mutex::new(None));

    {
        let (stop, supervisor, result) = (stop.clone(), supervisor.clone(), result.clone());
        ring.eal.launch(1, move || {
            // Built here, off the watch: building allocates the loop's context.
            let poll = PollLoop::new(worker, vec![ring.rx], stop, clock_now);
            let outcome = supervisor
                .watch_this_thread()
                .and_then(|()| clock::trap_this_thread(true, STEP))
                .map(|()| {
                    WATCHED.with(|w| w.set(true));
                    PHASE.store(BURSTS, Ordering::SeqCst);
                    // The test's thread sets the phase back to IDLE before it sets `stop`.
                    let counters = poll.run();
                    WATCHED.with(|w| w.set(false));
                    counters
                });
            let _ = clock::trap_this_thread(false, 0);
            *result.lock().unwrap() = Some(outcome);
            0
        })?;
    }

    // Feed the ring until the loop has read the TSC READS times.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut next = frames.iter().map(|(frame, _)| frame.as_slice()).cycle();
    while clock::READS[BURSTS].load(Ordering::SeqCst) < READS {
        ensure!(
            Instant::now() < deadline,
            "the poll loop read the TSC only {} times in 120 s",
            clock::READS[BURSTS].load(Ordering::SeqCst)
        );
        dpdk_common::send(&ring.pool, &mut ring.tx, &mut next);
        std::thread::yield_now();
    }
    PHASE.store(IDLE, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    ring.eal.wait(1)?;
    let (meter, looped) = result
        .lock()
        .unwrap()
        .take()
        .context("the lcore reported nothing")??;
    // The lcore's thread lives on with its filter: the supervisor stays to answer it.
    let seen = Seen::of(BURSTS, &supervisor.recorded());

    let polls = looped.bursts + looped.idle_polls;
    ensure!(
        meter.frames > 10_000 && looped.bursts > 100,
        "{meter:?} {looped:?}"
    );
    ensure!(
        meter.seals_swapped >= 2 && meter.windows_sealed >= 2,
        "several seals by swap: {meter:?}"
    );
    ensure!(
        meter.malformed + meter.non_ip > 0 && meter.vxlan_decapsulated > 0,
        "the mix: {meter:?}"
    );
    ensure!(
        seen.allocations == 0 && seen.syscalls.is_empty(),
        "the poll loop's thread allocated or made system calls (number: calls): {seen:?}"
    );
    ensure!(
        seen.clock_reads > 0 && seen.clock_reads <= polls + 2,
        "{} TSC reads in {polls} polls ({} with frames): more than one per poll",
        seen.clock_reads,
        looped.bursts
    );
    Ok(())
}
