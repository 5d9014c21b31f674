//! The flow-log record (SPEC.md, "Record", version 1) and its JSON line.
//!
//! # Guarantees
//! [`Record::write_json`] writes one JSON object with the fields in this exact order: `version`, `account-id`,
//! `vpc-id`, `vswitch-id`, `vm-id`, `eni-id`, `srcaddr`, `srcport`, `dstaddr`, `dstport`, `protocol`,
//! `direction`, `packets`, `bytes`, `start`, `end`, `log-status`, `action`, `tcp-flags`, then `region` only
//! when one is configured, then `type`. Absent values are `null`; addresses are dotted quads or RFC 5952 text
//! (std's `Display`); strings are JSON-escaped. No serde, no allocation beyond growing `out`.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::flow::{Action, Direction, Eni};

/// Record format version written in every record.
pub const RECORD_VERSION: u32 = 1;

/// What a record stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStatus {
    /// A flow's counts in the window.
    Ok,
    /// The ENI had no traffic in the window.
    NoData,
    /// Accounting of this ENI was dropped in the window; packets and bytes are exactly what was not recorded.
    SkipData,
}

impl LogStatus {
    /// The record text: `OK`, `NODATA` or `SKIPDATA`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStatus::Ok => "OK",
            LogStatus::NoData => "NODATA",
            LogStatus::SkipData => "SKIPDATA",
        }
    }
}

impl fmt::Display for LogStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One flow-log record. Address, port, protocol, direction and action are `None` on NODATA and SKIPDATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The ENI the record belongs to (account, VPC, vSwitch, VM and ENI ids).
    pub eni: Eni,
    /// Source address.
    pub srcaddr: Option<IpAddr>,
    /// Source port (0 for portless protocols).
    pub srcport: Option<u16>,
    /// Destination address.
    pub dstaddr: Option<IpAddr>,
    /// Destination port (0 for portless protocols).
    pub dstport: Option<u16>,
    /// IANA protocol number.
    pub protocol: Option<u8>,
    /// Direction relative to the ENI.
    pub direction: Option<Direction>,
    /// Packets.
    pub packets: u64,
    /// Sum of IP lengths.
    pub bytes: u64,
    /// Window start, Unix seconds.
    pub start: u64,
    /// Window end, Unix seconds.
    pub end: u64,
    /// OK, NODATA or SKIPDATA.
    pub log_status: LogStatus,
    /// Security-group verdict.
    pub action: Option<Action>,
    /// OR of the TCP flags (0 for non-TCP and for NODATA/SKIPDATA).
    pub tcp_flags: u8,
}

impl Record {
    /// A NODATA or SKIPDATA record (no flow fields).
    pub fn without_flow(
        eni: Eni,
        log_status: LogStatus,
        packets: u64,
        bytes: u64,
        start: u64,
        end: u64,
    ) -> Self {
        Record {
            eni,
            srcaddr: None,
            srcport: None,
            dstaddr: None,
            dstport: None,
            protocol: None,
            direction: None,
            packets,
            bytes,
            start,
            end,
            log_status,
            action: None,
            tcp_flags: 0,
        }
    }

    /// The record's `type`: `IPv4` or `IPv6` from its source address; `None` without addresses.
    pub fn record_type(&self) -> Option<&'static str> {
        self.srcaddr.map(|a| match a {
            IpAddr::V4(_) => "IPv4",
            IpAddr::V6(_) => "IPv6",
        })
    }

    /// Appends the record's JSON object (no newline) to `out`; `region` is written only when `Some`.
    pub fn write_json(&self, region: Option<&str>, out: &mut String) {
        out.push_str("{\"version\":");
        push_u64(out, u64::from(RECORD_VERSION));
        push_str_field(out, "account-id", &self.eni.account_id);
        push_str_field(out, "vpc-id", &self.eni.vpc_id);
        push_str_field(out, "vswitch-id", &self.eni.vswitch_id);
        push_str_field(out, "vm-id", &self.eni.vm_id);
        push_str_field(out, "eni-id", &self.eni.id);
        push_key(out, "srcaddr");
        push_addr(out, self.srcaddr);
        push_key(out, "srcport");
        push_opt_u64(out, self.srcport.map(u64::from));
        push_key(out, "dstaddr");
        push_addr(out, self.dstaddr);
        push_key(out, "dstport");
        push_opt_u64(out, self.dstport.map(u64::from));
        push_key(out, "protocol");
        push_opt_u64(out, self.protocol.map(u64::from));
        push_key(out, "direction");
        push_opt_str(out, self.direction.map(Direction::as_str));
        push_key(out, "packets");
        push_u64(out, self.packets);
        push_key(out, "bytes");
        push_u64(out, self.bytes);
        push_key(out, "start");
        push_u64(out, self.start);
        push_key(out, "end");
        push_u64(out, self.end);
        push_str_field(out, "log-status", self.log_status.as_str());
        push_key(out, "action");
        push_opt_str(out, self.action.map(Action::as_str));
        push_key(out, "tcp-flags");
        push_u64(out, u64::from(self.tcp_flags));
        if let Some(region) = region {
            push_str_field(out, "region", region);
        }
        push_key(out, "type");
        push_opt_str(out, self.record_type());
        out.push('}');
    }

    /// The record's JSON object as a new string.
    pub fn to_json(&self, region: Option<&str>) -> String {
        let mut out = String::with_capacity(400);
        self.write_json(region, &mut out);
        out
    }

    /// The canonical record order: start, eni-id, log-status, then the key in field order (direction,
    /// srcaddr, srcport, dstaddr, dstport, protocol, action), texts compared as the JSON shows them (addresses
    /// as text, not numerically), absent values first.
    pub fn canonical_cmp(&self, other: &Record) -> Ordering {
        self.start
            .cmp(&other.start)
            .then_with(|| self.eni.id.cmp(&other.eni.id))
            .then_with(|| self.log_status.as_str().cmp(other.log_status.as_str()))
            .then_with(|| {
                self.direction
                    .map(Direction::as_str)
                    .cmp(&other.direction.map(Direction::as_str))
            })
            .then_with(|| AddrText::new(self.srcaddr).cmp(&AddrText::new(other.srcaddr)))
            .then_with(|| self.srcport.cmp(&other.srcport))
            .then_with(|| AddrText::new(self.dstaddr).cmp(&AddrText::new(other.dstaddr)))
            .then_with(|| self.dstport.cmp(&other.dstport))
            .then_with(|| self.protocol.cmp(&other.protocol))
            .then_with(|| {
                self.action
                    .map(Action::as_str)
                    .cmp(&other.action.map(Action::as_str))
            })
    }
}

/// An address rendered as text on the stack (for ordering without allocation). `None` sorts first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AddrText {
    present: bool,
    buf: [u8; 48],
    len: usize,
}

impl AddrText {
    pub(crate) fn new(addr: Option<IpAddr>) -> Self {
        let mut text = AddrText {
            present: addr.is_some(),
            buf: [0; 48],
            len: 0,
        };
        if let Some(addr) = addr {
            // The longest address text (45 bytes) fits; were it not to, the text would be cut, not panic.
            let _ = write!(text, "{addr}");
        }
        text
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl fmt::Write for AddrText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dest = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl PartialOrd for Record {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The canonical order ([`Record::canonical_cmp`]), then every remaining field, so that equal means identical.
impl Ord for Record {
    fn cmp(&self, other: &Self) -> Ordering {
        self.canonical_cmp(other)
            .then_with(|| self.end.cmp(&other.end))
            .then_with(|| self.packets.cmp(&other.packets))
            .then_with(|| self.bytes.cmp(&other.bytes))
            .then_with(|| self.tcp_flags.cmp(&other.tcp_flags))
            .then_with(|| {
                let a = &self.eni;
                let b = &other.eni;
                (&a.account_id, &a.vpc_id, &a.vswitch_id, &a.vm_id, a.mac).cmp(&(
                    &b.account_id,
                    &b.vpc_id,
                    &b.vswitch_id,
                    &b.vm_id,
                    b.mac,
                ))
            })
    }
}

impl fmt::Debug for AddrText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.bytes()))
    }
}

fn push_key(out: &mut String, key: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
}

fn push_str_field(out: &mut String, key: &str, value: &str) {
    push_key(out, key);
    push_json_str(out, value);
}

fn push_opt_str(out: &mut String, value: Option<&str>) {
    match value {
        Some(v) => push_json_str(out, v),
        None => out.push_str("null"),
    }
}

fn push_opt_u64(out: &mut String, value: Option<u64>) {
    match value {
        Some(v) => push_u64(out, v),
        None => out.push_str("null"),
    }
}

fn push_addr(out: &mut String, addr: Option<IpAddr>) {
    match addr {
        Some(a) => {
            out.push('"');
            // fmt::Write for String never fails.
            let _ = write!(out, "{a}");
            out.push('"');
        }
        None => out.push_str("null"),
    }
}

fn push_u64(out: &mut String, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    for &d in digits.get(i..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                // fmt::Write for String never fails.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::MacAddr;

    fn eni() -> Eni {
        Eni::new(
            "eni-00012",
            MacAddr([2, 0, 0, 0xe1, 0, 0x0c]),
            "i-00012",
            "vsw-03",
            "vpc-1",
            "100000000001",
        )
    }

    #[test]
    fn nodata_matches_sample_line() {
        let r = Record::without_flow(eni(), LogStatus::NoData, 0, 0, 1700000220, 1700000280);
        assert_eq!(
            r.to_json(None),
            r#"{"version":1,"account-id":"100000000001","vpc-id":"vpc-1","vswitch-id":"vsw-03","vm-id":"i-00012","eni-id":"eni-00012","srcaddr":null,"srcport":null,"dstaddr":null,"dstport":null,"protocol":null,"direction":null,"packets":0,"bytes":0,"start":1700000220,"end":1700000280,"log-status":"NODATA","action":null,"tcp-flags":0,"type":null}"#
        );
    }

    #[test]
    fn ok_record_with_region_and_ipv6() {
        let r = Record {
            eni: eni(),
            srcaddr: Some("fd00:0:0:9::10".parse().unwrap()),
            srcport: Some(17363),
            dstaddr: Some("2604:5d10:ef0f:902b:cb73:ac41:c8fa:ba49".parse().unwrap()),
            dstport: Some(33281),
            protocol: Some(6),
            direction: Some(Direction::Out),
            packets: 1,
            bytes: 60,
            start: 1700000220,
            end: 1700000280,
            log_status: LogStatus::Ok,
            action: Some(Action::Reject),
            tcp_flags: 17,
        };
        assert_eq!(
            r.to_json(Some("cn-hangzhou")),
            r#"{"version":1,"account-id":"100000000001","vpc-id":"vpc-1","vswitch-id":"vsw-03","vm-id":"i-00012","eni-id":"eni-00012","srcaddr":"fd00:0:0:9::10","srcport":17363,"dstaddr":"2604:5d10:ef0f:902b:cb73:ac41:c8fa:ba49","dstport":33281,"protocol":6,"direction":"out","packets":1,"bytes":60,"start":1700000220,"end":1700000280,"log-status":"OK","action":"REJECT","tcp-flags":17,"region":"cn-hangzhou","type":"IPv6"}"#
        );
    }

    #[test]
    fn escapes_strings_and_prints_numbers() {
        let mut e = eni();
        e.vm_id = "a\"b\\c\u{1}".into();
        let r = Record::without_flow(e, LogStatus::SkipData, u64::MAX, 0, 0, 60);
        let json = r.to_json(None);
        assert!(json.contains(r#""vm-id":"a\"b\\c\u0001""#), "{json}");
        assert!(
            json.contains(r#""packets":18446744073709551615,"bytes":0,"start":0"#),
            "{json}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["vm-id"], "a\"b\\c\u{1}");
    }

    #[test]
    fn addresses_order_as_text() {
        let a = AddrText::new(Some("10.0.11.10".parse().unwrap()));
        let b = AddrText::new(Some("10.0.4.10".parse().unwrap()));
        let c = AddrText::new(Some("2609::1".parse().unwrap()));
        let d = AddrText::new(Some("69.1.1.1".parse().unwrap()));
        assert!(AddrText::new(None) < a && a < b && c < d);
        let long: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(
            AddrText::new(Some(long)).bytes(),
            long.to_string().as_bytes()
        );
    }
}
