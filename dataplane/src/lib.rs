//! Sans-IO flow metering core: frame parsing, ENI attribution, per-worker flow tables, capture windows and records.
