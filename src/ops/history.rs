//! `history`: the audit journal, filtered by namespace and action.
//!
//! Removals journal an intent before they unlist anything and a completion
//! after (`state` = `intent`, then `removed` or `failed`). History shows a
//! completed removal once, as its completion; an intent with no completion
//! is shown as it is, so an interrupted removal stays visible.

use anyhow::Result;

use crate::store::journal::{self, Entry};
use crate::store::refs::{Namespace, Stage};
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct HistoryOptions {
    /// Only entries whose source or target lies at or below this namespace.
    pub namespace: Namespace,
    /// Only these actions (`promote`, `rollback`, `delete`, ...); all if empty.
    pub actions: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct History {
    pub entries: Vec<Entry>,
    /// Journal lines that could not be read.
    pub problems: Vec<String>,
}

pub fn history(store: &Store, opts: &HistoryOptions) -> Result<History> {
    let (entries, problems) = journal::read(store.dir())?;
    Ok(filter(entries, problems, opts))
}

/// The entries `opts` selects, removal intents collapsed; shared by the
/// local journal and a remote's journal objects.
pub fn filter(entries: Vec<Entry>, problems: Vec<String>, opts: &HistoryOptions) -> History {
    let entries = collapse_intents(entries)
        .into_iter()
        .filter(|e| opts.actions.is_empty() || opts.actions.contains(&e.action))
        .filter(|e| {
            opts.namespace.is_root()
                || [&e.source, &e.target]
                    .into_iter()
                    .flatten()
                    .filter_map(|r| namespace_of(r))
                    .any(|ns| ns.starts_with(&opts.namespace))
        })
        .collect();
    History { entries, problems }
}

/// The namespace of a qualified ref (`production/gru/BTCEUR/1.0.0` gives
/// `gru/BTCEUR`); `None` for anything else (a registered folder's path).
fn namespace_of(qualified: &str) -> Option<Namespace> {
    let mut parts: Vec<&str> = qualified.split('/').collect();
    if parts.len() < 2 || parts[0].parse::<Stage>().is_err() {
        return None;
    }
    parts.pop();
    Some(Namespace::from_disk(
        parts[1..].iter().map(|s| s.to_string()).collect(),
    ))
}

/// Drop each removal intent that a later completion of the same action and
/// run answers.
fn collapse_intents(entries: Vec<Entry>) -> Vec<Entry> {
    let state = |e: &Entry| {
        e.details
            .get("state")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let mut answered = vec![false; entries.len()];
    let mut open: std::collections::HashMap<(String, Option<String>), Vec<usize>> =
        std::collections::HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let key = (e.action.clone(), e.source.clone());
        match state(e).as_deref() {
            Some("intent") => open.entry(key).or_default().push(i),
            Some(_) => {
                if let Some(j) = open.get_mut(&key).and_then(Vec::pop) {
                    answered[j] = true;
                }
            }
            None => {}
        }
    }
    entries
        .into_iter()
        .zip(answered)
        .filter(|(_, answered)| !answered)
        .map(|(e, _)| e)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_come_from_qualified_refs_only() {
        assert_eq!(
            namespace_of("production/gru/BTCEUR/1.0.0")
                .unwrap()
                .to_string(),
            "gru/BTCEUR"
        );
        assert!(namespace_of("raw/x").unwrap().is_root());
        assert!(namespace_of("/tmp/out").is_none());
        assert!(namespace_of("x").is_none());
    }

    #[test]
    fn answered_intents_collapse_and_open_ones_stay() {
        let intent =
            |src: &str| Entry::new("cleanup", Some(src.into()), None).with("state", "intent");
        let done =
            |src: &str| Entry::new("cleanup", Some(src.into()), None).with("state", "removed");
        let shown = collapse_intents(vec![intent("raw/a"), intent("raw/b"), done("raw/a")]);
        let states: Vec<(String, String)> = shown
            .iter()
            .map(|e| {
                (
                    e.source.clone().unwrap(),
                    e.details["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            states,
            vec![
                ("raw/b".into(), "intent".into()),
                ("raw/a".into(), "removed".into())
            ]
        );
    }
}
