//! The collector's optional configuration file (TOML), parsed once into typed settings.
//!
//! Every key is optional; an unknown key is an error. See `collector/config/collector.example.toml` for a file
//! with every key at its default.
//!
//! # Guarantees
//! A [`Config`] holds only values in range: [`Config::from_raw`] refuses the rest with a message naming the key.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::store::{MaintenanceConfig, StoreConfig, frame::MAX_PAYLOAD_LEN};

/// Errors reading the configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The file is not valid TOML for this schema (syntax, unknown key, wrong type).
    #[error("config file {path}: {error}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        error: toml::de::Error,
    },
    /// A value is out of range.
    #[error("config key {key}: {message}")]
    Range {
        /// The key.
        key: &'static str,
        /// What is allowed.
        message: String,
    },
}

/// The file as written. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    /// Size at which a segment file is closed and a new one started, in bytes. Default 16777216 (16 MiB); at
    /// least 1024.
    pub segment_bytes: Option<u64>,
    /// Most bytes of batches written per fsync (group commit), in bytes. Default 8388608 (8 MiB); at least 1.
    pub group_commit_bytes: Option<u64>,
    /// Most batches remembered per exporter above its contiguous acknowledged sequence, in batches. Default 65536;
    /// at least 1.
    pub dedup_window: Option<u64>,
    /// Largest ingest batch message accepted, in bytes. Default 16777216 (16 MiB); 1024 to 67108864.
    pub max_message_bytes: Option<u64>,
    /// Records per query response message, in records. Default 1000; 1 to 100000.
    pub query_page_records: Option<u64>,
    /// Batches of one ingest stream in flight (received, not yet acknowledged), in batches. Default 64; 1 to 4096.
    pub max_in_flight_batches: Option<u64>,
    /// After SIGTERM/SIGINT, how long open streams may take to finish before the collector stops anyway, in
    /// seconds. Default 5; at most 3600.
    pub shutdown_grace_seconds: Option<u64>,
    /// Whether a batch for an unknown project or logstore creates it (with `default-retention-hours`); when
    /// false, such a batch ends the ingest stream with NOT_FOUND. Default true.
    pub auto_create_logstores: Option<bool>,
    /// Retention of logstores created by ingest or found without settings, in hours; 0 = forever. Default 0.
    pub default_retention_hours: Option<u32>,
    /// How often the maintenance task (conversion to Parquet, compaction, retention) runs, in seconds. Default
    /// 5; 1 to 3600.
    pub maintenance_interval_seconds: Option<u64>,
    /// Write-ahead-log data older than this is converted to Parquet, in seconds. Default 60; at most 86400.
    pub convert_after_seconds: Option<u64>,
    /// Closed write-ahead-log segments holding this many bytes are converted without waiting, in bytes. Default
    /// 67108864 (64 MiB); at least 1.
    pub convert_bytes: Option<u64>,
    /// An hour's Parquet files are merged once the hour ended this long ago, in seconds. Default 600; at most
    /// 604800.
    pub compact_after_seconds: Option<u64>,
    /// Most records per file written by compaction, in records. Default 16777216; at least 1.
    pub compact_file_records: Option<u64>,
    /// Most rows a SQL query returns (requests may ask for fewer), in rows. Default 100000; 1 to 100000000.
    pub sql_max_rows: Option<u64>,
    /// Memory one SQL query may use for sorting, grouping and joining, in bytes. Default 2147483648 (2 GiB);
    /// at least 16777216.
    pub sql_memory_bytes: Option<u64>,
}

/// The settings, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Storage settings.
    pub store: StoreConfig,
    /// Largest ingest batch message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Records per query response message.
    pub query_page_records: usize,
    /// Batches of one ingest stream in flight.
    pub max_in_flight_batches: usize,
    /// Time open streams get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Most rows a SQL query returns.
    pub sql_max_rows: u64,
    /// Memory one SQL query may use, in bytes.
    pub sql_memory_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        // The defaults are in range by construction; this cannot fail (a unit test checks it).
        Config::from_raw(&RawConfig::default()).unwrap_or(Config {
            store: StoreConfig {
                segment_bytes: 16 << 20,
                group_commit_bytes: 8 << 20,
                dedup_window: 65536,
                auto_create_logstores: true,
                default_retention_hours: 0,
                maintenance: MaintenanceConfig {
                    interval: Duration::from_secs(5),
                    convert_after: Duration::from_secs(60),
                    convert_bytes: 64 << 20,
                    compact_after: Duration::from_secs(600),
                    file_records: 16 << 20,
                },
            },
            max_message_bytes: 16 << 20,
            query_page_records: 1000,
            max_in_flight_batches: 64,
            shutdown_grace: Duration::from_secs(5),
            sql_max_rows: 100_000,
            sql_memory_bytes: 2 << 30,
        })
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: shown.clone(),
            error,
        })?;
        Config::parse(&text, &shown)
    }

    /// Parses and checks configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: origin.to_owned(),
            error,
        })?;
        Config::from_raw(&raw)
    }

    /// Checks the raw values and applies defaults.
    pub fn from_raw(raw: &RawConfig) -> Result<Config, ConfigError> {
        let max_payload = MAX_PAYLOAD_LEN as u64;
        Ok(Config {
            store: StoreConfig {
                segment_bytes: ranged(
                    "segment-bytes",
                    raw.segment_bytes,
                    16 << 20,
                    1024,
                    u64::MAX,
                )?,
                group_commit_bytes: to_usize(ranged(
                    "group-commit-bytes",
                    raw.group_commit_bytes,
                    8 << 20,
                    1,
                    u64::MAX,
                )?),
                dedup_window: to_usize(ranged(
                    "dedup-window",
                    raw.dedup_window,
                    65536,
                    1,
                    1 << 32,
                )?),
                auto_create_logstores: raw.auto_create_logstores.unwrap_or(true),
                default_retention_hours: raw.default_retention_hours.unwrap_or(0),
                maintenance: MaintenanceConfig {
                    interval: Duration::from_secs(ranged(
                        "maintenance-interval-seconds",
                        raw.maintenance_interval_seconds,
                        5,
                        1,
                        3600,
                    )?),
                    convert_after: Duration::from_secs(ranged(
                        "convert-after-seconds",
                        raw.convert_after_seconds,
                        60,
                        0,
                        86_400,
                    )?),
                    convert_bytes: ranged(
                        "convert-bytes",
                        raw.convert_bytes,
                        64 << 20,
                        1,
                        u64::MAX,
                    )?,
                    compact_after: Duration::from_secs(ranged(
                        "compact-after-seconds",
                        raw.compact_after_seconds,
                        600,
                        0,
                        604_800,
                    )?),
                    file_records: ranged(
                        "compact-file-records",
                        raw.compact_file_records,
                        16 << 20,
                        1,
                        u64::MAX,
                    )?,
                },
            },
            max_message_bytes: to_usize(ranged(
                "max-message-bytes",
                raw.max_message_bytes,
                16 << 20,
                1024,
                max_payload,
            )?),
            query_page_records: to_usize(ranged(
                "query-page-records",
                raw.query_page_records,
                1000,
                1,
                100_000,
            )?),
            max_in_flight_batches: to_usize(ranged(
                "max-in-flight-batches",
                raw.max_in_flight_batches,
                64,
                1,
                4096,
            )?),
            shutdown_grace: Duration::from_secs(ranged(
                "shutdown-grace-seconds",
                raw.shutdown_grace_seconds,
                5,
                0,
                3600,
            )?),
            sql_max_rows: ranged("sql-max-rows", raw.sql_max_rows, 100_000, 1, 100_000_000)?,
            sql_memory_bytes: to_usize(ranged(
                "sql-memory-bytes",
                raw.sql_memory_bytes,
                2 << 30,
                16 << 20,
                u64::MAX,
            )?),
        })
    }
}

fn ranged(
    key: &'static str,
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let value = value.unwrap_or(default);
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Range {
            key,
            message: format!("{value} is outside {min}..={max}"),
        })
    }
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Config::from_raw(&RawConfig::default()).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.query_page_records, 1000);
        assert_eq!(config.store.segment_bytes, 16 << 20);
    }

    #[test]
    fn example_file_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/collector.example.toml");
        assert_eq!(Config::load(&path).unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let err = Config::parse("segment-byte = 10", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("segment-byte"), "{err}");
        let err = Config::parse("segment-bytes = 10", "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("segment-bytes") && err.contains("1024"),
            "{err}"
        );
        assert!(Config::parse("dedup-window = \"big\"", "t").is_err());
        let config =
            Config::parse("query-page-records = 7\nshutdown-grace-seconds = 0", "t").unwrap();
        assert_eq!(config.query_page_records, 7);
        assert_eq!(config.shutdown_grace, Duration::ZERO);
    }
}
