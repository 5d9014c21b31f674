//! Ethernet ports: find one by name or id, configure N RX queues and one TX queue on a mempool (optional RX
//! timestamps, symmetric RSS where the driver has it), start/stop, statistics, device information; hand out
//! [`RxQueue`] / [`TxQueue`] handles for the workers.
//!
//! # Guarantees
//! - At most one [`Port`] handle per port in the process, and at most one handle per queue: DPDK's queues are not
//!   thread-safe, and a queue handle is `Send` but not `Sync`, so exactly one thread polls a queue.
//! - Reconfiguring or stopping needs every queue handle returned (dropped) first; a port whose queues are out is
//!   closed only after the last one is dropped.
//! - A port this process configured is stopped and closed when its last handle goes; a port only looked up (e.g.
//!   the host vSwitch's, from a plugin) is never touched on drop.
//!
//! # RSS
//! With more than one RX queue and a driver that hashes (`flow_type_rss_offloads` non-zero), RSS spreads IP, TCP and
//! UDP flows with the symmetric Toeplitz key (`0x6d5a` repeated): both directions of a connection land on the same
//! queue, so one worker sees the whole flow. DPDK 22.11 has no symmetric hash function selector, the key is how.
//! `net_pcap` has no RSS: each of its `rx_pcap=` files is one queue. `net_null` accepts an RSS configuration.

use std::cell::Cell;
use std::ffi::{CStr, c_char};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::eal::{Eal, EalShared};
use super::error::{DpdkError, strerror};
use super::mbuf::{BURST_SIZE, Burst, RxTimestamp, TimestampUnit};
use super::mempool::Mempool;

/// Ports held by a `Port` handle in this process, one bit per port id (`RTE_MAX_ETHPORTS` <= 64).
static HELD_PORTS: AtomicU64 = AtomicU64::new(0);
const _: () = assert!(dpdk_sys::RTE_MAX_ETHPORTS <= 64);

/// Length of the symmetric RSS key: the largest key of DPDK 22.11's drivers (52 bytes, i40e/ice); others take 40.
const RSS_KEY_LEN: usize = 52;

/// How to set up a port. `Default` gives one RX queue of 1024 descriptors, 1024 TX descriptors, no timestamps,
/// promiscuous mode on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// RX queues (one per worker polling this port); at least 1, at most the device's `max_rx_queues`.
    pub rx_queues: u16,
    /// Descriptors per RX queue; adjusted to the device's limits (`rte_eth_dev_adjust_nb_rx_tx_desc`).
    pub rx_descriptors: u16,
    /// Descriptors of the TX queue; adjusted likewise.
    pub tx_descriptors: u16,
    /// Ask for a per-packet RX timestamp; read it with [`Port::rx_timestamp`] and `MbufRef::rx_timestamp_ns`.
    /// Enables `RTE_ETH_RX_OFFLOAD_TIMESTAMP` on drivers that offer it, and is an error on drivers that neither offer
    /// it nor stamp anyway. `net_pcap` (22.11) stamps every packet with its capture time without the offload (it does
    /// not advertise it, and ethdev rejects offloads a driver does not advertise), so nothing is enabled there.
    pub rx_timestamp: bool,
    /// Put the port in promiscuous mode at start (drivers without it are accepted as they are).
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> PortConfig {
        PortConfig {
            rx_queues: 1,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            rx_timestamp: false,
            promiscuous: true,
        }
    }
}

/// What `Port::configure` set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSetup {
    /// RX queues configured.
    pub rx_queues: u16,
    /// TX queues configured: 1, or 0 for a receive-only driver.
    pub tx_queues: u16,
    /// RX descriptors per queue after adjustment.
    pub rx_descriptors: u16,
    /// TX descriptors after adjustment.
    pub tx_descriptors: u16,
    /// True when symmetric RSS spreads flows over the RX queues.
    pub symmetric_rss: bool,
    /// True when received mbufs carry an RX timestamp (the offload is on, or the driver always stamps).
    pub rx_timestamp: bool,
}

/// A device's capabilities (`rte_eth_dev_info_get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Driver name, e.g. `net_pcap`, `net_ring`, `net_ice`.
    pub driver_name: String,
    /// Most RX queues.
    pub max_rx_queues: u16,
    /// Most TX queues.
    pub max_tx_queues: u16,
    /// `RTE_ETH_RX_OFFLOAD_*` bits the device offers.
    pub rx_offload_capa: u64,
    /// `RTE_ETH_RSS_*` flow types the device can hash (0: no RSS).
    pub flow_type_rss_offloads: u64,
    /// RSS key length in bytes (0: the driver does not say).
    pub hash_key_size: u8,
}

impl DeviceInfo {
    /// True when the driver offers `RTE_ETH_RX_OFFLOAD_TIMESTAMP`.
    pub fn has_rx_timestamp(&self) -> bool {
        self.rx_offload_capa & dpdk_sys::FL_ETH_RX_OFFLOAD_TIMESTAMP != 0
    }
}

/// Basic port counters (`rte_eth_stats_get`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Packets dropped by the hardware because no RX descriptor was free (the workers were too slow).
    pub imissed: u64,
    /// Erroneous received packets.
    pub ierrors: u64,
    /// RX mbuf allocation failures (the mempool was empty).
    pub rx_nombuf: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Failed transmits.
    pub oerrors: u64,
}

/// One Ethernet port of this process. See the module documentation.
pub struct Port {
    inner: Arc<PortInner>,
}

impl Port {
    /// Number of Ethernet ports EAL found (vdevs and probed devices).
    pub fn count(_eal: &Eal) -> u16 {
        // SAFETY: EAL is initialised.
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }

    /// The port with this device name, e.g. `net_pcap0` for `--vdev=net_pcap0,...`, or a PCI address.
    ///
    /// # Errors
    /// [`DpdkError::InvalidName`], [`DpdkError::PortNotFound`], [`DpdkError::PortInUse`].
    pub fn by_name(eal: &Eal, name: &str) -> Result<Port, DpdkError> {
        let c_name =
            super::mempool::checked_name(name, dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize - 1)?;
        let mut id = 0u16;
        // SAFETY: EAL is initialised; the name is NUL-terminated; `id` is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut id) };
        if ret != 0 {
            return Err(DpdkError::PortNotFound(name.to_owned()));
        }
        Port::by_id(eal, id)
    }

    /// Creates a port over a new ring of `slots` descriptors (a power of two; the ring holds `slots - 1` mbufs),
    /// which is both its receive and its transmit queue: what is transmitted on the port is received on it. That
    /// is the `net_ring` vdev's loopback, whose ring holds 1,023; a deeper ring stands for a NIC queue deep enough
    /// to ride out a core's stall. The ring is named `name` and the port `net_ring_{name}`; DPDK's ring port never
    /// frees the ring, which lives as long as EAL.
    ///
    /// # Errors
    /// [`DpdkError::InvalidName`], [`DpdkError::RingPortCreate`] (`slots` not a power of two, no memory, the name
    /// taken), and those of [`Port::by_id`].
    pub fn loopback_ring(eal: &Eal, name: &str, slots: u32) -> Result<Port, DpdkError> {
        let c_name = super::mempool::checked_name(name, dpdk_sys::FL_RING_NAMESIZE as usize - 1)?;
        let failed = |errno: i32| DpdkError::RingPortCreate {
            name: name.to_owned(),
            errno,
            message: strerror(errno),
        };
        if !slots.is_power_of_two() || slots < 2 {
            return Err(failed(libc::EINVAL));
        }
        // SAFETY: EAL is initialised; the name is NUL-terminated and copied by DPDK; any socket is accepted.
        let ring = unsafe {
            dpdk_sys::rte_ring_create(
                c_name.as_ptr(),
                slots,
                dpdk_sys::FL_SOCKET_ID_ANY,
                dpdk_sys::FL_RING_F_SP_ENQ | dpdk_sys::FL_RING_F_SC_DEQ,
            )
        };
        if ring.is_null() {
            return Err(failed(super::error::rte_errno()));
        }
        // SAFETY: `ring` is the valid ring just created; the port takes it for the rest of the process.
        let id = unsafe { dpdk_sys::rte_eth_from_ring(ring) };
        let Ok(id) = u16::try_from(id) else {
            let errno = super::error::rte_errno();
            // SAFETY: no port took the ring (the call failed), so it is ours to free.
            unsafe { dpdk_sys::rte_ring_free(ring) };
            return Err(failed(errno));
        };
        Port::by_id(eal, id)
    }

    /// The port with this id.
    ///
    /// # Errors
    /// [`DpdkError::InvalidPort`], [`DpdkError::PortInUse`].
    pub fn by_id(eal: &Eal, id: u16) -> Result<Port, DpdkError> {
        // SAFETY: EAL is initialised; any id is accepted.
        if id >= 64 || unsafe { dpdk_sys::rte_eth_dev_is_valid_port(id) } == 0 {
            return Err(DpdkError::InvalidPort(id));
        }
        let bit = 1u64 << id;
        if HELD_PORTS.fetch_or(bit, Ordering::SeqCst) & bit != 0 {
            return Err(DpdkError::PortInUse(id));
        }
        let name = port_name(id);
        Ok(Port {
            inner: Arc::new(PortInner {
                id,
                name,
                state: Mutex::new(PortState::default()),
                eal: eal.shared(),
            }),
        })
    }

    /// The port id.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// The device name (`net_pcap0`, a PCI address, ...).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// NUMA socket of the device, if known.
    pub fn socket(&self) -> Option<u32> {
        // SAFETY: EAL is initialised and the id valid; returns -1 when unknown.
        u32::try_from(unsafe { dpdk_sys::rte_eth_dev_socket_id(self.inner.id) }).ok()
    }

    /// The device's capabilities.
    ///
    /// # Errors
    /// [`DpdkError::PortCall`].
    pub fn info(&self) -> Result<DeviceInfo, DpdkError> {
        let raw = self.raw_info()?;
        let driver_name = if raw.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: DPDK gives a NUL-terminated driver name that lives as long as the driver.
            unsafe { CStr::from_ptr(raw.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(DeviceInfo {
            driver_name,
            max_rx_queues: raw.max_rx_queues,
            max_tx_queues: raw.max_tx_queues,
            rx_offload_capa: raw.rx_offload_capa,
            flow_type_rss_offloads: raw.flow_type_rss_offloads,
            hash_key_size: raw.hash_key_size,
        })
    }

    /// Configures the port (stopping it first if this handle started it): `config.rx_queues` RX queues and one TX
    /// queue (none on a driver without TX), every RX queue filled from `pool`.
    ///
    /// # Errors
    /// [`DpdkError::QueuesInUse`], [`DpdkError::BadQueueCount`], [`DpdkError::TimestampUnsupported`],
    /// [`DpdkError::PortCall`].
    pub fn configure(
        &mut self,
        config: &PortConfig,
        pool: &Mempool,
    ) -> Result<PortSetup, DpdkError> {
        let id = self.inner.id;
        let mut state = self.inner.lock();
        state.check_no_queues(id)?;
        if state.started {
            port_call(id, "rte_eth_dev_stop", {
                // SAFETY: EAL is initialised, we own the port's configuration and no queue handle is out.
                unsafe { dpdk_sys::rte_eth_dev_stop(id) }
            })?;
            state.started = false;
        }
        let info = self.info()?;
        if config.rx_queues == 0 || config.rx_queues > info.max_rx_queues {
            return Err(DpdkError::BadQueueCount {
                port: id,
                requested: config.rx_queues,
                max: info.max_rx_queues,
            });
        }
        let stamps_always = driver_stamps_always(&info.driver_name);
        let timestamp_offload = config.rx_timestamp && !stamps_always;
        if timestamp_offload && !info.has_rx_timestamp() {
            return Err(DpdkError::TimestampUnsupported(id, info.driver_name));
        }
        let tx_queues = info.max_tx_queues.min(1);

        let mut conf = dpdk_sys::rte_eth_conf::default();
        if timestamp_offload {
            conf.rxmode.offloads |= dpdk_sys::FL_ETH_RX_OFFLOAD_TIMESTAMP;
        }
        let wanted_rss =
            dpdk_sys::FL_ETH_RSS_IP | dpdk_sys::FL_ETH_RSS_TCP | dpdk_sys::FL_ETH_RSS_UDP;
        let rss_hf = wanted_rss & info.flow_type_rss_offloads;
        let symmetric_rss = config.rx_queues > 1 && rss_hf != 0;
        if symmetric_rss {
            let key_len = match usize::from(info.hash_key_size) {
                0 => 40,
                len => len.min(RSS_KEY_LEN),
            };
            conf.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_key = state.rss_key.as_mut_ptr();
            conf.rx_adv_conf.rss_conf.rss_key_len = key_len as u8; // key_len <= 52
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        port_call(id, "rte_eth_dev_configure", {
            // SAFETY: EAL is initialised; the port is stopped; `conf` is a valid configuration whose RSS key points
            // into state.rss_key, which lives (and stays put, boxed) as long as the port, as drivers may read it at
            // start.
            unsafe { dpdk_sys::rte_eth_dev_configure(id, config.rx_queues, tx_queues, &conf) }
        })?;
        state.configured = None;

        let mut rx_descriptors = config.rx_descriptors;
        let mut tx_descriptors = config.tx_descriptors;
        port_call(id, "rte_eth_dev_adjust_nb_rx_tx_desc", {
            // SAFETY: configured port; both pointers are valid.
            unsafe {
                dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(
                    id,
                    &mut rx_descriptors,
                    &mut tx_descriptors,
                )
            }
        })?;
        // SAFETY: valid port id.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        let socket = u32::try_from(socket).unwrap_or(dpdk_sys::FL_SOCKET_ID_ANY as u32);
        for queue in 0..config.rx_queues {
            port_call(id, "rte_eth_rx_queue_setup", {
                // SAFETY: configured, stopped port; queue < configured count; NULL rxconf = driver defaults; the pool
                // stays alive as long as the port (kept in state.pools below).
                unsafe {
                    dpdk_sys::rte_eth_rx_queue_setup(
                        id,
                        queue,
                        rx_descriptors,
                        socket,
                        std::ptr::null(),
                        pool.as_ptr(),
                    )
                }
            })?;
        }
        for queue in 0..tx_queues {
            port_call(id, "rte_eth_tx_queue_setup", {
                // SAFETY: configured, stopped port; queue < configured count; NULL txconf = driver defaults.
                unsafe {
                    dpdk_sys::rte_eth_tx_queue_setup(
                        id,
                        queue,
                        tx_descriptors,
                        socket,
                        std::ptr::null(),
                    )
                }
            })?;
        }
        state.pools.push(pool.clone());
        state.owned = true;
        let setup = PortSetup {
            rx_queues: config.rx_queues,
            tx_queues,
            rx_descriptors,
            tx_descriptors,
            symmetric_rss,
            rx_timestamp: config.rx_timestamp || stamps_always,
        };
        state.configured = Some(Configured {
            setup,
            promiscuous: config.promiscuous,
            driver_name: info.driver_name,
        });
        state.rx_taken = vec![false; usize::from(config.rx_queues)];
        state.tx_taken = vec![false; usize::from(tx_queues)];
        Ok(setup)
    }

    /// Starts the configured port (and turns promiscuous mode on if configured).
    ///
    /// # Errors
    /// [`DpdkError::NotConfigured`], [`DpdkError::PortCall`].
    pub fn start(&mut self) -> Result<(), DpdkError> {
        let id = self.inner.id;
        let mut state = self.inner.lock();
        let configured = state
            .configured
            .as_ref()
            .ok_or(DpdkError::NotConfigured(id))?;
        let promiscuous = configured.promiscuous;
        if state.started {
            return Ok(());
        }
        port_call(id, "rte_eth_dev_start", {
            // SAFETY: configured port with every queue set up.
            unsafe { dpdk_sys::rte_eth_dev_start(id) }
        })?;
        state.started = true;
        if promiscuous {
            // SAFETY: started port. Drivers without promiscuous mode answer ENOTSUP; that is accepted.
            let ret = unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
            if ret != 0 && ret != -libc::ENOTSUP {
                port_call(id, "rte_eth_promiscuous_enable", ret)?;
            }
        }
        Ok(())
    }

    /// Stops the port.
    ///
    /// # Errors
    /// [`DpdkError::QueuesInUse`] while queue handles are out, [`DpdkError::PortCall`].
    pub fn stop(&mut self) -> Result<(), DpdkError> {
        let id = self.inner.id;
        let mut state = self.inner.lock();
        state.check_no_queues(id)?;
        if !state.started {
            return Ok(());
        }
        port_call(id, "rte_eth_dev_stop", {
            // SAFETY: started port, no queue handle out.
            unsafe { dpdk_sys::rte_eth_dev_stop(id) }
        })?;
        state.started = false;
        Ok(())
    }

    /// True between `start` and `stop`.
    pub fn is_started(&self) -> bool {
        self.inner.lock().started
    }

    /// The handle of RX queue `queue`, for the one thread that polls it.
    ///
    /// # Errors
    /// [`DpdkError::NotConfigured`], [`DpdkError::QueueUnavailable`] (no such queue, or already handed out).
    pub fn rx_queue(&self, queue: u16) -> Result<RxQueue, DpdkError> {
        self.take_queue(queue, QueueKind::Rx)?;
        Ok(RxQueue {
            port: Arc::clone(&self.inner),
            port_id: self.inner.id,
            queue,
            _one_thread: PhantomData,
        })
    }

    /// The handle of TX queue `queue` (0: the port has one).
    ///
    /// # Errors
    /// [`DpdkError::NotConfigured`], [`DpdkError::QueueUnavailable`].
    pub fn tx_queue(&self, queue: u16) -> Result<TxQueue, DpdkError> {
        self.take_queue(queue, QueueKind::Tx)?;
        Ok(TxQueue {
            port: Arc::clone(&self.inner),
            port_id: self.inner.id,
            queue,
            _one_thread: PhantomData,
        })
    }

    /// Where this port's driver puts RX timestamps, and in what unit. Call after `configure` with `rx_timestamp`
    /// (or on a driver that always stamps, `net_pcap`: microseconds since the epoch, the capture's time).
    ///
    /// # Errors
    /// [`DpdkError::NotConfigured`], [`DpdkError::TimestampUnsupported`] when the offload is off,
    /// [`DpdkError::TimestampNotRegistered`].
    pub fn rx_timestamp(&self) -> Result<RxTimestamp, DpdkError> {
        let state = self.inner.lock();
        let configured = state
            .configured
            .as_ref()
            .ok_or(DpdkError::NotConfigured(self.inner.id))?;
        if !configured.setup.rx_timestamp && !driver_stamps_always(&configured.driver_name) {
            return Err(DpdkError::TimestampUnsupported(
                self.inner.id,
                configured.driver_name.clone(),
            ));
        }
        let unit = match configured.driver_name.as_str() {
            "net_pcap" => TimestampUnit::Microseconds,
            _ => TimestampUnit::DeviceClock,
        };
        RxTimestamp::lookup(unit)
    }

    /// The port's counters.
    ///
    /// # Errors
    /// [`DpdkError::PortCall`].
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut raw = dpdk_sys::rte_eth_stats::default();
        port_call(self.inner.id, "rte_eth_stats_get", {
            // SAFETY: valid port id and out-pointer; the call only reads driver counters.
            unsafe { dpdk_sys::rte_eth_stats_get(self.inner.id, &mut raw) }
        })?;
        Ok(PortStats {
            ipackets: raw.ipackets,
            ibytes: raw.ibytes,
            imissed: raw.imissed,
            ierrors: raw.ierrors,
            rx_nombuf: raw.rx_nombuf,
            opackets: raw.opackets,
            obytes: raw.obytes,
            oerrors: raw.oerrors,
        })
    }

    /// Zeroes the port's counters.
    ///
    /// # Errors
    /// [`DpdkError::PortCall`].
    pub fn reset_stats(&self) -> Result<(), DpdkError> {
        // SAFETY: valid port id.
        port_call(self.inner.id, "rte_eth_stats_reset", unsafe {
            dpdk_sys::rte_eth_stats_reset(self.inner.id)
        })
    }

    fn raw_info(&self) -> Result<dpdk_sys::rte_eth_dev_info, DpdkError> {
        let mut raw = dpdk_sys::rte_eth_dev_info::default();
        port_call(self.inner.id, "rte_eth_dev_info_get", {
            // SAFETY: valid port id and out-pointer.
            unsafe { dpdk_sys::rte_eth_dev_info_get(self.inner.id, &mut raw) }
        })?;
        Ok(raw)
    }

    fn take_queue(&self, queue: u16, kind: QueueKind) -> Result<(), DpdkError> {
        let id = self.inner.id;
        let mut state = self.inner.lock();
        if state.configured.is_none() {
            return Err(DpdkError::NotConfigured(id));
        }
        let taken = match kind {
            QueueKind::Rx => &mut state.rx_taken,
            QueueKind::Tx => &mut state.tx_taken,
        };
        match taken.get_mut(usize::from(queue)) {
            Some(slot) if !*slot => {
                *slot = true;
                Ok(())
            }
            _ => Err(DpdkError::QueueUnavailable {
                port: id,
                kind: kind.name(),
                queue,
            }),
        }
    }
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// The receive side of one queue of a port. `Send` (move it to the worker lcore), not `Sync`.
pub struct RxQueue {
    port: Arc<PortInner>,
    port_id: u16,
    queue: u16,
    _one_thread: PhantomData<Cell<()>>,
}

impl RxQueue {
    /// Frees whatever `burst` still holds, then receives up to [`BURST_SIZE`] packets into it
    /// (`rte_eth_rx_burst`). Returns the number received (0 when none is waiting or the port is stopped).
    #[inline]
    pub fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        burst.free_all();
        let slots = burst.fill_slots();
        // SAFETY: this handle is the only one for (port, queue) and is !Sync, so no other thread polls the queue;
        // the port is configured and not closed (we hold it); `slots` has room for BURST_SIZE pointers.
        let received = unsafe {
            dpdk_sys::fl_eth_rx_burst(
                self.port_id,
                self.queue,
                slots.as_mut_ptr(),
                BURST_SIZE as u16, // 32
            )
        };
        burst.set_filled(usize::from(received), &self.port.eal);
        usize::from(received)
    }

    /// The port id.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// The queue index.
    pub fn queue_id(&self) -> u16 {
        self.queue
    }
}

impl Drop for RxQueue {
    fn drop(&mut self) {
        self.port.release(QueueKind::Rx, self.queue);
    }
}

impl std::fmt::Debug for RxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxQueue")
            .field("port", &self.port_id)
            .field("queue", &self.queue)
            .finish()
    }
}

/// The transmit side of one queue of a port. `Send`, not `Sync`.
pub struct TxQueue {
    port: Arc<PortInner>,
    port_id: u16,
    queue: u16,
    _one_thread: PhantomData<Cell<()>>,
}

impl TxQueue {
    /// Transmits the mbufs of `burst` (`rte_eth_tx_burst`): those sent now belong to the driver and leave the
    /// burst; those not sent (queue full) stay in it, in order, for a retry or `free_all`. Returns the number sent.
    pub fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        let (slots, len) = burst.tx_slots();
        // SAFETY: only handle for (port, queue), !Sync; the port is configured and alive (held); slots holds `len`
        // (<= 32) valid mbufs owned by the burst, whose ownership passes to the driver for the first `sent`.
        let sent = unsafe {
            dpdk_sys::fl_eth_tx_burst(self.port_id, self.queue, slots.as_mut_ptr(), len as u16) // len <= 32
        };
        burst.consume_front(usize::from(sent));
        usize::from(sent)
    }

    /// The port id.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// The queue index.
    pub fn queue_id(&self) -> u16 {
        self.queue
    }
}

impl Drop for TxQueue {
    fn drop(&mut self) {
        self.port.release(QueueKind::Tx, self.queue);
    }
}

impl std::fmt::Debug for TxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxQueue")
            .field("port", &self.port_id)
            .field("queue", &self.queue)
            .finish()
    }
}

#[derive(Clone, Copy)]
enum QueueKind {
    Rx,
    Tx,
}

impl QueueKind {
    fn name(self) -> &'static str {
        match self {
            QueueKind::Rx => "RX",
            QueueKind::Tx => "TX",
        }
    }
}

/// Shared by the `Port` handle and its queue handles; stops and closes a configured port when the last one goes.
struct PortInner {
    id: u16,
    name: String,
    state: Mutex<PortState>,
    /// Declared last: dropped after the port is closed and its pools released.
    eal: Arc<EalShared>,
}

impl PortInner {
    fn lock(&self) -> MutexGuard<'_, PortState> {
        // The state is plain data updated in single assignments: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, kind: QueueKind, queue: u16) {
        let mut state = self.lock();
        let taken = match kind {
            QueueKind::Rx => &mut state.rx_taken,
            QueueKind::Tx => &mut state.tx_taken,
        };
        if let Some(slot) = taken.get_mut(usize::from(queue)) {
            *slot = false;
        }
    }
}

impl Drop for PortInner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if state.owned {
            if state.started {
                // SAFETY: last handle on the port: no queue handle exists; EAL is alive (self.eal).
                let _ = unsafe { dpdk_sys::rte_eth_dev_stop(self.id) };
            }
            // SAFETY: as above; the port was configured by this process and is stopped. Its pools are released
            // after this (state.pools drops with self).
            let _ = unsafe { dpdk_sys::rte_eth_dev_close(self.id) };
        }
        HELD_PORTS.fetch_and(!(1u64 << self.id), Ordering::SeqCst);
    }
}

struct PortState {
    configured: Option<Configured>,
    started: bool,
    /// True once this process configured the port: then it stops and closes it at the end.
    owned: bool,
    rx_taken: Vec<bool>,
    tx_taken: Vec<bool>,
    /// Pools the RX queues were set up with; kept until the port is closed.
    pools: Vec<Mempool>,
    /// The symmetric RSS key, boxed so its address is stable for as long as the port lives.
    rss_key: Box<[u8; RSS_KEY_LEN]>,
}

impl PortState {
    fn check_no_queues(&self, port: u16) -> Result<(), DpdkError> {
        let count = self
            .rx_taken
            .iter()
            .chain(&self.tx_taken)
            .filter(|taken| **taken)
            .count();
        if count != 0 {
            return Err(DpdkError::QueuesInUse { port, count });
        }
        Ok(())
    }
}

struct Configured {
    setup: PortSetup,
    promiscuous: bool,
    driver_name: String,
}

impl Default for PortState {
    fn default() -> PortState {
        PortState {
            configured: None,
            started: false,
            owned: false,
            rx_taken: Vec::new(),
            tx_taken: Vec::new(),
            pools: Vec::new(),
            rss_key: Box::new(symmetric_rss_key()),
        }
    }
}

/// The symmetric Toeplitz key: `0x6d 0x5a` repeated hashes (src, dst) and (dst, src) alike.
fn symmetric_rss_key() -> [u8; RSS_KEY_LEN] {
    let mut key = [0u8; RSS_KEY_LEN];
    for (index, byte) in key.iter_mut().enumerate() {
        *byte = if index % 2 == 0 { 0x6d } else { 0x5a };
    }
    key
}

/// True for drivers that put an RX timestamp on every mbuf without the offload being enabled: DPDK 22.11's
/// `net_pcap` registers the rx-timestamp dynfield at probe and stores `ts_sec * 10^6 + ts_usec` of the capture in
/// every mbuf it receives (verified by disassembly of `librte_net_pcap.so` 22.11 and by `tests/dpdk_pcap.rs`).
fn driver_stamps_always(driver_name: &str) -> bool {
    driver_name == "net_pcap"
}

/// The device name of a port id.
fn port_name(id: u16) -> String {
    let mut buf = [0 as c_char; dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize];
    // SAFETY: valid port id; `buf` has RTE_ETH_NAME_MAX_LEN bytes as DPDK requires and is NUL-terminated on success.
    let ret = unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) };
    if ret != 0 {
        return format!("port{id}");
    }
    // SAFETY: NUL-terminated within buf on success.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Turns an `rte_eth_*` return code into a result.
fn port_call(port: u16, call: &'static str, ret: i32) -> Result<(), DpdkError> {
    if ret >= 0 {
        return Ok(());
    }
    Err(DpdkError::PortCall {
        port,
        call,
        errno: -ret,
        message: strerror(-ret),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_key_is_symmetric_pattern() {
        let key = symmetric_rss_key();
        assert_eq!(&key[..4], &[0x6d, 0x5a, 0x6d, 0x5a]);
        assert!(key.chunks(2).all(|pair| pair == [0x6d, 0x5a]));
    }

    #[test]
    fn port_call_maps_negative_errno() {
        assert!(port_call(1, "x", 0).is_ok());
        match port_call(3, "rte_eth_dev_start", -libc::EINVAL) {
            Err(DpdkError::PortCall {
                port, call, errno, ..
            }) => {
                assert_eq!((port, call, errno), (3, "rte_eth_dev_start", libc::EINVAL));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
