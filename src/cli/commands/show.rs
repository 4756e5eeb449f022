use anyhow::Result;
use artifactctl::store::RunInfo;
use artifactctl::ExitCode;
use serde::Serialize;
use serde_json::Value;

use crate::cli::printer::{human_number, human_size, Align, Printer, Table, Tone};
use crate::cli::settings::Context;

/// Show everything about one run: metadata, metrics, files, features, lineage
///
/// Examples:
///   artifactctl show latest
///   artifactctl show 20250724_150837
///   artifactctl show gru/BTCEUR/latest --json
///   artifactctl show production/gru/BTCEUR/1.0.0
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    pub target: super::RefArg,
    /// Print {"schema_version":1,"run":{...}}
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ShowJson<'a> {
    run: &'a RunInfo,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let resolved = ctx.store.resolve(&args.target.reference)?;
    for warning in &resolved.warnings {
        out.warn(warning);
    }
    let run = ctx
        .store
        .read_run(resolved.location, &ctx.read_options(true)?);
    if args.json {
        out.json(&ShowJson { run: &run })?;
    } else {
        out.text(&render(&run, out))?;
    }
    Ok(ExitCode::Success)
}

fn render(run: &RunInfo, out: &Printer) -> String {
    let mut s = String::new();
    let mut field =
        |name: &str, value: String| s.push_str(&format!("{:<11}{value}\n", format!("{name}:")));
    field("ref", out.paint_out(Tone::Bold, &run.reference));
    if let Some(d) = &run.detail {
        field("path", d.path.display().to_string());
    }
    field("stage", run.stage.to_string());
    if !run.namespace.is_empty() {
        field("namespace", run.namespace.clone());
    }
    field(
        "created",
        run.created_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "-".into()),
    );
    field("status", run.status.as_str().to_string());
    field(
        "latest",
        if run.latest {
            "yes".into()
        } else {
            "no".into()
        },
    );
    if run.pinned {
        field("pinned", "yes".into());
    }
    field(
        "size",
        format!(
            "{} in {} files, {} models",
            human_size(run.size_bytes),
            run.file_count,
            run.model_count
        ),
    );
    field("metadata", format!("{:?}", run.layout).to_lowercase());
    if !run.tags.is_empty() {
        field("tags", run.tags.join(", "));
    }
    for problem in &run.problems {
        field("problem", out.paint_out(Tone::Warn, problem));
    }
    if !run.metrics.is_empty() {
        s.push_str("\nmetrics:\n");
        for (k, v) in &run.metrics {
            s.push_str(&format!("  {k:<24} {}\n", human_number(*v)));
        }
    }
    if !run.params.is_empty() {
        s.push_str("\nparams:\n");
        for (k, v) in &run.params {
            s.push_str(&format!("  {k:<24} {}\n", scalar(v)));
        }
    }
    let Some(detail) = &run.detail else { return s };
    if let Some(features) = &detail.features {
        s.push_str("\nfeatures:\n");
        let names = features
            .get("feature_names")
            .and_then(Value::as_array)
            .map(|a| a.len());
        if let Some(n) = names {
            s.push_str(&format!("  feature_names      {n} names\n"));
        }
        for key in ["feature_count", "input_size_actual", "selected_features"] {
            if let Some(v) = features.get(key) {
                s.push_str(&format!("  {key:<18} {v}\n"));
            }
        }
    }
    block(&mut s, "lineage", &detail.lineage);
    for (key, value) in &detail.extra {
        block(&mut s, key, value);
    }
    block(&mut s, "config", &detail.config);
    block(&mut s, "producer", &detail.producer);
    if !detail.files.is_empty() {
        s.push_str("\nfiles:\n");
        let mut table = Table::new(&[
            ("  PATH", Align::Left),
            ("SIZE", Align::Right),
            ("BLAKE3", Align::Left),
        ]);
        for f in &detail.files {
            let path = match &f.symlink {
                Some(target) => format!("  {} -> {target}", f.path),
                None => format!("  {}", f.path),
            };
            let hash = f
                .blake3
                .as_deref()
                .map(|h| h.chars().take(16).collect())
                .unwrap_or_else(|| "-".into());
            table.row(vec![path, human_size(f.size), hash]);
        }
        s.push_str(&table.render());
    }
    s
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON value as an indented block, skipped when empty.
fn block(s: &mut String, name: &str, value: &Value) {
    let empty = match value {
        Value::Object(m) => m.values().all(Value::is_null) || m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        _ => false,
    };
    if empty {
        return;
    }
    s.push_str(&format!("\n{name}:\n"));
    match value {
        Value::Object(m) => {
            for (k, v) in m.iter().filter(|(_, v)| !v.is_null()) {
                let text = match v {
                    Value::Object(_) | Value::Array(_) => {
                        serde_json::to_string(v).unwrap_or_default()
                    }
                    other => scalar(other),
                };
                s.push_str(&format!("  {k:<24} {text}\n"));
            }
        }
        other => s.push_str(&format!("  {}\n", scalar(other))),
    }
}
