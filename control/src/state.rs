//! The control plane's state and every rule over it, sans IO: the ENI inventory, the flow logs, and the capture set
//! each host must apply.
//!
//! Nothing here touches the network, the disk or the clock: the current time and the flow-log id generator are
//! passed in, so every rule is a pure function over [`State`], unit-tested below. The gRPC layer
//! ([`crate::service`]) converts wire messages into the inputs of this module, and [`crate::persist`] stores
//! [`Snapshot`]s of it.
//!
//! # Guarantees
//! - Every mutation validates its whole input before changing anything: a refused call leaves the state as it was.
//! - An ENI id and a MAC address identify at most one ENI; a vSwitch belongs to exactly one VPC.
//! - A flow log on a VPC or a vSwitch covers exactly the ENIs in its scope at each moment, including ENIs registered
//!   after it was created; a flow log outlives its resource (it then covers nothing).
//! - [`State::version`] increases on every change. A host's capture-set version ([`State::host_version`]) is the state
//!   version of the last change that altered that host's capture set, so it increases on every such change, and
//!   only then; it survives a restart with the rest of the state.
//!
//! # Limitations
//! Flow logs are Active as soon as they exist: statuses driven by host acknowledgements, quotas and tenancy come in
//! a later issue. VPCs and vSwitches are known only through the ENIs that reference them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Largest page of [`State::describe_flow_logs`].
pub const MAX_PAGE_SIZE: u32 = 50;
/// Page size when the request gives 0.
pub const DEFAULT_PAGE_SIZE: u32 = 10;
/// Format number written into every [`Snapshot`].
pub const SNAPSHOT_FORMAT: u32 = 1;

/// An error of a control-plane request: every variant has a stable code (see [`StateError::code`]) modelled on
/// Alibaba Cloud's, and a kind that maps onto a gRPC status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A request field has a value the API does not accept (empty, too long, unknown enum value, ...).
    #[error("{field} is invalid: {reason}")]
    InvalidParameter {
        /// The offending field.
        field: Field,
        /// What is wrong with it.
        reason: String,
    },
    /// The ENI id does not have the `eni-` form.
    #[error(
        "network interface id {id:?} is malformed: expected \"eni-\" followed by 1 to 60 letters, digits or '-'"
    )]
    MalformedEniId {
        /// The id as given.
        id: String,
    },
    /// The MAC address is not six hexadecimal octets separated by ':' (or '-').
    #[error(
        "MAC address {mac:?} is malformed: expected six hexadecimal octets like 02:00:00:e1:00:0a"
    )]
    MalformedMac {
        /// The address as given.
        mac: String,
    },
    /// The MAC address is a multicast / broadcast address or all zeros: no ENI can own it.
    #[error("MAC address {mac} is not a unicast station address")]
    MacNotUnicast {
        /// The address.
        mac: MacAddr,
    },
    /// Another ENI already has this MAC address.
    #[error("MAC address {mac} is already used by {owner}")]
    MacInUse {
        /// The address.
        mac: MacAddr,
        /// The ENI that owns it.
        owner: String,
    },
    /// The vSwitch is already known (through other ENIs) to belong to another VPC.
    #[error("vSwitch {vswitch_id} belongs to {known_vpc_id}, not {requested_vpc_id}")]
    VSwitchVpcMismatch {
        /// The vSwitch.
        vswitch_id: String,
        /// The VPC the registered ENIs put it in.
        known_vpc_id: String,
        /// The VPC of the request.
        requested_vpc_id: String,
    },
    /// No registered ENI has this id.
    #[error("network interface {id} is not registered")]
    EniNotFound {
        /// The id.
        id: String,
    },
    /// The request names a region this controller does not serve.
    #[error("region {requested} is not served here (this controller serves {served})")]
    RegionNotFound {
        /// The region of the request.
        requested: String,
        /// The region this controller serves.
        served: String,
    },
    /// The flow log's resource (ENI, vSwitch or VPC) is unknown.
    #[error("{resource_type} {resource_id} does not exist")]
    ResourceNotFound {
        /// The kind of resource.
        resource_type: ResourceType,
        /// Its id.
        resource_id: String,
    },
    /// The project name breaks the log service's naming rules.
    #[error(
        "project name {name:?} is malformed: 3 to 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
    )]
    MalformedProjectName {
        /// The name as given.
        name: String,
    },
    /// The logstore name breaks the log service's naming rules.
    #[error(
        "logstore name {name:?} is malformed: 3 to 63 characters of a-z, 0-9, '-' and '_', starting and ending with a letter or digit"
    )]
    MalformedLogstoreName {
        /// The name as given.
        name: String,
    },
    /// The aggregation interval is not 1, 5 or 10 minutes.
    #[error("aggregation interval {minutes} is not supported: use 1, 5 or 10 (minutes)")]
    InvalidAggregationInterval {
        /// The interval as given, in minutes.
        minutes: u32,
    },
    /// A client token already created a flow log with different parameters.
    #[error("client token {token:?} was already used for {flow_log_id} with different parameters")]
    IdempotentParameterMismatch {
        /// The token.
        token: String,
        /// The flow log the token created.
        flow_log_id: String,
    },
    /// A flow log already delivers this resource's records to this project and logstore.
    #[error("{existing} already delivers {resource_type} {resource_id} to {project}/{logstore}")]
    FlowLogExists {
        /// The existing flow log.
        existing: String,
        /// Its resource type.
        resource_type: ResourceType,
        /// Its resource.
        resource_id: String,
        /// Its project.
        project: String,
        /// Its logstore.
        logstore: String,
    },
    /// No flow log has this id.
    #[error("flow log {id} does not exist")]
    FlowLogNotFound {
        /// The id.
        id: String,
    },
    /// The id generator kept producing ids that are already taken.
    #[error("could not allocate a fresh flow log id")]
    IdExhausted,
    /// A snapshot breaks an invariant of the state (duplicate id, MAC used twice, ...): it was not written by us, or
    /// it was edited.
    #[error("inconsistent snapshot: {reason}")]
    InconsistentSnapshot {
        /// What is inconsistent.
        reason: String,
    },
}

impl StateError {
    /// The stable, machine-readable code of this error, in Alibaba Cloud's style.
    pub fn code(&self) -> &'static str {
        match self {
            StateError::InvalidParameter { field, .. } => field.code(),
            StateError::MalformedEniId { .. } => "InvalidNetworkInterfaceId.Malformed",
            StateError::MalformedMac { .. } => "InvalidMacAddress.Malformed",
            StateError::MacNotUnicast { .. } => "InvalidMacAddress.NotUnicast",
            StateError::MacInUse { .. } => "InvalidMacAddress.InUse",
            StateError::VSwitchVpcMismatch { .. } => "InvalidVSwitchId.VpcMismatch",
            StateError::EniNotFound { .. } => "InvalidNetworkInterfaceId.NotFound",
            StateError::RegionNotFound { .. } => "InvalidRegionId.NotFound",
            StateError::ResourceNotFound { .. } => "InvalidResourceId.NotFound",
            StateError::MalformedProjectName { .. } => "InvalidProjectName.Malformed",
            StateError::MalformedLogstoreName { .. } => "InvalidLogStoreName.Malformed",
            StateError::InvalidAggregationInterval { .. } => "InvalidParameter.AggregationInterval",
            StateError::IdempotentParameterMismatch { .. } => "IdempotentParameterMismatch",
            StateError::FlowLogExists { .. } => "AlreadyExists.FlowLog",
            StateError::FlowLogNotFound { .. } => "InvalidFlowLogId.NotFound",
            StateError::IdExhausted => "InternalError.FlowLogId",
            StateError::InconsistentSnapshot { .. } => "InternalError.Snapshot",
        }
    }

    /// The class of this error, which the gRPC layer maps onto a status code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StateError::InvalidParameter { .. }
            | StateError::MalformedEniId { .. }
            | StateError::MalformedMac { .. }
            | StateError::MacNotUnicast { .. }
            | StateError::VSwitchVpcMismatch { .. }
            | StateError::MalformedProjectName { .. }
            | StateError::MalformedLogstoreName { .. }
            | StateError::InvalidAggregationInterval { .. }
            | StateError::IdempotentParameterMismatch { .. } => ErrorKind::InvalidArgument,
            StateError::EniNotFound { .. }
            | StateError::RegionNotFound { .. }
            | StateError::ResourceNotFound { .. }
            | StateError::FlowLogNotFound { .. } => ErrorKind::NotFound,
            StateError::MacInUse { .. } | StateError::FlowLogExists { .. } => {
                ErrorKind::AlreadyExists
            }
            StateError::IdExhausted | StateError::InconsistentSnapshot { .. } => {
                ErrorKind::Internal
            }
        }
    }

    fn invalid(field: Field, reason: impl Into<String>) -> Self {
        StateError::InvalidParameter {
            field,
            reason: reason.into(),
        }
    }
}

/// The class of a [`StateError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong whatever the state.
    InvalidArgument,
    /// The request names something that does not exist.
    NotFound,
    /// The request would create something that conflicts with what exists.
    AlreadyExists,
    /// The controller failed.
    Internal,
}

/// A request field, named as in the API, for [`StateError::InvalidParameter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The request carried no network interface at all.
    NetworkInterface,
    /// `VmId`.
    VmId,
    /// `VSwitchId`.
    VSwitchId,
    /// `VpcId`.
    VpcId,
    /// `AccountId`.
    AccountId,
    /// `Host`.
    Host,
    /// `RegionId`.
    RegionId,
    /// `ResourceType`.
    ResourceType,
    /// `ResourceId`.
    ResourceId,
    /// `TrafficType`.
    TrafficType,
    /// `FlowLogName`.
    FlowLogName,
    /// `Description`.
    Description,
    /// `ClientToken`.
    ClientToken,
    /// `Status`.
    Status,
    /// `PageSize`.
    PageSize,
}

impl Field {
    /// The error code of an invalid value of this field.
    pub fn code(self) -> &'static str {
        match self {
            Field::NetworkInterface => "MissingParameter.NetworkInterface",
            Field::VmId => "InvalidParameter.VmId",
            Field::VSwitchId => "InvalidParameter.VSwitchId",
            Field::VpcId => "InvalidParameter.VpcId",
            Field::AccountId => "InvalidParameter.AccountId",
            Field::Host => "InvalidParameter.Host",
            Field::RegionId => "InvalidParameter.RegionId",
            Field::ResourceType => "InvalidParameter.ResourceType",
            Field::ResourceId => "InvalidParameter.ResourceId",
            Field::TrafficType => "InvalidParameter.TrafficType",
            Field::FlowLogName => "InvalidParameter.FlowLogName",
            Field::Description => "InvalidParameter.Description",
            Field::ClientToken => "InvalidParameter.ClientToken",
            Field::Status => "InvalidParameter.Status",
            Field::PageSize => "InvalidParameter.PageSize",
        }
    }

    /// The field's name in the API.
    pub fn name(self) -> &'static str {
        let code = self.code();
        code.split_once('.').map_or(code, |(_, name)| name)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated unicast MAC address; displayed (and serialised) as lowercase `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Whether an ENI can own this address: not multicast or broadcast (I/G bit clear) and not all zeros.
    pub fn is_unicast(self) -> bool {
        self.0[0] & 0x01 == 0 && self.0 != [0; 6]
    }
}

impl FromStr for MacAddr {
    type Err = StateError;

    /// Parses six two-digit hexadecimal octets separated by ':' or '-' (one separator throughout).
    fn from_str(text: &str) -> Result<Self, StateError> {
        let malformed = || StateError::MalformedMac {
            mac: text.to_owned(),
        };
        let separator = match text.as_bytes().get(2) {
            Some(b':') => ':',
            Some(b'-') => '-',
            _ => return Err(malformed()),
        };
        let mut octets = [0u8; 6];
        let mut parts = text.split(separator);
        for octet in &mut octets {
            let part = parts.next().ok_or_else(malformed)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(malformed());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| malformed())?;
        }
        if parts.next().is_some() {
            return Err(malformed());
        }
        Ok(MacAddr(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A registered ENI, validated: build one with [`NetworkInterface::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetworkInterface {
    /// `eni-...` id.
    pub eni_id: String,
    /// Its MAC address (unicast).
    pub mac: MacAddr,
    /// The VM it is attached to (may be empty).
    pub vm_id: String,
    /// Its vSwitch (subnet).
    pub vswitch_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// The account that owns it.
    pub account_id: String,
    /// The hypervisor host whose vSwitch serves it.
    pub host: String,
}

/// An ENI as a request gives it, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkInterfaceInput {
    /// `eni-...` id.
    pub eni_id: String,
    /// MAC address text.
    pub mac: String,
    /// VM id (may be empty).
    pub vm_id: String,
    /// vSwitch id.
    pub vswitch_id: String,
    /// VPC id.
    pub vpc_id: String,
    /// Account id.
    pub account_id: String,
    /// Host name.
    pub host: String,
}

impl NetworkInterface {
    /// Validates an ENI: `eni-` id, MAC syntax and unicast, non-empty vSwitch / VPC / account / host, no whitespace
    /// or control characters in any id.
    pub fn new(input: NetworkInterfaceInput) -> Result<Self, StateError> {
        let NetworkInterfaceInput {
            eni_id,
            mac,
            vm_id,
            vswitch_id,
            vpc_id,
            account_id,
            host,
        } = input;
        check_eni_id(&eni_id)?;
        let mac: MacAddr = mac.trim().parse()?;
        if !mac.is_unicast() {
            return Err(StateError::MacNotUnicast { mac });
        }
        if !vm_id.is_empty() {
            check_identifier(Field::VmId, &vm_id)?;
        }
        check_identifier(Field::VSwitchId, &vswitch_id)?;
        check_identifier(Field::VpcId, &vpc_id)?;
        check_identifier(Field::AccountId, &account_id)?;
        check_identifier(Field::Host, &host)?;
        Ok(NetworkInterface {
            eni_id,
            mac,
            vm_id,
            vswitch_id,
            vpc_id,
            account_id,
            host,
        })
    }
}

/// What a flow log is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    /// One ENI.
    NetworkInterface,
    /// Every ENI of a vSwitch.
    VSwitch,
    /// Every ENI of a VPC.
    #[serde(rename = "VPC")]
    Vpc,
}

impl ResourceType {
    /// The API's name: `NetworkInterface`, `VSwitch` or `VPC`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::NetworkInterface => "NetworkInterface",
            ResourceType::VSwitch => "VSwitch",
            ResourceType::Vpc => "VPC",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceType {
    type Err = StateError;

    /// Parses the API's name, case-insensitively (`eni` is accepted for `NetworkInterface`).
    fn from_str(text: &str) -> Result<Self, StateError> {
        match text.to_ascii_lowercase().as_str() {
            "networkinterface" | "eni" => Ok(ResourceType::NetworkInterface),
            "vswitch" => Ok(ResourceType::VSwitch),
            "vpc" => Ok(ResourceType::Vpc),
            _ => Err(StateError::invalid(
                Field::ResourceType,
                format!("{text:?} is not NetworkInterface, VSwitch or VPC"),
            )),
        }
    }
}

/// Which records a flow log delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum TrafficType {
    /// Every record.
    #[default]
    All,
    /// ACCEPT records only.
    Allow,
    /// REJECT records only.
    Drop,
}

impl TrafficType {
    /// The API's name: `All`, `Allow` or `Drop`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficType::All => "All",
            TrafficType::Allow => "Allow",
            TrafficType::Drop => "Drop",
        }
    }
}

impl fmt::Display for TrafficType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrafficType {
    type Err = StateError;

    /// Parses the API's name, case-insensitively.
    fn from_str(text: &str) -> Result<Self, StateError> {
        match text.to_ascii_lowercase().as_str() {
            "all" => Ok(TrafficType::All),
            "allow" => Ok(TrafficType::Allow),
            "drop" => Ok(TrafficType::Drop),
            _ => Err(StateError::invalid(
                Field::TrafficType,
                format!("{text:?} is not All, Allow or Drop"),
            )),
        }
    }
}

/// The capture window of a flow log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum AggregationInterval {
    /// 1 minute.
    OneMinute,
    /// 5 minutes.
    FiveMinutes,
    /// 10 minutes (the default).
    TenMinutes,
}

impl AggregationInterval {
    /// Parses a request's interval in minutes: 1, 5 or 10; 0 means the default, 10.
    pub fn from_minutes(minutes: u32) -> Result<Self, StateError> {
        match minutes {
            1 => Ok(AggregationInterval::OneMinute),
            5 => Ok(AggregationInterval::FiveMinutes),
            0 | 10 => Ok(AggregationInterval::TenMinutes),
            _ => Err(StateError::InvalidAggregationInterval { minutes }),
        }
    }

    /// The interval in minutes.
    pub fn minutes(self) -> u32 {
        match self {
            AggregationInterval::OneMinute => 1,
            AggregationInterval::FiveMinutes => 5,
            AggregationInterval::TenMinutes => 10,
        }
    }

    /// The interval in seconds.
    pub fn seconds(self) -> u32 {
        self.minutes() * 60
    }
}

impl TryFrom<u32> for AggregationInterval {
    type Error = StateError;

    fn try_from(minutes: u32) -> Result<Self, StateError> {
        if minutes == 0 {
            return Err(StateError::InvalidAggregationInterval { minutes });
        }
        AggregationInterval::from_minutes(minutes)
    }
}

impl From<AggregationInterval> for u32 {
    fn from(interval: AggregationInterval) -> u32 {
        interval.minutes()
    }
}

/// The life-cycle status of a flow log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FlowLogStatus {
    /// Created; not yet applied by every affected host.
    Activating,
    /// Applied: its ENIs are captured.
    Active,
    /// Stopped by the user.
    Inactive,
    /// Being removed.
    Deleting,
}

impl FlowLogStatus {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowLogStatus::Activating => "Activating",
            FlowLogStatus::Active => "Active",
            FlowLogStatus::Inactive => "Inactive",
            FlowLogStatus::Deleting => "Deleting",
        }
    }

    /// Whether a flow log in this status captures its ENIs.
    pub fn captures(self) -> bool {
        matches!(self, FlowLogStatus::Activating | FlowLogStatus::Active)
    }
}

impl fmt::Display for FlowLogStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FlowLogStatus {
    type Err = StateError;

    /// Parses the API's name, case-insensitively.
    fn from_str(text: &str) -> Result<Self, StateError> {
        match text.to_ascii_lowercase().as_str() {
            "activating" => Ok(FlowLogStatus::Activating),
            "active" => Ok(FlowLogStatus::Active),
            "inactive" => Ok(FlowLogStatus::Inactive),
            "deleting" => Ok(FlowLogStatus::Deleting),
            _ => Err(StateError::invalid(
                Field::Status,
                format!("{text:?} is not Activating, Active, Inactive or Deleting"),
            )),
        }
    }
}

/// A flow log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FlowLog {
    /// `fl-...` id.
    pub flow_log_id: String,
    /// Optional name (may be empty).
    pub flow_log_name: String,
    /// Optional description (may be empty).
    pub description: String,
    /// Region.
    pub region_id: String,
    /// What it is attached to.
    pub resource_type: ResourceType,
    /// The ENI, vSwitch or VPC id.
    pub resource_id: String,
    /// The VPC of the resource, resolved at creation.
    pub vpc_id: String,
    /// Which records it delivers.
    pub traffic_type: TrafficType,
    /// Destination project.
    pub project_name: String,
    /// Destination logstore.
    pub logstore_name: String,
    /// Capture window.
    pub aggregation_interval: AggregationInterval,
    /// Status.
    pub status: FlowLogStatus,
    /// Creation time, Unix seconds.
    pub creation_time: i64,
    /// The client token that created it, if any.
    pub client_token: Option<String>,
    /// Creation order: unique, increasing; pages of [`State::describe_flow_logs`] follow it.
    pub sequence: u64,
}

impl FlowLog {
    /// Whether this flow log covers `eni` (whatever its status).
    pub fn covers(&self, eni: &NetworkInterface) -> bool {
        let scope_id = match self.resource_type {
            ResourceType::NetworkInterface => &eni.eni_id,
            ResourceType::VSwitch => &eni.vswitch_id,
            ResourceType::Vpc => &eni.vpc_id,
        };
        *scope_id == self.resource_id
    }
}

/// A CreateFlowLog request, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateFlowLogInput {
    /// Region; empty = the controller's.
    pub region_id: String,
    /// What to attach to; `None` when the request left it unspecified (refused).
    pub resource_type: Option<ResourceType>,
    /// The ENI, vSwitch or VPC id.
    pub resource_id: String,
    /// Which records; unspecified = All.
    pub traffic_type: TrafficType,
    /// Destination project.
    pub project_name: String,
    /// Destination logstore.
    pub logstore_name: String,
    /// Optional name.
    pub flow_log_name: String,
    /// Optional description.
    pub description: String,
    /// Minutes: 1, 5 or 10; 0 = 10.
    pub aggregation_interval: u32,
    /// Optional idempotency token.
    pub client_token: String,
}

/// The filters and page of a DescribeFlowLogs request; empty strings and `None` match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DescribeFilter {
    /// Region; empty = the controller's.
    pub region_id: String,
    /// Exact flow-log id.
    pub flow_log_id: String,
    /// Exact flow-log name.
    pub flow_log_name: String,
    /// Resource type.
    pub resource_type: Option<ResourceType>,
    /// Exact resource id.
    pub resource_id: String,
    /// VPC of the flow log's resource.
    pub vpc_id: String,
    /// Exact project.
    pub project_name: String,
    /// Exact logstore.
    pub logstore_name: String,
    /// Status.
    pub status: Option<FlowLogStatus>,
    /// 1-based page; 0 = 1.
    pub page_number: u32,
    /// At most [`MAX_PAGE_SIZE`]; 0 = [`DEFAULT_PAGE_SIZE`].
    pub page_size: u32,
}

/// One page of DescribeFlowLogs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowLogPage {
    /// The flow logs of this page, in creation order.
    pub flow_logs: Vec<FlowLog>,
    /// How many flow logs match the filters in all.
    pub total_count: u32,
    /// The page number used.
    pub page_number: u32,
    /// The page size used.
    pub page_size: u32,
}

/// Where the records of a captured ENI go, for one flow log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Destination {
    /// The flow log.
    pub flow_log_id: String,
    /// Its project.
    pub project: String,
    /// Its logstore.
    pub logstore: String,
    /// Which records.
    pub traffic_type: TrafficType,
    /// Capture window, seconds.
    pub interval_seconds: u32,
}

/// One ENI a host must capture and every flow log covering it (in creation order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CapturedInterface {
    /// The ENI.
    pub network_interface: NetworkInterface,
    /// At least one destination.
    pub destinations: Vec<Destination>,
}

/// Everything a host must capture at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CaptureSet {
    /// [`State::host_version`] of the host.
    pub version: u64,
    /// Region.
    pub region_id: String,
    /// ENIs with at least one destination, ordered by ENI id.
    pub interfaces: Vec<CapturedInterface>,
}

/// What a successful mutation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mutation {
    /// Whether the state changed at all (false for a no-op, e.g. an idempotent retry): nothing to persist then.
    pub changed: bool,
    /// Hosts whose capture set changed.
    pub hosts: BTreeSet<String>,
}

/// The serialisable form of a [`State`], as [`crate::persist`] stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Snapshot {
    /// [`SNAPSHOT_FORMAT`].
    pub format: u32,
    /// The region the state belongs to.
    pub region_id: String,
    /// [`State::version`].
    pub version: u64,
    /// The next flow log's sequence number.
    pub next_sequence: u64,
    /// Every ENI, ordered by id.
    pub network_interfaces: Vec<NetworkInterface>,
    /// Every flow log, in creation order.
    pub flow_logs: Vec<FlowLog>,
    /// Capture-set version of every host whose capture set ever changed.
    pub host_versions: BTreeMap<String, u64>,
}

/// The whole control-plane state of one region. Cheap to clone at this scale (the service clones it to
/// apply a mutation off to the side, persist it, then publish it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    region_id: String,
    version: u64,
    next_sequence: u64,
    enis: BTreeMap<String, NetworkInterface>,
    owners_by_mac: HashMap<MacAddr, String>,
    flow_logs: BTreeMap<String, FlowLog>,
    flow_logs_by_token: HashMap<String, String>,
    host_versions: BTreeMap<String, u64>,
}

impl State {
    /// An empty state of `region_id` (validated: `[a-z0-9-]`, 1 to 64 characters).
    pub fn new(region_id: &str) -> Result<Self, StateError> {
        check_region_id(region_id)?;
        Ok(State {
            region_id: region_id.to_owned(),
            version: 0,
            next_sequence: 1,
            enis: BTreeMap::new(),
            owners_by_mac: HashMap::new(),
            flow_logs: BTreeMap::new(),
            flow_logs_by_token: HashMap::new(),
            host_versions: BTreeMap::new(),
        })
    }

    /// The region this state belongs to.
    pub fn region_id(&self) -> &str {
        &self.region_id
    }

    /// The state version: increases on every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The capture-set version of `host`: the state version at which its capture set last changed (0 if never).
    pub fn host_version(&self, host: &str) -> u64 {
        self.host_versions.get(host).copied().unwrap_or(0)
    }

    /// Registers an ENI, or updates the registration of one with the same id (moving it between hosts, vSwitches,
    /// ...). Refuses a MAC that another ENI has and a vSwitch that other ENIs put in another VPC.
    pub fn register_eni(&mut self, eni: NetworkInterface) -> Result<Mutation, StateError> {
        if let Some(owner) = self.owners_by_mac.get(&eni.mac)
            && *owner != eni.eni_id
        {
            return Err(StateError::MacInUse {
                mac: eni.mac,
                owner: owner.clone(),
            });
        }
        if let Some(other) = self.enis.values().find(|other| {
            other.eni_id != eni.eni_id
                && other.vswitch_id == eni.vswitch_id
                && other.vpc_id != eni.vpc_id
        }) {
            return Err(StateError::VSwitchVpcMismatch {
                vswitch_id: eni.vswitch_id,
                known_vpc_id: other.vpc_id.clone(),
                requested_vpc_id: eni.vpc_id,
            });
        }
        let previous = self.enis.get(&eni.eni_id);
        if previous == Some(&eni) {
            return Ok(Mutation::default());
        }
        let mut hosts: BTreeSet<String> = previous.map(|p| p.host.clone()).into_iter().collect();
        hosts.insert(eni.host.clone());
        Ok(self.apply(hosts, |state| {
            if let Some(old) = state.enis.insert(eni.eni_id.clone(), eni.clone()) {
                state.owners_by_mac.remove(&old.mac);
            }
            state.owners_by_mac.insert(eni.mac, eni.eni_id.clone());
        }))
    }

    /// Removes an ENI. Flow logs on it remain (covering nothing) until deleted.
    pub fn deregister_eni(&mut self, eni_id: &str) -> Result<Mutation, StateError> {
        let eni = self
            .enis
            .get(eni_id)
            .ok_or_else(|| StateError::EniNotFound {
                id: eni_id.to_owned(),
            })?;
        let hosts = BTreeSet::from([eni.host.clone()]);
        Ok(self.apply(hosts, |state| {
            if let Some(old) = state.enis.remove(eni_id) {
                state.owners_by_mac.remove(&old.mac);
            }
        }))
    }

    /// ENIs ordered by id; only those on `host` when it is given.
    pub fn list_enis(&self, host: Option<&str>) -> Vec<NetworkInterface> {
        self.enis
            .values()
            .filter(|eni| host.is_none_or(|host| eni.host == host))
            .cloned()
            .collect()
    }

    /// The ENI with this id.
    pub fn eni(&self, eni_id: &str) -> Option<&NetworkInterface> {
        self.enis.get(eni_id)
    }

    /// Creates a flow log, Active at once, and returns its id. A repeated call with the same client token and the
    /// same parameters returns the first call's id and changes nothing. `now` is the creation time (Unix
    /// seconds); `new_id` proposes fresh ids (`fl-...`) until one is free (at most 16 tries).
    pub fn create_flow_log(
        &mut self,
        input: CreateFlowLogInput,
        now: i64,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<(String, Mutation), StateError> {
        self.check_region(&input.region_id)?;
        let resource_type = input.resource_type.ok_or_else(|| {
            StateError::invalid(
                Field::ResourceType,
                "must be NetworkInterface, VSwitch or VPC",
            )
        })?;
        if input.resource_id.is_empty() {
            return Err(StateError::invalid(Field::ResourceId, "must not be empty"));
        }
        check_project_name(&input.project_name)?;
        check_logstore_name(&input.logstore_name)?;
        check_flow_log_name(&input.flow_log_name)?;
        check_description(&input.description)?;
        let interval = AggregationInterval::from_minutes(input.aggregation_interval)?;
        let client_token = if input.client_token.is_empty() {
            None
        } else {
            check_client_token(&input.client_token)?;
            Some(input.client_token.clone())
        };
        if let Some(token) = &client_token
            && let Some(existing) = self
                .flow_logs_by_token
                .get(token)
                .and_then(|id| self.flow_logs.get(id))
        {
            let same = existing.resource_type == resource_type
                && existing.resource_id == input.resource_id
                && existing.traffic_type == input.traffic_type
                && existing.project_name == input.project_name
                && existing.logstore_name == input.logstore_name
                && existing.flow_log_name == input.flow_log_name
                && existing.description == input.description
                && existing.aggregation_interval == interval;
            if !same {
                return Err(StateError::IdempotentParameterMismatch {
                    token: token.clone(),
                    flow_log_id: existing.flow_log_id.clone(),
                });
            }
            return Ok((existing.flow_log_id.clone(), Mutation::default()));
        }
        let vpc_id = self.resolve_vpc(resource_type, &input.resource_id)?;
        if let Some(existing) = self.flow_logs.values().find(|fl| {
            fl.resource_type == resource_type
                && fl.resource_id == input.resource_id
                && fl.project_name == input.project_name
                && fl.logstore_name == input.logstore_name
        }) {
            return Err(StateError::FlowLogExists {
                existing: existing.flow_log_id.clone(),
                resource_type,
                resource_id: input.resource_id,
                project: input.project_name,
                logstore: input.logstore_name,
            });
        }
        let flow_log_id = (0..16)
            .map(|_| new_id())
            .find(|id| !self.flow_logs.contains_key(id))
            .ok_or(StateError::IdExhausted)?;
        let flow_log = FlowLog {
            flow_log_id: flow_log_id.clone(),
            flow_log_name: input.flow_log_name,
            description: input.description,
            region_id: self.region_id.clone(),
            resource_type,
            resource_id: input.resource_id,
            vpc_id,
            traffic_type: input.traffic_type,
            project_name: input.project_name,
            logstore_name: input.logstore_name,
            aggregation_interval: interval,
            status: FlowLogStatus::Active,
            creation_time: now,
            client_token,
            sequence: self.next_sequence,
        };
        let hosts = self.hosts_covered_by(&flow_log);
        let mutation = self.apply(hosts, |state| {
            state.next_sequence += 1;
            if let Some(token) = &flow_log.client_token {
                state
                    .flow_logs_by_token
                    .insert(token.clone(), flow_log.flow_log_id.clone());
            }
            state
                .flow_logs
                .insert(flow_log.flow_log_id.clone(), flow_log);
        });
        Ok((flow_log_id, mutation))
    }

    /// Deletes a flow log (and forgets its client token); its ENIs stop being captured for it.
    pub fn delete_flow_log(
        &mut self,
        region_id: &str,
        flow_log_id: &str,
    ) -> Result<Mutation, StateError> {
        self.check_region(region_id)?;
        let flow_log =
            self.flow_logs
                .get(flow_log_id)
                .ok_or_else(|| StateError::FlowLogNotFound {
                    id: flow_log_id.to_owned(),
                })?;
        let hosts = self.hosts_covered_by(flow_log);
        Ok(self.apply(hosts, |state| {
            if let Some(removed) = state.flow_logs.remove(flow_log_id)
                && let Some(token) = removed.client_token
            {
                state.flow_logs_by_token.remove(&token);
            }
        }))
    }

    /// The flow log with this id.
    pub fn flow_log(&self, flow_log_id: &str) -> Option<&FlowLog> {
        self.flow_logs.get(flow_log_id)
    }

    /// One page of the flow logs matching every filter, in creation order.
    pub fn describe_flow_logs(&self, filter: &DescribeFilter) -> Result<FlowLogPage, StateError> {
        self.check_region(&filter.region_id)?;
        let page_size = match filter.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if size <= MAX_PAGE_SIZE => size,
            size => {
                return Err(StateError::invalid(
                    Field::PageSize,
                    format!("{size} is larger than {MAX_PAGE_SIZE}"),
                ));
            }
        };
        let page_number = filter.page_number.max(1);
        let matches_text = |wanted: &str, actual: &str| wanted.is_empty() || wanted == actual;
        let mut matching: Vec<&FlowLog> = self
            .flow_logs
            .values()
            .filter(|fl| {
                matches_text(&filter.flow_log_id, &fl.flow_log_id)
                    && matches_text(&filter.flow_log_name, &fl.flow_log_name)
                    && filter.resource_type.is_none_or(|t| t == fl.resource_type)
                    && matches_text(&filter.resource_id, &fl.resource_id)
                    && matches_text(&filter.vpc_id, &fl.vpc_id)
                    && matches_text(&filter.project_name, &fl.project_name)
                    && matches_text(&filter.logstore_name, &fl.logstore_name)
                    && filter.status.is_none_or(|s| s == fl.status)
            })
            .collect();
        matching.sort_by_key(|fl| fl.sequence);
        let total_count = u32::try_from(matching.len()).unwrap_or(u32::MAX);
        let skip = usize::try_from(u64::from(page_number - 1) * u64::from(page_size))
            .unwrap_or(usize::MAX);
        let flow_logs = matching
            .into_iter()
            .skip(skip)
            .take(page_size as usize)
            .cloned()
            .collect();
        Ok(FlowLogPage {
            flow_logs,
            total_count,
            page_number,
            page_size,
        })
    }

    /// The capture set of `host`: its ENIs covered by at least one capturing flow log, each with one destination
    /// per such flow log.
    pub fn capture_set(&self, host: &str) -> CaptureSet {
        let mut flow_logs: Vec<&FlowLog> = self
            .flow_logs
            .values()
            .filter(|fl| fl.status.captures())
            .collect();
        flow_logs.sort_by_key(|fl| fl.sequence);
        let interfaces = self
            .enis
            .values()
            .filter(|eni| eni.host == host)
            .filter_map(|eni| {
                let destinations: Vec<Destination> = flow_logs
                    .iter()
                    .filter(|fl| fl.covers(eni))
                    .map(|fl| Destination {
                        flow_log_id: fl.flow_log_id.clone(),
                        project: fl.project_name.clone(),
                        logstore: fl.logstore_name.clone(),
                        traffic_type: fl.traffic_type,
                        interval_seconds: fl.aggregation_interval.seconds(),
                    })
                    .collect();
                (!destinations.is_empty()).then(|| CapturedInterface {
                    network_interface: eni.clone(),
                    destinations,
                })
            })
            .collect();
        CaptureSet {
            version: self.host_version(host),
            region_id: self.region_id.clone(),
            interfaces,
        }
    }

    /// The serialisable form of this state.
    pub fn snapshot(&self) -> Snapshot {
        let mut flow_logs: Vec<FlowLog> = self.flow_logs.values().cloned().collect();
        flow_logs.sort_by_key(|fl| fl.sequence);
        Snapshot {
            format: SNAPSHOT_FORMAT,
            region_id: self.region_id.clone(),
            version: self.version,
            next_sequence: self.next_sequence,
            network_interfaces: self.enis.values().cloned().collect(),
            flow_logs,
            host_versions: self.host_versions.clone(),
        }
    }

    /// Rebuilds a state from a snapshot, checking every invariant a snapshot we wrote holds.
    pub fn restore(snapshot: Snapshot) -> Result<Self, StateError> {
        let inconsistent = |reason: String| StateError::InconsistentSnapshot { reason };
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(inconsistent(format!(
                "format {} is not the supported format {SNAPSHOT_FORMAT}",
                snapshot.format
            )));
        }
        let mut state = State::new(&snapshot.region_id)?;
        state.version = snapshot.version;
        state.next_sequence = snapshot.next_sequence;
        for eni in snapshot.network_interfaces {
            let checked = NetworkInterface::new(NetworkInterfaceInput {
                eni_id: eni.eni_id.clone(),
                mac: eni.mac.to_string(),
                vm_id: eni.vm_id.clone(),
                vswitch_id: eni.vswitch_id.clone(),
                vpc_id: eni.vpc_id.clone(),
                account_id: eni.account_id.clone(),
                host: eni.host.clone(),
            })
            .map_err(|e| inconsistent(format!("network interface {}: {e}", eni.eni_id)))?;
            if state.enis.contains_key(&checked.eni_id) {
                return Err(inconsistent(format!(
                    "network interface {} appears twice",
                    checked.eni_id
                )));
            }
            if let Some(owner) = state
                .owners_by_mac
                .insert(checked.mac, checked.eni_id.clone())
            {
                return Err(inconsistent(format!(
                    "MAC {} belongs to both {owner} and {}",
                    checked.mac, checked.eni_id
                )));
            }
            state.enis.insert(checked.eni_id.clone(), checked);
        }
        let mut sequences = BTreeSet::new();
        for flow_log in snapshot.flow_logs {
            let id = flow_log.flow_log_id.clone();
            if !id.starts_with("fl-") {
                return Err(inconsistent(format!(
                    "flow log id {id:?} does not start with fl-"
                )));
            }
            if flow_log.sequence >= state.next_sequence || !sequences.insert(flow_log.sequence) {
                return Err(inconsistent(format!(
                    "flow log {id} has sequence {} (duplicate, or not below next-sequence {})",
                    flow_log.sequence, state.next_sequence
                )));
            }
            if let Some(token) = &flow_log.client_token
                && state
                    .flow_logs_by_token
                    .insert(token.clone(), id.clone())
                    .is_some()
            {
                return Err(inconsistent(format!(
                    "client token {token:?} appears twice"
                )));
            }
            if state.flow_logs.insert(id.clone(), flow_log).is_some() {
                return Err(inconsistent(format!("flow log {id} appears twice")));
            }
        }
        if let Some((host, version)) = snapshot
            .host_versions
            .iter()
            .find(|(_, v)| **v > snapshot.version)
        {
            return Err(inconsistent(format!(
                "host {host} has capture-set version {version}, above the state version {}",
                snapshot.version
            )));
        }
        state.host_versions = snapshot.host_versions;
        Ok(state)
    }

    /// Applies `change`, bumps the version, and records the new version for every host of `candidates` whose
    /// capture set changed.
    fn apply(&mut self, candidates: BTreeSet<String>, change: impl FnOnce(&mut State)) -> Mutation {
        let before: Vec<(String, Vec<CapturedInterface>)> = candidates
            .into_iter()
            .map(|host| {
                let interfaces = self.capture_set(&host).interfaces;
                (host, interfaces)
            })
            .collect();
        change(self);
        self.version += 1;
        let mut hosts = BTreeSet::new();
        for (host, interfaces) in before {
            if self.capture_set(&host).interfaces != interfaces {
                self.host_versions.insert(host.clone(), self.version);
                hosts.insert(host);
            }
        }
        Mutation {
            changed: true,
            hosts,
        }
    }

    fn check_region(&self, region_id: &str) -> Result<(), StateError> {
        if region_id.is_empty() || region_id == self.region_id {
            Ok(())
        } else {
            Err(StateError::RegionNotFound {
                requested: region_id.to_owned(),
                served: self.region_id.clone(),
            })
        }
    }

    /// The VPC of a flow log's resource; the resource must exist (be referenced by a registered ENI).
    fn resolve_vpc(
        &self,
        resource_type: ResourceType,
        resource_id: &str,
    ) -> Result<String, StateError> {
        let found = match resource_type {
            ResourceType::NetworkInterface => self.enis.get(resource_id),
            ResourceType::VSwitch => self.enis.values().find(|eni| eni.vswitch_id == resource_id),
            ResourceType::Vpc => self.enis.values().find(|eni| eni.vpc_id == resource_id),
        };
        found
            .map(|eni| eni.vpc_id.clone())
            .ok_or_else(|| StateError::ResourceNotFound {
                resource_type,
                resource_id: resource_id.to_owned(),
            })
    }

    fn hosts_covered_by(&self, flow_log: &FlowLog) -> BTreeSet<String> {
        self.enis
            .values()
            .filter(|eni| flow_log.covers(eni))
            .map(|eni| eni.host.clone())
            .collect()
    }
}

/// Validates a region id: 1 to 64 characters of `[a-z0-9-]`.
pub fn check_region_id(region_id: &str) -> Result<(), StateError> {
    let ok = (1..=64).contains(&region_id.len())
        && region_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StateError::invalid(
            Field::RegionId,
            format!("{region_id:?} must be 1 to 64 characters of a-z, 0-9 and '-'"),
        ))
    }
}

fn check_eni_id(eni_id: &str) -> Result<(), StateError> {
    let ok = eni_id.strip_prefix("eni-").is_some_and(|rest| {
        (1..=60).contains(&rest.len())
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if ok {
        Ok(())
    } else {
        Err(StateError::MalformedEniId {
            id: eni_id.to_owned(),
        })
    }
}

/// Non-empty, at most 128 characters, no whitespace or control characters.
fn check_identifier(field: Field, value: &str) -> Result<(), StateError> {
    if value.is_empty() {
        return Err(StateError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > 128 {
        return Err(StateError::invalid(field, "must be at most 128 characters"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(StateError::invalid(
            field,
            format!("{value:?} must not contain whitespace or control characters"),
        ));
    }
    Ok(())
}

/// SLS project naming: 3 to 63 characters of `[a-z0-9-]`, starting and ending with a letter or digit.
fn check_project_name(name: &str) -> Result<(), StateError> {
    if sls_name_ok(name, b"-") {
        Ok(())
    } else {
        Err(StateError::MalformedProjectName {
            name: name.to_owned(),
        })
    }
}

/// SLS logstore naming: 3 to 63 characters of `[a-z0-9_-]`, starting and ending with a letter or digit.
fn check_logstore_name(name: &str) -> Result<(), StateError> {
    if sls_name_ok(name, b"-_") {
        Ok(())
    } else {
        Err(StateError::MalformedLogstoreName {
            name: name.to_owned(),
        })
    }
}

fn sls_name_ok(name: &str, inner_extra: &[u8]) -> bool {
    let bytes = name.as_bytes();
    let edge_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (3..=63).contains(&bytes.len())
        && bytes.first().is_some_and(edge_ok)
        && bytes.last().is_some_and(edge_ok)
        && bytes.iter().all(|b| edge_ok(b) || inner_extra.contains(b))
}

/// Optional; else 2 to 128 characters, starting with a letter, of letters, digits, '.', '_' and '-'; not a URL.
fn check_flow_log_name(name: &str) -> Result<(), StateError> {
    if name.is_empty() {
        return Ok(());
    }
    let length = name.chars().count();
    let ok = (2..=128).contains(&length)
        && name.chars().next().is_some_and(char::is_alphabetic)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StateError::invalid(
            Field::FlowLogName,
            format!(
                "{name:?} must be 2 to 128 characters, start with a letter and hold only letters, digits, '.', '_' and '-'"
            ),
        ))
    }
}

/// Optional; else at most 256 characters, no control characters, not starting with `http://` or `https://`.
fn check_description(description: &str) -> Result<(), StateError> {
    if description.chars().count() > 256 {
        return Err(StateError::invalid(
            Field::Description,
            "must be at most 256 characters",
        ));
    }
    if description.starts_with("http://") || description.starts_with("https://") {
        return Err(StateError::invalid(
            Field::Description,
            "must not start with http:// or https://",
        ));
    }
    if description.chars().any(char::is_control) {
        return Err(StateError::invalid(
            Field::Description,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// At most 64 printable ASCII characters.
fn check_client_token(token: &str) -> Result<(), StateError> {
    if token.len() <= 64 && token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(StateError::invalid(
            Field::ClientToken,
            "must be at most 64 printable ASCII characters",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGION: &str = "cn-hangzhou";

    fn eni(id: u32, vswitch: &str, vpc: &str, host: &str) -> NetworkInterface {
        NetworkInterface::new(NetworkInterfaceInput {
            eni_id: format!("eni-{id:05}"),
            mac: format!("02:00:00:e1:{:02x}:{:02x}", id >> 8, id & 0xff),
            vm_id: format!("i-{id:05}"),
            vswitch_id: vswitch.to_owned(),
            vpc_id: vpc.to_owned(),
            account_id: "100000000000".to_owned(),
            host: host.to_owned(),
        })
        .unwrap()
    }

    fn request(
        resource_type: ResourceType,
        resource_id: &str,
        logstore: &str,
    ) -> CreateFlowLogInput {
        CreateFlowLogInput {
            resource_type: Some(resource_type),
            resource_id: resource_id.to_owned(),
            project_name: "proj-1".to_owned(),
            logstore_name: logstore.to_owned(),
            ..CreateFlowLogInput::default()
        }
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("fl-test{n:04}")
        }
    }

    /// Two hosts: a and b. vpc-0 = vsw-00 {1 on a, 2 on b}, vsw-01 {3 on a}; vpc-1 = vsw-02 {4 on b}.
    fn populated() -> State {
        let mut state = State::new(REGION).unwrap();
        for eni in [
            eni(1, "vsw-00", "vpc-0", "a"),
            eni(2, "vsw-00", "vpc-0", "b"),
            eni(3, "vsw-01", "vpc-0", "a"),
            eni(4, "vsw-02", "vpc-1", "b"),
        ] {
            state.register_eni(eni).unwrap();
        }
        state
    }

    fn captured(state: &State, host: &str) -> Vec<(String, Vec<String>)> {
        state
            .capture_set(host)
            .interfaces
            .into_iter()
            .map(|ci| {
                (
                    ci.network_interface.eni_id,
                    ci.destinations.into_iter().map(|d| d.logstore).collect(),
                )
            })
            .collect()
    }

    fn pairs(items: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        items
            .iter()
            .map(|(eni, stores)| {
                (
                    eni.to_string(),
                    stores.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn eni_flow_log_covers_only_that_eni() {
        let mut state = populated();
        let mut gen_id = ids();
        let (id, mutation) = state
            .create_flow_log(
                request(ResourceType::NetworkInterface, "eni-00001", "store-a"),
                1000,
                &mut gen_id,
            )
            .unwrap();
        assert_eq!(id, "fl-test0001");
        assert_eq!(mutation.hosts, BTreeSet::from(["a".to_owned()]));
        assert_eq!(captured(&state, "a"), pairs(&[("eni-00001", &["store-a"])]));
        assert!(captured(&state, "b").is_empty());
        let fl = state.flow_log(&id).unwrap();
        assert_eq!(fl.vpc_id, "vpc-0");
        assert_eq!(fl.status, FlowLogStatus::Active);
        assert_eq!(fl.aggregation_interval, AggregationInterval::TenMinutes);
        assert_eq!(fl.traffic_type, TrafficType::All);
        assert_eq!(fl.creation_time, 1000);
    }

    #[test]
    fn vswitch_and_vpc_scopes_and_later_enis() {
        let mut state = populated();
        let mut gen_id = ids();
        state
            .create_flow_log(
                request(ResourceType::VSwitch, "vsw-00", "store-vsw"),
                0,
                &mut gen_id,
            )
            .unwrap();
        assert_eq!(
            captured(&state, "a"),
            pairs(&[("eni-00001", &["store-vsw"])])
        );
        assert_eq!(
            captured(&state, "b"),
            pairs(&[("eni-00002", &["store-vsw"])])
        );
        let (_, mutation) = state
            .create_flow_log(
                request(ResourceType::Vpc, "vpc-1", "store-vpc"),
                0,
                &mut gen_id,
            )
            .unwrap();
        assert_eq!(mutation.hosts, BTreeSet::from(["b".to_owned()]));
        assert_eq!(
            captured(&state, "b"),
            pairs(&[("eni-00002", &["store-vsw"]), ("eni-00004", &["store-vpc"])])
        );

        // An ENI registered later in the VPC is covered; one in another VPC on the same host is not.
        let before = state.host_version("a");
        let mutation = state.register_eni(eni(5, "vsw-03", "vpc-1", "a")).unwrap();
        assert_eq!(mutation.hosts, BTreeSet::from(["a".to_owned()]));
        assert!(state.host_version("a") > before);
        let b_version = state.host_version("b");
        let mutation = state.register_eni(eni(6, "vsw-09", "vpc-9", "b")).unwrap();
        assert!(mutation.changed);
        assert!(
            mutation.hosts.is_empty(),
            "an uncaptured ENI changes no capture set"
        );
        assert_eq!(state.host_version("b"), b_version);
        assert_eq!(
            captured(&state, "a"),
            pairs(&[("eni-00001", &["store-vsw"]), ("eni-00005", &["store-vpc"])])
        );

        // A deregistered ENI leaves its host's set.
        let mutation = state.deregister_eni("eni-00005").unwrap();
        assert_eq!(mutation.hosts, BTreeSet::from(["a".to_owned()]));
        assert_eq!(
            captured(&state, "a"),
            pairs(&[("eni-00001", &["store-vsw"])])
        );
    }

    #[test]
    fn several_flow_logs_on_one_eni_are_each_a_destination() {
        let mut state = populated();
        let mut gen_id = ids();
        let mut vpc = request(ResourceType::Vpc, "vpc-0", "store-vpc");
        vpc.traffic_type = TrafficType::Drop;
        vpc.aggregation_interval = 1;
        state.create_flow_log(vpc, 0, &mut gen_id).unwrap();
        state
            .create_flow_log(
                request(ResourceType::VSwitch, "vsw-00", "store-vsw"),
                0,
                &mut gen_id,
            )
            .unwrap();
        let mut one = request(ResourceType::NetworkInterface, "eni-00001", "store-eni");
        one.aggregation_interval = 5;
        one.traffic_type = TrafficType::Allow;
        state.create_flow_log(one, 0, &mut gen_id).unwrap();
        let set = state.capture_set("a");
        assert_eq!(set.region_id, REGION);
        let first = &set.interfaces[0];
        assert_eq!(first.network_interface.eni_id, "eni-00001");
        let summary: Vec<(&str, TrafficType, u32)> = first
            .destinations
            .iter()
            .map(|d| (d.logstore.as_str(), d.traffic_type, d.interval_seconds))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("store-vpc", TrafficType::Drop, 60),
                ("store-vsw", TrafficType::All, 600),
                ("store-eni", TrafficType::Allow, 300),
            ]
        );
        assert_eq!(first.destinations[0].flow_log_id, "fl-test0001");
        assert_eq!(
            captured(&state, "a")[1],
            ("eni-00003".to_owned(), vec!["store-vpc".to_owned()])
        );
    }

    #[test]
    fn delete_flow_log_empties_the_set_and_bumps_versions() {
        let mut state = populated();
        let mut gen_id = ids();
        let (id, _) = state
            .create_flow_log(
                request(ResourceType::Vpc, "vpc-0", "store-vpc"),
                0,
                &mut gen_id,
            )
            .unwrap();
        let (a, b) = (state.host_version("a"), state.host_version("b"));
        let mutation = state.delete_flow_log("", &id).unwrap();
        assert_eq!(
            mutation.hosts,
            BTreeSet::from(["a".to_owned(), "b".to_owned()])
        );
        assert!(captured(&state, "a").is_empty());
        assert!(state.host_version("a") > a && state.host_version("b") > b);
        assert_eq!(state.capture_set("a").version, state.host_version("a"));
        let err = state.delete_flow_log("", &id).unwrap_err();
        assert_eq!(err.code(), "InvalidFlowLogId.NotFound");
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn moving_an_eni_between_hosts_changes_both() {
        let mut state = populated();
        state
            .create_flow_log(
                request(ResourceType::Vpc, "vpc-0", "store-vpc"),
                0,
                &mut ids(),
            )
            .unwrap();
        let mutation = state.register_eni(eni(1, "vsw-00", "vpc-0", "b")).unwrap();
        assert_eq!(
            mutation.hosts,
            BTreeSet::from(["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            captured(&state, "a"),
            pairs(&[("eni-00003", &["store-vpc"])])
        );
        assert_eq!(
            captured(&state, "b"),
            pairs(&[("eni-00001", &["store-vpc"]), ("eni-00002", &["store-vpc"])])
        );
        // Re-registering the same ENI unchanged is a no-op.
        let version = state.version();
        let mutation = state.register_eni(eni(1, "vsw-00", "vpc-0", "b")).unwrap();
        assert!(!mutation.changed);
        assert_eq!(state.version(), version);
    }

    #[test]
    fn eni_validation_codes() {
        let good = NetworkInterfaceInput {
            eni_id: "eni-abc".into(),
            mac: "02:00:00:E1:00:0A".into(),
            vm_id: "i-1".into(),
            vswitch_id: "vsw-1".into(),
            vpc_id: "vpc-1".into(),
            account_id: "1".into(),
            host: "h1".into(),
        };
        let parsed = NetworkInterface::new(good.clone()).unwrap();
        assert_eq!(parsed.mac.to_string(), "02:00:00:e1:00:0a");
        let code = |f: &dyn Fn(&mut NetworkInterfaceInput)| {
            let mut input = good.clone();
            f(&mut input);
            NetworkInterface::new(input).unwrap_err().code()
        };
        assert_eq!(
            code(&|i| i.eni_id = "vm-1".into()),
            "InvalidNetworkInterfaceId.Malformed"
        );
        assert_eq!(
            code(&|i| i.eni_id = "eni-".into()),
            "InvalidNetworkInterfaceId.Malformed"
        );
        assert_eq!(
            code(&|i| i.eni_id = "eni-a b".into()),
            "InvalidNetworkInterfaceId.Malformed"
        );
        assert_eq!(
            code(&|i| i.mac = "02:00:00:e1:00".into()),
            "InvalidMacAddress.Malformed"
        );
        assert_eq!(
            code(&|i| i.mac = "02:00:00:e1:00:0g".into()),
            "InvalidMacAddress.Malformed"
        );
        assert_eq!(
            code(&|i| i.mac = "02:00:00:e1:00:0a:00".into()),
            "InvalidMacAddress.Malformed"
        );
        assert_eq!(
            code(&|i| i.mac = "02:00-00:e1:00:0a".into()),
            "InvalidMacAddress.Malformed"
        );
        assert_eq!(
            code(&|i| i.mac = "+2:00:00:e1:00:0a".into()),
            "InvalidMacAddress.Malformed"
        );
        assert_eq!(code(&|i| i.mac = "".into()), "InvalidMacAddress.Malformed");
        assert_eq!(
            code(&|i| i.mac = "01:00:5e:00:00:01".into()),
            "InvalidMacAddress.NotUnicast"
        );
        assert_eq!(
            code(&|i| i.mac = "ff:ff:ff:ff:ff:ff".into()),
            "InvalidMacAddress.NotUnicast"
        );
        assert_eq!(
            code(&|i| i.mac = "00:00:00:00:00:00".into()),
            "InvalidMacAddress.NotUnicast"
        );
        assert_eq!(
            code(&|i| i.vswitch_id = "".into()),
            "InvalidParameter.VSwitchId"
        );
        assert_eq!(code(&|i| i.vpc_id = "".into()), "InvalidParameter.VpcId");
        assert_eq!(
            code(&|i| i.account_id = "".into()),
            "InvalidParameter.AccountId"
        );
        assert_eq!(code(&|i| i.host = "".into()), "InvalidParameter.Host");
        assert_eq!(code(&|i| i.host = "a host".into()), "InvalidParameter.Host");
        assert_eq!(
            code(&|i| i.vm_id = "x".repeat(129)),
            "InvalidParameter.VmId"
        );
        let mut no_vm = good.clone();
        no_vm.vm_id.clear();
        assert!(NetworkInterface::new(no_vm).is_ok());
        let mut dashes = good;
        dashes.mac = "02-00-00-e1-00-0a".into();
        assert_eq!(NetworkInterface::new(dashes).unwrap().mac, parsed.mac);
    }

    #[test]
    fn inventory_conflicts() {
        let mut state = populated();
        let mut clash = eni(9, "vsw-00", "vpc-0", "a");
        clash.mac = state.eni("eni-00001").unwrap().mac;
        let err = state.register_eni(clash).unwrap_err();
        assert_eq!(err.code(), "InvalidMacAddress.InUse");
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert!(err.to_string().contains("eni-00001"));

        let err = state
            .register_eni(eni(9, "vsw-00", "vpc-1", "a"))
            .unwrap_err();
        assert_eq!(err.code(), "InvalidVSwitchId.VpcMismatch");

        // An ENI may change its own MAC, and the old MAC is free again.
        let mut moved = eni(1, "vsw-00", "vpc-0", "a");
        let old_mac = moved.mac;
        moved.mac = MacAddr([2, 0, 0, 0xaa, 0, 1]);
        state.register_eni(moved).unwrap();
        let mut reuse = eni(9, "vsw-00", "vpc-0", "a");
        reuse.mac = old_mac;
        state.register_eni(reuse).unwrap();

        // The only ENI of a vSwitch may move the vSwitch to another VPC.
        state.register_eni(eni(4, "vsw-02", "vpc-7", "b")).unwrap();

        let err = state.deregister_eni("eni-99999").unwrap_err();
        assert_eq!(err.code(), "InvalidNetworkInterfaceId.NotFound");
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn flow_log_validation_codes() {
        let state = populated();
        let code = |f: &dyn Fn(&mut CreateFlowLogInput)| {
            let mut input = request(ResourceType::Vpc, "vpc-0", "store-1");
            f(&mut input);
            let mut scratch = state.clone();
            let err = scratch.create_flow_log(input, 0, &mut ids()).unwrap_err();
            assert_eq!(scratch, state, "a refused request changes nothing");
            (err.code(), err.kind())
        };
        let invalid = ErrorKind::InvalidArgument;
        assert_eq!(
            code(&|r| r.resource_type = None),
            ("InvalidParameter.ResourceType", invalid)
        );
        assert_eq!(
            code(&|r| r.resource_id.clear()),
            ("InvalidParameter.ResourceId", invalid)
        );
        assert_eq!(
            code(&|r| r.resource_id = "vpc-9".into()),
            ("InvalidResourceId.NotFound", ErrorKind::NotFound)
        );
        assert_eq!(
            code(&|r| {
                r.resource_type = Some(ResourceType::VSwitch);
                r.resource_id = "vpc-0".into();
            }),
            ("InvalidResourceId.NotFound", ErrorKind::NotFound)
        );
        assert_eq!(
            code(&|r| {
                r.resource_type = Some(ResourceType::NetworkInterface);
                r.resource_id = "eni-77777".into();
            }),
            ("InvalidResourceId.NotFound", ErrorKind::NotFound)
        );
        assert_eq!(
            code(&|r| r.region_id = "us-west-1".into()),
            ("InvalidRegionId.NotFound", ErrorKind::NotFound)
        );
        for bad in [
            "ab",
            "Proj",
            "-proj",
            "proj-",
            "proj_1",
            &"p".repeat(64),
            "",
        ] {
            assert_eq!(
                code(&|r| r.project_name = bad.into()),
                ("InvalidProjectName.Malformed", invalid),
                "{bad}"
            );
        }
        for bad in ["ab", "Store", "_store", "store_", "st ore", &"s".repeat(64)] {
            assert_eq!(
                code(&|r| r.logstore_name = bad.into()),
                ("InvalidLogStoreName.Malformed", invalid),
                "{bad}"
            );
        }
        for bad in [2, 3, 15, 60] {
            assert_eq!(
                code(&|r| r.aggregation_interval = bad),
                ("InvalidParameter.AggregationInterval", invalid)
            );
        }
        assert_eq!(
            code(&|r| r.flow_log_name = "1abc".into()),
            ("InvalidParameter.FlowLogName", invalid)
        );
        assert_eq!(
            code(&|r| r.flow_log_name = "a b".into()),
            ("InvalidParameter.FlowLogName", invalid)
        );
        assert_eq!(
            code(&|r| r.description = "https://x".into()),
            ("InvalidParameter.Description", invalid)
        );
        assert_eq!(
            code(&|r| r.description = "d".repeat(257)),
            ("InvalidParameter.Description", invalid)
        );
        assert_eq!(
            code(&|r| r.client_token = "t".repeat(65)),
            ("InvalidParameter.ClientToken", invalid)
        );
        assert_eq!(
            code(&|r| r.client_token = "a b".into()),
            ("InvalidParameter.ClientToken", invalid)
        );

        // Accepted edge cases.
        let mut scratch = state.clone();
        let mut ok = request(ResourceType::Vpc, "vpc-0", "a_b-1");
        ok.project_name = "a-1".into();
        ok.flow_log_name = "my-flow_log.1".into();
        ok.description = "ENIs of vpc-0".into();
        ok.aggregation_interval = 5;
        ok.region_id = REGION.into();
        scratch.create_flow_log(ok, 0, &mut ids()).unwrap();
    }

    #[test]
    fn duplicate_destination_is_refused() {
        let mut state = populated();
        let mut gen_id = ids();
        let (first, _) = state
            .create_flow_log(
                request(ResourceType::Vpc, "vpc-0", "store-1"),
                0,
                &mut gen_id,
            )
            .unwrap();
        let mut again = request(ResourceType::Vpc, "vpc-0", "store-1");
        again.traffic_type = TrafficType::Drop;
        let err = state.create_flow_log(again, 0, &mut gen_id).unwrap_err();
        assert_eq!(err.code(), "AlreadyExists.FlowLog");
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert!(err.to_string().contains(&first));
        state
            .create_flow_log(
                request(ResourceType::Vpc, "vpc-0", "store-2"),
                0,
                &mut gen_id,
            )
            .unwrap();
    }

    #[test]
    fn client_token_is_idempotent() {
        let mut state = populated();
        let mut gen_id = ids();
        let mut with_token = request(ResourceType::VSwitch, "vsw-00", "store-1");
        with_token.client_token = "token-1".into();
        let (first, mutation) = state
            .create_flow_log(with_token.clone(), 0, &mut gen_id)
            .unwrap();
        assert!(mutation.changed);
        let version = state.version();
        let (second, mutation) = state
            .create_flow_log(with_token.clone(), 5, &mut gen_id)
            .unwrap();
        assert_eq!(first, second);
        assert!(!mutation.changed);
        assert_eq!(state.version(), version);

        let mut different = with_token.clone();
        different.logstore_name = "store-2".into();
        let err = state
            .create_flow_log(different, 0, &mut gen_id)
            .unwrap_err();
        assert_eq!(err.code(), "IdempotentParameterMismatch");

        // Colliding generated ids are retried; a generator that only collides gives a clear error.
        let mut collide = {
            let first = first.clone();
            move || first.clone()
        };
        let err = state
            .create_flow_log(
                request(ResourceType::Vpc, "vpc-1", "store-3"),
                0,
                &mut collide,
            )
            .unwrap_err();
        assert_eq!(err, StateError::IdExhausted);

        // After deletion, the token is free again.
        state.delete_flow_log(REGION, &first).unwrap();
        let (third, _) = state.create_flow_log(with_token, 0, &mut gen_id).unwrap();
        assert_ne!(third, first);
    }

    #[test]
    fn describe_filters_and_pages() {
        let mut state = populated();
        let mut gen_id = ids();
        let mut created = Vec::new();
        for n in 0..23 {
            let (resource_type, resource_id) = match n % 3 {
                0 => (ResourceType::Vpc, "vpc-0"),
                1 => (ResourceType::VSwitch, "vsw-02"),
                _ => (ResourceType::NetworkInterface, "eni-00003"),
            };
            let mut input = request(resource_type, resource_id, &format!("store-{n:02}"));
            input.flow_log_name = format!("name{}", n % 2);
            if n == 7 {
                input.project_name = "other-proj".into();
            }
            created.push(state.create_flow_log(input, n, &mut gen_id).unwrap().0);
        }
        let page = |filter: DescribeFilter| state.describe_flow_logs(&filter).unwrap();
        let ids_of = |p: &FlowLogPage| {
            p.flow_logs
                .iter()
                .map(|fl| fl.flow_log_id.clone())
                .collect::<Vec<_>>()
        };

        let first = page(DescribeFilter::default());
        assert_eq!(
            (first.total_count, first.page_number, first.page_size),
            (23, 1, 10)
        );
        assert_eq!(ids_of(&first), created[..10]);
        let third = page(DescribeFilter {
            page_number: 3,
            ..DescribeFilter::default()
        });
        assert_eq!(ids_of(&third), created[20..]);
        let beyond = page(DescribeFilter {
            page_number: u32::MAX,
            page_size: 50,
            ..DescribeFilter::default()
        });
        assert!(beyond.flow_logs.is_empty());
        assert_eq!(beyond.total_count, 23);
        assert_eq!(
            page(DescribeFilter {
                page_size: 50,
                ..DescribeFilter::default()
            })
            .flow_logs
            .len(),
            23
        );
        let err = state
            .describe_flow_logs(&DescribeFilter {
                page_size: 51,
                ..DescribeFilter::default()
            })
            .unwrap_err();
        assert_eq!(err.code(), "InvalidParameter.PageSize");

        let count = |filter: DescribeFilter| page(filter).total_count;
        assert_eq!(
            count(DescribeFilter {
                vpc_id: "vpc-1".into(),
                ..DescribeFilter::default()
            }),
            8
        );
        assert_eq!(
            count(DescribeFilter {
                vpc_id: "vpc-0".into(),
                ..DescribeFilter::default()
            }),
            15
        );
        assert_eq!(
            count(DescribeFilter {
                resource_type: Some(ResourceType::NetworkInterface),
                ..DescribeFilter::default()
            }),
            7
        );
        assert_eq!(
            count(DescribeFilter {
                resource_id: "vpc-0".into(),
                flow_log_name: "name0".into(),
                ..DescribeFilter::default()
            }),
            4
        );
        assert_eq!(
            count(DescribeFilter {
                project_name: "other-proj".into(),
                ..DescribeFilter::default()
            }),
            1
        );
        assert_eq!(
            count(DescribeFilter {
                logstore_name: "store-05".into(),
                flow_log_id: created[5].clone(),
                ..DescribeFilter::default()
            }),
            1
        );
        assert_eq!(
            count(DescribeFilter {
                logstore_name: "store-05".into(),
                flow_log_id: created[6].clone(),
                ..DescribeFilter::default()
            }),
            0
        );
        assert_eq!(
            count(DescribeFilter {
                status: Some(FlowLogStatus::Active),
                region_id: REGION.into(),
                ..DescribeFilter::default()
            }),
            23
        );
        assert_eq!(
            count(DescribeFilter {
                status: Some(FlowLogStatus::Inactive),
                ..DescribeFilter::default()
            }),
            0
        );
        let err = state
            .describe_flow_logs(&DescribeFilter {
                region_id: "eu-central-1".into(),
                ..DescribeFilter::default()
            })
            .unwrap_err();
        assert_eq!(err.code(), "InvalidRegionId.NotFound");
    }

    #[test]
    fn snapshot_round_trips_and_is_checked() {
        let mut state = populated();
        let mut gen_id = ids();
        let mut input = request(ResourceType::Vpc, "vpc-0", "store-1");
        input.client_token = "tok".into();
        state
            .create_flow_log(input.clone(), 7, &mut gen_id)
            .unwrap();
        state
            .create_flow_log(
                request(ResourceType::NetworkInterface, "eni-00004", "store-2"),
                8,
                &mut gen_id,
            )
            .unwrap();
        let snapshot = state.snapshot();
        let json = serde_json::to_string(&snapshot).unwrap();
        let restored = State::restore(serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(restored, state);
        // The token still deduplicates after a restore.
        let mut restored = restored;
        let (again, mutation) = restored.create_flow_log(input, 9, &mut gen_id).unwrap();
        assert_eq!(again, "fl-test0001");
        assert!(!mutation.changed);

        let mut twice = snapshot.clone();
        twice
            .network_interfaces
            .push(twice.network_interfaces[0].clone());
        assert_eq!(
            State::restore(twice).unwrap_err().code(),
            "InternalError.Snapshot"
        );
        let mut mac_twice = snapshot.clone();
        mac_twice.network_interfaces[1].mac = mac_twice.network_interfaces[0].mac;
        assert!(
            State::restore(mac_twice)
                .unwrap_err()
                .to_string()
                .contains("MAC")
        );
        let mut bad_format = snapshot.clone();
        bad_format.format = 2;
        assert!(State::restore(bad_format).is_err());
        let mut bad_version = snapshot.clone();
        bad_version
            .host_versions
            .insert("a".into(), snapshot.version + 1);
        assert!(State::restore(bad_version).is_err());
        let mut bad_sequence = snapshot;
        bad_sequence.flow_logs[1].sequence = bad_sequence.flow_logs[0].sequence;
        assert!(State::restore(bad_sequence).is_err());
    }

    #[test]
    fn region_and_enum_parsing() {
        assert!(State::new("cn-hangzhou").is_ok());
        assert_eq!(
            State::new("").unwrap_err().code(),
            "InvalidParameter.RegionId"
        );
        assert_eq!(
            State::new("CN").unwrap_err().code(),
            "InvalidParameter.RegionId"
        );
        assert_eq!("vpc".parse::<ResourceType>().unwrap(), ResourceType::Vpc);
        assert_eq!(
            "VSwitch".parse::<ResourceType>().unwrap(),
            ResourceType::VSwitch
        );
        assert_eq!(
            "NetworkInterface".parse::<ResourceType>().unwrap(),
            ResourceType::NetworkInterface
        );
        assert_eq!(
            "x".parse::<ResourceType>().unwrap_err().code(),
            "InvalidParameter.ResourceType"
        );
        assert_eq!("drop".parse::<TrafficType>().unwrap(), TrafficType::Drop);
        assert_eq!(
            "y".parse::<TrafficType>().unwrap_err().code(),
            "InvalidParameter.TrafficType"
        );
        assert_eq!(
            "Active".parse::<FlowLogStatus>().unwrap(),
            FlowLogStatus::Active
        );
        assert_eq!(
            "z".parse::<FlowLogStatus>().unwrap_err().code(),
            "InvalidParameter.Status"
        );
        assert_eq!(AggregationInterval::from_minutes(0).unwrap().seconds(), 600);
        assert_eq!(Field::PageSize.name(), "PageSize");
    }
}
