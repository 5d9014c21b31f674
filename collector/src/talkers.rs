//! Top talkers by a dictionary-aware scan: the built-in analysis "top source addresses by bytes (or packets)" over
//! a time range, computed without a general hash aggregation.
//!
//! # Design
//! Parquet stores `srcaddr` dictionary-encoded. Read as a dictionary array, a batch's addresses are small integer
//! keys into the column chunk's dictionary, so sums go into plain arrays indexed by key; the strings are looked at
//! once per dictionary entry (when the dictionary changes, at the next row group), not once per row. Files are
//! scanned in parallel, one thread per core. Records still in the write-ahead log are added record by record.
//!
//! # Guarantees
//! The same rows, in the same order, as the analysis's SQL ([`crate::analysis::Analysis::Talkers`] without
//! filters: `GROUP BY srcaddr` over OK records, ordered by the measure, then the other measure, then `srcaddr`);
//! a unit test compares both on the same data. A damaged file is an error naming it, never a panic.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, StringViewArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use flowlog_proto::v1::{IngestBatch, LogStatus};
use prost::Message;

use crate::analysis::Measure;
use crate::render;
use crate::sql::SqlError;
use crate::store::columnar;
use crate::store::frame::{self, Scanned};
use crate::store::logstore::Snapshot;
use crate::store::{RecordFilter, segment};

/// Sums of one source: bytes, packets, records.
type Sums = [i64; 3];

/// A source address (`None`: an OK record without one, which SQL groups as NULL).
type Source = Option<String>;

/// The slot of dictionary entries that are null.
const NO_ADDRESS: usize = usize::MAX;

/// The result's schema: the columns of the analysis's SQL.
pub fn result_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("srcaddr", DataType::Utf8View, true),
        Field::new("bytes", DataType::Int64, true),
        Field::new("packets", DataType::Int64, true),
        Field::new("records", DataType::Int64, true),
    ]))
}

/// The `limit` top talkers of the snapshot's records whose window starts in `range`, by `by`.
pub fn top_talkers(
    snapshot: &Snapshot,
    range: &RecordFilter,
    by: Measure,
    limit: u64,
) -> Result<RecordBatch, SqlError> {
    let files: Vec<std::path::PathBuf> = snapshot
        .files
        .iter()
        .filter(|f| range.may_match_range(f.entry.min_start, f.entry.max_start))
        .map(|f| f.path().to_owned())
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, files.len().max(1));
    let mut totals: HashMap<Source, Sums> = HashMap::new();
    let partials = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let files = &files;
                scope.spawn(move || -> Result<HashMap<Source, Sums>, SqlError> {
                    let mut sums = HashMap::new();
                    for path in files.iter().skip(worker).step_by(threads) {
                        scan_file(path, range, &mut sums)?;
                    }
                    Ok(sums)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| SqlError::Execution("a scan thread panicked".into()))?
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    for partial in partials {
        merge(&mut totals, partial);
    }
    scan_log(snapshot, range, &mut totals)?;

    let mut rows: Vec<(Source, Sums)> = totals.into_iter().collect();
    let key = |s: &Sums| match by {
        Measure::Bytes => (s[0], s[1]),
        Measure::Packets => (s[1], s[0]),
    };
    // As SQL orders: the measures descending, then the address ascending with NULL last.
    rows.sort_by(|a, b| {
        key(&b.1).cmp(&key(&a.1)).then_with(|| match (&a.0, &b.0) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
    });
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringViewArray::from_iter(
            rows.iter().map(|(a, _)| a.as_deref()),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1[0]))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1[1]))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1[2]))),
    ];
    RecordBatch::try_new(result_schema(), columns).map_err(|e| SqlError::Execution(e.to_string()))
}

fn merge(into: &mut HashMap<Source, Sums>, from: HashMap<Source, Sums>) {
    for (address, sums) in from {
        let entry = into.entry(address).or_default();
        for (total, add) in entry.iter_mut().zip(sums) {
            *total = total.saturating_add(add);
        }
    }
}

/// Adds one Parquet file's OK records in `range` to `sums`.
fn scan_file(
    path: &std::path::Path,
    range: &RecordFilter,
    sums: &mut HashMap<Source, Sums>,
) -> Result<(), SqlError> {
    let failed = |e: &dyn std::fmt::Display| {
        SqlError::Execution(format!("parquet file {}: {e}", path.display()))
    };
    let file = File::open(path).map_err(|e| failed(&e))?;
    // The records schema with the two columns used as keys read as dictionaries (as they are stored).
    let schema = columnar::schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "srcaddr" | "log_status" => Field::new(
                f.name(),
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                f.is_nullable(),
            ),
            _ => f.as_ref().clone(),
        })
        .collect();
    let options = ArrowReaderOptions::new().with_schema(Arc::new(Schema::new(fields)));
    let metadata = ArrowReaderMetadata::load(&file, options).map_err(|e| failed(&e))?;
    let index = |name: &str| schema.index_of(name).map_err(|e| failed(&e));
    let wanted = [
        index("srcaddr")?,
        index("packets")?,
        index("bytes")?,
        index("start")?,
        index("log_status")?,
    ];
    let mask = ProjectionMask::roots(metadata.metadata().file_metadata().schema_descr(), wanted);
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata)
        .with_projection(mask)
        // One batch per row group: one dictionary per batch, settled once.
        .with_batch_size(crate::store::parquet::ROW_GROUP_ROWS)
        .build()
        .map_err(|e| failed(&e))?;

    // Sums by slot; a slot per address seen in this file. Each dictionary (one per row group, normally) is
    // mapped to slots once.
    let mut slots: HashMap<String, usize> = HashMap::new();
    let mut dense: Vec<Sums> = Vec::new();
    let mut no_address: Sums = [0; 3];
    let mut dictionary: Option<ArrayRef> = None;
    let mut key_slots: Vec<usize> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| failed(&e))?;
        let column = |name: &str| batch.column_by_name(name).ok_or_else(|| failed(&name));
        let src = column("srcaddr")?
            .as_dictionary_opt::<Int32Type>()
            .ok_or_else(|| failed(&"srcaddr is not a dictionary"))?;
        let status = column("log_status")?
            .as_dictionary_opt::<Int32Type>()
            .ok_or_else(|| failed(&"log_status is not a dictionary"))?;
        let packets = column("packets")?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| failed(&"packets is not Int64"))?;
        let bytes = column("bytes")?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| failed(&"bytes is not Int64"))?;
        let start = column("start")?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| failed(&"start is not Int64"))?;
        let status_values = status
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(|| failed(&"log_status values are not text"))?;
        let ok: Vec<bool> = (0..status_values.len())
            .map(|i| status_values.is_valid(i) && status_values.value(i) == "OK")
            .collect();

        let values = src.values();
        let same = dictionary
            .as_ref()
            .is_some_and(|d| d.to_data().ptr_eq(&values.to_data()));
        if !same {
            let text: &StringArray = values
                .as_string_opt::<i32>()
                .ok_or_else(|| failed(&"srcaddr dictionary is not text"))?;
            key_slots.clear();
            for key in 0..text.len() {
                if text.is_null(key) {
                    key_slots.push(NO_ADDRESS);
                    continue;
                }
                let address = text.value(key);
                let slot = match slots.get(address) {
                    Some(&slot) => slot,
                    None => {
                        slots.insert(address.to_owned(), dense.len());
                        dense.push([0; 3]);
                        dense.len() - 1
                    }
                };
                key_slots.push(slot);
            }
            dictionary = Some(values.clone());
        }
        let keys = src.keys();
        let status_keys = status.keys();
        let all_in_range = range.from.is_none() && range.to.is_none();
        for i in 0..batch.num_rows() {
            if status_keys.is_null(i) {
                continue;
            }
            let is_ok = usize::try_from(status_keys.value(i))
                .ok()
                .and_then(|k| ok.get(k).copied())
                .unwrap_or(false);
            if !is_ok {
                continue;
            }
            if !all_in_range {
                let t = start.value(i);
                if range.from.is_some_and(|from| t < from) || range.to.is_some_and(|to| t >= to) {
                    continue;
                }
            }
            let slot = match keys
                .is_valid(i)
                .then(|| usize::try_from(keys.value(i)).ok())
            {
                None => &mut no_address,
                Some(key) => match key.and_then(|k| key_slots.get(k)) {
                    Some(&NO_ADDRESS) => &mut no_address,
                    Some(&slot) => match dense.get_mut(slot) {
                        Some(slot) => slot,
                        None => return Err(failed(&"dictionary key out of range")),
                    },
                    None => return Err(failed(&"dictionary key out of range")),
                },
            };
            slot[0] = slot[0].saturating_add(bytes.value(i));
            slot[1] = slot[1].saturating_add(packets.value(i));
            slot[2] += 1;
        }
    }
    for (address, slot) in slots {
        if slot_used(&dense, slot) {
            add(sums, Some(address), dense[slot]);
        }
    }
    if no_address[2] > 0 {
        add(sums, None, no_address);
    }
    Ok(())
}

/// Whether a slot counted any record.
fn slot_used(dense: &[Sums], slot: usize) -> bool {
    dense.get(slot).is_some_and(|s| s[2] > 0)
}

/// Adds `more` to the sums of `source`.
fn add(sums: &mut HashMap<Source, Sums>, source: Source, more: Sums) {
    let entry = sums.entry(source).or_default();
    for (total, add) in entry.iter_mut().zip(more) {
        *total = total.saturating_add(add);
    }
}

/// Adds the snapshot's log records (OK, in `range`) to `sums`.
fn scan_log(
    snapshot: &Snapshot,
    range: &RecordFilter,
    sums: &mut HashMap<Source, Sums>,
) -> Result<(), SqlError> {
    for view in &snapshot.segments {
        if view.committed == 0 {
            continue;
        }
        let bytes = segment::read_committed(&view.path, view.committed)
            .map_err(|e| SqlError::Execution(e.to_string()))?;
        for item in frame::scan(&bytes) {
            // Damaged stretches are reported at open; every reader skips them alike.
            let Scanned::Frame { payload, .. } = item else {
                continue;
            };
            let Ok(batch) = IngestBatch::decode(payload) else {
                continue;
            };
            for r in &batch.records {
                if r.log_status != LogStatus::Ok as i32 || !range.matches(r) {
                    continue;
                }
                let source = render::address(&r.srcaddr).map(|a| a.to_string());
                let entry = sums.entry(source).or_default();
                entry[0] = entry[0].saturating_add(i64::try_from(r.bytes).unwrap_or(i64::MAX));
                entry[1] = entry[1].saturating_add(i64::try_from(r.packets).unwrap_or(i64::MAX));
                entry[2] += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Analysis, Filters};
    use crate::config::Config;
    use crate::sql::{AnalysisQuery, SqlEngine, SqlQuery};
    use crate::store::Store;
    use flowlog_proto::v1::{Action, Record};

    fn record(i: u64) -> Record {
        let nodata = i.is_multiple_of(17);
        let start = 3600 * (i % 4) as i64 + 60 * (i % 7) as i64;
        Record {
            version: 1,
            eni_id: format!("eni-{}", i % 3),
            srcaddr: if nodata {
                vec![]
            } else {
                vec![10, 0, 0, (i % 9) as u8]
            },
            dstaddr: if nodata { vec![] } else { vec![10, 0, 1, 1] },
            srcport: (!nodata).then_some(1),
            dstport: (!nodata).then_some(2),
            protocol: (!nodata).then_some(6),
            packets: if nodata { 0 } else { 1 + i % 3 },
            bytes: if nodata { 0 } else { 100 * (i % 4) },
            start,
            end: start + 60,
            log_status: if nodata {
                LogStatus::Nodata
            } else {
                LogStatus::Ok
            } as i32,
            action: if nodata {
                Action::Unspecified
            } else {
                Action::Accept
            } as i32,
            ..Record::default()
        }
    }

    /// The scan and the analysis's SQL agree, over Parquet and log, with and without a range, by either measure.
    #[test]
    fn the_scan_returns_what_the_sql_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), Config::default().store).unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ingest = |sequence: u64, records: std::ops::Range<u64>| {
            let batch = IngestBatch {
                exporter_id: "exp".into(),
                sequence,
                project: "proj".into(),
                logstore: "flows".into(),
                records: records.map(record).collect(),
            };
            runtime
                .block_on(store.submit(&batch).unwrap().durable())
                .unwrap();
        };
        ingest(1, 0..400);
        ingest(2, 400..800);
        store.maintain_now(true);
        ingest(3, 800..1000);
        assert!(
            store.logstores(None).unwrap()[0].wal_bytes > 0,
            "some records still in the log"
        );

        let engine = SqlEngine::new(store.clone(), 1 << 30, 1000);
        let pretty = |batches: &[RecordBatch]| {
            let cast: Vec<RecordBatch> = batches
                .iter()
                .map(|b| {
                    let columns = b
                        .columns()
                        .iter()
                        .map(|c| match c.data_type() {
                            DataType::Utf8View => {
                                datafusion::arrow::compute::cast(c, &DataType::Utf8).unwrap()
                            }
                            _ => c.clone(),
                        })
                        .collect::<Vec<_>>();
                    RecordBatch::try_from_iter(
                        b.schema()
                            .fields()
                            .iter()
                            .map(|f| f.name().clone())
                            .zip(columns),
                    )
                    .unwrap()
                })
                .collect();
            datafusion::arrow::util::pretty::pretty_format_batches(&cast)
                .unwrap()
                .to_string()
        };
        for (from, to) in [(None, None), (Some(3600), Some(3 * 3600 + 120))] {
            for by in [Measure::Bytes, Measure::Packets] {
                let analysis = Analysis::Talkers { by, limit: 6 };
                let query = AnalysisQuery {
                    project: "proj".into(),
                    logstore: "flows".into(),
                    from,
                    to,
                    analysis,
                    filters: Filters::default(),
                };
                let (_, fast) = runtime.block_on(engine.analyze(&query)).unwrap();
                let (_, sql, _) = runtime
                    .block_on(async {
                        engine
                            .run(&SqlQuery {
                                project: "proj".into(),
                                logstore: "flows".into(),
                                from,
                                to,
                                sql: analysis.sql(&Filters::default()),
                                max_rows: 0,
                            })
                            .await?
                            .collect()
                            .await
                    })
                    .unwrap();
                assert_eq!(pretty(&fast), pretty(&sql), "{from:?}..{to:?} by {by:?}");
                assert_eq!(fast[0].num_rows(), 6);
            }
        }
    }
}
