//! One serving term of the controller: the published state, the single writer that applies, persists and
//! publishes changes in groups, the hosts' acknowledgements and liveness, and the capture-set watches.
//!
//! A single controller has one term for its whole life. A replica on etcd starts a term each time it is elected
//! and ends it when it loses its lease or finds its writes fenced ([`crate::ha`]).
//!
//! # Design
//! Readers take the current `Arc<State>` (a lock held only to clone the `Arc`) and never wait on the store. Every
//! change goes to one writer task as a job. The writer takes every queued job (group commit), applies them in order
//! to an O(1) copy of the state (a refused job changes nothing and gets its error at once), lets the flow-log
//! statuses settle from the hosts' acknowledgements, writes the touched records in one store transaction, and
//! only then publishes the new state and wakes the watchers. Watchers send a host's full capture set when its
//! version changed; one that is slow skips intermediate versions instead of holding anyone up.
//!
//! # Guarantees
//! - A change is acknowledged to its caller only after it is durable; a failed commit leaves the published state
//!   unchanged and fails every job of the group with [`CoreError::Store`].
//! - A watch never sends a state that is not durable.
//! - Hosts are live while they watch and for `host_timeout` after their last watch ended (at the start of a term,
//!   every host gets `host_timeout` to reconnect). Only live hosts hold up Activating and Deleting flow logs.
//! - Once the term ends (store fenced, lease lost, shutdown), every job fails with [`CoreError::Ended`] and every
//!   watch stream ends.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::state::{CaptureSet, HostView, Mutation, State, StateError};
use crate::store::{Batch, Store, StoreError};

/// Jobs the writer takes in one group at most.
const MAX_GROUP: usize = 512;
/// How often the writer re-checks pending statuses when nothing else happens (host timeouts).
const SETTLE_PERIOD: Duration = Duration::from_millis(500);

/// An error of a change.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request was refused by the rules.
    #[error(transparent)]
    State(#[from] StateError),
    /// The store failed; nothing changed.
    #[error("persisting the state failed: {0}")]
    Store(StoreError),
    /// The term ended (this replica is no longer the leader, or the server is stopping); nothing changed.
    #[error("this replica stopped serving")]
    Ended,
}

/// Tuning of a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreConfig {
    /// How long a host that stopped watching still counts as alive.
    pub host_timeout: Duration,
}

type Reply = Box<dyn FnOnce(Result<(), CoreError>) + Send>;
type Job = Box<dyn FnOnce(&mut State) -> Option<(Mutation, Reply)> + Send>;

/// One serving term.
pub struct Core {
    current: RwLock<Arc<State>>,
    jobs: mpsc::UnboundedSender<Job>,
    versions: watch::Sender<u64>,
    hosts: Mutex<HostTracker>,
    settle: Notify,
    ended: watch::Sender<bool>,
}

impl Core {
    /// Starts a term over `state`, persisting to `store`; the writer runs on the current tokio runtime until
    /// [`Core::end`] (or a fenced commit).
    pub fn start(state: State, store: Store, config: CoreConfig) -> Arc<Core> {
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        let (versions, _) = watch::channel(state.version());
        let (ended, _) = watch::channel(false);
        let core = Arc::new(Core {
            current: RwLock::new(Arc::new(state)),
            jobs,
            versions,
            hosts: Mutex::new(HostTracker::new(config.host_timeout)),
            settle: Notify::new(),
            ended,
        });
        tokio::spawn(writer(core.clone(), store, jobs_rx));
        core
    }

    /// The current (durable) state.
    pub fn state(&self) -> Arc<State> {
        self.current.read().clone()
    }

    /// Ends the term: pending and later jobs fail with [`CoreError::Ended`], watch streams end.
    pub fn end(&self) {
        self.ended.send_replace(true);
    }

    /// Whether the term has ended.
    pub fn has_ended(&self) -> bool {
        *self.ended.borrow()
    }

    /// Resolves once the term has ended.
    pub async fn ended(&self) {
        let mut ended = self.ended.subscribe();
        // An error means the sender is gone, which only happens when the core itself is dropped.
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// Applies `change` to the state, persists and publishes the result; returns `change`'s value once durable.
    pub async fn mutate<T, F>(&self, change: F) -> Result<T, CoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut State) -> Result<(T, Mutation), StateError> + Send + 'static,
    {
        if self.has_ended() {
            return Err(CoreError::Ended);
        }
        let (reply_tx, reply_rx) = oneshot::channel::<Result<T, CoreError>>();
        let job: Job = Box::new(move |state: &mut State| match change(state) {
            Ok((value, mutation)) => {
                let reply: Reply = Box::new(move |result: Result<(), CoreError>| {
                    // The caller may have gone away (client hung up): nobody to tell then.
                    let _ = reply_tx.send(result.map(|()| value));
                });
                Some((mutation, reply))
            }
            Err(error) => {
                let _ = reply_tx.send(Err(CoreError::State(error)));
                None
            }
        });
        self.jobs.send(job).map_err(|_| CoreError::Ended)?;
        reply_rx.await.map_err(|_| CoreError::Ended)?
    }

    /// Records that `host` applied capture set `version` of `state_id`. Returns false (and records nothing) when
    /// `state_id` is not the current state's; refuses a version the host was never sent.
    pub fn acknowledge(
        &self,
        host: &str,
        state_id: &str,
        version: u64,
    ) -> Result<bool, StateError> {
        let state = self.state();
        if state_id != state.state_id() {
            return Ok(false);
        }
        let current = state.host_version(host);
        if version > current {
            return Err(StateError::FutureVersion {
                host: host.to_owned(),
                acked: version,
                current,
            });
        }
        self.hosts.lock().acknowledge(host, version);
        self.settle.notify_one();
        Ok(true)
    }

    /// Opens a capture-set watch for `host`. It first yields the current set, unless `known` (state id, version)
    /// is already the host's current one; then one set per change of the host's set; `None` once the term ends.
    pub fn watch(self: &Arc<Self>, host: String, known: Option<(String, u64)>) -> CaptureSetWatch {
        let state = self.state();
        let last_sent = known
            .filter(|(state_id, version)| {
                state_id == state.state_id() && *version == state.host_version(&host)
            })
            .map(|(_, version)| version);
        self.hosts.lock().stream_opened(&host);
        CaptureSetWatch {
            versions: self.versions.subscribe(),
            ended: self.ended.subscribe(),
            core: self.clone(),
            host,
            last_sent,
        }
    }

    fn stream_closed(&self, host: &str) {
        self.hosts.lock().stream_closed(host);
        self.settle.notify_one();
    }
}

/// A host's capture-set watch (see [`Core::watch`]).
pub struct CaptureSetWatch {
    core: Arc<Core>,
    versions: watch::Receiver<u64>,
    ended: watch::Receiver<bool>,
    host: String,
    last_sent: Option<u64>,
}

impl CaptureSetWatch {
    /// The host's next capture set; `None` once the term has ended.
    pub async fn next(&mut self) -> Option<CaptureSet> {
        loop {
            if *self.ended.borrow() {
                return None;
            }
            // Mark the current version seen before reading the state: a change published after this line wakes
            // `changed()` below, so none is missed.
            self.versions.borrow_and_update();
            let state = self.core.state();
            let version = state.host_version(&self.host);
            if self.last_sent != Some(version) {
                self.last_sent = Some(version);
                return Some(state.capture_set(&self.host));
            }
            tokio::select! {
                changed = self.versions.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                changed = self.ended.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}

impl Drop for CaptureSetWatch {
    fn drop(&mut self) {
        self.core.stream_closed(&self.host);
    }
}

/// The writer: group commit of jobs and status settling, until the term ends.
async fn writer(core: Arc<Core>, store: Store, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut ended = core.ended.subscribe();
    let mut tick = tokio::time::interval(SETTLE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_keys = store.max_batch_keys();
    // Jobs taken from the channel but not yet applied (the key budget of a group ran out), in arrival order.
    let mut backlog: VecDeque<Job> = VecDeque::new();
    loop {
        if backlog.is_empty() {
            tokio::select! {
                biased;
                _ = ended.wait_for(|ended| *ended) => break,
                job = jobs.recv() => match job {
                    Some(job) => backlog.push_back(job),
                    None => break,
                },
                () = core.settle.notified() => {}
                _ = tick.tick() => {}
            }
        }
        if *ended.borrow() {
            break;
        }
        while backlog.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => backlog.push_back(job),
                Err(_) => break,
            }
        }

        let base = core.state();
        let mut working = State::clone(&base);
        let mut mutation = Mutation::default();
        let mut replies: Vec<Reply> = Vec::new();
        // Every job touches at most four records (an ENI, its vSwitch, its VPC, the meta record).
        while mutation.keys.len() + 4 <= max_keys {
            let Some(job) = backlog.pop_front() else {
                break;
            };
            if let Some((change, reply)) = job(&mut working) {
                mutation.merge(change);
                replies.push(reply);
            }
        }
        if working.has_pending() {
            let budget = max_keys.saturating_sub(mutation.keys.len() + 1);
            if budget > 0 {
                let settled = {
                    let hosts = core.hosts.lock();
                    working.settle(&hosts.view(Instant::now()), budget)
                };
                if settled.changed() {
                    tracing::debug!(keys = settled.keys.len(), "flow-log statuses settled");
                }
                mutation.merge(settled);
            }
        }
        if !mutation.changed() {
            for reply in replies {
                reply(Ok(()));
            }
            continue;
        }
        let mut batch = Batch::default();
        for key in &mutation.keys {
            match working.encode(key) {
                Some(value) => batch.puts.push((key.to_string(), value)),
                None => batch.deletes.push(key.to_string()),
            }
        }
        match store.commit(batch).await {
            Ok(()) => {
                let version = working.version();
                *core.current.write() = Arc::new(working);
                core.versions.send_replace(version);
                if !mutation.hosts.is_empty() {
                    tracing::debug!(
                        version,
                        hosts = mutation.hosts.len(),
                        "capture sets changed"
                    );
                }
                for reply in replies {
                    reply(Ok(()));
                }
            }
            Err(StoreError::Fenced) => {
                tracing::warn!("the store refused a write: this replica is no longer the leader");
                for reply in replies {
                    reply(Err(CoreError::Ended));
                }
                core.end();
                break;
            }
            Err(error) => {
                tracing::error!(%error, "could not persist the state; the changes were dropped");
                let message = error.to_string();
                for reply in replies {
                    reply(Err(CoreError::Store(StoreError::Task(message.clone()))));
                }
            }
        }
    }
    // Whatever is still queued fails with `Ended`: dropping a job drops its reply channel.
    jobs.close();
    drop(backlog);
    while let Ok(job) = jobs.try_recv() {
        drop(job);
    }
}

/// Acknowledgements and liveness of the hosts, for one term.
struct HostTracker {
    started: Instant,
    timeout: Duration,
    hosts: HashMap<String, HostEntry>,
}

struct HostEntry {
    acked: Option<u64>,
    streams: usize,
    last_seen: Instant,
}

impl HostTracker {
    fn new(timeout: Duration) -> Self {
        HostTracker {
            started: Instant::now(),
            timeout,
            hosts: HashMap::new(),
        }
    }

    fn entry(&mut self, host: &str) -> &mut HostEntry {
        self.hosts
            .entry(host.to_owned())
            .or_insert_with(|| HostEntry {
                acked: None,
                streams: 0,
                last_seen: Instant::now(),
            })
    }

    fn acknowledge(&mut self, host: &str, version: u64) {
        let entry = self.entry(host);
        entry.acked = Some(entry.acked.map_or(version, |acked| acked.max(version)));
        entry.last_seen = Instant::now();
    }

    fn acked(&self, host: &str) -> Option<u64> {
        self.hosts.get(host).and_then(|entry| entry.acked)
    }

    fn stream_opened(&mut self, host: &str) {
        let entry = self.entry(host);
        entry.streams += 1;
        entry.last_seen = Instant::now();
    }

    fn stream_closed(&mut self, host: &str) {
        let entry = self.entry(host);
        entry.streams = entry.streams.saturating_sub(1);
        entry.last_seen = Instant::now();
    }

    fn view(&self, now: Instant) -> TrackerView<'_> {
        TrackerView { tracker: self, now }
    }
}

/// The tracker at one instant, as the state's rules see it.
struct TrackerView<'a> {
    tracker: &'a HostTracker,
    now: Instant,
}

impl HostView for TrackerView<'_> {
    fn acked(&self, host: &str) -> Option<u64> {
        self.tracker.acked(host)
    }

    fn is_live(&self, host: &str) -> bool {
        let recent =
            |since: Instant| self.now.saturating_duration_since(since) < self.tracker.timeout;
        match self.tracker.hosts.get(host) {
            Some(entry) => entry.streams > 0 || recent(entry.last_seen),
            None => recent(self.tracker.started),
        }
    }
}
