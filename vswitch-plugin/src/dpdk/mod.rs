//! The safe layer over DPDK that the worker loop, the standalone program and the C ABI use: EAL ([`Eal`]), mbuf
//! pools ([`Mempool`]), ports and their queues ([`Port`], [`RxQueue`], [`TxQueue`]), received packets ([`Burst`],
//! [`MbufRef`]), RX timestamps ([`RxTimestamp`]) and the TSC ([`tsc`]).
//!
//! With `flowlog::ffi`, the only `unsafe` code of the plugin: every block carries a `// SAFETY:` line. The raw
//! bindings and the C shim are in the `dpdk-sys` crate.
//!
//! # Guarantees
//! - Safe code cannot misuse DPDK through this API: EAL is initialised at most once per process and cleaned up only
//!   after every handle is gone; a queue is polled by exactly one thread; a port is reconfigured, stopped or closed
//!   only with no queue handle out; an mbuf is freed exactly once and never while a view of it lives; a pool is never
//!   freed under outstanding mbufs. The one `unsafe` entry point is [`MbufRef::from_raw`] (mbufs handed over by a
//!   host vSwitch) and [`Eal::from_host`].
//! - The receive path allocates nothing: [`RxQueue::rx_burst`] fills a reused [`Burst`] of [`BURST_SIZE`] mbufs.
//!
//! # Typical use
//! ```no_run
//! use flowlog_vswitch::dpdk::{Burst, Eal, Mempool, Port, PortConfig, Socket};
//! let args: Vec<String> = ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--vdev=net_null0"]
//!     .iter().map(|s| s.to_string()).collect();
//! let eal = Eal::init(&args)?;
//! let pool = Mempool::new(&eal, "rx", 8191, 256, Mempool::DEFAULT_DATA_ROOM, Socket::Any)?;
//! let mut port = Port::by_name(&eal, "net_null0")?;
//! port.configure(&PortConfig::default(), &pool)?;
//! port.start()?;
//! let mut queue = port.rx_queue(0)?;
//! let Some(worker) = eal.worker_lcores().next() else { return Ok(()) };
//! eal.launch(worker, move || {
//!     let mut burst = Burst::new();
//!     let mut packets = 0usize;
//!     while packets < 1_000_000 {
//!         packets += queue.rx_burst(&mut burst);
//!         for mbuf in burst.iter() {
//!             let _frame: &[u8] = mbuf.data();
//!         }
//!     }
//!     0
//! })?;
//! assert_eq!(eal.wait(worker)?, 0);
//! # Ok::<(), flowlog_vswitch::dpdk::DpdkError>(())
//! ```
//!
//! # Threads
//! `rte_eal_init` pins the calling thread, and the threads it creates later inherit that: a non-lcore thread (the
//! exporter, an async runtime) calls [`unpin_current_thread`] first thing.

mod clock;
mod eal;
mod error;
mod mbuf;
mod mempool;
mod port;

pub use clock::{TscClock, thread_cpu_time, tsc, tsc_hz};
pub use dpdk_sys::rte_mbuf;
pub use eal::{
    Eal, MAX_LCORES, check_cpus_usable, cpus_before_eal, current_lcore, current_thread_cpus,
    pin_current_thread, unpin_current_thread,
};
pub use error::DpdkError;
pub use mbuf::{BURST_SIZE, Burst, MbufRef, RxTimestamp, TimestampUnit};
pub use mempool::{Mbuf, Mempool, Socket, leaked_mempools};
pub use port::{DeviceInfo, Port, PortConfig, PortSetup, PortStats, RxQueue, TxQueue};
