//! The store's audit journal: `.artifactctl/journal.jsonl`, one JSON object a
//! line, appended under the store lock by every operation that changes what
//! the store holds (register, delete, promote, rollback, cleanup).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fsx::INTERNAL_DIR;

pub const JOURNAL_FILE: &str = "journal.jsonl";

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

/// Append one entry. The caller holds the store lock; the line is written
/// with one `write` on an `O_APPEND` descriptor and fsynced.
pub fn append(store_dir: &Path, entry: &Entry) -> Result<()> {
    append_all(store_dir, std::slice::from_ref(entry))
}

/// Append several entries with one write and one fsync (a cleanup removing
/// thousands of runs would otherwise pay an fsync per run). The caller holds
/// the store lock.
pub fn append_all(store_dir: &Path, entries: &[Entry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let dir = store_dir.join(INTERNAL_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(JOURNAL_FILE);
    let mut text = String::new();
    for entry in entries {
        text.push_str(&serde_json::to_string(entry)?);
        text.push('\n');
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open the journal {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot append to the journal {}", path.display()))
}

/// Every readable entry, oldest first, and a note for each line that is not
/// (a torn last line after a crash, or a hand edit).
pub fn read(store_dir: &Path) -> Result<(Vec<Entry>, Vec<String>)> {
    let path = store_dir.join(INTERNAL_DIR).join(JOURNAL_FILE);
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

pub fn current_user() -> String {
    for var in ["USER", "LOGNAME", "USERNAME"] {
        if let Ok(u) = std::env::var(var) {
            if !u.is_empty() {
                return u;
            }
        }
    }
    // SAFETY: getuid cannot fail.
    format!("uid:{}", unsafe { libc::getuid() })
}

pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // when the name fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reads_back_skipping_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        append(
            dir.path(),
            &Entry::new("register", None, Some("raw/a".into())).with("bytes", 3),
        )
        .unwrap();
        let path = dir.path().join(INTERNAL_DIR).join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"time\": \"torn").unwrap();
        let (entries, problems) = read(dir.path()).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].details["bytes"], 3);
        assert_eq!(problems.len(), 1);
    }
}
