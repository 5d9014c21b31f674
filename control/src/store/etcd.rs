//! The replicated store: records under a key prefix in etcd, each batch one etcd transaction guarded by the
//! writing replica's leader key.
//!
//! # Guarantees
//! - A batch is one transaction whose guard is "the leader key this store was opened with still exists with the
//!   same create revision": once the replica's lease expired (it died or was cut off) and another replica was
//!   elected, its writes fail with [`StoreError::Fenced`] and change nothing.
//! - [`EtcdStore::load`] reads the records page by page at one revision, so a large state never exceeds etcd's
//!   message size and is a consistent cut.
//!
//! # Limitations
//! etcd refuses transactions of more than 128 operations (`--max-txn-ops`): batches are bounded by
//! [`MAX_TXN_KEYS`], which the service respects.

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

use super::{Batch, StoreError};

/// The most keys one batch may touch (etcd's default limit is 128 operations per transaction).
pub const MAX_TXN_KEYS: usize = 120;

/// Bound on one etcd call (a page of a load, a commit): a replica cut off from etcd fails its writes instead of
/// hanging.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Records per page when loading.
const PAGE: i64 = 1000;

/// Records in etcd under `<prefix>records/`; cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    records_prefix: Vec<u8>,
    fence: (Vec<u8>, i64),
}

impl EtcdStore {
    /// A store of records under `<prefix>records/`, writing only while `fence` (leader key, its create revision)
    /// exists unchanged.
    pub fn new(client: Client, prefix: &str, fence: (Vec<u8>, i64)) -> Self {
        EtcdStore {
            client,
            records_prefix: format!("{prefix}records/").into_bytes(),
            fence,
        }
    }

    pub(super) async fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut kv = self.client.kv_client();
        let end = prefix_end(&self.records_prefix);
        let mut start = self.records_prefix.clone();
        let mut revision = 0;
        let mut records = Vec::new();
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision != 0 {
                options = options.with_revision(revision);
            }
            let response = tokio::time::timeout(CALL_TIMEOUT, kv.get(start.clone(), Some(options)))
                .await
                .map_err(|_| StoreError::Timeout)??;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            for entry in response.kvs() {
                let key = entry
                    .key()
                    .strip_prefix(self.records_prefix.as_slice())
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .ok_or_else(|| {
                        StoreError::Etcd(etcd_client::Error::InvalidArgs(format!(
                            "key {:?} is not UTF-8 under the records prefix",
                            String::from_utf8_lossy(entry.key())
                        )))
                    })?;
                records.push((key.to_owned(), entry.value().to_vec()));
            }
            match response.kvs().last() {
                Some(last) if response.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok(records),
            }
        }
    }

    pub(super) async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let key = |k: &str| {
            let mut full = self.records_prefix.clone();
            full.extend_from_slice(k.as_bytes());
            full
        };
        let mut operations: Vec<TxnOp> = Vec::with_capacity(batch.len());
        for (k, value) in &batch.puts {
            operations.push(TxnOp::put(key(k), value.clone(), None));
        }
        for k in &batch.deletes {
            operations.push(TxnOp::delete(key(k), None));
        }
        let (leader_key, revision) = &self.fence;
        let txn = Txn::new().when([Compare::create_revision(
            leader_key.clone(),
            CompareOp::Equal,
            *revision,
        )]);
        let response = self
            .client
            .kv_client()
            .txn(txn.and_then(operations))
            .await?;
        if response.succeeded() {
            Ok(())
        } else {
            Err(StoreError::Fenced)
        }
    }
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes (or empty): the range runs to the end of the key space.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
