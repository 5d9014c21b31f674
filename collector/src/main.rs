//! `flowlog-collector`: the log service's server. Opens the store, binds, announces the address, serves
//! `flowlog.v1.Collector` until SIGTERM/SIGINT, and shuts down cleanly.
//!
//! ```text
//! flowlog-collector --listen 127.0.0.1:7000 --data-dir DIR [--config FILE] [--http 127.0.0.1:8080]
//! ```
//!
//! # Guarantees
//! - `listening on ADDR` (the bound address, so `--listen 127.0.0.1:0` works) is printed to stdout exactly once,
//!   flushed, after the store is open and the socket is bound, so a script can wait for that line and connect.
//!   With `--http`, a second line `web on ADDR` follows (the web view's bound address); nothing else goes to
//!   stdout.
//! - On SIGTERM or SIGINT the server stops accepting, gives open streams up to `shutdown-grace-seconds` to finish,
//!   then lets every writer finish its queued group and exits 0. Acknowledged batches are durable whatever happens
//!   (kill -9 included). Logs go to stderr (`RUST_LOG` filters them; default `info`).
#![forbid(unsafe_code)]

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use flowlog_collector::config::Config;
use flowlog_collector::ingest::CollectorRouter;
use flowlog_collector::service::CollectorService;
use flowlog_collector::sql::SqlEngine;
use flowlog_collector::store::Store;
use flowlog_collector::web::WebServer;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_stream::wrappers::TcpListenerStream;

/// The flow-log collector: durable Project/Logstore storage with gRPC ingest and queries.
#[derive(Debug, Parser)]
#[command(name = "flowlog-collector", version)]
struct Args {
    /// Address to serve gRPC on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: SocketAddr,
    /// Directory holding the logstores (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Optional TOML configuration (see collector/config/collector.example.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to serve the web view and its JSON API on (HTTP); port 0 picks a free port (printed on stdout as
    /// `web on ADDR`). Off when absent.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
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
    match start(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(args: &Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(args.listen, args.http, &args.data_dir, config));
    // Blocking query tasks stop on their own once their client is gone; do not wait long for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Opens the store in `data_dir`, serves gRPC on `listen` (and the web view on `http`) until SIGTERM/SIGINT, and
/// shuts down.
async fn run(
    listen: SocketAddr,
    http: Option<SocketAddr>,
    data_dir: &Path,
    config: Config,
) -> anyhow::Result<()> {
    // Handle the signals from now on, so that one arriving right after the announcement is not fatal.
    let mut signals = Signals::new()?;
    let store = {
        let data_dir = data_dir.to_owned();
        let store_config = config.store;
        tokio::task::spawn_blocking(move || Store::open(&data_dir, store_config)).await??
    };
    let store = Arc::new(store);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr()?;
    let web = match http {
        Some(address) => {
            let engine =
                SqlEngine::new(store.clone(), config.sql_memory_bytes, config.sql_max_rows);
            Some(WebServer::bind(address, engine).await?)
        }
        None => None,
    };
    let web_bound = web.as_ref().map(WebServer::local_addr).transpose()?;
    let (web_stop_tx, web_stop_rx) = tokio::sync::watch::channel(false);
    let web_task = web.map(|server| {
        let mut stop = web_stop_rx.clone();
        tokio::spawn(server.serve(async move {
            // A dropped sender also means stop.
            let _ = stop.wait_for(|stopped| *stopped).await;
        }))
    });

    let service = CollectorRouter::new(
        CollectorService::new(store.clone(), config),
        config.max_message_bytes,
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            // Batches are large (hundreds of KiB): big windows and frames mean fewer round trips, wake-ups and
            // copies per batch than HTTP/2's 64 KiB / 16 KiB defaults.
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(32 << 20)
            .max_frame_size(1 << 20)
            .add_service(service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                // A dropped sender also means stop.
                let _ = stop_rx.await;
            }),
    );
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {bound}")?;
        if let Some(web) = web_bound {
            writeln!(stdout, "web on {web}")?;
        }
        stdout.flush()?;
    }
    tracing::info!(%bound, web = ?web_bound, data_dir = %data_dir.display(), "collector serving");

    let signal = tokio::select! {
        signal = signals.recv() => signal,
        result = &mut server => {
            result??;
            anyhow::bail!("the server stopped by itself");
        }
    };
    tracing::info!(signal, "shutting down");
    let _ = stop_tx.send(());
    let _ = web_stop_tx.send(true);
    if let Some(task) = web_task
        && let Ok(Err(e)) = tokio::time::timeout(config.shutdown_grace, task)
            .await
            .unwrap_or(Ok(Ok(())))
    {
        tracing::warn!(error = %e, "web server stopped with an error");
    }
    match tokio::time::timeout(config.shutdown_grace, &mut server).await {
        Ok(result) => result??,
        Err(_) => {
            tracing::warn!(grace = ?config.shutdown_grace, "streams still open after the grace period; stopping");
            server.abort();
        }
    }
    tokio::task::spawn_blocking(move || store.close()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT, caught.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either; returns its name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
