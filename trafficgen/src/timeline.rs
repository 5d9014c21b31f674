//! When each frame of the capture is sent: `packets` timestamps spread over the duration, with one quiet gap.
//!
//! Frame `i` is due at `start + floor(i * active / packets) + jitter(i)` microseconds, where `active` is the
//! duration less the gap and `jitter(i)`, a hash of the seed and `i`, is below the spacing; a frame due at or after
//! the gap's start is shifted past the gap.
//!
//! # Guarantees
//! Timestamps never decrease; the first frame is at the start epoch exactly; every frame lies within the duration.
//! When the capture spans a whole window plus margins on both sides, the gap covers one whole capture window in the
//! middle of the capture and a margin of an eighth of an interval on each side, so that window holds no frame at all
//! (NODATA for every ENI) and the gap is longer than an interval.

use crate::rng::mix64;

/// Microseconds per second.
pub const MICROS: u64 = 1_000_000;

/// The frame schedule.
#[derive(Debug, Clone)]
pub struct Timeline {
    start_us: u64,
    active_us: u64,
    packets: u64,
    spacing_us: u64,
    seed: u64,
    gap: Option<Gap>,
}

/// A stretch of time with no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Offset of the gap's start from the capture's start, microseconds.
    pub offset_us: u64,
    /// Length, microseconds.
    pub len_us: u64,
    /// Start (Unix seconds) of the capture window the gap empties.
    pub quiet_window: u64,
}

impl Timeline {
    /// The schedule of `packets` frames from `start_secs` over `duration_secs`, with windows of `interval_secs`.
    /// All arguments are positive and validated by the config; `start + duration` fits the pcap format.
    pub fn new(
        seed: u64,
        packets: u64,
        start_secs: u64,
        duration_secs: u64,
        interval_secs: u64,
    ) -> Self {
        let start_us = start_secs * MICROS;
        let duration_us = duration_secs * MICROS;
        let interval_us = interval_secs * MICROS;
        let margin_us = interval_us / 8;
        // The middle window among those that lie, with their margins, strictly inside the capture.
        let first_candidate = (start_us + margin_us) / interval_us + 1;
        let end_us = start_us + duration_us;
        let last_candidate = (end_us.saturating_sub(margin_us + 1) / interval_us).checked_sub(1);
        let gap = match last_candidate {
            Some(last) if last >= first_candidate && packets >= 2 => {
                let window = first_candidate + (last - first_candidate) / 2;
                let window_us = window * interval_us;
                Some(Gap {
                    offset_us: window_us - margin_us - start_us,
                    len_us: interval_us + 2 * margin_us,
                    quiet_window: window * interval_secs,
                })
            }
            _ => None,
        };
        let active_us = duration_us - gap.map_or(0, |g| g.len_us);
        Self {
            start_us,
            active_us,
            packets,
            spacing_us: active_us / packets.max(1),
            seed,
            gap,
        }
    }

    /// The quiet gap, if the capture is long enough to hold one.
    #[cfg(test)]
    pub fn gap(&self) -> Option<Gap> {
        self.gap
    }

    /// Timestamp of frame `i`, microseconds since the Unix epoch.
    pub fn at(&self, i: u64) -> u64 {
        let base = u128::from(i) * u128::from(self.active_us) / u128::from(self.packets.max(1));
        // i < packets, so base < active_us, which fits in u64.
        let mut offset = base as u64;
        if i > 0 && self.spacing_us > 1 {
            offset += mix64(self.seed ^ mix64(i ^ 0x7133_114E)) % self.spacing_us;
        }
        if let Some(gap) = self.gap
            && offset >= gap.offset_us
        {
            offset += gap.len_us;
        }
        self.start_us + offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_ordered_and_skip_a_whole_window() {
        let t = Timeline::new(3, 10_000, 1_700_000_000, 600, 60);
        let gap = t.gap().expect("600 s at 60 s windows hold a gap");
        assert_eq!(gap.quiet_window % 60, 0);
        assert_eq!(t.at(0), 1_700_000_000 * MICROS);
        let mut prev = 0;
        for i in 0..10_000 {
            let now = t.at(i);
            assert!(now >= prev);
            assert!(now < (1_700_000_000 + 600) * MICROS);
            let secs = now / MICROS;
            assert!(!(gap.quiet_window..gap.quiet_window + 60).contains(&secs));
            prev = now;
        }
    }

    #[test]
    fn short_captures_have_no_gap() {
        assert!(Timeline::new(3, 100, 1_700_000_000, 60, 60).gap().is_none());
        assert!(
            Timeline::new(3, 100, 1_700_000_000, 300, 600)
                .gap()
                .is_none()
        );
        let dense = Timeline::new(3, 5_000_000, 1_700_000_000, 1, 1);
        assert!(dense.gap().is_none());
        assert!(dense.at(4_999_999) >= dense.at(4_999_998));
    }
}
