//! `flowlog sql` and the built-in analyses (`talkers`, `traffic`, `rejected`, `eni-traffic`), run by the
//! collector (gRPC `Sql` and `Analyze`), printed as an aligned table, CSV or JSON lines.
//!
//! # Guarantees
//! - The analyses are run by the collector exactly as for the web view, so both show the same.
//! - `--format json` prints one JSON object per row (nulls included), `csv` a header line then rows; `table` an
//!   aligned table. A result cut at the row limit ends with a note on stderr, never silently.

use std::io::{Cursor, Write};

use anyhow::Context as _;
use clap::ValueEnum;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::StreamReader;
use flowlog_proto::v1::{Action, AnalysisKind, AnalyzeRequest, RankBy, SqlRequest, SqlResponse};

use super::{SourceArgs, connect};
use crate::analysis::{ActionFilter, Analysis, Filters, Measure};

/// How to print a result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per row.
    Json,
}

/// The window-start range of a query.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct RangeArgs {
    /// Only records whose window starts at or after this Unix second.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub from: Option<i64>,
    /// Only records whose window starts before this Unix second.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub to: Option<i64>,
}

/// `flowlog sql`: one SQL query over a logstore (the table `flows`).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct SqlArgs {
    /// Collector and logstore.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Window-start range applied before the SQL sees `flows`.
    #[command(flatten)]
    pub range: RangeArgs,
    /// At most this many rows (the collector's `sql-max-rows` caps it).
    #[arg(long, value_name = "N")]
    pub max_rows: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// The query, e.g. "SELECT srcaddr, SUM(bytes) FROM flows GROUP BY srcaddr".
    #[arg(value_name = "SQL")]
    pub sql: String,
}

/// Filters of the analyses.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct AnalysisFilterArgs {
    /// Window-start range.
    #[command(flatten)]
    pub range: RangeArgs,
    /// Only records of this ENI.
    #[arg(long = "eni", value_name = "ID")]
    pub eni_id: Option<String>,
    /// Only records with this source or destination address.
    #[arg(long = "addr", value_name = "ADDRESS")]
    pub address: Option<std::net::IpAddr>,
    /// Only records with this source or destination port.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Only records with this action.
    #[arg(long, value_enum, ignore_case = true)]
    pub action: Option<super::ActionArg>,
}

impl AnalysisFilterArgs {
    /// The filters as the analyses take them.
    pub fn filters(&self) -> Filters {
        Filters {
            eni_id: self.eni_id.clone(),
            address: self.address.map(|a| a.to_string()),
            port: self.port,
            action: self.action.map(|a| match a {
                super::ActionArg::Accept => ActionFilter::Accept,
                super::ActionArg::Reject => ActionFilter::Reject,
            }),
        }
    }
}

/// `flowlog talkers`: source addresses sending the most.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TalkersArgs {
    /// Collector and logstore.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Filters.
    #[command(flatten)]
    pub filter: AnalysisFilterArgs,
    /// How many talkers.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10)]
    pub limit: u64,
    /// Rank by bytes or packets.
    #[arg(long, value_enum, default_value_t = super::TopBy::Bytes)]
    pub by: super::TopBy,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// `flowlog traffic`: bytes, packets and rejected packets per time step.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TrafficArgs {
    /// Collector and logstore.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Filters.
    #[command(flatten)]
    pub filter: AnalysisFilterArgs,
    /// Width of a step, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub step: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// `flowlog rejected` / `flowlog eni-traffic`: the rejected flows, or the traffic per ENI.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RankedArgs {
    /// Collector and logstore.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Filters.
    #[command(flatten)]
    pub filter: AnalysisFilterArgs,
    /// How many rows.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10)]
    pub limit: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// `flowlog sql`, writing to `out`.
pub async fn write_sql(args: &SqlArgs, out: &mut (impl Write + Send)) -> anyhow::Result<()> {
    let (batches, truncated) = fetch(
        &args.source,
        &args.range,
        &args.sql,
        args.max_rows.unwrap_or(0),
    )
    .await?;
    print(&batches, args.format, truncated, out)
}

/// An analysis (run by the collector: gRPC `Analyze`), writing to `out`.
pub async fn write_analysis(
    source: &SourceArgs,
    filter: &AnalysisFilterArgs,
    analysis: Analysis,
    format: OutputFormat,
    out: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let (kind, limit, step_seconds, by) = match analysis {
        Analysis::Talkers { by, limit } => (
            AnalysisKind::Talkers,
            limit,
            0,
            match by {
                Measure::Bytes => RankBy::Bytes,
                Measure::Packets => RankBy::Packets,
            },
        ),
        Analysis::Traffic { step_seconds } => {
            (AnalysisKind::Traffic, 0, step_seconds, RankBy::Bytes)
        }
        Analysis::Rejected { limit } => (AnalysisKind::Rejected, limit, 0, RankBy::Bytes),
        Analysis::EniTraffic { limit } => (AnalysisKind::EniTraffic, limit, 0, RankBy::Bytes),
    };
    let request = AnalyzeRequest {
        project: source.project.clone(),
        logstore: source.logstore.clone(),
        from: filter.range.from,
        to: filter.range.to,
        kind: kind as i32,
        eni_id: filter.eni_id.clone(),
        address: filter.address.map(|a| a.to_string()),
        port: filter.port.map(u32::from),
        action: match filter.action {
            None => Action::Unspecified,
            Some(super::ActionArg::Accept) => Action::Accept,
            Some(super::ActionArg::Reject) => Action::Reject,
        } as i32,
        limit,
        step_seconds,
        by: by as i32,
    };
    let failed = || format!("analysis of {}/{} failed", source.project, source.logstore);
    let stream = connect(&source.collector)
        .await?
        .analyze(request)
        .await
        .with_context(failed)?
        .into_inner();
    let (batches, truncated) = collect_ipc(stream).await.with_context(failed)?;
    print(&batches, format, truncated, out)
}

/// The analysis a talkers command runs.
pub fn talkers(args: &TalkersArgs) -> Analysis {
    Analysis::Talkers {
        by: match args.by {
            super::TopBy::Bytes => Measure::Bytes,
            super::TopBy::Packets => Measure::Packets,
        },
        limit: args.limit,
    }
}

/// Runs a query on the collector and collects the result batches; says whether rows were cut.
pub async fn fetch(
    source: &SourceArgs,
    range: &RangeArgs,
    sql: &str,
    max_rows: u64,
) -> anyhow::Result<(Vec<RecordBatch>, bool)> {
    let request = SqlRequest {
        project: source.project.clone(),
        logstore: source.logstore.clone(),
        from: range.from,
        to: range.to,
        sql: sql.to_owned(),
        max_rows,
    };
    let failed = || format!("query of {}/{} failed", source.project, source.logstore);
    let stream = connect(&source.collector)
        .await?
        .sql(request)
        .await
        .with_context(failed)?
        .into_inner();
    collect_ipc(stream).await.with_context(failed)
}

/// Decodes a stream of Arrow IPC results; says whether rows were cut.
async fn collect_ipc(
    mut stream: tonic::Streaming<SqlResponse>,
) -> anyhow::Result<(Vec<RecordBatch>, bool)> {
    let mut batches = Vec::new();
    let mut truncated = false;
    while let Some(message) = stream.message().await? {
        truncated |= message.truncated;
        let reader = StreamReader::try_new(Cursor::new(message.arrow_ipc), None)
            .context("the collector sent a result that is not Arrow IPC")?;
        for batch in reader {
            batches.push(batch.context("the collector sent a damaged result")?);
        }
    }
    Ok((batches, truncated))
}

/// Prints result batches in `format`.
pub fn print(
    batches: &[RecordBatch],
    format: OutputFormat,
    truncated: bool,
    out: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Table => {
            let table = datafusion::arrow::util::pretty::pretty_format_batches(batches)?;
            writeln!(out, "{table}")?;
        }
        OutputFormat::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = datafusion::arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut *out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    out.flush()?;
    if truncated {
        eprintln!("flowlog: the result was cut at the row limit (--max-rows / sql-max-rows)");
    }
    Ok(())
}
