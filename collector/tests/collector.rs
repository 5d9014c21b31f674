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
    /// The web view's address (`http://...`), when started with it.
    web: Option<String>,
    stderr: Arc<Mutex<String>>,
    more_stdout: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    fn start(data_dir: &Path) -> Collector {
        Collector::start_with(data_dir, None)
    }

    fn start_with(data_dir: &Path, config: Option<&Path>) -> Collector {
        Collector::start_full(data_dir, config, false)
    }

    fn start_full(data_dir: &Path, config: Option<&Path>, web: bool) -> Collector {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flowlog-collector"));
        command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        if web {
            command.args(["--http", "127.0.0.1:0"]);
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
            if web {
                let second = lines.next();
                let _ = tx.send(second);
            }
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
        let web = web.then(|| {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("collector did not announce its web address in time")
                .expect("collector closed stdout")
                .expect("read stdout");
            let address = line
                .strip_prefix("web on ")
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            format!("http://{address}")
        });
        Collector {
            child,
            address: format!("http://{address}"),
            web,
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
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
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

/// The start of the hour holding 2023-11-14 22:13:20 UTC.
const HOUR: i64 = 1_700_000_000 - 1_700_000_000 % 3600;

/// A record of the analysis data set: its index decides every field. Records spread over three hours; one in 50
/// is NODATA, one in 6 REJECT.
fn flow(i: u64) -> Record {
    let start = HOUR + 3600 * (i % 3) as i64 + 60 * (i % 11) as i64;
    if i % 50 == 49 {
        return Record {
            version: 1,
            account_id: "100000000000".into(),
            vpc_id: "vpc-0".into(),
            vswitch_id: "vsw-0".into(),
            vm_id: format!("i-{}", i % 4),
            eni_id: format!("eni-{}", i % 4),
            start,
            end: start + 60,
            log_status: LogStatus::Nodata as i32,
            ..Record::default()
        };
    }
    Record {
        version: 1,
        account_id: "100000000000".into(),
        vpc_id: "vpc-0".into(),
        vswitch_id: "vsw-0".into(),
        vm_id: format!("i-{}", i % 4),
        eni_id: format!("eni-{}", i % 4),
        srcaddr: vec![10, 0, (i % 7) as u8, 1],
        dstaddr: vec![10, 1, 0, (i % 5) as u8],
        srcport: Some(1024 + (i % 100) as u32),
        dstport: Some([443, 80, 22][(i % 3) as usize]),
        protocol: Some(if i.is_multiple_of(10) { 17 } else { 6 }),
        direction: if i.is_multiple_of(2) {
            Direction::Out
        } else {
            Direction::In
        } as i32,
        packets: 1 + i % 13,
        bytes: 100 * (1 + i % 13) + i % 7,
        start,
        end: start + 60,
        log_status: LogStatus::Ok as i32,
        action: if i.is_multiple_of(6) {
            Action::Reject
        } else {
            Action::Accept
        } as i32,
        tcp_flags: 18,
        region: String::new(),
    }
}

/// Per source address: bytes, packets, records.
type TalkerSums = (i64, i64, i64);

fn flows_batch(exporter: &str, sequence: u64, range: std::ops::Range<u64>) -> IngestBatch {
    IngestBatch {
        exporter_id: exporter.into(),
        sequence,
        project: "vpc-flow".into(),
        logstore: "flows".into(),
        records: range.map(flow).collect(),
    }
}

/// Runs a `flowlog` subcommand of the collector, as the CLI parses it, and returns its stdout.
async fn flowlog(args: &[&str]) -> anyhow::Result<String> {
    use clap::Parser;
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: cli::CollectorCommand,
    }
    let parsed = Cli::try_parse_from(std::iter::once("flowlog").chain(args.iter().copied()))?;
    let mut out = Vec::new();
    cli::execute(&parsed.command, &mut out).await?;
    Ok(String::from_utf8(out)?)
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The top talkers of `records` as the analysis defines them, computed here independently.
fn expected_talkers(records: &[Record], limit: usize) -> Vec<serde_json::Value> {
    let mut by_source: HashMap<String, TalkerSums> = HashMap::new();
    for r in records
        .iter()
        .filter(|r| r.log_status == LogStatus::Ok as i32)
    {
        let source = ip_text(&r.srcaddr);
        let entry = by_source.entry(source).or_default();
        entry.0 += r.bytes as i64;
        entry.1 += r.packets as i64;
        entry.2 += 1;
    }
    let mut rows: Vec<(String, TalkerSums)> = by_source.into_iter().collect();
    rows.sort_by(|a, b| {
        (b.1.0, b.1.1)
            .cmp(&(a.1.0, a.1.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    rows.into_iter()
        .take(limit)
        .map(|(source, (bytes, packets, records))| {
            serde_json::json!({"srcaddr": source, "bytes": bytes, "packets": packets, "records": records})
        })
        .collect()
}

fn ip_text(bytes: &[u8]) -> String {
    flowlog_collector::render::address(bytes)
        .map(|a| a.to_string())
        .unwrap_or_default()
}

async fn wait_for_parquet(collector: &Collector, records: u64) {
    for _ in 0..300 {
        let listed = flowlog(&[
            "list-logstores",
            "--collector",
            &collector.address,
            "--project",
            "vpc-flow",
        ])
        .await
        .unwrap();
        let converted = listed
            .lines()
            .find(|l| l.contains(" flows "))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|n| n.parse::<u64>().ok());
        if converted == Some(records) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "records not converted to parquet in 30 s:\n{}",
        collector.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_sql_analyses_and_parquet_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fast-conversion.toml");
    std::fs::write(
        &config,
        "maintenance-interval-seconds = 1\nconvert-after-seconds = 1\nauto-create-logstores = false\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let collector = Collector::start_with(&data, Some(&config));
    let addr = collector.address.clone();
    let a = addr.as_str();

    // Projects and logstores through the CLI.
    let out = flowlog(&[
        "create-project",
        "--collector",
        a,
        "vpc-flow",
        "--description",
        "team a",
    ])
    .await
    .unwrap();
    assert_eq!(out, "created project vpc-flow\n");
    let err = flowlog(&["create-project", "--collector", a, "vpc-flow"])
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    let err = flowlog(&[
        "create-logstore",
        "--collector",
        a,
        "--project",
        "nope",
        "flows",
    ])
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("does not exist"), "{err:#}");
    let out = flowlog(&[
        "create-logstore",
        "--collector",
        a,
        "--project",
        "vpc-flow",
        "flows",
        "--retention",
        "0",
    ])
    .await
    .unwrap();
    assert_eq!(out, "created logstore vpc-flow/flows (retention forever)\n");
    flowlog(&[
        "create-logstore",
        "--collector",
        a,
        "--project",
        "vpc-flow",
        "scratch",
        "--retention",
        "36h",
    ])
    .await
    .unwrap();
    let out = flowlog(&["list-projects", "--collector", a]).await.unwrap();
    assert!(
        out.lines().nth(1).unwrap().starts_with("vpc-flow") && out.contains("team a"),
        "{out}"
    );
    let out = flowlog(&["list-logstores", "--collector", a])
        .await
        .unwrap();
    assert!(out.contains("scratch") && out.contains("36h"), "{out}");

    // Without auto-create, a batch for an unknown logstore is refused as NotFound.
    let mut client = collector.client().await;
    let mut stray = flows_batch("exporter-e", 1, 0..10);
    stray.logstore = "unknown".into();
    let (acks, error) = ingest(&mut client, vec![stray]).await;
    assert!(acks.is_empty());
    assert_eq!(error.map(|s| s.code()), Some(Code::NotFound));

    // 3000 records in 10 batches; converted to parquet; then 300 more that stay in the log for a moment.
    let batches: Vec<IngestBatch> = (0..10)
        .map(|b| flows_batch("exporter-e", b + 1, b * 300..(b + 1) * 300))
        .collect();
    let (acks, error) = ingest(&mut client, batches).await;
    assert!(error.is_none() && acks.len() == 10, "{error:?}");
    wait_for_parquet(&collector, 3000).await;
    let (acks, error) = ingest(&mut client, vec![flows_batch("exporter-e", 11, 3000..3300)]).await;
    assert!(error.is_none() && acks.len() == 1, "{error:?}");
    let all: Vec<Record> = (0..3300).map(flow).collect();

    // SQL sees parquet and log alike, each record once.
    let out = flowlog(&[
        "sql",
        "--collector",
        a,
        "--project",
        "vpc-flow",
        "--logstore",
        "flows",
        "--format",
        "json",
        "SELECT COUNT(*) AS n, SUM(bytes) AS b, COUNT(DISTINCT eni_id) AS enis FROM flows",
    ])
    .await
    .unwrap();
    let want_bytes: u64 = all.iter().map(|r| r.bytes).sum();
    assert_eq!(
        json_lines(&out),
        vec![serde_json::json!({"n": 3300, "b": want_bytes, "enis": 4})]
    );
    let (from, to) = (HOUR + 3600, HOUR + 3600 + 300);
    let out = flowlog(&[
        "sql",
        "--collector",
        a,
        "--project",
        "vpc-flow",
        "--logstore",
        "flows",
        "--format",
        "csv",
        "--from",
        &from.to_string(),
        "--to",
        &to.to_string(),
        "SELECT COUNT(*) AS n FROM flows WHERE action = 'REJECT'",
    ])
    .await
    .unwrap();
    let want = all
        .iter()
        .filter(|r| (from..to).contains(&r.start) && r.action == Action::Reject as i32)
        .count();
    assert_eq!(out, format!("n\n{want}\n"));

    // The analyses, each against the same computation done here.
    let source = [
        "--collector",
        a,
        "--project",
        "vpc-flow",
        "--logstore",
        "flows",
    ];
    let run = |extra: &'static [&'static str]| {
        let mut args: Vec<&str> = extra[..1].to_vec();
        args.extend(source);
        args.extend(&extra[1..]);
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            json_lines(&flowlog(&args).await.unwrap())
        }
    };
    assert_eq!(
        run(&["talkers", "-n", "5", "--format", "json"]).await,
        expected_talkers(&all, 5)
    );
    let eni1: Vec<Record> = all
        .iter()
        .filter(|r| r.eni_id == "eni-1")
        .cloned()
        .collect();
    assert_eq!(
        run(&["talkers", "--eni", "eni-1", "--format", "json"]).await,
        expected_talkers(&eni1, 10)
    );
    let traffic = run(&[
        "traffic", "--step", "3600", "--action", "REJECT", "--format", "json",
    ])
    .await;
    let mut want_traffic: Vec<serde_json::Value> = Vec::new();
    for h in 0..3 {
        let in_hour: Vec<&Record> = all
            .iter()
            .filter(|r| r.log_status == LogStatus::Ok as i32 && r.action == Action::Reject as i32)
            .filter(|r| r.start - r.start % 3600 == HOUR + 3600 * h)
            .collect();
        if in_hour.is_empty() {
            continue;
        }
        let bytes: u64 = in_hour.iter().map(|r| r.bytes).sum();
        let packets: u64 = in_hour.iter().map(|r| r.packets).sum();
        want_traffic.push(
            serde_json::json!({"time": HOUR + 3600 * h, "bytes": bytes, "packets": packets,
            "rejected_packets": packets, "records": in_hour.len()}),
        );
    }
    assert_eq!(traffic, want_traffic);
    let rejected = run(&["rejected", "--port", "443", "-n", "3", "--format", "json"]).await;
    assert_eq!(rejected.len(), 3);
    for row in &rejected {
        assert_eq!(row["dstport"], 443, "{row}");
        let matching: Vec<&Record> = all
            .iter()
            .filter(|r| r.action == Action::Reject as i32 && r.dstport == Some(443))
            .filter(|r| {
                ip_text(&r.srcaddr) == row["srcaddr"] && ip_text(&r.dstaddr) == row["dstaddr"]
            })
            .filter(|r| Some(r.protocol.unwrap() as i64) == row["protocol"].as_i64())
            .collect();
        let packets: u64 = matching.iter().map(|r| r.packets).sum();
        assert_eq!(row["packets"], packets, "{row}");
    }
    let enis = run(&["eni-traffic", "--format", "json"]).await;
    assert_eq!(enis.len(), 4);
    for row in &enis {
        let eni = row["eni_id"].as_str().unwrap();
        let of = |dir: Direction| -> u64 {
            all.iter()
                .filter(|r| r.eni_id == eni && r.direction == dir as i32 && r.log_status == 1)
                .map(|r| r.bytes)
                .sum()
        };
        assert_eq!(
            (row["bytes_in"].clone(), row["bytes_out"].clone()),
            (
                serde_json::json!(of(Direction::In)),
                serde_json::json!(of(Direction::Out))
            ),
            "{row}"
        );
    }
    let table = flowlog(&[
        "talkers",
        "--collector",
        a,
        "--project",
        "vpc-flow",
        "--logstore",
        "flows",
        "-n",
        "2",
    ])
    .await
    .unwrap();
    assert!(
        table.contains("| srcaddr") && table.lines().count() == 6,
        "{table}"
    );

    // Records read back one by one: each exactly once, parquet and log alike.
    let stored = records(&mut client).await;
    assert_eq!(stored.len(), 3300);
    let mut got: Vec<(String, i64, u64, u64)> = stored
        .iter()
        .map(|r| (r.eni_id.clone(), r.start, r.packets, r.bytes))
        .collect();
    let mut want_records: Vec<(String, i64, u64, u64)> = all
        .iter()
        .map(|r| (r.eni_id.clone(), r.start, r.packets, r.bytes))
        .collect();
    got.sort();
    want_records.sort();
    assert_eq!(got, want_records);

    // Bad SQL is refused, never run: DDL could read the server's files.
    for (sql, code) in [
        (
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            Code::InvalidArgument,
        ),
        ("SELECT * FROM nothing_here", Code::InvalidArgument),
        ("SELEC 1", Code::InvalidArgument),
        (
            "SET datafusion.execution.batch_size = 1",
            Code::InvalidArgument,
        ),
    ] {
        let status = client
            .sql(flowlog_proto::v1::SqlRequest {
                project: "vpc-flow".into(),
                logstore: "flows".into(),
                sql: sql.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{sql}: {status:?}");
    }
    // Row limits are honoured and said.
    let (batches, truncated) = cli::sql::fetch(
        &SourceArgs {
            collector: a.into(),
            project: "vpc-flow".into(),
            logstore: "flows".into(),
        },
        &cli::sql::RangeArgs::default(),
        "SELECT * FROM flows",
        7,
    )
    .await
    .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 7);
    assert!(truncated);

    // The files users read with their own tools: hive-style partitions, documented columns.
    let hour_dir = data.join("vpc-flow/flows/date=2023-11-14/hour=22");
    let files: Vec<PathBuf> = std::fs::read_dir(&hour_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty() && files.iter().all(|f| f.extension().unwrap() == "parquet"));
    let reader =
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&files[0]).unwrap(),
        )
        .unwrap();
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, flowlog_collector::store::columnar::COLUMNS);

    // Retention change, deletes.
    let out = flowlog(&[
        "update-logstore",
        "--collector",
        a,
        "--project",
        "vpc-flow",
        "scratch",
        "--retention",
        "7d",
    ])
    .await
    .unwrap();
    assert_eq!(out, "logstore vpc-flow/scratch: retention 7d\n");
    flowlog(&[
        "delete-logstore",
        "--collector",
        a,
        "--project",
        "vpc-flow",
        "scratch",
    ])
    .await
    .unwrap();
    assert!(!data.join("vpc-flow/scratch").exists());
    flowlog(&["delete-project", "--collector", a, "vpc-flow"])
        .await
        .unwrap();
    assert!(!data.join("vpc-flow").exists());
    let status = query(&mut client, all_of("vpc-flow", "flows"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(collector.sigterm().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_and_conversion_keeps_every_acknowledged_batch_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("busy-conversion.toml");
    // Small segments converted as soon as they close, every 200 ms: kills land in the middle of conversions.
    std::fs::write(
        &config,
        "segment-bytes = 32768\nconvert-bytes = 1\nconvert-after-seconds = 0\n\
         maintenance-interval-seconds = 1\ncompact-after-seconds = 0\nmax-in-flight-batches = 16\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    const BATCHES: u64 = 1500;
    const RECORDS: u64 = 40;
    let batches: Vec<IngestBatch> = (1..=BATCHES)
        .map(|s| batch("exporter-c", s, RECORDS))
        .collect();
    let mut acked_ever: Vec<u64> = Vec::new();

    for (round, kill_after) in [300usize, 700, 1100].into_iter().enumerate() {
        let collector = Collector::start_with(&data, Some(&config));
        let mut client = collector.client().await;
        // The exporter re-sends everything not acknowledged; here, simply everything.
        let (tx, rx) = mpsc::channel(BATCHES as usize);
        for b in batches.clone() {
            tx.send(b).await.unwrap();
        }
        let mut stream = client
            .ingest(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let mut acks = 0;
        while acks < kill_after {
            let ack = stream.message().await.unwrap().expect("stream ended early");
            if acked_ever.contains(&ack.sequence) {
                assert!(
                    ack.duplicate,
                    "round {round}: batch {} was acknowledged before",
                    ack.sequence
                );
            } else {
                acked_ever.push(ack.sequence);
            }
            acks += 1;
            if acks % 100 == 0 {
                // Let conversions run between bursts.
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
        let log = collector.log();
        collector.kill_9();
        drop(tx);
        while let Ok(Some(ack)) = stream.message().await {
            if !acked_ever.contains(&ack.sequence) {
                acked_ever.push(ack.sequence);
            }
        }
        assert!(
            round == 0 || log.contains("log converted to parquet"),
            "round {round}: conversions ran before the kill:\n{log}"
        );

        // After the crash: every acknowledged batch is there, whole and once; nothing else is doubled.
        let collector = Collector::start_with(&data, Some(&config));
        let mut client = collector.client().await;
        let seen = census(&records(&mut client).await);
        for sequence in &acked_ever {
            let stored = seen
                .get(sequence)
                .unwrap_or_else(|| panic!("round {round}: acknowledged batch {sequence} lost"));
            assert_eq!(
                stored.len(),
                RECORDS as usize,
                "round {round}: batch {sequence} whole"
            );
        }
        assert!(
            seen.values()
                .all(|b| b.len() == RECORDS as usize && b.values().all(|&n| n == 1)),
            "round {round}: a record stored twice"
        );
        collector.kill_9();
    }

    // Finally everything is sent and stored exactly once, partly in parquet.
    let collector = Collector::start_with(&data, Some(&config));
    let mut client = collector.client().await;
    let (acks, error) = ingest(&mut client, batches).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(acks.len(), BATCHES as usize);
    for ack in &acks {
        assert_eq!(
            ack.duplicate,
            acked_ever.contains(&ack.sequence),
            "batch {}",
            ack.sequence
        );
    }
    let seen = census(&records(&mut client).await);
    assert_eq!(seen.len(), BATCHES as usize);
    assert!(
        seen.values()
            .all(|b| b.len() == RECORDS as usize && b.values().all(|&n| n == 1))
    );
    let parquet = std::fs::read_dir(data.join("vpc-flow/flows"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("date=")
        })
        .count();
    assert!(parquet > 0, "conversions happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_storage_files_are_reported_and_spoil_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fast.toml");
    std::fs::write(
        &config,
        "maintenance-interval-seconds = 1\nconvert-after-seconds = 0\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let collector = Collector::start_with(&data, Some(&config));
    let mut client = collector.client().await;
    let mut batches = Vec::new();
    for s in 0..6 {
        let mut b = flows_batch("exporter-d", s + 1, s * 100..(s + 1) * 100);
        if s % 2 == 1 {
            b.logstore = "other".into();
        }
        batches.push(b);
    }
    let (acks, error) = ingest(&mut client, batches).await;
    assert!(error.is_none() && acks.len() == 6, "{error:?}");
    wait_for_parquet(&collector, 300).await;
    assert!(collector.sigterm().success());

    // Truncate one parquet file of `flows`, garble the manifest of `other`.
    let flows = data.join("vpc-flow/flows");
    let victim = std::fs::read_dir(flows.join("date=2023-11-15/hour=00"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let victim_rows =
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&victim).unwrap(),
        )
        .unwrap()
        .metadata()
        .file_metadata()
        .num_rows();
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() - 100]).unwrap();
    let manifest = data.join("vpc-flow/other/MANIFEST");
    let mut garbled = std::fs::read(&manifest).unwrap();
    let middle = garbled.len() / 2;
    garbled[middle] ^= 0x20;
    std::fs::write(&manifest, &garbled).unwrap();

    let collector = Collector::start_with(&data, Some(&config));
    let a = collector.address.clone();
    let listed = flowlog(&["list-logstores", "--collector", &a])
        .await
        .unwrap();
    assert!(
        listed.contains("quarantine") && listed.contains("MANIFEST"),
        "{listed}"
    );
    // `flows` still answers, without the lost hour; `other` is unavailable, not crashed.
    let out = flowlog(&[
        "sql",
        "--collector",
        &a,
        "--project",
        "vpc-flow",
        "--logstore",
        "flows",
        "--format",
        "csv",
        "SELECT COUNT(*) AS n FROM flows",
    ])
    .await
    .unwrap();
    assert_eq!(out, format!("n\n{}\n", 300 - victim_rows));
    let log = collector.log();
    assert!(
        log.contains("damaged parquet file") && log.contains("out of service"),
        "{log}"
    );
    let mut client = collector.client().await;
    let status = query(&mut client, all_of("vpc-flow", "other"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("MANIFEST"), "{status:?}");
    // New batches for the healthy logstore are taken.
    let (acks, error) = ingest(&mut client, vec![flows_batch("exporter-d", 7, 600..610)]).await;
    assert!(error.is_none() && acks.len() == 1, "{error:?}");
    assert!(collector.sigterm().success());
}

/// A chromedriver process on a free port, stopped (by its own pid) on drop.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver not found: install Debian's chromium and chromium-driver (scripts/setup)");
        // Dropping the driver kills and reaps the process, whatever happens below.
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return driver;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("chromedriver did not listen within 10 s");
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the page says it is ready (after the refresh that the last action started).
async fn page_ready(browser: &fantoccini::Client) {
    for _ in 0..200 {
        let state = browser
            .execute(
                "return document.getElementById('status').dataset.state;",
                vec![],
            )
            .await
            .unwrap();
        match state.as_str() {
            Some("ready") => return,
            Some("error") => {
                let text = browser
                    .execute(
                        "return document.getElementById('status').textContent;",
                        vec![],
                    )
                    .await
                    .unwrap();
                panic!("the page shows an error: {text}");
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("the page did not become ready in 20 s");
}

/// The text of every cell of a table's body, row by row.
async fn table_cells(browser: &fantoccini::Client, id: &str) -> Vec<Vec<String>> {
    let script = format!(
        "return Array.from(document.querySelectorAll('#{id} tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent));"
    );
    serde_json::from_value(browser.execute(&script, vec![]).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_view_filters_in_headless_chromium_match_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start_full(&dir.path().join("data"), None, true);
    let web = collector.web.clone().expect("web address");
    let mut client = collector.client().await;
    let batches: Vec<IngestBatch> = (0..4)
        .map(|b| flows_batch("exporter-w", b + 1, b * 250..(b + 1) * 250))
        .collect();
    let (acks, error) = ingest(&mut client, batches).await;
    assert!(error.is_none() && acks.len() == 4, "{error:?}");
    let all: Vec<Record> = (0..1000).map(flow).collect();

    let driver = ChromeDriver::start();
    let profile = tempfile::tempdir().unwrap();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.path().display())],
        }),
    );
    let browser =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .expect("start a headless chromium session");

    let outcome = async {
        browser
            .goto(&format!("{web}/?project=vpc-flow&logstore=flows"))
            .await
            .unwrap();
        page_ready(&browser).await;
        // Unfiltered: the talkers shown are the query's.
        let talkers = table_cells(&browser, "talkers").await;
        let want = expected_talkers(&all, 10);
        assert_eq!(talkers.len(), want.len());
        for (row, want) in talkers.iter().zip(&want) {
            assert_eq!(row[1], want["srcaddr"].as_str().unwrap());
            assert_eq!(row[2].replace(',', ""), want["bytes"].to_string());
        }

        // Apply a filter the way a person does: type an ENI, pick REJECT, press Apply.
        browser
            .execute(
                "document.getElementById('status').dataset.state = 'stale';",
                vec![],
            )
            .await
            .unwrap();
        let eni = browser.find(fantoccini::Locator::Id("eni")).await.unwrap();
        eni.send_keys("eni-2").await.unwrap();
        let action = browser
            .find(fantoccini::Locator::Id("action"))
            .await
            .unwrap();
        action.select_by_value("REJECT").await.unwrap();
        browser
            .find(fantoccini::Locator::Id("apply"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        page_ready(&browser).await;
        let filtered: Vec<Record> = all
            .iter()
            .filter(|r| r.eni_id == "eni-2" && r.action == Action::Reject as i32)
            .cloned()
            .collect();
        assert!(!filtered.is_empty());
        let talkers = table_cells(&browser, "talkers").await;
        let want = expected_talkers(&filtered, 10);
        let shown: Vec<(String, String, String)> = talkers
            .iter()
            .map(|r| (r[1].clone(), r[2].replace(',', ""), r[3].replace(',', "")))
            .collect();
        let wanted: Vec<(String, String, String)> = want
            .iter()
            .map(|w| {
                (
                    w["srcaddr"].as_str().unwrap().to_owned(),
                    w["bytes"].to_string(),
                    w["packets"].to_string(),
                )
            })
            .collect();
        assert_eq!(shown, wanted);
        // The rejected flows and the chart agree with the same filter, computed by a query.
        let (batches, _) = cli::sql::fetch(
            &SourceArgs {
                collector: collector.address.clone(),
                project: "vpc-flow".into(),
                logstore: "flows".into(),
            },
            &cli::sql::RangeArgs::default(),
            "SELECT COUNT(DISTINCT start - start % 60) AS steps FROM flows \
             WHERE eni_id = 'eni-2' AND action = 'REJECT' AND log_status = 'OK'",
            0,
        )
        .await
        .unwrap();
        let steps = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        let bars = browser
            .find_all(fantoccini::Locator::Css("#traffic-chart rect.bar"))
            .await
            .unwrap();
        assert_eq!(bars.len() as i64, steps);
        let rejected = table_cells(&browser, "rejected").await;
        assert!(!rejected.is_empty() && rejected.iter().all(|r| r[0].starts_with("10.0.")));
        let enis = table_cells(&browser, "enis").await;
        assert_eq!(enis.len(), 1);
        assert_eq!(enis[0][0], "eni-2");
        // FLOWLOG_SCREENSHOT=FILE.png keeps a picture of the filtered view, for people to look at.
        if let Ok(path) = std::env::var("FLOWLOG_SCREENSHOT") {
            let png = browser.screenshot().await.unwrap();
            std::fs::write(path, png).unwrap();
        }
        // The filters are in the URL, so the view can be shared.
        let url = browser.current_url().await.unwrap();
        assert!(
            url.as_str().contains("eni=eni-2") && url.as_str().contains("action=REJECT"),
            "{url}"
        );
    };
    outcome.await;
    browser.close().await.unwrap();
    drop(driver);
    assert!(collector.sigterm().success());
}
