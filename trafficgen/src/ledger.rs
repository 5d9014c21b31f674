//! The expected records: accounts every attributed packet the generator writes and renders `expected.jsonl`.
//!
//! The generator tells the ledger the time of every frame it writes ([`Ledger::frame`]) and, for each ENI a packet
//! counts for, the record key, IP length and TCP flags ([`Ledger::count`]). The ledger keeps only the open window;
//! when a frame falls into a later window, it writes the open window's records, then one all-NODATA window for each
//! empty window in between.
//!
//! # Output format (that of `testdata/sample/sample.expected-60s.jsonl`)
//! One JSON object per line, fields in the order `version, account-id, vpc-id, vswitch-id, vm-id, eni-id, srcaddr,
//! srcport, dstaddr, dstport, protocol, direction, packets, bytes, start, end, log-status, action, tcp-flags, type`
//! (no `region`). Lines are sorted by `start`, `eni-id`, `log-status`, then the flow key in the order `direction,
//! srcaddr, srcport, dstaddr, dstport, protocol, action`, addresses compared as text. NODATA rows have null
//! addresses, ports, protocol, direction, action and type, zero packets, bytes and tcp-flags.
//!
//! # Guarantees
//! Windows are `[floor(t / interval) * interval, + interval)` of the frame's pcap second `t`; every window from the
//! one holding the first frame to the one holding the last is written, each ENI of the file appearing in it with OK
//! rows or exactly one NODATA row. Memory is bounded by the records of one window.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Write};
use std::net::IpAddr;

use serde::Serialize;

use crate::eni::Enis;

/// The identity of a record within a window (action is always ACCEPT in a replayed capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordKey {
    /// ENI number.
    pub eni: u16,
    /// True for `out` (sent by the ENI), false for `in`.
    pub out: bool,
    /// Source address.
    pub src: IpAddr,
    /// Source port (0 for portless protocols and orphan fragments).
    pub src_port: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port.
    pub dst_port: u16,
    /// IANA protocol number.
    pub protocol: u8,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    packets: u64,
    bytes: u64,
    tcp_flags: u8,
}

/// Totals of what the ledger wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    /// OK records.
    pub ok_records: u64,
    /// NODATA records.
    pub nodata_records: u64,
    /// Sum of `packets` over OK records.
    pub packets: u64,
    /// Sum of `bytes` over OK records.
    pub bytes: u64,
    /// Windows written.
    pub windows: u64,
    /// Start of the first window written.
    pub first_window: Option<u64>,
    /// Start of the last window written.
    pub last_window: Option<u64>,
    /// Starts of the windows that held no frame at all.
    pub empty_windows: Vec<u64>,
}

/// The open window's accounting and the output.
#[derive(Debug)]
pub struct Ledger<'a, W: Write> {
    interval: u64,
    enis: &'a Enis,
    window: Option<u64>,
    frames_in_window: u64,
    flows: HashMap<RecordKey, Counts, BuildHasherDefault<FoldHasher>>,
    out: W,
    totals: LedgerTotals,
}

impl<'a, W: Write> Ledger<'a, W> {
    /// A ledger writing records of `interval_secs` windows for `enis` to `out`.
    pub fn new(interval_secs: u64, enis: &'a Enis, out: W) -> Self {
        Self {
            interval: interval_secs.max(1),
            enis,
            window: None,
            frames_in_window: 0,
            flows: HashMap::default(),
            out,
            totals: LedgerTotals::default(),
        }
    }

    /// Start of the window holding second `secs`.
    pub fn window_of(&self, secs: u64) -> u64 {
        secs / self.interval * self.interval
    }

    /// Notes a frame at second `secs` (any frame: it defines the range of windows). Frames must come in
    /// non-decreasing time. Returns true when the frame opened a new window.
    pub fn frame(&mut self, secs: u64) -> io::Result<bool> {
        let window = self.window_of(secs);
        let opened = match self.window {
            None => {
                self.totals.first_window = Some(window);
                true
            }
            Some(open) if window > open => {
                self.seal(open)?;
                let mut empty = open + self.interval;
                while empty < window {
                    self.seal(empty)?;
                    empty += self.interval;
                }
                true
            }
            Some(_) => false,
        };
        if opened {
            self.window = Some(window);
        }
        self.frames_in_window += 1;
        Ok(opened)
    }

    /// Counts one packet of `bytes` IP bytes and `tcp_flags` for `key` in the open window.
    pub fn count(&mut self, key: RecordKey, bytes: u32, tcp_flags: u8) {
        let counts = self.flows.entry(key).or_default();
        counts.packets += 1;
        counts.bytes += u64::from(bytes);
        counts.tcp_flags |= tcp_flags;
    }

    /// Writes the last window, flushes and returns the output and the totals.
    pub fn finish(mut self) -> io::Result<(W, LedgerTotals)> {
        if let Some(open) = self.window.take() {
            self.seal(open)?;
        }
        self.out.flush()?;
        Ok((self.out, self.totals))
    }

    /// Writes the records of the window starting at `start` and clears the accounting.
    fn seal(&mut self, start: u64) -> io::Result<()> {
        let enis = self.enis.list();
        let mut rows: Vec<Row> = Vec::with_capacity(self.flows.len() + enis.len());
        let mut has_traffic = vec![false; enis.len()];
        for (key, counts) in self.flows.drain() {
            has_traffic[usize::from(key.eni)] = true;
            rows.push(Row {
                eni: key.eni,
                ok: true,
                out: key.out,
                src: key.src.to_string(),
                src_port: key.src_port,
                dst: key.dst.to_string(),
                dst_port: key.dst_port,
                protocol: key.protocol,
                v6: key.src.is_ipv6(),
                counts,
            });
        }
        for (n, _) in enis.iter().enumerate().filter(|&(n, _)| !has_traffic[n]) {
            rows.push(Row {
                // n < enis.len() <= MAX_ENIS, which fits in u16.
                eni: n as u16,
                ok: false,
                out: false,
                src: String::new(),
                src_port: 0,
                dst: String::new(),
                dst_port: 0,
                protocol: 0,
                v6: false,
                counts: Counts::default(),
            });
        }
        rows.sort_by(|x, y| {
            let (ex, ey) = (&enis[usize::from(x.eni)], &enis[usize::from(y.eni)]);
            ex.id
                .cmp(&ey.id)
                .then(x.ok.cmp(&y.ok)) // "NODATA" < "OK"
                .then(x.out.cmp(&y.out)) // "in" < "out"
                .then_with(|| x.src.cmp(&y.src))
                .then(x.src_port.cmp(&y.src_port))
                .then_with(|| x.dst.cmp(&y.dst))
                .then(x.dst_port.cmp(&y.dst_port))
                .then(x.protocol.cmp(&y.protocol))
        });
        let end = start + self.interval;
        for row in &rows {
            let eni = &enis[usize::from(row.eni)];
            let json = if row.ok {
                JsonRecord {
                    version: 1,
                    account_id: &eni.account_id,
                    vpc_id: &eni.vpc_id,
                    vswitch_id: &eni.vswitch_id,
                    vm_id: &eni.vm_id,
                    eni_id: &eni.id,
                    srcaddr: Some(&row.src),
                    srcport: Some(row.src_port),
                    dstaddr: Some(&row.dst),
                    dstport: Some(row.dst_port),
                    protocol: Some(row.protocol),
                    direction: Some(if row.out { "out" } else { "in" }),
                    packets: row.counts.packets,
                    bytes: row.counts.bytes,
                    start,
                    end,
                    log_status: "OK",
                    action: Some("ACCEPT"),
                    tcp_flags: row.counts.tcp_flags,
                    family: Some(if row.v6 { "IPv6" } else { "IPv4" }),
                }
            } else {
                JsonRecord {
                    version: 1,
                    account_id: &eni.account_id,
                    vpc_id: &eni.vpc_id,
                    vswitch_id: &eni.vswitch_id,
                    vm_id: &eni.vm_id,
                    eni_id: &eni.id,
                    srcaddr: None,
                    srcport: None,
                    dstaddr: None,
                    dstport: None,
                    protocol: None,
                    direction: None,
                    packets: 0,
                    bytes: 0,
                    start,
                    end,
                    log_status: "NODATA",
                    action: None,
                    tcp_flags: 0,
                    family: None,
                }
            };
            serde_json::to_writer(&mut self.out, &json).map_err(io::Error::other)?;
            self.out.write_all(b"\n")?;
            if row.ok {
                self.totals.ok_records += 1;
                self.totals.packets += row.counts.packets;
                self.totals.bytes += row.counts.bytes;
            } else {
                self.totals.nodata_records += 1;
            }
        }
        self.totals.windows += 1;
        self.totals.last_window = Some(start);
        if self.frames_in_window == 0 {
            self.totals.empty_windows.push(start);
        }
        self.frames_in_window = 0;
        Ok(())
    }
}

/// One line of the output before rendering.
#[derive(Debug)]
struct Row {
    eni: u16,
    ok: bool,
    out: bool,
    src: String,
    src_port: u16,
    dst: String,
    dst_port: u16,
    protocol: u8,
    v6: bool,
    counts: Counts,
}

/// A record as `expected.jsonl` renders it (field order is the sample's).
#[derive(Serialize)]
struct JsonRecord<'r> {
    version: u8,
    #[serde(rename = "account-id")]
    account_id: &'r str,
    #[serde(rename = "vpc-id")]
    vpc_id: &'r str,
    #[serde(rename = "vswitch-id")]
    vswitch_id: &'r str,
    #[serde(rename = "vm-id")]
    vm_id: &'r str,
    #[serde(rename = "eni-id")]
    eni_id: &'r str,
    srcaddr: Option<&'r str>,
    srcport: Option<u16>,
    dstaddr: Option<&'r str>,
    dstport: Option<u16>,
    protocol: Option<u8>,
    direction: Option<&'static str>,
    packets: u64,
    bytes: u64,
    start: u64,
    end: u64,
    #[serde(rename = "log-status")]
    log_status: &'static str,
    action: Option<&'static str>,
    #[serde(rename = "tcp-flags")]
    tcp_flags: u8,
    #[serde(rename = "type")]
    family: Option<&'static str>,
}

/// A small multiply-fold hasher: the keys are generator-made, not adversarial, and SipHash is slow in debug builds.
#[derive(Debug, Default, Clone, Copy)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        for &b in chunks.remainder() {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        let mixed = u128::from(self.0 ^ i) * 0x9E37_79B9_7F4A_7C15;
        // Fold the 128-bit product: the high and low halves both carry entropy.
        self.0 = (mixed as u64) ^ ((mixed >> 64) as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(eni: u16, out: bool, src: &str, dst: &str) -> RecordKey {
        RecordKey {
            eni,
            out,
            src: src.parse().unwrap(),
            src_port: 1000,
            dst: dst.parse().unwrap(),
            dst_port: 80,
            protocol: 6,
        }
    }

    #[test]
    fn windows_rows_and_nodata() {
        let enis = Enis::new(6, 1);
        let mut ledger = Ledger::new(60, &enis, Vec::new());
        assert!(ledger.frame(1_700_000_000).unwrap());
        ledger.count(key(0, false, "10.0.4.10", "10.0.0.10"), 100, 2);
        ledger.count(key(0, false, "10.0.11.10", "10.0.0.10"), 50, 16);
        ledger.count(key(0, false, "10.0.11.10", "10.0.0.10"), 50, 1);
        assert!(!ledger.frame(1_700_000_039).unwrap());
        // The next frame skips one whole window.
        assert!(ledger.frame(1_700_000_100).unwrap());
        ledger.count(key(1, true, "10.0.1.10", "1.2.3.4"), 40, 4);
        let (out, totals) = ledger.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Window 1: 2 OK rows for ENI 0 + 5 NODATA; window 2: 6 NODATA; window 3: 1 OK + 5 NODATA.
        assert_eq!(lines.len(), 7 + 6 + 6);
        assert_eq!(totals.ok_records, 3);
        assert_eq!(totals.nodata_records, 16);
        assert_eq!(totals.packets, 4);
        assert_eq!(totals.bytes, 240);
        assert_eq!(totals.empty_windows, vec![1_700_000_040]);
        assert_eq!(
            lines[0],
            r#"{"version":1,"account-id":"100000000000","vpc-id":"vpc-0","vswitch-id":"vsw-00","vm-id":"i-00000","eni-id":"eni-00000","srcaddr":"10.0.11.10","srcport":1000,"dstaddr":"10.0.0.10","dstport":80,"protocol":6,"direction":"in","packets":2,"bytes":100,"start":1699999980,"end":1700000040,"log-status":"OK","action":"ACCEPT","tcp-flags":17,"type":"IPv4"}"#
        );
        assert!(lines[1].contains(r#""srcaddr":"10.0.4.10""#));
        assert_eq!(
            lines[2],
            r#"{"version":1,"account-id":"100000000000","vpc-id":"vpc-0","vswitch-id":"vsw-00","vm-id":"i-00001","eni-id":"eni-00001","srcaddr":null,"srcport":null,"dstaddr":null,"dstport":null,"protocol":null,"direction":null,"packets":0,"bytes":0,"start":1699999980,"end":1700000040,"log-status":"NODATA","action":null,"tcp-flags":0,"type":null}"#
        );
    }
}
