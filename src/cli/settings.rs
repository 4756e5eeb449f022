//! Flags, environment and config file resolved into one plain struct before
//! any command does I/O on the store.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use artifactctl::config::{self, Config};
use artifactctl::store::{ReadOptions, Store};

use crate::cli::args::GlobalArgs;
use crate::cli::printer::Output;

pub struct Context {
    pub root: PathBuf,
    pub config: Config,
    pub store: Store,
}

impl Context {
    pub fn resolve(global: &GlobalArgs, out: &Output) -> Result<Context> {
        let cwd = std::env::current_dir().context("the working directory cannot be read")?;
        let root = config::find_root(&cwd, global.root.as_deref())?;
        let loaded = Config::load(&root, std::env::vars())?;
        if let Some(file) = &loaded.file {
            for warning in &loaded.warnings {
                out.warn(&format!("{}: {warning}; it is ignored", file.display()));
            }
        }
        let store_dir = match &global.store {
            Some(dir) => cwd.join(dir),
            None => config::resolve_path(&root, &loaded.config.store.dir),
        };
        Ok(Context {
            root,
            config: loaded.config,
            store: Store::open(store_dir),
        })
    }

    pub fn read_options(&self, detail: bool) -> Result<ReadOptions> {
        ReadOptions::new(&self.config.list.model_patterns, detail)
    }
}
