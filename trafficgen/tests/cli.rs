//! The `flowlog-gen` binary: writes the four files, prints the summary, and refuses bad arguments with a clear error.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_flowlog-gen");

#[test]
fn writes_the_four_files_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "--seed",
            "5",
            "--packets",
            "2000",
            "--interval",
            "30",
            "--duration-secs",
            "120",
            "--enis",
            "8",
        ])
        .arg("--out-dir")
        .arg(dir.path().join("nested"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: flowlog_trafficgen::Summary = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary.frames, 2000);
    assert_eq!(summary.enis, 8);
    assert_eq!(summary.interval_secs, 30);
    for name in [
        "capture.pcap",
        "enis.toml",
        "expected.jsonl",
        "summary.json",
    ] {
        let meta = std::fs::metadata(dir.path().join("nested").join(name)).unwrap();
        assert!(meta.len() > 0, "{name} is empty");
    }
    let expected = std::fs::read_to_string(dir.path().join("nested/expected.jsonl")).unwrap();
    assert_eq!(
        expected.lines().count() as u64,
        summary.records.ok + summary.records.nodata
    );
    assert!(
        expected
            .lines()
            .all(|l| l.contains("\"end\":") && !l.contains("region"))
    );
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "--seed",
            "5",
            "--packets",
            "10",
            "--interval",
            "60",
            "--enis",
            "3",
        ])
        .arg("--out-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("enis must be between 6 and 512, got 3"),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing is written on a bad config"
    );

    let out = Command::new(BIN).args(["--seed", "x"]).output().unwrap();
    assert!(!out.status.success());
}
