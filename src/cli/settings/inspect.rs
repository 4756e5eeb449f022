//! Settings of the commands that read: list, verify, history, rollback, report.

use std::path::PathBuf;

use anyhow::Result;
use artifactctl::ops::history::HistoryOptions;
use artifactctl::ops::report::ReportOptions;
use artifactctl::ops::rollback::RollbackOptions;
use artifactctl::ops::verify::VerifyOptions;
use artifactctl::policy::query::{Filter, SortKey};
use artifactctl::remote::{Direction, MoveLatest};
use artifactctl::store::refs::{Namespace, Stage};
use artifactctl::ArtifactError;
use chrono::{DateTime, Utc};

use super::*;
use crate::cli::commands::{
    history as history_cmd, list as list_cmd, report as report_cmd, rollback as rollback_cmd,
    verify as verify_cmd,
};

pub struct VerifySettings {
    pub options: VerifyOptions,
    pub repair: bool,
    pub json: bool,
}

impl VerifySettings {
    pub fn resolve(args: verify_cmd::Args) -> VerifySettings {
        let verify_cmd::Args {
            refs,
            all,
            repair,
            json,
        } = args;
        VerifySettings {
            options: VerifyOptions { refs, all },
            repair,
            json,
        }
    }
}

pub enum RollbackSettings {
    Local {
        options: RollbackOptions,
        json: bool,
    },
    /// `--remote NAME`: the remote's production latest moves back.
    Remote {
        remote: String,
        options: MoveLatest,
        json: bool,
    },
}

impl RollbackSettings {
    pub fn resolve(args: rollback_cmd::Args, now: DateTime<Utc>) -> RollbackSettings {
        let rollback_cmd::Args {
            namespace,
            to,
            remote,
            json,
        } = args;
        match remote {
            Some(remote) => RollbackSettings::Remote {
                remote,
                options: MoveLatest {
                    stage: Stage::Production,
                    namespace,
                    id: to,
                    direction: Direction::Back,
                    dry_run: false,
                    now,
                },
                json,
            },
            None => RollbackSettings::Local {
                options: RollbackOptions { namespace, to },
                json,
            },
        }
    }
}

pub struct HistorySettings {
    pub options: HistoryOptions,
    /// Read this remote's journal objects instead of the local journal.
    pub remote: Option<String>,
    pub json: bool,
}

impl HistorySettings {
    pub fn resolve(args: history_cmd::Args) -> HistorySettings {
        let history_cmd::Args {
            namespace,
            actions,
            remote,
            json,
        } = args;
        HistorySettings {
            options: HistoryOptions { namespace, actions },
            remote,
            json,
        }
    }
}

pub struct ReportSettings {
    pub options: ReportOptions,
    pub output: PathBuf,
}

impl ReportSettings {
    pub fn resolve(args: report_cmd::Args, ctx: &Context) -> Result<ReportSettings> {
        let report_cmd::Args {
            namespace,
            stage,
            metrics,
            output,
        } = args;
        let stages = if stage == "all" {
            ctx.store.stages().to_vec()
        } else {
            let stage: Stage = stage.parse()?;
            ctx.store.stage_dir(stage)?;
            vec![stage]
        };
        Ok(ReportSettings {
            options: ReportOptions {
                stages,
                under: namespace.unwrap_or_default(),
                metrics,
                title: ctx.store.dir().display().to_string(),
                now: ctx.invocation.now,
            },
            output,
        })
    }
}

// ---- push, pull ----

pub struct ListSettings {
    /// The NS as given, for the hint when it names no namespace.
    pub namespace: Option<String>,
    /// raw, validated, production or all.
    pub stage: String,
    pub under: Namespace,
    pub sort: SortKey,
    pub reverse: bool,
    pub filters: Vec<Filter>,
    pub limit: Option<usize>,
    /// `--remote NAME`: list that remote's runs instead.
    pub remote: Option<String>,
    pub json: bool,
}

impl ListSettings {
    pub fn resolve(args: list_cmd::Args, ctx: &Context) -> Result<ListSettings> {
        let list_cmd::Args {
            namespace,
            stage,
            sort,
            reverse,
            filters,
            limit,
            remote,
            json,
        } = args;
        let (stage, under) = scope(ctx, namespace.as_deref(), stage.as_deref())?;
        Ok(ListSettings {
            namespace,
            stage,
            under,
            sort,
            reverse,
            filters,
            limit,
            remote,
            json,
        })
    }
}

/// The stage text and namespace a `list [NS] [--stage S]` line means: a NS
/// whose first segment is a stage name (or `all`) names the stage.
pub(super) fn scope(
    ctx: &Context,
    ns: Option<&str>,
    stage: Option<&str>,
) -> Result<(String, Namespace)> {
    let Some(text) = ns else {
        return Ok((stage.unwrap_or("raw").to_string(), Namespace::root()));
    };
    let trimmed = text.trim_matches('/');
    let (first, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    if first == "all" || first.parse::<Stage>().is_ok() {
        if let Some(flag) = stage.filter(|s| *s != first) {
            return Err(ArtifactError::usage(format!(
                "'{text}' names the stage {first}, but --stage says {flag}; give one of them"
            ))
            .into());
        }
        return Ok((first.to_string(), Namespace::parse(rest)?));
    }
    match Namespace::parse(text) {
        Ok(ns) => Ok((stage.unwrap_or("raw").to_string(), ns)),
        Err(e) => Err(with_store_hint(ctx, text, e).into()),
    }
}

/// `list backend/models`, where backend/models is a folder on disk and not
/// a namespace: the user meant the store.
pub fn with_store_hint(ctx: &Context, text: &str, err: ArtifactError) -> ArtifactError {
    if ctx.invocation.cwd.join(text).is_dir() {
        ArtifactError::new(
            err.kind,
            format!("{}; did you mean --store {text}?", err.message),
        )
    } else {
        err
    }
}
