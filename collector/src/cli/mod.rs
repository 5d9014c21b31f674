//! The log service's `flowlog` subcommands: clap argument types and their runners, for the `flowlog` binary to
//! dispatch to ([`CollectorCommand`] flattens into its subcommands; [`run`] runs one).
//!
//! - `query`, `top`: records and 5-tuple flows, read with the record stream (`Query`), below;
//! - `sql`, `talkers`, `traffic`, `rejected`, `eni-traffic`: SQL run by the collector ([`sql`]);
//! - `create-project`, `list-projects`, `delete-project`, `create-logstore`, `list-logstores`,
//!   `update-logstore`, `delete-logstore` ([`admin`]).
//!
//! # Guarantees
//! - `query --json` prints one [`record_json`] line per record, in storage order, nothing else on stdout.
//! - Without `--json`, a table whose columns are aligned (widths from the first page of results, growing if a later
//!   value is wider); records are streamed, never all held in memory.
//! - `top` sums packets and bytes of OK records per (srcaddr, srcport, dstaddr, dstport, protocol) over the range
//!   and prints the largest flows; memory grows with the number of distinct flows, not of records.
//! - A closed stdout (`| head`) ends the command quietly.
//! - [`write_query`] and [`write_top`] do the same work into any writer (tests, other tools).

use std::collections::HashMap;
use std::io::{self, Write};

use anyhow::Context as _;
use clap::ValueEnum;
use flowlog_proto::v1::collector_client::CollectorClient;
use flowlog_proto::v1::{Action, LogStatus, QueryRequest, QueryResponse, Record};
use tonic::transport::Channel;

use crate::analysis::Analysis;
use crate::render;
pub use crate::render::record_json;

pub mod admin;
pub mod sql;

/// The log service's subcommands of `flowlog`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum CollectorCommand {
    /// Read records of a logstore from the collector.
    Query(QueryArgs),
    /// The top flows (5-tuples) of a logstore over a time range, by bytes or packets.
    Top(TopArgs),
    /// Run one SQL query on a logstore (the table `flows`).
    Sql(sql::SqlArgs),
    /// Top talkers: the source addresses sending the most.
    Talkers(sql::TalkersArgs),
    /// Traffic over time: bytes, packets and rejected packets per step.
    Traffic(sql::TrafficArgs),
    /// Rejected traffic per source, destination, port and protocol.
    Rejected(sql::RankedArgs),
    /// Traffic in and out of each ENI.
    EniTraffic(sql::RankedArgs),
    /// Create a project.
    CreateProject(admin::CreateProjectArgs),
    /// List the projects.
    ListProjects(admin::ListProjectsArgs),
    /// Delete a project with its logstores and their data.
    DeleteProject(admin::DeleteProjectArgs),
    /// Create a logstore in a project.
    CreateLogstore(admin::CreateLogstoreArgs),
    /// List logstores with their retention and storage figures.
    ListLogstores(admin::ListLogstoresArgs),
    /// Change a logstore's retention.
    UpdateLogstore(admin::UpdateLogstoreArgs),
    /// Delete a logstore and its data.
    DeleteLogstore(admin::DeleteLogstoreArgs),
}

/// Runs one subcommand, printing to stdout.
pub async fn run(command: CollectorCommand) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(io::stdout());
    let result = execute(&command, &mut out).await;
    quiet_broken_pipe(result.and_then(|()| Ok(out.flush()?)))
}

/// Runs one subcommand, writing its output to `out`.
pub async fn execute(
    command: &CollectorCommand,
    out: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    match command {
        CollectorCommand::Query(args) => write_query(args, out).await,
        CollectorCommand::Top(args) => write_top(args, out).await,
        CollectorCommand::Sql(args) => sql::write_sql(args, out).await,
        CollectorCommand::Talkers(args) => {
            sql::write_analysis(
                &args.source,
                &args.filter,
                sql::talkers(args),
                args.format,
                out,
            )
            .await
        }
        CollectorCommand::Traffic(args) => {
            let analysis = Analysis::Traffic {
                step_seconds: args.step,
            };
            sql::write_analysis(&args.source, &args.filter, analysis, args.format, out).await
        }
        CollectorCommand::Rejected(args) => {
            let analysis = Analysis::Rejected { limit: args.limit };
            sql::write_analysis(&args.source, &args.filter, analysis, args.format, out).await
        }
        CollectorCommand::EniTraffic(args) => {
            let analysis = Analysis::EniTraffic { limit: args.limit };
            sql::write_analysis(&args.source, &args.filter, analysis, args.format, out).await
        }
        CollectorCommand::CreateProject(args) => admin::create_project(args, out).await,
        CollectorCommand::ListProjects(args) => admin::list_projects(args, out).await,
        CollectorCommand::DeleteProject(args) => admin::delete_project(args, out).await,
        CollectorCommand::CreateLogstore(args) => admin::create_logstore(args, out).await,
        CollectorCommand::ListLogstores(args) => admin::list_logstores(args, out).await,
        CollectorCommand::UpdateLogstore(args) => admin::update_logstore(args, out).await,
        CollectorCommand::DeleteLogstore(args) => admin::delete_logstore(args, out).await,
    }
}

/// Where to read from: the collector and the logstore.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct SourceArgs {
    /// The collector's gRPC address (`http://` is assumed when no scheme is given).
    #[arg(long, value_name = "ADDR", default_value = "http://127.0.0.1:7000")]
    pub collector: String,
    /// The project.
    #[arg(long, value_name = "P")]
    pub project: String,
    /// The logstore.
    #[arg(long, value_name = "L")]
    pub logstore: String,
}

/// Which records: window range, ENI, action.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct FilterArgs {
    /// Only records whose window starts at or after this Unix second.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub from: Option<i64>,
    /// Only records whose window starts before this Unix second.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub to: Option<i64>,
    /// Only records of this ENI.
    #[arg(long = "eni", value_name = "ID")]
    pub eni_id: Option<String>,
    /// Only records with this action.
    #[arg(long, value_enum, ignore_case = true)]
    pub action: Option<ActionArg>,
}

/// A security-group verdict, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    /// Allowed traffic.
    #[value(name = "ACCEPT")]
    Accept,
    /// Denied traffic.
    #[value(name = "REJECT")]
    Reject,
}

/// `flowlog query`: read records of a logstore.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct QueryArgs {
    /// Collector and logstore.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Record filters.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most this many records.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// One JSON object per line (SPEC.md's record format) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What `flowlog top` ranks flows by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum TopBy {
    /// Sum of IP bytes.
    #[default]
    Bytes,
    /// Packet count.
    Packets,
}

/// `flowlog top`: the largest flows of a logstore over a range.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TopArgs {
    /// Collector and logstore.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Record filters.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// How many flows to show.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10)]
    pub limit: usize,
    /// Rank by bytes or packets.
    #[arg(long, value_enum, default_value_t = TopBy::Bytes)]
    pub by: TopBy,
}

/// Runs `flowlog query`, printing to stdout.
pub async fn run_query(args: QueryArgs) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(io::stdout());
    quiet_broken_pipe(write_query(&args, &mut out).await)
}

/// Runs `flowlog top`, printing to stdout.
pub async fn run_top(args: TopArgs) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(io::stdout());
    quiet_broken_pipe(write_top(&args, &mut out).await)
}

/// `flowlog query`, writing to `out` (flushed at the end).
pub async fn write_query(args: &QueryArgs, out: &mut (impl Write + Send)) -> anyhow::Result<()> {
    let request = request(&args.source, &args.filter, args.limit.unwrap_or(0));
    let mut stream = open_query(&args.source, request).await?;
    let mut table = Table::new(&QUERY_COLUMNS);
    while let Some(page) = stream
        .message()
        .await
        .with_context(|| query_failed(&args.source))?
    {
        if args.json {
            for r in &page.records {
                writeln!(out, "{}", record_json(r))?;
            }
        } else {
            let rows: Vec<Vec<String>> = page.records.iter().map(query_row).collect();
            table.write(out, &rows)?;
        }
    }
    if !args.json {
        table.finish(out)?;
    }
    out.flush()?;
    Ok(())
}

/// `flowlog top`, writing to `out` (flushed at the end).
pub async fn write_top(args: &TopArgs, out: &mut (impl Write + Send)) -> anyhow::Result<()> {
    let request = request(&args.source, &args.filter, 0);
    let mut stream = open_query(&args.source, request).await?;
    let mut flows: HashMap<FlowKey, (u64, u64)> = HashMap::new();
    let mut records = 0u64;
    while let Some(page) = stream
        .message()
        .await
        .with_context(|| query_failed(&args.source))?
    {
        for r in page
            .records
            .iter()
            .filter(|r| r.log_status == LogStatus::Ok as i32)
        {
            records += 1;
            let key = FlowKey {
                srcaddr: r.srcaddr.clone(),
                srcport: r.srcport.unwrap_or(0),
                dstaddr: r.dstaddr.clone(),
                dstport: r.dstport.unwrap_or(0),
                protocol: r.protocol.unwrap_or(0),
            };
            let sums = flows.entry(key).or_default();
            sums.0 = sums.0.saturating_add(r.packets);
            sums.1 = sums.1.saturating_add(r.bytes);
        }
    }
    let top = rank(flows, args.by, args.limit);
    let by = match args.by {
        TopBy::Bytes => "bytes",
        TopBy::Packets => "packets",
    };
    writeln!(
        out,
        "top {} flows by {by} in {}/{} ({records} OK records)",
        top.len(),
        args.source.project,
        args.source.logstore
    )?;
    let rows: Vec<Vec<String>> = top
        .iter()
        .enumerate()
        .map(|(i, (key, (packets, bytes)))| {
            vec![
                (i + 1).to_string(),
                address_text(&key.srcaddr),
                key.srcport.to_string(),
                address_text(&key.dstaddr),
                key.dstport.to_string(),
                protocol_name(Some(key.protocol)),
                packets.to_string(),
                bytes.to_string(),
            ]
        })
        .collect();
    let mut table = Table::new(&TOP_COLUMNS);
    table.write(out, &rows)?;
    table.finish(out)?;
    out.flush()?;
    Ok(())
}

/// A flow as `top` groups records.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct FlowKey {
    srcaddr: Vec<u8>,
    srcport: u32,
    dstaddr: Vec<u8>,
    dstport: u32,
    protocol: u32,
}

/// The `limit` largest flows, largest first; ties broken by the other measure, then by the flow.
fn rank(
    flows: HashMap<FlowKey, (u64, u64)>,
    by: TopBy,
    limit: usize,
) -> Vec<(FlowKey, (u64, u64))> {
    let mut all: Vec<(FlowKey, (u64, u64))> = flows.into_iter().collect();
    let measure = |(packets, bytes): (u64, u64)| match by {
        TopBy::Bytes => (bytes, packets),
        TopBy::Packets => (packets, bytes),
    };
    all.sort_by(|a, b| measure(b.1).cmp(&measure(a.1)).then_with(|| a.0.cmp(&b.0)));
    all.truncate(limit);
    all
}

fn request(source: &SourceArgs, filter: &FilterArgs, limit: u64) -> QueryRequest {
    QueryRequest {
        project: source.project.clone(),
        logstore: source.logstore.clone(),
        from: filter.from,
        to: filter.to,
        eni_id: filter.eni_id.clone(),
        action: match filter.action {
            None => Action::Unspecified,
            Some(ActionArg::Accept) => Action::Accept,
            Some(ActionArg::Reject) => Action::Reject,
        } as i32,
        limit,
    }
}

pub(crate) async fn connect(address: &str) -> anyhow::Result<CollectorClient<Channel>> {
    let endpoint = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    let client = CollectorClient::connect(endpoint.clone())
        .await
        .with_context(|| format!("cannot connect to the collector at {endpoint}"))?;
    Ok(client.max_decoding_message_size(64 << 20))
}

fn query_failed(source: &SourceArgs) -> String {
    format!("query of {}/{} failed", source.project, source.logstore)
}

async fn open_query(
    source: &SourceArgs,
    request: QueryRequest,
) -> anyhow::Result<tonic::Streaming<QueryResponse>> {
    Ok(connect(&source.collector)
        .await?
        .query(request)
        .await
        .with_context(|| query_failed(source))?
        .into_inner())
}

/// A closed stdout (the reader went away, as `| head` does) is not a failure.
fn quiet_broken_pipe(result: anyhow::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// A column: header and alignment.
pub(crate) struct Column {
    header: &'static str,
    right: bool,
}

pub(crate) const fn left(header: &'static str) -> Column {
    Column {
        header,
        right: false,
    }
}

pub(crate) const fn right(header: &'static str) -> Column {
    Column {
        header,
        right: true,
    }
}

const QUERY_COLUMNS: [Column; 14] = [
    left("START (UTC)"),
    right("SECS"),
    left("ENI"),
    left("DIR"),
    left("SRCADDR"),
    right("SPORT"),
    left("DSTADDR"),
    right("DPORT"),
    left("PROTO"),
    right("PACKETS"),
    right("BYTES"),
    left("ACTION"),
    left("FLAGS"),
    left("STATUS"),
];

const TOP_COLUMNS: [Column; 8] = [
    right("#"),
    left("SRCADDR"),
    right("SPORT"),
    left("DSTADDR"),
    right("DPORT"),
    left("PROTO"),
    right("PACKETS"),
    right("BYTES"),
];

/// A streamed, aligned text table: the header is printed with the first rows, whose widths set the columns'.
pub(crate) struct Table<'a> {
    columns: &'a [Column],
    widths: Vec<usize>,
    started: bool,
}

impl<'a> Table<'a> {
    pub(crate) fn new(columns: &'a [Column]) -> Self {
        Table {
            columns,
            widths: columns.iter().map(|c| c.header.len()).collect(),
            started: false,
        }
    }

    pub(crate) fn write(&mut self, out: &mut impl Write, rows: &[Vec<String>]) -> io::Result<()> {
        for row in rows {
            for (width, cell) in self.widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        if !self.started {
            self.started = true;
            let headers: Vec<String> = self.columns.iter().map(|c| c.header.to_owned()).collect();
            self.line(out, &headers)?;
        }
        rows.iter().try_for_each(|row| self.line(out, row))
    }

    /// Prints the header if no row came.
    pub(crate) fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        if self.started {
            Ok(())
        } else {
            self.write(out, &[])
        }
    }

    fn line(&self, out: &mut impl Write, cells: &[String]) -> io::Result<()> {
        let mut line = String::new();
        for ((column, width), cell) in self.columns.iter().zip(&self.widths).zip(cells) {
            if !line.is_empty() {
                line.push_str("  ");
            }
            let pad = width.saturating_sub(cell.chars().count());
            if column.right {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())
    }
}

fn query_row(r: &Record) -> Vec<String> {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    vec![
        utc(r.start),
        r.end.saturating_sub(r.start).to_string(),
        r.eni_id.clone(),
        or_dash(render::direction(r.direction).map(str::to_owned)),
        address_text(&r.srcaddr),
        or_dash(r.srcport.map(|p| p.to_string())),
        address_text(&r.dstaddr),
        or_dash(r.dstport.map(|p| p.to_string())),
        protocol_name(r.protocol),
        r.packets.to_string(),
        r.bytes.to_string(),
        or_dash(render::action(r.action).map(str::to_owned)),
        tcp_flags_text(r.tcp_flags),
        or_dash(render::log_status(r.log_status).map(str::to_owned)),
    ]
}

fn address_text(bytes: &[u8]) -> String {
    render::address(bytes).map_or_else(|| "-".to_owned(), |a| a.to_string())
}

fn protocol_name(protocol: Option<u32>) -> String {
    match protocol {
        None => "-".to_owned(),
        Some(1) => "ICMP".to_owned(),
        Some(6) => "TCP".to_owned(),
        Some(17) => "UDP".to_owned(),
        Some(47) => "GRE".to_owned(),
        Some(58) => "ICMPv6".to_owned(),
        Some(132) => "SCTP".to_owned(),
        Some(other) => other.to_string(),
    }
}

/// TCP flags as letters, FIN SYN RST PSH ACK URG = `FSRPAU`; `-` for none.
fn tcp_flags_text(flags: u32) -> String {
    let text: String = "FSRPAU"
        .chars()
        .enumerate()
        .filter(|(bit, _)| flags & (1 << bit) != 0)
        .map(|(_, c)| c)
        .collect();
    if text.is_empty() {
        "-".to_owned()
    } else {
        text
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC for a Unix second.
pub(crate) fn utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let time = seconds.rem_euclid(86_400);
    let (year, month, day) = crate::store::manifest::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Command {
        Query(QueryArgs),
        Top(TopArgs),
    }

    #[test]
    fn query_flags_parse() {
        let cli = Cli::try_parse_from([
            "flowlog",
            "query",
            "--project",
            "proj",
            "--logstore",
            "flows",
            "--from",
            "100",
            "--to",
            "200",
            "--eni",
            "eni-1",
            "--action",
            "reject",
            "--limit",
            "5",
            "--json",
        ])
        .unwrap();
        let Command::Query(args) = cli.command else {
            panic!("not a query")
        };
        assert_eq!(args.source.collector, "http://127.0.0.1:7000");
        assert_eq!(
            args.filter,
            FilterArgs {
                from: Some(100),
                to: Some(200),
                eni_id: Some("eni-1".into()),
                action: Some(ActionArg::Reject)
            }
        );
        assert_eq!(args.limit, Some(5));
        assert!(args.json);
        let req = request(&args.source, &args.filter, 5);
        assert_eq!(req.action, Action::Reject as i32);
        assert!(
            Cli::try_parse_from(["flowlog", "query", "--project", "p"]).is_err(),
            "logstore is required"
        );
    }

    #[test]
    fn top_flags_parse() {
        let cli = Cli::try_parse_from([
            "flowlog",
            "top",
            "--collector",
            "10.0.0.1:7000",
            "--project",
            "proj",
            "--logstore",
            "flows",
            "-n",
            "3",
            "--by",
            "packets",
        ])
        .unwrap();
        let Command::Top(args) = cli.command else {
            panic!("not top")
        };
        assert_eq!((args.limit, args.by), (3, TopBy::Packets));
        let cli =
            Cli::try_parse_from(["flowlog", "top", "--project", "p", "--logstore", "l"]).unwrap();
        let Command::Top(args) = cli.command else {
            panic!("not top")
        };
        assert_eq!((args.limit, args.by), (10, TopBy::Bytes));
    }

    #[test]
    fn ranking_is_by_measure_then_deterministic() {
        let key = |port| FlowKey {
            srcaddr: vec![10, 0, 0, 1],
            srcport: port,
            dstaddr: vec![],
            dstport: 0,
            protocol: 6,
        };
        let flows = HashMap::from([
            (key(1), (10, 100)),
            (key(2), (5, 500)),
            (key(3), (10, 100)),
            (key(4), (1, 1)),
        ]);
        let ports = |v: Vec<(FlowKey, (u64, u64))>| {
            v.into_iter().map(|(k, _)| k.srcport).collect::<Vec<_>>()
        };
        assert_eq!(ports(rank(flows.clone(), TopBy::Bytes, 3)), vec![2, 1, 3]);
        assert_eq!(ports(rank(flows, TopBy::Packets, 10)), vec![1, 3, 2, 4]);
    }

    #[test]
    fn table_aligns_columns() {
        let mut out = Vec::new();
        let mut table = Table::new(&TOP_COLUMNS[..3]);
        table
            .write(
                &mut out,
                &[vec!["1".into(), "10.0.0.1".into(), "80".into()]],
            )
            .unwrap();
        table
            .write(
                &mut out,
                &[vec!["2".into(), "fd00::1".into(), "65535".into()]],
            )
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "#  SRCADDR   SPORT\n1  10.0.0.1     80\n2  fd00::1   65535\n"
        );
    }

    #[test]
    fn texts() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_040), "2023-11-14 22:14:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
        assert_eq!(tcp_flags_text(0), "-");
        assert_eq!(tcp_flags_text(2 | 16), "SA");
        assert_eq!(tcp_flags_text(63), "FSRPAU");
        assert_eq!(protocol_name(Some(58)), "ICMPv6");
        assert_eq!(address_text(&[]), "-");
    }
}
