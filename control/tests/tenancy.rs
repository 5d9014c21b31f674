//! Tenancy against the real binary: every cross-account, cross-host and out-of-role attempt is refused with a
//! stable code, and changes nothing.

mod common;

use common::*;
use flowlog_proto::v1 as pb;
use tonic::Code;

#[tokio::test]
async fn cross_account_and_out_of_role_calls_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let control = Control::start(&dir.path().join("state.redb"), &[]).await?;
    let mut admin = control.client(ADMIN).await?;
    let mut tenant_a = control.client(TENANT_A).await?;
    let mut tenant_b = control.client(TENANT_B).await?;
    let mut host_a = control.client(HOST_A).await?;

    admin
        .register_network_interface(eni(
            "eni-a",
            "02:00:00:00:0a:01",
            "vsw-a",
            "vpc-a",
            "host-a",
            ACCOUNT_A,
        ))
        .await?;
    admin
        .register_network_interface(eni(
            "eni-b",
            "02:00:00:00:0b:01",
            "vsw-b",
            "vpc-b",
            "host-b",
            ACCOUNT_B,
        ))
        .await?;
    let a_log = tenant_a
        .create_flow_log(flow_log(
            pb::ResourceType::Vpc,
            "vpc-a",
            "tenant-a",
            "store",
        ))
        .await?
        .into_inner()
        .flow_log_id;
    let b_log = tenant_b
        .create_flow_log(flow_log(
            pb::ResourceType::Vpc,
            "vpc-b",
            "tenant-b",
            "store",
        ))
        .await?
        .into_inner()
        .flow_log_id;
    // The orchestrator may create on a tenant's behalf: the flow log is the resource's account's.
    let on_behalf = admin
        .create_flow_log(flow_log(
            pb::ResourceType::NetworkInterface,
            "eni-b",
            "tenant-b",
            "by-admin",
        ))
        .await?
        .into_inner()
        .flow_log_id;
    let before = describe_all(&mut admin).await?;
    assert_eq!(before.len(), 3);
    assert_eq!(
        before
            .iter()
            .find(|fl| fl.flow_log_id == on_behalf)
            .map(|fl| fl.account_id.as_str()),
        Some(ACCOUNT_B)
    );

    let forbidden = |status: tonic::Status| {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().starts_with("Forbidden.Account: "),
            "{status:?}"
        );
    };
    // Tenant A on tenant B's resources, in every scope.
    for (kind, id) in [
        (pb::ResourceType::Vpc, "vpc-b"),
        (pb::ResourceType::Vswitch, "vsw-b"),
        (pb::ResourceType::NetworkInterface, "eni-b"),
    ] {
        forbidden(
            tenant_a
                .create_flow_log(flow_log(kind, id, "tenant-a", "xxx"))
                .await
                .unwrap_err(),
        );
    }
    // ... to tenant B's project, or one nobody owns.
    for project in ["tenant-b", "nobodys-project"] {
        check(
            tenant_a
                .create_flow_log(flow_log(pb::ResourceType::Vpc, "vpc-a", project, "yyy"))
                .await,
            Code::PermissionDenied,
            "Forbidden.Project",
        );
    }
    // ... on tenant B's flow log, with every call.
    forbidden(
        tenant_a
            .delete_flow_log(pb::DeleteFlowLogRequest {
                flow_log_id: b_log.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    forbidden(
        tenant_a
            .deactive_flow_log(pb::DeactiveFlowLogRequest {
                flow_log_id: b_log.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    forbidden(
        tenant_a
            .active_flow_log(pb::ActiveFlowLogRequest {
                flow_log_id: b_log.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    forbidden(
        tenant_a
            .modify_flow_log_attribute(pb::ModifyFlowLogAttributeRequest {
                flow_log_id: b_log.clone(),
                description: Some("mine now".into()),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    for filter in [
        pb::DescribeFlowLogsRequest {
            flow_log_id: b_log.clone(),
            ..Default::default()
        },
        pb::DescribeFlowLogsRequest {
            resource_id: "vpc-b".into(),
            ..Default::default()
        },
        pb::DescribeFlowLogsRequest {
            resource_id: "eni-b".into(),
            ..Default::default()
        },
        pb::DescribeFlowLogsRequest {
            vpc_id: "vpc-b".into(),
            ..Default::default()
        },
    ] {
        forbidden(tenant_a.describe_flow_logs(filter).await.unwrap_err());
    }
    // A tenant sees only its own flow logs and inventory.
    let mine = describe_all(&mut tenant_a).await?;
    assert_eq!(
        mine.iter()
            .map(|fl| fl.flow_log_id.clone())
            .collect::<Vec<_>>(),
        vec![a_log.clone()]
    );
    let vpcs = tenant_a
        .list_vpcs(pb::ListVpcsRequest {})
        .await?
        .into_inner()
        .vpcs;
    assert_eq!(
        vpcs.iter().map(|v| v.vpc_id.as_str()).collect::<Vec<_>>(),
        vec!["vpc-a"]
    );
    let enis = tenant_a
        .list_network_interfaces(pb::ListNetworkInterfacesRequest::default())
        .await?
        .into_inner()
        .network_interfaces;
    assert_eq!(
        enis.iter().map(|e| e.eni_id.as_str()).collect::<Vec<_>>(),
        vec!["eni-a"]
    );

    // Out of role: tenants change no inventory and follow no capture set; hosts make no flow-log or inventory call.
    let role = |status: tonic::Status| {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().starts_with("Forbidden.Role: "),
            "{status:?}"
        );
    };
    role(
        tenant_a
            .register_network_interface(eni(
                "eni-x",
                "02:00:00:00:0c:01",
                "vsw-a",
                "vpc-a",
                "host-a",
                ACCOUNT_A,
            ))
            .await
            .unwrap_err(),
    );
    role(
        tenant_a
            .deregister_network_interface(pb::DeregisterNetworkInterfaceRequest {
                eni_id: "eni-b".into(),
            })
            .await
            .unwrap_err(),
    );
    role(
        tenant_a
            .delete_vpc(pb::DeleteVpcRequest {
                vpc_id: "vpc-b".into(),
            })
            .await
            .unwrap_err(),
    );
    role(
        tenant_a
            .watch_capture_set(pb::WatchCaptureSetRequest {
                host: "host-b".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    role(
        tenant_a
            .ack_capture_set(pb::AckCaptureSetRequest {
                host: "host-a".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    role(
        host_a
            .create_flow_log(flow_log(pb::ResourceType::Vpc, "vpc-a", "tenant-a", "zzz"))
            .await
            .unwrap_err(),
    );
    role(
        host_a
            .describe_flow_logs(pb::DescribeFlowLogsRequest::default())
            .await
            .unwrap_err(),
    );
    role(host_a.list_vpcs(pb::ListVpcsRequest {}).await.unwrap_err());
    // A host follows and acknowledges only its own capture set.
    for status in [
        host_a
            .watch_capture_set(pb::WatchCaptureSetRequest {
                host: "host-b".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
        host_a
            .ack_capture_set(pb::AckCaptureSetRequest {
                host: "host-b".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().starts_with("Forbidden.Host: "),
            "{status:?}"
        );
    }
    // The orchestrator's inventory keeps accounts apart too.
    check(
        admin
            .register_network_interface(eni(
                "eni-x",
                "02:00:00:00:0c:01",
                "vsw-b",
                "vpc-b",
                "host-a",
                ACCOUNT_A,
            ))
            .await,
        Code::InvalidArgument,
        "InvalidAccountId.Mismatch",
    );
    check(
        admin
            .register_network_interface(eni(
                "eni-a",
                "02:00:00:00:0a:01",
                "vsw-a",
                "vpc-a",
                "host-a",
                ACCOUNT_B,
            ))
            .await,
        Code::InvalidArgument,
        "InvalidAccountId.Mismatch",
    );

    assert_eq!(describe_all(&mut admin).await?, before, "nothing changed");
    Ok(())
}
