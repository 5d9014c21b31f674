//! The default store: a redb database file (copy-on-write B-tree with checksummed, fsynced commits), one table of
//! records.
//!
//! # Guarantees
//! - A commit is durable when [`EmbeddedStore::commit`] returns, and atomic: after kill -9 or a power loss the file
//!   opens at the last committed batch, never a torn one (redb's commit protocol).
//! - Only one process opens the file: a second controller on the same file fails at start with a clear error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};

use super::{Batch, StoreError};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");

/// A redb database of records; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    database: Arc<Database>,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens (or creates) the database at `path`. Blocking.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let error = |message: String| StoreError::Embedded {
            path: path.to_owned(),
            message,
        };
        let database = Database::create(path).map_err(|e| error(e.to_string()))?;
        // Make sure the table exists, so that a fresh database reads as empty.
        let txn = database.begin_write().map_err(|e| error(e.to_string()))?;
        txn.open_table(RECORDS).map_err(|e| error(e.to_string()))?;
        txn.commit().map_err(|e| error(e.to_string()))?;
        Ok(EmbeddedStore {
            database: Arc::new(database),
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) async fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.load_blocking())
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub(super) async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.commit_blocking(batch))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Every record. Blocking.
    pub fn load_blocking(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let error = |e: &dyn std::fmt::Display| self.error(format!("reading: {e}"));
        let txn = self.database.begin_read().map_err(|e| error(&e))?;
        let table = txn.open_table(RECORDS).map_err(|e| error(&e))?;
        let mut records = Vec::new();
        for entry in table.iter().map_err(|e| error(&e))? {
            let (key, value) = entry.map_err(|e| error(&e))?;
            records.push((key.value().to_owned(), value.value().to_vec()));
        }
        Ok(records)
    }

    /// Applies a batch in one durable transaction. Blocking.
    pub fn commit_blocking(&self, batch: Batch) -> Result<(), StoreError> {
        let error = |e: &dyn std::fmt::Display| self.error(format!("writing: {e}"));
        let txn = self.database.begin_write().map_err(|e| error(&e))?;
        {
            let mut table = txn.open_table(RECORDS).map_err(|e| error(&e))?;
            for (key, value) in &batch.puts {
                table
                    .insert(key.as_str(), value.as_slice())
                    .map_err(|e| error(&e))?;
            }
            for key in &batch.deletes {
                table.remove(key.as_str()).map_err(|e| error(&e))?;
            }
        }
        txn.commit().map_err(|e| error(&e))
    }

    fn error(&self, message: String) -> StoreError {
        StoreError::Embedded {
            path: self.path.clone(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_survive_reopening_and_are_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let store = EmbeddedStore::open(&path).unwrap();
        assert!(store.load_blocking().unwrap().is_empty());
        store
            .commit_blocking(Batch {
                puts: vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())],
                deletes: vec![],
            })
            .unwrap();
        store
            .commit_blocking(Batch {
                puts: vec![("c".into(), b"3".to_vec())],
                deletes: vec!["a".into(), "missing".into()],
            })
            .unwrap();
        // A second open of the same file is refused while the first is open.
        let err = EmbeddedStore::open(&path)
            .err()
            .expect("second open refused");
        assert!(err.to_string().contains("state.redb"), "{err}");
        drop(store);
        let reopened = EmbeddedStore::open(&path).unwrap();
        assert_eq!(
            reopened.load_blocking().unwrap(),
            vec![("b".into(), b"2".to_vec()), ("c".into(), b"3".to_vec())]
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{\"format\": 1}").unwrap();
        let err = EmbeddedStore::open(&path).err().expect("refused");
        assert!(err.to_string().contains("state.json"), "{err}");
    }
}
