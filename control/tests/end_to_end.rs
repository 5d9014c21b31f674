//! End-to-end tests of `flowlog-control`: the real binary on a real loopback socket, driven over gRPC and through
//! the CLI functions, killed with SIGKILL and SIGTERM, restarted on its state file.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use flowlog_control::cli::{self, ControlCommand};
use flowlog_proto::v1 as pb;
use pb::control_client::ControlClient;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tonic::Code;
use tonic::transport::Channel;

/// Generous bound for anything that should take milliseconds (the machine is shared).
const PATIENCE: Duration = Duration::from_secs(20);

struct Control {
    child: Child,
    addr: String,
    extra_stdout: tokio::task::JoinHandle<Vec<String>>,
}

impl Control {
    async fn start(state_file: &Path) -> anyhow::Result<Control> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowlog-control"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--region",
                "cn-hangzhou",
                "--state-file",
            ])
            .arg(state_file)
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

    async fn client(&self) -> anyhow::Result<ControlClient<Channel>> {
        Ok(ControlClient::connect(self.addr.clone()).await?)
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("already exited")
    }
}

fn eni(
    id: &str,
    mac: &str,
    vswitch: &str,
    vpc: &str,
    host: &str,
) -> pb::RegisterNetworkInterfaceRequest {
    pb::RegisterNetworkInterfaceRequest {
        network_interface: Some(pb::NetworkInterface {
            eni_id: id.into(),
            mac: mac.into(),
            vm_id: format!("i-{id}"),
            vswitch_id: vswitch.into(),
            vpc_id: vpc.into(),
            account_id: "100000000000".into(),
            host: host.into(),
        }),
    }
}

fn flow_log(
    resource_type: pb::ResourceType,
    resource_id: &str,
    logstore: &str,
) -> pb::CreateFlowLogRequest {
    pb::CreateFlowLogRequest {
        resource_type: resource_type.into(),
        resource_id: resource_id.into(),
        project_name: "proj-e2e".into(),
        logstore_name: logstore.into(),
        ..Default::default()
    }
}

/// ENI ids of a capture set, each with its destinations' flow-log ids.
fn summary(set: &pb::CaptureSet) -> Vec<(String, Vec<String>)> {
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

async fn next(stream: &mut tonic::Streaming<pb::CaptureSet>) -> anyhow::Result<pb::CaptureSet> {
    match tokio::time::timeout(PATIENCE, stream.message()).await {
        Ok(Ok(Some(set))) => Ok(set),
        Ok(Ok(None)) => bail!("the watch stream ended"),
        Ok(Err(status)) => bail!("the watch stream failed: {status}"),
        Err(_) => bail!("no capture set within {PATIENCE:?}"),
    }
}

async fn watch(
    client: &mut ControlClient<Channel>,
    host: &str,
) -> anyhow::Result<tonic::Streaming<pb::CaptureSet>> {
    Ok(client
        .watch_capture_set(pb::WatchCaptureSetRequest { host: host.into() })
        .await?
        .into_inner())
}

async fn describe_all(client: &mut ControlClient<Channel>) -> anyhow::Result<Vec<pb::FlowLog>> {
    Ok(client
        .describe_flow_logs(pb::DescribeFlowLogsRequest {
            page_size: 50,
            ..Default::default()
        })
        .await?
        .into_inner()
        .flow_logs)
}

#[tokio::test]
async fn capture_sets_follow_changes_and_survive_kill_9() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state_file = dir.path().join("control.json");
    let mut control = Control::start(&state_file).await?;
    let mut client = control.client().await?;

    client
        .register_network_interface(eni(
            "eni-a1",
            "02:00:00:0a:00:01",
            "vsw-1",
            "vpc-1",
            "host-a",
        ))
        .await?;
    client
        .register_network_interface(eni(
            "eni-a2",
            "02:00:00:0a:00:02",
            "vsw-9",
            "vpc-9",
            "host-a",
        ))
        .await?;
    client
        .register_network_interface(eni(
            "eni-b1",
            "02:00:00:0b:00:01",
            "vsw-2",
            "vpc-1",
            "host-b",
        ))
        .await?;
    let vpc_log = client
        .create_flow_log(flow_log(pb::ResourceType::Vpc, "vpc-1", "vpc-store"))
        .await?
        .into_inner()
        .flow_log_id;
    assert!(
        vpc_log.starts_with("fl-") && vpc_log.len() > 10,
        "{vpc_log}"
    );

    let mut watch_a = watch(&mut client, "host-a").await?;
    let mut watch_b = watch(&mut client, "host-b").await?;
    let first_a = next(&mut watch_a).await?;
    assert_eq!(first_a.region_id, "cn-hangzhou");
    assert_eq!(
        summary(&first_a),
        vec![("eni-a1".to_owned(), vec![vpc_log.clone()])]
    );
    let destination = &first_a.interfaces[0].destinations[0];
    assert_eq!(
        (
            destination.project.as_str(),
            destination.logstore.as_str(),
            destination.interval_seconds
        ),
        ("proj-e2e", "vpc-store", 600)
    );
    assert_eq!(destination.traffic_type, i32::from(pb::TrafficType::All));
    let first_b = next(&mut watch_b).await?;
    assert_eq!(
        summary(&first_b),
        vec![("eni-b1".to_owned(), vec![vpc_log.clone()])]
    );

    // An ENI registered later in the VPC is captured: it reaches host A's watcher at once.
    let started = Instant::now();
    client
        .register_network_interface(eni(
            "eni-a3",
            "02:00:00:0a:00:03",
            "vsw-3",
            "vpc-1",
            "host-a",
        ))
        .await?;
    let second_a = next(&mut watch_a).await?;
    let latency = started.elapsed();
    println!("register-to-watcher latency: {latency:?}");
    assert!(second_a.version > first_a.version);
    assert_eq!(
        summary(&second_a),
        vec![
            ("eni-a1".to_owned(), vec![vpc_log.clone()]),
            ("eni-a3".to_owned(), vec![vpc_log.clone()])
        ]
    );

    // Host B was not woken by the host-A-only change: the next set it receives is the one of its own change.
    client
        .register_network_interface(eni(
            "eni-b2",
            "02:00:00:0b:00:02",
            "vsw-2",
            "vpc-1",
            "host-b",
        ))
        .await?;
    let second_b = next(&mut watch_b).await?;
    assert_eq!(
        summary(&second_b),
        vec![
            ("eni-b1".to_owned(), vec![vpc_log.clone()]),
            ("eni-b2".to_owned(), vec![vpc_log.clone()])
        ]
    );
    assert!(second_b.version > second_a.version);

    // Several flow logs on one ENI: each is a destination.
    let eni_log = client
        .create_flow_log(pb::CreateFlowLogRequest {
            traffic_type: pb::TrafficType::Drop.into(),
            aggregation_interval: 1,
            client_token: "retry-me".into(),
            ..flow_log(pb::ResourceType::NetworkInterface, "eni-a1", "eni-store")
        })
        .await?
        .into_inner()
        .flow_log_id;
    let third_a = next(&mut watch_a).await?;
    assert_eq!(
        summary(&third_a)[0],
        ("eni-a1".to_owned(), vec![vpc_log.clone(), eni_log.clone()])
    );
    assert_eq!(third_a.interfaces[0].destinations[1].interval_seconds, 60);

    // Deleting the VPC flow log empties host B's set and leaves host A only the ENI flow log.
    client
        .delete_flow_log(pb::DeleteFlowLogRequest {
            flow_log_id: vpc_log.clone(),
            ..Default::default()
        })
        .await?;
    let emptied_b = next(&mut watch_b).await?;
    assert!(emptied_b.interfaces.is_empty());
    assert!(emptied_b.version > second_b.version);
    let fourth_a = next(&mut watch_a).await?;
    assert_eq!(
        summary(&fourth_a),
        vec![("eni-a1".to_owned(), vec![eni_log.clone()])]
    );
    client
        .delete_flow_log(pb::DeleteFlowLogRequest {
            flow_log_id: eni_log.clone(),
            ..Default::default()
        })
        .await?;
    let emptied_a = next(&mut watch_a).await?;
    assert!(emptied_a.interfaces.is_empty());

    // Rebuild some state, then kill -9 and restart on the same file: everything is still there.
    let vsw_log = client
        .create_flow_log(pb::CreateFlowLogRequest {
            client_token: "token-1".into(),
            flow_log_name: "vsw-two".into(),
            ..flow_log(pb::ResourceType::Vswitch, "vsw-2", "vsw-store")
        })
        .await?
        .into_inner()
        .flow_log_id;
    let enis_before = client
        .list_network_interfaces(pb::ListNetworkInterfacesRequest::default())
        .await?
        .into_inner()
        .network_interfaces;
    let logs_before = describe_all(&mut client).await?;
    let set_b_before = next(&mut watch_b).await?;
    assert_eq!(
        summary(&set_b_before),
        vec![
            ("eni-b1".to_owned(), vec![vsw_log.clone()]),
            ("eni-b2".to_owned(), vec![vsw_log.clone()])
        ]
    );
    control.child.kill().await?;
    let end = tokio::time::timeout(PATIENCE, watch_b.message()).await?;
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");

    let control = Control::start(&state_file).await?;
    let mut client = control.client().await?;
    let enis_after = client
        .list_network_interfaces(pb::ListNetworkInterfacesRequest::default())
        .await?
        .into_inner()
        .network_interfaces;
    assert_eq!(enis_after, enis_before);
    assert_eq!(enis_after.len(), 5);
    assert_eq!(describe_all(&mut client).await?, logs_before);
    let mut watch_b = watch(&mut client, "host-b").await?;
    assert_eq!(
        next(&mut watch_b).await?,
        set_b_before,
        "same set, same version after a restart"
    );
    // The client token survived too.
    let again = client
        .create_flow_log(pb::CreateFlowLogRequest {
            client_token: "token-1".into(),
            flow_log_name: "vsw-two".into(),
            ..flow_log(pb::ResourceType::Vswitch, "vsw-2", "vsw-store")
        })
        .await?
        .into_inner()
        .flow_log_id;
    assert_eq!(again, vsw_log);
    Ok(())
}

#[tokio::test]
async fn errors_carry_stable_codes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let control = Control::start(&dir.path().join("state.json")).await?;
    let mut client = control.client().await?;
    client
        .register_network_interface(eni("eni-1", "02:00:00:00:00:01", "vsw-1", "vpc-1", "h"))
        .await?;

    check(
        client
            .register_network_interface(eni("eni-2", "02:00:00:00:00", "vsw-1", "vpc-1", "h"))
            .await,
        Code::InvalidArgument,
        "InvalidMacAddress.Malformed",
    );
    check(
        client
            .register_network_interface(eni("eni-2", "03:00:00:00:00:02", "vsw-1", "vpc-1", "h"))
            .await,
        Code::InvalidArgument,
        "InvalidMacAddress.NotUnicast",
    );
    check(
        client
            .register_network_interface(eni("eni-2", "02:00:00:00:00:01", "vsw-1", "vpc-1", "h"))
            .await,
        Code::AlreadyExists,
        "InvalidMacAddress.InUse",
    );
    check(
        client
            .register_network_interface(eni("nic-2", "02:00:00:00:00:02", "vsw-1", "vpc-1", "h"))
            .await,
        Code::InvalidArgument,
        "InvalidNetworkInterfaceId.Malformed",
    );
    check(
        client
            .register_network_interface(eni("eni-2", "02:00:00:00:00:02", "vsw-1", "vpc-1", ""))
            .await,
        Code::InvalidArgument,
        "InvalidParameter.Host",
    );
    check(
        client
            .register_network_interface(pb::RegisterNetworkInterfaceRequest {
                network_interface: None,
            })
            .await,
        Code::InvalidArgument,
        "MissingParameter.NetworkInterface",
    );
    check(
        client
            .deregister_network_interface(pb::DeregisterNetworkInterfaceRequest {
                eni_id: "eni-404".into(),
            })
            .await,
        Code::NotFound,
        "InvalidNetworkInterfaceId.NotFound",
    );
    check(
        client
            .create_flow_log(flow_log(pb::ResourceType::Vpc, "vpc-404", "store"))
            .await,
        Code::NotFound,
        "InvalidResourceId.NotFound",
    );
    check(
        client
            .create_flow_log(pb::CreateFlowLogRequest {
                project_name: "Bad_Project".into(),
                ..flow_log(pb::ResourceType::Vpc, "vpc-1", "store")
            })
            .await,
        Code::InvalidArgument,
        "InvalidProjectName.Malformed",
    );
    check(
        client
            .create_flow_log(pb::CreateFlowLogRequest {
                aggregation_interval: 7,
                ..flow_log(pb::ResourceType::Vpc, "vpc-1", "store")
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter.AggregationInterval",
    );
    check(
        client
            .create_flow_log(pb::CreateFlowLogRequest {
                resource_type: 99,
                ..flow_log(pb::ResourceType::Vpc, "vpc-1", "store")
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter.ResourceType",
    );
    check(
        client
            .create_flow_log(pb::CreateFlowLogRequest {
                region_id: "us-east-1".into(),
                ..flow_log(pb::ResourceType::Vpc, "vpc-1", "store")
            })
            .await,
        Code::NotFound,
        "InvalidRegionId.NotFound",
    );
    check(
        client
            .delete_flow_log(pb::DeleteFlowLogRequest {
                flow_log_id: "fl-404".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "InvalidFlowLogId.NotFound",
    );
    check(
        client
            .describe_flow_logs(pb::DescribeFlowLogsRequest {
                page_size: 51,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter.PageSize",
    );
    check(
        client
            .describe_flow_logs(pb::DescribeFlowLogsRequest {
                status: "Sleeping".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter.Status",
    );
    let status = client
        .watch_capture_set(pb::WatchCaptureSetRequest {
            host: String::new(),
        })
        .await
        .expect_err("an empty host is refused");
    assert_eq!(status.code(), Code::InvalidArgument);

    // Idempotency over the wire; a duplicate destination without a token is refused.
    let request = pb::CreateFlowLogRequest {
        client_token: "abc".into(),
        ..flow_log(pb::ResourceType::Vpc, "vpc-1", "store")
    };
    let first = client
        .create_flow_log(request.clone())
        .await?
        .into_inner()
        .flow_log_id;
    let second = client
        .create_flow_log(request)
        .await?
        .into_inner()
        .flow_log_id;
    assert_eq!(first, second);
    check(
        client
            .create_flow_log(flow_log(pb::ResourceType::Vpc, "vpc-1", "store"))
            .await,
        Code::AlreadyExists,
        "AlreadyExists.FlowLog",
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_ends_watch_streams_and_exits_cleanly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut control = Control::start(&dir.path().join("state.json")).await?;
    let mut client = control.client().await?;
    let mut stream = watch(&mut client, "host-x").await?;
    let first = next(&mut stream).await?;
    assert_eq!((first.version, first.interfaces.len()), (0, 0));

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &control.pid()?.to_string()])
        .status()?;
    assert!(killed.success());
    let exit = tokio::time::timeout(PATIENCE, control.child.wait())
        .await
        .context("flowlog-control did not exit after SIGTERM")??;
    assert!(exit.success(), "{exit:?}");
    let end = tokio::time::timeout(PATIENCE, stream.message()).await?;
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    let extra = control.extra_stdout.await?;
    assert!(
        extra.is_empty(),
        "stdout holds only the listening line: {extra:?}"
    );
    Ok(())
}

#[tokio::test]
async fn corrupt_state_file_is_a_clear_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state_file = dir.path().join("broken.json");
    std::fs::write(&state_file, b"{\"format\": 1, \"region-id\": ")?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowlog-control"))
        .args(["--listen", "127.0.0.1:0", "--state-file"])
        .arg(&state_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let status = tokio::time::timeout(PATIENCE, child.wait()).await??;
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut stderr)
        .await?;
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut stdout)
        .await?;
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&state_file.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("corrupt"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}

/// Asserts that a call failed with `code` and a message starting with `"<prefix>: "`.
fn check<T: std::fmt::Debug>(
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

async fn cli(command: &[&str]) -> anyhow::Result<String> {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ControlCommand,
    }
    let parsed = Cli::try_parse_from(std::iter::once("flowlog").chain(command.iter().copied()))?;
    let mut out = Vec::new();
    cli::run_with_output(parsed.command, &mut out).await?;
    Ok(String::from_utf8(out)?)
}

#[tokio::test]
async fn cli_drives_a_real_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let control = Control::start(&dir.path().join("state.json")).await?;
    let addr = control.addr.trim_start_matches("http://").to_owned();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/sample/sample.enis.toml");
    let sample = sample.to_str().context("path")?;

    let out = cli(&[
        "import-enis",
        "--control",
        &addr,
        "--file",
        sample,
        "--host",
        "host-1",
    ])
    .await?;
    assert_eq!(out, "registered 14 network interfaces on host host-1\n");
    let out = cli(&[
        "register-eni",
        "--control",
        &addr,
        "--eni-id",
        "eni-extra",
        "--mac",
        "02:00:00:ff:00:01",
        "--vm-id",
        "i-x",
        "--vswitch-id",
        "vsw-09",
        "--vpc-id",
        "vpc-9",
        "--account-id",
        "1",
        "--host",
        "host-2",
    ])
    .await?;
    assert_eq!(out, "registered eni-extra\n");
    let listed: serde_json::Value = serde_json::from_str(
        &cli(&[
            "list-enis",
            "--control",
            &addr,
            "--host",
            "host-2",
            "--json",
        ])
        .await?,
    )?;
    assert_eq!(listed[0]["eni-id"], "eni-extra");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let table = cli(&["list-enis", "--control", &addr]).await?;
    assert_eq!(table.lines().count(), 16, "{table}");

    let id = cli(&[
        "create-flow-log",
        "--control",
        &addr,
        "--resource-type",
        "VPC",
        "--resource-id",
        "vpc-0",
        "--project",
        "demo-project",
        "--logstore",
        "flows",
        "--interval",
        "1",
        "--name",
        "vpc0-all",
    ])
    .await?;
    let id = id.trim().to_owned();
    assert!(id.starts_with("fl-"), "{id}");
    let described: serde_json::Value = serde_json::from_str(
        &cli(&[
            "describe-flow-logs",
            "--control",
            &addr,
            "--vpc-id",
            "vpc-0",
            "--json",
        ])
        .await?,
    )?;
    assert_eq!(described["total-count"], 1);
    assert_eq!(described["flow-logs"][0]["flow-log-id"], id.as_str());
    assert_eq!(described["flow-logs"][0]["resource-type"], "VPC");
    assert_eq!(described["flow-logs"][0]["status"], "Active");
    assert_eq!(described["flow-logs"][0]["aggregation-interval"], 1);
    let table = cli(&["describe-flow-logs", "--control", &addr]).await?;
    assert!(
        table.contains(&id) && table.contains("page 1 (size 10) of 1 flow logs"),
        "{table}"
    );

    let watched = cli(&[
        "watch",
        "--control",
        &addr,
        "--host",
        "host-1",
        "--count",
        "1",
    ])
    .await?;
    let set: serde_json::Value = serde_json::from_str(watched.trim())?;
    let interfaces = set["interfaces"].as_array().context("interfaces")?;
    assert_eq!(interfaces.len(), 8, "the 8 ENIs of vpc-0");
    assert_eq!(interfaces[0]["destinations"][0]["interval-seconds"], 60);
    assert_eq!(interfaces[0]["destinations"][0]["logstore"], "flows");

    let refused = cli(&[
        "create-flow-log",
        "--control",
        &addr,
        "--resource-type",
        "VSwitch",
        "--resource-id",
        "vsw-00",
        "--project",
        "Bad",
        "--logstore",
        "flows",
    ])
    .await
    .expect_err("a bad project name is refused");
    assert!(
        format!("{refused:#}").contains("InvalidProjectName.Malformed"),
        "{refused:#}"
    );

    assert_eq!(
        cli(&["delete-flow-log", "--control", &addr, "--flow-log-id", &id]).await?,
        format!("deleted {id}\n")
    );
    assert_eq!(
        cli(&[
            "deregister-eni",
            "--control",
            &addr,
            "--eni-id",
            "eni-extra"
        ])
        .await?,
        "deregistered eni-extra\n"
    );
    let unreachable = cli(&["list-enis", "--control", "127.0.0.1:1"])
        .await
        .expect_err("nobody listens there");
    assert!(
        format!("{unreachable:#}").contains("cannot connect"),
        "{unreachable:#}"
    );
    Ok(())
}
