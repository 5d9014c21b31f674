//! Sans-IO flow metering core: frame parsing, ENI attribution, per-worker flow tables, capture windows and records.
//!
//! The packet path, one module per stage:
//! - [`wire`]: captured bytes -> [`wire::Packet`] (Ethernet, VLAN/QinQ, IPv4/IPv6 + extension headers, ports,
//!   TCP flags, VXLAN) or a counted [`wire::Discard`].
//! - [`flow`]: the per-worker [`flow::Meter`]: ENI attribution by MAC ([`flow::EniTable`]), the bucketized,
//!   burst-pipelined [`flow::FlowTable`] of the open window ([`flow::Meter::account_burst`] takes a
//!   [`flow::Burst`] of up to 32 frames), window sealing on packet time by swapping in a spare table, SKIPDATA
//!   when full; sealed windows (holding their table) go to a [`flow::SealSink`].
//! - [`export`]: sealed windows of all workers merged ([`export::WindowMerger`]) and turned into
//!   [`export::Record`]s and JSON lines.
//!
//! # Guarantees
//! No I/O, no clock (time is always passed in), no threads, no `unsafe`. Untrusted bytes never cause a panic.
//! The per-packet path allocates nothing, takes no lock, touches no shared atomic; a seal with a spare table
//! free allocates nothing either. Every frame is counted exactly once: as non-IP, malformed (by
//! reason), unattributed, or attributed (each attribution recorded as OK or SKIPDATA).

#![forbid(unsafe_code)]

pub mod export;
pub mod flow;
pub mod wire;
