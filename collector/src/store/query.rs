//! Reading a logstore back: record filters, and the scan of committed segment bytes into pages of records.
//!
//! # Guarantees
//! - Records come out in storage order (segment by segment, frame by frame, record by record), each stored record
//!   at most once, and only from bytes that were durable when the query started.
//! - Damaged frames are skipped and counted, never a panic.

use std::ops::ControlFlow;

use flowlog_proto::v1::{Action, IngestBatch, Record};
use prost::Message;

use super::frame::{self, Scanned};
use super::logstore::SegmentView;
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Records read from disk, matching or not.
    pub scanned: u64,
    /// Records handed out.
    pub returned: u64,
    /// Damaged stretches or undecodable frames skipped.
    pub skipped_frames: u64,
}

/// Scans `segments` (up to their committed lengths) and hands the matching records out in pages.
pub(super) fn run(
    segments: &[SegmentView],
    filter: &RecordFilter,
    limit: u64,
    page_records: usize,
    mut page: impl FnMut(Vec<Record>) -> ControlFlow<()>,
) -> Result<QueryStats, SegmentError> {
    let page_records = page_records.max(1);
    let limit = if limit == 0 { u64::MAX } else { limit };
    let mut stats = QueryStats::default();
    let mut current = Vec::with_capacity(page_records);
    'segments: for view in segments {
        let bytes = segment::read_committed(&view.path, view.committed)?;
        for item in frame::scan(&bytes) {
            let payload = match item {
                Scanned::Frame { payload, .. } => payload,
                Scanned::Corrupt { offset, len } | Scanned::Tail { offset, len } => {
                    stats.skipped_frames += 1;
                    tracing::debug!(file = %view.path.display(), offset, len, "damaged bytes skipped");
                    continue;
                }
            };
            let batch = match IngestBatch::decode(payload) {
                Ok(batch) => batch,
                Err(e) => {
                    stats.skipped_frames += 1;
                    tracing::debug!(file = %view.path.display(), error = %e, "undecodable frame skipped");
                    continue;
                }
            };
            for record in batch.records {
                stats.scanned += 1;
                if !filter.matches(&record) {
                    continue;
                }
                current.push(record);
                stats.returned += 1;
                if current.len() == page_records {
                    let full = std::mem::replace(&mut current, Vec::with_capacity(page_records));
                    if page(full).is_break() {
                        return Ok(stats);
                    }
                }
                if stats.returned == limit {
                    break 'segments;
                }
            }
        }
    }
    if !current.is_empty() {
        // The query is over either way; whether the consumer wants more does not matter.
        let _ = page(current);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            views.push(SegmentView { path, committed });
        }

        let collect = |filter: &RecordFilter, limit: u64, page_records: usize| {
            let mut pages = Vec::new();
            let stats = run(&views, filter, limit, page_records, |page| {
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
                skipped_frames: 0
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
        run(&views, &RecordFilter::default(), 0, 2, |_| {
            calls += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(calls, 1, "a consumer that breaks gets no more pages");
    }
}
