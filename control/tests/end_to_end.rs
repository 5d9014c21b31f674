//! End-to-end tests of `flowlog-control` on its embedded store: the real binary on a real loopback socket, driven
//! over gRPC with the example access file's tokens and through the CLI functions, killed with SIGKILL and SIGTERM,
//! restarted on its state file.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use common::*;
use flowlog_control::cli::{self, ControlCommand};
use flowlog_proto::v1 as pb;
use tokio::io::AsyncReadExt as _;
use tokio::process::Command;
use tonic::Code;

#[tokio::test]
async fn capture_sets_follow_changes_and_survive_kill_9() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state_file = dir.path().join("control.redb");
    let mut control = Control::start(&state_file, &[]).await?;
    let mut admin = control.client(ADMIN).await?;
    let mut tenant = control.client(TENANT_A).await?;
    let mut host_a = control.client(HOST_A).await?;
    let mut host_b = control.client(HOST_B).await?;
    let a = ACCOUNT_A;

    for request in [
        eni("eni-a1", "02:00:00:0a:00:01", "vsw-1", "vpc-1", "host-a", a),
        eni("eni-a2", "02:00:00:0a:00:02", "vsw-9", "vpc-9", "host-a", a),
        eni("eni-b1", "02:00:00:0b:00:01", "vsw-2", "vpc-1", "host-b", a),
    ] {
        admin.register_network_interface(request).await?;
    }
    let vpc_log = tenant
        .create_flow_log(flow_log(
            pb::ResourceType::Vpc,
            "vpc-1",
            "tenant-a",
            "vpc-store",
        ))
        .await?
        .into_inner()
        .flow_log_id;
    assert!(
        vpc_log.starts_with("fl-") && vpc_log.len() > 10,
        "{vpc_log}"
    );
    assert_eq!(
        status_of(&mut tenant, &vpc_log).await?.as_deref(),
        Some("Activating")
    );

    let mut watch_a = watch(&mut host_a, "host-a").await?;
    let mut watch_b = watch(&mut host_b, "host-b").await?;
    let first_a = next(&mut watch_a).await?;
    assert_eq!(first_a.region_id, "cn-hangzhou");
    assert!(!first_a.state_id.is_empty());
    assert_eq!(
        summary(&first_a),
        vec![("eni-a1".to_owned(), vec![vpc_log.clone()])]
    );
    let destination = &first_a.interfaces[0].destinations[0];
    assert_eq!(
        (
            destination.project.as_str(),
            destination.logstore.as_str(),
            destination.interval_seconds
        ),
        ("tenant-a", "vpc-store", 600)
    );
    assert_eq!(destination.traffic_type, i32::from(pb::TrafficType::All));
    let first_b = next(&mut watch_b).await?;
    assert_eq!(
        summary(&first_b),
        vec![("eni-b1".to_owned(), vec![vpc_log.clone()])]
    );

    // Activating until both hosts acknowledged.
    assert!(ack(&mut host_a, "host-a", &first_a).await?);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        status_of(&mut tenant, &vpc_log).await?.as_deref(),
        Some("Activating")
    );
    assert!(ack(&mut host_b, "host-b", &first_b).await?);
    wait_status(&mut tenant, &vpc_log, Some("Active")).await?;

    // An ENI registered later in the VPC is captured: it reaches host A's watcher at once.
    let started = Instant::now();
    admin
        .register_network_interface(eni(
            "eni-a3",
            "02:00:00:0a:00:03",
            "vsw-3",
            "vpc-1",
            "host-a",
            a,
        ))
        .await?;
    let second_a = next(&mut watch_a).await?;
    let latency = started.elapsed();
    println!("register-to-watcher latency: {latency:?}");
    assert!(second_a.version > first_a.version);
    assert_eq!(
        summary(&second_a),
        vec![
            ("eni-a1".to_owned(), vec![vpc_log.clone()]),
            ("eni-a3".to_owned(), vec![vpc_log.clone()])
        ]
    );
    ack(&mut host_a, "host-a", &second_a).await?;

    // Host B was not woken by the host-A-only change: the next set it receives is the one of its own change.
    admin
        .register_network_interface(eni(
            "eni-b2",
            "02:00:00:0b:00:02",
            "vsw-2",
            "vpc-1",
            "host-b",
            a,
        ))
        .await?;
    let second_b = next(&mut watch_b).await?;
    assert_eq!(
        summary(&second_b),
        vec![
            ("eni-b1".to_owned(), vec![vpc_log.clone()]),
            ("eni-b2".to_owned(), vec![vpc_log.clone()])
        ]
    );
    assert!(second_b.version > second_a.version);
    ack(&mut host_b, "host-b", &second_b).await?;

    // Several flow logs on one ENI: each is a destination.
    let eni_log = tenant
        .create_flow_log(pb::CreateFlowLogRequest {
            traffic_type: pb::TrafficType::Drop.into(),
            aggregation_interval: 1,
            client_token: "retry-me".into(),
            ..flow_log(
                pb::ResourceType::NetworkInterface,
                "eni-a1",
                "tenant-a-audit",
                "eni-store",
            )
        })
        .await?
        .into_inner()
        .flow_log_id;
    let third_a = next(&mut watch_a).await?;
    assert_eq!(
        summary(&third_a)[0],
        ("eni-a1".to_owned(), vec![vpc_log.clone(), eni_log.clone()])
    );
    assert_eq!(third_a.interfaces[0].destinations[1].interval_seconds, 60);
    ack(&mut host_a, "host-a", &third_a).await?;
    wait_status(&mut tenant, &eni_log, Some("Active")).await?;

    // Deleting the VPC flow log: Deleting, host B's set empties and host A keeps only the ENI flow log; gone once
    // both acknowledged.
    tenant
        .delete_flow_log(pb::DeleteFlowLogRequest {
            flow_log_id: vpc_log.clone(),
            ..Default::default()
        })
        .await?;
    assert_eq!(
        status_of(&mut tenant, &vpc_log).await?.as_deref(),
        Some("Deleting")
    );
    let emptied_b = next(&mut watch_b).await?;
    assert!(emptied_b.interfaces.is_empty());
    assert!(emptied_b.version > second_b.version);
    let fourth_a = next(&mut watch_a).await?;
    assert_eq!(
        summary(&fourth_a),
        vec![("eni-a1".to_owned(), vec![eni_log.clone()])]
    );
    ack(&mut host_a, "host-a", &fourth_a).await?;
    ack(&mut host_b, "host-b", &emptied_b).await?;
    wait_status(&mut tenant, &vpc_log, None).await?;

    // Rebuild some state, then kill -9 and restart on the same file: everything is still there.
    let vsw_log = tenant
        .create_flow_log(pb::CreateFlowLogRequest {
            client_token: "token-1".into(),
            flow_log_name: "vsw-two".into(),
            ..flow_log(pb::ResourceType::Vswitch, "vsw-2", "tenant-a", "vsw-store")
        })
        .await?
        .into_inner()
        .flow_log_id;
    let enis_before = admin
        .list_network_interfaces(pb::ListNetworkInterfacesRequest::default())
        .await?
        .into_inner()
        .network_interfaces;
    let set_b_before = next(&mut watch_b).await?;
    assert_eq!(
        summary(&set_b_before),
        vec![
            ("eni-b1".to_owned(), vec![vsw_log.clone()]),
            ("eni-b2".to_owned(), vec![vsw_log.clone()])
        ]
    );
    let logs_before = describe_all(&mut tenant).await?;
    control.child.kill().await?;
    let end = tokio::time::timeout(PATIENCE, watch_b.message()).await?;
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");

    let control = Control::start(&state_file, &[]).await?;
    let mut admin = control.client(ADMIN).await?;
    let mut tenant = control.client(TENANT_A).await?;
    let mut host_b = control.client(HOST_B).await?;
    let enis_after = admin
        .list_network_interfaces(pb::ListNetworkInterfacesRequest::default())
        .await?
        .into_inner()
        .network_interfaces;
    assert_eq!(enis_after, enis_before);
    assert_eq!(enis_after.len(), 5);
    assert_eq!(describe_all(&mut tenant).await?, logs_before);
    // After a restart the host gets one full set (same content, same state id), which it acknowledges.
    let mut watch_b = watch(&mut host_b, "host-b").await?;
    let after = next(&mut watch_b).await?;
    assert_eq!(after.interfaces, set_b_before.interfaces);
    assert_eq!(after.state_id, set_b_before.state_id);
    assert!(after.version >= set_b_before.version);
    assert!(ack(&mut host_b, "host-b", &after).await?);
    wait_status(&mut tenant, &vsw_log, Some("Active")).await?;
    // The client token survived too.
    let again = tenant
        .create_flow_log(pb::CreateFlowLogRequest {
            client_token: "token-1".into(),
            flow_log_name: "vsw-two".into(),
            ..flow_log(pb::ResourceType::Vswitch, "vsw-2", "tenant-a", "vsw-store")
        })
        .await?
        .into_inner()
        .flow_log_id;
    assert_eq!(again, vsw_log);
    Ok(())
}

#[tokio::test]
async fn every_status_transition_and_dead_hosts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let control = Control::start(&dir.path().join("state.redb"), &["--host-timeout", "1"]).await?;
    let mut admin = control.client(ADMIN).await?;
    let mut tenant = control.client(TENANT_A).await?;
    let mut host_a = control.client(HOST_A).await?;
    admin
        .register_network_interface(eni(
            "eni-1",
            "02:00:00:00:00:01",
            "vsw-1",
            "vpc-1",
            "host-a",
            ACCOUNT_A,
        ))
        .await?;
    admin
        .register_network_interface(eni(
            "eni-2",
            "02:00:00:00:00:02",
            "vsw-2",
            "vpc-1",
            "host-b",
            ACCOUNT_A,
        ))
        .await?;
    // A VPC with no ENI: Active at once.
    admin
        .create_vpc(pb::CreateVpcRequest {
            vpc: Some(pb::Vpc {
                vpc_id: "vpc-empty".into(),
                account_id: ACCOUNT_A.into(),
                creation_time: 0,
            }),
        })
        .await?;
    let empty = tenant
        .create_flow_log(flow_log(
            pb::ResourceType::Vpc,
            "vpc-empty",
            "tenant-a",
            "empty",
        ))
        .await?
        .into_inner()
        .flow_log_id;
    assert_eq!(
        status_of(&mut tenant, &empty).await?.as_deref(),
        Some("Active")
    );

    let mut stream = watch(&mut host_a, "host-a").await?;
    let initial = next(&mut stream).await?;
    assert!(initial.interfaces.is_empty());
    ack(&mut host_a, "host-a", &initial).await?;
    let id = tenant
        .create_flow_log(flow_log(
            pb::ResourceType::Vswitch,
            "vsw-1",
            "tenant-a",
            "vsw1",
        ))
        .await?
        .into_inner()
        .flow_log_id;
    assert_eq!(
        status_of(&mut tenant, &id).await?.as_deref(),
        Some("Activating")
    );
    let set = next(&mut stream).await?;
    assert_eq!(summary(&set), vec![("eni-1".to_owned(), vec![id.clone()])]);
    ack(&mut host_a, "host-a", &set).await?;
    wait_status(&mut tenant, &id, Some("Active")).await?;

    // Modify: the interval reaches the host; name and description show in DescribeFlowLogs.
    tenant
        .modify_flow_log_attribute(pb::ModifyFlowLogAttributeRequest {
            flow_log_id: id.clone(),
            flow_log_name: Some("renamed".into()),
            description: Some("one vSwitch".into()),
            aggregation_interval: 5,
            ..Default::default()
        })
        .await?;
    let set = next(&mut stream).await?;
    assert_eq!(set.interfaces[0].destinations[0].interval_seconds, 300);
    let described = describe_all(&mut tenant).await?;
    let fl = described
        .iter()
        .find(|fl| fl.flow_log_id == id)
        .context("described")?;
    assert_eq!(
        (
            fl.flow_log_name.as_str(),
            fl.description.as_str(),
            fl.aggregation_interval
        ),
        ("renamed", "one vSwitch", 5)
    );
    assert_eq!(
        (fl.account_id.as_str(), fl.vpc_id.as_str()),
        (ACCOUNT_A, "vpc-1")
    );
    check(
        tenant
            .modify_flow_log_attribute(pb::ModifyFlowLogAttributeRequest {
                flow_log_id: id.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "MissingParameter.Attribute",
    );

    // Deactive: Inactive at once, the host's set empties; a second Deactive is refused.
    let request = pb::DeactiveFlowLogRequest {
        flow_log_id: id.clone(),
        ..Default::default()
    };
    tenant.deactive_flow_log(request.clone()).await?;
    assert_eq!(
        status_of(&mut tenant, &id).await?.as_deref(),
        Some("Inactive")
    );
    assert!(next(&mut stream).await?.interfaces.is_empty());
    check(
        tenant.deactive_flow_log(request).await,
        Code::FailedPrecondition,
        "IncorrectStatus.FlowLog",
    );
    let described = tenant
        .describe_flow_logs(pb::DescribeFlowLogsRequest {
            status: "Inactive".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(described.total_count, 1);

    // Active: Activating until acknowledged again, then Active; a second Active is refused.
    let request = pb::ActiveFlowLogRequest {
        flow_log_id: id.clone(),
        ..Default::default()
    };
    tenant.active_flow_log(request.clone()).await?;
    assert_eq!(
        status_of(&mut tenant, &id).await?.as_deref(),
        Some("Activating")
    );
    let set = next(&mut stream).await?;
    assert_eq!(summary(&set), vec![("eni-1".to_owned(), vec![id.clone()])]);
    ack(&mut host_a, "host-a", &set).await?;
    wait_status(&mut tenant, &id, Some("Active")).await?;
    check(
        tenant.active_flow_log(request).await,
        Code::FailedPrecondition,
        "IncorrectStatus.FlowLog",
    );

    // Acknowledging a version the host was never sent is refused; a set of another state id is ignored.
    check(
        host_a
            .ack_capture_set(pb::AckCaptureSetRequest {
                host: "host-a".into(),
                state_id: set.state_id.clone(),
                version: set.version + 1000,
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter.Version",
    );
    let ignored = host_a
        .ack_capture_set(pb::AckCaptureSetRequest {
            host: "host-a".into(),
            state_id: "st-other".into(),
            version: 1,
        })
        .await?
        .into_inner();
    assert!(!ignored.accepted);

    // Resuming a watch with the version the host has: nothing is sent until the next change.
    let mut resumed = host_a
        .watch_capture_set(pb::WatchCaptureSetRequest {
            host: "host-a".into(),
            state_id: set.state_id.clone(),
            known_version: set.version,
        })
        .await?
        .into_inner();
    let quiet = tokio::time::timeout(Duration::from_millis(300), resumed.message()).await;
    assert!(quiet.is_err(), "a resumed watch sent {quiet:?}");

    // Delete while host A watches: Deleting until it acknowledges.
    tenant
        .delete_flow_log(pb::DeleteFlowLogRequest {
            flow_log_id: id.clone(),
            ..Default::default()
        })
        .await?;
    assert_eq!(
        status_of(&mut tenant, &id).await?.as_deref(),
        Some("Deleting")
    );
    let emptied = next(&mut stream).await?;
    assert!(emptied.interfaces.is_empty());
    assert_eq!(
        next(&mut resumed).await?,
        emptied,
        "the resumed watch gets the change too"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        status_of(&mut tenant, &id).await?.as_deref(),
        Some("Deleting"),
        "a watching host is alive: the deletion waits for it"
    );
    ack(&mut host_a, "host-a", &emptied).await?;
    wait_status(&mut tenant, &id, None).await?;

    // A host that never watches (host-b) holds a VPC flow log in Activating only until the host timeout (1 s).
    let vpc_log = tenant
        .create_flow_log(flow_log(pb::ResourceType::Vpc, "vpc-1", "tenant-a", "vpc1"))
        .await?
        .into_inner()
        .flow_log_id;
    let set = next(&mut stream).await?;
    ack(&mut host_a, "host-a", &set).await?;
    wait_status(&mut tenant, &vpc_log, Some("Active")).await?;
    // A host whose watch ended holds a deletion only until the host timeout.
    drop(stream);
    drop(resumed);
    tenant
        .delete_flow_log(pb::DeleteFlowLogRequest {
            flow_log_id: vpc_log.clone(),
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    wait_status(&mut tenant, &vpc_log, None).await?;
    println!(
        "deletion with a dead host completed after {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn quota_and_inventory() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let control = Control::start(&dir.path().join("state.redb"), &["--quota", "2"]).await?;
    let mut admin = control.client(ADMIN).await?;
    let mut tenant = control.client(TENANT_A).await?;
    let vpc = |id: &str| pb::CreateVpcRequest {
        vpc: Some(pb::Vpc {
            vpc_id: id.into(),
            account_id: ACCOUNT_A.into(),
            creation_time: 0,
        }),
    };
    let vswitch = |id: &str, vpc: &str| pb::CreateVSwitchRequest {
        vswitch: Some(pb::VSwitch {
            vswitch_id: id.into(),
            vpc_id: vpc.into(),
            account_id: ACCOUNT_A.into(),
            creation_time: 0,
        }),
    };
    admin.create_vpc(vpc("vpc-q")).await?;
    admin.create_vpc(vpc("vpc-q")).await?; // idempotent
    admin.create_v_switch(vswitch("vsw-q", "vpc-q")).await?;
    check(
        admin.create_v_switch(vswitch("vsw-x", "vpc-none")).await,
        Code::NotFound,
        "InvalidVpcId.NotFound",
    );
    check(
        admin
            .create_v_switch(pb::CreateVSwitchRequest {
                vswitch: Some(pb::VSwitch {
                    account_id: ACCOUNT_B.into(),
                    ..vswitch("vsw-y", "vpc-q").vswitch.context("vswitch")?
                }),
            })
            .await,
        Code::InvalidArgument,
        "InvalidAccountId.Mismatch",
    );
    check(
        admin.create_vpc(pb::CreateVpcRequest { vpc: None }).await,
        Code::InvalidArgument,
        "MissingParameter.Vpc",
    );
    admin
        .register_network_interface(eni(
            "eni-q1",
            "02:00:00:00:0a:01",
            "vsw-q",
            "vpc-q",
            "host-a",
            ACCOUNT_A,
        ))
        .await?;
    let vswitches = tenant
        .list_v_switches(pb::ListVSwitchesRequest {
            vpc_id: "vpc-q".into(),
        })
        .await?
        .into_inner()
        .vswitches;
    assert_eq!(vswitches.len(), 1);
    assert_eq!(vswitches[0].account_id, ACCOUNT_A);
    check(
        admin
            .delete_v_switch(pb::DeleteVSwitchRequest {
                vswitch_id: "vsw-q".into(),
            })
            .await,
        Code::FailedPrecondition,
        "DependencyViolation.NetworkInterface",
    );
    check(
        admin
            .delete_vpc(pb::DeleteVpcRequest {
                vpc_id: "vpc-q".into(),
            })
            .await,
        Code::FailedPrecondition,
        "DependencyViolation.VSwitch",
    );

    // Quota 2 per account: the third is refused, until one is deleted.
    let mut made = Vec::new();
    for store in ["q-one", "q-two"] {
        made.push(
            tenant
                .create_flow_log(flow_log(pb::ResourceType::Vpc, "vpc-q", "tenant-a", store))
                .await?
                .into_inner()
                .flow_log_id,
        );
    }
    check(
        tenant
            .create_flow_log(flow_log(
                pb::ResourceType::Vpc,
                "vpc-q",
                "tenant-a",
                "q-three",
            ))
            .await,
        Code::ResourceExhausted,
        "QuotaExceeded.FlowLog",
    );
    tenant
        .delete_flow_log(pb::DeleteFlowLogRequest {
            flow_log_id: made[0].clone(),
            ..Default::default()
        })
        .await?;
    tenant
        .create_flow_log(flow_log(
            pb::ResourceType::Vpc,
            "vpc-q",
            "tenant-a",
            "q-three",
        ))
        .await?;

    // Tear the inventory down in order.
    admin
        .deregister_network_interface(pb::DeregisterNetworkInterfaceRequest {
            eni_id: "eni-q1".into(),
        })
        .await?;
    admin
        .delete_v_switch(pb::DeleteVSwitchRequest {
            vswitch_id: "vsw-q".into(),
        })
        .await?;
    admin
        .delete_vpc(pb::DeleteVpcRequest {
            vpc_id: "vpc-q".into(),
        })
        .await?;
    assert!(
        admin
            .list_vpcs(pb::ListVpcsRequest {})
            .await?
            .into_inner()
            .vpcs
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn errors_carry_stable_codes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let control = Control::start(&dir.path().join("state.redb"), &[]).await?;
    let mut admin = control.client(ADMIN).await?;
    let e = |id: &str, mac: &str, host: &str| eni(id, mac, "vsw-1", "vpc-1", host, ACCOUNT_A);
    admin
        .register_network_interface(e("eni-1", "02:00:00:00:00:01", "h"))
        .await?;

    check(
        admin
            .register_network_interface(e("eni-2", "02:00:00:00:00", "h"))
            .await,
        Code::InvalidArgument,
        "InvalidMacAddress.Malformed",
    );
    check(
        admin
            .register_network_interface(e("eni-2", "03:00:00:00:00:02", "h"))
            .await,
        Code::InvalidArgument,
        "InvalidMacAddress.NotUnicast",
    );
    check(
        admin
            .register_network_interface(e("eni-2", "02:00:00:00:00:01", "h"))
            .await,
        Code::AlreadyExists,
        "InvalidMacAddress.InUse",
    );
    check(
        admin
            .register_network_interface(e("nic-2", "02:00:00:00:00:02", "h"))
            .await,
        Code::InvalidArgument,
        "InvalidNetworkInterfaceId.Malformed",
    );
    check(
        admin
            .register_network_interface(e("eni-2", "02:00:00:00:00:02", ""))
            .await,
        Code::InvalidArgument,
        "InvalidParameter.Host",
    );
    check(
        admin
            .register_network_interface(pb::RegisterNetworkInterfaceRequest {
                network_interface: None,
            })
            .await,
        Code::InvalidArgument,
        "MissingParameter.NetworkInterface",
    );
    check(
        admin
            .deregister_network_interface(pb::DeregisterNetworkInterfaceRequest {
                eni_id: "eni-404".into(),
            })
            .await,
        Code::NotFound,
        "InvalidNetworkInterfaceId.NotFound",
    );
    let fl = |resource_type, id: &str| flow_log(resource_type, id, "tenant-a", "store");
    check(
        admin
            .create_flow_log(fl(pb::ResourceType::Vpc, "vpc-404"))
            .await,
        Code::NotFound,
        "InvalidResourceId.NotFound",
    );
    check(
        admin
            .create_flow_log(pb::CreateFlowLogRequest {
                project_name: "Bad_Project".into(),
                ..fl(pb::ResourceType::Vpc, "vpc-1")
            })
            .await,
        Code::InvalidArgument,
        "InvalidProjectName.Malformed",
    );
    check(
        admin
            .create_flow_log(pb::CreateFlowLogRequest {
                aggregation_interval: 7,
                ..fl(pb::ResourceType::Vpc, "vpc-1")
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter.AggregationInterval",
    );
    check(
        admin
            .create_flow_log(pb::CreateFlowLogRequest {
                resource_type: 99,
                ..fl(pb::ResourceType::Vpc, "vpc-1")
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter.ResourceType",
    );
    check(
        admin
            .create_flow_log(pb::CreateFlowLogRequest {
                traffic_type: 42,
                ..fl(pb::ResourceType::Vpc, "vpc-1")
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter.TrafficType",
    );
    check(
        admin
            .create_flow_log(pb::CreateFlowLogRequest {
                region_id: "us-east-1".into(),
                ..fl(pb::ResourceType::Vpc, "vpc-1")
            })
            .await,
        Code::NotFound,
        "InvalidRegionId.NotFound",
    );
    check(
        admin
            .delete_flow_log(pb::DeleteFlowLogRequest {
                flow_log_id: "fl-404".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "InvalidFlowLogId.NotFound",
    );
    check(
        admin
            .active_flow_log(pb::ActiveFlowLogRequest {
                flow_log_id: String::new(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter.FlowLogId",
    );
    check(
        admin
            .describe_flow_logs(pb::DescribeFlowLogsRequest {
                page_size: 51,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter.PageSize",
    );
    check(
        admin
            .describe_flow_logs(pb::DescribeFlowLogsRequest {
                status: "Sleeping".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter.Status",
    );
    check(
        admin
            .watch_capture_set(pb::WatchCaptureSetRequest {
                host: String::new(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "InvalidParameter.Host",
    );
    // Without a token, or with a wrong one.
    let mut anonymous = client(&control.addr, None).await?;
    check(
        anonymous.list_vpcs(pb::ListVpcsRequest {}).await,
        Code::Unauthenticated,
        "Unauthenticated.MissingToken",
    );
    let mut stranger = client(&control.addr, Some("not-a-known-token")).await?;
    check(
        stranger.list_vpcs(pb::ListVpcsRequest {}).await,
        Code::Unauthenticated,
        "Unauthenticated.InvalidToken",
    );

    // Idempotency over the wire; a duplicate destination without a token is refused.
    let request = pb::CreateFlowLogRequest {
        client_token: "abc".into(),
        ..fl(pb::ResourceType::Vpc, "vpc-1")
    };
    let first = admin
        .create_flow_log(request.clone())
        .await?
        .into_inner()
        .flow_log_id;
    let second = admin
        .create_flow_log(request)
        .await?
        .into_inner()
        .flow_log_id;
    assert_eq!(first, second);
    check(
        admin
            .create_flow_log(fl(pb::ResourceType::Vpc, "vpc-1"))
            .await,
        Code::AlreadyExists,
        "AlreadyExists.FlowLog",
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_ends_watch_streams_and_exits_cleanly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut control = Control::start(&dir.path().join("state.redb"), &[]).await?;
    let mut host = control.client(HOST_A).await?;
    let mut stream = watch(&mut host, "host-a").await?;
    let first = next(&mut stream).await?;
    assert_eq!(first.interfaces.len(), 0);

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &control.pid()?.to_string()])
        .status()?;
    assert!(killed.success());
    let exit = tokio::time::timeout(PATIENCE, control.child.wait())
        .await
        .context("flowlog-control did not exit after SIGTERM")??;
    assert!(exit.success(), "{exit:?}");
    let end = tokio::time::timeout(PATIENCE, stream.message()).await?;
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    let extra = control.extra_stdout.await?;
    assert!(
        extra.is_empty(),
        "stdout holds only the listening line: {extra:?}"
    );
    Ok(())
}

/// Runs the binary with `args`, expecting it to fail at start; returns its stderr.
async fn start_fails(args: &[&str]) -> anyhow::Result<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowlog-control"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let status = tokio::time::timeout(PATIENCE, child.wait()).await??;
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut stderr)
        .await?;
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut stdout)
        .await?;
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(stderr)
}

#[tokio::test]
async fn bad_state_files_and_configurations_are_clear_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let access = access_file();
    let access = access.to_str().context("path")?;
    let state_file = dir.path().join("broken.redb");
    std::fs::write(&state_file, b"{\"format\": 1, \"region-id\": ")?;
    let state = state_file.to_str().context("path")?;
    let stderr = start_fails(&["--state-file", state, "--access", access]).await?;
    assert!(stderr.contains(state), "{stderr}");

    // A state of another region is refused.
    let other = dir.path().join("other.redb");
    let other = other.to_str().context("path")?;
    let mut control = Control::start_with(&[
        "--state-file",
        other,
        "--insecure-no-auth",
        "--region",
        "cn-beijing",
    ])
    .await?;
    control.child.kill().await?;
    control.child.wait().await?;
    let stderr = start_fails(&["--state-file", other, "--insecure-no-auth"]).await?;
    assert!(
        stderr.contains("cn-beijing") && stderr.contains("cn-hangzhou"),
        "{stderr}"
    );

    // Neither --access nor --insecure-no-auth; a malformed access file.
    let fresh = dir.path().join("fresh.redb");
    let stderr = start_fails(&["--state-file", fresh.to_str().context("path")?]).await?;
    assert!(stderr.contains("--access"), "{stderr}");
    let bad_access = dir.path().join("access.toml");
    std::fs::write(
        &bad_access,
        "[[account]]\nid = \"1\"\ntokens = [\"short\"]\n",
    )?;
    let stderr = start_fails(&[
        "--state-file",
        fresh.to_str().context("path")?,
        "--access",
        bad_access.to_str().context("path")?,
    ])
    .await?;
    assert!(
        stderr.contains("access.toml") && stderr.contains("at least 8"),
        "{stderr}"
    );
    Ok(())
}

async fn cli(command: &[&str]) -> anyhow::Result<String> {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ControlCommand,
    }
    let parsed = Cli::try_parse_from(std::iter::once("flowlog").chain(command.iter().copied()))?;
    let mut out = Vec::new();
    cli::run_with_output(parsed.command, &mut out).await?;
    Ok(String::from_utf8(out)?)
}

#[tokio::test]
async fn cli_drives_a_real_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let control = Control::start(&dir.path().join("state.redb"), &[]).await?;
    let addr = control.addr.trim_start_matches("http://").to_owned();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/sample/sample.enis.toml");
    let sample = sample.to_str().context("path")?;
    let admin = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--control".into(),
            addr.clone(),
            "--token".into(),
            ADMIN.into(),
        ]);
        all
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&refs).await
    };

    // The sample ENIs belong to account 100000000000 (tenant A).
    let out = run(admin(&[
        "import-enis",
        "--file",
        sample,
        "--host",
        "host-a",
    ]))
    .await?;
    assert_eq!(out, "registered 14 network interfaces on host host-a\n");
    let out = run(admin(&[
        "register-eni",
        "--eni-id",
        "eni-extra",
        "--mac",
        "02:00:00:ff:00:01",
        "--vm-id",
        "i-x",
        "--vswitch-id",
        "vsw-09",
        "--vpc-id",
        "vpc-9",
        "--account-id",
        ACCOUNT_B,
        "--host",
        "host-b",
    ]))
    .await?;
    assert_eq!(out, "registered eni-extra\n");
    let listed: serde_json::Value =
        serde_json::from_str(&run(admin(&["list-enis", "--host", "host-b", "--json"])).await?)?;
    assert_eq!(listed[0]["eni-id"], "eni-extra");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let table = run(admin(&["list-enis"])).await?;
    assert_eq!(table.lines().count(), 16, "{table}");
    assert_eq!(
        run(admin(&[
            "create-vpc",
            "--vpc-id",
            "vpc-cli",
            "--account-id",
            ACCOUNT_B
        ]))
        .await?,
        "created vpc-cli\n"
    );
    assert_eq!(
        run(admin(&[
            "create-vswitch",
            "--vswitch-id",
            "vsw-cli",
            "--vpc-id",
            "vpc-cli",
            "--account-id",
            ACCOUNT_B
        ]))
        .await?,
        "created vsw-cli\n"
    );
    assert!(
        run(admin(&["list-vswitches", "--vpc-id", "vpc-cli"]))
            .await?
            .contains("vsw-cli")
    );
    assert_eq!(
        run(admin(&["delete-vswitch", "--vswitch-id", "vsw-cli"])).await?,
        "deleted vsw-cli\n"
    );
    assert_eq!(
        run(admin(&["delete-vpc", "--vpc-id", "vpc-cli"])).await?,
        "deleted vpc-cli\n"
    );

    // Tenant A through FLOWLOG_TOKEN-less --token, listing only its own inventory.
    let tenant = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--control".into(),
            addr.clone(),
            "--token".into(),
            TENANT_A.into(),
        ]);
        all
    };
    let vpcs = run(tenant(&["list-vpcs", "--json"])).await?;
    assert!(vpcs.contains("vpc-0") && !vpcs.contains("vpc-9"), "{vpcs}");
    let id = run(tenant(&[
        "create-flow-log",
        "--resource-type",
        "VPC",
        "--resource-id",
        "vpc-0",
        "--project",
        "tenant-a",
        "--logstore",
        "flows",
        "--interval",
        "1",
        "--name",
        "vpc0-all",
    ]))
    .await?;
    let id = id.trim().to_owned();
    assert!(id.starts_with("fl-"), "{id}");
    let described: serde_json::Value = serde_json::from_str(
        &run(tenant(&[
            "describe-flow-logs",
            "--vpc-id",
            "vpc-0",
            "--json",
        ]))
        .await?,
    )?;
    assert_eq!(described["total-count"], 1);
    assert_eq!(described["flow-logs"][0]["flow-log-id"], id.as_str());
    assert_eq!(described["flow-logs"][0]["resource-type"], "VPC");
    assert_eq!(described["flow-logs"][0]["status"], "Activating");
    assert_eq!(described["flow-logs"][0]["aggregation-interval"], 1);
    assert_eq!(described["flow-logs"][0]["account-id"], ACCOUNT_A);

    // The host watches and acknowledges with the CLI: the flow log becomes Active.
    let host = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--control".into(),
            addr.clone(),
            "--token".into(),
            HOST_A.into(),
        ]);
        all
    };
    let watched = run(host(&[
        "watch", "--host", "host-a", "--count", "1", "--ack",
    ]))
    .await?;
    let set: serde_json::Value = serde_json::from_str(watched.trim())?;
    let interfaces = set["interfaces"].as_array().context("interfaces")?;
    assert_eq!(interfaces.len(), 8, "the 8 ENIs of vpc-0");
    assert_eq!(interfaces[0]["destinations"][0]["interval-seconds"], 60);
    assert_eq!(interfaces[0]["destinations"][0]["logstore"], "flows");
    let mut tenant_client = control.client(TENANT_A).await?;
    wait_status(&mut tenant_client, &id, Some("Active")).await?;
    let state_id = set["state-id"].as_str().context("state id")?.to_owned();
    let version = set["version"].as_u64().context("version")?.to_string();
    assert_eq!(
        run(host(&[
            "ack-capture-set",
            "--host",
            "host-a",
            "--state-id",
            &state_id,
            "--version",
            &version
        ]))
        .await?,
        "accepted\n"
    );

    assert_eq!(
        run(tenant(&[
            "modify-flow-log",
            "--flow-log-id",
            &id,
            "--interval",
            "5",
            "--description",
            "all of vpc-0"
        ]))
        .await?,
        format!("modified {id}\n")
    );
    assert_eq!(
        run(tenant(&["deactive-flow-log", "--flow-log-id", &id])).await?,
        format!("deactivated {id}\n")
    );
    assert_eq!(
        run(tenant(&["active-flow-log", "--flow-log-id", &id])).await?,
        format!("activating {id}\n")
    );
    let table = run(tenant(&["describe-flow-logs"])).await?;
    assert!(
        table.contains(&id)
            && table.contains("5m")
            && table.contains("page 1 (size 10) of 1 flow logs"),
        "{table}"
    );

    let refused = run(tenant(&[
        "create-flow-log",
        "--resource-type",
        "VSwitch",
        "--resource-id",
        "vsw-00",
        "--project",
        "Bad",
        "--logstore",
        "flows",
    ]))
    .await
    .expect_err("a bad project name is refused");
    assert!(
        format!("{refused:#}").contains("InvalidProjectName.Malformed"),
        "{refused:#}"
    );
    let refused = run(tenant(&["deregister-eni", "--eni-id", "eni-extra"]))
        .await
        .expect_err("tenants cannot");
    assert!(
        format!("{refused:#}").contains("Forbidden.Role"),
        "{refused:#}"
    );

    assert_eq!(
        run(tenant(&["delete-flow-log", "--flow-log-id", &id])).await?,
        format!("deleted {id}\n")
    );
    assert_eq!(
        run(admin(&["deregister-eni", "--eni-id", "eni-extra"])).await?,
        "deregistered eni-extra\n"
    );
    let unreachable = cli(&[
        "list-enis",
        "--control",
        "127.0.0.1:1",
        "--token",
        ADMIN,
        "--failover-timeout",
        "1",
    ])
    .await
    .expect_err("nobody listens there");
    assert!(
        format!("{unreachable:#}").contains("cannot connect"),
        "{unreachable:#}"
    );
    Ok(())
}

#[tokio::test]
async fn an_open_controller_needs_no_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state.redb");
    let control = Control::start_with(&[
        "--state-file",
        state.to_str().context("path")?,
        "--insecure-no-auth",
    ])
    .await?;
    let mut anyone = client(&control.addr, None).await?;
    anyone
        .register_network_interface(eni(
            "eni-1",
            "02:00:00:00:00:01",
            "vsw-1",
            "vpc-1",
            "h",
            "any",
        ))
        .await?;
    anyone
        .create_flow_log(flow_log(
            pb::ResourceType::Vpc,
            "vpc-1",
            "whatever-project",
            "store",
        ))
        .await?;
    let mut stream = watch(&mut anyone, "h").await?;
    assert_eq!(next(&mut stream).await?.interfaces.len(), 1);
    Ok(())
}

#[tokio::test]
async fn kill_9_during_a_stream_of_changes_loses_no_acknowledged_change() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state_file = dir.path().join("state.redb");
    let mut control = Control::start(&state_file, &[]).await?;
    let acknowledged = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..8u32 {
        let mut admin = control.client(ADMIN).await?;
        let acknowledged = acknowledged.clone();
        writers.spawn(async move {
            for n in 0..10_000u32 {
                let id = format!("eni-w{writer}n{n}");
                let mac = format!("02:00:00:{writer:02x}:{:02x}:{:02x}", n >> 8, n & 0xff);
                let request = eni(
                    &id,
                    &mac,
                    &format!("vsw-{writer}"),
                    "vpc-1",
                    "host-a",
                    ACCOUNT_A,
                );
                if admin.register_network_interface(request).await.is_err() {
                    return;
                }
                acknowledged.lock().push(id);
            }
        });
    }
    // Let the writers run, then kill -9 at whatever instant that is.
    tokio::time::sleep(Duration::from_millis(400)).await;
    control.child.kill().await?;
    while writers.join_next().await.is_some() {}
    let acknowledged = acknowledged.lock().clone();
    assert!(
        !acknowledged.is_empty(),
        "some changes were made before the kill"
    );

    let control = Control::start(&state_file, &[]).await?;
    let mut admin = control.client(ADMIN).await?;
    let stored: std::collections::BTreeSet<String> = admin
        .list_network_interfaces(pb::ListNetworkInterfacesRequest::default())
        .await?
        .into_inner()
        .network_interfaces
        .into_iter()
        .map(|e| e.eni_id)
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    println!(
        "{} changes acknowledged before kill -9, {} stored after restart (a change in flight may land unacknowledged)",
        acknowledged.len(),
        stored.len()
    );
    Ok(())
}
