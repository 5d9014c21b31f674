//! Test helpers shared by the integration tests: a tiny classic-pcap reader and the ENI TOML file.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flowlog_dataplane::flow::{Eni, EniTable};

/// One captured frame.
pub struct PcapFrame {
    /// Timestamp, whole seconds.
    pub secs: u64,
    /// Captured bytes.
    pub data: Vec<u8>,
    /// Length on the wire.
    pub orig_len: usize,
}

/// Reads a classic pcap file (either byte order, micro- or nanosecond timestamps).
pub fn read_pcap(path: &Path) -> Result<Vec<PcapFrame>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let header = bytes
        .get(..24)
        .context("pcap shorter than its file header")?;
    let magic = [header[0], header[1], header[2], header[3]];
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => bail!("not a classic pcap file (magic {magic:02x?})"),
    };
    let u32_at = |b: &[u8], at: usize| -> u32 {
        let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if little {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    if u32_at(header, 20) != 1 {
        bail!("pcap link type {} is not Ethernet", u32_at(header, 20));
    }
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let record = bytes
            .get(at..at + 16)
            .context("pcap ends inside a record header")?;
        let secs = u64::from(u32_at(record, 0));
        let incl = u32_at(record, 8) as usize;
        let orig_len = u32_at(record, 12) as usize;
        let data = bytes
            .get(at + 16..at + 16 + incl)
            .context("pcap ends inside a frame")?
            .to_vec();
        frames.push(PcapFrame {
            secs,
            data,
            orig_len,
        });
        at += 16 + incl;
    }
    Ok(frames)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EniFile {
    eni: Vec<EniEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct EniEntry {
    id: String,
    mac: String,
    vm_id: String,
    vswitch_id: String,
    vpc_id: String,
    account_id: String,
}

/// Reads an ENI file (`[[eni]]` tables with id, mac, vm-id, vswitch-id, vpc-id, account-id).
pub fn read_enis(path: &Path) -> Result<EniTable> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: EniFile =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut enis = Vec::new();
    for e in file.eni {
        let mac = e.mac.parse().with_context(|| format!("ENI {}", e.id))?;
        enis.push(Eni::new(
            e.id,
            mac,
            e.vm_id,
            e.vswitch_id,
            e.vpc_id,
            e.account_id,
        ));
    }
    Ok(EniTable::from_enis(enis)?)
}

/// The workspace's `testdata/` folder.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}
