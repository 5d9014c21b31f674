//! The DPDK poll loop takes no lock and makes no atomic read-modify-write of ours per poll. A forked child runs
//! `standalone::PollLoop` (the body of every `flowlog-vswitch` worker lcore) on a real EAL lcore over a
//! `net_ring` port that its main thread keeps fed with a generated mix; the test seizes the lcore's thread with
//! `ptrace`, single-steps it through polls with traffic and decodes every instruction it runs (see
//! `quiet/trace.rs`). None of the locked ones may lie in this binary, which holds our code and the DPDK inline
//! functions our C shim compiles; DPDK's shared objects (the PMD, the mempool's ring) may take theirs, which are
//! counted and printed.
//!
//! Before the loop starts, the lcore spins on an atomic `fetch_add` until the test lets it go: the trace must see
//! that, so a decoder that sees nothing fails. The windows are longer than the test (a seal's `Arc` clone is once
//! per window; `hot_path_locks.rs` prints it).

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod dpdk_common;
mod quiet;

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use flowlog_dataplane::flow::{EniTable, Meter, MeterConfig, SpareTableFallback};
use flowlog_vswitch::dpdk::TscClock;
use flowlog_vswitch::export::link;
use flowlog_vswitch::standalone::PollLoop;
use flowlog_vswitch::worker::Worker;
use quiet::trace::Tracer;

/// What the lcore increments while it waits for the test (the control step).
static SPIN: AtomicU64 = AtomicU64::new(0);
/// Set by the test, in the child's memory, to let the lcore start polling.
static GO: AtomicU64 = AtomicU64::new(0);

/// Instructions of the poll loop traced: a few bursts through this test's unoptimised build of our crate.
const TRACED: u64 = 250_000;

#[test]
fn the_poll_loop_takes_no_lock_and_makes_no_atomic_read_modify_write() -> anyhow::Result<()> {
    let (frames, enis) = quiet::generated_mix()?;
    let mut fds = [0; 2];
    // SAFETY: creates a pipe into `fds`.
    ensure!(unsafe { libc::pipe(fds.as_mut_ptr()) } == 0, "pipe");
    // SAFETY: the child runs its own EAL and never returns into the test harness (it ends in _exit or is
    // killed); the parent holds no lock the child needs (this binary runs one test).
    let pid = unsafe { libc::fork() };
    ensure!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: the pipe's write end, owned by this process from here.
        let tid_out = unsafe { std::fs::File::from_raw_fd(fds[1]) };
        // A panic must not unwind into the test harness of the forked process.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            child(frames, enis, tid_out)
        }));
        let code = match run {
            Ok(Ok(())) => 0,
            Ok(Err(error)) => {
                eprintln!("child: {error:#}");
                2
            }
            Err(_) => 3,
        };
        // SAFETY: leaves the forked test without running its harness.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: the pipe's read end, owned by the parent; the write end is the child's.
    let mut tid_in = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    // SAFETY: closes the parent's copy of the write end, so a child that dies ends the read.
    unsafe { libc::close(fds[1]) };
    let outcome = trace_lcore(&mut tid_in);
    // SAFETY: ends our own child, whatever the trace found.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // Reap the traced thread as well as the child: the child is not gone until its tracer has waited for it.
    loop {
        let mut status = 0;
        // SAFETY: waits for our own children and tracees.
        let reaped = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if reaped == pid || reaped == -1 {
            break;
        }
    }
    outcome
}

/// The parent: seizes the lcore's thread, checks the control step, lets it poll, traces it.
fn trace_lcore(tid_in: &mut std::fs::File) -> anyhow::Result<()> {
    let mut tid = [0u8; 4];
    tid_in
        .read_exact(&mut tid)
        .context("the child never reported its lcore's thread")?;
    let mut tracer = Tracer::seize(i32::from_ne_bytes(tid))?;
    let control = tracer.steps(2_000)?;
    tracer.write_u64(std::ptr::addr_of!(GO) as usize, 1)?;
    tracer.cont()?;
    // Let the loop start and settle into polls with traffic.
    std::thread::sleep(Duration::from_millis(500));
    tracer.interrupt()?;
    let polls = tracer.steps(TRACED)?;
    let places = tracer.places(&polls.locked);
    let by_file = tracer.by_file(&polls);
    let this_binary = std::env::current_exe()?;
    let ours: Vec<_> = places
        .values()
        .filter(|(file, _)| std::path::Path::new(file) == this_binary)
        .collect();
    let mut theirs = std::collections::BTreeMap::<&str, usize>::new();
    for (file, _) in places
        .values()
        .filter(|(file, _)| std::path::Path::new(file) != this_binary)
    {
        *theirs.entry(file.as_str()).or_default() += 1;
    }
    println!(
        "control: {} locked in {} instructions; the poll loop: {} instructions (by file: {by_file:?}), {} \
         locked ({} distinct addresses; in this binary {ours:?}; elsewhere, by file: {theirs:?})",
        control.locked.len(),
        control.instructions,
        polls.instructions,
        polls.locked.len(),
        places.len(),
    );
    ensure!(
        !control.locked.is_empty(),
        "the trace must see the control step's fetch_add"
    );
    ensure!(
        polls.instructions == TRACED,
        "the trace ended early: {polls:?}"
    );
    ensure!(
        ours.is_empty(),
        "locked instructions of ours in the poll loop, at (file, offset): {ours:?}"
    );
    Ok(())
}

/// The child: an EAL whose lcore 1 reports its thread, spins until the parent lets it go, then runs the poll
/// loop; its main thread feeds the port until the parent kills the process.
fn child(
    frames: Vec<quiet::Frame>,
    enis: Arc<EniTable>,
    mut tid_out: std::fs::File,
) -> anyhow::Result<()> {
    let mut ring = dpdk_common::ring_loop("locks")?;

    // Windows longer than the test: no seal while traced.
    let meter = Meter::new(
        MeterConfig {
            when_no_spare_table: SpareTableFallback::SkipData,
            ..MeterConfig::new(u32::MAX, 1 << 16)
        },
        enis,
    )?;
    let (end, exporter_end) = link(64, 3);
    let worker = Worker::new(meter, end);
    let clock = TscClock::calibrate().context("TSC")?;
    let stop = Arc::new(AtomicBool::new(false));
    ring.eal.launch(1, move || {
        let poll = PollLoop::new(worker, vec![ring.rx], stop, clock);
        // SAFETY: the calling thread's id.
        let tid = unsafe { libc::gettid() };
        if tid_out.write_all(&tid.to_ne_bytes()).is_err() {
            return 1;
        }
        while GO.load(Ordering::SeqCst) == 0 {
            SPIN.fetch_add(1, Ordering::SeqCst);
        }
        poll.run();
        0
    })?;

    let mut next = frames.iter().map(|(frame, _)| frame.as_slice()).cycle();
    loop {
        dpdk_common::send(&ring.pool, &mut ring.tx, &mut next);
        std::thread::yield_now();
        // The exporter's end stays alive with the worker.
        std::hint::black_box(&exporter_end);
    }
}
