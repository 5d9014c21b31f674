//! Zero-copy reading of `flowlog.v1.IngestBatch` wire bytes: the batch's identity fields, its number of records,
//! and a check of every record, without decoding the records (no allocation per record). The collector stores the
//! bytes as received, so ingest costs one scan instead of a decode, a re-encode and the frees.
//!
//! # Guarantees
//! - [`RawBatch::parse`] accepts only bytes that prost decodes into an `IngestBatch` whose identity fields are the
//!   ones returned and each of whose records passes [`check_record`](super::columnar::check_record) (the field
//!   values checked are the ones prost keeps: the last occurrence of a repeated scalar field). It is stricter than
//!   prost where that is simpler (groups, scalar varints wider than their field, wrong wire types are refused).
//! - Never panics, whatever the bytes (a unit test feeds it thousands of mutations of valid batches and checks the
//!   first guarantee on every one it accepts).

use bytes::Bytes;
use thiserror::Error;

use super::columnar::RecordError;

/// Why batch bytes are refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum WireError {
    /// The bytes are not a well-formed `IngestBatch` encoding.
    #[error("malformed batch at byte {offset}: {reason}")]
    Malformed {
        /// Where, from the start of the batch.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A record holds a value the collector does not store.
    #[error("record {index}: {error}")]
    Record {
        /// The record's index in the batch.
        index: usize,
        /// What is wrong.
        error: RecordError,
    },
}

/// An `IngestBatch` as received: its encoding, with the identity fields read out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBatch {
    /// Field 1.
    pub exporter_id: String,
    /// Field 2.
    pub sequence: u64,
    /// Field 3.
    pub project: String,
    /// Field 4.
    pub logstore: String,
    /// Number of records (field 5).
    pub records: usize,
    /// The whole encoding, as received.
    pub bytes: Bytes,
}

impl RawBatch {
    /// Reads and checks a batch's encoding.
    pub fn parse(bytes: Bytes) -> Result<RawBatch, WireError> {
        let mut batch = RawBatch {
            exporter_id: String::new(),
            sequence: 0,
            project: String::new(),
            logstore: String::new(),
            records: 0,
            bytes: Bytes::new(),
        };
        let mut reader = Reader::new(&bytes, 0);
        while !reader.done() {
            let (field, wire) = reader.key()?;
            match (field, wire) {
                (1, LEN) => batch.exporter_id = reader.text()?.to_owned(),
                (2, VARINT) => batch.sequence = reader.varint()?,
                (3, LEN) => batch.project = reader.text()?.to_owned(),
                (4, LEN) => batch.logstore = reader.text()?.to_owned(),
                (5, LEN) => {
                    let base = reader.pos;
                    let record = reader.bytes()?;
                    check_record(record, base).map_err(|e| match e {
                        Checked::Malformed(e) => e,
                        Checked::Invalid(error) => WireError::Record {
                            index: batch.records,
                            error,
                        },
                    })?;
                    batch.records += 1;
                }
                (1..=5, _) => return Err(reader.malformed("unexpected wire type")),
                _ => reader.skip(wire)?,
            }
        }
        batch.bytes = bytes;
        Ok(batch)
    }
}

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// A cursor over protobuf bytes; `base` is the offset of `buf` within the batch, for messages.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn malformed(&self, reason: &'static str) -> WireError {
        WireError::Malformed {
            offset: self.base + self.pos,
            reason,
        }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(self.malformed("varint cut short"));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(self.malformed("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(self.malformed("varint longer than 10 bytes"))
    }

    fn key(&mut self) -> Result<(u32, u8), WireError> {
        let key = self.varint()?;
        let key = u32::try_from(key).map_err(|_| self.malformed("field key out of range"))?;
        let field = key >> 3;
        if field == 0 {
            return Err(self.malformed("field number 0"));
        }
        // The low three bits: always below 8.
        Ok((field, (key & 7) as u8))
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| self.malformed("length out of range"))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.malformed("length past the end"))?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn text(&mut self) -> Result<&'a str, WireError> {
        let start = self.pos;
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| WireError::Malformed {
            offset: self.base + start,
            reason: "string is not UTF-8",
        })
    }

    fn fixed(&mut self, n: usize) -> Result<(), WireError> {
        if self.buf.len() - self.pos.min(self.buf.len()) < n {
            return Err(self.malformed("fixed-width value cut short"));
        }
        self.pos += n;
        Ok(())
    }

    fn skip(&mut self, wire: u8) -> Result<(), WireError> {
        match wire {
            VARINT => self.varint().map(drop),
            I64 => self.fixed(8),
            LEN => self.bytes().map(drop),
            I32 => self.fixed(4),
            _ => Err(self.malformed("unsupported wire type (groups are not accepted)")),
        }
    }
}

/// Why a record was refused.
enum Checked {
    Malformed(WireError),
    Invalid(RecordError),
}

impl From<WireError> for Checked {
    fn from(e: WireError) -> Self {
        Checked::Malformed(e)
    }
}

/// The scalar fields of a record as prost would keep them (last occurrence wins), for the checks.
#[derive(Default)]
struct Scalars {
    version: u64,
    srcaddr: usize,
    dstaddr: usize,
    srcport: Option<u64>,
    dstport: Option<u64>,
    protocol: Option<u64>,
    direction: i32,
    packets: u64,
    bytes: u64,
    start: i64,
    end: i64,
    log_status: i32,
    action: i32,
    tcp_flags: u64,
}

/// Checks one record's encoding: well-formed, and the record prost decodes from it passes `check_record`.
fn check_record(record: &[u8], base: usize) -> Result<(), Checked> {
    let mut r = Reader::new(record, base);
    let mut s = Scalars::default();
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (2..=6 | 20, LEN) => {
                r.text()?;
            }
            (7, LEN) => s.srcaddr = r.bytes()?.len(),
            (8, LEN) => s.dstaddr = r.bytes()?.len(),
            (1 | 9 | 10 | 11 | 19, VARINT) => {
                let value = r.varint()?;
                if value > u64::from(u32::MAX) {
                    return Err(r.malformed("uint32 field wider than 32 bits").into());
                }
                match field {
                    1 => s.version = value,
                    9 => s.srcport = Some(value),
                    10 => s.dstport = Some(value),
                    11 => s.protocol = Some(value),
                    _ => s.tcp_flags = value,
                }
            }
            (12 | 17 | 18, VARINT) => {
                // Enums are int32: prost keeps the low 32 bits of the varint.
                let value = r.varint()? as i32;
                match field {
                    12 => s.direction = value,
                    17 => s.log_status = value,
                    _ => s.action = value,
                }
            }
            (13, VARINT) => s.packets = r.varint()?,
            (14, VARINT) => s.bytes = r.varint()?,
            // int64: prost reinterprets the varint's 64 bits.
            (15, VARINT) => s.start = r.varint()? as i64,
            (16, VARINT) => s.end = r.varint()? as i64,
            (1..=20, _) => return Err(r.malformed("unexpected wire type").into()),
            _ => r.skip(wire)?,
        }
    }
    let decoded = flowlog_proto::v1::Record {
        version: s.version as u32,
        srcaddr: vec![0; 0],
        dstaddr: vec![0; 0],
        srcport: s.srcport.map(|v| v as u32),
        dstport: s.dstport.map(|v| v as u32),
        protocol: s.protocol.map(|v| v as u32),
        direction: s.direction,
        packets: s.packets,
        bytes: s.bytes,
        start: s.start,
        end: s.end,
        log_status: s.log_status,
        action: s.action,
        tcp_flags: s.tcp_flags as u32,
        ..flowlog_proto::v1::Record::default()
    };
    for (field, len) in [("srcaddr", s.srcaddr), ("dstaddr", s.dstaddr)] {
        if !matches!(len, 0 | 4 | 16) {
            return Err(Checked::Invalid(RecordError::AddressLength { field, len }));
        }
    }
    // Everything but the addresses (checked above by length): the shared check.
    super::columnar::check_record(&decoded).map_err(Checked::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowlog_proto::v1::{Action, Direction, IngestBatch, LogStatus, Record};
    use prost::Message;

    fn record(i: u64) -> Record {
        Record {
            version: 1,
            account_id: "1".into(),
            vpc_id: "vpc-1".into(),
            vswitch_id: "vsw-1".into(),
            vm_id: "i-1".into(),
            eni_id: format!("eni-{i}"),
            srcaddr: vec![10, 0, 0, i as u8],
            dstaddr: if i.is_multiple_of(2) {
                vec![10, 0, 0, 9]
            } else {
                vec![0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]
            },
            srcport: Some(1000 + i as u32),
            dstport: Some(443),
            protocol: Some(6),
            direction: Direction::In as i32,
            packets: i,
            bytes: 100 * i,
            start: 60 * i as i64,
            end: 60 * i as i64 + 60,
            log_status: LogStatus::Ok as i32,
            action: Action::Accept as i32,
            tcp_flags: 18,
            region: "r".into(),
        }
    }

    fn batch() -> IngestBatch {
        IngestBatch {
            exporter_id: "exp".into(),
            sequence: 42,
            project: "proj".into(),
            logstore: "flows".into(),
            records: (0..5).map(record).collect(),
        }
    }

    #[test]
    fn reads_identity_and_counts_records() {
        let bytes = Bytes::from(batch().encode_to_vec());
        let raw = RawBatch::parse(bytes.clone()).unwrap();
        assert_eq!(
            (
                raw.exporter_id.as_str(),
                raw.sequence,
                raw.project.as_str(),
                raw.logstore.as_str(),
                raw.records
            ),
            ("exp", 42, "proj", "flows", 5)
        );
        assert_eq!(raw.bytes, bytes);
        let empty = RawBatch::parse(Bytes::new()).unwrap();
        assert_eq!((empty.records, empty.sequence), (0, 0));
    }

    #[test]
    fn refuses_what_check_record_refuses() {
        let mut b = batch();
        b.records[3].dstport = Some(70000);
        let err = RawBatch::parse(Bytes::from(b.encode_to_vec())).unwrap_err();
        assert!(matches!(err, WireError::Record { index: 3, .. }), "{err}");
        let mut b = batch();
        b.records[1].srcaddr = vec![1, 2, 3];
        assert!(RawBatch::parse(Bytes::from(b.encode_to_vec())).is_err());
        let mut b = batch();
        b.records[0].log_status = 0;
        assert!(RawBatch::parse(Bytes::from(b.encode_to_vec())).is_err());
        let mut b = batch();
        b.records[4].action = 7;
        assert!(RawBatch::parse(Bytes::from(b.encode_to_vec())).is_err());
    }

    /// The guarantee, on thousands of mutations of a valid batch: whatever `parse` accepts, prost decodes to the
    /// same identity, and every record passes `check_record`; and what is valid is accepted.
    #[test]
    fn accepts_nothing_prost_and_check_record_would_refuse() {
        let valid = batch().encode_to_vec();
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..=(next() % 3) {
                let at = (next() as usize) % bytes.len();
                match next() % 4 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes[at] ^= 1 << (next() % 8),
                    2 => bytes.truncate(at),
                    _ => bytes.insert(at, next() as u8),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            match RawBatch::parse(Bytes::from(bytes.clone())) {
                Ok(raw) => {
                    accepted += 1;
                    let decoded = IngestBatch::decode(bytes.as_slice())
                        .unwrap_or_else(|e| panic!("accepted but prost refuses: {e}: {bytes:?}"));
                    assert_eq!(decoded.exporter_id, raw.exporter_id);
                    assert_eq!(decoded.sequence, raw.sequence);
                    assert_eq!(decoded.project, raw.project);
                    assert_eq!(decoded.logstore, raw.logstore);
                    assert_eq!(decoded.records.len(), raw.records);
                    for r in &decoded.records {
                        assert_eq!(super::super::columnar::check_record(r), Ok(()), "{r:?}");
                    }
                }
                Err(_) => refused += 1,
            }
            if bytes.is_empty() {
                continue;
            }
        }
        assert!(
            accepted > 100 && refused > 100,
            "{accepted} accepted, {refused} refused"
        );
    }
}
