//! Segment files: naming, listing, crash recovery at start, and reading committed bytes.
//!
//! A logstore directory holds segment files named `<id>.seg`, `id` a 20-digit zero-padded counter; frames
//! ([`super::frame`]) are only ever appended to the newest one.
//!
//! # Guarantees
//! - Recovery of the newest segment truncates an invalid tail (a write torn by a crash) so that appends resume on a
//!   frame boundary, and logs how many bytes went; the truncation is fsync'd.
//! - A corrupt stretch anywhere else is logged with its file and offset and skipped; the frames after it are kept.
//!   Older segments are never modified.
//! - No byte pattern makes recovery or reading panic.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::frame::{self, Scanned};

/// File name extension of segment files.
pub const EXTENSION: &str = "seg";

/// Errors of segment file handling.
#[derive(Debug, Error)]
pub enum SegmentError {
    /// A file or directory operation failed.
    #[error("{op} {}: {error}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },
}

impl SegmentError {
    /// Wraps an I/O error with what was being done and to which path.
    pub fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SegmentError {
        let path = path.to_owned();
        move |error| SegmentError::Io { op, path, error }
    }
}

/// The file name of segment `id`.
pub fn file_name(id: u64) -> String {
    format!("{id:020}.{EXTENSION}")
}

/// The segment id a file name stands for, if it is a segment file name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(EXTENSION)?.strip_suffix('.')?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment files of `dir`, by increasing id. Other entries are logged and ignored.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SegmentError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(SegmentError::io("list", dir))? {
        let entry = entry.map_err(SegmentError::io("list", dir))?;
        let path = entry.path();
        let id = entry.file_name().to_str().and_then(parse_file_name);
        match id {
            Some(id) if path.is_file() => segments.push((id, path)),
            // Partitions, the manifest, settings, temporary files: the logstore's other contents.
            _ if !path.is_file() || is_known_other(&entry.file_name().to_string_lossy()) => {}
            _ => tracing::warn!(path = %path.display(), "ignoring a file that is not a segment"),
        }
    }
    segments.sort_unstable_by_key(|(id, _)| *id);
    Ok(segments)
}

/// Files a logstore directory holds besides segments.
fn is_known_other(name: &str) -> bool {
    matches!(
        name,
        super::manifest::FILE_NAME | super::catalog::LOGSTORE_FILE
    ) || name.ends_with(".tmp")
}

/// What recovery found in one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Length of the segment after recovery, in bytes: where the next frame goes.
    pub len: u64,
    /// Valid frames.
    pub frames: u64,
    /// Corrupt stretches skipped (each followed by a valid frame, or an invalid tail of an older segment).
    pub corrupt: u64,
    /// Bytes of invalid tail truncated away (newest segment only).
    pub truncated: u64,
}

/// Scans a segment at start, handing every valid frame's payload and offset to `on_frame`. When `newest`, an
/// invalid tail is truncated away.
pub fn recover(
    path: &Path,
    newest: bool,
    mut on_frame: impl FnMut(&[u8], usize),
) -> Result<Recovered, SegmentError> {
    let bytes = fs::read(path).map_err(SegmentError::io("read", path))?;
    let mut recovered = Recovered {
        len: bytes.len() as u64,
        ..Recovered::default()
    };
    for item in frame::scan(&bytes) {
        match item {
            Scanned::Frame { offset, payload } => {
                recovered.frames += 1;
                on_frame(payload, offset);
            }
            Scanned::Corrupt { offset, len } => {
                recovered.corrupt += 1;
                tracing::warn!(file = %path.display(), offset, len, "corrupt frame skipped");
            }
            Scanned::Tail { offset, len } if newest => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(SegmentError::io("open", path))?;
                file.set_len(offset as u64)
                    .map_err(SegmentError::io("truncate", path))?;
                file.sync_all().map_err(SegmentError::io("fsync", path))?;
                recovered.len = offset as u64;
                recovered.truncated = len as u64;
                tracing::warn!(file = %path.display(), offset, bytes = len, "torn tail truncated");
            }
            Scanned::Tail { offset, len } => {
                recovered.corrupt += 1;
                tracing::warn!(file = %path.display(), offset, len, "corrupt tail of an older segment skipped");
            }
        }
    }
    Ok(recovered)
}

/// Reads the first `len` bytes of a segment (its committed part; the file may be longer while a write is under
/// way).
pub fn read_committed(path: &Path, len: u64) -> Result<Vec<u8>, SegmentError> {
    let file = File::open(path).map_err(SegmentError::io("open", path))?;
    let on_disk = file
        .metadata()
        .map_err(SegmentError::io("stat", path))?
        .len();
    let mut bytes = Vec::with_capacity(usize::try_from(len.min(on_disk)).unwrap_or(0));
    file.take(len)
        .read_to_end(&mut bytes)
        .map_err(SegmentError::io("read", path))?;
    Ok(bytes)
}

/// Fsyncs a directory, making the creation of the entries in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), SegmentError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SegmentError::io("fsync directory", dir))
}

/// Replaces `dir/name` with `bytes` atomically and durably: writes `dir/name.tmp`, fsyncs it, renames it over
/// `dir/name` and fsyncs `dir`. A crash leaves either the old or the new file (and perhaps a stale `.tmp`).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), SegmentError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    {
        let mut file = File::create(&tmp).map_err(SegmentError::io("create", &tmp))?;
        io::Write::write_all(&mut file, bytes).map_err(SegmentError::io("write", &tmp))?;
        file.sync_all().map_err(SegmentError::io("fsync", &tmp))?;
    }
    fs::rename(&tmp, &path).map_err(SegmentError::io("rename", &tmp))?;
    sync_dir(dir)
}

/// Creates `dir` and any missing parents below `root` (which must exist), fsyncing each parent whose entry was
/// added, so that the new directories survive a crash.
pub fn create_dir_durable(root: &Path, dir: &Path) -> Result<(), SegmentError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent()
        && parent != root
        && parent.starts_with(root)
    {
        create_dir_durable(root, parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(SegmentError::io("create", dir)(e)),
    }
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_frames(path: &Path, payloads: &[&[u8]]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for p in payloads {
            frame::encode_into(p, &mut bytes).unwrap();
        }
        fs::write(path, &bytes).unwrap();
        bytes
    }

    fn collect(path: &Path, newest: bool) -> (Recovered, Vec<(Vec<u8>, usize)>) {
        let mut seen = Vec::new();
        let recovered = recover(path, newest, |p, o| seen.push((p.to_vec(), o))).unwrap();
        (recovered, seen)
    }

    #[test]
    fn names() {
        assert_eq!(file_name(7), "00000000000000000007.seg");
        assert_eq!(parse_file_name("00000000000000000007.seg"), Some(7));
        for bad in [
            "7.seg",
            "00000000000000000007.log",
            "0000000000000000000x.seg",
            "00000000000000000007seg",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn torn_tail_is_truncated_in_the_newest_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        let whole = write_frames(&path, &[b"kept", b"torn away"]);
        let cut = whole.len() - 3;
        fs::write(&path, &whole[..cut]).unwrap();

        let (recovered, seen) = collect(&path, true);
        let first_len = (frame::HEADER_LEN + 4) as u64;
        assert_eq!(seen, vec![(b"kept".to_vec(), 0)]);
        assert_eq!(
            recovered,
            Recovered {
                len: first_len,
                frames: 1,
                corrupt: 0,
                truncated: cut as u64 - first_len
            }
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), first_len);
        // A second recovery finds a clean file.
        assert_eq!(collect(&path, true).0.truncated, 0);
    }

    #[test]
    fn older_segments_are_never_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        let whole = write_frames(&path, &[b"kept", b"damaged"]);
        fs::write(&path, &whole[..whole.len() - 1]).unwrap();
        let (recovered, seen) = collect(&path, false);
        assert_eq!(seen.len(), 1);
        assert_eq!(recovered.corrupt, 1);
        assert_eq!(fs::metadata(&path).unwrap().len(), whole.len() as u64 - 1);
    }

    #[test]
    fn corrupt_middle_frame_is_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(3));
        let mut bytes = write_frames(&path, &[b"first", b"second", b"third"]);
        let second = frame::HEADER_LEN + 5;
        bytes[second] = b'X';
        fs::write(&path, &bytes).unwrap();

        let (recovered, seen) = collect(&path, true);
        let third = second + frame::HEADER_LEN + 6;
        assert_eq!(
            seen,
            vec![(b"first".to_vec(), 0), (b"third".to_vec(), third)]
        );
        assert_eq!(recovered.corrupt, 1);
        assert_eq!(recovered.truncated, 0);
        assert_eq!(recovered.len, bytes.len() as u64);
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "recovery must not touch a corrupt middle"
        );
    }

    #[test]
    fn reading_stops_at_the_committed_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        let bytes = write_frames(&path, &[b"one", b"two"]);
        let committed = (frame::HEADER_LEN + 3) as u64;
        assert_eq!(
            read_committed(&path, committed).unwrap(),
            bytes[..committed as usize]
        );
        assert_eq!(read_committed(&path, u64::MAX).unwrap(), bytes);
    }

    #[test]
    fn listing_sorts_and_skips_strangers() {
        let dir = tempfile::tempdir().unwrap();
        for id in [10, 2, 1] {
            fs::write(dir.path().join(file_name(id)), b"").unwrap();
        }
        fs::write(dir.path().join("notes.txt"), b"").unwrap();
        let ids: Vec<u64> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, vec![1, 2, 10]);
    }
}
