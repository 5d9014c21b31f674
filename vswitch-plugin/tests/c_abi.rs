//! Tests of the plugin library's C ABI (`src/ffi.rs`).
//!
//! - `c_host_gets_the_expected_records` (acceptance point 4 of issue 2): a generated capture with Zipf flows,
//!   VLANs, IPv6, fragments and malformed frames; the expected records computed here with the dataplane directly
//!   (the same verdict rule as the host, cross-checked against the generator's own expected records for the
//!   ACCEPT-only case); `tests/c/host.c` compiled against the checked-in header, loading the built
//!   `libflowlog_vswitch.so` with dlopen and feeding it the bursts a `net_pcap` port receives. Its output must be
//!   exactly the expected records, REJECT ones included.
//! - The other tests call the ABI in-process (the functions are plain Rust too) after initialising EAL the way a
//!   host does: bad arguments return error statuses and never crash; the TSC clock and ENI changes on a running
//!   instance work.
//!
//! Each test initialises EAL at most once: run them with cargo nextest (one process per test).

mod dpdk_common;

use std::ffi::{CStr, CString, c_char};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use flowlog_dataplane::export::{records, write_jsonl};
use flowlog_dataplane::flow::{Action, Eni, EniTable, MacAddr, Meter, MeterConfig, SealedWindow};
use flowlog_vswitch::config::load_enis;
use flowlog_vswitch::dpdk::{Eal, Mbuf, Mempool, Socket, current_thread_cpus, rte_mbuf};
use flowlog_vswitch::ffi::*;
use flowlog_vswitch::pcap::PcapReader;

/// Packets of the generated capture.
const PACKETS: u64 = 20_000;
/// Window length of the test, seconds.
const INTERVAL: u32 = 60;
/// The instance's default flow-table capacity (`dataplane.flow-capacity`), used for the expected records too.
const FLOW_CAPACITY: usize = 262_144;

#[test]
fn c_host_gets_the_expected_records() -> anyhow::Result<()> {
    let plugin = plugin_library()?;
    let dir = tempfile::tempdir()?;
    let generated = dir.path().join("gen");
    let summary = flowlog_trafficgen::generate(
        &flowlog_trafficgen::GenConfig::new(7, PACKETS, u64::from(INTERVAL)),
        &generated,
    )?;
    let capture = generated.join(flowlog_trafficgen::CAPTURE_FILE);
    let enis = load_enis(&generated.join(flowlog_trafficgen::ENIS_FILE))?;
    // The generator's first ENI has traffic (only the last two never do): the host's security group denies it.
    let rejected = enis.first().context("the generator wrote no ENI")?.mac;

    let expected = expected_records(&capture, &enis, rejected)?;
    let generator_expected =
        std::fs::read_to_string(generated.join(flowlog_trafficgen::EXPECTED_FILE))?;
    ensure_same_lines(
        &expected.accept_only,
        &generator_expected,
        "dataplane (all ACCEPT)",
        "generator's expected.jsonl",
    )?;
    ensure!(
        expected.with_verdicts.contains("\"action\":\"REJECT\""),
        "the expected records hold no REJECT record: the test would prove nothing"
    );
    ensure!(
        expected.with_verdicts.contains("\"action\":\"ACCEPT\""),
        "the expected records hold no ACCEPT record"
    );

    let enis_txt = dir.path().join("enis.txt");
    let mut text = String::new();
    for e in &enis {
        text.push_str(&format!(
            "{} {} {} {} {} {}\n",
            e.id, e.mac, e.vm_id, e.vswitch_id, e.vpc_id, e.account_id
        ));
    }
    std::fs::write(&enis_txt, text)?;

    let host = compile_host(dir.path())?;
    let output = dir.path().join("records.jsonl");
    let run = run_with_timeout(
        Command::new(&host)
            .arg(&plugin)
            .arg(&capture)
            .arg(&enis_txt)
            .arg(&output)
            .arg(rejected.to_string())
            .env("RUST_LOG", "warn"),
        Duration::from_secs(300),
    )?;
    ensure!(
        run.status.success(),
        "the C host failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&run.stdout));
    let got = std::fs::read_to_string(&output)
        .with_context(|| format!("reading the host's output {}", output.display()))?;
    ensure_same_lines(
        &got,
        &expected.with_verdicts,
        "records written through the C ABI",
        "expected",
    )?;
    eprintln!(
        "c_abi: {} frames, {} records (generator: {} records) match exactly",
        summary.frames,
        got.lines().count(),
        generator_expected.lines().count()
    );
    Ok(())
}

#[test]
fn bad_arguments_return_error_statuses() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let output = dir.path().join("records.jsonl");
    let config = tsc_config(&output, 2);

    // Before EAL: no instance.
    let mut instance: *mut FlowlogInstance = ptr::null_mut();
    // SAFETY: valid C string and out pointer.
    let status = unsafe { flowlog_instance_create(config.as_ptr(), &mut instance) };
    ensure_status(status, FlowlogStatus::NoEal, "create before EAL")?;
    ensure!(instance.is_null());
    ensure!(
        last_error().contains("rte_eal_init"),
        "last error: {}",
        last_error()
    );

    let _eal = Eal::init(&dpdk_common::eal_args("--lcores=0@(0-1)", &[]))?;

    // SAFETY: in every call below the arguments are null, valid C strings, valid out pointers or live handles,
    // exactly as each case says.
    unsafe {
        ensure_status(
            flowlog_instance_create(ptr::null(), &mut instance),
            FlowlogStatus::NullPointer,
            "create(NULL config)",
        )?;
        ensure_status(
            flowlog_instance_create(config.as_ptr(), ptr::null_mut()),
            FlowlogStatus::NullPointer,
            "create(NULL out)",
        )?;
        let not_utf8 = [0xffu8, 0xfe, 0];
        ensure_status(
            flowlog_instance_create(not_utf8.as_ptr().cast(), &mut instance),
            FlowlogStatus::BadArgument,
            "create(not UTF-8)",
        )?;
        for (text, why) in [
            ("[dataplane]\ninterval-secs = 0\n", "interval-secs"),
            ("[dataplane]\nunknown-field = 1\n", "unknown-field"),
            ("this is not TOML", "configuration"),
            ("[eal]\nargs = [\"-l\", \"0\"]\n", "standalone program"),
            ("[run]\nstop-when-idle-ms = 5\n", "standalone program"),
            ("[dataplane]\nclock = \"rx-timestamp\"\n", "rx-timestamp"),
            (
                "[export]\njsonl = \"/nonexistent-dir/x/records.jsonl\"\n",
                "cannot open",
            ),
            ("[capture]\nproject = \"p\"\n", "go together"),
            ("[export]\ncpus = \"0-\"\n", "export.cpus"),
            ("[export]\ncpus = \"1023\"\n", "cannot run on CPUs [1023]"),
        ] {
            let text = CString::new(text)?;
            let status = flowlog_instance_create(text.as_ptr(), &mut instance);
            ensure_status(
                status,
                FlowlogStatus::BadConfig,
                &format!("create({text:?})"),
            )?;
            ensure!(instance.is_null(), "*out set after a failure");
            ensure!(
                last_error().contains(why),
                "last error for {text:?} does not mention `{why}`: {}",
                last_error()
            );
        }

        ensure_status(
            flowlog_instance_create(config.as_ptr(), &mut instance),
            FlowlogStatus::Ok,
            "create",
        )?;
        ensure!(!instance.is_null());

        let eni = TestEni::new("eni-a", "02:00:00:e1:00:01");
        ensure_status(
            flowlog_eni_add(instance, eni.as_c()),
            FlowlogStatus::Ok,
            "add",
        )?;
        // The same id again replaces it (here with a new MAC).
        let moved = TestEni::new("eni-a", "02:00:00:e1:00:11");
        ensure_status(
            flowlog_eni_add(instance, moved.as_c()),
            FlowlogStatus::Ok,
            "replace",
        )?;
        let twin = TestEni::new("eni-b", "02:00:00:e1:00:11");
        ensure_status(
            flowlog_eni_add(instance, twin.as_c()),
            FlowlogStatus::DuplicateMac,
            "add(duplicate MAC)",
        )?;
        ensure!(
            last_error().contains("eni-a"),
            "last error: {}",
            last_error()
        );
        // The old MAC is free again after the replacement.
        let reuse = TestEni::new("eni-b", "02:00:00:e1:00:01");
        ensure_status(
            flowlog_eni_add(instance, reuse.as_c()),
            FlowlogStatus::Ok,
            "add(freed MAC)",
        )?;
        for (eni, status) in [
            (
                TestEni::new("", "02:00:00:e1:00:05"),
                FlowlogStatus::BadArgument,
            ),
            (
                TestEni::new("eni-c", "not-a-mac"),
                FlowlogStatus::BadArgument,
            ),
        ] {
            ensure_status(
                flowlog_eni_add(instance, eni.as_c()),
                status,
                "add(bad ENI)",
            )?;
        }
        let mut null_field = *eni.as_c();
        null_field.account_id = ptr::null();
        ensure_status(
            flowlog_eni_add(instance, &null_field),
            FlowlogStatus::NullPointer,
            "add(NULL field)",
        )?;
        ensure!(
            last_error().contains("account_id"),
            "last error: {}",
            last_error()
        );
        ensure_status(
            flowlog_eni_add(instance, ptr::null()),
            FlowlogStatus::NullPointer,
            "add(NULL)",
        )?;
        ensure_status(
            flowlog_eni_add(ptr::null_mut(), eni.as_c()),
            FlowlogStatus::NullPointer,
            "add(NULL instance)",
        )?;
        let unknown = CString::new("eni-unknown")?;
        ensure_status(
            flowlog_eni_remove(instance, unknown.as_ptr()),
            FlowlogStatus::UnknownEni,
            "remove(unknown)",
        )?;
        ensure_status(
            flowlog_eni_remove(instance, ptr::null()),
            FlowlogStatus::NullPointer,
            "remove(NULL)",
        )?;
        let b = CString::new("eni-b")?;
        ensure_status(
            flowlog_eni_remove(instance, b.as_ptr()),
            FlowlogStatus::Ok,
            "remove",
        )?;
        ensure_status(
            flowlog_eni_remove(instance, b.as_ptr()),
            FlowlogStatus::UnknownEni,
            "remove twice",
        )?;

        let mut worker: *mut FlowlogWorker = ptr::null_mut();
        ensure_status(
            flowlog_instance_worker(instance, 2, &mut worker),
            FlowlogStatus::BadArgument,
            "worker(out of range)",
        )?;
        ensure_status(
            flowlog_instance_worker(instance, u32::MAX, &mut worker),
            FlowlogStatus::BadArgument,
            "worker(u32::MAX)",
        )?;
        ensure_status(
            flowlog_instance_worker(instance, 0, ptr::null_mut()),
            FlowlogStatus::NullPointer,
            "worker(NULL out)",
        )?;
        ensure_status(
            flowlog_instance_worker(instance, 0, &mut worker),
            FlowlogStatus::Ok,
            "worker 0",
        )?;
        let mut again: *mut FlowlogWorker = ptr::null_mut();
        ensure_status(
            flowlog_instance_worker(instance, 0, &mut again),
            FlowlogStatus::AlreadyTaken,
            "worker 0 twice",
        )?;
        ensure!(again.is_null());

        // Bursts: empty ones are fine with NULL arrays; otherwise every array must be there and valid.
        ensure_status(
            flowlog_worker_process(worker, ptr::null(), ptr::null(), ptr::null(), 0),
            FlowlogStatus::Ok,
            "empty burst",
        )?;
        let mbufs: [*mut rte_mbuf; 2] = [ptr::null_mut(); 2];
        let ports = [0u16; 2];
        let verdicts = [FLOWLOG_ACCEPT; 2];
        ensure_status(
            flowlog_worker_process(worker, mbufs.as_ptr(), ports.as_ptr(), verdicts.as_ptr(), 2),
            FlowlogStatus::BadArgument,
            "burst with NULL mbufs",
        )?;
        ensure!(
            last_error().contains("mbufs[0]"),
            "last error: {}",
            last_error()
        );
        ensure_status(
            flowlog_worker_process(worker, ptr::null(), ports.as_ptr(), verdicts.as_ptr(), 2),
            FlowlogStatus::NullPointer,
            "burst with NULL array",
        )?;
        ensure_status(
            flowlog_worker_process(
                ptr::null_mut(),
                mbufs.as_ptr(),
                ports.as_ptr(),
                verdicts.as_ptr(),
                2,
            ),
            FlowlogStatus::NullPointer,
            "burst on NULL worker",
        )?;
        ensure_status(
            flowlog_worker_tick(ptr::null_mut()),
            FlowlogStatus::NullPointer,
            "tick(NULL)",
        )?;
        ensure_status(flowlog_worker_tick(worker), FlowlogStatus::Ok, "tick")?;
        let mut stats = std::mem::MaybeUninit::<FlowlogWorkerStats>::uninit();
        ensure_status(
            flowlog_worker_read_stats(worker, ptr::null_mut()),
            FlowlogStatus::NullPointer,
            "stats(NULL out)",
        )?;
        ensure_status(
            flowlog_worker_read_stats(worker, stats.as_mut_ptr()),
            FlowlogStatus::Ok,
            "stats",
        )?;
        let stats = stats.assume_init();
        ensure!(
            stats.packets == 0 && stats.bursts == 1,
            "refused bursts were counted: {stats:?}"
        );

        ensure_status(
            flowlog_instance_destroy(instance),
            FlowlogStatus::WorkersActive,
            "destroy with a worker taken",
        )?;
        ensure_status(flowlog_worker_release(worker), FlowlogStatus::Ok, "release")?;
        ensure_status(
            flowlog_worker_release(ptr::null_mut()),
            FlowlogStatus::NullPointer,
            "release(NULL)",
        )?;
        // Worker 1 was never taken: destroy finishes it.
        ensure_status(
            flowlog_instance_destroy(instance),
            FlowlogStatus::Ok,
            "destroy",
        )?;
        ensure_status(
            flowlog_instance_destroy(ptr::null_mut()),
            FlowlogStatus::NullPointer,
            "destroy(NULL)",
        )?;
    }

    // Every status has its own text.
    let statuses = [
        FlowlogStatus::Ok,
        FlowlogStatus::NullPointer,
        FlowlogStatus::BadConfig,
        FlowlogStatus::BadArgument,
        FlowlogStatus::AlreadyTaken,
        FlowlogStatus::UnknownEni,
        FlowlogStatus::DuplicateMac,
        FlowlogStatus::NoEal,
        FlowlogStatus::WorkersActive,
        FlowlogStatus::Exporter,
        FlowlogStatus::Panic,
    ];
    let texts: Vec<String> = statuses.iter().map(|&s| status_text(s as i32)).collect();
    let mut unique = texts.clone();
    unique.sort();
    unique.dedup();
    ensure!(
        unique.len() == statuses.len(),
        "status texts are not distinct: {texts:?}"
    );
    ensure!(
        !texts.contains(&status_text(1)),
        "status 1 has a known text"
    );
    ensure!(status_text(1) == "unknown status");
    ensure!(flowlog_abi_version() == FLOWLOG_ABI_VERSION);
    Ok(())
}

#[test]
fn tsc_clock_meters_live_bursts_and_follows_eni_changes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let output = dir.path().join("records.jsonl");
    // The exporter on the CPU `export.cpus` names: the last one this process may use.
    let exporter_cpu = *current_thread_cpus()?.last().context("no CPU")?;
    let config = CString::new(format!(
        "{}cpus = \"{exporter_cpu}\"\n",
        tsc_config(&output, 1).to_str()?
    ))?;
    let eal = Eal::init(&dpdk_common::eal_args("--lcores=0@(0-1)", &[]))?;
    let pool = Mempool::new(
        &eal,
        "ffi_test",
        1023,
        0,
        Mempool::DEFAULT_DATA_ROOM,
        Socket::Any,
    )?;
    // dpdk_common::frame: 02:00:00:e1:00:02 -> 02:00:00:e1:00:01, UDP 10.0.0.1 -> 10.0.0.2:53.
    let frames: Vec<Mbuf> = (0..4u32)
        .map(|i| {
            let mut m = pool.alloc()?;
            m.append(&dpdk_common::frame(i % 2, 100))?;
            Ok(m)
        })
        .collect::<anyhow::Result<_>>()?;
    let ptrs: Vec<*mut rte_mbuf> = frames.iter().map(|m| m.as_ref().as_ptr()).collect();
    let ports = [0u16, 0, 3, 3];
    let verdicts = [
        FLOWLOG_ACCEPT,
        FLOWLOG_ACCEPT,
        FLOWLOG_REJECT,
        FLOWLOG_REJECT,
    ];
    let receiver = TestEni::new("eni-rx", "02:00:00:e1:00:01");
    let sender = TestEni::new("eni-tx", "02:00:00:e1:00:02");

    let mut instance: *mut FlowlogInstance = ptr::null_mut();
    let mut worker: *mut FlowlogWorker = ptr::null_mut();
    let mut stats = FlowlogWorkerStats::default();
    // SAFETY: every call below gets live handles, valid C strings and arrays of `ptrs.len()` live mbufs that stay
    // allocated and unmodified until `frames` is dropped at the end.
    unsafe {
        ensure_status(
            flowlog_instance_create(config.as_ptr(), &mut instance),
            FlowlogStatus::Ok,
            "create",
        )?;
        ensure_status(
            flowlog_eni_add(instance, receiver.as_c()),
            FlowlogStatus::Ok,
            "add receiver",
        )?;
        ensure_status(
            flowlog_instance_worker(instance, 0, &mut worker),
            FlowlogStatus::Ok,
            "worker",
        )?;
        let want = exporter_cpu.to_string();
        let placed = wait_for(Duration::from_secs(10), || {
            thread_cpus("flowlog-exporte").filter(|cpus| *cpus == want)
        });
        ensure!(
            placed.is_some(),
            "the exporter thread is not on CPU {exporter_cpu}: {:?}",
            thread_cpus("flowlog-exporte")
        );
        ensure_status(
            flowlog_worker_process(worker, ptrs.as_ptr(), ports.as_ptr(), verdicts.as_ptr(), 4),
            FlowlogStatus::Ok,
            "burst",
        )?;
        ensure_status(
            flowlog_worker_read_stats(worker, &mut stats),
            FlowlogStatus::Ok,
            "stats",
        )?;
        ensure!(stats.packets == 4 && stats.attributed == 4, "{stats:?}");
        ensure!(
            stats.port_packets[0] == 2 && stats.port_packets[3] == 2,
            "{stats:?}"
        );

        // A sender registered while the worker runs is attributed once the exporter has published it: each burst
        // is then counted twice (both ends are ENIs).
        ensure_status(
            flowlog_eni_add(instance, sender.as_c()),
            FlowlogStatus::Ok,
            "add sender",
        )?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let before = stats.attributed;
            ensure_status(
                flowlog_worker_process(worker, ptrs.as_ptr(), ports.as_ptr(), verdicts.as_ptr(), 4),
                FlowlogStatus::Ok,
                "burst",
            )?;
            ensure_status(
                flowlog_worker_read_stats(worker, &mut stats),
                FlowlogStatus::Ok,
                "stats",
            )?;
            if stats.attributed - before == 8 {
                break;
            }
            ensure!(stats.attributed - before == 4, "{stats:?}");
            ensure!(
                Instant::now() < deadline,
                "the new ENI never reached the worker"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        ensure_status(flowlog_worker_tick(worker), FlowlogStatus::Ok, "tick")?;
        ensure_status(flowlog_worker_release(worker), FlowlogStatus::Ok, "release")?;
        ensure_status(
            flowlog_instance_destroy(instance),
            FlowlogStatus::Ok,
            "destroy",
        )?;
    }
    drop(frames);

    let text = std::fs::read_to_string(&output)?;
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let ok: Vec<&serde_json::Value> = records.iter().filter(|r| r["log-status"] == "OK").collect();
    // Receiver: in, ACCEPT and REJECT; sender: out, ACCEPT and REJECT.
    for (eni, direction) in [("eni-rx", "in"), ("eni-tx", "out")] {
        for action in ["ACCEPT", "REJECT"] {
            let packets: u64 = ok
                .iter()
                .filter(|r| {
                    r["eni-id"] == eni && r["direction"] == direction && r["action"] == action
                })
                .filter_map(|r| r["packets"].as_u64())
                .sum();
            ensure!(
                packets > 0,
                "no {action} {direction} packets for {eni}:\n{text}"
            );
        }
    }
    for r in &ok {
        let start = r["start"].as_u64().context("start")?;
        ensure!(
            start.is_multiple_of(60) && start + 3600 > now && start <= now,
            "window not live: {r}"
        );
    }
    let total: u64 = ok.iter().filter_map(|r| r["packets"].as_u64()).sum();
    ensure!(
        total == stats.attributed,
        "records hold {total} packets, the worker attributed {}",
        stats.attributed
    );
    Ok(())
}

/// The records the C host must produce, computed with the dataplane directly.
struct Expected {
    /// JSON lines with the host's verdicts.
    with_verdicts: String,
    /// JSON lines with every packet ACCEPT (the generator's own expectation).
    accept_only: String,
}

/// Meters the capture as the plugin sees it through `net_pcap` (captured bytes, their length as the wire
/// length, microsecond timestamps), once with the host's verdict rule and once all ACCEPT.
fn expected_records(capture: &Path, enis: &[Eni], rejected: MacAddr) -> anyhow::Result<Expected> {
    let table = Arc::new(EniTable::from_enis(enis.iter().cloned())?);
    let mut with_verdicts = Meter::new(MeterConfig::new(INTERVAL, FLOW_CAPACITY), table.clone())?;
    let mut accept_only = Meter::new(MeterConfig::new(INTERVAL, FLOW_CAPACITY), table)?;
    let (mut sealed, mut sealed_accept) = (Vec::<SealedWindow>::new(), Vec::<SealedWindow>::new());
    let mut reader = PcapReader::open(capture)?;
    while let Some(packet) = reader.next_packet()? {
        let secs = packet.timestamp_ns / 1_000_000_000;
        let action = host_verdict(packet.data, rejected);
        with_verdicts.account(secs, packet.data, packet.data.len(), action, &mut sealed);
        accept_only.account(
            secs,
            packet.data,
            packet.data.len(),
            Action::Accept,
            &mut sealed_accept,
        );
    }
    with_verdicts.flush(&mut sealed);
    accept_only.flush(&mut sealed_accept);
    let render = |windows: &[SealedWindow]| {
        let mut out = String::new();
        for window in windows {
            write_jsonl(&records(window), None, &mut out);
        }
        out
    };
    Ok(Expected {
        with_verdicts: render(&sealed),
        accept_only: render(&sealed_accept),
    })
}

/// The security group of `tests/c/host.c`: REJECT when the frame's destination or source MAC is `rejected`.
fn host_verdict(frame: &[u8], rejected: MacAddr) -> Action {
    let rejected = rejected.0;
    match (frame.get(0..6), frame.get(6..12)) {
        (Some(dst), Some(src)) if dst == rejected || src == rejected => Action::Reject,
        _ => Action::Accept,
    }
}

/// Fails with the first differing line when two JSON-lines texts differ.
fn ensure_same_lines(got: &str, want: &str, got_name: &str, want_name: &str) -> anyhow::Result<()> {
    if got == want {
        return Ok(());
    }
    let (got_lines, want_lines): (Vec<&str>, Vec<&str>) =
        (got.lines().collect(), want.lines().collect());
    let first = got_lines
        .iter()
        .zip(&want_lines)
        .position(|(a, b)| a != b)
        .unwrap_or(got_lines.len().min(want_lines.len()));
    bail!(
        "{got_name} ({} lines) differ from {want_name} ({} lines) from line {}:\n  {got_name}: {}\n  {want_name}: {}",
        got_lines.len(),
        want_lines.len(),
        first + 1,
        got_lines.get(first).unwrap_or(&"(end)"),
        want_lines.get(first).unwrap_or(&"(end)"),
    )
}

/// The built plugin library: `libflowlog_vswitch.so` of this test binary's target directory, in `deps/` (built
/// with the very library this test links) or uplifted into `target/<profile>/` by `cargo build`, whichever is
/// newer. Fails when it is missing or older than the crate's sources.
fn plugin_library() -> anyhow::Result<PathBuf> {
    const BUILD: &str = "cargo build -p flowlog-vswitch";
    let exe = std::env::current_exe()?;
    let deps_dir = exe.parent().context("test binary without a directory")?;
    let profile_dir = deps_dir
        .parent()
        .context("test binary outside a target directory")?;
    let newest = [deps_dir, profile_dir]
        .iter()
        .map(|dir| dir.join("libflowlog_vswitch.so"))
        .filter_map(|path| Some((std::fs::metadata(&path).ok()?.modified().ok()?, path)))
        .max();
    let Some((built, library)) = newest else {
        bail!(
            "libflowlog_vswitch.so is missing from {}: build the plugin library first with `{BUILD}` \
             (scripts/test does)",
            profile_dir.display()
        );
    };
    let sources = newest_source(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))?;
    ensure!(
        built >= sources,
        "{} is older than the crate's sources: rebuild it with `{BUILD}`",
        library.display()
    );
    Ok(library)
}

/// The newest modification time of the files under `dir`.
fn newest_source(dir: &Path) -> anyhow::Result<std::time::SystemTime> {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let modified = if entry.file_type()?.is_dir() {
            newest_source(&entry.path())?
        } else {
            entry.metadata()?.modified()?
        };
        newest = newest.max(modified);
    }
    Ok(newest)
}

/// Compiles `tests/c/host.c` against the checked-in header and the system DPDK; returns the executable.
fn compile_host(dir: &Path) -> anyhow::Result<PathBuf> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pkg_config = |arg: &str| -> anyhow::Result<Vec<String>> {
        let out = Command::new("pkg-config")
            .args([arg, "libdpdk"])
            .output()
            .context("running pkg-config (install pkg-config and libdpdk-dev: scripts/setup)")?;
        ensure!(
            out.status.success(),
            "pkg-config {arg} libdpdk failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    };
    let executable = dir.join("host");
    let out = Command::new("cc")
        .args(["-std=gnu11", "-O1", "-Wall", "-Wextra", "-Werror"])
        .args(pkg_config("--cflags")?)
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("tests/c/host.c"))
        .arg("-o")
        .arg(&executable)
        .args(pkg_config("--libs")?)
        .arg("-ldl")
        .output()
        .context("running cc")?;
    ensure!(
        out.status.success(),
        "compiling tests/c/host.c failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(executable)
}

/// Runs a command to its end, killing it after `timeout`.
fn run_with_timeout(
    command: &mut Command,
    timeout: Duration,
) -> anyhow::Result<std::process::Output> {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the C host")?;
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = done_tx.send(());
        output
    });
    if done_rx.recv_timeout(timeout).is_err() {
        // The child is ours; kill it by its pid so the waiter returns.
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        let _ = waiter.join();
        bail!("the C host did not finish within {timeout:?}");
    }
    match waiter.join() {
        Ok(output) => Ok(output?),
        Err(_) => bail!("the waiter thread panicked"),
    }
}

/// A configuration with the TSC clock, JSON lines to `output`, `workers` workers.
/// The CPU list (`Cpus_allowed_list`) of this process's thread named `name` (as `/proc` shows it: at most 15
/// bytes), if there is one.
fn thread_cpus(name: &str) -> Option<String> {
    std::fs::read_dir("/proc/self/task").ok()?.find_map(|task| {
        let task = task.ok()?.path();
        let comm = std::fs::read_to_string(task.join("comm")).ok()?;
        if comm.trim_end() != name {
            return None;
        }
        std::fs::read_to_string(task.join("status"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|cpus| cpus.trim().to_string())
    })
}

/// Polls `probe` every 10 ms until it returns `Some`, for at most `timeout`.
fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn tsc_config(output: &Path, workers: usize) -> CString {
    let text = format!(
        "[dataplane]\ninterval-secs = 60\nworkers = {workers}\nclock = \"tsc\"\n\n[export]\njsonl = {:?}\n",
        output.display().to_string()
    );
    CString::new(text).expect("no NUL in the configuration")
}

/// An ENI with owned C strings.
struct TestEni {
    _strings: Vec<CString>,
    raw: FlowlogEni,
}

impl TestEni {
    fn new(id: &str, mac: &str) -> Self {
        let strings: Vec<CString> = [id, mac, "i-test", "vsw-test", "vpc-test", "100000000001"]
            .iter()
            .map(|s| CString::new(*s).expect("no NUL"))
            .collect();
        let raw = FlowlogEni {
            id: strings[0].as_ptr(),
            mac: strings[1].as_ptr(),
            vm_id: strings[2].as_ptr(),
            vswitch_id: strings[3].as_ptr(),
            vpc_id: strings[4].as_ptr(),
            account_id: strings[5].as_ptr(),
        };
        Self {
            _strings: strings,
            raw,
        }
    }

    fn as_c(&self) -> &FlowlogEni {
        &self.raw
    }
}

fn ensure_status(got: FlowlogStatus, want: FlowlogStatus, what: &str) -> anyhow::Result<()> {
    ensure!(
        got == want,
        "{what}: got {got:?}, want {want:?}; last error: {}",
        last_error()
    );
    Ok(())
}

fn last_error() -> String {
    // SAFETY: flowlog_last_error returns a NUL-terminated string valid until the next failed call on this thread.
    unsafe { CStr::from_ptr(flowlog_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn status_text(status: i32) -> String {
    let text: *const c_char = flowlog_status_str(status);
    // SAFETY: flowlog_status_str returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}
