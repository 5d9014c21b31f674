//! The log service: durable Project/Logstore storage of flow-log records, gRPC ingest and queries.
