//! The log service: durable Project/Logstore storage of flow-log records, gRPC ingest and queries.
//!
//! - [`store`]: the storage boundary (segment files of framed batches, group commit, exactly-once state, crash
//!   recovery, reads). Later issues may change what is under it; nothing else touches files.
//! - [`service`]: the `flowlog.v1.Collector` gRPC service over the store.
//! - [`config`]: the optional TOML configuration of the `flowlog-collector` binary.
//! - [`names`]: project and logstore naming rules.
//! - [`cli`]: `flowlog query` and `flowlog top`, for the `flowlog` binary; [`record_json`] renders a record as
//!   SPEC.md's JSON line.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod names;
pub mod render;
pub mod service;
pub mod store;

pub use render::record_json;
