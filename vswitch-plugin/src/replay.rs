//! Offline replay: `flowlog replay --pcap FILE --enis FILE --interval SECONDS [--collector ADDR ...]` runs the
//! dataplane and the exporter on a capture, with the capture's timestamps as the clock and no EAL, and prints the
//! records as JSON lines on stdout or delivers them to a collector.
//!
//! The path is the live one minus DPDK: one [`Worker`] (meter + seal ring) fed from the pcap reader, one
//! exporter thread. Every frame's action is ACCEPT (a capture carries no security-group verdict).
//!
//! The command line and output format are a stable interface: checks outside the project call exactly this.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use flowlog_dataplane::flow::{Action, Meter, MeterConfig, MeterCounters};

use crate::capture::CaptureState;
use crate::config::load_enis;
use crate::export::deliver::DeliveryConfig;
use crate::export::spool::SpoolConfig;
use crate::export::{ExportReport, ExportSink, Exporter, ExporterConfig, link};
use crate::pcap::PcapReader;
use crate::worker::Worker;

/// Arguments of `flowlog replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The capture to replay (classic pcap, Ethernet).
    #[arg(long)]
    pub pcap: PathBuf,
    /// The ENIs to capture: a TOML file of `[[eni]]` tables (id, mac, vm-id, vswitch-id, vpc-id, account-id).
    #[arg(long)]
    pub enis: PathBuf,
    /// Capture window length in seconds.
    #[arg(long, default_value_t = 60)]
    pub interval: u32,
    /// Deliver the records to this collector (e.g. http://127.0.0.1:7000) instead of printing them.
    #[arg(long, requires_all = ["project", "logstore"])]
    pub collector: Option<String>,
    /// Destination project, with --collector.
    #[arg(long)]
    pub project: Option<String>,
    /// Destination logstore, with --collector.
    #[arg(long)]
    pub logstore: Option<String>,
    /// Write the JSON lines to this file (replacing it) instead of stdout; not with --collector.
    #[arg(long, conflicts_with = "collector")]
    pub output: Option<PathBuf>,
    /// Region id to write into records (none by default: records then carry no region).
    #[arg(long)]
    pub region: Option<String>,
    /// Flow-table capacity (flows per window before SKIPDATA).
    #[arg(long, default_value_t = 1 << 20)]
    pub flow_capacity: usize,
    /// Print the meter's counters and throughput to stderr at the end.
    #[arg(long)]
    pub stats: bool,
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplaySummary {
    /// Frames read from the capture.
    pub frames: u64,
    /// Time spent, from opening the capture to the last record delivered.
    pub elapsed: Duration,
    /// The meter's counters.
    pub counters: MeterCounters,
    /// The exporter's report.
    pub export: ExportReport,
}

/// Runs a replay.
pub fn run(args: &ReplayArgs) -> anyhow::Result<ReplaySummary> {
    let began = Instant::now();
    let enis = load_enis(&args.enis)?;
    let destination = args.project.clone().zip(args.logstore.clone());
    let capture = CaptureState::fixed(enis, destination).context("building the ENI table")?;
    let meter = Meter::new(
        MeterConfig::new(args.interval, args.flow_capacity),
        capture.table().clone(),
    )
    .context("configuring the meter")?;
    let sink = match &args.collector {
        Some(endpoint) => ExportSink::Collector(DeliveryConfig {
            endpoint: endpoint.clone(),
            exporter_id: exporter_id("replay"),
            max_unacked: 64,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(30),
            spool: SpoolConfig {
                memory_bytes: 256 << 20,
                disk_dir: None,
                disk_bytes: 0,
                segment_bytes: 16 << 20,
                max_ledger_entries: 1_000_000,
            },
        }),
        None => match &args.output {
            Some(path) => {
                // A replay's output is the whole answer: start the file afresh (the exporter appends).
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                ExportSink::File(path.clone())
            }
            None => ExportSink::Stdout,
        },
    };
    let tables = meter.spare_tables() + 1;
    let (end, link) = link(64, tables);
    let exporter = Exporter::spawn(
        ExporterConfig {
            region: args.region.as_deref().map(Arc::from),
            sink,
            max_batch_records: 4096,
            interval_secs: args.interval,
            thread_init: None,
        },
        capture,
        vec![link],
        None,
    )?;
    let mut worker = Worker::new(meter, end);

    let mut reader = PcapReader::open(&args.pcap)?;
    let mut frames = 0u64;
    let read_result = loop {
        match reader.next_packet() {
            Ok(Some(packet)) => {
                frames += 1;
                worker.account(
                    packet.timestamp_ns / 1_000_000_000,
                    packet.data,
                    packet.wire_len as usize,
                    Action::Accept,
                );
            }
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    // Records of what was read are delivered even when the capture is cut short.
    let counters = worker.finish();
    let export = exporter.join()?;
    read_result.with_context(|| format!("reading {}", args.pcap.display()))?;
    if export.records_abandoned > 0 {
        anyhow::bail!(
            "{} records were not acknowledged by the collector",
            export.records_abandoned
        );
    }
    let summary = ReplaySummary {
        frames,
        elapsed: began.elapsed(),
        counters,
        export,
    };
    if args.stats {
        print_stats(&summary);
    }
    Ok(summary)
}

/// Prints a replay's counters and throughput to stderr.
pub fn print_stats(summary: &ReplaySummary) {
    let secs = summary.elapsed.as_secs_f64();
    eprintln!(
        "replay: {} frames in {:.3} s ({:.2} Mpps), {} windows, {} records",
        summary.frames,
        secs,
        summary.frames as f64 / secs.max(1e-9) / 1e6,
        summary.export.windows,
        summary.export.records
    );
    for (name, value) in summary.counters.iter().filter(|(_, v)| *v != 0) {
        eprintln!("  {name:<32} {value}");
    }
}

/// A unique exporter id: the role, the host, the process id and the start time.
pub fn exporter_id(role: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{role}-{}-{}-{nanos}", host.trim(), std::process::id())
}
