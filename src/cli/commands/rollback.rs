use anyhow::Result;
use artifactctl::ops::rollback;
use artifactctl::store::refs::{self, Namespace};
use artifactctl::ExitCode;
use serde_json::json;

use crate::cli::printer::Printer;
use crate::cli::settings::{Context, RollbackSettings};

/// Point production latest back to an earlier release
///
/// Without --to, latest moves to the highest release below the current one.
/// In a flat legacy store (seed 003's timestamped versions), the store's own
/// latest moves to the previous complete run in time order.
/// Nothing is deleted: the newer release stays, and `rollback --to` can move
/// latest forward again. The change is journaled and noted in
/// production/CHANGELOG.md.
///
/// Examples:
///   artifactctl rollback gru/BTCEUR
///   artifactctl rollback gru/BTCEUR --to 1.0.0
///   artifactctl rollback                # a store without namespaces
///   artifactctl --store backend/models rollback   # seed 003's versions folder
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Namespace of the release, e.g. gru/BTCEUR
    #[arg(value_name = "NS", value_parser = Namespace::parse, default_value = "")]
    pub namespace: Namespace,
    /// The release to return to [default: the one below the current latest]
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    /// Print {"schema_version":1,"namespace","from","to"}
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let RollbackSettings { options, json } = RollbackSettings::resolve(args);
    let done = rollback::rollback(&ctx.store, &options)?;
    let to_ref = refs::format_ref(done.stage, &done.namespace, &done.to);
    if json {
        out.json(&json!({"namespace": done.namespace.to_string(), "from": done.from, "to": done.to, "ref": to_ref}))?;
    } else {
        out.line(&to_ref)?;
    }
    out.status(&format!(
        "{} latest: {} -> {}",
        done.stage,
        done.from.as_deref().unwrap_or("none"),
        done.to
    ));
    Ok(ExitCode::Success)
}
