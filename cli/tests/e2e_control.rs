//! Acceptance, control-plane path: flow logs created over gRPC decide what `flowlog-vswitch` captures and where
//! each record goes. A VPC flow log at 1 minute and an ENI flow log at 5 minutes (on an ENI of the other VPC,
//! Allow only) are delivered to their own logstores, each exactly as `flowlog replay` computes for those ENIs at
//! that interval. Real processes throughout: control, collector, the DPDK program on a net_pcap vdev, the CLI.

mod common;

use std::process::Command;

use common::{
    Server, assert_same_records, bin, eal_args, generated, run, run_vswitch, wait_for_log,
};

/// Replays the capture at `interval` and keeps the records `keep` selects, in replay order.
fn replay_filtered(
    dir: &std::path::Path,
    interval: u32,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> String {
    let out = run(Command::new(bin("flowlog"))
        .arg("replay")
        .arg("--pcap")
        .arg(dir.join("capture.pcap"))
        .arg("--enis")
        .arg(dir.join("enis.toml"))
        .args([
            "--interval",
            &interval.to_string(),
            "--region",
            "cn-hangzhou",
        ]));
    out.lines()
        .filter(|line| keep(&serde_json::from_str(line).unwrap()))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn e2e_flow_logs_from_the_control_plane_route_and_aggregate_records() {
    let dir = generated(99, 200_000);
    let d = dir.path();

    let collector = Server::start(
        &bin("flowlog-collector"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            d.join("data").to_str().unwrap(),
        ],
    );
    // Tenancy: the orchestrator manages the inventory, each tenant its own flow logs, the host its capture set.
    std::fs::write(
        d.join("access.toml"),
        r#"
[[account]]
id = "100000000000"
tokens = ["tenant-a-token"]
projects = ["tenant-a"]

[[account]]
id = "100000000001"
tokens = ["tenant-b-token"]
projects = ["tenant-b"]

[[admin]]
name = "orchestrator"
tokens = ["orchestrator-token"]

[[host]]
name = "host-a"
tokens = ["host-a-token"]
"#,
    )
    .unwrap();
    let control = Server::start(
        &bin("flowlog-control"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-file",
            d.join("control.redb").to_str().unwrap(),
            "--access",
            d.join("access.toml").to_str().unwrap(),
            "--region",
            "cn-hangzhou",
        ],
    );
    let as_caller = |token: &str, args: &[&str]| {
        Command::new(bin("flowlog"))
            .args(args)
            .args(["--control", &control.addr, "--token", token])
            .output()
            .unwrap()
    };
    let ok = |output: std::process::Output| {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let admin = |args: &[&str]| ok(as_caller("orchestrator-token", args));
    let tenant_a = |args: &[&str]| ok(as_caller("tenant-a-token", args));
    let tenant_b = |args: &[&str]| ok(as_caller("tenant-b-token", args));
    // One ENI first, so that the VPC exists; the rest are registered after the flow logs: a VPC flow log
    // covers the ENIs of its VPC at each moment, later ones included.
    let enis = std::fs::read_to_string(d.join("enis.toml")).unwrap();
    let first_eni = enis.split("[[eni]]").nth(1).unwrap();
    std::fs::write(d.join("first-eni.toml"), format!("[[eni]]{first_eni}")).unwrap();
    let import = |file: &str| {
        admin(&[
            "import-enis",
            "--file",
            d.join(file).to_str().unwrap(),
            "--host",
            "host-a",
        ])
    };
    import("first-eni.toml");
    let vpc_log = tenant_a(&[
        "create-flow-log",
        "--resource-type",
        "VPC",
        "--resource-id",
        "vpc-0",
        "--project",
        "tenant-a",
        "--logstore",
        "vpc0-1m",
        "--interval",
        "1",
    ]);
    import("enis.toml");
    let eni_log = tenant_b(&[
        "create-flow-log",
        "--resource-type",
        "NetworkInterface",
        "--resource-id",
        "eni-00009",
        "--project",
        "tenant-b",
        "--logstore",
        "eni9-5m",
        "--interval",
        "5",
        "--traffic-type",
        "Allow",
    ]);
    assert!(
        vpc_log.trim().starts_with("fl-") && eni_log.trim().starts_with("fl-"),
        "{vpc_log} {eni_log}"
    );
    // Cross-account attempts are refused: tenant B on tenant A's VPC, tenant A into tenant B's project.
    let refused = as_caller(
        "tenant-b-token",
        &[
            "create-flow-log",
            "--resource-type",
            "VPC",
            "--resource-id",
            "vpc-0",
            "--project",
            "tenant-b",
            "--logstore",
            "stolen",
        ],
    );
    assert!(!refused.status.success());
    let refused = as_caller(
        "tenant-a-token",
        &[
            "create-flow-log",
            "--resource-type",
            "VPC",
            "--resource-id",
            "vpc-0",
            "--project",
            "tenant-b",
            "--logstore",
            "leak",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Forbidden"),
        "{:?}",
        refused
    );

    std::fs::write(
        d.join("vswitch.toml"),
        format!(
            r#"host = "host-a"
region = "cn-hangzhou"
[eal]
args = {eal}
[[ports]]
name = "net_pcap0"
[dataplane]
interval-secs = 60
clock = "rx-timestamp"
# Played at full speed, the capture passes a window every few milliseconds: with a spare table per window, an
# exporter starved of CPU by other tests never makes a worker summarise a window as SKIPDATA.
spare-tables = 16
flow-capacity = 131072
[capture]
control = "{control}"
control-token = "host-a-token"
[export]
collector = "{collector}"
[run]
stop-when-idle-ms = 1000
"#,
            eal = eal_args(&format!(
                "net_pcap0,rx_pcap={}",
                d.join("capture.pcap").display()
            )),
            control = control.addr,
            collector = collector.addr,
        ),
    )
    .unwrap();
    let stderr = run_vswitch(d, &d.join("vswitch.toml"));
    assert!(stderr.contains(" 0 abandoned"), "{stderr}");

    // The host acknowledged the capture sets: both flow logs are Active.
    let status = |caller: &dyn Fn(&[&str]) -> String, id: &str| {
        caller(&["describe-flow-logs", "--flow-log-id", id.trim(), "--json"])
    };
    assert!(
        status(&tenant_a, &vpc_log).contains("\"Active\""),
        "{}",
        status(&tenant_a, &vpc_log)
    );
    assert!(
        status(&tenant_b, &eni_log).contains("\"Active\""),
        "{}",
        status(&tenant_b, &eni_log)
    );
    // Each tenant sees only its own flow logs.
    assert!(!tenant_a(&["describe-flow-logs", "--json"]).contains(eni_log.trim()));

    let query = |project: &str, logstore: &str| {
        run(Command::new(bin("flowlog")).args([
            "query",
            "--collector",
            &collector.addr,
            "--project",
            project,
            "--logstore",
            logstore,
            "--json",
        ]))
    };
    let expected_vpc = replay_filtered(d, 60, |r| r["vpc-id"] == "vpc-0");
    assert_same_records(&query("tenant-a", "vpc0-1m"), &expected_vpc);
    assert!(expected_vpc.lines().count() > 1_000);

    // Allow = ACCEPT records (and NODATA/SKIPDATA, which carry no action), aggregated at 5 minutes.
    let expected_eni = replay_filtered(d, 300, |r| {
        r["eni-id"] == "eni-00009" && r["action"] != "REJECT"
    });
    let got_eni = query("tenant-b", "eni9-5m");
    assert_same_records(&got_eni, &expected_eni);
    assert!(
        got_eni.contains(r#""start":1699999800,"end":1700000100"#),
        "{got_eni}"
    );

    // ENIs of no flow log (vpc-1 except eni-00009) reached no logstore.
    assert!(!query("tenant-a", "vpc0-1m").contains("\"vpc-1\""));
    control.stop();
    collector.stop();
}

/// Scope changes while traffic flows: with `flowlog-vswitch` metering a looping capture on the live (TSC) clock,
/// an ENI registered in a captured VPC is captured within about a second of the inventory call (the latency is
/// printed), its records reach the VPC's logstore, and deregistering it takes it out of the host's capture set.
#[test]
fn e2e_an_eni_added_to_and_removed_from_a_captured_vpc_while_traffic_flows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    flowlog_trafficgen::generate(&flowlog_trafficgen::GenConfig::new(5, 5_000, 60), d).unwrap();
    let collector = Server::start(
        &bin("flowlog-collector"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            d.join("data").to_str().unwrap(),
        ],
    );
    let control = Server::start(
        &bin("flowlog-control"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-file",
            d.join("control.redb").to_str().unwrap(),
            "--insecure-no-auth",
        ],
    );
    let flowlog = |args: &[&str]| {
        run(Command::new(bin("flowlog"))
            .args(args)
            .args(["--control", &control.addr]))
    };
    // Every ENI but eni-00003 (vpc-0) at first.
    let enis = std::fs::read_to_string(d.join("enis.toml")).unwrap();
    let (late, others): (Vec<&str>, Vec<&str>) = enis
        .split("[[eni]]")
        .skip(1)
        .partition(|t| t.contains("\"eni-00003\""));
    let toml = |tables: &[&str]| {
        tables
            .iter()
            .map(|t| format!("[[eni]]{t}"))
            .collect::<String>()
    };
    std::fs::write(d.join("others.toml"), toml(&others)).unwrap();
    std::fs::write(d.join("late.toml"), toml(&late)).unwrap();
    let import = |file: &str| {
        flowlog(&[
            "import-enis",
            "--file",
            d.join(file).to_str().unwrap(),
            "--host",
            "host-a",
        ])
    };
    import("others.toml");
    flowlog(&[
        "create-flow-log",
        "--resource-type",
        "VPC",
        "--resource-id",
        "vpc-0",
        "--project",
        "tenant-a",
        "--logstore",
        "vpc0",
        "--interval",
        "1",
    ]);

    std::fs::write(
        d.join("vswitch.toml"),
        format!(
            r#"host = "host-a"
[eal]
args = {eal}
[[ports]]
name = "net_pcap0"
[dataplane]
interval-secs = 60
clock = "tsc"
[capture]
control = "{control}"
[export]
collector = "{collector}"
"#,
            eal = eal_args(&format!(
                "net_pcap0,rx_pcap={},infinite_rx=1",
                d.join("capture.pcap").display()
            )),
            control = control.addr,
            collector = collector.addr,
        ),
    )
    .unwrap();
    let log = d.join("vswitch.log");
    let mut vswitch = common::KillOnDrop(
        Command::new(bin("flowlog-vswitch"))
            .arg("--config")
            .arg(d.join("vswitch.toml"))
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    // The host captures the ENIs of vpc-0, the only VPC with a flow log.
    let captured = others.iter().filter(|t| t.contains("\"vpc-0\"")).count();
    let secs = std::time::Duration::from_secs;
    let applied = |count: usize| format!("enis={count} ");
    let (_, at) = wait_for_log(
        &log,
        &["capture set applied", &applied(captured)],
        0,
        secs(20),
    );
    let (_, at) = wait_for_log(&log, &["capturing"], at, secs(20));
    std::thread::sleep(std::time::Duration::from_millis(500));

    let added_at = std::time::Instant::now();
    import("late.toml");
    let (applied_at, at) = wait_for_log(
        &log,
        &["capture set applied", &applied(captured + 1)],
        at,
        secs(20),
    );
    println!(
        "ENI registered -> captured by the host: {:?}",
        applied_at - added_at
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    flowlog(&["deregister-eni", "--eni-id", "eni-00003"]);
    wait_for_log(
        &log,
        &["capture set applied", &applied(captured)],
        at,
        secs(20),
    );

    // Stop the program the way an operator does; it flushes the open window and delivers everything.
    Command::new("kill")
        .arg("-TERM")
        .arg(vswitch.0.id().to_string())
        .status()
        .unwrap();
    let status = vswitch.0.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains(" 0 abandoned"), "{text}");

    let records = run(Command::new(bin("flowlog")).args([
        "query",
        "--collector",
        &collector.addr,
        "--project",
        "tenant-a",
        "--logstore",
        "vpc0",
        "--json",
    ]));
    let ok_packets = |eni: &str| -> u64 {
        records
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["eni-id"] == eni && r["log-status"] == "OK")
            .map(|r| r["packets"].as_u64().unwrap())
            .sum()
    };
    assert!(
        ok_packets("eni-00003") > 0,
        "the late ENI was captured while registered"
    );
    assert!(
        ok_packets("eni-00000") > ok_packets("eni-00003"),
        "and only for part of the run"
    );
    assert!(
        !records.contains("\"vpc-1\""),
        "ENIs of other VPCs stay out"
    );
    control.stop();
    collector.stop();
}
