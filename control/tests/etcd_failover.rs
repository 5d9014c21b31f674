//! Replicas on a real etcd: one serves, the other answers `NotLeader`; kill -9 of the serving replica hands over to
//! the other, and a host's watcher and an orchestrator's client carry on through it, as the plugin must.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use common::*;
use flowlog_control::client::{ControlClient, fails_over};
use flowlog_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::Code;

/// Starts a replica on `etcd` with a 1 s lease.
async fn replica(etcd: &Etcd, prefix: &str) -> anyhow::Result<Control> {
    let access = access_file();
    Control::start_with(&[
        "--etcd",
        &etcd.client_url,
        "--etcd-prefix",
        prefix,
        "--lease-ttl",
        "1",
        "--access",
        access.to_str().context("path")?,
        "--host-timeout",
        "5",
    ])
    .await
}

/// Index of the replica that serves, waiting for the election.
async fn leader_of(replicas: &[&Control]) -> anyhow::Result<usize> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        for (index, control) in replicas.iter().enumerate() {
            let mut admin = control.client(ADMIN).await?;
            match admin.list_vpcs(pb::ListVpcsRequest {}).await {
                Ok(_) => return Ok(index),
                Err(status) if status.code() == Code::Unavailable => {
                    assert!(status.message().starts_with("NotLeader: "), "{status:?}");
                }
                Err(status) => bail!("unexpected {status:?}"),
            }
        }
        if Instant::now() > deadline {
            bail!("no replica was elected within {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A host's plugin as `notes/h9-api.md` describes it: watch through the endpoint list, acknowledge every set
/// applied (and the held one after each reconnection), resume with the version held.
fn run_host(
    endpoints: Vec<String>,
    host: &'static str,
    token: &'static str,
) -> mpsc::UnboundedReceiver<pb::CaptureSet> {
    let (sets, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Ok(client) = ControlClient::new(&endpoints, Some(token)) else {
            return;
        };
        let mut client = client.with_patience(Duration::from_secs(60));
        let mut held: Option<pb::CaptureSet> = None;
        loop {
            let request = pb::WatchCaptureSetRequest {
                host: host.into(),
                state_id: held
                    .as_ref()
                    .map(|s| s.state_id.clone())
                    .unwrap_or_default(),
                known_version: held.as_ref().map_or(0, |s| s.version),
            };
            let mut stream = match client
                .call(|mut c| {
                    let request = request.clone();
                    async move { c.watch_capture_set(request).await }
                })
                .await
            {
                Ok(stream) => stream,
                Err(status) => {
                    eprintln!("host loop: watch refused: {status:?}");
                    return;
                }
            };
            if let Some(set) = &held {
                acknowledge(&mut client, host, set).await;
            }
            loop {
                match stream.message().await {
                    Ok(Some(set)) => {
                        acknowledge(&mut client, host, &set).await;
                        held = Some(set.clone());
                        if sets.send(set).is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(status) if fails_over(&status) => break,
                    Err(_) => break,
                }
            }
        }
    });
    received
}

async fn acknowledge(client: &mut ControlClient, host: &str, set: &pb::CaptureSet) {
    let request = pb::AckCaptureSetRequest {
        host: host.into(),
        state_id: set.state_id.clone(),
        version: set.version,
    };
    let acked = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.ack_capture_set(request).await }
        })
        .await;
    if let Err(status) = acked {
        eprintln!("ack failed: {status}");
    }
}

async fn next_set(
    sets: &mut mpsc::UnboundedReceiver<pb::CaptureSet>,
) -> anyhow::Result<pb::CaptureSet> {
    tokio::time::timeout(PATIENCE, sets.recv())
        .await
        .context("no capture set in time")?
        .context("the host loop ended")
}

async fn call_status(client: &mut ControlClient, id: &str) -> anyhow::Result<String> {
    let request = pb::DescribeFlowLogsRequest {
        flow_log_id: id.into(),
        ..Default::default()
    };
    let page = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.describe_flow_logs(request).await }
        })
        .await?;
    Ok(page
        .flow_logs
        .first()
        .map(|fl| fl.status.clone())
        .unwrap_or_default())
}

async fn wait_call_status(
    client: &mut ControlClient,
    id: &str,
    wanted: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = call_status(client, id).await?;
        if status == wanted {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{id} is {status}, not {wanted}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn killing_the_serving_replica_hands_over_to_another() -> anyhow::Result<()> {
    let etcd = Etcd::start().await?;
    let prefix = "/flowlog-test/cn-hangzhou/";
    let mut replicas = vec![replica(&etcd, prefix).await?, replica(&etcd, prefix).await?];
    let leader = leader_of(&[&replicas[0], &replicas[1]]).await?;
    let standby = 1 - leader;
    // The standby refuses with NotLeader (UNAVAILABLE), so that clients move on.
    let mut direct = replicas[standby].client(ADMIN).await?;
    let status = direct.list_vpcs(pb::ListVpcsRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().starts_with("NotLeader: "), "{status:?}");

    // Clients list the standby first: they skip it.
    let endpoints = vec![
        replicas[standby].addr.clone(),
        replicas[leader].addr.clone(),
    ];
    let mut admin = ControlClient::new(&endpoints, Some(ADMIN))?;
    let mut tenant = ControlClient::new(&endpoints, Some(TENANT_A))?;
    let register = |id: &str, mac: &str| eni(id, mac, "vsw-1", "vpc-1", "host-a", ACCOUNT_A);
    let request = register("eni-1", "02:00:00:00:00:01");
    admin
        .call(|mut c| {
            let request = request.clone();
            async move { c.register_network_interface(request).await }
        })
        .await?;
    let request = flow_log(pb::ResourceType::Vpc, "vpc-1", "tenant-a", "vpc1");
    let vpc_log = tenant
        .call(|mut c| {
            let request = request.clone();
            async move { c.create_flow_log(request).await }
        })
        .await?
        .flow_log_id;
    let mut sets = run_host(endpoints.clone(), "host-a", HOST_A);
    let first = next_set(&mut sets).await?;
    assert_eq!(
        summary(&first),
        vec![("eni-1".to_owned(), vec![vpc_log.clone()])]
    );
    wait_call_status(&mut tenant, &vpc_log, "Active").await?;

    // kill -9 the serving replica.
    let killed_at = Instant::now();
    replicas[leader].child.kill().await?;

    // The orchestrator's next change goes through the other replica once it is elected.
    let request = register("eni-2", "02:00:00:00:00:02");
    admin
        .call(|mut c| {
            let request = request.clone();
            async move { c.register_network_interface(request).await }
        })
        .await?;
    let client_latency = killed_at.elapsed();
    // The watcher reconnected and gets the new ENI (after one full set from the new leader, at most).
    let deadline = Instant::now() + PATIENCE;
    let set = loop {
        let set = next_set(&mut sets).await?;
        if set.interfaces.len() == 2 {
            break set;
        }
        assert_eq!(
            summary(&set),
            summary(&first),
            "a set before the new ENI holds the old one"
        );
        if Instant::now() > deadline {
            bail!("the new ENI never reached the watcher");
        }
    };
    let watcher_latency = killed_at.elapsed();
    println!(
        "fail-over: client call after {client_latency:?}, watcher has the new ENI after {watcher_latency:?}"
    );
    assert_eq!(
        summary(&set),
        vec![
            ("eni-1".to_owned(), vec![vpc_log.clone()]),
            ("eni-2".to_owned(), vec![vpc_log.clone()])
        ]
    );
    assert_eq!(set.state_id, first.state_id, "the same state, from etcd");
    assert!(set.version > first.version);

    // The state survived, statuses included, and acknowledgements reach the new leader.
    assert_eq!(call_status(&mut tenant, &vpc_log).await?, "Active");
    let request = flow_log(
        pb::ResourceType::NetworkInterface,
        "eni-2",
        "tenant-a",
        "eni2",
    );
    let eni_log = tenant
        .call(|mut c| {
            let request = request.clone();
            async move { c.create_flow_log(request).await }
        })
        .await?
        .flow_log_id;
    let set = next_set(&mut sets).await?;
    assert_eq!(
        summary(&set)[1],
        ("eni-2".to_owned(), vec![vpc_log.clone(), eni_log.clone()])
    );
    wait_call_status(&mut tenant, &eni_log, "Active").await?;

    // The survivor restarts nothing: the killed replica, started again, stands by.
    replicas.remove(leader);
    let again = replica(&etcd, prefix).await?;
    let mut direct = again.client(ADMIN).await?;
    let status = direct.list_vpcs(pb::ListVpcsRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    Ok(())
}

#[tokio::test]
async fn a_deposed_leaders_writes_are_fenced() -> anyhow::Result<()> {
    use flowlog_control::store::etcd::EtcdStore;
    use flowlog_control::store::{Batch, Store, StoreError};

    let etcd = Etcd::start().await?;
    let client = etcd_client::Client::connect([&etcd.client_url], None).await?;
    let lease = client.lease_client().grant(5, None).await?.id();
    let mut elections = client.election_client();
    let elected = elections
        .campaign("/fence-test/leader", "me", lease)
        .await?;
    let leader = elected.leader().context("leader key")?;
    let store = Store::Etcd(Box::new(EtcdStore::new(
        client.clone(),
        "/fence-test/",
        (leader.key().to_vec(), leader.rev()),
    )));
    let batch = |key: &str| Batch {
        puts: vec![(key.to_owned(), b"{}".to_vec())],
        deletes: vec![],
    };
    store.commit(batch("a")).await?;
    assert_eq!(store.load().await?, vec![("a".to_owned(), b"{}".to_vec())]);
    // The lease ends (the replica died or was cut off): its leader key goes, and so does its right to write.
    client.lease_client().revoke(lease).await?;
    let refused = store.commit(batch("b")).await.unwrap_err();
    assert!(matches!(refused, StoreError::Fenced), "{refused}");
    assert_eq!(store.load().await?.len(), 1, "nothing was written");
    Ok(())
}
