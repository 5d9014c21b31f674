//! Unit tests of the state's rules: scopes, inventory, validation codes, pages, idempotency, quota, tenancy,
//! acknowledgement-driven statuses and the stored records.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::*;

const REGION: &str = "cn-hangzhou";
const ACCOUNT: &str = "100000000000";
const QUOTA: usize = 100;

fn eni_of(id: u32, vswitch: &str, vpc: &str, host: &str, account: &str) -> NetworkInterface {
    NetworkInterface::new(NetworkInterfaceInput {
        eni_id: format!("eni-{id:05}"),
        mac: format!("02:00:00:e1:{:02x}:{:02x}", id >> 8, id & 0xff),
        vm_id: format!("i-{id:05}"),
        vswitch_id: vswitch.to_owned(),
        vpc_id: vpc.to_owned(),
        account_id: account.to_owned(),
        host: host.to_owned(),
    })
    .unwrap()
}

fn eni(id: u32, vswitch: &str, vpc: &str, host: &str) -> NetworkInterface {
    eni_of(id, vswitch, vpc, host, ACCOUNT)
}

fn request(resource_type: ResourceType, resource_id: &str, logstore: &str) -> CreateFlowLogInput {
    CreateFlowLogInput {
        resource_type: Some(resource_type),
        resource_id: resource_id.to_owned(),
        project_name: "proj-1".to_owned(),
        logstore_name: logstore.to_owned(),
        ..CreateFlowLogInput::default()
    }
}

fn ids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("fl-test{n:04}")
    }
}

/// Creates as the admin, any project, quota 100.
fn create(
    state: &mut State,
    input: CreateFlowLogInput,
    new_id: &mut dyn FnMut() -> String,
) -> Result<(String, Mutation), StateError> {
    state.create_flow_log(
        &Caller::Admin,
        &ProjectOwners::any(),
        QUOTA,
        input,
        1000,
        new_id,
    )
}

/// Two hosts: a and b. vpc-0 = vsw-00 {1 on a, 2 on b}, vsw-01 {3 on a}; vpc-1 = vsw-02 {4 on b}.
fn populated() -> State {
    let mut state = State::new(REGION, "st-test").unwrap();
    for eni in [
        eni(1, "vsw-00", "vpc-0", "a"),
        eni(2, "vsw-00", "vpc-0", "b"),
        eni(3, "vsw-01", "vpc-0", "a"),
        eni(4, "vsw-02", "vpc-1", "b"),
    ] {
        state.register_eni(eni, 0).unwrap();
    }
    state
}

fn captured(state: &State, host: &str) -> Vec<(String, Vec<String>)> {
    state
        .capture_set(host)
        .interfaces
        .into_iter()
        .map(|ci| {
            (
                ci.network_interface.eni_id,
                ci.destinations.into_iter().map(|d| d.logstore).collect(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    items
        .iter()
        .map(|(eni, stores)| {
            (
                eni.to_string(),
                stores.iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect()
}

fn hosts(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A fake view of the hosts: acknowledged versions, and hosts that are dead.
#[derive(Default)]
struct Hosts {
    acked: HashMap<String, u64>,
    dead: BTreeSet<String>,
}

impl Hosts {
    /// Every host acknowledges its current version.
    fn ack_all(&mut self, state: &State) {
        for host in ["a", "b", "c"] {
            self.acked.insert(host.into(), state.host_version(host));
        }
    }
}

impl HostView for Hosts {
    fn acked(&self, host: &str) -> Option<u64> {
        self.acked.get(host).copied()
    }
    fn is_live(&self, host: &str) -> bool {
        !self.dead.contains(host)
    }
}

fn status(state: &State, id: &str) -> Option<FlowLogStatus> {
    state.flow_log(id).map(|fl| fl.status)
}

#[test]
fn eni_flow_log_covers_only_that_eni() {
    let mut state = populated();
    let mut gen_id = ids();
    let (id, mutation) = create(
        &mut state,
        request(ResourceType::NetworkInterface, "eni-00001", "store-a"),
        &mut gen_id,
    )
    .unwrap();
    assert_eq!(id, "fl-test0001");
    assert_eq!(mutation.hosts, hosts(&["a"]));
    assert_eq!(captured(&state, "a"), pairs(&[("eni-00001", &["store-a"])]));
    assert!(captured(&state, "b").is_empty());
    let fl = state.flow_log(&id).unwrap();
    assert_eq!(fl.vpc_id, "vpc-0");
    assert_eq!(fl.account_id, ACCOUNT);
    assert_eq!(fl.status, FlowLogStatus::Activating);
    assert_eq!(fl.aggregation_interval, AggregationInterval::TenMinutes);
    assert_eq!(fl.traffic_type, TrafficType::All);
    assert_eq!(fl.creation_time, 1000);
    assert_eq!(
        mutation.keys,
        BTreeSet::from([Key::Meta, Key::FlowLog(id.clone())])
    );
}

#[test]
fn vswitch_and_vpc_scopes_and_later_enis() {
    let mut state = populated();
    let mut gen_id = ids();
    create(
        &mut state,
        request(ResourceType::VSwitch, "vsw-00", "store-vsw"),
        &mut gen_id,
    )
    .unwrap();
    assert_eq!(
        captured(&state, "a"),
        pairs(&[("eni-00001", &["store-vsw"])])
    );
    assert_eq!(
        captured(&state, "b"),
        pairs(&[("eni-00002", &["store-vsw"])])
    );
    let (_, mutation) = create(
        &mut state,
        request(ResourceType::Vpc, "vpc-1", "store-vpc"),
        &mut gen_id,
    )
    .unwrap();
    assert_eq!(mutation.hosts, hosts(&["b"]));
    assert_eq!(
        captured(&state, "b"),
        pairs(&[("eni-00002", &["store-vsw"]), ("eni-00004", &["store-vpc"])])
    );

    // An ENI registered later in the VPC is covered; one in another VPC on the same host is not.
    let before = state.host_version("a");
    let mutation = state
        .register_eni(eni(5, "vsw-03", "vpc-1", "a"), 0)
        .unwrap();
    assert_eq!(mutation.hosts, hosts(&["a"]));
    assert!(state.host_version("a") > before);
    let b_version = state.host_version("b");
    let mutation = state
        .register_eni(eni(6, "vsw-09", "vpc-9", "b"), 0)
        .unwrap();
    assert!(mutation.changed());
    assert!(
        mutation.hosts.is_empty(),
        "an uncaptured ENI changes no capture set"
    );
    assert_eq!(state.host_version("b"), b_version);
    assert_eq!(
        captured(&state, "a"),
        pairs(&[("eni-00001", &["store-vsw"]), ("eni-00005", &["store-vpc"])])
    );

    // A deregistered ENI leaves its host's set.
    let mutation = state.deregister_eni("eni-00005").unwrap();
    assert_eq!(mutation.hosts, hosts(&["a"]));
    assert_eq!(
        captured(&state, "a"),
        pairs(&[("eni-00001", &["store-vsw"])])
    );
}

#[test]
fn several_flow_logs_on_one_eni_are_each_a_destination() {
    let mut state = populated();
    let mut gen_id = ids();
    let mut vpc = request(ResourceType::Vpc, "vpc-0", "store-vpc");
    vpc.traffic_type = TrafficType::Drop;
    vpc.aggregation_interval = 1;
    create(&mut state, vpc, &mut gen_id).unwrap();
    create(
        &mut state,
        request(ResourceType::VSwitch, "vsw-00", "store-vsw"),
        &mut gen_id,
    )
    .unwrap();
    let mut one = request(ResourceType::NetworkInterface, "eni-00001", "store-eni");
    one.aggregation_interval = 5;
    one.traffic_type = TrafficType::Allow;
    create(&mut state, one, &mut gen_id).unwrap();
    let set = state.capture_set("a");
    assert_eq!(set.region_id, REGION);
    assert_eq!(set.state_id, "st-test");
    let first = &set.interfaces[0];
    assert_eq!(first.network_interface.eni_id, "eni-00001");
    let summary: Vec<(&str, TrafficType, u32)> = first
        .destinations
        .iter()
        .map(|d| (d.logstore.as_str(), d.traffic_type, d.interval_seconds))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("store-vpc", TrafficType::Drop, 60),
            ("store-vsw", TrafficType::All, 600),
            ("store-eni", TrafficType::Allow, 300),
        ]
    );
    assert_eq!(first.destinations[0].flow_log_id, "fl-test0001");
    assert_eq!(
        captured(&state, "a")[1],
        ("eni-00003".to_owned(), vec!["store-vpc".to_owned()])
    );
}

#[test]
fn moving_an_eni_between_hosts_and_vswitches() {
    let mut state = populated();
    let mut gen_id = ids();
    create(
        &mut state,
        request(ResourceType::VSwitch, "vsw-00", "store-vsw"),
        &mut gen_id,
    )
    .unwrap();
    // To another host: both hosts' sets change.
    let mutation = state
        .register_eni(eni(1, "vsw-00", "vpc-0", "b"), 0)
        .unwrap();
    assert_eq!(mutation.hosts, hosts(&["a", "b"]));
    assert!(captured(&state, "a").is_empty());
    assert_eq!(
        captured(&state, "b"),
        pairs(&[("eni-00001", &["store-vsw"]), ("eni-00002", &["store-vsw"])])
    );
    // To another vSwitch (of another VPC): it leaves the vSwitch flow log.
    let mutation = state
        .register_eni(eni(1, "vsw-02", "vpc-1", "b"), 0)
        .unwrap();
    assert_eq!(mutation.hosts, hosts(&["b"]));
    assert_eq!(
        captured(&state, "b"),
        pairs(&[("eni-00002", &["store-vsw"])])
    );
    // Registering the same thing again is a no-op.
    let version = state.version();
    assert!(
        !state
            .register_eni(eni(1, "vsw-02", "vpc-1", "b"), 0)
            .unwrap()
            .changed()
    );
    assert_eq!(state.version(), version);
}

#[test]
fn eni_validation_codes() {
    let good = NetworkInterfaceInput {
        eni_id: "eni-abc".into(),
        mac: "02:00:00:E1:00:0A".into(),
        vm_id: "i-1".into(),
        vswitch_id: "vsw-1".into(),
        vpc_id: "vpc-1".into(),
        account_id: "1".into(),
        host: "h1".into(),
    };
    let parsed = NetworkInterface::new(good.clone()).unwrap();
    assert_eq!(parsed.mac.to_string(), "02:00:00:e1:00:0a");
    let code = |f: &dyn Fn(&mut NetworkInterfaceInput)| {
        let mut input = good.clone();
        f(&mut input);
        NetworkInterface::new(input).unwrap_err().code()
    };
    assert_eq!(
        code(&|i| i.eni_id = "vm-1".into()),
        "InvalidNetworkInterfaceId.Malformed"
    );
    assert_eq!(
        code(&|i| i.eni_id = "eni-".into()),
        "InvalidNetworkInterfaceId.Malformed"
    );
    assert_eq!(
        code(&|i| i.eni_id = "eni-a b".into()),
        "InvalidNetworkInterfaceId.Malformed"
    );
    assert_eq!(
        code(&|i| i.mac = "02:00:00:e1:00".into()),
        "InvalidMacAddress.Malformed"
    );
    assert_eq!(
        code(&|i| i.mac = "02:00:00:e1:00:0g".into()),
        "InvalidMacAddress.Malformed"
    );
    assert_eq!(
        code(&|i| i.mac = "02:00:00:e1:00:0a:00".into()),
        "InvalidMacAddress.Malformed"
    );
    assert_eq!(
        code(&|i| i.mac = "02:00-00:e1:00:0a".into()),
        "InvalidMacAddress.Malformed"
    );
    assert_eq!(
        code(&|i| i.mac = "+2:00:00:e1:00:0a".into()),
        "InvalidMacAddress.Malformed"
    );
    assert_eq!(code(&|i| i.mac = "".into()), "InvalidMacAddress.Malformed");
    assert_eq!(
        code(&|i| i.mac = "01:00:5e:00:00:01".into()),
        "InvalidMacAddress.NotUnicast"
    );
    assert_eq!(
        code(&|i| i.mac = "ff:ff:ff:ff:ff:ff".into()),
        "InvalidMacAddress.NotUnicast"
    );
    assert_eq!(
        code(&|i| i.mac = "00:00:00:00:00:00".into()),
        "InvalidMacAddress.NotUnicast"
    );
    assert_eq!(
        code(&|i| i.vswitch_id = "".into()),
        "InvalidParameter.VSwitchId"
    );
    assert_eq!(code(&|i| i.vpc_id = "".into()), "InvalidParameter.VpcId");
    assert_eq!(
        code(&|i| i.account_id = "".into()),
        "InvalidParameter.AccountId"
    );
    assert_eq!(code(&|i| i.host = "".into()), "InvalidParameter.Host");
    assert_eq!(code(&|i| i.host = "a host".into()), "InvalidParameter.Host");
    assert_eq!(
        code(&|i| i.vm_id = "x".repeat(129)),
        "InvalidParameter.VmId"
    );
    let mut no_vm = good.clone();
    no_vm.vm_id.clear();
    assert!(NetworkInterface::new(no_vm).is_ok());
    let mut dashes = good;
    dashes.mac = "02-00-00-e1-00-0a".into();
    assert_eq!(NetworkInterface::new(dashes).unwrap().mac, parsed.mac);
}

#[test]
fn inventory_rules_and_codes() {
    let mut state = populated();
    // Implicit VPC and vSwitch creation by ENI registration.
    assert_eq!(state.vpc("vpc-0").unwrap().account_id, ACCOUNT);
    assert_eq!(state.vswitch("vsw-01").unwrap().vpc_id, "vpc-0");
    assert_eq!(state.list_vswitches(Some("vpc-0"), None).len(), 2);

    // Explicit creation; same again is a no-op; another account's VPC id is taken.
    let vpc = Vpc::new("vpc-7".into(), "200".into(), 5).unwrap();
    let mutation = state.create_vpc(vpc.clone()).unwrap();
    assert_eq!(
        mutation.keys,
        BTreeSet::from([Key::Meta, Key::Vpc("vpc-7".into())])
    );
    assert!(!state.create_vpc(vpc).unwrap().changed());
    let err = state
        .create_vpc(Vpc::new("vpc-7".into(), "300".into(), 5).unwrap())
        .unwrap_err();
    assert_eq!(
        (err.code(), err.kind()),
        ("AlreadyExists.Vpc", ErrorKind::AlreadyExists)
    );
    let vs = |id: &str, vpc: &str, account: &str| {
        VSwitch::new(id.into(), vpc.into(), account.into(), 5).unwrap()
    };
    state.create_vswitch(vs("vsw-70", "vpc-7", "200")).unwrap();
    assert!(
        !state
            .create_vswitch(vs("vsw-70", "vpc-7", "200"))
            .unwrap()
            .changed()
    );
    let code = |r: Result<Mutation, StateError>| r.unwrap_err().code();
    assert_eq!(
        code(state.create_vswitch(vs("vsw-71", "vpc-9", "200"))),
        "InvalidVpcId.NotFound"
    );
    assert_eq!(
        code(state.create_vswitch(vs("vsw-71", "vpc-7", "300"))),
        "InvalidAccountId.Mismatch"
    );
    assert_eq!(
        code(state.create_vswitch(vs("vsw-70", "vpc-0", ACCOUNT))),
        "InvalidVSwitchId.VpcMismatch"
    );

    // An ENI of another account cannot join the VPC, nor change account; a vSwitch stays in its VPC.
    assert_eq!(
        code(state.register_eni(eni_of(20, "vsw-70", "vpc-7", "a", ACCOUNT), 0)),
        "InvalidAccountId.Mismatch"
    );
    assert_eq!(
        code(state.register_eni(eni_of(1, "vsw-00", "vpc-0", "a", "999"), 0)),
        "InvalidAccountId.Mismatch"
    );
    assert_eq!(
        code(state.register_eni(eni(20, "vsw-00", "vpc-1", "a"), 0)),
        "InvalidVSwitchId.VpcMismatch"
    );
    // A MAC is unique; an ENI may change its own MAC and the old one is free again.
    let mut clash = eni(9, "vsw-00", "vpc-0", "a");
    clash.mac = eni(1, "vsw-00", "vpc-0", "a").mac;
    let err = state.register_eni(clash.clone(), 0).unwrap_err();
    assert_eq!(
        (err.code(), err.kind()),
        ("InvalidMacAddress.InUse", ErrorKind::AlreadyExists)
    );
    let mut moved = eni(1, "vsw-00", "vpc-0", "a");
    moved.mac = MacAddr([2, 0, 0, 0xaa, 0, 1]);
    state.register_eni(moved, 0).unwrap();
    state.register_eni(clash, 0).unwrap();

    // Dependencies.
    let err = state.delete_vpc("vpc-7").unwrap_err();
    assert_eq!(
        (err.code(), err.kind()),
        ("DependencyViolation.VSwitch", ErrorKind::FailedPrecondition)
    );
    assert_eq!(
        code(state.delete_vswitch("vsw-00")),
        "DependencyViolation.NetworkInterface"
    );
    state.delete_vswitch("vsw-70").unwrap();
    state.delete_vpc("vpc-7").unwrap();
    assert_eq!(code(state.delete_vpc("vpc-7")), "InvalidVpcId.NotFound");
    assert_eq!(
        code(state.delete_vswitch("vsw-70")),
        "InvalidVSwitchId.NotFound"
    );
    assert_eq!(
        code(state.deregister_eni("eni-99999")),
        "InvalidNetworkInterfaceId.NotFound"
    );

    // Listings filter by host, VPC and account.
    assert_eq!(state.list_enis(Some("b"), None, None).len(), 2);
    assert_eq!(state.list_enis(None, Some("vpc-1"), None).len(), 1);
    assert_eq!(state.list_enis(None, None, Some("999")).len(), 0);
    assert_eq!(state.list_vpcs(Some(ACCOUNT)).len(), 2);
}

#[test]
fn flow_log_validation_codes() {
    let state = populated();
    let code = |f: &dyn Fn(&mut CreateFlowLogInput)| {
        let mut input = request(ResourceType::Vpc, "vpc-0", "store-1");
        f(&mut input);
        let mut scratch = state.clone();
        let err = create(&mut scratch, input, &mut ids()).unwrap_err();
        assert_eq!(scratch, state, "a refused request changes nothing");
        (err.code(), err.kind())
    };
    let invalid = ErrorKind::InvalidArgument;
    assert_eq!(
        code(&|r| r.resource_type = None),
        ("InvalidParameter.ResourceType", invalid)
    );
    assert_eq!(
        code(&|r| r.resource_id.clear()),
        ("InvalidParameter.ResourceId", invalid)
    );
    assert_eq!(
        code(&|r| r.resource_id = "vpc-9".into()),
        ("InvalidResourceId.NotFound", ErrorKind::NotFound)
    );
    assert_eq!(
        code(&|r| {
            r.resource_type = Some(ResourceType::VSwitch);
            r.resource_id = "vpc-0".into();
        }),
        ("InvalidResourceId.NotFound", ErrorKind::NotFound)
    );
    assert_eq!(
        code(&|r| {
            r.resource_type = Some(ResourceType::NetworkInterface);
            r.resource_id = "eni-77777".into();
        }),
        ("InvalidResourceId.NotFound", ErrorKind::NotFound)
    );
    assert_eq!(
        code(&|r| r.region_id = "us-west-1".into()),
        ("InvalidRegionId.NotFound", ErrorKind::NotFound)
    );
    for bad in [
        "ab",
        "Proj",
        "-proj",
        "proj-",
        "proj_1",
        &"p".repeat(64),
        "",
    ] {
        assert_eq!(
            code(&|r| r.project_name = bad.into()),
            ("InvalidProjectName.Malformed", invalid),
            "{bad}"
        );
    }
    for bad in ["ab", "Store", "_store", "store_", "st ore", &"s".repeat(64)] {
        assert_eq!(
            code(&|r| r.logstore_name = bad.into()),
            ("InvalidLogStoreName.Malformed", invalid),
            "{bad}"
        );
    }
    for bad in [2, 3, 15, 60] {
        assert_eq!(
            code(&|r| r.aggregation_interval = bad),
            ("InvalidParameter.AggregationInterval", invalid)
        );
    }
    assert_eq!(
        code(&|r| r.flow_log_name = "1abc".into()),
        ("InvalidParameter.FlowLogName", invalid)
    );
    assert_eq!(
        code(&|r| r.flow_log_name = "a b".into()),
        ("InvalidParameter.FlowLogName", invalid)
    );
    assert_eq!(
        code(&|r| r.description = "https://x".into()),
        ("InvalidParameter.Description", invalid)
    );
    assert_eq!(
        code(&|r| r.description = "d".repeat(257)),
        ("InvalidParameter.Description", invalid)
    );
    assert_eq!(
        code(&|r| r.client_token = "t".repeat(65)),
        ("InvalidParameter.ClientToken", invalid)
    );
    assert_eq!(
        code(&|r| r.client_token = "a b".into()),
        ("InvalidParameter.ClientToken", invalid)
    );

    // Accepted edge cases.
    let mut scratch = state.clone();
    let mut ok = request(ResourceType::Vpc, "vpc-0", "a_b-1");
    ok.project_name = "a-1".into();
    ok.flow_log_name = "my-flow_log.1".into();
    ok.description = "ENIs of vpc-0".into();
    ok.aggregation_interval = 5;
    ok.region_id = REGION.into();
    create(&mut scratch, ok, &mut ids()).unwrap();
}

#[test]
fn duplicate_destination_is_refused_until_deleted() {
    let mut state = populated();
    let mut gen_id = ids();
    let (first, _) = create(
        &mut state,
        request(ResourceType::Vpc, "vpc-0", "store-1"),
        &mut gen_id,
    )
    .unwrap();
    let mut again = request(ResourceType::Vpc, "vpc-0", "store-1");
    again.traffic_type = TrafficType::Drop;
    let err = create(&mut state, again.clone(), &mut gen_id).unwrap_err();
    assert_eq!(
        (err.code(), err.kind()),
        ("AlreadyExists.FlowLog", ErrorKind::AlreadyExists)
    );
    assert!(err.to_string().contains(&first));
    // Once the first is being deleted, the same destination may be created again.
    state.delete_flow_log(&Caller::Admin, "", &first).unwrap();
    assert_eq!(status(&state, &first), Some(FlowLogStatus::Deleting));
    create(&mut state, again, &mut gen_id).unwrap();
}

#[test]
fn client_token_is_idempotent_per_account() {
    let mut state = populated();
    state
        .register_eni(eni_of(30, "vsw-30", "vpc-3", "a", "other"), 0)
        .unwrap();
    let mut gen_id = ids();
    let mut with_token = request(ResourceType::VSwitch, "vsw-00", "store-1");
    with_token.client_token = "token-1".into();
    let (first, mutation) = create(&mut state, with_token.clone(), &mut gen_id).unwrap();
    assert!(mutation.changed());
    let version = state.version();
    let (second, mutation) = create(&mut state, with_token.clone(), &mut gen_id).unwrap();
    assert_eq!(first, second);
    assert!(!mutation.changed());
    assert_eq!(state.version(), version);

    let mut different = with_token.clone();
    different.logstore_name = "store-2".into();
    let err = create(&mut state, different, &mut gen_id).unwrap_err();
    assert_eq!(err.code(), "IdempotentParameterMismatch");

    // Another account's token space is its own.
    let mut other = request(ResourceType::Vpc, "vpc-3", "store-1");
    other.client_token = "token-1".into();
    let (third, _) = create(&mut state, other, &mut gen_id).unwrap();
    assert_ne!(third, first);

    // Colliding generated ids are retried; a generator that only collides gives a clear error.
    let mut collide = {
        let first = first.clone();
        move || first.clone()
    };
    let err = create(
        &mut state,
        request(ResourceType::Vpc, "vpc-1", "store-3"),
        &mut collide,
    )
    .unwrap_err();
    assert_eq!(err, StateError::IdExhausted);

    // Once deleting, the token is free again.
    state
        .delete_flow_log(&Caller::Admin, REGION, &first)
        .unwrap();
    let (fourth, _) = create(&mut state, with_token, &mut gen_id).unwrap();
    assert_ne!(fourth, first);
}

#[test]
fn quota_counts_an_accounts_flow_logs_not_being_deleted() {
    let mut state = populated();
    state
        .register_eni(eni_of(30, "vsw-30", "vpc-3", "a", "other"), 0)
        .unwrap();
    let mut gen_id = ids();
    let projects = ProjectOwners::any();
    let mut made = Vec::new();
    for n in 0..3 {
        let (id, _) = state
            .create_flow_log(
                &Caller::Admin,
                &projects,
                3,
                request(ResourceType::Vpc, "vpc-0", &format!("store-{n}")),
                0,
                &mut gen_id,
            )
            .unwrap();
        made.push(id);
    }
    let err = state
        .create_flow_log(
            &Caller::Admin,
            &projects,
            3,
            request(ResourceType::Vpc, "vpc-1", "store-9"),
            0,
            &mut gen_id,
        )
        .unwrap_err();
    assert_eq!(
        (err.code(), err.kind()),
        ("QuotaExceeded.FlowLog", ErrorKind::ResourceExhausted)
    );
    assert!(err.to_string().contains("quota is 3"), "{err}");
    // Another account has its own quota; an Inactive flow log still counts, a Deleting one does not.
    state
        .create_flow_log(
            &Caller::Admin,
            &projects,
            3,
            request(ResourceType::Vpc, "vpc-3", "store-9"),
            0,
            &mut gen_id,
        )
        .unwrap();
    state
        .deactivate_flow_log(&Caller::Admin, "", &made[0])
        .unwrap();
    assert!(
        state
            .create_flow_log(
                &Caller::Admin,
                &projects,
                3,
                request(ResourceType::Vpc, "vpc-1", "store-9"),
                0,
                &mut gen_id
            )
            .is_err()
    );
    state.delete_flow_log(&Caller::Admin, "", &made[1]).unwrap();
    state
        .create_flow_log(
            &Caller::Admin,
            &projects,
            3,
            request(ResourceType::Vpc, "vpc-1", "store-9"),
            0,
            &mut gen_id,
        )
        .unwrap();
}

#[test]
fn tenants_are_confined_to_their_account_and_projects() {
    let mut state = populated();
    state
        .register_eni(eni_of(30, "vsw-30", "vpc-3", "a", "other"), 0)
        .unwrap();
    let mut gen_id = ids();
    let projects = ProjectOwners::owned(BTreeMap::from([
        ("proj-1".to_owned(), ACCOUNT.to_owned()),
        ("other-proj".to_owned(), "other".to_owned()),
    ]));
    let me = Caller::Account(ACCOUNT.into());
    let them = Caller::Account("other".into());
    let (mine, _) = state
        .create_flow_log(
            &me,
            &projects,
            QUOTA,
            request(ResourceType::Vpc, "vpc-0", "store-1"),
            0,
            &mut gen_id,
        )
        .unwrap();
    let mut theirs_input = request(ResourceType::Vpc, "vpc-3", "store-1");
    theirs_input.project_name = "other-proj".into();
    let (theirs, _) = state
        .create_flow_log(&them, &projects, QUOTA, theirs_input, 0, &mut gen_id)
        .unwrap();

    let before = state.clone();
    let forbidden = |r: Result<Mutation, StateError>| {
        let err = r.unwrap_err();
        assert_eq!(
            (err.code(), err.kind()),
            ("Forbidden.Account", ErrorKind::PermissionDenied),
            "{err}"
        );
    };
    // Creating on another account's resource, in every scope.
    for (kind, id) in [
        (ResourceType::Vpc, "vpc-3"),
        (ResourceType::VSwitch, "vsw-30"),
        (ResourceType::NetworkInterface, "eni-00030"),
    ] {
        forbidden(
            state
                .create_flow_log(
                    &me,
                    &projects,
                    QUOTA,
                    request(kind, id, "store-x"),
                    0,
                    &mut gen_id,
                )
                .map(|(_, m)| m),
        );
    }
    // Delivering to another account's project (or an unknown one).
    for project in ["other-proj", "nobodys"] {
        let mut input = request(ResourceType::Vpc, "vpc-0", "store-y");
        input.project_name = project.into();
        let err = state
            .create_flow_log(&me, &projects, QUOTA, input, 0, &mut gen_id)
            .unwrap_err();
        assert_eq!(
            (err.code(), err.kind()),
            ("Forbidden.Project", ErrorKind::PermissionDenied)
        );
    }
    // Every call on the other account's flow log.
    forbidden(state.delete_flow_log(&me, "", &theirs));
    forbidden(state.deactivate_flow_log(&me, "", &theirs));
    forbidden(state.activate_flow_log(&me, "", &theirs));
    forbidden(state.modify_flow_log(
        &me,
        ModifyFlowLogInput {
            flow_log_id: theirs.clone(),
            description: Some("x".into()),
            ..ModifyFlowLogInput::default()
        },
    ));
    // Describe: only own flow logs; naming the other's flow log, resource or VPC is refused.
    let page = state
        .describe_flow_logs(&me, &DescribeFilter::default())
        .unwrap();
    assert_eq!(
        page.flow_logs
            .iter()
            .map(|f| &f.flow_log_id)
            .collect::<Vec<_>>(),
        vec![&mine]
    );
    for filter in [
        DescribeFilter {
            flow_log_id: theirs.clone(),
            ..DescribeFilter::default()
        },
        DescribeFilter {
            resource_id: "vpc-3".into(),
            ..DescribeFilter::default()
        },
        DescribeFilter {
            resource_id: "eni-00030".into(),
            ..DescribeFilter::default()
        },
        DescribeFilter {
            vpc_id: "vpc-3".into(),
            ..DescribeFilter::default()
        },
    ] {
        let err = state.describe_flow_logs(&me, &filter).unwrap_err();
        assert_eq!(err.code(), "Forbidden.Account", "{filter:?}");
    }
    assert_eq!(state, before, "refused calls changed nothing");
    // The admin sees both.
    assert_eq!(
        state
            .describe_flow_logs(&Caller::Admin, &DescribeFilter::default())
            .unwrap()
            .total_count,
        2
    );
}

#[test]
fn statuses_follow_acknowledgements() {
    let mut state = populated();
    let mut gen_id = ids();
    let mut view = Hosts::default();
    let (id, _) = create(
        &mut state,
        request(ResourceType::Vpc, "vpc-0", "store-1"),
        &mut gen_id,
    )
    .unwrap();
    assert_eq!(status(&state, &id), Some(FlowLogStatus::Activating));
    // Nothing acknowledged: still Activating.
    assert!(!state.settle(&view, usize::MAX).changed());
    // Host a acknowledges; b has not yet.
    view.acked.insert("a".into(), state.host_version("a"));
    assert!(!state.settle(&view, usize::MAX).changed());
    // A new ENI on host b raises what b must acknowledge.
    view.acked.insert("b".into(), state.host_version("b"));
    state
        .register_eni(eni(7, "vsw-00", "vpc-0", "c"), 0)
        .unwrap();
    assert!(
        !state.settle(&view, usize::MAX).changed(),
        "host c has not applied eni-00007"
    );
    view.acked.insert("c".into(), state.host_version("c"));
    let mutation = state.settle(&view, usize::MAX);
    assert!(mutation.changed());
    assert!(
        mutation.hosts.is_empty(),
        "Activating -> Active changes no capture set"
    );
    assert_eq!(status(&state, &id), Some(FlowLogStatus::Active));

    // Deactive: Inactive at once, capture stops.
    let mutation = state.deactivate_flow_log(&Caller::Admin, "", &id).unwrap();
    assert_eq!(mutation.hosts, hosts(&["a", "b", "c"]));
    assert_eq!(status(&state, &id), Some(FlowLogStatus::Inactive));
    assert!(captured(&state, "a").is_empty());
    let code = |r: Result<Mutation, StateError>| r.unwrap_err().code();
    assert_eq!(
        code(state.deactivate_flow_log(&Caller::Admin, "", &id)),
        "IncorrectStatus.FlowLog"
    );
    // Active again: Activating until acknowledged again.
    state.activate_flow_log(&Caller::Admin, "", &id).unwrap();
    assert_eq!(status(&state, &id), Some(FlowLogStatus::Activating));
    assert_eq!(
        code(state.activate_flow_log(&Caller::Admin, "", &id)),
        "IncorrectStatus.FlowLog"
    );
    assert!(
        !state.settle(&view, usize::MAX).changed(),
        "old acknowledgements do not count"
    );
    view.ack_all(&state);
    state.settle(&view, usize::MAX);
    assert_eq!(status(&state, &id), Some(FlowLogStatus::Active));
    assert_eq!(
        code(state.activate_flow_log(&Caller::Admin, "", &id)),
        "IncorrectStatus.FlowLog"
    );

    // Delete: Deleting (no longer captured) until every host that had it acknowledges; a dead host is not waited for.
    state.delete_flow_log(&Caller::Admin, "", &id).unwrap();
    assert_eq!(status(&state, &id), Some(FlowLogStatus::Deleting));
    assert!(captured(&state, "b").is_empty());
    assert!(
        !state
            .delete_flow_log(&Caller::Admin, "", &id)
            .unwrap()
            .changed(),
        "deleting twice is a no-op"
    );
    assert_eq!(
        code(state.modify_flow_log(
            &Caller::Admin,
            ModifyFlowLogInput {
                flow_log_id: id.clone(),
                description: Some("x".into()),
                ..Default::default()
            }
        )),
        "IncorrectStatus.FlowLog"
    );
    assert_eq!(
        code(state.deactivate_flow_log(&Caller::Admin, "", &id)),
        "IncorrectStatus.FlowLog"
    );
    view.acked.insert("a".into(), state.host_version("a"));
    view.acked.insert("b".into(), state.host_version("b"));
    assert!(
        !state.settle(&view, usize::MAX).changed(),
        "host c has not acknowledged"
    );
    view.dead.insert("c".into());
    let mutation = state.settle(&view, usize::MAX);
    assert_eq!(
        mutation.keys,
        BTreeSet::from([Key::Meta, Key::FlowLog(id.clone())])
    );
    assert!(state.flow_log(&id).is_none());
    assert_eq!(
        code(state.delete_flow_log(&Caller::Admin, "", &id)),
        "InvalidFlowLogId.NotFound"
    );
}

#[test]
fn empty_scopes_and_dead_hosts_do_not_hold_statuses() {
    let mut state = populated();
    state
        .create_vpc(Vpc::new("vpc-empty".into(), ACCOUNT.into(), 0).unwrap())
        .unwrap();
    let mut gen_id = ids();
    let (empty, _) = create(
        &mut state,
        request(ResourceType::Vpc, "vpc-empty", "store-1"),
        &mut gen_id,
    )
    .unwrap();
    assert_eq!(
        status(&state, &empty),
        Some(FlowLogStatus::Active),
        "no ENI in scope: Active at once"
    );
    // Deleting a flow log that no host captured: gone at once.
    state
        .deactivate_flow_log(&Caller::Admin, "", &empty)
        .unwrap();
    state.delete_flow_log(&Caller::Admin, "", &empty).unwrap();
    assert!(state.flow_log(&empty).is_none());
    // Dead hosts are not waited for.
    let (id, _) = create(
        &mut state,
        request(ResourceType::Vpc, "vpc-1", "store-1"),
        &mut gen_id,
    )
    .unwrap();
    let mut view = Hosts::default();
    view.dead.insert("b".into());
    state.settle(&view, usize::MAX);
    assert_eq!(status(&state, &id), Some(FlowLogStatus::Active));
    // `limit` bounds the changes per call.
    let (x, _) = create(
        &mut state,
        request(ResourceType::Vpc, "vpc-0", "store-x"),
        &mut gen_id,
    )
    .unwrap();
    let (y, _) = create(
        &mut state,
        request(ResourceType::Vpc, "vpc-0", "store-y"),
        &mut gen_id,
    )
    .unwrap();
    view.ack_all(&state);
    assert!(state.has_pending());
    state.settle(&view, 1);
    let active = [&x, &y]
        .iter()
        .filter(|id| status(&state, id) == Some(FlowLogStatus::Active))
        .count();
    assert_eq!(active, 1);
    state.settle(&view, 1);
    assert!(!state.has_pending());
}

#[test]
fn modify_changes_attributes_and_capture_sets() {
    let mut state = populated();
    let (id, _) = create(
        &mut state,
        request(ResourceType::VSwitch, "vsw-02", "store-1"),
        &mut ids(),
    )
    .unwrap();
    let modify =
        |name: Option<&str>, description: Option<&str>, interval: Option<u32>| ModifyFlowLogInput {
            flow_log_id: id.clone(),
            flow_log_name: name.map(str::to_owned),
            description: description.map(str::to_owned),
            aggregation_interval: interval,
            ..ModifyFlowLogInput::default()
        };
    let mutation = state
        .modify_flow_log(
            &Caller::Admin,
            modify(Some("renamed"), Some("new text"), None),
        )
        .unwrap();
    assert!(mutation.hosts.is_empty(), "names are not in capture sets");
    let fl = state.flow_log(&id).unwrap();
    assert_eq!(
        (fl.flow_log_name.as_str(), fl.description.as_str()),
        ("renamed", "new text")
    );
    let mutation = state
        .modify_flow_log(&Caller::Admin, modify(None, None, Some(1)))
        .unwrap();
    assert_eq!(mutation.hosts, hosts(&["b"]));
    assert_eq!(
        state.capture_set("b").interfaces[0].destinations[0].interval_seconds,
        60
    );
    assert!(
        !state
            .modify_flow_log(&Caller::Admin, modify(None, None, Some(1)))
            .unwrap()
            .changed()
    );
    let code = |input| {
        state
            .clone()
            .modify_flow_log(&Caller::Admin, input)
            .unwrap_err()
            .code()
    };
    assert_eq!(code(modify(None, None, None)), "MissingParameter.Attribute");
    assert_eq!(
        code(modify(None, None, Some(7))),
        "InvalidParameter.AggregationInterval"
    );
    assert_eq!(
        code(modify(Some("9x"), None, None)),
        "InvalidParameter.FlowLogName"
    );
    assert_eq!(
        code(modify(None, Some("http://x"), None)),
        "InvalidParameter.Description"
    );
    let mut missing = modify(Some("ok"), None, None);
    missing.flow_log_id = "fl-nope".into();
    assert_eq!(code(missing), "InvalidFlowLogId.NotFound");
    let mut empty = modify(Some("ok"), None, None);
    empty.flow_log_id.clear();
    assert_eq!(code(empty), "InvalidParameter.FlowLogId");
}

#[test]
fn describe_filters_and_pages() {
    let mut state = populated();
    let mut gen_id = ids();
    let mut created = Vec::new();
    for n in 0..23 {
        let (resource_type, resource_id) = match n % 3 {
            0 => (ResourceType::Vpc, "vpc-0"),
            1 => (ResourceType::VSwitch, "vsw-02"),
            _ => (ResourceType::NetworkInterface, "eni-00003"),
        };
        let mut input = request(resource_type, resource_id, &format!("store-{n:02}"));
        input.flow_log_name = format!("name{}", n % 2);
        if n == 7 {
            input.project_name = "other-proj".into();
        }
        created.push(create(&mut state, input, &mut gen_id).unwrap().0);
    }
    let page = |filter: DescribeFilter| state.describe_flow_logs(&Caller::Admin, &filter).unwrap();
    let ids_of = |p: &FlowLogPage| {
        p.flow_logs
            .iter()
            .map(|fl| fl.flow_log_id.clone())
            .collect::<Vec<_>>()
    };

    let first = page(DescribeFilter::default());
    assert_eq!(
        (first.total_count, first.page_number, first.page_size),
        (23, 1, 10)
    );
    assert_eq!(ids_of(&first), created[..10]);
    let third = page(DescribeFilter {
        page_number: 3,
        ..DescribeFilter::default()
    });
    assert_eq!(ids_of(&third), created[20..]);
    let beyond = page(DescribeFilter {
        page_number: u32::MAX,
        page_size: 50,
        ..DescribeFilter::default()
    });
    assert!(beyond.flow_logs.is_empty());
    assert_eq!(beyond.total_count, 23);
    assert_eq!(
        page(DescribeFilter {
            page_size: 50,
            ..DescribeFilter::default()
        })
        .flow_logs
        .len(),
        23
    );
    let err = state
        .describe_flow_logs(
            &Caller::Admin,
            &DescribeFilter {
                page_size: 51,
                ..DescribeFilter::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.code(), "InvalidParameter.PageSize");

    let count = |filter: DescribeFilter| page(filter).total_count;
    assert_eq!(
        count(DescribeFilter {
            vpc_id: "vpc-1".into(),
            ..DescribeFilter::default()
        }),
        8
    );
    assert_eq!(
        count(DescribeFilter {
            vpc_id: "vpc-0".into(),
            ..DescribeFilter::default()
        }),
        15
    );
    assert_eq!(
        count(DescribeFilter {
            resource_type: Some(ResourceType::NetworkInterface),
            ..DescribeFilter::default()
        }),
        7
    );
    assert_eq!(
        count(DescribeFilter {
            resource_id: "vpc-0".into(),
            flow_log_name: "name0".into(),
            ..DescribeFilter::default()
        }),
        4
    );
    assert_eq!(
        count(DescribeFilter {
            project_name: "other-proj".into(),
            ..DescribeFilter::default()
        }),
        1
    );
    assert_eq!(
        count(DescribeFilter {
            logstore_name: "store-05".into(),
            flow_log_id: created[5].clone(),
            ..DescribeFilter::default()
        }),
        1
    );
    assert_eq!(
        count(DescribeFilter {
            logstore_name: "store-05".into(),
            flow_log_id: created[6].clone(),
            ..DescribeFilter::default()
        }),
        0
    );
    assert_eq!(
        count(DescribeFilter {
            status: Some(FlowLogStatus::Activating),
            region_id: REGION.into(),
            ..DescribeFilter::default()
        }),
        23
    );
    assert_eq!(
        count(DescribeFilter {
            status: Some(FlowLogStatus::Inactive),
            ..DescribeFilter::default()
        }),
        0
    );
    let err = state
        .describe_flow_logs(
            &Caller::Admin,
            &DescribeFilter {
                region_id: "eu-central-1".into(),
                ..DescribeFilter::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.code(), "InvalidRegionId.NotFound");
}

/// Stored records: (key, value).
type Records = Vec<(String, Vec<u8>)>;

/// The stored records of a state, as a store would hold them.
fn stored(state: &State) -> Records {
    let mut records: Records = state
        .keys()
        .into_iter()
        .filter_map(|key| state.encode(&key).map(|value| (key.to_string(), value)))
        .collect();
    records.sort();
    records
}

#[test]
fn records_round_trip_and_are_checked() {
    let mut state = populated();
    let mut gen_id = ids();
    let mut input = request(ResourceType::Vpc, "vpc-0", "store-1");
    input.client_token = "tok".into();
    create(&mut state, input.clone(), &mut gen_id).unwrap();
    let (deleting, _) = create(
        &mut state,
        request(ResourceType::NetworkInterface, "eni-00004", "store-2"),
        &mut gen_id,
    )
    .unwrap();
    state
        .delete_flow_log(&Caller::Admin, "", &deleting)
        .unwrap();
    state
        .create_vpc(Vpc::new("vpc-e".into(), "9".into(), 3).unwrap())
        .unwrap();
    assert_eq!(
        State::restore(Vec::new()).unwrap(),
        None,
        "an empty store holds no state"
    );

    let mut restored = State::restore(stored(&state)).unwrap().unwrap();
    // Host versions are not stored: every host starts at the stored version.
    assert_eq!(restored.host_version("a"), state.version());
    assert_eq!(restored.host_version("never-seen"), state.version());
    assert_eq!(stored(&restored), stored(&state));
    for host in ["a", "b"] {
        assert_eq!(
            restored.capture_set(host).interfaces,
            state.capture_set(host).interfaces
        );
    }
    assert_eq!(status(&restored, &deleting), Some(FlowLogStatus::Deleting));
    // The token still deduplicates after a restore.
    let (again, mutation) = create(&mut restored, input, &mut gen_id).unwrap();
    assert_eq!(again, "fl-test0001");
    assert!(!mutation.changed());

    // Applying a mutation's keys to the stored records gives the stored records of the new state.
    let mut records: BTreeMap<String, Vec<u8>> = stored(&state).into_iter().collect();
    let mutation = state.deregister_eni("eni-00004").unwrap();
    for key in &mutation.keys {
        match state.encode(key) {
            Some(value) => records.insert(key.to_string(), value),
            None => records.remove(&key.to_string()),
        };
    }
    assert_eq!(records.into_iter().collect::<Vec<_>>(), stored(&state));

    let tamper = |f: &dyn Fn(&mut Records)| {
        let mut records = stored(&state);
        f(&mut records);
        State::restore(records).unwrap_err()
    };
    let replace = |records: &mut Records, key: &str, from: &str, to: &str| {
        let entry = records.iter_mut().find(|(k, _)| k == key).unwrap();
        let text = String::from_utf8(entry.1.clone()).unwrap();
        assert!(text.contains(from), "{text}");
        entry.1 = text.replace(from, to).into_bytes();
    };
    for (err, expected) in [
        (
            tamper(&|r| r.retain(|(k, _)| k != "meta")),
            "meta record is missing",
        ),
        (
            tamper(&|r| r.push(("zzz/1".into(), b"{}".to_vec()))),
            "unknown key",
        ),
        (
            tamper(&|r| replace(r, "meta", "\"format\":2", "\"format\":9")),
            "format 9",
        ),
        (tamper(&|r| r.retain(|(k, _)| k != "vsw/vsw-00")), "vsw-00"),
        (
            tamper(&|r| replace(r, "eni/eni-00002", "02:00:00:e1:00:02", "02:00:00:e1:00:01")),
            "MAC",
        ),
        (
            tamper(&|r| replace(r, "eni/eni-00002", "\"eni-00002\"", "\"eni-00003\"")),
            "holds",
        ),
        (
            tamper(&|r| {
                r.iter_mut().for_each(|(_, v)| {
                    if v.starts_with(b"{\"flow-log-id\"") {
                        v.truncate(10)
                    }
                })
            }),
            "fl/",
        ),
    ] {
        assert_eq!(err.code(), "InternalError.Snapshot");
        assert!(err.to_string().contains(expected), "{err} lacks {expected}");
    }
}

#[test]
fn region_state_id_and_enum_parsing() {
    assert!(State::new("cn-hangzhou", "st-1").is_ok());
    assert_eq!(
        State::new("", "st-1").unwrap_err().code(),
        "InvalidParameter.RegionId"
    );
    assert_eq!(
        State::new("CN", "st-1").unwrap_err().code(),
        "InvalidParameter.RegionId"
    );
    assert!(State::new("cn-hangzhou", "").is_err());
    assert!(State::new("cn-hangzhou", "a b").is_err());
    assert_eq!("vpc".parse::<ResourceType>().unwrap(), ResourceType::Vpc);
    assert_eq!(
        "VSwitch".parse::<ResourceType>().unwrap(),
        ResourceType::VSwitch
    );
    assert_eq!(
        "NetworkInterface".parse::<ResourceType>().unwrap(),
        ResourceType::NetworkInterface
    );
    assert_eq!(
        "x".parse::<ResourceType>().unwrap_err().code(),
        "InvalidParameter.ResourceType"
    );
    assert_eq!("drop".parse::<TrafficType>().unwrap(), TrafficType::Drop);
    assert_eq!(
        "y".parse::<TrafficType>().unwrap_err().code(),
        "InvalidParameter.TrafficType"
    );
    assert_eq!(
        "Active".parse::<FlowLogStatus>().unwrap(),
        FlowLogStatus::Active
    );
    assert_eq!(
        "z".parse::<FlowLogStatus>().unwrap_err().code(),
        "InvalidParameter.Status"
    );
    assert_eq!(AggregationInterval::from_minutes(0).unwrap().seconds(), 600);
    assert_eq!(Field::PageSize.name(), "PageSize");
    assert_eq!(Key::parse("eni/eni-1/x"), Some(Key::Eni("eni-1/x".into())));
    assert_eq!(Key::parse("eni/"), None);
    assert_eq!(Key::parse("meta"), Some(Key::Meta));
}
