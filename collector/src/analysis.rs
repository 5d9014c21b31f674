//! The built-in analyses — top talkers, traffic over time, rejected traffic, traffic per ENI — as SQL over
//! `flows`, shared by the CLI and the web view so both show the same numbers.
//!
//! # Guarantees
//! Filter values typed by users become SQL literals only through [`quote`] (text) or as integers, so no filter
//! value can change the statement's structure.

use std::fmt::Write as _;

/// Record filters common to every analysis (the time range is applied by the engine, outside the SQL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Only records of this ENI.
    pub eni_id: Option<String>,
    /// Only records with this address as source or destination.
    pub address: Option<String>,
    /// Only records with this port as source or destination port.
    pub port: Option<u16>,
    /// Only records with this action: `ACCEPT` or `REJECT`.
    pub action: Option<ActionFilter>,
}

/// An action to filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionFilter {
    /// Allowed traffic.
    Accept,
    /// Denied traffic.
    Reject,
}

/// What to rank talkers and flows by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Measure {
    /// Sum of IP bytes.
    #[default]
    Bytes,
    /// Packet count.
    Packets,
}

/// A built-in analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analysis {
    /// Source addresses sending the most: bytes, packets, records.
    Talkers {
        /// Rank by.
        by: Measure,
        /// Rows.
        limit: u64,
    },
    /// Bytes, packets, records and rejected packets per time step (window starts rounded down to `step_seconds`).
    Traffic {
        /// Width of a step, seconds (at least 1).
        step_seconds: u64,
    },
    /// Rejected traffic per (source, destination, destination port, protocol), most packets first.
    Rejected {
        /// Rows.
        limit: u64,
    },
    /// Traffic in and out of each ENI, largest first.
    EniTraffic {
        /// Rows.
        limit: u64,
    },
}

impl Analysis {
    /// The analysis as one SELECT over `flows`, with `filters` applied.
    pub fn sql(&self, filters: &Filters) -> String {
        let mut conditions = vec!["log_status = 'OK'".to_owned()];
        if let Some(eni) = &filters.eni_id {
            conditions.push(format!("eni_id = {}", quote(eni)));
        }
        if let Some(address) = &filters.address {
            let quoted = quote(address);
            conditions.push(format!("(srcaddr = {quoted} OR dstaddr = {quoted})"));
        }
        if let Some(port) = filters.port {
            conditions.push(format!("(srcport = {port} OR dstport = {port})"));
        }
        match filters.action {
            Some(ActionFilter::Accept) => conditions.push("action = 'ACCEPT'".into()),
            Some(ActionFilter::Reject) => conditions.push("action = 'REJECT'".into()),
            None => {}
        }
        if matches!(self, Analysis::Rejected { .. }) && filters.action.is_none() {
            conditions.push("action = 'REJECT'".into());
        }
        let filter = conditions.join(" AND ");
        let mut sql = String::new();
        // Writing to a String cannot fail.
        let _ = match *self {
            Analysis::Talkers { by, limit } => {
                let order = match by {
                    Measure::Bytes => "bytes DESC, packets DESC",
                    Measure::Packets => "packets DESC, bytes DESC",
                };
                write!(
                    sql,
                    "SELECT srcaddr, SUM(bytes) AS bytes, SUM(packets) AS packets, COUNT(*) AS records \
                     FROM flows WHERE {filter} GROUP BY srcaddr ORDER BY {order}, srcaddr LIMIT {limit}"
                )
            }
            Analysis::Traffic { step_seconds } => {
                let step = step_seconds.max(1);
                write!(
                    sql,
                    "SELECT start - start % {step} AS time, SUM(bytes) AS bytes, SUM(packets) AS packets, \
                     SUM(CASE WHEN action = 'REJECT' THEN packets ELSE 0 END) AS rejected_packets, \
                     COUNT(*) AS records \
                     FROM flows WHERE {filter} GROUP BY start - start % {step} ORDER BY time"
                )
            }
            Analysis::Rejected { limit } => write!(
                sql,
                "SELECT srcaddr, dstaddr, dstport, protocol, SUM(packets) AS packets, SUM(bytes) AS bytes, \
                 COUNT(*) AS records, MIN(start) AS first_seen, MAX(\"end\") AS last_seen \
                 FROM flows WHERE {filter} GROUP BY srcaddr, dstaddr, dstport, protocol \
                 ORDER BY packets DESC, bytes DESC, srcaddr, dstaddr, dstport, protocol LIMIT {limit}"
            ),
            Analysis::EniTraffic { limit } => write!(
                sql,
                "SELECT eni_id, \
                 SUM(CASE WHEN direction = 'in' THEN bytes ELSE 0 END) AS bytes_in, \
                 SUM(CASE WHEN direction = 'out' THEN bytes ELSE 0 END) AS bytes_out, \
                 SUM(packets) AS packets, \
                 SUM(CASE WHEN action = 'REJECT' THEN packets ELSE 0 END) AS rejected_packets, \
                 COUNT(*) AS records \
                 FROM flows WHERE {filter} GROUP BY eni_id ORDER BY bytes_in + bytes_out DESC, eni_id LIMIT {limit}"
            ),
        };
        sql
    }
}

/// A SQL string literal holding `text` exactly (single quotes doubled).
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_conditions_and_quotes_are_escaped() {
        let filters = Filters {
            eni_id: Some("eni-1' OR '1'='1".into()),
            address: Some("10.0.0.1".into()),
            port: Some(443),
            action: Some(ActionFilter::Accept),
        };
        let sql = Analysis::Talkers {
            by: Measure::Packets,
            limit: 5,
        }
        .sql(&filters);
        assert!(
            sql.contains("eni_id = 'eni-1'' OR ''1''=''1'"),
            "quotes doubled: {sql}"
        );
        assert!(sql.contains("(srcaddr = '10.0.0.1' OR dstaddr = '10.0.0.1')"));
        assert!(sql.contains("(srcport = 443 OR dstport = 443)"));
        assert!(sql.contains("action = 'ACCEPT'"));
        assert!(sql.contains("ORDER BY packets DESC") && sql.ends_with("LIMIT 5"));
        let rejected = Analysis::Rejected { limit: 3 }.sql(&Filters::default());
        assert!(rejected.contains("action = 'REJECT'"), "{rejected}");
        let traffic = Analysis::Traffic { step_seconds: 0 }.sql(&Filters::default());
        assert!(traffic.contains("start % 1"), "{traffic}");
    }
}
