//! `net_ring` loopback through the safe layer: frames built in mbufs are transmitted and received back intact;
//! mbuf and pool bookkeeping (room, exhaustion, full bursts, in-use counts) and EAL's deferred cleanup; a loopback
//! port over a ring of a chosen depth (`Port::loopback_ring`).

mod dpdk_common;

use std::time::{Duration, Instant};

use dpdk_common::{eal_args, frame};
use flowlog_vswitch::dpdk::{
    BURST_SIZE, Burst, DpdkError, Eal, Mempool, Port, PortConfig, Socket, leaked_mempools,
};

#[test]
fn ring_loopback_tx_then_rx() -> anyhow::Result<()> {
    let eal = Eal::init(&eal_args("0", &["--vdev=net_ring0".to_owned()]))?;
    let pool = Mempool::new(
        &eal,
        "ring",
        1023,
        0,
        Mempool::DEFAULT_DATA_ROOM,
        Socket::Any,
    )?;
    assert_eq!(
        (pool.capacity(), pool.available(), pool.in_use()),
        (1023, 1023, 0)
    );
    let mut port = Port::by_name(&eal, "net_ring0")?;
    let info = port.info()?;
    assert_eq!(info.driver_name, "net_ring");
    // net_ring neither offers nor fakes RX timestamps.
    let stamped = PortConfig {
        rx_timestamp: true,
        ..PortConfig::default()
    };
    assert!(matches!(
        port.configure(&stamped, &pool),
        Err(DpdkError::TimestampUnsupported(..))
    ));
    let setup = port.configure(&PortConfig::default(), &pool)?;
    assert_eq!((setup.rx_queues, setup.tx_queues), (1, 1));
    assert!(!setup.rx_timestamp);
    port.start()?;
    assert!(matches!(
        port.rx_timestamp(),
        Err(DpdkError::TimestampUnsupported(..))
    ));
    let mut rx = port.rx_queue(0)?;
    let mut tx = port.tx_queue(0)?;
    assert!(matches!(
        port.tx_queue(0),
        Err(DpdkError::QueueUnavailable { kind: "TX", .. })
    ));

    let sent_frames: Vec<Vec<u8>> = (0..100u32)
        .map(|i| frame(i, 60 + (i as usize * 97) % 1455))
        .collect();
    let mut received: Vec<(Vec<u8>, u32, u16)> = Vec::new();
    let mut out = Burst::new();
    let mut inbound = Burst::new();
    for chunk in sent_frames.chunks(BURST_SIZE) {
        for bytes in chunk {
            let mut mbuf = pool.alloc()?;
            mbuf.append(bytes)?;
            assert_eq!(mbuf.as_ref().data(), &bytes[..]);
            out.push(mbuf).map_err(|_| anyhow::anyhow!("burst full"))?;
        }
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !out.is_empty() && Instant::now() < deadline {
            sent += tx.tx_burst(&mut out);
        }
        assert_eq!(sent, chunk.len());
        let deadline = Instant::now() + Duration::from_secs(10);
        let target = received.len() + chunk.len();
        while received.len() < target && Instant::now() < deadline {
            rx.rx_burst(&mut inbound);
            received.extend(
                inbound
                    .iter()
                    .map(|m| (m.data().to_vec(), m.pkt_len(), m.nb_segs())),
            );
        }
    }
    inbound.free_all();
    assert_eq!(received.len(), sent_frames.len());
    for (bytes, (got, pkt_len, segs)) in sent_frames.iter().zip(&received) {
        assert_eq!(got, bytes);
        assert_eq!(*pkt_len as usize, bytes.len());
        assert_eq!(*segs, 1);
    }
    let stats = port.stats()?;
    assert_eq!((stats.opackets, stats.ipackets), (100, 100));
    assert_eq!(pool.in_use(), 0, "every mbuf went back to the pool");

    // EAL outlives its handles: with the pool still alive, cleanup is deferred to the pool's drop.
    drop((rx, tx, out, inbound));
    port.stop()?;
    drop(port);
    assert!(matches!(eal.cleanup(), Err(DpdkError::EalStillInUse(1))));
    assert_eq!(pool.in_use(), 0);
    drop(pool);
    assert_eq!(leaked_mempools(), 0);
    Ok(())
}

#[test]
fn mbuf_and_pool_limits() -> anyhow::Result<()> {
    let eal = Eal::init(&eal_args("0", &[]))?;
    assert!(matches!(
        Mempool::new(&eal, "", 63, 0, Mempool::DEFAULT_DATA_ROOM, Socket::Any),
        Err(DpdkError::InvalidName { .. })
    ));
    let long = "x".repeat(Mempool::MAX_NAME_LEN + 1);
    assert!(matches!(
        Mempool::new(&eal, &long, 63, 0, Mempool::DEFAULT_DATA_ROOM, Socket::Any),
        Err(DpdkError::InvalidName { .. })
    ));
    let pool = Mempool::new(
        &eal,
        "small",
        63,
        0,
        Mempool::DEFAULT_DATA_ROOM,
        Socket::Any,
    )?;
    assert!(matches!(
        Mempool::new(
            &eal,
            "small",
            63,
            0,
            Mempool::DEFAULT_DATA_ROOM,
            Socket::Any
        ),
        Err(DpdkError::MempoolCreate { .. })
    ));

    // Room: data room minus headroom, and nothing is appended on failure.
    let room = usize::from(Mempool::DEFAULT_DATA_ROOM - Mempool::HEADROOM);
    let mut mbuf = pool.alloc()?;
    assert!(matches!(
        mbuf.append(&vec![0u8; room + 1]),
        Err(DpdkError::NoRoom { available, .. }) if available == room
    ));
    assert_eq!(mbuf.as_ref().pkt_len(), 0);
    mbuf.append(&vec![7u8; room])?;
    assert_eq!(mbuf.as_ref().pkt_len() as usize, room);
    assert!(matches!(
        mbuf.append(&[1]),
        Err(DpdkError::NoRoom { available: 0, .. })
    ));
    drop(mbuf);

    // Exhaustion, and a full burst gives the mbuf back.
    let mut all = Vec::new();
    for _ in 0..63 {
        all.push(pool.alloc()?);
    }
    assert!(matches!(pool.alloc(), Err(DpdkError::MempoolExhausted(_))));
    assert_eq!(pool.in_use(), 63);
    let mut burst = Burst::new();
    for mbuf in all.drain(..BURST_SIZE) {
        burst
            .push(mbuf)
            .map_err(|_| anyhow::anyhow!("burst full too early"))?;
    }
    let Some(extra) = all.pop() else {
        anyhow::bail!("no mbuf left")
    };
    assert!(burst.push(extra).is_err(), "33rd mbuf refused");
    assert_eq!(burst.len(), BURST_SIZE);
    assert!(burst.get(BURST_SIZE).is_none());
    drop(all);
    assert_eq!(pool.in_use(), BURST_SIZE as u32);
    burst.free_all();
    assert_eq!(pool.in_use(), 0);

    // A pool dropped while mbufs are out is left allocated, so the late free stays valid.
    let mut held = Burst::new();
    held.push(pool.alloc()?)
        .map_err(|_| anyhow::anyhow!("burst full"))?;
    drop(pool);
    assert_eq!(leaked_mempools(), 1);
    drop(held);
    drop(eal);
    Ok(())
}

#[test]
fn loopback_ring_holds_its_depth() -> anyhow::Result<()> {
    const SLOTS: u32 = 4096;
    let eal = Eal::init(&eal_args("0", &[]))?;
    let pool = Mempool::new(&eal, "deep", 8191, 0, 256, Socket::Any)?;
    for (name, slots) in [("odd", 3000), ("one", 1)] {
        assert!(
            matches!(
                Port::loopback_ring(&eal, name, slots),
                Err(DpdkError::RingPortCreate {
                    errno: libc::EINVAL,
                    ..
                })
            ),
            "{slots} slots"
        );
    }
    assert!(matches!(
        Port::loopback_ring(&eal, "", SLOTS),
        Err(DpdkError::InvalidName { .. })
    ));
    let mut port = Port::loopback_ring(&eal, "deep0", SLOTS)?;
    assert_eq!(port.name(), "net_ring_deep0");
    assert!(matches!(
        Port::loopback_ring(&eal, "deep0", SLOTS),
        Err(DpdkError::RingPortCreate { .. })
    ));
    assert!(matches!(
        Port::by_name(&eal, "net_ring_deep0"),
        Err(DpdkError::PortInUse(_))
    ));
    port.configure(&PortConfig::default(), &pool)?;
    port.start()?;
    let mut rx = port.rx_queue(0)?;
    let mut tx = port.tx_queue(0)?;

    // Transmit until the ring refuses: it takes exactly SLOTS - 1 frames, four times net_ring's 1,023.
    let mut out = Burst::new();
    let mut sent = 0u32;
    loop {
        while out.len() < BURST_SIZE {
            let mut mbuf = pool.alloc()?;
            mbuf.append(&frame(sent + out.len() as u32, 60))?;
            out.push(mbuf).map_err(|_| anyhow::anyhow!("burst full"))?;
        }
        let took = tx.tx_burst(&mut out);
        sent += took as u32;
        if !out.is_empty() {
            break;
        }
    }
    out.free_all();
    assert_eq!(sent, SLOTS - 1);
    let mut inbound = Burst::new();
    let mut received = 0u32;
    while rx.rx_burst(&mut inbound) > 0 {
        for mbuf in inbound.iter() {
            assert_eq!(mbuf.data(), &frame(received, 60)[..], "frame {received}");
            received += 1;
        }
        inbound.free_all();
    }
    assert_eq!(received, sent, "every frame back, in order");
    assert_eq!(pool.in_use(), 0);
    drop((rx, tx));
    port.stop()?;
    Ok(())
}
