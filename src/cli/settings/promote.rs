//! Settings of promote: to validated or to production, locally or on a remote.

use anyhow::Result;
use artifactctl::ops::promote::{ProductionOptions, ValidatedOptions};
use artifactctl::remote::{Direction, MoveLatest};
use artifactctl::store::refs::{Stage, Target};
use artifactctl::ArtifactError;

use super::*;
use crate::cli::commands::promote as promote_cmd;

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
