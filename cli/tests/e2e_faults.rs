//! Exporter-side fault tests with real processes: `flowlog-vswitch` meters a looping capture on the live (TSC)
//! clock with one-second windows and delivers to a real `flowlog-collector`, which is killed with SIGKILL while
//! traffic flows and started again later on the same data directory and port. The records are then read back
//! with `flowlog sql` and checked against the program's own counters:
//! - the packets and bytes of the OK and SKIPDATA records equal the `attributed` counters (every metered
//!   packet arrived, none twice);
//! - no record is stored twice, and every window of the run (outage included) is there;
//! - when the spool overflows, the SKIPDATA records carry exactly the packets and bytes the exporter reports
//!   it summarised.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{KillOnDrop, Server, bin, eal_args, run, wait_for_log};

const PROJECT: &str = "faults";
const LOGSTORE: &str = "flows";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_collector(data: &Path, port: u16) -> Server {
    Server::start(
        &bin("flowlog-collector"),
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Starts `flowlog-vswitch` on a looping capture of `d`, one-second windows on the TSC clock, delivering to
/// `collector` with the extra `[export]` lines; waits until it captures. Returns the process and its log file.
fn start_vswitch(d: &Path, collector: &str, export: &str) -> (KillOnDrop, std::path::PathBuf) {
    flowlog_trafficgen::generate(&flowlog_trafficgen::GenConfig::new(7, 5_000, 60), d).unwrap();
    std::fs::write(
        d.join("vswitch.toml"),
        format!(
            r#"host = "host-faults"
[eal]
args = {eal}
[[ports]]
name = "net_pcap0"
[dataplane]
interval-secs = 1
clock = "tsc"
# Slack for an exporter starved of CPU by other tests (a worker with no spare table summarises as SKIPDATA).
spare-tables = 8
flow-capacity = 65536
[capture]
enis-file = "enis.toml"
project = "{PROJECT}"
logstore = "{LOGSTORE}"
[export]
collector = "{collector}"
shutdown-grace-ms = 60000
{export}
"#,
            eal = eal_args(&format!(
                "net_pcap0,rx_pcap={},infinite_rx=1",
                d.join("capture.pcap").display()
            )),
        ),
    )
    .unwrap();
    let log = d.join("vswitch.log");
    let vswitch = KillOnDrop(
        Command::new(bin("flowlog-vswitch"))
            .arg("--config")
            .arg(d.join("vswitch.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_log(&log, &["capturing"], 0, Duration::from_secs(30));
    (vswitch, log)
}

/// What `flowlog-vswitch` reported when it stopped.
#[derive(Debug)]
struct Report {
    text: String,
    attributed: u64,
    attributed_bytes: u64,
    skipped_by_workers: u64,
    records_skipped: u64,
    packets_skipped: u64,
    bytes_skipped: u64,
    abandoned: u64,
}

/// Stops `flowlog-vswitch` with SIGTERM (it flushes the open window and delivers everything) and reads its report.
fn stop_vswitch(mut vswitch: KillOnDrop, log: &Path) -> Report {
    Command::new("kill")
        .arg("-TERM")
        .arg(vswitch.0.id().to_string())
        .status()
        .unwrap();
    let status = vswitch.0.wait().unwrap();
    let text = std::fs::read_to_string(log).unwrap();
    assert!(status.success(), "flowlog-vswitch failed:\n{text}");
    let summary = text
        .lines()
        .find(|l| l.starts_with("flowlog-vswitch: ") && l.contains(" frames, "))
        .unwrap_or_else(|| panic!("no summary line:\n{text}"))
        .to_string();
    let counter = |name: &str| -> u64 {
        text.lines()
            .filter_map(|l| l.strip_prefix("  "))
            .filter_map(|l| l.split_once(' '))
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| v.trim().parse().unwrap())
    };
    let before = |suffix: &str| -> u64 {
        let end = summary
            .find(suffix)
            .unwrap_or_else(|| panic!("{suffix:?} not in {summary:?}"));
        let digits: String = summary[..end]
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.chars().rev().collect::<String>().parse().unwrap()
    };
    Report {
        attributed: counter("attributed"),
        attributed_bytes: counter("attributed_bytes"),
        skipped_by_workers: counter("table_full_packets")
            + counter("refused_packets")
            + counter("no_table_packets"),
        records_skipped: before(" replaced by SKIPDATA"),
        packets_skipped: before(" packets, "),
        bytes_skipped: before(" bytes), "),
        abandoned: before(" abandoned"),
        text,
    }
}

/// Runs one SQL query on the logstore; one JSON object per row.
fn sql(collector: &str, query: &str) -> Vec<serde_json::Value> {
    run(Command::new(bin("flowlog")).args([
        "sql",
        "--collector",
        collector,
        "--project",
        PROJECT,
        "--logstore",
        LOGSTORE,
        "--format",
        "json",
        query,
    ]))
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// Packets, bytes and records of the logstore per log status.
fn totals(collector: &str, status: &str) -> (u64, u64, u64) {
    let rows = sql(
        collector,
        &format!(
            "SELECT COALESCE(SUM(packets), 0) AS p, COALESCE(SUM(bytes), 0) AS b, COUNT(*) AS n \
             FROM flows WHERE log_status = '{status}'"
        ),
    );
    let n = |k: &str| rows[0][k].as_u64().unwrap();
    (n("p"), n("b"), n("n"))
}

/// Groups of records with the same identity (ENI, status, 5-tuple, direction, action, window) seen more than once,
/// among the records of `statuses`.
fn doubled(collector: &str, statuses: &str) -> u64 {
    let key = "eni_id, log_status, srcaddr, dstaddr, srcport, dstport, protocol, direction, action, start";
    let rows = sql(
        collector,
        &format!(
            "SELECT COUNT(*) AS n FROM (SELECT {key} FROM flows WHERE log_status IN ({statuses}) \
             GROUP BY {key} HAVING COUNT(*) > 1)"
        ),
    );
    rows[0]["n"].as_u64().unwrap()
}

/// The collector is killed (SIGKILL) while traffic flows and stays down for 60 s; the exporter keeps what is not
/// acknowledged in its spool (a small memory part, then disk) and, once the collector is back, every record
/// arrives, once: the stored packets equal what the workers metered, nothing is doubled, no window is missing.
#[test]
fn e2e_collector_down_60s_while_traffic_flows_then_every_record_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (data, port) = (d.join("collector-data"), free_port());
    let collector = start_collector(&data, port);
    let addr = collector.addr.clone();
    let (vswitch, log) = start_vswitch(
        d,
        &addr,
        &format!(
            "spool-memory-bytes = 262144\nspool-dir = \"{}\"",
            d.join("spool").display()
        ),
    );
    std::thread::sleep(Duration::from_secs(3));

    let mut collector = collector;
    collector.child.kill().unwrap();
    collector.child.wait().unwrap();
    let down = unix_now();
    std::thread::sleep(Duration::from_secs(60));
    let up = unix_now();
    let collector = start_collector(&data, port);
    assert_eq!(collector.addr, addr);
    std::thread::sleep(Duration::from_secs(3));
    let report = stop_vswitch(vswitch, &log);
    println!(
        "collector down {}..{}: attributed {} packets, {} bytes",
        down, up, report.attributed, report.attributed_bytes
    );

    assert_eq!(report.abandoned, 0, "{}", report.text);
    assert_eq!(
        report.records_skipped, 0,
        "the spool had room: {}",
        report.text
    );
    assert_eq!(report.skipped_by_workers, 0, "{}", report.text);
    let (ok_packets, ok_bytes, ok_records) = totals(&addr, "OK");
    let (skip_packets, _, skip_records) = totals(&addr, "SKIPDATA");
    assert!(ok_records > 1_000, "{ok_records} records");
    assert_eq!(skip_records, 0);
    assert_eq!(skip_packets, 0);
    assert_eq!(
        ok_packets, report.attributed,
        "every metered packet arrived once"
    );
    assert_eq!(ok_bytes, report.attributed_bytes);
    assert_eq!(doubled(&addr, "'OK', 'NODATA', 'SKIPDATA'"), 0);

    // Every one-second window from before the outage to after it is in the logstore.
    let rows = sql(
        &addr,
        "SELECT COUNT(DISTINCT start) AS windows, MIN(start) AS first, MAX(start) AS last FROM flows",
    );
    let n = |k: &str| rows[0][k].as_i64().unwrap();
    let (windows, first, last) = (n("windows"), n("first"), n("last"));
    println!("{windows} windows from {first} to {last}; {ok_records} OK records");
    assert!(
        first < down && last >= up,
        "{first}..{last} covers the outage {down}..{up}"
    );
    assert_eq!(windows, last - first + 1, "no window is missing");
    collector.stop();
}

/// With a spool too small for an outage (1 MiB of memory, no disk), what overflows becomes SKIPDATA records whose
/// packets and bytes equal exactly what the exporter reports it summarised; with the OK records they still add up
/// to every metered packet.
#[test]
fn e2e_spool_overflow_becomes_skipdata_with_exactly_the_dropped_counts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (data, port) = (d.join("collector-data"), free_port());
    let collector = start_collector(&data, port);
    let addr = collector.addr.clone();
    let (vswitch, log) = start_vswitch(d, &addr, "spool-memory-bytes = 1048576");
    std::thread::sleep(Duration::from_secs(2));

    let mut collector = collector;
    collector.child.kill().unwrap();
    collector.child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(10));
    let collector = start_collector(&data, port);
    std::thread::sleep(Duration::from_secs(3));
    let report = stop_vswitch(vswitch, &log);
    println!(
        "spool overflow: {} records replaced by SKIPDATA ({} packets, {} bytes); attributed {} packets",
        report.records_skipped, report.packets_skipped, report.bytes_skipped, report.attributed
    );

    assert_eq!(report.abandoned, 0, "{}", report.text);
    assert_eq!(report.skipped_by_workers, 0, "{}", report.text);
    assert!(
        report.records_skipped > 0,
        "the spool overflowed: {}",
        report.text
    );
    assert!(report.packets_skipped > 0);
    let (ok_packets, ok_bytes, _) = totals(&addr, "OK");
    let (skip_packets, skip_bytes, skip_records) = totals(&addr, "SKIPDATA");
    assert!(skip_records > 0);
    assert!(ok_packets > 0, "before and after the outage, records flow");
    assert_eq!(
        skip_packets, report.packets_skipped,
        "SKIPDATA packets = what was dropped"
    );
    assert_eq!(
        skip_bytes, report.bytes_skipped,
        "SKIPDATA bytes = what was dropped"
    );
    assert_eq!(ok_packets + skip_packets, report.attributed);
    assert_eq!(ok_bytes + skip_bytes, report.attributed_bytes);
    assert_eq!(doubled(&addr, "'OK'"), 0);
    collector.stop();
}
