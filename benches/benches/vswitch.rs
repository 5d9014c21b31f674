//! End to end through a DPDK virtual device: the release `flowlog-vswitch` program on `net_pcap` ports that loop
//! a generated capture from memory (`infinite_rx=1`), with 1 and then 2 workers (one RX queue each), records
//! rendered by the exporter. Throughput is read from the program's own live counters (its stats file), next to
//! the port's receive counter, so what the PMD delivered and what the workers metered are compared in one run.
//! Then the same with every frame of the captures inside VXLAN over IPv4, as on a hypervisor's uplink.
//!
//! `cargo build --release --bins && cargo bench -p flowlog-benches --bench vswitch` (env `VSWITCH_SECONDS`,
//! default 5). `net_pcap` copies each packet into a fresh mbuf, so the PMD, not the worker, may be the limit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use flowlog_benches::{VXLAN_HEADERS, print_machine, vxlan_header};

fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::var("VSWITCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let program = release_binary("flowlog-vswitch")?;
    let dir = tempfile::tempdir()?;
    // Two captures (one per queue) of 4,000 frames each: infinite_rx keeps them in mbufs.
    let mut captures = Vec::new();
    for queue in 0..2u64 {
        let out = dir.path().join(format!("q{queue}"));
        flowlog_trafficgen::generate(
            &flowlog_trafficgen::GenConfig {
                malformed_per_million: 0,
                ..flowlog_trafficgen::GenConfig::new(100 + queue, 4_000, 60)
            },
            &out,
        )?;
        captures.push(out);
    }
    // The same frames, each inside VXLAN over IPv4 (the ENIs, and so the records, stay those of the captures).
    let mut overlays = Vec::new();
    for (queue, capture) in captures.iter().enumerate() {
        let out = dir.path().join(format!("q{queue}-vxlan"));
        std::fs::create_dir_all(&out)?;
        std::fs::copy(capture.join("enis.toml"), out.join("enis.toml"))?;
        encapsulate(&capture.join("capture.pcap"), &out.join("capture.pcap"))?;
        overlays.push(out);
    }
    print_machine();
    println!(
        "flowlog-vswitch (release) on net_pcap infinite_rx, TSC clock, 60 s windows, records to /dev/null, {seconds} s per run"
    );
    for (traffic, captures) in [("the mix", &captures), ("the mix inside VXLAN", &overlays)] {
        println!(" {traffic}:");
        for workers in [1usize, 2] {
            let (frames, port_packets, cycles_per_packet, elapsed) =
                run(&program, dir.path(), captures, workers, seconds)?;
            println!(
                "  {workers} worker(s): {:>6.2} Mpps metered ({:.2} Mpps received by the port), {cycles_per_packet} TSC cycles per packet in the workers",
                frames as f64 / elapsed.as_secs_f64() / 1e6,
                port_packets as f64 / elapsed.as_secs_f64() / 1e6,
            );
        }
    }
    Ok(())
}

/// Writes the frames of the capture `from` to `to`, each inside VXLAN over IPv4 (UDP to 4789, I flag, VNI 7)
/// between two hypervisors' MACs, with the same timestamps.
fn encapsulate(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut reader = flowlog_vswitch::pcap::PcapReader::open(from)?;
    let mut writer =
        flowlog_trafficgen::PcapWriter::new(std::io::BufWriter::new(std::fs::File::create(to)?))?;
    let mut frame = Vec::new();
    while let Some(packet) = reader.next_packet()? {
        let wire_len = packet.wire_len as usize;
        frame.clear();
        frame.extend_from_slice(&vxlan_header(wire_len)?);
        frame.extend_from_slice(packet.data);
        writer.write_frame(
            packet.timestamp_ns / 1_000,
            &frame,
            VXLAN_HEADERS + wire_len,
        )?;
    }
    writer.finish()?;
    Ok(())
}

/// Runs the program with `workers` queues for about `seconds`; returns the frames metered and the packets the
/// port received during the measured interval, the workers' cycles per packet, and the interval.
fn run(
    program: &Path,
    dir: &Path,
    captures: &[PathBuf],
    workers: usize,
    seconds: f64,
) -> anyhow::Result<(u64, u64, u64, Duration)> {
    let rx_pcaps: String = captures[..workers]
        .iter()
        .map(|c| format!(",rx_pcap={}", c.join("capture.pcap").display()))
        .collect();
    let lcores = (0..=workers)
        .map(|l| format!("{l}@(0-1)"))
        .collect::<Vec<_>>()
        .join(",");
    let stats = dir.join(format!("stats-{workers}.json"));
    let config = dir.join(format!("vswitch-{workers}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"[eal]
args = ["--lcores={lcores}", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--no-telemetry",
        "--log-level=lib.eal:warning", "--vdev=net_pcap0{rx_pcaps},infinite_rx=1"]
[[ports]]
name = "net_pcap0"
rx-queues = {workers}
[dataplane]
interval-secs = 60
mbufs = 16383
[capture]
enis-file = "{enis}"
[export]
jsonl = "/dev/null"
[run]
stats-file = "{stats}"
stats-interval-ms = 250
"#,
            enis = captures[0].join("enis.toml").display(),
            stats = stats.display(),
        ),
    )?;
    let mut child = Command::new(program)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting flowlog-vswitch")?;
    // Warm up one second, then measure between two stats snapshots.
    std::thread::sleep(Duration::from_secs(1));
    let first = read_stats(&stats)?;
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let last = read_stats(&stats)?;
    let elapsed = began.elapsed();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "flowlog-vswitch exited with {status}");
    let get = |v: &serde_json::Value, name: &str| v["total"][name].as_u64().unwrap_or(0);
    let frames = get(&last, "frames") - get(&first, "frames");
    let port = get(&last, "port_ipackets") - get(&first, "port_ipackets");
    let cycles = (get(&last, "cycles") - get(&first, "cycles"))
        .checked_div(get(&last, "cycle_frames") - get(&first, "cycle_frames"));
    Ok((frames, port, cycles.unwrap_or(0), elapsed))
}

fn read_stats(path: &Path) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(value) = serde_json::from_str(&text)
        {
            return Ok(value);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no stats file {} after 10 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A release binary of the workspace, next to this benchmark's executable.
fn release_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .and_then(Path::parent)
        .context("benchmark executable path")?
        .join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run `cargo build --release --bins` first",
        path.display()
    );
    Ok(path)
}
