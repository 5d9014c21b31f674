//! Generated protobuf messages and gRPC services of package `flowlog.v1`: flow-log records, the collector's ingest
//! and query API, and the control plane. The `.proto` files under `flowlog/v1/` are the documentation.
//! [`convert`] maps wire records to and from the dataplane's records, whose JSON rendering is the only one.

/// Package `flowlog.v1`.
pub mod v1 {
    #![allow(clippy::doc_markdown, clippy::large_enum_variant, missing_docs)]
    tonic::include_proto!("flowlog.v1");
}

pub mod convert;
