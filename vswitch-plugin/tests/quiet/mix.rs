//! The generated mix the meter's tests and the instruction bench (`benches/benches/instructions.rs`) run.

use std::sync::Arc;

use flowlog_dataplane::flow::EniTable;
use flowlog_vswitch::config::load_enis;
use flowlog_vswitch::pcap::read_frames;

/// A frame's captured bytes and its length on the wire.
pub type Frame = (Vec<u8>, usize);

/// A generated mix (seed 11, 20,000 frames: VLAN and QinQ tags, IPv4 and IPv6, fragments, VXLAN, malformed and
/// non-IP frames), each frame with its length on the wire, and the table of its ENIs.
pub fn generated_mix() -> anyhow::Result<(Vec<Frame>, Arc<EniTable>)> {
    let dir = tempfile::tempdir()?;
    flowlog_trafficgen::generate(
        &flowlog_trafficgen::GenConfig::new(11, 20_000, 60),
        dir.path(),
    )?;
    let frames = read_frames(&dir.path().join("capture.pcap"))?;
    let enis = EniTable::from_enis(load_enis(&dir.path().join("enis.toml"))?)?;
    Ok((frames, Arc::new(enis)))
}
