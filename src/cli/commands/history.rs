use anyhow::Result;
use artifactctl::ops::history;
use artifactctl::store::refs::Namespace;
use artifactctl::ExitCode;
use serde_json::{json, Value};

use crate::cli::printer::{Align, Printer, Table};
use crate::cli::settings::{Context, HistorySettings};

/// Show the audit journal: promotions, rollbacks, deletions, registrations
///
/// Each entry has its time (UTC), who made it, the action, its source and its
/// target, oldest first. With NS, only entries touching that namespace (or
/// below it).
///
/// Examples:
///   artifactctl history
///   artifactctl history gru/BTCEUR --action promote --action rollback
///   artifactctl history --remote origin --action push
///   artifactctl history --json | jq '.entries[] | select(.action == "rollback")'
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Only entries at or below this namespace, e.g. gru/BTCEUR
    #[arg(value_name = "NS", value_parser = Namespace::parse, default_value = "")]
    pub namespace: Namespace,
    /// Only this action (promote, rollback, delete, register, ...); repeatable
    #[arg(long = "action", value_name = "ACTION")]
    pub actions: Vec<String>,
    /// Read this remote's journal ([remotes.NAME]) instead of the local one
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Print {"schema_version":1,"entries":[{"time","user","host","action","source","target",...}]}
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let HistorySettings {
        options,
        remote,
        json,
    } = HistorySettings::resolve(args);
    let history = match &remote {
        Some(name) => {
            let (entries, problems) = super::open_remote(ctx, Some(name))?.journal()?;
            history::filter(entries, problems, &options)
        }
        None => history::history(&ctx.store, &options)?,
    };
    for problem in &history.problems {
        out.warn(problem);
    }
    if json {
        out.json(&json!({"entries": history.entries, "problems": history.problems}))?;
        return Ok(ExitCode::Success);
    }
    if history.entries.is_empty() {
        out.status("the journal has no matching entries");
        return Ok(ExitCode::Success);
    }
    let mut table = Table::new(&[
        ("TIME", Align::Left),
        ("USER", Align::Left),
        ("ACTION", Align::Left),
        ("SOURCE", Align::Left),
        ("TARGET", Align::Left),
        ("DETAIL", Align::Left),
    ]);
    for e in &history.entries {
        let detail = ["to", "version", "checkpoint"]
            .iter()
            .filter_map(|k| match e.details.get(*k) {
                Some(Value::String(s)) => Some(format!("{k}={s}")),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" ");
        table.row(vec![
            e.time.format("%Y-%m-%d %H:%M:%S").to_string(),
            e.user.clone(),
            e.action.clone(),
            e.source.clone().unwrap_or_else(|| "-".into()),
            e.target.clone().unwrap_or_else(|| "-".into()),
            detail,
        ]);
    }
    out.text(&table.render())?;
    Ok(ExitCode::Success)
}
