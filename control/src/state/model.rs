//! The data of the control plane and its validation: MAC addresses, ENIs, VPCs, vSwitches, flow logs and the
//! capture sets hosts apply, plus the checks every request field goes through.
//!
//! # Guarantees
//! - A [`NetworkInterface`], [`Vpc`] or [`VSwitch`] value has passed its constructor's checks; parsing never
//!   panics on any input.
//! - Names follow the log service's rules (project: 3-63 of `[a-z0-9-]`; logstore: also `_`), and the
//!   aggregation interval is 1, 5 or 10 minutes.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::{Field, StateError};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
    /// Creation order: unique, increasing; pages of [`super::State::describe_flow_logs`] follow it.
    pub sequence: u64,
    /// The account that owns it: its resource's account at creation.
    pub account_id: String,
    /// The state version at which it last started capturing (creation or ActiveFlowLog): an Activating flow log
    /// becomes Active once every live host its scope touches has acknowledged a version at least this high (and
    /// at least the version of each of its ENIs' last change).
    pub activated_version: u64,
    /// While Deleting: what must be acknowledged before it is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleting: Option<Deleting>,
}

/// The pending removal of a flow log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Deleting {
    /// The state version of DeleteFlowLog.
    pub since: u64,
    /// The hosts whose capture set held it then: each must acknowledge a version >= `since` (or be dead).
    pub hosts: BTreeSet<String>,
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

    /// Its scope: (resource type, resource id).
    pub fn scope(&self) -> (ResourceType, String) {
        (self.resource_type, self.resource_id.clone())
    }
}

/// A VPC: an account's network, the scope of VPC flow logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Vpc {
    /// Its id.
    pub vpc_id: String,
    /// The account that owns it and everything in it.
    pub account_id: String,
    /// Creation time, Unix seconds.
    pub creation_time: i64,
}

impl Vpc {
    /// Validates a VPC: non-empty ids without whitespace.
    pub fn new(vpc_id: String, account_id: String, creation_time: i64) -> Result<Self, StateError> {
        check_identifier(Field::VpcId, &vpc_id)?;
        check_identifier(Field::AccountId, &account_id)?;
        Ok(Vpc {
            vpc_id,
            account_id,
            creation_time,
        })
    }
}

/// A vSwitch (subnet) of a VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VSwitch {
    /// Its id.
    pub vswitch_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// The account that owns it (its VPC's).
    pub account_id: String,
    /// Creation time, Unix seconds.
    pub creation_time: i64,
}

impl VSwitch {
    /// Validates a vSwitch: non-empty ids without whitespace.
    pub fn new(
        vswitch_id: String,
        vpc_id: String,
        account_id: String,
        creation_time: i64,
    ) -> Result<Self, StateError> {
        check_identifier(Field::VSwitchId, &vswitch_id)?;
        check_identifier(Field::VpcId, &vpc_id)?;
        check_identifier(Field::AccountId, &account_id)?;
        Ok(VSwitch {
            vswitch_id,
            vpc_id,
            account_id,
            creation_time,
        })
    }
}

/// A ModifyFlowLogAttribute request, before validation; `None` leaves an attribute as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModifyFlowLogInput {
    /// Region; empty = the controller's.
    pub region_id: String,
    /// The flow log.
    pub flow_log_id: String,
    /// New name (empty clears it).
    pub flow_log_name: Option<String>,
    /// New description (empty clears it).
    pub description: Option<String>,
    /// New interval in minutes.
    pub aggregation_interval: Option<u32>,
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
    /// At most [`super::MAX_PAGE_SIZE`]; 0 = [`super::DEFAULT_PAGE_SIZE`].
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
    /// [`super::State::host_version`] of the host.
    pub version: u64,
    /// [`super::State::state_id`].
    pub state_id: String,
    /// Region.
    pub region_id: String,
    /// ENIs with at least one destination, ordered by ENI id.
    pub interfaces: Vec<CapturedInterface>,
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

pub(crate) fn check_eni_id(eni_id: &str) -> Result<(), StateError> {
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
pub(crate) fn check_identifier(field: Field, value: &str) -> Result<(), StateError> {
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
pub(crate) fn check_project_name(name: &str) -> Result<(), StateError> {
    if sls_name_ok(name, b"-") {
        Ok(())
    } else {
        Err(StateError::MalformedProjectName {
            name: name.to_owned(),
        })
    }
}

/// SLS logstore naming: 3 to 63 characters of `[a-z0-9_-]`, starting and ending with a letter or digit.
pub(crate) fn check_logstore_name(name: &str) -> Result<(), StateError> {
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
pub(crate) fn check_flow_log_name(name: &str) -> Result<(), StateError> {
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
pub(crate) fn check_description(description: &str) -> Result<(), StateError> {
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
pub(crate) fn check_client_token(token: &str) -> Result<(), StateError> {
    if token.len() <= 64 && token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(StateError::invalid(
            Field::ClientToken,
            "must be at most 64 printable ASCII characters",
        ))
    }
}
