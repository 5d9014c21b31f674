//! `flowlog`: the command-line tool. Each subcommand lives in the crate that owns it; this file only parses the
//! command line and dispatches.

use clap::{Parser, Subcommand};

/// VPC flow logs: replay captures, query the log service, drive the control plane.
#[derive(Debug, Parser)]
#[command(name = "flowlog", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Meter a pcap capture offline (its timestamps as the clock) and print or deliver the records.
    Replay(flowlog_vswitch::replay::ReplayArgs),
    #[command(flatten)]
    Collector(flowlog_collector::cli::CollectorCommand),
    #[command(flatten)]
    Control(flowlog_control::cli::ControlCommand),
}

fn main() -> std::process::ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => flowlog_vswitch::replay::run(&args).map(|_| ()),
        Command::Collector(command) => block_on(flowlog_collector::cli::run(command)),
        Command::Control(command) => block_on(flowlog_control::cli::run(command)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flowlog: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs an async subcommand on a single-threaded runtime.
fn block_on(future: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

/// Logs to stderr, `warn` and above unless `RUST_LOG` says otherwise; stdout carries only results.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
