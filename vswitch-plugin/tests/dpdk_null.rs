//! `net_null` through the safe layer: several RX queues with symmetric RSS polled by worker lcores, and (ignored,
//! run by hand or by the benchmark) the receive-and-free floor of one worker.

mod dpdk_common;

use std::time::Duration;

use dpdk_common::eal_args;
use flowlog_vswitch::dpdk::{
    Burst, DpdkError, Eal, Mempool, Port, PortConfig, RxQueue, Socket, tsc, tsc_hz,
};

#[test]
fn null_queues_polled_by_worker_lcores() -> anyhow::Result<()> {
    // Three lcores on the machine's (at least) two CPUs: the main one and a worker per RX queue.
    let eal = Eal::init(&eal_args(
        "--lcores=0@(0-1),1@(0-1),2@(0-1)",
        &["--vdev=net_null0".to_owned()],
    ))?;
    let workers: Vec<u32> = eal.worker_lcores().collect();
    assert_eq!(workers, [1, 2]);
    let pool = Mempool::new(
        &eal,
        "null_rx",
        4095,
        64,
        Mempool::DEFAULT_DATA_ROOM,
        Socket::Any,
    )?;
    let mut port = Port::by_name(&eal, "net_null0")?;
    let info = port.info()?;
    assert_eq!(info.driver_name, "net_null");
    let setup = port.configure(
        &PortConfig {
            rx_queues: 2,
            rx_descriptors: 256,
            ..PortConfig::default()
        },
        &pool,
    )?;
    assert_eq!(setup.rx_queues, 2);
    assert_eq!(setup.symmetric_rss, info.flow_type_rss_offloads != 0);
    println!(
        "net_null: rss offloads {:#x}, symmetric RSS {}",
        info.flow_type_rss_offloads, setup.symmetric_rss
    );
    port.start()?;

    const PER_QUEUE: usize = 100_000;
    // The workers keep their queues until the main thread has checked the port cannot stop under them.
    let checked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for (queue, &lcore) in workers.iter().enumerate() {
        let mut rx: RxQueue = port.rx_queue(u16::try_from(queue)?)?;
        let checked = checked.clone();
        eal.launch(lcore, move || {
            let mut burst = Burst::new();
            let mut packets = 0usize;
            while packets < PER_QUEUE || !checked.load(std::sync::atomic::Ordering::Acquire) {
                packets += rx.rx_burst(&mut burst);
                if burst.iter().any(|mbuf| mbuf.port() != rx.port_id()) {
                    return -1;
                }
            }
            i32::try_from(packets).unwrap_or(i32::MAX)
        })?;
    }
    // The queues are out on the workers: the port cannot be stopped under them.
    assert!(matches!(port.stop(), Err(DpdkError::QueuesInUse { .. })));
    checked.store(true, std::sync::atomic::Ordering::Release);
    for (lcore, result) in eal.wait_all() {
        let packets = result?;
        assert!(
            packets >= PER_QUEUE as i32,
            "lcore {lcore} received {packets}"
        );
    }
    // The workers dropped their queues (and freed their bursts) on return.
    port.stop()?;
    let stats = port.stats()?;
    assert!(stats.ipackets >= 2 * PER_QUEUE as u64);
    assert_eq!(pool.in_use(), 0);
    Ok(())
}

/// Receive-and-free floor of one worker on `net_null` (no data copy) and on `net_null` with `copy=1,size=64`
/// (the driver writes 64 bytes per packet, the worker reads the Ethernet header). Prints Mpps and cycles per
/// packet; asserts nothing about speed. `cargo nextest run --release -p flowlog-vswitch --run-ignored only
/// --no-capture -E 'test(null_rx_floor)'`.
#[test]
#[ignore = "measurement: prints the receive floor, takes ~6 s"]
fn null_rx_floor() -> anyhow::Result<()> {
    let eal = Eal::init(&eal_args(
        "0-1",
        &[
            "--vdev=net_null0".to_owned(),
            "--vdev=net_null1,copy=1,size=64".to_owned(),
        ],
    ))?;
    let worker = eal
        .worker_lcores()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no worker lcore"))?;
    let pool = Mempool::new(
        &eal,
        "floor",
        8191,
        256,
        Mempool::DEFAULT_DATA_ROOM,
        Socket::Any,
    )?;
    let seconds = 3u64;
    for (name, touch) in [("net_null0", false), ("net_null1", true)] {
        let mut port = Port::by_name(&eal, name)?;
        port.configure(&PortConfig::default(), &pool)?;
        port.start()?;
        let mut rx = port.rx_queue(0)?;
        let (tx, results) = std::sync::mpsc::channel();
        let hz = tsc_hz();
        eal.launch(worker, move || {
            let mut burst = Burst::new();
            let mut packets = 0u64;
            let mut checksum = 0u64;
            let cpu_start = thread_cpu_seconds();
            let start = tsc();
            let end = start + seconds * hz;
            let mut now = start;
            while now < end {
                for _ in 0..64 {
                    packets += rx.rx_burst(&mut burst) as u64;
                    if touch {
                        for mbuf in burst.iter() {
                            let data = mbuf.data();
                            checksum = checksum
                                .wrapping_add(u64::from(data.get(12).copied().unwrap_or(0)));
                        }
                    }
                }
                now = tsc();
            }
            burst.free_all();
            let cpu = thread_cpu_seconds() - cpu_start;
            let _ = tx.send((packets, now - start, cpu, checksum));
            0
        })?;
        eal.wait(worker)?;
        let (packets, cycles, cpu, checksum) = results.recv_timeout(Duration::from_secs(1))?;
        let elapsed = cycles as f64 / hz as f64;
        let packets_f = packets.max(1) as f64;
        let what = if touch {
            "copy=1,size=64, header read"
        } else {
            "rx + free only"
        };
        // On a shared machine the worker is preempted: the on-CPU figures leave that out.
        println!(
            "{name} ({what}): wall {:.1} Mpps, {:.1} cycles/packet; on-CPU {:.1} Mpps, {:.1} cycles/packet \
             ({elapsed:.2} s wall, {cpu:.2} s on CPU, {packets} packets, checksum {checksum})",
            packets_f / elapsed / 1e6,
            cycles as f64 / packets_f,
            packets_f / cpu / 1e6,
            cpu * hz as f64 / packets_f,
        );
        port.stop()?;
    }
    Ok(())
}

/// CPU time consumed by the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    flowlog_vswitch::dpdk::thread_cpu_time().map_or(0.0, |t| t.as_secs_f64())
}
