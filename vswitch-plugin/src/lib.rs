//! The vSwitch plugin: DPDK poll-mode workers that meter every flow of every captured ENI, an exporter thread
//! that turns sealed windows into records and delivers them, the C ABI a host vSwitch loads, and offline replay.
//!
//! Code map (ARCHITECTURE.md has the whole picture):
//! - [`worker`]: a worker = the dataplane's meter + its rings to the exporter, driven by every packet source.
//! - [`export`]: the exporter thread (merge, render, deliver) and [`export::deliver`] (gRPC to the collector).
//! - [`capture`]: which ENIs are captured and where their records go.
//! - [`replay`]: offline replay of a pcap; [`pcap`]: the reader.
//! - [`config`]: configuration and the ENI file.
//! - [`dpdk`]: the safe layer over DPDK (all `unsafe` lives there and in `ffi`).

pub mod capture;
pub mod config;
pub mod dpdk;
pub mod export;
pub mod ffi;
pub mod instance;
pub mod pcap;
pub mod replay;
pub mod standalone;
pub mod stats;
pub mod worker;
