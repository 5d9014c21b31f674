//! Acceptance: a generated capture of 1 million packets played through `flowlog-vswitch` on a `net_pcap` vdev,
//! exported over gRPC to `flowlog-collector` and read back with `flowlog query --json`, gives the same records
//! as `flowlog replay`. Every process is real: the collector, the DPDK program (real EAL and PMD), the CLI.

mod common;

use std::process::Command;

use common::{Server, assert_same_records, bin, eal_args, generated, run, run_vswitch};

#[test]
fn e2e_vswitch_on_net_pcap_delivers_what_replay_computes() {
    let dir = generated(20_261_126, 1_000_000);
    let d = dir.path();
    let pcap = d.join("capture.pcap");

    let replayed = run(Command::new(bin("flowlog"))
        .arg("replay")
        .arg("--pcap")
        .arg(&pcap)
        .arg("--enis")
        .arg(d.join("enis.toml"))
        .args(["--interval", "60"]));

    let data = d.join("collector-data");
    let collector = Server::start(
        &bin("flowlog-collector"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    std::fs::write(
        d.join("vswitch.toml"),
        format!(
            r#"host = "host-e2e"
[eal]
args = {eal}
[[ports]]
name = "net_pcap0"
[dataplane]
interval-secs = 60
clock = "rx-timestamp"
# Played at full speed, the capture passes a window every few milliseconds: with a spare table per window, an
# exporter starved of CPU by other tests never makes a worker summarise a window as SKIPDATA.
spare-tables = 16
flow-capacity = 131072
[capture]
enis-file = "enis.toml"
project = "e2e-project"
logstore = "flows"
[export]
collector = "{collector}"
[run]
stop-when-idle-ms = 1000
"#,
            eal = eal_args(&format!("net_pcap0,rx_pcap={}", pcap.display())),
            collector = collector.addr,
        ),
    )
    .unwrap();
    let stderr = run_vswitch(d, &d.join("vswitch.toml"));
    assert!(stderr.contains("1000000 frames"), "{stderr}");
    assert!(
        stderr.contains(" 0 abandoned, 0 dropped by the ports"),
        "{stderr}"
    );

    let queried = run(Command::new(bin("flowlog")).args([
        "query",
        "--collector",
        &collector.addr,
        "--project",
        "e2e-project",
        "--logstore",
        "flows",
        "--json",
    ]));
    assert_same_records(&queried, &replayed);
    assert!(replayed.lines().count() > 10_000);
    collector.stop();
}

/// With each worker lcore on a CPU of its own (`-l 0-1`), the exporter thread runs on the CPUs the worker does
/// not use, so rendering a window never preempts the worker; the thread reports the affinity it ends up with.
#[test]
fn the_exporter_runs_off_the_worker_lcores_cpus() {
    let (cpus, stderr) = exporter_placement("");
    assert!(
        !cpus.is_empty() && !cpus.contains(&1),
        "exporter on {cpus:?}: {stderr}"
    );
}

/// `export.cpus` places the exporter where the operator says, even on a worker lcore's CPU (with a warning); CPUs
/// the process cannot use stop the program at start with the key named.
#[test]
fn the_exporter_runs_on_the_cpus_export_cpus_names() {
    let (cpus, stderr) = exporter_placement("cpus = \"1\"\n");
    assert_eq!(cpus, [1], "{stderr}");
    assert!(
        stderr.contains("export.cpus names CPUs of worker lcores"),
        "{stderr}"
    );

    let dir = generated(7, 100);
    let d = dir.path();
    std::fs::write(
        d.join("vswitch.toml"),
        placement_config(d, "cpus = \"1023\"\n"),
    )
    .unwrap();
    let output = Command::new(bin("flowlog-vswitch"))
        .current_dir(d)
        .args(["--config", "vswitch.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("export.cpus: the exporter cannot run on CPUs [1023]"),
        "{stderr}"
    );
}

/// Runs `flowlog-vswitch` with its worker lcore on CPU 1 (`-l 0-1`) and `export` (more keys of `[export]`) over a
/// generated capture; returns the CPUs the exporter thread reported and the program's log.
fn exporter_placement(export: &str) -> (Vec<usize>, String) {
    let dir = generated(7, 2_000);
    let d = dir.path();
    std::fs::write(d.join("vswitch.toml"), placement_config(d, export)).unwrap();
    let stderr = run_vswitch(d, &d.join("vswitch.toml"));
    let placed = stderr
        .lines()
        .find_map(|line| line.split("exporter thread placed cpus=[").nth(1))
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("no placement line: {stderr}"));
    let cpus = placed.split(", ").map(|cpu| cpu.parse().unwrap()).collect();
    assert!(
        std::fs::read_to_string(d.join("records.jsonl"))
            .unwrap()
            .lines()
            .count()
            > 0
    );
    (cpus, stderr)
}

/// The configuration of [`exporter_placement`], reading `capture.pcap` in `dir`.
fn placement_config(dir: &std::path::Path, export: &str) -> String {
    format!(
        r#"[eal]
args = ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry", "--log-level=lib.eal:warning", "--vdev=net_pcap0,rx_pcap={pcap}"]
[[ports]]
name = "net_pcap0"
[dataplane]
interval-secs = 60
clock = "rx-timestamp"
[capture]
enis-file = "enis.toml"
[export]
jsonl = "records.jsonl"
{export}[run]
stop-when-idle-ms = 500
"#,
        pcap = dir.join("capture.pcap").display(),
    )
}

/// Writes a classic pcap (microseconds, Ethernet).
fn write_pcap(path: &std::path::Path, frames: &[(u64, Vec<u8>, u32)]) {
    let mut out = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (ns, data, wire_len) in frames {
        let (secs, micros) = (
            (ns / 1_000_000_000) as u32,
            ((ns % 1_000_000_000) / 1_000) as u32,
        );
        for word in [secs, micros, data.len() as u32, *wire_len] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(data);
    }
    std::fs::write(path, out).unwrap();
}

/// Two RX queues (one `rx_pcap` each) polled by two worker lcores give the same records as replay: the capture is
/// split the way a symmetric RSS hash over the addresses would (both directions of a flow, and every fragment of
/// a datagram, on one queue), and the exporter merges the workers' windows.
#[test]
fn e2e_two_workers_on_two_queues_merge_to_what_replay_computes() {
    let dir = generated(31, 200_000);
    let d = dir.path();
    let expected = std::fs::read_to_string(d.join("expected.jsonl")).unwrap();

    let mut reader = flowlog_vswitch::pcap::PcapReader::open(&d.join("capture.pcap")).unwrap();
    let mut queues: [Vec<(u64, Vec<u8>, u32)>; 2] = [Vec::new(), Vec::new()];
    let mut index = 0usize;
    while let Some(p) = reader.next_packet().unwrap() {
        let queue = match flowlog_dataplane::wire::parse(p.data, p.wire_len as usize) {
            Ok(packet) => {
                // Symmetric in the two addresses, blind to ports (so fragments stay with their datagram).
                let (a, b) = (packet.src.min(packet.dst), packet.src.max(packet.dst));
                let h = a
                    .iter()
                    .chain(b.iter())
                    .fold(u32::from(packet.protocol), |h, &x| {
                        h.wrapping_mul(31).wrapping_add(u32::from(x))
                    });
                (h >> 7) as usize % 2
            }
            Err(_) => index % 2,
        };
        index += 1;
        queues[queue].push((p.timestamp_ns, p.data.to_vec(), p.wire_len));
    }
    assert!(
        queues.iter().all(|q| q.len() > 50_000),
        "both queues get traffic"
    );
    write_pcap(&d.join("q0.pcap"), &queues[0]);
    write_pcap(&d.join("q1.pcap"), &queues[1]);

    std::fs::write(
        d.join("vswitch.toml"),
        format!(
            r#"[eal]
args = ["--lcores=0@(0-1),1@(0-1),2@(0-1)", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry", "--log-level=lib.eal:warning", "--vdev=net_pcap0,rx_pcap={q0},rx_pcap={q1}"]
[[ports]]
name = "net_pcap0"
rx-queues = 2
[dataplane]
interval-secs = 60
clock = "rx-timestamp"
# Played at full speed, the capture passes a window every few milliseconds: with a spare table per window, an
# exporter starved of CPU by other tests never makes a worker summarise a window as SKIPDATA.
spare-tables = 16
flow-capacity = 131072
[capture]
enis-file = "enis.toml"
[export]
jsonl = "out.jsonl"
[run]
stop-when-idle-ms = 1000
"#,
            q0 = d.join("q0.pcap").display(),
            q1 = d.join("q1.pcap").display(),
        ),
    )
    .unwrap();
    let stderr = run_vswitch(d, &d.join("vswitch.toml"));
    assert!(stderr.contains("workers=2"), "two workers ran: {stderr}");
    // Lcores floating over CPUs 0 and 1 leave the exporter the other CPUs, or on a two-CPU machine none: then it
    // shares them, and says so.
    assert!(
        stderr.contains("every CPU runs a worker lcore")
            || stderr.contains("exporter placed off the worker lcores' CPUs"),
        "{stderr}"
    );
    assert_same_records(
        &std::fs::read_to_string(d.join("out.jsonl")).unwrap(),
        &expected,
    );
}
