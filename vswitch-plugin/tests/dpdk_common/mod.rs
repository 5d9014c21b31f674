//! Shared helpers of the DPDK integration tests: EAL arguments for a small, isolated EAL (no hugepages, no PCI, no
//! shared runtime files, so tests run in parallel processes), a classic-pcap writer and deterministic frames.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

/// EAL arguments for a test: `lcores` (a `-l` list such as "0" or "0-1", or a whole `--lcores=...` argument),
/// 256 MB without hugepages, no PCI, no runtime files, quiet EAL; then `extra` (vdevs).
pub fn eal_args(lcores: &str, extra: &[String]) -> Vec<String> {
    let lcore_args: &[&str] = if lcores.starts_with("--lcores=") {
        &[lcores]
    } else {
        &["-l", lcores]
    };
    let mut args: Vec<String> = lcore_args.iter().map(|s| (*s).to_owned()).collect();
    args.extend(
        [
            "--no-huge",
            "-m",
            "256",
            "--no-pci",
            "--no-shconf",
            "--no-telemetry",
            "--log-level=lib.eal:warning",
            "--log-level=pmd.net.*:warning",
        ]
        .iter()
        .map(|s| (*s).to_owned()),
    );
    args.extend(extra.iter().cloned());
    args
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Seconds since the epoch.
    pub ts_sec: u32,
    /// Sub-second part, in microseconds (or nanoseconds in a nanosecond pcap).
    pub ts_frac: u32,
    /// The frame bytes.
    pub bytes: Vec<u8>,
}

/// Writes a classic pcap (LINKTYPE_ETHERNET); `nanosecond` selects the nanosecond magic.
pub fn write_pcap(path: &Path, frames: &[Frame], nanosecond: bool) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let magic: u32 = if nanosecond { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    out.write_all(&magic.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&0i32.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    out.write_all(&65535u32.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes())?;
    for frame in frames {
        let len = u32::try_from(frame.bytes.len()).expect("frame fits u32");
        out.write_all(&frame.ts_sec.to_le_bytes())?;
        out.write_all(&frame.ts_frac.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&frame.bytes)?;
    }
    out.flush()
}

/// A deterministic Ethernet/IPv4/UDP frame `index` of `len` bytes (at least 60), distinct per index.
pub fn frame(index: u32, len: usize) -> Vec<u8> {
    let len = len.max(60);
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(&[0x02, 0, 0, 0xe1, 0, 0x01]); // destination MAC
    bytes.extend_from_slice(&[0x02, 0, 0, 0xe1, 0, 0x02]); // source MAC
    bytes.extend_from_slice(&[0x08, 0x00]);
    let ip_len = u16::try_from(len - 14).expect("frame length fits u16");
    bytes.extend_from_slice(&[
        0x45,
        0,
        ip_len.to_be_bytes()[0],
        ip_len.to_be_bytes()[1],
        0,
        0,
        0,
        0,
        64,
        17,
        0,
        0,
    ]);
    bytes.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    bytes.extend_from_slice(&(1024 + (index % 50_000) as u16).to_be_bytes());
    bytes.extend_from_slice(&53u16.to_be_bytes());
    bytes.extend_from_slice(&(ip_len - 20).to_be_bytes());
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(&index.to_be_bytes());
    let mut state = index.wrapping_mul(2_654_435_761).wrapping_add(1);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        bytes.push(state as u8);
    }
    bytes
}

/// `count` frames starting at `epoch` seconds, 13.7 ms apart (so many sub-second values), lengths 60..=1514.
pub fn frames(count: u32, epoch: u32) -> Vec<Frame> {
    (0..count)
        .map(|i| {
            let micros = u64::from(i) * 13_700 + u64::from(i % 7);
            Frame {
                ts_sec: epoch + u32::try_from(micros / 1_000_000).expect("fits"),
                ts_frac: u32::try_from(micros % 1_000_000).expect("fits"),
                bytes: frame(i, 60 + (i as usize * 37) % 1455),
            }
        })
        .collect()
}

/// A started `net_ring0` port, whose transmit feeds its receive, on a two-lcore EAL (lcore 1 free to run on
/// either CPU), with a pool of 16,383 mbufs and queue 0 each way: what the poll-loop tests run
/// `standalone::PollLoop` over ([`send`] feeds it). Keep `port` as long as the queues.
pub struct RingLoop {
    pub eal: flowlog_vswitch::dpdk::Eal,
    pub pool: flowlog_vswitch::dpdk::Mempool,
    pub port: flowlog_vswitch::dpdk::Port,
    pub rx: flowlog_vswitch::dpdk::RxQueue,
    pub tx: flowlog_vswitch::dpdk::TxQueue,
}

/// Starts a [`RingLoop`] whose pool is named `pool`.
pub fn ring_loop(pool: &str) -> anyhow::Result<RingLoop> {
    use flowlog_vswitch::dpdk::{Eal, Mempool, Port, PortConfig, Socket};
    let eal = Eal::init(&eal_args(
        "--lcores=0@(0-1),1@(0-1)",
        &["--vdev=net_ring0".to_string()],
    ))?;
    let pool = Mempool::new(
        &eal,
        pool,
        16_383,
        256,
        Mempool::DEFAULT_DATA_ROOM,
        Socket::Any,
    )?;
    let mut port = Port::by_name(&eal, "net_ring0")?;
    port.configure(&PortConfig::default(), &pool)?;
    port.start()?;
    let rx = port.rx_queue(0)?;
    let tx = port.tx_queue(0)?;
    Ok(RingLoop {
        eal,
        pool,
        port,
        rx,
        tx,
    })
}

/// Sends up to 32 of `frames` into `tx` as fresh mbufs of `pool`; frees what the full ring refuses (the poll loop
/// is behind).
pub fn send<'f>(
    pool: &flowlog_vswitch::dpdk::Mempool,
    tx: &mut flowlog_vswitch::dpdk::TxQueue,
    frames: &mut impl Iterator<Item = &'f [u8]>,
) {
    let mut burst = flowlog_vswitch::dpdk::Burst::new();
    for frame in frames.take(32) {
        let Ok(mut mbuf) = pool.alloc() else {
            break;
        };
        if mbuf.append(frame).is_err() || burst.push(mbuf).is_err() {
            break;
        }
    }
    tx.tx_burst(&mut burst);
    burst.free_all();
}
