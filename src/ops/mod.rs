//! Operations: one module per command that changes the store, each taking a
//! plain options struct (the binary fills it from flags and config) and
//! returning data for the binary to print. Shared here: publishing a staged
//! run, the producer record, and the lineage index that protects runs.

pub mod checkout;
pub mod cleanup;
pub mod clear;
pub mod delete;
pub mod history;
pub mod ids;
pub mod index;
pub mod pin;
pub mod promote;
pub mod refresh;
pub mod register;
pub mod register_all;
pub mod removal;
pub mod repair;
pub mod report;
pub mod rollback;
pub mod seal;
pub mod verify;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::error::ArtifactError;
use crate::fsx::{self, Staging, StoreLock};
use crate::store::journal;
use crate::store::listing::RunChecks;
use crate::store::metadata::{Metadata, Producer, RunStatus};
use crate::store::refs::{qualified_ref, Namespace, Stage};
use crate::store::{LatestState, ReadOptions, RunLocation, Store};

pub use ids::IdRequest;

#[derive(Debug, Clone)]
pub struct Published {
    pub location: RunLocation,
    pub became_latest: bool,
    /// What the caller should tell the user: a reserved id that changed.
    pub notes: Vec<String>,
}

/// What to do with `latest` when a run is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatestPolicy {
    /// Move it when the run is complete and newer than the current target.
    Advance,
    /// Leave it (failed or interrupted runs, backfills).
    Keep,
    /// Point it at the run whatever its time (`--allow-downgrade`).
    Always,
    /// Point it at the highest complete semver release of the namespace,
    /// decided under the lock, so racing promotions end on the right one and
    /// readers never see a downgrade in between.
    HighestVersion,
}

/// Publish a staged run into `<stage>/<ns>/<id>`: under the store lock, pick
/// the id (`requested`, or `YYYYMMDD_HHMMSS[_NNN]` from `created_at`), write
/// `metadata.json` last, rename the folder into place without replacing
/// anything, move `latest` forward, and journal the action.
pub fn publish_run(
    store: &Store,
    staging: Staging,
    meta: &mut Metadata,
    requested: IdRequest,
    latest: LatestPolicy,
    journal_entry: journal::Entry,
) -> Result<Published> {
    fsx::fault::hit(fsx::fault::Point::Staged)?;
    let ns = Namespace::parse(&meta.namespace)?;
    let ns_dir = store.ns_dir(meta.stage, &ns)?;
    let _lock = lock(store)?;
    fs_create_dir_all(&ns_dir)?;
    let chosen = ids::choose(store, meta.stage, &ns, requested)?;
    let location = chosen.location;
    index::touch(store, location.stage, &location.namespace);
    meta.id = location.id.clone();
    staging
        .write_run_file(
            crate::store::metadata::METADATA_FILE,
            meta.to_json().as_bytes(),
        )
        .with_context(|| format!("cannot write the metadata of {}", location.reference()))?;
    let staging_path = staging.path().to_path_buf();
    staging.publish(&location.path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::Error::new(ArtifactError::conflict(format!(
                "{} was created by another writer at the same moment; retry",
                location.reference()
            )))
        } else {
            anyhow::Error::new(e).context(format!(
                "cannot move {} to {}",
                staging_path.display(),
                location.path.display()
            ))
        }
    })?;
    // Published: from here on a failure must say so, never "nothing was
    // registered". What is left undone, `verify --repair` completes.
    let became_latest = match latest {
        _ if meta.status != RunStatus::Complete => Ok(false),
        LatestPolicy::Keep => Ok(false),
        LatestPolicy::Advance => advance_latest(store, &location, meta.created_at),
        LatestPolicy::Always => point_latest(store, &location),
        LatestPolicy::HighestVersion => highest_version_latest(store, &location),
    }
    .map_err(|e| published_but(&location, "moving latest failed", e))?;
    let entry = journal_entry
        .with("became_latest", became_latest)
        .with("total_size", meta.total_size)
        .with("file_count", meta.file_count);
    let entry = journal::Entry {
        target: Some(location.qualified()),
        ..entry
    };
    record(store.dir(), std::slice::from_ref(&entry))
        .map_err(|e| published_but(&location, "the journal entry failed", e))?;
    Ok(Published {
        location,
        became_latest,
        notes: chosen.note.into_iter().collect(),
    })
}

/// The error for a step that failed after `location` was published: it says
/// what is true (the run is there) and how to complete the rest.
pub fn published_but(location: &RunLocation, what: &str, err: anyhow::Error) -> anyhow::Error {
    ArtifactError::incomplete(format!(
        "published as {}, but {what}: {err:#}; `artifactctl verify --repair` completes it",
        location.qualified()
    ))
    .into()
}

/// Add `context` to a failure unless the run was published meanwhile (then
/// the error already says what is true).
pub fn unless_published(err: anyhow::Error, context: String) -> anyhow::Error {
    let published = err
        .chain()
        .filter_map(|e| e.downcast_ref::<ArtifactError>())
        .any(|e| e.kind == crate::error::ErrorKind::Incomplete);
    if published {
        err
    } else {
        err.context(context)
    }
}

/// The store lock, held by a writer that a signal must not end half-way:
/// SIGINT and SIGTERM only raise the flag of [`crate::interrupt`] while it
/// lives.
pub struct Locked {
    store: Store,
    _lock: StoreLock,
    _busy: crate::interrupt::Busy,
}

impl Drop for Locked {
    /// The index files of what this writer touched are rewritten before the
    /// lock (a later field) is released.
    fn drop(&mut self) {
        index::flush(&self.store);
    }
}

/// Take the store lock and finish what dead writers left behind. A folder a
/// dead `register --move` had taken in is given back, and said so in
/// [`take_notices`].
pub fn lock(store: &Store) -> Result<Locked> {
    let lock = StoreLock::acquire(store.dir()).with_context(|| {
        format!(
            "cannot take the store lock in {}; check that the folder is writable",
            store.internal_dir().display()
        )
    })?;
    // Busy only once the lock is held: a command still waiting for another
    // writer's lock has done nothing yet, so a signal may end it at once.
    let busy = crate::interrupt::busy();
    let swept = fsx::sweep_leftovers(store.dir());
    let mut notices = NOTICES.lock().unwrap_or_else(|e| e.into_inner());
    for recovered in swept.recovered {
        notices.push(recovered.to_string());
    }
    Ok(Locked {
        store: store.clone(),
        _lock: lock,
        _busy: busy,
    })
}

/// What the library did on its own that the user must hear about (a folder
/// recovered from a dead writer), for the binary to print at the end.
static NOTICES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The notices gathered so far, oldest first; they are handed out once.
pub fn take_notices() -> Vec<String> {
    std::mem::take(&mut *NOTICES.lock().unwrap_or_else(|e| e.into_inner()))
}

fn fs_create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Point `latest` at `location` unless a complete run newer than it exists:
/// `latest` only moves forward in time. When `latest` is healthy (a link to a
/// complete run) it is trusted to be the newest; when it is dangling,
/// missing, escaping or names a failed run, the runs themselves are read, so
/// a broken `latest` never lets an older run take over. The caller holds the
/// lock.
pub(crate) fn advance_latest(
    store: &Store,
    location: &RunLocation,
    created_at: DateTime<Utc>,
) -> Result<bool> {
    let (stage, ns) = (location.stage, &location.namespace);
    let opts = ReadOptions::new(&[], false)?;
    let state = store.latest(stage, ns)?;
    if state == LatestState::NotALink {
        // Someone's real file or folder: never replaced; `verify` reports it.
        return Ok(false);
    }
    let healthy_target = match state {
        LatestState::Link(id) | LatestState::Pointer(id) if id != location.id => {
            let run = store.read_run(store.location(stage, ns, &id)?, &opts);
            (run.status == RunStatus::Complete && run.problems.is_empty()).then_some(run)
        }
        _ => None,
    };
    let newer = match healthy_target {
        Some(current) => current
            .created_at
            .filter(|t| *t > created_at)
            .map(|_| current),
        None => store
            .newest_complete(stage, ns, Some(&location.id))
            .filter(|run| run.created_at.is_some_and(|t| t > created_at)),
    };
    match newer {
        Some(newer) => {
            // Repair a broken `latest` on the way: it names the newest run.
            if !matches!(store.latest(stage, ns)?, LatestState::Link(ref id) | LatestState::Pointer(ref id) if *id == newer.id)
            {
                point_latest(store, &newer.location)?;
            }
            Ok(false)
        }
        None => point_latest(store, location),
    }
}

/// Point production `latest` at the highest complete release by
/// [`ReleaseKey`](crate::policy::version::ReleaseKey) (semver precedence,
/// legacy release names such as `v5_5_prod_v1.0` below every semantic
/// version), whichever promotion published it. The caller holds the lock.
/// Returns whether `location` is that release.
fn highest_version_latest(store: &Store, location: &RunLocation) -> Result<bool> {
    use crate::policy::version::ReleaseKey;
    let opts = ReadOptions::new(&[], false)?;
    let highest = store
        .locations_in(location.stage, &location.namespace)
        .into_iter()
        .filter(|l| {
            l.id == location.id || store.read_run(l.clone(), &opts).status == RunStatus::Complete
        })
        .max_by_key(|l| ReleaseKey::of(&l.id))
        .unwrap_or_else(|| location.clone());
    let current = store.latest(location.stage, &location.namespace)?;
    if current.id() != Some(highest.id.as_str()) {
        point_latest(store, &highest)?;
    }
    Ok(highest.id == location.id)
}

/// Point `latest` at `location` unconditionally. The caller holds the lock.
fn point_latest(store: &Store, location: &RunLocation) -> Result<bool> {
    let ns_dir = store.ns_dir(location.stage, &location.namespace)?;
    fsx::set_latest(&ns_dir, &location.id).with_context(|| {
        format!(
            "cannot update {}",
            ns_dir.join(crate::store::layout::LATEST).display()
        )
    })?;
    Ok(true)
}

/// Point `latest` at the newest complete run, leaving out `leaving` (a run
/// about to be deleted), or remove it when no such run is left. A `latest`
/// that names another existing run is kept; a dangling or escaping one is
/// replaced (the link itself, never what it points to); a real file or
/// folder named `latest` is never touched. The caller holds the lock.
pub fn repoint_latest(
    store: &Store,
    stage: Stage,
    ns: &Namespace,
    leaving: Option<&str>,
) -> Result<Option<String>> {
    let ns_dir = store.ns_dir(stage, ns)?;
    match store.latest(stage, ns)? {
        LatestState::Link(id) | LatestState::Pointer(id)
            if Some(id.as_str()) != leaving && ns_dir.join(&id).is_dir() =>
        {
            return Ok(Some(id));
        }
        LatestState::NotALink => return Ok(None),
        _ => {}
    }
    match store.newest_complete(stage, ns, leaving) {
        Some(run) => {
            fsx::set_latest(&ns_dir, &run.id)?;
            Ok(Some(run.id))
        }
        None => {
            if ns_dir.is_dir() {
                fsx::remove_latest(&ns_dir)?;
            }
            Ok(None)
        }
    }
}

/// Who made a run: the command line, this version, the host and the git
/// commit of the project when it is a checkout.
pub fn producer(project_root: &Path, command: Vec<String>) -> Producer {
    Producer {
        command,
        version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: crate::host::hostname(),
        git_commit: git_commit(project_root),
        extra: Default::default(),
    }
}

/// Read the commit `HEAD` names, without running git.
pub fn git_commit(root: &Path) -> Option<String> {
    let dot_git = root
        .ancestors()
        .map(|d| d.join(".git"))
        .find(|p| p.exists())?;
    let git_dir = if dot_git.is_file() {
        let text = std::fs::read_to_string(&dot_git).ok()?;
        let rel = text.trim().strip_prefix("gitdir:")?.trim();
        dot_git.parent()?.join(rel)
    } else {
        dot_git
    };
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:").map(str::trim) else {
        return is_sha(head).then(|| head.to_string());
    };
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|_| git_dir.clone());
    for dir in [&git_dir, &common] {
        if let Ok(sha) = std::fs::read_to_string(dir.join(reference)) {
            let sha = sha.trim();
            if is_sha(sha) {
                return Some(sha.to_string());
            }
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (sha, name) = line.split_once(' ')?;
        (name == reference && is_sha(sha)).then(|| sha.to_string())
    })
}

fn is_sha(s: &str) -> bool {
    s.len() >= 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// For each run that a validated or production artifact came from, the
/// artifacts that name it in their lineage (`promoted_from` or `parent`).
/// Keys and values are qualified refs (`raw/ns/id`).
pub fn lineage_dependents(store: &Store) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let stages: Vec<Stage> = store
        .stages()
        .iter()
        .copied()
        .filter(|&s| s != Stage::Raw)
        .collect();
    let Ok(opts) = ReadOptions::new(&[], false) else {
        return out;
    };
    // Indexed artifacts carry their lineage refs (checked against their
    // metadata.json); the others are read.
    let listing = store.listing(&stages, &Namespace::root(), &opts, RunChecks::Always);
    for row in &listing.rows {
        let location = listing.location(row);
        let (parent, promoted_from) = if row.indexed {
            row.lineage.as_deref().cloned().unwrap_or_default()
        } else {
            let Ok(meta) = Metadata::read(&location.path) else {
                continue;
            };
            (meta.lineage.parent, meta.lineage.promoted_from)
        };
        let this = qualified_ref(location.stage, &location.namespace, &location.id);
        for source in [promoted_from, parent].into_iter().flatten() {
            out.entry(source).or_default().push(this.clone());
        }
    }
    out
}

/// Append journal entries: one write on an `O_APPEND` descriptor and one
/// fsync for the batch (a cleanup removing thousands of runs would otherwise
/// pay an fsync per run). The caller holds the store lock.
pub fn record(store_dir: &Path, entries: &[journal::Entry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let text = journal::encode(entries)?;
    fsx::ensure_internal_dir(store_dir, "")
        .with_context(|| format!("cannot journal in {}", store_dir.display()))?;
    let path = journal::path(store_dir);
    fsx::append_durably(&path, text.as_bytes())
        .with_context(|| format!("cannot append to the journal {}", path.display()))
}

/// Atomically (re)write `<dir>/metadata.json`.
pub fn write_metadata(dir: &Path, meta: &Metadata) -> Result<()> {
    let path = dir.join(crate::store::metadata::METADATA_FILE);
    fsx::atomic_write(&path, meta.to_json().as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_head_from_a_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path().join(".git");
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(git_commit(dir.path()), None);
        let sha = "0123456789abcdef0123456789abcdef01234567";
        std::fs::write(
            git.join("packed-refs"),
            format!("# pack\n{sha} refs/heads/main\n"),
        )
        .unwrap();
        assert_eq!(git_commit(dir.path()).as_deref(), Some(sha));
        std::fs::write(
            git.join("refs/heads/main"),
            format!("{}\n", sha.replace('0', "f")),
        )
        .unwrap();
        assert_eq!(
            git_commit(&dir.path().join("sub")).unwrap(),
            sha.replace('0', "f")
        );
    }
}
