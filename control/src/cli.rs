//! The control-plane subcommands of the `flowlog` tool: inventory, flow logs and capture-set watching, each a gRPC
//! call to `flowlog-control`.
//!
//! Every subcommand takes `--control ADDR[,ADDR...]` (the controller, or every replica: a call moves on to the
//! next address when one is down or standing by) and `--token T` (or the `FLOWLOG_TOKEN` environment variable):
//! the bearer token of an account, the orchestrator or a host.
//!
//! # Guarantees
//! - Every command exits with an error (non-zero) when the server refuses the call; the error text carries the
//!   server's stable code (`InvalidProjectName.Malformed: ...`).
//! - `import-enis` validates the whole file (ids, MACs, duplicates) before registering anything; it then registers
//!   in file order and, on a refusal, says which entry failed and how many were registered before it.
//! - `create-flow-log` always sends a ClientToken (a random one unless `--client-token` is given), so its retries
//!   on another replica never create a second flow log.
//! - Machine-readable output: `create-flow-log` prints only the FlowLogId; `--json` prints one JSON document;
//!   `watch` prints one JSON line per capture set, follows fail-overs (resuming from the version it has) and, with
//!   `--ack`, acknowledges each set as a host would.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use flowlog_proto::v1 as pb;
use serde::Deserialize;
use serde_json::json;

use crate::client::{ControlClient, fails_over};
use crate::state::{NetworkInterface, NetworkInterfaceInput};

/// How to reach the control plane; flattened into every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// flowlog-control address, or the comma-separated addresses of its replicas (`http://` is assumed when no
    /// scheme is given).
    #[arg(
        long = "control",
        value_name = "ADDR[,ADDR...]",
        default_value = "http://127.0.0.1:7100",
        value_delimiter = ','
    )]
    pub control: Vec<String>,
    /// Bearer token (an account's, the orchestrator's or a host's).
    #[arg(long, env = "FLOWLOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Seconds a call keeps trying the addresses (round after round) while none serves, e.g. during a fail-over.
    #[arg(long, value_name = "SECS", default_value_t = crate::client::DEFAULT_PATIENCE.as_secs())]
    pub failover_timeout: u64,
}

impl Connection {
    /// A fail-over client of these endpoints with this token.
    pub fn client(&self) -> anyhow::Result<ControlClient> {
        Ok(ControlClient::new(&self.control, self.token.as_deref())?
            .with_patience(std::time::Duration::from_secs(self.failover_timeout)))
    }
}

/// Control-plane subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ControlCommand {
    /// Register (or update: attach, move) an ENI on a host.
    RegisterEni(RegisterEniArgs),
    /// Register every ENI of an ENI file (`[[eni]]` tables) on one host.
    ImportEnis(ImportEnisArgs),
    /// Remove an ENI.
    DeregisterEni(DeregisterEniArgs),
    /// List ENIs.
    ListEnis(ListEnisArgs),
    /// Create a VPC owned by an account.
    CreateVpc(CreateVpcArgs),
    /// Delete a VPC (it must have no vSwitch).
    DeleteVpc(DeleteVpcArgs),
    /// List VPCs.
    ListVpcs(ListVpcsArgs),
    /// Create a vSwitch in a VPC.
    CreateVswitch(CreateVSwitchArgs),
    /// Delete a vSwitch (it must have no ENI).
    DeleteVswitch(DeleteVSwitchArgs),
    /// List vSwitches.
    ListVswitches(ListVSwitchesArgs),
    /// Create a flow log on an ENI, a vSwitch or a VPC; prints its FlowLogId.
    CreateFlowLog(CreateFlowLogArgs),
    /// List flow logs matching filters, a page at a time.
    DescribeFlowLogs(DescribeFlowLogsArgs),
    /// Change a flow log's name, description or aggregation interval.
    ModifyFlowLog(ModifyFlowLogArgs),
    /// Restart an Inactive flow log.
    ActiveFlowLog(FlowLogIdArgs),
    /// Stop an Active flow log (Inactive: capture stops).
    DeactiveFlowLog(FlowLogIdArgs),
    /// Delete a flow log.
    DeleteFlowLog(FlowLogIdArgs),
    /// Follow a host's capture set: one JSON line per version.
    Watch(WatchArgs),
    /// Acknowledge that a host applied a capture-set version (what a host's plugin does after each set).
    AckCaptureSet(AckArgs),
}

/// `register-eni`.
#[derive(Debug, Clone, Args)]
pub struct RegisterEniArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// `eni-...` id.
    #[arg(long)]
    pub eni_id: String,
    /// MAC address, `02:00:00:e1:00:0a` form.
    #[arg(long)]
    pub mac: String,
    /// VM the ENI is attached to.
    #[arg(long, default_value = "")]
    pub vm_id: String,
    /// vSwitch (subnet) of the ENI.
    #[arg(long)]
    pub vswitch_id: String,
    /// VPC of the ENI.
    #[arg(long)]
    pub vpc_id: String,
    /// Account owning the ENI.
    #[arg(long)]
    pub account_id: String,
    /// Hypervisor host whose vSwitch serves the ENI.
    #[arg(long)]
    pub host: String,
}

/// `import-enis`.
#[derive(Debug, Clone, Args)]
pub struct ImportEnisArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// ENI file: TOML `[[eni]]` tables with id, mac, vm-id, vswitch-id, vpc-id, account-id.
    #[arg(long)]
    pub file: PathBuf,
    /// Host every ENI of the file is on.
    #[arg(long)]
    pub host: String,
}

/// `deregister-eni`.
#[derive(Debug, Clone, Args)]
pub struct DeregisterEniArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// `eni-...` id.
    #[arg(long)]
    pub eni_id: String,
}

/// `list-enis`.
#[derive(Debug, Clone, Args)]
pub struct ListEnisArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Only ENIs on this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only ENIs in this VPC.
    #[arg(long)]
    pub vpc_id: Option<String>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `create-vpc`.
#[derive(Debug, Clone, Args)]
pub struct CreateVpcArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// VPC id.
    #[arg(long)]
    pub vpc_id: String,
    /// Owning account.
    #[arg(long)]
    pub account_id: String,
}

/// `delete-vpc`.
#[derive(Debug, Clone, Args)]
pub struct DeleteVpcArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// VPC id.
    #[arg(long)]
    pub vpc_id: String,
}

/// `list-vpcs`.
#[derive(Debug, Clone, Args)]
pub struct ListVpcsArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `create-vswitch`.
#[derive(Debug, Clone, Args)]
pub struct CreateVSwitchArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// vSwitch id.
    #[arg(long)]
    pub vswitch_id: String,
    /// Its VPC.
    #[arg(long)]
    pub vpc_id: String,
    /// Owning account (the VPC's).
    #[arg(long)]
    pub account_id: String,
}

/// `delete-vswitch`.
#[derive(Debug, Clone, Args)]
pub struct DeleteVSwitchArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// vSwitch id.
    #[arg(long)]
    pub vswitch_id: String,
}

/// `list-vswitches`.
#[derive(Debug, Clone, Args)]
pub struct ListVSwitchesArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Only vSwitches of this VPC.
    #[arg(long)]
    pub vpc_id: Option<String>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Resource types as the CLI spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResourceTypeArg {
    /// One ENI.
    #[value(name = "NetworkInterface", alias = "networkinterface", alias = "eni")]
    NetworkInterface,
    /// A vSwitch.
    #[value(name = "VSwitch", alias = "vswitch")]
    VSwitch,
    /// A VPC.
    #[value(name = "VPC", alias = "vpc")]
    Vpc,
}

/// Traffic types as the CLI spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrafficTypeArg {
    /// Every record.
    #[value(name = "All", alias = "all")]
    All,
    /// ACCEPT records only.
    #[value(name = "Allow", alias = "allow")]
    Allow,
    /// REJECT records only.
    #[value(name = "Drop", alias = "drop")]
    Drop,
}

/// `create-flow-log`.
#[derive(Debug, Clone, Args)]
pub struct CreateFlowLogArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// What the flow log is attached to.
    #[arg(long, value_enum)]
    pub resource_type: ResourceTypeArg,
    /// The ENI, vSwitch or VPC id.
    #[arg(long)]
    pub resource_id: String,
    /// Destination project.
    #[arg(long)]
    pub project: String,
    /// Destination logstore.
    #[arg(long)]
    pub logstore: String,
    /// Which records to deliver.
    #[arg(long, value_enum, default_value = "All")]
    pub traffic_type: TrafficTypeArg,
    /// Capture window in minutes: 1, 5 or 10.
    #[arg(long, default_value_t = 10)]
    pub interval: u32,
    /// Flow log name.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Description.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Idempotency token: a retry with the same token returns the same FlowLogId (default: a random one, so that
    /// the command's own retries are safe).
    #[arg(long)]
    pub client_token: Option<String>,
    /// Region (default: the controller's).
    #[arg(long, default_value = "")]
    pub region: String,
}

/// `describe-flow-logs`.
#[derive(Debug, Clone, Args)]
pub struct DescribeFlowLogsArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Only this flow log.
    #[arg(long, default_value = "")]
    pub flow_log_id: String,
    /// Only flow logs with this name.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Only flow logs on this kind of resource.
    #[arg(long, value_enum)]
    pub resource_type: Option<ResourceTypeArg>,
    /// Only flow logs on this resource.
    #[arg(long, default_value = "")]
    pub resource_id: String,
    /// Only flow logs whose resource is in this VPC.
    #[arg(long, default_value = "")]
    pub vpc_id: String,
    /// Only flow logs delivering to this project.
    #[arg(long, default_value = "")]
    pub project: String,
    /// Only flow logs delivering to this logstore.
    #[arg(long, default_value = "")]
    pub logstore: String,
    /// Only flow logs in this status (Activating, Active, Inactive, Deleting).
    #[arg(long, default_value = "")]
    pub status: String,
    /// 1-based page number.
    #[arg(long, default_value_t = 1)]
    pub page: u32,
    /// Page size, at most 50.
    #[arg(long, default_value_t = 10)]
    pub page_size: u32,
    /// Region (default: the controller's).
    #[arg(long, default_value = "")]
    pub region: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `modify-flow-log`.
#[derive(Debug, Clone, Args)]
pub struct ModifyFlowLogArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The flow log.
    #[arg(long)]
    pub flow_log_id: String,
    /// New name (empty clears it).
    #[arg(long)]
    pub name: Option<String>,
    /// New description (empty clears it).
    #[arg(long)]
    pub description: Option<String>,
    /// New capture window in minutes: 1, 5 or 10.
    #[arg(long)]
    pub interval: Option<u32>,
    /// Region (default: the controller's).
    #[arg(long, default_value = "")]
    pub region: String,
}

/// `active-flow-log`, `deactive-flow-log`, `delete-flow-log`.
#[derive(Debug, Clone, Args)]
pub struct FlowLogIdArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The flow log.
    #[arg(long)]
    pub flow_log_id: String,
    /// Region (default: the controller's).
    #[arg(long, default_value = "")]
    pub region: String,
}

/// `watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Host whose capture set to follow.
    #[arg(long)]
    pub host: String,
    /// Stop after this many capture sets (default: follow until the server ends the stream).
    #[arg(long)]
    pub count: Option<u64>,
    /// Acknowledge each capture set once printed, as the host's plugin would (also after each reconnection).
    #[arg(long)]
    pub ack: bool,
    /// Reconnect (to the next address) when the stream ends or fails, resuming from the last version received.
    #[arg(long)]
    pub follow: bool,
}

/// `ack-capture-set`.
#[derive(Debug, Clone, Args)]
pub struct AckArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The host that applied the capture set.
    #[arg(long)]
    pub host: String,
    /// The capture set's state id.
    #[arg(long)]
    pub state_id: String,
    /// The capture set's version.
    #[arg(long)]
    pub version: u64,
}

/// Runs a control-plane subcommand, printing to stdout.
pub async fn run(cmd: ControlCommand) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    run_with_output(cmd, &mut stdout).await
}

/// Runs a control-plane subcommand, printing to `out`.
pub async fn run_with_output(
    cmd: ControlCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    match cmd {
        ControlCommand::RegisterEni(args) => {
            let eni = pb::NetworkInterface {
                eni_id: args.eni_id,
                mac: args.mac,
                vm_id: args.vm_id,
                vswitch_id: args.vswitch_id,
                vpc_id: args.vpc_id,
                account_id: args.account_id,
                host: args.host,
            };
            let eni_id = eni.eni_id.clone();
            let request = pb::RegisterNetworkInterfaceRequest {
                network_interface: Some(eni),
            };
            args.connection
                .client()?
                .send(request, |mut c, r| async move {
                    c.register_network_interface(r).await
                })
                .await
                .map_err(|status| refused("register-eni", status))?;
            writeln!(out, "registered {eni_id}")?;
        }
        ControlCommand::ImportEnis(args) => {
            let enis = read_eni_file(&args.file, &args.host)?;
            let mut client = args.connection.client()?;
            for (index, eni) in enis.iter().enumerate() {
                let request = pb::RegisterNetworkInterfaceRequest {
                    network_interface: Some(crate::service::eni_to_pb(eni)),
                };
                client
                    .send(request, |mut c, r| async move { c.register_network_interface(r).await })
                    .await
                    .map_err(|status| {
                        refused("import-enis", status).context(format!(
                            "{}: registering {} (entry {} of {}) failed; {index} registered before it",
                            args.file.display(),
                            eni.eni_id,
                            index + 1,
                            enis.len()
                        ))
                    })?;
            }
            writeln!(
                out,
                "registered {} network interfaces on host {}",
                enis.len(),
                args.host
            )?;
        }
        ControlCommand::DeregisterEni(args) => {
            let request = pb::DeregisterNetworkInterfaceRequest {
                eni_id: args.eni_id.clone(),
            };
            args.connection
                .client()?
                .send(request, |mut c, r| async move {
                    c.deregister_network_interface(r).await
                })
                .await
                .map_err(|status| refused("deregister-eni", status))?;
            writeln!(out, "deregistered {}", args.eni_id)?;
        }
        ControlCommand::ListEnis(args) => {
            let request = pb::ListNetworkInterfacesRequest {
                host: args.host.unwrap_or_default(),
                vpc_id: args.vpc_id.unwrap_or_default(),
            };
            let enis = args
                .connection
                .client()?
                .send(request, |mut c, r| async move {
                    c.list_network_interfaces(r).await
                })
                .await
                .map_err(|status| refused("list-enis", status))?
                .network_interfaces;
            if args.json {
                let list: Vec<_> = enis.iter().map(eni_json).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                let rows = enis
                    .iter()
                    .map(|e| {
                        vec![
                            e.eni_id.clone(),
                            e.mac.clone(),
                            e.vm_id.clone(),
                            e.vswitch_id.clone(),
                            e.vpc_id.clone(),
                            e.account_id.clone(),
                            e.host.clone(),
                        ]
                    })
                    .collect();
                write_table(
                    out,
                    &["ENI", "MAC", "VM", "VSWITCH", "VPC", "ACCOUNT", "HOST"],
                    rows,
                )?;
            }
        }
        ControlCommand::CreateVpc(args) => {
            let request = pb::CreateVpcRequest {
                vpc: Some(pb::Vpc {
                    vpc_id: args.vpc_id.clone(),
                    account_id: args.account_id,
                    creation_time: 0,
                }),
            };
            args.connection
                .client()?
                .send(request, |mut c, r| async move { c.create_vpc(r).await })
                .await
                .map_err(|status| refused("create-vpc", status))?;
            writeln!(out, "created {}", args.vpc_id)?;
        }
        ControlCommand::DeleteVpc(args) => {
            let request = pb::DeleteVpcRequest {
                vpc_id: args.vpc_id.clone(),
            };
            args.connection
                .client()?
                .send(request, |mut c, r| async move { c.delete_vpc(r).await })
                .await
                .map_err(|status| refused("delete-vpc", status))?;
            writeln!(out, "deleted {}", args.vpc_id)?;
        }
        ControlCommand::ListVpcs(args) => {
            let vpcs = args
                .connection
                .client()?
                .call(|mut c| async move { c.list_vpcs(pb::ListVpcsRequest {}).await })
                .await
                .map_err(|status| refused("list-vpcs", status))?
                .vpcs;
            if args.json {
                let list: Vec<_> = vpcs
                    .iter()
                    .map(|v| {
                        json!({
                            "vpc-id": v.vpc_id,
                            "account-id": v.account_id,
                            "creation-time": v.creation_time,
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                let rows = vpcs
                    .iter()
                    .map(|v| {
                        vec![
                            v.vpc_id.clone(),
                            v.account_id.clone(),
                            v.creation_time.to_string(),
                        ]
                    })
                    .collect();
                write_table(out, &["VPC", "ACCOUNT", "CREATED"], rows)?;
            }
        }
        ControlCommand::CreateVswitch(args) => {
            let request = pb::CreateVSwitchRequest {
                vswitch: Some(pb::VSwitch {
                    vswitch_id: args.vswitch_id.clone(),
                    vpc_id: args.vpc_id,
                    account_id: args.account_id,
                    creation_time: 0,
                }),
            };
            args.connection
                .client()?
                .send(
                    request,
                    |mut c, r| async move { c.create_v_switch(r).await },
                )
                .await
                .map_err(|status| refused("create-vswitch", status))?;
            writeln!(out, "created {}", args.vswitch_id)?;
        }
        ControlCommand::DeleteVswitch(args) => {
            let request = pb::DeleteVSwitchRequest {
                vswitch_id: args.vswitch_id.clone(),
            };
            args.connection
                .client()?
                .send(
                    request,
                    |mut c, r| async move { c.delete_v_switch(r).await },
                )
                .await
                .map_err(|status| refused("delete-vswitch", status))?;
            writeln!(out, "deleted {}", args.vswitch_id)?;
        }
        ControlCommand::ListVswitches(args) => {
            let request = pb::ListVSwitchesRequest {
                vpc_id: args.vpc_id.unwrap_or_default(),
            };
            let vswitches = args
                .connection
                .client()?
                .send(
                    request,
                    |mut c, r| async move { c.list_v_switches(r).await },
                )
                .await
                .map_err(|status| refused("list-vswitches", status))?
                .vswitches;
            if args.json {
                let list: Vec<_> = vswitches
                    .iter()
                    .map(|v| {
                        json!({
                            "vswitch-id": v.vswitch_id,
                            "vpc-id": v.vpc_id,
                            "account-id": v.account_id,
                            "creation-time": v.creation_time,
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                let rows = vswitches
                    .iter()
                    .map(|v| {
                        vec![
                            v.vswitch_id.clone(),
                            v.vpc_id.clone(),
                            v.account_id.clone(),
                            v.creation_time.to_string(),
                        ]
                    })
                    .collect();
                write_table(out, &["VSWITCH", "VPC", "ACCOUNT", "CREATED"], rows)?;
            }
        }
        ControlCommand::CreateFlowLog(args) => {
            let request = pb::CreateFlowLogRequest {
                region_id: args.region,
                resource_type: resource_type_pb(args.resource_type).into(),
                resource_id: args.resource_id,
                traffic_type: traffic_type_pb(args.traffic_type).into(),
                project_name: args.project,
                logstore_name: args.logstore,
                flow_log_name: args.name,
                description: args.description,
                aggregation_interval: args.interval,
                client_token: args
                    .client_token
                    .unwrap_or_else(|| crate::service::random_id("cli-")),
            };
            let response = args
                .connection
                .client()?
                .send(
                    request,
                    |mut c, r| async move { c.create_flow_log(r).await },
                )
                .await
                .map_err(|status| refused("create-flow-log", status))?;
            writeln!(out, "{}", response.flow_log_id)?;
        }
        ControlCommand::DescribeFlowLogs(args) => {
            let request = pb::DescribeFlowLogsRequest {
                region_id: args.region,
                flow_log_id: args.flow_log_id,
                flow_log_name: args.name,
                resource_type: args
                    .resource_type
                    .map_or(pb::ResourceType::Unspecified, resource_type_pb)
                    .into(),
                resource_id: args.resource_id,
                vpc_id: args.vpc_id,
                project_name: args.project,
                logstore_name: args.logstore,
                status: args.status,
                page_number: args.page,
                page_size: args.page_size,
            };
            let page = args
                .connection
                .client()?
                .send(
                    request,
                    |mut c, r| async move { c.describe_flow_logs(r).await },
                )
                .await
                .map_err(|status| refused("describe-flow-logs", status))?;
            if args.json {
                let document = json!({
                    "total-count": page.total_count,
                    "page-number": page.page_number,
                    "page-size": page.page_size,
                    "flow-logs": page.flow_logs.iter().map(flow_log_json).collect::<Vec<_>>(),
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
            } else {
                let rows = page
                    .flow_logs
                    .iter()
                    .map(|fl| {
                        vec![
                            fl.flow_log_id.clone(),
                            fl.flow_log_name.clone(),
                            resource_type_name(fl.resource_type).to_owned(),
                            fl.resource_id.clone(),
                            fl.project_name.clone(),
                            fl.logstore_name.clone(),
                            traffic_type_name(fl.traffic_type).to_owned(),
                            format!("{}m", fl.aggregation_interval),
                            fl.status.clone(),
                            fl.creation_time.to_string(),
                        ]
                    })
                    .collect();
                write_table(
                    out,
                    &[
                        "FLOW LOG", "NAME", "TYPE", "RESOURCE", "PROJECT", "LOGSTORE", "TRAFFIC",
                        "INTERVAL", "STATUS", "CREATED",
                    ],
                    rows,
                )?;
                writeln!(
                    out,
                    "page {} (size {}) of {} flow logs",
                    page.page_number, page.page_size, page.total_count
                )?;
            }
        }
        ControlCommand::ModifyFlowLog(args) => {
            let request = pb::ModifyFlowLogAttributeRequest {
                region_id: args.region,
                flow_log_id: args.flow_log_id.clone(),
                flow_log_name: args.name,
                description: args.description,
                aggregation_interval: args.interval.unwrap_or(0),
            };
            if args.interval == Some(0) {
                bail!("modify-flow-log: --interval must be 1, 5 or 10");
            }
            args.connection
                .client()?
                .send(request, |mut c, r| async move {
                    c.modify_flow_log_attribute(r).await
                })
                .await
                .map_err(|status| refused("modify-flow-log", status))?;
            writeln!(out, "modified {}", args.flow_log_id)?;
        }
        ControlCommand::ActiveFlowLog(args) => {
            let request = pb::ActiveFlowLogRequest {
                region_id: args.region,
                flow_log_id: args.flow_log_id.clone(),
            };
            args.connection
                .client()?
                .send(
                    request,
                    |mut c, r| async move { c.active_flow_log(r).await },
                )
                .await
                .map_err(|status| refused("active-flow-log", status))?;
            writeln!(out, "activating {}", args.flow_log_id)?;
        }
        ControlCommand::DeactiveFlowLog(args) => {
            let request = pb::DeactiveFlowLogRequest {
                region_id: args.region,
                flow_log_id: args.flow_log_id.clone(),
            };
            args.connection
                .client()?
                .send(
                    request,
                    |mut c, r| async move { c.deactive_flow_log(r).await },
                )
                .await
                .map_err(|status| refused("deactive-flow-log", status))?;
            writeln!(out, "deactivated {}", args.flow_log_id)?;
        }
        ControlCommand::DeleteFlowLog(args) => {
            let request = pb::DeleteFlowLogRequest {
                region_id: args.region,
                flow_log_id: args.flow_log_id.clone(),
            };
            args.connection
                .client()?
                .send(
                    request,
                    |mut c, r| async move { c.delete_flow_log(r).await },
                )
                .await
                .map_err(|status| refused("delete-flow-log", status))?;
            writeln!(out, "deleted {}", args.flow_log_id)?;
        }
        ControlCommand::Watch(args) => watch(args, out).await?,
        ControlCommand::AckCaptureSet(args) => {
            let mut client = args.connection.client()?;
            let accepted =
                acknowledge(&mut client, &args.host, &args.state_id, args.version).await?;
            writeln!(
                out,
                "{}",
                if accepted {
                    "accepted"
                } else {
                    "ignored: the state id is not the controller's current one"
                }
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `watch`: prints each capture set; with `--follow`, reconnects and resumes; with `--ack`, acknowledges.
async fn watch(args: WatchArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let mut client = args.connection.client()?;
    let mut known: Option<(String, u64)> = None;
    let mut received = 0u64;
    loop {
        let request = pb::WatchCaptureSetRequest {
            host: args.host.clone(),
            state_id: known.as_ref().map(|k| k.0.clone()).unwrap_or_default(),
            known_version: known.as_ref().map_or(0, |k| k.1),
        };
        let mut stream = client
            .send(
                request,
                |mut c, r| async move { c.watch_capture_set(r).await },
            )
            .await
            .map_err(|status| refused("watch", status))?;
        // A resumed watch sends nothing until the next change: acknowledge what we have to this replica now.
        if args.ack
            && let Some((state_id, version)) = &known
        {
            acknowledge(&mut client, &args.host, state_id, *version).await?;
        }
        let ended = loop {
            if args.count.is_some_and(|count| received >= count) {
                return Ok(());
            }
            match stream.message().await {
                Ok(Some(set)) => {
                    writeln!(out, "{}", serde_json::to_string(&capture_set_json(&set))?)?;
                    out.flush()?;
                    received += 1;
                    if args.ack {
                        acknowledge(&mut client, &args.host, &set.state_id, set.version).await?;
                    }
                    known = Some((set.state_id, set.version));
                }
                Ok(None) => break None,
                Err(status) => break Some(status),
            }
        };
        match ended {
            Some(status) if !(args.follow && fails_over(&status)) => {
                return Err(refused("watch", status));
            }
            None if !args.follow => return Ok(()),
            _ => tracing::info!("watch stream ended; reconnecting"),
        }
    }
}

/// Acknowledges a capture set; whether the controller accepted it (false: not its current state id).
async fn acknowledge(
    client: &mut ControlClient,
    host: &str,
    state_id: &str,
    version: u64,
) -> anyhow::Result<bool> {
    let request = pb::AckCaptureSetRequest {
        host: host.to_owned(),
        state_id: state_id.to_owned(),
        version,
    };
    client
        .send(
            request,
            |mut c, r| async move { c.ack_capture_set(r).await },
        )
        .await
        .map(|response| response.accepted)
        .map_err(|status| refused("ack-capture-set", status))
}

/// Reads an ENI file (`[[eni]]` tables) and validates every entry, placing each ENI on `host`.
pub fn read_eni_file(path: &std::path::Path, host: &str) -> anyhow::Result<Vec<NetworkInterface>> {
    /// The file: `[[eni]]` tables.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct EniFile {
        /// The ENIs (an empty file has none).
        #[serde(default)]
        eni: Vec<EniEntry>,
    }
    /// One `[[eni]]` table.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct EniEntry {
        id: String,
        mac: String,
        vm_id: String,
        vswitch_id: String,
        vpc_id: String,
        account_id: String,
    }

    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read ENI file {}", path.display()))?;
    let file: EniFile = toml::from_str(&text)
        .with_context(|| format!("ENI file {} is malformed", path.display()))?;
    let mut seen_ids = std::collections::HashSet::new();
    let mut seen_macs = std::collections::HashMap::new();
    let mut enis = Vec::with_capacity(file.eni.len());
    for (index, entry) in file.eni.into_iter().enumerate() {
        let eni = NetworkInterface::new(NetworkInterfaceInput {
            eni_id: entry.id,
            mac: entry.mac,
            vm_id: entry.vm_id,
            vswitch_id: entry.vswitch_id,
            vpc_id: entry.vpc_id,
            account_id: entry.account_id,
            host: host.to_owned(),
        })
        .map_err(|e| {
            anyhow::anyhow!("{}: entry {}: {}: {e}", path.display(), index + 1, e.code())
        })?;
        if !seen_ids.insert(eni.eni_id.clone()) {
            bail!(
                "{}: entry {}: {} appears twice",
                path.display(),
                index + 1,
                eni.eni_id
            );
        }
        if let Some(first) = seen_macs.insert(eni.mac, eni.eni_id.clone()) {
            bail!(
                "{}: entry {}: MAC {} of {} is already used by {first}",
                path.display(),
                index + 1,
                eni.mac,
                eni.eni_id
            );
        }
        enis.push(eni);
    }
    Ok(enis)
}

fn refused(command: &str, status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{command}: {} ({:?})", status.message(), status.code())
}

fn resource_type_pb(arg: ResourceTypeArg) -> pb::ResourceType {
    match arg {
        ResourceTypeArg::NetworkInterface => pb::ResourceType::NetworkInterface,
        ResourceTypeArg::VSwitch => pb::ResourceType::Vswitch,
        ResourceTypeArg::Vpc => pb::ResourceType::Vpc,
    }
}

fn traffic_type_pb(arg: TrafficTypeArg) -> pb::TrafficType {
    match arg {
        TrafficTypeArg::All => pb::TrafficType::All,
        TrafficTypeArg::Allow => pb::TrafficType::Allow,
        TrafficTypeArg::Drop => pb::TrafficType::Drop,
    }
}

fn resource_type_name(value: i32) -> &'static str {
    match pb::ResourceType::try_from(value) {
        Ok(pb::ResourceType::NetworkInterface) => "NetworkInterface",
        Ok(pb::ResourceType::Vswitch) => "VSwitch",
        Ok(pb::ResourceType::Vpc) => "VPC",
        Ok(pb::ResourceType::Unspecified) | Err(_) => "Unspecified",
    }
}

fn traffic_type_name(value: i32) -> &'static str {
    match pb::TrafficType::try_from(value) {
        Ok(pb::TrafficType::Allow) => "Allow",
        Ok(pb::TrafficType::Drop) => "Drop",
        Ok(pb::TrafficType::All | pb::TrafficType::Unspecified) | Err(_) => "All",
    }
}

fn eni_json(eni: &pb::NetworkInterface) -> serde_json::Value {
    json!({
        "eni-id": eni.eni_id,
        "mac": eni.mac,
        "vm-id": eni.vm_id,
        "vswitch-id": eni.vswitch_id,
        "vpc-id": eni.vpc_id,
        "account-id": eni.account_id,
        "host": eni.host,
    })
}

fn flow_log_json(fl: &pb::FlowLog) -> serde_json::Value {
    json!({
        "flow-log-id": fl.flow_log_id,
        "flow-log-name": fl.flow_log_name,
        "description": fl.description,
        "region-id": fl.region_id,
        "resource-type": resource_type_name(fl.resource_type),
        "resource-id": fl.resource_id,
        "traffic-type": traffic_type_name(fl.traffic_type),
        "project-name": fl.project_name,
        "logstore-name": fl.logstore_name,
        "aggregation-interval": fl.aggregation_interval,
        "status": fl.status,
        "creation-time": fl.creation_time,
        "account-id": fl.account_id,
        "vpc-id": fl.vpc_id,
    })
}

fn capture_set_json(set: &pb::CaptureSet) -> serde_json::Value {
    json!({
        "version": set.version,
        "state-id": set.state_id,
        "region-id": set.region_id,
        "interfaces": set.interfaces.iter().map(|captured| json!({
            "network-interface": captured.network_interface.as_ref().map(eni_json),
            "destinations": captured.destinations.iter().map(|d| json!({
                "flow-log-id": d.flow_log_id,
                "project": d.project,
                "logstore": d.logstore,
                "traffic-type": traffic_type_name(d.traffic_type),
                "interval-seconds": d.interval_seconds,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Writes `rows` under `header`, columns padded to their widest cell.
fn write_table(
    out: &mut (dyn Write + Send),
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(header.to_vec())?;
    for row in &rows {
        line(row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ControlCommand,
    }

    #[test]
    fn parses_the_documented_command_lines() {
        let cli = Cli::try_parse_from([
            "flowlog",
            "create-flow-log",
            "--resource-type",
            "VPC",
            "--resource-id",
            "vpc-0",
            "--project",
            "proj-1",
            "--logstore",
            "store-1",
            "--traffic-type",
            "Drop",
            "--interval",
            "1",
            "--control",
            "127.0.0.1:9",
        ])
        .unwrap();
        let ControlCommand::CreateFlowLog(args) = cli.command else {
            panic!("wrong subcommand");
        };
        assert_eq!(args.resource_type, ResourceTypeArg::Vpc);
        assert_eq!(args.traffic_type, TrafficTypeArg::Drop);
        assert_eq!(args.interval, 1);
        assert_eq!(args.connection.control, vec!["127.0.0.1:9".to_owned()]);

        let cli = Cli::try_parse_from(["flowlog", "list-enis"]).unwrap();
        let ControlCommand::ListEnis(args) = cli.command else {
            panic!("wrong subcommand");
        };
        assert_eq!(
            args.connection.control,
            vec!["http://127.0.0.1:7100".to_owned()]
        );
        for resource_type in ["NetworkInterface", "VSwitch", "vswitch", "eni"] {
            Cli::try_parse_from([
                "flowlog",
                "create-flow-log",
                "--resource-type",
                resource_type,
                "--resource-id",
                "x",
                "--project",
                "p",
                "--logstore",
                "l",
            ])
            .unwrap();
        }
        assert!(Cli::try_parse_from(["flowlog", "watch"]).is_err());
        assert!(
            Cli::try_parse_from(["flowlog", "describe-flow-logs", "--resource-type", "Subnet"])
                .is_err()
        );
    }

    #[test]
    fn reads_the_sample_eni_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/sample/sample.enis.toml");
        let enis = read_eni_file(&path, "host-a").unwrap();
        assert_eq!(enis.len(), 14);
        assert_eq!(enis[10].eni_id, "eni-00010");
        assert_eq!(enis[10].mac.to_string(), "02:00:00:e1:00:0a");
        assert_eq!(enis[10].vpc_id, "vpc-1");
        assert!(enis.iter().all(|e| e.host == "host-a"));
    }

    #[test]
    fn refuses_bad_eni_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let entry = |id: &str, mac: &str| {
            format!(
                "[[eni]]\nid = \"{id}\"\nmac = \"{mac}\"\nvm-id = \"i-1\"\nvswitch-id = \"vsw-1\"\nvpc-id = \"vpc-1\"\naccount-id = \"1\"\n"
            )
        };
        let cases = [
            (
                "bad-mac.toml",
                entry("eni-1", "02:00:00:00:00"),
                "InvalidMacAddress.Malformed",
            ),
            (
                "bad-id.toml",
                entry("nic-1", "02:00:00:00:00:01"),
                "InvalidNetworkInterfaceId.Malformed",
            ),
            (
                "dup-id.toml",
                entry("eni-1", "02:00:00:00:00:01") + &entry("eni-1", "02:00:00:00:00:02"),
                "appears twice",
            ),
            (
                "dup-mac.toml",
                entry("eni-1", "02:00:00:00:00:01") + &entry("eni-2", "02:00:00:00:00:01"),
                "already used by eni-1",
            ),
            (
                "unknown.toml",
                entry("eni-1", "02:00:00:00:00:01") + "colour = \"red\"\n",
                "malformed",
            ),
            ("syntax.toml", "[[eni]\n".to_owned(), "malformed"),
        ];
        for (name, text, expected) in cases {
            let err = read_eni_file(&write(name, &text), "h").unwrap_err();
            let message = format!("{err:#}");
            assert!(message.contains(expected), "{name}: {message}");
            assert!(message.contains(name), "{name}: {message}");
        }
        assert!(read_eni_file(&dir.path().join("missing.toml"), "h").is_err());
        assert!(
            read_eni_file(&write("empty.toml", ""), "h")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn tables_are_aligned() {
        let mut out = Vec::new();
        write_table(
            &mut out,
            &["A", "BB"],
            vec![
                vec!["long-cell".into(), "x".into()],
                vec!["s".into(), "y".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A          BB\nlong-cell  x\ns          y\n"
        );
    }
}
