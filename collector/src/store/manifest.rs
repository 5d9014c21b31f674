//! A logstore's `MANIFEST`: which Parquet files hold its converted records, and up to which write-ahead-log
//! segment the log has been converted.
//!
//! The manifest is the commit point of every change to the Parquet side: a conversion, a compaction or a
//! retention pass writes its new files first, then replaces the manifest atomically ([`Manifest::store`]: tmp
//! file, fsync, rename, fsync directory), and only then removes what the new manifest no longer names. So after a
//! crash at any point, the manifest names exactly one consistent state, and [`super::logstore`] removes at open
//! whatever it does not name (unfinished files, segments already converted).
//!
//! # Format
//! One frame ([`super::frame`]: magic, length, CRC-32) whose payload is JSON, e.g.
//! `{"format":1,"converted-through":12,"next-file":57,"files":[{"path":"date=2026-11-26/hour=10/part-00000056.parquet",
//! "hour":1795687200,"records":1000,"bytes":51234,"min-start":1795687200,"max-start":1795690740}]}`.
//!
//! # Guarantees
//! A damaged manifest (bad CRC, torn, not this JSON) is an error naming the file, never a panic and never taken
//! for an empty one.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::frame::{self, Scanned};
use super::segment::{self, SegmentError};

/// File name of the manifest within a logstore directory.
pub const FILE_NAME: &str = "MANIFEST";

/// The manifest format written by this version.
pub const FORMAT: u32 = 1;

/// Errors reading or writing a manifest.
#[derive(Debug, Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("read {path}: {error}")]
    Read {
        /// The manifest file.
        path: String,
        /// The underlying error.
        error: io::Error,
    },
    /// The file is damaged or not a manifest of a known format.
    #[error("manifest {path} is damaged: {reason}")]
    Damaged {
        /// The manifest file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing the new manifest failed; the old one is still in force.
    #[error(transparent)]
    Write(#[from] SegmentError),
}

/// The manifest's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// Every segment with an id up to this one has been converted into the files below (and may be deleted).
    pub converted_through: Option<u64>,
    /// Number for the next Parquet file's name; file numbers are never reused.
    pub next_file: u64,
    /// The live Parquet files, in the order they were committed.
    pub files: Vec<FileEntry>,
}

/// One live Parquet file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileEntry {
    /// Path relative to the logstore directory: `date=YYYY-MM-DD/hour=HH/part-NNNNNNNN.parquet`.
    pub path: String,
    /// Start of the hourly partition, Unix seconds (every record's window start is within the hour).
    pub hour: i64,
    /// Records in the file.
    pub records: u64,
    /// Size of the file, in bytes.
    pub bytes: u64,
    /// Smallest window start in the file.
    pub min_start: i64,
    /// Largest window start in the file.
    pub max_start: i64,
}

impl Manifest {
    /// Reads the manifest of the logstore in `dir`; a missing file is an empty manifest (a new logstore, or one
    /// written before manifests existed).
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(FILE_NAME);
        let shown = || path.display().to_string();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Manifest {
                    format: FORMAT,
                    ..Manifest::default()
                });
            }
            Err(error) => {
                return Err(ManifestError::Read {
                    path: shown(),
                    error,
                });
            }
        };
        let damaged = |reason: String| ManifestError::Damaged {
            path: shown(),
            reason,
        };
        let mut items = frame::scan(&bytes);
        let payload = match (items.next(), items.next()) {
            (Some(Scanned::Frame { payload, .. }), None) => payload,
            _ => return Err(damaged("not one whole frame (torn or corrupt)".into())),
        };
        let manifest: Manifest =
            serde_json::from_slice(payload).map_err(|e| damaged(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(damaged(format!("unknown format {}", manifest.format)));
        }
        Ok(manifest)
    }

    /// Replaces the manifest of the logstore in `dir`, atomically and durably.
    pub fn store(&self, dir: &Path) -> Result<(), ManifestError> {
        // Serialising plain structs of numbers and strings cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut bytes = Vec::with_capacity(json.len() + frame::HEADER_LEN);
        frame::encode_into(&json, &mut bytes).map_err(|e| ManifestError::Damaged {
            path: dir.join(FILE_NAME).display().to_string(),
            reason: e.to_string(),
        })?;
        segment::write_atomic(dir, FILE_NAME, &bytes)?;
        Ok(())
    }

    /// Takes the next file number.
    pub fn allocate_file(&mut self) -> u64 {
        let n = self.next_file;
        self.next_file += 1;
        n
    }
}

/// Start of the hour holding Unix second `t`.
pub fn hour_of(t: i64) -> i64 {
    t - t.rem_euclid(3600)
}

/// The relative path of Parquet file number `n` in the partition of `hour`.
pub fn file_path(hour: i64, n: u64) -> String {
    format!("{}/part-{n:08}.parquet", partition_dir(hour))
}

/// The relative directory of the partition of `hour`: `date=YYYY-MM-DD/hour=HH`.
pub fn partition_dir(hour: i64) -> String {
    let (year, month, day) = civil_from_days(hour.div_euclid(86_400));
    format!(
        "date={year:04}-{month:02}-{day:02}/hour={:02}",
        hour.rem_euclid(86_400) / 3600
    )
}

/// Year, month and day of a count of days since 1970-01-01 (Howard Hinnant's civil-from-days).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let empty = Manifest::load(dir.path()).unwrap();
        assert_eq!(empty.files, vec![]);
        assert_eq!(empty.converted_through, None);
        let mut manifest = empty;
        let n = manifest.allocate_file();
        manifest.converted_through = Some(4);
        manifest.files.push(FileEntry {
            path: file_path(1_700_000_000 - 1_700_000_000 % 3600, n),
            hour: 1_699_999_200,
            records: 10,
            bytes: 1234,
            min_start: 1_699_999_200,
            max_start: 1_700_000_000,
        });
        manifest.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), manifest);
        assert!(!dir.path().join("MANIFEST.tmp").exists());
    }

    #[test]
    fn damage_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        Manifest {
            format: FORMAT,
            next_file: 3,
            ..Manifest::default()
        }
        .store(dir.path())
        .unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x55;
        fs::write(&path, &bytes).unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("MANIFEST") && err.contains("damaged"), "{err}");
        fs::write(&path, &bytes[..5]).unwrap();
        assert!(Manifest::load(dir.path()).is_err());
        let mut other = Vec::new();
        frame::encode_into(b"{\"format\":99}", &mut other).unwrap();
        fs::write(&path, &other).unwrap();
        assert!(Manifest::load(dir.path()).is_err());
    }

    #[test]
    fn partition_names() {
        assert_eq!(hour_of(1_700_000_040), 1_699_999_200);
        assert_eq!(hour_of(-1), -3600);
        assert_eq!(partition_dir(1_699_999_200), "date=2023-11-14/hour=22");
        assert_eq!(
            file_path(0, 7),
            "date=1970-01-01/hour=00/part-00000007.parquet"
        );
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
