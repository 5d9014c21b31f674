//! End-to-end tests of `flowlog-collector`: the real binary on a real socket and real files, driven with the
//! generated gRPC client; crashes are real SIGKILLs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::Duration;

use anyhow::Context as _;
use flowlog_collector::cli::{self, FilterArgs, QueryArgs, SourceArgs, TopArgs, TopBy};
use flowlog_proto::v1::collector_client::CollectorClient;
use flowlog_proto::v1::{
    Action, Direction, IngestAck, IngestBatch, LogStatus, QueryRequest, QueryResponse, Record,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

/// A running collector process.
struct Collector {
    child: Child,
    address: String,
    stderr: Arc<Mutex<String>>,
    more_stdout: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    fn start(data_dir: &Path) -> Collector {
        Collector::start_with(data_dir, None)
    }

    fn start_with(data_dir: &Path, config: Option<&Path>) -> Collector {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flowlog-collector"));
        command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flowlog-collector");

        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("collector: {line}");
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });

        let (tx, rx) = std_mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let more_stdout = Arc::new(Mutex::new(Vec::new()));
        let extra = more_stdout.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Anything more on stdout would break the "exactly one line" contract: keep it for the tests to check.
            for line in lines.map_while(Result::ok) {
                extra.lock().unwrap().push(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("collector did not announce its address in time")
            .expect("collector closed stdout")
            .expect("read stdout");
        let address = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        Collector {
            child,
            address: format!("http://{address}"),
            stderr,
            more_stdout,
        }
    }

    async fn client(&self) -> CollectorClient<Channel> {
        CollectorClient::connect(self.address.clone())
            .await
            .expect("connect")
    }

    /// A real SIGKILL.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for the exit; checks that stdout held only the announcement.
    fn sigterm(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                let extra = self.more_stdout.lock().unwrap();
                assert!(extra.is_empty(), "more than one line on stdout: {extra:?}");
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().unwrap();
        panic!("collector did not stop within 10 s of SIGTERM");
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A record whose fields say which batch it came from.
fn record(sequence: u64, index: u64) -> Record {
    Record {
        version: 1,
        account_id: "100000000000".into(),
        vpc_id: "vpc-0".into(),
        vswitch_id: "vsw-0".into(),
        vm_id: format!("i-{}", index % 3),
        eni_id: format!("eni-{}", index % 3),
        srcaddr: vec![10, 0, 0, (index % 250) as u8],
        dstaddr: vec![10, 0, 1, 1],
        srcport: Some(40000 + index as u32),
        dstport: Some(443),
        protocol: Some(6),
        direction: Direction::Out as i32,
        packets: sequence,
        bytes: index,
        start: 1_700_000_000 + 60 * (index as i64 % 5),
        end: 1_700_000_060 + 60 * (index as i64 % 5),
        log_status: LogStatus::Ok as i32,
        action: if index.is_multiple_of(4) {
            Action::Reject
        } else {
            Action::Accept
        } as i32,
        tcp_flags: 18,
        region: String::new(),
    }
}

fn batch(exporter: &str, sequence: u64, records: u64) -> IngestBatch {
    IngestBatch {
        exporter_id: exporter.into(),
        sequence,
        project: "vpc-flow".into(),
        logstore: "flows".into(),
        records: (0..records).map(|i| record(sequence, i)).collect(),
    }
}

/// Sends `batches` on one stream, all at once, and returns the acknowledgements (and the error, if the stream
/// ended with one).
async fn ingest(
    client: &mut CollectorClient<Channel>,
    batches: Vec<IngestBatch>,
) -> (Vec<IngestAck>, Option<tonic::Status>) {
    let (tx, rx) = mpsc::channel(batches.len().max(1));
    for b in batches {
        tx.send(b).await.unwrap();
    }
    drop(tx);
    let mut acks = Vec::new();
    let mut stream = match client.ingest(ReceiverStream::new(rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (acks, Some(status)),
    };
    loop {
        match stream.message().await {
            Ok(Some(ack)) => acks.push(ack),
            Ok(None) => return (acks, None),
            Err(status) => return (acks, Some(status)),
        }
    }
}

async fn query(
    client: &mut CollectorClient<Channel>,
    request: QueryRequest,
) -> Result<Vec<QueryResponse>, tonic::Status> {
    let mut stream = client.query(request).await?.into_inner();
    let mut pages = Vec::new();
    while let Some(page) = stream.message().await? {
        pages.push(page);
    }
    Ok(pages)
}

fn all_of(project: &str, logstore: &str) -> QueryRequest {
    QueryRequest {
        project: project.into(),
        logstore: logstore.into(),
        ..QueryRequest::default()
    }
}

async fn records(client: &mut CollectorClient<Channel>) -> Vec<Record> {
    query(client, all_of("vpc-flow", "flows"))
        .await
        .unwrap()
        .into_iter()
        .flat_map(|p| p.records)
        .collect()
}

/// Per batch sequence, how many times each record index is stored.
fn census(records: &[Record]) -> HashMap<u64, HashMap<u64, usize>> {
    let mut seen: HashMap<u64, HashMap<u64, usize>> = HashMap::new();
    for r in records {
        *seen
            .entry(r.packets)
            .or_default()
            .entry(r.bytes)
            .or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_query_duplicates_filters_and_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(dir.path());
    let mut client = collector.client().await;

    let batches: Vec<IngestBatch> = (1..=5).map(|s| batch("exporter-a", s, 300)).collect();
    let (acks, error) = ingest(&mut client, batches.clone()).await;
    assert!(error.is_none(), "{error:?}");
    let got: Vec<(u64, bool)> = acks.iter().map(|a| (a.sequence, a.duplicate)).collect();
    assert_eq!(got, (1..=5).map(|s| (s, false)).collect::<Vec<_>>());
    assert!(acks.iter().all(|a| a.exporter_id == "exporter-a"));

    // A re-send is acknowledged as a duplicate and not stored again; a new batch on the same stream is stored.
    let (acks, error) = ingest(
        &mut client,
        vec![batches[2].clone(), batch("exporter-a", 6, 10)],
    )
    .await;
    assert!(error.is_none(), "{error:?}");
    let got: Vec<(u64, bool)> = acks.iter().map(|a| (a.sequence, a.duplicate)).collect();
    assert_eq!(got, vec![(3, true), (6, false)]);

    // Everything, in storage order, in pages of at most 1000.
    let pages = query(&mut client, all_of("vpc-flow", "flows"))
        .await
        .unwrap();
    assert!(pages.iter().all(|p| p.records.len() <= 1000));
    assert_eq!(pages.len(), 2);
    let stored: Vec<Record> = pages.into_iter().flat_map(|p| p.records).collect();
    let expected: Vec<Record> = batches
        .iter()
        .chain([&batch("exporter-a", 6, 10)])
        .flat_map(|b| b.records.clone())
        .collect();
    assert_eq!(stored, expected);

    // Filters, each checked against the same filter applied here.
    let filtered = |req: QueryRequest| {
        let mut client = client.clone();
        async move {
            query(&mut client, req)
                .await
                .unwrap()
                .into_iter()
                .flat_map(|p| p.records)
                .collect::<Vec<_>>()
        }
    };
    let base = all_of("vpc-flow", "flows");
    let want = |f: &dyn Fn(&Record) -> bool| {
        expected
            .iter()
            .filter(|r| f(r))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        filtered(QueryRequest {
            eni_id: Some("eni-1".into()),
            ..base.clone()
        })
        .await,
        want(&|r| r.eni_id == "eni-1")
    );
    assert_eq!(
        filtered(QueryRequest {
            action: Action::Reject as i32,
            ..base.clone()
        })
        .await,
        want(&|r| r.action == Action::Reject as i32)
    );
    assert_eq!(
        filtered(QueryRequest {
            from: Some(1_700_000_060),
            to: Some(1_700_000_180),
            ..base.clone()
        })
        .await,
        want(&|r| (1_700_000_060..1_700_000_180).contains(&r.start))
    );
    assert_eq!(
        filtered(QueryRequest {
            limit: 7,
            ..base.clone()
        })
        .await,
        expected[..7].to_vec()
    );

    // Errors.
    let status = query(&mut client, all_of("vpc-flow", "nothing-here"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = query(&mut client, all_of("Bad_Project", "flows"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut bad = batch("exporter-b", 1, 1);
    bad.project = "-bad-".into();
    let (acks, error) = ingest(&mut client, vec![batch("exporter-b", 2, 1), bad]).await;
    assert_eq!(
        acks.len(),
        1,
        "the good batch before the bad one is acknowledged"
    );
    let status = error.expect("a bad project name ends the stream");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("-bad-"), "{status:?}");
    let (acks, error) = ingest(&mut client, vec![batch("exporter-b", 3, 0)]).await;
    assert!(acks.is_empty());
    assert_eq!(error.map(|s| s.code()), Some(Code::InvalidArgument));

    // The CLI runners against the real server.
    let source = SourceArgs {
        collector: collector.address.clone(),
        project: "vpc-flow".into(),
        logstore: "flows".into(),
    };
    let mut out = Vec::new();
    let args = QueryArgs {
        source: source.clone(),
        filter: FilterArgs {
            eni_id: Some("eni-2".into()),
            ..FilterArgs::default()
        },
        limit: Some(3),
        json: true,
    };
    cli::write_query(&args, &mut out).await.unwrap();
    let lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let want_lines: Vec<String> = want(&|r| r.eni_id == "eni-2")
        .iter()
        .take(3)
        .map(flowlog_collector::record_json)
        .collect();
    assert_eq!(lines, want_lines);

    let mut out = Vec::new();
    cli::write_query(
        &QueryArgs {
            json: false,
            limit: Some(2),
            ..args
        },
        &mut out,
    )
    .await
    .unwrap();
    let table = String::from_utf8(out).unwrap();
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.starts_with("START (UTC)"), "{table}");
    assert!(
        table.contains("2023-11-14 22:13:20") && table.contains("eni-2"),
        "{table}"
    );

    let mut out = Vec::new();
    let top = TopArgs {
        source,
        filter: FilterArgs::default(),
        limit: 2,
        by: TopBy::Packets,
    };
    cli::write_top(&top, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("top 2 flows by packets in vpc-flow/flows"),
        "{text}"
    );
    // Record index i is one 5-tuple across batches, its packets the batch sequence and its bytes i. Index 0 is in
    // batches 1-6 and exporter-b's batch 2: 23 packets; indexes 1-9 are in batches 1-6: 21 packets, ties broken
    // by bytes (6 * i).
    let cells = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cells(lines[1]),
        [
            "#", "SRCADDR", "SPORT", "DSTADDR", "DPORT", "PROTO", "PACKETS", "BYTES"
        ]
    );
    assert_eq!(
        cells(lines[2]),
        [
            "1", "10.0.0.0", "40000", "10.0.1.1", "443", "TCP", "23", "0"
        ]
    );
    assert_eq!(
        cells(lines[3]),
        [
            "2", "10.0.0.9", "40009", "10.0.1.1", "443", "TCP", "21", "54"
        ]
    );

    // Clean shutdown on SIGTERM.
    let log_before = collector.log();
    assert!(log_before.contains("collector serving"), "{log_before}");
    let status = collector.sigterm();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_every_acknowledged_batch_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small-segments.toml");
    std::fs::write(
        &config,
        "segment-bytes = 65536\nmax-in-flight-batches = 16\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let collector = Collector::start_with(&data, Some(&config));
    let mut client = collector.client().await;

    const BATCHES: u64 = 400;
    const RECORDS: u64 = 40;
    let batches: Vec<IngestBatch> = (1..=BATCHES)
        .map(|s| batch("exporter-k", s, RECORDS))
        .collect();

    // Stream every batch; SIGKILL the collector as soon as 150 acknowledgements are in, with more in flight.
    let (tx, rx) = mpsc::channel(BATCHES as usize);
    for b in batches.clone() {
        tx.send(b).await.unwrap();
    }
    let mut stream = client
        .ingest(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut acked = Vec::new();
    while acked.len() < 150 {
        let ack = stream.message().await.unwrap().expect("stream ended early");
        assert!(!ack.duplicate);
        acked.push(ack.sequence);
    }
    collector.kill_9();
    drop(tx);
    // Acknowledgements already on the wire count too: they were sent, so they were durable.
    while let Ok(Some(ack)) = stream.message().await {
        acked.push(ack.sequence);
    }
    assert_eq!(
        acked,
        (1..=acked.len() as u64).collect::<Vec<_>>(),
        "acks come in order"
    );

    let collector = Collector::start_with(&data, Some(&config));
    let mut client = collector.client().await;
    let stored = records(&mut client).await;
    let seen = census(&stored);
    for sequence in &acked {
        let batch = &seen[sequence];
        assert_eq!(batch.len(), RECORDS as usize, "batch {sequence} is whole");
        assert!(
            batch.values().all(|&n| n == 1),
            "batch {sequence} stored once"
        );
    }
    assert!(
        seen.values()
            .all(|b| b.len() == RECORDS as usize && b.values().all(|&n| n == 1))
    );

    // The exporter re-sends what was not acknowledged (here: everything); all ends up stored exactly once.
    let (acks, error) = ingest(&mut client, batches).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(acks.len(), BATCHES as usize);
    for ack in &acks {
        if acked.contains(&ack.sequence) {
            assert!(
                ack.duplicate,
                "batch {} was acknowledged before the crash",
                ack.sequence
            );
        }
    }
    let stored = records(&mut client).await;
    assert_eq!(stored.len(), (BATCHES * RECORDS) as usize);
    let seen = census(&stored);
    assert_eq!(seen.len(), BATCHES as usize);
    assert!(
        seen.values()
            .all(|b| b.len() == RECORDS as usize && b.values().all(|&n| n == 1))
    );
    let segments = std::fs::read_dir(data.join("vpc-flow/flows"))
        .unwrap()
        .count();
    assert!(segments > 1, "small segments must have rolled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_after_a_crash_is_truncated_and_appends_resume() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(dir.path());
    let mut client = collector.client().await;
    let (acks, error) = ingest(
        &mut client,
        (1..=3).map(|s| batch("exporter-t", s, 5)).collect(),
    )
    .await;
    assert!(error.is_none() && acks.len() == 3, "{acks:?} {error:?}");
    collector.kill_9();

    // A crash in the middle of a write: half a frame at the end of the newest segment.
    let segment = newest_segment(&dir.path().join("vpc-flow/flows"));
    let clean_len = std::fs::metadata(&segment).unwrap().len();
    let bytes = std::fs::read(&segment).unwrap();
    let mut torn = bytes.clone();
    // Less than one frame (a frame here is ~500 bytes).
    torn.extend_from_slice(&bytes[..100]);
    std::fs::write(&segment, &torn).unwrap();

    let collector = Collector::start(dir.path());
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), clean_len);
    let log = collector.log();
    assert!(log.contains("torn tail truncated"), "{log}");
    let mut client = collector.client().await;
    let (acks, error) = ingest(
        &mut client,
        vec![batch("exporter-t", 4, 5), batch("exporter-t", 2, 5)],
    )
    .await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        acks.iter().map(|a| a.duplicate).collect::<Vec<_>>(),
        vec![false, true]
    );
    let stored = records(&mut client).await;
    let sequences: Vec<u64> = stored.iter().map(|r| r.packets).collect();
    assert_eq!(
        sequences,
        [1, 2, 3, 4]
            .iter()
            .flat_map(|&s| [s; 5])
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_sample_comes_back_byte_for_byte() {
    let sample =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/sample/sample.expected-60s.jsonl");
    let text = std::fs::read_to_string(&sample).unwrap();
    let parsed: Vec<Record> = text.lines().map(|l| parse_record(l).unwrap()).collect();

    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(dir.path());
    let mut client = collector.client().await;
    let batches: Vec<IngestBatch> = parsed
        .chunks(256)
        .enumerate()
        .map(|(i, chunk)| IngestBatch {
            exporter_id: "golden".into(),
            sequence: i as u64 + 1,
            project: "sample-project".into(),
            logstore: "sample_flows".into(),
            records: chunk.to_vec(),
        })
        .collect();
    let (acks, error) = ingest(&mut client, batches).await;
    assert!(
        error.is_none() && acks.len() == parsed.len().div_ceil(256),
        "{error:?}"
    );

    let args = QueryArgs {
        source: SourceArgs {
            collector: collector.address.trim_start_matches("http://").to_owned(),
            project: "sample-project".into(),
            logstore: "sample_flows".into(),
        },
        filter: FilterArgs::default(),
        limit: None,
        json: true,
    };
    let mut out = Vec::new();
    cli::write_query(&args, &mut out).await.unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), text);
}

fn newest_segment(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.pop().expect("a segment")
}

/// An independent reading of SPEC.md's JSON record, for the golden comparison.
fn parse_record(line: &str) -> anyhow::Result<Record> {
    let v: serde_json::Value = serde_json::from_str(line)?;
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let number = |k: &str| v[k].as_u64();
    let address = |k: &str| -> anyhow::Result<Vec<u8>> {
        Ok(match v[k].as_str() {
            Some(a) => match a.parse::<IpAddr>().with_context(|| format!("{k} {a}"))? {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            },
            None => Vec::new(),
        })
    };
    Ok(Record {
        version: number("version").context("version")? as u32,
        account_id: text("account-id"),
        vpc_id: text("vpc-id"),
        vswitch_id: text("vswitch-id"),
        vm_id: text("vm-id"),
        eni_id: text("eni-id"),
        srcaddr: address("srcaddr")?,
        dstaddr: address("dstaddr")?,
        srcport: number("srcport").map(|n| n as u32),
        dstport: number("dstport").map(|n| n as u32),
        protocol: number("protocol").map(|n| n as u32),
        direction: match v["direction"].as_str() {
            Some("in") => Direction::In,
            Some("out") => Direction::Out,
            _ => Direction::Unspecified,
        } as i32,
        packets: number("packets").context("packets")?,
        bytes: number("bytes").context("bytes")?,
        start: v["start"].as_i64().context("start")?,
        end: v["end"].as_i64().context("end")?,
        log_status: match v["log-status"].as_str() {
            Some("OK") => LogStatus::Ok,
            Some("NODATA") => LogStatus::Nodata,
            Some("SKIPDATA") => LogStatus::Skipdata,
            _ => LogStatus::Unspecified,
        } as i32,
        action: match v["action"].as_str() {
            Some("ACCEPT") => Action::Accept,
            Some("REJECT") => Action::Reject,
            _ => Action::Unspecified,
        } as i32,
        tcp_flags: number("tcp-flags").context("tcp-flags")? as u32,
        region: text("region"),
    })
}
