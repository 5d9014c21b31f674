//! End-to-end checks of generated captures: read back with the independent reader in `reader/`, the capture must
//! produce exactly `expected.jsonl`; the output must be deterministic; the capture must cover what SPEC.md lists.

mod reader;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use flowlog_trafficgen::{GenConfig, MalformedReason, Summary, generate};
use serde_json::Value;

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/sample")
}

fn config(seed: u64, packets: u64, interval: u64, duration: u64) -> GenConfig {
    GenConfig {
        seed,
        packets,
        interval_secs: interval,
        duration_secs: duration,
        malformed_per_million: 1_000,
        ..GenConfig::default()
    }
}

/// Generates, reads the capture back and checks it against `expected.jsonl` and `summary.json`.
fn check_round_trip(cfg: &GenConfig) -> (Summary, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(cfg, dir.path()).unwrap();
    let frames = reader::read_pcap(&dir.path().join("capture.pcap"));
    let enis = reader::read_enis(&dir.path().join("enis.toml"));
    let expected = reader::read_jsonl(&dir.path().join("expected.jsonl"));
    let (computed, counts) = reader::records(&frames, &enis, cfg.interval_secs);

    assert_eq!(frames.len() as u64, cfg.packets);
    assert_eq!(enis.len(), cfg.enis);
    if computed != expected {
        let first = computed.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "{} computed vs {} expected records; first difference at {first:?}:\n{:?}\n{:?}",
            computed.len(),
            expected.len(),
            first.map(|i| &computed[i]),
            first.map(|i| &expected[i]),
        );
    }

    // Timestamps: ordered, from the start epoch, within the duration.
    assert_eq!(frames[0].micros, cfg.start_epoch * 1_000_000);
    assert!(frames.windows(2).all(|w| w[0].micros <= w[1].micros));
    assert!(frames.last().unwrap().micros < (cfg.start_epoch + cfg.duration_secs) * 1_000_000);
    // Every good frame has valid checksums and is padded to the Ethernet minimum.
    assert_eq!(counts.bad_checksums, 0);
    assert_eq!(counts.short_good_frames, 0);

    // The summary's counters agree with what the reader found.
    let on_disk: Summary =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk, summary);
    assert_eq!(summary.frames, counts.frames);
    assert_eq!(summary.non_ip_frames, counts.non_ip);
    assert_eq!(summary.unattributed_frames, counts.unattributed);
    assert_eq!(summary.flow_frames, counts.attributed);
    assert_eq!(summary.vxlan_frames, counts.vxlan);
    assert_eq!(
        summary.fragment_frames + summary.orphan_fragments,
        counts.fragments
    );
    let read_malformed: u64 = counts.malformed.values().sum();
    assert_eq!(summary.malformed_frames, read_malformed);
    let by_reason: BTreeMap<String, u64> = summary
        .malformed
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    assert_eq!(
        by_reason, counts.malformed,
        "reasons as the reader names them"
    );
    assert_eq!(
        summary.frames,
        summary.flow_frames
            + summary.malformed_frames
            + summary.non_ip_frames
            + summary.unattributed_frames
    );

    // Packet and byte sums of the records equal what was written.
    let ok: Vec<&Value> = expected
        .iter()
        .filter(|r| r["log-status"] == "OK")
        .collect();
    let packets: u64 = ok.iter().map(|r| r["packets"].as_u64().unwrap()).sum();
    let bytes: u64 = ok.iter().map(|r| r["bytes"].as_u64().unwrap()).sum();
    assert_eq!(packets, summary.record_packets);
    assert_eq!(bytes, summary.record_bytes);
    assert_eq!(packets, summary.flow_frames + summary.eni_to_eni_frames);
    assert_eq!(summary.records.ok, ok.len() as u64);
    assert_eq!(
        summary.records.ok + summary.records.nodata,
        expected.len() as u64
    );
    (summary, expected)
}

#[test]
fn the_reader_reproduces_the_sample_records() {
    // The reader's reading of SPEC.md agrees with the product owners' sample, so agreement with it means something.
    let dir = sample_dir();
    let frames = reader::read_pcap(&dir.join("sample.pcap"));
    let enis = reader::read_enis(&dir.join("sample.enis.toml"));
    let expected = reader::read_jsonl(&dir.join("sample.expected-60s.jsonl"));
    let (computed, counts) = reader::records(&frames, &enis, 60);
    assert_eq!(counts.frames, 20_013);
    let first = computed.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(
        computed.len(),
        expected.len(),
        "first difference at {first:?}"
    );
    assert_eq!(
        first,
        None,
        "{:?}",
        first.map(|i| (&computed[i], &expected[i]))
    );
}

#[test]
fn capture_produces_exactly_the_expected_records_at_60s() {
    let (summary, _) = check_round_trip(&config(11, 30_000, 60, 300));
    assert_eq!(summary.windows, 6);
}

#[test]
fn capture_produces_exactly_the_expected_records_at_10s_with_more_enis() {
    let cfg = GenConfig {
        enis: 40,
        concurrent_flows: 64,
        ..config(12, 20_000, 10, 95)
    };
    let (summary, _) = check_round_trip(&cfg);
    assert!(summary.windows >= 10);
    assert!(!summary.quiet_windows.is_empty());
}

#[test]
fn tiny_and_odd_configurations_round_trip() {
    for cfg in [
        config(1, 1, 60, 600),
        config(2, 7, 60, 600),
        config(3, 50, 1, 3),
        GenConfig {
            enis: 6,
            concurrent_flows: 1,
            ..config(4, 3_000, 60, 60)
        },
        GenConfig {
            start_epoch: 1_700_000_013,
            ..config(5, 2_000, 7, 70)
        },
    ] {
        check_round_trip(&cfg);
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let cfg = config(21, 5_000, 60, 300);
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    generate(&cfg, a.path()).unwrap();
    generate(&cfg, b.path()).unwrap();
    generate(&GenConfig { seed: 22, ..cfg }, c.path()).unwrap();
    for name in [
        "capture.pcap",
        "enis.toml",
        "expected.jsonl",
        "summary.json",
    ] {
        let read = |d: &Path| std::fs::read(d.join(name)).unwrap();
        assert_eq!(
            read(a.path()),
            read(b.path()),
            "{name} differs for the same seed"
        );
    }
    for name in ["capture.pcap", "expected.jsonl"] {
        let read = |d: &Path| std::fs::read(d.join(name)).unwrap();
        assert_ne!(
            read(a.path()),
            read(c.path()),
            "{name} same for different seeds"
        );
    }
}

#[test]
fn expected_records_are_sorted_like_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    generate(&config(31, 10_000, 60, 300), dir.path()).unwrap();
    let records = reader::read_jsonl(&dir.path().join("expected.jsonl"));
    let key = |r: &Value| {
        let s = |f: &str| r[f].as_str().unwrap_or("").to_owned();
        let n = |f: &str| r[f].as_u64().unwrap_or(0);
        (
            n("start"),
            s("eni-id"),
            s("log-status"),
            s("direction"),
            s("srcaddr"),
            n("srcport"),
            s("dstaddr"),
            n("dstport"),
            n("protocol"),
            s("action"),
        )
    };
    assert!(
        records.windows(2).all(|w| key(&w[0]) < key(&w[1])),
        "not strictly sorted"
    );
    for r in &records {
        let start = r["start"].as_u64().unwrap();
        assert_eq!(start % 60, 0);
        assert_eq!(r["end"].as_u64().unwrap(), start + 60);
        assert_eq!(r["version"], 1);
        if r["log-status"] == "NODATA" {
            for f in [
                "srcaddr",
                "srcport",
                "dstaddr",
                "dstport",
                "protocol",
                "direction",
                "action",
                "type",
            ] {
                assert!(r[f].is_null(), "{f} not null on NODATA: {r}");
            }
            assert_eq!(
                (
                    r["packets"].as_u64(),
                    r["bytes"].as_u64(),
                    r["tcp-flags"].as_u64()
                ),
                (Some(0), Some(0), Some(0))
            );
        } else {
            assert_eq!(r["action"], "ACCEPT");
            assert!(r["packets"].as_u64().unwrap() > 0);
        }
    }
}

#[test]
fn the_capture_covers_what_the_spec_lists() {
    let cfg = config(41, 40_000, 60, 360);
    let (summary, records) = check_round_trip(&cfg);

    for reason in MalformedReason::ALL {
        assert!(
            summary.malformed[reason.name()] > 0,
            "no {} frame",
            reason.name()
        );
    }
    for proto in ["tcp", "udp", "icmp", "icmpv6", "gre", "sctp"] {
        assert!(summary.frames_by_protocol[proto] > 0, "no {proto} frame");
    }
    for (name, n) in [
        ("802.1Q", summary.dot1q_frames),
        ("QinQ", summary.qinq_frames),
        ("IPv6", summary.ipv6_frames),
        (
            "IPv6 extension headers",
            summary.ipv6_extension_header_frames,
        ),
        ("IPv4 options", summary.ipv4_option_frames),
        ("VXLAN", summary.vxlan_frames),
        ("UDP 4789 not VXLAN", summary.udp_4789_not_vxlan_frames),
        ("fragments", summary.fragment_frames),
        ("orphan fragments", summary.orphan_fragments),
        ("ENI to ENI", summary.eni_to_eni_frames),
        ("non-IP", summary.non_ip_frames),
        ("unattributed", summary.unattributed_frames),
    ] {
        assert!(n > 0, "no {name} frame");
    }
    assert!(
        summary.vxlan_frames * 20 < summary.frames,
        "VXLAN should be a small share"
    );
    assert_eq!(summary.enis_without_traffic.len(), 2);

    let ok: Vec<&Value> = records.iter().filter(|r| r["log-status"] == "OK").collect();
    let s = |r: &Value, f: &str| r[f].as_str().unwrap_or("").to_owned();
    let u = |r: &Value, f: &str| r[f].as_u64().unwrap_or(0);
    let starts: BTreeSet<u64> = records.iter().map(|r| u(r, "start")).collect();

    // ENIs without traffic: NODATA in every window; the quiet window: NODATA for every ENI.
    for id in &summary.enis_without_traffic {
        let nodata = records
            .iter()
            .filter(|r| s(r, "eni-id") == *id && r["log-status"] == "NODATA")
            .count();
        assert_eq!(nodata, starts.len());
    }
    assert_eq!(summary.quiet_windows.len(), 1);
    let quiet = summary.quiet_windows[0];
    assert!(quiet > *starts.first().unwrap() && quiet < *starts.last().unwrap());
    let in_quiet: Vec<&Value> = records.iter().filter(|r| u(r, "start") == quiet).collect();
    assert_eq!(in_quiet.len(), cfg.enis);
    assert!(in_quiet.iter().all(|r| r["log-status"] == "NODATA"));
    // Some ENI that has traffic is NODATA in some other window too.
    let partial = records.iter().any(|r| {
        r["log-status"] == "NODATA"
            && u(r, "start") != quiet
            && !summary.enis_without_traffic.contains(&s(r, "eni-id"))
    });
    assert!(partial, "no ENI silent in a busy window");

    // A flow spanning windows: the same key in several windows.
    let mut windows_per_key: HashMap<String, BTreeSet<u64>> = HashMap::new();
    for r in &ok {
        let key = format!(
            "{} {} {} {} {} {} {}",
            s(r, "eni-id"),
            s(r, "direction"),
            s(r, "srcaddr"),
            u(r, "srcport"),
            s(r, "dstaddr"),
            u(r, "dstport"),
            u(r, "protocol")
        );
        windows_per_key
            .entry(key)
            .or_default()
            .insert(u(r, "start"));
    }
    assert!(
        windows_per_key.values().any(|w| w.len() >= 3),
        "no flow spans three windows"
    );

    // A TCP connection between two ENIs gives four records in a window.
    let has = |eni_prefix_addr: &str, dir: &str, src: &str, dst: &str, start: u64| {
        ok.iter().any(|r| {
            u(r, "start") == start
                && s(r, "direction") == dir
                && s(r, "srcaddr") == src
                && s(r, "dstaddr") == dst
                && s(r, "eni-id") == eni_prefix_addr
        })
    };
    let mac_owner: HashMap<String, String> = ok
        .iter()
        .filter(|r| s(r, "direction") == "out")
        .map(|r| (s(r, "srcaddr"), s(r, "eni-id")))
        .collect();
    let four = ok.iter().any(|r| {
        if r["protocol"] != 6 || s(r, "direction") != "out" {
            return false;
        }
        let (src, dst, start) = (s(r, "srcaddr"), s(r, "dstaddr"), u(r, "start"));
        let (Some(a), Some(b)) = (mac_owner.get(&src), mac_owner.get(&dst)) else {
            return false;
        };
        a != b
            && has(b, "in", &src, &dst, start)
            && has(b, "out", &dst, &src, start)
            && has(a, "in", &dst, &src, start)
    });
    assert!(
        four,
        "no window with the four records of an ENI-to-ENI TCP connection"
    );

    // TCP flags are OR-ed (a record with SYN and ACK and FIN), portless protocols have ports 0, orphans ports 0.
    assert!(
        ok.iter()
            .any(|r| r["protocol"] == 6 && u(r, "tcp-flags") & 0x13 == 0x13)
    );
    assert!(
        ok.iter()
            .filter(|r| [1, 58, 47].contains(&u(r, "protocol")))
            .all(|r| u(r, "srcport") == 0 && u(r, "dstport") == 0)
    );
    assert!(
        ok.iter()
            .filter(|r| r["protocol"] != 6)
            .all(|r| u(r, "tcp-flags") == 0)
    );
    assert!(ok.iter().any(
        |r| s(r, "srcaddr").starts_with("198.1") && u(r, "srcport") == 0
            || s(r, "dstaddr").starts_with("198.1") && u(r, "dstport") == 0
    ));
    // Two VPCs and two accounts have traffic.
    let vpcs: BTreeSet<String> = ok.iter().map(|r| s(r, "vpc-id")).collect();
    let accounts: BTreeSet<String> = ok.iter().map(|r| s(r, "account-id")).collect();
    assert!(vpcs.len() >= 2 && accounts.len() >= 2);
    // Zipf: a few elephants, many mice. The busiest tenth of the records carries over a third of the packets.
    let mut sizes: Vec<u64> = ok.iter().map(|r| u(r, "packets")).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let median = sizes[sizes.len() / 2];
    assert!(
        median <= 3,
        "median record ({median} packets) is not a mouse"
    );
    assert!(sizes[0] >= 10 * median, "no elephant");
    let top: u64 = sizes[..sizes.len() / 10].iter().sum();
    assert!(
        top * 3 > summary.record_packets,
        "top tenth carries only {top} of {} packets",
        summary.record_packets
    );
}
