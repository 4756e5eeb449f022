//! Flags, environment and config file resolved in one place, before any
//! command does I/O on the store: [`Context`] (root, config, store and the
//! [`Invocation`]) and, per command, its settings: the library's options
//! struct plus the few flags only the binary acts on (`--json`, `--yes`,
//! `--dry-run`).
//!
//! Each `resolve` destructures its clap `Args` with no `..`, so a flag added
//! to a command and not resolved here fails to compile.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use artifactctl::config::{self, Config};
use artifactctl::store::{ReadOptions, Store};
use artifactctl::ArtifactError;
use chrono::{DateTime, Utc};

use crate::cli::args::GlobalArgs;
use crate::cli::printer::Printer;

mod inspect;
mod promote;
mod remote;
mod removal;
mod runs;

pub use inspect::*;
pub use promote::*;
pub use remote::*;
pub use removal::*;
pub use runs::*;

/// Pins the time of a run in debug builds (tests), in RFC 3339. Release
/// builds ignore it.
#[cfg_attr(not(debug_assertions), allow(dead_code))]
pub const NOW_ENV: &str = "ARTIFACTCTL_NOW";

/// What this run of the binary is: where, with which command line, and at
/// which time. Built once, and handed to every operation that records it.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The working directory, which relative paths are taken from.
    pub cwd: PathBuf,
    /// The project root: `--root`, `ARTIFACTCTL_ROOT`, the nearest ancestor
    /// holding `artifactctl.toml`, or the working directory.
    pub root: PathBuf,
    /// The command line, recorded as the producer of what is written.
    pub command: Vec<String>,
    /// The time the run is stamped with.
    pub now: DateTime<Utc>,
}

impl Invocation {
    fn capture(global: &GlobalArgs) -> Result<Invocation> {
        let cwd = std::env::current_dir().context("the working directory cannot be read")?;
        let root = config::find_root(&cwd, global.root.as_deref())?;
        Ok(Invocation {
            cwd,
            root,
            command: std::env::args().collect(),
            now: now()?,
        })
    }
}

/// The clock, or `ARTIFACTCTL_NOW` in debug builds.
fn now() -> Result<DateTime<Utc>> {
    #[cfg(debug_assertions)]
    if let Some(text) = std::env::var_os(NOW_ENV) {
        let text = text.to_string_lossy();
        return DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                ArtifactError::usage(format!(
                    "bad {NOW_ENV} '{text}': {e}; use RFC 3339, e.g. 2026-11-23T10:15:00Z"
                ))
                .into()
            });
    }
    Ok(Utc::now())
}

pub struct Context {
    pub invocation: Invocation,
    pub config: Config,
    pub store: Store,
    /// Where the store's path came from when the user named it (`--store`,
    /// `[store] dir`); `None` for the default `<root>/artifacts`.
    pub store_named_by: Option<String>,
}

impl Context {
    pub fn resolve(global: &GlobalArgs, out: &Printer) -> Result<Context> {
        let invocation = Invocation::capture(global)?;
        let loaded = Config::load(&invocation.root, std::env::vars())?;
        if let Some(file) = &loaded.file {
            for warning in &loaded.warnings {
                out.warn(&format!("{}: {warning}; it is ignored", file.display()));
            }
        }
        let default_dir = config::StoreConfig::default().dir;
        let (store_dir, store_named_by) = match &global.store {
            Some(dir) => (invocation.cwd.join(dir), Some("--store".to_string())),
            None => (
                config::resolve_path(&invocation.root, &loaded.config.store.dir),
                (loaded.config.store.dir != default_dir).then(|| match &loaded.file {
                    Some(file) => {
                        format!("[store] dir in {} or ARTIFACTCTL_STORE_DIR", file.display())
                    }
                    None => "ARTIFACTCTL_STORE_DIR".to_string(),
                }),
            ),
        };
        Ok(Context {
            invocation,
            config: loaded.config,
            store: Store::open(store_dir),
            store_named_by,
        })
    }

    /// The store must be a folder; one the user named must also exist,
    /// unless the command creates it (`creates`: register, refresh). A
    /// missing default store is a new project's empty store. A typo in
    /// `--store` must not read as "no runs".
    pub fn check_store(&self, creates: bool) -> Result<()> {
        let dir = self.store.dir();
        let from = self
            .store_named_by
            .as_deref()
            .map(|s| format!(" (from {s})"))
            .unwrap_or_default();
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(ArtifactError::usage(format!(
                "store {} is not a folder{from}; point --store at the folder that holds the runs",
                dir.display()
            ))
            .into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if creates || self.store_named_by.is_none() {
                    return Ok(());
                }
                Err(ArtifactError::usage(format!(
                    "store {} does not exist{from}; check the path (register creates a new store)",
                    dir.display()
                ))
                .into())
            }
            Err(e) => {
                Err(anyhow::Error::new(e)
                    .context(format!("cannot read the store {}", dir.display())))
            }
        }
    }

    pub fn read_options(&self, detail: bool) -> Result<ReadOptions> {
        ReadOptions::new(&self.config.list.model_patterns, detail)
    }
}

// ---- register ----
