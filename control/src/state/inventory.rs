//! The inventory the orchestrator drives: VPCs, vSwitches and ENIs, created, attached, moved and deleted.
//!
//! # Guarantees
//! - An ENI's vSwitch and VPC exist and belong to the ENI's account; registering an ENI whose vSwitch or VPC is
//!   unknown creates them for that account (the orchestrator may also create them first, explicitly).
//! - Re-registering an ENI with other attributes is an update: a move to another host, vSwitch or VPC, a new VM
//!   or MAC. An ENI never changes account.
//! - A VPC with vSwitches and a vSwitch with ENIs cannot be deleted. Creating a VPC or vSwitch that exists with
//!   the same attributes is a no-op (safe to retry).
//! - Every change names the hosts whose capture set it changed (the ENI's old and new host).

use std::collections::BTreeSet;

use super::records::{Key, StoredEni};
use super::{
    Mutation, NetworkInterface, State, StateError, VSwitch, Vpc, index_insert, index_remove,
};

impl State {
    /// Creates a VPC; a VPC that exists with the same account is left as it is.
    pub fn create_vpc(&mut self, vpc: Vpc) -> Result<Mutation, StateError> {
        if let Some(existing) = self.vpcs.get(&vpc.vpc_id) {
            if existing.account_id == vpc.account_id {
                return Ok(Mutation::default());
            }
            return Err(StateError::ResourceExists {
                kind: "VPC",
                id: vpc.vpc_id,
            });
        }
        let keys = BTreeSet::from([Key::Vpc(vpc.vpc_id.clone())]);
        Ok(self.apply(BTreeSet::new(), keys, |state| {
            state.vpcs.insert(vpc.vpc_id.clone(), vpc);
        }))
    }

    /// Deletes a VPC without vSwitches. Flow logs on it remain (covering nothing) until deleted.
    pub fn delete_vpc(&mut self, vpc_id: &str) -> Result<Mutation, StateError> {
        if !self.vpcs.contains_key(vpc_id) {
            return Err(StateError::VpcNotFound {
                id: vpc_id.to_owned(),
            });
        }
        if let Some(vswitches) = self.vswitches_by_vpc.get(vpc_id) {
            return Err(StateError::DependencyViolation {
                kind: "VPC",
                id: vpc_id.to_owned(),
                dependents: format!("{} vSwitch(es)", vswitches.len()),
                code: "DependencyViolation.VSwitch",
            });
        }
        let keys = BTreeSet::from([Key::Vpc(vpc_id.to_owned())]);
        Ok(self.apply(BTreeSet::new(), keys, |state| {
            state.vpcs.remove(vpc_id);
        }))
    }

    /// Creates a vSwitch in an existing VPC of the same account; one that exists with the same attributes is left
    /// as it is.
    pub fn create_vswitch(&mut self, vswitch: VSwitch) -> Result<Mutation, StateError> {
        let vpc = self
            .vpcs
            .get(&vswitch.vpc_id)
            .ok_or_else(|| StateError::VpcNotFound {
                id: vswitch.vpc_id.clone(),
            })?;
        if vpc.account_id != vswitch.account_id {
            return Err(StateError::AccountMismatch {
                what: format!(
                    "VPC {} belongs to account {}, not {}",
                    vpc.vpc_id, vpc.account_id, vswitch.account_id
                ),
            });
        }
        if let Some(existing) = self.vswitches.get(&vswitch.vswitch_id) {
            if existing.vpc_id != vswitch.vpc_id {
                return Err(StateError::VSwitchVpcMismatch {
                    vswitch_id: vswitch.vswitch_id,
                    known_vpc_id: existing.vpc_id.clone(),
                    requested_vpc_id: vswitch.vpc_id,
                });
            }
            return Ok(Mutation::default());
        }
        let keys = BTreeSet::from([Key::VSwitch(vswitch.vswitch_id.clone())]);
        Ok(self.apply(BTreeSet::new(), keys, |state| {
            index_insert(
                &mut state.vswitches_by_vpc,
                vswitch.vpc_id.clone(),
                &vswitch.vswitch_id,
            );
            state.vswitches.insert(vswitch.vswitch_id.clone(), vswitch);
        }))
    }

    /// Deletes a vSwitch without ENIs. Flow logs on it remain (covering nothing) until deleted.
    pub fn delete_vswitch(&mut self, vswitch_id: &str) -> Result<Mutation, StateError> {
        let vswitch =
            self.vswitches
                .get(vswitch_id)
                .cloned()
                .ok_or_else(|| StateError::VSwitchNotFound {
                    id: vswitch_id.to_owned(),
                })?;
        if let Some(enis) = self.enis_by_vswitch.get(vswitch_id) {
            return Err(StateError::DependencyViolation {
                kind: "VSwitch",
                id: vswitch_id.to_owned(),
                dependents: format!("{} network interface(s)", enis.len()),
                code: "DependencyViolation.NetworkInterface",
            });
        }
        let keys = BTreeSet::from([Key::VSwitch(vswitch_id.to_owned())]);
        Ok(self.apply(BTreeSet::new(), keys, |state| {
            state.vswitches.remove(vswitch_id);
            index_remove(&mut state.vswitches_by_vpc, &vswitch.vpc_id, vswitch_id);
        }))
    }

    /// Registers an ENI, or updates the registration of one with the same id (moving it between hosts, vSwitches,
    /// VPCs; a new VM or MAC). Creates its vSwitch and VPC, for its account, when they do not exist. `now` is the
    /// creation time of those. Refuses a MAC that another ENI has, a vSwitch of another VPC, a VPC of another
    /// account, and a change of account.
    pub fn register_eni(
        &mut self,
        eni: NetworkInterface,
        now: i64,
    ) -> Result<Mutation, StateError> {
        if let Some(owner) = self.owners_by_mac.get(&eni.mac)
            && *owner != eni.eni_id
        {
            return Err(StateError::MacInUse {
                mac: eni.mac,
                owner: owner.clone(),
            });
        }
        let previous = self.enis.get(&eni.eni_id).map(|stored| stored.eni.clone());
        if let Some(previous) = &previous {
            if previous.account_id != eni.account_id {
                return Err(StateError::AccountMismatch {
                    what: format!(
                        "network interface {} belongs to account {}; it cannot move to account {}",
                        eni.eni_id, previous.account_id, eni.account_id
                    ),
                });
            }
            if *previous == eni {
                return Ok(Mutation::default());
            }
        }
        let mut keys = BTreeSet::from([Key::Eni(eni.eni_id.clone())]);
        let new_vpc = match self.vpcs.get(&eni.vpc_id) {
            Some(vpc) if vpc.account_id != eni.account_id => {
                return Err(StateError::AccountMismatch {
                    what: format!(
                        "VPC {} belongs to account {}, not {} (the account of {})",
                        vpc.vpc_id, vpc.account_id, eni.account_id, eni.eni_id
                    ),
                });
            }
            Some(_) => None,
            None => {
                keys.insert(Key::Vpc(eni.vpc_id.clone()));
                Some(Vpc::new(eni.vpc_id.clone(), eni.account_id.clone(), now)?)
            }
        };
        let new_vswitch = match self.vswitches.get(&eni.vswitch_id) {
            Some(vswitch) if vswitch.vpc_id != eni.vpc_id => {
                return Err(StateError::VSwitchVpcMismatch {
                    vswitch_id: eni.vswitch_id.clone(),
                    known_vpc_id: vswitch.vpc_id.clone(),
                    requested_vpc_id: eni.vpc_id.clone(),
                });
            }
            Some(_) => None,
            None => {
                keys.insert(Key::VSwitch(eni.vswitch_id.clone()));
                Some(VSwitch::new(
                    eni.vswitch_id.clone(),
                    eni.vpc_id.clone(),
                    eni.account_id.clone(),
                    now,
                )?)
            }
        };
        let mut hosts: BTreeSet<String> = previous.iter().map(|p| p.host.clone()).collect();
        hosts.insert(eni.host.clone());
        Ok(self.apply(hosts, keys, |state| {
            if let Some(vpc) = new_vpc {
                state.vpcs.insert(vpc.vpc_id.clone(), vpc);
            }
            if let Some(vswitch) = new_vswitch {
                index_insert(
                    &mut state.vswitches_by_vpc,
                    vswitch.vpc_id.clone(),
                    &vswitch.vswitch_id,
                );
                state.vswitches.insert(vswitch.vswitch_id.clone(), vswitch);
            }
            if let Some(previous) = &previous {
                state.unindex_eni(previous);
            }
            state.index_eni(&eni);
            let version = state.version + 1;
            state
                .enis
                .insert(eni.eni_id.clone(), StoredEni { eni, version });
        }))
    }

    /// Removes an ENI. Flow logs on it remain (covering nothing) until deleted.
    pub fn deregister_eni(&mut self, eni_id: &str) -> Result<Mutation, StateError> {
        let stored = self
            .enis
            .get(eni_id)
            .cloned()
            .ok_or_else(|| StateError::EniNotFound {
                id: eni_id.to_owned(),
            })?;
        let hosts = BTreeSet::from([stored.eni.host.clone()]);
        let keys = BTreeSet::from([Key::Eni(eni_id.to_owned())]);
        Ok(self.apply(hosts, keys, |state| {
            state.enis.remove(eni_id);
            state.unindex_eni(&stored.eni);
        }))
    }

    /// ENIs ordered by id, filtered by host, VPC and owning account when given.
    pub fn list_enis(
        &self,
        host: Option<&str>,
        vpc_id: Option<&str>,
        account_id: Option<&str>,
    ) -> Vec<NetworkInterface> {
        let keep = |eni: &NetworkInterface| {
            host.is_none_or(|h| eni.host == h)
                && vpc_id.is_none_or(|v| eni.vpc_id == v)
                && account_id.is_none_or(|a| eni.account_id == a)
        };
        match host {
            Some(host) => self
                .enis_by_host
                .get(host)
                .into_iter()
                .flat_map(|ids| ids.iter())
                .filter_map(|id| self.enis.get(id))
                .map(|stored| &stored.eni)
                .filter(|eni| keep(eni))
                .cloned()
                .collect(),
            None => self
                .enis
                .values()
                .map(|stored| &stored.eni)
                .filter(|eni| keep(eni))
                .cloned()
                .collect(),
        }
    }

    /// The ENI with this id.
    pub fn eni(&self, eni_id: &str) -> Option<&NetworkInterface> {
        self.enis.get(eni_id).map(|stored| &stored.eni)
    }

    /// VPCs ordered by id, only those of `account_id` when given.
    pub fn list_vpcs(&self, account_id: Option<&str>) -> Vec<Vpc> {
        self.vpcs
            .values()
            .filter(|vpc| account_id.is_none_or(|a| vpc.account_id == a))
            .cloned()
            .collect()
    }

    /// The VPC with this id.
    pub fn vpc(&self, vpc_id: &str) -> Option<&Vpc> {
        self.vpcs.get(vpc_id)
    }

    /// vSwitches ordered by id, filtered by VPC and account when given.
    pub fn list_vswitches(&self, vpc_id: Option<&str>, account_id: Option<&str>) -> Vec<VSwitch> {
        self.vswitches
            .values()
            .filter(|vs| vpc_id.is_none_or(|v| vs.vpc_id == v))
            .filter(|vs| account_id.is_none_or(|a| vs.account_id == a))
            .cloned()
            .collect()
    }

    /// The vSwitch with this id.
    pub fn vswitch(&self, vswitch_id: &str) -> Option<&VSwitch> {
        self.vswitches.get(vswitch_id)
    }

    pub(super) fn index_eni(&mut self, eni: &NetworkInterface) {
        self.owners_by_mac.insert(eni.mac, eni.eni_id.clone());
        index_insert(&mut self.enis_by_host, eni.host.clone(), &eni.eni_id);
        index_insert(
            &mut self.enis_by_vswitch,
            eni.vswitch_id.clone(),
            &eni.eni_id,
        );
        index_insert(&mut self.enis_by_vpc, eni.vpc_id.clone(), &eni.eni_id);
    }

    pub(super) fn unindex_eni(&mut self, eni: &NetworkInterface) {
        if self.owners_by_mac.get(&eni.mac) == Some(&eni.eni_id) {
            self.owners_by_mac.remove(&eni.mac);
        }
        index_remove(&mut self.enis_by_host, &eni.host, &eni.eni_id);
        index_remove(&mut self.enis_by_vswitch, &eni.vswitch_id, &eni.eni_id);
        index_remove(&mut self.enis_by_vpc, &eni.vpc_id, &eni.eni_id);
    }
}
