//! The one metrics reader. Every source of metrics goes through here:
//! `register --metrics FILE` and `--metric K=V`, `promote --results FILE`, a
//! refresh step's `metrics.json`, a `metrics.json` or `metrics/*.json` in a
//! registered or listed run (seed 004), seed 003's `training_metadata.json`
//! and seed 002's `metadata.json`. The rules (docs/metadata.md):
//!
//! - nested objects flatten with dots: `{"lstm": {"sharpe_ratio": 1.2}}` is
//!   `lstm.sharpe_ratio`;
//! - finite numbers are metrics, and so are booleans (as 1/0, for gates and
//!   `--where`);
//! - anything else (text, arrays, null) is kept as a note, by the same dotted
//!   name, never dropped and never an error. Callers store notes as params.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde_json::{Map, Value};

use crate::error::ArtifactError;

/// A run folder's own metrics file (seed 000 steps, any trainer).
pub const METRICS_FILE: &str = "metrics.json";
/// Seed 004's folder of metrics files (`metrics/training_metrics.json`).
pub const METRICS_DIR: &str = "metrics";

/// Metrics read from one or more sources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Numbers and booleans (1/0), by dotted name.
    pub values: BTreeMap<String, f64>,
    /// Everything else, by dotted name, kept as it was.
    pub notes: BTreeMap<String, Value>,
}

impl Metrics {
    /// Read a JSON object by the rules above.
    pub fn from_object(obj: &Map<String, Value>) -> Metrics {
        let mut m = Metrics::default();
        m.add_object("", obj);
        m
    }

    /// Read a JSON object under a prefix (`<step>.<metric>`).
    pub fn from_object_prefixed(prefix: &str, obj: &Map<String, Value>) -> Metrics {
        let mut m = Metrics::default();
        m.add_object(prefix, obj);
        m
    }

    /// One `--metric KEY=TEXT`: a number or `true`/`false` is a metric,
    /// anything else a note.
    pub fn add_text(&mut self, key: &str, text: &str) {
        let value = match text.trim() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            t => match t.parse::<f64>() {
                Ok(f) if f.is_finite() => Value::from(f),
                _ => Value::String(text.to_string()),
            },
        };
        self.add_value(key.to_string(), &value);
    }

    /// Merge `other` in; its values win on a clash, as the later source.
    pub fn extend(&mut self, other: Metrics) {
        for (k, v) in other.values {
            self.notes.remove(&k);
            self.values.insert(k, v);
        }
        for (k, v) in other.notes {
            self.values.remove(&k);
            self.notes.insert(k, v);
        }
    }

    /// Merge `other` in without overriding what is already known.
    pub fn extend_missing(&mut self, other: Metrics) {
        for (k, v) in other.values {
            if !self.notes.contains_key(&k) {
                self.values.entry(k).or_insert(v);
            }
        }
        for (k, v) in other.notes {
            if !self.values.contains_key(&k) {
                self.notes.entry(k).or_insert(v);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.notes.is_empty()
    }

    fn add_object(&mut self, prefix: &str, obj: &Map<String, Value>) {
        for (k, v) in obj {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            self.add_value(key, v);
        }
    }

    fn add_value(&mut self, key: String, v: &Value) {
        match v {
            Value::Object(inner) => self.add_object(&key, inner),
            Value::Number(n) => match n.as_f64().filter(|f| f.is_finite()) {
                Some(f) => {
                    self.values.insert(key, f);
                }
                None => {
                    self.notes.insert(key, v.clone());
                }
            },
            Value::Bool(b) => {
                self.values.insert(key, if *b { 1.0 } else { 0.0 });
            }
            other => {
                self.notes.insert(key, other.clone());
            }
        }
    }
}

/// The metric values of a JSON object (notes left out): for readers that
/// only show numbers, such as a run's stored `metrics`.
pub fn values(obj: &Map<String, Value>) -> BTreeMap<String, f64> {
    Metrics::from_object(obj).values
}

/// A metrics file named on the command line (`flag` is `--metrics` or
/// `--results`). A file that is not a JSON object is bad input.
pub fn read_file(path: &Path, flag: &str) -> Result<Metrics> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ArtifactError::usage(format!("cannot read {flag} {}: {e}", path.display())))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(obj)) => Ok(Metrics::from_object(&obj)),
        Ok(_) => Err(ArtifactError::usage(format!(
            "{flag} {} is not a JSON object; pass metrics as {{\"name\": value, ...}}",
            path.display()
        ))
        .into()),
        Err(e) => Err(ArtifactError::usage(format!(
            "{flag} {} is not valid JSON: {e}; pass metrics as {{\"name\": value, ...}}",
            path.display()
        ))
        .into()),
    }
}

/// The metrics files a run folder keeps beside its models: `metrics.json`
/// and seed 004's `metrics/*.json` (merged unprefixed, in name order, the
/// first file winning a clash). Files that cannot be read or are not JSON
/// objects are named in `problems` and otherwise ignored: they stay in the
/// run untouched.
pub fn read_run_files(dir: &Path, problems: &mut Vec<String>) -> Metrics {
    let mut files = Vec::new();
    if dir.join(METRICS_FILE).is_file() {
        files.push(METRICS_FILE.to_string());
    }
    if let Ok(entries) = std::fs::read_dir(dir.join(METRICS_DIR)) {
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        files.extend(names.into_iter().map(|n| format!("{METRICS_DIR}/{n}")));
    }
    let mut metrics = Metrics::default();
    for rel in files {
        let parsed = std::fs::read(dir.join(&rel))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(Value::Object(obj)) => metrics.extend_missing(Metrics::from_object(&obj)),
            Ok(_) => problems.push(format!(
                "{rel} is not a JSON object; its metrics were not read (the file is kept)"
            )),
            Err(e) => problems.push(format!(
                "{rel} cannot be read ({e}); its metrics were not read (the file is kept)"
            )),
        }
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_objects_flatten_and_text_is_kept_as_notes() {
        let raw = json!({"lstm": {"sharpe_ratio": 1.2, "kind": "rnn"}, "ok": true,
                         "n": 3, "tags": ["a"], "none": null});
        let m = Metrics::from_object(raw.as_object().unwrap());
        assert_eq!(m.values["lstm.sharpe_ratio"], 1.2);
        assert_eq!(m.values["ok"], 1.0);
        assert_eq!(m.values["n"], 3.0);
        assert_eq!(m.notes["lstm.kind"], json!("rnn"));
        assert_eq!(m.notes["tags"], json!(["a"]));
        assert_eq!(m.notes["none"], Value::Null);
        assert_eq!(m.values.len() + m.notes.len(), 6);
    }

    #[test]
    fn text_values_become_notes_not_errors() {
        let mut m = Metrics::default();
        m.add_text("acc", "0.9");
        m.add_text("passed", "true");
        m.add_text("model", "lstm");
        m.add_text("inf", "inf");
        assert_eq!(m.values["acc"], 0.9);
        assert_eq!(m.values["passed"], 1.0);
        assert_eq!(m.notes["model"], json!("lstm"));
        assert_eq!(m.notes["inf"], json!("inf"));
    }

    #[test]
    fn later_source_wins_and_kinds_do_not_duplicate() {
        let mut a = Metrics::from_object(json!({"x": 1, "y": "t"}).as_object().unwrap());
        a.extend(Metrics::from_object(
            json!({"x": "now text", "y": 2}).as_object().unwrap(),
        ));
        assert_eq!(a.values.get("y"), Some(&2.0));
        assert_eq!(a.notes.get("x"), Some(&json!("now text")));
        assert!(!a.values.contains_key("x") && !a.notes.contains_key("y"));
    }

    #[test]
    fn run_files_merge_metrics_json_and_the_metrics_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("metrics")).unwrap();
        std::fs::write(dir.path().join("metrics.json"), r#"{"a": 1}"#).unwrap();
        std::fs::write(
            dir.path().join("metrics/training_metrics.json"),
            r#"{"best_val_loss": 0.3, "a": 9}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("metrics/broken.json"), "{").unwrap();
        let mut problems = Vec::new();
        let m = read_run_files(dir.path(), &mut problems);
        assert_eq!(m.values["a"], 1.0);
        assert_eq!(m.values["best_val_loss"], 0.3);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("metrics/broken.json"));
    }
}
