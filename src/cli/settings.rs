//! Flags, environment and config file resolved in one place, before any
//! command does I/O on the store: [`Context`] (root, config, store and the
//! [`Invocation`]) and, per command, its settings: the library's options
//! struct plus the few flags only the binary acts on (`--json`, `--yes`,
//! `--dry-run`).
//!
//! Each `resolve` destructures its clap `Args` with no `..`, so a flag added
//! to a command and not resolved here fails to compile.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use artifactctl::config::{self, Config};
use artifactctl::ops::checkout::CheckoutOptions;
use artifactctl::ops::cleanup::{self, CleanupOptions};
use artifactctl::ops::clear::ClearOptions;
use artifactctl::ops::delete::DeleteOptions;
use artifactctl::ops::history::HistoryOptions;
use artifactctl::ops::promote::{ProductionOptions, ValidatedOptions};
use artifactctl::ops::refresh::RefreshOptions;
use artifactctl::ops::register::RegisterOptions;
use artifactctl::ops::report::ReportOptions;
use artifactctl::ops::rollback::RollbackOptions;
use artifactctl::ops::verify::VerifyOptions;
use artifactctl::policy::pipeline::Selection;
use artifactctl::policy::query::{Filter, SortKey};
use artifactctl::policy::retention::Policy;
use artifactctl::remote::{Direction, GcOptions, MoveLatest, PullOptions, PushOptions};
use artifactctl::store::metadata::parse_time;
use artifactctl::store::metrics::Metrics;
use artifactctl::store::refs::{Namespace, RunRef, Stage, Target};
use artifactctl::store::{ReadOptions, Store};
use artifactctl::ArtifactError;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::cli::args::GlobalArgs;
use crate::cli::commands::{
    checkout as checkout_cmd, cleanup as cleanup_cmd, clear as clear_cmd, delete as delete_cmd,
    history as history_cmd, list as list_cmd, promote as promote_cmd, pull as pull_cmd,
    push as push_cmd, refresh as refresh_cmd, register as register_cmd, report as report_cmd,
    rollback as rollback_cmd, verify as verify_cmd,
};
use crate::cli::printer::Printer;

/// Pins the time of a run in debug builds (tests), in RFC 3339. Release
/// builds ignore it.
pub const NOW_ENV: &str = "ARTIFACTCTL_NOW";

/// What this run of the binary is: where, with which command line, and at
/// which time. Built once, and handed to every operation that records it.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The working directory, which relative paths are taken from.
    pub cwd: PathBuf,
    /// The project root: `--root`, `ARTIFACTCTL_ROOT`, the nearest ancestor
    /// holding `artifactctl.toml`, or the working directory.
    pub root: PathBuf,
    /// The command line, recorded as the producer of what is written.
    pub command: Vec<String>,
    /// The time the run is stamped with.
    pub now: DateTime<Utc>,
}

impl Invocation {
    fn capture(global: &GlobalArgs) -> Result<Invocation> {
        let cwd = std::env::current_dir().context("the working directory cannot be read")?;
        let root = config::find_root(&cwd, global.root.as_deref())?;
        Ok(Invocation {
            cwd,
            root,
            command: std::env::args().collect(),
            now: now()?,
        })
    }
}

/// The clock, or `ARTIFACTCTL_NOW` in debug builds.
fn now() -> Result<DateTime<Utc>> {
    #[cfg(debug_assertions)]
    if let Some(text) = std::env::var_os(NOW_ENV) {
        let text = text.to_string_lossy();
        return DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                ArtifactError::usage(format!(
                    "bad {NOW_ENV} '{text}': {e}; use RFC 3339, e.g. 2026-11-23T10:15:00Z"
                ))
                .into()
            });
    }
    Ok(Utc::now())
}

pub struct Context {
    pub invocation: Invocation,
    pub config: Config,
    pub store: Store,
    /// Where the store's path came from when the user named it (`--store`,
    /// `[store] dir`); `None` for the default `<root>/artifacts`.
    pub store_named_by: Option<String>,
}

impl Context {
    pub fn resolve(global: &GlobalArgs, out: &Printer) -> Result<Context> {
        let invocation = Invocation::capture(global)?;
        let loaded = Config::load(&invocation.root, std::env::vars())?;
        if let Some(file) = &loaded.file {
            for warning in &loaded.warnings {
                out.warn(&format!("{}: {warning}; it is ignored", file.display()));
            }
        }
        let default_dir = config::StoreConfig::default().dir;
        let (store_dir, store_named_by) = match &global.store {
            Some(dir) => (invocation.cwd.join(dir), Some("--store".to_string())),
            None => (
                config::resolve_path(&invocation.root, &loaded.config.store.dir),
                (loaded.config.store.dir != default_dir).then(|| match &loaded.file {
                    Some(file) => {
                        format!("[store] dir in {} or ARTIFACTCTL_STORE_DIR", file.display())
                    }
                    None => "ARTIFACTCTL_STORE_DIR".to_string(),
                }),
            ),
        };
        Ok(Context {
            invocation,
            config: loaded.config,
            store: Store::open(store_dir),
            store_named_by,
        })
    }

    /// The store must be a folder; one the user named must also exist,
    /// unless the command creates it (`creates`: register, refresh). A
    /// missing default store is a new project's empty store. A typo in
    /// `--store` must not read as "no runs".
    pub fn check_store(&self, creates: bool) -> Result<()> {
        let dir = self.store.dir();
        let from = self
            .store_named_by
            .as_deref()
            .map(|s| format!(" (from {s})"))
            .unwrap_or_default();
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(ArtifactError::usage(format!(
                "store {} is not a folder{from}; point --store at the folder that holds the runs",
                dir.display()
            ))
            .into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if creates || self.store_named_by.is_none() {
                    return Ok(());
                }
                Err(ArtifactError::usage(format!(
                    "store {} does not exist{from}; check the path (register creates a new store)",
                    dir.display()
                ))
                .into())
            }
            Err(e) => {
                Err(anyhow::Error::new(e)
                    .context(format!("cannot read the store {}", dir.display())))
            }
        }
    }

    pub fn read_options(&self, detail: bool) -> Result<ReadOptions> {
        ReadOptions::new(&self.config.list.model_patterns, detail)
    }
}

// ---- register ----

pub struct RegisterSettings {
    pub options: RegisterOptions,
    /// `--all`: the folder is a legacy store whose every version is imported.
    pub all: bool,
    pub json: bool,
}

impl RegisterSettings {
    pub fn resolve(args: register_cmd::Args, ctx: &Context) -> Result<RegisterSettings> {
        let register_cmd::Args {
            dir,
            namespace,
            id,
            config,
            metrics,
            params,
            metric,
            tags,
            move_in,
            allow_empty,
            created_at,
            all,
            json,
        } = args;
        // The one metrics reader: nested objects flatten with dots, and what
        // is not a number is kept as a param instead of refused.
        let mut read = match &metrics {
            Some(path) => metrics_file(path)?,
            None => Metrics::default(),
        };
        for (k, v) in &metric {
            read.add_text(k, v);
        }
        let all_metrics = read.values;
        let mut notes = read.notes;
        notes.extend(params.iter().map(|(k, v)| (k.clone(), param_value(v))));
        let params = notes;
        let created_at = match &created_at {
            Some(text) => Some(parse_time(text).ok_or_else(|| {
                ArtifactError::usage(format!(
                    "bad --created-at '{text}': use RFC 3339, e.g. 2026-11-23T10:15:00Z"
                ))
            })?),
            None => None,
        };
        let options = RegisterOptions {
            source: dir,
            namespace,
            id,
            config: config.as_deref().map(json_object).transpose()?,
            metrics: all_metrics,
            params,
            tags,
            move_in,
            link_in: false,
            allow_empty,
            created_at,
            project_root: ctx.invocation.root.clone(),
            command: ctx.invocation.command.clone(),
            now: Some(ctx.invocation.now),
        };
        Ok(RegisterSettings { options, all, json })
    }
}

fn json_object(path: &Path) -> Result<Map<String, Value>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "yaml" | "yml") {
        return Err(ArtifactError::usage(format!(
            "{}: YAML is not read yet; convert it to JSON (python -c 'import json,yaml,sys; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)' FILE)",
            path.display()
        ))
        .into());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => {
            Err(ArtifactError::usage(format!("{}: expected a JSON object", path.display())).into())
        }
        Err(e) => {
            Err(ArtifactError::usage(format!("{}: invalid JSON: {e}", path.display())).into())
        }
    }
}

fn metrics_file(path: &Path) -> Result<Metrics> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "yaml" | "yml") {
        // The YAML refusal with its conversion hint.
        json_object(path)?;
    }
    artifactctl::store::metrics::read_file(path, "--metrics")
}

/// A `--param` value: `30` is a number, `true` a boolean, anything else text.
pub fn param_value(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(text.to_string()),
    }
}

// ---- refresh ----

pub struct RefreshSettings {
    pub options: RefreshOptions,
    pub dry_run: bool,
    pub json: bool,
}

impl RefreshSettings {
    /// `quiet` stops step logs from streaming.
    pub fn resolve(args: refresh_cmd::Args, ctx: &Context, quiet: bool) -> Result<RefreshSettings> {
        let refresh_cmd::Args {
            datasets_only,
            models_only,
            skip,
            only,
            dataset,
            dry_run,
            force,
            verify_reuse,
            publish_unchanged,
            keep_going,
            jobs,
            params,
            namespace,
            id,
            json,
        } = args;
        let options = RefreshOptions {
            project_root: ctx.invocation.root.clone(),
            config: ctx.config.refresh.clone(),
            selection: Selection {
                datasets_only,
                models_only,
                skip,
                only,
            },
            namespace,
            id,
            dataset,
            params: params
                .iter()
                .map(|(k, v)| (k.clone(), param_value(v)))
                .collect(),
            force,
            keep_going,
            jobs: usize::from(jobs),
            stream_logs: !quiet,
            command: ctx.invocation.command.clone(),
            now: Some(ctx.invocation.now),
            verify_reuse,
            publish_unchanged,
        };
        Ok(RefreshSettings {
            options,
            dry_run,
            json,
        })
    }
}

// ---- promote ----

pub enum PromoteSettings {
    /// `--remote NAME`: the remote's latest of REF's stage moves to REF.
    Remote {
        remote: String,
        options: MoveLatest,
        json: bool,
    },
    Validated {
        options: ValidatedOptions,
        dry_run: bool,
        json: bool,
    },
    Production {
        options: ProductionOptions,
        approve: bool,
        dry_run: bool,
        json: bool,
    },
}

impl PromoteSettings {
    pub fn resolve(args: promote_cmd::Args, ctx: &Context) -> Result<PromoteSettings> {
        let promote_cmd::Args {
            reference,
            to,
            checkpoint,
            files,
            step,
            results,
            id,
            release_version,
            approve,
            deploy_config,
            notes,
            allow_downgrade,
            dry_run,
            remote,
            json,
        } = args;
        if let Some(remote) = remote {
            let given = [
                ("--to", to.is_some()),
                ("--checkpoint", checkpoint.is_some()),
                ("--file", !files.is_empty()),
                ("--step", step.is_some()),
                ("--results", results.is_some()),
                ("--id", id.is_some()),
                ("--version", release_version.is_some()),
                ("--deploy-config", deploy_config.is_some()),
                ("--notes", notes.is_some()),
                ("--allow-downgrade", allow_downgrade),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
                return Err(ArtifactError::usage(format!(
                    "{flag} does not apply with --remote, which moves the remote latest of REF's stage to REF (a run already pushed)"
                ))
                .into());
            }
            let stage = reference.stage();
            if stage == Stage::Production && !approve && !dry_run {
                return Err(ArtifactError::usage(
                    "moving the remote production latest needs --approve (or --dry-run to see what it would do)",
                )
                .into());
            }
            let id = match reference.target {
                Target::Id(id) => id,
                Target::Latest => {
                    return Err(ArtifactError::usage(
                        "with --remote, REF names the run latest moves to, not latest itself",
                    )
                    .into())
                }
            };
            return Ok(PromoteSettings::Remote {
                remote,
                options: MoveLatest {
                    stage,
                    namespace: reference.namespace,
                    id: Some(id),
                    direction: Direction::Forward,
                    dry_run,
                    now: ctx.invocation.now,
                },
                json,
            });
        }
        // Without --to, a ref goes to the stage after its own.
        let to = match (to, reference.stage()) {
            (Some(to), _) => to,
            (None, Stage::Raw) => Stage::Validated,
            (None, Stage::Validated) => Stage::Production,
            (None, Stage::Production) => {
                return Err(ArtifactError::usage(
                    "REF is already in production, the last stage: there is nothing to promote it to; `artifactctl rollback` moves production latest",
                )
                .into())
            }
        };
        let refuse = |flags: &[(&str, bool)]| -> Result<()> {
            match flags.iter().find(|(_, given)| *given) {
                Some((flag, _)) => {
                    Err(ArtifactError::usage(format!("{flag} does not apply to --to {to}")).into())
                }
                None => Ok(()),
            }
        };
        let invocation = &ctx.invocation;
        if to == Stage::Production {
            refuse(&[
                ("--checkpoint", checkpoint.is_some()),
                ("--file", !files.is_empty()),
                ("--step", step.is_some()),
                ("--results", results.is_some()),
                ("--id (the version is the id)", id.is_some()),
            ])?;
            let Some(version) = release_version else {
                return Err(ArtifactError::usage(
                    "--to production needs --version X.Y.Z (semantic versioning, above the current production latest)",
                )
                .into());
            };
            let options = ProductionOptions {
                reference,
                version,
                allow_downgrade,
                deploy_config,
                notes,
                require: ctx.config.promote.production.require.clone(),
                project_root: invocation.root.clone(),
                command: invocation.command.clone(),
                now: invocation.now,
            };
            return Ok(PromoteSettings::Production {
                options,
                approve,
                dry_run,
                json,
            });
        }
        refuse(&[
            ("--version", release_version.is_some()),
            ("--approve", approve),
            ("--deploy-config", deploy_config.is_some()),
            ("--notes", notes.is_some()),
            ("--allow-downgrade", allow_downgrade),
        ])?;
        let config = &ctx.config.promote.validated;
        let options = ValidatedOptions {
            reference,
            checkpoint,
            default_checkpoint: config.checkpoint.clone(),
            files,
            step,
            include: config.include.clone(),
            exclude: config.exclude.clone(),
            require: config.require.clone(),
            results,
            id,
            project_root: invocation.root.clone(),
            command: invocation.command.clone(),
            now: invocation.now,
        };
        Ok(PromoteSettings::Validated {
            options,
            dry_run,
            json,
        })
    }
}

// ---- cleanup ----

/// `cleanup` works on the local store, or with `--remote` collects a
/// remote's garbage.
pub enum CleanupMode {
    Local(CleanupSettings),
    Remote {
        remote: String,
        options: GcOptions,
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
        if let Some(remote) = remote {
            let given = [
                ("NS", namespace.is_some()),
                ("--keep", keep.is_some()),
                ("--keep-within", keep_within.is_some()),
                ("--keep-daily", keep_daily.is_some()),
                ("--keep-weekly", keep_weekly.is_some()),
                ("--keep-monthly", keep_monthly.is_some()),
                ("--max-size", max_size.is_some()),
                ("--failed-older-than", failed_older_than.is_some()),
                ("--unsafe-allow-production", unsafe_allow_production),
                ("--unsafe-allow-remove-all", unsafe_allow_remove_all),
                ("--stage", stage != Stage::Raw),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
                return Err(ArtifactError::usage(format!(
                    "{flag} does not apply with --remote: cleanup --remote collects unreferenced content only (retention on a remote is not implemented yet)"
                ))
                .into());
            }
            let text = &ctx.config.remote.gc_grace;
            let grace = artifactctl::policy::retention::parse_duration(text).map_err(|e| {
                ArtifactError::usage(format!(
                    "[remote] gc_grace = {text:?} is not a duration ({e}); use e.g. 24h or 7d"
                ))
            })?;
            // Without --yes, a cleanup of a remote only shows what it would do.
            return Ok(CleanupMode::Remote {
                remote,
                options: GcOptions {
                    grace,
                    now: ctx.invocation.now,
                    dry_run: dry_run || !yes,
                },
                json,
            });
        }
        // The flags' policy when any retention flag is given, else the config's.
        let given = keep.is_some()
            || keep_within.is_some()
            || keep_daily.is_some()
            || keep_weekly.is_some()
            || keep_monthly.is_some()
            || max_size.is_some();
        let policy = if given {
            Policy {
                keep_last: keep.unwrap_or(0),
                keep_within,
                keep_daily: keep_daily.unwrap_or(0),
                keep_weekly: keep_weekly.unwrap_or(0),
                keep_monthly: keep_monthly.unwrap_or(0),
                max_size,
            }
        } else {
            cleanup::policy_from_config(&ctx.config.cleanup)?
        };
        let failed_older_than = match failed_older_than {
            Some(d) => d,
            None => cleanup::failed_older_than_from_config(&ctx.config.cleanup)?,
        };
        let options = CleanupOptions {
            namespace: namespace.unwrap_or_default(),
            stage,
            policy,
            failed_older_than,
            allow_production: unsafe_allow_production,
            allow_remove_all: unsafe_allow_remove_all,
            now: ctx.invocation.now,
        };
        Ok(CleanupMode::Local(CleanupSettings {
            options,
            dry_run,
            yes,
            json,
        }))
    }
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

pub struct CheckoutSettings {
    pub options: CheckoutOptions,
    pub json: bool,
}

impl CheckoutSettings {
    pub fn resolve(args: checkout_cmd::Args, ctx: &Context) -> CheckoutSettings {
        let checkout_cmd::Args { target, to, json } = args;
        CheckoutSettings {
            options: CheckoutOptions {
                reference: target.reference,
                project_root: ctx.invocation.root.clone(),
                workspaces: workspaces(&ctx.config),
                to,
            },
            json,
        }
    }
}

/// `(step, workspace path)` of every refresh step that has one.
pub fn workspaces(config: &Config) -> Vec<(String, String)> {
    config
        .refresh
        .steps
        .iter()
        .filter_map(|s| s.workspace.clone().map(|w| (s.name.clone(), w)))
        .collect()
}
// ---- report ----

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

pub struct PushSettings {
    /// `--remote`, or `[remote] default` when it is `None`.
    pub remote: Option<String>,
    pub options: PushOptions,
    pub json: bool,
}

impl PushSettings {
    pub fn resolve(args: push_cmd::Args, ctx: &Context) -> Result<PushSettings> {
        let push_cmd::Args {
            refs,
            all,
            stage,
            remote,
            jobs,
            json,
        } = args;
        let mut runs = Vec::new();
        if all {
            let stages =
                crate::cli::commands::list::stages_for(ctx, stage.as_deref().unwrap_or("all"))?;
            runs.extend(ctx.store.locations(&stages, &Namespace::root()));
        } else if stage.is_some() {
            return Err(
                ArtifactError::usage("--stage goes with --all; name runs as REF instead").into(),
            );
        }
        for r in &refs {
            runs.push(ctx.store.resolve(r)?.location);
        }
        if runs.is_empty() {
            return Err(ArtifactError::usage(
                "nothing to push: name runs (`artifactctl push latest`) or pass --all",
            )
            .into());
        }
        Ok(PushSettings {
            remote,
            options: PushOptions {
                runs,
                jobs: jobs.max(1),
                now: ctx.invocation.now,
                read: ctx.read_options(false)?,
            },
            json,
        })
    }
}

pub struct PullSettings {
    /// `--remote`, or `[remote] default` when it is `None`.
    pub remote: Option<String>,
    pub options: PullOptions,
    pub json: bool,
}

impl PullSettings {
    pub fn resolve(args: pull_cmd::Args) -> PullSettings {
        let pull_cmd::Args {
            refs,
            remote,
            jobs,
            json,
        } = args;
        PullSettings {
            remote,
            options: PullOptions {
                refs,
                jobs: jobs.max(1),
            },
            json,
        }
    }
}

// ---- list ----

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
fn scope(ctx: &Context, ns: Option<&str>, stage: Option<&str>) -> Result<(String, Namespace)> {
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
