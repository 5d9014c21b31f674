//! Deterministic, seeded traffic generator: writes pcaps together with the flow-log records they must produce.
