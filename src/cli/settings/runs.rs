//! Settings of the commands that make runs: register, refresh, checkout.

use std::path::Path;

use anyhow::{Context as _, Result};
use artifactctl::config::Config;
use artifactctl::ops::checkout::CheckoutOptions;
use artifactctl::ops::refresh::RefreshOptions;
use artifactctl::ops::register::RegisterOptions;
use artifactctl::policy::pipeline::Selection;
use artifactctl::store::metadata::parse_time;
use artifactctl::store::metrics::Metrics;
use artifactctl::ArtifactError;
use serde_json::{Map, Value};

use super::*;
use crate::cli::commands::{
    checkout as checkout_cmd, refresh as refresh_cmd, register as register_cmd,
};

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

pub(super) fn json_object(path: &Path) -> Result<Map<String, Value>> {
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

pub(super) fn metrics_file(path: &Path) -> Result<Metrics> {
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
