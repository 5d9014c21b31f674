//! Text renderings of flow-log records: the JSON line of SPEC.md, and the field texts the CLI tables use.
//!
//! # Guarantees
//! [`record_json`] is the dataplane's rendering (field order of SPEC.md, kebab-case names, `null` for what a
//! NODATA or SKIPDATA record does not carry, IPv6 in RFC 5952 form, `region` only when non-empty). It never
//! fails: a record that cannot be converted renders as an object naming the reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flowlog_proto::v1::{Action, Direction, LogStatus, Record};

/// One record as a single-line JSON object (no trailing newline), written by the dataplane's renderer, the one
/// every part of the product uses. The collector refuses records that do not convert at ingest; a record that
/// still does not (an old file) renders as `{"invalid-record":"<why>"}` instead of failing the query.
pub fn record_json(r: &Record) -> String {
    let region = (!r.region.is_empty()).then_some(r.region.as_str());
    match flowlog_proto::convert::from_proto(r) {
        Ok(record) => record.to_json(region),
        Err(e) => serde_json::json!({ "invalid-record": e.to_string() }).to_string(),
    }
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
            log_status: 1,
            action: 2,
            ..Record::default()
        };
        let json = record_json(&r);
        assert!(
            json.ends_with(r#""log-status":"OK","action":"REJECT","tcp-flags":0,"type":"IPv6"}"#),
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
    fn strings_are_escaped_and_unconvertible_records_say_why() {
        let r = Record {
            eni_id: "quote\" back\\ nl\n ctl\u{1}".into(),
            log_status: 3,
            ..Record::default()
        };
        let v: serde_json::Value = serde_json::from_str(&record_json(&r)).unwrap();
        assert_eq!(v["eni-id"], "quote\" back\\ nl\n ctl\u{1}");
        assert!(v["srcaddr"].is_null() && v["type"].is_null());
        assert!(v["direction"].is_null() && v["action"].is_null());
        assert_eq!(v["log-status"], "SKIPDATA");

        let bad = Record {
            srcaddr: vec![1, 2, 3],
            log_status: 1,
            ..Record::default()
        };
        let v: serde_json::Value = serde_json::from_str(&record_json(&bad)).unwrap();
        assert!(
            v["invalid-record"].as_str().unwrap().contains("3 bytes"),
            "{v}"
        );
    }
}
