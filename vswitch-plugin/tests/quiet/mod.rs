//! Watchers of one thread, for the tests that show the worker's hot path quiet (`hot_path.rs`,
//! `hot_path_poll_loop.rs`): a counting global allocator, a seccomp filter that hands each system call of the
//! watched thread to a supervisor thread, which records it and lets it run, and `PR_SET_TSC`, which makes the
//! thread's `rdtsc` and `rdtscp` fault into a handler that counts and emulates them. Counts are kept per phase
//! ([`PHASE`]). Include it as `mod quiet;` in a test binary of one test: the allocator and the fault handler are
//! process-wide. Also what both tests meter: the generated mix, and a worker that seals into a ring nobody reads;
//! and the `ptrace` tracer of the lock tests ([`trace`]).
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use flowlog_dataplane::flow::{Action, EniTable, Meter, MeterConfig, SpareTableFallback};
use flowlog_vswitch::export::{WorkerLink, link};
use flowlog_vswitch::worker::Worker;

pub mod mix;
pub mod trace;

/// Installs a subscriber that writes every log line, at any level, to stderr: on the watched thread a log line
/// is then a system call.
pub fn log_everything() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::stderr)
        .init();
}

pub use mix::{Frame, generated_mix};

/// A worker of 1-second windows with `spare_tables` spare tables, sealing by swap into an exporter ring that
/// holds every window of a test; keep the exporter's end, unread, as long as the worker.
pub fn sealing_worker(
    enis: Arc<EniTable>,
    spare_tables: usize,
) -> anyhow::Result<(Worker, WorkerLink)> {
    let meter = Meter::new(
        MeterConfig {
            spare_tables,
            when_no_spare_table: SpareTableFallback::SkipData,
            ..MeterConfig::new(1, 1 << 16)
        },
        enis,
    )?;
    let (end, exporter_end) = link(64, spare_tables + 1);
    Ok((Worker::new(meter, end), exporter_end))
}

/// Meters `frames` at `secs` in bursts of up to 32, through the same run builder as the poll loop and the C ABI,
/// taking the exporter's commands before each burst as the poll loop does.
pub fn meter(worker: &mut Worker, frames: &[Frame], secs: u64) {
    for burst in frames.chunks(32) {
        worker.poll_commands();
        let mut runs = worker.runs();
        for (frame, wire_len) in burst {
            runs.push(secs, frame, *wire_len, Action::Accept);
        }
        runs.finish();
    }
}

/// What the watched thread is doing: nothing counted, the control step, or the work under test.
pub const IDLE: usize = 0;
pub const CONTROL: usize = 1;
pub const BURSTS: usize = 2;

/// The watched thread's current phase (another thread may end the last one).
pub static PHASE: AtomicUsize = AtomicUsize::new(IDLE);

/// Allocator calls of the watched thread, per phase.
pub static ALLOCS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

thread_local! {
    /// Whether this thread's allocator calls are counted: set it on the watched thread.
    pub static WATCHED: Cell<bool> = const { Cell::new(false) };
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
pub mod syscalls {
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

        /// The system calls recorded so far. For a watched thread that outlives the test (an EAL lcore's, which
        /// goes on waiting for jobs): leave the supervisor running then, as a call after it stopped would fail.
        pub fn recorded(&self) -> Vec<(usize, i32)> {
            self.seen.lock().unwrap().clone()
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
pub mod clock {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::PHASE;

    /// TSC reads of the watched thread, per phase.
    pub static READS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

    /// The value the next emulated read returns: the real TSC when the trap was set, then [`STEP`] more per read.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static STEP: AtomicU64 = AtomicU64::new(1_000);

    /// Makes the calling thread's `rdtsc` and `rdtscp` fault (`on`) or work again, and installs the
    /// process-wide SIGSEGV handler that emulates them: the TSC then moves `step` ticks per read.
    pub fn trap_this_thread(on: bool, step: u64) -> std::io::Result<()> {
        if on {
            STEP.store(step, Ordering::SeqCst);
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
            let tsc = NEXT.fetch_add(STEP.load(Ordering::Relaxed), Ordering::Relaxed);
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
pub struct Seen {
    pub allocations: u64,
    pub clock_reads: u64,
    /// How many calls of each system call number.
    pub syscalls: BTreeMap<i32, u64>,
}

impl Seen {
    /// What the watched thread did in `phase`, with the supervisor's record `syscalls`.
    /// The `rt_sigreturn` that ends each emulated clock read is the watch's own, not counted.
    pub fn of(phase: usize, syscalls: &[(usize, i32)]) -> Seen {
        let clock_reads = clock::READS[phase].load(Ordering::SeqCst);
        let mut seen = Seen {
            allocations: ALLOCS[phase].load(Ordering::SeqCst),
            clock_reads,
            syscalls: syscalls.iter().filter(|(p, _)| *p == phase).fold(
                BTreeMap::new(),
                |mut calls, (_, nr)| {
                    *calls.entry(*nr).or_default() += 1;
                    calls
                },
            ),
        };
        if let Some(returns) = seen.syscalls.get_mut(&(libc::SYS_rt_sigreturn as i32)) {
            *returns = returns.saturating_sub(clock_reads);
        }
        seen.syscalls.retain(|_, calls| *calls > 0);
        seen
    }
}
