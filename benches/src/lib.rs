//! Throughput benchmarks of the dataplane, replay and the exporter, each next to a baseline measured in the same run.
