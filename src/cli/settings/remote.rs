//! Settings of push and pull.

use anyhow::Result;
use artifactctl::remote::{PullOptions, PushOptions};
use artifactctl::store::refs::Namespace;
use artifactctl::ArtifactError;

use super::*;
use crate::cli::commands::{pull as pull_cmd, push as push_cmd};

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
