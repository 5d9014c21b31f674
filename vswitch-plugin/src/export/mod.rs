//! The exporter thread: it drains every worker's ring of sealed windows, merges the workers' windows, turns them
//! into records and delivers them (JSON lines, or batches streamed to the collector over gRPC), and it owns the
//! capture state, publishing each new ENI table to the workers over their command rings.
//!
//! # Threads and rings
//! Each worker owns a [`WorkerEnd`]: the producer of its seal ring (SPSC, `rtrb`), the consumers of its command
//! ring and of its table-return ring, and a `finished` flag. The exporter holds the matching [`WorkerLink`]s.
//! Seal by swap: a sealed window carries the worker's full flow table; the exporter reads the flows out, empties
//! the table and returns it over the return ring, so the worker's pause at a seal is a pointer swap. Nothing else
//! is shared: the worker never waits on the exporter (with no spare table, or a full seal ring, the meter keeps an
//! exact SKIPDATA summary instead), and the exporter touches a table only after the worker handed it over.
//!
//! The exporter runs a single-threaded tokio runtime: the ring-draining loop (every millisecond, or at once when
//! a capture change arrives), the gRPC delivery task and the control-plane watch share it.
//!
//! # Guarantees
//! - A window is rendered once every worker has sealed it or finished ([`WindowMerger`]), so NODATA is decided
//!   across all workers and a flow split over workers is one record.
//! - Records are never dropped silently: a record whose ENI has no route is counted in
//!   [`ExportReport::records_unrouted`]; the delivery task never makes the exporter wait (its spool takes
//!   everything, in memory, then on disk, then as exact SKIPDATA sums); records the collector never acknowledged
//!   by the end of the shutdown grace are left in the disk spool or counted as abandoned.

pub mod deliver;
pub mod spool;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use flowlog_dataplane::export::{Record, Rollup, WindowMerger, records, write_jsonl};
use flowlog_dataplane::flow::{Eni, EniTable, FlowTable, SealSink, SealedWindow};
use flowlog_proto::convert::to_proto;
use flowlog_proto::v1 as proto;
use tokio::sync::{mpsc, watch};

use crate::capture::{CaptureState, Route};
use deliver::{Batch, DeliveryConfig, DeliveryStats};

/// A command from the exporter to a worker.
#[derive(Debug)]
pub enum WorkerCommand {
    /// Attribute frames with this ENI table from the next burst on.
    SetEnis(Arc<EniTable>),
}

/// The worker's side of its link to the exporter.
pub struct WorkerEnd {
    seals: rtrb::Producer<SealedWindow>,
    commands: rtrb::Consumer<WorkerCommand>,
    returns: rtrb::Consumer<FlowTable>,
    finished: Arc<AtomicBool>,
}

/// The exporter's side of its link to one worker.
pub struct WorkerLink {
    seals: rtrb::Consumer<SealedWindow>,
    commands: rtrb::Producer<WorkerCommand>,
    /// Flow tables of sealed windows, emptied, on their way back to the worker (seal by swap).
    returns: rtrb::Producer<FlowTable>,
    finished: Arc<AtomicBool>,
    /// A table not yet pushed because the command ring was full.
    pending_table: Option<Arc<EniTable>>,
    merged_finish: bool,
}

/// Creates the rings between one worker and the exporter: `seal_capacity` sealed windows fit in the seal ring,
/// and the return ring holds every flow table the worker owns (`tables`: its open table plus its spares).
pub fn link(seal_capacity: usize, tables: usize) -> (WorkerEnd, WorkerLink) {
    let (seal_tx, seal_rx) = rtrb::RingBuffer::new(seal_capacity);
    let (cmd_tx, cmd_rx) = rtrb::RingBuffer::new(8);
    let (return_tx, return_rx) = rtrb::RingBuffer::new(tables.max(1));
    let finished = Arc::new(AtomicBool::new(false));
    (
        WorkerEnd {
            seals: seal_tx,
            commands: cmd_rx,
            returns: return_rx,
            finished: finished.clone(),
        },
        WorkerLink {
            seals: seal_rx,
            commands: cmd_tx,
            returns: return_tx,
            finished,
            pending_table: None,
            merged_finish: false,
        },
    )
}

impl WorkerEnd {
    /// The next command from the exporter, if any (one ring read; call once per burst).
    #[inline]
    pub fn next_command(&mut self) -> Option<WorkerCommand> {
        self.commands.pop().ok()
    }

    /// The next emptied flow table the exporter gave back, if any (one ring read).
    #[inline]
    pub fn next_returned_table(&mut self) -> Option<FlowTable> {
        self.returns.pop().ok()
    }

    /// The seal ring, as the meter's [`SealSink`].
    #[inline]
    pub fn sink(&mut self) -> RingSink<'_> {
        RingSink(&mut self.seals)
    }

    /// Whether the exporter is gone (its ring ends were dropped).
    pub fn exporter_gone(&self) -> bool {
        self.seals.is_abandoned()
    }

    /// Tells the exporter this worker will seal nothing more. Call after the last seal was accepted.
    pub fn mark_finished(&self) {
        self.finished.store(true, Ordering::Release);
    }
}

/// A worker's seal ring as a [`SealSink`]: refuses (never blocks) when the ring is full.
pub struct RingSink<'a>(&'a mut rtrb::Producer<SealedWindow>);

impl SealSink for RingSink<'_> {
    #[inline]
    fn seal(&mut self, window: SealedWindow) -> Result<(), SealedWindow> {
        self.0
            .push(window)
            .map_err(|rtrb::PushError::Full(window)| window)
    }
}

/// Where the exporter writes records.
#[derive(Debug, Clone)]
pub enum ExportSink {
    /// JSON lines on stdout.
    Stdout,
    /// JSON lines appended to a file.
    File(PathBuf),
    /// Batches to the collector.
    Collector(DeliveryConfig),
}

/// Exporter settings.
#[derive(Clone)]
pub struct ExporterConfig {
    /// Region written into records.
    pub region: Option<Arc<str>>,
    /// Destination of records.
    pub sink: ExportSink,
    /// Most records per batch to the collector.
    pub max_batch_records: usize,
    /// Window length, seconds (used to decide when removed ENIs' slots may be reused).
    pub interval_secs: u32,
    /// Runs first on the exporter thread (e.g. to undo the CPU pinning EAL gave the process's threads).
    pub thread_init: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// The control-plane subscription of a live capture.
#[derive(Debug, Clone)]
pub struct ControlWatch {
    /// Control-plane endpoints, in fail-over order (replicas).
    pub endpoints: Vec<String>,
    /// This host's bearer token, sent as `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// This host's name.
    pub host: String,
}

/// A capture change requested through the C ABI.
#[derive(Debug)]
pub enum CaptureChange {
    /// Capture this ENI (replacing one with the same id).
    Add(Eni),
    /// Stop capturing the ENI with this id.
    Remove(String),
}

/// What the exporter did, returned when it ends.
#[derive(Debug, Default, Clone)]
pub struct ExportReport {
    /// Merged windows rendered.
    pub windows: u64,
    /// Records rendered (OK + NODATA + SKIPDATA).
    pub records: u64,
    /// Records whose ENI had no route to a logstore (not delivered).
    pub records_unrouted: u64,
    /// Records the collector acknowledged.
    pub records_acked: u64,
    /// Records given up at shutdown (collector unreachable, no disk spool).
    pub records_abandoned: u64,
    /// Records left in the disk spool at shutdown, for the next run to deliver.
    pub records_persisted: u64,
    /// Records replaced by SKIPDATA sums because the spool overflowed.
    pub records_skipped: u64,
    /// Packets of the records replaced by SKIPDATA sums (the sums carry exactly these).
    pub packets_skipped: u64,
    /// Bytes of the records replaced by SKIPDATA sums.
    pub bytes_skipped: u64,
}

/// A running exporter thread.
pub struct Exporter {
    thread: JoinHandle<anyhow::Result<ExportReport>>,
    changes: mpsc::UnboundedSender<CaptureChange>,
    ready: Arc<Ready>,
    stop: watch::Sender<bool>,
}

impl Exporter {
    /// Starts the exporter thread over the given worker links.
    pub fn spawn(
        config: ExporterConfig,
        capture: CaptureState,
        links: Vec<WorkerLink>,
        control: Option<ControlWatch>,
    ) -> anyhow::Result<Self> {
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let ready = Arc::new(Ready::default());
        if control.is_none() {
            ready.set();
        }
        let thread_ready = ready.clone();
        let thread = std::thread::Builder::new()
            .name("flowlog-exporter".into())
            .spawn(move || {
                if let Some(init) = &config.thread_init {
                    init();
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting the exporter's runtime")?;
                runtime.block_on(run(
                    config,
                    capture,
                    links,
                    control,
                    changes_rx,
                    stop_rx,
                    thread_ready,
                ))
            })
            .context("spawning the exporter thread")?;
        Ok(Self {
            thread,
            changes,
            ready,
            stop,
        })
    }

    /// Waits up to `timeout` until the first capture set from the control plane is applied and pushed to the
    /// workers' command rings. Returns whether it was.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        self.ready.wait(timeout)
    }

    /// Requests a capture change (C ABI); applied within a millisecond or so.
    pub fn change(&self, change: CaptureChange) -> bool {
        self.changes.send(change).is_ok()
    }

    /// Asks the exporter to stop without waiting for the workers (they are gone or stuck), delivering what it has.
    pub fn abort(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits for the exporter to finish: once every worker is finished and everything is rendered and delivered.
    pub fn join(self) -> anyhow::Result<ExportReport> {
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => anyhow::bail!("the exporter thread panicked"),
        }
    }
}

/// A one-shot "ready" flag a thread can wait on.
#[derive(Default)]
struct Ready {
    flag: parking_lot::Mutex<bool>,
    cond: parking_lot::Condvar,
}

impl Ready {
    fn set(&self) {
        *self.flag.lock() = true;
        self.cond.notify_all();
    }

    fn wait(&self, timeout: Duration) -> bool {
        let mut flag = self.flag.lock();
        if !*flag {
            let _ = self.cond.wait_for(&mut flag, timeout);
        }
        *flag
    }
}

/// The exporter's main loop.
async fn run(
    config: ExporterConfig,
    mut capture: CaptureState,
    mut links: Vec<WorkerLink>,
    control: Option<ControlWatch>,
    mut changes: mpsc::UnboundedReceiver<CaptureChange>,
    mut stop: watch::Receiver<bool>,
    ready: Arc<Ready>,
) -> anyhow::Result<ExportReport> {
    let mut report = ExportReport::default();
    let mut merger = WindowMerger::new(links.len());
    let (stop_delivery_tx, stop_delivery_rx) = watch::channel(false);

    let mut output = Output::open(&config, stop_delivery_rx)?;

    let (sets_tx, mut sets) = watch::channel::<Option<proto::CaptureSet>>(None);
    // The (state id, version) of the last capture set applied and pushed to the workers, for the watcher to ack.
    let (applied_tx, applied_rx) = watch::channel::<Option<(String, u64)>>(None);
    let watcher = control.map(|c| tokio::spawn(watch_capture_sets(c, sets_tx, applied_rx)));

    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut aborted = false;
    let mut last_rendered_start = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Ok(()) = sets.changed() => {
                let set = sets.borrow_and_update().clone();
                if let Some(set) = set {
                    match capture.apply_capture_set(&set, wall_secs()) {
                        Ok(changed) => {
                            tracing::info!(version = set.version, enis = capture.table().len(), changed, "capture set applied");
                            publish(&mut links, capture.table());
                            let _ = applied_tx.send(Some((set.state_id.clone(), set.version)));
                            ready.set();
                        }
                        Err(error) => tracing::error!(%error, version = set.version, "capture set refused"),
                    }
                }
            }
            Some(change) = changes.recv() => {
                let now = wall_secs();
                let result = match change {
                    CaptureChange::Add(eni) => capture.add_eni(eni, now),
                    CaptureChange::Remove(id) => capture.remove_eni(&id, now),
                };
                match result {
                    Ok(()) => publish(&mut links, capture.table()),
                    Err(error) => tracing::warn!(%error, "capture change refused"),
                }
            }
            Ok(()) = stop.changed() => aborted = *stop.borrow(),
        }

        for link in &mut links {
            link.push_pending();
        }
        let mut all_finished = true;
        for (index, link) in links.iter_mut().enumerate() {
            // Read the flag before draining: a worker sets it only after its last seal was accepted.
            let finished = link.finished.load(Ordering::Acquire);
            while let Ok(mut window) = link.seals.pop() {
                // Seal by swap: the flows are read out, and the emptied table goes back to the worker.
                if let Some(table) = window.take_table() {
                    // The return ring holds every table the worker owns, so it has room.
                    let _ = link.returns.push(table);
                }
                merger
                    .push(index, window)
                    .context("merging a sealed window")?;
            }
            if (finished || aborted || link.seals.is_abandoned()) && !link.merged_finish {
                merger.finish(index).context("finishing a worker")?;
                link.merged_finish = true;
            }
            all_finished &= link.merged_finish;
        }
        while let Some(window) = merger.pop() {
            last_rendered_start = window.start();
            let rendered = records(&window);
            report.windows += 1;
            report.records += rendered.len() as u64;
            output
                .emit(
                    &config,
                    &capture,
                    (window.start(), window.end()),
                    &rendered,
                    &mut report,
                )
                .await?;
        }
        if last_rendered_start > 0 {
            // No window older than the last rendered one can still be merged: tombstones removed two windows
            // before it are unreferenced.
            capture
                .reclaim(last_rendered_start.saturating_sub(2 * u64::from(config.interval_secs)));
        }
        if all_finished && merger.is_done() {
            break;
        }
    }
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    // From here on the delivery task has its grace period to finish, collector down or not.
    let _ = stop_delivery_tx.send(true);
    output.close(&config, &capture, &mut report).await?;
    Ok(report)
}

impl WorkerLink {
    fn push_pending(&mut self) {
        if let Some(table) = self.pending_table.take()
            && let Err(rtrb::PushError::Full(WorkerCommand::SetEnis(table))) =
                self.commands.push(WorkerCommand::SetEnis(table))
        {
            self.pending_table = Some(table);
        }
    }
}

/// Hands a new table to every worker (the newest replaces one still waiting for ring space).
fn publish(links: &mut [WorkerLink], table: &Arc<EniTable>) {
    for link in links {
        link.pending_table = Some(table.clone());
        link.push_pending();
    }
}

/// The record destination of a running exporter.
enum Output {
    Json {
        writer: Box<dyn Write + Send>,
        text: String,
    },
    Collector {
        batches: mpsc::Sender<Batch>,
        task: tokio::task::JoinHandle<u64>,
        stats: Arc<DeliveryStats>,
        /// One rollup per flow-log interval longer than the workers' interval, created when a route needs it.
        rollups: BTreeMap<u32, Rollup>,
    },
}

impl Output {
    fn open(config: &ExporterConfig, stop: watch::Receiver<bool>) -> anyhow::Result<Self> {
        Ok(match &config.sink {
            ExportSink::Stdout => Output::Json {
                writer: Box::new(std::io::stdout()),
                text: String::new(),
            },
            ExportSink::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                Output::Json {
                    writer: Box::new(std::io::BufWriter::new(file)),
                    text: String::new(),
                }
            }
            ExportSink::Collector(delivery) => {
                let (batches, input) = mpsc::channel(4);
                let stats = Arc::new(DeliveryStats::default());
                let task = tokio::spawn(deliver::run(delivery.clone(), input, stop, stats.clone()));
                Output::Collector {
                    batches,
                    task,
                    stats,
                    rollups: BTreeMap::new(),
                }
            }
        })
    }

    async fn emit(
        &mut self,
        config: &ExporterConfig,
        capture: &CaptureState,
        (start, end): (u64, u64),
        rendered: &[Record],
        report: &mut ExportReport,
    ) -> anyhow::Result<()> {
        let region = config.region.as_deref();
        match self {
            Output::Json { writer, text } => {
                text.clear();
                write_jsonl(rendered, region, text);
                writer
                    .write_all(text.as_bytes())
                    .context("writing records")?;
                writer.flush().context("writing records")?;
            }
            Output::Collector {
                batches, rollups, ..
            } => {
                let base = config.interval_secs;
                report.records_unrouted += rendered
                    .iter()
                    .filter(|r| capture.routes(&r.eni.id).is_empty())
                    .count() as u64;
                send_routed(batches, config, capture, base, rendered).await?;
                for interval in coarse_intervals(capture, rendered, base) {
                    if let std::collections::btree_map::Entry::Vacant(slot) =
                        rollups.entry(interval)
                    {
                        // coarse_intervals only yields multiples of the base interval, which Rollup accepts.
                        slot.insert(Rollup::new(base, interval).context("creating a rollup")?);
                    }
                }
                for (&interval, rollup) in rollups.iter_mut() {
                    rollup
                        .push(start, end, rendered)
                        .context("rolling up a window")?;
                    while let Some(coarse) = rollup.pop() {
                        send_routed(batches, config, capture, interval, &coarse.records).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn close(
        self,
        config: &ExporterConfig,
        capture: &CaptureState,
        report: &mut ExportReport,
    ) -> anyhow::Result<()> {
        match self {
            Output::Json { mut writer, .. } => writer.flush().context("writing records")?,
            Output::Collector {
                batches,
                task,
                stats,
                mut rollups,
            } => {
                // The capture is over: coarse windows still open are delivered as they are (partial).
                for (&interval, rollup) in rollups.iter_mut() {
                    for coarse in rollup.flush() {
                        send_routed(&batches, config, capture, interval, &coarse.records).await?;
                    }
                }
                drop(batches);
                report.records_abandoned = task.await.context("the delivery task failed")?;
                report.records_acked = stats.records_acked.load(Ordering::Relaxed);
                report.records_persisted = stats.records_persisted.load(Ordering::Relaxed);
                report.records_skipped = stats.records_skipped.load(Ordering::Relaxed);
                report.packets_skipped = stats.skipped_packets.load(Ordering::Relaxed);
                report.bytes_skipped = stats.skipped_bytes.load(Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// The interval a route's records are aggregated at: its flow log's interval when that is a longer multiple of
/// the workers' interval, else the workers' interval (a flow log cannot be finer than what the workers meter).
fn effective_interval(route: &Route, base: u32) -> u32 {
    if route.interval_secs > base && route.interval_secs.is_multiple_of(base) {
        route.interval_secs
    } else {
        base
    }
}

/// The coarse intervals the routes of these records' ENIs ask for.
fn coarse_intervals(capture: &CaptureState, rendered: &[Record], base: u32) -> Vec<u32> {
    let mut intervals: Vec<u32> = Vec::new();
    let mut last_eni: Option<&str> = None;
    for record in rendered {
        // Records come sorted by ENI: look each ENI's routes up once.
        if last_eni == Some(&*record.eni.id) {
            continue;
        }
        last_eni = Some(&record.eni.id);
        for route in capture.routes(&record.eni.id) {
            let interval = effective_interval(route, base);
            if interval != base && !intervals.contains(&interval) {
                intervals.push(interval);
            }
        }
    }
    intervals
}

/// Sends `rendered` (records aggregated at `interval`) to every route of their ENI that takes that interval and
/// admits their action, in batches of at most `max_batch_records` per logstore.
async fn send_routed(
    batches: &mpsc::Sender<Batch>,
    config: &ExporterConfig,
    capture: &CaptureState,
    interval: u32,
    rendered: &[Record],
) -> anyhow::Result<()> {
    let region = config.region.as_deref();
    let mut by_logstore: BTreeMap<(Arc<str>, Arc<str>), Vec<proto::Record>> = BTreeMap::new();
    for record in rendered {
        for route in capture.routes(&record.eni.id) {
            if effective_interval(route, config.interval_secs) == interval
                && route.filter.admits(record.action)
            {
                by_logstore
                    .entry((route.project.clone(), route.logstore.clone()))
                    .or_default()
                    .push(to_proto(record, region));
            }
        }
    }
    for ((project, logstore), mut records) in by_logstore {
        while !records.is_empty() {
            let rest = records.split_off(records.len().min(config.max_batch_records));
            let batch = Batch {
                project: project.to_string(),
                logstore: logstore.to_string(),
                records,
            };
            records = rest;
            if batches.send(batch).await.is_err() {
                anyhow::bail!("the delivery task ended early");
            }
        }
    }
    Ok(())
}

/// Follows the host's capture set on the control plane (the contract: `control.proto`, WatchCaptureSet and
/// AckCaptureSet). Each snapshot replaces the previous one in `sets`; each set the exporter reports applied (in
/// `applied`) is acknowledged, which is what turns flow logs Active. On a broken stream or a standby replica it
/// moves to the next endpoint and resumes from the set it holds (the controller sends nothing new if that set is
/// still current), acknowledging the held set again; after a full round without success it backs off. The held
/// set stays applied meanwhile: capture never stops for a control-plane outage.
async fn watch_capture_sets(
    control: ControlWatch,
    sets: watch::Sender<Option<proto::CaptureSet>>,
    mut applied: watch::Receiver<Option<(String, u64)>>,
) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    let mut index = 0usize;
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0usize;
    loop {
        let endpoint = &control.endpoints[index % control.endpoints.len()];
        let held = applied.borrow().clone();
        let mut pause = backoff;
        match watch_session(endpoint, &control, held, &sets, &mut applied).await {
            SessionEnd::Closed => return,
            SessionEnd::Broken { error, received } => {
                if received {
                    backoff = FIRST_BACKOFF;
                    failures = 0;
                }
                tracing::warn!(%endpoint, %error, "control plane watch interrupted; trying the next endpoint");
            }
            SessionEnd::Refused(error) => {
                // A wrong or missing token is configuration, not an outage: say so loudly, keep trying slowly.
                tracing::error!(%endpoint, host = %control.host, %error, "control plane refused this host");
                pause = Duration::from_secs(5);
            }
        }
        index += 1;
        failures += 1;
        if failures >= control.endpoints.len() {
            // A full round of endpoints without success.
            failures = 0;
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// Why a watch session ended.
enum SessionEnd {
    /// The exporter is gone: stop watching.
    Closed,
    /// The endpoint is unreachable, a standby, or the stream broke; `received` = sets arrived first.
    Broken { error: String, received: bool },
    /// The controller refused this host's credentials.
    Refused(String),
}

/// One connection to one endpoint: watch from `held`, forward every set, acknowledge what the exporter applied.
async fn watch_session(
    endpoint: &str,
    control: &ControlWatch,
    held: Option<(String, u64)>,
    sets: &watch::Sender<Option<proto::CaptureSet>>,
    applied: &mut watch::Receiver<Option<(String, u64)>>,
) -> SessionEnd {
    use flowlog_proto::v1::control_client::ControlClient;
    let broken = |error: String| SessionEnd::Broken {
        error,
        received: false,
    };
    let channel = match tonic::transport::Endpoint::from_shared(endpoint.to_string()) {
        Ok(e) => e.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true),
        Err(error) => return SessionEnd::Refused(format!("bad endpoint: {error}")),
    };
    let channel = match channel.connect().await {
        Ok(channel) => channel,
        Err(error) => return broken(error.to_string()),
    };
    let authorization = match &control.token {
        // The token was checked to be printable ASCII when the configuration was read.
        Some(token) => match format!("Bearer {token}")
            .parse::<tonic::metadata::AsciiMetadataValue>()
        {
            Ok(value) => Some(value),
            Err(_) => return SessionEnd::Refused("the host token is not valid in a header".into()),
        },
        None => None,
    };
    let mut client =
        ControlClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            if let Some(value) = &authorization {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            Ok(request)
        });
    let (state_id, known_version) = held.clone().unwrap_or_default();
    let request = proto::WatchCaptureSetRequest {
        host: control.host.clone(),
        state_id,
        known_version,
    };
    let mut stream = match client.watch_capture_set(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return status_end(status, false),
    };
    // A new leader learns acknowledgements only from hosts: acknowledge the held set again.
    if let Some((state_id, version)) = held {
        acknowledge(&mut client, &control.host, state_id, version).await;
    }
    let mut received = false;
    loop {
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(set)) => {
                    received = true;
                    if sets.send(Some(set)).is_err() {
                        return SessionEnd::Closed;
                    }
                }
                Ok(None) => return SessionEnd::Broken { error: "stream ended".into(), received },
                Err(status) => return status_end(status, received),
            },
            changed = applied.changed() => {
                if changed.is_err() {
                    return SessionEnd::Closed;
                }
                let latest = applied.borrow_and_update().clone();
                if let Some((state_id, version)) = latest {
                    acknowledge(&mut client, &control.host, state_id, version).await;
                }
            }
        }
    }
}

/// Acknowledges an applied set; a failure is logged and repaired by the re-acknowledgement after a reconnect.
async fn acknowledge<T>(
    client: &mut flowlog_proto::v1::control_client::ControlClient<T>,
    host: &str,
    state_id: String,
    version: u64,
) where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let request = proto::AckCaptureSetRequest {
        host: host.to_string(),
        state_id,
        version,
    };
    match client.ack_capture_set(request).await {
        Ok(response) if !response.get_ref().accepted => {
            tracing::debug!(
                version,
                "acknowledgement of a set from another controller state ignored"
            );
        }
        Ok(_) => tracing::debug!(version, "capture set acknowledged"),
        Err(status) => {
            tracing::warn!(%status, version, "acknowledging the capture set failed; retried after a reconnect")
        }
    }
}

/// Maps a failed call to how the session ended.
fn status_end(status: tonic::Status, received: bool) -> SessionEnd {
    match status.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            SessionEnd::Refused(status.to_string())
        }
        _ => SessionEnd::Broken {
            error: status.to_string(),
            received,
        },
    }
}

/// Wall-clock Unix seconds (tombstone times; never per packet).
fn wall_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
