//! Delivery of record batches to the collector over gRPC (`flowlog.v1.Collector/Ingest`), at least once, with
//! the collector's (exporter id, sequence) deduplication making it exactly once.
//!
//! # Design
//! One task owns one bidirectional `Ingest` stream. Each batch gets the next sequence number when it is taken
//! from the input queue and stays in the unacknowledged map until the collector acknowledges it (the collector
//! acknowledges a batch only once it is on disk). When the stream breaks, the task reconnects with exponential
//! backoff and re-sends every unacknowledged batch, in sequence order, before anything new.
//!
//! # Guarantees
//! - At most `max_unacked` batches are in flight; past that the task stops taking input, so back-pressure reaches
//!   the exporter and, through the full seal rings, the workers, which account what they cannot hand over as
//!   SKIPDATA with exact counts.
//! - On shutdown the task keeps delivering for `shutdown_grace`; whatever is still unacknowledged then is
//!   counted in [`DeliveryStats::records_abandoned`] and logged: never a silent loss.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flowlog_proto::v1::collector_client::CollectorClient;
use flowlog_proto::v1::{IngestBatch, Record};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// Settings of one delivery task.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The collector's gRPC endpoint, e.g. `http://127.0.0.1:7000`.
    pub endpoint: String,
    /// Identity of this exporter instance; unique per process start, since sequences restart at 1.
    pub exporter_id: String,
    /// Most batches sent and not yet acknowledged.
    pub max_unacked: usize,
    /// First reconnect delay; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// How long to keep trying after shutdown is requested before abandoning what is unacknowledged.
    pub shutdown_grace: Duration,
}

/// Records for one logstore.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Destination project.
    pub project: String,
    /// Destination logstore.
    pub logstore: String,
    /// The records, at least one.
    pub records: Vec<Record>,
}

/// Counters of a delivery task, readable from any thread.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Batches written to a stream, re-sends included.
    pub batches_sent: AtomicU64,
    /// Batches acknowledged by the collector.
    pub batches_acked: AtomicU64,
    /// Records in acknowledged batches.
    pub records_acked: AtomicU64,
    /// Acknowledgements saying the batch had been stored before (a re-send after a lost acknowledgement).
    pub duplicates: AtomicU64,
    /// Connection attempts that failed or streams that broke.
    pub reconnects: AtomicU64,
    /// Records given up at shutdown because the collector did not acknowledge them in time.
    pub records_abandoned: AtomicU64,
}

/// Delivers the batches read from `input` until it is closed and everything is acknowledged, or until
/// `shutdown` turns true and `shutdown_grace` has passed. Returns the number of records abandoned.
pub async fn run(
    config: DeliveryConfig,
    mut input: mpsc::Receiver<Batch>,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<DeliveryStats>,
) -> u64 {
    let mut unacked: BTreeMap<u64, IngestBatch> = BTreeMap::new();
    let mut next_sequence = 1u64;
    let mut input_open = true;
    let mut backoff = config.backoff_min;
    let mut deadline: Option<Instant> = None;

    'connect: loop {
        if !input_open && unacked.is_empty() {
            return 0;
        }
        if deadline.is_none() && *shutdown.borrow() {
            deadline = Some(Instant::now() + config.shutdown_grace);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return abandon(&mut input, &unacked, &stats).await;
        }

        let mut client = match CollectorClient::connect(config.endpoint.clone()).await {
            Ok(client) => client,
            Err(error) => {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(endpoint = %config.endpoint, %error, ?backoff, "collector unreachable; retrying");
                pause(backoff, deadline, &mut shutdown).await;
                backoff = (backoff * 2).min(config.backoff_max);
                continue;
            }
        };
        // Room for every re-send plus the window of new batches, so queueing never blocks.
        let (to_stream, stream_rx) =
            mpsc::channel::<IngestBatch>(config.max_unacked + unacked.len() + 1);
        for batch in unacked.values() {
            // Capacity exceeds unacked.len(), so try_send cannot fail for lack of room; the receiver is alive.
            if to_stream.try_send(batch.clone()).is_err() {
                continue 'connect;
            }
            stats.batches_sent.fetch_add(1, Ordering::Relaxed);
        }
        let mut acks = match client.ingest(ReceiverStream::new(stream_rx)).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%status, "collector refused the ingest stream; retrying");
                pause(backoff, deadline, &mut shutdown).await;
                backoff = (backoff * 2).min(config.backoff_max);
                continue;
            }
        };

        loop {
            if !input_open && unacked.is_empty() {
                return 0;
            }
            let until_deadline = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            tokio::select! {
                ack = acks.message() => match ack {
                    Ok(Some(ack)) => {
                        backoff = config.backoff_min;
                        if let Some(batch) = unacked.remove(&ack.sequence) {
                            stats.batches_acked.fetch_add(1, Ordering::Relaxed);
                            stats.records_acked.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
                            if ack.duplicate {
                                stats.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok(None) | Err(_) => {
                        stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(unacked = unacked.len(), "ingest stream ended; reconnecting");
                        pause(backoff, deadline, &mut shutdown).await;
                        backoff = (backoff * 2).min(config.backoff_max);
                        continue 'connect;
                    }
                },
                batch = input.recv(), if input_open && unacked.len() < config.max_unacked => match batch {
                    Some(batch) => {
                        let message = IngestBatch {
                            exporter_id: config.exporter_id.clone(),
                            sequence: next_sequence,
                            project: batch.project,
                            logstore: batch.logstore,
                            records: batch.records,
                        };
                        next_sequence += 1;
                        let sent = to_stream.try_send(message.clone()).is_ok();
                        unacked.insert(message.sequence, message);
                        if !sent {
                            continue 'connect;
                        }
                        stats.batches_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    None => input_open = false,
                },
                Ok(()) = shutdown.changed(), if deadline.is_none() => {
                    if *shutdown.borrow() {
                        deadline = Some(Instant::now() + config.shutdown_grace);
                    }
                }
                _ = tokio::time::sleep(until_deadline.unwrap_or(Duration::MAX)), if until_deadline.is_some() => {
                    return abandon(&mut input, &unacked, &stats).await;
                }
            }
        }
    }
}

/// Sleeps for `delay`, cut short by the shutdown deadline; a shutdown request starts the deadline.
async fn pause(delay: Duration, deadline: Option<Instant>, shutdown: &mut watch::Receiver<bool>) {
    let wake = Instant::now() + delay;
    let wake = deadline.map_or(wake, |d| d.min(wake));
    tokio::select! {
        _ = tokio::time::sleep_until(wake) => {}
        // A closed shutdown channel disables this branch instead of waking at once.
        Ok(()) = shutdown.changed() => {}
    }
}

/// Gives up: counts and logs every record not acknowledged, including those still queued.
async fn abandon(
    input: &mut mpsc::Receiver<Batch>,
    unacked: &BTreeMap<u64, IngestBatch>,
    stats: &DeliveryStats,
) -> u64 {
    input.close();
    let mut lost: u64 = unacked.values().map(|b| b.records.len() as u64).sum();
    while let Some(batch) = input.recv().await {
        lost += batch.records.len() as u64;
    }
    stats.records_abandoned.fetch_add(lost, Ordering::Relaxed);
    if lost > 0 {
        tracing::error!(
            records = lost,
            "collector did not acknowledge these records before the shutdown deadline"
        );
    }
    lost
}
