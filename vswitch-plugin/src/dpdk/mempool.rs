//! Packet-buffer pools (`rte_pktmbuf_pool_create`), owned and freed on drop, and single owned mbufs from them.
//!
//! # Guarantees
//! - A pool is freed only when its last handle is gone and none of its mbufs is outstanding; a pool dropped while
//!   mbufs are still out (in a burst, a NIC ring, a host) is left allocated (counted by [`leaked_mempools`]) rather
//!   than freed under them.
//! - Pools and mbufs keep EAL alive: `rte_eal_cleanup` never runs before they are gone.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dpdk_sys::{rte_mbuf, rte_mempool};

use super::eal::{Eal, EalShared};
use super::error::{DpdkError, rte_errno, strerror};
use super::mbuf::MbufRef;

/// Pools dropped while some of their mbufs were still outstanding (left allocated instead of freed).
static LEAKED_MEMPOOLS: AtomicUsize = AtomicUsize::new(0);

/// The NUMA socket to allocate on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// Any socket (`SOCKET_ID_ANY`).
    Any,
    /// This socket id.
    Id(u32),
}

/// An owned `rte_mempool` of packet mbufs. Cloning gives another handle on the same pool.
pub struct Mempool {
    inner: Arc<MempoolInner>,
}

impl Mempool {
    /// Longest pool name DPDK accepts (`RTE_MEMPOOL_NAMESIZE` - 1).
    pub const MAX_NAME_LEN: usize = dpdk_sys::FL_MEMPOOL_NAMESIZE as usize - 1;
    /// Data room of DPDK's default mbuf (`RTE_MBUF_DEFAULT_BUF_SIZE`): 2048 bytes of frame plus the 128-byte headroom.
    pub const DEFAULT_DATA_ROOM: u16 = dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;
    /// Headroom DPDK reserves in front of the frame in every mbuf (`RTE_PKTMBUF_HEADROOM`).
    pub const HEADROOM: u16 = dpdk_sys::RTE_PKTMBUF_HEADROOM as u16;

    /// Creates a pool of `mbufs` packet buffers named `name` (unique in the process, at most
    /// [`Mempool::MAX_NAME_LEN`] bytes) with a per-lcore cache of `cache_size` mbufs and `data_room` bytes of buffer
    /// per mbuf (headroom included: [`Mempool::DEFAULT_DATA_ROOM`] suits 1518-byte frames).
    ///
    /// Without hugepages (`--no-huge`) each mbuf takes about 4 KiB of EAL memory: `-m` must cover 4 KiB x `mbufs`
    /// plus ~50 MB. A power of two minus one (`8191`) is DPDK's optimal `mbufs`.
    ///
    /// # Errors
    /// [`DpdkError::InvalidName`], [`DpdkError::MempoolCreate`] (e.g. `ENOMEM`, `EEXIST`, cache too large).
    pub fn new(
        eal: &Eal,
        name: &str,
        mbufs: u32,
        cache_size: u32,
        data_room: u16,
        socket: Socket,
    ) -> Result<Mempool, DpdkError> {
        let c_name = checked_name(name, Self::MAX_NAME_LEN)?;
        let socket_id = match socket {
            Socket::Any => dpdk_sys::FL_SOCKET_ID_ANY,
            Socket::Id(id) => i32::try_from(id).unwrap_or(dpdk_sys::FL_SOCKET_ID_ANY),
        };
        // SAFETY: EAL is initialised (`eal` exists); the name is NUL-terminated and copied by DPDK.
        let pool = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                c_name.as_ptr(),
                mbufs,
                cache_size,
                0,
                data_room,
                socket_id,
            )
        };
        let Some(ptr) = NonNull::new(pool) else {
            let errno = rte_errno();
            return Err(DpdkError::MempoolCreate {
                name: name.to_owned(),
                errno,
                message: strerror(errno),
            });
        };
        Ok(Mempool {
            inner: Arc::new(MempoolInner {
                ptr,
                name: name.to_owned(),
                size: mbufs,
                eal: eal.shared(),
            }),
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Number of mbufs in the pool.
    pub fn capacity(&self) -> u32 {
        self.inner.size
    }

    /// Mbufs free right now (in the pool and in the per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive (self holds it); the count is a read of its ring and caches.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.inner.ptr.as_ptr()) }
    }

    /// Mbufs taken from the pool and not returned yet.
    pub fn in_use(&self) -> u32 {
        // SAFETY: as in `available`.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.inner.ptr.as_ptr()) }
    }

    /// Takes one mbuf from the pool, reset and empty.
    ///
    /// # Errors
    /// [`DpdkError::MempoolExhausted`].
    pub fn alloc(&self) -> Result<Mbuf, DpdkError> {
        // SAFETY: the pool is alive and a pktmbuf pool (made by rte_pktmbuf_pool_create); safe from any thread.
        let mbuf = unsafe { dpdk_sys::fl_pktmbuf_alloc(self.inner.ptr.as_ptr()) };
        let ptr = NonNull::new(mbuf)
            .ok_or_else(|| DpdkError::MempoolExhausted(self.inner.name.clone()))?;
        Ok(Mbuf {
            ptr,
            pool: self.clone(),
        })
    }

    /// The raw pool, e.g. to hand to a C API. It stays valid while this handle (or a clone) lives.
    pub fn as_ptr(&self) -> *mut rte_mempool {
        self.inner.ptr.as_ptr()
    }

    pub(crate) fn eal(&self) -> &Arc<EalShared> {
        &self.inner.eal
    }
}

impl Clone for Mempool {
    /// Another handle on the same pool (the pool is freed after the last one).
    fn clone(&self) -> Mempool {
        Mempool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.inner.name)
            .field("capacity", &self.inner.size)
            .field("available", &self.available())
            .finish()
    }
}

/// Pools dropped while some of their mbufs were still outstanding, since the process started. Each such pool is left
/// allocated (a bounded leak) because freeing it would free memory those mbufs still point into.
pub fn leaked_mempools() -> usize {
    LEAKED_MEMPOOLS.load(Ordering::Relaxed)
}

/// One owned packet mbuf, returned to its pool on drop. Used to build frames (tests, TX).
pub struct Mbuf {
    ptr: NonNull<rte_mbuf>,
    pool: Mempool,
}

impl Mbuf {
    /// Appends `bytes` to the end of the packet's data.
    ///
    /// # Errors
    /// [`DpdkError::NoRoom`] when the mbuf's tailroom is smaller than `bytes` (nothing is appended).
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), DpdkError> {
        // SAFETY: we own the mbuf.
        let available = usize::from(unsafe { dpdk_sys::fl_pktmbuf_tailroom(self.ptr.as_ptr()) });
        let no_room = || DpdkError::NoRoom {
            requested: bytes.len(),
            available,
        };
        let len = u16::try_from(bytes.len())
            .ok()
            .filter(|&len| usize::from(len) <= available)
            .ok_or_else(no_room)?;
        // SAFETY: we own the mbuf; len <= tailroom, so DPDK grows data_len/pkt_len and returns the old tail.
        let tail = unsafe { dpdk_sys::fl_pktmbuf_append(self.ptr.as_ptr(), len) };
        if tail.is_null() {
            return Err(no_room());
        }
        // SAFETY: `tail` points to `len` writable bytes inside the mbuf's buffer, which nothing else references.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), tail.cast::<u8>(), bytes.len()) };
        Ok(())
    }

    /// A view of the packet.
    pub fn as_ref(&self) -> MbufRef<'_> {
        // SAFETY: we own a valid mbuf; the view borrows self, so it cannot outlive or race a mutation.
        unsafe { MbufRef::from_non_null(self.ptr) }
    }

    /// Gives up ownership: the caller must free the mbuf (`rte_pktmbuf_free`) or pass it to DPDK, which does.
    /// The mbuf's pool is not kept alive by the returned pointer.
    pub fn into_raw(self) -> *mut rte_mbuf {
        let ptr = self.ptr.as_ptr();
        std::mem::forget(self);
        ptr
    }

    /// Splits into the raw mbuf and the pool handle that keeps it valid (used by `Burst::push`).
    pub(crate) fn into_parts(self) -> (NonNull<rte_mbuf>, Mempool) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the pool handle is moved out exactly once.
        let pool = unsafe { std::ptr::read(&this.pool) };
        (this.ptr, pool)
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and its pool is alive (self.pool), so it goes back exactly once.
        unsafe { dpdk_sys::fl_pktmbuf_free(self.ptr.as_ptr()) };
    }
}

// SAFETY: an Mbuf is exclusively owned; DPDK's default (multi-producer) pool ops let any thread free it.
unsafe impl Send for Mbuf {}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("pool", &self.pool.name())
            .field("pkt_len", &self.as_ref().pkt_len())
            .finish()
    }
}

/// The shared part of a pool: freed with the last handle.
struct MempoolInner {
    ptr: NonNull<rte_mempool>,
    name: String,
    size: u32,
    /// Declared after `ptr`: dropped after the pool is freed, so EAL outlives it.
    eal: Arc<EalShared>,
}

impl Drop for MempoolInner {
    fn drop(&mut self) {
        // SAFETY: the pool is alive until this drop; counting is a read.
        let in_use = unsafe { dpdk_sys::rte_mempool_in_use_count(self.ptr.as_ptr()) };
        if in_use != 0 {
            LEAKED_MEMPOOLS.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // SAFETY: last handle, no mbuf outstanding (no port references it: ports hold a handle), EAL alive.
        unsafe { dpdk_sys::rte_mempool_free(self.ptr.as_ptr()) };
    }
}

// SAFETY: the pool pointer is stable for the pool's life and DPDK's default mempool ops are multi-producer /
// multi-consumer: get, put and counts are safe from any thread. Freeing happens once, in drop.
unsafe impl Send for MempoolInner {}
// SAFETY: see Send; shared access only reads or uses the thread-safe pool operations.
unsafe impl Sync for MempoolInner {}

/// Checks a DPDK object name and converts it for C.
pub(crate) fn checked_name(name: &str, max_len: usize) -> Result<CString, DpdkError> {
    let invalid = |reason| DpdkError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > max_len {
        return Err(invalid("too long"));
    }
    CString::new(name).map_err(|_| invalid("contains a NUL byte"))
}
