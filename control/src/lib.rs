//! The control plane: the inventory (VPCs, vSwitches, ENIs), flow logs on ENIs, vSwitches and VPCs with statuses
//! driven by the hosts' acknowledgements, tenancy, and the capture sets hosts watch.
//!
//! Layers, each usable alone:
//! - [`state`]: the rules, sans IO (pure functions over the inventory and the flow logs).
//! - [`store`]: where the state lives: an embedded redb file, or etcd shared by replicas.
//! - [`core`]: one serving term: group commit of changes, acknowledgements, watches.
//! - [`auth`]: bearer tokens -> accounts, the orchestrator, hosts; project ownership.
//! - [`service`]: the gRPC `flowlog.v1.Control` service over all of them.
//! - [`ha`]: replicas on etcd: leader election, fenced writes, fail-over.
//! - [`server`]: binding, serving and shutting down (the `flowlog-control` binary is a thin wrapper).
//! - [`client`]: a client over a list of endpoints with fail-over and a bearer token (the CLI uses it).
//! - [`cli`]: the `flowlog` tool's control-plane subcommands.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod client;
pub mod core;
pub mod ha;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
