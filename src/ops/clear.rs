//! `clear [PATH...]`: find regenerable artifacts under the project root
//! (seed 000's `clear_artifacts.py`) and, with `force`, remove them.
//!
//! One parallel walk does both: it opens every folder by descriptor from the
//! root down, decides each entry with [`Rules`], and hands a matched folder to
//! [`fsx::walk_tree`] as one item, which counts (dry run) or removes it. No
//! path is collected beyond the matched items, so memory stays flat however
//! many files go. Clear never enters `.git`, virtual environments,
//! `node_modules`, the store, other filesystems, or anything outside the root.
//! It does not change the store, so it takes no store lock and writes no
//! journal entry.

use std::collections::{BTreeSet, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::CONFIG_FILE;
use crate::error::ArtifactError;
use crate::fsx::{self, DirFd, DirId, EntryKind, Probe, RawEntry, TreeTotals, TreeWalk, Visit};
use crate::policy::clear_rules::{self, Rules, VENV_MARKER};
use crate::progress::{Progress, Unit};

#[derive(Debug, Clone, Default)]
pub struct ClearOptions {
    /// The project root (absolute, resolved).
    pub root: PathBuf,
    /// Where relative `paths` are taken from.
    pub cwd: PathBuf,
    /// Limit the clear to these files or folders, which must be inside `root`.
    /// Empty means the whole root.
    pub paths: Vec<PathBuf>,
    /// The artifactctl store, never entered (it belongs to `cleanup`/`delete`).
    pub store_dir: PathBuf,
    /// The user's home directory, refused as a root without a config file.
    pub home: Option<PathBuf>,
    pub patterns: Vec<String>,
    pub keep: Vec<String>,
    pub cross_filesystems: bool,
    /// Remove what is found; otherwise only report it.
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    File,
    Dir,
    Symlink,
}

/// One top-level thing to remove: a matched file or link, or a matched folder
/// with everything in it.
#[derive(Debug, Clone, Serialize)]
pub struct ClearItem {
    /// Relative to the project root, printed lossily when not UTF-8.
    pub path: String,
    pub kind: ItemKind,
    /// Files and links (in a folder: all of them, at any depth).
    pub files: u64,
    /// Bytes of regular files.
    pub bytes: u64,
    /// The pattern that matched.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClearFailure {
    pub path: String,
    /// What went wrong and how to fix it.
    pub error: String,
}

/// The plan (dry run) or the outcome (`force`): with `force`, the counts are
/// what was actually removed.
#[derive(Debug, Clone, Serialize)]
pub struct ClearReport {
    pub dry_run: bool,
    pub items: Vec<ClearItem>,
    pub total_files: u64,
    pub total_bytes: u64,
    pub errors: Vec<ClearFailure>,
    /// Versioned stores found below the root and never entered, each named
    /// once (`store at examples/artifacts`, `run at models/x/1`).
    pub skipped: Vec<String>,
}

/// Called with each file (relative to the root) and its size, for `-v`.
pub use crate::fsx::FileListener;

/// Plan, or with `opts.force` carry out, the clear. Refusals (a bad root or
/// PATH) are errors before anything is touched; failures on single entries
/// are collected in the report and the rest carries on.
pub fn clear(
    opts: &ClearOptions,
    reporter: &dyn Progress,
    on_file: Option<FileListener>,
) -> Result<ClearReport> {
    check_root(opts)?;
    let rules = Rules::new(&opts.patterns, &opts.keep)?;
    let root_fd = DirFd::open(&opts.root)
        .with_context(|| format!("cannot open the project root {}", opts.root.display()))?;
    let root_id = root_fd.id()?;
    let store_id = DirFd::open(&opts.store_dir)
        .and_then(|d| d.id())
        .ok()
        .filter(|id| *id != root_id);
    let targets = resolve_targets(opts)?;
    let scan = Scan {
        root: opts.root.clone(),
        skipped: Mutex::new(BTreeSet::new()),
        nested_stores: Mutex::new(HashSet::new()),
        rules: &rules,
        device: root_id.dev,
        cross_filesystems: opts.cross_filesystems,
        store: store_id,
        force: opts.force,
        items: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
        reporter,
        on_file,
    };
    let mut opened = Vec::new();
    for rel in &targets {
        opened.push(scan.open_target(&root_fd, rel)?);
    }
    reporter.begin(
        if opts.force { "clearing" } else { "scanning" },
        None,
        Unit::Files,
    );
    walker_pool()?.install(|| {
        for (target, rel) in opened.into_iter().zip(&targets) {
            match target {
                Target::Root => scan.scan_root(&root_fd),
                Target::Entry { parent, entry } => {
                    let kind = entry.kind.unwrap_or(EntryKind::Other);
                    fsx::walk_one(&parent, &entry.name, rel, kind, &scan);
                }
            }
        }
    });
    reporter.end();
    let mut items = scan.items.into_inner().expect("items lock");
    items.sort_by(|a, b| a.path.cmp(&b.path));
    let skipped = scan
        .skipped
        .into_inner()
        .expect("skipped lock")
        .into_iter()
        .collect();
    let mut errors = scan.errors.into_inner().expect("errors lock");
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(ClearReport {
        skipped,
        dry_run: !opts.force,
        total_files: items.iter().map(|i| i.files).sum(),
        total_bytes: items.iter().map(|i| i.bytes).sum(),
        items,
        errors,
    })
}

/// Threads for the walk. Reading and unlinking metadata mostly waits on the
/// disk and its journal, not on the CPU, so several threads per core keep
/// the device busy: on 2 cores, 16 threads deleted as fast as 8 or faster,
/// and much faster than 2. The stacks are small and nothing per file is kept.
fn walker_pool() -> Result<rayon::ThreadPool> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    rayon::ThreadPoolBuilder::new()
        .num_threads((cores * WALKERS_PER_CORE).clamp(4, 32))
        .thread_name(|i| format!("clear-{i}"))
        .build()
        .context("cannot start the walker threads")
}

const WALKERS_PER_CORE: usize = 8;

/// Refuse `/` and the home directory as a root unless a config file there
/// says the user really means it.
fn check_root(opts: &ClearOptions) -> Result<()> {
    let is_home = opts.home.as_deref().is_some_and(|home| {
        home.canonicalize().unwrap_or_else(|_| home.to_path_buf()) == opts.root
    });
    if (opts.root == Path::new("/") || is_home) && !opts.root.join(CONFIG_FILE).is_file() {
        return Err(ArtifactError::refused(format!(
            "the project root is {}, which has no {CONFIG_FILE}; run clear inside a project, or pass --root DIR (create {CONFIG_FILE} there to really clear it)",
            opts.root.display()
        ))
        .into());
    }
    Ok(())
}

/// The PATH arguments as paths relative to the root, `..` resolved by text
/// (symlinks are refused later, when they are opened); an empty path is the
/// root itself. Nested arguments are folded into their ancestor.
fn resolve_targets(opts: &ClearOptions) -> Result<Vec<PathBuf>> {
    if opts.paths.is_empty() {
        return Ok(vec![PathBuf::new()]);
    }
    let mut rels = Vec::new();
    for given in &opts.paths {
        let absolute = lexical_normalize(&opts.cwd.join(given));
        let rel = absolute.strip_prefix(&opts.root).map_err(|_| {
            ArtifactError::refused(format!(
                "{} is outside the project root {}; clear only touches the project it runs in",
                given.display(),
                opts.root.display()
            ))
        })?;
        rels.push(rel.to_path_buf());
    }
    rels.sort();
    let mut folded: Vec<PathBuf> = Vec::new();
    for rel in rels {
        if !folded.iter().any(|kept| rel.starts_with(kept)) {
            folded.push(rel);
        }
    }
    Ok(folded)
}

/// Resolve `.` and `..` without touching the filesystem.
fn lexical_normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(io::Error::other)
}

fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// What to do next, by the kind of failure (seed 000's troubleshooting).
fn explain(path: &Path, e: &io::Error) -> String {
    let fix = match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => format!(
            "; fix the permissions (chmod -R u+w {}) or run as the owner, then clear again",
            shell_quote(&lossy(path))
        ),
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
            "; it was replaced by a symlink or a file during the clear and was left alone: look at it, then clear again".to_string()
        }
        _ => String::new(),
    };
    format!("{e}{fix}")
}

fn shell_quote(text: &str) -> String {
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

enum Target {
    Root,
    Entry { parent: DirFd, entry: RawEntry },
}

struct Scan<'a> {
    root: PathBuf,
    /// What was not entered because it is a versioned store (see
    /// [`Scan::versioned`]).
    skipped: Mutex<BTreeSet<String>>,
    /// Stores configured by `artifactctl.toml` files below the root.
    nested_stores: Mutex<HashSet<DirId>>,
    rules: &'a Rules,
    device: u64,
    cross_filesystems: bool,
    store: Option<DirId>,
    force: bool,
    items: Mutex<Vec<ClearItem>>,
    errors: Mutex<Vec<ClearFailure>>,
    reporter: &'a dyn Progress,
    on_file: Option<FileListener<'a>>,
}

impl Scan<'_> {
    fn fail(&self, path: &Path, e: &io::Error) {
        self.errors.lock().expect("errors lock").push(ClearFailure {
            path: lossy(path),
            error: explain(path, e),
        });
    }

    /// Open a PATH argument's parent from the root down, one folder at a time
    /// and never through a symlink, refusing protected folders on the way.
    fn open_target(&self, root: &DirFd, rel: &Path) -> Result<Target> {
        let Some(name) = rel.file_name() else {
            return Ok(Target::Root);
        };
        let mut parent = reopen(root)?;
        let mut walked = PathBuf::new();
        let refuse = |walked: &Path, why: &str| -> anyhow::Error {
            ArtifactError::refused(format!(
                "{} {why}; clear never goes there: pass a path outside it",
                walked.display()
            ))
            .into()
        };
        for component in rel.parent().unwrap_or(Path::new("")).components() {
            let part = component.as_os_str();
            walked.push(part);
            if clear_rules::is_protected_dir_name(part.as_bytes()) {
                return Err(refuse(&walked, "is a protected folder"));
            }
            let child = parent.open_dir(&c_name(part)?).map_err(|e| {
                anyhow::Error::from(ArtifactError::usage(format!(
                    "{} cannot be opened as a folder ({e}); pass a real folder inside the project, not a symlink",
                    walked.display()
                )))
            })?;
            self.check_protected(&child)
                .map_err(|why| refuse(&walked, why))?;
            parent = child;
        }
        let c = c_name(name)?;
        let kind = parent.kind_at(&c).map_err(|e| {
            anyhow::Error::from(ArtifactError::not_found(format!(
                "{} cannot be found ({e}); pass an existing path inside the project",
                rel.display()
            )))
        })?;
        if kind == EntryKind::Dir && clear_rules::is_protected_dir_name(name.as_bytes()) {
            return Err(refuse(rel, "is a protected folder"));
        }
        if kind == EntryKind::Dir {
            // A PATH naming a virtual environment (or the store, or a folder
            // on another filesystem) is refused, not silently skipped.
            if let Ok(dir) = parent.open_dir(&c) {
                self.check_protected(&dir).map_err(|why| refuse(rel, why))?;
            }
        }
        Ok(Target::Entry {
            parent,
            entry: RawEntry {
                name: c,
                kind: Some(kind),
                ino: 0,
            },
        })
    }

    /// Whether a folder holds versions that cannot be regenerated, so clear
    /// never enters it: a native store (it holds `.artifactctl/`), the store
    /// an `artifactctl.toml` below the root configures, a run folder with
    /// artifactctl's `metadata.json`, or a legacy versioned layout that
    /// artifactctl reads as a store (version folders beside a `latest` link
    /// or pointer, seeds 002 and 003).
    fn versioned(&self, dir: &DirFd, rel: &Path) -> Option<&'static str> {
        let has = |name: &str, want: EntryKind| {
            CString::new(name)
                .ok()
                .and_then(|c| dir.kind_at(&c).ok())
                .is_some_and(|k| k == want)
        };
        if has(crate::store::layout::INTERNAL_DIR, EntryKind::Dir) {
            return Some("store");
        }
        if let Ok(id) = dir.id() {
            if self
                .nested_stores
                .lock()
                .expect("stores lock")
                .contains(&id)
            {
                return Some("store");
            }
        }
        if has(crate::store::metadata::METADATA_FILE, EntryKind::File) {
            let path = self
                .root
                .join(rel)
                .join(crate::store::metadata::METADATA_FILE);
            if crate::store::metadata::read_no_follow(&path)
                .is_ok_and(|b| b.windows(16).any(|w| w == b"\"schema_version\""))
            {
                return Some("run");
            }
        }
        if has(crate::store::layout::LATEST, EntryKind::Symlink)
            || has(crate::store::layout::LATEST_POINTER, EntryKind::File)
        {
            return Some("store");
        }
        None
    }

    /// A project below the root keeps its store where its config says:
    /// remember it, so the search never enters it.
    fn note_nested_project(&self, dir: &DirFd, rel: &Path) {
        let has_config = CString::new(CONFIG_FILE)
            .ok()
            .and_then(|c| dir.kind_at(&c).ok())
            .is_some_and(|k| k == EntryKind::File);
        if !has_config || rel.as_os_str().is_empty() {
            return;
        }
        let project = self.root.join(rel);
        let store_dir = crate::store::metadata::read_regular(&project.join(CONFIG_FILE))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| t.parse::<toml::Table>().ok())
            .and_then(|t| t.get("store")?.get("dir")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "artifacts".to_string());
        if let Ok(id) = DirFd::open(&project.join(store_dir)).and_then(|d| d.id()) {
            self.nested_stores.lock().expect("stores lock").insert(id);
        }
    }

    fn skip(&self, what: &str, rel: &Path) {
        self.skipped
            .lock()
            .expect("skipped lock")
            .insert(format!("{what} at {}", lossy(rel)));
    }

    /// Why an opened folder must not be entered, if it must not.
    fn check_protected(&self, dir: &DirFd) -> Result<(), &'static str> {
        let id = dir.id().map_err(|_| "cannot be examined")?;
        if id.dev != self.device && !self.cross_filesystems {
            return Err("is on another filesystem");
        }
        if Some(id) == self.store {
            return Err("is the artifactctl store");
        }
        if dir
            .kind_at(&CString::new(VENV_MARKER).expect("no NUL"))
            .is_ok()
        {
            return Err("is a virtual environment");
        }
        Ok(())
    }

    /// Search the root: each entry is visited, matched ones taken, the
    /// rest of the folders searched, by the descriptor walker.
    fn scan_root(&self, root: &DirFd) {
        if root
            .kind_at(&CString::new(VENV_MARKER).expect("no NUL"))
            .is_ok()
        {
            return;
        }
        fsx::walk_contents(root, Path::new(""), self);
    }
    /// Count or remove one matched entry as an item.
    fn take(&self, parent: &DirFd, name: &CStr, rel: &Path, kind: EntryKind, reason: &str) {
        let totals = match kind {
            EntryKind::Dir => {
                let dir = match parent.open_dir(name) {
                    Ok(dir) => dir,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                    Err(e) => return self.fail(rel, &e),
                };
                // A mount point is named as such, before the device check
                // would suggest `cross_filesystems`, which never enters one.
                if let (Ok(outer), Ok(inner)) = (parent.probe(), dir.probe()) {
                    if inner.is_mount_below(&outer) {
                        return self.fail(rel, &io::Error::other("is a mount point; not entered"));
                    }
                }
                let explicit = reason.trim_end_matches('/') == lossy(rel);
                if let Some(what) = self.versioned(&dir, rel).filter(|_| !explicit) {
                    return self.skip(what, rel);
                }
                match self.check_protected(&dir) {
                    Ok(()) => {}
                    // Another filesystem is worth a word; the store and
                    // virtualenvs are simply not ours.
                    Err(why) if why == "is on another filesystem" => {
                        return self.fail(
                            rel,
                            &io::Error::other(format!(
                                "{why}, which clear does not cross; set [clear] cross_filesystems = true to include it"
                            )),
                        );
                    }
                    Err(_) => return,
                }
                let keep = |p: &Path, k: EntryKind| self.rules.keeps(p, k);
                let keep: fsx::KeepFilter = &keep;
                let on_error = |p: &Path, e: &io::Error| self.fail(p, e);
                let on_progress = |n: u64| self.reporter.advance(n);
                let walk = TreeWalk {
                    remove: self.force,
                    device: if self.cross_filesystems {
                        match dir.id() {
                            Ok(id) => id.dev,
                            Err(e) => return self.fail(rel, &e),
                        }
                    } else {
                        self.device
                    },
                    keep: self.rules.has_keep().then_some(keep),
                    on_file: self.on_file,
                    on_error: &on_error,
                    on_progress: &on_progress,
                };
                fsx::walk_tree(parent, name, dir, rel, &walk)
            }
            EntryKind::File | EntryKind::Symlink | EntryKind::Other => {
                let bytes = match parent.stat_at(name) {
                    Ok((EntryKind::File, size)) => size,
                    Ok(_) => 0,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                    Err(e) => return self.fail(rel, &e),
                };
                if self.force {
                    if let Err(e) = parent.unlink_at(name) {
                        return self.fail(rel, &e);
                    }
                }
                if let Some(on_file) = self.on_file {
                    on_file(rel, bytes);
                }
                self.reporter.advance(1);
                TreeTotals {
                    files: 1,
                    bytes,
                    left: 0,
                }
            }
        };
        if totals.files == 0 && totals.left > 0 && kind == EntryKind::Dir {
            // Nothing could be done inside; the errors say why.
            return;
        }
        self.items.lock().expect("items lock").push(ClearItem {
            path: lossy(rel),
            kind: match kind {
                EntryKind::Dir => ItemKind::Dir,
                EntryKind::Symlink => ItemKind::Symlink,
                EntryKind::File | EntryKind::Other => ItemKind::File,
            },
            files: totals.files,
            bytes: totals.bytes,
            reason: reason.to_string(),
        });
    }
}

/// The search: a folder that matches is taken whole as one item (walked by
/// its own [`fsx::walk_tree`]), a folder that does not is searched.
impl fsx::Visitor for Scan<'_> {
    fn visit(&self, dir: &DirFd, name: &CStr, rel: &Path, kind: EntryKind) -> Visit {
        if kind == EntryKind::Dir && clear_rules::is_protected_dir_name(name.to_bytes()) {
            return Visit::Done(TreeTotals::default());
        }
        match self.rules.removal_reason(rel, kind) {
            Some(reason) => {
                self.take(dir, name, rel, kind, reason);
                Visit::Done(TreeTotals::default())
            }
            None if kind == EntryKind::Dir
                && is_checkout(dir, name)
                && !self.rules.keeps(rel, kind) =>
            {
                // What `artifactctl checkout` placed can be placed again.
                self.take(dir, name, rel, kind, "artifactctl checkout");
                Visit::Done(TreeTotals::default())
            }
            None if kind == EntryKind::Dir && !self.rules.keeps(rel, kind) => {
                Visit::Enter { remove: false }
            }
            None => Visit::Done(TreeTotals::default()),
        }
    }

    /// Folders that must not be searched are passed over quietly; other
    /// filesystems are only worth a word when they match (see `take`).
    fn admit(&self, dir: &DirFd, _: &Probe, rel: &Path) -> Result<(), Option<io::Error>> {
        self.check_protected(dir).map_err(|_| None)?;
        if let Some(what) = self.versioned(dir, rel) {
            self.skip(what, rel);
            return Err(None);
        }
        self.note_nested_project(dir, rel);
        Ok(())
    }

    fn on_error(&self, path: &Path, e: &io::Error) {
        self.fail(path, e)
    }
}

/// Whether the folder `name` in `dir` is one `artifactctl checkout` placed.
fn is_checkout(dir: &DirFd, name: &CStr) -> bool {
    let mut path = name.to_bytes().to_vec();
    path.push(b'/');
    path.extend_from_slice(crate::fsx::checkout::CHECKOUT_MARKER.as_bytes());
    CString::new(path)
        .ok()
        .and_then(|c| dir.kind_at(&c).ok())
        .is_some_and(|k| k == EntryKind::File)
}

fn reopen(dir: &DirFd) -> io::Result<DirFd> {
    dir.open_dir(&CString::new(".").expect("no NUL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_is_resolved_by_text_and_checked_against_the_root() {
        let opts = ClearOptions {
            root: PathBuf::from("/p/root"),
            cwd: PathBuf::from("/p/root/src"),
            paths: vec!["../models".into(), "x/../../models/a".into()],
            ..ClearOptions::default()
        };
        assert_eq!(
            resolve_targets(&opts).unwrap(),
            vec![PathBuf::from("models")]
        );
        let outside = ClearOptions {
            paths: vec!["../../etc".into()],
            ..opts.clone()
        };
        let err = resolve_targets(&outside).unwrap_err();
        assert!(format!("{err}").contains("outside the project root"));
        let root = ClearOptions {
            paths: vec![".".into(), "..".into()],
            ..opts
        };
        assert_eq!(resolve_targets(&root).unwrap(), vec![PathBuf::new()]);
    }

    #[test]
    fn root_and_home_need_a_config_file() {
        let home = tempfile::tempdir().unwrap();
        let root = home.path().canonicalize().unwrap();
        let opts = ClearOptions {
            root: root.clone(),
            home: Some(root.clone()),
            ..ClearOptions::default()
        };
        assert!(check_root(&opts).is_err());
        std::fs::write(root.join(CONFIG_FILE), "").unwrap();
        assert!(check_root(&opts).is_ok());
        let slash = ClearOptions {
            root: PathBuf::from("/"),
            ..ClearOptions::default()
        };
        if !Path::new("/").join(CONFIG_FILE).exists() {
            assert!(check_root(&slash).is_err());
        }
    }

    #[test]
    fn failures_name_the_fix() {
        let text = explain(
            Path::new("trained models"),
            &io::Error::from_raw_os_error(libc::EACCES),
        );
        assert!(text.contains("chmod -R u+w 'trained models'"), "{text}");
    }
}
