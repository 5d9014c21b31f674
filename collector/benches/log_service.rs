//! Benchmarks of the log service, each next to a baseline measured in the same run. Prints figures; asserts
//! nothing about time.
//!
//! ```text
//! cargo bench -p flowlog-collector --bench log_service -- [--ingest-records N] [--query-records N]
//!     [--data DIR] [--skip-ingest] [--skip-query]
//! ```
//!
//! 1. Ingest over gRPC on loopback: the release `flowlog-collector` binary, fed by client streams in this process
//!    with batches of 4096 records; records per second of wall time and per second of the collector's CPU time
//!    (utime + stime of its process: "per core"). Baseline: the same framed bytes written to a file with
//!    `fdatasync` every 8 MiB, by one thread of this process (records per CPU second).
//! 2. The top-10 talkers analysis (`flowlog talkers`: OK records, `GROUP BY srcaddr`, by bytes) over
//!    `--query-records` records (default 100 million) in hourly Parquet files written by the collector's own
//!    writer: as the collector runs it (`SqlEngine::analyze`, in process), and the same SQL text through its
//!    DataFusion engine; baseline: DuckDB (`python3 -m pip install duckdb`) running the same SQL over the same
//!    files, same machine, same number of threads. The data set is generated once into `--data` (default
//!    `target/bench-data`) and reused by later runs.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use flowlog_collector::analysis::{Analysis, Filters, Measure};
use flowlog_collector::config::Config;
use flowlog_collector::sql::{AnalysisQuery, SqlEngine, SqlQuery};
use flowlog_collector::store::columnar::BatchBuilder;
use flowlog_collector::store::manifest::{self, FileEntry, Manifest};
use flowlog_collector::store::{Store, parquet};
use flowlog_proto::v1::collector_client::CollectorClient;
use flowlog_proto::v1::{Action, Direction, IngestBatch, LogStatus, Record};
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;

/// The top-10 talkers analysis as SQL (what `flowlog talkers` computes).
const TOP_TALKERS: &str = "SELECT srcaddr, SUM(bytes) AS bytes, SUM(packets) AS packets, COUNT(*) AS records \
                           FROM flows WHERE log_status = 'OK' GROUP BY srcaddr \
                           ORDER BY bytes DESC, packets DESC, srcaddr LIMIT 10";

fn main() -> anyhow::Result<()> {
    let mut ingest_records: u64 = 4_000_000;
    let mut query_records: u64 = 100_000_000;
    let mut data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    let (mut skip_ingest, mut skip_query) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ingest-records" => ingest_records = args.next().context("N")?.parse()?,
            "--query-records" => query_records = args.next().context("N")?.parse()?,
            "--data" => data = args.next().context("DIR")?.into(),
            "--skip-ingest" => skip_ingest = true,
            "--skip-query" => skip_query = true,
            // cargo bench passes --bench.
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    print_hardware();
    if !skip_ingest {
        ingest(ingest_records)?;
    }
    if !skip_query {
        query(query_records, &data)?;
    }
    Ok(())
}

fn print_hardware() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    println!(
        "hardware: {} x {model}; {}; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory.split_whitespace().collect::<Vec<_>>().join(" "),
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| format!(
                "load average at start: {}",
                l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            ))
            .unwrap_or_default()
    );
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Roughly Zipf-like: small values much more likely (a few heavy talkers, a long tail).
    fn skewed(&mut self, n: u64) -> u64 {
        let a = self.next() % n;
        let b = self.next() % n;
        a.min(b).min(self.next() % n)
    }
}

/// A realistic record: 65536 possible sources (skewed), 65536 destinations, 1024 ENIs, a start in `hour`.
fn record(rng: &mut Rng, hour: i64) -> Record {
    let src = rng.skewed(65_536);
    let dst = rng.next() % 65_536;
    let eni = rng.next() % 1024;
    let packets = 1 + rng.next() % 200;
    let start = hour + 60 * (rng.next() % 60) as i64;
    let reject = rng.next().is_multiple_of(20);
    Record {
        version: 1,
        account_id: "100000000001".into(),
        vpc_id: format!("vpc-{:04}", eni / 64),
        vswitch_id: format!("vsw-{:04}", eni / 16),
        vm_id: format!("i-{eni:06}"),
        eni_id: format!("eni-{eni:06}"),
        srcaddr: vec![10, (src >> 8) as u8, src as u8, 1],
        dstaddr: vec![172, 16, (dst >> 8) as u8, dst as u8],
        srcport: Some(1024 + (rng.next() % 60_000) as u32),
        dstport: Some([443, 80, 22, 53, 3306][(rng.next() % 5) as usize]),
        protocol: Some(6),
        direction: if rng.next().is_multiple_of(2) {
            Direction::In
        } else {
            Direction::Out
        } as i32,
        packets,
        bytes: packets * (60 + rng.next() % 1400),
        start,
        end: start + 60,
        log_status: LogStatus::Ok as i32,
        action: if reject {
            Action::Reject
        } else {
            Action::Accept
        } as i32,
        tcp_flags: 18,
        region: "cn-hangzhou".into(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Ingest

/// The collector's CPU time so far (utime + stime), from /proc.
fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // USER_HZ is 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

/// This thread's CPU time so far.
fn thread_cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(data: &Path, config: &Path) -> anyhow::Result<Server> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowlog-collector"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let address = line
        .trim()
        .strip_prefix("listening on ")
        .context("no announcement")?
        .to_owned();
    Ok(Server {
        child,
        address: format!("http://{address}"),
    })
}

fn ingest(records: u64) -> anyhow::Result<()> {
    const BATCH: u64 = 4096;
    const STREAMS: u64 = 2;
    let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target"))?;
    let config = dir.path().join("collector.toml");
    // Conversion to Parquet is measured by the query part; here the log only.
    std::fs::write(
        &config,
        "convert-after-seconds = 86400\nconvert-bytes = 18446744073709551615\nmax-in-flight-batches = 256\n",
    )?;
    let batches_total = records.div_ceil(BATCH);
    let mut rng = Rng(7);
    let hour = 1_795_680_000;
    let batches: Vec<IngestBatch> = (0..batches_total)
        .map(|b| IngestBatch {
            exporter_id: format!("bench-{}", b % STREAMS),
            sequence: b / STREAMS + 1,
            project: "bench".into(),
            logstore: "flows".into(),
            records: (0..BATCH).map(|_| record(&mut rng, hour)).collect(),
        })
        .collect();
    let total_records = batches_total * BATCH;
    let encoded_bytes: usize = batches.iter().map(|b| b.encoded_len()).sum();
    println!(
        "\ningest: {total_records} records in {batches_total} batches of {BATCH} ({} bytes per record encoded), \
         {STREAMS} gRPC streams on loopback",
        encoded_bytes as u64 / total_records
    );

    // Baseline: the same bytes, framed beforehand, appended to a file with fdatasync every 8 MiB, by one thread.
    {
        let mut chunks = vec![Vec::with_capacity(9 << 20)];
        for batch in &batches {
            let payload = batch.encode_to_vec();
            let chunk = chunks.last_mut().context("a chunk")?;
            flowlog_collector::store::frame::encode_into(&payload, chunk)?;
            if chunk.len() >= 8 << 20 {
                chunks.push(Vec::with_capacity(9 << 20));
            }
        }
        let path = dir.path().join("baseline.seg");
        let mut file = std::fs::File::create(&path)?;
        let cpu0 = thread_cpu()?;
        let t0 = Instant::now();
        for chunk in &chunks {
            file.write_all(chunk)?;
            file.sync_data()?;
        }
        let wall = t0.elapsed();
        let cpu = thread_cpu()? - cpu0;
        println!(
            "  baseline  write + fdatasync of the same framed bytes, 8 MiB at a time (1 thread): {:>6.2} M records/s wall, {:>6.2} M records/s per CPU second ({:.2} s CPU)",
            total_records as f64 / wall.as_secs_f64() / 1e6,
            total_records as f64 / cpu.as_secs_f64().max(0.01) / 1e6,
            cpu.as_secs_f64()
        );
    }

    let server = start_server(&dir.path().join("data"), &config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let batches = Arc::new(batches);
    let pid = server.child.id();
    let (wall, cpu, acked) = runtime.block_on(async {
        let cpu0 = process_cpu(pid)?;
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for stream in 0..STREAMS {
            let batches = batches.clone();
            let address = server.address.clone();
            tasks.push(tokio::spawn(async move {
                let channel = tonic::transport::Endpoint::from_shared(address)?
                    .initial_stream_window_size(8 << 20)
                    .initial_connection_window_size(32 << 20)
                    .connect()
                    .await?;
                let mut client = CollectorClient::new(channel).max_encoding_message_size(64 << 20);
                let (tx, rx) = tokio::sync::mpsc::channel(64);
                let sender = tokio::spawn(async move {
                    for b in batches
                        .iter()
                        .filter(|b| b.exporter_id == format!("bench-{stream}"))
                    {
                        if tx.send(b.clone()).await.is_err() {
                            break;
                        }
                    }
                });
                let mut acks = client.ingest(ReceiverStream::new(rx)).await?.into_inner();
                let mut acked = 0u64;
                while let Some(ack) = acks.message().await? {
                    anyhow::ensure!(!ack.duplicate, "unexpected duplicate");
                    acked += 1;
                }
                sender.await?;
                anyhow::Ok(acked)
            }));
        }
        let mut acked = 0;
        for task in tasks {
            acked += task.await??;
        }
        let wall = t0.elapsed();
        let cpu = process_cpu(pid)? - cpu0;
        anyhow::Ok((wall, cpu, acked))
    })?;
    anyhow::ensure!(
        acked == batches_total,
        "{acked} of {batches_total} acknowledged"
    );
    println!(
        "  collector: gRPC ingest on loopback, acked after fdatasync:                        {:>6.2} M records/s wall, {:>6.2} M records/s per CPU second ({:.2} s collector CPU in {:.2} s)",
        total_records as f64 / wall.as_secs_f64() / 1e6,
        total_records as f64 / cpu.as_secs_f64().max(0.01) / 1e6,
        cpu.as_secs_f64(),
        wall.as_secs_f64()
    );
    drop(server);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Query

/// Generates (or reuses) a logstore of `records` records in hourly Parquet files under `data`.
fn prepare(records: u64, data: &Path) -> anyhow::Result<()> {
    let logstore_dir = data.join("bench/flows");
    if let Ok(manifest) = Manifest::load(&logstore_dir)
        && manifest.files.iter().map(|f| f.records).sum::<u64>() == records
    {
        println!("  (reusing the data set in {})", data.display());
        return Ok(());
    }
    if data.exists() {
        std::fs::remove_dir_all(data)?;
    }
    {
        let store = Store::open(data, Config::default().store)?;
        store.create_project("bench", "benchmark data")?;
        store.create_logstore("bench", "flows", 0)?;
    }
    let hours: u64 = 24;
    let per_hour = records / hours;
    let first_hour = 1_795_680_000i64;
    let t0 = Instant::now();
    let entries: Vec<FileEntry> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2u64)
            .map(|worker| {
                let logstore_dir = &logstore_dir;
                scope.spawn(move || -> anyhow::Result<Vec<FileEntry>> {
                    let mut entries = Vec::new();
                    for h in (worker..hours).step_by(2) {
                        let hour = first_hour + 3600 * h as i64;
                        let count = if h == hours - 1 {
                            records - per_hour * (hours - 1)
                        } else {
                            per_hour
                        };
                        let relative = manifest::file_path(hour, h);
                        let mut writer = parquet::Writer::create(logstore_dir, &relative)?;
                        let mut rng = Rng(h + 1);
                        let mut builder = BatchBuilder::new(65_536);
                        for _ in 0..count {
                            builder.push(&record(&mut rng, hour));
                            if builder.len() == 65_536 {
                                writer.write(&builder.finish())?;
                            }
                        }
                        if !builder.is_empty() {
                            writer.write(&builder.finish())?;
                        }
                        let written = writer.finish()?;
                        entries.push(FileEntry {
                            path: relative,
                            hour,
                            records: written.records,
                            bytes: written.bytes,
                            min_start: written.min_start,
                            max_start: written.max_start,
                        });
                    }
                    Ok(entries)
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(
                w.join()
                    .map_err(|_| anyhow::anyhow!("generator panicked"))??,
            );
        }
        anyhow::Ok(all)
    })?;
    let mut sorted = entries;
    sorted.sort_by_key(|e| e.hour);
    let bytes: u64 = sorted.iter().map(|e| e.bytes).sum();
    Manifest {
        format: manifest::FORMAT,
        converted_through: None,
        next_file: hours,
        files: sorted,
    }
    .store(&logstore_dir)?;
    let elapsed = t0.elapsed().as_secs_f64();
    println!(
        "  generated {records} records into {hours} hourly parquet files, {:.2} GB, in {elapsed:.1} s \
         (records -> arrow -> parquet with the collector's writer: {:.2} M records/s on 2 threads)",
        bytes as f64 / 1e9,
        records as f64 / elapsed / 1e6
    );
    Ok(())
}

fn query(records: u64, data: &Path) -> anyhow::Result<()> {
    println!("\nquery: top-10 talkers over {records} records");
    prepare(records, data)?;
    let store = Arc::new(Store::open(data, Config::default().store)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let engine = SqlEngine::new(store, 8 << 30, 1000);
    let mut analysis = Vec::new();
    let mut answer = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let (_, batches) = runtime.block_on(engine.analyze(&AnalysisQuery {
            project: "bench".into(),
            logstore: "flows".into(),
            from: None,
            to: None,
            analysis: Analysis::Talkers {
                by: Measure::Bytes,
                limit: 10,
            },
            filters: Filters::default(),
        }))?;
        analysis.push(t0.elapsed());
        answer = rows(&batches);
    }
    println!(
        "  flowlog-collector talkers analysis (SqlEngine::analyze, 2 threads):    runs {}",
        runs(&analysis)
    );
    let mut sql = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let (_, batches, _) = runtime.block_on(async {
            engine
                .run(&SqlQuery {
                    project: "bench".into(),
                    logstore: "flows".into(),
                    sql: TOP_TALKERS.into(),
                    ..SqlQuery::default()
                })
                .await?
                .collect()
                .await
        })?;
        sql.push(t0.elapsed());
        anyhow::ensure!(
            rows(&batches) == answer,
            "the SQL and the analysis disagree"
        );
    }
    println!(
        "  flowlog-collector same SQL through DataFusion (2 threads):             runs {}",
        runs(&sql)
    );

    let glob = data.join("bench/flows/*/*/*.parquet");
    let script = format!(
        r#"
import duckdb, time, json
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute("SET enable_progress_bar = false")
sql = """SELECT srcaddr, SUM(bytes) AS bytes, SUM(packets) AS packets, COUNT(*) AS records
         FROM read_parquet('{}') WHERE log_status = 'OK'
         GROUP BY srcaddr ORDER BY bytes DESC, packets DESC, srcaddr LIMIT 10"""
times = []
for _ in range(3):
    t0 = time.perf_counter()
    rows = con.execute(sql).fetchall()
    times.append(time.perf_counter() - t0)
print(json.dumps({{"version": duckdb.__version__, "times": times, "rows": [[r[0], int(r[1]), int(r[2]), int(r[3])] for r in rows]}}))
"#,
        glob.display()
    );
    // `scripts/bench` points PYTHON at a venv with duckdb.
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = Command::new(&python).arg("-c").arg(&script).output();
    match output {
        Ok(out) if out.status.success() => {
            // The JSON is the last line (anything DuckDB prints comes before it).
            let stdout = String::from_utf8_lossy(&out.stdout);
            let v: serde_json::Value =
                serde_json::from_str(stdout.lines().last().unwrap_or_default())?;
            let times: Vec<Duration> = v["times"]
                .as_array()
                .context("times")?
                .iter()
                .map(|t| Duration::from_secs_f64(t.as_f64().unwrap_or(0.0)))
                .collect();
            println!(
                "  baseline DuckDB {} running the same SQL (2 threads), same files:       runs {}",
                v["version"].as_str().unwrap_or("?"),
                runs(&times)
            );
            let theirs: Vec<(String, i64, i64, i64)> = serde_json::from_value(v["rows"].clone())?;
            println!(
                "  same answer: {}",
                if theirs == answer { "yes" } else { "NO" }
            );
            if theirs != answer {
                println!("    ours:   {answer:?}\n    duckdb: {theirs:?}");
            }
        }
        Ok(out) => println!(
            "  baseline DuckDB: not run ({}); install it with `python3 -m pip install duckdb`",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("failed")
        ),
        Err(e) => println!("  baseline DuckDB: python3 not available ({e})"),
    }
    println!("  top talker: {:?}", answer.first());
    Ok(())
}

fn rows(batches: &[RecordBatch]) -> Vec<(String, i64, i64, i64)> {
    let mut out = Vec::new();
    for b in batches {
        let src = datafusion::arrow::compute::cast(
            b.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .expect("text casts to Utf8");
        let src = src.as_string::<i32>();
        let bytes = b.column(1).as_primitive::<Int64Type>();
        let packets = b.column(2).as_primitive::<Int64Type>();
        let records = b.column(3).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push((
                if src.is_null(i) {
                    String::new()
                } else {
                    src.value(i).to_owned()
                },
                bytes.value(i),
                packets.value(i),
                records.value(i),
            ));
        }
    }
    out
}

fn runs(times: &[Duration]) -> String {
    let text: Vec<String> = times
        .iter()
        .map(|t| format!("{:.3} s", t.as_secs_f64()))
        .collect();
    let best = times.iter().min().copied().unwrap_or_default();
    format!("{} (best {:.3} s)", text.join(", "), best.as_secs_f64())
}
