//! The log service: durable Project/Logstore storage of flow-log records, gRPC ingest and queries.
//!
//! - [`store`]: the storage boundary (segment files of framed batches, group commit, exactly-once state, crash
//!   recovery, reads). Later issues may change what is under it; nothing else touches files.
//! - [`service`]: the `flowlog.v1.Collector` gRPC service over the store; [`ingest`]: its fast ingest path (batches
//!   stored as received, checked without decoding).
//! - [`config`]: the optional TOML configuration of the `flowlog-collector` binary.
//! - [`names`]: project and logstore naming rules.
//! - [`sql`]: SQL over a logstore (DataFusion), and [`analysis`]: the built-in analyses as SQL.
//! - [`web`]: the web view and its JSON API, served over HTTP.
//! - [`cli`]: the `flowlog` subcommands of the log service, for the `flowlog` binary; [`record_json`] renders a
//!   record as SPEC.md's JSON line.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod cli;
pub mod config;
pub mod ingest;
pub mod names;
pub mod render;
pub mod service;
pub mod sql;
pub mod store;
pub mod web;

pub use render::record_json;
