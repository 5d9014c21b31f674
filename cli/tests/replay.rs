//! `flowlog replay` against captures whose records were computed independently: the product owners' sample
//! (testdata/sample) and the project's own seeded generator at 1 million packets. The output must be identical,
//! byte for byte: every key, packets, bytes, start, end, tcp-flags and NODATA row.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn replay(pcap: &Path, enis: &Path, interval: u32) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_flowlog"))
        .arg("replay")
        .arg("--pcap")
        .arg(pcap)
        .arg("--enis")
        .arg(enis)
        .args(["--interval", &interval.to_string(), "--stats"])
        .output()
        .expect("run flowlog replay");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "flowlog replay failed: {stderr}");
    (String::from_utf8(output.stdout).unwrap(), stderr)
}

/// Compares line by line so a failure shows the first differing record, not 14 MB of text.
fn assert_same_records(actual: &str, expected: &str) {
    let (a, e): (Vec<&str>, Vec<&str>) = (actual.lines().collect(), expected.lines().collect());
    for (index, (x, y)) in a.iter().zip(&e).enumerate() {
        assert_eq!(x, y, "record {} differs", index + 1);
    }
    assert_eq!(a.len(), e.len(), "record count differs");
    assert_eq!(actual, expected);
}

#[test]
fn replay_reproduces_the_independent_sample() {
    let dir = repo().join("testdata/sample");
    let (out, stderr) = replay(&dir.join("sample.pcap"), &dir.join("sample.enis.toml"), 60);
    let expected = std::fs::read_to_string(dir.join("sample.expected-60s.jsonl")).unwrap();
    assert_same_records(&out, &expected);
    // The sample's README: 9 malformed frames, 4 ARP frames.
    assert!(
        stderr.contains("malformed                        9"),
        "{stderr}"
    );
    assert!(
        stderr.contains("non_ip                           4"),
        "{stderr}"
    );
}

#[test]
fn replay_reproduces_a_generated_million_packet_capture() {
    let dir = tempfile::tempdir().unwrap();
    let config = flowlog_trafficgen::GenConfig::new(20_261_126, 1_000_000, 60);
    let summary = flowlog_trafficgen::generate(&config, dir.path()).unwrap();
    assert_eq!(summary.frames, 1_000_000);
    let (out, stderr) = replay(
        &dir.path().join("capture.pcap"),
        &dir.path().join("enis.toml"),
        60,
    );
    let expected = std::fs::read_to_string(dir.path().join("expected.jsonl")).unwrap();
    assert_same_records(&out, &expected);
    let counter = |name: &str| -> u64 {
        stderr
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(name)
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0)
    };
    assert_eq!(counter("frames "), summary.frames);
    assert_eq!(counter("malformed "), summary.malformed_frames);
    assert_eq!(counter("non_ip "), summary.non_ip_frames);
    assert_eq!(counter("unattributed "), summary.unattributed_frames);
}

#[test]
fn replay_with_another_interval_and_seed() {
    let dir = tempfile::tempdir().unwrap();
    let config = flowlog_trafficgen::GenConfig::new(7, 50_000, 10);
    flowlog_trafficgen::generate(&config, dir.path()).unwrap();
    let (out, _) = replay(
        &dir.path().join("capture.pcap"),
        &dir.path().join("enis.toml"),
        10,
    );
    let expected = std::fs::read_to_string(dir.path().join("expected.jsonl")).unwrap();
    assert_same_records(&out, &expected);
}

#[test]
fn replay_reports_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pcap");
    std::fs::write(&bogus, b"this is not a capture at all").unwrap();
    let enis = repo().join("testdata/sample/sample.enis.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_flowlog"))
        .args(["replay", "--interval", "60", "--pcap"])
        .arg(&bogus)
        .arg("--enis")
        .arg(&enis)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a pcap file"), "{stderr}");

    let bad_enis = dir.path().join("enis.toml");
    std::fs::write(&bad_enis, "[[eni]]\nid = \"eni-1\"\nmac = \"zz\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flowlog"))
        .args(["replay", "--interval", "60", "--pcap"])
        .arg(repo().join("testdata/sample/sample.pcap"))
        .arg("--enis")
        .arg(&bad_enis)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("enis.toml"), "{stderr}");
}
