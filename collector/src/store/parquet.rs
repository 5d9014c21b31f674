//! Parquet files of records: writing one durably, reading one back, and checking one against the manifest.
//!
//! Files use the schema of [`super::columnar`], Snappy compression, dictionary encoding (addresses stay dictionary
//! encoded through whole row groups), row groups of at most [`ROW_GROUP_ROWS`] rows and page statistics (so readers can skip row groups by `start`). Any Parquet reader
//! (DuckDB, pandas/pyarrow, Spark) reads them.
//!
//! # Guarantees
//! - [`write`] makes the file durable under its final name in one step: it writes `NAME.tmp`, fsyncs it, renames it
//!   and fsyncs the directory (creating the partition directories durably first). A crash leaves no partial file
//!   under a final name.
//! - [`verify`] and [`read`] report a truncated or damaged file as an error naming it; they never panic on its
//!   bytes (the Parquet reader's own checks, plus the size recorded in the manifest).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use thiserror::Error;

use super::columnar;
use super::manifest::FileEntry;
use super::segment::{self, SegmentError};

/// Most rows per row group.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

/// Errors of Parquet file handling.
#[derive(Debug, Error)]
pub enum ParquetFileError {
    /// A file or directory operation failed.
    #[error(transparent)]
    Io(#[from] SegmentError),
    /// The Parquet library refused to write or read the file (a damaged file when reading).
    #[error("parquet file {path}: {error}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The library's message.
        error: String,
    },
    /// The file does not match what the manifest says of it.
    #[error("parquet file {path}: {reason}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
}

/// What [`write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Records written.
    pub records: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// Smallest and largest `start` written.
    pub min_start: i64,
    /// See `min_start`.
    pub max_start: i64,
}

/// Writes `batches` (records schema) to `root/relative` durably. `root` must exist.
pub fn write(
    root: &Path,
    relative: &str,
    batches: &[RecordBatch],
) -> Result<Written, ParquetFileError> {
    let mut writer = Writer::create(root, relative)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()
}

/// A Parquet file being written batch by batch; it appears under its final name only at [`Writer::finish`].
/// Dropped unfinished, it leaves a `.tmp` file that the next open removes.
pub struct Writer {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
    inner: ArrowWriter<File>,
    written: Written,
}

impl Writer {
    /// Starts `root/relative` (creating its partition directories durably). `root` must exist.
    pub fn create(root: &Path, relative: &str) -> Result<Writer, ParquetFileError> {
        let path = root.join(relative);
        let dir = path.parent().unwrap_or(root).to_owned();
        segment::create_dir_durable(root, &dir)?;
        let tmp = path.with_extension("parquet.tmp");
        let file = File::create(&tmp).map_err(SegmentError::io("create", &tmp))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_statistics_enabled(EnabledStatistics::Page)
            // Keep the address columns dictionary-encoded through a whole row group (the default 1 MiB limit
            // falls back to plain values past ~60k distinct IPv4 addresses): smaller files, and readers can
            // aggregate by dictionary key.
            .set_column_dictionary_page_size_limit(ColumnPath::from("srcaddr"), 16 << 20)
            .set_column_dictionary_page_size_limit(ColumnPath::from("dstaddr"), 16 << 20)
            .set_created_by(format!("flowlog-collector {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "flowlog.record-version".to_owned(),
                "1".to_owned(),
            )]))
            .build();
        let inner = ArrowWriter::try_new(file, columnar::schema(), Some(properties))
            .map_err(|e| parquet_error(&path, e))?;
        Ok(Writer {
            path,
            tmp,
            dir,
            inner,
            written: Written {
                records: 0,
                bytes: 0,
                min_start: i64::MAX,
                max_start: i64::MIN,
            },
        })
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.written.records
    }

    /// Appends a batch (records schema).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetFileError> {
        self.inner
            .write(batch)
            .map_err(|e| parquet_error(&self.path, e))?;
        self.written.records += batch.num_rows() as u64;
        if let Some(start) = batch
            .column_by_name("start")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
        {
            for value in start.values().iter() {
                self.written.min_start = self.written.min_start.min(*value);
                self.written.max_start = self.written.max_start.max(*value);
            }
        }
        Ok(())
    }

    /// Writes the footer, fsyncs, and renames the file into place (fsyncing its directory).
    pub fn finish(mut self) -> Result<Written, ParquetFileError> {
        // Writes the footer and hands the file back.
        let file = self
            .inner
            .into_inner()
            .map_err(|e| parquet_error(&self.path, e))?;
        file.sync_all()
            .map_err(SegmentError::io("fsync", &self.tmp))?;
        self.written.bytes = file
            .metadata()
            .map_err(SegmentError::io("stat", &self.tmp))?
            .len();
        drop(file);
        fs::rename(&self.tmp, &self.path).map_err(SegmentError::io("rename", &self.tmp))?;
        segment::sync_dir(&self.dir)?;
        Ok(self.written)
    }
}

fn parquet_error(
    path: &Path,
    error: datafusion::parquet::errors::ParquetError,
) -> ParquetFileError {
    ParquetFileError::Parquet {
        path: path.to_owned(),
        error: error.to_string(),
    }
}

/// Opens a file for reading, in record batches of at most `batch_rows` rows.
pub fn reader(
    path: &Path,
    batch_rows: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch, ParquetFileError>> + use<>, ParquetFileError> {
    let owned = path.to_owned();
    let parquet_error = move |error: String| ParquetFileError::Parquet {
        path: owned.clone(),
        error,
    };
    let file = File::open(path).map_err(SegmentError::io("open", path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| parquet_error(e.to_string()))?
        .with_batch_size(batch_rows.max(1))
        .build()
        .map_err(|e| parquet_error(e.to_string()))?;
    Ok(reader.map(move |batch| batch.map_err(|e| parquet_error(e.to_string()))))
}

/// Reads a whole file into record batches of at most `batch_rows` rows.
pub fn read(path: &Path, batch_rows: usize) -> Result<Vec<RecordBatch>, ParquetFileError> {
    reader(path, batch_rows)?.collect()
}

/// Checks that the file exists with the size the manifest recorded and that its footer is a Parquet footer
/// describing as many rows as the manifest says.
pub fn verify(root: &Path, entry: &FileEntry) -> Result<(), ParquetFileError> {
    let path = root.join(&entry.path);
    let mismatch = |reason: String| ParquetFileError::Mismatch {
        path: path.clone(),
        reason,
    };
    let file = File::open(&path).map_err(SegmentError::io("open", &path))?;
    let size = file
        .metadata()
        .map_err(SegmentError::io("stat", &path))?
        .len();
    if size != entry.bytes {
        return Err(mismatch(format!(
            "{size} bytes on disk, {} recorded (truncated or replaced)",
            entry.bytes
        )));
    }
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ParquetFileError::Parquet {
            path: path.clone(),
            error: e.to_string(),
        })?;
    let rows = builder.metadata().file_metadata().num_rows();
    if u64::try_from(rows).ok() != Some(entry.records) {
        return Err(mismatch(format!(
            "footer says {rows} rows, {} recorded",
            entry.records
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowlog_proto::v1::{LogStatus, Record};

    fn batch(starts: &[i64]) -> RecordBatch {
        let mut builder = columnar::BatchBuilder::new(starts.len());
        for &start in starts {
            builder.push(&Record {
                version: 1,
                eni_id: "eni-1".into(),
                start,
                end: start + 60,
                log_status: LogStatus::Nodata as i32,
                ..Record::default()
            });
        }
        builder.finish()
    }

    #[test]
    fn write_read_verify() {
        let root = tempfile::tempdir().unwrap();
        let relative = "date=2023-11-14/hour=22/part-00000001.parquet";
        let written = write(root.path(), relative, &[batch(&[120, 60]), batch(&[180])]).unwrap();
        assert_eq!(
            (written.records, written.min_start, written.max_start),
            (3, 60, 180)
        );
        let path = root.path().join(relative);
        assert_eq!(fs::metadata(&path).unwrap().len(), written.bytes);
        assert!(!path.with_extension("parquet.tmp").exists());
        let back = read(&path, 2).unwrap();
        let records: Vec<Record> = back
            .iter()
            .flat_map(|b| columnar::records_from_batch(b).unwrap())
            .collect();
        assert_eq!(
            records.iter().map(|r| r.start).collect::<Vec<_>>(),
            vec![120, 60, 180]
        );
        let entry = FileEntry {
            path: relative.into(),
            hour: 0,
            records: 3,
            bytes: written.bytes,
            min_start: 60,
            max_start: 180,
        };
        verify(root.path(), &entry).unwrap();

        // Truncation and damage are errors naming the file, never panics.
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = verify(root.path(), &entry).unwrap_err().to_string();
        assert!(
            err.contains("part-00000001") && err.contains("truncated"),
            "{err}"
        );
        assert!(read(&path, 10).is_err());
        let mut garbled = bytes.clone();
        let tail = garbled.len() - 40;
        let end = garbled.len() - 8;
        for b in &mut garbled[tail..end] {
            *b ^= 0xa5;
        }
        fs::write(&path, &garbled).unwrap();
        assert!(verify(root.path(), &entry).is_err());
        assert!(
            verify(
                root.path(),
                &FileEntry {
                    path: "missing.parquet".into(),
                    ..entry
                }
            )
            .is_err()
        );
    }
}
