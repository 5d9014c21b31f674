//! The state file: one JSON [`Snapshot`] of the whole control-plane state, replaced atomically after every change.
//!
//! # Guarantees
//! - [`store`] writes a temporary file beside the target, fsyncs it, renames it over the target and fsyncs the
//!   directory: after it returns, the new snapshot survives a crash or power loss, and at every moment the file
//!   holds either the old snapshot or the new one, never a mix.
//! - [`load`] never panics on a bad file: a missing file is "no state yet", anything unreadable, unparsable or
//!   inconsistent is an error naming the file.
//!
//! # Limitations
//! Two controllers started on the same file would overwrite each other's snapshots: nothing locks the file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::state::{State, StateError};

/// An error reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The file exists but could not be read.
    #[error("cannot read state file {path}: {source}")]
    Read {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a JSON snapshot (truncated, edited, another format).
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The file parses but breaks an invariant of the state, or belongs to another region.
    #[error("state file {path} is invalid: {source}")]
    Invalid {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        source: Box<StateError>,
    },
    /// The file belongs to another region than the controller serves.
    #[error("state file {path} belongs to region {found}, but this controller serves {expected}")]
    WrongRegion {
        /// The state file.
        path: PathBuf,
        /// The region of the file.
        found: String,
        /// The region served.
        expected: String,
    },
    /// Writing the new snapshot failed at `step`; the previous snapshot is still in place.
    #[error("cannot write state file {path} ({step}): {source}")]
    Write {
        /// The state file.
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// The state could not be encoded (never expected: every field is plain data).
    #[error("cannot encode the state for {path}: {source}")]
    Encode {
        /// The state file.
        path: PathBuf,
        /// The encoding error.
        source: serde_json::Error,
    },
}

/// Loads the state stored at `path` for `region_id`; `Ok(None)` when the file does not exist.
pub fn load(path: &Path, region_id: &str) -> Result<Option<State>, PersistError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let snapshot: crate::state::Snapshot =
        serde_json::from_slice(&bytes).map_err(|source| PersistError::Corrupt {
            path: path.to_owned(),
            source,
        })?;
    if snapshot.region_id != region_id {
        return Err(PersistError::WrongRegion {
            path: path.to_owned(),
            found: snapshot.region_id,
            expected: region_id.to_owned(),
        });
    }
    let state = State::restore(snapshot).map_err(|source| PersistError::Invalid {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    Ok(Some(state))
}

/// Encodes `state` as the bytes [`store`] writes.
pub fn encode(path: &Path, state: &State) -> Result<Vec<u8>, PersistError> {
    let mut bytes =
        serde_json::to_vec_pretty(&state.snapshot()).map_err(|source| PersistError::Encode {
            path: path.to_owned(),
            source,
        })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Atomically replaces the file at `path` with `bytes` (see the module's guarantees). Blocking.
pub fn store(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let write_error = |step: &'static str| {
        move |source: io::Error| PersistError::Write {
            path: path.to_owned(),
            step,
            source,
        }
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| PersistError::Write {
        path: path.to_owned(),
        step: "naming the temporary file",
        source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
    })?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(file_name);
    temporary_name.push(".tmp");
    let temporary = directory.join(temporary_name);

    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .map_err(write_error("creating the temporary file"))?;
    file.write_all(bytes)
        .map_err(write_error("writing the temporary file"))?;
    file.sync_all()
        .map_err(write_error("syncing the temporary file"))?;
    drop(file);
    fs::rename(&temporary, path).map_err(write_error("renaming the temporary file"))?;
    File::open(&directory)
        .and_then(|dir| dir.sync_all())
        .map_err(write_error("syncing the directory"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{NetworkInterface, NetworkInterfaceInput};

    fn sample_state() -> State {
        let mut state = State::new("cn-hangzhou").unwrap();
        state
            .register_eni(
                NetworkInterface::new(NetworkInterfaceInput {
                    eni_id: "eni-1".into(),
                    mac: "02:00:00:00:00:01".into(),
                    vm_id: "i-1".into(),
                    vswitch_id: "vsw-1".into(),
                    vpc_id: "vpc-1".into(),
                    account_id: "1".into(),
                    host: "h".into(),
                })
                .unwrap(),
            )
            .unwrap();
        state
    }

    #[test]
    fn store_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(load(&path, "cn-hangzhou").unwrap().is_none());
        let state = sample_state();
        store(&path, &encode(&path, &state).unwrap()).unwrap();
        assert_eq!(load(&path, "cn-hangzhou").unwrap(), Some(state.clone()));
        // Overwriting leaves no temporary file behind.
        store(
            &path,
            &encode(&path, &State::new("cn-hangzhou").unwrap()).unwrap(),
        )
        .unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        let err = load(&path, "us-east-1").unwrap_err();
        assert!(matches!(err, PersistError::WrongRegion { .. }), "{err}");
    }

    #[test]
    fn corrupt_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let good = encode(&path, &sample_state()).unwrap();
        for bad in [
            &good[..good.len() / 2],
            b"",
            b"\xff\xfe garbage",
            b"{\"format\": 1}",
        ] {
            fs::write(&path, bad).unwrap();
            let err = load(&path, "cn-hangzhou").unwrap_err();
            assert!(matches!(err, PersistError::Corrupt { .. }), "{err}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
        let text = String::from_utf8(good)
            .unwrap()
            .replace("\"format\": 1", "\"format\": 9");
        fs::write(&path, text).unwrap();
        let err = load(&path, "cn-hangzhou").unwrap_err();
        assert!(matches!(err, PersistError::Invalid { .. }), "{err}");
        // A directory where the file should be.
        let err = load(dir.path(), "cn-hangzhou").unwrap_err();
        assert!(matches!(err, PersistError::Read { .. }), "{err}");
    }

    #[test]
    fn unwritable_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("state.json");
        let err = store(&path, b"{}").unwrap_err();
        assert!(matches!(err, PersistError::Write { .. }), "{err}");
    }
}
