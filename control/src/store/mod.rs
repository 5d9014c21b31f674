//! Where the control-plane state lives: a durable embedded database on one controller ([`embedded`], the default),
//! or etcd shared by several controller replicas ([`etcd`]). Both keep the records of [`crate::state::records`]
//! (one per entity) and write each batch of changes in one atomic transaction.
//!
//! # Guarantees
//! - [`Store::commit`] returns only once the batch is durable (fsynced by redb, or committed by the etcd cluster);
//!   a batch is applied entirely or not at all, so a crash (kill -9) at any instant leaves the store at a batch
//!   boundary.
//! - An etcd store writes only while its replica holds the leadership it was opened with: a deposed leader's
//!   commit fails with [`StoreError::Fenced`] and changes nothing.

pub mod embedded;
pub mod etcd;

/// A set of record writes applied atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Records to create or replace: (key, value).
    pub puts: Vec<(String, Vec<u8>)>,
    /// Keys to remove.
    pub deletes: Vec<String>,
}

impl Batch {
    /// How many keys the batch touches.
    pub fn len(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    /// Whether the batch touches nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An error of a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database failed (open, read, write, commit).
    #[error("state database {path}: {message}")]
    Embedded {
        /// The database file.
        path: std::path::PathBuf,
        /// What failed.
        message: String,
    },
    /// An etcd call failed.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// etcd did not answer in time; the batch may or may not have been written (a later load tells).
    #[error("etcd did not answer within {:?}", etcd::CALL_TIMEOUT)]
    Timeout,
    /// This replica no longer holds the leadership its store was opened with: nothing was written.
    #[error("this replica lost its etcd leadership; the batch was not written")]
    Fenced,
    /// A blocking store task could not run to completion.
    #[error("the store task failed: {0}")]
    Task(String),
}

/// The store of one controller (or of one leadership term of a replica).
#[derive(Clone)]
pub enum Store {
    /// A redb database file.
    Embedded(embedded::EmbeddedStore),
    /// etcd, under a key prefix, fenced by a leader key (boxed: the etcd client is large).
    Etcd(Box<etcd::EtcdStore>),
}

impl Store {
    /// Every stored record, as (key, value).
    pub async fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match self {
            Store::Embedded(store) => store.load().await,
            Store::Etcd(store) => store.load().await,
        }
    }

    /// Writes a batch atomically and durably.
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        match self {
            Store::Embedded(store) => store.commit(batch).await,
            Store::Etcd(store) => store.commit(batch).await,
        }
    }

    /// The most keys one batch may touch.
    pub fn max_batch_keys(&self) -> usize {
        match self {
            Store::Embedded(_) => usize::MAX,
            Store::Etcd(_) => etcd::MAX_TXN_KEYS,
        }
    }
}
