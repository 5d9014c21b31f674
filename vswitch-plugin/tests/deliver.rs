//! The exporter's gRPC delivery against a real collector service on a real socket: it waits for a collector that
//! is not up yet, re-sends what a broken stream left unacknowledged (the collector stores it once), and counts,
//! never hides, what it must abandon at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use flowlog_collector::config::Config;
use flowlog_collector::service::CollectorService;
use flowlog_collector::store::Store;
use flowlog_proto::v1::collector_client::CollectorClient;
use flowlog_proto::v1::collector_server::CollectorServer;
use flowlog_proto::v1::{QueryRequest, Record};
use flowlog_vswitch::export::deliver::{Batch, DeliveryConfig, DeliveryStats, run};
use flowlog_vswitch::export::spool::SpoolConfig;
use tokio::sync::{mpsc, oneshot, watch};

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn config(addr: SocketAddr, grace: Duration) -> DeliveryConfig {
    DeliveryConfig {
        endpoint: format!("http://{addr}"),
        exporter_id: "test-exporter".into(),
        max_unacked: 8,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        shutdown_grace: grace,
        spool: SpoolConfig {
            memory_bytes: 64 << 20,
            disk_dir: None,
            disk_bytes: 0,
            segment_bytes: 1 << 20,
            max_ledger_entries: 1000,
        },
    }
}

fn batch(index: u64, records: usize) -> Batch {
    Batch {
        project: "test-project".into(),
        logstore: "flows".into(),
        records: (0..records)
            .map(|i| Record {
                version: 1,
                eni_id: "eni-1".into(),
                srcaddr: vec![10, 0, 0, 1],
                dstaddr: vec![10, 0, 0, 2],
                srcport: Some(1000 + i as u32),
                dstport: Some(80),
                protocol: Some(6),
                direction: 2,
                packets: index,
                bytes: 40 * index,
                start: 1_700_000_040,
                end: 1_700_000_100,
                log_status: 1,
                action: 1,
                ..Record::default()
            })
            .collect(),
    }
}

/// A collector service on its own runtime, so that stopping it cuts every open stream at once (a graceful
/// shutdown would wait for the exporter's stream, which never ends by itself).
struct Served {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
    }
}

/// Serves `store` on `addr` until stopped.
fn serve(store: Arc<Store>, addr: SocketAddr) -> Served {
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(CollectorServer::new(CollectorService::new(
                    store,
                    Config::default(),
                )))
                .serve(addr)
                .await
                .unwrap();
        });
        let _ = runtime.block_on(stopped);
        runtime.shutdown_background();
    });
    // Wait until the port accepts connections.
    while std::net::TcpStream::connect(addr).is_err() {
        std::thread::sleep(Duration::from_millis(5));
    }
    Served {
        stop: Some(stop),
        thread: Some(thread),
    }
}

async fn stored_records(addr: SocketAddr) -> Vec<Record> {
    let mut client = CollectorClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut stream = client
        .query(QueryRequest {
            project: "test-project".into(),
            logstore: "flows".into(),
            ..QueryRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut records = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        records.extend(page.records);
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_the_collector_then_delivers_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let (input, batches) = mpsc::channel(4);
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let stats = Arc::new(DeliveryStats::default());
    let task = tokio::spawn(run(
        config(addr, Duration::from_secs(30)),
        batches,
        shutdown,
        stats.clone(),
    ));
    let producer = tokio::spawn(async move {
        for i in 1..=30 {
            input.send(batch(i, 10)).await.unwrap();
        }
    });
    // Nothing listens yet: the task retries with backoff.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats.batches_acked.load(Ordering::Relaxed), 0);
    let store = Arc::new(Store::open(dir.path(), Config::default().store).unwrap());
    let server = serve(store.clone(), addr);
    producer.await.unwrap();
    assert_eq!(task.await.unwrap(), 0, "nothing abandoned");
    assert_eq!(stats.records_acked.load(Ordering::Relaxed), 300);
    assert!(stats.reconnects.load(Ordering::Relaxed) > 0);
    assert_eq!(stored_records(addr).await.len(), 300);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resends_after_a_broken_stream_and_the_collector_stores_once() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let store = Arc::new(Store::open(dir.path(), Config::default().store).unwrap());
    let server = serve(store.clone(), addr);
    let (input, batches) = mpsc::channel(64);
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let stats = Arc::new(DeliveryStats::default());
    let task = tokio::spawn(run(
        config(addr, Duration::from_secs(30)),
        batches,
        shutdown,
        stats.clone(),
    ));
    for i in 1..=20 {
        input.send(batch(i, 50)).await.unwrap();
    }
    // Break the stream while batches are in flight, then serve the same store again.
    while stats.batches_acked.load(Ordering::Relaxed) < 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.stop();
    for i in 21..=40 {
        input.send(batch(i, 50)).await.unwrap();
    }
    drop(input);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let server = serve(store.clone(), addr);
    assert_eq!(task.await.unwrap(), 0);
    assert_eq!(stats.batches_acked.load(Ordering::Relaxed), 40);
    assert!(
        stats.reconnects.load(Ordering::Relaxed) > 0,
        "the stream was broken and reopened"
    );
    let records = stored_records(addr).await;
    assert_eq!(records.len(), 40 * 50, "every batch stored exactly once");
    let mut per_batch = std::collections::BTreeMap::new();
    for r in &records {
        *per_batch.entry(r.packets).or_insert(0) += 1;
    }
    assert!(
        per_batch.values().all(|&n| n == 50) && per_batch.len() == 40,
        "{per_batch:?}"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_what_it_abandons_when_the_collector_never_comes() {
    let addr = free_port();
    let (input, batches) = mpsc::channel(64);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let stats = Arc::new(DeliveryStats::default());
    let task = tokio::spawn(run(
        config(addr, Duration::from_millis(200)),
        batches,
        shutdown,
        stats.clone(),
    ));
    for i in 1..=5 {
        input.send(batch(i, 7)).await.unwrap();
    }
    drop(input);
    shutdown_tx.send(true).unwrap();
    let abandoned = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(abandoned, 35);
    assert_eq!(stats.records_abandoned.load(Ordering::Relaxed), 35);
}

fn spool_config(memory_bytes: usize, disk_dir: Option<&std::path::Path>) -> SpoolConfig {
    SpoolConfig {
        memory_bytes,
        disk_dir: disk_dir.map(std::path::Path::to_path_buf),
        disk_bytes: 1 << 30,
        segment_bytes: 4096,
        max_ledger_entries: 1000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_overflow_becomes_skipdata_with_exactly_the_dropped_counts() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let mut config = config(addr, Duration::from_secs(30));
    // Room for two batches in memory, no disk: the rest of the outage overflows.
    config.spool = spool_config(2 * 1200, None);
    let (input, batches) = mpsc::channel(4);
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let stats = Arc::new(DeliveryStats::default());
    let task = tokio::spawn(run(config, batches, shutdown, stats.clone()));
    let mut total_packets = 0;
    for i in 1..=20 {
        let b = batch(i, 10);
        total_packets += b.records.iter().map(|r| r.packets).sum::<u64>();
        input.send(b).await.unwrap();
    }
    drop(input);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let store = Arc::new(Store::open(dir.path(), Config::default().store).unwrap());
    let server = serve(store, addr);
    assert_eq!(task.await.unwrap(), 0);
    let skipped = stats.records_skipped.load(Ordering::Relaxed);
    assert!(skipped >= 150, "most batches overflowed: {skipped}");
    let records = stored_records(addr).await;
    let ok: Vec<_> = records.iter().filter(|r| r.log_status == 1).collect();
    let skipdata: Vec<_> = records.iter().filter(|r| r.log_status == 3).collect();
    assert_eq!(ok.len() as u64 + skipped, 200);
    assert_eq!(skipdata.len(), 1, "one (logstore, ENI, window) summary");
    assert_eq!(
        skipdata[0].packets,
        stats.skipped_packets.load(Ordering::Relaxed)
    );
    assert_eq!(
        ok.iter().map(|r| r.packets).sum::<u64>() + skipdata[0].packets,
        total_packets
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_unacknowledged_at_shutdown_waits_on_disk_for_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let addr = free_port();
    // First run: the collector never comes; a tiny memory makes most batches spill to disk.
    let mut first = config(addr, Duration::from_millis(200));
    first.spool = spool_config(1500, Some(&spool_dir));
    let (input, batches) = mpsc::channel(4);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let stats = Arc::new(DeliveryStats::default());
    let task = tokio::spawn(run(first, batches, shutdown, stats.clone()));
    for i in 1..=12 {
        input.send(batch(i, 10)).await.unwrap();
    }
    drop(input);
    shutdown_tx.send(true).unwrap();
    assert_eq!(
        task.await.unwrap(),
        0,
        "nothing abandoned with a disk spool"
    );
    assert!(stats.batches_spooled_to_disk.load(Ordering::Relaxed) > 0);
    assert!(stats.records_persisted.load(Ordering::Relaxed) > 0);

    // Second run (another exporter id): the collector is up; the leftovers go first, with their own ids.
    let store = Arc::new(Store::open(&dir.path().join("data"), Config::default().store).unwrap());
    let server = serve(store, addr);
    let mut second = config(addr, Duration::from_secs(30));
    second.exporter_id = "second-run".into();
    second.spool = spool_config(1 << 20, Some(&spool_dir));
    let (input, batches) = mpsc::channel(4);
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let stats = Arc::new(DeliveryStats::default());
    let task = tokio::spawn(run(second, batches, shutdown, stats.clone()));
    drop(input);
    assert_eq!(task.await.unwrap(), 0);
    let records = stored_records(addr).await;
    assert_eq!(records.len(), 120, "all twelve batches, once");
    let mut per_batch = std::collections::BTreeMap::new();
    for r in &records {
        *per_batch.entry(r.packets).or_insert(0) += 1;
    }
    assert!(
        per_batch.len() == 12 && per_batch.values().all(|&n| n == 10),
        "{per_batch:?}"
    );
    assert_eq!(
        std::fs::read_dir(&spool_dir).unwrap().count(),
        0,
        "the spool is empty afterwards"
    );
    server.stop();
}
