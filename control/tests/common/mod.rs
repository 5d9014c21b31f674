//! Helpers shared by the integration tests: the real `flowlog-control` binary on a loopback port, real etcd
//! servers, clients carrying the example access file's tokens.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use flowlog_control::client::{BearerToken, RawClient};
use flowlog_proto::v1 as pb;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tonic::Code;
use tonic::transport::Endpoint;

/// Generous bound for anything that should take milliseconds (the machine is shared).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Tokens of `config/access.example.toml`.
pub const ADMIN: &str = "orchestrator-secret-token";
pub const TENANT_A: &str = "tenant-a-secret-token";
pub const TENANT_B: &str = "tenant-b-secret-token";
pub const HOST_A: &str = "host-a-secret-token";
pub const HOST_B: &str = "host-b-secret-token";
pub const ACCOUNT_A: &str = "100000000000";
pub const ACCOUNT_B: &str = "1000000002";

/// The example access file.
pub fn access_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/access.example.toml")
}

/// A running `flowlog-control`.
pub struct Control {
    pub child: Child,
    pub addr: String,
    pub extra_stdout: tokio::task::JoinHandle<Vec<String>>,
}

impl Control {
    /// Starts the binary with `args` (plus `--listen 127.0.0.1:0`) and waits for its `listening on` line.
    pub async fn start_with(args: &[&str]) -> anyhow::Result<Control> {
        let region: &[&str] = if args.contains(&"--region") {
            &[]
        } else {
            &["--region", "cn-hangzhou"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowlog-control"))
            .args(["--listen", "127.0.0.1:0"])
            .args(region)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning flowlog-control")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .context("no `listening on` line in time")??
            .context("flowlog-control exited before listening")?;
        let addr = line
            .strip_prefix("listening on ")
            .with_context(|| format!("unexpected first line {line:?}"))?;
        let addr = format!("http://{addr}");
        // Nothing else may appear on stdout: keep draining it (so the child never blocks) and keep what comes.
        let extra_stdout = tokio::spawn(async move {
            let mut extra = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                extra.push(line);
            }
            extra
        });
        Ok(Control {
            child,
            addr,
            extra_stdout,
        })
    }

    /// A single controller on an embedded state file with the example access file.
    pub async fn start(state_file: &Path, extra: &[&str]) -> anyhow::Result<Control> {
        let state = state_file.to_str().context("path")?;
        let access = access_file();
        let mut args = vec![
            "--state-file",
            state,
            "--access",
            access.to_str().context("path")?,
        ];
        args.extend_from_slice(extra);
        Control::start_with(&args).await
    }

    /// A client of this controller with `token`.
    pub async fn client(&self, token: &str) -> anyhow::Result<RawClient> {
        client(&self.addr, Some(token)).await
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("already exited")
    }
}

/// A client of `addr` sending `token`.
pub async fn client(addr: &str, token: Option<&str>) -> anyhow::Result<RawClient> {
    let channel = Endpoint::from_shared(addr.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(pb::control_client::ControlClient::with_interceptor(
        channel,
        BearerToken::new(token)?,
    ))
}

pub fn eni(
    id: &str,
    mac: &str,
    vswitch: &str,
    vpc: &str,
    host: &str,
    account: &str,
) -> pb::RegisterNetworkInterfaceRequest {
    pb::RegisterNetworkInterfaceRequest {
        network_interface: Some(pb::NetworkInterface {
            eni_id: id.into(),
            mac: mac.into(),
            vm_id: format!("i-{id}"),
            vswitch_id: vswitch.into(),
            vpc_id: vpc.into(),
            account_id: account.into(),
            host: host.into(),
        }),
    }
}

pub fn flow_log(
    resource_type: pb::ResourceType,
    resource_id: &str,
    project: &str,
    logstore: &str,
) -> pb::CreateFlowLogRequest {
    pb::CreateFlowLogRequest {
        resource_type: resource_type.into(),
        resource_id: resource_id.into(),
        project_name: project.into(),
        logstore_name: logstore.into(),
        ..Default::default()
    }
}

/// ENI ids of a capture set, each with its destinations' flow-log ids.
pub fn summary(set: &pb::CaptureSet) -> Vec<(String, Vec<String>)> {
    set.interfaces
        .iter()
        .map(|ci| {
            (
                ci.network_interface
                    .as_ref()
                    .map(|n| n.eni_id.clone())
                    .unwrap_or_default(),
                ci.destinations
                    .iter()
                    .map(|d| d.flow_log_id.clone())
                    .collect(),
            )
        })
        .collect()
}

pub async fn next(stream: &mut tonic::Streaming<pb::CaptureSet>) -> anyhow::Result<pb::CaptureSet> {
    match tokio::time::timeout(PATIENCE, stream.message()).await {
        Ok(Ok(Some(set))) => Ok(set),
        Ok(Ok(None)) => bail!("the watch stream ended"),
        Ok(Err(status)) => bail!("the watch stream failed: {status}"),
        Err(_) => bail!("no capture set within {PATIENCE:?}"),
    }
}

pub async fn watch(
    client: &mut RawClient,
    host: &str,
) -> anyhow::Result<tonic::Streaming<pb::CaptureSet>> {
    Ok(client
        .watch_capture_set(pb::WatchCaptureSetRequest {
            host: host.into(),
            ..Default::default()
        })
        .await?
        .into_inner())
}

/// Acknowledges `set` as `host`.
pub async fn ack(client: &mut RawClient, host: &str, set: &pb::CaptureSet) -> anyhow::Result<bool> {
    Ok(client
        .ack_capture_set(pb::AckCaptureSetRequest {
            host: host.into(),
            state_id: set.state_id.clone(),
            version: set.version,
        })
        .await?
        .into_inner()
        .accepted)
}

pub async fn describe_all(client: &mut RawClient) -> anyhow::Result<Vec<pb::FlowLog>> {
    Ok(client
        .describe_flow_logs(pb::DescribeFlowLogsRequest {
            page_size: 50,
            ..Default::default()
        })
        .await?
        .into_inner()
        .flow_logs)
}

/// The status of one flow log.
pub async fn status_of(client: &mut RawClient, id: &str) -> anyhow::Result<Option<String>> {
    Ok(client
        .describe_flow_logs(pb::DescribeFlowLogsRequest {
            flow_log_id: id.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .flow_logs
        .first()
        .map(|fl| fl.status.clone()))
}

/// Waits until the flow log has `wanted` status (`None`: gone).
pub async fn wait_status(
    client: &mut RawClient,
    id: &str,
    wanted: Option<&str>,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = status_of(client, id).await?;
        if status.as_deref() == wanted {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("flow log {id} is {status:?}, not {wanted:?}, after {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that a call failed with `code` and a message starting with `"<prefix>: "`.
pub fn check<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    prefix: &str,
) {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(&format!("{prefix}: ")),
        "{status:?}"
    );
}

/// A free loopback port (bound then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A single-node etcd on loopback ports, in its own data directory, killed when dropped.
pub struct Etcd {
    pub child: Child,
    pub client_url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub async fn start() -> anyhow::Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new("etcd")
            .arg("--name")
            .arg("test")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawning etcd (Debian package etcd-server)")?;
        let etcd = Etcd {
            child,
            client_url,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(mut client) = etcd_client::Client::connect([&etcd.client_url], None).await
                && client.status().await.is_ok()
            {
                return Ok(etcd);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("etcd did not become healthy at {}", etcd.client_url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
