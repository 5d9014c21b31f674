//! Settings of projects and logstores, kept beside their data: `DIR/<project>/project.json` and
//! `DIR/<project>/<logstore>/logstore.json`.
//!
//! The directory tree is the catalog: a project exists when its directory does, a logstore when its directory
//! does. Creation builds the new directory under a hidden name (`.creating-...`), writes its settings file into
//! it, fsyncs, and renames it into place; deletion renames the directory into `DIR/.trash/` and then removes it.
//! Both renames are atomic, so a crash never leaves a half-created or half-deleted project or logstore behind
//! ([`clean_hidden`] removes the leftovers at open).
//!
//! Directories written before these files existed (logstores created on first ingest) have no settings file:
//! they read as [`ProjectMeta::default`] / the configured default retention.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::segment::{self, SegmentError};

/// File name of a project's settings.
pub const PROJECT_FILE: &str = "project.json";
/// File name of a logstore's settings.
pub const LOGSTORE_FILE: &str = "logstore.json";
/// Directory under the data directory where deleted projects and logstores wait for removal.
pub const TRASH_DIR: &str = ".trash";
/// Longest project description accepted, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// Errors of the settings files.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// A file or directory operation failed.
    #[error(transparent)]
    Io(#[from] SegmentError),
    /// A settings file does not parse.
    #[error("settings file {path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
}

/// A project's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProjectMeta {
    /// Free text.
    pub description: String,
    /// Creation time, Unix seconds (0 when unknown).
    pub created: i64,
}

/// A logstore's settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogstoreMeta {
    /// Hours of data kept; 0 = forever.
    pub retention_hours: u32,
    /// Creation time, Unix seconds (0 when unknown).
    pub created: i64,
}

/// Reads a settings file; `None` when it does not exist.
pub fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, CatalogError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CatalogError::Damaged {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SegmentError::io("read", path)(e).into()),
    }
}

/// Replaces a settings file in `dir` atomically and durably.
pub fn store<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), CatalogError> {
    // Plain structs of numbers and strings always serialise.
    let mut json = serde_json::to_vec_pretty(value).unwrap_or_default();
    json.push(b'\n');
    segment::write_atomic(dir, name, &json)?;
    Ok(())
}

/// Creates `parent/name` holding the settings file `file` = `value`, atomically: the directory appears whole or
/// not at all. Fails with `AlreadyExists` (as an I/O error) when it exists.
pub fn create_dir_with<T: Serialize>(
    parent: &Path,
    name: &str,
    file: &str,
    value: &T,
) -> Result<PathBuf, CatalogError> {
    let target = parent.join(name);
    if target.exists() {
        return Err(SegmentError::io("create", &target)(io::Error::from(
            io::ErrorKind::AlreadyExists,
        ))
        .into());
    }
    let staging = parent.join(format!(".creating-{name}"));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(SegmentError::io("remove", &staging))?;
    }
    fs::create_dir(&staging).map_err(SegmentError::io("create", &staging))?;
    store(&staging, file, value)?;
    fs::rename(&staging, &target).map_err(SegmentError::io("rename", &staging))?;
    segment::sync_dir(parent)?;
    Ok(target)
}

/// Moves `dir` out of sight into `root/.trash/` (atomic and durable), then removes it. Once this returns `Ok`,
/// `dir` is gone even if the removal itself is interrupted (the trash is emptied at the next open).
pub fn delete_dir(root: &Path, dir: &Path) -> Result<(), CatalogError> {
    let grave = move_to_trash(root, dir)?;
    remove_from_trash(&grave);
    Ok(())
}

/// Removes a directory [`move_to_trash`] moved (slow for a big one: call it without holding locks).
pub fn remove_from_trash(grave: &Path) {
    if let Err(e) = fs::remove_dir_all(grave) {
        tracing::warn!(path = %grave.display(), error = %e, "cannot empty the trash now; retried at the next open");
    }
}

/// Moves `dir` into `root/.trash/` atomically and durably; returns where it went. Once this returns `Ok`, `dir`
/// is gone for good (the trash is emptied at the next open at the latest).
pub fn move_to_trash(root: &Path, dir: &Path) -> Result<PathBuf, CatalogError> {
    let trash = root.join(TRASH_DIR);
    segment::create_dir_durable(root, &trash)?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = dir
        .file_name()
        .map_or_else(|| "dir".into(), |n| n.to_string_lossy().into_owned());
    let grave = trash.join(format!("{name}.{nanos}"));
    fs::rename(dir, &grave).map_err(SegmentError::io("rename", dir))?;
    if let Some(parent) = dir.parent() {
        segment::sync_dir(parent)?;
    }
    Ok(grave)
}

/// Removes what interrupted creations and deletions left: `root/.trash`, and `.creating-*` directories in `dir`.
pub fn clean_hidden(root: &Path, dir: &Path) {
    let trash = root.join(TRASH_DIR);
    if dir == root
        && trash.exists()
        && let Err(e) = fs::remove_dir_all(&trash)
    {
        tracing::warn!(path = %trash.display(), error = %e, "cannot empty the trash");
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(".creating-") {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing an interrupted creation");
            if let Err(e) = fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an interrupted creation");
            }
        }
    }
}

/// Now, Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_delete() {
        let root = tempfile::tempdir().unwrap();
        let meta = ProjectMeta {
            description: "flows of team a".into(),
            created: 42,
        };
        let dir = create_dir_with(root.path(), "proj", PROJECT_FILE, &meta).unwrap();
        assert_eq!(
            load::<ProjectMeta>(&dir.join(PROJECT_FILE)).unwrap(),
            Some(meta.clone())
        );
        assert!(create_dir_with(root.path(), "proj", PROJECT_FILE, &meta).is_err());
        assert_eq!(
            load::<ProjectMeta>(&root.path().join("none.json")).unwrap(),
            None
        );

        fs::write(dir.join(PROJECT_FILE), b"{\"description\": 3}").unwrap();
        let err = load::<ProjectMeta>(&dir.join(PROJECT_FILE))
            .unwrap_err()
            .to_string();
        assert!(err.contains("project.json"), "{err}");

        delete_dir(root.path(), &dir).unwrap();
        assert!(!dir.exists());
        fs::create_dir(root.path().join(".creating-x")).unwrap();
        fs::create_dir_all(root.path().join(".trash/left.1")).unwrap();
        clean_hidden(root.path(), root.path());
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
    }
}
