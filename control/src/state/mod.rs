//! The control plane's state and every rule over it, sans IO: the inventory (VPCs, vSwitches, ENIs), the flow logs
//! and their statuses, the capture set each host must apply, and the records the store keeps.
//!
//! Nothing here touches the network, the disk or the clock: the current time, the caller, the flow-log id
//! generator and the hosts' acknowledgements are passed in, so every rule is a pure function over [`State`],
//! unit-tested in `tests.rs`. The gRPC layer ([`crate::service`]) converts wire messages into the inputs of this
//! module, and [`crate::store`] keeps the records a [`Mutation`] names.
//!
//! # Design
//! The maps are persistent (`imbl`): cloning a [`State`] is O(1) and shares structure, so the service can apply a
//! batch of changes to a copy, persist it, and only then publish it, while readers keep the previous copy.
//! Secondary indexes (ENIs by host / vSwitch / VPC, flow logs by scope, client tokens, MACs) make a host's capture
//! set cost O(its ENIs), whatever the size of the region.
//!
//! # Guarantees
//! - Every mutation validates its whole input before changing anything: a refused call leaves the state as it was.
//! - An ENI id and a MAC address identify at most one ENI; an ENI's vSwitch and VPC exist, the vSwitch is in that
//!   VPC, and all three belong to one account.
//! - A flow log on a VPC or a vSwitch covers exactly the ENIs in its scope at each moment, including ENIs registered
//!   after it was created; a flow log outlives its resource (it then covers nothing). Only Activating and Active
//!   flow logs are in capture sets.
//! - [`State::version`] increases on every change. A host's capture-set version ([`State::host_version`]) is the
//!   state version of the last change that altered that host's capture set, so it increases on every such change,
//!   and only then. Host versions are not stored: a restored state starts every host at the stored version, so each
//!   host gets one full capture set after a restart or fail-over.
//! - [`Mutation::keys`] names every record a change touched, so a store that writes exactly those records holds the
//!   same state ([`State::restore`] of the stored records equals the state, host versions aside).
//!
//! # Limitations
//! One region per state. Capture sets are full snapshots per host (no deltas).

mod error;
mod flow_logs;
mod inventory;
mod model;
mod records;
mod settle;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use imbl::{HashMap, OrdMap, OrdSet};

pub use error::{ErrorKind, Field, StateError};
pub use flow_logs::{Caller, ProjectOwners};
pub(crate) use model::check_project_name;
pub use model::{
    AggregationInterval, CaptureSet, CapturedInterface, CreateFlowLogInput, Deleting,
    DescribeFilter, Destination, FlowLog, FlowLogPage, FlowLogStatus, MacAddr, ModifyFlowLogInput,
    NetworkInterface, NetworkInterfaceInput, ResourceType, TrafficType, VSwitch, Vpc,
    check_region_id,
};
pub use records::{Key, RECORD_FORMAT, StoredEni};
pub use settle::HostView;

/// Largest page of [`State::describe_flow_logs`].
pub const MAX_PAGE_SIZE: u32 = 50;
/// Page size when the request gives 0.
pub const DEFAULT_PAGE_SIZE: u32 = 10;

/// What a successful mutation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mutation {
    /// Hosts whose capture set changed.
    pub hosts: BTreeSet<String>,
    /// Records to write (or delete, when the state no longer has them); empty for a no-op such as an idempotent
    /// retry: nothing to persist then.
    pub keys: BTreeSet<Key>,
}

impl Mutation {
    /// Whether the state changed at all.
    pub fn changed(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Adds what `other` changed.
    pub fn merge(&mut self, other: Mutation) {
        self.hosts.extend(other.hosts);
        self.keys.extend(other.keys);
    }
}

/// The whole control-plane state of one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    region_id: String,
    state_id: String,
    version: u64,
    next_sequence: u64,
    /// Host version of every host absent from `host_versions` (the version the state was restored at).
    base_host_version: u64,
    vpcs: OrdMap<String, Vpc>,
    vswitches: OrdMap<String, VSwitch>,
    enis: OrdMap<String, StoredEni>,
    flow_logs: OrdMap<String, FlowLog>,
    // Indexes, rebuilt on restore.
    owners_by_mac: HashMap<MacAddr, String>,
    vswitches_by_vpc: OrdMap<String, OrdSet<String>>,
    enis_by_host: OrdMap<String, OrdSet<String>>,
    enis_by_vswitch: OrdMap<String, OrdSet<String>>,
    enis_by_vpc: OrdMap<String, OrdSet<String>>,
    flow_logs_by_scope: OrdMap<(ResourceType, String), OrdSet<String>>,
    /// (account, client token) -> flow log, for flow logs not being deleted.
    flow_logs_by_token: OrdMap<(String, String), String>,
    host_versions: HashMap<String, u64>,
}

impl State {
    /// An empty state of `region_id` (validated: `[a-z0-9-]`, 1 to 64 characters). `state_id` names this state for
    /// ever (the service draws a random one); capture sets carry it so that hosts can tell states apart.
    pub fn new(region_id: &str, state_id: &str) -> Result<Self, StateError> {
        check_region_id(region_id)?;
        if state_id.is_empty()
            || !state_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(StateError::InconsistentSnapshot {
                reason: format!("state id {state_id:?} must be non-empty [A-Za-z0-9-]"),
            });
        }
        Ok(State {
            region_id: region_id.to_owned(),
            state_id: state_id.to_owned(),
            version: 0,
            next_sequence: 1,
            base_host_version: 0,
            vpcs: OrdMap::new(),
            vswitches: OrdMap::new(),
            enis: OrdMap::new(),
            flow_logs: OrdMap::new(),
            owners_by_mac: HashMap::new(),
            vswitches_by_vpc: OrdMap::new(),
            enis_by_host: OrdMap::new(),
            enis_by_vswitch: OrdMap::new(),
            enis_by_vpc: OrdMap::new(),
            flow_logs_by_scope: OrdMap::new(),
            flow_logs_by_token: OrdMap::new(),
            host_versions: HashMap::new(),
        })
    }

    /// The region this state belongs to.
    pub fn region_id(&self) -> &str {
        &self.region_id
    }

    /// The identity of this state, stable across restarts.
    pub fn state_id(&self) -> &str {
        &self.state_id
    }

    /// The state version: increases on every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The capture-set version of `host`: the state version at which its capture set last changed (the version the
    /// state was restored at, or 0, if it has not changed since).
    pub fn host_version(&self, host: &str) -> u64 {
        self.host_versions
            .get(host)
            .copied()
            .unwrap_or(self.base_host_version)
    }

    /// The capture set of `host`: its ENIs covered by at least one Activating or Active flow log, each with one
    /// destination per such flow log, in creation order.
    pub fn capture_set(&self, host: &str) -> CaptureSet {
        CaptureSet {
            version: self.host_version(host),
            state_id: self.state_id.clone(),
            region_id: self.region_id.clone(),
            interfaces: self.captured_interfaces(host),
        }
    }

    fn captured_interfaces(&self, host: &str) -> Vec<CapturedInterface> {
        let Some(ids) = self.enis_by_host.get(host) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| self.enis.get(id))
            .filter_map(|stored| {
                let destinations = self.destinations(&stored.eni);
                (!destinations.is_empty()).then(|| CapturedInterface {
                    network_interface: stored.eni.clone(),
                    destinations,
                })
            })
            .collect()
    }

    /// The destinations of an ENI: one per capturing flow log covering it, in creation order.
    fn destinations(&self, eni: &NetworkInterface) -> Vec<Destination> {
        let scopes = [
            (ResourceType::NetworkInterface, &eni.eni_id),
            (ResourceType::VSwitch, &eni.vswitch_id),
            (ResourceType::Vpc, &eni.vpc_id),
        ];
        let mut covering: Vec<&FlowLog> = scopes
            .into_iter()
            .filter_map(|(kind, id)| self.flow_logs_by_scope.get(&(kind, id.clone())))
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.flow_logs.get(id))
            .filter(|fl| fl.status.captures())
            .collect();
        covering.sort_by_key(|fl| fl.sequence);
        covering
            .into_iter()
            .map(|fl| Destination {
                flow_log_id: fl.flow_log_id.clone(),
                project: fl.project_name.clone(),
                logstore: fl.logstore_name.clone(),
                traffic_type: fl.traffic_type,
                interval_seconds: fl.aggregation_interval.seconds(),
            })
            .collect()
    }

    /// The ENIs in a scope right now.
    fn enis_in_scope(&self, resource_type: ResourceType, resource_id: &str) -> Vec<&StoredEni> {
        let ids = match resource_type {
            ResourceType::NetworkInterface => {
                return self.enis.get(resource_id).into_iter().collect();
            }
            ResourceType::VSwitch => self.enis_by_vswitch.get(resource_id),
            ResourceType::Vpc => self.enis_by_vpc.get(resource_id),
        };
        ids.into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.enis.get(id))
            .collect()
    }

    /// The hosts with ENIs in a scope right now.
    fn hosts_in_scope(&self, resource_type: ResourceType, resource_id: &str) -> BTreeSet<String> {
        self.enis_in_scope(resource_type, resource_id)
            .into_iter()
            .map(|stored| stored.eni.host.clone())
            .collect()
    }

    /// Applies `change`, bumps the version, and records the new version for every host of `candidates` whose
    /// capture set changed. `keys` are the records `change` touches (the meta record is added).
    fn apply(
        &mut self,
        candidates: BTreeSet<String>,
        mut keys: BTreeSet<Key>,
        change: impl FnOnce(&mut State),
    ) -> Mutation {
        let before: Vec<(String, Vec<CapturedInterface>)> = candidates
            .into_iter()
            .map(|host| {
                let interfaces = self.captured_interfaces(&host);
                (host, interfaces)
            })
            .collect();
        change(self);
        self.version += 1;
        keys.insert(Key::Meta);
        let mut hosts = BTreeSet::new();
        for (host, interfaces) in before {
            if self.captured_interfaces(&host) != interfaces {
                self.host_versions.insert(host.clone(), self.version);
                hosts.insert(host);
            }
        }
        Mutation { hosts, keys }
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
}

/// Adds `value` to the set under `key`.
fn index_insert<K: Ord + Clone>(index: &mut OrdMap<K, OrdSet<String>>, key: K, value: &str) {
    index.entry(key).or_default().insert(value.to_owned());
}

/// Removes `value` from the set under `key`, dropping the set when it becomes empty.
fn index_remove<K: Ord + Clone>(index: &mut OrdMap<K, OrdSet<String>>, key: &K, value: &str) {
    if let Some(set) = index.get_mut(key) {
        set.remove(value);
        if set.is_empty() {
            index.remove(key);
        }
    }
}
