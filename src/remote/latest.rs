//! Moving a remote's `latest` of a stage by hand (`promote --remote`,
//! `rollback --remote`): compare-and-swap on the latest object, re-read and
//! decided again on a conflict. Promote moves only forward (a newer run, a
//! higher version in production); rollback only back, to a release the
//! remote holds.
//!
//! A move's journal object can only be written after its swap, so the new
//! latest object carries it (`event`: its key, chosen before the swap, and
//! the entry). Whoever moves that latest next (a move run again, another
//! move, a push), first writes the event create-only if it is missing: a move killed
//! between its swap and its journal object is still in `history --remote`,
//! once.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::backend::{Mode, Put};
use super::{latest_key, parse_latest, unique_key, Remote};
use crate::error::ArtifactError;
use crate::policy::version::Version;
use crate::store::journal;
use crate::store::metadata::{Metadata, RunStatus};
use crate::store::refs::{qualified_ref, Namespace, Stage};

/// The journal event a latest object carries (see the module's notes).
#[derive(Serialize, Deserialize)]
struct Event {
    key: String,
    entry: journal::Entry,
}

#[derive(Deserialize)]
struct Carried {
    #[serde(default)]
    event: Option<Event>,
}

/// Write the journal object the latest object `bytes` carries, unless it
/// is there. The key comes from the remote: only a plain journal key is
/// written.
pub(crate) async fn finish_event(remote: &Remote, bytes: &[u8]) -> Result<()> {
    let Ok(Carried { event: Some(event) }) = serde_json::from_slice::<Carried>(bytes) else {
        return Ok(());
    };
    let plain = event
        .key
        .strip_prefix("journal/")
        .and_then(|name| name.strip_suffix(".json"))
        .is_some_and(|stem| {
            !stem.is_empty()
                && stem
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if !plain || remote.backend.exists(&event.key).await? {
        return Ok(());
    }
    remote
        .backend
        .put(&event.key, serde_json::to_vec(&event.entry)?, Mode::Create)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Back,
}

pub struct MoveLatest {
    pub stage: Stage,
    pub namespace: Namespace,
    /// The run to point at; for a rollback without one, the highest release
    /// below the current latest.
    pub id: Option<String>,
    pub direction: Direction,
    /// Decide and report, write nothing.
    pub dry_run: bool,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct Moved {
    pub remote: String,
    pub stage: Stage,
    pub namespace: String,
    pub from: Option<String>,
    pub to: String,
    #[serde(rename = "ref")]
    pub reference: String,
    /// False when latest already named the run (or with --dry-run).
    pub moved: bool,
}

/// Is run `a` after run `b` in the order `latest` moves forward in?
fn after(stage: Stage, a: &Metadata, b: &Metadata) -> bool {
    if stage == Stage::Production {
        if let (Ok(va), Ok(vb)) = (Version::parse(&a.id), Version::parse(&b.id)) {
            return va > vb;
        }
    }
    (a.created_at, &a.id) > (b.created_at, &b.id)
}

pub fn move_latest(remote: &Remote, opts: &MoveLatest) -> Result<Moved> {
    let (stage, ns) = (opts.stage, &opts.namespace);
    let backend = &remote.backend;
    let key = latest_key(stage, ns);
    let shown = |id: &str| qualified_ref(stage, ns, id);
    for _ in 0..16 {
        let current = remote.block_on(backend.get(&key))?;
        // The last move's journal object, if it was killed before it.
        if let Some(got) = &current {
            remote.block_on(finish_event(remote, &got.bytes))?;
        }
        let from = current
            .as_ref()
            .map(|g| parse_latest(&g.bytes, &backend.shown))
            .transpose()?;
        let from_meta = match &from {
            // A latest naming a run the remote lacks can be moved anywhere.
            Some(id) => remote.record(stage, ns, id).ok(),
            None => None,
        };
        let to = match (&opts.id, opts.direction) {
            (Some(id), _) => id.clone(),
            (None, Direction::Back) => previous_release(remote, stage, ns, from.as_deref())?,
            (None, Direction::Forward) => {
                return Err(ArtifactError::usage("name the run latest should move to").into())
            }
        };
        let target = remote.record(stage, ns, &to)?;
        if target.status != RunStatus::Complete {
            return Err(ArtifactError::refused(format!(
                "{} on remote '{}' is {}, not complete; latest only names complete runs",
                shown(&to),
                remote.name,
                target.status.as_str()
            ))
            .into());
        }
        let mut moved = Moved {
            remote: remote.name.clone(),
            stage,
            namespace: ns.to_string(),
            from: from.clone(),
            to: to.clone(),
            reference: shown(&to),
            moved: false,
        };
        if from.as_deref() == Some(to.as_str()) {
            return Ok(moved);
        }
        if let Some(cur) = &from_meta {
            match opts.direction {
                Direction::Forward if after(stage, cur, &target) => {
                    return Err(ArtifactError::refused(format!(
                        "the latest of {} on remote '{}' is {}, after {}; promote moves latest only forward: `artifactctl rollback --remote {} {} --to {to}` moves it back",
                        shown("latest"), remote.name, cur.id, to, remote.name, ns
                    ))
                    .into())
                }
                Direction::Back if after(stage, &target, cur) => {
                    return Err(ArtifactError::refused(format!(
                        "{} is after the remote latest {}; rollback moves latest only back: `artifactctl promote --remote {} {}` moves it forward",
                        shown(&to), cur.id, remote.name, shown(&to)
                    ))
                    .into())
                }
                _ => {}
            }
        }
        if opts.dry_run {
            return Ok(moved);
        }
        let mode = match &current {
            None => Mode::Create,
            Some(got) => match &got.etag {
                Some(etag) => Mode::Update(etag.clone()),
                None => anyhow::bail!(
                    "remote {} gave no ETag for {key}; it cannot move latest safely",
                    backend.shown
                ),
            },
        };
        let action = match opts.direction {
            Direction::Forward => "promote",
            Direction::Back => "rollback",
        };
        let entry = journal::Entry::new(action, from.as_deref().map(shown), Some(shown(&to)))
            .with("remote", remote.name.clone())
            .with("to", to.clone());
        let event = Event {
            key: unique_key("journal", opts.now),
            entry,
        };
        crate::fsx::fault::hit(crate::fsx::fault::Point::Rename)?;
        crate::fsx::fault::hit(crate::fsx::fault::Point::RemoteSwap)?;
        let body = serde_json::to_vec(&serde_json::json!({ "id": to, "event": event }))?;
        if remote.block_on(backend.put(&key, body, mode))? != Put::Done {
            // Someone moved it meanwhile: read again and decide again.
            continue;
        }
        moved.moved = true;
        remote.block_on(backend.put(
            &event.key,
            serde_json::to_vec(&event.entry)?,
            Mode::Create,
        ))?;
        return Ok(moved);
    }
    Err(ArtifactError::conflict(format!(
        "the latest of {} on remote '{}' kept changing; run it again",
        shown("latest"),
        remote.name
    ))
    .into())
}

/// The highest release of `ns` on the remote below `current`.
fn previous_release(
    remote: &Remote,
    stage: Stage,
    ns: &Namespace,
    current: Option<&str>,
) -> Result<String> {
    let current = current.and_then(|c| Version::parse(c).ok());
    let mut below: Vec<(Version, String)> = remote
        .list()?
        .into_iter()
        .filter(|e| {
            e.stage == stage
                && Namespace::parse(&e.namespace).is_ok_and(|n| &n == ns)
                && e.status == RunStatus::Complete
        })
        .filter_map(|e| Version::parse(&e.id).ok().map(|v| (v, e.run.id)))
        .filter(|(v, _)| current.as_ref().is_none_or(|c| v < c))
        .collect();
    below.sort();
    below.pop().map(|(_, id)| id).ok_or_else(|| {
        ArtifactError::refused(format!(
            "remote '{}' has no release of {} below its latest to roll back to",
            remote.name,
            qualified_ref(stage, ns, "")
        ))
        .into()
    })
}
