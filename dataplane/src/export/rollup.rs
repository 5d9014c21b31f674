//! Per-flow-log aggregation intervals: base-window records rolled up into coarse-window records.
//!
//! Workers meter at one base interval (the plugin's `interval-secs`); a flow log aggregates at its own
//! AggregationInterval (1, 5 or 10 minutes, SPEC.md "Control API"). The exporter keeps one [`Rollup`] per
//! destination whose interval is larger than the base interval, pushes it the complete records of every merged
//! base window ([`super::records`]) and sends what [`Rollup::pop`] yields.
//!
//! # Guarantees
//! - A coarse window is `[S, S + interval)` with `S` a multiple of the interval, so it holds exactly the base
//!   windows starting in it. Its records are those the meter would have produced had it metered at the coarse
//!   interval: OK records with the same flow identity (eni-id, direction, srcaddr, srcport, dstaddr, dstport,
//!   protocol, action) have their packets and bytes summed and their tcp-flags OR-ed; the SKIPDATA records of an
//!   ENI are summed into one; an ENI gets exactly one NODATA when every record it had in the coarse window was
//!   NODATA, none when it had any OK or SKIPDATA record. Every record carries the coarse start and end and the
//!   latest identity ([`crate::flow::Eni`]) seen for its eni-id. Output is in the canonical order
//!   ([`super::sort_canonical`]).
//! - Conservation: over any run, the packets and bytes per (eni-id, flow identity) and per ENI's SKIPDATA that
//!   come out (popped plus flushed) equal those pushed in.
//! - A coarse window is delivered as soon as it is complete: when the base window that ends it has been pushed,
//!   or when a base window of a later coarse window is pushed. [`Rollup::flush`] delivers the open one early.
//! - When the interval equals the base interval the rollup is a pass-through: each window's records come out
//!   unchanged, one coarse window per base window.
//! - Memory: the flows and ENIs of the one open coarse window, plus the completed windows not popped yet (at most
//!   two per push when the caller pops after every push). The maps keep their capacity between windows.
//! - Bad input (a window not aligned to the base interval, a window out of order) is refused with a
//!   [`RollupError`] and changes nothing; nothing here panics.
//!
//! # Limitations
//! - A coarse window in which no base window was pushed produces nothing, not even NODATA: the rollup only sees
//!   what it is given. The exporter pushes every base window, and the merger emits contiguous windows while
//!   capturing, so this only happens across a stop of the capture, where SPEC.md wants no records either.
//! - A coarse window whose first base windows were never pushed (capture started inside it) or that was flushed
//!   before its end is partial: it covers fewer base windows ([`CoarseWindow::base_windows`]) but keeps the
//!   coarse start and end, as the meter does for the windows it opens and flushes.
//! - The records' own `start` and `end` are ignored: the window bounds passed to [`Rollup::push`] are
//!   authoritative.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use super::record::{LogStatus, Record};
use super::records::sort_canonical;
use crate::flow::{Action, Direction, Eni};

/// Rolls base-window records up into the coarse windows of one aggregation interval.
#[derive(Debug)]
pub struct Rollup {
    /// Base interval, seconds (> 0).
    base: u64,
    /// Coarse interval, seconds: a positive multiple of `base`.
    interval: u64,
    /// The smallest start the next pushed window may have (the end of the last pushed window, or the end of the
    /// last flushed coarse window).
    next_start: u64,
    /// The coarse window being aggregated.
    open: Option<OpenWindow>,
    /// OK flows of the open window.
    flows: HashMap<FlowId, FlowSum>,
    /// Per eni-id state of the open window.
    enis: HashMap<Arc<str>, EniSummary>,
    /// Completed coarse windows, oldest first, waiting for [`Rollup::pop`].
    done: VecDeque<CoarseWindow>,
}

/// The records of one coarse window, as [`Rollup::pop`] and [`Rollup::flush`] deliver them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoarseWindow {
    /// Window start, Unix seconds (a multiple of the interval).
    pub start: u64,
    /// Window end, Unix seconds (`start + interval`).
    pub end: u64,
    /// How many base windows were aggregated: `interval / base` for a window covered from start to end, fewer
    /// for a partial one (capture started inside it, or flushed before its end).
    pub base_windows: u32,
    /// The window's records (OK, NODATA, SKIPDATA), in the canonical order; empty when no ENI was captured.
    pub records: Vec<Record>,
}

/// Why a rollup could not be built or a window was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollupError {
    /// The base interval is zero.
    #[error("the base interval must be positive")]
    ZeroBaseInterval,
    /// The aggregation interval is not a positive multiple of the base interval.
    #[error(
        "the aggregation interval {interval} s is not a positive multiple of the base interval {base} s"
    )]
    NotAMultiple {
        /// Base interval, seconds.
        base: u32,
        /// The refused aggregation interval, seconds.
        interval: u32,
    },
    /// The pushed window is not `[k * base, (k + 1) * base)`.
    #[error("window [{start}, {end}) is not one aligned base window of {base} s")]
    Misaligned {
        /// Start of the refused window.
        start: u64,
        /// End of the refused window.
        end: u64,
        /// Base interval, seconds.
        base: u32,
    },
    /// The pushed window starts before the end of the previous one (or inside a flushed coarse window).
    #[error(
        "window starting at {start} pushed out of order: the next window may start at {next} at the earliest"
    )]
    OutOfOrder {
        /// Start of the refused window.
        start: u64,
        /// The earliest start the rollup accepts.
        next: u64,
    },
}

impl Rollup {
    /// A rollup from `base_interval_secs` windows to `interval_secs` windows. The interval must be a positive
    /// multiple of the base interval; equal makes a pass-through.
    pub fn new(base_interval_secs: u32, interval_secs: u32) -> Result<Rollup, RollupError> {
        if base_interval_secs == 0 {
            return Err(RollupError::ZeroBaseInterval);
        }
        if interval_secs == 0 || !interval_secs.is_multiple_of(base_interval_secs) {
            return Err(RollupError::NotAMultiple {
                base: base_interval_secs,
                interval: interval_secs,
            });
        }
        Ok(Rollup {
            base: u64::from(base_interval_secs),
            interval: u64::from(interval_secs),
            next_start: 0,
            open: None,
            flows: HashMap::new(),
            enis: HashMap::new(),
            done: VecDeque::new(),
        })
    }

    /// Adds the complete records of the base window `[window_start, window_end)` (OK, NODATA and SKIPDATA, as
    /// [`super::records`] yields them). Windows must come in increasing start order; gaps are allowed. Completed
    /// coarse windows become available to [`Rollup::pop`] (call it after every push). A refused window changes
    /// nothing.
    pub fn push(
        &mut self,
        window_start: u64,
        window_end: u64,
        records: &[Record],
    ) -> Result<(), RollupError> {
        let aligned = window_start.is_multiple_of(self.base)
            && window_start.checked_add(self.base) == Some(window_end);
        if !aligned {
            return Err(RollupError::Misaligned {
                start: window_start,
                end: window_end,
                base: self.base_interval_secs(),
            });
        }
        if window_start < self.next_start {
            return Err(RollupError::OutOfOrder {
                start: window_start,
                next: self.next_start,
            });
        }
        self.next_start = window_end;
        if self.is_pass_through() {
            self.done.push_back(CoarseWindow {
                start: window_start,
                end: window_end,
                base_windows: 1,
                records: records.to_vec(),
            });
            return Ok(());
        }
        let coarse_start = window_start - window_start % self.interval;
        if self.open.is_some_and(|open| open.start != coarse_start) {
            // Windows come in start order, so the open coarse window is an earlier one: it is complete.
            self.close();
        }
        let open = self.open.get_or_insert(OpenWindow {
            start: coarse_start,
            end: coarse_start.saturating_add(self.interval),
            base_windows: 0,
        });
        open.base_windows = open.base_windows.saturating_add(1);
        let coarse_end = open.end;
        for record in records {
            self.add(record);
        }
        if window_end >= coarse_end {
            self.close();
        }
        Ok(())
    }

    /// The oldest completed coarse window not taken yet.
    pub fn pop(&mut self) -> Option<CoarseWindow> {
        self.done.pop_front()
    }

    /// Closes the open coarse window, partial as it may be (end of capture, shutdown, interval change), and
    /// returns it after every completed window not popped yet, oldest first. The rollup stays usable: windows
    /// may be pushed again from the end of the flushed coarse window on (earlier ones would repeat it).
    pub fn flush(&mut self) -> Vec<CoarseWindow> {
        if let Some(open) = self.open {
            self.next_start = self.next_start.max(open.end);
            self.close();
        }
        self.done.drain(..).collect()
    }

    /// The base interval, seconds.
    pub fn base_interval_secs(&self) -> u32 {
        // Built from a u32 in `new`.
        u32::try_from(self.base).unwrap_or(u32::MAX)
    }

    /// The aggregation interval, seconds.
    pub fn interval_secs(&self) -> u32 {
        // Built from a u32 in `new`.
        u32::try_from(self.interval).unwrap_or(u32::MAX)
    }

    /// Whether records pass through unchanged (interval equal to the base interval).
    pub fn is_pass_through(&self) -> bool {
        self.interval == self.base
    }

    /// The open coarse window's start and end, if one is being aggregated.
    pub fn open_window(&self) -> Option<(u64, u64)> {
        self.open.map(|open| (open.start, open.end))
    }

    /// Distinct OK flows held for the open coarse window.
    pub fn open_flows(&self) -> usize {
        self.flows.len()
    }

    /// Completed coarse windows waiting for [`Rollup::pop`].
    pub fn pending_windows(&self) -> usize {
        self.done.len()
    }

    /// Accounts one record of the open window.
    fn add(&mut self, record: &Record) {
        let eni = match self.enis.entry(Arc::clone(&record.eni.id)) {
            Entry::Occupied(entry) => {
                let eni = entry.into_mut();
                // The latest identity seen wins.
                if eni.eni != record.eni {
                    eni.eni = record.eni.clone();
                }
                eni
            }
            Entry::Vacant(entry) => entry.insert(EniSummary::new(record.eni.clone())),
        };
        match record.log_status {
            LogStatus::Ok => {
                eni.traffic = true;
                let sum = FlowSum {
                    packets: record.packets,
                    bytes: record.bytes,
                    tcp_flags: record.tcp_flags,
                };
                match self.flows.entry(FlowId::of(record)) {
                    Entry::Occupied(entry) => entry.into_mut().add(sum),
                    Entry::Vacant(entry) => {
                        entry.insert(sum);
                    }
                }
            }
            LogStatus::SkipData => {
                eni.traffic = true;
                let skip = eni.skipped.get_or_insert_default();
                skip.0 = skip.0.saturating_add(record.packets);
                skip.1 = skip.1.saturating_add(record.bytes);
            }
            LogStatus::NoData => eni.nodata = true,
        }
    }

    /// Turns the open coarse window into records, queues them and empties the maps (keeping their capacity).
    fn close(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let (start, end) = (open.start, open.end);
        let mut out = Vec::with_capacity(self.flows.len() + self.enis.len());
        for (id, sum) in self.flows.drain() {
            // Every flow's eni-id was entered in `enis` by `add` before the flow itself.
            debug_assert!(self.enis.contains_key(&id.eni), "flow of an unseen ENI");
            let Some(eni) = self.enis.get(&id.eni) else {
                continue;
            };
            out.push(Record {
                eni: eni.eni.clone(),
                srcaddr: id.srcaddr,
                srcport: id.srcport,
                dstaddr: id.dstaddr,
                dstport: id.dstport,
                protocol: id.protocol,
                direction: id.direction,
                packets: sum.packets,
                bytes: sum.bytes,
                start,
                end,
                log_status: LogStatus::Ok,
                action: id.action,
                tcp_flags: sum.tcp_flags,
            });
        }
        for (_, eni) in self.enis.drain() {
            if let Some((packets, bytes)) = eni.skipped {
                out.push(Record::without_flow(
                    eni.eni,
                    LogStatus::SkipData,
                    packets,
                    bytes,
                    start,
                    end,
                ));
            } else if eni.nodata && !eni.traffic {
                out.push(Record::without_flow(
                    eni.eni,
                    LogStatus::NoData,
                    0,
                    0,
                    start,
                    end,
                ));
            }
        }
        sort_canonical(&mut out);
        self.done.push_back(CoarseWindow {
            start,
            end,
            base_windows: open.base_windows,
            records: out,
        });
    }
}

/// The coarse window being aggregated.
#[derive(Debug, Clone, Copy)]
struct OpenWindow {
    start: u64,
    end: u64,
    base_windows: u32,
}

/// A flow's identity within a window (SPEC.md): eni-id, direction, srcaddr, srcport, dstaddr, dstport, protocol,
/// action. Kept as the record's options so that any record, however odd, has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlowId {
    eni: Arc<str>,
    direction: Option<Direction>,
    srcaddr: Option<IpAddr>,
    srcport: Option<u16>,
    dstaddr: Option<IpAddr>,
    dstport: Option<u16>,
    protocol: Option<u8>,
    action: Option<Action>,
}

impl FlowId {
    fn of(record: &Record) -> FlowId {
        FlowId {
            eni: Arc::clone(&record.eni.id),
            direction: record.direction,
            srcaddr: record.srcaddr,
            srcport: record.srcport,
            dstaddr: record.dstaddr,
            dstport: record.dstport,
            protocol: record.protocol,
            action: record.action,
        }
    }
}

/// A flow's counts over the base windows seen so far.
#[derive(Debug, Clone, Copy)]
struct FlowSum {
    packets: u64,
    bytes: u64,
    tcp_flags: u8,
}

impl FlowSum {
    fn add(&mut self, other: FlowSum) {
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.tcp_flags |= other.tcp_flags;
    }
}

/// What the open coarse window knows of one ENI.
#[derive(Debug)]
struct EniSummary {
    /// The latest identity seen.
    eni: Eni,
    /// Had an OK or SKIPDATA record.
    traffic: bool,
    /// Had a NODATA record.
    nodata: bool,
    /// Sum of its SKIPDATA records (packets, bytes), if it had any.
    skipped: Option<(u64, u64)>,
}

impl EniSummary {
    fn new(eni: Eni) -> EniSummary {
        EniSummary {
            eni,
            traffic: false,
            nodata: false,
            skipped: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::export::records;
    use crate::flow::{EniTable, MacAddr, Meter, MeterConfig};
    use crate::wire::tests::{eth, frame, ipv4, tcp};

    fn eni(n: u8) -> Eni {
        Eni::new(
            format!("eni-{n:05}"),
            MacAddr([2, 0, 0, 0xe1, 0, n]),
            format!("i-{n}"),
            "vsw-0",
            "vpc-0",
            "1",
        )
    }

    /// An OK record of ENI `n`, `out`, 10.0.0.n:sport -> 10.9.9.9:443 TCP.
    fn ok(n: u8, sport: u16, action: Action, packets: u64, bytes: u64, tcp_flags: u8) -> Record {
        Record {
            eni: eni(n),
            srcaddr: Some(IpAddr::from([10, 0, 0, n])),
            srcport: Some(sport),
            dstaddr: Some(IpAddr::from([10, 9, 9, 9])),
            dstport: Some(443),
            protocol: Some(6),
            direction: Some(Direction::Out),
            packets,
            bytes,
            start: 0,
            end: 0,
            log_status: LogStatus::Ok,
            action: Some(action),
            tcp_flags,
        }
    }

    fn nodata(n: u8) -> Record {
        Record::without_flow(eni(n), LogStatus::NoData, 0, 0, 0, 0)
    }

    fn skip(n: u8, packets: u64, bytes: u64) -> Record {
        Record::without_flow(eni(n), LogStatus::SkipData, packets, bytes, 0, 0)
    }

    /// (eni-id, log-status, srcport, action, packets, bytes, tcp-flags, start, end) of each record.
    type Row = (
        String,
        LogStatus,
        Option<u16>,
        Option<Action>,
        u64,
        u64,
        u8,
        u64,
        u64,
    );

    fn rows(window: &CoarseWindow) -> Vec<Row> {
        window
            .records
            .iter()
            .map(|r| {
                (
                    r.eni.id.to_string(),
                    r.log_status,
                    r.srcport,
                    r.action,
                    r.packets,
                    r.bytes,
                    r.tcp_flags,
                    r.start,
                    r.end,
                )
            })
            .collect()
    }

    fn drain(rollup: &mut Rollup) -> Vec<CoarseWindow> {
        std::iter::from_fn(|| rollup.pop()).collect()
    }

    #[test]
    fn sums_across_base_windows_and_ors_flags() {
        let mut r = Rollup::new(60, 300).unwrap();
        let accept = Action::Accept;
        let windows = [
            vec![ok(1, 1000, accept, 1, 60, 0x02), nodata(2)],
            vec![
                ok(1, 1000, accept, 2, 100, 0x10),
                ok(2, 7, accept, 1, 40, 0),
            ],
            vec![ok(1, 1000, Action::Reject, 3, 120, 0x04), nodata(2)],
            vec![nodata(1), nodata(2)],
            vec![ok(1, 1000, accept, 4, 200, 0x01), nodata(2)],
        ];
        for (i, recs) in windows.iter().enumerate() {
            assert_eq!(
                r.pop(),
                None,
                "coarse window incomplete before base window {i}"
            );
            let start = 60 * i as u64;
            r.push(start, start + 60, recs).unwrap();
        }
        // The last base window ended the coarse window: it is complete without a later push.
        let done = drain(&mut r);
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].start, done[0].end, done[0].base_windows),
            (0, 300, 5)
        );
        assert_eq!(
            rows(&done[0]),
            vec![
                (
                    "eni-00001".into(),
                    LogStatus::Ok,
                    Some(1000),
                    Some(accept),
                    7,
                    360,
                    0x13,
                    0,
                    300
                ),
                (
                    "eni-00001".into(),
                    LogStatus::Ok,
                    Some(1000),
                    Some(Action::Reject),
                    3,
                    120,
                    0x04,
                    0,
                    300
                ),
                (
                    "eni-00002".into(),
                    LogStatus::Ok,
                    Some(7),
                    Some(accept),
                    1,
                    40,
                    0,
                    0,
                    300
                ),
            ]
        );
        assert_eq!(r.open_window(), None);
        assert_eq!(r.open_flows(), 0);
        assert!(r.flush().is_empty());
    }

    #[test]
    fn nodata_only_for_enis_quiet_the_whole_window() {
        let mut r = Rollup::new(60, 180).unwrap();
        // eni 1: quiet, then traffic; eni 2: quiet throughout; eni 3: quiet, then skipped; eni 4 appears late.
        r.push(0, 60, &[nodata(1), nodata(2), nodata(3)]).unwrap();
        r.push(60, 120, &[nodata(1), nodata(2), skip(3, 5, 500)])
            .unwrap();
        r.push(
            120,
            180,
            &[
                ok(1, 1, Action::Accept, 1, 40, 0),
                nodata(2),
                nodata(3),
                nodata(4),
            ],
        )
        .unwrap();
        let done = drain(&mut r);
        assert_eq!(
            rows(&done[0]),
            vec![
                (
                    "eni-00001".into(),
                    LogStatus::Ok,
                    Some(1),
                    Some(Action::Accept),
                    1,
                    40,
                    0,
                    0,
                    180
                ),
                (
                    "eni-00002".into(),
                    LogStatus::NoData,
                    None,
                    None,
                    0,
                    0,
                    0,
                    0,
                    180
                ),
                (
                    "eni-00003".into(),
                    LogStatus::SkipData,
                    None,
                    None,
                    5,
                    500,
                    0,
                    0,
                    180
                ),
                (
                    "eni-00004".into(),
                    LogStatus::NoData,
                    None,
                    None,
                    0,
                    0,
                    0,
                    0,
                    180
                ),
            ]
        );
    }

    #[test]
    fn skipdata_of_an_eni_is_summed_into_one() {
        let mut r = Rollup::new(60, 120).unwrap();
        r.push(
            0,
            60,
            &[
                ok(1, 1, Action::Accept, 2, 80, 0x10),
                skip(1, 3, 300),
                skip(2, 1, 1),
            ],
        )
        .unwrap();
        r.push(
            60,
            120,
            &[
                skip(1, 4, 400),
                ok(1, 1, Action::Accept, 1, 40, 0x01),
                nodata(2),
            ],
        )
        .unwrap();
        let done = drain(&mut r);
        assert_eq!(
            rows(&done[0]),
            vec![
                (
                    "eni-00001".into(),
                    LogStatus::Ok,
                    Some(1),
                    Some(Action::Accept),
                    3,
                    120,
                    0x11,
                    0,
                    120
                ),
                (
                    "eni-00001".into(),
                    LogStatus::SkipData,
                    None,
                    None,
                    7,
                    700,
                    0,
                    0,
                    120
                ),
                (
                    "eni-00002".into(),
                    LogStatus::SkipData,
                    None,
                    None,
                    1,
                    1,
                    0,
                    0,
                    120
                ),
            ]
        );
    }

    #[test]
    fn gaps_produce_no_window_and_complete_the_open_one() {
        let mut r = Rollup::new(60, 300).unwrap();
        // Capture starts inside coarse window 0 (base window 180), stops, resumes at 660 (coarse window 600):
        // coarse window 300 saw no base window and produces nothing at all, not even NODATA.
        r.push(180, 240, &[nodata(1)]).unwrap();
        assert_eq!(r.open_window(), Some((0, 300)));
        r.push(660, 720, &[ok(1, 1, Action::Accept, 1, 40, 0)])
            .unwrap();
        let done = drain(&mut r);
        assert_eq!(
            done.len(),
            1,
            "window 0 completed by a later coarse window; 300 skipped"
        );
        assert_eq!(
            (done[0].start, done[0].end, done[0].base_windows),
            (0, 300, 1)
        );
        assert_eq!(
            rows(&done[0]),
            vec![(
                "eni-00001".into(),
                LogStatus::NoData,
                None,
                None,
                0,
                0,
                0,
                0,
                300
            )]
        );
        // A push that both completes the open window and ends the next one yields two windows.
        r.push(1140, 1200, &[ok(1, 2, Action::Accept, 2, 80, 0)])
            .unwrap();
        let done = drain(&mut r);
        assert_eq!(
            done.iter()
                .map(|w| (w.start, w.end, w.base_windows))
                .collect::<Vec<_>>(),
            vec![(600, 900, 1), (900, 1200, 1)]
        );
        assert_eq!(rows(&done[1])[0].4, 2);
        // A base window without records (no ENI captured) still makes a (then empty) coarse window.
        r.push(1200, 1260, &[]).unwrap();
        let flushed = r.flush();
        assert_eq!(flushed.len(), 1);
        assert!(flushed[0].records.is_empty());
    }

    #[test]
    fn flush_delivers_the_partial_window_and_refuses_to_repeat_it() {
        let mut r = Rollup::new(60, 600).unwrap();
        r.push(0, 60, &[ok(1, 1, Action::Accept, 1, 40, 0x02)])
            .unwrap();
        r.push(60, 120, &[ok(1, 1, Action::Accept, 1, 40, 0x10), nodata(2)])
            .unwrap();
        assert_eq!(r.pop(), None);
        assert_eq!(r.open_flows(), 1);
        let flushed = r.flush();
        assert_eq!(flushed.len(), 1);
        assert_eq!(
            (flushed[0].start, flushed[0].end, flushed[0].base_windows),
            (0, 600, 2)
        );
        assert_eq!(
            rows(&flushed[0]),
            vec![
                (
                    "eni-00001".into(),
                    LogStatus::Ok,
                    Some(1),
                    Some(Action::Accept),
                    2,
                    80,
                    0x12,
                    0,
                    600
                ),
                (
                    "eni-00002".into(),
                    LogStatus::NoData,
                    None,
                    None,
                    0,
                    0,
                    0,
                    0,
                    600
                ),
            ]
        );
        assert!(r.flush().is_empty());
        assert_eq!(
            r.push(120, 180, &[nodata(1)]),
            Err(RollupError::OutOfOrder {
                start: 120,
                next: 600
            })
        );
        r.push(600, 660, &[nodata(1)]).unwrap();
        assert_eq!(r.open_window(), Some((600, 1200)));
    }

    #[test]
    fn completed_windows_wait_for_pop_and_flush_returns_them_first() {
        let mut r = Rollup::new(60, 120).unwrap();
        r.push(0, 60, &[nodata(1)]).unwrap();
        r.push(60, 120, &[nodata(1)]).unwrap();
        r.push(120, 180, &[nodata(1)]).unwrap();
        assert_eq!(r.pending_windows(), 1);
        let flushed = r.flush();
        assert_eq!(
            flushed
                .iter()
                .map(|w| (w.start, w.base_windows))
                .collect::<Vec<_>>(),
            vec![(0, 2), (120, 1)]
        );
        assert_eq!(r.pending_windows(), 0);
    }

    #[test]
    fn equal_interval_passes_records_through_unchanged() {
        let mut r = Rollup::new(60, 60).unwrap();
        assert!(r.is_pass_through());
        // Deliberately not canonical and with duplicates and foreign start/end: nothing is touched.
        let mut a = ok(2, 1, Action::Accept, 1, 40, 0);
        a.start = 7;
        let recs = vec![
            a,
            ok(1, 1, Action::Accept, 1, 40, 0),
            ok(1, 1, Action::Accept, 2, 80, 2),
            nodata(3),
        ];
        r.push(120, 180, &recs).unwrap();
        let w = r.pop().unwrap();
        assert_eq!((w.start, w.end, w.base_windows), (120, 180, 1));
        assert_eq!(w.records, recs);
        r.push(300, 360, &[]).unwrap();
        assert_eq!(r.pop().map(|w| (w.start, w.records.len())), Some((300, 0)));
        assert_eq!(r.open_window(), None);
        assert!(r.flush().is_empty());
        assert!(matches!(
            r.push(300, 360, &[]),
            Err(RollupError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn the_latest_identity_of_an_eni_names_all_its_records() {
        let mut r = Rollup::new(60, 120).unwrap();
        let mut moved = nodata(1);
        moved.eni.vm_id = "i-moved".into();
        moved.eni.vswitch_id = "vsw-9".into();
        r.push(0, 60, &[ok(1, 1, Action::Accept, 1, 40, 0), skip(1, 1, 1)])
            .unwrap();
        r.push(60, 120, &[moved]).unwrap();
        let done = drain(&mut r);
        assert_eq!(done[0].records.len(), 2);
        assert!(
            done[0]
                .records
                .iter()
                .all(|rec| &*rec.eni.vm_id == "i-moved" && &*rec.eni.vswitch_id == "vsw-9"),
            "{:?}",
            done[0].records
        );
    }

    #[test]
    fn bad_intervals_and_windows_are_refused() {
        assert_eq!(
            Rollup::new(0, 60).err(),
            Some(RollupError::ZeroBaseInterval)
        );
        for (base, interval) in [(60, 0), (60, 90), (60, 30), (7, 600)] {
            assert_eq!(
                Rollup::new(base, interval).err(),
                Some(RollupError::NotAMultiple { base, interval })
            );
        }
        let error = Rollup::new(60, 90).unwrap_err().to_string();
        assert!(error.contains("90 s") && error.contains("60 s"), "{error}");
        let mut r = Rollup::new(60, 600).unwrap();
        assert_eq!((r.base_interval_secs(), r.interval_secs()), (60, 600));
        for (start, end) in [(30, 90), (0, 120), (60, 60), (u64::MAX - 15, u64::MAX)] {
            assert_eq!(
                r.push(start, end, &[nodata(1)]),
                Err(RollupError::Misaligned {
                    start,
                    end,
                    base: 60
                })
            );
        }
        r.push(120, 180, &[ok(1, 1, Action::Accept, 1, 40, 0)])
            .unwrap();
        for start in [0, 60, 120] {
            assert_eq!(
                r.push(start, start + 60, &[ok(1, 1, Action::Accept, 9, 9, 0)]),
                Err(RollupError::OutOfOrder { start, next: 180 })
            );
        }
        // The refused windows changed nothing.
        let flushed = r.flush();
        assert_eq!(
            rows(&flushed[0]),
            vec![(
                "eni-00001".into(),
                LogStatus::Ok,
                Some(1),
                Some(Action::Accept),
                1,
                40,
                0,
                0,
                600
            )]
        );
        // The last possible base window does not overflow.
        let top = u64::MAX - u64::MAX % 60 - 60;
        r.push(top, top + 60, &[nodata(1)]).unwrap();
        assert_eq!(r.flush().len(), 1);
    }

    /// Packets, bytes and OR-ed tcp-flags.
    type Sums = (u64, u64, u8);

    /// One generated base-window record: (eni 1..=3, kind: 0 OK / 1 SKIPDATA, srcport, reject, packets,
    /// bytes, tcp-flags).
    type Gen = (u8, u8, u16, bool, u64, u64, u8);

    /// The records of base window `[start, end)` as `records()` would make them: the generated ones, plus
    /// NODATA for every ENI 1..=3 without any.
    fn base_records(start: u64, end: u64, generated: &[Gen]) -> Vec<Record> {
        // One record per flow identity and one SKIPDATA per ENI, as a sealed window has: sum duplicates.
        let mut unique: BTreeMap<(u8, u8, u16, bool), Sums> = BTreeMap::new();
        for &(n, kind, sport, reject, packets, bytes, flags) in generated {
            let key = if kind == 0 {
                (n, 0, sport, reject)
            } else {
                (n, 1, 0, false)
            };
            let sum = unique.entry(key).or_default();
            sum.0 += packets;
            sum.1 += bytes;
            sum.2 |= flags;
        }
        let mut out = Vec::new();
        for ((n, kind, sport, reject), (packets, bytes, flags)) in unique {
            let action = if reject {
                Action::Reject
            } else {
                Action::Accept
            };
            out.push(match kind {
                0 => ok(n, sport, action, packets, bytes, flags),
                _ => skip(n, packets, bytes),
            });
        }
        for n in 1..=3 {
            if !generated.iter().any(|g| g.0 == n) {
                out.push(nodata(n));
            }
        }
        for record in &mut out {
            (record.start, record.end) = (start, end);
        }
        sort_canonical(&mut out);
        out
    }

    fn gen_record() -> impl Strategy<Value = Gen> {
        (
            1u8..=3,
            0u8..4,
            0u16..3,
            any::<bool>(),
            1u64..1000,
            1u64..100_000,
            any::<u8>(),
        )
            .prop_map(|(n, kind, sport, reject, p, b, f)| {
                (n, u8::from(kind == 3), sport, reject, p, b, f & 0x3f)
            })
    }

    /// The expected rollup output, from a straightforward model: per coarse window, OK sums per (eni, port,
    /// action), SKIPDATA sums per eni, NODATA per eni seen only as NODATA.
    type Model = BTreeMap<(u64, u8, &'static str, Option<(u16, bool)>), Sums>;

    fn model(windows: &[(u64, Vec<Gen>)], base: u64, interval: u64) -> Model {
        let mut m = Model::new();
        let mut seen: BTreeMap<(u64, u8), bool> = BTreeMap::new();
        for (index, generated) in windows {
            let coarse = index * base / interval * interval;
            for n in 1..=3 {
                let traffic = generated.iter().any(|g| g.0 == n);
                *seen.entry((coarse, n)).or_default() |= traffic;
            }
            for &(n, kind, sport, reject, p, b, f) in generated {
                let key = if kind == 0 {
                    (coarse, n, "OK", Some((sport, reject)))
                } else {
                    (coarse, n, "SKIPDATA", None)
                };
                let e = m.entry(key).or_default();
                e.0 += p;
                e.1 += b;
                e.2 |= if kind == 0 { f } else { 0 };
            }
        }
        for ((coarse, n), traffic) in seen {
            if !traffic {
                m.insert((coarse, n, "NODATA", None), (0, 0, 0));
            }
        }
        m
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Random base windows (with gaps) over several coarse windows give exactly the model's records: packets
        /// and bytes per (eni, flow identity) and per ENI's SKIPDATA conserved, flags OR-ed, NODATA only for ENIs
        /// quiet the whole coarse window; every coarse window is aligned, canonical and emitted once.
        #[test]
        fn matches_the_model_and_conserves_counts(
            base in prop::sample::select(vec![30u32, 60]),
            factor in prop::sample::select(vec![1u32, 2, 5, 10]),
            windows in prop::collection::btree_map(0u64..40, prop::collection::vec(gen_record(), 0..6), 0..25),
            flush_every in prop::option::of(3usize..10),
        ) {
            let interval = base * factor;
            let windows: Vec<(u64, Vec<Gen>)> = windows.into_iter().collect();
            let mut r = Rollup::new(base, interval).unwrap();
            let (b, i) = (u64::from(base), u64::from(interval));
            let mut out = Vec::new();
            let mut flushed_at = None;
            for (k, (index, generated)) in windows.iter().enumerate() {
                if let Some(every) = flush_every && k > 0 && k % every == 0 {
                    out.extend(r.flush());
                    flushed_at = Some(k);
                    // Pushes into a flushed coarse window are refused; model and run both skip them.
                    break;
                }
                let (start, end) = (index * b, index * b + b);
                r.push(start, end, &base_records(start, end, generated)).unwrap();
                out.extend(drain(&mut r));
            }
            out.extend(r.flush());
            let pushed = &windows[..flushed_at.unwrap_or(windows.len())];
            let mut got = Model::new();
            let mut starts = Vec::new();
            for w in &out {
                prop_assert_eq!(w.start % i, 0);
                prop_assert_eq!(w.end, w.start + i);
                prop_assert!(u64::from(w.base_windows) <= i / b && w.base_windows > 0);
                starts.push(w.start);
                let mut sorted = w.records.clone();
                sort_canonical(&mut sorted);
                prop_assert_eq!(&sorted, &w.records);
                for rec in &w.records {
                    prop_assert_eq!((rec.start, rec.end), (w.start, w.end));
                    let n = rec.eni.id.trim_start_matches("eni-").parse::<u8>().unwrap();
                    let flow = rec.srcport.map(|p| (p, rec.action == Some(Action::Reject)));
                    let previous = got.insert(
                        (rec.start, n, rec.log_status.as_str(), flow),
                        (rec.packets, rec.bytes, rec.tcp_flags),
                    );
                    prop_assert_eq!(previous, None, "duplicate record {:?}", rec);
                }
            }
            prop_assert!(starts.windows(2).all(|s| s[0] < s[1]), "{:?}", starts);
            prop_assert_eq!(got, model(pushed, b, i));
        }
    }

    /// A frame of TCP `sport` -> 443 between ENI `n` (sending when `out`) and a remote host.
    fn tcp_frame(n: u8, out: bool, sport: u16, flags: u8, data: usize) -> Vec<u8> {
        let (eni_mac, remote_mac) = ([2, 0, 0, 0xe1, 0, n], [2, 0, 0, 0, 0, 0xfe]);
        let (eni_ip, remote_ip) = ([10, 0, 0, n], [10, 9, 9, 9]);
        let (l2, l3) = if out {
            (
                eth(remote_mac, eni_mac, &[], 0x0800),
                ipv4(
                    eni_ip,
                    remote_ip,
                    6,
                    1,
                    0,
                    &[],
                    &tcp(sport, 443, flags, data),
                ),
            )
        } else {
            (
                eth(eni_mac, remote_mac, &[], 0x0800),
                ipv4(
                    remote_ip,
                    eni_ip,
                    6,
                    1,
                    0,
                    &[],
                    &tcp(443, sport, flags, data),
                ),
            )
        };
        frame(l2, l3)
    }

    /// All records of a meter at `interval` run over `frames` (time, eni, out, sport, flags, data, reject).
    fn meter_records(
        interval: u32,
        frames: &[(u64, u8, bool, u16, u8, usize, bool)],
    ) -> Vec<(u64, u64, Vec<Record>)> {
        let enis = Arc::new(EniTable::from_enis((1..=3).map(eni)).unwrap());
        let mut m = Meter::new(MeterConfig::new(interval, 1000), enis).unwrap();
        let mut sealed = Vec::new();
        for &(t, n, out, sport, flags, data, reject) in frames {
            let f = tcp_frame(n, out, sport, flags, data);
            let action = if reject {
                Action::Reject
            } else {
                Action::Accept
            };
            m.account(t, &f, f.len(), action, &mut sealed);
        }
        m.flush(&mut sealed);
        sealed
            .iter()
            .map(|w| (w.start(), w.end(), records(w)))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]

        /// Metering at 60 s and rolling up to the coarse interval gives exactly the records of metering at the
        /// coarse interval directly (OK sums and flags, NODATA, identities, start and end).
        #[test]
        fn rollup_of_a_base_meter_equals_a_coarse_meter(
            factor in prop::sample::select(vec![1u32, 5, 10]),
            mut frames in prop::collection::vec(
                (0u64..2400, 1u8..=3, any::<bool>(), 0u16..3, any::<u8>(), 0usize..40, any::<bool>()),
                1..60,
            ),
        ) {
            frames.sort_by_key(|f| f.0);
            let interval = 60 * factor;
            let direct: Vec<Record> = meter_records(interval, &frames)
                .into_iter()
                .flat_map(|(_, _, recs)| recs)
                .collect();
            let mut r = Rollup::new(60, interval).unwrap();
            let mut rolled = Vec::new();
            for (start, end, recs) in meter_records(60, &frames) {
                r.push(start, end, &recs).unwrap();
                rolled.extend(drain(&mut r));
            }
            rolled.extend(r.flush());
            let rolled: Vec<Record> = rolled.into_iter().flat_map(|w| w.records).collect();
            prop_assert_eq!(rolled, direct);
        }
    }
}
