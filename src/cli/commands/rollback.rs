use anyhow::Result;
use artifactctl::ops::rollback;
use artifactctl::remote::Moved;
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
/// With --remote NAME, the remote's production latest moves back instead,
/// by compare-and-swap, to a release the remote holds; nothing local
/// changes.
///
/// Examples:
///   artifactctl rollback gru/BTCEUR
///   artifactctl rollback gru/BTCEUR --remote origin --to 1.0.0
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
    /// Move this remote's production latest back instead of the local one
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Print {"schema_version":1,"namespace","from","to"}
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let (options, json) = match RollbackSettings::resolve(args, ctx.invocation.now) {
        RollbackSettings::Local { options, json } => (options, json),
        RollbackSettings::Remote {
            remote,
            options,
            json,
        } => {
            let remote = super::open_remote(ctx, Some(&remote))?;
            let moved = artifactctl::remote::move_latest(&remote, &options)?;
            return report_moved(out, &moved, false, json);
        }
    };
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

/// What `promote --remote` and `rollback --remote` did to the remote latest.
pub fn report_moved(out: &Printer, moved: &Moved, dry_run: bool, json: bool) -> Result<ExitCode> {
    if json {
        out.json(moved)?;
    } else {
        out.line(&moved.reference)?;
    }
    let verb = if dry_run {
        "would move"
    } else if moved.moved {
        "moved"
    } else {
        "already at"
    };
    out.status(&format!(
        "remote '{}' {} latest{}: {verb} {} -> {}",
        moved.remote,
        moved.stage,
        if moved.namespace.is_empty() {
            String::new()
        } else {
            format!(" of {}", moved.namespace)
        },
        moved.from.as_deref().unwrap_or("none"),
        moved.to
    ));
    Ok(ExitCode::Success)
}
