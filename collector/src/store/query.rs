//! Reading a logstore back record by record: record filters, and the scan of a [`Snapshot`] (Parquet files, then
//! committed segment bytes) into pages of records.
//!
//! # Guarantees
//! - Records come out in storage order: the Parquet files in manifest order (within a file, as converted), then the
//!   segments not yet converted (segment by segment, frame by frame, record by record); each stored record exactly
//!   once, and only what was durable when the snapshot was taken.
//! - Damaged frames and unreadable Parquet files are skipped, counted and described in [`QueryStats::problems`],
//!   never a panic.

use std::ops::ControlFlow;

use flowlog_proto::v1::{Action, IngestBatch, Record};
use prost::Message;

use super::columnar;
use super::frame::{self, Scanned};
use super::logstore::Snapshot;
use super::parquet;
use super::segment::{self, SegmentError};

/// Which records a query wants. `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    /// Only records whose window starts at or after this Unix second.
    pub from: Option<i64>,
    /// Only records whose window starts before this Unix second.
    pub to: Option<i64>,
    /// Only records of this ENI.
    pub eni_id: Option<String>,
    /// Only records with this action.
    pub action: Option<Action>,
}

impl RecordFilter {
    /// Whether a file whose window starts lie in `min_start..=max_start` may hold matching records.
    pub fn may_match_range(&self, min_start: i64, max_start: i64) -> bool {
        self.from.is_none_or(|from| max_start >= from) && self.to.is_none_or(|to| min_start < to)
    }

    /// Whether `record` passes the filter.
    pub fn matches(&self, record: &Record) -> bool {
        self.from.is_none_or(|from| record.start >= from)
            && self.to.is_none_or(|to| record.start < to)
            && self
                .eni_id
                .as_deref()
                .is_none_or(|eni| record.eni_id == eni)
            && self
                .action
                .is_none_or(|action| record.action == action as i32)
    }
}

/// What a query went through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Records read from disk, matching or not.
    pub scanned: u64,
    /// Records handed out.
    pub returned: u64,
    /// Damaged stretches or undecodable frames skipped.
    pub skipped_frames: u64,
    /// Parquet files (or parts of them) that could not be read, with the reason.
    pub problems: Vec<String>,
}

/// Hands out matching records in pages until the limit; `Break` once the query is over.
struct Pager<'a, F> {
    filter: &'a RecordFilter,
    limit: u64,
    page_records: usize,
    current: Vec<Record>,
    page: F,
    stats: QueryStats,
}

impl<F: FnMut(Vec<Record>) -> ControlFlow<()>> Pager<'_, F> {
    fn offer(&mut self, record: Record) -> ControlFlow<()> {
        self.stats.scanned += 1;
        if !self.filter.matches(&record) {
            return ControlFlow::Continue(());
        }
        self.current.push(record);
        self.stats.returned += 1;
        if self.current.len() == self.page_records {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(self.page_records));
            (self.page)(full)?;
        }
        if self.stats.returned == self.limit {
            if !self.current.is_empty() {
                // The query is over either way; whether the consumer wants more does not matter.
                let _ = (self.page)(std::mem::take(&mut self.current));
            }
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn finish(mut self) -> QueryStats {
        if !self.current.is_empty() {
            // The query is over either way; whether the consumer wants more does not matter.
            let _ = (self.page)(std::mem::take(&mut self.current));
        }
        self.stats
    }
}

/// Scans the snapshot's Parquet files and segments (up to their committed lengths) and hands the matching records
/// out in pages.
pub(super) fn run(
    snapshot: &Snapshot,
    filter: &RecordFilter,
    limit: u64,
    page_records: usize,
    page: impl FnMut(Vec<Record>) -> ControlFlow<()>,
) -> Result<QueryStats, SegmentError> {
    let page_records = page_records.max(1);
    let mut pager = Pager {
        filter,
        limit: if limit == 0 { u64::MAX } else { limit },
        page_records,
        current: Vec::with_capacity(page_records),
        page,
        stats: QueryStats::default(),
    };
    if read_files(snapshot, &mut pager).is_break() {
        return Ok(pager.stats);
    }
    if read_segments(snapshot, &mut pager)?.is_break() {
        return Ok(pager.stats);
    }
    Ok(pager.finish())
}

fn read_files<F: FnMut(Vec<Record>) -> ControlFlow<()>>(
    snapshot: &Snapshot,
    pager: &mut Pager<'_, F>,
) -> ControlFlow<()> {
    for file in &snapshot.files {
        if !pager
            .filter
            .may_match_range(file.entry.min_start, file.entry.max_start)
        {
            continue;
        }
        let batches = match parquet::reader(file.path(), 8192) {
            Ok(batches) => batches,
            Err(e) => {
                pager.stats.problems.push(e.to_string());
                continue;
            }
        };
        for batch in batches {
            let records = match batch.map_err(|e| e.to_string()).and_then(|b| {
                columnar::records_from_batch(&b)
                    .map_err(|e| format!("{}: {e}", file.path().display()))
            }) {
                Ok(records) => records,
                Err(problem) => {
                    pager.stats.problems.push(problem);
                    break;
                }
            };
            for record in records {
                pager.offer(record)?;
            }
        }
    }
    ControlFlow::Continue(())
}

fn read_segments<F: FnMut(Vec<Record>) -> ControlFlow<()>>(
    snapshot: &Snapshot,
    pager: &mut Pager<'_, F>,
) -> Result<ControlFlow<()>, SegmentError> {
    for view in &snapshot.segments {
        let bytes = segment::read_committed(&view.path, view.committed)?;
        for item in frame::scan(&bytes) {
            let payload = match item {
                Scanned::Frame { payload, .. } => payload,
                Scanned::Corrupt { offset, len } | Scanned::Tail { offset, len } => {
                    pager.stats.skipped_frames += 1;
                    tracing::debug!(file = %view.path.display(), offset, len, "damaged bytes skipped");
                    continue;
                }
            };
            let batch = match IngestBatch::decode(payload) {
                Ok(batch) => batch,
                Err(e) => {
                    pager.stats.skipped_frames += 1;
                    tracing::debug!(file = %view.path.display(), error = %e, "undecodable frame skipped");
                    continue;
                }
            };
            for record in batch.records {
                if pager.offer(record).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
    }
    Ok(ControlFlow::Continue(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::logstore::SegmentView;

    fn record(eni: &str, start: i64, action: Action) -> Record {
        Record {
            eni_id: eni.into(),
            start,
            action: action as i32,
            ..Record::default()
        }
    }

    #[test]
    fn filter_semantics() {
        let r = record("eni-1", 120, Action::Reject);
        assert!(RecordFilter::default().matches(&r));
        assert!(
            RecordFilter {
                from: Some(120),
                to: Some(121),
                ..RecordFilter::default()
            }
            .matches(&r)
        );
        assert!(
            !RecordFilter {
                from: Some(121),
                ..RecordFilter::default()
            }
            .matches(&r)
        );
        assert!(
            !RecordFilter {
                to: Some(120),
                ..RecordFilter::default()
            }
            .matches(&r)
        );
        assert!(
            RecordFilter {
                eni_id: Some("eni-1".into()),
                ..RecordFilter::default()
            }
            .matches(&r)
        );
        assert!(
            !RecordFilter {
                eni_id: Some("eni-2".into()),
                ..RecordFilter::default()
            }
            .matches(&r)
        );
        assert!(
            RecordFilter {
                action: Some(Action::Reject),
                ..RecordFilter::default()
            }
            .matches(&r)
        );
        assert!(
            !RecordFilter {
                action: Some(Action::Accept),
                ..RecordFilter::default()
            }
            .matches(&r)
        );
    }

    #[test]
    fn pages_limit_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut views = Vec::new();
        let mut n = 0;
        for file in 0..2u64 {
            let mut bytes = Vec::new();
            for _ in 0..3 {
                let records = (0..4)
                    .map(|_| {
                        n += 1;
                        record(
                            "eni-1",
                            n,
                            if n % 2 == 0 {
                                Action::Reject
                            } else {
                                Action::Accept
                            },
                        )
                    })
                    .collect();
                let batch = IngestBatch {
                    records,
                    ..IngestBatch::default()
                };
                frame::encode_into(&batch.encode_to_vec(), &mut bytes).unwrap();
            }
            // Bytes past the committed length are never read.
            let committed = bytes.len() as u64;
            bytes.extend_from_slice(b"FLB1 uncommitted garbage");
            let path = dir.path().join(segment::file_name(file));
            std::fs::write(&path, &bytes).unwrap();
            views.push(SegmentView::new(file, path, committed));
        }

        let snapshot = Snapshot {
            segments: views,
            files: Vec::new(),
        };
        let collect = |filter: &RecordFilter, limit: u64, page_records: usize| {
            let mut pages = Vec::new();
            let stats = run(&snapshot, filter, limit, page_records, |page| {
                pages.push(page.iter().map(|r| r.start).collect::<Vec<_>>());
                ControlFlow::Continue(())
            })
            .unwrap();
            (pages, stats)
        };
        let (pages, stats) = collect(&RecordFilter::default(), 0, 5);
        assert_eq!(pages.concat(), (1..=24).collect::<Vec<_>>());
        assert_eq!(
            pages.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![5, 5, 5, 5, 4]
        );
        assert_eq!(
            stats,
            QueryStats {
                scanned: 24,
                returned: 24,
                skipped_frames: 0,
                problems: Vec::new(),
            }
        );

        let rejects = RecordFilter {
            action: Some(Action::Reject),
            ..RecordFilter::default()
        };
        let (pages, stats) = collect(&rejects, 3, 1000);
        assert_eq!(pages, vec![vec![2, 4, 6]]);
        assert_eq!(stats.returned, 3);

        let mut calls = 0;
        run(&snapshot, &RecordFilter::default(), 0, 2, |_| {
            calls += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(calls, 1, "a consumer that breaks gets no more pages");
    }
}
