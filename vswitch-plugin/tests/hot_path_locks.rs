//! The worker's per-packet path takes no lock and makes no atomic read-modify-write: every instruction its
//! thread runs while metering bursts of a generated mix (VLAN and QinQ tags, IPv4 and IPv6, fragments, VXLAN,
//! malformed and non-IP frames; new flows and known ones), one of them running the seal rehearsal the meter runs
//! every 256 bursts, is single-stepped under `ptrace` and decoded, and none carries a `lock` prefix or is an
//! `xchg` with memory (implicitly locked). On x86-64 every lock acquisition (`std`, `parking_lot`, a spin lock),
//! every atomic read-modify-write (`fetch_add`, `swap`, `compare_exchange`) and every reference count change of
//! an `Arc` is such an instruction; a relaxed or release store and an acquire load are plain moves, which this
//! cannot tell from other memory accesses.
//!
//! The traced process is a `fork` of the test, holding the worker built and warmed by the parent; it stops
//! itself (`SIGSTOP`) around each step. A control step first makes one atomic `fetch_add` on a shared counter,
//! and must be seen, so a decoder that sees nothing fails. A burst that crosses a window boundary (a seal: table
//! swap, push into the exporter's ring) is traced too and its count printed, not asserted: a seal is once per
//! window, not per packet. `hot_path.rs` and `hot_path_poll_loop.rs` show the same path free of allocations,
//! system calls and clock reads.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::sync::atomic::{AtomicU64, Ordering};

use flowlog_dataplane::wire::{Family, parse, parse_common};

mod quiet;

use quiet::trace::{Tracer, is_locked};

/// Frames metered before the fork: their flows are known in the traced bursts.
const WARM_FRAMES: usize = 4_096;
/// Frames metered under the trace, in bursts of 32. Single-stepping costs tens of microseconds per instruction
/// here, and this test's build runs the worker's own crate unoptimised (about 3,000 instructions per frame).
const TRACED_FRAMES: usize = 64;

/// Bursts between two of the meter's seal rehearsals (`REHEARSAL_BURSTS` in the meter; the test checks it).
const REHEARSAL_BURSTS: usize = 256;

/// What the control step increments.
static SHARED: AtomicU64 = AtomicU64::new(0);

#[test]
fn metering_takes_no_lock_and_makes_no_atomic_read_modify_write() {
    let (frames, enis) = quiet::generated_mix().unwrap();
    let (mut worker, _exporter_end) = quiet::sealing_worker(enis, 4).unwrap();
    let (warm, rest) = frames.split_at(WARM_FRAMES);
    let start = varied_bursts(rest);
    let traced = &rest[start..start + TRACED_FRAMES];
    let sealing = &rest[start + TRACED_FRAMES..start + TRACED_FRAMES + 8];
    worker.start(0);
    quiet::meter(&mut worker, warm, 0);
    quiet::meter(&mut worker, &rest[..start], 0);
    // Position the meter one burst before a seal rehearsal, so that the first traced burst runs one: bursts of
    // one frame until a rehearsal, then one burst short of the next.
    let mut one = warm.iter().cycle();
    let rehearsals = worker.counters().seal_rehearsals;
    while worker.counters().seal_rehearsals == rehearsals {
        quiet::meter(&mut worker, std::slice::from_ref(one.next().unwrap()), 0);
    }
    for _ in 1..REHEARSAL_BURSTS {
        quiet::meter(&mut worker, std::slice::from_ref(one.next().unwrap()), 0);
    }

    // SAFETY: the child only meters with what is already built (the other hot-path tests show that this
    // allocates nothing and makes no system call), stops itself and exits without unwinding.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let stop = || {
            // SAFETY: plain system calls on this process.
            unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
        };
        // SAFETY: asks to be traced by the parent, which waits for the first stop.
        if unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) } != 0 {
            // SAFETY: leaves the forked test without running its harness.
            unsafe { libc::_exit(2) };
        }
        // A panic must not unwind into the test harness of the forked process.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            stop();
            SHARED.fetch_add(1, Ordering::SeqCst);
            stop();
            quiet::meter(&mut worker, traced, 0);
            stop();
            quiet::meter(&mut worker, sealing, 1);
            stop();
        }));
        // SAFETY: as above.
        unsafe { libc::_exit(if run.is_ok() { 0 } else { 3 }) };
    }

    let mut tracer = Tracer::child(pid).unwrap();
    let control = tracer.step_to_stop().unwrap();
    let bursts = tracer.step_to_stop().unwrap();
    let seal = tracer.step_to_stop().unwrap();
    // Read the child's mappings while it is still stopped.
    let (seal_places, burst_places) = (tracer.places(&seal.locked), tracer.places(&bursts.locked));
    tracer.cont().unwrap();
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the traced child did not exit cleanly (wait status {status:#x})"
    );

    // The parent's worker is where the fork left the child's: its first burst of the traced frames rehearses.
    let before = worker.counters().seal_rehearsals;
    quiet::meter(&mut worker, &traced[..32], 0);
    assert_eq!(
        worker.counters().seal_rehearsals,
        before + 1,
        "the traced bursts must include a seal rehearsal"
    );

    let packets = TRACED_FRAMES as u64;
    println!(
        "control step: {} instructions, {} locked; {packets} frames ({}) in {} bursts: {} instructions ({} per \
         frame), {} locked; a burst of 8 frames that seals: {} instructions, {} locked {:?}",
        control.instructions,
        control.locked.len(),
        Kinds::of(traced),
        TRACED_FRAMES.div_ceil(32),
        bursts.instructions,
        bursts.instructions / packets,
        bursts.locked.len(),
        seal.instructions,
        seal.locked.len(),
        seal_places,
    );
    assert!(
        !control.locked.is_empty(),
        "the trace must see the control step's atomic fetch_add"
    );
    assert!(
        bursts.instructions > 100 * packets,
        "the trace must see the bursts' work"
    );
    assert!(
        bursts.locked.is_empty(),
        "locked instructions while metering, at {burst_places:?}"
    );
}

/// The kinds of frames the trace must cover: the common shape and the full parser's (IPv6, VXLAN, fragments,
/// discards).
#[derive(Debug, Default, PartialEq)]
struct Kinds {
    common: usize,
    ipv6: usize,
    vxlan: usize,
    fragments: usize,
    discarded: usize,
}

impl Kinds {
    fn of(frames: &[quiet::Frame]) -> Kinds {
        let mut kinds = Kinds::default();
        for (frame, wire_len) in frames {
            if parse_common(frame, *wire_len).is_some() {
                kinds.common += 1;
                continue;
            }
            match parse(frame, *wire_len) {
                Ok(p) => {
                    kinds.ipv6 += usize::from(p.family == Family::V6);
                    kinds.vxlan += usize::from(p.vni.is_some());
                    kinds.fragments += usize::from(p.fragment.is_some());
                }
                Err(_) => kinds.discarded += 1,
            }
        }
        kinds
    }

    fn covers_all(&self) -> bool {
        [
            self.common,
            self.ipv6,
            self.vxlan,
            self.fragments,
            self.discarded,
        ]
        .iter()
        .all(|&n| n > 0)
    }
}

impl std::fmt::Display for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of the common shape, {} IPv6, {} VXLAN, {} fragments, {} discarded",
            self.common, self.ipv6, self.vxlan, self.fragments, self.discarded
        )
    }
}

/// The start (a multiple of 32) of the first `TRACED_FRAMES` frames of `frames` that hold every kind.
fn varied_bursts(frames: &[quiet::Frame]) -> usize {
    (0..frames.len().saturating_sub(TRACED_FRAMES + 8))
        .step_by(32)
        .find(|&start| Kinds::of(&frames[start..start + TRACED_FRAMES]).covers_all())
        .expect("the generated mix has every kind of frame within some 64 frames")
}

#[test]
fn the_decoder_tells_locked_instructions() {
    // lock xadd %rax,(%rdx); lock cmpxchg %rcx,(%rdi); xchg %rax,(%rdi); lock incl 0x8(%rsp) with an
    // operand-size prefix before it.
    for code in [
        &[0xf0, 0x48, 0x0f, 0xc1, 0x02][..],
        &[0xf0, 0x48, 0x0f, 0xb1, 0x0f],
        &[0x48, 0x87, 0x07],
        &[0x66, 0xf0, 0xff, 0x44, 0x24, 0x08],
    ] {
        assert!(is_locked(code), "{code:x?}");
    }
    // xchg %rax,%rcx; mov %rax,(%rdi); add %rax,(%rdi); a REX.W prefix alone; nothing.
    for code in [
        &[0x48, 0x87, 0xc1][..],
        &[0x48, 0x89, 0x07],
        &[0x48, 0x01, 0x07],
        &[0x48],
        &[],
    ] {
        assert!(!is_locked(code), "{code:x?}");
    }
}
