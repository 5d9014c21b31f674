//! Delivery of record batches to the collector over gRPC (`flowlog.v1.Collector/Ingest`), at least once, with
//! the collector's (exporter id, sequence) deduplication making it exactly once.
//!
//! # Design
//! Each batch gets its identity — this exporter's id and the next sequence number — the moment it arrives, and
//! goes into the [`Spool`] (memory, then disk, then SKIPDATA sums). One task owns one bidirectional `Ingest`
//! stream: it keeps up to `max_unacked` batches in flight, oldest first, and drops each from its in-flight map when
//! the collector acknowledges it (which the collector does only once the batch is on disk). When the stream
//! breaks, the task reconnects with exponential backoff and re-sends every batch in flight, in sequence order,
//! before anything new. It keeps taking input the whole time, so the exporter never waits on the collector.
//!
//! # Guarantees
//! - A collector outage loses nothing while the spool has room; what overflows it becomes SKIPDATA records whose
//!   packets and bytes are exactly those of the records it replaces ([`super::spool`]).
//! - On shutdown the task keeps delivering for `shutdown_grace`. Then, with a disk spool, whatever is still
//!   unacknowledged is written to it for the next run ([`DeliveryStats::records_persisted`]); without one, it is
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

use super::spool::{Spool, SpoolConfig};

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
    /// How long to keep trying after shutdown is requested before spooling to disk or abandoning what is left.
    pub shutdown_grace: Duration,
    /// Where unacknowledged batches wait.
    pub spool: SpoolConfig,
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
    /// Batches that overflowed memory and went to the disk spool.
    pub batches_spooled_to_disk: AtomicU64,
    /// Records replaced by SKIPDATA sums because the spool was full.
    pub records_skipped: AtomicU64,
    /// Packets in those SKIPDATA sums.
    pub skipped_packets: AtomicU64,
    /// Bytes in those SKIPDATA sums.
    pub skipped_bytes: AtomicU64,
    /// Records written to the disk spool at shutdown, for the next run to deliver.
    pub records_persisted: AtomicU64,
    /// Records given up: at shutdown without a disk spool, or not even fitting the SKIPDATA ledger.
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
    let mut state = match Spool::open(config.spool.clone()) {
        Ok(spool) => State::new(spool),
        Err(error) => {
            tracing::error!(%error, "disk spool unusable; spooling in memory only");
            let memory_only = SpoolConfig {
                disk_dir: None,
                ..config.spool.clone()
            };
            // A spool without a directory touches no file, so opening it cannot fail.
            match Spool::open(memory_only) {
                Ok(spool) => State::new(spool),
                Err(_) => return 0,
            }
        }
    };
    let mut backoff = config.backoff_min;
    let mut deadline: Option<Instant> = None;

    'connect: loop {
        if state.done() {
            return 0;
        }
        if deadline.is_none() && *shutdown.borrow() {
            deadline = Some(Instant::now() + config.shutdown_grace);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return state.give_up(&config, &mut input, &stats).await;
        }

        let mut client = match CollectorClient::connect(config.endpoint.clone()).await {
            Ok(client) => client,
            Err(error) => {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(endpoint = %config.endpoint, %error, ?backoff, "collector unreachable; retrying");
                state
                    .pause(
                        backoff,
                        &mut deadline,
                        &config,
                        &mut input,
                        &mut shutdown,
                        &stats,
                    )
                    .await;
                backoff = (backoff * 2).min(config.backoff_max);
                continue;
            }
        };
        // Room for every re-send plus the window of new batches, so queueing never blocks.
        let (to_stream, stream_rx) = mpsc::channel::<IngestBatch>(2 * config.max_unacked + 2);
        for batch in state.in_flight.values() {
            // Capacity exceeds the in-flight count, so try_send cannot fail for lack of room.
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
                state
                    .pause(
                        backoff,
                        &mut deadline,
                        &config,
                        &mut input,
                        &mut shutdown,
                        &stats,
                    )
                    .await;
                backoff = (backoff * 2).min(config.backoff_max);
                continue;
            }
        };

        loop {
            if !state.fill(&config, &to_stream, &stats) {
                continue 'connect;
            }
            if state.done() {
                return 0;
            }
            let until_deadline = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            tokio::select! {
                ack = acks.message() => match ack {
                    Ok(Some(ack)) => {
                        backoff = config.backoff_min;
                        if let Some(batch) = state.in_flight.remove(&ack.sequence) {
                            stats.batches_acked.fetch_add(1, Ordering::Relaxed);
                            stats.records_acked.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
                            if ack.duplicate {
                                stats.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok(None) | Err(_) => {
                        stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(in_flight = state.in_flight.len(), spooled = state.spool.len(),
                            "ingest stream ended; reconnecting");
                        state.pause(backoff, &mut deadline, &config, &mut input, &mut shutdown, &stats).await;
                        backoff = (backoff * 2).min(config.backoff_max);
                        continue 'connect;
                    }
                },
                batch = input.recv(), if state.input_open => state.accept(batch, &config, &stats),
                Ok(()) = shutdown.changed(), if deadline.is_none() => {
                    if *shutdown.borrow() {
                        deadline = Some(Instant::now() + config.shutdown_grace);
                    }
                }
                _ = tokio::time::sleep(until_deadline.unwrap_or(Duration::MAX)), if until_deadline.is_some() => {
                    return state.give_up(&config, &mut input, &stats).await;
                }
            }
        }
    }
}

/// The task's batches: those in flight and the spool behind them.
struct State {
    spool: Spool,
    in_flight: BTreeMap<u64, IngestBatch>,
    next_sequence: u64,
    input_open: bool,
}

impl State {
    fn new(spool: Spool) -> Self {
        Self {
            spool,
            in_flight: BTreeMap::new(),
            next_sequence: 1,
            input_open: true,
        }
    }

    fn done(&self) -> bool {
        !self.input_open && self.in_flight.is_empty() && self.spool.is_empty()
    }

    /// Gives an arriving batch its identity and spools it; `None` = the exporter closed the input.
    fn accept(&mut self, batch: Option<Batch>, config: &DeliveryConfig, stats: &DeliveryStats) {
        let Some(batch) = batch else {
            self.input_open = false;
            return;
        };
        let message = IngestBatch {
            exporter_id: config.exporter_id.clone(),
            sequence: self.next_sequence,
            project: batch.project,
            logstore: batch.logstore,
            records: batch.records,
        };
        self.next_sequence += 1;
        let before = self.spool.stats().clone();
        if let Err(error) = self.spool.push(message) {
            tracing::error!(%error, "disk spool write failed");
        }
        let after = self.spool.stats();
        stats.batches_spooled_to_disk.fetch_add(
            after.batches_to_disk - before.batches_to_disk,
            Ordering::Relaxed,
        );
        stats.records_skipped.fetch_add(
            after.records_skipped - before.records_skipped,
            Ordering::Relaxed,
        );
        stats.skipped_packets.fetch_add(
            after.skipped_packets - before.skipped_packets,
            Ordering::Relaxed,
        );
        stats.skipped_bytes.fetch_add(
            after.skipped_bytes - before.skipped_bytes,
            Ordering::Relaxed,
        );
        stats.records_abandoned.fetch_add(
            after.ledger_overflow_records - before.ledger_overflow_records,
            Ordering::Relaxed,
        );
    }

    /// Sends spooled batches until `max_unacked` are in flight: SKIPDATA sums first (they stand for the oldest
    /// losses; a few more than `max_unacked` may then be in flight), then the spool in order. Returns false when
    /// the stream is gone.
    fn fill(
        &mut self,
        config: &DeliveryConfig,
        stream: &mpsc::Sender<IngestBatch>,
        stats: &DeliveryStats,
    ) -> bool {
        let mut ready = Vec::new();
        if self.spool.has_ledger() {
            for (project, logstore, records) in self.spool.take_ledger() {
                ready.push(IngestBatch {
                    exporter_id: config.exporter_id.clone(),
                    sequence: self.next_sequence,
                    project,
                    logstore,
                    records,
                });
                self.next_sequence += 1;
            }
        }
        while self.in_flight.len() + ready.len() < config.max_unacked {
            match self.spool.pop() {
                Ok(Some(batch)) => ready.push(batch),
                Ok(None) => break,
                Err(error) => {
                    tracing::error!(%error, "disk spool read failed");
                    break;
                }
            }
        }
        let mut alive = true;
        for batch in ready {
            // Whatever happens to the stream, the batch stays in flight until acknowledged (re-sent on reconnect).
            alive = alive && stream.try_send(batch.clone()).is_ok();
            if alive {
                stats.batches_sent.fetch_add(1, Ordering::Relaxed);
            }
            self.in_flight.insert(batch.sequence, batch);
        }
        alive
    }

    /// Waits `delay` (cut short by the shutdown deadline) while still taking input, so the exporter never waits.
    async fn pause(
        &mut self,
        delay: Duration,
        deadline: &mut Option<Instant>,
        config: &DeliveryConfig,
        input: &mut mpsc::Receiver<Batch>,
        shutdown: &mut watch::Receiver<bool>,
        stats: &DeliveryStats,
    ) {
        let wake = Instant::now() + delay;
        loop {
            let until = deadline.map_or(wake, |d| d.min(wake));
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                batch = input.recv(), if self.input_open => self.accept(batch, config, stats),
                // A closed shutdown channel disables this branch instead of waking at once.
                Ok(()) = shutdown.changed(), if deadline.is_none() => {
                    if *shutdown.borrow() {
                        *deadline = Some(Instant::now() + config.shutdown_grace);
                    }
                }
            }
        }
    }

    /// The shutdown deadline passed: what is left goes to the disk spool for the next run, or is counted as
    /// abandoned. Returns the records abandoned.
    async fn give_up(
        &mut self,
        config: &DeliveryConfig,
        input: &mut mpsc::Receiver<Batch>,
        stats: &DeliveryStats,
    ) -> u64 {
        input.close();
        // Batches still queued in the channel get their identity and join the spool.
        while let Some(batch) = input.recv().await {
            self.accept(Some(batch), config, stats);
        }
        self.input_open = false;
        let in_flight: Vec<IngestBatch> =
            std::mem::take(&mut self.in_flight).into_values().collect();
        let mut waiting: u64 = in_flight.iter().map(|b| b.records.len() as u64).sum();
        if self.spool.has_disk() {
            // SKIPDATA sums become batches too, so the next run delivers them.
            let ledger = self.spool.take_ledger();
            let mut extra = in_flight;
            for (project, logstore, records) in ledger {
                waiting += records.len() as u64;
                extra.push(IngestBatch {
                    exporter_id: config.exporter_id.clone(),
                    sequence: self.next_sequence,
                    project,
                    logstore,
                    records,
                });
                self.next_sequence += 1;
            }
            waiting += self.spool.memory_records();
            match self.spool.persist(extra) {
                Ok(batches) => {
                    stats
                        .records_persisted
                        .fetch_add(waiting, Ordering::Relaxed);
                    tracing::warn!(
                        batches,
                        records = waiting,
                        "collector did not acknowledge these before the shutdown deadline; kept in the disk spool for the next run"
                    );
                    return 0;
                }
                Err(error) => {
                    tracing::error!(%error, "could not write the disk spool at shutdown");
                    // What persist did not take is still in memory (or lost with the failed write): count it all.
                    return self.abandon(waiting, stats);
                }
            }
        }
        waiting += self
            .spool
            .take_ledger()
            .iter()
            .map(|(_, _, r)| r.len() as u64)
            .sum::<u64>();
        while let Ok(Some(batch)) = self.spool.pop() {
            waiting += batch.records.len() as u64;
        }
        self.abandon(waiting, stats)
    }

    fn abandon(&mut self, records: u64, stats: &DeliveryStats) -> u64 {
        stats
            .records_abandoned
            .fetch_add(records, Ordering::Relaxed);
        if records > 0 {
            tracing::error!(
                records,
                "collector did not acknowledge these records before the shutdown deadline"
            );
        }
        records
    }
}
