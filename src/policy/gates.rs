//! Promotion gates: small comparisons such as `coverage > 0.95` declared in
//! `[promote.<stage>] require`, parsed once (a malformed gate is a config
//! error that points at the column of the problem) and evaluated against a
//! run's metrics.
//!
//! Grammar (whitespace is allowed between the parts):
//!
//! ```text
//! gate   := metric op value
//! metric := [A-Za-z_][A-Za-z0-9_.-]*        e.g. coverage, val.loss, test-acc
//! op     := ">" | ">=" | "<" | "<=" | "==" | "!="
//! value  := number | "true" | "false"       e.g. 0.95, -1, 1e-3, true
//! ```
//!
//! Metrics are numbers; `true` and `false` stand for 1 and 0, the way
//! [`crate::store::metrics`] stores boolean results.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    fn holds(self, actual: f64, wanted: f64) -> bool {
        match self {
            Op::Gt => actual > wanted,
            Op::Ge => actual >= wanted,
            Op::Lt => actual < wanted,
            Op::Le => actual <= wanted,
            Op::Eq => actual == wanted,
            Op::Ne => actual != wanted,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The gate as written in the config.
    pub text: String,
    pub metric: String,
    pub op: Op,
    pub value: f64,
}

/// Why a gate does not parse, and where: `column` counts characters from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for GateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

pub const GRAMMAR_HELP: &str =
    "a gate is METRIC OP VALUE with OP one of > >= < <= == != and VALUE a number, true or false, e.g. \"coverage > 0.95\"";

/// Parse one gate.
pub fn parse(text: &str) -> Result<Gate, GateError> {
    let chars: Vec<char> = text.chars().collect();
    let mut pos = 0;
    let skip_space = |pos: &mut usize| {
        while *pos < chars.len() && chars[*pos].is_whitespace() {
            *pos += 1;
        }
    };
    let error = |pos: usize, message: String| GateError {
        column: pos + 1,
        message,
    };

    skip_space(&mut pos);
    let start = pos;
    if pos >= chars.len() || !(chars[pos].is_ascii_alphabetic() || chars[pos] == '_') {
        let found = describe(chars.get(pos));
        return Err(error(pos, format!("expected a metric name, found {found}")));
    }
    while pos < chars.len() && (chars[pos].is_ascii_alphanumeric() || "_.-".contains(chars[pos])) {
        pos += 1;
    }
    let metric: String = chars[start..pos].iter().collect();

    skip_space(&mut pos);
    let op_at = pos;
    let next = chars.get(pos + 1).copied();
    let (op, len) = match (chars.get(pos).copied(), next) {
        (Some('>'), Some('=')) => (Op::Ge, 2),
        (Some('<'), Some('=')) => (Op::Le, 2),
        (Some('='), Some('=')) => (Op::Eq, 2),
        (Some('!'), Some('=')) => (Op::Ne, 2),
        (Some('>'), _) => (Op::Gt, 1),
        (Some('<'), _) => (Op::Lt, 1),
        (Some('='), _) => {
            return Err(error(op_at, "'=' is not a comparison: use '=='".into()));
        }
        (found, _) => {
            let found = describe(found.as_ref());
            return Err(error(
                op_at,
                format!("expected one of > >= < <= == != after '{metric}', found {found}"),
            ));
        }
    };
    pos += len;

    skip_space(&mut pos);
    let value_at = pos;
    while pos < chars.len() && !chars[pos].is_whitespace() {
        pos += 1;
    }
    let word: String = chars[value_at..pos].iter().collect();
    let value = match word.as_str() {
        "" => {
            return Err(error(
                value_at,
                format!("expected a number, true or false after '{}'", op.as_str()),
            ))
        }
        "true" => 1.0,
        "false" => 0.0,
        w => match w.parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => {
                return Err(error(
                    value_at,
                    format!("'{w}' is not a number, true or false"),
                ))
            }
        },
    };
    skip_space(&mut pos);
    if pos < chars.len() {
        let rest: String = chars[pos..].iter().collect();
        return Err(error(
            pos,
            format!("unexpected '{rest}' after the value; one comparison per gate"),
        ));
    }
    Ok(Gate {
        text: text.trim().to_string(),
        metric,
        op,
        value,
    })
}

fn describe(c: Option<&char>) -> String {
    match c {
        None => "the end of the gate".into(),
        Some(c) => format!("'{c}'"),
    }
}

/// Parse every gate of a config list; `origin` names the setting for the
/// message, e.g. `[promote.validated] require`.
pub fn parse_all(texts: &[String], origin: &str) -> Result<Vec<Gate>, crate::ArtifactError> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            parse(text).map_err(|e| {
                crate::ArtifactError::usage(format!(
                    "{origin}[{i}] \"{text}\": {e}; {GRAMMAR_HELP}; fix the config (artifactctl.toml or ARTIFACTCTL_ environment)"
                ))
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// The metric is in neither the run nor the results file.
    Missing,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    pub gate: String,
    pub metric: String,
    pub actual: Option<f64>,
    pub outcome: Outcome,
}

impl GateResult {
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Pass
    }
}

pub fn evaluate(gates: &[Gate], metrics: &BTreeMap<String, f64>) -> Vec<GateResult> {
    gates
        .iter()
        .map(|g| {
            let actual = metrics.get(&g.metric).copied();
            let outcome = match actual {
                None => Outcome::Missing,
                Some(v) if g.op.holds(v, g.value) => Outcome::Pass,
                Some(_) => Outcome::Fail,
            };
            GateResult {
                gate: g.text.clone(),
                metric: g.metric.clone(),
                actual,
                outcome,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let g = parse("coverage > 0.95").unwrap();
        assert_eq!(
            (g.metric.as_str(), g.op, g.value),
            ("coverage", Op::Gt, 0.95)
        );
        let g = parse("  generalization_passed==true ").unwrap();
        assert_eq!((g.op, g.value), (Op::Eq, 1.0));
        assert_eq!(g.text, "generalization_passed==true");
        assert_eq!(parse("val.loss<=-1e-3").unwrap().value, -1e-3);
        assert_eq!(parse("collapse != false").unwrap().op, Op::Ne);
        assert_eq!(parse("a >= 2").unwrap().op, Op::Ge);
    }

    #[test]
    fn errors_point_at_the_problem() {
        let cases = [
            ("coverage >> 0.95", 11, "not a number"),
            ("coverage = 0.95", 10, "'=='"),
            ("coverage 0.95", 10, "expected one of"),
            ("> 0.95", 1, "metric name"),
            ("coverage >", 11, "expected a number"),
            ("coverage > 0.9 and x", 16, "unexpected"),
            ("coverage > high", 12, "'high'"),
            ("", 1, "metric name"),
        ];
        for (text, column, words) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.column, column, "{text:?}: {err}");
            assert!(err.message.contains(words), "{text:?}: {err}");
        }
    }

    #[test]
    fn parse_all_names_the_setting_and_index() {
        let texts = vec!["a > 1".to_string(), "b =< 2".to_string()];
        let err = parse_all(&texts, "[promote.validated] require").unwrap_err();
        assert!(err.message.contains("require[1]"), "{}", err.message);
        assert!(err.message.contains("column 3"), "{}", err.message);
    }

    #[test]
    fn evaluates_pass_fail_and_missing() {
        let gates: Vec<Gate> = [
            "coverage > 0.95",
            "best_val_loss < 0.5",
            "passed == true",
            "x < 1",
        ]
        .iter()
        .map(|t| parse(t).unwrap())
        .collect();
        let metrics: BTreeMap<String, f64> = [
            ("coverage".to_string(), 0.99),
            ("best_val_loss".to_string(), 0.7),
            ("passed".to_string(), 1.0),
        ]
        .into_iter()
        .collect();
        let outcomes: Vec<Outcome> = evaluate(&gates, &metrics)
            .iter()
            .map(|r| r.outcome)
            .collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Pass,
                Outcome::Fail,
                Outcome::Pass,
                Outcome::Missing
            ]
        );
    }
}
