//! The stored form of a [`State`]: one JSON record per entity under a textual key (`meta`, `vpc/<id>`,
//! `vsw/<id>`, `eni/<id>`, `fl/<id>`), so that a change writes only the records it touched.
//!
//! # Guarantees
//! - [`State::encode`] of every key of [`State::keys`] and [`State::restore`] of the result round-trip (host
//!   versions aside: a restored state starts every host at the stored version).
//! - [`State::restore`] checks every invariant the state keeps (references, unique MACs, sequences, tokens) and
//!   never panics: bad records are a [`StateError::InconsistentSnapshot`] naming the key.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    FlowLog, FlowLogStatus, NetworkInterface, State, StateError, VSwitch, Vpc, index_insert,
};

/// Format number of the `meta` record.
pub const RECORD_FORMAT: u32 = 2;

/// The key of one stored record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// Region, state id, version, next sequence.
    Meta,
    /// A VPC.
    Vpc(String),
    /// A vSwitch.
    VSwitch(String),
    /// An ENI.
    Eni(String),
    /// A flow log.
    FlowLog(String),
}

impl Key {
    /// Parses the textual form.
    pub fn parse(text: &str) -> Option<Key> {
        if text == "meta" {
            return Some(Key::Meta);
        }
        let (kind, id) = text.split_once('/')?;
        if id.is_empty() {
            return None;
        }
        let id = id.to_owned();
        match kind {
            "vpc" => Some(Key::Vpc(id)),
            "vsw" => Some(Key::VSwitch(id)),
            "eni" => Some(Key::Eni(id)),
            "fl" => Some(Key::FlowLog(id)),
            _ => None,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Meta => f.write_str("meta"),
            Key::Vpc(id) => write!(f, "vpc/{id}"),
            Key::VSwitch(id) => write!(f, "vsw/{id}"),
            Key::Eni(id) => write!(f, "eni/{id}"),
            Key::FlowLog(id) => write!(f, "fl/{id}"),
        }
    }
}

/// An ENI as stored: the ENI and the state version of its last change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoredEni {
    /// The ENI.
    pub eni: NetworkInterface,
    /// State version of its last registration change.
    pub version: u64,
}

/// The `meta` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Meta {
    format: u32,
    region_id: String,
    state_id: String,
    version: u64,
    next_sequence: u64,
}

impl State {
    /// Every key this state has a record under.
    pub fn keys(&self) -> Vec<Key> {
        let mut keys = vec![Key::Meta];
        keys.extend(self.vpcs.keys().cloned().map(Key::Vpc));
        keys.extend(self.vswitches.keys().cloned().map(Key::VSwitch));
        keys.extend(self.enis.keys().cloned().map(Key::Eni));
        keys.extend(self.flow_logs.keys().cloned().map(Key::FlowLog));
        keys
    }

    /// The stored bytes of the record under `key`; `None` when the state has no such record (delete it).
    pub fn encode(&self, key: &Key) -> Option<Vec<u8>> {
        match key {
            Key::Meta => Some(to_json(&Meta {
                format: RECORD_FORMAT,
                region_id: self.region_id.clone(),
                state_id: self.state_id.clone(),
                version: self.version,
                next_sequence: self.next_sequence,
            })),
            Key::Vpc(id) => self.vpcs.get(id).map(to_json),
            Key::VSwitch(id) => self.vswitches.get(id).map(to_json),
            Key::Eni(id) => self.enis.get(id).map(to_json),
            Key::FlowLog(id) => self.flow_logs.get(id).map(to_json),
        }
    }

    /// Rebuilds a state from stored records; `Ok(None)` when there are none at all (a fresh store).
    pub fn restore(
        records: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<Option<State>, StateError> {
        let inconsistent = |reason: String| StateError::InconsistentSnapshot { reason };
        let mut meta = None;
        let mut vpcs = Vec::new();
        let mut vswitches = Vec::new();
        let mut enis = Vec::new();
        let mut flow_logs = Vec::new();
        let mut any = false;
        for (text, bytes) in records {
            any = true;
            let key =
                Key::parse(&text).ok_or_else(|| inconsistent(format!("unknown key {text:?}")))?;
            let bad = |e: serde_json::Error| inconsistent(format!("record {key}: {e}"));
            match &key {
                Key::Meta => meta = Some(serde_json::from_slice::<Meta>(&bytes).map_err(bad)?),
                Key::Vpc(_) => vpcs.push((
                    key.clone(),
                    serde_json::from_slice::<Vpc>(&bytes).map_err(bad)?,
                )),
                Key::VSwitch(_) => vswitches.push((
                    key.clone(),
                    serde_json::from_slice::<VSwitch>(&bytes).map_err(bad)?,
                )),
                Key::Eni(_) => enis.push((
                    key.clone(),
                    serde_json::from_slice::<StoredEni>(&bytes).map_err(bad)?,
                )),
                Key::FlowLog(_) => flow_logs.push((
                    key.clone(),
                    serde_json::from_slice::<FlowLog>(&bytes).map_err(bad)?,
                )),
            }
        }
        if !any {
            return Ok(None);
        }
        let meta = meta.ok_or_else(|| inconsistent("the meta record is missing".into()))?;
        if meta.format != RECORD_FORMAT {
            return Err(inconsistent(format!(
                "format {} is not the supported format {RECORD_FORMAT}",
                meta.format
            )));
        }
        let mut state = State::new(&meta.region_id, &meta.state_id)?;
        state.version = meta.version;
        state.base_host_version = meta.version;
        state.next_sequence = meta.next_sequence;
        for (key, vpc) in vpcs {
            let vpc = Vpc::new(vpc.vpc_id, vpc.account_id, vpc.creation_time)
                .map_err(|e| inconsistent(format!("record {key}: {e}")))?;
            if key != Key::Vpc(vpc.vpc_id.clone()) {
                return Err(inconsistent(format!(
                    "record {key} holds VPC {}",
                    vpc.vpc_id
                )));
            }
            state.vpcs.insert(vpc.vpc_id.clone(), vpc);
        }
        for (key, vswitch) in vswitches {
            let vswitch = VSwitch::new(
                vswitch.vswitch_id,
                vswitch.vpc_id,
                vswitch.account_id,
                vswitch.creation_time,
            )
            .map_err(|e| inconsistent(format!("record {key}: {e}")))?;
            if key != Key::VSwitch(vswitch.vswitch_id.clone()) {
                return Err(inconsistent(format!(
                    "record {key} holds vSwitch {}",
                    vswitch.vswitch_id
                )));
            }
            match state.vpcs.get(&vswitch.vpc_id) {
                Some(vpc) if vpc.account_id == vswitch.account_id => {}
                _ => {
                    return Err(inconsistent(format!(
                        "vSwitch {} names VPC {} of account {}, which does not exist",
                        vswitch.vswitch_id, vswitch.vpc_id, vswitch.account_id
                    )));
                }
            }
            index_insert(
                &mut state.vswitches_by_vpc,
                vswitch.vpc_id.clone(),
                &vswitch.vswitch_id,
            );
            state.vswitches.insert(vswitch.vswitch_id.clone(), vswitch);
        }
        for (key, stored) in enis {
            let eni = NetworkInterface::new(super::NetworkInterfaceInput {
                eni_id: stored.eni.eni_id.clone(),
                mac: stored.eni.mac.to_string(),
                vm_id: stored.eni.vm_id.clone(),
                vswitch_id: stored.eni.vswitch_id.clone(),
                vpc_id: stored.eni.vpc_id.clone(),
                account_id: stored.eni.account_id.clone(),
                host: stored.eni.host.clone(),
            })
            .map_err(|e| inconsistent(format!("record {key}: {e}")))?;
            if key != Key::Eni(eni.eni_id.clone()) {
                return Err(inconsistent(format!("record {key} holds {}", eni.eni_id)));
            }
            match state.vswitches.get(&eni.vswitch_id) {
                Some(vs) if vs.vpc_id == eni.vpc_id && vs.account_id == eni.account_id => {}
                _ => {
                    return Err(inconsistent(format!(
                        "{} names vSwitch {} in VPC {} of account {}, which does not exist",
                        eni.eni_id, eni.vswitch_id, eni.vpc_id, eni.account_id
                    )));
                }
            }
            if let Some(owner) = state.owners_by_mac.get(&eni.mac) {
                return Err(inconsistent(format!(
                    "MAC {} belongs to both {owner} and {}",
                    eni.mac, eni.eni_id
                )));
            }
            if stored.version > meta.version {
                return Err(inconsistent(format!(
                    "{} has version {}, above the state version {}",
                    eni.eni_id, stored.version, meta.version
                )));
            }
            state.index_eni(&eni);
            state.enis.insert(
                eni.eni_id.clone(),
                StoredEni {
                    eni,
                    version: stored.version,
                },
            );
        }
        let mut sequences = BTreeSet::new();
        for (key, flow_log) in flow_logs {
            let id = flow_log.flow_log_id.clone();
            if key != Key::FlowLog(id.clone()) || !id.starts_with("fl-") {
                return Err(inconsistent(format!("record {key} holds flow log {id:?}")));
            }
            if flow_log.sequence >= state.next_sequence || !sequences.insert(flow_log.sequence) {
                return Err(inconsistent(format!(
                    "flow log {id} has sequence {} (duplicate, or not below next-sequence {})",
                    flow_log.sequence, state.next_sequence
                )));
            }
            if (flow_log.status == FlowLogStatus::Deleting) != flow_log.deleting.is_some() {
                return Err(inconsistent(format!(
                    "flow log {id} is {} but {} deletion record",
                    flow_log.status,
                    if flow_log.deleting.is_some() {
                        "has a"
                    } else {
                        "has no"
                    }
                )));
            }
            if flow_log.status != FlowLogStatus::Deleting
                && let Some(token) = &flow_log.client_token
                && state
                    .flow_logs_by_token
                    .contains_key(&(flow_log.account_id.clone(), token.clone()))
            {
                return Err(inconsistent(format!(
                    "client token {token:?} of account {} appears twice",
                    flow_log.account_id
                )));
            }
            state.index_flow_log(&flow_log);
            state.flow_logs.insert(id, flow_log);
        }
        Ok(Some(state))
    }
}

/// The JSON bytes of a stored record.
fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Every stored type is plain data with derived `Serialize` and string map keys: serde_json cannot fail on it,
    // so the empty fallback is unreachable.
    serde_json::to_vec(value).unwrap_or_default()
}
