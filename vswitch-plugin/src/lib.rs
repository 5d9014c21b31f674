//! The vSwitch plugin: DPDK poll-mode workers, exporter thread, C ABI for a host vSwitch, offline replay.
