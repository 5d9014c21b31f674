//! Deterministic, seeded traffic generator: writes pcaps together with the flow-log records they must produce.
//!
//! [`generate`] (or the `flowlog-gen` binary) writes four files into a directory:
//! - `capture.pcap`: classic pcap (microseconds, Ethernet) of exactly `packets` frames, timestamps non-decreasing
//!   from `start_epoch` over `duration_secs`;
//! - `enis.toml`: the ENI file (`[[eni]]` tables with `id`, `mac`, `vm-id`, `vswitch-id`, `vpc-id`,
//!   `account-id`), as `flowlog replay --enis` reads it;
//! - `expected.jsonl`: every record the capture must produce at `interval_secs` (no `region`), in the format and
//!   order of `testdata/sample/sample.expected-60s.jsonl`: sorted by `start`, `eni-id`, `log-status`, then
//!   `direction, srcaddr, srcport, dstaddr, dstport, protocol, action`, addresses compared as text;
//! - `summary.json`: the counts of what was written ([`Summary`]).
//!
//! # An independent check of the dataplane
//! The records are not computed by parsing the capture: the generator accounts each packet from its own model of
//! the flow it belongs to, while it writes it. This crate shares no code with `flowlog-dataplane`.
//!
//! # What a capture contains (SPEC.md, all of it)
//! - IPv4 (some with options) and IPv6 (some with hop-by-hop, destination options and routing headers before the
//!   L4 header); TCP (SYN, SYN-ACK, ACK, PSH/ACK data, FIN or RST close), UDP, ICMP, ICMPv6, SCTP (ports) and GRE
//!   (portless); untagged, 802.1Q and QinQ (0x88a8 + 0x8100) frames; IP lengths as `bytes`, frames padded to 60.
//! - Zipf flow sizes (exponent 1.5): a few elephants, many mice; flows spanning several windows; flows between two
//!   ENIs (four records per window for a connection); traffic through the VPC gateway MAC (no ENI); frames of no
//!   ENI at all (unattributed); ARP and LLDP frames (non-IP).
//! - ENIs silent in some windows, two ENIs that never see traffic, and, when the capture spans a whole window plus
//!   margins, a quiet gap that empties one whole window in the middle (NODATA for every ENI).
//! - Malformed frames of every reason of SPEC.md ([`MalformedReason`]).
//! - Ordinary UDP to port 4789 (VXLAN's I flag clear), and real VXLAN (I flag set, VNI 1000 + VPC) carrying inner
//!   frames of ENIs: the record is the inner flow, its bytes the inner IP length.
//! - IPv4 datagrams sent as fragments in consecutive frames of one window (each fragment a packet of the flow,
//!   with its own IP length), and non-first fragments whose first fragment never came (ports 0).
//!
//! # Determinism
//! The same [`GenConfig`] gives the same bytes in every file, on every platform and with every crate version:
//! the PRNG, the Zipf sampler, the pcap writer and the checksums are written here; `expected.jsonl` is sorted.

#![forbid(unsafe_code)]

mod config;
mod eni;
mod flow;
mod generator;
mod ledger;
mod malformed;
mod packet;
mod pcap;
mod rng;
mod summary;
mod timeline;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub use config::{ConfigError, GenConfig};
pub use malformed::MalformedReason;
pub use pcap::{PcapError, PcapWriter};
pub use summary::{RecordCounts, Summary};

/// Name of the capture in the output directory.
pub const CAPTURE_FILE: &str = "capture.pcap";
/// Name of the ENI file in the output directory.
pub const ENIS_FILE: &str = "enis.toml";
/// Name of the expected records in the output directory.
pub const EXPECTED_FILE: &str = "expected.jsonl";
/// Name of the summary in the output directory.
pub const SUMMARY_FILE: &str = "summary.json";

/// Why a generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The configuration is out of range.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A file or the output directory could not be created or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing the capture failed.
    #[error("{CAPTURE_FILE}: {0}")]
    Pcap(PcapError),
    /// Writing the expected records failed.
    #[error("{EXPECTED_FILE}: {0}")]
    Expected(std::io::Error),
}

impl GenError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenError + '_ {
        move |source| GenError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn pcap(e: PcapError) -> GenError {
        GenError::Pcap(e)
    }

    pub(crate) fn expected(source: std::io::Error) -> GenError {
        GenError::Expected(source)
    }
}

/// Writes `capture.pcap`, `enis.toml`, `expected.jsonl` and `summary.json` for `config` into `out_dir` (created if
/// missing; existing files are replaced) and returns the summary.
pub fn generate(config: &GenConfig, out_dir: &Path) -> Result<Summary, GenError> {
    let valid = config.validate()?;
    let cfg = valid.get();
    fs::create_dir_all(out_dir).map_err(GenError::io(out_dir))?;
    let enis = eni::Enis::new(cfg.enis, cfg.seed);

    let enis_path = out_dir.join(ENIS_FILE);
    let mut enis_out = BufWriter::new(File::create(&enis_path).map_err(GenError::io(&enis_path))?);
    enis.write_toml(&mut enis_out)
        .and_then(|()| enis_out.flush())
        .map_err(GenError::io(&enis_path))?;

    let capture_path = out_dir.join(CAPTURE_FILE);
    let capture = File::create(&capture_path).map_err(GenError::io(&capture_path))?;
    let pcap = pcap::PcapWriter::new(BufWriter::with_capacity(1 << 20, capture))
        .map_err(GenError::Pcap)?;

    let expected_path = out_dir.join(EXPECTED_FILE);
    let expected = File::create(&expected_path).map_err(GenError::io(&expected_path))?;
    let ledger = ledger::Ledger::new(
        cfg.interval_secs,
        &enis,
        BufWriter::with_capacity(1 << 20, expected),
    );

    let mut generator = generator::Generator::new(cfg, &enis, pcap, ledger);
    generator.run()?;
    let summary = generator.finish()?;

    let summary_path = out_dir.join(SUMMARY_FILE);
    let mut text = serde_json::to_string_pretty(&summary).map_err(|e| GenError::Io {
        path: summary_path.clone(),
        source: e.into(),
    })?;
    text.push('\n');
    fs::write(&summary_path, text).map_err(GenError::io(&summary_path))?;
    Ok(summary)
}
