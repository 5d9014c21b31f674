//! Load benchmark of the control plane (issue 3): the real `flowlog-control` binary (embedded store, access file)
//! with 10,000 ENIs on 100 simulated hosts, each host a watch stream in this process that acknowledges every capture
//! set it receives, then 1,000 flow-log changes one after the other (create on a VPC / vSwitch / ENI, modify the
//! interval, deactivate, activate, delete). For each change: the time from the call until every affected host has
//! acknowledged a capture set that reflects it; p50 / p99 / max. Also the controller's memory (RSS) and, as
//! baselines measured in the same run, a read call's round trip and one durable commit of the embedded store.
//!
//! `cargo bench -p flowlog-control --bench load` (env: `LOAD_ENIS`, `LOAD_HOSTS`, `LOAD_CHANGES` to scale).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use flowlog_control::client::{BearerToken, RawClient};
use flowlog_control::store::Batch;
use flowlog_control::store::embedded::EmbeddedStore;
use flowlog_proto::v1 as pb;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;
use tokio::sync::watch;
use tonic::transport::Endpoint;

const ACCOUNTS: usize = 10;
const VPCS_PER_ACCOUNT: usize = 5;
const VSWITCHES_PER_VPC: usize = 4;
const ADMIN: &str = "bench-admin-token";

/// What a host has applied and acknowledged: flow log -> interval seconds, and when the ack returned.
#[derive(Clone, Default)]
struct Applied {
    flow_logs: HashMap<String, u32>,
    acked_at: Option<Instant>,
}

struct Inventory {
    /// ENI index -> (host, vswitch, vpc).
    enis: Vec<(usize, usize, usize)>,
}

impl Inventory {
    fn new(enis: usize, hosts: usize) -> Self {
        let vswitches = ACCOUNTS * VPCS_PER_ACCOUNT * VSWITCHES_PER_VPC;
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let enis = (0..enis)
            .map(|i| {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let host = (seed >> 33) as usize % hosts;
                let vswitch = i % vswitches;
                (host, vswitch, vswitch / VSWITCHES_PER_VPC)
            })
            .collect();
        Inventory { enis }
    }

    fn hosts_of(&self, scope: &Scope) -> BTreeSet<usize> {
        self.enis
            .iter()
            .enumerate()
            .filter(|(i, (_, vsw, vpc))| match scope {
                Scope::Vpc(v) => vpc == v,
                Scope::VSwitch(s) => vsw == s,
                Scope::Eni(e) => i == e,
            })
            .map(|(_, (host, _, _))| *host)
            .collect()
    }
}

#[derive(Clone, Copy, Debug)]
enum Scope {
    Vpc(usize),
    VSwitch(usize),
    Eni(usize),
}

fn account_of_vpc(vpc: usize) -> usize {
    vpc / VPCS_PER_ACCOUNT
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn connect(addr: &str, token: &str) -> anyhow::Result<RawClient> {
    let channel = Endpoint::from_shared(addr.to_owned())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(pb::control_client::ControlClient::with_interceptor(
        channel,
        BearerToken::new(Some(token))?,
    ))
}

/// One simulated host: watch, acknowledge each set, publish what was applied.
async fn host_loop(
    addr: String,
    host: usize,
    applied: watch::Sender<Applied>,
) -> anyhow::Result<()> {
    let name = format!("host-{host:03}");
    let mut client = connect(&addr, &format!("bench-host-token-{host:03}")).await?;
    let mut stream = client
        .watch_capture_set(pb::WatchCaptureSetRequest {
            host: name.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    while let Some(set) = stream.message().await? {
        let mut flow_logs = HashMap::new();
        for captured in &set.interfaces {
            for d in &captured.destinations {
                flow_logs.insert(d.flow_log_id.clone(), d.interval_seconds);
            }
        }
        client
            .ack_capture_set(pb::AckCaptureSetRequest {
                host: name.clone(),
                state_id: set.state_id.clone(),
                version: set.version,
            })
            .await?;
        applied.send_replace(Applied {
            flow_logs,
            acked_at: Some(Instant::now()),
        });
    }
    Ok(())
}

/// What a host must have applied for a change to count as done.
#[derive(Clone)]
enum Expect {
    Has(String, u32),
    Lacks(String),
}

impl Expect {
    fn met(&self, applied: &Applied) -> bool {
        match self {
            Expect::Has(id, interval) => applied.flow_logs.get(id) == Some(interval),
            Expect::Lacks(id) => !applied.flow_logs.contains_key(id),
        }
    }
}

#[derive(Clone)]
struct LiveFlowLog {
    id: String,
    scope: Scope,
    interval_minutes: u32,
    active: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let eni_count = env_usize("LOAD_ENIS", 10_000);
    let host_count = env_usize("LOAD_HOSTS", 100);
    let change_count = env_usize("LOAD_CHANGES", 1_000);
    let dir = tempfile::tempdir()?;

    // Baseline: one durable commit of the embedded store (a one-record change), in this process.
    let baseline_store = EmbeddedStore::open(&dir.path().join("baseline.redb"))?;
    let mut commits = Vec::new();
    for n in 0..50 {
        let started = Instant::now();
        baseline_store.commit_blocking(Batch {
            puts: vec![(format!("k{n}"), vec![0u8; 300])],
            deletes: vec![],
        })?;
        commits.push(started.elapsed());
    }
    commits.sort();

    // The access file: the orchestrator, one token per host, an account per tenant with its project.
    let mut access = format!("[[admin]]\nname = \"bench\"\ntokens = [\"{ADMIN}\"]\n");
    for host in 0..host_count {
        access.push_str(&format!(
            "[[host]]\nname = \"host-{host:03}\"\ntokens = [\"bench-host-token-{host:03}\"]\n"
        ));
    }
    for account in 0..ACCOUNTS {
        access.push_str(&format!(
            "[[account]]\nid = \"acct-{account}\"\ntokens = [\"bench-tenant-token-{account}\"]\nprojects = [\"proj-{account}\"]\n"
        ));
    }
    let access_path = dir.path().join("access.toml");
    std::fs::write(&access_path, access)?;

    let mut child = Command::new(env!("CARGO_BIN_EXE_flowlog-control"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--region",
            "cn-hangzhou",
            "--quota",
            "100000",
            "--state-file",
        ])
        .arg(dir.path().join("state.redb"))
        .arg("--access")
        .arg(&access_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting flowlog-control")?;
    let pid = child.id().context("pid")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let line = lines.next_line().await?.context("no listening line")?;
    let addr = format!(
        "http://{}",
        line.strip_prefix("listening on ")
            .context("listening line")?
    );
    let (rss_idle, _) = rss_kib(pid);

    // Inventory: 10,000 ENIs (16 registrations in flight: the controller commits them in groups).
    let inventory = Arc::new(Inventory::new(eni_count, host_count));
    let admin = connect(&addr, ADMIN).await?;
    let started = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    for (i, &(host, vswitch, vpc)) in inventory.enis.iter().enumerate() {
        if in_flight.len() >= 16 {
            in_flight.join_next().await.context("join")???;
        }
        let mut admin = admin.clone();
        in_flight.spawn(async move {
            admin
                .register_network_interface(pb::RegisterNetworkInterfaceRequest {
                    network_interface: Some(pb::NetworkInterface {
                        eni_id: format!("eni-{i:05}"),
                        mac: format!(
                            "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
                            (i >> 24) & 0xff,
                            (i >> 16) & 0xff,
                            (i >> 8) & 0xff,
                            i & 0xff
                        ),
                        vm_id: format!("i-{i:05}"),
                        vswitch_id: format!("vsw-{vswitch:03}"),
                        vpc_id: format!("vpc-{vpc:02}"),
                        account_id: format!("acct-{}", account_of_vpc(vpc)),
                        host: format!("host-{host:03}"),
                    }),
                })
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        });
    }
    while let Some(done) = in_flight.join_next().await {
        done??;
    }
    let registration = started.elapsed();
    let (rss_inventory, _) = rss_kib(pid);

    // 100 hosts watching and acknowledging.
    let mut applied: Vec<watch::Receiver<Applied>> = Vec::with_capacity(host_count);
    let mut hosts = tokio::task::JoinSet::new();
    for host in 0..host_count {
        let (tx, rx) = watch::channel(Applied::default());
        applied.push(rx);
        hosts.spawn(host_loop(addr.clone(), host, tx));
    }
    for rx in &mut applied {
        tokio::time::timeout(
            Duration::from_secs(60),
            rx.wait_for(|a| a.acked_at.is_some()),
        )
        .await
        .context("a host got no first capture set")??;
    }

    // Baseline: a read call's round trip.
    let mut reads = Vec::new();
    let mut reader = admin.clone();
    for _ in 0..200 {
        let started = Instant::now();
        reader
            .describe_flow_logs(pb::DescribeFlowLogsRequest {
                flow_log_id: "fl-none".into(),
                ..Default::default()
            })
            .await?;
        reads.push(started.elapsed());
    }
    reads.sort();

    // 1,000 flow-log changes, one after the other.
    let vpcs = ACCOUNTS * VPCS_PER_ACCOUNT;
    let vswitches = vpcs * VSWITCHES_PER_VPC;
    let mut rng: u64 = 42;
    let mut next_random = move |bound: usize| {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (rng >> 33) as usize % bound
    };
    let mut live: Vec<LiveFlowLog> = Vec::new();
    let mut latencies: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    let mut all = Vec::with_capacity(change_count);
    let mut call_latencies = Vec::with_capacity(change_count);
    let mut affected_hosts = 0usize;
    let mut next_store = 0usize;
    for _ in 0..change_count {
        let choice = if live.len() < 20 { 0 } else { next_random(10) };
        let mut client = admin.clone();
        let started = Instant::now();
        let (kind, scope, expect): (&'static str, Scope, Expect) = match choice {
            // Create (40 %): VPC, vSwitch or ENI scope.
            0..=3 => {
                let scope = match next_random(3) {
                    0 => Scope::Vpc(next_random(vpcs)),
                    1 => Scope::VSwitch(next_random(vswitches)),
                    _ => Scope::Eni(next_random(eni_count)),
                };
                let (resource_type, resource_id, vpc) = match scope {
                    Scope::Vpc(v) => (pb::ResourceType::Vpc, format!("vpc-{v:02}"), v),
                    Scope::VSwitch(s) => (
                        pb::ResourceType::Vswitch,
                        format!("vsw-{s:03}"),
                        s / VSWITCHES_PER_VPC,
                    ),
                    Scope::Eni(e) => (
                        pb::ResourceType::NetworkInterface,
                        format!("eni-{e:05}"),
                        inventory.enis[e].2,
                    ),
                };
                next_store += 1;
                let id = client
                    .create_flow_log(pb::CreateFlowLogRequest {
                        resource_type: resource_type.into(),
                        resource_id,
                        project_name: format!("proj-{}", account_of_vpc(vpc)),
                        logstore_name: format!("store-{next_store:05}"),
                        aggregation_interval: 10,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .flow_log_id;
                live.push(LiveFlowLog {
                    id: id.clone(),
                    scope,
                    interval_minutes: 10,
                    active: true,
                });
                let kind = match scope {
                    Scope::Vpc(_) => "create VPC",
                    Scope::VSwitch(_) => "create vSwitch",
                    Scope::Eni(_) => "create ENI",
                };
                (kind, scope, Expect::Has(id, 600))
            }
            // Modify the interval (20 %).
            4 | 5 => {
                let index = next_random(live.len());
                let fl = &mut live[index];
                fl.interval_minutes = if fl.interval_minutes == 1 { 5 } else { 1 };
                client
                    .modify_flow_log_attribute(pb::ModifyFlowLogAttributeRequest {
                        flow_log_id: fl.id.clone(),
                        aggregation_interval: fl.interval_minutes,
                        ..Default::default()
                    })
                    .await?;
                let expect = if fl.active {
                    Expect::Has(fl.id.clone(), fl.interval_minutes * 60)
                } else {
                    Expect::Lacks(fl.id.clone())
                };
                ("modify", fl.scope, expect)
            }
            // Deactivate or activate (20 %).
            6 | 7 => {
                let index = next_random(live.len());
                let fl = &mut live[index];
                if fl.active {
                    client
                        .deactive_flow_log(pb::DeactiveFlowLogRequest {
                            flow_log_id: fl.id.clone(),
                            ..Default::default()
                        })
                        .await?;
                    fl.active = false;
                    ("deactivate", fl.scope, Expect::Lacks(fl.id.clone()))
                } else {
                    client
                        .active_flow_log(pb::ActiveFlowLogRequest {
                            flow_log_id: fl.id.clone(),
                            ..Default::default()
                        })
                        .await?;
                    fl.active = true;
                    (
                        "activate",
                        fl.scope,
                        Expect::Has(fl.id.clone(), fl.interval_minutes * 60),
                    )
                }
            }
            // Delete (20 %).
            _ => {
                let index = next_random(live.len());
                let fl = live.swap_remove(index);
                client
                    .delete_flow_log(pb::DeleteFlowLogRequest {
                        flow_log_id: fl.id.clone(),
                        ..Default::default()
                    })
                    .await?;
                ("delete", fl.scope, Expect::Lacks(fl.id))
            }
        };
        call_latencies.push(started.elapsed());
        let targets = inventory.hosts_of(&scope);
        affected_hosts += targets.len();
        let mut done = started;
        for host in targets {
            let rx = &mut applied[host];
            let seen =
                tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|a| expect.met(a)))
                    .await
                    .with_context(|| {
                        format!("{kind}: host-{host:03} did not apply the change in 30 s")
                    })??;
            if let Some(at) = seen.acked_at {
                done = done.max(at);
            }
        }
        let latency = done.saturating_duration_since(started);
        latencies.entry(kind).or_default().push(latency);
        all.push(latency);
    }
    let (rss_end, rss_peak) = rss_kib(pid);
    // Every host is still watching (a failed one would have ended its task).
    if let Some(ended) = hosts.try_join_next() {
        bail!(
            "a host stopped during the run: {:?}",
            ended.map(|r| r.map_err(|e| format!("{e:#}")))
        );
    }
    hosts.abort_all();
    child.kill().await?;
    all.sort();
    call_latencies.sort();
    println!(
        "control-plane load: {eni_count} ENIs on {host_count} hosts, {change_count} flow-log changes"
    );
    println!(
        "  baseline: durable commit of one record (redb, fsync): p50 {:?}, p99 {:?}",
        percentile(&commits, 50.0),
        percentile(&commits, 99.0)
    );
    println!(
        "  baseline: read call round trip (DescribeFlowLogs): p50 {:?}, p99 {:?}",
        percentile(&reads, 50.0),
        percentile(&reads, 99.0)
    );
    println!(
        "  inventory: {eni_count} RegisterNetworkInterface in {registration:?} ({:.0}/s, 16 in flight)",
        eni_count as f64 / registration.as_secs_f64()
    );
    println!(
        "  change call (durable, acknowledged to the caller): p50 {:?}, p99 {:?}",
        percentile(&call_latencies, 50.0),
        percentile(&call_latencies, 99.0)
    );
    println!(
        "  call -> every affected host acknowledged: p50 {:?}, p99 {:?}, max {:?} ({:.1} hosts per change on average)",
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        all.last().copied().unwrap_or_default(),
        affected_hosts as f64 / change_count.max(1) as f64
    );
    for (kind, mut values) in latencies {
        values.sort();
        println!(
            "    {kind:<15} n={:<4} p50 {:?}, p99 {:?}",
            values.len(),
            percentile(&values, 50.0),
            percentile(&values, 99.0)
        );
    }
    println!(
        "  controller RSS: {} MiB idle, {} MiB with the inventory, {} MiB at the end (peak {} MiB)",
        rss_idle / 1024,
        rss_inventory / 1024,
        rss_end / 1024,
        rss_peak / 1024
    );
    Ok(())
}
