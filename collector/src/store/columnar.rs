//! The columnar form of flow-log records: the Arrow schema of the `flows` table and of the Parquet files, the
//! check every stored record passes, and the conversions between wire records and Arrow record batches.
//!
//! # Schema
//! One column per field of SPEC.md's record, named in snake_case (so SQL needs no quoting, except `"end"`, a
//! reserved word), in SPEC.md's order:
//!
//! | column | Arrow type | null when |
//! |---|---|---|
//! | version | Int32 | never |
//! | account_id, vpc_id, vswitch_id, vm_id, eni_id | Utf8 | never |
//! | srcaddr, dstaddr | Utf8 (IPv4 dotted quad, IPv6 RFC 5952) | NODATA / SKIPDATA |
//! | srcport, dstport, protocol | Int32 | NODATA / SKIPDATA |
//! | direction | Utf8 `in` / `out` | NODATA / SKIPDATA |
//! | packets, bytes | Int64 | never |
//! | start, end | Int64, Unix seconds | never |
//! | log_status | Utf8 `OK` / `NODATA` / `SKIPDATA` | never |
//! | action | Utf8 `ACCEPT` / `REJECT` | NODATA / SKIPDATA |
//! | tcp_flags | Int32 | never |
//! | region | Utf8 | no region configured |
//! | type | Utf8 `IPv4` / `IPv6` | NODATA / SKIPDATA |
//!
//! # Guarantees
//! - A record that passes [`check_record`] converts to a row and back to the same wire record
//!   ([`BatchBuilder::push`], [`records_from_batch`]); the collector refuses, at ingest, records that do not pass.
//! - Converting Arrow data back never panics: a batch with another schema, or values out of range, is an error.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, Int32Builder, Int64Array, Int64Builder, RecordBatch,
    StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use flowlog_proto::v1::{Action, Direction, LogStatus, Record};
use thiserror::Error;

use crate::render;

/// Why a wire record is refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RecordError {
    /// An address field is neither empty, 4 bytes (IPv4) nor 16 bytes (IPv6).
    #[error("{field} of {len} bytes (expected 0, 4 or 16)")]
    AddressLength {
        /// `srcaddr` or `dstaddr`.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A number does not fit its field (ports over 65535, protocol or tcp-flags over 255, negative times).
    #[error("{field} value {value} out of range")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value sent.
        value: i64,
    },
    /// An enum field holds a value that is not defined (or log-status is unset).
    #[error("{field} value {value} is not defined")]
    UnknownEnum {
        /// The field.
        field: &'static str,
        /// The value sent.
        value: i32,
    },
}

/// Why Arrow data does not convert back to wire records.
#[derive(Debug, Error)]
pub enum ColumnarError {
    /// The batch lacks a column, or a column has another type.
    #[error("column {column}: missing or not of type {expected}")]
    Column {
        /// The column.
        column: &'static str,
        /// Its expected Arrow type.
        expected: &'static str,
    },
    /// A value cannot be a record field (an address that does not parse, an unknown enum text, a negative count).
    #[error("row {row}, column {column}: {message}")]
    Value {
        /// Row within the batch.
        row: usize,
        /// The column.
        column: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Arrow refused to build the batch.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// Column names, in schema order.
pub const COLUMNS: [&str; 21] = [
    "version",
    "account_id",
    "vpc_id",
    "vswitch_id",
    "vm_id",
    "eni_id",
    "srcaddr",
    "srcport",
    "dstaddr",
    "dstport",
    "protocol",
    "direction",
    "packets",
    "bytes",
    "start",
    "end",
    "log_status",
    "action",
    "tcp_flags",
    "region",
    "type",
];

/// The Arrow schema of records (the table `flows`, and every Parquet file).
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            use DataType::{Int32, Int64, Utf8};
            let field = |name: &str, data_type: DataType, nullable: bool| {
                Field::new(name, data_type, nullable)
            };
            Arc::new(Schema::new(vec![
                field("version", Int32, false),
                field("account_id", Utf8, false),
                field("vpc_id", Utf8, false),
                field("vswitch_id", Utf8, false),
                field("vm_id", Utf8, false),
                field("eni_id", Utf8, false),
                field("srcaddr", Utf8, true),
                field("srcport", Int32, true),
                field("dstaddr", Utf8, true),
                field("dstport", Int32, true),
                field("protocol", Int32, true),
                field("direction", Utf8, true),
                field("packets", Int64, false),
                field("bytes", Int64, false),
                field("start", Int64, false),
                field("end", Int64, false),
                field("log_status", Utf8, false),
                field("action", Utf8, true),
                field("tcp_flags", Int32, false),
                field("region", Utf8, true),
                field("type", Utf8, true),
            ]))
        })
        .clone()
}

/// The schema of the SQL table `flows`: [`schema`] with every text column as `Utf8View` (string views, which
/// DataFusion reads from Parquet without copying short strings and groups by fastest).
pub fn view_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let fields: Vec<Field> = schema()
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Utf8 => Field::new(f.name(), DataType::Utf8View, f.is_nullable()),
                    _ => f.as_ref().clone(),
                })
                .collect();
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// A batch of [`schema`] as a batch of [`view_schema`].
pub fn to_view_batch(batch: &RecordBatch) -> Result<RecordBatch, ColumnarError> {
    let target = view_schema();
    let columns = batch
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(column, field)| datafusion::arrow::compute::cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(target, columns)?)
}

/// Checks that a wire record can be stored: every field in range, every enum defined, log-status set.
pub fn check_record(r: &Record) -> Result<(), RecordError> {
    for (field, addr) in [("srcaddr", &r.srcaddr), ("dstaddr", &r.dstaddr)] {
        if !matches!(addr.len(), 0 | 4 | 16) {
            return Err(RecordError::AddressLength {
                field,
                len: addr.len(),
            });
        }
    }
    let limits = [
        ("srcport", r.srcport, 65535),
        ("dstport", r.dstport, 65535),
        ("protocol", r.protocol, 255),
        ("tcp-flags", Some(r.tcp_flags), 255),
        ("version", Some(r.version), i32::MAX as u32),
    ];
    for (field, value, max) in limits {
        if let Some(value) = value.filter(|&v| v > max) {
            return Err(RecordError::OutOfRange {
                field,
                value: i64::from(value),
            });
        }
    }
    for (field, value) in [("start", r.start), ("end", r.end)] {
        if value < 0 {
            return Err(RecordError::OutOfRange { field, value });
        }
    }
    for (field, value) in [("packets", r.packets), ("bytes", r.bytes)] {
        if value > i64::MAX as u64 {
            return Err(RecordError::OutOfRange {
                field,
                value: i64::MAX,
            });
        }
    }
    let defined = [
        ("direction", Direction::try_from(r.direction).is_ok()),
        ("action", Action::try_from(r.action).is_ok()),
        (
            "log-status",
            matches!(
                LogStatus::try_from(r.log_status),
                Ok(LogStatus::Ok | LogStatus::Nodata | LogStatus::Skipdata)
            ),
        ),
    ];
    for (field, ok) in defined {
        if !ok {
            let value = match field {
                "direction" => r.direction,
                "action" => r.action,
                _ => r.log_status,
            };
            return Err(RecordError::UnknownEnum { field, value });
        }
    }
    Ok(())
}

/// Accumulates records into one Arrow record batch.
#[derive(Debug)]
pub struct BatchBuilder {
    version: Int32Builder,
    account_id: StringBuilder,
    vpc_id: StringBuilder,
    vswitch_id: StringBuilder,
    vm_id: StringBuilder,
    eni_id: StringBuilder,
    srcaddr: StringBuilder,
    srcport: Int32Builder,
    dstaddr: StringBuilder,
    dstport: Int32Builder,
    protocol: Int32Builder,
    direction: StringBuilder,
    packets: Int64Builder,
    bytes: Int64Builder,
    start: Int64Builder,
    end: Int64Builder,
    log_status: StringBuilder,
    action: StringBuilder,
    tcp_flags: Int32Builder,
    region: StringBuilder,
    address_type: StringBuilder,
    len: usize,
}

impl BatchBuilder {
    /// An empty builder with room for `capacity` records.
    pub fn new(capacity: usize) -> Self {
        let text = |bytes_per_value: usize| {
            StringBuilder::with_capacity(capacity, capacity * bytes_per_value)
        };
        BatchBuilder {
            version: Int32Builder::with_capacity(capacity),
            account_id: text(12),
            vpc_id: text(16),
            vswitch_id: text(16),
            vm_id: text(16),
            eni_id: text(16),
            srcaddr: text(12),
            srcport: Int32Builder::with_capacity(capacity),
            dstaddr: text(12),
            dstport: Int32Builder::with_capacity(capacity),
            protocol: Int32Builder::with_capacity(capacity),
            direction: text(3),
            packets: Int64Builder::with_capacity(capacity),
            bytes: Int64Builder::with_capacity(capacity),
            start: Int64Builder::with_capacity(capacity),
            end: Int64Builder::with_capacity(capacity),
            log_status: text(2),
            action: text(6),
            tcp_flags: Int32Builder::with_capacity(capacity),
            region: text(0),
            address_type: text(4),
            len: 0,
        }
    }

    /// Records pushed since the last [`BatchBuilder::finish`].
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no record was pushed since the last [`BatchBuilder::finish`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one record. Values out of range (only possible for records that fail [`check_record`]) are
    /// clamped, never a panic.
    pub fn push(&mut self, r: &Record) {
        let int32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let int64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.version.append_value(int32(r.version));
        self.account_id.append_value(&r.account_id);
        self.vpc_id.append_value(&r.vpc_id);
        self.vswitch_id.append_value(&r.vswitch_id);
        self.vm_id.append_value(&r.vm_id);
        self.eni_id.append_value(&r.eni_id);
        append_address(&mut self.srcaddr, &r.srcaddr);
        self.srcport.append_option(r.srcport.map(int32));
        append_address(&mut self.dstaddr, &r.dstaddr);
        self.dstport.append_option(r.dstport.map(int32));
        self.protocol.append_option(r.protocol.map(int32));
        self.direction.append_option(render::direction(r.direction));
        self.packets.append_value(int64(r.packets));
        self.bytes.append_value(int64(r.bytes));
        self.start.append_value(r.start);
        self.end.append_value(r.end);
        self.log_status
            .append_value(render::log_status(r.log_status).unwrap_or("OK"));
        self.action.append_option(render::action(r.action));
        self.tcp_flags.append_value(int32(r.tcp_flags));
        self.region
            .append_option((!r.region.is_empty()).then_some(r.region.as_str()));
        self.address_type.append_option(render::address_type(r));
        self.len += 1;
    }

    /// The batch of the records pushed so far; the builder is empty afterwards.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.version.finish()),
            Arc::new(self.account_id.finish()),
            Arc::new(self.vpc_id.finish()),
            Arc::new(self.vswitch_id.finish()),
            Arc::new(self.vm_id.finish()),
            Arc::new(self.eni_id.finish()),
            Arc::new(self.srcaddr.finish()),
            Arc::new(self.srcport.finish()),
            Arc::new(self.dstaddr.finish()),
            Arc::new(self.dstport.finish()),
            Arc::new(self.protocol.finish()),
            Arc::new(self.direction.finish()),
            Arc::new(self.packets.finish()),
            Arc::new(self.bytes.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.end.finish()),
            Arc::new(self.log_status.finish()),
            Arc::new(self.action.finish()),
            Arc::new(self.tcp_flags.finish()),
            Arc::new(self.region.finish()),
            Arc::new(self.address_type.finish()),
        ];
        self.len = 0;
        // Every column was appended to once per record with the schema's type, and non-nullable columns only got
        // values: the batch matches the schema by construction, so this cannot fail. Should it ever, an empty
        // batch is the safe answer (and a logged error).
        RecordBatch::try_new(schema(), columns).unwrap_or_else(|e| {
            tracing::error!(error = %e, "building a record batch failed; dropping it");
            RecordBatch::new_empty(schema())
        })
    }
}

/// Converts the rows of a batch with the records schema (by column name) back to wire records.
pub fn records_from_batch(batch: &RecordBatch) -> Result<Vec<Record>, ColumnarError> {
    let columns = Columns::of(batch)?;
    (0..batch.num_rows())
        .map(|row| columns.record(row))
        .collect()
}

/// The typed columns of a batch, looked up by name.
struct Columns<'a> {
    text: [&'a datafusion::arrow::array::StringArray; 11],
    int32: [&'a Int32Array; 5],
    int64: [&'a Int64Array; 4],
}

/// Text columns, in the order of `Columns::text`.
const TEXT: [&str; 11] = [
    "account_id",
    "vpc_id",
    "vswitch_id",
    "vm_id",
    "eni_id",
    "srcaddr",
    "dstaddr",
    "direction",
    "log_status",
    "action",
    "region",
];
/// Int32 columns, in the order of `Columns::int32`.
const INT32: [&str; 5] = ["version", "srcport", "dstport", "protocol", "tcp_flags"];
/// Int64 columns, in the order of `Columns::int64`.
const INT64: [&str; 4] = ["packets", "bytes", "start", "end"];

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self, ColumnarError> {
        let column = |name: &'static str, expected: &'static str| {
            batch.column_by_name(name).ok_or(ColumnarError::Column {
                column: name,
                expected,
            })
        };
        let mut text = Vec::with_capacity(TEXT.len());
        for name in TEXT {
            let array = column(name, "Utf8")?;
            text.push(array.as_string_opt::<i32>().ok_or(ColumnarError::Column {
                column: name,
                expected: "Utf8",
            })?);
        }
        let mut int32 = Vec::with_capacity(INT32.len());
        for name in INT32 {
            let array = column(name, "Int32")?;
            int32.push(
                array
                    .as_primitive_opt::<Int32Type>()
                    .ok_or(ColumnarError::Column {
                        column: name,
                        expected: "Int32",
                    })?,
            );
        }
        let mut int64 = Vec::with_capacity(INT64.len());
        for name in INT64 {
            let array = column(name, "Int64")?;
            int64.push(
                array
                    .as_primitive_opt::<Int64Type>()
                    .ok_or(ColumnarError::Column {
                        column: name,
                        expected: "Int64",
                    })?,
            );
        }
        let missing = |column| ColumnarError::Column {
            column,
            expected: "a column",
        };
        Ok(Columns {
            text: text.try_into().map_err(|_| missing("text"))?,
            int32: int32.try_into().map_err(|_| missing("int32"))?,
            int64: int64.try_into().map_err(|_| missing("int64"))?,
        })
    }

    fn record(&self, row: usize) -> Result<Record, ColumnarError> {
        let [
            account_id,
            vpc_id,
            vswitch_id,
            vm_id,
            eni_id,
            srcaddr,
            dstaddr,
            direction,
            log_status,
            action,
            region,
        ] = self.text;
        let [version, srcport, dstport, protocol, tcp_flags] = self.int32;
        let [packets, bytes, start, end] = self.int64;
        fn text(a: &datafusion::arrow::array::StringArray, row: usize) -> Option<&str> {
            a.is_valid(row).then(|| a.value(row))
        }
        let bad = |column: &'static str, message: String| ColumnarError::Value {
            row,
            column,
            message,
        };
        let unsigned = |a: &Int32Array,
                        column: &'static str|
         -> Result<Option<u32>, ColumnarError> {
            a.is_valid(row)
                .then(|| u32::try_from(a.value(row)).map_err(|_| bad(column, "negative".into())))
                .transpose()
        };
        let count = |a: &Int64Array, column: &'static str| -> Result<u64, ColumnarError> {
            u64::try_from(a.value(row)).map_err(|_| bad(column, "negative".into()))
        };
        let address = |a, column| -> Result<Vec<u8>, ColumnarError> {
            match text(a, row) {
                None => Ok(Vec::new()),
                Some(t) => match t.parse::<IpAddr>() {
                    Ok(IpAddr::V4(v4)) => Ok(v4.octets().to_vec()),
                    Ok(IpAddr::V6(v6)) => Ok(v6.octets().to_vec()),
                    Err(_) => Err(bad(column, format!("{t:?} is not an address"))),
                },
            }
        };
        let direction = match text(direction, row) {
            None => Direction::Unspecified,
            Some("in") => Direction::In,
            Some("out") => Direction::Out,
            Some(other) => return Err(bad("direction", format!("unknown value {other:?}"))),
        };
        let action = match text(action, row) {
            None => Action::Unspecified,
            Some("ACCEPT") => Action::Accept,
            Some("REJECT") => Action::Reject,
            Some(other) => return Err(bad("action", format!("unknown value {other:?}"))),
        };
        let log_status = match text(log_status, row) {
            Some("OK") => LogStatus::Ok,
            Some("NODATA") => LogStatus::Nodata,
            Some("SKIPDATA") => LogStatus::Skipdata,
            other => return Err(bad("log_status", format!("unknown value {other:?}"))),
        };
        Ok(Record {
            version: unsigned(version, "version")?.unwrap_or(0),
            account_id: text(account_id, row).unwrap_or_default().to_owned(),
            vpc_id: text(vpc_id, row).unwrap_or_default().to_owned(),
            vswitch_id: text(vswitch_id, row).unwrap_or_default().to_owned(),
            vm_id: text(vm_id, row).unwrap_or_default().to_owned(),
            eni_id: text(eni_id, row).unwrap_or_default().to_owned(),
            srcaddr: address(srcaddr, "srcaddr")?,
            dstaddr: address(dstaddr, "dstaddr")?,
            srcport: unsigned(srcport, "srcport")?,
            dstport: unsigned(dstport, "dstport")?,
            protocol: unsigned(protocol, "protocol")?,
            direction: direction as i32,
            packets: count(packets, "packets")?,
            bytes: count(bytes, "bytes")?,
            start: start.value(row),
            end: end.value(row),
            log_status: log_status as i32,
            action: action as i32,
            tcp_flags: unsigned(tcp_flags, "tcp_flags")?.unwrap_or(0),
            region: text(region, row).unwrap_or_default().to_owned(),
        })
    }
}

/// Appends an address as text, or null for an empty (or malformed) one.
fn append_address(builder: &mut StringBuilder, bytes: &[u8]) {
    match render::address(bytes) {
        Some(address) => {
            // Writing into the builder's value buffer cannot fail (it grows as needed).
            let _ = write!(builder, "{address}");
            builder.append_value("");
        }
        None => builder.append_null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_record() -> Record {
        Record {
            version: 1,
            account_id: "1".into(),
            vpc_id: "vpc-1".into(),
            vswitch_id: "vsw-1".into(),
            vm_id: "i-1".into(),
            eni_id: "eni-1".into(),
            srcaddr: vec![10, 0, 0, 1],
            dstaddr: vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            srcport: Some(443),
            dstport: Some(0),
            protocol: Some(6),
            direction: Direction::Out as i32,
            packets: 3,
            bytes: 180,
            start: 1_700_000_000,
            end: 1_700_000_060,
            log_status: LogStatus::Ok as i32,
            action: Action::Reject as i32,
            tcp_flags: 18,
            region: "cn-hangzhou".into(),
        }
    }

    #[test]
    fn round_trip_through_arrow() {
        let nodata = Record {
            version: 1,
            eni_id: "eni-2".into(),
            start: 60,
            end: 120,
            log_status: LogStatus::Nodata as i32,
            ..Record::default()
        };
        let records = vec![ok_record(), nodata];
        let mut builder = BatchBuilder::new(1);
        for r in &records {
            builder.push(r);
        }
        assert_eq!(builder.len(), 2);
        let batch = builder.finish();
        assert!(builder.is_empty());
        assert_eq!(batch.schema(), schema());
        assert_eq!(records_from_batch(&batch).unwrap(), records);
        let srcaddr = batch.column_by_name("dstaddr").unwrap().as_string::<i32>();
        assert_eq!(srcaddr.value(0), "2001:db8::2");
        assert!(srcaddr.is_null(1));
        let kind = batch.column_by_name("type").unwrap().as_string::<i32>();
        assert_eq!(kind.value(0), "IPv4");
        assert!(kind.is_null(1));
        let schema = schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, COLUMNS);
    }

    #[test]
    fn checks_refuse_what_cannot_be_stored() {
        assert_eq!(check_record(&ok_record()), Ok(()));
        let cases: Vec<(Record, &str)> = vec![
            (
                Record {
                    srcaddr: vec![1, 2, 3],
                    ..ok_record()
                },
                "srcaddr of 3 bytes",
            ),
            (
                Record {
                    dstport: Some(65536),
                    ..ok_record()
                },
                "dstport value 65536",
            ),
            (
                Record {
                    protocol: Some(256),
                    ..ok_record()
                },
                "protocol",
            ),
            (
                Record {
                    start: -1,
                    ..ok_record()
                },
                "start",
            ),
            (
                Record {
                    action: 9,
                    ..ok_record()
                },
                "action value 9",
            ),
            (
                Record {
                    log_status: 0,
                    ..ok_record()
                },
                "log-status",
            ),
            (
                Record {
                    packets: u64::MAX,
                    ..ok_record()
                },
                "packets",
            ),
        ];
        for (record, want) in cases {
            let err = check_record(&record).unwrap_err().to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        }
    }

    #[test]
    fn foreign_batches_are_errors_not_panics() {
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "version",
                DataType::Utf8,
                false,
            )])),
            vec![Arc::new(datafusion::arrow::array::StringArray::from(vec![
                "x",
            ]))],
        )
        .unwrap();
        assert!(records_from_batch(&other).is_err());

        let mut builder = BatchBuilder::new(1);
        builder.push(&ok_record());
        let batch = builder.finish();
        let mut columns = batch.columns().to_vec();
        columns[6] = Arc::new(datafusion::arrow::array::StringArray::from(vec![
            "not-an-ip",
        ]));
        let broken = RecordBatch::try_new(schema(), columns).unwrap();
        let err = records_from_batch(&broken).unwrap_err().to_string();
        assert!(err.contains("srcaddr"), "{err}");
    }
}
