//! What `clear` removes and what it never touches, as pure decisions on names
//! and paths (no I/O). The semantics are documented in `docs/clear.md`:
//!
//! - a pattern without `/` matches an entry's own name, at any depth
//!   (`*.pkl`, `mlruns/`);
//! - a pattern with a `/` inside matches the path relative to the project
//!   root (`data/*.db`, `**/cache/*.h5`); a leading `/` only anchors;
//! - `*` and `?` never match `/` (globset `literal_separator`), `**` does;
//! - a trailing `/` matches folders only; any other removal pattern matches
//!   files only, so a folder named `weights.pkl` is not removed (but it is
//!   still searched). Symlinks match either kind and go as links;
//! - keep patterns follow the same rules, except that one without a trailing
//!   `/` matches folders too (erring on the side of keeping), and they win.

use std::path::Path;

use anyhow::Result;
use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::ArtifactError;
use crate::policy::entry::EntryKind;

/// Folder names never entered, whatever the patterns say: version control,
/// JavaScript dependencies, and installed Python packages (a conda env or a
/// virtualenv without `pyvenv.cfg` still has `site-packages`).
pub const PROTECTED_DIR_NAMES: &[&str] = &[".git", ".hg", ".svn", "node_modules", "site-packages"];

/// A folder holding this file is a virtual environment, never entered.
pub const VENV_MARKER: &str = "pyvenv.cfg";

pub fn is_protected_dir_name(name: &[u8]) -> bool {
    PROTECTED_DIR_NAMES.iter().any(|p| p.as_bytes() == name)
}

/// One compiled group of patterns, remembering their text for the reason.
#[derive(Debug, Default)]
struct PatternSet {
    set: GlobSet,
    texts: Vec<String>,
}

impl PatternSet {
    fn first_match(&self, candidate: &Candidate) -> Option<&str> {
        if self.texts.is_empty() || !self.set.is_match_candidate(candidate) {
            return None;
        }
        let index = self.set.matches_candidate(candidate).into_iter().min()?;
        Some(&self.texts[index])
    }
}

struct SetBuilder {
    builder: GlobSetBuilder,
    texts: Vec<String>,
}

impl Default for SetBuilder {
    fn default() -> Self {
        SetBuilder {
            builder: GlobSetBuilder::new(),
            texts: Vec::new(),
        }
    }
}

impl SetBuilder {
    fn add(&mut self, glob: globset::Glob, text: &str) {
        self.builder.add(glob);
        self.texts.push(text.to_string());
    }

    fn build(self, setting: &str) -> Result<PatternSet> {
        let set = self.builder.build().map_err(|e| {
            ArtifactError::usage(format!("[clear] {setting}: {e}; fix the pattern"))
        })?;
        Ok(PatternSet {
            set,
            texts: self.texts,
        })
    }
}

/// The four ways a pattern can apply: by name or by path, to folders only or
/// to the other kinds.
#[derive(Debug, Default)]
struct Group {
    name_dirs: PatternSet,
    name_other: PatternSet,
    path_dirs: PatternSet,
    path_other: PatternSet,
}

impl Group {
    /// `other_includes_dirs`: patterns without a trailing `/` also match folders.
    fn compile(patterns: &[String], setting: &str, other_includes_dirs: bool) -> Result<Group> {
        let mut name_dirs = SetBuilder::default();
        let mut name_other = SetBuilder::default();
        let mut path_dirs = SetBuilder::default();
        let mut path_other = SetBuilder::default();
        for text in patterns {
            let trimmed = text.trim();
            let (body, dirs_only) = match trimmed.strip_suffix('/') {
                Some(body) => (body, true),
                None => (trimmed, false),
            };
            let (body, anchored) = match body.strip_prefix('/') {
                Some(body) => (body, true),
                None => (body, false),
            };
            if body.is_empty() {
                return Err(ArtifactError::usage(format!(
                    "[clear] {setting}: the pattern {text:?} matches nothing; remove it or name a file or folder"
                ))
                .into());
            }
            let glob = GlobBuilder::new(body)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| {
                    ArtifactError::usage(format!(
                        "[clear] {setting}: the pattern {text:?} is invalid: {e}; fix it in artifactctl.toml"
                    ))
                })?;
            let by_path = anchored || body.contains('/');
            match (by_path, dirs_only) {
                (false, true) => name_dirs.add(glob, text),
                (true, true) => path_dirs.add(glob, text),
                (false, false) => {
                    if other_includes_dirs {
                        name_dirs.add(glob.clone(), text);
                    }
                    name_other.add(glob, text)
                }
                (true, false) => {
                    if other_includes_dirs {
                        path_dirs.add(glob.clone(), text);
                    }
                    path_other.add(glob, text)
                }
            }
        }
        Ok(Group {
            name_dirs: name_dirs.build(setting)?,
            name_other: name_other.build(setting)?,
            path_dirs: path_dirs.build(setting)?,
            path_other: path_other.build(setting)?,
        })
    }

    fn is_empty(&self) -> bool {
        [
            &self.name_dirs,
            &self.name_other,
            &self.path_dirs,
            &self.path_other,
        ]
        .iter()
        .all(|s| s.texts.is_empty())
    }

    /// The first pattern matching `rel` (relative to the root), if any.
    fn first_match(&self, rel: &Path, kind: EntryKind) -> Option<&str> {
        let name = Candidate::new(rel.file_name().unwrap_or(rel.as_os_str()));
        // Built only when a pattern with a slash needs it: a candidate copies
        // the whole path, which in a tree thousands of levels deep would make
        // the walk quadratic.
        let path = std::cell::OnceCell::new();
        let path = || path.get_or_init(|| Candidate::new(rel));
        let dirs = || {
            self.name_dirs.first_match(&name).or_else(|| {
                (!self.path_dirs.texts.is_empty())
                    .then(|| self.path_dirs.first_match(path()))
                    .flatten()
            })
        };
        let other = || {
            self.name_other.first_match(&name).or_else(|| {
                (!self.path_other.texts.is_empty())
                    .then(|| self.path_other.first_match(path()))
                    .flatten()
            })
        };
        match kind {
            EntryKind::Dir => dirs(),
            EntryKind::Symlink => dirs().or_else(other),
            EntryKind::File | EntryKind::Other => other(),
        }
    }
}

/// The compiled `[clear]` patterns.
#[derive(Debug)]
pub struct Rules {
    remove: Group,
    keep: Group,
}

impl Rules {
    pub fn new(patterns: &[String], keep: &[String]) -> Result<Rules> {
        Ok(Rules {
            remove: Group::compile(patterns, "patterns", false)?,
            keep: Group::compile(keep, "keep", true)?,
        })
    }

    /// The pattern that makes `rel` (a path relative to the root) an item to
    /// remove, unless a keep pattern protects it.
    pub fn removal_reason(&self, rel: &Path, kind: EntryKind) -> Option<&str> {
        if self.keeps(rel, kind) {
            return None;
        }
        self.remove.first_match(rel, kind)
    }

    pub fn keeps(&self, rel: &Path, kind: EntryKind) -> bool {
        self.keep.first_match(rel, kind).is_some()
    }

    pub fn has_keep(&self) -> bool {
        !self.keep.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(patterns: &[&str], keep: &[&str]) -> Rules {
        let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        Rules::new(&s(patterns), &s(keep)).unwrap()
    }

    fn reason<'a>(r: &'a Rules, rel: &str, kind: EntryKind) -> Option<&'a str> {
        r.removal_reason(Path::new(rel), kind)
    }

    #[test]
    fn a_pattern_without_slash_matches_the_name_at_any_depth() {
        let r = rules(&["*.pkl", "mlruns/"], &[]);
        assert_eq!(reason(&r, "a.pkl", EntryKind::File), Some("*.pkl"));
        assert_eq!(reason(&r, "x/y/a.pkl", EntryKind::File), Some("*.pkl"));
        assert_eq!(reason(&r, "x/mlruns", EntryKind::Dir), Some("mlruns/"));
        assert_eq!(reason(&r, "a.pkl.txt", EntryKind::File), None);
    }

    #[test]
    fn a_pattern_with_slash_matches_the_path_from_the_root() {
        let r = rules(&["data/*.db", "/top.h5", "**/cache/*.h5"], &[]);
        assert_eq!(reason(&r, "data/x.db", EntryKind::File), Some("data/*.db"));
        // `*` does not cross `/` (literal_separator).
        assert_eq!(reason(&r, "data/sub/x.db", EntryKind::File), None);
        assert_eq!(reason(&r, "src/data/x.db", EntryKind::File), None);
        assert_eq!(reason(&r, "top.h5", EntryKind::File), Some("/top.h5"));
        assert_eq!(reason(&r, "a/top.h5", EntryKind::File), None);
        assert_eq!(
            reason(&r, "a/b/cache/m.h5", EntryKind::File),
            Some("**/cache/*.h5")
        );
    }

    #[test]
    fn kinds_decide_between_file_and_folder_patterns() {
        let r = rules(&["*.pkl", "trained_models/"], &[]);
        assert_eq!(reason(&r, "weights.pkl", EntryKind::Dir), None);
        assert_eq!(reason(&r, "trained_models", EntryKind::File), None);
        assert!(reason(&r, "trained_models", EntryKind::Symlink).is_some());
        assert!(reason(&r, "link.pkl", EntryKind::Symlink).is_some());
    }

    #[test]
    fn keep_always_wins_and_covers_folders() {
        let r = rules(
            &["*.pkl", "training_data/"],
            &["data/reference/*.pkl", "training_data"],
        );
        assert_eq!(reason(&r, "data/reference/a.pkl", EntryKind::File), None);
        assert!(reason(&r, "data/other/a.pkl", EntryKind::File).is_some());
        assert_eq!(reason(&r, "training_data", EntryKind::Dir), None);
        assert!(r.has_keep());
        assert!(!rules(&["*.pkl"], &[]).has_keep());
    }

    #[test]
    fn non_utf8_names_match_by_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let r = rules(&["*.pkl"], &[]);
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.pkl");
        assert!(r.removal_reason(Path::new(name), EntryKind::File).is_some());
    }

    #[test]
    fn bad_patterns_are_usage_errors() {
        for bad in [vec!["a[".to_string()], vec!["/".to_string()]] {
            let err = Rules::new(&bad, &[]).unwrap_err();
            assert!(err.downcast_ref::<ArtifactError>().is_some(), "{err:#}");
        }
        assert!(is_protected_dir_name(b".git"));
        assert!(!is_protected_dir_name(b"git"));
    }
}
