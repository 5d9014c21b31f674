//! Text renderings of flow-log records: the JSON line of SPEC.md, and the field texts the CLI tables use.
//!
//! # Guarantees
//! [`record_json`] writes the fields in the order of SPEC.md with kebab-case names, `null` for what a NODATA or
//! SKIPDATA record does not carry (addresses, ports, protocol, direction, action, type), addresses as text (IPv6
//! in RFC 5952 form), and `region` only when non-empty. It never fails: values that cannot be rendered (an address
//! of a length other than 4 or 16 bytes, an unknown enum number) become `null`.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flowlog_proto::v1::{Action, Direction, LogStatus, Record};

/// One record as a single-line JSON object (no trailing newline).
pub fn record_json(r: &Record) -> String {
    let mut out = String::with_capacity(512);
    out.push('{');
    field(&mut out, "version", &r.version.to_string());
    string_field(&mut out, "account-id", &r.account_id);
    string_field(&mut out, "vpc-id", &r.vpc_id);
    string_field(&mut out, "vswitch-id", &r.vswitch_id);
    string_field(&mut out, "vm-id", &r.vm_id);
    string_field(&mut out, "eni-id", &r.eni_id);
    optional_string_field(
        &mut out,
        "srcaddr",
        address(&r.srcaddr).map(|a| a.to_string()).as_deref(),
    );
    optional_number_field(&mut out, "srcport", r.srcport);
    optional_string_field(
        &mut out,
        "dstaddr",
        address(&r.dstaddr).map(|a| a.to_string()).as_deref(),
    );
    optional_number_field(&mut out, "dstport", r.dstport);
    optional_number_field(&mut out, "protocol", r.protocol);
    optional_string_field(&mut out, "direction", direction(r.direction));
    field(&mut out, "packets", &r.packets.to_string());
    field(&mut out, "bytes", &r.bytes.to_string());
    field(&mut out, "start", &r.start.to_string());
    field(&mut out, "end", &r.end.to_string());
    optional_string_field(&mut out, "log-status", log_status(r.log_status));
    optional_string_field(&mut out, "action", action(r.action));
    field(&mut out, "tcp-flags", &r.tcp_flags.to_string());
    if !r.region.is_empty() {
        string_field(&mut out, "region", &r.region);
    }
    optional_string_field(&mut out, "type", address_type(r));
    out.pop(); // the last field's comma
    out.push('}');
    out
}

/// The record's source or destination address bytes as an address, when they are 4 or 16 bytes long.
pub fn address(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Some(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        None
    }
}

/// `in`, `out`, or `None` when unset or unknown.
pub fn direction(value: i32) -> Option<&'static str> {
    match Direction::try_from(value) {
        Ok(Direction::In) => Some("in"),
        Ok(Direction::Out) => Some("out"),
        Ok(Direction::Unspecified) | Err(_) => None,
    }
}

/// `ACCEPT`, `REJECT`, or `None` when unset or unknown.
pub fn action(value: i32) -> Option<&'static str> {
    match Action::try_from(value) {
        Ok(Action::Accept) => Some("ACCEPT"),
        Ok(Action::Reject) => Some("REJECT"),
        Ok(Action::Unspecified) | Err(_) => None,
    }
}

/// `OK`, `NODATA`, `SKIPDATA`, or `None` when unset or unknown.
pub fn log_status(value: i32) -> Option<&'static str> {
    match LogStatus::try_from(value) {
        Ok(LogStatus::Ok) => Some("OK"),
        Ok(LogStatus::Nodata) => Some("NODATA"),
        Ok(LogStatus::Skipdata) => Some("SKIPDATA"),
        Ok(LogStatus::Unspecified) | Err(_) => None,
    }
}

/// `IPv4` or `IPv6` after the record's addresses; `None` when it has none.
pub fn address_type(r: &Record) -> Option<&'static str> {
    match address(&r.srcaddr).or_else(|| address(&r.dstaddr)) {
        Some(IpAddr::V4(_)) => Some("IPv4"),
        Some(IpAddr::V6(_)) => Some("IPv6"),
        None => None,
    }
}

fn field(out: &mut String, name: &str, raw_value: &str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
    out.push_str(raw_value);
    out.push(',');
}

fn string_field(out: &mut String, name: &str, value: &str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
    push_json_string(out, value);
    out.push(',');
}

fn optional_string_field(out: &mut String, name: &str, value: Option<&str>) {
    match value {
        Some(value) => string_field(out, name, value),
        None => field(out, name, "null"),
    }
}

fn optional_number_field(out: &mut String, name: &str, value: Option<u32>) {
    match value {
        Some(value) => field(out, name, &value.to_string()),
        None => field(out, name, "null"),
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                // Writing to a String cannot fail.
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
    use std::path::Path;

    /// Builds a record from one line of SPEC.md JSON (the test's independent reading of the format).
    fn parse(line: &str) -> Record {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let n = |k: &str| v[k].as_u64();
        let addr = |k: &str| match v[k].as_str() {
            Some(text) => match text.parse::<IpAddr>().unwrap() {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            },
            None => Vec::new(),
        };
        Record {
            version: n("version").unwrap() as u32,
            account_id: s("account-id"),
            vpc_id: s("vpc-id"),
            vswitch_id: s("vswitch-id"),
            vm_id: s("vm-id"),
            eni_id: s("eni-id"),
            srcaddr: addr("srcaddr"),
            dstaddr: addr("dstaddr"),
            srcport: n("srcport").map(|p| p as u32),
            dstport: n("dstport").map(|p| p as u32),
            protocol: n("protocol").map(|p| p as u32),
            direction: match v["direction"].as_str() {
                Some("in") => Direction::In,
                Some("out") => Direction::Out,
                _ => Direction::Unspecified,
            } as i32,
            packets: n("packets").unwrap(),
            bytes: n("bytes").unwrap(),
            start: v["start"].as_i64().unwrap(),
            end: v["end"].as_i64().unwrap(),
            log_status: match v["log-status"].as_str() {
                Some("OK") => LogStatus::Ok,
                Some("NODATA") => LogStatus::Nodata,
                Some("SKIPDATA") => LogStatus::Skipdata,
                _ => LogStatus::Unspecified,
            } as i32,
            action: match v["action"].as_str() {
                Some("ACCEPT") => Action::Accept,
                Some("REJECT") => Action::Reject,
                _ => Action::Unspecified,
            } as i32,
            tcp_flags: n("tcp-flags").unwrap() as u32,
            region: s("region"),
        }
    }

    #[test]
    fn golden_sample_renders_byte_for_byte() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/sample/sample.expected-60s.jsonl");
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines = 0;
        for line in text.lines() {
            assert_eq!(record_json(&parse(line)), line);
            lines += 1;
        }
        assert_eq!(lines, 1837);
    }

    #[test]
    fn region_goes_before_type_only_when_set() {
        let mut r = Record {
            version: 1,
            srcaddr: vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
            dstaddr: vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            ..Record::default()
        };
        let json = record_json(&r);
        assert!(
            json.ends_with(r#""log-status":null,"action":null,"tcp-flags":0,"type":"IPv6"}"#),
            "{json}"
        );
        assert!(json.contains(r#""srcaddr":"2001:db8::1:0:0:1""#), "{json}");
        assert!(json.contains(r#""dstaddr":"2001:db8::2""#), "{json}");
        r.region = "cn-hangzhou".into();
        assert!(
            record_json(&r).ends_with(r#""tcp-flags":0,"region":"cn-hangzhou","type":"IPv6"}"#)
        );
    }

    #[test]
    fn odd_values_render_as_null_or_escaped() {
        let r = Record {
            eni_id: "quote\" back\\ nl\n ctl\u{1}".into(),
            srcaddr: vec![1, 2, 3],
            direction: 99,
            action: -1,
            log_status: 3,
            ..Record::default()
        };
        let json = record_json(&r);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["eni-id"], "quote\" back\\ nl\n ctl\u{1}");
        assert!(v["srcaddr"].is_null() && v["type"].is_null());
        assert!(v["direction"].is_null() && v["action"].is_null());
        assert_eq!(v["log-status"], "SKIPDATA");
    }
}
