//! Acceptance: a generated capture of 1 million packets played through `flowlog-vswitch` on a `net_pcap` vdev,
//! exported over gRPC to `flowlog-collector` and read back with `flowlog query --json`, gives the same records
//! as `flowlog replay`. Every process is real: the collector, the DPDK program (real EAL and PMD), the CLI.

mod common;

use std::process::Command;

use common::{Server, assert_same_records, bin, eal_args, run};

#[test]
fn e2e_vswitch_on_net_pcap_delivers_what_replay_computes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = flowlog_trafficgen::GenConfig::new(20_261_126, 1_000_000, 60);
    flowlog_trafficgen::generate(&config, d).unwrap();
    let pcap = d.join("capture.pcap");

    let replayed = run(Command::new(bin("flowlog"))
        .arg("replay")
        .arg("--pcap")
        .arg(&pcap)
        .arg("--enis")
        .arg(d.join("enis.toml"))
        .args(["--interval", "60"]));

    let data = d.join("collector-data");
    let collector = Server::start(
        &bin("flowlog-collector"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    std::fs::write(
        d.join("vswitch.toml"),
        format!(
            r#"host = "host-e2e"
[eal]
args = {eal}
[[ports]]
name = "net_pcap0"
[dataplane]
interval-secs = 60
clock = "rx-timestamp"
[capture]
enis-file = "enis.toml"
project = "e2e-project"
logstore = "flows"
[export]
collector = "{collector}"
[run]
stop-when-idle-ms = 1000
"#,
            eal = eal_args(&format!("net_pcap0,rx_pcap={}", pcap.display())),
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
    assert!(stderr.contains("1000000 frames"), "{stderr}");
    assert!(
        stderr.contains(" 0 abandoned, 0 dropped by the ports"),
        "{stderr}"
    );

    let queried = run(Command::new(bin("flowlog")).args([
        "query",
        "--collector",
        &collector.addr,
        "--project",
        "e2e-project",
        "--logstore",
        "flows",
        "--json",
    ]));
    assert_same_records(&queried, &replayed);
    assert!(replayed.lines().count() > 10_000);
    collector.stop();
}
