//! Conversion between the dataplane's [`Record`] and the wire message [`proto::Record`].
//!
//! The collector stores protobuf records and renders JSON by converting them back with [`from_proto`], so the
//! JSON text of a record is written by one function only (`flowlog_dataplane::export::Record::write_json`),
//! whether it comes from replay, the standalone program or a query.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::v1 as proto;
use flowlog_dataplane::export::{LogStatus, Record};
use flowlog_dataplane::flow::{Action, Direction, Eni, MacAddr};

/// Errors turning a wire record into a dataplane record.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// An address field is neither 0, 4 nor 16 bytes long.
    #[error("address field of {len} bytes (expected 4 or 16)")]
    AddressLength {
        /// The field's length.
        len: usize,
    },
    /// A port, protocol or flags value is out of its range.
    #[error("{field} value {value} out of range")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// An enum field holds an unknown number.
    #[error("unknown {field} value {value}")]
    UnknownEnum {
        /// The field.
        field: &'static str,
        /// The value.
        value: i32,
    },
}

/// The wire form of `record`; `region` fills the record's region (empty when none).
pub fn to_proto(record: &Record, region: Option<&str>) -> proto::Record {
    let eni = &record.eni;
    proto::Record {
        version: 1,
        account_id: eni.account_id.to_string(),
        vpc_id: eni.vpc_id.to_string(),
        vswitch_id: eni.vswitch_id.to_string(),
        vm_id: eni.vm_id.to_string(),
        eni_id: eni.id.to_string(),
        srcaddr: addr_bytes(record.srcaddr),
        dstaddr: addr_bytes(record.dstaddr),
        srcport: record.srcport.map(u32::from),
        dstport: record.dstport.map(u32::from),
        protocol: record.protocol.map(u32::from),
        direction: match record.direction {
            None => proto::Direction::Unspecified,
            Some(Direction::In) => proto::Direction::In,
            Some(Direction::Out) => proto::Direction::Out,
        } as i32,
        packets: record.packets,
        bytes: record.bytes,
        start: i64::try_from(record.start).unwrap_or(i64::MAX),
        end: i64::try_from(record.end).unwrap_or(i64::MAX),
        log_status: match record.log_status {
            LogStatus::Ok => proto::LogStatus::Ok,
            LogStatus::NoData => proto::LogStatus::Nodata,
            LogStatus::SkipData => proto::LogStatus::Skipdata,
        } as i32,
        action: match record.action {
            None => proto::Action::Unspecified,
            Some(Action::Accept) => proto::Action::Accept,
            Some(Action::Reject) => proto::Action::Reject,
        } as i32,
        tcp_flags: u32::from(record.tcp_flags),
        region: region.unwrap_or_default().to_string(),
    }
}

/// The dataplane form of a wire record, for rendering. The ENI's MAC is not carried on the wire and is zero.
pub fn from_proto(r: &proto::Record) -> Result<Record, ConvertError> {
    let eni = Eni::new(
        r.eni_id.as_str(),
        MacAddr([0; 6]),
        r.vm_id.as_str(),
        r.vswitch_id.as_str(),
        r.vpc_id.as_str(),
        r.account_id.as_str(),
    );
    let port = |field, v: Option<u32>| {
        v.map(|v| {
            u16::try_from(v).map_err(|_| ConvertError::OutOfRange {
                field,
                value: v.into(),
            })
        })
        .transpose()
    };
    Ok(Record {
        eni,
        srcaddr: addr_from(&r.srcaddr)?,
        srcport: port("srcport", r.srcport)?,
        dstaddr: addr_from(&r.dstaddr)?,
        dstport: port("dstport", r.dstport)?,
        protocol: r
            .protocol
            .map(|v| {
                u8::try_from(v).map_err(|_| ConvertError::OutOfRange {
                    field: "protocol",
                    value: v.into(),
                })
            })
            .transpose()?,
        direction: match proto::Direction::try_from(r.direction) {
            Ok(proto::Direction::Unspecified) => None,
            Ok(proto::Direction::In) => Some(Direction::In),
            Ok(proto::Direction::Out) => Some(Direction::Out),
            Err(_) => {
                return Err(ConvertError::UnknownEnum {
                    field: "direction",
                    value: r.direction,
                });
            }
        },
        packets: r.packets,
        bytes: r.bytes,
        start: u64::try_from(r.start).map_err(|_| ConvertError::OutOfRange {
            field: "start",
            value: 0,
        })?,
        end: u64::try_from(r.end).map_err(|_| ConvertError::OutOfRange {
            field: "end",
            value: 0,
        })?,
        log_status: match proto::LogStatus::try_from(r.log_status) {
            Ok(proto::LogStatus::Ok) => LogStatus::Ok,
            Ok(proto::LogStatus::Nodata) => LogStatus::NoData,
            Ok(proto::LogStatus::Skipdata) => LogStatus::SkipData,
            _ => {
                return Err(ConvertError::UnknownEnum {
                    field: "log-status",
                    value: r.log_status,
                });
            }
        },
        action: match proto::Action::try_from(r.action) {
            Ok(proto::Action::Unspecified) => None,
            Ok(proto::Action::Accept) => Some(Action::Accept),
            Ok(proto::Action::Reject) => Some(Action::Reject),
            Err(_) => {
                return Err(ConvertError::UnknownEnum {
                    field: "action",
                    value: r.action,
                });
            }
        },
        tcp_flags: u8::try_from(r.tcp_flags).map_err(|_| ConvertError::OutOfRange {
            field: "tcp-flags",
            value: r.tcp_flags.into(),
        })?,
    })
}

fn addr_bytes(addr: Option<IpAddr>) -> Vec<u8> {
    match addr {
        None => Vec::new(),
        Some(IpAddr::V4(a)) => a.octets().to_vec(),
        Some(IpAddr::V6(a)) => a.octets().to_vec(),
    }
}

fn addr_from(bytes: &[u8]) -> Result<Option<IpAddr>, ConvertError> {
    match bytes.len() {
        0 => Ok(None),
        4 => {
            let o: [u8; 4] = bytes
                .try_into()
                .map_err(|_| ConvertError::AddressLength { len: 4 })?;
            Ok(Some(IpAddr::V4(Ipv4Addr::from(o))))
        }
        16 => {
            let o: [u8; 16] = bytes
                .try_into()
                .map_err(|_| ConvertError::AddressLength { len: 16 })?;
            Ok(Some(IpAddr::V6(Ipv6Addr::from(o))))
        }
        len => Err(ConvertError::AddressLength { len }),
    }
}
