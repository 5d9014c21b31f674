//! Assembles a running pipeline from a [`Config`]: the capture state, one [`Worker`] per packet source, their
//! rings, and the exporter thread. The standalone program and the C ABI both start from here, so they behave
//! the same way; replay assembles the same parts by hand (its clock and ENIs come from files).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use std::hash::BuildHasher;

use flowlog_dataplane::flow::{Meter, MeterConfig, SpareTableFallback};

use crate::capture::CaptureState;
use crate::config::{Capture, Config, Sink};
use crate::dpdk;
use crate::export::deliver::DeliveryConfig;
use crate::export::{ControlWatch, ExportSink, Exporter, ExporterConfig, link};
use crate::replay::exporter_id;
use crate::worker::Worker;

/// A started pipeline: the exporter is running; the workers wait for a packet source to drive them.
pub struct Pipeline {
    /// The exporter thread.
    pub exporter: Exporter,
    /// One worker per packet source (RX queue, or host thread of the C ABI).
    pub workers: Vec<Worker>,
}

/// Starts the exporter and builds `workers` workers. The exporter thread first places itself: on
/// `exporter_cpus` when given, else back on every CPU the process had before EAL pinned the thread that
/// created it (a worker lcore's, the main lcore's, or a host's); then it logs where it runs.
pub fn start(
    config: &Config,
    workers: usize,
    exporter_cpus: Option<Vec<usize>>,
) -> anyhow::Result<Pipeline> {
    let (capture, control) = match &config.capture {
        Capture::Static { enis, destination } => (
            CaptureState::fixed(enis.clone(), destination.clone())?,
            None,
        ),
        Capture::Control {
            endpoints, token, ..
        } => (
            CaptureState::fixed(Vec::new(), None)?,
            Some(ControlWatch {
                endpoints: endpoints.clone(),
                token: token.clone(),
                host: config.host.clone(),
            }),
        ),
        Capture::Manual { destination } => {
            (CaptureState::fixed(Vec::new(), destination.clone())?, None)
        }
    };
    let sink = match &config.sink {
        Sink::Stdout => ExportSink::Stdout,
        Sink::File(path) => ExportSink::File(path.clone()),
        Sink::Collector { endpoint } => ExportSink::Collector(DeliveryConfig {
            endpoint: endpoint.clone(),
            exporter_id: exporter_id(&format!("vswitch-{}", config.host)),
            max_unacked: config.max_unacked_batches,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            shutdown_grace: config.shutdown_grace,
            spool: config.spool.clone(),
        }),
    };
    let mut links = Vec::with_capacity(workers);
    let mut built = Vec::with_capacity(workers);
    let seeds = std::collections::hash_map::RandomState::new();
    for index in 0..workers {
        let meter_config = MeterConfig {
            spare_tables: config.spare_tables,
            // The return ring is wired: with no spare table free, summarise (exact SKIPDATA, O(ENIs)) rather
            // than copy the flows out on the worker.
            when_no_spare_table: SpareTableFallback::SkipData,
            // A seed per worker and per run, against hash flooding; independent of the NIC's RSS hash.
            hash_seed: seeds.hash_one(index),
            ..MeterConfig::new(config.interval_secs, config.flow_capacity)
        };
        let meter = Meter::new(meter_config, capture.table().clone())
            .context("configuring a worker's meter")?;
        let (end, link) = link(config.seal_ring, config.spare_tables + 1);
        links.push(link);
        built.push(Worker::new(meter, end));
    }
    let exporter = Exporter::spawn(
        ExporterConfig {
            region: config.region.clone(),
            sink,
            max_batch_records: config.max_batch_records,
            interval_secs: config.interval_secs,
            thread_init: Some(Arc::new(move || place_exporter(exporter_cpus.as_deref()))),
        },
        capture,
        links,
        control,
    )?;
    Ok(Pipeline {
        exporter,
        workers: built,
    })
}

/// Puts the calling (exporter) thread on `cpus`, or on every CPU the process had before EAL when `None`, and logs
/// the CPUs it ends up on.
fn place_exporter(cpus: Option<&[usize]>) {
    let placed = match cpus {
        Some(cpus) => dpdk::pin_current_thread(cpus),
        None => dpdk::unpin_current_thread(),
    };
    if let Err(error) = placed {
        tracing::warn!(%error, "exporter thread: cannot leave the CPUs it inherited");
    }
    match dpdk::current_thread_cpus() {
        Ok(cpus) => tracing::info!(?cpus, "exporter thread placed"),
        Err(error) => tracing::warn!(%error, "cannot read the exporter thread's CPUs"),
    }
}
