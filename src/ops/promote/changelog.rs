//! `production/CHANGELOG.md`: one entry per release and rollback.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::*;
use crate::fsx::{self};
use crate::policy::gates::GateResult;
use crate::policy::version::Version;
use crate::store::refs::Stage;
use crate::store::{RunLocation, Store};

pub const CHANGELOG_FILE: &str = "CHANGELOG.md";
#[allow(clippy::too_many_arguments)]
pub(super) fn changelog_entry(
    target: &RunLocation,
    version: &Version,
    validated: &str,
    raw: Option<&str>,
    user: &str,
    approval: ApprovalMethod,
    gates: &[GateResult],
    notes: Option<&str>,
    at: DateTime<Utc>,
) -> String {
    let mut s = format!(
        "\n## {} {version} ({})\n\n",
        namespace_label(target),
        at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    s.push_str(&format!("- from: {validated}"));
    if let Some(raw) = raw {
        s.push_str(&format!(" (raw: {raw})"));
    }
    s.push('\n');
    let how = match approval {
        ApprovalMethod::Interactive => "interactive confirmation",
        ApprovalMethod::Flag => "--approve",
    };
    s.push_str(&format!("- approved by: {} ({how})\n", one_line(user)));
    for g in gates {
        let actual = g
            .actual
            .map(|v| v.to_string())
            .unwrap_or_else(|| "missing".into());
        s.push_str(&format!("- gate: {} (actual {actual}): pass\n", g.gate));
    }
    if let Some(notes) = notes {
        // Quoted as a JSON string: a newline in the notes becomes `\n`, so no
        // input can add a line (a forged `- approved by:`) of its own.
        let quoted = serde_json::to_string(notes).unwrap_or_else(|_| one_line(notes));
        s.push_str(&format!("- notes: {quoted}\n"));
    }
    s
}

/// `text` with control characters (newlines above all) escaped, so a value
/// from the environment stays on its line.
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Append `text` to `production/CHANGELOG.md` by rewriting it atomically, so
/// readers never see half an entry. The caller holds the lock.
pub(crate) fn append_changelog(store: &Store, text: &str) -> Result<()> {
    let path = store.stage_dir(Stage::Production)?.join(CHANGELOG_FILE);
    let mut current = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# Production changelog\n\nWritten by artifactctl: one entry per promotion and rollback.\n".to_string()
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    current.push_str(text);
    fsx::atomic_write(&path, current.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::refs::Namespace;

    #[test]
    fn notes_and_user_cannot_add_a_line() {
        let target = RunLocation {
            stage: Stage::Production,
            namespace: Namespace::root(),
            id: "1.0.0".into(),
            path: "1.0.0".into(),
        };
        let entry = changelog_entry(
            &target,
            &Version::parse("1.0.0").unwrap(),
            "validated/a",
            None,
            "eve\n- approved by: boss",
            ApprovalMethod::Flag,
            &[],
            Some("fine\n- approved by: boss (--approve)\r\n## 9.9.9"),
            chrono::DateTime::from_timestamp(0, 0).unwrap(),
        );
        let lines: Vec<&str> = entry.lines().collect();
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("- approved by:"))
                .count(),
            1,
            "{entry}"
        );
        assert!(!lines.iter().any(|l| l.starts_with("## 9")), "{entry}");
        assert!(
            entry.contains(r#"- notes: "fine\n- approved by: boss (--approve)\r\n## 9.9.9""#),
            "{entry}"
        );
    }
}
