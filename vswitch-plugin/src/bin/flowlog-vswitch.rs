//! `flowlog-vswitch --config FILE`: the standalone DPDK poll-mode flow-log program (see
//! `flowlog_vswitch::standalone`). Example configurations are in `vswitch-plugin/config/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use flowlog_vswitch::config::Config;

/// Meter every flow of every captured ENI on DPDK ports and deliver flow-log records to the collector.
#[derive(Debug, Parser)]
#[command(name = "flowlog-vswitch", version)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long)]
    config: PathBuf,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let result = Config::load(&args.config)
        .map_err(anyhow::Error::from)
        .and_then(flowlog_vswitch::standalone::run);
    match result {
        Ok(report) => {
            eprintln!(
                "flowlog-vswitch: {} frames, {} windows, {} records, {} acknowledged, {} spooled for the next run, {} \
                 replaced by SKIPDATA ({} packets, {} bytes), {} abandoned, {} dropped by the ports",
                report.counters.frames,
                report.export.windows,
                report.export.records,
                report.export.records_acked,
                report.export.records_persisted,
                report.export.records_skipped,
                report.export.packets_skipped,
                report.export.bytes_skipped,
                report.export.records_abandoned,
                report.port_drops
            );
            for (name, value) in report.counters.iter().filter(|(_, v)| *v != 0) {
                eprintln!("  {name:<32} {value}");
            }
            if report.export.records_abandoned > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("flowlog-vswitch: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
