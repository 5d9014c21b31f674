//! EAL lifecycle through the safe layer: once per process, worker lcores (launch, wait, panics, their CPUs),
//! thread affinity (pinning, un-pinning).

mod dpdk_common;

use dpdk_common::eal_args;
use flowlog_vswitch::dpdk::{
    DpdkError, Eal, cpus_before_eal, current_lcore, current_thread_cpus, pin_current_thread, tsc,
    tsc_hz, unpin_current_thread,
};

#[test]
fn second_init_is_an_error() -> anyhow::Result<()> {
    // A bad argument is refused before EAL is touched, so it does not use up the one init.
    assert!(matches!(
        Eal::init(&["-l".to_owned(), "0\0".to_owned()]),
        Err(DpdkError::NulInArgument(_))
    ));
    let eal = Eal::init(&eal_args("0", &[]))?;
    assert_eq!(eal.lcore_count(), 1);
    assert_eq!(eal.lcores().collect::<Vec<_>>(), [0]);
    assert_eq!(eal.worker_lcores().count(), 0);
    assert_eq!(current_lcore(), Some(eal.main_lcore()));
    assert!(matches!(
        Eal::init(&eal_args("0", &[])),
        Err(DpdkError::EalAlreadyInitialized)
    ));
    // SAFETY: EAL is initialised in this process (the call is refused anyway).
    let from_host = unsafe { Eal::from_host() };
    assert!(matches!(from_host, Err(DpdkError::EalAlreadyInitialized)));
    eal.cleanup()?;
    // Even after cleanup: DPDK cannot initialise EAL twice in a process.
    assert!(matches!(
        Eal::init(&eal_args("0", &[])),
        Err(DpdkError::EalAlreadyInitialized)
    ));
    Ok(())
}

#[test]
fn init_rejects_arguments_eal_does_not_parse() {
    let mut args = eal_args("0", &[]);
    args.push("not-an-eal-argument".to_owned());
    match Eal::init(&args) {
        Err(DpdkError::UnparsedArguments(rest)) => assert_eq!(rest, ["not-an-eal-argument"]),
        other => panic!("expected UnparsedArguments, got {other:?}"),
    }
}

#[test]
fn launch_on_worker_lcore_returns_value() -> anyhow::Result<()> {
    let eal = Eal::init(&eal_args("0-1", &[]))?;
    assert!(tsc_hz() > 0, "EAL calibrated the TSC");
    let workers: Vec<u32> = eal.worker_lcores().collect();
    assert_eq!(workers, [1]);
    assert_eq!(eal.lcores().collect::<Vec<_>>(), [0, 1]);
    let worker = workers[0];
    // Each lcore reads its own CPUs: `-l 0-1` pins lcore N to CPU N.
    assert_eq!(eal.lcore_cpus(worker)?, [1]);
    assert_eq!(eal.lcore_cpus(eal.main_lcore())?, [0]);

    let (tx, rx) = std::sync::mpsc::channel();
    eal.launch(worker, move || {
        let start = tsc();
        // Runs on the worker lcore, as an EAL thread.
        let lcore = current_lcore().map_or(-1, |id| id as i32);
        let _ = tx.send((lcore, tsc() >= start));
        40 + 2
    })?;
    assert!(matches!(
        eal.launch(worker, || 0),
        Err(DpdkError::LcoreBusy(1))
    ));
    assert_eq!(eal.wait(worker)?, 42);
    assert_eq!(rx.recv()?, (1, true));
    assert!(matches!(eal.wait(worker), Err(DpdkError::NotLaunched(1))));

    // Only worker lcores take jobs.
    assert!(matches!(
        eal.launch(eal.main_lcore(), || 0),
        Err(DpdkError::NotWorkerLcore(0))
    ));
    assert!(matches!(
        eal.launch(7, || 0),
        Err(DpdkError::NotWorkerLcore(7))
    ));
    assert!(matches!(
        eal.launch(100_000, || 0),
        Err(DpdkError::NotWorkerLcore(_))
    ));

    // A panicking job is caught at the lcore boundary; the lcore stays usable.
    eal.launch(worker, || panic!("worker job panics on purpose"))?;
    assert!(matches!(
        eal.wait(worker),
        Err(DpdkError::WorkerPanicked(1))
    ));
    eal.launch(worker, || 7)?;
    let results = eal.wait_all();
    assert_eq!(results.len(), 1);
    assert!(matches!(results[0], (1, Ok(7))));
    eal.cleanup()?;
    Ok(())
}

#[test]
fn threads_made_after_init_are_pinned_until_unpinned() -> anyhow::Result<()> {
    let before = current_thread_cpus()?;
    let eal = Eal::init(&eal_args("0", &[]))?;
    assert_eq!(current_thread_cpus()?, [0], "EAL pins the main lcore");
    let expected = before.clone();
    let spawned = std::thread::spawn(move || -> Result<(Vec<usize>, Vec<usize>), DpdkError> {
        let inherited = current_thread_cpus()?;
        assert_eq!(current_lcore(), None, "a plain thread is no lcore");
        unpin_current_thread()?;
        Ok((inherited, current_thread_cpus()?))
    });
    let (inherited, unpinned) = spawned
        .join()
        .map_err(|_| anyhow::anyhow!("thread panicked"))??;
    assert_eq!(inherited, [0], "threads inherit the main lcore's pinning");
    assert_eq!(
        unpinned, expected,
        "unpin restores the affinity from before EAL init"
    );
    assert_eq!(cpus_before_eal(), before);
    let pinned = std::thread::spawn(|| -> Result<Vec<usize>, DpdkError> {
        assert!(matches!(
            pin_current_thread(&[]),
            Err(DpdkError::Affinity(_))
        ));
        assert!(matches!(
            pin_current_thread(&[usize::MAX]),
            Err(DpdkError::Affinity(_))
        ));
        unpin_current_thread()?;
        pin_current_thread(&[0])?;
        current_thread_cpus()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread panicked"))??;
    assert_eq!(pinned, [0], "pin restricts the thread to the CPUs given");
    drop(eal);
    Ok(())
}

/// The plugin case: the host initialised EAL itself; the plugin's handle uses it and never cleans it up.
#[test]
fn from_host_uses_the_hosts_eal_and_leaves_it_running() -> anyhow::Result<()> {
    let args = eal_args("0", &["--vdev=net_ring0".to_owned()]);
    let owned: Vec<std::ffi::CString> = std::iter::once("host".to_owned())
        .chain(args)
        .map(std::ffi::CString::new)
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*mut std::ffi::c_char> =
        owned.iter().map(|arg| arg.as_ptr().cast_mut()).collect();
    // SAFETY: argv holds valid NUL-terminated strings that outlive EAL (leaked below); first and only init.
    let ret = unsafe { dpdk_sys::rte_eal_init(i32::try_from(argv.len())?, argv.as_mut_ptr()) };
    assert!(ret >= 0, "host EAL init failed");
    std::mem::forget(owned);

    // SAFETY: EAL is initialised (just above) and stays so for the whole test.
    let eal = unsafe { Eal::from_host() }?;
    assert!(matches!(
        Eal::init(&eal_args("0", &[])),
        Err(DpdkError::EalAlreadyInitialized)
    ));
    let pool = flowlog_vswitch::dpdk::Mempool::new(
        &eal,
        "plugin",
        255,
        0,
        flowlog_vswitch::dpdk::Mempool::DEFAULT_DATA_ROOM,
        flowlog_vswitch::dpdk::Socket::Any,
    )?;
    let port = flowlog_vswitch::dpdk::Port::by_name(&eal, "net_ring0")?;
    assert_eq!(port.info()?.driver_name, "net_ring");
    drop((port, pool));
    eal.cleanup()?;

    // EAL still runs for the host: it can still make a pool.
    let name = std::ffi::CString::new("host_after")?;
    // SAFETY: EAL is initialised; the name is NUL-terminated.
    let pool = unsafe {
        dpdk_sys::rte_pktmbuf_pool_create(
            name.as_ptr(),
            255,
            0,
            0,
            2176,
            dpdk_sys::FL_SOCKET_ID_ANY,
        )
    };
    assert!(!pool.is_null(), "the host's EAL was left running");
    // SAFETY: the pool was just made and nothing uses it.
    unsafe { dpdk_sys::rte_mempool_free(pool) };
    Ok(())
}
