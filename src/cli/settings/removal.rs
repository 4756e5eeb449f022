//! Settings of the commands that remove: cleanup, delete, clear.

use std::path::PathBuf;

use anyhow::Result;
use artifactctl::ops::cleanup::{self, CleanupOptions};
use artifactctl::ops::clear::ClearOptions;
use artifactctl::ops::delete::DeleteOptions;
use artifactctl::policy::retention::Policy;
use artifactctl::remote::{GcOptions, RemoteCleanup};
use artifactctl::store::refs::{RunRef, Stage};
use artifactctl::ArtifactError;

use super::*;
use crate::cli::commands::{cleanup as cleanup_cmd, clear as clear_cmd, delete as delete_cmd};

/// `cleanup` works on the local store, or with `--remote` collects a
/// remote's garbage.
pub enum CleanupMode {
    Local(CleanupSettings),
    Remote {
        remote: String,
        options: RemoteCleanup,
        json: bool,
    },
}

pub struct CleanupSettings {
    pub options: CleanupOptions,
    pub dry_run: bool,
    pub yes: bool,
    pub json: bool,
}

impl CleanupSettings {
    pub fn resolve(args: cleanup_cmd::Args, ctx: &Context) -> Result<CleanupMode> {
        let cleanup_cmd::Args {
            namespace,
            stage,
            keep,
            keep_within,
            keep_daily,
            keep_weekly,
            keep_monthly,
            max_size,
            failed_older_than,
            dry_run,
            yes,
            json,
            unsafe_allow_production,
            unsafe_allow_remove_all,
            remote,
        } = args;
        let policy = policy_of(
            [keep, keep_daily, keep_weekly, keep_monthly],
            keep_within,
            max_size,
            ctx,
        )?;
        let retention_flags = [keep, keep_daily, keep_weekly, keep_monthly]
            .iter()
            .any(Option::is_some)
            || keep_within.is_some()
            || max_size.is_some();
        let scoped = namespace.is_some()
            || stage != Stage::Raw
            || failed_older_than.is_some()
            || unsafe_allow_production
            || unsafe_allow_remove_all;
        let options = |policy: Policy| -> Result<CleanupOptions> {
            Ok(CleanupOptions {
                namespace: namespace.unwrap_or_default(),
                stage,
                policy,
                failed_older_than: match failed_older_than {
                    Some(d) => d,
                    None => cleanup::failed_older_than_from_config(&ctx.config.cleanup)?,
                },
                allow_production: unsafe_allow_production,
                allow_remove_all: unsafe_allow_remove_all,
                now: ctx.invocation.now,
            })
        };
        if let Some(remote) = remote {
            let text = &ctx.config.remote.gc_grace;
            let grace = artifactctl::policy::retention::parse_duration(text).map_err(|e| {
                ArtifactError::usage(format!(
                    "[remote] gc_grace = {text:?} is not a duration ({e}); use e.g. 24h or 7d"
                ))
            })?;
            // Retention as locally: the flags' policy, else the config's; with
            // neither, only garbage is collected. NS, --stage and the like
            // without a policy, or `--keep 0` alone: refused as locally.
            if policy.is_empty() && (scoped || retention_flags) {
                cleanup::require_policy(&policy)?;
            }
            let retention = if policy.is_empty() {
                None
            } else {
                Some(options(policy)?)
            };
            // Without --yes, a cleanup of a remote only shows what it would do.
            return Ok(CleanupMode::Remote {
                remote,
                options: RemoteCleanup {
                    retention,
                    gc: GcOptions {
                        grace,
                        now: ctx.invocation.now,
                        dry_run: dry_run || !yes,
                    },
                },
                json,
            });
        }
        let options = options(policy)?;
        Ok(CleanupMode::Local(CleanupSettings {
            options,
            dry_run,
            yes,
            json,
        }))
    }
}

/// The flags' policy when any retention flag is given, else the config's.
fn policy_of(
    [keep, keep_daily, keep_weekly, keep_monthly]: [Option<usize>; 4],
    keep_within: Option<chrono::Duration>,
    max_size: Option<u64>,
    ctx: &Context,
) -> Result<Policy> {
    let given = keep.is_some()
        || keep_within.is_some()
        || keep_daily.is_some()
        || keep_weekly.is_some()
        || keep_monthly.is_some()
        || max_size.is_some();
    if !given {
        return cleanup::policy_from_config(&ctx.config.cleanup);
    }
    Ok(Policy {
        keep_last: keep.unwrap_or(0),
        keep_within,
        keep_daily: keep_daily.unwrap_or(0),
        keep_weekly: keep_weekly.unwrap_or(0),
        keep_monthly: keep_monthly.unwrap_or(0),
        max_size,
    })
}

// ---- clear ----

pub struct ClearSettings {
    pub options: ClearOptions,
    pub json: bool,
}

impl ClearSettings {
    pub fn resolve(args: clear_cmd::Args, ctx: &Context) -> Result<ClearSettings> {
        // --dry-run is what clear does without --force; clap keeps the two apart.
        let clear_cmd::Args {
            paths,
            force,
            dry_run: _,
            json,
        } = args;
        let cfg = &ctx.config.clear;
        let options = ClearOptions {
            root: ctx.invocation.root.clone(),
            cwd: ctx.invocation.cwd.clone(),
            paths,
            store_dir: ctx.store.dir().to_path_buf(),
            home: std::env::var_os("HOME").map(PathBuf::from),
            patterns: cfg
                .patterns
                .iter()
                .chain(&cfg.extra_patterns)
                .cloned()
                .collect(),
            keep: cfg.keep.clone(),
            cross_filesystems: cfg.cross_filesystems,
            force,
        };
        Ok(ClearSettings { options, json })
    }
}

// ---- the commands that only map flags ----

pub struct DeleteSettings {
    pub reference: RunRef,
    pub options: DeleteOptions,
    pub yes: bool,
}

impl DeleteSettings {
    pub fn resolve(args: delete_cmd::Args) -> DeleteSettings {
        let delete_cmd::Args {
            reference,
            yes,
            unsafe_allow_production,
        } = args;
        DeleteSettings {
            reference,
            options: DeleteOptions {
                allow_production: unsafe_allow_production,
            },
            yes,
        }
    }
}
