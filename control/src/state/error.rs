//! The errors of control-plane requests: one enum whose every variant carries a stable, machine-readable code
//! (modelled on Alibaba Cloud's VPC API) and a class that the gRPC layer maps onto a status code.
//!
//! # Guarantees
//! - [`StateError::code`] never changes for a given variant: clients may match on it.
//! - The `Display` text is a human message naming the offending value; it never holds a secret.

use std::fmt;

use super::model::{FlowLogStatus, MacAddr, ResourceType};

/// An error of a control-plane request.
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
    /// A request left out every optional part, so it asks for nothing.
    #[error("{what}")]
    MissingParameter {
        /// The stable code (`MissingParameter.*`).
        code: &'static str,
        /// What is missing.
        what: String,
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
    /// The vSwitch exists in another VPC than the request says.
    #[error("vSwitch {vswitch_id} belongs to {known_vpc_id}, not {requested_vpc_id}")]
    VSwitchVpcMismatch {
        /// The vSwitch.
        vswitch_id: String,
        /// The VPC it is in.
        known_vpc_id: String,
        /// The VPC of the request.
        requested_vpc_id: String,
    },
    /// A VPC or vSwitch with this id already exists (with other attributes).
    #[error("{kind} {id} already exists")]
    ResourceExists {
        /// `VPC` or `VSwitch`.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The resource cannot be deleted while others depend on it.
    #[error("{kind} {id} still has {dependents}: delete them first")]
    DependencyViolation {
        /// `VPC` or `VSwitch`.
        kind: &'static str,
        /// Its id.
        id: String,
        /// What still depends on it, e.g. "2 vSwitches".
        dependents: String,
        /// The stable code (`DependencyViolation.*`).
        code: &'static str,
    },
    /// No registered ENI has this id.
    #[error("network interface {id} is not registered")]
    EniNotFound {
        /// The id.
        id: String,
    },
    /// No VPC has this id.
    #[error("VPC {id} does not exist")]
    VpcNotFound {
        /// The id.
        id: String,
    },
    /// No vSwitch has this id.
    #[error("vSwitch {id} does not exist")]
    VSwitchNotFound {
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
    /// The flow log is not in a status that allows the operation.
    #[error("flow log {id} is {status}: cannot {operation} it{hint}")]
    IncorrectStatus {
        /// The flow log.
        id: String,
        /// Its status.
        status: FlowLogStatus,
        /// What was asked ("activate", "deactivate", "modify").
        operation: &'static str,
        /// Extra explanation (may be empty; starts with "; " otherwise).
        hint: &'static str,
    },
    /// The account already has as many flow logs in this region as its quota allows.
    #[error(
        "account {account_id} already has {count} flow logs in {region_id}; the quota is {quota}"
    )]
    QuotaExceeded {
        /// The account.
        account_id: String,
        /// The region.
        region_id: String,
        /// Flow logs it has (not counting those being deleted).
        count: usize,
        /// The quota.
        quota: usize,
    },
    /// The caller's account does not own the resource or flow log it names.
    #[error("{what} belongs to another account than {caller}")]
    ForbiddenAccount {
        /// The calling account.
        caller: String,
        /// What was named, e.g. "flow log fl-x".
        what: String,
    },
    /// The project does not belong to the account of the flow log.
    #[error("project {project} does not belong to account {account_id}")]
    ForbiddenProject {
        /// The project.
        project: String,
        /// The flow log's account.
        account_id: String,
    },
    /// An ENI cannot move to another account, nor a VPC / vSwitch hold ENIs of another account.
    #[error("{what}")]
    AccountMismatch {
        /// What conflicts.
        what: String,
    },
    /// A host acknowledged a capture-set version it was never sent.
    #[error("host {host} acknowledged version {acked}, but its capture set is only at {current}")]
    FutureVersion {
        /// The host.
        host: String,
        /// The acknowledged version.
        acked: u64,
        /// The host's current version.
        current: u64,
    },
    /// The id generator kept producing ids that are already taken.
    #[error("could not allocate a fresh flow log id")]
    IdExhausted,
    /// Stored records break an invariant of the state (duplicate MAC, dangling reference, bad format...): they were
    /// not written by this controller, or were edited.
    #[error("inconsistent stored state: {reason}")]
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
            StateError::MissingParameter { code, .. }
            | StateError::DependencyViolation { code, .. } => code,
            StateError::MalformedEniId { .. } => "InvalidNetworkInterfaceId.Malformed",
            StateError::MalformedMac { .. } => "InvalidMacAddress.Malformed",
            StateError::MacNotUnicast { .. } => "InvalidMacAddress.NotUnicast",
            StateError::MacInUse { .. } => "InvalidMacAddress.InUse",
            StateError::VSwitchVpcMismatch { .. } => "InvalidVSwitchId.VpcMismatch",
            StateError::ResourceExists { kind, .. } => match *kind {
                "VPC" => "AlreadyExists.Vpc",
                _ => "AlreadyExists.VSwitch",
            },
            StateError::EniNotFound { .. } => "InvalidNetworkInterfaceId.NotFound",
            StateError::VpcNotFound { .. } => "InvalidVpcId.NotFound",
            StateError::VSwitchNotFound { .. } => "InvalidVSwitchId.NotFound",
            StateError::RegionNotFound { .. } => "InvalidRegionId.NotFound",
            StateError::ResourceNotFound { .. } => "InvalidResourceId.NotFound",
            StateError::MalformedProjectName { .. } => "InvalidProjectName.Malformed",
            StateError::MalformedLogstoreName { .. } => "InvalidLogStoreName.Malformed",
            StateError::InvalidAggregationInterval { .. } => "InvalidParameter.AggregationInterval",
            StateError::IdempotentParameterMismatch { .. } => "IdempotentParameterMismatch",
            StateError::FlowLogExists { .. } => "AlreadyExists.FlowLog",
            StateError::FlowLogNotFound { .. } => "InvalidFlowLogId.NotFound",
            StateError::IncorrectStatus { .. } => "IncorrectStatus.FlowLog",
            StateError::QuotaExceeded { .. } => "QuotaExceeded.FlowLog",
            StateError::ForbiddenAccount { .. } => "Forbidden.Account",
            StateError::ForbiddenProject { .. } => "Forbidden.Project",
            StateError::AccountMismatch { .. } => "InvalidAccountId.Mismatch",
            StateError::FutureVersion { .. } => "InvalidParameter.Version",
            StateError::IdExhausted => "InternalError.FlowLogId",
            StateError::InconsistentSnapshot { .. } => "InternalError.Snapshot",
        }
    }

    /// The class of this error, which the gRPC layer maps onto a status code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StateError::InvalidParameter { .. }
            | StateError::MissingParameter { .. }
            | StateError::MalformedEniId { .. }
            | StateError::MalformedMac { .. }
            | StateError::MacNotUnicast { .. }
            | StateError::VSwitchVpcMismatch { .. }
            | StateError::MalformedProjectName { .. }
            | StateError::MalformedLogstoreName { .. }
            | StateError::InvalidAggregationInterval { .. }
            | StateError::IdempotentParameterMismatch { .. }
            | StateError::AccountMismatch { .. }
            | StateError::FutureVersion { .. } => ErrorKind::InvalidArgument,
            StateError::EniNotFound { .. }
            | StateError::VpcNotFound { .. }
            | StateError::VSwitchNotFound { .. }
            | StateError::RegionNotFound { .. }
            | StateError::ResourceNotFound { .. }
            | StateError::FlowLogNotFound { .. } => ErrorKind::NotFound,
            StateError::MacInUse { .. }
            | StateError::FlowLogExists { .. }
            | StateError::ResourceExists { .. } => ErrorKind::AlreadyExists,
            StateError::DependencyViolation { .. } | StateError::IncorrectStatus { .. } => {
                ErrorKind::FailedPrecondition
            }
            StateError::QuotaExceeded { .. } => ErrorKind::ResourceExhausted,
            StateError::ForbiddenAccount { .. } | StateError::ForbiddenProject { .. } => {
                ErrorKind::PermissionDenied
            }
            StateError::IdExhausted | StateError::InconsistentSnapshot { .. } => {
                ErrorKind::Internal
            }
        }
    }

    pub(crate) fn invalid(field: Field, reason: impl Into<String>) -> Self {
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
    /// The request is valid but the target's current status does not allow it.
    FailedPrecondition,
    /// A quota is used up.
    ResourceExhausted,
    /// The caller may not touch what it named.
    PermissionDenied,
    /// The controller failed.
    Internal,
}

/// A request field, named as in the API, for [`StateError::InvalidParameter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The request carried no network interface at all.
    NetworkInterface,
    /// The request carried no VPC at all.
    Vpc,
    /// The request carried no vSwitch at all.
    VSwitch,
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
    /// `FlowLogId`.
    FlowLogId,
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
            Field::Vpc => "MissingParameter.Vpc",
            Field::VSwitch => "MissingParameter.VSwitch",
            Field::VmId => "InvalidParameter.VmId",
            Field::VSwitchId => "InvalidParameter.VSwitchId",
            Field::VpcId => "InvalidParameter.VpcId",
            Field::AccountId => "InvalidParameter.AccountId",
            Field::Host => "InvalidParameter.Host",
            Field::RegionId => "InvalidParameter.RegionId",
            Field::ResourceType => "InvalidParameter.ResourceType",
            Field::ResourceId => "InvalidParameter.ResourceId",
            Field::TrafficType => "InvalidParameter.TrafficType",
            Field::FlowLogId => "InvalidParameter.FlowLogId",
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
