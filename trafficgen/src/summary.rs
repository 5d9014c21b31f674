//! `summary.json`: what the generator wrote, counted, so tests can check the dataplane's counters too.
//!
//! # Guarantees
//! `frames = flow_frames + malformed_frames + non_ip_frames + unattributed_frames`; `malformed` lists every reason
//! (zero included) and sums to `malformed_frames`; `record_packets` is `flow_frames + eni_to_eni_frames` (a frame
//! between two ENIs counts for both) and `record_bytes` is the matching sum of IP lengths.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Counts of one generated capture. Serialised with these field names (snake_case) into `summary.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The seed used.
    pub seed: u64,
    /// The capture window of `expected.jsonl`, seconds.
    pub interval_secs: u64,
    /// ENIs in `enis.toml`.
    pub enis: usize,
    /// ENIs that never see traffic (NODATA in every window).
    pub enis_without_traffic: Vec<String>,
    /// Frames in `capture.pcap`.
    pub frames: u64,
    /// Timestamp of the first frame, microseconds since the Unix epoch.
    pub first_frame_micros: u64,
    /// Timestamp of the last frame, microseconds since the Unix epoch.
    pub last_frame_micros: u64,
    /// Well-formed IP frames attributed to at least one ENI (each yields one record packet per ENI).
    pub flow_frames: u64,
    /// Of those, frames between two ENIs (counted for both).
    pub eni_to_eni_frames: u64,
    /// Of those, VXLAN frames (the inner frame is attributed).
    pub vxlan_frames: u64,
    /// Of those, IPv4 fragments of datagrams whose first fragment was sent (first fragments included).
    pub fragment_frames: u64,
    /// Datagrams sent as fragments.
    pub fragmented_datagrams: u64,
    /// Of the flow frames, non-first IPv4 fragments whose first fragment was never sent (recorded with ports 0).
    pub orphan_fragments: u64,
    /// Of the flow frames, frames with one 802.1Q tag (outer tags for VXLAN).
    pub dot1q_frames: u64,
    /// Of the flow frames, frames with QinQ tags.
    pub qinq_frames: u64,
    /// Of the flow frames, IPv6 ones (inner for VXLAN).
    pub ipv6_frames: u64,
    /// Of the flow frames, IPv6 ones with extension headers.
    pub ipv6_extension_header_frames: u64,
    /// Of the flow frames, IPv4 ones with options.
    pub ipv4_option_frames: u64,
    /// Of the flow frames, UDP datagrams to port 4789 that are not VXLAN.
    pub udp_4789_not_vxlan_frames: u64,
    /// Flow frames by innermost protocol: `tcp`, `udp`, `icmp`, `icmpv6`, `gre`, `sctp`.
    pub frames_by_protocol: BTreeMap<String, u64>,
    /// Malformed frames (never a record).
    pub malformed_frames: u64,
    /// Malformed frames by reason (every reason listed).
    pub malformed: BTreeMap<String, u64>,
    /// Non-IP frames: ARP and LLDP (never a record).
    pub non_ip_frames: u64,
    /// Well-formed IP frames whose MACs (inner MACs for VXLAN) match no ENI (never a record).
    pub unattributed_frames: u64,
    /// Flows started.
    pub flows: u64,
    /// Records in `expected.jsonl` by log-status.
    pub records: RecordCounts,
    /// Sum of `packets` over the OK records.
    pub record_packets: u64,
    /// Sum of `bytes` over the OK records.
    pub record_bytes: u64,
    /// Windows in `expected.jsonl`.
    pub windows: u64,
    /// Start of the first window (Unix seconds).
    pub first_window_start: u64,
    /// Start of the last window (Unix seconds).
    pub last_window_start: u64,
    /// Starts of the windows that hold no frame at all (every ENI NODATA).
    pub quiet_windows: Vec<u64>,
}

/// Records by log-status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RecordCounts {
    /// `OK` records.
    pub ok: u64,
    /// `NODATA` records.
    pub nodata: u64,
    /// `SKIPDATA` records (always 0: a replay of a capture skips nothing).
    pub skipdata: u64,
}
