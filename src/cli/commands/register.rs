use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use artifactctl::ops::register::{register, RegisterOptions};
use artifactctl::store::metadata::parse_time;
use artifactctl::store::refs::Namespace;
use artifactctl::{ArtifactError, ExitCode};
use serde_json::{Map, Value};

use crate::cli::commands::key_value;
use crate::cli::printer::{human_size, Output};
use crate::cli::reporters;
use crate::cli::settings::Context;

/// Copy a folder of training outputs into the store as a new raw run
///
/// Every file is hashed (BLAKE3) into the run's manifest, the run is
/// published atomically and `latest` moves to it. A metadata.json or
/// training_metadata.json already in the folder is imported. Prints the new
/// run's ref on stdout.
///
/// Examples:
///   artifactctl register sandbox-training/checkpoints/v5_5 --id v5_5_20251124 \
///       --config config.json --metric best_val_loss=0.38 --metric coverage=0.99
///   artifactctl register out/ --namespace gru/BTCEUR --param seq_length=30 --tag nightly
///   artifactctl register /scratch/run --move          # rename instead of copying
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The folder to register
    pub dir: PathBuf,
    /// Namespace, e.g. gru/BTCEUR
    #[arg(long, short = 'n', value_name = "NS", value_parser = Namespace::parse, default_value = "")]
    pub namespace: Namespace,
    /// Run id [default: the creation time, YYYYMMDD_HHMMSS in UTC]
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// JSON file with the run's configuration (an object)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// JSON file of metrics (an object of numbers)
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// A parameter, repeatable; numbers and true/false are typed
    #[arg(long = "param", value_name = "K=V", value_parser = key_value)]
    pub params: Vec<(String, String)>,
    /// A metric, repeatable
    #[arg(long = "metric", value_name = "K=V", value_parser = key_value)]
    pub metric: Vec<(String, String)>,
    /// A tag, repeatable
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Rename the folder into the store instead of copying (same filesystem)
    #[arg(long = "move")]
    pub move_in: bool,
    /// Creation time (RFC 3339) [default: now]; an older run never takes over latest
    #[arg(long, value_name = "TIME")]
    pub created_at: Option<String>,
    /// Print {"schema_version":1,"ref","path"}
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, out: &Output, args: Args) -> Result<ExitCode> {
    let mut metrics = match &args.metrics {
        Some(path) => metrics_file(path)?,
        None => BTreeMap::new(),
    };
    for (k, v) in &args.metric {
        metrics.insert(k.clone(), metric_value(k, v)?);
    }
    let params = args
        .params
        .iter()
        .map(|(k, v)| (k.clone(), param_value(v)))
        .collect();
    let created_at = match &args.created_at {
        Some(text) => Some(parse_time(text).ok_or_else(|| {
            ArtifactError::usage(format!(
                "bad --created-at '{text}': use RFC 3339, e.g. 2026-11-23T10:15:00Z"
            ))
        })?),
        None => None,
    };
    let options = RegisterOptions {
        source: args.dir.clone(),
        namespace: args.namespace,
        id: args.id,
        config: args.config.as_deref().map(json_object).transpose()?,
        metrics,
        params,
        tags: args.tags,
        move_in: args.move_in,
        created_at,
        project_root: ctx.root.clone(),
        command: std::env::args().collect(),
    };
    let reporter = reporters::for_output(out);
    let registered = register(&ctx.store, options, reporter.as_ref())?;
    for warning in &registered.warnings {
        out.warn(warning);
    }
    let reference = registered.location.reference();
    if args.json {
        out.json(&serde_json::json!({"ref": reference, "path": registered.location.path}))?;
    } else {
        println!("{reference}");
    }
    out.status(&format!(
        "registered {reference}: {} in {} files{}{}",
        human_size(registered.total_size),
        registered.file_count,
        if registered.moved { ", moved in" } else { "" },
        if registered.became_latest {
            ", now latest"
        } else {
            ""
        },
    ));
    out.detail(&format!("path: {}", registered.location.path.display()));
    Ok(ExitCode::Success)
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

fn metrics_file(path: &Path) -> Result<BTreeMap<String, f64>> {
    let obj = json_object(path)?;
    let numbers = artifactctl::store::metadata::numeric_metrics(&obj);
    let skipped: Vec<&String> = obj.keys().filter(|k| !numbers.contains_key(*k)).collect();
    if !skipped.is_empty() {
        return Err(ArtifactError::usage(format!(
            "{}: metrics must be numbers or true/false; not: {}",
            path.display(),
            skipped
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    Ok(numbers)
}

fn metric_value(key: &str, text: &str) -> Result<f64> {
    match text.trim() {
        "true" => return Ok(1.0),
        "false" => return Ok(0.0),
        _ => {}
    }
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| {
            ArtifactError::usage(format!(
                "bad --metric {key}={text}: the value must be a finite number"
            ))
            .into()
        })
}

/// `30` is a number, `true` a boolean, anything else text.
pub fn param_value(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(text.to_string()),
    }
}
