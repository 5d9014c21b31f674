//! The control plane: inventory of ENIs, flow logs on ENIs, vSwitches and VPCs, and the capture sets hosts watch.
//!
//! Layers, each usable alone:
//! - [`state`]: the rules, sans IO (pure functions over the inventory and the flow logs).
//! - [`persist`]: the state file, replaced atomically after every change.
//! - [`service`]: the gRPC `flowlog.v1.Control` service over both.
//! - [`server`]: binding, serving and shutting down (the `flowlog-control` binary is a thin wrapper).
//! - [`cli`]: the `flowlog` tool's control-plane subcommands.
#![forbid(unsafe_code)]

pub mod cli;
pub mod persist;
pub mod server;
pub mod service;
pub mod state;
