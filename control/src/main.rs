//! `flowlog-control`: the control-plane server. Prints exactly one line, `listening on ADDR`, to stdout once it
//! serves; logs to stderr (`RUST_LOG` filters, default `info`); stops cleanly on SIGTERM or SIGINT.
#![forbid(unsafe_code)]

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use flowlog_control::server::{Server, ServerConfig};
use tokio::signal::unix::{SignalKind, signal};

/// How long in-flight calls may take to finish after a shutdown signal before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The flow-log control plane: ENI inventory, flow logs, and the capture sets hosts watch.
#[derive(Debug, Parser)]
#[command(name = "flowlog-control", version)]
struct Args {
    /// Address to serve gRPC on (port 0 = any free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:7100")]
    listen: SocketAddr,
    /// State file (JSON snapshot, replaced atomically after every change); created when missing.
    #[arg(long)]
    state_file: PathBuf,
    /// Region served.
    #[arg(long, default_value = "cn-hangzhou")]
    region: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flowlog-control: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the previous message already holds.
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    text
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let server = Server::bind(ServerConfig {
        listen: args.listen,
        state_file: args.state_file,
        region_id: args.region,
    })
    .await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", server.local_addr())
            .context("cannot write to stdout")?;
        stdout.flush().context("cannot flush stdout")?;
    }
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = server.serve(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
        // The receiver lives until `run` returns; nobody to tell otherwise.
        let _ = signalled_tx.send(());
    });
    tokio::select! {
        result = serve => result?,
        () = async {
            if signalled_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => tracing::warn!("calls still running {SHUTDOWN_GRACE:?} after the shutdown signal; exiting anyway"),
    }
    Ok(())
}
