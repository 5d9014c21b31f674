//! The acknowledgement-driven status steps: Activating -> Active and Deleting -> gone, decided from what each host
//! has acknowledged and whether it is alive (both tracked by the service, passed in as a [`HostView`]).
//!
//! # Guarantees
//! - An Activating flow log becomes Active once every live host with ENIs in its scope has acknowledged a capture
//!   set computed after the flow log started capturing and after each of those ENIs last changed (so the set held
//!   the flow log for every such ENI). Hosts that are not live are not waited for: they get the current set when
//!   they come back.
//! - A Deleting flow log is removed once every live host that held it has acknowledged a set computed after the
//!   deletion (so without it).
//! - [`State::settle`] changes at most `limit` flow logs per call (a store may bound a transaction's size); call it
//!   again while it returns changes.

use std::collections::BTreeSet;

use super::records::Key;
use super::{FlowLogStatus, Mutation, State};

/// What the service knows of the hosts: their acknowledgements and liveness.
pub trait HostView {
    /// The highest capture-set version `host` acknowledged (of the current state id); `None` if none yet.
    fn acked(&self, host: &str) -> Option<u64>;
    /// Whether `host` counts as alive: watching now, or recently enough.
    fn is_live(&self, host: &str) -> bool;
}

impl State {
    /// Applies every status step the hosts' acknowledgements allow, at most `limit` of them.
    pub fn settle(&mut self, hosts: &dyn HostView, limit: usize) -> Mutation {
        let has_applied = |host: &str, needed: u64| {
            !hosts.is_live(host) || hosts.acked(host).is_some_and(|acked| acked >= needed)
        };
        let mut activated = Vec::new();
        let mut gone = Vec::new();
        for flow_log in self.flow_logs.values() {
            if activated.len() + gone.len() >= limit {
                break;
            }
            match flow_log.status {
                FlowLogStatus::Activating => {
                    let applied = self
                        .enis_in_scope(flow_log.resource_type, &flow_log.resource_id)
                        .into_iter()
                        .all(|stored| {
                            has_applied(
                                &stored.eni.host,
                                flow_log.activated_version.max(stored.version),
                            )
                        });
                    if applied {
                        activated.push(flow_log.flow_log_id.clone());
                    }
                }
                FlowLogStatus::Deleting => {
                    let applied = flow_log.deleting.as_ref().is_none_or(|deleting| {
                        deleting
                            .hosts
                            .iter()
                            .all(|host| has_applied(host, deleting.since))
                    });
                    if applied {
                        gone.push(flow_log.flow_log_id.clone());
                    }
                }
                FlowLogStatus::Active | FlowLogStatus::Inactive => {}
            }
        }
        if activated.is_empty() && gone.is_empty() {
            return Mutation::default();
        }
        let mut mutation = Mutation::default();
        if !activated.is_empty() {
            let keys: BTreeSet<Key> = activated.iter().cloned().map(Key::FlowLog).collect();
            mutation.merge(self.apply(BTreeSet::new(), keys, |state| {
                for id in &activated {
                    if let Some(flow_log) = state.flow_logs.get_mut(id) {
                        flow_log.status = FlowLogStatus::Active;
                    }
                }
            }));
        }
        for id in gone {
            mutation.merge(self.remove_flow_log(&id));
        }
        mutation
    }

    /// Whether some flow log waits for acknowledgements (Activating or Deleting).
    pub fn has_pending(&self) -> bool {
        self.flow_logs.values().any(|fl| {
            matches!(
                fl.status,
                FlowLogStatus::Activating | FlowLogStatus::Deleting
            )
        })
    }
}
