//! `verify --repair`: complete what an interrupted or failed write left
//! undone, from the repairs `verify` found. Under the store lock, and never
//! touching an artifact's content: read-only bits, stray temporary files,
//! `latest`, missing journal lines and changelog entries. Taking the lock
//! also sweeps dead writers' staging and trash folders.

use anyhow::{Context, Result};

use crate::fsx;
use crate::ops::{self, verify::Repair};
use crate::store::Store;

/// Apply `repairs`; returns one line per repair made, for the user.
pub fn repair(store: &Store, repairs: &[Repair]) -> Result<Vec<String>> {
    let _lock = ops::lock(store)?;
    // A repair may change what a run's index entry was read from (its
    // bits, a stray file): every index file is brought up to date.
    ops::index::touch_all(store);
    let mut done = Vec::new();
    let mut journal = Vec::new();
    for repair in repairs {
        match repair {
            Repair::ReadOnly(dir) => {
                fsx::make_tree_readonly(dir)
                    .with_context(|| format!("cannot make {} read-only", dir.display()))?;
                done.push(format!("made {} read-only", dir.display()));
            }
            Repair::RemoveTemp(path) => {
                fsx::remove_stray_temp(path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
                done.push(format!(
                    "removed the stray temporary file {}",
                    path.display()
                ));
            }
            Repair::Latest {
                stage,
                namespace,
                away,
            } => {
                let now = ops::repoint_latest(store, *stage, namespace, away.as_deref())?;
                let ns = if namespace.is_root() {
                    format!("{stage}/")
                } else {
                    format!("{stage}/{namespace}/")
                };
                done.push(match now {
                    Some(id) => format!("pointed {ns}latest at {id}"),
                    None => format!("removed {ns}latest: no complete run is left there"),
                });
            }
            Repair::Journal(entry) => {
                done.push(format!(
                    "journaled {} (published without its journal line)",
                    entry.target.as_deref().unwrap_or("?")
                ));
                journal.push(entry.clone());
            }
            Repair::SweepLeftovers => {
                // Done by `ops::lock` above; what went back is in the notices.
                done.push("finished what stopped writers left behind".to_string());
            }
            Repair::RecordHashes { location, hashes } => {
                let (_, n) = ops::seal::record_hashes(store, location, hashes)?;
                if n > 0 {
                    done.push(format!(
                        "recorded the hashes of {n} file{} imported by link in {}",
                        if n == 1 { "" } else { "s" },
                        location.reference()
                    ));
                }
            }
            Repair::Changelog(text) => {
                ops::promote::append_changelog(store, text)?;
                done.push("added a missing production/CHANGELOG.md entry".to_string());
            }
        }
    }
    ops::record(store.dir(), &journal)?;
    Ok(done)
}
