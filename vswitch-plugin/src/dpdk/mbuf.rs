//! Received packets: [`Burst`], a fixed array of up to [`BURST_SIZE`] owned mbufs filled by an RX queue and freed
//! in bulk, and [`MbufRef`], a borrowed view of one mbuf (bytes, lengths, port, RX timestamp).
//!
//! # Guarantees
//! - Nothing here allocates per burst or per packet: a `Burst` is a fixed array reused for every `rx_burst`.
//! - Every mbuf a `Burst` holds is freed exactly once: by [`Burst::free_all`], by the next `rx_burst` into it, or
//!   when the burst is dropped. An `MbufRef` borrows the burst, so it cannot outlive the mbuf.
//! - A burst keeps EAL alive (it holds EAL once it has held an mbuf), so freeing its mbufs is always valid.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use dpdk_sys::rte_mbuf;

use super::eal::EalShared;
use super::error::DpdkError;
use super::mempool::Mbuf;

/// Most mbufs a [`Burst`] holds: DPDK's customary RX burst size.
pub const BURST_SIZE: usize = 32;

/// Up to [`BURST_SIZE`] owned mbufs, as received by `RxQueue::rx_burst` (or pushed for `TxQueue::tx_burst`).
pub struct Burst {
    mbufs: [*mut rte_mbuf; BURST_SIZE],
    len: usize,
    /// Set the first time the burst holds an mbuf; keeps EAL (and so pool memory) valid for the frees.
    eal: Option<Arc<EalShared>>,
}

impl Burst {
    /// An empty burst. Make one per worker and reuse it for every receive.
    pub fn new() -> Burst {
        Burst {
            mbufs: [std::ptr::null_mut(); BURST_SIZE],
            len: 0,
            eal: None,
        }
    }

    /// Number of mbufs held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no mbuf is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The mbuf at `index`, if held.
    pub fn get(&self, index: usize) -> Option<MbufRef<'_>> {
        let ptr = *self.mbufs[..self.len].get(index)?;
        // SAFETY: every pointer in mbufs[..len] is a valid mbuf owned by this burst; the view borrows the burst.
        NonNull::new(ptr).map(|ptr| unsafe { MbufRef::from_non_null(ptr) })
    }

    /// Views of the held mbufs, in receive order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = MbufRef<'_>> + '_ {
        self.mbufs[..self.len].iter().map(|&ptr| {
            // SAFETY: every pointer in mbufs[..len] is a valid, non-null mbuf owned by this burst (rx_burst and push
            // only store what DPDK returned / an owned Mbuf); the view borrows the burst.
            unsafe { MbufRef::from_non_null(NonNull::new_unchecked(ptr)) }
        })
    }

    /// The first segment's bytes of the mbuf at `index`, writable (to rewrite a frame before sending it again).
    /// The burst owns its mbufs exclusively: this crate never makes clones or indirect mbufs.
    pub fn data_mut(&mut self, index: usize) -> Option<&mut [u8]> {
        let m = *self.mbufs[..self.len].get(index)?;
        if m.is_null() {
            return None;
        }
        // SAFETY: mbufs[..len] are valid mbufs owned by this burst, referenced by nothing else; plain field reads.
        let (base, offset, len) = unsafe { ((*m).buf_addr, (*m).data_off, (*m).data_len) };
        if base.is_null() || len == 0 {
            return Some(&mut []);
        }
        // SAFETY: DPDK's invariant for a valid mbuf: buf_addr + data_off .. + data_len lies inside its buffer; the
        // burst is borrowed mutably, so no other view of these bytes exists while the slice lives.
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                base.cast::<u8>().add(usize::from(offset)),
                usize::from(len),
            )
        })
    }

    /// The raw mbuf pointers held, e.g. to hand the burst to a C API that only reads them.
    pub fn as_ptrs(&self) -> &[*mut rte_mbuf] {
        &self.mbufs[..self.len]
    }

    /// Returns every held mbuf to its pool (`rte_pktmbuf_free_bulk`).
    pub fn free_all(&mut self) {
        if self.len == 0 {
            return;
        }
        let count = self.len as u32; // len <= BURST_SIZE = 32
        // SAFETY: mbufs[..len] are valid mbufs owned by this burst and EAL is alive (self.eal); after the call
        // len = 0, so none is freed twice.
        unsafe { dpdk_sys::fl_pktmbuf_free_bulk(self.mbufs.as_mut_ptr(), count) };
        self.len = 0;
    }

    /// Adds an owned mbuf at the end (to transmit it).
    ///
    /// # Errors
    /// Gives the mbuf back when the burst is full.
    pub fn push(&mut self, mbuf: Mbuf) -> Result<(), Mbuf> {
        if self.len == BURST_SIZE {
            return Err(mbuf);
        }
        let (ptr, pool) = mbuf.into_parts();
        self.keep_eal(pool.eal());
        self.mbufs[self.len] = ptr.as_ptr();
        self.len += 1;
        Ok(())
    }

    /// The whole array for an RX call to fill; the burst must be empty (free_all first).
    pub(crate) fn fill_slots(&mut self) -> &mut [*mut rte_mbuf; BURST_SIZE] {
        debug_assert!(self.len == 0);
        &mut self.mbufs
    }

    /// Records that DPDK filled the first `len` slots.
    pub(crate) fn set_filled(&mut self, len: usize, eal: &Arc<EalShared>) {
        debug_assert!(len <= BURST_SIZE);
        self.len = len.min(BURST_SIZE);
        if self.len != 0 {
            self.keep_eal(eal);
        }
    }

    /// The held pointers for a TX call, which takes the first `sent`; see `consume_front`.
    pub(crate) fn tx_slots(&mut self) -> (&mut [*mut rte_mbuf], usize) {
        (&mut self.mbufs[..self.len], self.len)
    }

    /// Forgets the first `sent` mbufs (now DPDK's) and moves the rest to the front.
    pub(crate) fn consume_front(&mut self, sent: usize) {
        let sent = sent.min(self.len);
        self.mbufs.copy_within(sent..self.len, 0);
        self.len -= sent;
    }

    fn keep_eal(&mut self, eal: &Arc<EalShared>) {
        if self.eal.is_none() {
            self.eal = Some(Arc::clone(eal));
        }
    }
}

impl Default for Burst {
    fn default() -> Burst {
        Burst::new()
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.free_all();
    }
}

// SAFETY: the burst exclusively owns its mbufs; DPDK's default (multi-producer) pool ops let any thread free them.
unsafe impl Send for Burst {}

impl std::fmt::Debug for Burst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Burst").field("len", &self.len).finish()
    }
}

/// A borrowed view of one mbuf: its first segment's bytes, lengths, input port and RX timestamp.
#[derive(Clone, Copy)]
pub struct MbufRef<'a> {
    ptr: NonNull<rte_mbuf>,
    _borrow: PhantomData<&'a rte_mbuf>,
}

impl<'a> MbufRef<'a> {
    /// A view of an mbuf handed over by a host vSwitch through the C ABI. `None` for a null pointer.
    ///
    /// # Safety
    /// `mbuf` must be null or point to a valid, initialised `rte_mbuf` of this process's DPDK (22.11 layout), and for
    /// `'a` the mbuf, its data (`buf_addr + data_off`, `data_len` bytes) and its segment chain must stay allocated
    /// and must not be written by anyone (no free, no TX, no modification by the host).
    pub unsafe fn from_raw(mbuf: *mut rte_mbuf) -> Option<MbufRef<'a>> {
        // SAFETY: forwarded to the caller.
        NonNull::new(mbuf).map(|ptr| unsafe { MbufRef::from_non_null(ptr) })
    }

    /// # Safety
    /// As [`MbufRef::from_raw`], for a non-null pointer.
    pub(crate) unsafe fn from_non_null(ptr: NonNull<rte_mbuf>) -> MbufRef<'a> {
        MbufRef {
            ptr,
            _borrow: PhantomData,
        }
    }

    /// The bytes of the first segment (`rte_pktmbuf_mtod`, `data_len` bytes). For a single-segment packet, the whole
    /// frame; see [`MbufRef::pkt_len`] and [`MbufRef::next_segment`] otherwise.
    pub fn data(&self) -> &'a [u8] {
        let m = self.ptr.as_ptr();
        // SAFETY: the mbuf is valid and unmodified for 'a (constructor contract); plain field reads.
        let (base, offset, len) = unsafe { ((*m).buf_addr, (*m).data_off, (*m).data_len) };
        if base.is_null() || len == 0 {
            return &[];
        }
        // SAFETY: DPDK's invariant for a valid mbuf: buf_addr + data_off .. + data_len lies inside its buffer; the
        // bytes are not written during 'a (constructor contract).
        unsafe {
            std::slice::from_raw_parts(base.cast::<u8>().add(usize::from(offset)), usize::from(len))
        }
    }

    /// Length of the whole packet, all segments (`pkt_len`).
    pub fn pkt_len(&self) -> u32 {
        // SAFETY: valid mbuf, plain field read.
        unsafe { (*self.ptr.as_ptr()).pkt_len }
    }

    /// Length of the first segment (`data_len`).
    pub fn data_len(&self) -> u16 {
        // SAFETY: valid mbuf, plain field read.
        unsafe { (*self.ptr.as_ptr()).data_len }
    }

    /// The port the packet arrived on (`port`).
    pub fn port(&self) -> u16 {
        // SAFETY: valid mbuf, plain field read.
        unsafe { (*self.ptr.as_ptr()).port }
    }

    /// Number of segments (`nb_segs`).
    pub fn nb_segs(&self) -> u16 {
        // SAFETY: valid mbuf, plain field read.
        unsafe { (*self.ptr.as_ptr()).nb_segs }
    }

    /// The next segment of a multi-segment packet.
    pub fn next_segment(&self) -> Option<MbufRef<'a>> {
        // SAFETY: valid mbuf, plain field read.
        let next = unsafe { (*self.ptr.as_ptr()).next };
        // SAFETY: the chain belongs to the mbuf and is valid for 'a as the mbuf is (constructor contract).
        NonNull::new(next).map(|ptr| unsafe { MbufRef::from_non_null(ptr) })
    }

    /// Offload flags (`ol_flags`).
    pub fn ol_flags(&self) -> u64 {
        // SAFETY: valid mbuf, plain field read.
        unsafe { (*self.ptr.as_ptr()).ol_flags }
    }

    /// The driver's RX timestamp in its own unit, when the driver set it on this mbuf.
    pub fn rx_timestamp_raw(&self, ts: &RxTimestamp) -> Option<u64> {
        if self.ol_flags() & ts.flag == 0 {
            return None;
        }
        let base = self.ptr.as_ptr().cast::<u8>();
        // SAFETY: `ts.offset` is the registered rx-timestamp dynfield (checked non-negative and inside rte_mbuf at
        // lookup); a driver that sets the flag has written the 8-byte field.
        Some(unsafe { base.add(ts.offset).cast::<u64>().read_unaligned() })
    }

    /// The RX timestamp in nanoseconds since the Unix epoch, when the driver set it on this mbuf and its unit is
    /// known (see [`TimestampUnit`]).
    pub fn rx_timestamp_ns(&self, ts: &RxTimestamp) -> Option<u64> {
        let raw = self.rx_timestamp_raw(ts)?;
        match ts.unit {
            TimestampUnit::Nanoseconds => Some(raw),
            TimestampUnit::Microseconds => raw.checked_mul(1_000),
            TimestampUnit::DeviceClock => None,
        }
    }

    /// The raw mbuf.
    pub fn as_ptr(&self) -> *mut rte_mbuf {
        self.ptr.as_ptr()
    }
}

impl std::fmt::Debug for MbufRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MbufRef")
            .field("port", &self.port())
            .field("pkt_len", &self.pkt_len())
            .field("data_len", &self.data_len())
            .field("nb_segs", &self.nb_segs())
            .finish()
    }
}

/// Unit of a driver's RX timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUnit {
    /// Nanoseconds since the Unix epoch.
    Nanoseconds,
    /// Microseconds since the Unix epoch: `net_pcap` in DPDK 22.11 stores the capture's `ts_sec * 10^6 + ts_usec`
    /// (measured, see `tests/dpdk_pcap.rs`).
    Microseconds,
    /// The NIC's free-running clock (`rte_eth_read_clock` ticks): not convertible here.
    DeviceClock,
}

/// Where the RX timestamp lives in an mbuf: the `rte_dynfield_timestamp` dynamic field and the
/// `rte_dynflag_rx_timestamp` flag, registered when a driver enables `RTE_ETH_RX_OFFLOAD_TIMESTAMP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxTimestamp {
    offset: usize,
    flag: u64,
    unit: TimestampUnit,
}

impl RxTimestamp {
    /// Looks up the registered field and flag. Valid for every port of the process whose driver writes them; `unit`
    /// says how to read the value (`Port::rx_timestamp` picks it from the driver).
    ///
    /// # Errors
    /// [`DpdkError::TimestampNotRegistered`] when no driver registered them (the offload is enabled on no port).
    pub fn lookup(unit: TimestampUnit) -> Result<RxTimestamp, DpdkError> {
        // SAFETY: names are NUL-terminated constants; NULL params are allowed; works once EAL is up, and returns
        // -1 (ENOENT) when the field is unknown.
        let (offset, bit) = unsafe {
            (
                dpdk_sys::rte_mbuf_dynfield_lookup(
                    dpdk_sys::RTE_MBUF_DYNFIELD_TIMESTAMP_NAME.as_ptr().cast(),
                    std::ptr::null_mut(),
                ),
                dpdk_sys::rte_mbuf_dynflag_lookup(
                    dpdk_sys::RTE_MBUF_DYNFLAG_RX_TIMESTAMP_NAME.as_ptr().cast(),
                    std::ptr::null_mut(),
                ),
            )
        };
        let offset = usize::try_from(offset)
            .ok()
            .filter(|&offset| offset + size_of::<u64>() <= size_of::<rte_mbuf>())
            .ok_or(DpdkError::TimestampNotRegistered)?;
        let flag = u32::try_from(bit)
            .ok()
            .and_then(|bit| 1u64.checked_shl(bit))
            .ok_or(DpdkError::TimestampNotRegistered)?;
        Ok(RxTimestamp { offset, flag, unit })
    }

    /// The unit of the values.
    pub fn unit(&self) -> TimestampUnit {
        self.unit
    }

    /// Byte offset of the dynamic field in `rte_mbuf`.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The `ol_flags` bit that marks a timestamped mbuf.
    pub fn flag(&self) -> u64 {
        self.flag
    }
}
