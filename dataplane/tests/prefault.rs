//! Flow tables are resident from creation: every page is written when the table (or the meter with its spare
//! tables) is created, so the first packets and the first seals take no page faults. Measured through the
//! process's resident set (`/proc/self/smaps_rollup`); one test per binary, so nothing else allocates meanwhile.

use std::sync::Arc;

use anyhow::{Context, Result};
use flowlog_dataplane::flow::{Eni, EniTable, FlowTable, MacAddr, Meter, MeterConfig};

/// Resident bytes of this process.
fn resident() -> Result<u64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    let line = rollup
        .lines()
        .find(|l| l.starts_with("Rss:"))
        .context("no Rss line")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("no Rss value")?
        .parse()?;
    Ok(kb * 1024)
}

#[test]
fn tables_are_resident_from_creation() -> Result<()> {
    let before = resident()?;
    let table = FlowTable::with_capacity(1 << 20);
    let grown = resident()?.saturating_sub(before);
    let size = table.memory_bytes() as u64;
    assert!(
        grown >= size * 95 / 100,
        "a {size}-byte table made only {grown} bytes resident"
    );

    let enis = EniTable::from_enis([Eni::new(
        "eni-1",
        MacAddr([2, 0, 0, 0, 0, 1]),
        "i",
        "vsw",
        "vpc",
        "acct",
    )])?;
    let mut config = MeterConfig::new(60, 1 << 19);
    config.spare_tables = 2;
    let before = resident()?;
    let meter = Meter::new(config, Arc::new(enis))?;
    let grown = resident()?.saturating_sub(before);
    // Three tables (the open one and two spares) of half the size above.
    assert!(
        grown >= 3 * (size / 2) * 95 / 100,
        "a meter with three {}-byte tables made only {grown} bytes resident",
        size / 2
    );
    assert_eq!(meter.spare_tables(), 2);
    drop(table);
    Ok(())
}
