//! The one error type of the DPDK layer: every failure of EAL, mempool, port, queue or mbuf calls, with DPDK's
//! `rte_errno` / negative return code and its text where DPDK gives one.

use std::ffi::CStr;

/// Why a DPDK call of this layer failed.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// `Eal::init` (or `Eal::from_host`) was already called in this process. DPDK initialises EAL at most once per
    /// process, even after `rte_eal_cleanup`.
    #[error("EAL was already initialised in this process (DPDK allows it once per process)")]
    EalAlreadyInitialized,
    /// An argument contains a NUL byte and cannot be passed to C.
    #[error("argument {0:?} contains a NUL byte")]
    NulInArgument(String),
    /// `rte_eal_init` failed.
    #[error("rte_eal_init failed: {message} (rte_errno {errno})")]
    EalInit {
        /// `rte_errno` after the call.
        errno: i32,
        /// `rte_strerror(errno)`.
        message: String,
    },
    /// `rte_eal_init` stopped before the end of the argument list: these arguments are not EAL's.
    #[error("EAL left arguments it did not parse: {0:?}")]
    UnparsedArguments(Vec<String>),
    /// `Eal::cleanup` could not run `rte_eal_cleanup` yet because mempools, ports, queues or bursts still hold EAL;
    /// it runs when the last of them is dropped.
    #[error(
        "EAL is still used by {0} mempool/port/queue/burst handle(s); cleanup runs when they are dropped"
    )]
    EalStillInUse(usize),
    /// `rte_eal_cleanup` returned an error.
    #[error("rte_eal_cleanup failed: {message} (errno {errno})")]
    EalCleanup {
        /// The negated return code.
        errno: i32,
        /// `rte_strerror(errno)`.
        message: String,
    },
    /// The lcore is not an enabled worker lcore of this EAL (it is the main lcore, disabled or out of range).
    #[error("lcore {0} is not an enabled worker lcore")]
    NotWorkerLcore(u32),
    /// The lcore is still running a function launched earlier; `wait` for it first.
    #[error("lcore {0} is still running a launched function")]
    LcoreBusy(u32),
    /// `wait` was called for an lcore on which nothing was launched (or whose result was already collected).
    #[error("nothing was launched on lcore {0}")]
    NotLaunched(u32),
    /// The function launched on this lcore panicked; the panic was caught at the lcore boundary.
    #[error("the function launched on lcore {0} panicked")]
    WorkerPanicked(u32),
    /// A DPDK object name is empty, too long or contains a NUL byte.
    #[error("invalid DPDK object name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `rte_pktmbuf_pool_create` failed.
    #[error("cannot create mempool {name:?}: {message} (rte_errno {errno})")]
    MempoolCreate {
        /// The pool's name.
        name: String,
        /// `rte_errno` after the call.
        errno: i32,
        /// `rte_strerror(errno)`.
        message: String,
    },
    /// `rte_ring_create` or `rte_eth_from_ring` failed.
    #[error("cannot create ring port {name:?}: {message} (rte_errno {errno})")]
    RingPortCreate {
        /// The port's (and ring's) name.
        name: String,
        /// `rte_errno` after the call.
        errno: i32,
        /// `rte_strerror(errno)`.
        message: String,
    },
    /// The mempool has no free mbuf.
    #[error("mempool {0:?} is exhausted")]
    MempoolExhausted(String),
    /// An mbuf has no room for the bytes to append.
    #[error("mbuf has room for {available} more bytes, {requested} requested")]
    NoRoom {
        /// Bytes asked for.
        requested: usize,
        /// Tailroom left in the mbuf.
        available: usize,
    },
    /// No Ethernet port has this name (`rte_eth_dev_get_port_by_name`).
    #[error("no Ethernet port named {0:?} (is the vdev/PCI device given to EAL?)")]
    PortNotFound(String),
    /// No valid Ethernet port has this id.
    #[error("no Ethernet port with id {0}")]
    InvalidPort(u16),
    /// Another `Port` handle in this process already holds this port.
    #[error("port {0} is already held by another Port handle")]
    PortInUse(u16),
    /// An `rte_eth_*` control call failed.
    #[error("{call} on port {port} failed: {message} (errno {errno})")]
    PortCall {
        /// The port.
        port: u16,
        /// The DPDK function that failed.
        call: &'static str,
        /// The negated return code (a positive errno).
        errno: i32,
        /// `rte_strerror(errno)`.
        message: String,
    },
    /// The requested RX queue count is zero or above the device's maximum.
    #[error("port {port} supports 1..={max} RX queues, {requested} requested")]
    BadQueueCount {
        /// The port.
        port: u16,
        /// Queues asked for.
        requested: u16,
        /// `max_rx_queues` of the device.
        max: u16,
    },
    /// The port gives no RX timestamps: its driver neither offers `RTE_ETH_RX_OFFLOAD_TIMESTAMP` nor stamps
    /// anyway, or the port was configured without `rx_timestamp`. The fields are the port and its driver.
    #[error("port {0} ({1}) gives no RX timestamps")]
    TimestampUnsupported(u16, String),
    /// The rx-timestamp dynamic field or flag is not registered: no driver enabled the offload.
    #[error(
        "the rx-timestamp mbuf dynamic field/flag is not registered (offload not enabled on any port)"
    )]
    TimestampNotRegistered,
    /// The port must be configured first (`Port::configure`).
    #[error("port {0} is not configured")]
    NotConfigured(u16),
    /// The operation needs every queue handle of the port returned (dropped) first.
    #[error("port {port} still has {count} queue handle(s) outstanding")]
    QueuesInUse {
        /// The port.
        port: u16,
        /// Outstanding RxQueue/TxQueue handles.
        count: usize,
    },
    /// The queue does not exist on this port or another handle holds it.
    #[error("{kind} queue {queue} of port {port} does not exist or is already taken")]
    QueueUnavailable {
        /// The port.
        port: u16,
        /// `"RX"` or `"TX"`.
        kind: &'static str,
        /// The queue index.
        queue: u16,
    },
    /// Reading or setting a thread's CPU affinity failed.
    #[error("thread CPU affinity: {0}")]
    Affinity(#[source] std::io::Error),
}

/// `rte_strerror(errno)` as an owned string.
pub(crate) fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror accepts any value and returns a pointer to a NUL-terminated string (static, or in a
    // per-lcore buffer that stays valid until the next call on this thread); it is copied at once.
    let text = unsafe { dpdk_sys::rte_strerror(errno) };
    if text.is_null() {
        return format!("error {errno}");
    }
    // SAFETY: non-null and NUL-terminated, see above.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// The current `rte_errno` of the calling thread.
pub(crate) fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local integer; no preconditions.
    unsafe { dpdk_sys::fl_errno() }
}
