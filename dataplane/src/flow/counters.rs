//! The meter's counters, defined by one table (name + description).
//!
//! # Guarantees
//! [`MeterCounters::TABLE`] lists every field of [`MeterCounters`] in declaration order with its description;
//! [`MeterCounters::iter`] yields the values in the same order. Invariants: `frames = non_ip + malformed +
//! ip_packets`; `attributed` (`attributed_bytes`) = the packets (bytes) of all OK and SKIPDATA records. Every [`MalformedReason`] has a counter named
//! `malformed_<reason name>`. Counters are plain `u64` owned by one worker: read them off the hot path and sum
//! workers with [`MeterCounters::add`].

use crate::wire::MalformedReason;

macro_rules! counters {
    ($($name:ident: $description:literal,)*) => {
        /// Counters of one [`crate::flow::Meter`]; see [`MeterCounters::TABLE`] for what each counts.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct MeterCounters {
            $(#[doc = $description] pub $name: u64,)*
        }

        impl MeterCounters {
            /// (name, description) of every counter, in field order.
            pub const TABLE: &'static [(&'static str, &'static str)] = &[$((stringify!($name), $description),)*];

            /// (name, value) of every counter, in [`MeterCounters::TABLE`] order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$((stringify!($name), self.$name),)*].into_iter()
            }

            /// Adds `other` counter by counter (aggregating workers).
            pub fn add(&mut self, other: &MeterCounters) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

counters! {
    frames: "frames handed to the meter",
    frame_bytes: "wire length of the frames handed to the meter",
    non_ip: "frames that are not IPv4/IPv6 (ARP, LLDP, ...): no record",
    malformed: "malformed frames, all reasons: no record",
    malformed_truncated_ethernet: "malformed: frame shorter than an Ethernet header",
    malformed_truncated_vlan_tag: "malformed: frame ends inside a VLAN tag",
    malformed_too_many_vlan_tags: "malformed: more VLAN tags than the parser follows",
    malformed_ip_version_mismatch: "malformed: IP version does not match the EtherType",
    malformed_truncated_ipv4_header: "malformed: frame or capture ends inside the IPv4 header",
    malformed_ipv4_ihl_below_5: "malformed: IPv4 IHL below 5",
    malformed_truncated_ipv6_header: "malformed: frame or capture ends inside the IPv6 header",
    malformed_truncated_ipv6_extension: "malformed: IPv6 extension header cut short",
    malformed_ipv6_extension_chain_too_long: "malformed: more IPv6 extension headers than the parser follows",
    malformed_ip_length_below_header: "malformed: IP packet length smaller than its header",
    malformed_ip_length_beyond_wire: "malformed: IP packet length larger than the frame on the wire",
    malformed_truncated_tcp: "malformed: TCP header too short for ports and flags",
    malformed_truncated_udp: "malformed: UDP header too short for the ports",
    malformed_truncated_sctp: "malformed: SCTP header too short for the ports",
    malformed_truncated_vxlan: "malformed: VXLAN header cut short",
    ip_packets: "well-formed IP packets (inner packet for VXLAN)",
    vxlan_decapsulated: "IP packets taken from inside VXLAN",
    unattributed: "IP packets whose MACs match no captured ENI: no record",
    attributed: "ENI attributions (a packet between two local ENIs counts twice): counted as OK or SKIPDATA",
    attributed_bytes: "IP bytes of the ENI attributions",
    fragments_first: "first fragments (ports remembered for the datagram)",
    fragments_non_first: "non-first fragments",
    fragments_unmatched: "non-first fragments whose first fragment was not seen: recorded with ports 0",
    fragment_evictions: "fragment table entries overwritten while live by another datagram",
    late: "packets older than the open window, counted into the open window",
    table_full_packets: "attributions not recorded because the flow table was full: SKIPDATA",
    table_full_bytes: "IP bytes of table_full_packets: SKIPDATA",
    saturated_packets: "attributions not recorded because their flow's packet or byte count would overflow: SKIPDATA",
    saturated_bytes: "IP bytes of saturated_packets: SKIPDATA",
    table_occupancy: "flows in the open window's table (a gauge, updated per frame or burst)",
    seals_swapped: "windows sealed by swapping in a spare flow table (O(ENIs) pause)",
    seals_copied: "windows sealed by copying the flows out because no spare table was free (O(flows) pause)",
    seals_without_table: "windows turned into SKIPDATA summaries because no spare table was free",
    seal_rehearsals: "one-flow seals cut in a private meter to keep the seal's code in cache (every 256 bursts)",
    no_table_packets: "recorded packets turned into SKIPDATA by seals_without_table",
    no_table_bytes: "IP bytes of no_table_packets",
    tables_recycled: "sealed flow tables given back to the meter's spare pool",
    cycles: "cycles the caller reported spending on metered frames (Meter::record_cycles)",
    cycle_frames: "frames those cycles were spent on: cycles / cycle_frames = cycles per packet",
    windows_sealed: "windows delivered to the seal sink (summaries included)",
    windows_refused: "windows the seal sink refused: kept as SKIPDATA summaries and delivered later",
    refused_packets: "recorded packets turned into SKIPDATA because the seal sink refused their window",
    refused_bytes: "IP bytes of refused_packets",
    gap_windows_skipped: "empty windows not sealed because a time jump exceeded max_gap_windows",
    pending_dropped_windows: "refused-window summaries dropped because max_pending_windows was exceeded",
    pending_dropped_packets: "packets lost with pending_dropped_windows (never in any record)",
    pending_dropped_bytes: "IP bytes lost with pending_dropped_windows",
}

impl MeterCounters {
    /// Counts one malformed frame of `reason` (and the total).
    #[inline]
    pub fn count_malformed(&mut self, reason: MalformedReason) {
        self.malformed += 1;
        let counter = match reason {
            MalformedReason::TruncatedEthernet => &mut self.malformed_truncated_ethernet,
            MalformedReason::TruncatedVlanTag => &mut self.malformed_truncated_vlan_tag,
            MalformedReason::TooManyVlanTags => &mut self.malformed_too_many_vlan_tags,
            MalformedReason::IpVersionMismatch => &mut self.malformed_ip_version_mismatch,
            MalformedReason::TruncatedIpv4Header => &mut self.malformed_truncated_ipv4_header,
            MalformedReason::Ipv4HeaderLength => &mut self.malformed_ipv4_ihl_below_5,
            MalformedReason::TruncatedIpv6Header => &mut self.malformed_truncated_ipv6_header,
            MalformedReason::TruncatedIpv6Extension => &mut self.malformed_truncated_ipv6_extension,
            MalformedReason::Ipv6ExtensionChain => {
                &mut self.malformed_ipv6_extension_chain_too_long
            }
            MalformedReason::IpLengthBelowHeader => &mut self.malformed_ip_length_below_header,
            MalformedReason::IpLengthBeyondWire => &mut self.malformed_ip_length_beyond_wire,
            MalformedReason::TruncatedTcp => &mut self.malformed_truncated_tcp,
            MalformedReason::TruncatedUdp => &mut self.malformed_truncated_udp,
            MalformedReason::TruncatedSctp => &mut self.malformed_truncated_sctp,
            MalformedReason::TruncatedVxlan => &mut self.malformed_truncated_vxlan,
        };
        *counter += 1;
    }

    /// The value of the counter `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_counter() {
        for &reason in MalformedReason::ALL {
            let name = format!("malformed_{}", reason.name());
            let mut c = MeterCounters::default();
            c.count_malformed(reason);
            assert_eq!(c.get(&name), Some(1), "{name}");
            assert_eq!(c.malformed, 1);
            assert_eq!(c.iter().map(|(_, v)| v).sum::<u64>(), 2, "{name}");
        }
    }

    #[test]
    fn table_matches_iter_and_add() {
        let names: Vec<_> = MeterCounters::default().iter().map(|(n, _)| n).collect();
        let table: Vec<_> = MeterCounters::TABLE.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, table);
        let mut a = MeterCounters {
            frames: 2,
            late: 1,
            ..Default::default()
        };
        a.add(&a.clone());
        assert_eq!((a.frames, a.late), (4, 2));
    }
}
