//! Live counters: each worker publishes a copy of its meter's counters, plus its own loop counters, to a board
//! that other threads read while the program runs, without slowing the worker.
//!
//! # Design
//! Cycles per packet come from the meter's own `cycles` / `cycle_frames` counters, which the poll loop feeds with
//! the TSC cycles of each burst.
//!
//! One [`CounterBoard`] per worker, written by that worker only, about once a millisecond (not per packet): a
//! relaxed store per counter into its own cache lines, so readers never contend with the hot path. Readers see
//! each counter's latest published value; counters of one snapshot may come from two adjacent publications (they
//! are monotonic, so a sum over time stays right).

use std::sync::atomic::{AtomicU64, Ordering};

use flowlog_dataplane::flow::MeterCounters;

/// Counters of the worker's poll loop itself (beside the meter's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopCounters {
    /// Non-empty RX bursts processed.
    pub bursts: u64,
    /// Polls that found no packet.
    pub idle_polls: u64,
}

/// The loop counters' names and descriptions, in publication order after the meter's.
pub const LOOP_COUNTERS: [(&str, &str); 2] = [
    ("bursts", "non-empty RX bursts processed"),
    ("idle_polls", "polls of the RX queues that found no packet"),
];

/// One worker's published counters.
#[derive(Debug)]
#[repr(align(64))]
pub struct CounterBoard {
    values: Box<[AtomicU64]>,
}

impl Default for CounterBoard {
    fn default() -> Self {
        Self {
            values: (0..MeterCounters::TABLE.len() + LOOP_COUNTERS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl CounterBoard {
    /// Publishes the worker's current counters (the worker calls this, off the per-packet path).
    pub fn publish(&self, meter: &MeterCounters, looped: &LoopCounters) {
        let values = meter
            .iter()
            .map(|(_, v)| v)
            .chain([looped.bursts, looped.idle_polls]);
        for (slot, value) in self.values.iter().zip(values) {
            slot.store(value, Ordering::Relaxed);
        }
    }

    /// (name, value) of every counter, meter counters first, as last published.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        MeterCounters::TABLE
            .iter()
            .map(|(name, _)| *name)
            .chain(LOOP_COUNTERS.iter().map(|(name, _)| *name))
            .zip(self.values.iter().map(|v| v.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Renders worker snapshots and their sum as one JSON object: `{"workers":[{...},...],"total":{...}}`.
pub fn render_json(workers: &[Vec<(&'static str, u64)>], extra: &[(&str, u64)]) -> String {
    let mut out = String::from("{\"workers\":[");
    let mut total: Vec<(&'static str, u64)> = Vec::new();
    for (index, snapshot) in workers.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_object(&mut out, snapshot.iter().map(|(n, v)| (*n, *v)));
        if total.is_empty() {
            total = snapshot.clone();
        } else {
            for ((_, sum), (_, value)) in total.iter_mut().zip(snapshot) {
                *sum += value;
            }
        }
    }
    out.push_str("],\"total\":");
    push_object(
        &mut out,
        total
            .iter()
            .map(|(n, v)| (*n, *v))
            .chain(extra.iter().copied()),
    );
    out.push('}');
    out
}

fn push_object<'a>(out: &mut String, fields: impl Iterator<Item = (&'a str, u64)>) {
    out.push('{');
    for (index, (name, value)) in fields.enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(name);
        out.push_str("\":");
        out.push_str(&value.to_string());
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_counters_are_read_back_by_name_and_summed() {
        let board = CounterBoard::default();
        let meter = MeterCounters {
            frames: 10,
            malformed: 2,
            ..MeterCounters::default()
        };
        board.publish(
            &meter,
            &LoopCounters {
                bursts: 3,
                idle_polls: 7,
            },
        );
        let snapshot = board.snapshot();
        let get = |name: &str| snapshot.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(
            (
                get("frames"),
                get("malformed"),
                get("bursts"),
                get("idle_polls")
            ),
            (10, 2, 3, 7)
        );
        let json = render_json(&[snapshot.clone(), snapshot], &[("port_imissed", 4)]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["total"]["frames"], 20);
        assert_eq!(v["total"]["port_imissed"], 4);
        assert_eq!(v["workers"][1]["idle_polls"], 7);
    }
}
