//! Sealed window -> records: OK per flow, NODATA per quiet captured ENI, SKIPDATA per ENI with skipped counts.
//!
//! # Guarantees
//! - [`records`] returns every record of the window in the canonical order ([`Record::canonical_cmp`]), so the
//!   output is deterministic whatever the order of flows in the window (e.g. after a merge of workers).
//! - Conservation: the OK records' packets and bytes plus the SKIPDATA records' packets and bytes equal the
//!   window's attributed packets and bytes.
//! - NODATA goes to every ENI captured in the window's (newest) table, tombstones excluded, that had neither
//!   recorded nor skipped traffic in the window.

use std::sync::Arc;

use super::record::{AddrText, LogStatus, Record};
use crate::flow::{FlowEntry, SealedWindow};
use crate::wire::to_ip_addr;

/// All records of `window`, in the canonical order.
pub fn records(window: &SealedWindow) -> Vec<Record> {
    let (start, end) = (window.start(), window.end());
    let mut out =
        Vec::with_capacity(window.flows().len() + window.skipped().len() + window.enis().len());
    for flow in window.flows() {
        // Every slot a sealed window references is named by one of its tables (Meter::set_enis refuses a table
        // that lost one, and a merge keeps the older tables); a missing one would be a bug: skip, never panic.
        debug_assert!(
            window.eni(flow.key.eni).is_some(),
            "flow of an unnamed ENI slot"
        );
        if let Some(eni) = window.eni(flow.key.eni) {
            out.push(ok_record(eni.clone(), flow, start, end));
        }
    }
    for (slot, eni) in window.enis().captured() {
        if !window.had_traffic(slot) {
            out.push(Record::without_flow(
                eni.clone(),
                LogStatus::NoData,
                0,
                0,
                start,
                end,
            ));
        }
    }
    for &(slot, skip) in window.skipped() {
        debug_assert!(
            window.eni(slot).is_some(),
            "SKIPDATA of an unnamed ENI slot"
        );
        if let Some(eni) = window.eni(slot) {
            out.push(Record::without_flow(
                eni.clone(),
                LogStatus::SkipData,
                skip.packets,
                skip.bytes,
                start,
                end,
            ));
        }
    }
    sort_canonical(&mut out);
    out
}

/// Sorts records in the canonical order ([`Record::canonical_cmp`]), rendering each address once.
pub fn sort_canonical(records: &mut [Record]) {
    records.sort_by_cached_key(|r| {
        (
            r.start,
            Arc::clone(&r.eni.id),
            r.log_status.as_str(),
            r.direction.map(|d| d.as_str()),
            AddrText::new(r.srcaddr),
            r.srcport,
            AddrText::new(r.dstaddr),
            r.dstport,
            r.protocol,
            r.action.map(|a| a.as_str()),
        )
    });
}

/// Appends one JSON line per record to `out` (each ending in `\n`); `region` as in [`Record::write_json`].
pub fn write_jsonl(records: &[Record], region: Option<&str>, out: &mut String) {
    for record in records {
        record.write_json(region, out);
        out.push('\n');
    }
}

fn ok_record(eni: crate::flow::Eni, flow: &FlowEntry, start: u64, end: u64) -> Record {
    let key = &flow.key;
    Record {
        eni,
        srcaddr: Some(to_ip_addr(key.family, &key.src)),
        srcport: Some(key.src_port),
        dstaddr: Some(to_ip_addr(key.family, &key.dst)),
        dstport: Some(key.dst_port),
        protocol: Some(key.protocol),
        direction: Some(key.direction),
        packets: flow.counts.packets,
        bytes: flow.counts.bytes,
        start,
        end,
        log_status: LogStatus::Ok,
        action: Some(key.action),
        tcp_flags: flow.counts.tcp_flags,
    }
}
