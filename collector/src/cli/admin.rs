//! `flowlog create-project | list-projects | delete-project | create-logstore | list-logstores |
//! update-logstore | delete-logstore`: managing projects and logstores through the collector's gRPC API.

use std::io::Write;
use std::str::FromStr;

use anyhow::Context as _;
use flowlog_proto::v1::{
    CreateLogstoreRequest, CreateProjectRequest, DeleteLogstoreRequest, DeleteProjectRequest,
    ListLogstoresRequest, ListProjectsRequest, Logstore, UpdateLogstoreRequest,
};

use super::{Table, connect, left, right, utc};

/// The collector to talk to.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CollectorAddr {
    /// The collector's gRPC address (`http://` is assumed when no scheme is given).
    #[arg(long, value_name = "ADDR", default_value = "http://127.0.0.1:7000")]
    pub collector: String,
}

/// A retention: `7d`, `36h`, a bare number of hours, or `0` (forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Hours; 0 = forever.
    pub hours: u32,
}

impl FromStr for Retention {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (number, factor) = match text.strip_suffix('d') {
            Some(days) => (days, 24),
            None => (text.strip_suffix('h').unwrap_or(text), 1),
        };
        number
            .parse::<u32>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .map(|hours| Retention { hours })
            .ok_or_else(|| format!("{text:?} is not a retention like 7d, 36h or 0"))
    }
}

/// `flowlog create-project`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CreateProjectArgs {
    /// The collector.
    #[command(flatten)]
    pub addr: CollectorAddr,
    /// Name: 3-63 characters of [a-z0-9-], alphanumeric at both ends.
    pub name: String,
    /// Free text.
    #[arg(long, default_value = "")]
    pub description: String,
}

/// `flowlog list-projects`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ListProjectsArgs {
    /// The collector.
    #[command(flatten)]
    pub addr: CollectorAddr,
}

/// `flowlog delete-project` (with every logstore in it and their data).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct DeleteProjectArgs {
    /// The collector.
    #[command(flatten)]
    pub addr: CollectorAddr,
    /// The project.
    pub name: String,
}

/// `flowlog create-logstore`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CreateLogstoreArgs {
    /// The collector.
    #[command(flatten)]
    pub addr: CollectorAddr,
    /// The (existing) project.
    #[arg(long, value_name = "P")]
    pub project: String,
    /// Name: 3-63 characters of [a-z0-9_-], alphanumeric at both ends.
    pub name: String,
    /// How long data is kept: 7d, 36h, or 0 = forever.
    #[arg(long, default_value = "0")]
    pub retention: Retention,
}

/// `flowlog list-logstores`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ListLogstoresArgs {
    /// The collector.
    #[command(flatten)]
    pub addr: CollectorAddr,
    /// Only this project's logstores.
    #[arg(long, value_name = "P")]
    pub project: Option<String>,
}

/// `flowlog update-logstore`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct UpdateLogstoreArgs {
    /// The collector.
    #[command(flatten)]
    pub addr: CollectorAddr,
    /// The project.
    #[arg(long, value_name = "P")]
    pub project: String,
    /// The logstore.
    pub name: String,
    /// How long data is kept: 7d, 36h, or 0 = forever.
    #[arg(long)]
    pub retention: Retention,
}

/// `flowlog delete-logstore`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct DeleteLogstoreArgs {
    /// The collector.
    #[command(flatten)]
    pub addr: CollectorAddr,
    /// The project.
    #[arg(long, value_name = "P")]
    pub project: String,
    /// The logstore.
    pub name: String,
}

/// `flowlog create-project`.
pub async fn create_project(args: &CreateProjectArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let project = connect(&args.addr.collector)
        .await?
        .create_project(CreateProjectRequest {
            name: args.name.clone(),
            description: args.description.clone(),
        })
        .await
        .with_context(|| format!("cannot create project {}", args.name))?
        .into_inner();
    writeln!(out, "created project {}", project.name)?;
    Ok(())
}

/// `flowlog list-projects`.
pub async fn list_projects(args: &ListProjectsArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let projects = connect(&args.addr.collector)
        .await?
        .list_projects(ListProjectsRequest {})
        .await
        .context("cannot list projects")?
        .into_inner()
        .projects;
    let rows: Vec<Vec<String>> = projects
        .iter()
        .map(|p| vec![p.name.clone(), created(p.created), p.description.clone()])
        .collect();
    let columns = [left("PROJECT"), left("CREATED (UTC)"), left("DESCRIPTION")];
    let mut table = Table::new(&columns);
    table.write(out, &rows)?;
    table.finish(out)?;
    Ok(())
}

/// `flowlog delete-project`.
pub async fn delete_project(args: &DeleteProjectArgs, out: &mut impl Write) -> anyhow::Result<()> {
    connect(&args.addr.collector)
        .await?
        .delete_project(DeleteProjectRequest {
            name: args.name.clone(),
        })
        .await
        .with_context(|| format!("cannot delete project {}", args.name))?;
    writeln!(out, "deleted project {}", args.name)?;
    Ok(())
}

/// `flowlog create-logstore`.
pub async fn create_logstore(
    args: &CreateLogstoreArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let logstore = connect(&args.addr.collector)
        .await?
        .create_logstore(CreateLogstoreRequest {
            project: args.project.clone(),
            name: args.name.clone(),
            retention_hours: args.retention.hours,
        })
        .await
        .with_context(|| format!("cannot create logstore {}/{}", args.project, args.name))?
        .into_inner();
    writeln!(
        out,
        "created logstore {}/{} (retention {})",
        logstore.project,
        logstore.name,
        retention_text(logstore.retention_hours)
    )?;
    Ok(())
}

/// `flowlog list-logstores`.
pub async fn list_logstores(args: &ListLogstoresArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let logstores = connect(&args.addr.collector)
        .await?
        .list_logstores(ListLogstoresRequest {
            project: args.project.clone().unwrap_or_default(),
        })
        .await
        .context("cannot list logstores")?
        .into_inner()
        .logstores;
    let columns = [
        left("PROJECT"),
        left("LOGSTORE"),
        left("RETENTION"),
        right("PARQUET RECORDS"),
        right("FILES"),
        right("PARQUET BYTES"),
        right("WAL BYTES"),
        left("PROBLEMS"),
    ];
    let rows: Vec<Vec<String>> = logstores.iter().map(logstore_row).collect();
    let mut table = Table::new(&columns);
    table.write(out, &rows)?;
    table.finish(out)?;
    Ok(())
}

/// `flowlog update-logstore`.
pub async fn update_logstore(
    args: &UpdateLogstoreArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let logstore = connect(&args.addr.collector)
        .await?
        .update_logstore(UpdateLogstoreRequest {
            project: args.project.clone(),
            name: args.name.clone(),
            retention_hours: args.retention.hours,
        })
        .await
        .with_context(|| format!("cannot update logstore {}/{}", args.project, args.name))?
        .into_inner();
    writeln!(
        out,
        "logstore {}/{}: retention {}",
        logstore.project,
        logstore.name,
        retention_text(logstore.retention_hours)
    )?;
    Ok(())
}

/// `flowlog delete-logstore`.
pub async fn delete_logstore(
    args: &DeleteLogstoreArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    connect(&args.addr.collector)
        .await?
        .delete_logstore(DeleteLogstoreRequest {
            project: args.project.clone(),
            name: args.name.clone(),
        })
        .await
        .with_context(|| format!("cannot delete logstore {}/{}", args.project, args.name))?;
    writeln!(out, "deleted logstore {}/{}", args.project, args.name)?;
    Ok(())
}

fn logstore_row(l: &Logstore) -> Vec<String> {
    let stats = l.stats.clone().unwrap_or_default();
    vec![
        l.project.clone(),
        l.name.clone(),
        retention_text(l.retention_hours),
        stats.parquet_records.to_string(),
        stats.parquet_files.to_string(),
        stats.parquet_bytes.to_string(),
        stats.wal_bytes.to_string(),
        if stats.problems.is_empty() {
            "-".into()
        } else {
            stats.problems.join("; ")
        },
    ]
}

fn retention_text(hours: u32) -> String {
    match hours {
        0 => "forever".into(),
        h if h % 24 == 0 => format!("{}d", h / 24),
        h => format!("{h}h"),
    }
}

fn created(seconds: i64) -> String {
    if seconds == 0 {
        "-".into()
    } else {
        utc(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions_parse() {
        assert_eq!("7d".parse::<Retention>(), Ok(Retention { hours: 168 }));
        assert_eq!("36h".parse::<Retention>(), Ok(Retention { hours: 36 }));
        assert_eq!("48".parse::<Retention>(), Ok(Retention { hours: 48 }));
        assert_eq!("0".parse::<Retention>(), Ok(Retention { hours: 0 }));
        for bad in ["", "d", "-1h", "1w", "999999999d"] {
            assert!(bad.parse::<Retention>().is_err(), "{bad}");
        }
        assert_eq!(retention_text(168), "7d");
        assert_eq!(retention_text(36), "36h");
        assert_eq!(retention_text(0), "forever");
    }
}
