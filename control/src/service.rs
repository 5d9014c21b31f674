//! The gRPC `flowlog.v1.Control` service: converts wire messages to [`crate::state`] inputs, serialises mutations,
//! persists each new state before publishing it, and streams capture sets to watching hosts.
//!
//! # Design
//! The current state is an `Arc<State>` behind a lock held only to swap or clone the `Arc`: readers never wait on
//! the disk. Mutations run one at a time (an async mutex) in a task of their own, so a client that hangs up
//! mid-call cannot leave a snapshot written but not published: each clones the state, applies the change, stores
//! the snapshot (tmp + fsync + rename + fsync dir), then publishes the new `Arc` and its version on a
//! `tokio::sync::watch` channel. A watcher wakes on every version, compares its host's capture-set version with the
//! last one it sent, and sends a full snapshot only when it changed; it builds the next message only when the
//! client has taken the previous one, so a slow watcher skips intermediate versions instead of blocking anyone.
//!
//! # Guarantees
//! - A mutation is acknowledged only after its snapshot is on disk; a failed write leaves state and file unchanged
//!   and returns `INTERNAL`.
//! - Errors are statuses whose message is `"<StableCode>: <human message>"`, with codes `INVALID_ARGUMENT`,
//!   `NOT_FOUND`, `ALREADY_EXISTS` or `INTERNAL`.
//! - Every watch stream ends when the server shuts down.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use flowlog_proto::v1 as pb;
use futures_util::Stream;
use parking_lot::RwLock;
use tokio::sync::{Mutex, watch};
use tonic::{Request, Response, Status};

use crate::persist::{self, PersistError};
use crate::state::{
    self, CreateFlowLogInput, DescribeFilter, ErrorKind, Field, FlowLog, FlowLogStatus, Mutation,
    NetworkInterface, NetworkInterfaceInput, ResourceType, State, StateError, TrafficType,
};

/// The stream type of `WatchCaptureSet`.
pub type CaptureSetStream = Pin<Box<dyn Stream<Item = Result<pb::CaptureSet, Status>> + Send>>;

/// The control service; cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct ControlService {
    shared: Arc<Shared>,
}

struct Shared {
    current: RwLock<Arc<State>>,
    writer: Mutex<()>,
    state_file: PathBuf,
    versions: watch::Sender<u64>,
    shutdown: watch::Receiver<bool>,
}

impl ControlService {
    /// A service over `state`, persisting every change to `state_file`; its watch streams end once `shutdown`
    /// becomes true.
    pub fn new(state: State, state_file: PathBuf, shutdown: watch::Receiver<bool>) -> Self {
        let (versions, _) = watch::channel(state.version());
        ControlService {
            shared: Arc::new(Shared {
                current: RwLock::new(Arc::new(state)),
                writer: Mutex::new(()),
                state_file,
                versions,
                shutdown,
            }),
        }
    }

    /// The current state.
    pub fn state(&self) -> Arc<State> {
        self.shared.current.read().clone()
    }

    /// Applies `change` to a copy of the state in a task of its own, persists the result and publishes it.
    async fn mutate<T, F>(&self, change: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&mut State) -> Result<(T, Mutation), StateError> + Send + 'static,
    {
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            let _writer = shared.writer.lock().await;
            let mut next = State::clone(&shared.current.read());
            let (value, mutation) = change(&mut next).map_err(status_of)?;
            if !mutation.changed {
                return Ok(value);
            }
            let path = shared.state_file.clone();
            let bytes = persist::encode(&path, &next).map_err(persist_status)?;
            tokio::task::spawn_blocking(move || persist::store(&path, &bytes))
                .await
                .map_err(|e| {
                    Status::internal(format!("InternalError: persisting the state failed: {e}"))
                })?
                .map_err(persist_status)?;
            let version = next.version();
            *shared.current.write() = Arc::new(next);
            shared.versions.send_replace(version);
            if !mutation.hosts.is_empty() {
                tracing::info!(version, hosts = ?mutation.hosts, "capture sets changed");
            }
            Ok(value)
        });
        task.await
            .map_err(|e| Status::internal(format!("InternalError: the mutation failed: {e}")))?
    }
}

#[tonic::async_trait]
impl pb::control_server::Control for ControlService {
    async fn register_network_interface(
        &self,
        request: Request<pb::RegisterNetworkInterfaceRequest>,
    ) -> Result<Response<pb::RegisterNetworkInterfaceResponse>, Status> {
        let eni = request
            .into_inner()
            .network_interface
            .ok_or_else(|| {
                status_of(StateError::InvalidParameter {
                    field: Field::NetworkInterface,
                    reason: "the request carries no network interface".into(),
                })
            })
            .and_then(|eni| NetworkInterface::new(eni_input(eni)).map_err(status_of))?;
        let eni_id = eni.eni_id.clone();
        let host = eni.host.clone();
        self.mutate(move |state| Ok(((), state.register_eni(eni)?)))
            .await?;
        tracing::debug!(%eni_id, %host, "registered network interface");
        Ok(Response::new(pb::RegisterNetworkInterfaceResponse {}))
    }

    async fn deregister_network_interface(
        &self,
        request: Request<pb::DeregisterNetworkInterfaceRequest>,
    ) -> Result<Response<pb::DeregisterNetworkInterfaceResponse>, Status> {
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
        let host = request.into_inner().host;
        let host = (!host.is_empty()).then_some(host.as_str());
        let network_interfaces = self.state().list_enis(host).iter().map(eni_to_pb).collect();
        Ok(Response::new(pb::ListNetworkInterfacesResponse {
            network_interfaces,
        }))
    }

    async fn create_flow_log(
        &self,
        request: Request<pb::CreateFlowLogRequest>,
    ) -> Result<Response<pb::CreateFlowLogResponse>, Status> {
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
        let flow_log_id = self
            .mutate(move |state| state.create_flow_log(input, now, &mut new_flow_log_id))
            .await?;
        tracing::info!(%flow_log_id, "flow log created");
        Ok(Response::new(pb::CreateFlowLogResponse { flow_log_id }))
    }

    async fn describe_flow_logs(
        &self,
        request: Request<pb::DescribeFlowLogsRequest>,
    ) -> Result<Response<pb::DescribeFlowLogsResponse>, Status> {
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
            .state()
            .describe_flow_logs(&filter)
            .map_err(status_of)?;
        Ok(Response::new(pb::DescribeFlowLogsResponse {
            flow_logs: page.flow_logs.iter().map(flow_log_to_pb).collect(),
            total_count: page.total_count,
            page_number: page.page_number,
            page_size: page.page_size,
        }))
    }

    async fn delete_flow_log(
        &self,
        request: Request<pb::DeleteFlowLogRequest>,
    ) -> Result<Response<pb::DeleteFlowLogResponse>, Status> {
        let request = request.into_inner();
        let flow_log_id = request.flow_log_id.clone();
        self.mutate(move |state| {
            Ok((
                (),
                state.delete_flow_log(&request.region_id, &request.flow_log_id)?,
            ))
        })
        .await?;
        tracing::info!(%flow_log_id, "flow log deleted");
        Ok(Response::new(pb::DeleteFlowLogResponse {}))
    }

    type WatchCaptureSetStream = CaptureSetStream;

    async fn watch_capture_set(
        &self,
        request: Request<pb::WatchCaptureSetRequest>,
    ) -> Result<Response<Self::WatchCaptureSetStream>, Status> {
        let host = request.into_inner().host;
        if host.is_empty() {
            return Err(status_of(StateError::InvalidParameter {
                field: Field::Host,
                reason: "must not be empty".into(),
            }));
        }
        tracing::info!(%host, "capture-set watcher connected");
        let watcher = Watcher {
            shared: self.shared.clone(),
            versions: self.shared.versions.subscribe(),
            shutdown: self.shared.shutdown.clone(),
            host,
            last_sent: None,
        };
        let stream = futures_util::stream::unfold(watcher, |mut watcher| async move {
            let set = watcher.next_capture_set().await?;
            Some((Ok(set), watcher))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// One host's watch: the state of its stream between messages.
struct Watcher {
    shared: Arc<Shared>,
    versions: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    host: String,
    last_sent: Option<u64>,
}

impl Watcher {
    /// The host's next capture set: at once on the first call, then when its version changes; `None` at shutdown.
    async fn next_capture_set(&mut self) -> Option<pb::CaptureSet> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            // Mark the current version seen before reading the state: a change published after this line wakes
            // `changed()` below, so none is missed.
            self.versions.borrow_and_update();
            let state = self.shared.current.read().clone();
            let version = state.host_version(&self.host);
            if self.last_sent != Some(version) {
                self.last_sent = Some(version);
                return Some(capture_set_to_pb(&state.capture_set(&self.host)));
            }
            tokio::select! {
                changed = self.versions.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                changed = self.shutdown.changed() => {
                    // The sender gone means the server is gone: end the stream.
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}

/// The gRPC status of a state error: `"<code>: <message>"`.
pub fn status_of(error: StateError) -> Status {
    let message = format!("{}: {error}", error.code());
    match error.kind() {
        ErrorKind::InvalidArgument => Status::invalid_argument(message),
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::AlreadyExists => Status::already_exists(message),
        ErrorKind::Internal => Status::internal(message),
    }
}

fn persist_status(error: PersistError) -> Status {
    tracing::error!(%error, "could not persist the state");
    Status::internal(format!("InternalError.Persistence: {error}"))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `fl-` and 20 random characters of `[a-z0-9]` (about 103 bits), from the OS's random source. If that source
/// fails, the clock's nanoseconds stand in: the id stays unique-checked by the state.
fn new_flow_log_id() -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    let mut value = u128::from_le_bytes(bytes);
    let mut id = String::with_capacity(23);
    id.push_str("fl-");
    for _ in 0..20 {
        // `value % 36` is below 36, the alphabet's length: the index is always in bounds.
        id.push(char::from(ALPHABET[(value % 36) as usize]));
        value /= 36;
    }
    id
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
        Err(_) => Err(StateError::InvalidParameter {
            field: Field::ResourceType,
            reason: format!("{value} is not a resource type"),
        }),
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
        Err(_) => Err(StateError::InvalidParameter {
            field: Field::TrafficType,
            reason: format!("{value} is not a traffic type"),
        }),
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
    }
}

/// The wire form of a capture set.
pub fn capture_set_to_pb(set: &state::CaptureSet) -> pb::CaptureSet {
    pb::CaptureSet {
        version: set.version,
        region_id: set.region_id.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use pb::control_server::Control as _;
    use std::time::Duration;

    fn service_in(dir: &std::path::Path) -> (ControlService, watch::Sender<bool>) {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = State::new("cn-hangzhou").unwrap();
        (
            ControlService::new(state, dir.join("state.json"), shutdown_rx),
            shutdown,
        )
    }

    fn register(n: u32, host: &str) -> Request<pb::RegisterNetworkInterfaceRequest> {
        Request::new(pb::RegisterNetworkInterfaceRequest {
            network_interface: Some(pb::NetworkInterface {
                eni_id: format!("eni-{n}"),
                mac: format!("02:00:00:00:{:02x}:{:02x}", n >> 8, n & 0xff),
                vm_id: String::new(),
                vswitch_id: "vsw-1".into(),
                vpc_id: "vpc-1".into(),
                account_id: "1".into(),
                host: host.into(),
            }),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_mutations_are_serialised_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let (service, _shutdown) = service_in(dir.path());
        let calls: Vec<_> = (0..40)
            .map(|n| {
                let service = service.clone();
                tokio::spawn(
                    async move { service.register_network_interface(register(n, "h")).await },
                )
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        let state = service.state();
        assert_eq!(state.list_enis(None).len(), 40);
        assert_eq!(state.version(), 40);
        let stored = persist::load(&dir.path().join("state.json"), "cn-hangzhou")
            .unwrap()
            .unwrap();
        assert_eq!(stored, *state);
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let (service, _shutdown) = service_in(&sub);
        service
            .register_network_interface(register(1, "h"))
            .await
            .unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        let status = service
            .register_network_interface(register(2, "h"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(
            status.message().starts_with("InternalError.Persistence: "),
            "{status:?}"
        );
        assert_eq!(service.state().list_enis(None).len(), 1);
        assert_eq!(service.state().version(), 1);
    }

    #[tokio::test]
    async fn watchers_skip_foreign_changes_coalesce_and_end_at_shutdown() {
        use futures_util::StreamExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (service, shutdown) = service_in(dir.path());
        service
            .register_network_interface(register(1, "a"))
            .await
            .unwrap();
        let create = pb::CreateFlowLogRequest {
            resource_type: pb::ResourceType::Vpc.into(),
            resource_id: "vpc-1".into(),
            project_name: "proj".into(),
            logstore_name: "store".into(),
            ..Default::default()
        };
        service.create_flow_log(Request::new(create)).await.unwrap();
        let watch = |host: &str| {
            let service = service.clone();
            let host = host.to_owned();
            async move {
                service
                    .watch_capture_set(Request::new(pb::WatchCaptureSetRequest { host }))
                    .await
                    .unwrap()
                    .into_inner()
            }
        };
        let mut a = watch("a").await;
        let mut b = watch("b").await;
        let first = a.next().await.unwrap().unwrap();
        assert_eq!(first.interfaces.len(), 1);
        assert_eq!(b.next().await.unwrap().unwrap().interfaces.len(), 0);
        // Three changes on host a while its watcher does not read: it then gets one set, the latest.
        for n in 2..5 {
            service
                .register_network_interface(register(n, "a"))
                .await
                .unwrap();
        }
        let latest = a.next().await.unwrap().unwrap();
        assert_eq!(latest.interfaces.len(), 4);
        assert_eq!(latest.version, service.state().host_version("a"));
        // Host b saw none of it: nothing is ready on its stream.
        let pending = tokio::time::timeout(Duration::from_millis(50), b.next()).await;
        assert!(pending.is_err(), "host b was sent {pending:?}");
        shutdown.send_replace(true);
        assert!(a.next().await.is_none());
        assert!(b.next().await.is_none());
    }

    #[test]
    fn flow_log_ids_look_random() {
        let a = new_flow_log_id();
        let b = new_flow_log_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 23);
        assert!(a.starts_with("fl-"));
        assert!(
            a[3..]
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn statuses_carry_code_and_grpc_code() {
        let status = status_of(StateError::FlowLogNotFound { id: "fl-x".into() });
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(
            status.message(),
            "InvalidFlowLogId.NotFound: flow log fl-x does not exist"
        );
        let status = status_of(resource_type_from_pb(42).unwrap_err());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status
                .message()
                .starts_with("InvalidParameter.ResourceType: ")
        );
        assert_eq!(traffic_type_from_pb(0).unwrap(), TrafficType::All);
        assert!(traffic_type_from_pb(-1).is_err());
    }
}
