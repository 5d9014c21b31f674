//! `flowlog-control`: the control-plane server. Prints exactly one line, `listening on ADDR`, to stdout once it
//! serves; logs to stderr (`RUST_LOG` filters, default `info`); stops cleanly on SIGTERM or SIGINT.
//!
//! Single controller: `flowlog-control --state-file state.redb --access access.toml`. Replicas:
//! `flowlog-control --etcd http://127.0.0.1:2379 --advertise http://this-host:7100 --access access.toml` on each.
#![forbid(unsafe_code)]

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use flowlog_control::auth::Access;
use flowlog_control::ha::EtcdConfig;
use flowlog_control::server::{Server, ServerConfig, StoreConfig};
use flowlog_control::service::{DEFAULT_QUOTA, ServiceConfig};
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
    /// State database (embedded redb file, durable after every change); created when missing. Give either this
    /// or --etcd.
    #[arg(long, required_unless_present = "etcd", conflicts_with = "etcd")]
    state_file: Option<PathBuf>,
    /// etcd endpoints (comma-separated URLs): keep the state in etcd and serve only while elected leader among
    /// the replicas sharing --etcd-prefix.
    #[arg(long, value_delimiter = ',')]
    etcd: Vec<String>,
    /// Key prefix of this controller's data in etcd (default: /flowlog/<region>/).
    #[arg(long, requires = "etcd")]
    etcd_prefix: Option<String>,
    /// Lease TTL in seconds with etcd: how long a dead leader keeps the leadership before a standby takes over.
    #[arg(long, default_value_t = 3, requires = "etcd")]
    lease_ttl: i64,
    /// Address clients reach this replica at (recorded in the election; default: http://<listen address>).
    #[arg(long, requires = "etcd")]
    advertise: Option<String>,
    /// Region served.
    #[arg(long, default_value = "cn-hangzhou")]
    region: String,
    /// Access file (TOML): bearer tokens of accounts, the orchestrator and hosts. Give either this or
    /// --insecure-no-auth.
    #[arg(
        long,
        required_unless_present = "insecure_no_auth",
        conflicts_with = "insecure_no_auth"
    )]
    access: Option<PathBuf>,
    /// Serve without authentication: every caller is the admin and any project is accepted. Development only.
    #[arg(long)]
    insecure_no_auth: bool,
    /// Flow logs (not being deleted) one account may have in the region.
    #[arg(long, default_value_t = DEFAULT_QUOTA)]
    quota: usize,
    /// Seconds a host that stopped watching still counts as alive: until then, its Activating and Deleting flow
    /// logs wait for its acknowledgement.
    #[arg(long, default_value_t = 30)]
    host_timeout: u64,
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
    let access = match &args.access {
        Some(path) => Access::load(path)?,
        None => {
            tracing::warn!(
                "--insecure-no-auth: every caller is the admin; do not expose this controller"
            );
            Access::open()
        }
    };
    let store = match args.state_file {
        Some(path) => StoreConfig::Embedded { path },
        None => StoreConfig::Etcd(EtcdConfig {
            endpoints: args.etcd,
            prefix: args
                .etcd_prefix
                .unwrap_or_else(|| format!("/flowlog/{}/", args.region)),
            lease_ttl: args.lease_ttl,
            advertise: args
                .advertise
                .unwrap_or_else(|| format!("http://{}", args.listen)),
        }),
    };
    let server = Server::bind(ServerConfig {
        listen: args.listen,
        region_id: args.region,
        store,
        service: ServiceConfig {
            access,
            quota: args.quota,
        },
        host_timeout: Duration::from_secs(args.host_timeout),
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
