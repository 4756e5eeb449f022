//! The store's audit journal: `.artifactctl/journal.jsonl`, one JSON object a
//! line, appended under the store lock by every operation that changes what
//! the store holds (register, delete, promote, rollback, cleanup).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::host::{current_user, hostname};
use crate::store::layout::{INTERNAL_DIR, JOURNAL_FILE};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub time: DateTime<Utc>,
    pub user: String,
    #[serde(default)]
    pub host: Option<String>,
    /// `register`, `delete`, `promote`, `rollback`, `cleanup`, ...
    pub action: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl Entry {
    pub fn new(action: &str, source: Option<String>, target: Option<String>) -> Entry {
        Entry {
            time: Utc::now(),
            user: current_user(),
            host: hostname(),
            action: action.to_string(),
            source,
            target,
            details: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Entry {
        self.details.insert(key.to_string(), value.into());
        self
    }
}

/// The journal's path in a store.
pub fn path(store_dir: &Path) -> PathBuf {
    store_dir.join(INTERNAL_DIR).join(JOURNAL_FILE)
}

/// Entries as the journal stores them: one JSON object a line, each ending
/// in a newline. Appending is `fsx`'s job (see `ops::record`).
pub fn encode(entries: &[Entry]) -> Result<String> {
    let mut text = String::new();
    for entry in entries {
        text.push_str(&serde_json::to_string(entry)?);
        text.push('\n');
    }
    Ok(text)
}

/// Every readable entry, oldest first, and a note for each line that is not
/// (a torn last line after a crash, or a hand edit).
pub fn read(store_dir: &Path) -> Result<(Vec<Entry>, Vec<String>)> {
    let path = path(store_dir);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], vec![])),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(e) => entries.push(e),
            Err(e) => problems.push(format!(
                "{}:{}: skipped unreadable entry: {e}",
                path.display(),
                n + 1
            )),
        }
    }
    Ok((entries, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_skipping_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let entry = Entry::new("register", None, Some("raw/a".into())).with("bytes", 3);
        let mut text = encode(&[entry]).unwrap();
        text.push_str("{\"time\": \"torn");
        fs::create_dir_all(dir.path().join(INTERNAL_DIR)).unwrap();
        fs::write(path(dir.path()), text).unwrap();
        let (entries, problems) = read(dir.path()).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].details["bytes"], 3);
        assert_eq!(problems.len(), 1);
    }
}
