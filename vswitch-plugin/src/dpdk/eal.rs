//! EAL: initialisation (once per process), lcores, launching work on worker lcores, cleanup, and thread affinity.
//!
//! # Guarantees
//! - `rte_eal_init` is attempted at most once per process: a second `Eal::init` (or `Eal::from_host`) returns
//!   [`DpdkError::EalAlreadyInitialized`] instead of calling DPDK again.
//! - `rte_eal_cleanup` runs once, and only after every mempool, port, queue and burst made through this EAL is gone
//!   and every launched lcore has returned: dropping [`Eal`] waits for the lcores, and the last handle to go runs the
//!   cleanup. No handle can reach DPDK memory after the cleanup.
//! - A panic in a launched function is caught at the lcore boundary (it never unwinds into C) and reported by
//!   [`Eal::wait`] as [`DpdkError::WorkerPanicked`].
//!
//! # Threads and affinity
//! `rte_eal_init` pins the calling thread to the main lcore's CPU, and every thread created afterwards inherits that
//! pinning. A thread that must not compete with a worker (an exporter, an async runtime) calls
//! [`unpin_current_thread`] first thing: it restores the affinity the process had before EAL init.
//!
//! `Eal` is neither `Send` nor `Sync`: DPDK requires `rte_eal_remote_launch` / `rte_eal_wait_lcore` to be called from
//! the main lcore, which is the thread that initialised EAL.

use std::cell::Cell;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use dpdk_sys::RTE_MAX_LCORE;

use super::error::{DpdkError, rte_errno, strerror};

/// The highest number of lcores DPDK supports (`RTE_MAX_LCORE`).
pub const MAX_LCORES: usize = RTE_MAX_LCORE as usize;

/// Program name passed to EAL as `argv[0]`.
const PROGRAM_NAME: &str = "flowlog-vswitch";

/// Set by the first `Eal::init` / `Eal::from_host`; never cleared (EAL cannot be initialised twice).
static EAL_CLAIMED: AtomicBool = AtomicBool::new(false);
/// The CPU affinity of the thread that called `Eal::init`, read just before `rte_eal_init` pinned it.
static AFFINITY_BEFORE_EAL: OnceLock<libc::cpu_set_t> = OnceLock::new();
/// Set by the launch trampoline when the function launched on lcore `i` panicked; cleared by `wait`.
static LCORE_PANICKED: [AtomicBool; MAX_LCORES] = [const { AtomicBool::new(false) }; MAX_LCORES];

/// The initialised EAL of this process. See the module documentation.
pub struct Eal {
    shared: Arc<EalShared>,
    /// Lcores with a launched function whose result `wait` has not collected yet.
    launched: [Cell<bool>; MAX_LCORES],
    /// Launch and wait must happen on the main lcore thread: keep the handle there.
    _main_thread_only: PhantomData<*const ()>,
}

/// A function run on a worker lcore.
type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

impl Eal {
    /// Initialises EAL with `args`, the EAL arguments only (no program name: one is prepended), e.g.
    /// `["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--vdev=net_pcap0,rx_pcap=in.pcap"]`.
    ///
    /// The calling thread becomes the main lcore (and is pinned to its CPU). Every argument must be EAL's; one that
    /// EAL does not parse is an error.
    ///
    /// # Errors
    /// [`DpdkError::EalAlreadyInitialized`] on any call after the first in this process (whatever the first
    /// returned), [`DpdkError::NulInArgument`], [`DpdkError::EalInit`], [`DpdkError::UnparsedArguments`].
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        let mut owned = Vec::with_capacity(args.len() + 1);
        for arg in std::iter::once(PROGRAM_NAME).chain(args.iter().map(String::as_str)) {
            owned.push(CString::new(arg).map_err(|_| DpdkError::NulInArgument(arg.to_owned()))?);
        }
        if EAL_CLAIMED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalAlreadyInitialized);
        }
        if let Ok(mask) = current_affinity() {
            // Only the first Eal::init gets here (EAL_CLAIMED), so the cell is empty.
            let _ = AFFINITY_BEFORE_EAL.set(mask);
        }
        let mut argv: Vec<*mut c_char> = owned.iter().map(|arg| arg.as_ptr().cast_mut()).collect();
        let argc = c_int::try_from(argv.len()).map_err(|_| DpdkError::EalInit {
            errno: libc::E2BIG,
            message: "too many arguments".to_owned(),
        })?;
        // SAFETY: argv holds argc pointers to NUL-terminated strings owned by `owned`, which lives in EalShared
        // until after rte_eal_cleanup (EAL may keep pointers into argv). EAL_CLAIMED makes this the only call.
        let parsed = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if parsed < 0 {
            let errno = rte_errno();
            return Err(DpdkError::EalInit {
                errno,
                message: strerror(errno),
            });
        }
        let eal = Eal::new(EalShared {
            runs_cleanup: true,
            _argv: owned,
        });
        // EAL parsed argv[1..=parsed] and permuted any remaining arguments after them.
        let first_unparsed = usize::try_from(parsed).map_or(argv.len(), |n| n + 1);
        if first_unparsed < argv.len() {
            let rest = argv[first_unparsed..]
                .iter()
                .map(|&arg| {
                    // SAFETY: each pointer is one of ours (EAL only permutes the array), NUL-terminated
                    // and alive (`owned` is in the Eal).
                    unsafe { CStr::from_ptr(arg) }
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            return Err(DpdkError::UnparsedArguments(rest));
        }
        Ok(eal)
    }

    /// A handle on an EAL that the host process (a vSwitch that loaded this library) already initialised. Dropping
    /// it never runs `rte_eal_cleanup`: the host owns EAL. Makes any later `Eal::init` in this process fail.
    ///
    /// # Errors
    /// [`DpdkError::EalAlreadyInitialized`] when this process already made an `Eal`.
    ///
    /// # Safety
    /// EAL must be initialised in this process and stay initialised until every handle made through the returned
    /// `Eal` (mempools, ports, queues, bursts) is dropped. [`Eal::launch`] and [`Eal::wait`] may only be called when
    /// the calling thread is the host's main lcore and the target lcores are not used by the host.
    pub unsafe fn from_host() -> Result<Eal, DpdkError> {
        if EAL_CLAIMED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalAlreadyInitialized);
        }
        Ok(Eal::new(EalShared {
            runs_cleanup: false,
            _argv: Vec::new(),
        }))
    }

    /// The main lcore (the thread that initialised EAL).
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: EAL is initialised (self exists); reads EAL's configuration.
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    /// Number of enabled lcores, the main lcore included.
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: EAL is initialised; reads EAL's configuration.
        unsafe { dpdk_sys::rte_lcore_count() }
    }

    /// Enabled lcores in increasing order, the main lcore included.
    pub fn lcores(&self) -> impl Iterator<Item = u32> + '_ {
        LcoreIter::new(false)
    }

    /// Enabled worker lcores (every enabled lcore but the main one) in increasing order.
    pub fn worker_lcores(&self) -> impl Iterator<Item = u32> + '_ {
        LcoreIter::new(true)
    }

    /// The CPUs lcore `lcore` may run on, as the lcore's own thread reads them (a probe launched on a worker
    /// lcore, or the calling thread for the main lcore).
    ///
    /// # Errors
    /// Those of [`Eal::launch`] and [`Eal::wait`] (the lcore must be idle), and [`DpdkError::Affinity`].
    pub fn lcore_cpus(&self, lcore: u32) -> Result<Vec<usize>, DpdkError> {
        if current_lcore() == Some(lcore) {
            return current_thread_cpus();
        }
        let answer = Arc::new(parking_lot::Mutex::new(None));
        let slot = answer.clone();
        self.launch(lcore, move || {
            *slot.lock() = Some(current_thread_cpus());
            0
        })?;
        self.wait(lcore)?;
        let cpus = answer.lock().take();
        cpus.unwrap_or_else(|| {
            Err(DpdkError::Affinity(std::io::Error::other(
                "the probe launched on the lcore reported nothing",
            )))
        })
    }

    /// NUMA socket of an lcore (0 on a single-socket machine).
    pub fn lcore_socket(&self, lcore: u32) -> u32 {
        // SAFETY: EAL is initialised; out-of-range ids are answered with a default by DPDK.
        unsafe { dpdk_sys::rte_lcore_to_socket_id(lcore) }
    }

    /// Runs `job` on worker lcore `lcore` (`rte_eal_remote_launch`); collect its return value with [`Eal::wait`].
    ///
    /// # Errors
    /// [`DpdkError::NotWorkerLcore`] for the main lcore or a disabled one, [`DpdkError::LcoreBusy`] when the lcore
    /// still runs (or has not been waited for after) an earlier launch.
    pub fn launch<F>(&self, lcore: u32, job: F) -> Result<(), DpdkError>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        let index = self.worker_index(lcore)?;
        if self.launched[index].get() {
            return Err(DpdkError::LcoreBusy(lcore));
        }
        LCORE_PANICKED[index].store(false, Ordering::SeqCst);
        let job: Box<Job> = Box::new(Box::new(job));
        let arg = Box::into_raw(job).cast::<c_void>();
        // SAFETY: EAL is initialised and this thread is the main lcore (Eal is !Send, made by the thread that called
        // rte_eal_init; from_host's contract covers the host case). `arg` is a Box<Job> that the trampoline takes
        // back exactly once; on failure DPDK did not take it and it is reclaimed below.
        let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(run_job), arg, lcore) };
        if ret != 0 {
            // SAFETY: the launch failed, so no lcore received `arg`; it is still our Box<Job>.
            drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
            return Err(DpdkError::LcoreBusy(lcore));
        }
        self.launched[index].set(true);
        Ok(())
    }

    /// Waits until the function launched on `lcore` returns, and gives its return value.
    ///
    /// # Errors
    /// [`DpdkError::NotWorkerLcore`], [`DpdkError::NotLaunched`] when nothing is pending on the lcore,
    /// [`DpdkError::WorkerPanicked`] when the function panicked.
    pub fn wait(&self, lcore: u32) -> Result<i32, DpdkError> {
        let index = self.worker_index(lcore)?;
        if !self.launched[index].get() {
            return Err(DpdkError::NotLaunched(lcore));
        }
        // SAFETY: main lcore thread (see launch); `lcore` is an enabled worker with a launched function.
        let ret = unsafe { dpdk_sys::rte_eal_wait_lcore(lcore) };
        self.launched[index].set(false);
        if LCORE_PANICKED[index].swap(false, Ordering::SeqCst) {
            return Err(DpdkError::WorkerPanicked(lcore));
        }
        Ok(ret)
    }

    /// Waits for every launched lcore; returns `(lcore, result)` for each, in lcore order.
    pub fn wait_all(&self) -> Vec<(u32, Result<i32, DpdkError>)> {
        self.launched
            .iter()
            .enumerate()
            .filter(|(_, launched)| launched.get())
            .filter_map(|(index, _)| u32::try_from(index).ok())
            .map(|lcore| (lcore, self.wait(lcore)))
            .collect()
    }

    /// Waits for every launched lcore, then runs `rte_eal_cleanup` if nothing else holds EAL.
    ///
    /// # Errors
    /// [`DpdkError::EalStillInUse`] when mempools, ports, queues or bursts are still alive: the cleanup then runs
    /// when the last of them is dropped. [`DpdkError::EalCleanup`] when DPDK's cleanup fails.
    pub fn cleanup(mut self) -> Result<(), DpdkError> {
        self.wait_all();
        // Leave an inert state behind for `drop(self)`, which then has nothing to clean.
        let shared = std::mem::replace(&mut self.shared, Arc::new(EalShared::inert()));
        match Arc::try_unwrap(shared) {
            Ok(mut shared) => shared.cleanup(),
            Err(shared) => {
                let holders = Arc::strong_count(&shared) - 1;
                drop(shared);
                Err(DpdkError::EalStillInUse(holders))
            }
        }
    }

    /// The shared EAL state that every handle keeps alive.
    pub(crate) fn shared(&self) -> Arc<EalShared> {
        Arc::clone(&self.shared)
    }

    fn new(shared: EalShared) -> Eal {
        Eal {
            shared: Arc::new(shared),
            launched: [const { Cell::new(false) }; MAX_LCORES],
            _main_thread_only: PhantomData,
        }
    }

    fn worker_index(&self, lcore: u32) -> Result<usize, DpdkError> {
        let index = usize::try_from(lcore)
            .ok()
            .filter(|&index| index < MAX_LCORES)
            .ok_or(DpdkError::NotWorkerLcore(lcore))?;
        // SAFETY: EAL is initialised; lcore < RTE_MAX_LCORE as DPDK requires.
        let enabled = unsafe { dpdk_sys::rte_lcore_is_enabled(lcore) } != 0;
        if !enabled || lcore == self.main_lcore() {
            return Err(DpdkError::NotWorkerLcore(lcore));
        }
        Ok(index)
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // Then `shared` drops; if it is the last handle, that runs rte_eal_cleanup (EalShared::drop).
        self.wait_all();
    }
}

impl std::fmt::Debug for Eal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eal")
            .field("main_lcore", &self.main_lcore())
            .field("lcore_count", &self.lcore_count())
            .finish_non_exhaustive()
    }
}

/// EAL state kept alive by every handle; its drop runs `rte_eal_cleanup`.
#[derive(Debug)]
pub(crate) struct EalShared {
    /// False for a host-owned EAL (`Eal::from_host`) and after an explicit cleanup.
    runs_cleanup: bool,
    /// The argument strings given to `rte_eal_init`, which may keep pointers into them.
    _argv: Vec<CString>,
}

impl EalShared {
    /// A state that runs no cleanup.
    fn inert() -> EalShared {
        EalShared {
            runs_cleanup: false,
            _argv: Vec::new(),
        }
    }

    fn cleanup(&mut self) -> Result<(), DpdkError> {
        if !std::mem::replace(&mut self.runs_cleanup, false) {
            return Ok(());
        }
        // SAFETY: this is the last handle on EAL (no mempool, port, queue or burst is left; Eal waited for every
        // launched lcore), and runs_cleanup makes it the only cleanup call.
        let ret = unsafe { dpdk_sys::rte_eal_cleanup() };
        if ret < 0 {
            return Err(DpdkError::EalCleanup {
                errno: -ret,
                message: strerror(-ret),
            });
        }
        Ok(())
    }
}

impl Drop for EalShared {
    fn drop(&mut self) {
        // A failing cleanup at drop time has no one to report to; the process is shutting EAL down either way.
        let _ = self.cleanup();
    }
}

/// The lcore id of the calling thread, or `None` for a thread that is not an EAL lcore.
pub fn current_lcore() -> Option<u32> {
    // SAFETY: reads a thread-local variable (LCORE_ID_ANY on non-EAL threads); valid with or without EAL.
    let id = unsafe { dpdk_sys::fl_lcore_id() };
    (id != dpdk_sys::FL_LCORE_ID_ANY).then_some(id)
}

/// Restores the calling thread's CPU affinity to what the process had before `Eal::init` pinned it (to every CPU
/// when no `Eal::init` ran in this process, e.g. inside a host vSwitch). Call it first thing in threads created after
/// EAL init that are not lcores: the exporter, an async runtime's threads.
///
/// # Errors
/// [`DpdkError::Affinity`] when `sched_setaffinity` fails.
pub fn unpin_current_thread() -> Result<(), DpdkError> {
    set_affinity(&affinity_before_eal())
}

/// The CPUs the process could run on before `Eal::init` pinned its thread (every CPU when no `Eal::init` ran
/// in this process), in increasing order: what [`unpin_current_thread`] restores.
pub fn cpus_before_eal() -> Vec<usize> {
    cpus_of(&affinity_before_eal())
}

fn affinity_before_eal() -> libc::cpu_set_t {
    match AFFINITY_BEFORE_EAL.get() {
        Some(mask) => *mask,
        None => all_cpus(),
    }
}

fn cpus_of(mask: &libc::cpu_set_t) -> Vec<usize> {
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads bit `cpu` < CPU_SETSIZE of an initialised set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, mask) })
        .collect()
}

/// Restricts the calling thread to `cpus` (e.g. to keep an exporter off the worker lcores' CPUs on a machine
/// without isolated cores).
///
/// # Errors
/// [`DpdkError::Affinity`] when `cpus` is empty, names a CPU at or above `CPU_SETSIZE`, or `sched_setaffinity`
/// fails.
pub fn pin_current_thread(cpus: &[usize]) -> Result<(), DpdkError> {
    let mut mask = empty_cpu_set();
    if cpus.is_empty() {
        return Err(DpdkError::Affinity(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no CPU to run on",
        )));
    }
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(DpdkError::Affinity(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("CPU {cpu} is beyond CPU_SETSIZE"),
            )));
        }
        // SAFETY: cpu < CPU_SETSIZE, checked above.
        unsafe { libc::CPU_SET(cpu, &mut mask) };
    }
    set_affinity(&mask)
}

/// Sets the calling thread's CPU affinity.
fn set_affinity(mask: &libc::cpu_set_t) -> Result<(), DpdkError> {
    // SAFETY: `mask` is a fully initialised cpu_set_t and its exact size is passed; pid 0 is the calling thread.
    let ret = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), mask) };
    if ret != 0 {
        return Err(DpdkError::Affinity(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Checks that a thread can run on every CPU of `cpus`: a short-lived thread pins itself to them and reads its
/// affinity back. For a configured placement (`export.cpus`) that should fail at start, not later on a thread
/// that can only log it.
///
/// # Errors
/// [`DpdkError::Affinity`] when the probe thread cannot start, pinning fails (no CPU of `cpus` is usable), or
/// some CPUs of `cpus` are left out (offline, or outside the process's cpuset).
pub fn check_cpus_usable(cpus: &[usize]) -> Result<(), DpdkError> {
    let probe = || -> Result<(), DpdkError> {
        pin_current_thread(cpus)?;
        let got = current_thread_cpus()?;
        let missing: Vec<usize> = cpus.iter().filter(|c| !got.contains(c)).copied().collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(DpdkError::Affinity(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("CPUs {missing:?} are offline or outside this process's cpuset"),
            )))
        }
    };
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("flowlog-cpu-probe".into())
            .spawn_scoped(scope, probe)
            .map_err(DpdkError::Affinity)?;
        thread.join().unwrap_or_else(|_| {
            Err(DpdkError::Affinity(std::io::Error::other(
                "the CPU probe thread panicked",
            )))
        })
    })
}

/// The CPUs the calling thread may run on.
///
/// # Errors
/// [`DpdkError::Affinity`] when `sched_getaffinity` fails.
pub fn current_thread_cpus() -> Result<Vec<usize>, DpdkError> {
    Ok(cpus_of(&current_affinity()?))
}

/// The DPDK entry point of a launched job (`lcore_function_t`).
///
/// # Safety
/// `arg` must come from `Box::into_raw(Box<Job>)` and be passed to this function exactly once.
unsafe extern "C" fn run_job(arg: *mut c_void) -> c_int {
    // SAFETY: guaranteed by the caller (Eal::launch hands each Box<Job> to exactly one lcore).
    let job = unsafe { Box::from_raw(arg.cast::<Job>()) };
    match catch_unwind(AssertUnwindSafe(job)) {
        Ok(code) => code,
        Err(payload) => {
            if let Some(index) = current_lcore().and_then(|id| usize::try_from(id).ok())
                && let Some(flag) = LCORE_PANICKED.get(index)
            {
                flag.store(true, Ordering::SeqCst);
            }
            // Dropping a panic payload can itself panic; never let that unwind into DPDK.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            -1
        }
    }
}

fn current_affinity() -> Result<libc::cpu_set_t, DpdkError> {
    let mut mask = empty_cpu_set();
    // SAFETY: `mask` is a valid cpu_set_t and its exact size is passed; pid 0 is the calling thread.
    let ret = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut mask) };
    if ret != 0 {
        return Err(DpdkError::Affinity(std::io::Error::last_os_error()));
    }
    Ok(mask)
}

fn all_cpus() -> libc::cpu_set_t {
    let mut mask = empty_cpu_set();
    // SAFETY: sysconf has no preconditions.
    let configured = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    let count = usize::try_from(configured)
        .unwrap_or(1)
        .clamp(1, libc::CPU_SETSIZE as usize);
    for cpu in 0..count {
        // SAFETY: cpu < CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut mask) };
    }
    mask
}

fn empty_cpu_set() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    unsafe { std::mem::zeroed() }
}

/// Iterates DPDK's enabled lcores with `rte_get_next_lcore`.
struct LcoreIter {
    /// The last lcore returned (u32::MAX = none yet, which DPDK's iterator treats as "start at 0").
    last: u32,
    skip_main: bool,
}

impl LcoreIter {
    fn new(skip_main: bool) -> LcoreIter {
        LcoreIter {
            last: u32::MAX,
            skip_main,
        }
    }
}

impl Iterator for LcoreIter {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        // SAFETY: EAL is initialised (the iterator borrows an Eal); `last` is either an lcore id or -1 as DPDK's
        // RTE_LCORE_FOREACH starts with.
        let next =
            unsafe { dpdk_sys::rte_get_next_lcore(self.last, c_int::from(self.skip_main), 0) };
        if next >= RTE_MAX_LCORE {
            return None;
        }
        self.last = next;
        Some(next)
    }
}
