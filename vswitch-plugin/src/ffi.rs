//! The C ABI a host vSwitch loads: `libflowlog_vswitch.so` with the header `include/flowlog_vswitch.h`, which
//! cbindgen generates from this file (`tests/header.rs` fails when the checked-in header drifts from it).
//!
//! A host that has already initialised EAL and its ports creates an instance from the same TOML as the
//! standalone `flowlog-vswitch` program (without `[eal]` and `[[ports]]`), registers the ENIs it hosts, takes one
//! worker handle per poll-mode thread and hands each worker its RX bursts with, per packet, the port it arrived
//! on and the security-group verdict. The worker meters them exactly as the standalone program and replay do (the
//! same [`Worker`]), and the instance's exporter thread writes or delivers the records.
//!
//! # Guarantees
//! - No call unwinds into C: every entry point runs under `catch_unwind`, and a panic becomes
//!   `FLOWLOG_STATUS_PANIC` (a worker that panicked refuses every later call except its release).
//! - Bad input never crashes the library: null pointers, text that is not UTF-8, bad configuration, an index or
//!   a verdict out of range, a worker taken twice, an unknown ENI, each returns its own error status, and
//!   [`flowlog_last_error`] gives the reason. A rejected burst is accounted not at all (validated first).
//! - Handles own their memory: [`flowlog_instance_create`] and [`flowlog_instance_worker`] hand out a
//!   `Box::into_raw` pointer that [`flowlog_instance_destroy`] and [`flowlog_worker_release`] take back.
//! - The library reads the host's mbufs during [`flowlog_worker_process`] only: it never frees, keeps or writes
//!   them (the host keeps ownership).
//! - ENI registration errors (duplicate MAC, unknown id) are reported synchronously: the instance keeps the set
//!   of registered ENIs and checks every change against it before the exporter applies it.
//!
//! # Threads
//! Instance calls ([`flowlog_eni_add`], [`flowlog_eni_remove`], [`flowlog_instance_worker`]) may come from any
//! thread, concurrently (the instance locks). A worker handle belongs to one host thread at a time. The exporter
//! thread the instance starts runs on the CPUs `export.cpus` names (checked when the instance is created; name
//! the host's housekeeping CPUs there, so that it never preempts a poll-mode core), else it undoes the CPU
//! pinning it inherits from the host's lcore thread and may run on any CPU the host process has.
//!
//! # Time
//! `dataplane.clock = "tsc"`: one wall-clock reading per burst, derived from the TSC (calibrated once when the
//! instance is created); windows run from the moment a worker is taken, and [`flowlog_worker_tick`] seals the
//! windows that have ended while no packet came. `dataplane.clock = "rx-timestamp"`: each packet's time is its
//! mbuf's RX timestamp dynamic field, read in microseconds since the epoch as `net_pcap` writes it, so a capture
//! played through a `net_pcap` port meters exactly as `flowlog replay` does; a packet without the timestamp takes
//! the time of the worker's previous packet (counted in `no_rx_timestamp`).
//!
//! # Logging
//! The library logs with `tracing`. Unless the process already installed a subscriber, the first
//! [`flowlog_instance_create`] installs one writing to stderr at the level of `RUST_LOG` (default `warn`).
//! Refused calls (null pointers, bad arguments) log at `debug` only: their status and
//! [`flowlog_last_error`] tell the caller.
//!
//! # Limitations
//! - The exporter starts when the first worker is taken: ENIs registered before that are in every worker's table
//!   from the first packet. A change made later reaches each worker at its first burst after the exporter applied
//!   it (normally within a millisecond), so packets of that short interval may still be attributed by the
//!   previous ENI set.
//! - A window's records are written once every worker of the instance has sealed it: take every worker
//!   (`dataplane.workers`) and keep each one processing or ticking; a worker not taken, or idle without ticks,
//!   holds the records back until it is released (or, never taken, until the instance is destroyed).
//! - A multi-segment mbuf is parsed from its first segment (which holds the headers); its `pkt_len` is its
//!   length on the wire.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use flowlog_dataplane::flow::{Action, Eni, MacAddr};
use flowlog_dataplane::wire::MacParseError;
use parking_lot::Mutex;

use crate::config::{Capture, Clock, Config, ConfigError, RawConfig, Sink};
use crate::dpdk::{
    DpdkError, MbufRef, RxTimestamp, TimestampUnit, TscClock, check_cpus_usable, rte_mbuf,
};
use crate::export::{CaptureChange, Exporter};
use crate::instance;
use crate::worker::Worker;

/// Version of this ABI (functions, structures, status codes); it changes whenever any of them changes.
pub const FLOWLOG_ABI_VERSION: u32 = 1;

/// Verdict of a packet the security group allowed.
pub const FLOWLOG_ACCEPT: u8 = 0;

/// Verdict of a packet the security group denied.
pub const FLOWLOG_REJECT: u8 = 1;

/// Port ids run from 0 to `FLOWLOG_MAX_PORTS - 1` (DPDK's `RTE_MAX_ETHPORTS`).
pub const FLOWLOG_MAX_PORTS: usize = 32;

const _: () = assert!(FLOWLOG_MAX_PORTS == dpdk_sys::RTE_MAX_ETHPORTS as usize);

// The thread rules of the module docs hold: an instance is shared by any threads, a worker moves between them.
const _: () = {
    const fn shared_between_threads<T: Send + Sync>() {}
    const fn moved_between_threads<T: Send>() {}
    shared_between_threads::<FlowlogInstance>();
    moved_between_threads::<FlowlogWorker>();
};

/// Status of every call: `FLOWLOG_STATUS_OK` (0) or a negative error; `flowlog_last_error()` says why.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowlogStatus {
    /// Success.
    Ok = 0,
    /// A pointer argument that must not be null was null.
    NullPointer = -1,
    /// The configuration text is invalid, or asks for something the library cannot do here (an `[eal]`
    /// section, a `rx-timestamp` clock without a timestamping port, an output file that cannot be opened).
    BadConfig = -2,
    /// An argument is out of range or malformed (worker index, port id, verdict, MAC address, text that is not
    /// UTF-8, an ENI change on an instance whose ENIs come from the control plane).
    BadArgument = -3,
    /// The worker with this index was already taken.
    AlreadyTaken = -4,
    /// No registered ENI has this id.
    UnknownEni = -5,
    /// Another registered ENI already has this MAC address.
    DuplicateMac = -6,
    /// EAL is not initialised in this process: the host must call `rte_eal_init` before creating an instance.
    NoEal = -7,
    /// Workers are still taken: release them before destroying the instance (which stays valid).
    WorkersActive = -8,
    /// The exporter failed or stopped (output not writable, records not delivered); the log has details.
    Exporter = -9,
    /// The library panicked (a bug); the call had no effect or an incomplete one. A worker that panicked
    /// refuses every later call except its release.
    Panic = -10,
}

/// One ENI the host registers: every field a NUL-terminated UTF-8 string, none of them null.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FlowlogEni {
    /// ENI id, e.g. `eni-00010`; not empty. Registering an id again replaces that ENI.
    pub id: *const c_char,
    /// The ENI's MAC address, `xx:xx:xx:xx:xx:xx`.
    pub mac: *const c_char,
    /// Id of the VM the ENI is attached to.
    pub vm_id: *const c_char,
    /// Id of the ENI's vSwitch (subnet).
    pub vswitch_id: *const c_char,
    /// Id of the ENI's VPC.
    pub vpc_id: *const c_char,
    /// Id of the account owning the ENI.
    pub account_id: *const c_char,
}

/// What one worker has seen since it was taken.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowlogWorkerStats {
    /// Bursts accepted by `flowlog_worker_process` (empty ones included; refused ones not).
    pub bursts: u64,
    /// Packets (mbufs) accounted.
    pub packets: u64,
    /// Their length on the wire (`pkt_len`), summed.
    pub bytes: u64,
    /// `rx-timestamp` clock: packets without an RX timestamp (timed as the worker's previous packet).
    pub no_rx_timestamp: u64,
    /// Well-formed IPv4/IPv6 packets.
    pub ip_packets: u64,
    /// ENI attributions (a packet between two registered ENIs counts for both).
    pub attributed: u64,
    /// IP packets whose MACs match no registered ENI: no record.
    pub unattributed: u64,
    /// Frames that are not IP (ARP, LLDP): no record.
    pub non_ip: u64,
    /// Malformed frames, all reasons: no record.
    pub malformed: u64,
    /// Attributions reported as SKIPDATA instead of flows (flow table full, exporter ring full).
    pub skipped_packets: u64,
    /// Attributions lost without any record (SKIPDATA summaries dropped after a long exporter stall).
    pub lost_packets: u64,
    /// Packets per input port (the `ports` argument of `flowlog_worker_process`).
    pub port_packets: [u64; FLOWLOG_MAX_PORTS],
}

/// An instance: the configuration, the registered ENIs, the exporter thread and the workers not yet taken.
/// Opaque to C.
pub struct FlowlogInstance {
    state: Mutex<InstanceState>,
    /// Workers taken and not yet released; shared with their handles.
    active_workers: Arc<AtomicUsize>,
}

/// One worker of an instance, driven by one host thread. Opaque to C.
pub struct FlowlogWorker {
    worker: Worker,
    clock: PacketClock,
    /// `rx-timestamp` clock: time of the previous timestamped packet, seconds (0 before any).
    last_secs: u64,
    stats: FlowlogWorkerStats,
    /// Set when a call panicked: the meter may be half-updated.
    poisoned: bool,
    _active: ActiveWorker,
}

/// Errors of the C ABI; each maps to one [`FlowlogStatus`] and its text is what [`flowlog_last_error`] returns.
#[derive(Debug, thiserror::Error)]
pub enum FfiError {
    /// A pointer argument was null.
    #[error("`{0}` is a null pointer")]
    NullPointer(&'static str),
    /// A pointer argument is not aligned for its type.
    #[error("`{0}` is not aligned for its type")]
    Misaligned(&'static str),
    /// A string argument is not UTF-8.
    #[error("`{0}` is not valid UTF-8")]
    NotUtf8(&'static str),
    /// The configuration text is invalid.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The configuration asks for what a library instance does not do.
    #[error("configuration: {0}")]
    Unsupported(&'static str),
    /// `clock = "rx-timestamp"` but no port of the host registered the RX timestamp field.
    #[error(
        "configuration: dataplane.clock = \"rx-timestamp\" needs a port that timestamps packets (e.g. net_pcap), \
         configured before the instance is created: {0}"
    )]
    NoRxTimestamp(DpdkError),
    /// `export.cpus` names CPUs a thread of this process cannot run on.
    #[error("configuration: export.cpus: the exporter cannot run on CPUs {0:?}: {1}")]
    ExporterCpus(Vec<usize>, DpdkError),
    /// The JSON-lines output file cannot be opened.
    #[error("configuration: export.jsonl: cannot open {path}: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An argument is out of range or malformed.
    #[error("{0}")]
    BadArgument(String),
    /// A MAC address argument does not parse.
    #[error("MAC address `{text}` of ENI `{id}`: {source}")]
    BadMac {
        /// The ENI id.
        id: String,
        /// The text given.
        text: String,
        /// Why it does not parse.
        source: MacParseError,
    },
    /// The worker was already taken.
    #[error("worker {0} was already taken")]
    AlreadyTaken(u32),
    /// No registered ENI has this id.
    #[error("no registered ENI has the id `{0}`")]
    UnknownEni(String),
    /// Another ENI has this MAC.
    #[error("MAC {mac} of ENI `{id}` is already the MAC of ENI `{existing}`")]
    DuplicateMac {
        /// The MAC.
        mac: MacAddr,
        /// The ENI being registered.
        id: String,
        /// The ENI that has it.
        existing: String,
    },
    /// EAL is not initialised in this process.
    #[error("EAL is not initialised in this process: the host must call rte_eal_init first")]
    NoEal,
    /// Workers are still taken.
    #[error("{0} worker(s) not released: release every worker before destroying the instance")]
    WorkersActive(usize),
    /// The exporter failed or stopped.
    #[error("exporter: {0}")]
    Exporter(String),
    /// The library panicked.
    #[error("panic in the flow-log library: {0}")]
    Panic(String),
    /// An earlier call on this worker panicked.
    #[error("an earlier call on this worker panicked; only flowlog_worker_release is allowed")]
    Poisoned,
}

impl FfiError {
    /// The status code C sees for this error.
    pub fn status(&self) -> FlowlogStatus {
        match self {
            FfiError::NullPointer(_) => FlowlogStatus::NullPointer,
            FfiError::Config(_)
            | FfiError::Unsupported(_)
            | FfiError::NoRxTimestamp(_)
            | FfiError::ExporterCpus(..)
            | FfiError::Output { .. } => FlowlogStatus::BadConfig,
            FfiError::Misaligned(_)
            | FfiError::NotUtf8(_)
            | FfiError::BadArgument(_)
            | FfiError::BadMac { .. } => FlowlogStatus::BadArgument,
            FfiError::AlreadyTaken(_) => FlowlogStatus::AlreadyTaken,
            FfiError::UnknownEni(_) => FlowlogStatus::UnknownEni,
            FfiError::DuplicateMac { .. } => FlowlogStatus::DuplicateMac,
            FfiError::NoEal => FlowlogStatus::NoEal,
            FfiError::WorkersActive(_) => FlowlogStatus::WorkersActive,
            FfiError::Exporter(_) => FlowlogStatus::Exporter,
            FfiError::Panic(_) | FfiError::Poisoned => FlowlogStatus::Panic,
        }
    }
}

/// The version of the ABI this library implements (`FLOWLOG_ABI_VERSION` of its header). A host checks it after
/// `dlopen`, before any other call.
#[unsafe(no_mangle)]
pub extern "C" fn flowlog_abi_version() -> u32 {
    FLOWLOG_ABI_VERSION
}

/// Creates an instance from configuration text (TOML, as `flowlog-vswitch` reads it, without `[eal]`,
/// `[[ports]]` and `[run]`; relative paths are taken from the current directory). On success `*out` is the new
/// instance; on failure it is set to NULL (when `out` is not NULL). Needs EAL initialised by the host.
///
/// # Safety
/// `config_toml` must be NULL or a NUL-terminated string valid for the call; `out` must be NULL or valid for
/// writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowlog_instance_create(
    config_toml: *const c_char,
    out: *mut *mut FlowlogInstance,
) -> FlowlogStatus {
    init_logging();
    entry("flowlog_instance_create", || {
        let out = checked_out(out, "out")?;
        // SAFETY: `out` is non-null, aligned and valid for writing one pointer (checked / caller contract).
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: `config_toml` is NULL or a NUL-terminated string valid for the call (caller contract).
        let text = unsafe { c_text(config_toml, "config_toml") }?;
        let instance = FlowlogInstance::new(text)?;
        // SAFETY: `out` is non-null, aligned and valid for writing one pointer (checked / caller contract).
        unsafe { out.write(Box::into_raw(Box::new(instance))) };
        Ok(())
    })
}

/// Takes worker `index` (0 to `dataplane.workers - 1`) of the instance; each index can be taken once. The first
/// call starts the instance's exporter thread: ENIs registered before it are in effect from the first packet.
/// Take every worker: a window's records are written once every worker has sealed it. On success `*out` is the
/// worker; on failure it is set to NULL (when `out` is not NULL). The worker stays valid until
/// `flowlog_worker_release`.
///
/// # Safety
/// `instance` must be NULL or a live instance from `flowlog_instance_create`; `out` must be NULL or valid for
/// writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowlog_instance_worker(
    instance: *mut FlowlogInstance,
    index: u32,
    out: *mut *mut FlowlogWorker,
) -> FlowlogStatus {
    entry("flowlog_instance_worker", || {
        let out = checked_out(out, "out")?;
        // SAFETY: `out` is non-null, aligned and valid for writing one pointer (checked / caller contract).
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: NULL or a live instance (caller contract); only shared access is taken.
        let instance = unsafe { instance_ref(instance) }?;
        let worker = instance.take_worker(index)?;
        // SAFETY: `out` is non-null, aligned and valid for writing one pointer (checked / caller contract).
        unsafe { out.write(Box::into_raw(Box::new(worker))) };
        Ok(())
    })
}

/// Registers an ENI (or replaces the one with the same id): frames from its MAC are `out`, frames to it `in`.
/// The strings are copied.
///
/// # Safety
/// `instance` must be NULL or a live instance; `eni` must be NULL or point to a `flowlog_eni` whose fields are
/// NULL or NUL-terminated strings, all valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowlog_eni_add(
    instance: *mut FlowlogInstance,
    eni: *const FlowlogEni,
) -> FlowlogStatus {
    entry("flowlog_eni_add", || {
        // SAFETY: NULL or a live instance (caller contract).
        let instance = unsafe { instance_ref(instance) }?;
        // SAFETY: NULL or a valid flowlog_eni with valid strings (caller contract).
        let eni = unsafe { eni_from_c(eni) }?;
        instance.add_eni(eni)
    })
}

/// Stops capturing the ENI with this id. Its traffic already metered still gets its records.
///
/// # Safety
/// `instance` must be NULL or a live instance; `eni_id` NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowlog_eni_remove(
    instance: *mut FlowlogInstance,
    eni_id: *const c_char,
) -> FlowlogStatus {
    entry("flowlog_eni_remove", || {
        // SAFETY: NULL or a live instance (caller contract).
        let instance = unsafe { instance_ref(instance) }?;
        // SAFETY: NULL or a NUL-terminated string valid for the call (caller contract).
        let id = unsafe { c_text(eni_id, "eni_id") }?;
        instance.remove_eni(id)
    })
}

/// Meters a burst: `count` packets, `mbufs[i]` received on port `ports[i]` (0 to `FLOWLOG_MAX_PORTS - 1`, counted
/// per port in the worker's stats) with the verdict `verdicts[i]` (`FLOWLOG_ACCEPT` or `FLOWLOG_REJECT`). The
/// library reads the mbufs during the call and never frees, keeps or writes them. The whole burst is checked
/// first: on an error nothing of it is accounted. With `count` 0 the arrays may be NULL.
///
/// # Safety
/// `worker` must be NULL or a live worker used by no other thread during the call. When `count` > 0, `mbufs`,
/// `ports` and `verdicts` must be NULL or point to `count` elements each, and every non-null `mbufs[i]` must be a
/// valid mbuf of this process's DPDK that nobody frees or writes during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowlog_worker_process(
    worker: *mut FlowlogWorker,
    mbufs: *const *mut rte_mbuf,
    ports: *const u16,
    verdicts: *const u8,
    count: u32,
) -> FlowlogStatus {
    let body = |w: &mut FlowlogWorker| {
        if count == 0 {
            w.worker.poll_commands();
            w.stats.bursts += 1;
            return Ok(());
        }
        let len = count as usize;
        // SAFETY: each array is NULL or holds `count` elements valid for the call (caller contract); null and
        // alignment are checked by `c_slice`.
        let (mbufs, ports, verdicts) = unsafe {
            (
                c_slice(mbufs, len, "mbufs")?,
                c_slice(ports, len, "ports")?,
                c_slice(verdicts, len, "verdicts")?,
            )
        };
        // SAFETY: every non-null mbuf is valid and unmodified for the call (caller contract).
        unsafe { w.process(mbufs, ports, verdicts) }
    };
    // SAFETY: NULL or a live worker owned by this thread for the call (caller contract).
    unsafe { with_worker("flowlog_worker_process", worker, body) }
}

/// Idle poll: applies ENI changes and, with the `tsc` clock, seals every window that has ended, so records are
/// delivered while no packet comes. Call it when a poll finds no packet (cheap: one TSC read). With the
/// `rx-timestamp` clock, packet time stands still without packets: windows are sealed by later packets or by
/// the release.
///
/// # Safety
/// `worker` must be NULL or a live worker used by no other thread during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowlog_worker_tick(worker: *mut FlowlogWorker) -> FlowlogStatus {
    let body = |w: &mut FlowlogWorker| {
        w.tick();
        Ok(())
    };
    // SAFETY: NULL or a live worker owned by this thread for the call (caller contract).
    unsafe { with_worker("flowlog_worker_tick", worker, body) }
}

/// Flushes a worker without releasing it: seals its open window now and hands every sealed window to the exporter
/// (without waiting for ring space; what does not fit is offered again at the next tick or burst, as an exact
/// SKIPDATA summary). Packets of the flushed window that arrive afterwards are metered into the next window, so
/// no window is sealed twice. Use it before a pause or a reconfiguration of the host.
///
/// # Safety
/// `worker` must be NULL or a live worker used by no other thread during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowlog_worker_flush(worker: *mut FlowlogWorker) -> FlowlogStatus {
    let body = |w: &mut FlowlogWorker| {
        w.worker.poll_commands();
        w.worker.flush();
        Ok(())
    };
    // SAFETY: NULL or a live worker owned by this thread for the call (caller contract).
    unsafe { with_worker("flowlog_worker_flush", worker, body) }
}

/// Copies the worker's statistics into `*out`.
///
/// # Safety
/// `worker` must be NULL or a live worker used by no other thread during the call; `out` NULL or valid for
/// writing one `flowlog_worker_stats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowlog_worker_read_stats(
    worker: *mut FlowlogWorker,
    out: *mut FlowlogWorkerStats,
) -> FlowlogStatus {
    let body = |w: &mut FlowlogWorker| {
        let out = checked_out(out, "out")?;
        // SAFETY: `out` is non-null, aligned and valid for writing (checked / caller contract).
        unsafe { out.write(w.stats()) };
        Ok(())
    };
    // SAFETY: NULL or a live worker owned by this thread for the call (caller contract).
    unsafe { with_worker("flowlog_worker_read_stats", worker, body) }
}

/// Flushes and releases a worker: seals its open window, hands every sealed window to the exporter (waiting for
/// ring space) and tells the exporter it is finished. The handle is gone afterwards, whatever the status (except
/// `FLOWLOG_STATUS_NULL_POINTER`).
///
/// # Safety
/// `worker` must be NULL or a live worker used by no other thread, and not used again after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowlog_worker_release(worker: *mut FlowlogWorker) -> FlowlogStatus {
    entry("flowlog_worker_release", || {
        let worker = NonNull::new(worker).ok_or(FfiError::NullPointer("worker"))?;
        // SAFETY: the pointer came from Box::into_raw in flowlog_instance_worker and is not used after this call
        // (caller contract); the Box frees it exactly once, also when finishing panics.
        let handle = unsafe { Box::from_raw(worker.as_ptr()) };
        let counters = handle.worker.finish();
        tracing::debug!(
            frames = counters.frames,
            attributed = counters.attributed,
            "worker released"
        );
        Ok(())
    })
}

/// Destroys an instance once every worker is released: waits until every record is written or delivered (or
/// the collector's grace period ran out), then frees it. With workers still taken it returns
/// `FLOWLOG_STATUS_WORKERS_ACTIVE` and the instance stays valid; otherwise the handle is gone afterwards, whatever
/// the status (`FLOWLOG_STATUS_EXPORTER` then says records were lost).
///
/// # Safety
/// `instance` must be NULL or a live instance that no other thread uses during the call, and that is not used
/// again after a status other than `FLOWLOG_STATUS_WORKERS_ACTIVE` or `FLOWLOG_STATUS_NULL_POINTER`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowlog_instance_destroy(instance: *mut FlowlogInstance) -> FlowlogStatus {
    entry("flowlog_instance_destroy", || {
        let instance = NonNull::new(instance).ok_or(FfiError::NullPointer("instance"))?;
        // SAFETY: a live instance (caller contract); shared access only, to read the counter.
        let active = unsafe { instance.as_ref() }
            .active_workers
            .load(Ordering::Acquire);
        if active > 0 {
            return Err(FfiError::WorkersActive(active));
        }
        // SAFETY: the pointer came from Box::into_raw in flowlog_instance_create and no other thread uses it or
        // will use it again (caller contract); the Box frees it exactly once.
        let instance = unsafe { Box::from_raw(instance.as_ptr()) };
        instance.shutdown()
    })
}

/// A static, NUL-terminated description of a status code ("unknown status" for a value that is none).
#[unsafe(no_mangle)]
pub extern "C" fn flowlog_status_str(status: i32) -> *const c_char {
    let text: &'static CStr = match status {
        0 => c"ok",
        -1 => c"null pointer",
        -2 => c"bad configuration",
        -3 => c"bad argument",
        -4 => c"worker already taken",
        -5 => c"unknown ENI",
        -6 => c"duplicate MAC address",
        -7 => c"EAL not initialised",
        -8 => c"workers still active",
        -9 => c"exporter failed",
        -10 => c"panic in the library",
        _ => c"unknown status",
    };
    text.as_ptr()
}

/// The reason of the last failed call on the calling thread ("" when none failed yet). The text stays valid until
/// the next failed call on the same thread.
#[unsafe(no_mangle)]
pub extern "C" fn flowlog_last_error() -> *const c_char {
    LAST_ERROR.with(|last| match &*last.borrow() {
        Some(text) => text.as_ptr(),
        None => c"".as_ptr(),
    })
}

impl FlowlogInstance {
    fn new(text: &str) -> Result<Self, FfiError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Syntax {
            what: "instance configuration".to_string(),
            source,
        })?;
        if raw.eal.is_some() || !raw.ports.is_empty() {
            return Err(FfiError::Unsupported(
                "`[eal]` and `[[ports]]` are for the standalone program: the host vSwitch owns EAL and its ports",
            ));
        }
        if raw.run.stop_when_idle_ms.is_some() {
            return Err(FfiError::Unsupported(
                "`run.stop-when-idle-ms` is for the standalone program: the host releases its workers",
            ));
        }
        let config = Config::from_raw(raw, Path::new("."))?;
        if let Some(cpus) = &config.exporter_cpus {
            check_cpus_usable(cpus).map_err(|error| FfiError::ExporterCpus(cpus.clone(), error))?;
        }
        let tsc = TscClock::calibrate().ok_or(FfiError::NoEal)?;
        let clock = match config.clock {
            Clock::Tsc => PacketClock::Tsc(tsc),
            Clock::RxTimestamp => PacketClock::RxTimestamp {
                field: RxTimestamp::lookup(TimestampUnit::Microseconds)
                    .map_err(FfiError::NoRxTimestamp)?,
                fallback: tsc,
            },
        };
        if let Sink::File(path) = &config.sink {
            // The exporter opens it too, on its own thread; open it here as well so a bad path fails now.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| FfiError::Output {
                    path: path.clone(),
                    source,
                })?;
        }
        let enis = match &config.capture {
            Capture::Static { enis, .. } => enis.clone(),
            Capture::Manual { .. } | Capture::Control { .. } => Vec::new(),
        };
        tracing::info!(workers = config.workers, clock = ?config.clock, "flow-log instance created");
        Ok(Self {
            state: Mutex::new(InstanceState {
                config,
                clock,
                enis,
                running: None,
            }),
            active_workers: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn take_worker(&self, index: u32) -> Result<FlowlogWorker, FfiError> {
        let mut state = self.state.lock();
        let workers = state.config.workers;
        if index as usize >= workers {
            return Err(FfiError::BadArgument(format!(
                "worker index {index} is out of range: the instance has {workers} worker(s) (dataplane.workers)"
            )));
        }
        let clock = state.clock;
        let running = match state.running.take() {
            Some(running) => running,
            None => state.start()?,
        };
        let running = state.running.insert(running);
        let mut worker = running
            .workers
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or(FfiError::AlreadyTaken(index))?;
        if let PacketClock::Tsc(tsc) = clock {
            worker.start(tsc.now_secs());
        }
        Ok(FlowlogWorker {
            worker,
            clock,
            last_secs: 0,
            stats: FlowlogWorkerStats::default(),
            poisoned: false,
            _active: ActiveWorker::new(&self.active_workers),
        })
    }

    fn add_eni(&self, eni: Eni) -> Result<(), FfiError> {
        let mut state = self.state.lock();
        state.check_manual()?;
        if let Some(other) = state
            .enis
            .iter()
            .find(|e| e.mac == eni.mac && e.id != eni.id)
        {
            return Err(FfiError::DuplicateMac {
                mac: eni.mac,
                id: eni.id.to_string(),
                existing: other.id.to_string(),
            });
        }
        state.send(CaptureChange::Add(eni.clone()))?;
        match state.enis.iter_mut().find(|e| e.id == eni.id) {
            Some(existing) => *existing = eni,
            None => state.enis.push(eni),
        }
        Ok(())
    }

    fn remove_eni(&self, id: &str) -> Result<(), FfiError> {
        let mut state = self.state.lock();
        state.check_manual()?;
        let position = state
            .enis
            .iter()
            .position(|e| &*e.id == id)
            .ok_or_else(|| FfiError::UnknownEni(id.to_string()))?;
        state.send(CaptureChange::Remove(id.to_string()))?;
        state.enis.remove(position);
        Ok(())
    }

    /// Finishes the workers never taken and waits for the exporter to write or deliver every record.
    fn shutdown(self) -> Result<(), FfiError> {
        let Some(running) = self.state.into_inner().running else {
            return Ok(());
        };
        for worker in running.workers.into_iter().flatten() {
            worker.finish();
        }
        let report = running
            .exporter
            .join()
            .map_err(|error| FfiError::Exporter(format!("{error:#}")))?;
        tracing::info!(
            windows = report.windows,
            records = report.records,
            acked = report.records_acked,
            "flow-log instance destroyed"
        );
        if report.records_abandoned > 0 {
            return Err(FfiError::Exporter(format!(
                "{} records were not acknowledged by the collector",
                report.records_abandoned
            )));
        }
        Ok(())
    }
}

impl FlowlogWorker {
    /// Meters a validated-length burst.
    ///
    /// # Safety
    /// Every non-null pointer of `mbufs` is a valid mbuf that nobody frees or writes during the call.
    unsafe fn process(
        &mut self,
        mbufs: &[*mut rte_mbuf],
        ports: &[u16],
        verdicts: &[u8],
    ) -> Result<(), FfiError> {
        for (i, ((mbuf, &port), &verdict)) in mbufs.iter().zip(ports).zip(verdicts).enumerate() {
            if mbuf.is_null() {
                return Err(FfiError::BadArgument(format!(
                    "mbufs[{i}] is a null pointer"
                )));
            }
            if usize::from(port) >= FLOWLOG_MAX_PORTS {
                return Err(FfiError::BadArgument(format!(
                    "ports[{i}] = {port} is not a port id (0 to {})",
                    FLOWLOG_MAX_PORTS - 1
                )));
            }
            if verdict != FLOWLOG_ACCEPT && verdict != FLOWLOG_REJECT {
                return Err(FfiError::BadArgument(format!(
                    "verdicts[{i}] = {verdict} is neither FLOWLOG_ACCEPT (0) nor FLOWLOG_REJECT (1)"
                )));
            }
        }
        self.worker.poll_commands();
        let began = crate::dpdk::tsc();
        // The burst's time on the TSC clock; with RX timestamps, the fallback for an unstamped packet before any
        // stamped one. From the one TSC reading of the burst either way.
        let burst_secs = match self.clock {
            PacketClock::Tsc(tsc) => tsc.ns_at(began) / 1_000_000_000,
            PacketClock::RxTimestamp { fallback, .. } => fallback.ns_at(began) / 1_000_000_000,
        };
        let mut runs = self.worker.runs();
        for ((&ptr, &port), &verdict) in mbufs.iter().zip(ports).zip(verdicts) {
            // SAFETY: non-null (checked above), valid and neither freed nor written during the call (caller
            // contract); the views live until the end of this call at most.
            let Some(mbuf) = (unsafe { MbufRef::from_raw(ptr) }) else {
                continue;
            };
            let now = match self.clock {
                PacketClock::Tsc(_) => burst_secs,
                PacketClock::RxTimestamp { field, .. } => match mbuf.rx_timestamp_ns(&field) {
                    Some(ns) => {
                        self.last_secs = ns / 1_000_000_000;
                        self.last_secs
                    }
                    None => {
                        self.stats.no_rx_timestamp += 1;
                        if self.last_secs == 0 {
                            burst_secs
                        } else {
                            self.last_secs
                        }
                    }
                },
            };
            let action = if verdict == FLOWLOG_REJECT {
                Action::Reject
            } else {
                Action::Accept
            };
            let wire_len = mbuf.pkt_len();
            runs.push(now, mbuf.data(), wire_len as usize, action);
            self.stats.packets += 1;
            self.stats.bytes += u64::from(wire_len);
            if let Some(count) = self.stats.port_packets.get_mut(usize::from(port)) {
                *count += 1;
            }
        }
        runs.finish();
        self.worker
            .record_cycles(crate::dpdk::tsc().wrapping_sub(began), mbufs.len() as u64);
        self.stats.bursts += 1;
        Ok(())
    }

    fn tick(&mut self) {
        self.worker.poll_commands();
        match self.clock {
            PacketClock::Tsc(tsc) => self.worker.advance(tsc.now_secs()),
            // Packet time stands still without packets: only retry windows the exporter's ring refused.
            PacketClock::RxTimestamp { .. } if self.last_secs > 0 => {
                self.worker.advance(self.last_secs)
            }
            PacketClock::RxTimestamp { .. } => {}
        }
    }

    fn stats(&self) -> FlowlogWorkerStats {
        let c = self.worker.counters();
        FlowlogWorkerStats {
            ip_packets: c.ip_packets,
            attributed: c.attributed,
            unattributed: c.unattributed,
            non_ip: c.non_ip,
            malformed: c.malformed,
            skipped_packets: c.table_full_packets + c.refused_packets,
            lost_packets: c.pending_dropped_packets,
            ..self.stats
        }
    }
}

impl Default for FlowlogWorkerStats {
    fn default() -> Self {
        Self {
            bursts: 0,
            packets: 0,
            bytes: 0,
            no_rx_timestamp: 0,
            ip_packets: 0,
            attributed: 0,
            unattributed: 0,
            non_ip: 0,
            malformed: 0,
            skipped_packets: 0,
            lost_packets: 0,
            port_packets: [0; FLOWLOG_MAX_PORTS],
        }
    }
}

/// The instance's mutable state, behind its lock.
struct InstanceState {
    config: Config,
    clock: PacketClock,
    /// The registered ENIs in registration order: the set the exporter holds once it applied every change sent.
    enis: Vec<Eni>,
    /// The exporter and the workers not yet taken, once the first worker was taken.
    running: Option<Running>,
}

/// A started instance.
struct Running {
    exporter: Exporter,
    /// `None` once taken.
    workers: Vec<Option<Worker>>,
}

impl InstanceState {
    /// Starts the exporter and builds the workers, with the ENIs registered so far.
    fn start(&self) -> Result<Running, FfiError> {
        let mut config = self.config.clone();
        config.capture = match config.capture {
            Capture::Manual { destination } | Capture::Static { destination, .. } => {
                Capture::Static {
                    enis: self.enis.clone(),
                    destination,
                }
            }
            control @ Capture::Control { .. } => control,
        };
        // On the configured CPUs (checked at creation), else off the host lcore's pinning it inherits.
        let pipeline = instance::start(&config, config.workers, config.exporter_cpus.clone())
            .map_err(|error| FfiError::Exporter(format!("{error:#}")))?;
        if let Capture::Control {
            endpoints,
            initial_wait,
            ..
        } = &config.capture
            && !pipeline.exporter.wait_ready(*initial_wait)
        {
            tracing::warn!(
                ?endpoints,
                ?initial_wait,
                "no capture set from the control plane yet; starting without"
            );
        }
        Ok(Running {
            exporter: pipeline.exporter,
            workers: pipeline.workers.into_iter().map(Some).collect(),
        })
    }

    fn check_manual(&self) -> Result<(), FfiError> {
        if let Capture::Control { .. } = self.config.capture {
            return Err(FfiError::BadArgument(
                "the ENIs of this instance come from the control plane (capture.control)"
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// Hands a change to the running exporter (before the start, the ENI list alone is the state).
    fn send(&self, change: CaptureChange) -> Result<(), FfiError> {
        match &self.running {
            Some(running) if !running.exporter.change(change) => Err(FfiError::Exporter(
                "the exporter thread has stopped; its error was logged".to_string(),
            )),
            _ => Ok(()),
        }
    }
}

/// How a worker times its packets.
#[derive(Debug, Clone, Copy)]
enum PacketClock {
    /// TSC-derived wall clock, once per burst.
    Tsc(TscClock),
    /// Each mbuf's RX timestamp; `fallback` times packets before the first timestamped one.
    RxTimestamp {
        field: RxTimestamp,
        fallback: TscClock,
    },
}

/// Counts a taken worker until its handle is dropped (released, or freed while unwinding).
struct ActiveWorker(Arc<AtomicUsize>);

impl ActiveWorker {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for ActiveWorker {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Runs an entry point's body: catches panics, records and logs the error, returns the status.
fn entry(function: &'static str, body: impl FnOnce() -> Result<(), FfiError>) -> FlowlogStatus {
    let result = catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|payload| Err(FfiError::Panic(panic_text(payload.as_ref()))));
    match result {
        Ok(()) => FlowlogStatus::Ok,
        Err(error) => {
            let status = error.status();
            match status {
                // The caller's own mistake, returned to it: not worth more than a debug line.
                FlowlogStatus::NullPointer | FlowlogStatus::BadArgument => {
                    tracing::debug!(function, %error, "call refused");
                }
                _ => tracing::warn!(function, %error, "call failed"),
            }
            set_last_error(&error);
            status
        }
    }
}

/// Runs a worker entry point: checks the handle, refuses a poisoned one, poisons it when the body panics.
///
/// # Safety
/// `worker` must be NULL or a live worker used by no other thread during the call.
unsafe fn with_worker(
    function: &'static str,
    worker: *mut FlowlogWorker,
    body: impl FnOnce(&mut FlowlogWorker) -> Result<(), FfiError>,
) -> FlowlogStatus {
    entry(function, || {
        // SAFETY: NULL or a live worker, exclusively ours for the call (caller contract).
        let worker = unsafe { worker.as_mut() }.ok_or(FfiError::NullPointer("worker"))?;
        if worker.poisoned {
            return Err(FfiError::Poisoned);
        }
        catch_unwind(AssertUnwindSafe(|| body(worker))).unwrap_or_else(|payload| {
            worker.poisoned = true;
            Err(FfiError::Panic(panic_text(payload.as_ref())))
        })
    })
}

/// Shared access to an instance.
///
/// # Safety
/// `instance` must be NULL or a live instance for the lifetime `'a`.
unsafe fn instance_ref<'a>(
    instance: *mut FlowlogInstance,
) -> Result<&'a FlowlogInstance, FfiError> {
    // SAFETY: NULL or live for 'a (caller contract); the instance is only ever accessed through shared
    // references while live (its state is behind a lock).
    unsafe { instance.cast_const().as_ref() }.ok_or(FfiError::NullPointer("instance"))
}

/// Checks an output pointer: not null, aligned.
fn checked_out<T>(out: *mut T, what: &'static str) -> Result<*mut T, FfiError> {
    if out.is_null() {
        return Err(FfiError::NullPointer(what));
    }
    if !out.is_aligned() {
        return Err(FfiError::Misaligned(what));
    }
    Ok(out)
}

/// A C string argument as UTF-8.
///
/// # Safety
/// `text` must be NULL or a NUL-terminated string valid (and unmodified) for `'a`.
unsafe fn c_text<'a>(text: *const c_char, what: &'static str) -> Result<&'a str, FfiError> {
    if text.is_null() {
        return Err(FfiError::NullPointer(what));
    }
    // SAFETY: non-null and NUL-terminated, valid for 'a (caller contract).
    unsafe { CStr::from_ptr(text) }
        .to_str()
        .map_err(|_| FfiError::NotUtf8(what))
}

/// A C array argument of `len` > 0 elements.
///
/// # Safety
/// `ptr` must be NULL or point to `len` initialised elements valid (and unmodified) for `'a`.
unsafe fn c_slice<'a, T>(
    ptr: *const T,
    len: usize,
    what: &'static str,
) -> Result<&'a [T], FfiError> {
    if ptr.is_null() {
        return Err(FfiError::NullPointer(what));
    }
    if !ptr.is_aligned() {
        return Err(FfiError::Misaligned(what));
    }
    // SAFETY: non-null, aligned, `len` initialised elements valid for 'a (caller contract); `len` comes from a
    // u32, so `len * size_of::<T>()` fits isize for the element types used here (at most 8 bytes).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Copies a `flowlog_eni` into an [`Eni`].
///
/// # Safety
/// `eni` must be NULL or point to a `FlowlogEni` whose fields are NULL or NUL-terminated strings, valid for the
/// call.
unsafe fn eni_from_c(eni: *const FlowlogEni) -> Result<Eni, FfiError> {
    // SAFETY: NULL or a valid FlowlogEni (caller contract); it is copied out at once.
    let raw = unsafe { eni.as_ref() }.ok_or(FfiError::NullPointer("eni"))?;
    // SAFETY: the six fields are NULL or valid NUL-terminated strings (caller contract).
    let (id, mac, vm_id, vswitch_id, vpc_id, account_id) = unsafe {
        (
            c_text(raw.id, "eni->id")?,
            c_text(raw.mac, "eni->mac")?,
            c_text(raw.vm_id, "eni->vm_id")?,
            c_text(raw.vswitch_id, "eni->vswitch_id")?,
            c_text(raw.vpc_id, "eni->vpc_id")?,
            c_text(raw.account_id, "eni->account_id")?,
        )
    };
    if id.is_empty() {
        return Err(FfiError::BadArgument("eni->id is empty".to_string()));
    }
    let mac: MacAddr = mac.parse().map_err(|source| FfiError::BadMac {
        id: id.to_string(),
        text: mac.to_string(),
        source,
    })?;
    Ok(Eni::new(id, mac, vm_id, vswitch_id, vpc_id, account_id))
}

fn set_last_error(error: &FfiError) {
    // An interior NUL cannot come from our messages, but text from elsewhere might carry one: cut it there.
    let text = error.to_string();
    let text = match CString::new(text) {
        Ok(text) => text,
        Err(nul) => {
            let position = nul.nul_position();
            let mut bytes = nul.into_vec();
            bytes.truncate(position);
            CString::new(bytes).unwrap_or_default()
        }
    };
    LAST_ERROR.with(|last| *last.borrow_mut() = Some(text));
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Sends the library's `tracing` events to stderr (level from `RUST_LOG`, default `warn`) unless the host
/// process already installed a subscriber. Runs once.
fn init_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if tracing::dispatcher::has_been_set() {
            return;
        }
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        // Another thread may have won the race to install one: then that one stays, which is what we want.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
    });
}
