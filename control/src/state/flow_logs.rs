//! Flow logs: creation (ClientToken idempotency, quota, project ownership), description with filters and pages,
//! attribute changes, and the user-driven status changes (ActiveFlowLog, DeactiveFlowLog, DeleteFlowLog).
//!
//! # Guarantees
//! - A flow log belongs to its resource's account, and delivers only to projects of that account (when project
//!   ownership is configured).
//! - An account sees and changes only its own flow logs; naming another account's flow log, resource or VPC is
//!   refused with `Forbidden.Account`, whatever the call.
//! - Status changes: create / ActiveFlowLog -> Activating (Active at once when the scope has no ENI);
//!   DeactiveFlowLog -> Inactive at once; DeleteFlowLog -> Deleting (gone at once when no host captured it). The
//!   acknowledgement-driven steps (Activating -> Active, Deleting -> gone) are in `settle.rs`.
//! - A client token is scoped to its account and is free again once its flow log is being deleted.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{
    check_client_token, check_description, check_flow_log_name, check_logstore_name,
    check_project_name,
};
use super::records::Key;
use super::{
    AggregationInterval, CreateFlowLogInput, DEFAULT_PAGE_SIZE, Deleting, DescribeFilter, Field,
    FlowLog, FlowLogPage, FlowLogStatus, MAX_PAGE_SIZE, ModifyFlowLogInput, Mutation, ResourceType,
    State, StateError, index_insert, index_remove,
};

/// Who makes a flow-log request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The orchestrator (or an open, unauthenticated controller): acts on every account's behalf.
    Admin,
    /// A tenant: only its own account's flow logs and resources.
    Account(String),
}

impl Caller {
    /// Refuses `what` (owned by `account_id`) unless the caller may act on that account.
    fn check(&self, account_id: &str, what: impl FnOnce() -> String) -> Result<(), StateError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Account(caller) if caller == account_id => Ok(()),
            Caller::Account(caller) => Err(StateError::ForbiddenAccount {
                caller: caller.clone(),
                what: what(),
            }),
        }
    }

    fn account(&self) -> Option<&str> {
        match self {
            Caller::Admin => None,
            Caller::Account(account) => Some(account),
        }
    }
}

/// Which account owns each log-service project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectOwners {
    /// project -> account; `None`: ownership is not configured and any project is accepted.
    owners: Option<BTreeMap<String, String>>,
}

impl ProjectOwners {
    /// Any project for any account (an open controller, without an access file).
    pub fn any() -> Self {
        ProjectOwners { owners: None }
    }

    /// Exactly these projects, each owned by one account.
    pub fn owned(owners: BTreeMap<String, String>) -> Self {
        ProjectOwners {
            owners: Some(owners),
        }
    }

    fn check(&self, project: &str, account_id: &str) -> Result<(), StateError> {
        match &self.owners {
            None => Ok(()),
            Some(owners) if owners.get(project).is_some_and(|owner| owner == account_id) => Ok(()),
            Some(_) => Err(StateError::ForbiddenProject {
                project: project.to_owned(),
                account_id: account_id.to_owned(),
            }),
        }
    }
}

impl State {
    /// Creates a flow log and returns its id: Activating, or Active at once when no ENI is in its scope. A repeated
    /// call with the same client token (of the same account) and the same parameters returns the first call's id
    /// and changes nothing. `quota` is the most flow logs (not being deleted) one account may have in the region.
    /// `now` is the creation time (Unix seconds); `new_id` proposes fresh ids (`fl-...`) until one is free (at
    /// most 16 tries).
    pub fn create_flow_log(
        &mut self,
        caller: &Caller,
        projects: &ProjectOwners,
        quota: usize,
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
        let (vpc_id, account_id) = self.resolve_resource(resource_type, &input.resource_id)?;
        caller.check(&account_id, || {
            format!("{resource_type} {}", input.resource_id)
        })?;
        if let Some(token) = &client_token
            && let Some(existing) = self
                .flow_logs_by_token
                .get(&(account_id.clone(), token.clone()))
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
        projects.check(&input.project_name, &account_id)?;
        if let Some(existing) = self.flow_logs.values().find(|fl| {
            fl.status != FlowLogStatus::Deleting
                && fl.resource_type == resource_type
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
        let count = self
            .flow_logs
            .values()
            .filter(|fl| fl.account_id == account_id && fl.status != FlowLogStatus::Deleting)
            .count();
        if count >= quota {
            return Err(StateError::QuotaExceeded {
                account_id,
                region_id: self.region_id.clone(),
                count,
                quota,
            });
        }
        let flow_log_id = (0..16)
            .map(|_| new_id())
            .find(|id| !self.flow_logs.contains_key(id))
            .ok_or(StateError::IdExhausted)?;
        let hosts = self.hosts_in_scope(resource_type, &input.resource_id);
        let status = if hosts.is_empty() {
            FlowLogStatus::Active
        } else {
            FlowLogStatus::Activating
        };
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
            status,
            creation_time: now,
            client_token,
            sequence: self.next_sequence,
            account_id,
            activated_version: self.version + 1,
            deleting: None,
        };
        let keys = BTreeSet::from([Key::FlowLog(flow_log_id.clone())]);
        let mutation = self.apply(hosts, keys, |state| {
            state.next_sequence += 1;
            state.index_flow_log(&flow_log);
            state
                .flow_logs
                .insert(flow_log.flow_log_id.clone(), flow_log);
        });
        Ok((flow_log_id, mutation))
    }

    /// One page of the flow logs matching every filter, in creation order; an account sees only its own, and
    /// naming another account's flow log, resource or VPC in a filter is refused.
    pub fn describe_flow_logs(
        &self,
        caller: &Caller,
        filter: &DescribeFilter,
    ) -> Result<FlowLogPage, StateError> {
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
        if let Some(caller_account) = caller.account() {
            if let Some(fl) = self.flow_logs.get(&filter.flow_log_id) {
                caller.check(&fl.account_id, || format!("flow log {}", fl.flow_log_id))?;
            }
            if !filter.resource_id.is_empty() {
                let types = match filter.resource_type {
                    Some(t) => vec![t],
                    None => vec![
                        ResourceType::NetworkInterface,
                        ResourceType::VSwitch,
                        ResourceType::Vpc,
                    ],
                };
                for resource_type in types {
                    if let Ok((_, owner)) =
                        self.resolve_resource(resource_type, &filter.resource_id)
                        && owner != caller_account
                    {
                        caller
                            .check(&owner, || format!("{resource_type} {}", filter.resource_id))?;
                    }
                }
            }
            if let Some(vpc) = self.vpcs.get(&filter.vpc_id) {
                caller.check(&vpc.account_id, || format!("VPC {}", vpc.vpc_id))?;
            }
        }
        let page_number = filter.page_number.max(1);
        let matches_text = |wanted: &str, actual: &str| wanted.is_empty() || wanted == actual;
        let mut matching: Vec<&FlowLog> = self
            .flow_logs
            .values()
            .filter(|fl| {
                caller.account().is_none_or(|a| a == fl.account_id)
                    && matches_text(&filter.flow_log_id, &fl.flow_log_id)
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

    /// Changes a flow log's name, description or interval (at least one must be given). Refused while Deleting.
    pub fn modify_flow_log(
        &mut self,
        caller: &Caller,
        input: ModifyFlowLogInput,
    ) -> Result<Mutation, StateError> {
        let current = self.owned_flow_log(caller, &input.region_id, &input.flow_log_id)?;
        if input.flow_log_name.is_none()
            && input.description.is_none()
            && input.aggregation_interval.is_none()
        {
            return Err(StateError::MissingParameter {
                code: "MissingParameter.Attribute",
                what: "give at least one of FlowLogName, Description and AggregationInterval"
                    .into(),
            });
        }
        if let Some(name) = &input.flow_log_name {
            check_flow_log_name(name)?;
        }
        if let Some(description) = &input.description {
            check_description(description)?;
        }
        let interval = input
            .aggregation_interval
            .map(AggregationInterval::try_from)
            .transpose()?;
        if current.status == FlowLogStatus::Deleting {
            return Err(incorrect(&current, "modify", ""));
        }
        let mut updated = current.clone();
        if let Some(name) = input.flow_log_name {
            updated.flow_log_name = name;
        }
        if let Some(description) = input.description {
            updated.description = description;
        }
        if let Some(interval) = interval {
            updated.aggregation_interval = interval;
        }
        if updated == current {
            return Ok(Mutation::default());
        }
        Ok(self.replace_flow_log(updated))
    }

    /// Restarts an Inactive flow log: Activating (Active at once when no ENI is in its scope).
    pub fn activate_flow_log(
        &mut self,
        caller: &Caller,
        region_id: &str,
        flow_log_id: &str,
    ) -> Result<Mutation, StateError> {
        let current = self.owned_flow_log(caller, region_id, flow_log_id)?;
        match current.status {
            FlowLogStatus::Inactive => {}
            FlowLogStatus::Activating | FlowLogStatus::Active => {
                return Err(incorrect(&current, "activate", "; it already captures"));
            }
            FlowLogStatus::Deleting => return Err(incorrect(&current, "activate", "")),
        }
        let mut updated = current;
        updated.status = if self
            .hosts_in_scope(updated.resource_type, &updated.resource_id)
            .is_empty()
        {
            FlowLogStatus::Active
        } else {
            FlowLogStatus::Activating
        };
        updated.activated_version = self.version + 1;
        Ok(self.replace_flow_log(updated))
    }

    /// Stops an Active or Activating flow log: Inactive at once, its ENIs no longer captured for it.
    pub fn deactivate_flow_log(
        &mut self,
        caller: &Caller,
        region_id: &str,
        flow_log_id: &str,
    ) -> Result<Mutation, StateError> {
        let current = self.owned_flow_log(caller, region_id, flow_log_id)?;
        if !current.status.captures() {
            return Err(incorrect(&current, "deactivate", ""));
        }
        let mut updated = current;
        updated.status = FlowLogStatus::Inactive;
        Ok(self.replace_flow_log(updated))
    }

    /// Deletes a flow log: Deleting (no longer captured, its client token free again) until every host that
    /// captured it acknowledges a capture set without it; gone at once when no host captured it. Deleting a flow
    /// log that is already Deleting changes nothing.
    pub fn delete_flow_log(
        &mut self,
        caller: &Caller,
        region_id: &str,
        flow_log_id: &str,
    ) -> Result<Mutation, StateError> {
        let current = self.owned_flow_log(caller, region_id, flow_log_id)?;
        if current.status == FlowLogStatus::Deleting {
            return Ok(Mutation::default());
        }
        let hosts = if current.status.captures() {
            self.hosts_in_scope(current.resource_type, &current.resource_id)
        } else {
            BTreeSet::new()
        };
        if hosts.is_empty() {
            return Ok(self.remove_flow_log(flow_log_id));
        }
        let mut updated = current;
        updated.status = FlowLogStatus::Deleting;
        updated.deleting = Some(Deleting {
            since: self.version + 1,
            hosts,
        });
        Ok(self.replace_flow_log(updated))
    }

    /// The flow log with this id.
    pub fn flow_log(&self, flow_log_id: &str) -> Option<&FlowLog> {
        self.flow_logs.get(flow_log_id)
    }

    /// Every flow log, in id order.
    pub fn flow_logs(&self) -> impl Iterator<Item = &FlowLog> {
        self.flow_logs.values()
    }

    /// The flow log `flow_log_id` of the region, if the caller may act on it.
    fn owned_flow_log(
        &self,
        caller: &Caller,
        region_id: &str,
        flow_log_id: &str,
    ) -> Result<FlowLog, StateError> {
        self.check_region(region_id)?;
        if flow_log_id.is_empty() {
            return Err(StateError::invalid(Field::FlowLogId, "must not be empty"));
        }
        let flow_log =
            self.flow_logs
                .get(flow_log_id)
                .ok_or_else(|| StateError::FlowLogNotFound {
                    id: flow_log_id.to_owned(),
                })?;
        caller.check(&flow_log.account_id, || format!("flow log {flow_log_id}"))?;
        Ok(flow_log.clone())
    }

    /// Replaces a flow log with an updated version of itself (same id, scope and token).
    pub(super) fn replace_flow_log(&mut self, updated: FlowLog) -> Mutation {
        let hosts = self.hosts_in_scope(updated.resource_type, &updated.resource_id);
        let keys = BTreeSet::from([Key::FlowLog(updated.flow_log_id.clone())]);
        self.apply(hosts, keys, |state| {
            if let Some(old) = state.flow_logs.get(&updated.flow_log_id).cloned() {
                state.unindex_flow_log(&old);
            }
            state.index_flow_log(&updated);
            state.flow_logs.insert(updated.flow_log_id.clone(), updated);
        })
    }

    /// Removes a flow log for good.
    pub(super) fn remove_flow_log(&mut self, flow_log_id: &str) -> Mutation {
        let Some(old) = self.flow_logs.get(flow_log_id).cloned() else {
            return Mutation::default();
        };
        let hosts = self.hosts_in_scope(old.resource_type, &old.resource_id);
        let keys = BTreeSet::from([Key::FlowLog(flow_log_id.to_owned())]);
        self.apply(hosts, keys, |state| {
            state.unindex_flow_log(&old);
            state.flow_logs.remove(flow_log_id);
        })
    }

    pub(super) fn index_flow_log(&mut self, flow_log: &FlowLog) {
        index_insert(
            &mut self.flow_logs_by_scope,
            flow_log.scope(),
            &flow_log.flow_log_id,
        );
        if flow_log.status != FlowLogStatus::Deleting
            && let Some(token) = &flow_log.client_token
        {
            self.flow_logs_by_token.insert(
                (flow_log.account_id.clone(), token.clone()),
                flow_log.flow_log_id.clone(),
            );
        }
    }

    pub(super) fn unindex_flow_log(&mut self, flow_log: &FlowLog) {
        index_remove(
            &mut self.flow_logs_by_scope,
            &flow_log.scope(),
            &flow_log.flow_log_id,
        );
        if let Some(token) = &flow_log.client_token {
            let key = (flow_log.account_id.clone(), token.clone());
            if self.flow_logs_by_token.get(&key) == Some(&flow_log.flow_log_id) {
                self.flow_logs_by_token.remove(&key);
            }
        }
    }

    /// The VPC and account of a flow log's resource; the resource must exist.
    fn resolve_resource(
        &self,
        resource_type: ResourceType,
        resource_id: &str,
    ) -> Result<(String, String), StateError> {
        let found = match resource_type {
            ResourceType::NetworkInterface => self
                .enis
                .get(resource_id)
                .map(|s| (s.eni.vpc_id.clone(), s.eni.account_id.clone())),
            ResourceType::VSwitch => self
                .vswitches
                .get(resource_id)
                .map(|vs| (vs.vpc_id.clone(), vs.account_id.clone())),
            ResourceType::Vpc => self
                .vpcs
                .get(resource_id)
                .map(|vpc| (vpc.vpc_id.clone(), vpc.account_id.clone())),
        };
        found.ok_or_else(|| StateError::ResourceNotFound {
            resource_type,
            resource_id: resource_id.to_owned(),
        })
    }
}

fn incorrect(flow_log: &FlowLog, operation: &'static str, hint: &'static str) -> StateError {
    StateError::IncorrectStatus {
        id: flow_log.flow_log_id.clone(),
        status: flow_log.status,
        operation,
        hint,
    }
}
