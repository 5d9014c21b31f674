//! Configuration of the plugin, both as the standalone `flowlog-vswitch` program and as a library instance
//! loaded by a host vSwitch, and the ENI file format shared with `flowlog replay`.
//!
//! Parse, don't validate: [`RawConfig`] mirrors the TOML file (`deny_unknown_fields`, every field documented with
//! its unit and default) and [`Config::parse`] turns it, once, into typed settings that are valid by construction.
//! Example files for every mode live in `vswitch-plugin/config/`; the tests below parse each of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flowlog_dataplane::flow::{Eni, MacAddr};
use serde::Deserialize;

use crate::export::spool::SpoolConfig;

/// Errors in a configuration or ENI file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped fields.
    #[error("{what}: {source}")]
    Syntax {
        /// Which file or text.
        what: String,
        /// The TOML error, with line and column.
        source: toml::de::Error,
    },
    /// A value is out of range or inconsistent with another.
    #[error("{field}: {reason}")]
    Invalid {
        /// The offending field, as written in the file.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
}

/// The configuration file as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    /// Region id written into every record (`region`); none by default, and then records carry no region.
    pub region: Option<String>,
    /// Name of this hypervisor host, as the control plane knows it; default: the system host name.
    pub host: Option<String>,
    /// DPDK EAL settings (standalone program only).
    pub eal: Option<RawEal>,
    /// Ports to poll (standalone program only).
    #[serde(default)]
    pub ports: Vec<RawPort>,
    /// Dataplane settings.
    #[serde(default)]
    pub dataplane: RawDataplane,
    /// Which ENIs to capture and where their records go.
    #[serde(default)]
    pub capture: RawCapture,
    /// Where and how records are delivered.
    #[serde(default)]
    pub export: RawExport,
    /// Run control of the standalone program.
    #[serde(default)]
    pub run: RawRun,
}

/// One endpoint string (commas separate several) or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Endpoints {
    /// `"http://a:7100"` or `"http://a:7100,http://b:7100"`.
    One(String),
    /// `["http://a:7100", "http://b:7100"]`.
    Many(Vec<String>),
}

impl Endpoints {
    fn into_list(self) -> Vec<String> {
        let list = match self {
            Endpoints::One(s) => s.split(',').map(str::to_string).collect(),
            Endpoints::Many(v) => v,
        };
        list.into_iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect()
    }
}

/// `[eal]`: arguments passed through to `rte_eal_init`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawEal {
    /// EAL arguments, e.g. `["-l", "0-1", "--no-huge", "-m", "512", "--vdev=net_pcap0,rx_pcap=x.pcap"]`.
    pub args: Vec<String>,
}

/// `[[ports]]`: one DPDK port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPort {
    /// Device name (`net_pcap0`, a PCI address, ...).
    pub name: String,
    /// RX queues; each is polled by one worker. Default 1.
    pub rx_queues: Option<u16>,
    /// RX descriptors per queue. Default 1024.
    pub rx_descriptors: Option<u16>,
}

/// `[dataplane]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDataplane {
    /// Capture window length in seconds. Default 60.
    pub interval_secs: Option<u32>,
    /// IPv4 flows per worker table (an IPv6 flow counts as two) before SKIPDATA. Default 262144. Memory: about
    /// 43.4 bytes per flow per table, and a worker holds 1 + `spare-tables` tables (262144 flows, 2 spares:
    /// 34 MB per worker).
    pub flow_capacity: Option<usize>,
    /// Pre-faulted spare flow tables per worker, so that a seal is a swap (the exporter returns sealed tables
    /// emptied). Default 2.
    pub spare_tables: Option<usize>,
    /// Mbufs in the packet pool (standalone program). Default 8191.
    pub mbufs: Option<u32>,
    /// Packet clock: `tsc` (wall clock derived from the TSC, read once per burst; default) or `rx-timestamp` (each
    /// packet's RX timestamp, as `net_pcap` stamps it from the capture file: makes a played capture meter exactly
    /// as `flowlog replay` does).
    pub clock: Option<String>,
    /// Sealed windows a worker's ring to the exporter holds. Default 64.
    pub seal_ring: Option<usize>,
    /// Workers of a library instance (the host vSwitch's poll-mode threads). Default 1.
    pub workers: Option<usize>,
}

/// `[capture]`: either `control` or `enis-file` with `project` and `logstore`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCapture {
    /// Control-plane endpoints to watch this host's capture set from, tried in order on fail-over: a list, or one
    /// string with commas, e.g. `"http://10.0.0.1:7100,http://10.0.0.2:7100"`.
    pub control: Option<Endpoints>,
    /// This host's bearer token for the control plane (a `[[host]]` token of its access file).
    pub control_token: Option<String>,
    /// A file holding the host token (first line), instead of `control-token`. Without either, the environment
    /// variable `FLOWLOG_TOKEN` is used if set; else calls carry no token (a controller run with
    /// `--insecure-no-auth`).
    pub control_token_file: Option<PathBuf>,
    /// Static capture: an ENI file (`[[eni]]` tables) whose ENIs are all captured.
    pub enis_file: Option<PathBuf>,
    /// Without `control`: the project every record goes to (with `export.collector`).
    pub project: Option<String>,
    /// Without `control`: the logstore every record goes to.
    pub logstore: Option<String>,
    /// Seconds to wait at start for the first capture set from the control plane. Default 10.
    pub initial_wait_secs: Option<u64>,
}

/// `[export]`: exactly one of `collector` and `jsonl`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawExport {
    /// Collector gRPC endpoint, e.g. `http://127.0.0.1:7000`.
    pub collector: Option<String>,
    /// Write records as JSON lines to this file instead (`-` = stdout).
    pub jsonl: Option<PathBuf>,
    /// Most records per batch sent to the collector. Default 4096.
    pub max_batch_records: Option<usize>,
    /// Most batches in flight (sent, not yet acknowledged). Default 64.
    pub max_unacked_batches: Option<usize>,
    /// Milliseconds to keep delivering after shutdown before spooling to disk or giving up (counted, logged).
    /// Default 15000.
    pub shutdown_grace_ms: Option<u64>,
    /// Bytes of unacknowledged batches kept in memory before spilling to disk (at least one batch is always
    /// taken). Default 67108864 (64 MiB).
    pub spool_memory_bytes: Option<usize>,
    /// Directory of the disk spool (batches beyond memory, and what is unacknowledged at shutdown, for the next
    /// run). Default: none (memory only; overflow becomes SKIPDATA, and shutdown leftovers are counted as lost).
    pub spool_dir: Option<PathBuf>,
    /// Bytes of batches the disk spool holds before overflow becomes SKIPDATA. Default 1073741824 (1 GiB).
    pub spool_disk_bytes: Option<u64>,
    /// CPUs the exporter thread (and the threads it starts) runs on, in Linux CPU-list form (`"0"`, `"2-3,8"`).
    /// Default: for `flowlog-vswitch`, the CPUs the process had minus the worker lcores'; for a library instance,
    /// every CPU the host process had (the plugin cannot know the host's poll-mode cores: name them out here).
    pub cpus: Option<String>,
}

/// `[run]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRun {
    /// Stop once every RX queue has been idle this many milliseconds after traffic was seen (playing a capture);
    /// 0 = run until SIGINT/SIGTERM. Default 0.
    pub stop_when_idle_ms: Option<u64>,
    /// Write the live counters (per worker and total, JSON) to this file every `stats-interval-ms`, replacing it
    /// atomically. Default: none.
    pub stats_file: Option<PathBuf>,
    /// Milliseconds between two stats-file writes and two counter log lines. Default 1000.
    pub stats_interval_ms: Option<u64>,
}

/// Typed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Region written into records, if any.
    pub region: Option<Arc<str>>,
    /// This host's name.
    pub host: String,
    /// EAL arguments (standalone program).
    pub eal_args: Vec<String>,
    /// Ports (standalone program).
    pub ports: Vec<PortConfig>,
    /// Window length, seconds.
    pub interval_secs: u32,
    /// IPv4 flows per worker table (IPv6 counts two).
    pub flow_capacity: usize,
    /// Spare tables per worker.
    pub spare_tables: usize,
    /// Mbufs in the pool.
    pub mbufs: u32,
    /// Packet clock.
    pub clock: Clock,
    /// Seal ring capacity.
    pub seal_ring: usize,
    /// Workers of a library instance.
    pub workers: usize,
    /// What to capture.
    pub capture: Capture,
    /// Where records go.
    pub sink: Sink,
    /// Most records per batch.
    pub max_batch_records: usize,
    /// Most batches in flight.
    pub max_unacked_batches: usize,
    /// Delivery grace at shutdown.
    pub shutdown_grace: Duration,
    /// Where unacknowledged batches wait.
    pub spool: SpoolConfig,
    /// CPUs of the exporter thread, if configured (`export.cpus`), in increasing order, each below
    /// [`MAX_CPUS`].
    pub exporter_cpus: Option<Vec<usize>>,
    /// Idle stop (standalone program).
    pub stop_when_idle: Option<Duration>,
    /// Live counters file (standalone program).
    pub stats_file: Option<PathBuf>,
    /// Period of the live counters.
    pub stats_interval: Duration,
}

/// One port of the standalone program.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// Device name.
    pub name: String,
    /// RX queues.
    pub rx_queues: u16,
    /// RX descriptors per queue.
    pub rx_descriptors: u16,
}

/// The source of packet time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Wall clock derived from the TSC, once per burst.
    Tsc,
    /// Each packet's RX timestamp (nanoseconds) from the mbuf.
    RxTimestamp,
}

/// What to capture.
#[derive(Debug, Clone)]
pub enum Capture {
    /// Follow the control plane's capture set for this host.
    Control {
        /// Control-plane endpoints, in fail-over order.
        endpoints: Vec<String>,
        /// This host's bearer token, if any.
        token: Option<String>,
        /// How long to wait for the first capture set.
        initial_wait: Duration,
    },
    /// A fixed set of ENIs, all delivered to one logstore (or to the JSON sink).
    Static {
        /// The ENIs.
        enis: Vec<Eni>,
        /// Destination, when delivering to a collector.
        destination: Option<(String, String)>,
    },
    /// Nothing until the host registers ENIs through the C ABI; they are all delivered to one logstore (or to
    /// the JSON sink).
    Manual {
        /// Destination, when delivering to a collector.
        destination: Option<(String, String)>,
    },
}

/// Where records go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// The collector over gRPC.
    Collector {
        /// gRPC endpoint.
        endpoint: String,
    },
    /// JSON lines on stdout.
    Stdout,
    /// JSON lines appended to a file.
    File(PathBuf),
}

impl Config {
    /// Reads and converts a configuration file; relative paths in it are taken relative to the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base)
    }

    /// Converts configuration text; `what` names it in errors, `base` anchors relative paths.
    pub fn parse(text: &str, what: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Syntax {
            what: what.to_string(),
            source,
        })?;
        Self::from_raw(raw, base)
    }

    /// Converts a raw configuration.
    pub fn from_raw(raw: RawConfig, base: &Path) -> Result<Self, ConfigError> {
        let dp = raw.dataplane;
        let interval_secs = dp.interval_secs.unwrap_or(60);
        if interval_secs == 0 || interval_secs > 86_400 {
            return Err(invalid(
                "dataplane.interval-secs",
                "must be 1 to 86400 seconds",
            ));
        }
        let flow_capacity = dp.flow_capacity.unwrap_or(262_144);
        if !(16..=(1 << 28)).contains(&flow_capacity) {
            return Err(invalid(
                "dataplane.flow-capacity",
                "must be 16 to 268435456 flows",
            ));
        }
        let spare_tables = dp.spare_tables.unwrap_or(2);
        if !(1..=16).contains(&spare_tables) {
            return Err(invalid("dataplane.spare-tables", "must be 1 to 16"));
        }
        let mbufs = dp.mbufs.unwrap_or(8191);
        if mbufs < 512 {
            return Err(invalid("dataplane.mbufs", "must be at least 512"));
        }
        let clock = match dp.clock.as_deref() {
            None | Some("tsc") => Clock::Tsc,
            Some("rx-timestamp") => Clock::RxTimestamp,
            Some(other) => {
                return Err(invalid(
                    "dataplane.clock",
                    format!("`{other}`: expected `tsc` or `rx-timestamp`"),
                ));
            }
        };
        let seal_ring = dp.seal_ring.unwrap_or(64);
        if !(2..=65_536).contains(&seal_ring) {
            return Err(invalid("dataplane.seal-ring", "must be 2 to 65536 windows"));
        }
        let workers = dp.workers.unwrap_or(1);
        if !(1..=128).contains(&workers) {
            return Err(invalid("dataplane.workers", "must be 1 to 128"));
        }

        let mut ports = Vec::new();
        for port in raw.ports {
            let rx_queues = port.rx_queues.unwrap_or(1);
            if rx_queues == 0 {
                return Err(invalid("ports.rx-queues", "must be at least 1"));
            }
            let rx_descriptors = port.rx_descriptors.unwrap_or(1024);
            if !rx_descriptors.is_power_of_two() || rx_descriptors < 64 {
                return Err(invalid(
                    "ports.rx-descriptors",
                    "must be a power of two, at least 64",
                ));
            }
            ports.push(PortConfig {
                name: port.name,
                rx_queues,
                rx_descriptors,
            });
        }

        let cap = raw.capture;
        let destination = match (cap.project, cap.logstore) {
            (Some(p), Some(l)) => Some((p, l)),
            (None, None) => None,
            _ => return Err(invalid("capture", "`project` and `logstore` go together")),
        };
        let capture = match (cap.control, cap.enis_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "capture",
                    "give either `control` or `enis-file`, not both",
                ));
            }
            (Some(_), None) if destination.is_some() => {
                return Err(invalid(
                    "capture",
                    "with `control`, destinations come from the flow logs: drop `project` and `logstore`",
                ));
            }
            (Some(endpoints), None) => {
                let endpoints = endpoints.into_list();
                if endpoints.is_empty() {
                    return Err(invalid("capture.control", "no endpoint given"));
                }
                let token = match (cap.control_token_file, cap.control_token) {
                    (Some(_), Some(_)) => {
                        return Err(invalid(
                            "capture",
                            "give either `control-token` or `control-token-file`, not both",
                        ));
                    }
                    (Some(file), None) => {
                        let path = base.join(file);
                        let text = std::fs::read_to_string(&path)
                            .map_err(|source| ConfigError::Read { path, source })?;
                        Some(text.lines().next().unwrap_or_default().trim().to_string())
                    }
                    (None, Some(token)) => Some(token),
                    (None, None) => std::env::var("FLOWLOG_TOKEN").ok(),
                };
                if let Some(token) = &token
                    && (token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
                {
                    return Err(invalid(
                        "capture.control-token",
                        "must be printable ASCII without spaces",
                    ));
                }
                Capture::Control {
                    endpoints,
                    token,
                    initial_wait: Duration::from_secs(cap.initial_wait_secs.unwrap_or(10)),
                }
            }
            (None, Some(file)) => Capture::Static {
                enis: load_enis(&base.join(file))?,
                destination,
            },
            (None, None) => Capture::Manual { destination },
        };

        let ex = raw.export;
        let sink = match (ex.collector, ex.jsonl) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "export",
                    "give either `collector` or `jsonl`, not both",
                ));
            }
            (Some(endpoint), None) => Sink::Collector { endpoint },
            (None, Some(path)) if path.as_os_str() == "-" => Sink::Stdout,
            (None, Some(path)) => Sink::File(base.join(path)),
            (None, None) => Sink::Stdout,
        };
        if let (
            Sink::Collector { .. },
            Capture::Static {
                destination: None, ..
            }
            | Capture::Manual { destination: None },
        ) = (&sink, &capture)
        {
            return Err(invalid(
                "capture",
                "delivering to a collector without `control` needs `project` and `logstore`",
            ));
        }
        let max_batch_records = ex.max_batch_records.unwrap_or(4096);
        if !(1..=1_000_000).contains(&max_batch_records) {
            return Err(invalid("export.max-batch-records", "must be 1 to 1000000"));
        }
        let max_unacked_batches = ex.max_unacked_batches.unwrap_or(64);
        if !(1..=65_536).contains(&max_unacked_batches) {
            return Err(invalid("export.max-unacked-batches", "must be 1 to 65536"));
        }

        let exporter_cpus = ex
            .cpus
            .as_deref()
            .map(parse_cpu_list)
            .transpose()
            .map_err(|reason| invalid("export.cpus", reason))?;

        let host = match raw.host {
            Some(h) if !h.is_empty() => h,
            Some(_) => return Err(invalid("host", "must not be empty")),
            None => system_host_name(),
        };
        let stop_when_idle = match raw.run.stop_when_idle_ms.unwrap_or(0) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
        let stats_interval = Duration::from_millis(raw.run.stats_interval_ms.unwrap_or(1000));
        if stats_interval < Duration::from_millis(10) {
            return Err(invalid("run.stats-interval-ms", "must be at least 10"));
        }
        Ok(Self {
            stats_file: raw.run.stats_file.map(|p| base.join(p)),
            stats_interval,
            region: raw.region.map(Arc::from),
            host,
            eal_args: raw.eal.map(|e| e.args).unwrap_or_default(),
            ports,
            interval_secs,
            flow_capacity,
            spare_tables,
            mbufs,
            clock,
            seal_ring,
            workers,
            capture,
            sink,
            max_batch_records,
            max_unacked_batches,
            shutdown_grace: Duration::from_millis(ex.shutdown_grace_ms.unwrap_or(15_000)),
            spool: SpoolConfig {
                memory_bytes: ex.spool_memory_bytes.unwrap_or(64 << 20),
                disk_dir: ex.spool_dir.map(|d| base.join(d)),
                disk_bytes: ex.spool_disk_bytes.unwrap_or(1 << 30),
                segment_bytes: 16 << 20,
                max_ledger_entries: 1_000_000,
            },
            stop_when_idle,
            exporter_cpus,
        })
    }
}

/// Most CPUs a CPU list may name: ids 0 to `MAX_CPUS - 1` (glibc's `CPU_SETSIZE`, what a thread's affinity mask
/// holds).
pub const MAX_CPUS: usize = 1024;

/// Parses a Linux CPU list (`"0-3,8,10-11"`: CPU ids and inclusive ranges, separated by commas; spaces around
/// items allowed), as `isolcpus`, `taskset -c` and `/sys/devices/system/cpu/online` write them. Returns the CPUs
/// in increasing order, each once.
///
/// # Errors
/// A description of the first problem: an empty list or item, a non-number, a range whose end is below its
/// start, or a CPU id of [`MAX_CPUS`] or more.
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>, String> {
    let mut cpus = std::collections::BTreeSet::new();
    let cpu = |text: &str| -> Result<usize, String> {
        let cpu: usize = text
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` in `{list}` is not a CPU id"))?;
        if cpu >= MAX_CPUS {
            return Err(format!("CPU {cpu} is not below {MAX_CPUS}"));
        }
        Ok(cpu)
    };
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!("`{list}` has an empty item"));
        }
        let (first, last) = match item.split_once('-') {
            Some((first, last)) => (cpu(first)?, cpu(last)?),
            None => {
                let one = cpu(item)?;
                (one, one)
            }
        };
        if last < first {
            return Err(format!("range `{item}` ends below its start"));
        }
        cpus.extend(first..=last);
    }
    Ok(cpus.into_iter().collect())
}

/// The ENI file as written: `[[eni]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEniFile {
    #[serde(default)]
    eni: Vec<RawEni>,
}

/// One `[[eni]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawEni {
    id: String,
    mac: String,
    vm_id: String,
    vswitch_id: String,
    vpc_id: String,
    account_id: String,
}

/// Reads an ENI file (`[[eni]]` tables with `id`, `mac`, `vm-id`, `vswitch-id`, `vpc-id`, `account-id`).
pub fn load_enis(path: &Path) -> Result<Vec<Eni>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_enis(&text, &path.display().to_string())
}

/// Parses ENI file text; `what` names it in errors.
pub fn parse_enis(text: &str, what: &str) -> Result<Vec<Eni>, ConfigError> {
    let raw: RawEniFile = toml::from_str(text).map_err(|source| ConfigError::Syntax {
        what: what.to_string(),
        source,
    })?;
    raw.eni
        .into_iter()
        .map(|e| {
            let mac: MacAddr = e.mac.parse().map_err(|_| {
                invalid(
                    "eni.mac",
                    format!("`{}` of {} is not a MAC address", e.mac, e.id),
                )
            })?;
            if e.id.is_empty() {
                return Err(invalid("eni.id", "must not be empty".to_string()));
            }
            Ok(Eni::new(
                e.id.as_str(),
                mac,
                e.vm_id.as_str(),
                e.vswitch_id.as_str(),
                e.vpc_id.as_str(),
                e.account_id.as_str(),
            ))
        })
        .collect()
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The system's host name, or `localhost` when it cannot be read.
fn system_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    #[test]
    fn every_example_configuration_parses() {
        let dir = tempfile::tempdir().unwrap();
        // The static example names an ENI file relative to itself.
        std::fs::write(
            dir.path().join("enis.toml"),
            "[[eni]]\nid = \"eni-1\"\nmac = \"02:00:00:00:00:01\"\nvm-id = \"i-1\"\nvswitch-id = \"vsw-1\"\nvpc-id = \"vpc-1\"\naccount-id = \"1\"\n",
        )
        .unwrap();
        for name in [
            "pcap-static.toml",
            "nic-control.toml",
            "library-instance.toml",
            "replay-jsonl.toml",
        ] {
            let text = std::fs::read_to_string(examples().join(name)).unwrap();
            let config =
                Config::parse(&text, name, dir.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
            match name {
                "pcap-static.toml" => {
                    assert_eq!(config.clock, Clock::RxTimestamp);
                    assert!(
                        matches!(&config.capture, Capture::Static { enis, destination: Some(_) } if enis.len() == 1)
                    );
                    assert!(matches!(config.sink, Sink::Collector { .. }));
                    assert_eq!(config.stop_when_idle, Some(Duration::from_secs(1)));
                }
                "nic-control.toml" => {
                    assert!(matches!(config.capture, Capture::Control { .. }));
                    assert_eq!(config.ports[0].rx_queues, 3);
                }
                "library-instance.toml" => {
                    assert_eq!(config.workers, 2);
                    assert_eq!(config.exporter_cpus, Some(vec![0]));
                    assert!(matches!(
                        config.capture,
                        Capture::Manual {
                            destination: Some(_)
                        }
                    ));
                }
                _ => assert!(matches!(config.sink, Sink::File(_))),
            }
        }
    }

    #[test]
    fn bad_configurations_are_refused_with_the_field_named() {
        let base = Path::new(".");
        let cases = [
            (
                "[dataplane]\ninterval-secs = 0\n",
                "dataplane.interval-secs",
            ),
            ("[dataplane]\nclock = \"sundial\"\n", "dataplane.clock"),
            ("[export]\ncpus = \"\"\n", "export.cpus"),
            ("[export]\ncpus = \"3-1\"\n", "export.cpus"),
            ("[export]\ncpus = \"0,,1\"\n", "export.cpus"),
            ("[export]\ncpus = \"1024\"\n", "export.cpus"),
            ("[export]\ncpus = \"one\"\n", "export.cpus"),
            (
                "[dataplane]\nflow-capacity = 3\n",
                "dataplane.flow-capacity",
            ),
            (
                "[[ports]]\nname = \"p\"\nrx-descriptors = 1000\n",
                "ports.rx-descriptors",
            ),
            (
                "[capture]\ncontrol = \"http://c\"\nenis-file = \"x\"\n",
                "capture",
            ),
            (
                "[capture]\ncontrol = \"http://c\"\nproject = \"p\"\nlogstore = \"l\"\n",
                "capture",
            ),
            ("[capture]\nproject = \"p\"\n", "capture"),
            ("[export]\ncollector = \"http://c\"\n", "capture"),
            (
                "[export]\ncollector = \"http://c\"\njsonl = \"x\"\n",
                "export",
            ),
            ("host = \"\"\n", "host"),
        ];
        for (text, field) in cases {
            match Config::parse(text, "test", base) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text}: expected an error on {field}, got {other:?}"),
            }
        }
        assert!(matches!(
            Config::parse("bogus = 1\n", "test", base),
            Err(ConfigError::Syntax { .. })
        ));
        assert!(matches!(
            Config::parse("[dataplane]\nintervalsecs = 1\n", "t", base),
            Err(ConfigError::Syntax { .. })
        ));
    }

    #[test]
    fn cpu_lists_parse_like_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0"), Ok(vec![0]));
        assert_eq!(parse_cpu_list("2-3,8"), Ok(vec![2, 3, 8]));
        assert_eq!(parse_cpu_list(" 5 , 1-2 ,2"), Ok(vec![1, 2, 5]));
        assert_eq!(parse_cpu_list("1023"), Ok(vec![1023]));
        assert_eq!(parse_cpu_list("4-4"), Ok(vec![4]));
        for bad in [
            "", " ", "1,", "-1", "1-", "3-1", "a", "1-b", "0x1", "1024", "0-1024",
        ] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?}");
        }
        // The machine's own list parses (the form is the kernel's).
        if let Ok(online) = std::fs::read_to_string("/sys/devices/system/cpu/online") {
            let cpus = parse_cpu_list(online.trim()).unwrap();
            assert!(cpus.contains(&0), "{online}");
        }
    }

    #[test]
    fn eni_files_parse_and_bad_macs_are_named() {
        let enis = parse_enis(
            "[[eni]]\nid = \"eni-1\"\nmac = \"02:00:00:e1:00:0a\"\nvm-id = \"i\"\nvswitch-id = \"s\"\nvpc-id = \"v\"\naccount-id = \"a\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(enis[0].mac.to_string(), "02:00:00:e1:00:0a");
        let error = parse_enis(
            "[[eni]]\nid = \"eni-1\"\nmac = \"nope\"\nvm-id = \"i\"\nvswitch-id = \"s\"\nvpc-id = \"v\"\naccount-id = \"a\"\n",
            "t",
        )
        .unwrap_err();
        assert!(error.to_string().contains("nope"), "{error}");
    }
}
