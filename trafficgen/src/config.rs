//! What to generate: [`GenConfig`] (plain fields, what the CLI and other crates' tests fill in) and its checked form.
//!
//! # Guarantees
//! [`GenConfig::validate`] is the only way to a [`ValidConfig`]; once it succeeds, no later step of the generator
//! can fail on a value of the configuration (only on I/O).

use crate::eni::{MAX_ENIS, MIN_ENIS};

/// Default start of the capture: 2023-11-14T22:13:20Z, the sample capture's epoch.
pub const DEFAULT_START_EPOCH: u64 = 1_700_000_000;

/// Generator configuration. Every field documents its unit and default ([`GenConfig::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenConfig {
    /// Seed of every random decision: the same seed and configuration give the same bytes. Default 1.
    pub seed: u64,
    /// Frames to write (all kinds: flows, malformed, non-IP, unattributed), at least 1. Default 100,000.
    pub packets: u64,
    /// Capture window the expected records are computed for, seconds, at least 1. Default 60.
    pub interval_secs: u64,
    /// ENIs in `enis.toml`, 6 to 512; the last two never see traffic. Default 16.
    pub enis: usize,
    /// Unix seconds of the first frame. Default 1,700,000,000.
    pub start_epoch: u64,
    /// Seconds the capture spans (all frames lie in `[start, start + duration)`), at least 1. Default 600.
    pub duration_secs: u64,
    /// Malformed frames per million frames, cycling through every reason of SPEC.md; at most 100,000. Default 200.
    pub malformed_per_million: u32,
    /// Non-IP frames (ARP, LLDP) per million frames; at most 100,000. Default 1,000.
    pub non_ip_per_million: u32,
    /// IP frames between MACs that are no ENI (unattributed) per million frames; at most 100,000. Default 3,000.
    pub unattributed_per_million: u32,
    /// IPv4 fragments whose first fragment is never sent, per million frames; at most 100,000. Default 300.
    pub orphan_fragments_per_million: u32,
    /// Flows in progress at once (each gets about one frame in this many), 1 to 1,000,000. Default 256.
    pub concurrent_flows: u32,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            packets: 100_000,
            interval_secs: 60,
            enis: 16,
            start_epoch: DEFAULT_START_EPOCH,
            duration_secs: 600,
            malformed_per_million: 200,
            non_ip_per_million: 1_000,
            unattributed_per_million: 3_000,
            orphan_fragments_per_million: 300,
            concurrent_flows: 256,
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `packets` is 0.
    #[error("packets must be at least 1")]
    NoPackets,
    /// `interval_secs` is 0.
    #[error("interval must be at least 1 second")]
    ZeroInterval,
    /// `duration_secs` is 0.
    #[error("duration must be at least 1 second")]
    ZeroDuration,
    /// `enis` outside 6..=512.
    #[error("enis must be between {MIN_ENIS} and {MAX_ENIS}, got {0}")]
    EniCount(usize),
    /// The capture would end after what classic pcap timestamps can hold (2106).
    #[error("start epoch {start} + duration {duration} s is past the pcap format's 32-bit seconds")]
    TimeOutOfRange {
        /// `start_epoch`.
        start: u64,
        /// `duration_secs`.
        duration: u64,
    },
    /// A per-million rate above 100,000 (10 %).
    #[error("{name} must be at most 100000 per million, got {value}")]
    RateTooHigh {
        /// Name of the field.
        name: &'static str,
        /// The value given.
        value: u32,
    },
    /// `concurrent_flows` outside 1..=1,000,000.
    #[error("concurrent flows must be between 1 and 1000000, got {0}")]
    ConcurrentFlows(u32),
}

/// A configuration that passed [`GenConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConfig(GenConfig);

impl GenConfig {
    /// The defaults with this seed, frame count and interval.
    pub fn new(seed: u64, packets: u64, interval_secs: u64) -> Self {
        Self {
            seed,
            packets,
            interval_secs,
            ..Self::default()
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<ValidConfig, ConfigError> {
        if self.packets == 0 {
            return Err(ConfigError::NoPackets);
        }
        if self.interval_secs == 0 {
            return Err(ConfigError::ZeroInterval);
        }
        if self.duration_secs == 0 {
            return Err(ConfigError::ZeroDuration);
        }
        if !(MIN_ENIS..=MAX_ENIS).contains(&self.enis) {
            return Err(ConfigError::EniCount(self.enis));
        }
        let end = self.start_epoch.checked_add(self.duration_secs);
        if end.is_none_or(|end| end > u64::from(u32::MAX)) {
            return Err(ConfigError::TimeOutOfRange {
                start: self.start_epoch,
                duration: self.duration_secs,
            });
        }
        for (name, value) in [
            ("malformed-per-million", self.malformed_per_million),
            ("non-ip-per-million", self.non_ip_per_million),
            ("unattributed-per-million", self.unattributed_per_million),
            (
                "orphan-fragments-per-million",
                self.orphan_fragments_per_million,
            ),
        ] {
            if value > 100_000 {
                return Err(ConfigError::RateTooHigh { name, value });
            }
        }
        if !(1..=1_000_000).contains(&self.concurrent_flows) {
            return Err(ConfigError::ConcurrentFlows(self.concurrent_flows));
        }
        Ok(ValidConfig(self.clone()))
    }
}

impl ValidConfig {
    /// The checked values.
    pub fn get(&self) -> &GenConfig {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(GenConfig::default().validate().is_ok());
        let bad = |f: fn(&mut GenConfig)| {
            let mut c = GenConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(bad(|c| c.packets = 0), ConfigError::NoPackets);
        assert_eq!(bad(|c| c.interval_secs = 0), ConfigError::ZeroInterval);
        assert_eq!(bad(|c| c.duration_secs = 0), ConfigError::ZeroDuration);
        assert_eq!(bad(|c| c.enis = 5), ConfigError::EniCount(5));
        assert_eq!(bad(|c| c.enis = 513), ConfigError::EniCount(513));
        assert!(matches!(
            bad(|c| c.start_epoch = u64::from(u32::MAX)),
            ConfigError::TimeOutOfRange { .. }
        ));
        assert!(matches!(
            bad(|c| c.malformed_per_million = 100_001),
            ConfigError::RateTooHigh {
                name: "malformed-per-million",
                ..
            }
        ));
        assert_eq!(
            bad(|c| c.concurrent_flows = 0),
            ConfigError::ConcurrentFlows(0)
        );
    }
}
