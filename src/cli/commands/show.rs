use anyhow::Result;
use artifactctl::store::{RunInfo, RunLayout};
use artifactctl::ExitCode;
use serde::Serialize;
use serde_json::Value;

use crate::cli::printer::{human_number, human_size, plural, Align, Printer, Table, Tone};
use crate::cli::settings::Context;

/// Show everything about one run: metadata, metrics, files, features, lineage
///
/// Nested records (a refresh run's `steps`, `config.refresh`) are shown as
/// tables and indented keys; -v shows them as indented JSON instead.
///
/// Examples:
///   artifactctl show latest
///   artifactctl show 20250724_150837
///   artifactctl show gru/BTCEUR/latest --json
///   artifactctl show production/gru/BTCEUR/1.0.0
///   artifactctl show production/gru/BTCEUR/latest --remote origin
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    pub target: super::RefArg,
    /// Read the run from this remote ([remotes.NAME]) instead, without pulling
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Print {"schema_version":1,"run":{...}}
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ShowJson<'a> {
    run: &'a RunInfo,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let run = match &args.remote {
        Some(name) => {
            let remote = super::open_remote(ctx, Some(name))?;
            remote.run(&args.target.reference, &ctx.read_options(true)?)?
        }
        None => {
            let resolved = ctx.store.resolve(&args.target.reference)?;
            for warning in &resolved.warnings {
                out.warn(warning);
            }
            ctx.store
                .read_run(resolved.location, &ctx.read_options(true)?)
        }
    };
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
            "{} in {}, {}",
            human_size(run.size_bytes),
            plural(run.file_count, "file", "files"),
            plural(run.model_count, "model", "models")
        ),
    );
    field("metadata", layout_name(run.layout).to_string());
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
    let verbose = out.verbose > 0;
    block(&mut s, "lineage", &detail.lineage, verbose);
    for (key, value) in &detail.extra {
        block(&mut s, key, value, verbose);
    }
    block(&mut s, "config", &detail.config, verbose);
    block(&mut s, "producer", &detail.producer, verbose);
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
                // Imported by link and not read yet (see `verify --repair`).
                .unwrap_or_else(|| "pending".into());
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

/// How a run's metadata was read, in words.
fn layout_name(layout: RunLayout) -> &'static str {
    match layout {
        RunLayout::Native => "metadata.json (artifactctl)",
        RunLayout::TrainingMetadata => "training_metadata.json (seed 003 layout, read as it is)",
        RunLayout::LegacyMetadata => {
            "metadata.json without schema_version (seed 002/004 layout, read as it is)"
        }
        RunLayout::Plain => "none (no metadata file)",
    }
}

/// Nested values up to this long stay on their key's line.
const INLINE_MAX: usize = 60;
/// Table cells are cut to this many characters.
const CELL_MAX: usize = 28;

/// A nested value under `key`, at `indent`: short ones inline; with
/// `verbose` as indented JSON; otherwise an array of records as a table and
/// a record as its keys, one level deeper.
fn nested(s: &mut String, indent: usize, key: &str, value: &Value, verbose: bool) {
    let pad = " ".repeat(indent);
    let compact = serde_json::to_string(value).unwrap_or_default();
    let width = 24usize.saturating_sub(indent.saturating_sub(2));
    // A list of plain values (a command line) reads well on one line.
    let plain_list =
        matches!(value, Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()));
    if compact.chars().count() <= INLINE_MAX || plain_list && !verbose {
        s.push_str(&format!("{pad}{key:<width$} {compact}\n"));
        return;
    }
    s.push_str(&format!("{pad}{key}:\n"));
    if verbose {
        let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
        for line in pretty.lines() {
            s.push_str(&format!("{pad}  {line}\n"));
        }
        return;
    }
    match value {
        Value::Object(m) => {
            for (k, v) in m.iter().filter(|(_, v)| !v.is_null()) {
                match v {
                    Value::Object(_) | Value::Array(_) => nested(s, indent + 2, k, v, verbose),
                    other => {
                        let width = 24usize.saturating_sub(indent);
                        s.push_str(&format!("{pad}  {k:<width$} {}\n", scalar(other)));
                    }
                }
            }
        }
        Value::Array(items) if items.iter().all(Value::is_object) => {
            let mut columns: Vec<&str> = Vec::new();
            for item in items.iter().filter_map(Value::as_object) {
                for (k, v) in item {
                    if !v.is_null() && !columns.contains(&k.as_str()) {
                        columns.push(k);
                    }
                }
            }
            let headers: Vec<(String, Align)> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let name = c.to_uppercase();
                    let name = if i == 0 {
                        format!("{pad}  {name}")
                    } else {
                        name
                    };
                    (name, Align::Left)
                })
                .collect();
            let refs: Vec<(&str, Align)> = headers.iter().map(|(h, a)| (h.as_str(), *a)).collect();
            let mut table = Table::new(&refs);
            for item in items.iter().filter_map(Value::as_object) {
                let row = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let cell = cell(item.get(*c).unwrap_or(&Value::Null));
                        if i == 0 {
                            format!("{pad}  {cell}")
                        } else {
                            cell
                        }
                    })
                    .collect();
                table.row(row);
            }
            s.push_str(&table.render());
        }
        Value::Array(items) => {
            for item in items {
                s.push_str(&format!("{pad}  - {}\n", cell(item)));
            }
        }
        other => s.push_str(&format!("{pad}  {}\n", scalar(other))),
    }
}

/// One table cell: a scalar, a list of scalars joined, or a count; cut to
/// [`CELL_MAX`].
fn cell(v: &Value) -> String {
    let text = match v {
        Value::Null => "-".to_string(),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            a.iter().map(scalar).collect::<Vec<_>>().join(", ")
        }
        Value::Array(a) => format!("[{} items]", a.len()),
        Value::Object(m) => format!("{{{} keys}}", m.len()),
        other => scalar(other),
    };
    if text.chars().count() > CELL_MAX {
        let cut: String = text.chars().take(CELL_MAX - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// A JSON value as an indented block, skipped when empty.
fn block(s: &mut String, name: &str, value: &Value, verbose: bool) {
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
                match v {
                    Value::Object(_) | Value::Array(_) => nested(s, 2, k, v, verbose),
                    other => s.push_str(&format!("  {k:<24} {}\n", scalar(other))),
                }
            }
        }
        value @ Value::Array(_) => nested_items(s, value, verbose),
        other => s.push_str(&format!("  {}\n", scalar(other))),
    }
}

/// A top-level array (`steps`): as a table, or JSON under `-v`.
fn nested_items(s: &mut String, value: &Value, verbose: bool) {
    let mut inner = String::new();
    nested(&mut inner, 0, "", value, verbose);
    // `nested` puts the (empty) key on a line of its own first, or the whole
    // value inline after it; either way the block's own heading is enough.
    match inner.split_once('\n') {
        Some((first, rest)) if first.trim_end() == ":" => s.push_str(rest),
        _ => s.push_str(&format!("  {}\n", inner.trim())),
    }
}
