//! The ENIs of a generated capture and the ENI file (`enis.toml`) that tells the replay which to capture.
//!
//! # Layout
//! ENI `n` is `eni-NNNNN` with MAC `02:00:00:e1:HH:LL` (`HHLL` = n), VM `i-NNNNN`. The first half (rounded up) is
//! in `vpc-0` / account `100000000000`, the rest in `vpc-1` / account `100000000001`; four consecutive ENIs of a VPC
//! share a vSwitch (`vsw-NN`, numbered across VPCs). ENI `n` with index `l` inside its VPC `v` owns the IPv4
//! addresses `10.v.l.10`..`10.v.l.13` and the IPv6 addresses `fd00:v:0:l::10`..`fd00:v:0:l::13`.
//!
//! # Guarantees
//! The last [`QUIET_ENIS`] ENIs never see traffic (NODATA in every window). Every other ENI with `n % 3 == 1` is
//! *intermittent*: it is silent in some windows (see [`Enis::is_silent`]); the rest see traffic whenever the capture
//! has any. The file written by [`Enis::write_toml`] has exactly the format of `testdata/sample/sample.enis.toml`.

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::rng::mix64;

/// ENIs at the end of the list that never see any traffic.
pub const QUIET_ENIS: usize = 2;
/// Fewest ENIs a capture can have: two quiet ones and at least one in each VPC that talks.
pub const MIN_ENIS: usize = 6;
/// Most ENIs a capture can have (256 per VPC, so that the per-ENI subnet fits in one octet).
pub const MAX_ENIS: usize = 512;
/// Share (percent) of windows in which an intermittent ENI is silent.
const SILENT_PERCENT: u64 = 40;

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address.
    pub const BROADCAST: Self = Self([0xFF; 6]);
    /// The VPC gateway / virtual router: the next hop of all internet traffic, never an ENI.
    pub const GATEWAY: Self = Self([0x02, 0xFF, 0xFF, 0x00, 0x00, 0x01]);
    /// The nearest-bridge LLDP multicast address.
    pub const LLDP: Self = Self([0x01, 0x80, 0xC2, 0x00, 0x00, 0x0E]);

    /// A locally administered address `02:00:00:PP:HH:LL` of the family `prefix` (`HHLL` = `index`).
    pub fn local(prefix: u8, index: u16) -> Self {
        let [hi, lo] = index.to_be_bytes();
        Self([0x02, 0x00, 0x00, prefix, hi, lo])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// MAC prefix (fourth octet) of ENIs.
pub(crate) const ENI_MAC_PREFIX: u8 = 0xE1;
/// MAC prefix of local VMs on the same host that are not captured (no ENI in the file).
pub(crate) const NEIGHBOUR_MAC_PREFIX: u8 = 0xE2;
/// MAC prefix of VMs on other hosts, reached through VXLAN.
pub(crate) const REMOTE_VM_MAC_PREFIX: u8 = 0xE3;
/// MAC prefix of hosts whose frames cross the port but belong to no ENI (unattributed).
pub(crate) const FOREIGN_MAC_PREFIX: u8 = 0xE4;
/// MAC prefix of underlay (VTEP) interfaces.
pub(crate) const UNDERLAY_MAC_PREFIX: u8 = 0xFE;

/// One ENI.
#[derive(Debug, Clone)]
pub struct Eni {
    /// `eni-NNNNN`.
    pub id: String,
    /// Its MAC.
    pub mac: MacAddr,
    /// `i-NNNNN`.
    pub vm_id: String,
    /// `vsw-NN`.
    pub vswitch_id: String,
    /// `vpc-0` or `vpc-1`.
    pub vpc_id: String,
    /// `100000000000` or `100000000001`.
    pub account_id: String,
    /// 0 or 1.
    pub vpc: u8,
    /// Index of the ENI inside its VPC.
    pub index_in_vpc: u8,
    /// False for the quiet ENIs.
    pub sees_traffic: bool,
    /// True for ENIs silent in some windows.
    pub intermittent: bool,
}

impl Eni {
    /// Its `which`-th IPv4 address (`which` in 0..4).
    pub fn ipv4(&self, which: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.vpc, self.index_in_vpc, 10 + which % 4)
    }

    /// Its `which`-th IPv6 address (`which` in 0..4).
    pub fn ipv6(&self, which: u8) -> Ipv6Addr {
        Ipv6Addr::new(
            0xFD00,
            u16::from(self.vpc),
            0,
            u16::from(self.index_in_vpc),
            0,
            0,
            0,
            0x10 + u16::from(which % 4),
        )
    }

    /// Its `which`-th address of the family.
    pub fn ip(&self, v6: bool, which: u8) -> IpAddr {
        if v6 {
            IpAddr::V6(self.ipv6(which))
        } else {
            IpAddr::V4(self.ipv4(which))
        }
    }
}

/// All ENIs of a capture.
#[derive(Debug, Clone)]
pub struct Enis {
    list: Vec<Eni>,
    seed: u64,
}

impl Enis {
    /// `count` ENIs laid out as the module doc says (`count` in [`MIN_ENIS`]..=[`MAX_ENIS`], checked by the
    /// config). `seed` decides the silent windows.
    pub fn new(count: usize, seed: u64) -> Self {
        let in_vpc0 = count.div_ceil(2);
        let vswitches_vpc0 = in_vpc0.div_ceil(4);
        let mut list = Vec::with_capacity(count);
        for n in 0..count {
            let (vpc, index) = if n < in_vpc0 {
                (0u8, n)
            } else {
                (1u8, n - in_vpc0)
            };
            let vswitch = if vpc == 0 {
                index / 4
            } else {
                vswitches_vpc0 + index / 4
            };
            // count <= MAX_ENIS, so n fits in u16 and index (< 256) in u8.
            let n16 = n as u16;
            list.push(Eni {
                id: format!("eni-{n:05}"),
                mac: MacAddr::local(ENI_MAC_PREFIX, n16),
                vm_id: format!("i-{n:05}"),
                vswitch_id: format!("vsw-{vswitch:02}"),
                vpc_id: format!("vpc-{vpc}"),
                account_id: format!("10000000000{vpc}"),
                vpc,
                index_in_vpc: index as u8,
                sees_traffic: n + QUIET_ENIS < count,
                intermittent: n % 3 == 1,
            });
        }
        Self { list, seed }
    }

    /// The ENIs, in file order (which is also `eni-id` order).
    pub fn list(&self) -> &[Eni] {
        &self.list
    }

    /// ENI number `n`.
    pub fn get(&self, n: u16) -> &Eni {
        // Callers only hold indices taken from this list.
        &self.list[usize::from(n)]
    }

    /// Whether ENI `n` must see no packets in the window starting at `window_start`: always for quiet ENIs, in about
    /// 40 % of the windows (decided by a hash of seed, ENI and window) for intermittent ones, never for the others.
    pub fn is_silent(&self, n: u16, window_start: u64) -> bool {
        let eni = self.get(n);
        if !eni.sees_traffic {
            return true;
        }
        if !eni.intermittent {
            return false;
        }
        let h = mix64(self.seed ^ mix64(u64::from(n) << 40 ^ window_start ^ 0x005E_ED0F_5117));
        h % 100 < SILENT_PERCENT
    }

    /// Writes the ENI file.
    pub fn write_toml(&self, out: &mut impl Write) -> io::Result<()> {
        for (i, eni) in self.list.iter().enumerate() {
            if i > 0 {
                writeln!(out)?;
            }
            writeln!(out, "[[eni]]")?;
            writeln!(out, "id = \"{}\"", eni.id)?;
            writeln!(out, "mac = \"{}\"", eni.mac)?;
            writeln!(out, "vm-id = \"{}\"", eni.vm_id)?;
            writeln!(out, "vswitch-id = \"{}\"", eni.vswitch_id)?;
            writeln!(out, "vpc-id = \"{}\"", eni.vpc_id)?;
            writeln!(out, "account-id = \"{}\"", eni.account_id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_sample_conventions() {
        let enis = Enis::new(14, 1);
        let e = enis.get(10);
        assert_eq!(e.id, "eni-00010");
        assert_eq!(e.mac.to_string(), "02:00:00:e1:00:0a");
        assert_eq!(e.vpc_id, "vpc-1");
        assert_eq!(e.account_id, "100000000001");
        assert_eq!(e.ipv4(1).to_string(), "10.1.3.11");
        assert_eq!(enis.get(2).ipv6(1).to_string(), "fd00:0:0:2::11");
        assert!(!enis.get(12).sees_traffic && !enis.get(13).sees_traffic);
        assert!(enis.get(11).sees_traffic);
        assert!((0..1000).all(|w| !enis.is_silent(0, w * 60)));
        assert!((0..1000).all(|w| enis.is_silent(13, w * 60)));
        let silent = (0..1000).filter(|&w| enis.is_silent(1, w * 60)).count();
        assert!((300..500).contains(&silent), "{silent}");
    }

    #[test]
    fn toml_matches_the_sample_file_format() {
        let enis = Enis::new(14, 1);
        let mut out = Vec::new();
        enis.write_toml(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let sample = include_str!("../../testdata/sample/sample.enis.toml");
        assert_eq!(
            text.lines().take(7).collect::<Vec<_>>(),
            sample.lines().take(7).collect::<Vec<_>>()
        );
        assert!(text.starts_with("[[eni]]\nid = \"eni-00000\"\nmac = \"02:00:00:e1:00:00\"\n"));
        assert!(text.ends_with("account-id = \"100000000001\"\n"));
    }
}
