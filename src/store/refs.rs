//! References to runs, and the rules for ids and namespace segments.
//!
//! Grammar: `[stage/][namespace/](run-id|latest)`. Stage defaults to `raw`.
//! Examples: `latest`, `20261123_101500`, `gru/BTCEUR/latest`,
//! `production/gru/BTCEUR/1.0.0`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ArtifactError;
use crate::store::layout::{LATEST, LATEST_POINTER};

pub const MAX_SEGMENT_LEN: usize = 128;
pub const MAX_NAMESPACE_DEPTH: usize = 8;
const ID_TIME_FORMAT: &str = "%Y%m%d_%H%M%S";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Raw,
    Validated,
    Production,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Raw, Stage::Validated, Stage::Production];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Raw => "raw",
            Stage::Validated => "validated",
            Stage::Production => "production",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = ArtifactError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Stage::Raw),
            "validated" => Ok(Stage::Validated),
            "production" => Ok(Stage::Production),
            _ => Err(ArtifactError::usage(format!(
                "unknown stage '{s}': use raw, validated or production"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Latest,
    Id(String),
}

/// A parsed reference. `stage` is `None` when the text named none (raw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRef {
    pub stage: Option<Stage>,
    pub namespace: Namespace,
    pub target: Target,
}

impl RunRef {
    pub fn stage(&self) -> Stage {
        self.stage.unwrap_or(Stage::Raw)
    }

    pub fn parse(text: &str) -> Result<RunRef, ArtifactError> {
        let trimmed = text.trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(ArtifactError::usage(format!("empty ref: {REF_HELP}")));
        }
        let mut segments: Vec<&str> = trimmed.split('/').collect();
        let stage = match segments.first().map(|s| s.parse::<Stage>()) {
            Some(Ok(stage)) if segments.len() > 1 => {
                segments.remove(0);
                Some(stage)
            }
            _ => None,
        };
        let last = segments.pop().unwrap_or_default();
        let namespace = Namespace::from_segments(&segments)
            .map_err(|e| ArtifactError::usage(format!("bad ref '{text}': {e}")))?;
        let target = if last == LATEST {
            Target::Latest
        } else {
            validate_id(last)
                .map_err(|e| ArtifactError::usage(format!("bad ref '{text}': {e}")))?;
            Target::Id(last.to_string())
        };
        Ok(RunRef {
            stage,
            namespace,
            target,
        })
    }
}

impl FromStr for RunRef {
    type Err = ArtifactError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunRef::parse(s)
    }
}

pub const REF_HELP: &str = "a ref is [stage/][namespace/](run-id|latest), e.g. latest, 20261123_101500, gru/BTCEUR/latest, production/gru/BTCEUR/1.0.0";

/// The printed form of a run's ref; the stage is left out for raw runs so the
/// common case stays short, and the result always parses back to the same run.
pub fn format_ref(stage: Stage, namespace: &Namespace, id: &str) -> String {
    let mut out = String::new();
    if stage != Stage::Raw || namespace.first_is_stage_name() {
        out.push_str(stage.as_str());
        out.push('/');
    }
    for seg in namespace.segments() {
        out.push_str(seg);
        out.push('/');
    }
    out.push_str(id);
    out
}

/// The fully qualified form (stage always present), used in lineage fields.
pub fn qualified_ref(stage: Stage, namespace: &Namespace, id: &str) -> String {
    let mut out = format!("{}/", stage.as_str());
    for seg in namespace.segments() {
        out.push_str(seg);
        out.push('/');
    }
    out.push_str(id);
    out
}

/// Zero or more validated path segments, e.g. `gru/BTCEUR`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Namespace(Vec<String>);

impl Namespace {
    pub fn root() -> Namespace {
        Namespace(Vec::new())
    }

    pub fn parse(text: &str) -> Result<Namespace, ArtifactError> {
        let trimmed = text.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(Namespace::root());
        }
        let segments: Vec<&str> = trimmed.split('/').collect();
        let ns = Namespace::from_segments(&segments)
            .map_err(|e| ArtifactError::usage(format!("bad namespace '{text}': {e}")))?;
        if ns.first_is_stage_name() {
            return Err(ArtifactError::usage(format!(
                "bad namespace '{text}': it cannot start with a stage name (raw, validated, production), or refs to it would be ambiguous"
            )));
        }
        Ok(ns)
    }

    fn from_segments(segments: &[&str]) -> Result<Namespace, String> {
        if segments.len() > MAX_NAMESPACE_DEPTH {
            return Err(format!("at most {MAX_NAMESPACE_DEPTH} namespace segments"));
        }
        for seg in segments {
            validate_segment(seg, "namespace segment")?;
            if *seg == LATEST {
                return Err("'latest' cannot be a namespace segment".into());
            }
        }
        Ok(Namespace(segments.iter().map(|s| s.to_string()).collect()))
    }

    /// Namespaces discovered on disk, trusted to exist but not validated
    /// (legacy layouts may use any folder name).
    pub fn from_disk(segments: Vec<String>) -> Namespace {
        Namespace(segments)
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn child(&self, segment: &str) -> Namespace {
        let mut v = self.0.clone();
        v.push(segment.to_string());
        Namespace(v)
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &Namespace) -> bool {
        self.0.starts_with(&other.0)
    }

    fn first_is_stage_name(&self) -> bool {
        self.0.first().is_some_and(|s| s.parse::<Stage>().is_ok())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

const ALLOWED_HELP: &str =
    "use letters, digits and . _ - + @ =, at most 128 characters, not starting with '.'";

fn validate_segment(seg: &str, what: &str) -> Result<(), String> {
    if seg.is_empty() {
        return Err(format!("empty {what} (two slashes in a row?)"));
    }
    if seg == "." || seg == ".." {
        return Err(format!(
            "'{seg}' is not allowed as a {what}: {ALLOWED_HELP}"
        ));
    }
    if seg.len() > MAX_SEGMENT_LEN {
        return Err(format!(
            "{what} is {} characters long: {ALLOWED_HELP}",
            seg.len()
        ));
    }
    if seg.starts_with('.') {
        return Err(format!("{what} '{seg}' starts with '.': {ALLOWED_HELP}"));
    }
    if let Some(bad) = seg
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-+@=".contains(*c)))
    {
        return Err(format!(
            "{what} '{}' contains {:?}: {ALLOWED_HELP}",
            seg.escape_debug(),
            bad
        ));
    }
    Ok(())
}

/// Validate a run id or version given by the user.
pub fn validate_id(id: &str) -> Result<(), String> {
    validate_segment(id, "run id")?;
    if id == LATEST || id == LATEST_POINTER {
        return Err(format!("'{id}' is reserved: choose another run id"));
    }
    Ok(())
}

/// Like [`validate_id`], as a usage error naming the flag.
pub fn check_id(id: &str, flag: &str) -> Result<(), ArtifactError> {
    validate_id(id).map_err(|e| ArtifactError::usage(format!("bad {flag} '{id}': {e}")))
}

/// The default id of a run created at `at`: `YYYYMMDD_HHMMSS` in UTC.
pub fn default_id(at: DateTime<Utc>) -> String {
    at.format(ID_TIME_FORMAT).to_string()
}

/// The `n`th id tried when `base` is taken. Three digits keep ids sorting in
/// time order: `…_101500` < `…_101500_001` < `…_101500_002` < `…_101501`.
pub fn suffixed_id(base: &str, n: u32) -> String {
    format!("{base}_{n:03}")
}

/// The time encoded in a timestamp id (`YYYYMMDD_HHMMSS`, with or without a
/// suffix), read as UTC.
pub fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let head = id.get(..15)?;
    let rest = &id[15..];
    if !(rest.is_empty() || rest.starts_with('_')) {
        return None;
    }
    // By hand rather than with a format string: discovery asks this of every
    // folder name, and strftime parsing was a visible share of `list`.
    let b = head.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b[8] != b'_' {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(4..6)?, digits(6..8)?)?;
    let time = chrono::NaiveTime::from_hms_opt(digits(9..11)?, digits(11..13)?, digits(13..15)?)?;
    Some(NaiveDateTime::new(date, time).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn id(s: &str) -> Target {
        Target::Id(s.into())
    }

    #[test]
    fn parses_the_documented_examples() {
        let r = RunRef::parse("latest").unwrap();
        assert_eq!(
            (r.stage(), r.namespace.is_root(), r.target),
            (Stage::Raw, true, Target::Latest)
        );

        let r = RunRef::parse("20261123_101500").unwrap();
        assert_eq!(r.target, id("20261123_101500"));

        let r = RunRef::parse("gru/BTCEUR/latest").unwrap();
        assert_eq!(r.namespace.to_string(), "gru/BTCEUR");
        assert_eq!(r.target, Target::Latest);

        let r = RunRef::parse("production/gru/BTCEUR/1.0.0").unwrap();
        assert_eq!(r.stage, Some(Stage::Production));
        assert_eq!(r.namespace.to_string(), "gru/BTCEUR");
        assert_eq!(r.target, id("1.0.0"));
    }

    #[test]
    fn a_lone_stage_name_is_an_id() {
        let r = RunRef::parse("raw").unwrap();
        assert_eq!(r.stage, None);
        assert_eq!(r.target, id("raw"));
        let r = RunRef::parse("validated/latest").unwrap();
        assert_eq!(r.stage, Some(Stage::Validated));
    }

    #[test]
    fn rejects_traversal_and_junk() {
        for bad in [
            "../etc",
            "a/../b",
            "..",
            "./x",
            "a//b",
            "",
            "/",
            "a/.hidden",
            "x\u{7}y",
            "a b",
            "ns/latest/id",
            "a\\b",
            "latest_pointer.txt",
        ] {
            assert!(RunRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = "a".repeat(129);
        assert!(RunRef::parse(&long).is_err());
        assert!(RunRef::parse(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn format_ref_round_trips() {
        let ns = Namespace::parse("gru/BTCEUR").unwrap();
        for stage in Stage::ALL {
            let text = format_ref(stage, &ns, "20240816_142301");
            let r = RunRef::parse(&text).unwrap();
            assert_eq!((r.stage(), &r.namespace), (stage, &ns));
        }
        assert_eq!(format_ref(Stage::Raw, &Namespace::root(), "x"), "x");
        assert_eq!(qualified_ref(Stage::Raw, &ns, "x"), "raw/gru/BTCEUR/x");
        // A legacy namespace named like a stage keeps its meaning.
        let odd = Namespace::from_disk(vec!["production".into()]);
        let r = RunRef::parse(&format_ref(Stage::Raw, &odd, "x")).unwrap();
        assert_eq!((r.stage(), r.namespace), (Stage::Raw, odd));
    }

    #[test]
    fn ids_sort_in_time_order() {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 10, 15, 0).unwrap();
        let base = default_id(t);
        assert_eq!(base, "20261123_101500");
        let next = default_id(t + chrono::Duration::seconds(1));
        let mut ids = vec![
            next.clone(),
            suffixed_id(&base, 2),
            base.clone(),
            suffixed_id(&base, 1),
        ];
        ids.sort();
        assert_eq!(
            ids,
            vec![
                base.clone(),
                suffixed_id(&base, 1),
                suffixed_id(&base, 2),
                next
            ]
        );
        assert_eq!(id_time(&suffixed_id(&base, 7)), Some(t));
        assert_eq!(id_time("v5_5_20251124"), None);
        assert_eq!(id_time("20261123_101500x"), None);
    }

    #[test]
    fn reserved_ids_are_refused() {
        assert!(validate_id("latest").is_err());
        assert!(check_id("v5_5_20251124", "--id").is_ok());
        let err = check_id("../x", "--id").unwrap_err();
        assert!(err.message.contains("--id"));
    }
}
