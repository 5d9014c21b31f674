//! The capture state the exporter owns: which ENIs the workers attribute frames to (an `Arc<EniTable>` snapshot
//! per change) and where each ENI's records go (its routes, one per flow log covering it).
//!
//! Three sources feed it: a static ENI file (replay, tests), the control plane's capture sets (a full snapshot per
//! change), and the C ABI's register/remove calls (a host vSwitch that manages ENIs itself). Every change builds
//! a new table of the same lineage, so an ENI keeps its slot and a removed ENI stays resolvable as a tombstone for
//! the windows that still refer to it; its routes are kept as long as its tombstone.

use std::collections::HashMap;
use std::sync::Arc;

use flowlog_dataplane::flow::{Action, Eni, EniTable, EniTableError, MacAddr};
use flowlog_proto::v1 as proto;

/// Errors applying a capture change.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The ENI table refused the change (duplicate id or MAC, unknown ENI).
    #[error(transparent)]
    Table(#[from] EniTableError),
}

/// Which records of an ENI a destination takes (a flow log's TrafficType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficFilter {
    /// Every record.
    All,
    /// ACCEPT records (and NODATA / SKIPDATA, which carry no action).
    Allow,
    /// REJECT records (and NODATA / SKIPDATA).
    Drop,
}

impl TrafficFilter {
    /// Whether a record with this action goes to the destination; records without an action always do.
    pub fn admits(self, action: Option<Action>) -> bool {
        match (self, action) {
            (TrafficFilter::All, _) | (_, None) => true,
            (TrafficFilter::Allow, Some(a)) => a == Action::Accept,
            (TrafficFilter::Drop, Some(a)) => a == Action::Reject,
        }
    }
}

/// One destination of an ENI's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination project.
    pub project: Arc<str>,
    /// Destination logstore.
    pub logstore: Arc<str>,
    /// Which records it takes.
    pub filter: TrafficFilter,
    /// The flow log's aggregation interval in seconds; 0 = the workers' own interval.
    pub interval_secs: u32,
}

/// ENIs to capture and their routes.
#[derive(Debug)]
pub struct CaptureState {
    table: Arc<EniTable>,
    routes: HashMap<Arc<str>, Vec<Route>>,
    default_route: Option<Route>,
    version: u64,
    skipped_enis: u64,
}

impl CaptureState {
    /// A fixed set of ENIs; every one routed to `destination` when given.
    pub fn fixed(
        enis: Vec<Eni>,
        destination: Option<(String, String)>,
    ) -> Result<Self, CaptureError> {
        let default_route = destination.map(|(project, logstore)| Route {
            project: project.into(),
            logstore: logstore.into(),
            filter: TrafficFilter::All,
            interval_secs: 0,
        });
        let routes = enis
            .iter()
            .map(|e| (e.id.clone(), default_route.iter().cloned().collect()))
            .collect();
        Ok(Self {
            table: Arc::new(EniTable::from_enis(enis)?),
            routes,
            default_route,
            version: 0,
            skipped_enis: 0,
        })
    }

    /// The current table, to hand to the workers.
    pub fn table(&self) -> &Arc<EniTable> {
        &self.table
    }

    /// The routes of an ENI (also of a removed one, while its tombstone lasts).
    pub fn routes(&self, eni_id: &str) -> &[Route] {
        self.routes.get(eni_id).map_or(&[], Vec::as_slice)
    }

    /// Version of the last control-plane capture set applied (0 before any).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// ENIs of capture sets that were refused (bad MAC, duplicate), over the life of the state.
    pub fn skipped_enis(&self) -> u64 {
        self.skipped_enis
    }

    /// Applies a control-plane capture set: exactly its ENIs are captured afterwards, with its destinations.
    /// Returns whether anything changed. ENIs with a bad MAC or a MAC already taken are skipped and logged.
    pub fn apply_capture_set(
        &mut self,
        set: &proto::CaptureSet,
        now_secs: u64,
    ) -> Result<bool, CaptureError> {
        let mut enis = Vec::with_capacity(set.interfaces.len());
        let mut routes = HashMap::with_capacity(set.interfaces.len());
        let mut seen_macs = std::collections::HashSet::new();
        for captured in &set.interfaces {
            let Some(ni) = &captured.network_interface else {
                self.skipped_enis += 1;
                continue;
            };
            let Ok(mac) = ni.mac.parse::<MacAddr>() else {
                tracing::warn!(eni = %ni.eni_id, mac = %ni.mac, "capture set: bad MAC; ENI not captured");
                self.skipped_enis += 1;
                continue;
            };
            if !seen_macs.insert(mac) || routes.contains_key(ni.eni_id.as_str()) {
                tracing::warn!(eni = %ni.eni_id, %mac, "capture set: duplicate ENI or MAC; ENI not captured");
                self.skipped_enis += 1;
                continue;
            }
            let eni = Eni::new(
                ni.eni_id.as_str(),
                mac,
                ni.vm_id.as_str(),
                ni.vswitch_id.as_str(),
                ni.vpc_id.as_str(),
                ni.account_id.as_str(),
            );
            let eni_routes: Vec<Route> = captured.destinations.iter().map(route_of).collect();
            routes.insert(eni.id.clone(), eni_routes);
            enis.push(eni);
        }
        self.version = set.version;
        let mut builder = self.table.to_builder();
        builder.sync(enis, now_secs)?;
        let table = builder.build();
        let changed = !same_enis(&table, &self.table) || !same_routes(&routes, &self.routes);
        // Keep the routes of ENIs that just left, so their last records still reach their logstores.
        for (id, old) in self.routes.drain() {
            routes.entry(id).or_insert(old);
        }
        self.routes = routes;
        self.table = Arc::new(table);
        Ok(changed)
    }

    /// Adds (or replaces) one ENI, routed to the default destination (C ABI).
    pub fn add_eni(&mut self, eni: Eni, now_secs: u64) -> Result<(), CaptureError> {
        let mut builder = self.table.to_builder();
        if self
            .table
            .slot_of(&eni.id)
            .is_some_and(|slot| self.table.is_captured(slot))
        {
            builder.remove(&eni.id, now_secs)?;
        }
        let id = eni.id.clone();
        builder.insert(eni)?;
        self.table = Arc::new(builder.build());
        self.routes
            .insert(id, self.default_route.iter().cloned().collect());
        Ok(())
    }

    /// Stops capturing one ENI (C ABI); its routes stay for its last records.
    pub fn remove_eni(&mut self, eni_id: &str, now_secs: u64) -> Result<(), CaptureError> {
        let mut builder = self.table.to_builder();
        builder.remove(eni_id, now_secs)?;
        self.table = Arc::new(builder.build());
        Ok(())
    }

    /// Frees the slots (and routes) of ENIs removed before `removed_before_secs`, once no window still being
    /// merged can refer to them. Returns how many were freed.
    pub fn reclaim(&mut self, removed_before_secs: u64) -> usize {
        let mut builder = self.table.to_builder();
        let freed = builder.reclaim(removed_before_secs);
        if freed > 0 {
            let table = builder.build();
            self.routes.retain(|id, _| table.slot_of(id).is_some());
            self.table = Arc::new(table);
        }
        freed
    }
}

fn route_of(d: &proto::Destination) -> Route {
    Route {
        project: d.project.as_str().into(),
        logstore: d.logstore.as_str().into(),
        filter: match proto::TrafficType::try_from(d.traffic_type) {
            Ok(proto::TrafficType::Allow) => TrafficFilter::Allow,
            Ok(proto::TrafficType::Drop) => TrafficFilter::Drop,
            _ => TrafficFilter::All,
        },
        interval_secs: d.interval_seconds,
    }
}

fn same_enis(a: &EniTable, b: &EniTable) -> bool {
    a.len() == b.len()
        && a.captured().all(|(_, e)| {
            b.slot_of(&e.id)
                .filter(|&slot| b.is_captured(slot))
                .and_then(|slot| b.eni(slot))
                == Some(e)
        })
}

fn same_routes(a: &HashMap<Arc<str>, Vec<Route>>, b: &HashMap<Arc<str>, Vec<Route>>) -> bool {
    a.iter().all(|(id, r)| b.get(id) == Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(
        id: &str,
        mac: &str,
        vpc: &str,
        destinations: &[(&str, &str, proto::TrafficType, u32)],
    ) -> proto::CapturedInterface {
        proto::CapturedInterface {
            network_interface: Some(proto::NetworkInterface {
                eni_id: id.into(),
                mac: mac.into(),
                vm_id: format!("i-{id}"),
                vswitch_id: "vsw-1".into(),
                vpc_id: vpc.into(),
                account_id: "1".into(),
                host: "h".into(),
            }),
            destinations: destinations
                .iter()
                .map(
                    |(project, logstore, traffic, interval)| proto::Destination {
                        flow_log_id: format!("fl-{logstore}"),
                        project: (*project).into(),
                        logstore: (*logstore).into(),
                        traffic_type: *traffic as i32,
                        interval_seconds: *interval,
                    },
                )
                .collect(),
        }
    }

    fn set(version: u64, interfaces: Vec<proto::CapturedInterface>) -> proto::CaptureSet {
        proto::CaptureSet {
            version,
            region_id: "r".into(),
            interfaces,
            state_id: "s".into(),
        }
    }

    #[test]
    fn capture_sets_replace_the_enis_keep_slots_and_route_by_flow_log() {
        let mut state = CaptureState::fixed(Vec::new(), None).unwrap();
        let all = proto::TrafficType::All;
        let first = set(
            1,
            vec![
                interface(
                    "eni-a",
                    "02:00:00:00:00:0a",
                    "vpc-1",
                    &[("p", "vpc", all, 60)],
                ),
                interface(
                    "eni-b",
                    "02:00:00:00:00:0b",
                    "vpc-1",
                    &[
                        ("p", "vpc", all, 60),
                        ("q", "drops", proto::TrafficType::Drop, 600),
                    ],
                ),
            ],
        );
        assert!(state.apply_capture_set(&first, 100).unwrap());
        let table = state.table().clone();
        let slot_b = table.slot_of("eni-b").unwrap();
        assert_eq!(
            table.lookup("02:00:00:00:00:0b".parse().unwrap()),
            Some(slot_b)
        );
        assert_eq!(state.routes("eni-b").len(), 2);
        assert_eq!(state.routes("eni-b")[1].filter, TrafficFilter::Drop);
        assert_eq!(state.routes("eni-b")[1].interval_secs, 600);
        assert!(
            !state
                .apply_capture_set(&set(2, first.interfaces.clone()), 101)
                .unwrap(),
            "nothing changed"
        );

        // eni-a leaves, eni-c arrives: eni-b keeps its slot, eni-a's routes stay for its last records.
        let second = set(
            3,
            vec![
                interface(
                    "eni-b",
                    "02:00:00:00:00:0b",
                    "vpc-1",
                    &[("p", "vpc", all, 60)],
                ),
                interface(
                    "eni-c",
                    "02:00:00:00:00:0c",
                    "vpc-1",
                    &[("p", "vpc", all, 60)],
                ),
            ],
        );
        assert!(state.apply_capture_set(&second, 200).unwrap());
        let table = state.table();
        assert_eq!(table.slot_of("eni-b"), Some(slot_b));
        assert!(!table.is_captured(table.slot_of("eni-a").unwrap()));
        assert_eq!(table.lookup("02:00:00:00:00:0a".parse().unwrap()), None);
        assert_eq!(state.routes("eni-a").len(), 1);
        assert_eq!(
            state.routes("eni-b").len(),
            1,
            "the Drop flow log no longer covers eni-b"
        );
        assert_eq!(state.version(), 3);

        // Once no window can refer to eni-a any more, its slot and routes go.
        assert_eq!(state.reclaim(201), 1);
        assert!(state.routes("eni-a").is_empty());
        assert_eq!(state.table().slot_of("eni-a"), None);
    }

    #[test]
    fn bad_interfaces_are_skipped_and_counted() {
        let mut state = CaptureState::fixed(Vec::new(), None).unwrap();
        let all = proto::TrafficType::All;
        let bad = set(
            1,
            vec![
                interface("eni-a", "not-a-mac", "v", &[("p", "l", all, 60)]),
                interface("eni-b", "02:00:00:00:00:0b", "v", &[("p", "l", all, 60)]),
                interface("eni-c", "02:00:00:00:00:0b", "v", &[("p", "l", all, 60)]),
                interface("eni-b", "02:00:00:00:00:0d", "v", &[("p", "l", all, 60)]),
                proto::CapturedInterface::default(),
            ],
        );
        state.apply_capture_set(&bad, 1).unwrap();
        assert_eq!(state.table().len(), 1);
        assert_eq!(state.skipped_enis(), 4);
    }

    #[test]
    fn manual_enis_use_the_default_route_and_filters_admit_by_action() {
        let eni = Eni::new(
            "eni-m",
            "02:00:00:00:00:01".parse().unwrap(),
            "i",
            "s",
            "v",
            "a",
        );
        let mut state = CaptureState::fixed(Vec::new(), Some(("p".into(), "l".into()))).unwrap();
        state.add_eni(eni.clone(), 5).unwrap();
        assert_eq!(&*state.routes("eni-m")[0].logstore, "l");
        // Re-adding replaces; removing an unknown ENI is an error.
        state.add_eni(eni, 6).unwrap();
        assert!(state.remove_eni("eni-x", 7).is_err());
        state.remove_eni("eni-m", 7).unwrap();
        assert!(state.table().is_empty());

        assert!(TrafficFilter::All.admits(Some(Action::Reject)));
        assert!(
            TrafficFilter::Allow.admits(Some(Action::Accept))
                && !TrafficFilter::Allow.admits(Some(Action::Reject))
        );
        assert!(
            TrafficFilter::Drop.admits(Some(Action::Reject))
                && !TrafficFilter::Drop.admits(Some(Action::Accept))
        );
        assert!(
            TrafficFilter::Drop.admits(None),
            "NODATA and SKIPDATA reach every destination"
        );
    }
}
