//! Acceptance, control-plane path: flow logs created over gRPC decide what `flowlog-vswitch` captures and where
//! each record goes. A VPC flow log at 1 minute and an ENI flow log at 5 minutes (on an ENI of the other VPC,
//! Allow only) are delivered to their own logstores, each exactly as `flowlog replay` computes for those ENIs at
//! that interval. Real processes throughout: control, collector, the DPDK program on a net_pcap vdev, the CLI.

mod common;

use std::process::Command;

use common::{Server, assert_same_records, bin, eal_args, run};

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
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = flowlog_trafficgen::GenConfig::new(99, 200_000, 60);
    flowlog_trafficgen::generate(&config, d).unwrap();

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
    let output = Command::new(bin("flowlog-vswitch"))
        .arg("--config")
        .arg(d.join("vswitch.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "flowlog-vswitch failed: {stderr}");
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
