//! `list --where` filters and `--sort` keys.
//!
//! A filter is `FIELD OP VALUE` with OP one of `= == != > >= < <=`.
//! FIELD is `metrics.NAME`, `params.NAME`, `tags`, `id`, `namespace`,
//! `stage`, `status`, `created`, `size`, `models`, `files`, `latest` or
//! `pinned`. Each field takes its own kind of value, checked when the filter
//! is parsed so that a typo is an error and never a silent empty answer:
//! metrics, models and files take numbers; size takes a size with a unit
//! (`1GB`, `500MiB`, `512`); created takes a date (`2026-11-01`, a whole
//! day), a time (`2026-11-01T10:00:00Z`), `today`, `yesterday` or an age
//! (`created<7d`: younger than 7 days); stage and status take their names;
//! latest and pinned take true or false; params, id and namespace compare as
//! numbers when both sides are numbers, else as text. `tags=x` means "has
//! tag x".

use std::cmp::Ordering;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::error::ArtifactError;
use crate::policy::retention;
use crate::store::metadata::RunStatus;
use crate::store::refs::Stage;
use crate::store::RunInfo;

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Metric(String),
    Param(String),
    Tags,
    Id,
    Namespace,
    Stage,
    Status,
    Created,
    Size,
    Models,
    Files,
    Latest,
    Pinned,
}

const FIELD_HELP: &str = "fields: metrics.NAME, params.NAME, tags, id, namespace, stage, status, created, size, models, files, latest, pinned";

impl FromStr for Field {
    type Err = ArtifactError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(name) = s.strip_prefix("metrics.") {
            return Ok(Field::Metric(name.to_string()));
        }
        if let Some(name) = s.strip_prefix("params.") {
            return Ok(Field::Param(name.to_string()));
        }
        Ok(match s {
            "tags" | "tag" => Field::Tags,
            "id" => Field::Id,
            "namespace" | "ns" => Field::Namespace,
            "stage" => Field::Stage,
            "status" => Field::Status,
            "created" | "created_at" => Field::Created,
            "size" | "size_bytes" => Field::Size,
            "models" | "model_count" => Field::Models,
            "files" | "file_count" => Field::Files,
            "latest" => Field::Latest,
            "pinned" => Field::Pinned,
            _ => {
                return Err(ArtifactError::usage(format!(
                    "unknown field '{s}': {FIELD_HELP}"
                )));
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
        }
    }
}

const OP_HELP: &str = "operators: = == != > >= < <=";

const VALUE_HELP: &str = "values: metrics.NAME, models, files: a number; size: 500, 1KB, 1.5GiB; created: 2026-11-01, 2026-11-01T10:00:00Z, today, yesterday or an age like 7d, 12h, 2w; stage: raw, validated, production; status: complete, failed, interrupted, unknown; latest, pinned: true or false";

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub field: Field,
    pub op: Op,
    /// The value as written.
    pub value: String,
    /// The value as the field reads it.
    wanted: Wanted,
}

/// A filter's value, parsed for its field.
#[derive(Debug, Clone, PartialEq)]
enum Wanted {
    Num(f64),
    /// `[start, end)`: a whole day for a date, one instant for a time.
    Span(DateTime<Utc>, DateTime<Utc>),
    /// The day `n` days before the evaluation time (`today`, `yesterday`).
    DaysAgo(i64),
    /// An age: the run's creation lies this long before the evaluation time.
    Age(Duration),
    Text(String),
}

/// The span of a `created` value, or why it is not one.
fn created_value(text: &str) -> Result<Wanted, String> {
    match text {
        "today" => return Ok(Wanted::DaysAgo(0)),
        "yesterday" => return Ok(Wanted::DaysAgo(1)),
        _ => {}
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        return Ok(Wanted::Span(start, start + Duration::days(1)));
    }
    if let Some(t) = crate::store::metadata::parse_time(text) {
        return Ok(Wanted::Span(t, t));
    }
    for form in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, form) {
            let t = t.and_utc();
            return Ok(Wanted::Span(t, t));
        }
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        if let Ok(age) = retention::parse_duration(text) {
            return Ok(Wanted::Age(age));
        }
    }
    Err(format!("'{text}' is not a date, time or age"))
}

fn wanted_for(field: &Field, op: Op, value: &str) -> Result<Wanted, String> {
    let number = |what: &str| {
        value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Wanted::Num)
            .ok_or_else(|| format!("{what} takes a number, not '{value}'"))
    };
    Ok(match field {
        Field::Metric(_) => number("a metric")?,
        Field::Models => number("models")?,
        Field::Files => number("files")?,
        Field::Size => Wanted::Num(
            retention::parse_size(value)
                .map_err(|_| format!("size takes a size like 500, 1KB or 1.5GiB, not '{value}'"))?
                as f64,
        ),
        Field::Created => {
            let wanted = created_value(value)?;
            if matches!(wanted, Wanted::Age(_)) && matches!(op, Op::Eq | Op::Ne) {
                return Err(format!("an age takes < or >, e.g. created<{value}"));
            }
            wanted
        }
        Field::Stage => {
            value
                .parse::<Stage>()
                .map_err(|_| format!("stage is raw, validated or production, not '{value}'"))?;
            Wanted::Text(value.to_string())
        }
        Field::Status => {
            if !["complete", "failed", "interrupted", "unknown"].contains(&value) {
                return Err(format!(
                    "status is complete, failed, interrupted or unknown, not '{value}'"
                ));
            }
            Wanted::Text(value.to_string())
        }
        Field::Latest | Field::Pinned => {
            if !matches!(value, "true" | "false") {
                return Err(format!(
                    "latest and pinned take true or false, not '{value}'"
                ));
            }
            Wanted::Text(value.to_string())
        }
        Field::Tags | Field::Id | Field::Namespace | Field::Param(_) => {
            Wanted::Text(value.to_string())
        }
    })
}

impl FromStr for Filter {
    type Err = ArtifactError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = |why: &str| {
            ArtifactError::usage(format!(
                "bad --where '{text}': {why}; write FIELD OP VALUE, e.g. metrics.sharpe_ratio>1.0, size>1GB, created<7d or params.seq_length=30 ({FIELD_HELP}; {OP_HELP}; {VALUE_HELP})"
            ))
        };
        let at = text
            .find(['=', '!', '<', '>'])
            .ok_or_else(|| usage("no operator"))?;
        let (field, rest) = text.split_at(at);
        let (op, len) = match rest.as_bytes() {
            [b'=', b'=', ..] => (Op::Eq, 2),
            [b'!', b'=', ..] => (Op::Ne, 2),
            [b'>', b'=', ..] => (Op::Ge, 2),
            [b'<', b'=', ..] => (Op::Le, 2),
            [b'=', ..] => (Op::Eq, 1),
            [b'>', ..] => (Op::Gt, 1),
            [b'<', ..] => (Op::Lt, 1),
            _ => return Err(usage("'!' must be followed by '='")),
        };
        let field: Field = field
            .parse()
            .map_err(|e: ArtifactError| usage(&e.message))?;
        let value = rest[len..].trim().to_string();
        if value.is_empty() {
            return Err(usage("no value after the operator"));
        }
        if value.starts_with(['=', '!', '<', '>']) {
            let end = value
                .find(|c| !matches!(c, '=' | '!' | '<' | '>'))
                .unwrap_or(value.len());
            return Err(usage(&format!(
                "unknown operator '{}{}'",
                &rest[..len],
                &value[..end]
            )));
        }
        if field == Field::Tags && !matches!(op, Op::Eq | Op::Ne) {
            return Err(usage("tags only take = or !="));
        }
        let wanted = wanted_for(&field, op, &value).map_err(|why| usage(&why))?;
        Ok(Filter {
            field,
            op,
            value,
            wanted,
        })
    }
}

/// What filters, sort keys and the BEST column read of a run: a full
/// [`RunInfo`] or a compact listing row.
pub trait RunFields {
    fn metric(&self, name: &str) -> Option<f64>;
    /// Every metric, for the per-model BEST values.
    fn metrics(&self) -> std::borrow::Cow<'_, std::collections::BTreeMap<String, f64>>;
    fn param(&self, name: &str) -> Option<Value>;
    fn has_tag(&self, tag: &str) -> bool;
    fn id(&self) -> &str;
    fn namespace(&self) -> &str;
    fn stage(&self) -> Stage;
    fn status(&self) -> RunStatus;
    fn created_at(&self) -> Option<DateTime<Utc>>;
    fn size_bytes(&self) -> u64;
    fn model_count(&self) -> u64;
    fn file_count(&self) -> u64;
    fn latest(&self) -> bool;
    fn pinned(&self) -> bool;
    fn reference(&self) -> std::borrow::Cow<'_, str>;
}

impl RunFields for RunInfo {
    fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }
    fn metrics(&self) -> std::borrow::Cow<'_, std::collections::BTreeMap<String, f64>> {
        std::borrow::Cow::Borrowed(&self.metrics)
    }
    fn param(&self, name: &str) -> Option<Value> {
        self.params.get(name).cloned()
    }
    fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn stage(&self) -> Stage {
        self.stage
    }
    fn status(&self) -> RunStatus {
        self.status
    }
    fn created_at(&self) -> Option<DateTime<Utc>> {
        self.created_at
    }
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    fn model_count(&self) -> u64 {
        self.model_count
    }
    fn file_count(&self) -> u64 {
        self.file_count
    }
    fn latest(&self) -> bool {
        self.latest
    }
    fn pinned(&self) -> bool {
        self.pinned
    }
    fn reference(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&self.reference)
    }
}

/// A field's value on one run.
enum Val<'a> {
    Num(f64),
    Time(chrono::DateTime<chrono::Utc>),
    Text(std::borrow::Cow<'a, str>),
    Missing,
}

fn field_value<'a, R: RunFields + ?Sized>(run: &'a R, field: &Field) -> Val<'a> {
    use std::borrow::Cow;
    match field {
        Field::Metric(name) => run.metric(name).map_or(Val::Missing, Val::Num),
        Field::Param(name) => match run.param(name) {
            Some(Value::Number(n)) => n.as_f64().map_or(Val::Missing, Val::Num),
            Some(Value::String(s)) => Val::Text(Cow::Owned(s)),
            Some(Value::Bool(b)) => Val::Text(Cow::Owned(b.to_string())),
            Some(Value::Null) | None => Val::Missing,
            Some(other) => Val::Text(Cow::Owned(other.to_string())),
        },
        Field::Tags => Val::Missing,
        Field::Id => Val::Text(Cow::Borrowed(run.id())),
        Field::Namespace => Val::Text(Cow::Borrowed(run.namespace())),
        Field::Stage => Val::Text(Cow::Borrowed(run.stage().as_str())),
        Field::Status => Val::Text(Cow::Borrowed(run.status().as_str())),
        Field::Created => run.created_at().map_or(Val::Missing, Val::Time),
        Field::Size => Val::Num(run.size_bytes() as f64),
        Field::Models => Val::Num(run.model_count() as f64),
        Field::Files => Val::Num(run.file_count() as f64),
        Field::Latest => Val::Text(Cow::Owned(run.latest().to_string())),
        Field::Pinned => Val::Text(Cow::Owned(run.pinned().to_string())),
    }
}

impl Filter {
    /// The filter as written, e.g. `size>1GB`.
    pub fn text(&self) -> String {
        let op = match self.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        };
        let field = match &self.field {
            Field::Metric(n) => format!("metrics.{n}"),
            Field::Param(n) => format!("params.{n}"),
            other => format!("{other:?}").to_lowercase(),
        };
        format!("{field}{op}{}", self.value)
    }

    /// Whether `run` passes; `now` is what ages and `today` count from.
    pub fn matches<R: RunFields + ?Sized>(&self, run: &R, now: DateTime<Utc>) -> bool {
        if self.field == Field::Tags {
            let has = run.has_tag(&self.value);
            return has == (self.op == Op::Eq);
        }
        let actual = field_value(run, &self.field);
        let ord = match (&actual, &self.wanted) {
            (Val::Missing, _) => return false,
            (Val::Num(a), Wanted::Num(w)) => a.partial_cmp(w),
            (Val::Time(t), Wanted::Span(start, end)) => Some(span_cmp(*t, *start, *end)),
            (Val::Time(t), Wanted::DaysAgo(n)) => {
                let day = (now - Duration::days(*n)).date_naive();
                let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
                Some(span_cmp(*t, start, start + Duration::days(1)))
            }
            // An age is "created<7d": younger than 7 days, so the order of
            // ages is the reverse of the order of times.
            (Val::Time(t), Wanted::Age(age)) => Some((now - *t).cmp(age)),
            (Val::Text(a), Wanted::Text(w)) => match (a.parse::<f64>(), w.parse::<f64>()) {
                (Ok(a), Ok(w)) => a.partial_cmp(&w),
                _ => Some(a.as_ref().cmp(w.as_str())),
            },
            (Val::Num(a), Wanted::Text(w)) => match w.parse::<f64>() {
                Ok(w) => a.partial_cmp(&w),
                Err(_) => return false,
            },
            _ => return false,
        };
        ord.is_some_and(|o| self.op.holds(o))
    }
}

/// Where `t` lies against `[start, end)`; a span of one instant is that time.
fn span_cmp(t: DateTime<Utc>, start: DateTime<Utc>, end: DateTime<Utc>) -> Ordering {
    if t < start {
        Ordering::Less
    } else if end > start && t >= end || end == start && t > start {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

/// A `--sort` key. Numbers and times sort largest or newest first, text
/// sorts A to Z; runs without the field always come last.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey(pub Field);

impl FromStr for SortKey {
    type Err = ArtifactError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let field: Field = s.parse().map_err(|e: ArtifactError| {
            ArtifactError::usage(format!("bad --sort '{s}': {}", e.message))
        })?;
        if field == Field::Tags {
            return Err(ArtifactError::usage(
                "bad --sort 'tags': runs cannot be sorted by tags",
            ));
        }
        Ok(SortKey(field))
    }
}

impl SortKey {
    fn descending(&self) -> bool {
        matches!(
            self.0,
            Field::Metric(_) | Field::Created | Field::Size | Field::Models | Field::Files
        )
    }

    pub fn sort(&self, runs: &mut Vec<RunInfo>, reverse: bool) {
        let order = self.order(runs, reverse);
        let mut slots: Vec<Option<RunInfo>> = std::mem::take(runs).into_iter().map(Some).collect();
        runs.extend(order.into_iter().filter_map(|i| slots[i].take()));
    }

    /// The positions of `runs` in sorted order; each run's key is read once.
    pub fn order<R: RunFields + Sync>(&self, runs: &[R], reverse: bool) -> Vec<usize> {
        use rayon::prelude::*;
        let flip = self.descending() != reverse;
        let keys: Vec<(Val<'_>, std::borrow::Cow<'_, str>)> = runs
            .par_iter()
            .map(|r| (field_value(r, &self.0), r.reference()))
            .collect();
        let mut order: Vec<usize> = (0..runs.len()).collect();
        order.par_sort_by(|&a, &b| {
            let ((va, ra), (vb, rb)) = (&keys[a], &keys[b]);
            let ord = match (va, vb) {
                (Val::Missing, Val::Missing) => Ordering::Equal,
                (Val::Missing, _) => return Ordering::Greater,
                (_, Val::Missing) => return Ordering::Less,
                (Val::Num(x), Val::Num(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
                (Val::Time(x), Val::Time(y)) => x.cmp(y),
                (Val::Time(_), _) => Ordering::Less,
                (_, Val::Time(_)) => Ordering::Greater,
                (Val::Text(x), Val::Text(y)) => x.cmp(y),
                (Val::Num(_), Val::Text(_)) => Ordering::Less,
                (Val::Text(_), Val::Num(_)) => Ordering::Greater,
            };
            let ord = ord.then_with(|| ra.cmp(rb));
            if flip {
                ord.reverse()
            } else {
                ord
            }
        });
        order
    }
}

/// Whether a larger (`max`) or smaller (`min`) value of a metric is better;
/// `auto` decides by the metric's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    Max,
    Min,
    Auto,
}

impl Goal {
    /// `auto` made definite for `metric`: losses and errors (`best_val_loss`,
    /// `rmse`, `max_drawdown`) are lower-is-better, everything else higher.
    pub fn for_metric(self, metric: &str) -> Goal {
        const LOWER_IS_BETTER: [&str; 8] = [
            "loss",
            "error",
            "mse",
            "mae",
            "mape",
            "rmse",
            "drawdown",
            "perplexity",
        ];
        match self {
            Goal::Auto => {
                let name = metric.to_ascii_lowercase();
                if name
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|word| LOWER_IS_BETTER.contains(&word))
                {
                    Goal::Min
                } else {
                    Goal::Max
                }
            }
            definite => definite,
        }
    }
}

/// The value of the `list` BEST column: the metric itself, or else the best
/// of the per-model values named `<model>.<metric>` (a refresh records one per
/// step, seed 003 one per ensemble member), judged by `goal`.
pub fn best_metric<R: RunFields + ?Sized>(run: &R, metric: &str, goal: Goal) -> Option<f64> {
    let metrics = run.metrics();
    if let Some(v) = metrics.get(metric) {
        return Some(*v);
    }
    let suffix = format!(".{metric}");
    let values = metrics
        .iter()
        .filter(|(k, _)| k.ends_with(&suffix))
        .map(|(_, v)| *v);
    match goal.for_metric(metric) {
        Goal::Min => values.reduce(f64::min),
        _ => values.reduce(f64::max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::metadata::RunStatus;
    use crate::store::refs::{Namespace, Stage};
    use crate::store::{RunLayout, RunLocation};
    use serde_json::json;

    fn run(id: &str, sharpe: Option<f64>, seq: Value, tags: &[&str]) -> RunInfo {
        RunInfo {
            reference: id.into(),
            id: id.into(),
            namespace: String::new(),
            stage: Stage::Raw,
            created_at: crate::store::refs::id_time(id),
            status: RunStatus::Complete,
            size_bytes: 10,
            file_count: 1,
            model_count: 1,
            dataset_count: 0,
            metrics: sharpe
                .map(|s| ("sharpe_ratio".to_string(), s))
                .into_iter()
                .collect(),
            params: [("seq_length".to_string(), seq)].into_iter().collect(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            latest: false,
            pinned: false,
            layout: RunLayout::Native,
            problems: vec![],
            location: RunLocation {
                stage: Stage::Raw,
                namespace: Namespace::root(),
                id: id.into(),
                path: id.into(),
            },
            detail: None,
        }
    }

    #[test]
    fn parses_operators() {
        let f: Filter = "metrics.sharpe_ratio>1.0".parse().unwrap();
        assert_eq!(
            (f.field, f.op, f.value.as_str()),
            (Field::Metric("sharpe_ratio".into()), Op::Gt, "1.0")
        );
        let f: Filter = "params.seq_length=30".parse().unwrap();
        assert_eq!(f.op, Op::Eq);
        for (text, op) in [
            ("a.b", None),
            ("id==x", Some(Op::Eq)),
            ("id!=x", Some(Op::Ne)),
            ("size>=1", Some(Op::Ge)),
            ("size<=1", Some(Op::Le)),
            ("size<1", Some(Op::Lt)),
        ] {
            let text = if text == "a.b" { "metrics.x" } else { text };
            assert_eq!(text.parse::<Filter>().ok().map(|f| f.op), op, "{text}");
        }
    }

    #[test]
    fn rejects_malformed_filters() {
        for bad in [
            "sharpe>1",
            "metrics.x",
            "metrics.x>",
            "id!x",
            "tags>a",
            "bogus=1",
            "metrics.x>>1",
            "size=<1",
            "metrics.x>abc",
            "size>1 parsec",
            "created>tomorrowish",
            "created=7d",
            "stage=prod",
            "status=done",
            "latest=yes",
            "files>many",
        ] {
            assert!(bad.parse::<Filter>().is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn numbers_compare_as_numbers_and_params_match_loosely() {
        let r = run("20261123_101500", Some(1.5), json!(30), &["gpu"]);
        let t = |s: &str| s.parse::<Filter>().unwrap().matches(&r, now());
        assert!(t("metrics.sharpe_ratio>1.0"));
        assert!(!t("metrics.sharpe_ratio>10"));
        assert!(t("params.seq_length=30"));
        assert!(t("params.seq_length=30.0"));
        assert!(!t("params.seq_length=31"));
        assert!(t("tags=gpu") && t("tags!=cpu") && !t("tags=cpu"));
        assert!(t("created>=2026-11-01") && !t("created<2026-11-01"));
        assert!(!t("metrics.missing<100"), "a missing metric never matches");
        let s = run("x", None, json!("30"), &[]);
        assert!("params.seq_length=30"
            .parse::<Filter>()
            .unwrap()
            .matches(&s, now()));
    }

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn sizes_take_units_and_created_takes_dates_and_ages() {
        // 500 B, created 2026-11-23 10:15, two days before `now`.
        let mut r = run("20261123_101500", Some(1.5), json!(30), &[]);
        r.size_bytes = 500;
        let t = |s: &str| s.parse::<Filter>().unwrap().matches(&r, now());
        assert!(!t("size>1GB") && t("size<1KB") && t("size<1KiB") && t("size=500"));
        assert!(t("size>=500B") && !t("size>0.5KB") && t("size<1.5MiB"));
        assert!(t("created>2026-11-22") && !t("created>2026-11-23"));
        assert!(t("created=2026-11-23") && t("created>=2026-11-23") && t("created<=2026-11-23"));
        assert!(!t("created<2026-11-23") && t("created<2026-11-24"));
        assert!(t("created>2026-11-23T10:00:00Z") && t("created<2026-11-23T10:30"));
        assert!(t("created<7d") && t("created<3d") && !t("created<1d") && t("created>1d"));
        assert!(!t("created<12h") && t("created>48h") && !t("created>3d"));
        assert!(!t("created>yesterday") && !t("created=yesterday") && !t("created=today"));
        assert!(t("created<yesterday") && t("created<today"));
    }

    #[test]
    fn best_metric_falls_back_to_per_step_values() {
        let mut r = run("x", None, json!(1), &[]);
        assert_eq!(best_metric(&r, "sharpe_ratio", Goal::Max), None);
        r.metrics.insert("lstm.sharpe_ratio".into(), 0.5);
        r.metrics.insert("xgb.sharpe_ratio".into(), 1.5);
        r.metrics.insert("xgb.sharpe_ratio_std".into(), 9.0);
        assert_eq!(best_metric(&r, "sharpe_ratio", Goal::Max), Some(1.5));
        assert_eq!(best_metric(&r, "sharpe_ratio", Goal::Min), Some(0.5));
        r.metrics.insert("sharpe_ratio".into(), 1.0);
        assert_eq!(best_metric(&r, "sharpe_ratio", Goal::Max), Some(1.0));
    }

    #[test]
    fn auto_goal_treats_losses_as_lower_is_better() {
        let mut r = run("x", None, json!(1), &[]);
        r.metrics.insert("lstm.best_val_loss".into(), 0.3);
        r.metrics.insert("gru.best_val_loss".into(), 0.2);
        r.metrics.insert("lstm.sharpe_ratio".into(), 0.5);
        r.metrics.insert("gru.sharpe_ratio".into(), 1.5);
        assert_eq!(best_metric(&r, "best_val_loss", Goal::Auto), Some(0.2));
        assert_eq!(best_metric(&r, "sharpe_ratio", Goal::Auto), Some(1.5));
        assert_eq!(best_metric(&r, "best_val_loss", Goal::Max), Some(0.3));
        assert_eq!(Goal::Auto.for_metric("val_rmse"), Goal::Min);
        assert_eq!(Goal::Auto.for_metric("lossless_ratio"), Goal::Max);
    }

    #[test]
    fn sorting_puts_missing_last() {
        let mut runs = vec![
            run("20261123_101500", Some(0.5), json!(1), &[]),
            run("20261123_101600", None, json!(1), &[]),
            run("20261123_101700", Some(2.0), json!(1), &[]),
        ];
        SortKey("metrics.sharpe_ratio".parse().unwrap()).sort(&mut runs, false);
        let ids: Vec<_> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            ["20261123_101700", "20261123_101500", "20261123_101600"]
        );
        SortKey(Field::Id).sort(&mut runs, false);
        assert_eq!(runs[0].id, "20261123_101500");
        SortKey(Field::Created).sort(&mut runs, true);
        assert_eq!(runs[0].id, "20261123_101500");
    }
}
