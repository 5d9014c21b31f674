//! `net_pcap` RX through the safe layer: every frame of a pcap the test writes comes back with its bytes, lengths,
//! port and capture timestamp; the port's counters agree.

mod dpdk_common;

use std::time::{Duration, Instant};

use dpdk_common::{Frame, eal_args, frames, write_pcap};
use flowlog_vswitch::dpdk::{
    Burst, DpdkError, Eal, MbufRef, Mempool, Port, PortConfig, Socket, TimestampUnit,
};

const EPOCH: u32 = 1_700_000_000;

/// One received packet: bytes, pkt_len, input port, RX timestamp in ns.
type Received = (Vec<u8>, u32, u16, Option<u64>);

/// Receives everything the port has (net_pcap returns 0 once the file is read).
fn receive_all(port: &Port, expected: usize) -> anyhow::Result<Vec<Received>> {
    let ts = port.rx_timestamp()?;
    assert_eq!(ts.unit(), TimestampUnit::Microseconds);
    let mut queue = port.rx_queue(0)?;
    let mut burst = Burst::new();
    let mut got = Vec::with_capacity(expected);
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < expected && Instant::now() < deadline {
        if queue.rx_burst(&mut burst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        for mbuf in burst.iter() {
            // The Rust data pointer is DPDK's rte_pktmbuf_mtod.
            // SAFETY: the mbuf is alive (held by the burst); fl_pktmbuf_mtod only reads its header.
            let mtod = unsafe { dpdk_sys::fl_pktmbuf_mtod(mbuf.as_ptr()) };
            assert_eq!(mtod.cast::<u8>().cast_const(), mbuf.data().as_ptr());
            assert_eq!(mbuf.nb_segs(), 1);
            got.push((
                mbuf.data().to_vec(),
                mbuf.pkt_len(),
                mbuf.port(),
                mbuf.rx_timestamp_ns(&ts),
            ));
        }
    }
    // Nothing more arrives after the file's last frame.
    assert_eq!(queue.rx_burst(&mut burst), 0);
    Ok(got)
}

#[test]
fn pcap_frames_bytes_and_timestamps() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("in.pcap");
    let written: Vec<Frame> = frames(300, EPOCH);
    write_pcap(&path, &written, false)?;

    let vdev = format!("--vdev=net_pcap0,rx_pcap={}", path.display());
    let eal = Eal::init(&eal_args("0", &[vdev]))?;
    assert_eq!(Port::count(&eal), 1);
    let pool = Mempool::new(
        &eal,
        "pcap_rx",
        1023,
        32,
        Mempool::DEFAULT_DATA_ROOM,
        Socket::Any,
    )?;
    let mut port = Port::by_name(&eal, "net_pcap0")?;
    assert!(matches!(
        Port::by_id(&eal, port.id()),
        Err(DpdkError::PortInUse(_))
    ));
    assert!(matches!(
        Port::by_name(&eal, "net_pcap9"),
        Err(DpdkError::PortNotFound(_))
    ));
    let info = port.info()?;
    assert_eq!(info.driver_name, "net_pcap");
    assert_eq!(info.max_rx_queues, 1);
    // DPDK 22.11's net_pcap does not advertise the timestamp offload, yet stamps every mbuf (see below).
    println!("net_pcap rx_offload_capa {:#x}", info.rx_offload_capa);
    // net_pcap has one queue per rx_pcap file.
    let two = PortConfig {
        rx_queues: 2,
        ..PortConfig::default()
    };
    assert!(matches!(
        port.configure(&two, &pool),
        Err(DpdkError::BadQueueCount { .. })
    ));

    let setup = port.configure(
        &PortConfig {
            rx_timestamp: true,
            ..PortConfig::default()
        },
        &pool,
    )?;
    assert!(setup.rx_timestamp);
    assert!(!setup.symmetric_rss);
    port.start()?;

    let got = receive_all(&port, written.len())?;
    assert_eq!(got.len(), written.len());
    for (index, (frame, (bytes, pkt_len, in_port, ts_ns))) in written.iter().zip(&got).enumerate() {
        assert_eq!(bytes, &frame.bytes, "frame {index}");
        assert_eq!(*pkt_len as usize, frame.bytes.len(), "frame {index}");
        assert_eq!(*in_port, port.id());
        let expected_ns =
            u64::from(frame.ts_sec) * 1_000_000_000 + u64::from(frame.ts_frac) * 1_000;
        assert_eq!(*ts_ns, Some(expected_ns), "frame {index}");
    }
    let stats = port.stats()?;
    assert_eq!(stats.ipackets, written.len() as u64);
    let bytes: usize = written.iter().map(|frame| frame.bytes.len()).sum();
    assert_eq!(stats.ibytes, bytes as u64);
    assert_eq!((stats.imissed, stats.ierrors, stats.rx_nombuf), (0, 0, 0));

    // Everything went back to the pool.
    assert_eq!(pool.in_use(), 0);
    port.stop()?;
    drop(port);
    drop(pool);
    eal.cleanup()?;
    Ok(())
}

/// A nanosecond pcap: DPDK 22.11's net_pcap opens captures at microsecond precision, so libpcap truncates the
/// sub-microsecond digits; the stamp is still the capture's time to the microsecond.
#[test]
fn pcap_nanosecond_capture_is_stamped_to_the_microsecond() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ns.pcap");
    let written: Vec<Frame> = (0..50u32)
        .map(|i| Frame {
            ts_sec: EPOCH + i,
            ts_frac: 123_456_789 + i,
            bytes: dpdk_common::frame(i, 64),
        })
        .collect();
    write_pcap(&path, &written, true)?;
    let vdev = format!("--vdev=net_pcap0,rx_pcap={}", path.display());
    let eal = Eal::init(&eal_args("0", &[vdev]))?;
    let pool = Mempool::new(
        &eal,
        "pcap_ns",
        255,
        0,
        Mempool::DEFAULT_DATA_ROOM,
        Socket::Any,
    )?;
    let mut port = Port::by_name(&eal, "net_pcap0")?;
    port.configure(
        &PortConfig {
            rx_timestamp: true,
            ..PortConfig::default()
        },
        &pool,
    )?;
    port.start()?;
    let got = receive_all(&port, written.len())?;
    assert_eq!(got.len(), written.len());
    for (frame, (bytes, _, _, ts_ns)) in written.iter().zip(&got) {
        assert_eq!(bytes, &frame.bytes);
        let truncated =
            u64::from(frame.ts_sec) * 1_000_000_000 + u64::from(frame.ts_frac) / 1_000 * 1_000;
        assert_eq!(*ts_ns, Some(truncated));
    }
    Ok(())
}

/// net_pcap stamps without `rx_timestamp` too; queue handles are exclusive and block `stop` while out; the raw-pointer
/// view a host vSwitch's mbufs go through sees what the burst sees.
#[test]
fn pcap_stamps_without_asking_and_queues_are_exclusive() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("plain.pcap");
    let written = frames(40, EPOCH);
    write_pcap(&path, &written, false)?;
    let vdev = format!("--vdev=net_pcap0,rx_pcap={}", path.display());
    let eal = Eal::init(&eal_args("0", &[vdev]))?;
    let pool = Mempool::new(
        &eal,
        "pcap_plain",
        255,
        0,
        Mempool::DEFAULT_DATA_ROOM,
        Socket::Any,
    )?;
    let mut port = Port::by_name(&eal, "net_pcap0")?;
    assert!(matches!(port.rx_queue(0), Err(DpdkError::NotConfigured(_))));
    let setup = port.configure(&PortConfig::default(), &pool)?;
    assert!(setup.rx_timestamp, "net_pcap always stamps");
    port.start()?;
    let ts = port.rx_timestamp()?;
    let mut queue = port.rx_queue(0)?;
    assert!(matches!(
        port.rx_queue(0),
        Err(DpdkError::QueueUnavailable { .. })
    ));
    assert!(matches!(
        port.rx_queue(1),
        Err(DpdkError::QueueUnavailable { .. })
    ));
    assert!(matches!(
        port.stop(),
        Err(DpdkError::QueuesInUse { count: 1, .. })
    ));
    let mut burst = Burst::new();
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.len() < written.len() && Instant::now() < deadline {
        queue.rx_burst(&mut burst);
        for mbuf in burst.iter() {
            // SAFETY: the mbuf is owned by `burst`, which is neither freed nor modified while `view` lives.
            let view = unsafe { MbufRef::from_raw(mbuf.as_ptr()) }.expect("non-null");
            assert_eq!(view.data(), mbuf.data());
            assert_eq!(view.pkt_len(), mbuf.pkt_len());
            received.push(view.rx_timestamp_ns(&ts));
        }
    }
    assert_eq!(received.len(), written.len());
    for (frame, ts_ns) in written.iter().zip(received) {
        assert_eq!(
            ts_ns,
            Some(u64::from(frame.ts_sec) * 1_000_000_000 + u64::from(frame.ts_frac) * 1_000)
        );
    }
    // SAFETY: a null pointer is accepted and gives no view.
    assert!(unsafe { MbufRef::from_raw(std::ptr::null_mut()) }.is_none());
    drop(queue);
    port.stop()?;
    assert!(!port.is_started());
    Ok(())
}

/// A frame larger than one mbuf arrives as a chain: `data()` is the first segment, `pkt_len()` the whole frame, and
/// the segments concatenate to the frame.
#[test]
fn pcap_jumbo_frame_arrives_segmented() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("jumbo.pcap");
    let written = vec![
        Frame {
            ts_sec: EPOCH,
            ts_frac: 1,
            bytes: dpdk_common::frame(1, 5000),
        },
        Frame {
            ts_sec: EPOCH,
            ts_frac: 2,
            bytes: dpdk_common::frame(2, 100),
        },
    ];
    write_pcap(&path, &written, false)?;
    let vdev = format!("--vdev=net_pcap0,rx_pcap={}", path.display());
    let eal = Eal::init(&eal_args("0", &[vdev]))?;
    let pool = Mempool::new(
        &eal,
        "jumbo",
        255,
        0,
        Mempool::DEFAULT_DATA_ROOM,
        Socket::Any,
    )?;
    let mut port = Port::by_name(&eal, "net_pcap0")?;
    port.configure(&PortConfig::default(), &pool)?;
    port.start()?;
    let mut queue = port.rx_queue(0)?;
    let mut burst = Burst::new();
    let mut frames_seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while frames_seen.len() < written.len() && Instant::now() < deadline {
        queue.rx_burst(&mut burst);
        for mbuf in burst.iter() {
            let mut bytes = mbuf.data().to_vec();
            let mut segment = mbuf.next_segment();
            while let Some(next) = segment {
                bytes.extend_from_slice(next.data());
                segment = next.next_segment();
            }
            frames_seen.push((mbuf.nb_segs(), mbuf.pkt_len(), mbuf.data_len(), bytes));
        }
    }
    assert_eq!(frames_seen.len(), 2);
    let (segs, pkt_len, data_len, bytes) = &frames_seen[0];
    assert!(*segs >= 3, "5000 bytes span several 2048-byte mbufs");
    assert_eq!(*pkt_len, 5000);
    assert!(usize::from(*data_len) < 5000);
    assert_eq!(bytes, &written[0].bytes);
    let (segs, pkt_len, _, bytes) = &frames_seen[1];
    assert_eq!((*segs, *pkt_len), (1, 100));
    assert_eq!(bytes, &written[1].bytes);
    burst.free_all();
    assert_eq!(pool.in_use(), 0, "every segment went back");
    Ok(())
}
