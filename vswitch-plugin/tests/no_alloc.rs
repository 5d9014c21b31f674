//! The worker's per-packet path allocates nothing: from its first frame, metering a generated mix of frames (VLAN and
//! QinQ tags, IPv4 and IPv6, fragments, VXLAN, malformed and non-IP frames) in bursts, across window boundaries
//! that seal by swapping in a spare table and push the sealed window into the exporter's ring, with the meter's
//! seal rehearsals, makes no call to the allocator on the worker's thread. One test per binary: the counting
//! allocator is this process's global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flowlog_dataplane::flow::{Action, EniTable, Meter, MeterConfig, SpareTableFallback};
use flowlog_vswitch::config::load_enis;
use flowlog_vswitch::export::link;
use flowlog_vswitch::pcap::PcapReader;
use flowlog_vswitch::worker::Worker;

/// The system allocator, counting the calls made by a thread while its `COUNTING` flag is set.
struct Counting;

static CALLS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note_call() {
    if COUNTING.with(Cell::get) {
        CALLS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, under the same contract; counting touches
// only an atomic and a const-initialised thread-local, neither of which allocates.
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

#[test]
fn metering_and_sealing_allocate_nothing() {
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
    COUNTING.with(|c| c.set(true));
    for secs in 0..=4 {
        pass(&mut worker, secs);
    }
    COUNTING.with(|c| c.set(false));
    let calls = CALLS.load(Ordering::Relaxed);

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
    assert_eq!(
        calls, 0,
        "the worker's thread called the allocator {calls} times"
    );
}
