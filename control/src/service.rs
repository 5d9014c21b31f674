//! The gRPC `flowlog.v1.Control` service: authenticates each call, checks the caller's role, converts wire messages
//! to [`crate::state`] inputs, and runs them on the current serving term ([`crate::core::Core`]).
//!
//! # Roles
//! - Admin (the orchestrator): every call.
//! - Account (a tenant): flow-log calls on its own account's flow logs and resources; listing its own inventory.
//! - Host (a plugin): WatchCaptureSet and AckCaptureSet of its own host only.
//!
//! # Guarantees
//! - Errors are statuses whose message is `"<StableCode>: <human message>"`: `UNAUTHENTICATED`
//!   (`Unauthenticated.*`), `PERMISSION_DENIED` (`Forbidden.Role`, `Forbidden.Host`, `Forbidden.Account`,
//!   `Forbidden.Project`), `INVALID_ARGUMENT`, `NOT_FOUND`, `ALREADY_EXISTS`, `FAILED_PRECONDITION`
//!   (`IncorrectStatus.FlowLog`, `DependencyViolation.*`), `RESOURCE_EXHAUSTED` (`QuotaExceeded.FlowLog`),
//!   `UNAVAILABLE` (`NotLeader`: this replica does not serve now; try the next endpoint) or `INTERNAL`.
//! - A change is acknowledged only once durable; a watch stream ends when the term that serves it ends (fail-over,
//!   shutdown), so the host reconnects to whichever replica serves.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use flowlog_proto::v1 as pb;
use futures_util::Stream;
use parking_lot::RwLock;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::auth::{Access, AuthError, Principal};
use crate::core::{Core, CoreError};
use crate::state::{
    self, Caller, CreateFlowLogInput, DescribeFilter, ErrorKind, Field, FlowLog, FlowLogStatus,
    ModifyFlowLogInput, NetworkInterface, NetworkInterfaceInput, ResourceType, StateError,
    TrafficType, VSwitch, Vpc,
};

/// The stream type of `WatchCaptureSet`.
pub type CaptureSetStream = Pin<Box<dyn Stream<Item = Result<pb::CaptureSet, Status>> + Send>>;

/// Default flow logs per account and region.
pub const DEFAULT_QUOTA: usize = 10;

/// The service's policy.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Who may call what.
    pub access: Access,
    /// Most flow logs (not being deleted) one account may have in the region.
    pub quota: usize,
}

/// The control service; cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct ControlService {
    shared: Arc<Shared>,
}

struct Shared {
    config: ServiceConfig,
    core: RwLock<Option<Arc<Core>>>,
    shutdown: watch::Receiver<bool>,
}

impl ControlService {
    /// A service with no serving term yet (every call but authentication fails with `NotLeader` until
    /// [`ControlService::install`]); its watch streams end once `shutdown` becomes true.
    pub fn new(config: ServiceConfig, shutdown: watch::Receiver<bool>) -> Self {
        ControlService {
            shared: Arc::new(Shared {
                config,
                core: RwLock::new(None),
                shutdown,
            }),
        }
    }

    /// Serves from `core` from now on (this replica was elected, or the single controller started).
    pub fn install(&self, core: Arc<Core>) {
        *self.shared.core.write() = Some(core);
    }

    /// Stops serving (this replica lost its leadership): later calls fail with `NotLeader`.
    pub fn retire(&self) {
        if let Some(core) = self.shared.core.write().take() {
            core.end();
        }
    }

    /// The serving term, if any.
    pub fn core(&self) -> Option<Arc<Core>> {
        self.shared
            .core
            .read()
            .clone()
            .filter(|core| !core.has_ended())
    }

    /// The current state, if this replica serves.
    pub fn state(&self) -> Option<Arc<state::State>> {
        self.core().map(|core| core.state())
    }

    fn serving(&self) -> Result<Arc<Core>, Status> {
        self.core().ok_or_else(|| {
            Status::unavailable(
                "NotLeader: this controller replica is standing by (another replica serves, or an election is \
                 under way); retry with the next endpoint",
            )
        })
    }

    fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        self.shared
            .config
            .access
            .authenticate(request.metadata())
            .map_err(auth_status)
    }

    /// The caller of a flow-log call (admin or account).
    fn flow_log_caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        match self.principal(request)? {
            Principal::Admin { .. } => Ok(Caller::Admin),
            Principal::Account { id } => Ok(Caller::Account(id)),
            principal @ Principal::Host { .. } => Err(forbidden_role(&principal, "flow-log calls")),
        }
    }

    /// Refuses anyone but the admin.
    fn admin<T>(&self, request: &Request<T>, what: &str) -> Result<(), Status> {
        match self.principal(request)? {
            Principal::Admin { .. } => Ok(()),
            principal => Err(forbidden_role(&principal, what)),
        }
    }

    /// The account filter of a listing: `None` for the admin, the account for a tenant; hosts are refused.
    fn list_scope<T>(&self, request: &Request<T>) -> Result<Option<String>, Status> {
        match self.principal(request)? {
            Principal::Admin { .. } => Ok(None),
            Principal::Account { id } => Ok(Some(id)),
            principal @ Principal::Host { .. } => {
                Err(forbidden_role(&principal, "inventory listings"))
            }
        }
    }

    /// Refuses anyone but the admin and the host itself.
    fn host_or_admin<T>(&self, request: &Request<T>, host: &str) -> Result<(), Status> {
        if host.is_empty() {
            return Err(status_of(StateError::invalid(
                Field::Host,
                "must not be empty",
            )));
        }
        match self.principal(request)? {
            Principal::Admin { .. } => Ok(()),
            Principal::Host { name } if name == host => Ok(()),
            Principal::Host { name } => Err(Status::permission_denied(format!(
                "Forbidden.Host: host {name} may only follow its own capture set, not {host}'s"
            ))),
            principal => Err(forbidden_role(&principal, "capture-set calls")),
        }
    }

    async fn mutate<T, F>(&self, change: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&mut state::State) -> Result<(T, state::Mutation), StateError> + Send + 'static,
    {
        self.serving()?.mutate(change).await.map_err(core_status)
    }
}

#[tonic::async_trait]
impl pb::control_server::Control for ControlService {
    async fn register_network_interface(
        &self,
        request: Request<pb::RegisterNetworkInterfaceRequest>,
    ) -> Result<Response<pb::RegisterNetworkInterfaceResponse>, Status> {
        self.admin(&request, "inventory changes")?;
        let eni = request
            .into_inner()
            .network_interface
            .ok_or_else(|| {
                status_of(StateError::invalid(
                    Field::NetworkInterface,
                    "the request carries no network interface",
                ))
            })
            .and_then(|eni| NetworkInterface::new(eni_input(eni)).map_err(status_of))?;
        let eni_id = eni.eni_id.clone();
        let host = eni.host.clone();
        let now = unix_now();
        self.mutate(move |state| Ok(((), state.register_eni(eni, now)?)))
            .await?;
        tracing::debug!(%eni_id, %host, "registered network interface");
        Ok(Response::new(pb::RegisterNetworkInterfaceResponse {}))
    }

    async fn deregister_network_interface(
        &self,
        request: Request<pb::DeregisterNetworkInterfaceRequest>,
    ) -> Result<Response<pb::DeregisterNetworkInterfaceResponse>, Status> {
        self.admin(&request, "inventory changes")?;
        let eni_id = request.into_inner().eni_id;
        let id = eni_id.clone();
        self.mutate(move |state| Ok(((), state.deregister_eni(&id)?)))
            .await?;
        tracing::debug!(%eni_id, "deregistered network interface");
        Ok(Response::new(pb::DeregisterNetworkInterfaceResponse {}))
    }

    async fn list_network_interfaces(
        &self,
        request: Request<pb::ListNetworkInterfacesRequest>,
    ) -> Result<Response<pb::ListNetworkInterfacesResponse>, Status> {
        let account = self.list_scope(&request)?;
        let request = request.into_inner();
        let state = self.serving()?.state();
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let (host, vpc_id) = (non_empty(&request.host), non_empty(&request.vpc_id));
        let network_interfaces = state
            .list_enis(host.as_deref(), vpc_id.as_deref(), account.as_deref())
            .iter()
            .map(eni_to_pb)
            .collect();
        Ok(Response::new(pb::ListNetworkInterfacesResponse {
            network_interfaces,
        }))
    }

    async fn create_vpc(
        &self,
        request: Request<pb::CreateVpcRequest>,
    ) -> Result<Response<pb::CreateVpcResponse>, Status> {
        self.admin(&request, "inventory changes")?;
        let vpc = request.into_inner().vpc.ok_or_else(|| {
            status_of(StateError::invalid(
                Field::Vpc,
                "the request carries no VPC",
            ))
        })?;
        let vpc = Vpc::new(vpc.vpc_id, vpc.account_id, unix_now()).map_err(status_of)?;
        self.mutate(move |state| Ok(((), state.create_vpc(vpc)?)))
            .await?;
        Ok(Response::new(pb::CreateVpcResponse {}))
    }

    async fn delete_vpc(
        &self,
        request: Request<pb::DeleteVpcRequest>,
    ) -> Result<Response<pb::DeleteVpcResponse>, Status> {
        self.admin(&request, "inventory changes")?;
        let vpc_id = request.into_inner().vpc_id;
        self.mutate(move |state| Ok(((), state.delete_vpc(&vpc_id)?)))
            .await?;
        Ok(Response::new(pb::DeleteVpcResponse {}))
    }

    async fn list_vpcs(
        &self,
        request: Request<pb::ListVpcsRequest>,
    ) -> Result<Response<pb::ListVpcsResponse>, Status> {
        let account = self.list_scope(&request)?;
        let state = self.serving()?.state();
        let vpcs = state
            .list_vpcs(account.as_deref())
            .into_iter()
            .map(|vpc| pb::Vpc {
                vpc_id: vpc.vpc_id,
                account_id: vpc.account_id,
                creation_time: vpc.creation_time,
            })
            .collect();
        Ok(Response::new(pb::ListVpcsResponse { vpcs }))
    }

    async fn create_v_switch(
        &self,
        request: Request<pb::CreateVSwitchRequest>,
    ) -> Result<Response<pb::CreateVSwitchResponse>, Status> {
        self.admin(&request, "inventory changes")?;
        let vswitch = request.into_inner().vswitch.ok_or_else(|| {
            status_of(StateError::invalid(
                Field::VSwitch,
                "the request carries no vSwitch",
            ))
        })?;
        let vswitch = VSwitch::new(
            vswitch.vswitch_id,
            vswitch.vpc_id,
            vswitch.account_id,
            unix_now(),
        )
        .map_err(status_of)?;
        self.mutate(move |state| Ok(((), state.create_vswitch(vswitch)?)))
            .await?;
        Ok(Response::new(pb::CreateVSwitchResponse {}))
    }

    async fn delete_v_switch(
        &self,
        request: Request<pb::DeleteVSwitchRequest>,
    ) -> Result<Response<pb::DeleteVSwitchResponse>, Status> {
        self.admin(&request, "inventory changes")?;
        let vswitch_id = request.into_inner().vswitch_id;
        self.mutate(move |state| Ok(((), state.delete_vswitch(&vswitch_id)?)))
            .await?;
        Ok(Response::new(pb::DeleteVSwitchResponse {}))
    }

    async fn list_v_switches(
        &self,
        request: Request<pb::ListVSwitchesRequest>,
    ) -> Result<Response<pb::ListVSwitchesResponse>, Status> {
        let account = self.list_scope(&request)?;
        let vpc_id = request.into_inner().vpc_id;
        let state = self.serving()?.state();
        let vswitches = state
            .list_vswitches(
                (!vpc_id.is_empty()).then_some(vpc_id.as_str()),
                account.as_deref(),
            )
            .into_iter()
            .map(|vs| pb::VSwitch {
                vswitch_id: vs.vswitch_id,
                vpc_id: vs.vpc_id,
                account_id: vs.account_id,
                creation_time: vs.creation_time,
            })
            .collect();
        Ok(Response::new(pb::ListVSwitchesResponse { vswitches }))
    }

    async fn create_flow_log(
        &self,
        request: Request<pb::CreateFlowLogRequest>,
    ) -> Result<Response<pb::CreateFlowLogResponse>, Status> {
        let caller = self.flow_log_caller(&request)?;
        let request = request.into_inner();
        let input = CreateFlowLogInput {
            region_id: request.region_id,
            resource_type: resource_type_from_pb(request.resource_type).map_err(status_of)?,
            resource_id: request.resource_id,
            traffic_type: traffic_type_from_pb(request.traffic_type).map_err(status_of)?,
            project_name: request.project_name,
            logstore_name: request.logstore_name,
            flow_log_name: request.flow_log_name,
            description: request.description,
            aggregation_interval: request.aggregation_interval,
            client_token: request.client_token,
        };
        let now = unix_now();
        let projects = self.shared.config.access.projects().clone();
        let quota = self.shared.config.quota;
        let flow_log_id = self
            .mutate(move |state| {
                state.create_flow_log(&caller, &projects, quota, input, now, &mut new_flow_log_id)
            })
            .await?;
        tracing::info!(%flow_log_id, "flow log created");
        Ok(Response::new(pb::CreateFlowLogResponse { flow_log_id }))
    }

    async fn describe_flow_logs(
        &self,
        request: Request<pb::DescribeFlowLogsRequest>,
    ) -> Result<Response<pb::DescribeFlowLogsResponse>, Status> {
        let caller = self.flow_log_caller(&request)?;
        let request = request.into_inner();
        let status = if request.status.is_empty() {
            None
        } else {
            Some(request.status.parse::<FlowLogStatus>().map_err(status_of)?)
        };
        let filter = DescribeFilter {
            region_id: request.region_id,
            flow_log_id: request.flow_log_id,
            flow_log_name: request.flow_log_name,
            resource_type: resource_type_from_pb(request.resource_type).map_err(status_of)?,
            resource_id: request.resource_id,
            vpc_id: request.vpc_id,
            project_name: request.project_name,
            logstore_name: request.logstore_name,
            status,
            page_number: request.page_number,
            page_size: request.page_size,
        };
        let page = self
            .serving()?
            .state()
            .describe_flow_logs(&caller, &filter)
            .map_err(status_of)?;
        Ok(Response::new(pb::DescribeFlowLogsResponse {
            flow_logs: page.flow_logs.iter().map(flow_log_to_pb).collect(),
            total_count: page.total_count,
            page_number: page.page_number,
            page_size: page.page_size,
        }))
    }

    async fn modify_flow_log_attribute(
        &self,
        request: Request<pb::ModifyFlowLogAttributeRequest>,
    ) -> Result<Response<pb::ModifyFlowLogAttributeResponse>, Status> {
        let caller = self.flow_log_caller(&request)?;
        let request = request.into_inner();
        let input = ModifyFlowLogInput {
            region_id: request.region_id,
            flow_log_id: request.flow_log_id.clone(),
            flow_log_name: request.flow_log_name,
            description: request.description,
            aggregation_interval: (request.aggregation_interval != 0)
                .then_some(request.aggregation_interval),
        };
        self.mutate(move |state| Ok(((), state.modify_flow_log(&caller, input)?)))
            .await?;
        tracing::info!(flow_log_id = %request.flow_log_id, "flow log modified");
        Ok(Response::new(pb::ModifyFlowLogAttributeResponse {}))
    }

    async fn active_flow_log(
        &self,
        request: Request<pb::ActiveFlowLogRequest>,
    ) -> Result<Response<pb::ActiveFlowLogResponse>, Status> {
        let caller = self.flow_log_caller(&request)?;
        let request = request.into_inner();
        let id = request.flow_log_id.clone();
        self.mutate(move |state| {
            Ok((
                (),
                state.activate_flow_log(&caller, &request.region_id, &request.flow_log_id)?,
            ))
        })
        .await?;
        tracing::info!(flow_log_id = %id, "flow log activated");
        Ok(Response::new(pb::ActiveFlowLogResponse {}))
    }

    async fn deactive_flow_log(
        &self,
        request: Request<pb::DeactiveFlowLogRequest>,
    ) -> Result<Response<pb::DeactiveFlowLogResponse>, Status> {
        let caller = self.flow_log_caller(&request)?;
        let request = request.into_inner();
        let id = request.flow_log_id.clone();
        self.mutate(move |state| {
            Ok((
                (),
                state.deactivate_flow_log(&caller, &request.region_id, &request.flow_log_id)?,
            ))
        })
        .await?;
        tracing::info!(flow_log_id = %id, "flow log deactivated");
        Ok(Response::new(pb::DeactiveFlowLogResponse {}))
    }

    async fn delete_flow_log(
        &self,
        request: Request<pb::DeleteFlowLogRequest>,
    ) -> Result<Response<pb::DeleteFlowLogResponse>, Status> {
        let caller = self.flow_log_caller(&request)?;
        let request = request.into_inner();
        let id = request.flow_log_id.clone();
        self.mutate(move |state| {
            Ok((
                (),
                state.delete_flow_log(&caller, &request.region_id, &request.flow_log_id)?,
            ))
        })
        .await?;
        tracing::info!(flow_log_id = %id, "flow log deleted");
        Ok(Response::new(pb::DeleteFlowLogResponse {}))
    }

    type WatchCaptureSetStream = CaptureSetStream;

    async fn watch_capture_set(
        &self,
        request: Request<pb::WatchCaptureSetRequest>,
    ) -> Result<Response<Self::WatchCaptureSetStream>, Status> {
        let host = request.get_ref().host.clone();
        self.host_or_admin(&request, &host)?;
        let request = request.into_inner();
        let core = self.serving()?;
        let known =
            (!request.state_id.is_empty()).then_some((request.state_id, request.known_version));
        tracing::info!(%host, resuming = known.is_some(), "capture-set watcher connected");
        let watch = core.watch(host, known);
        let shutdown = self.shared.shutdown.clone();
        let stream = futures_util::stream::unfold(
            (watch, shutdown),
            |(mut watch, mut shutdown)| async move {
                if *shutdown.borrow() {
                    return None;
                }
                let set = tokio::select! {
                    set = watch.next() => set?,
                    _ = shutdown.wait_for(|stop| *stop) => return None,
                };
                Some((Ok(capture_set_to_pb(&set)), (watch, shutdown)))
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn ack_capture_set(
        &self,
        request: Request<pb::AckCaptureSetRequest>,
    ) -> Result<Response<pb::AckCaptureSetResponse>, Status> {
        let host = request.get_ref().host.clone();
        self.host_or_admin(&request, &host)?;
        let request = request.into_inner();
        let accepted = self
            .serving()?
            .acknowledge(&host, &request.state_id, request.version)
            .map_err(status_of)?;
        tracing::debug!(%host, version = request.version, accepted, "capture set acknowledged");
        Ok(Response::new(pb::AckCaptureSetResponse { accepted }))
    }
}

/// The gRPC status of a state error: `"<code>: <message>"`.
pub fn status_of(error: StateError) -> Status {
    let message = format!("{}: {error}", error.code());
    match error.kind() {
        ErrorKind::InvalidArgument => Status::invalid_argument(message),
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::AlreadyExists => Status::already_exists(message),
        ErrorKind::FailedPrecondition => Status::failed_precondition(message),
        ErrorKind::ResourceExhausted => Status::resource_exhausted(message),
        ErrorKind::PermissionDenied => Status::permission_denied(message),
        ErrorKind::Internal => Status::internal(message),
    }
}

fn core_status(error: CoreError) -> Status {
    match error {
        CoreError::State(error) => status_of(error),
        CoreError::Store(error) => Status::internal(format!("InternalError.Persistence: {error}")),
        CoreError::Ended => Status::unavailable(
            "NotLeader: this controller replica stopped serving before the change was made; retry with the next \
             endpoint",
        ),
    }
}

fn auth_status(error: AuthError) -> Status {
    Status::unauthenticated(format!("{}: {error}", error.code()))
}

fn forbidden_role(principal: &Principal, what: &str) -> Status {
    Status::permission_denied(format!(
        "Forbidden.Role: {} may not make {what}",
        principal.describe()
    ))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// 20 random characters of `[a-z0-9]` (about 103 bits) from the OS's random source, after `prefix`. If that
/// source fails, the clock's nanoseconds stand in (ids stay unique-checked by the state).
pub fn random_id(prefix: &str) -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    let mut value = u128::from_le_bytes(bytes);
    let mut id = String::with_capacity(prefix.len() + 20);
    id.push_str(prefix);
    for _ in 0..20 {
        // `value % 36` is below 36, the alphabet's length: the index is always in bounds.
        id.push(char::from(ALPHABET[(value % 36) as usize]));
        value /= 36;
    }
    id
}

/// `fl-` and 20 random characters.
fn new_flow_log_id() -> String {
    random_id("fl-")
}

/// The domain input of a wire ENI.
pub fn eni_input(eni: pb::NetworkInterface) -> NetworkInterfaceInput {
    NetworkInterfaceInput {
        eni_id: eni.eni_id,
        mac: eni.mac,
        vm_id: eni.vm_id,
        vswitch_id: eni.vswitch_id,
        vpc_id: eni.vpc_id,
        account_id: eni.account_id,
        host: eni.host,
    }
}

/// The wire form of an ENI.
pub fn eni_to_pb(eni: &NetworkInterface) -> pb::NetworkInterface {
    pb::NetworkInterface {
        eni_id: eni.eni_id.clone(),
        mac: eni.mac.to_string(),
        vm_id: eni.vm_id.clone(),
        vswitch_id: eni.vswitch_id.clone(),
        vpc_id: eni.vpc_id.clone(),
        account_id: eni.account_id.clone(),
        host: eni.host.clone(),
    }
}

/// The domain resource type of a wire value; `None` for UNSPECIFIED.
pub fn resource_type_from_pb(value: i32) -> Result<Option<ResourceType>, StateError> {
    match pb::ResourceType::try_from(value) {
        Ok(pb::ResourceType::Unspecified) => Ok(None),
        Ok(pb::ResourceType::NetworkInterface) => Ok(Some(ResourceType::NetworkInterface)),
        Ok(pb::ResourceType::Vswitch) => Ok(Some(ResourceType::VSwitch)),
        Ok(pb::ResourceType::Vpc) => Ok(Some(ResourceType::Vpc)),
        Err(_) => Err(StateError::invalid(
            Field::ResourceType,
            format!("{value} is not a resource type"),
        )),
    }
}

/// The wire value of a resource type.
pub fn resource_type_to_pb(resource_type: ResourceType) -> pb::ResourceType {
    match resource_type {
        ResourceType::NetworkInterface => pb::ResourceType::NetworkInterface,
        ResourceType::VSwitch => pb::ResourceType::Vswitch,
        ResourceType::Vpc => pb::ResourceType::Vpc,
    }
}

/// The domain traffic type of a wire value; UNSPECIFIED is All.
pub fn traffic_type_from_pb(value: i32) -> Result<TrafficType, StateError> {
    match pb::TrafficType::try_from(value) {
        Ok(pb::TrafficType::Unspecified | pb::TrafficType::All) => Ok(TrafficType::All),
        Ok(pb::TrafficType::Allow) => Ok(TrafficType::Allow),
        Ok(pb::TrafficType::Drop) => Ok(TrafficType::Drop),
        Err(_) => Err(StateError::invalid(
            Field::TrafficType,
            format!("{value} is not a traffic type"),
        )),
    }
}

/// The wire value of a traffic type.
pub fn traffic_type_to_pb(traffic_type: TrafficType) -> pb::TrafficType {
    match traffic_type {
        TrafficType::All => pb::TrafficType::All,
        TrafficType::Allow => pb::TrafficType::Allow,
        TrafficType::Drop => pb::TrafficType::Drop,
    }
}

/// The wire form of a flow log.
pub fn flow_log_to_pb(flow_log: &FlowLog) -> pb::FlowLog {
    pb::FlowLog {
        flow_log_id: flow_log.flow_log_id.clone(),
        flow_log_name: flow_log.flow_log_name.clone(),
        description: flow_log.description.clone(),
        region_id: flow_log.region_id.clone(),
        resource_type: resource_type_to_pb(flow_log.resource_type).into(),
        resource_id: flow_log.resource_id.clone(),
        traffic_type: traffic_type_to_pb(flow_log.traffic_type).into(),
        project_name: flow_log.project_name.clone(),
        logstore_name: flow_log.logstore_name.clone(),
        aggregation_interval: flow_log.aggregation_interval.minutes(),
        status: flow_log.status.as_str().to_owned(),
        creation_time: flow_log.creation_time,
        account_id: flow_log.account_id.clone(),
        vpc_id: flow_log.vpc_id.clone(),
    }
}

/// The wire form of a capture set.
pub fn capture_set_to_pb(set: &state::CaptureSet) -> pb::CaptureSet {
    pb::CaptureSet {
        version: set.version,
        region_id: set.region_id.clone(),
        state_id: set.state_id.clone(),
        interfaces: set
            .interfaces
            .iter()
            .map(|captured| pb::CapturedInterface {
                network_interface: Some(eni_to_pb(&captured.network_interface)),
                destinations: captured
                    .destinations
                    .iter()
                    .map(|d| pb::Destination {
                        flow_log_id: d.flow_log_id.clone(),
                        project: d.project.clone(),
                        logstore: d.logstore.clone(),
                        traffic_type: traffic_type_to_pb(d.traffic_type).into(),
                        interval_seconds: d.interval_seconds,
                    })
                    .collect(),
            })
            .collect(),
    }
}
