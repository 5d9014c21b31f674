//! Several controller replicas over one etcd cluster: each campaigns for leadership with a lease; the elected one
//! loads the state from etcd and serves, the others answer `NotLeader` until they are elected.
//!
//! # Design
//! A replica grants itself a lease of `lease_ttl` and keeps it alive (every third of the TTL), then campaigns on
//! the election `<prefix>leader` with its advertised address as the value. Once elected it loads every record under
//! `<prefix>records/`, starts a serving term ([`Core`]) whose store fences each write on its leader key, and
//! installs it in the service. The term ends when the lease may have expired (no successful keep-alive for a TTL,
//! counted from the request that last succeeded), when a write is fenced (another replica was elected), or at
//! shutdown; the replica then stops serving and campaigns again.
//!
//! # Guarantees
//! - At most one replica writes at a time (etcd's election plus the fenced transactions). A deposed replica may
//!   answer reads for at most one lease TTL before it notices; it never writes.
//! - When the serving replica dies (kill -9), its lease expires after at most `lease_ttl` and a standby replica is
//!   elected, loads the state and serves: fail-over takes about `lease_ttl` plus the load.
//! - At shutdown a leader resigns (revokes its lease), so a standby takes over at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use tokio::sync::watch;

use crate::core::{Core, CoreConfig};
use crate::service::{ControlService, random_id};
use crate::state::{State, StateError};
use crate::store::etcd::EtcdStore;
use crate::store::{Batch, Store, StoreError};

/// Bound on a single etcd call that must not hang (lease grant).
const ETCD_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How a replica reaches etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix of this controller's data (records and election), e.g. `/flowlog/cn-hangzhou/`.
    pub prefix: String,
    /// Lease TTL in seconds: how long a dead leader holds on to leadership.
    pub lease_ttl: i64,
    /// The address clients reach this replica at (the election's value, for operators).
    pub advertise: String,
}

/// A fatal error of a replica: serving cannot go on with this configuration.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// The stored state belongs to another region or breaks an invariant.
    #[error("the state stored in etcd under {prefix} cannot be served: {source}")]
    State {
        /// The key prefix.
        prefix: String,
        /// What is wrong.
        source: LoadFailure,
    },
}

/// Why a term ended or could not start (not fatal: the replica campaigns again).
#[derive(Debug, thiserror::Error)]
enum TermError {
    #[error("{0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the lease expired or could not be kept alive")]
    LeaseLost,
    #[error("the campaign returned no leader key")]
    NoLeaderKey,
}

/// Runs the replica until `shutdown`: campaign, serve while elected, stand by otherwise.
pub async fn run(
    config: EtcdConfig,
    region_id: String,
    service: ControlService,
    core_config: CoreConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), HaError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        match term(&config, &region_id, &service, core_config, &mut shutdown).await {
            Ok(()) => return Ok(()),
            Err(TermFailure::Fatal(error)) => return Err(error),
            Err(TermFailure::Retry(error)) => {
                tracing::warn!(%error, ?backoff, "not serving; campaigning again");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

enum TermFailure {
    Fatal(HaError),
    Retry(TermError),
}

impl<E: Into<TermError>> From<E> for TermFailure {
    fn from(error: E) -> Self {
        TermFailure::Retry(error.into())
    }
}

/// One attempt: connect, lease, campaign, serve until the term ends. `Ok` only at shutdown.
async fn term(
    config: &EtcdConfig,
    region_id: &str,
    service: &ControlService,
    core_config: CoreConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), TermFailure> {
    let ttl = config.lease_ttl.max(1);
    // No per-request timeout on the client: the campaign blocks for as long as another replica leads. Calls that
    // must not hang are bounded where they are made (keep-alives here, commits and loads in the store).
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
    let client = Client::connect(&config.endpoints, Some(options)).await?;
    let lease = tokio::time::timeout(ETCD_CALL_TIMEOUT, client.lease_client().grant(ttl, None))
        .await
        .map_err(|_| TermError::Store(StoreError::Timeout))??
        .id();
    let (lost_tx, mut lost) = watch::channel(false);
    let keeper = tokio::spawn(keep_alive(client.clone(), lease, ttl, lost_tx));
    let result = serve_term(
        config,
        region_id,
        service,
        core_config,
        shutdown,
        &client,
        lease,
        &mut lost,
    )
    .await;
    keeper.abort();
    service.retire();
    // Give the lease back so that a standby takes over at once (best effort: it expires by itself otherwise).
    if let Err(error) = client.lease_client().revoke(lease).await {
        tracing::debug!(%error, "could not revoke the lease");
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn serve_term(
    config: &EtcdConfig,
    region_id: &str,
    service: &ControlService,
    core_config: CoreConfig,
    shutdown: &mut watch::Receiver<bool>,
    client: &Client,
    lease: i64,
    lost: &mut watch::Receiver<bool>,
) -> Result<(), TermFailure> {
    let election = format!("{}leader", config.prefix);
    tracing::info!(%election, advertise = %config.advertise, "campaigning for leadership");
    let mut elections = client.election_client();
    let campaign = elections.campaign(election.clone(), config.advertise.clone(), lease);
    let response = tokio::select! {
        response = campaign => response?,
        _ = lost.wait_for(|lost| *lost) => return Err(TermError::LeaseLost.into()),
        _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
    };
    let leader = response.leader().ok_or(TermError::NoLeaderKey)?;
    let fence = (leader.key().to_vec(), leader.rev());
    let store = Store::Etcd(Box::new(EtcdStore::new(
        client.clone(),
        &config.prefix,
        fence,
    )));
    let state = load_or_create(&store, region_id)
        .await
        .map_err(|failure| match failure {
            LoadFailure::Store(error) => TermFailure::Retry(error.into()),
            source => TermFailure::Fatal(HaError::State {
                prefix: config.prefix.clone(),
                source,
            }),
        })?;
    tracing::info!(
        version = state.version(),
        state_id = state.state_id(),
        "elected: serving"
    );
    let core = Core::start(state, store, core_config);
    service.install(core.clone());
    let ended: Arc<Core> = core.clone();
    tokio::select! {
        () = ended.ended() => {
            tracing::warn!("stepping down: a write was fenced (another replica is the leader)");
            Err(TermError::Store(StoreError::Fenced).into())
        }
        _ = lost.wait_for(|lost| *lost) => {
            tracing::warn!("stepping down: the lease may have expired");
            core.end();
            Err(TermError::LeaseLost.into())
        }
        _ = shutdown.wait_for(|stop| *stop) => {
            core.end();
            Ok(())
        }
    }
}

/// Keeps the lease alive; sets `lost` once a TTL has passed since the send time of the last keep-alive that
/// succeeded (the server's expiry is at least that late), or when etcd says the lease is gone.
async fn keep_alive(client: Client, lease: i64, ttl: i64, lost: watch::Sender<bool>) {
    let ttl = Duration::from_secs(ttl as u64);
    let period = (ttl / 3).max(Duration::from_millis(300));
    let mut valid_until = Instant::now() + ttl;
    let mut stream = None;
    loop {
        if Instant::now() >= valid_until {
            lost.send_replace(true);
            return;
        }
        let sent = Instant::now();
        if stream.is_none() {
            match client.lease_client().keep_alive(lease).await {
                Ok(pair) => stream = Some(pair),
                Err(error) => tracing::warn!(%error, "lease keep-alive stream failed"),
            }
        }
        if let Some((keeper, responses)) = &mut stream {
            let renewed = tokio::time::timeout(period, async {
                keeper.keep_alive().await?;
                responses.message().await
            })
            .await;
            match renewed {
                Ok(Ok(Some(response))) if response.ttl() > 0 => valid_until = sent + ttl,
                Ok(Ok(Some(_))) => {
                    tracing::warn!("etcd says the lease has expired");
                    lost.send_replace(true);
                    return;
                }
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    tracing::warn!("lease keep-alive failed; reconnecting the stream");
                    stream = None;
                }
            }
        }
        let next = sent + period;
        tokio::time::sleep_until(next.into()).await;
    }
}

/// Why the state could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    /// The store failed (worth retrying).
    #[error(transparent)]
    Store(StoreError),
    /// The stored records are inconsistent.
    #[error(transparent)]
    State(StateError),
    /// The stored state belongs to another region.
    #[error("the stored state belongs to region {stored}, but this controller serves {configured}")]
    WrongRegion {
        /// The stored region.
        stored: String,
        /// The region served.
        configured: String,
    },
}

/// The stored state, or a fresh one (stored at once) when the store is empty. Refuses a state of another region.
pub async fn load_or_create(store: &Store, region_id: &str) -> Result<State, LoadFailure> {
    let records = store.load().await.map_err(LoadFailure::Store)?;
    match State::restore(records).map_err(LoadFailure::State)? {
        Some(state) if state.region_id() == region_id => Ok(state),
        Some(state) => Err(LoadFailure::WrongRegion {
            stored: state.region_id().to_owned(),
            configured: region_id.to_owned(),
        }),
        None => {
            let state = State::new(region_id, &random_id("st-")).map_err(LoadFailure::State)?;
            let mut batch = Batch::default();
            for key in state.keys() {
                if let Some(value) = state.encode(&key) {
                    batch.puts.push((key.to_string(), value));
                }
            }
            store.commit(batch).await.map_err(LoadFailure::Store)?;
            Ok(state)
        }
    }
}
