use anyhow::{Context as _, Result};
use artifactctl::config::{CONFIG_FILE, TEMPLATE};
use artifactctl::{ArtifactError, ExitCode};

use crate::cli::args::GlobalArgs;
use crate::cli::printer::Printer;

/// Write a commented artifactctl.toml with every default spelled out
///
/// Refuses to overwrite an existing file.
///
/// Examples:
///   artifactctl init
///   artifactctl --root ~/src/bondtrader init
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {}

pub fn run(global: &GlobalArgs, out: &Printer, _args: Args) -> Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let root = match &global.root {
        Some(dir) => cwd.join(dir),
        None => cwd,
    };
    let path = root.join(CONFIG_FILE);
    match artifactctl::fsx::create_atomically(&path, TEMPLATE.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ArtifactError::conflict(format!(
                "{} already exists; edit it, or move it aside to write a fresh one",
                path.display()
            ))
            .into());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
    out.status(&format!("wrote {}", path.display()));
    Ok(ExitCode::Success)
}
