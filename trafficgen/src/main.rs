//! `flowlog-gen`: writes a seeded capture (`capture.pcap`), its ENI file (`enis.toml`), the records it must produce
//! (`expected.jsonl`) and counts (`summary.json`) into a directory, and prints the summary as JSON on stdout.
//!
//! Example: `flowlog-gen --seed 7 --packets 1000000 --interval 60 --out-dir /tmp/gen`.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use flowlog_trafficgen::{GenConfig, generate};

/// Deterministic traffic generator for flow-log tests.
#[derive(Debug, Parser)]
#[command(name = "flowlog-gen", version, about)]
struct Args {
    /// Seed of every random decision (same seed, same bytes).
    #[arg(long)]
    seed: u64,
    /// Frames to write.
    #[arg(long)]
    packets: u64,
    /// Capture window of the expected records, seconds.
    #[arg(long)]
    interval: u64,
    /// Directory to write into (created if missing).
    #[arg(long)]
    out_dir: PathBuf,
    /// ENIs in enis.toml (6 to 512; the last two never see traffic).
    #[arg(long, default_value_t = GenConfig::default().enis)]
    enis: usize,
    /// Unix seconds of the first frame.
    #[arg(long, default_value_t = GenConfig::default().start_epoch)]
    start_epoch: u64,
    /// Seconds the capture spans.
    #[arg(long, default_value_t = GenConfig::default().duration_secs)]
    duration_secs: u64,
    /// Malformed frames per million frames.
    #[arg(long, default_value_t = GenConfig::default().malformed_per_million)]
    malformed_per_million: u32,
    /// Non-IP (ARP, LLDP) frames per million frames.
    #[arg(long, default_value_t = GenConfig::default().non_ip_per_million)]
    non_ip_per_million: u32,
    /// Frames of no ENI per million frames.
    #[arg(long, default_value_t = GenConfig::default().unattributed_per_million)]
    unattributed_per_million: u32,
    /// Non-first IPv4 fragments without their first fragment, per million frames.
    #[arg(long, default_value_t = GenConfig::default().orphan_fragments_per_million)]
    orphan_fragments_per_million: u32,
    /// Flows in progress at once.
    #[arg(long, default_value_t = GenConfig::default().concurrent_flows)]
    concurrent_flows: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = GenConfig {
        seed: args.seed,
        packets: args.packets,
        interval_secs: args.interval,
        enis: args.enis,
        start_epoch: args.start_epoch,
        duration_secs: args.duration_secs,
        malformed_per_million: args.malformed_per_million,
        non_ip_per_million: args.non_ip_per_million,
        unattributed_per_million: args.unattributed_per_million,
        orphan_fragments_per_million: args.orphan_fragments_per_million,
        concurrent_flows: args.concurrent_flows,
    };
    let summary = generate(&config, &args.out_dir)
        .with_context(|| format!("generating into {}", args.out_dir.display()))?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
