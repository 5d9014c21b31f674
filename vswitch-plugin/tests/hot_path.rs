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
//! doing all three, so a watch that sees nothing fails. One test per binary: the counting allocator is this
//! process's global allocator and the fault handler is process-wide.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use flowlog_dataplane::flow::{Action, EniTable, Meter, MeterConfig, SpareTableFallback};
use flowlog_vswitch::config::load_enis;
use flowlog_vswitch::export::link;
use flowlog_vswitch::pcap::PcapReader;
use flowlog_vswitch::worker::Worker;

/// What the watched thread is doing: nothing counted, the control step, or the worker's bursts.
const IDLE: usize = 0;
const CONTROL: usize = 1;
const BURSTS: usize = 2;

/// The watched thread's current phase; only that thread writes it.
static PHASE: AtomicUsize = AtomicUsize::new(IDLE);

/// Allocator calls of the watched thread, per phase.
static ALLOCS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

thread_local! {
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, counting the calls made by the watched thread.
struct Counting;

fn note_call() {
    if WATCHED.with(Cell::get) {
        ALLOCS[PHASE.load(Ordering::SeqCst)].fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, under the same contract; counting touches
// only atomics and a const-initialised thread-local, none of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_call();
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_call();
        // SAFETY: the caller's contract for `dealloc`, passed on (`ptr` came from `System` through `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_call();
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_call();
        // SAFETY: the caller's contract for `realloc`, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The watched thread's system calls, handed over by a seccomp filter to a supervisor thread.
mod syscalls {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use super::PHASE;

    /// A supervisor thread: it answers every system call of the watched thread with "run it", and records the
    /// phase and number of each. The watched thread waits in each system call until the supervisor has read
    /// [`PHASE`], so no call is put in the wrong phase.
    pub struct Supervisor {
        listener: Arc<AtomicI32>,
        stop: Arc<AtomicBool>,
        seen: Arc<Mutex<Vec<(usize, i32)>>>,
        thread: JoinHandle<std::io::Result<()>>,
    }

    impl Supervisor {
        /// Starts the supervisor; it waits for [`Supervisor::watch_this_thread`]'s listener.
        pub fn start() -> Supervisor {
            let listener = Arc::new(AtomicI32::new(-1));
            let stop = Arc::new(AtomicBool::new(false));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let thread = {
                let (listener, stop, seen) =
                    (Arc::clone(&listener), Arc::clone(&stop), Arc::clone(&seen));
                std::thread::spawn(move || supervise(&listener, &stop, &seen))
            };
            Supervisor {
                listener,
                stop,
                seen,
                thread,
            }
        }

        /// Installs on the calling thread, and no other, a filter that hands each of its system calls to this
        /// supervisor. The filter stays until the thread ends: call [`Supervisor::finish`] after that.
        pub fn watch_this_thread(&self) -> std::io::Result<()> {
            let mut filter = [libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_USER_NOTIF,
            }];
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_mut_ptr(),
            };
            // SAFETY: plain prctl; no_new_privs lets an unprivileged thread install a filter.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: `program` points at `filter`, both alive across the call; the kernel copies the program.
            // Without SECCOMP_FILTER_FLAG_TSYNC the filter applies to this thread alone.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                    &program as *const libc::sock_fprog,
                )
            };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // From here on this thread's system calls wait for the supervisor: hand it the listener with a plain
            // store (a channel could wake it through a system call, which would wait for itself).
            self.listener.store(fd as i32, Ordering::SeqCst);
            Ok(())
        }

        /// Stops the supervisor (the watched thread must have ended) and returns the recorded system calls.
        pub fn finish(self) -> std::io::Result<Vec<(usize, i32)>> {
            self.stop.store(true, Ordering::SeqCst);
            self.thread.join().expect("the supervisor panicked")?;
            Ok(std::mem::take(&mut *self.seen.lock().unwrap()))
        }
    }

    fn supervise(
        listener: &AtomicI32,
        stop: &AtomicBool,
        seen: &Mutex<Vec<(usize, i32)>>,
    ) -> std::io::Result<()> {
        let fd = loop {
            let fd = listener.load(Ordering::SeqCst);
            if fd >= 0 {
                break fd;
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        // SAFETY: the kernel gave this descriptor to the watched thread, which handed it over and forgot it.
        let _owned = unsafe { OwnedFd::from_raw_fd(fd) };
        while !stop.load(Ordering::SeqCst) {
            let mut ready = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut ready, 1, 20) };
            if n <= 0 || ready.revents & libc::POLLIN == 0 {
                continue;
            }
            // SAFETY: an all-zero seccomp_notif is valid (and the kernel requires it zeroed).
            let mut request: libc::seccomp_notif = unsafe { std::mem::zeroed() };
            // SAFETY: `request` is a seccomp_notif the kernel fills.
            if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut request) } != 0 {
                // ENOENT: the call was interrupted before it was received; nothing to answer.
                continue;
            }
            seen.lock()
                .unwrap()
                .push((PHASE.load(Ordering::SeqCst), request.data.nr));
            let answer = libc::seccomp_notif_resp {
                id: request.id,
                val: 0,
                error: 0,
                flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
            };
            // SAFETY: `answer` is a valid seccomp_notif_resp. An error means the caller went away meanwhile.
            let _ = unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &answer) };
        }
        Ok(())
    }
}

/// The watched thread's clock reads: its TSC reads fault and are emulated here.
mod clock {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::PHASE;

    /// TSC reads of the watched thread, per phase.
    pub static READS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

    /// The value the next emulated read returns: the real TSC when the trap was set, then 1,000 more per read.
    static NEXT: AtomicU64 = AtomicU64::new(0);

    /// Makes the calling thread's `rdtsc` and `rdtscp` fault (`on`) or work again, and installs the
    /// process-wide SIGSEGV handler that emulates them.
    pub fn trap_this_thread(on: bool) -> std::io::Result<()> {
        if on {
            // SAFETY: rdtsc has no precondition.
            NEXT.store(unsafe { core::arch::x86_64::_rdtsc() }, Ordering::SeqCst);
            // SAFETY: an all-zero sigaction is valid; the handler is an extern "C" fn of the SA_SIGINFO shape.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_fault as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            // SAFETY: a valid action; no previous action is asked for.
            if unsafe { libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        let mode = if on {
            libc::PR_TSC_SIGSEGV
        } else {
            libc::PR_TSC_ENABLE
        };
        // SAFETY: plain prctl on the calling thread.
        if unsafe { libc::prctl(libc::PR_SET_TSC, mode, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Emulates a faulting `rdtsc` (0f 31) or `rdtscp` (0f 01 f9) and counts it; for any other fault, puts the
    /// default action back and returns, so the instruction faults again and the process dies as it should.
    extern "C" fn on_fault(_: libc::c_int, _: *mut libc::siginfo_t, context: *mut libc::c_void) {
        let context = context.cast::<libc::ucontext_t>();
        // SAFETY: the kernel passes the interrupted context; the faulting instruction's first three bytes are
        // mapped (it was fetched to fault on it, and neither instruction is shorter than two bytes plus a
        // third read only when the first two match rdtscp's).
        unsafe {
            let gregs = &mut (*context).uc_mcontext.gregs;
            let rip = gregs[libc::REG_RIP as usize] as *const u8;
            let length = match (*rip, *rip.add(1)) {
                (0x0f, 0x31) => 2,
                (0x0f, 0x01) if *rip.add(2) == 0xf9 => 3,
                _ => 0,
            };
            if length == 0 {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                return;
            }
            READS[PHASE.load(Ordering::SeqCst)].fetch_add(1, Ordering::Relaxed);
            let tsc = NEXT.fetch_add(1_000, Ordering::Relaxed);
            gregs[libc::REG_RAX as usize] = (tsc & 0xffff_ffff) as i64;
            gregs[libc::REG_RDX as usize] = (tsc >> 32) as i64;
            if length == 3 {
                // rdtscp's processor id.
                gregs[libc::REG_RCX as usize] = 0;
            }
            gregs[libc::REG_RIP as usize] += length;
        }
    }
}

/// What the watched thread did in one phase.
#[derive(Debug, Default)]
struct Seen {
    allocations: u64,
    clock_reads: u64,
    /// How many calls of each system call number.
    syscalls: BTreeMap<i32, u64>,
}

impl Seen {
    fn of(phase: usize, syscalls: &[(usize, i32)]) -> Seen {
        Seen {
            allocations: ALLOCS[phase].load(Ordering::SeqCst),
            clock_reads: clock::READS[phase].load(Ordering::SeqCst),
            syscalls: syscalls.iter().filter(|(p, _)| *p == phase).fold(
                BTreeMap::new(),
                |mut calls, (_, nr)| {
                    *calls.entry(*nr).or_default() += 1;
                    calls
                },
            ),
        }
    }
}

#[test]
fn metering_and_sealing_allocate_nothing_make_no_system_call_and_read_no_clock() {
    // Every log line, at any level, would be a write to stderr: a system call.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::stderr)
        .init();
    let dir = tempfile::tempdir().unwrap();
    let config = flowlog_trafficgen::GenConfig::new(11, 20_000, 60);
    flowlog_trafficgen::generate(&config, dir.path()).unwrap();
    let mut reader = PcapReader::open(&dir.path().join("capture.pcap")).unwrap();
    let mut frames: Vec<(Vec<u8>, usize)> = Vec::new();
    while let Some(p) = reader.next_packet().unwrap() {
        frames.push((p.data.to_vec(), p.wire_len as usize));
    }
    let enis =
        Arc::new(EniTable::from_enis(load_enis(&dir.path().join("enis.toml")).unwrap()).unwrap());
    let meter = Meter::new(
        MeterConfig {
            spare_tables: 4,
            when_no_spare_table: SpareTableFallback::SkipData,
            ..MeterConfig::new(1, 1 << 16)
        },
        enis,
    )
    .unwrap();
    // The exporter's end stays unread: sealed windows wait in its ring, which holds them all.
    let (end, _exporter_end) = link(64, 5);
    let mut worker = Worker::new(meter, end);

    // One pass over the frames per second, in bursts of up to 32 through the same run builder as the poll loop
    // and the C ABI; each later second seals the one before.
    let pass = |worker: &mut Worker, secs: u64| {
        for burst in frames.chunks(32) {
            worker.poll_commands();
            let mut runs = worker.runs();
            for (frame, wire_len) in burst {
                runs.push(secs, frame, *wire_len, Action::Accept);
            }
            runs.finish();
        }
    };
    worker.start(0);
    let before = worker.counters().clone();

    let supervisor = syscalls::Supervisor::start();
    let worker = std::thread::scope(|s| {
        s.spawn(|| {
            supervisor.watch_this_thread().unwrap();
            clock::trap_this_thread(true).unwrap();
            WATCHED.with(|w| w.set(true));

            PHASE.store(CONTROL, Ordering::SeqCst);
            std::hint::black_box(std::time::Instant::now());
            std::thread::yield_now();
            drop(std::hint::black_box(Vec::<u8>::with_capacity(64)));

            PHASE.store(BURSTS, Ordering::SeqCst);
            for secs in 0..=4 {
                pass(&mut worker, secs);
            }
            PHASE.store(IDLE, Ordering::SeqCst);

            WATCHED.with(|w| w.set(false));
            clock::trap_this_thread(false).unwrap();
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
