//! Raw bindings to the system DPDK 22.11 (libdpdk) plus a C shim for its static-inline functions.
